/* SPDX-License-Identifier: MIT */
/*
 * test_tls.c - TLS on the TCP connections (RMIG_F_TLS).
 *
 * Sessions: TLS migrates byte for byte; TLS on one side only, or TLS with
 * another key, is a clear error on both sides and guest RAM untouched; TLS
 * without a key, or with the RDMA transport, is refused at create.
 *
 * Privacy: a packet capture on the loopback interface (AF_PACKET, needs
 * CAP_NET_RAW; skipped without it) records every TCP payload to and from
 * the destination's own address, 127.0.0.3. Guest RAM holds a marker
 * string. Without TLS the marker must show up in the capture (so the
 * capture works); with TLS it must not, although as many bytes as the RAM
 * crossed the wire.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sess.h"
#include "sock.h"
#include "testlib.h"

static const char key_a[] = "correct horse battery staple";
static const char key_b[] = "correct horse battery stapler";
static const char marker[] = "rmig-tls-test: private guest page contents";

static struct pair_cfg base(void)
{
	struct pair_cfg c = { .channels = 3, .len = 8 << 20, .page_size = 4096, .timeout_ms = 5000 };

	c.src_key = c.dst_key = key_a;
	c.src_key_len = c.dst_key_len = strlen(key_a);
	c.flags = RMIG_F_TLS;
	return c;
}

static void fill_marker(uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		p[i] = (uint8_t)marker[i % (sizeof(marker) - 1)];
}

static void test_tls_migrates(void **state)
{
	struct pair_cfg c = base();
	struct pair p;

	(void)state;
	c.flags |= RMIG_F_VERIFY;
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 7);
	memset(p.smem + (1 << 20), 0, 1 << 20); /* zero pages travel as zero frames */
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_sync(p.src), 0); /* the ordering rule between two rounds */
	/* a second round over part of it: records of every size */
	fill_random(p.smem + 12345, 777777, 8);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, 1 << 20), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, c.len);
	pair_close(&p);
}

/* Open a pair that must fail with @err on both sides, RAM untouched. */
static void refused(struct pair_cfg *c, int err, const char *src_msg, const char *dst_msg)
{
	struct pair p;
	int rc;

	c->timeout_ms = 1500;
	rc = pair_open(&p, c);
	pair_join(&p);
	printf("# source: %s\n# destination: %s\n", rmig_last_error(p.src), rmig_last_error(p.dst));
	assert_int_equal(rc, err);
	/* with a key (TLS needs one) the destination refuses it and waits on */
	assert_int_equal(p.accept_rc, -ETIMEDOUT);
	assert_non_null(strstr(rmig_last_error(p.dst), "refused 1 connection, the last"));
	assert_non_null(strstr(rmig_last_error(p.src), src_msg));
	assert_non_null(strstr(rmig_last_error(p.dst), dst_msg));
	for (uint64_t i = 0; i < c->len; i++)
		if (p.dmem[i])
			fail_msg("destination RAM changed at %llu", (unsigned long long)i);
	pair_close(&p);
}

static void test_tls_destination_only(void **state)
{
	struct pair_cfg c = base();

	(void)state;
	c.src_drop = RMIG_F_TLS;
	refused(&c, -EPROTONOSUPPORT, "the peer speaks rmig without TLS",
		"the peer speaks rmig without TLS");
}

static void test_tls_source_only(void **state)
{
	struct pair_cfg c = base();

	(void)state;
	c.dst_drop = RMIG_F_TLS;
	refused(&c, -EPROTONOSUPPORT, "the peer speaks rmig without TLS",
		"the peer speaks TLS; run both sides with TLS");
}

static void test_tls_wrong_key(void **state)
{
	struct pair_cfg c = base();

	(void)state;
	c.src_key = key_b;
	c.src_key_len = strlen(key_b);
	refused(&c, -EACCES, "TLS handshake: the peer refused it",
		"TLS handshake: the peer holds a different key");
}

static void test_tls_options(void **state)
{
	struct rmig_opts o;
	rmig_session *s;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.log_fn = NULL;
	o.flags = RMIG_F_TLS;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL); /* no key */
	o.key = key_a;
	o.key_len = strlen(key_a);
	o.transport = RMIG_TRANSPORT_RDMA;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL); /* RDMA is not encrypted */
	o.transport = RMIG_TRANSPORT_AUTO;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	rmig_session_destroy(s);
}

/* A raw client at a TLS destination: junk, or silence, fails the accept in time. */
static void raw_client(const char *junk, size_t junk_len, int err, const char *msg)
{
	struct rmig_opts o;
	rmig_session *d;
	uint8_t *ram = guarded_alloc(1 << 20);
	char port[16];
	uint64_t t0;
	int fd;

	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.flags = RMIG_F_TLS;
	o.key = key_a;
	o.key_len = strlen(key_a);
	o.timeout_ms = 1000;
	assert_int_equal(rmig_session_create(&o, &d), 0);
	assert_int_equal(rmig_add_ram(d, "ram", ram, 1 << 20, 4096), 0);
	assert_int_equal(rmig_listen(d, "tcp://127.0.0.1:0"), 0);
	snprintf(port, sizeof(port), "%d", rmig_listen_port(d));
	assert_int_equal(rmig_sock_connect("127.0.0.1", port, 1000, &fd), 0);
	if (junk)
		assert_int_equal(rmig_sock_write_full(fd, junk, junk_len), 0);
	t0 = rmig_now_ns();
	assert_int_equal(rmig_accept(d), err);
	printf("# destination: %s (%.2f s)\n", rmig_last_error(d), (rmig_now_ns() - t0) / 1e9);
	assert_non_null(strstr(rmig_last_error(d), msg));
	assert_true(rmig_now_ns() - t0 < 3000000000ull);
	close(fd);
	rmig_session_destroy(d);
	guarded_free(ram, 1 << 20);
}

