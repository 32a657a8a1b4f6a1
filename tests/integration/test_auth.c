/* SPDX-License-Identifier: MIT */
/*
 * test_auth.c - the shared-key handshake, over TCP or (RMIG_TEST_TRANSPORT=
 * rdma, RMIG_TEST_ADDR) RDMA in the soft-RoCE VM.
 *
 * Sessions: the same key migrates byte for byte; a wrong key, a missing key
 * on either side, is a clear -EACCES on both sides and guest RAM untouched.
 * Raw sources: a source without the key talks to a destination that has one,
 * and every control message the destination sends back is captured. None may
 * be a HELLO_ACK (the data-channel endpoint) or a REG (a registration
 * descriptor: address and rkey on RDMA).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "sock.h"
#include "testlib.h"
#include "wire.h"

static const char key_a[] = "correct horse battery staple";
static const char key_b[] = "correct horse battery stapler";

static struct pair_cfg base(void)
{
	const char *t = getenv("RMIG_TEST_TRANSPORT");
	struct pair_cfg c = { .channels = 2, .len = 4 << 20, .page_size = 4096, .timeout_ms = 5000 };

	c.transport = t && !strcmp(t, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	c.addr = getenv("RMIG_TEST_ADDR");
	return c;
}

static const char *addr(void)
{
	return getenv("RMIG_TEST_ADDR") ? getenv("RMIG_TEST_ADDR") : "127.0.0.1";
}

static void test_same_key(void **state)
{
	struct pair_cfg c = base();
	struct pair p;

	(void)state;
	c.src_key = c.dst_key = key_a;
	c.src_key_len = c.dst_key_len = strlen(key_a);
	c.flags = RMIG_F_VERIFY;
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 21);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, c.len);
	pair_close(&p);
}

/*
 * Connect with these keys; the connect must fail; RAM must stay as it was.
 * A destination without a key fails with the first source (first come); one
 * with a key refuses it, waits on for one that holds the key, and at the
 * timeout names the refused connection.
 */
static void refused(const char *skey, const char *dkey, const char *src_msg, const char *dst_msg)
{
	struct pair_cfg c = base();
	struct pair p;
	uint64_t t0 = rmig_mono_ns();
	int rc;

	c.src_key = skey;
	c.src_key_len = skey ? strlen(skey) : 0;
	c.dst_key = dkey;
	c.dst_key_len = dkey ? strlen(dkey) : 0;
	c.timeout_ms = 1500;
	rc = pair_open(&p, &c);
	pair_join(&p);
	printf("# source: %s\n# destination: %s (%.2f s)\n", rmig_last_error(p.src),
	       rmig_last_error(p.dst), (rmig_mono_ns() - t0) / 1e9);
	assert_int_equal(rc, -EACCES);
	if (dkey) {
		assert_int_equal(p.accept_rc, -ETIMEDOUT);
		assert_non_null(strstr(rmig_last_error(p.dst), "refused 1 connection, the last"));
		assert_true(rmig_mono_ns() - t0 >= 1400000000ull);
	} else {
		assert_int_equal(p.accept_rc, -EACCES);
	}
	assert_non_null(strstr(rmig_last_error(p.src), src_msg));
	assert_non_null(strstr(rmig_last_error(p.dst), dst_msg));
	for (uint64_t i = 0; i < c.len; i++)
		if (p.dmem[i])
			fail_msg("destination RAM changed at %llu", (unsigned long long)i);
	pair_close(&p);
}

static void test_wrong_key(void **state)
{
	(void)state;
	refused(key_a, key_b, "authentication failed: the source's key does not match",
		"authentication failed: the source's key does not match");
}

static void test_source_without_key(void **state)
{
	(void)state;
	refused(NULL, key_a, "this destination requires a key and the source has none",
		"this destination requires a key and the source has none");
}

static void test_destination_without_key(void **state)
{
	(void)state;
	refused(key_a, NULL, "it has a key, but this destination has none",
		"it has a key, but this destination has none");
}

static void test_key_length(void **state)
{
	struct rmig_opts o;
	rmig_session *s;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.key = key_a;
	o.key_len = RMIG_KEY_MIN - 1;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.key_len = RMIG_KEY_MAX + 1;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.key = NULL;
	o.key_len = 20;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.key = key_a;
	o.key_len = RMIG_KEY_MIN;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	rmig_session_destroy(s);
}

