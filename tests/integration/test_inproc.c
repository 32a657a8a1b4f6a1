/* SPDX-License-Identifier: MIT */
/*
 * test_inproc.c - two sessions in one process over a real transport (TCP by
 * default; RMIG_TEST_TRANSPORT=rdma and RMIG_TEST_ADDR select the RDMA run in
 * the soft-RoCE VM). Images: random, sparse, hugepage-sized pages; 1, 2, 4
 * and 8 channels; byte-for-byte comparison; device state; --verify catching
 * a corrupted destination; a control connection handed over as "fd:N".
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "bitmap.h"
#include "testlib.h"

static struct pair_cfg base(unsigned int ch, uint64_t len, uint32_t ps)
{
	const char *t = getenv("RMIG_TEST_TRANSPORT");
	struct pair_cfg c = { .channels = ch, .len = len, .page_size = ps, .timeout_ms = 20000 };

	c.transport = t && !strcmp(t, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	c.addr = getenv("RMIG_TEST_ADDR");
	return c;
}

/* Send all of an open pair's block, complete, and compare byte for byte. */
static void move_all(struct pair *p)
{
	memset(p->dmem, 0x5a, p->cfg.len);
	assert_int_equal(rmig_send_range(p->src, "ram", 0, p->cfg.len), 0);
	assert_int_equal(rmig_complete(p->src), 0);
	assert_int_equal(pair_join(p), 0);
	assert_memory_equal(p->smem, p->dmem, p->cfg.len);
}

static void migrate(struct pair_cfg c, void (*fill)(uint8_t *, uint64_t))
{
	struct rmig_stats st;
	struct pair p;

	assert_int_equal(pair_open(&p, &c), 0);
	fill(p.smem, c.len);
	move_all(&p);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.handled, c.len);
	assert_int_equal(st.channels, c.channels);
	assert_int_equal(st.transport, c.transport); /* no silent fallback */
	pair_close(&p);
}

static void random_fill(uint8_t *p, uint64_t len)
{
	fill_random(p, len, len);
}

static void sparse_fill(uint8_t *p, uint64_t len)
{
	fill_sparse(p, len, 4096, 37, 5);
}

/* Two destination blocks over one range would each take the other's pages. */
static void test_dest_blocks_overlap(void **state)
{
	uint8_t *mem = guarded_alloc(1 << 20);
	struct rmig_opts o;
	rmig_session *s;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.log_fn = NULL;
	o.role = RMIG_ROLE_DEST;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "a", mem, 512 << 10, 4096), 0);
	assert_int_equal(rmig_add_ram(s, "b", mem + (256 << 10), 512 << 10, 4096), -EINVAL);
	assert_int_equal(rmig_add_ram(s, "c", mem + (512 << 10), 512 << 10, 4096), 0);
	rmig_session_destroy(s);
	/* the control: a source may read one range twice */
	o.role = RMIG_ROLE_SOURCE;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "a", mem, 512 << 10, 4096), 0);
	assert_int_equal(rmig_add_ram(s, "b", mem + (256 << 10), 512 << 10, 4096), 0);
	rmig_session_destroy(s);
	guarded_free(mem, 1 << 20);
}

static void test_channels_random(void **state)
{
	static const unsigned int chans[] = { 1, 2, 4, 8 };

	(void)state;
	for (unsigned int i = 0; i < 4; i++)
		migrate(base(chans[i], 24 << 20, 4096), random_fill);
}

static void test_channels_sparse(void **state)
{
	static const unsigned int chans[] = { 1, 2, 4, 8 };

	(void)state;
	for (unsigned int i = 0; i < 4; i++)
		migrate(base(chans[i], 32 << 20, 4096), sparse_fill);
}

/*
 * A destination that reads as zero (RMIG_F_ZEROED): zero pages never sent
 * are skipped, but a page sent with data and zero in a later round must
 * still be cleared there. The control: the same rounds into a destination
 * that is not zero where the flag says it is keeps the stale bytes.
 */