static void test_tls_junk_client(void **state)
{
	static const char http[] = "GET / HTTP/1.0\r\n\r\n";
	/* a well-formed record header, then a handshake message of unknown type 0x7f */
	static const char rec[] = "\x16\x03\x01\x00\x04\x7f\x00\x00\x00";

	(void)state;
	raw_client(http, sizeof(http) - 1, -ETIMEDOUT, "TLS handshake: http request");
	raw_client(rec, sizeof(rec) - 1, -ETIMEDOUT, "TLS handshake: ");
}

static void test_tls_silent_client(void **state)
{
	(void)state;
	/* its own deadline and the wait's end at once: refused, or cut off in the handshake */
	raw_client(NULL, 0, -ETIMEDOUT, "with no source that holds the key; refused 1 connection");
}

/* ---- capture ---- */

#define CAP_ADDR "127.0.0.3"

struct capture {
	int fd;
	pthread_t th;
	atomic_bool stop;
	uint64_t bytes; /* TCP payload to or from CAP_ADDR */
	uint64_t hits;  /* payloads that hold the marker */
};

static void *capture_main(void *arg)
{
	struct capture *cap = arg;
	size_t blen = 256 << 10;
	uint8_t *buf = malloc(blen);
	in_addr_t want = inet_addr(CAP_ADDR);

	while (buf) {
		struct pollfd pfd = { .fd = cap->fd, .events = POLLIN };
		/* once told to stop, read what is queued still, then end */
		bool stopping = atomic_load(&cap->stop);
		const uint8_t *ip, *tcp;
		ssize_t n;
		size_t ihl, doff;
		in_addr_t a, b;

		if (poll(&pfd, 1, stopping ? 0 : 50) <= 0) {
			if (stopping)
				break;
			continue;
		}
		n = recv(cap->fd, buf, blen, MSG_DONTWAIT);
		if (n < 20)
			continue;
		ip = buf;
		ihl = (size_t)(ip[0] & 0xf) * 4;
		if ((ip[0] >> 4) != 4 || ip[9] != IPPROTO_TCP || (size_t)n < ihl + 20)
			continue;
		memcpy(&a, ip + 12, 4);
		memcpy(&b, ip + 16, 4);
		if (a != want && b != want)
			continue;
		tcp = ip + ihl;
		doff = (size_t)(tcp[12] >> 4) * 4;
		if ((size_t)n <= ihl + doff)
			continue;
		cap->bytes += (uint64_t)n - ihl - doff;
		if (memmem(tcp + doff, (size_t)n - ihl - doff, marker, sizeof(marker) - 1))
			cap->hits++;
	}
	free(buf);
	return NULL;
}

/* 0, or -1 (and the test is skipped) without the right to capture. */
static int capture_start(struct capture *cap)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP) };
	int rcvbuf = 64 << 20;

	memset(cap, 0, sizeof(*cap));
	cap->fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
	if (cap->fd < 0) {
		printf("# no packet capture here (%s): skipped\n", strerror(errno));
		return -1;
	}
	sll.sll_ifindex = (int)if_nametoindex("lo");
	(void)!setsockopt(cap->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	assert_int_equal(bind(cap->fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	assert_int_equal(pthread_create(&cap->th, NULL, capture_main, cap), 0);
	return 0;
}

static void capture_stop(struct capture *cap)
{
	usleep(100000); /* the last segments */
	atomic_store(&cap->stop, true);
	pthread_join(cap->th, NULL);
	close(cap->fd);
}

static void capture_run(unsigned int flags, struct capture *cap)
{
	struct pair_cfg c = base();
	struct pair p;

	c.flags = flags;
	c.addr = CAP_ADDR;
	if (capture_start(cap))
		skip();
	assert_int_equal(pair_open(&p, &c), 0);
	fill_marker(p.smem, c.len);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, c.len);
	pair_close(&p);
	capture_stop(cap);
	printf("# %s: captured %llu payload bytes, %llu with the marker\n",
	       flags & RMIG_F_TLS ? "tls" : "plain", (unsigned long long)cap->bytes,
	       (unsigned long long)cap->hits);
}

static void test_capture_plain_shows_data(void **state)
{
	struct capture cap;

	(void)state;
	capture_run(0, &cap);
	assert_true(cap.hits > 0);
}

static void test_capture_tls_hides_data(void **state)
{
	struct capture cap;

	(void)state;
	capture_run(RMIG_F_TLS, &cap);
	/* most of the RAM crossed the wire while the capture was looking */
	assert_true(cap.bytes >= (8u << 20) / 2);
	assert_int_equal(cap.hits, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_migrates),
		cmocka_unit_test(test_tls_destination_only),
		cmocka_unit_test(test_tls_source_only),
		cmocka_unit_test(test_tls_wrong_key),
		cmocka_unit_test(test_tls_options),
		cmocka_unit_test(test_tls_junk_client),
		cmocka_unit_test(test_tls_silent_client),
		cmocka_unit_test(test_capture_plain_shows_data),
		cmocka_unit_test(test_capture_tls_hides_data),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