static void test_mac(void **state)
{
	uint8_t h[RMIG_HELLO_HASH_LEN] = { 1 }, nd[RMIG_AUTH_NONCE_LEN] = { 2 },
		ns[RMIG_AUTH_NONCE_LEN] = { 3 };
	uint8_t a[RMIG_AUTH_MAC_LEN], b[RMIG_AUTH_MAC_LEN];
	const uint8_t *k = (const uint8_t *)key_a;
	size_t kl = strlen(key_a);

	(void)state;
	assert_int_equal(rmig_auth_mac(k, kl, RMIG_AUTH_SOURCE, h, nd, ns, a), 0);
	assert_int_equal(rmig_auth_mac(k, kl, RMIG_AUTH_SOURCE, h, nd, ns, b), 0);
	assert_true(rmig_auth_mac_equal(a, b));
	/* each input matters: role, key, transcript, either nonce */
	assert_int_equal(rmig_auth_mac(k, kl, RMIG_AUTH_DEST, h, nd, ns, b), 0);
	assert_false(rmig_auth_mac_equal(a, b));
	assert_int_equal(rmig_auth_mac((const uint8_t *)key_b, strlen(key_b), RMIG_AUTH_SOURCE, h, nd, ns, b),
			 0);
	assert_false(rmig_auth_mac_equal(a, b));
	h[5] ^= 1;
	assert_int_equal(rmig_auth_mac(k, kl, RMIG_AUTH_SOURCE, h, nd, ns, b), 0);
	assert_false(rmig_auth_mac_equal(a, b));
	h[5] ^= 1;
	/* swapping the nonces is another message */
	assert_int_equal(rmig_auth_mac(k, kl, RMIG_AUTH_SOURCE, h, ns, nd, b), 0);
	assert_false(rmig_auth_mac_equal(a, b));
}

/* ---- raw sources against a destination with a key: capture what it sends ---- */

enum raw_mode {
	RAW_NO_AUTH,      /* HELLO without CAP_AUTH, then waits */
	RAW_BAD_PROOF,    /* CAP_AUTH, then a proof made with another key */
	RAW_ZERO_PROOF,   /* CAP_AUTH, then an all-zero proof */
	RAW_SKIP_PROOF,   /* CAP_AUTH, then straight on as if authenticated */
	RAW_SHORT_PROOF,  /* CAP_AUTH, then a truncated proof */
};

struct capture {
	unsigned int types[64];
	unsigned int n;
};

struct dst_run {
	rmig_session *s;
	int rc;
};

static void *accept_main(void *arg)
{
	struct dst_run *d = arg;

	d->rc = rmig_accept(d->s);
	return NULL;
}

static void raw_source(enum raw_mode mode, const char *host, int port, struct capture *cap)
{
	static struct rmig_msg_hello m;
	static uint8_t buf[RMIG_CTL_MAX];
	uint8_t hh[RMIG_HELLO_HASH_LEN];
	struct rmig_ctl_hdr h;
	char ps[16];
	int fd, n;

	snprintf(ps, sizeof(ps), "%d", port);
	assert_int_equal(rmig_sock_connect(host, ps, 2000, &fd), 0);
	memset(&m, 0, sizeof(m));
	m.version = RMIG_PROTO_VERSION;
	m.caps = mode == RAW_NO_AUTH ? 0 : RMIG_CAP_AUTH;
	m.session_id = 42;
	m.nchannels = 1;
	m.transport = base().transport;
	m.nblocks = 1;
	strcpy(m.blocks[0].name, "ram");
	m.blocks[0].length = 1 << 20;
	m.blocks[0].page_size = 4096;
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	rmig_auth_hello_hash(buf, (size_t)n, hh);
	assert_int_equal(test_send_ctl(fd, RMIG_MSG_HELLO, buf, (uint32_t)n), 0);
	/* Capture every message until the destination closes. */
	while (cap->n < 64 && !test_recv_ctl(fd, &h, buf)) {
		cap->types[cap->n++] = h.type;
		if (h.type == RMIG_MSG_AUTH_CHALLENGE) {
			struct rmig_msg_auth ch, pr;
			uint8_t pb[64];

			assert_int_equal(rmig_auth_decode(buf, h.len, &ch), 0);
			memset(&pr, 0, sizeof(pr));
			memset(pr.nonce, 7, sizeof(pr.nonce));
			if (mode == RAW_BAD_PROOF)
				rmig_auth_mac((const uint8_t *)key_b, strlen(key_b), RMIG_AUTH_SOURCE, hh,
					      ch.nonce, pr.nonce, pr.mac);
			rmig_auth_encode(&pr, pb, sizeof(pb));
			if (mode == RAW_SKIP_PROOF)
				test_send_ctl(fd, RMIG_MSG_PING, NULL, 0);
			else
				test_send_ctl(fd, RMIG_MSG_AUTH_PROOF, pb,
					      mode == RAW_SHORT_PROOF ? 40 : sizeof(pb));
		}
	}
	close(fd);
}