static void zeroed_rounds(bool dirty_dest, bool expect_equal)
{
	struct pair_cfg c = base(4, 8 << 20, 4096);
	struct pair p;
	uint64_t half = 4 << 20;

	c.flags = RMIG_F_ZEROED | RMIG_F_VERIFY;
	assert_int_equal(pair_open(&p, &c), 0);
	if (dirty_dest)
		memset(p.dmem + half, 0x77, 4096); /* not zero, though the flag says so */
	fill_random(p.smem, half, 5);          /* the upper half is zero */
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	memset(p.smem + 4096, 0, 3 * 4096);   /* data pages that became zero */
	assert_int_equal(rmig_send_range(p.src, "ram", 0, half), 0);
	rmig_complete(p.src);
	pair_join(&p);
	if (expect_equal)
		assert_memory_equal(p.smem, p.dmem, c.len);
	else
		assert_memory_not_equal(p.smem, p.dmem, c.len);
	pair_close(&p);
}

static void test_zeroed_destination(void **state)
{
	struct rmig_stats st;

	(void)state;
	zeroed_rounds(false, true);
	zeroed_rounds(true, false);
	(void)st;
}

/* Each channel says where it runs; RMIG_F_NO_BIND says only the device. */
static void placement(bool no_bind)
{
	struct pair_cfg c = base(2, 1 << 20, 4096);
	struct rmig_chan_place pl;
	struct pair p;

	c.flags = no_bind ? RMIG_F_NO_BIND : 0;
	assert_int_equal(pair_open(&p, &c), 0);
	for (unsigned int i = 0; i < 2; i++) {
		memset(&pl, 0x7f, sizeof(pl));
		assert_int_equal(rmig_get_placement(p.src, i, &pl, sizeof(pl)), 0);
		if (c.transport == RMIG_TRANSPORT_TCP && (!c.addr || !strcmp(c.addr, "127.0.0.1")))
			assert_string_equal(pl.device, "lo");
		assert_true(pl.device[0] != '\0');
		if (no_bind) {
			assert_string_equal(pl.cpus, "");
			assert_int_equal(pl.numa_node, -1);
		} else {
			assert_true(pl.cpus[0] >= '0' && pl.cpus[0] <= '9');
			assert_true(pl.numa_node >= -1);
		}
		/* soft-RoCE and loopback have no locality: nothing to bind to */
		assert_int_equal(pl.bound, 0);
	}
	assert_int_equal(rmig_get_placement(p.src, 2, &pl, sizeof(pl)), -EINVAL);
	assert_int_equal(rmig_get_placement(p.src, 0, NULL, sizeof(pl)), -EINVAL);
	/* an older, smaller struct gets its leading fields */
	memset(&pl, 0, sizeof(pl));
	assert_int_equal(rmig_get_placement(p.src, 1, &pl, offsetof(struct rmig_chan_place, cpus)), 0);
	assert_true(pl.device[0] != '\0');
	assert_string_equal(pl.cpus, "");
	memset(p.smem, 0xa5, c.len);
	move_all(&p);
	assert_int_equal(rmig_get_placement(p.dst, 0, &pl, sizeof(pl)), 0);
	assert_true(pl.device[0] != '\0');
	pair_close(&p);
}

static void test_placement(void **state)
{
	rmig_session *s = NULL;
	struct rmig_opts o;
	struct rmig_chan_place pl;

	(void)state;
	/* before the channels are open there is nothing to say */
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_get_placement(s, 0, &pl, sizeof(pl)), -EINVAL);
	rmig_session_destroy(s);
	placement(false);
	placement(true);
}

/*
 * Two rails: the channels alternate between the control connection's
 * address and a second one (TCP: 127.0.0.2; in the soft-RoCE VM the
 * address of a second device, RMIG_TEST_ADDR2), every rail carries bytes,
 * and the destination is byte-identical.
 */
static void test_rails(void **state)
{
	const char *a2 = getenv("RMIG_TEST_ADDR2");
	struct pair_cfg c = base(4, 8 << 20, 4096);
	struct rmig_chan_place pl;
	struct rmig_stats st;
	uint64_t rail_bytes[2] = { 0, 0 };
	char rail0[48] = "";
	struct pair p;

	(void)state;
	if (c.transport == RMIG_TRANSPORT_RDMA && !a2) {
		printf("# rails: no RMIG_TEST_ADDR2 for a second RDMA device: skipped\n");
		return;
	}
	c.rails[0] = a2 ? a2 : "127.0.0.2";
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 99);
	move_all(&p);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.transport, c.transport);
	for (unsigned int i = 0; i < 4; i++) {
		assert_int_equal(rmig_get_placement(p.src, i, &pl, sizeof(pl)), 0);
		assert_int_equal(pl.rail, i % 2);
		if (pl.rail)
			assert_string_equal(pl.rail_addr, c.rails[0]);
		else
			snprintf(rail0, sizeof(rail0), "%s", pl.rail_addr);
		rail_bytes[pl.rail] += st.chan[i].bytes;
		/* the destination put the same channel on the same rail */
		assert_int_equal(rmig_get_placement(p.dst, i, &pl, sizeof(pl)), 0);
		assert_int_equal(pl.rail, i % 2);
	}
	printf("# rails: %s %llu bytes, %s %llu bytes\n", rail0,
	       (unsigned long long)rail_bytes[0], c.rails[0], (unsigned long long)rail_bytes[1]);
	assert_true(rail_bytes[0] > 0 && rail_bytes[1] > 0);
	assert_int_equal(rail_bytes[0] + rail_bytes[1], st.bytes);
	pair_close(&p);

	/* one channel: one rail used, the other never opened */
	c = base(1, 1 << 20, 4096);
	c.rails[0] = a2 ? a2 : "127.0.0.2";
	assert_int_equal(pair_open(&p, &c), 0);
	memset(p.smem, 7, c.len);
	move_all(&p);
	assert_int_equal(rmig_get_placement(p.src, 0, &pl, sizeof(pl)), 0);
	assert_int_equal(pl.rail, 0);
	pair_close(&p);
}

/* rmig_listen_add: what it refuses */
static void test_rails_api(void **state)
{
	rmig_session *s = NULL;
	struct rmig_opts o;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_listen_add(s, "127.0.0.2"), -EINVAL); /* a source */
	rmig_session_destroy(s);
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_listen_add(s, NULL), -EINVAL);
	assert_int_equal(rmig_listen_add(s, ""), -EINVAL);
	assert_int_equal(rmig_listen_add(s, "127.0.0.2:notaport"), -EINVAL);
	assert_int_equal(rmig_listen_add(s, "127.0.0.2:70000"), -EINVAL);
	assert_int_equal(rmig_listen_add(s, "[::1"), -EINVAL);
	assert_int_equal(rmig_listen_add(s, "192.0.2.1"), -EADDRNOTAVAIL); /* not this host's */
	assert_int_equal(rmig_listen_add(s, "127.0.0.2:0"), 0);
	assert_int_equal(rmig_listen_add(s, "tcp://127.0.0.3"), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(rmig_listen_add(s, "127.0.0.9"), 0);
	assert_int_equal(rmig_listen_add(s, "127.0.0.10"), -ENOSPC); /* 8 with rail 0 */
	rmig_session_destroy(s);
}

static void test_hugepage_sized(void **state)
{
	(void)state;
	/* 2 MiB pages: extents and zero detection at huge-page granularity */
	migrate(base(4, 64 << 20, 2 << 20), sparse_fill);
	migrate(base(2, 16 << 20, 2 << 20), random_fill);
}

static void test_rounds_and_bitmap(void **state)
{
	struct pair_cfg c = base(4, 8 << 20, 4096);
	uint64_t npages = c.len / 4096;
	unsigned long *map = calloc(rmig_bitmap_longs(npages), sizeof(unsigned long));
	struct pair p;

	(void)state;
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 1);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	for (int round = 2; round < 6; round++) {
		memset(map, 0, rmig_bitmap_longs(npages) * sizeof(unsigned long));
		for (uint64_t pg = (uint64_t)round; pg < npages; pg += (uint64_t)round * 3) {
			fill_random(p.smem + pg * 4096, 4096, pg * 131 + (uint64_t)round);
			rmig_bit_set(map, pg);
		}
		assert_int_equal(rmig_send_bitmap(p.src, "ram", map), 0);
		assert_int_equal(rmig_sync(p.src), 0);
		assert_memory_equal(p.smem, p.dmem, c.len);
	}
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	pair_close(&p);
	free(map);
}