static void capture_case(enum raw_mode mode, const char *expect)
{
	static uint8_t mem[1 << 20];
	struct rmig_opts o;
	struct dst_run d = { 0 };
	struct capture cap = { .n = 0 };
	pthread_t th;
	char uri[64];

	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.timeout_ms = 2000;
	o.key = key_a;
	o.key_len = strlen(key_a);
	assert_int_equal(rmig_session_create(&o, &d.s), 0);
	assert_int_equal(rmig_add_ram(d.s, "ram", mem, sizeof(mem), 4096), 0);
	snprintf(uri, sizeof(uri), "tcp://%s:0", addr());
	assert_int_equal(rmig_listen(d.s, uri), 0);
	assert_int_equal(pthread_create(&th, NULL, accept_main, &d), 0);
	raw_source(mode, addr(), rmig_listen_port(d.s), &cap);
	pthread_join(th, NULL);
	printf("# destination: %s; it sent", rmig_last_error(d.s));
	for (unsigned int i = 0; i < cap.n; i++)
		printf(" %s", rmig_msg_name(cap.types[i]));
	printf("\n");
	assert_true(d.rc < 0);
	assert_non_null(strstr(rmig_last_error(d.s), expect));
	/* the point: no endpoint, no registration descriptor ever left */
	for (unsigned int i = 0; i < cap.n; i++) {
		assert_int_not_equal(cap.types[i], RMIG_MSG_HELLO_ACK);
		assert_int_not_equal(cap.types[i], RMIG_MSG_REG);
		assert_true(cap.types[i] == RMIG_MSG_AUTH_CHALLENGE ||
			    cap.types[i] == RMIG_MSG_ERROR);
	}
	assert_true(cap.n >= 1);
	assert_int_equal(cap.types[cap.n - 1], RMIG_MSG_ERROR);
	rmig_session_destroy(d.s);
}

/* ---- stray connections before the real source ---- */

struct dst_full {
	rmig_session *s;
	int accept_rc, rc;
};

static void *dst_full_main(void *arg)
{
	struct dst_full *d = arg;

	d->accept_rc = rmig_accept(d->s);
	d->rc = d->accept_rc ? d->accept_rc : rmig_complete(d->s);
	return NULL;
}

struct trickle {
	int fd;
	pthread_t th;
};