struct blobs {
	pthread_mutex_t lock;
	uint8_t *data[4];
	uint64_t len[4];
	int good;
};

static int load(void *arg, const char *name, uint32_t instance, const void *data, uint64_t len)
{
	struct blobs *b = arg;

	pthread_mutex_lock(&b->lock);
	if (instance < 4 && len == b->len[instance] && !strcmp(name, "gpu") &&
	    !memcmp(data, b->data[instance], len))
		b->good++;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void test_device_state_verify(void **state)
{
	struct blobs b = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct pair_cfg c = base(4, 4 << 20, 4096);
	struct pair p;

	(void)state;
	c.state_fn = load;
	c.state_arg = &b;
	c.flags = RMIG_F_VERIFY;
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 77);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	for (uint32_t i = 0; i < 4; i++) {
		b.len[i] = (uint64_t)(i + 1) * 3 * 1000 * 1000 + i;
		b.data[i] = malloc(b.len[i]);
		fill_random(b.data[i], b.len[i], i);
		assert_int_equal(rmig_send_state(p.src, "gpu", i, b.data[i], b.len[i]), 0);
	}
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_int_equal(b.good, 4);
	assert_memory_equal(p.smem, p.dmem, c.len);
	pair_close(&p);
	for (int i = 0; i < 4; i++)
		free(b.data[i]);
}

static void test_verify_detects_corruption(void **state)
{
	struct pair_cfg c = base(2, 1 << 20, 4096);
	struct pair p;
	int rc;

	(void)state;
	c.flags = RMIG_F_VERIFY;
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 3);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	/* every byte is placed: now damage one behind the transport's back */
	assert_memory_equal(p.smem, p.dmem, c.len);
	p.dmem[12345] ^= 0xff;
	rc = rmig_complete(p.src);
	printf("# source: %s\n# destination: %s\n", rmig_last_error(p.src), rmig_last_error(p.dst));
	assert_int_equal(rc, -EBADMSG);
	assert_non_null(strstr(rmig_last_error(p.src), "digest mismatch in ram block 'ram'"));
	assert_int_equal(pair_join(&p), -EBADMSG);
	pair_close(&p);
}

struct acceptor {
	rmig_session *s;
	int rc;
};

static void *accept_main(void *arg)
{
	struct acceptor *a = arg;

	a->rc = rmig_accept(a->s);
	return NULL;
}

static void test_layout_mismatch(void **state)
{
	static uint8_t mem[2 << 20];
	const char *addr = getenv("RMIG_TEST_ADDR") ? getenv("RMIG_TEST_ADDR") : "127.0.0.1";
	struct rmig_opts so, dopt;
	struct acceptor a = { 0 };
	rmig_session *src, *dst;
	pthread_t th;
	char uri[64];

	(void)state;
	rmig_opts_init(&so, sizeof(so));
	so.role = RMIG_ROLE_SOURCE;
	so.log_fn = NULL;
	so.transport = base(1, 0, 0).transport;
	so.timeout_ms = 3000;
	dopt = so;
	dopt.role = RMIG_ROLE_DEST;
	assert_int_equal(rmig_session_create(&so, &src), 0);
	assert_int_equal(rmig_session_create(&dopt, &dst), 0);
	/* the source claims 2 MiB, the destination has 1 MiB */
	assert_int_equal(rmig_add_ram(src, "ram", mem, sizeof(mem), 4096), 0);
	assert_int_equal(rmig_add_ram(dst, "ram", mem, 1 << 20, 4096), 0);
	snprintf(uri, sizeof(uri), "tcp://%s:0", addr);
	assert_int_equal(rmig_listen(dst, uri), 0);
	snprintf(uri, sizeof(uri), "%s:%d", addr, rmig_listen_port(dst));
	a.s = dst;
	assert_int_equal(pthread_create(&th, NULL, accept_main, &a), 0);
	assert_int_equal(rmig_connect(src, uri), -EPROTO);
	pthread_join(th, NULL);
	assert_int_equal(a.rc, -EPROTO);
	assert_non_null(strstr(rmig_last_error(dst), "source 2097152 bytes"));
	assert_non_null(strstr(rmig_last_error(src), "peer reported: refusing the source"));
	rmig_session_destroy(dst);
	rmig_session_destroy(src);
}

/*
 * The control connection handed over as "fd:N" (what a VMM that made its
 * own connection passes): a TCP connection, then the transport's data
 * channels from its addresses; the same with the key, a wrong key
 * refused, and a second rail beside it.
 */
static void fd_case(const char *dkey, const char *skey, const char *rail)
{
	struct pair_cfg c = base(3, 8 << 20, 4096);
	struct rmig_stats st;
	struct pair p;
	int rc;

	c.ctl_pair = c.ctl_tcp = true;
	c.rails[0] = rail;
	c.dst_key = dkey;
	c.dst_key_len = dkey ? strlen(dkey) : 0;
	c.src_key = skey;
	c.src_key_len = skey ? strlen(skey) : 0;
	rc = pair_open(&p, &c);
	if (dkey && skey && strcmp(dkey, skey)) {
		assert_int_equal(rc, -EACCES);
		assert_int_not_equal(pair_join(&p), 0);
		assert_non_null(strstr(rmig_last_error(p.dst), "key"));
		pair_close(&p);
		return;
	}
	assert_int_equal(rc, 0);
	random_fill(p.smem, c.len);
	move_all(&p);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.transport, c.transport);
	if (rail) { /* a second rail beside the handed-over connection's address */
		struct rmig_chan_place pl;
		bool on1 = false;

		for (unsigned int i = 0; i < c.channels; i++) {
			assert_int_equal(rmig_get_placement(p.src, i, &pl, sizeof(pl)), 0);
			on1 |= pl.rail == 1 && st.chan[i].bytes > 0;
		}
		assert_true(on1);
	}
	pair_close(&p);
}

static void test_fd_handed_over(void **state)
{
	const char *rail = getenv("RMIG_TEST_ADDR2");

	(void)state;
	fd_case(NULL, NULL, NULL);
	fd_case("a key of thirty-two bytes or so!", "a key of thirty-two bytes or so!", NULL);
	fd_case("a key of thirty-two bytes or so!", "another key, thirty-two bytes...", NULL);
	if (!rail && base(1, 0, 0).transport == RMIG_TRANSPORT_TCP)
		rail = "127.0.0.2";
	if (rail)
		fd_case(NULL, NULL, rail);
}

/* "fd:N" that is not a connected stream socket: -EINVAL, named, and N stays the caller's. */
static void test_fd_refused(void **state)
{
	static uint8_t mem[1 << 20];
	const char *bad[] = { "fd:", "fd:x", "fd:-1", "fd:3x" };
	struct rmig_opts so, dopt;
	rmig_session *src, *dst;
	char uri[32];
	int pfd[2], ufd;

	(void)state;
	rmig_opts_init(&so, sizeof(so));
	so.role = RMIG_ROLE_SOURCE;
	so.log_fn = NULL;
	dopt = so;
	dopt.role = RMIG_ROLE_DEST;
	assert_int_equal(rmig_session_create(&so, &src), 0);
	assert_int_equal(rmig_session_create(&dopt, &dst), 0);
	assert_int_equal(rmig_add_ram(src, "ram", mem, sizeof(mem), 4096), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(rmig_connect(src, bad[i]), -EINVAL);
		assert_int_equal(rmig_listen(dst, bad[i]), -EINVAL);
	}
	assert_int_equal(pipe(pfd), 0);
	ufd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(ufd >= 0);
	for (int k = 0; k < 3; k++) {
		int fd = k == 0 ? pfd[0] : k == 1 ? ufd : 1000000;

		snprintf(uri, sizeof(uri), "fd:%d", fd);
		assert_int_equal(rmig_connect(src, uri), -EINVAL);
		assert_int_equal(rmig_listen(dst, uri), -EINVAL);
	}
	/* still open: the sessions took nothing they refused */
	assert_true(fcntl(pfd[0], F_GETFD) >= 0);
	assert_true(fcntl(ufd, F_GETFD) >= 0);
	close(pfd[0]);
	close(pfd[1]);
	close(ufd);
	rmig_session_destroy(src);
	rmig_session_destroy(dst);
	/* a good socket, but a source with no blocks: refused, and the socket stays the caller's */
	{
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
		assert_int_equal(rmig_session_create(&so, &src), 0);
		snprintf(uri, sizeof(uri), "fd:%d", sv[0]);
		assert_int_equal(rmig_connect(src, uri), -EINVAL);
		rmig_session_destroy(src);
		assert_true(fcntl(sv[0], F_GETFD) >= 0);
		close(sv[0]);
		close(sv[1]);
	}
	/* a unix socket carries the control connection, but TCP data channels need an address */
	{
		struct pair_cfg c = base(2, 1 << 20, 4096);
		struct pair p;

		if (c.transport != RMIG_TRANSPORT_TCP)
			return;
		c.ctl_pair = true;
		assert_int_not_equal(pair_open(&p, &c), 0);
		assert_int_not_equal(pair_join(&p), 0);
		assert_non_null(strstr(rmig_last_error(p.dst), "not over IP"));
		pair_close(&p);
	}
}