/* A valid HELLO, one byte every 100 ms: each byte would restart a per-byte wait. */
static void *trickle_main(void *arg)
{
	struct trickle *t = arg;
	static struct rmig_msg_hello m;
	uint8_t buf[512], hdr[RMIG_CTL_HDR_LEN];
	int n;

	memset(&m, 0, sizeof(m));
	m.version = RMIG_PROTO_VERSION;
	m.caps = RMIG_CAP_AUTH;
	m.nchannels = 1;
	m.transport = RMIG_TRANSPORT_TCP;
	m.nblocks = 1;
	strcpy(m.blocks[0].name, "ram");
	m.blocks[0].length = 4 << 20;
	m.blocks[0].page_size = 4096;
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	rmig_ctl_hdr_encode(hdr, RMIG_MSG_HELLO, (uint32_t)n);
	for (int i = 0; i < (int)sizeof(hdr) + n; i++) {
		uint8_t b = i < (int)sizeof(hdr) ? hdr[i] : buf[i - (int)sizeof(hdr)];
		struct timespec ts = { 0, 100000000 };

		if (send(t->fd, &b, 1, MSG_NOSIGNAL) != 1)
			break;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int connect_raw(int port)
{
	char ps[16];
	int fd = -1;

	snprintf(ps, sizeof(ps), "%d", port);
	/* -1 once a first-come destination has failed and stopped listening */
	if (rmig_sock_connect(addr(), ps, 2000, &fd))
		return -1;
	return fd;
}

/*
 * Before the real source: a port scan (connect and close, and a reset), a
 * client of another protocol, 40 idle connections (more than the
 * destination proves at once), a client that trickles its HELLO, and, when
 * @wrong_key, a source with the wrong key. With a key the destination refuses
 * each and serves the real source. Without one the strays are refused too,
 * but the first connection that sends a HELLO is the source (first come):
 * the source with a key, which this destination lacks, fails the session.
 * That is the negative control.
 */
static void strays_then_source(bool keyed, bool wrong_key)
{
	enum { IDLE = 40 };
	struct pair_cfg c = base();
	struct rmig_opts o;
	struct dst_full d = { 0 };
	struct trickle tr;
	rmig_session *wrong, *src;
	uint8_t *smem = guarded_alloc(c.len), *dmem = guarded_alloc(c.len);
	int idle[IDLE], port, rc;
	pthread_t th;
	char uri[128];

	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.timeout_ms = 4000;
	o.key = keyed ? key_a : NULL;
	o.key_len = keyed ? strlen(key_a) : 0;
	o.transport = c.transport;
	assert_int_equal(rmig_session_create(&o, &d.s), 0);
	assert_int_equal(rmig_add_ram(d.s, "ram", dmem, c.len, 4096), 0);
	snprintf(uri, sizeof(uri), "tcp://%s:0", addr());
	assert_int_equal(rmig_listen(d.s, uri), 0);
	port = rmig_listen_port(d.s);
	assert_int_equal(pthread_create(&th, NULL, dst_full_main, &d), 0);

	for (int i = 0; i < 3; i++) { /* port scan: connect, close */
		int fd = connect_raw(port);

		if (fd >= 0)
			close(fd);
	}
	{
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		int fd = connect_raw(port);

		if (fd >= 0) {
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fd); /* RST */
		}
	}
	{ /* another protocol's client */
		static const char get[] = "GET / HTTP/1.0\r\n\r\n";
		int fd = connect_raw(port);

		if (fd >= 0) {
			(void)!send(fd, get, sizeof(get) - 1, MSG_NOSIGNAL);
			close(fd);
		}
	}
	for (int i = 0; i < IDLE; i++)
		idle[i] = connect_raw(port);
	tr.fd = connect_raw(port);
	if (tr.fd >= 0)
		assert_int_equal(pthread_create(&tr.th, NULL, trickle_main, &tr), 0);

	o.role = RMIG_ROLE_SOURCE;
	o.channels = 2;
	o.key = key_b;
	o.key_len = strlen(key_b);
	snprintf(uri, sizeof(uri), "%s:%d", addr(), port);
	if (wrong_key) {
		assert_int_equal(rmig_session_create(&o, &wrong), 0);
		assert_int_equal(rmig_add_ram(wrong, "ram", smem, c.len, 4096), 0);
		rc = rmig_connect(wrong, uri);
		printf("# wrong key: %d %s\n", rc, rmig_last_error(wrong));
		assert_true(rc < 0);
		rmig_session_destroy(wrong);
	}

	fill_random(smem, c.len, 99);
	o.key = keyed ? key_a : NULL;
	o.key_len = keyed ? strlen(key_a) : 0;
	assert_int_equal(rmig_session_create(&o, &src), 0);
	assert_int_equal(rmig_add_ram(src, "ram", smem, c.len, 4096), 0);
	rc = rmig_connect(src, uri);
	if (!rc)
		rc = rmig_send_range(src, "ram", 0, c.len);
	if (!rc)
		rc = rmig_complete(src);
	printf("# real source: %d %s\n", rc, rmig_last_error(src));
	pthread_join(th, NULL);
	printf("# destination: %d %s\n", d.rc, rmig_last_error(d.s));
	if (keyed || !wrong_key) {
		assert_int_equal(rc, 0);
		assert_int_equal(d.rc, 0);
		assert_memory_equal(smem, dmem, c.len);
	} else {
		assert_int_not_equal(d.accept_rc, 0);
		assert_non_null(strstr(rmig_last_error(d.s), "it has a key, but this destination "
							      "has none"));
		assert_int_not_equal(rc, 0);
	}
	for (int i = 0; i < IDLE; i++)
		if (idle[i] >= 0)
			close(idle[i]);
	if (tr.fd >= 0) {
		shutdown(tr.fd, SHUT_RDWR);
		pthread_join(tr.th, NULL);
		close(tr.fd);
	}
	rmig_session_destroy(src);
	rmig_session_destroy(d.s);
	guarded_free(smem, c.len);
	guarded_free(dmem, c.len);
}

static void test_strays_then_source(void **state)
{
	(void)state;
	strays_then_source(true, true);
}

static void test_strays_then_source_without_key(void **state)
{
	(void)state;
	strays_then_source(false, false);
}

static void test_first_hello_without_key(void **state)
{
	(void)state;
	strays_then_source(false, true);
}

/* A client that trickles its HELLO is cut off by the message deadline, not per byte. */
static void test_trickling_hello(void **state)
{
	struct rmig_opts o;
	rmig_session *d;
	struct trickle tr;
	uint8_t *mem = guarded_alloc(4 << 20);
	uint64_t t0;
	char uri[64];
	int rc;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.timeout_ms = 1000;
	assert_int_equal(rmig_session_create(&o, &d), 0);
	assert_int_equal(rmig_add_ram(d, "ram", mem, 4 << 20, 4096), 0);
	snprintf(uri, sizeof(uri), "tcp://%s:0", addr());
	assert_int_equal(rmig_listen(d, uri), 0);
	tr.fd = connect_raw(rmig_listen_port(d));
	assert_int_equal(pthread_create(&tr.th, NULL, trickle_main, &tr), 0);
	t0 = rmig_mono_ns();
	rc = rmig_accept(d);
	printf("# destination: %s (%.2f s)\n", rmig_last_error(d), (rmig_mono_ns() - t0) / 1e9);
	assert_int_equal(rc, -ETIMEDOUT);
	/* a stray: its own deadline or the wait's, whichever ends first (both ~1 s) */
	assert_true(strstr(rmig_last_error(d), "waiting for HELLO: timed out") ||
		    strstr(rmig_last_error(d), "still in the handshake when the wait ended"));
	/* the HELLO takes over 10 s at this pace; the message deadline is 1 s */
	assert_true(rmig_mono_ns() - t0 < 2500000000ull);
	shutdown(tr.fd, SHUT_RDWR);
	pthread_join(tr.th, NULL);
	close(tr.fd);
	rmig_session_destroy(d);
	guarded_free(mem, 4 << 20);
}

static void test_capture_no_auth(void **state)
{
	(void)state;
	capture_case(RAW_NO_AUTH, "this destination requires a key and the source has none");
}

static void test_capture_bad_proof(void **state)
{
	(void)state;
	capture_case(RAW_BAD_PROOF, "the source's key does not match");
}

static void test_capture_zero_proof(void **state)
{
	(void)state;
	capture_case(RAW_ZERO_PROOF, "the source's key does not match");
}

static void test_capture_skip_proof(void **state)
{
	(void)state;
	capture_case(RAW_SKIP_PROOF, "expected AUTH_PROOF, got PING");
}

static void test_capture_short_proof(void **state)
{
	(void)state;
	capture_case(RAW_SHORT_PROOF, "malformed AUTH_PROOF (40 bytes)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mac),
		cmocka_unit_test(test_key_length),
		cmocka_unit_test(test_same_key),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_source_without_key),
		cmocka_unit_test(test_destination_without_key),
		cmocka_unit_test(test_trickling_hello),
		cmocka_unit_test(test_strays_then_source),
		cmocka_unit_test(test_strays_then_source_without_key),
		cmocka_unit_test(test_first_hello_without_key),
		cmocka_unit_test(test_capture_no_auth),
		cmocka_unit_test(test_capture_bad_proof),
		cmocka_unit_test(test_capture_zero_proof),
		cmocka_unit_test(test_capture_skip_proof),
		cmocka_unit_test(test_capture_short_proof),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