struct quick_dest {
	rmig_session *s;
	int rc;
};

static void *quick_dest_main(void *arg)
{
	struct quick_dest *q = arg;

	q->rc = rmig_accept(q->s);
	if (!q->rc)
		q->rc = rmig_complete(q->s);
	/* Close at once, as a CLI exits: the source must still get its ack. */
	rmig_session_destroy(q->s);
	return NULL;
}

static void test_close_right_after_complete(void **state)
{
	const char *addr = getenv("RMIG_TEST_ADDR") ? getenv("RMIG_TEST_ADDR") : "127.0.0.1";
	uint8_t *src = malloc(1 << 20), *dst = malloc(1 << 20);

	(void)state;
	fill_random(src, 1 << 20, 9);
	for (int i = 0; i < 30; i++) {
		struct rmig_opts so, dopt;
		struct quick_dest q = { 0 };
		rmig_session *s;
		pthread_t th;
		char uri[64];

		rmig_opts_init(&so, sizeof(so));
		so.role = RMIG_ROLE_SOURCE;
		so.log_fn = NULL;
		so.channels = 2;
		so.transport = base(1, 0, 0).transport;
		so.flags = RMIG_F_VERIFY;
		dopt = so;
		dopt.role = RMIG_ROLE_DEST;
		assert_int_equal(rmig_session_create(&so, &s), 0);
		assert_int_equal(rmig_session_create(&dopt, &q.s), 0);
		assert_int_equal(rmig_add_ram(s, "ram", src, 1 << 20, 4096), 0);
		assert_int_equal(rmig_add_ram(q.s, "ram", dst, 1 << 20, 4096), 0);
		snprintf(uri, sizeof(uri), "tcp://%s:0", addr);
		assert_int_equal(rmig_listen(q.s, uri), 0);
		snprintf(uri, sizeof(uri), "%s:%d", addr, rmig_listen_port(q.s));
		assert_int_equal(pthread_create(&th, NULL, quick_dest_main, &q), 0);
		assert_int_equal(rmig_connect(s, uri), 0);
		assert_int_equal(rmig_send_range(s, "ram", 0, 1 << 20), 0);
		assert_int_equal(rmig_complete(s), 0);
		pthread_join(th, NULL);
		assert_int_equal(q.rc, 0);
		rmig_session_destroy(s);
	}
	assert_memory_equal(src, dst, 1 << 20);
	free(src);
	free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dest_blocks_overlap),
		cmocka_unit_test(test_zeroed_destination),
		cmocka_unit_test(test_channels_random),
		cmocka_unit_test(test_channels_sparse),
		cmocka_unit_test(test_hugepage_sized),
		cmocka_unit_test(test_placement),
		cmocka_unit_test(test_rails),
		cmocka_unit_test(test_rails_api),
		cmocka_unit_test(test_rounds_and_bitmap),
		cmocka_unit_test(test_device_state_verify),
		cmocka_unit_test(test_verify_detects_corruption),
		cmocka_unit_test(test_layout_mismatch),
		cmocka_unit_test(test_close_right_after_complete),
		cmocka_unit_test(test_fd_handed_over),
		cmocka_unit_test(test_fd_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
