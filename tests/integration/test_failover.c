/* SPDX-License-Identifier: MIT */
/*
 * test_failover.c - a rail fails mid-migration and the session goes on
 * through the other one, within the session (failover.c): the pages the
 * failed rail may have lost go again, and the destination ends
 * byte-identical. Two rails: TCP over 127.0.0.1 and 127.0.0.2, or in the
 * soft-RoCE VM RDMA over RMIG_TEST_ADDR and RMIG_TEST_ADDR2. A rail's link
 * breaks as rmig_sess_test_cut_rail() shuts its transport down on one side.
 *
 * When the last rail fails, the channels go on over TCP to the control
 * connection's address (the TCP fallback), in the same session.
 *
 * Negative controls: with the re-send left out, the destination differs
 * (after a failover, and after the fallback); with the fallback refused
 * (nothing listens where the destination says), or a source that does not
 * take RAIL_DOWN (an earlier release), the migration fails, naming the
 * cause.
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
#include <time.h>

#include <cmocka.h>

#include "bitmap.h"
#include "sess.h"
#include "testlib.h"

#define LEN (32ull << 20)
#define PS 4096ull
#define NPAGES (LEN / PS)

static bool two_rails(struct pair_cfg *c)
{
	const char *t = getenv("RMIG_TEST_TRANSPORT");
	const char *a2 = getenv("RMIG_TEST_ADDR2");

	memset(c, 0, sizeof(*c));
	c->channels = 4;
	c->len = LEN;
	c->page_size = PS;
	c->timeout_ms = 4000;
	c->transport = t && !strcmp(t, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	c->addr = getenv("RMIG_TEST_ADDR");
	/* 32 MiB at 64 MiB/s: half a second, and the cut comes in the middle */
	c->max_bandwidth = 64ull << 20;
	if (c->transport == RMIG_TRANSPORT_RDMA && !a2) {
		printf("# no RMIG_TEST_ADDR2 for a second RDMA device: skipped\n");
		return false;
	}
	c->rails[0] = a2 ? a2 : "127.0.0.2";
	return true;
}

/* Open the pair of @c, the source random (@seed), the destination 0x5a throughout. */
static void open_filled(struct pair *p, const struct pair_cfg *c, unsigned int seed)
{
	assert_int_equal(pair_open(p, c), 0);
	fill_random(p->smem, LEN, seed);
	memset(p->dmem, 0x5a, LEN);
}

struct sender {
	struct pair *p;
	pthread_t th;
	uint64_t from, len;
	int rc;
};

static void *send_main(void *arg)
{
	struct sender *x = arg;

	x->rc = rmig_send_range(x->p->src, "ram", x->from, x->len);
	if (!x->rc)
		x->rc = rmig_sync(x->p->src);
	return NULL;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Send [@from, @from + @len) on a thread; @ms in, rail @rail breaks on @side. */
static int send_and_cut_rail(struct pair *p, uint64_t from, uint64_t len, rmig_session *side,
			     unsigned int rail, unsigned int ms)
{
	struct sender x = { .p = p, .from = from, .len = len };

	assert_int_equal(pthread_create(&x.th, NULL, send_main, &x), 0);
	sleep_ms(ms);
	rmig_sess_test_cut_rail(side, rail);
	pthread_join(x.th, NULL);
	return x.rc;
}

/* The same, rail 1. */
static int send_and_cut(struct pair *p, uint64_t from, uint64_t len, rmig_session *side,
			unsigned int ms)
{
	return send_and_cut_rail(p, from, len, side, 1, ms);
}

static uint64_t rail_bytes(rmig_session *s, unsigned int rail)
{
	struct rmig_stats st;

	rmig_get_stats(s, &st);
	return st.rail_bytes[rail];
}

/* The rails' bytes add up to the channels'. */
static void assert_rail_bytes_add_up(rmig_session *s)
{
	struct rmig_stats st;
	uint64_t rails = 0, chans = 0;

	rmig_get_stats(s, &st);
	for (unsigned int r = 0; r < RMIG_RAILS_MAX; r++)
		rails += st.rail_bytes[r];
	for (unsigned int i = 0; i < st.channels; i++)
		chans += st.chan[i].bytes;
	assert_true(chans > 0);
	assert_true(rails == chans);
}

/*
 * The whole image with rail 1 cut on @dst_side's end: byte-identical, one
 * failover each side. Only rail 1's pages go again (rail 0 is intact): as
 * many as rail 1 carried since the start at most, with its lost job.
 */
static void cut_whole(bool dst_side)
{
	struct rmig_stats st, dt;
	struct pair_cfg c;
	struct pair p;

	if (!two_rails(&c))
		return;
	c.flags = RMIG_F_VERIFY;
	open_filled(&p, &c, 11);
	assert_int_equal(send_and_cut(&p, 0, LEN, dst_side ? p.dst : p.src, 150), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, LEN);
	rmig_get_stats(p.src, &st);
	rmig_get_stats(p.dst, &dt);
	printf("# cut on the %s: rail 0 %llu bytes, rail 1 %llu bytes, %llu pages again\n",
	       dst_side ? "destination" : "source", (unsigned long long)rail_bytes(p.src, 0),
	       (unsigned long long)rail_bytes(p.src, 1), (unsigned long long)st.failover_pages);
	assert_int_equal(st.failovers, 1);
	assert_int_equal(dt.failovers, 1);
	assert_true(st.failover_pages > 0);
	assert_true(st.failover_pages < NPAGES);
	assert_true(rail_bytes(p.src, 0) > rail_bytes(p.src, 1));
	assert_rail_bytes_add_up(p.src);
	pair_close(&p);
}

static void test_cut_source(void **state)
{
	(void)state;
	cut_whole(false);
}

static void test_cut_destination(void **state)
{
	(void)state;
	cut_whole(true);
}

/*
 * The re-send is bounded by the last acknowledged sync: the first half
 * synced, the cut in the second, and only pages of the second half go
 * again. (Two syncs: a page posted while a sync is in flight counts as
 * held only at the next one, see resume.c.)
 */
static void test_resend_bounded_by_sync(void **state)
{
	struct rmig_stats st;
	struct pair_cfg c;
	struct pair p;

	(void)state;
	if (!two_rails(&c))
		return;
	open_filled(&p, &c, 12);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, LEN / 2), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	assert_int_equal(send_and_cut(&p, LEN / 2, LEN / 2, p.src, 100), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, LEN);
	rmig_get_stats(p.src, &st);
	printf("# %llu of the second half's %llu pages went again\n",
	       (unsigned long long)st.failover_pages, (unsigned long long)(NPAGES / 2));
	assert_int_equal(st.failovers, 1);
	assert_true(st.failover_pages > 0 && st.failover_pages <= NPAGES / 2);
	pair_close(&p);
}

/* Negative control: the same cut with the re-send left out leaves the destination wrong. */
static void test_no_resend_differs(void **state)
{
	struct pair_cfg c;
	struct pair p;

	(void)state;
	if (!two_rails(&c))
		return;
	open_filled(&p, &c, 13);
	rmig_sess_test_no_resend(p.src, true);
	assert_int_equal(send_and_cut(&p, 0, LEN, p.src, 150), 0);
	assert_int_equal(rmig_complete(p.src), 0); /* no digests asked: nothing notices */
	assert_int_equal(pair_join(&p), 0);
	assert_memory_not_equal(p.smem, p.dmem, LEN);
	pair_close(&p);
}

/* Both rails cut on the source, 0 at once and 1 @ms in; then, the rest sent, complete. */
static int cut_both(struct pair *p, unsigned int ms)
{
	int rc;

	rmig_sess_test_cut_rail(p->src, 0);
	rc = send_and_cut(p, 0, LEN, p->src, ms);
	return rc ? rc : rmig_complete(p->src);
}

/* Rail @r's channels, by the placement each reports. */
static unsigned int rail_channels(rmig_session *s, unsigned int r)
{
	struct rmig_chan_place pl;
	unsigned int n = 0;

	for (unsigned int i = 0; rmig_get_placement(s, i, &pl, sizeof(pl)) == 0; i++)
		n += pl.rail == r;
	return n;
}

/*
 * Both rails cut: nothing of them is left, and the migration goes on over
 * TCP to the control connection's address (rail 2 on both sides), within
 * the session: byte-identical (the digests too), both ends say so.
 */
static void test_all_rails_fall_back_to_tcp(void **state)
{
	struct rmig_stats st, dt;
	struct pair_cfg c;
	struct pair p;

	(void)state;
	if (!two_rails(&c))
		return;
	c.flags = RMIG_F_VERIFY;
	open_filled(&p, &c, 14);
	assert_int_equal(cut_both(&p, 100), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, LEN);
	rmig_get_stats(p.src, &st);
	rmig_get_stats(p.dst, &dt);
	printf("# both rails cut: %llu pages went again over tcp, %llu bytes on it\n",
	       (unsigned long long)st.failover_pages, (unsigned long long)rail_bytes(p.src, 2));
	assert_int_equal(st.tcp_fallbacks, 1);
	assert_int_equal(dt.tcp_fallbacks, 1);
	assert_int_equal(st.failovers, 2);
	assert_int_equal(dt.failovers, 2);
	assert_true(st.failover_pages > 0);
	assert_int_equal(rail_channels(p.src, 2), c.channels);
	assert_int_equal(rail_channels(p.dst, 2), c.channels);
	assert_true(rail_bytes(p.src, 2) > 0);
	/* what went over RDMA before the cut counts there, not on the TCP rail */
	assert_true(rail_bytes(p.src, 0) + rail_bytes(p.src, 1) > 0);
	assert_rail_bytes_add_up(p.src);
	pair_close(&p);
}

/*
 * One RDMA rail, cut on the destination's end mid-transfer: the
 * destination sees it first, and the fallback goes the same way. (One TCP
 * rail has no fallback: TCP to the control connection's address is the
 * path that failed; see test_one_tcp_rail_no_fallback.)
 */
static void test_one_rail_falls_back(void **state)
{
	struct rmig_stats st, dt;
	struct pair_cfg c;
	struct pair p;

	(void)state;
	if (!two_rails(&c))
		return;
	if (c.transport != RMIG_TRANSPORT_RDMA) {
		printf("# one tcp rail: no fallback to the same path; skipped (run over rdma)\n");
		return;
	}
	c.rails[0] = NULL;
	c.flags = RMIG_F_VERIFY;
	open_filled(&p, &c, 16);
	assert_int_equal(send_and_cut_rail(&p, 0, LEN, p.dst, 0, 150), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, LEN);
	rmig_get_stats(p.src, &st);
	rmig_get_stats(p.dst, &dt);
	printf("# one rail cut on the destination: %llu pages went again over tcp\n",
	       (unsigned long long)st.failover_pages);
	assert_int_equal(st.tcp_fallbacks, 1);
	assert_int_equal(dt.tcp_fallbacks, 1);
	assert_int_equal(rail_channels(p.src, 1), c.channels);
	pair_close(&p);
}

/*
 * One TCP rail, cut: TCP to the control connection's address is the path
 * that failed, so no fallback; the migration fails, naming the channel.
 */
static void test_one_tcp_rail_no_fallback(void **state)
{
	struct rmig_stats st;
	struct pair_cfg c;
	struct pair p;
	int rc;

	(void)state;
	if (!two_rails(&c))
		return;
	if (c.transport != RMIG_TRANSPORT_TCP) {
		printf("# rdma: the single rail falls back (test_one_rail_falls_back); skipped\n");
		return;
	}
	c.rails[0] = NULL;
	open_filled(&p, &c, 18);
	rc = send_and_cut_rail(&p, 0, LEN, p.src, 0, 150);
	if (!rc)
		rc = rmig_complete(p.src);
	assert_int_not_equal(rc, 0);
	printf("# %s\n", rmig_last_error(p.src));
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.tcp_fallbacks, 0);
	pair_join(&p);
	pair_close(&p);
}

/* Negative control: the fallback with the re-send left out leaves the destination wrong. */
static void test_fallback_no_resend_differs(void **state)
{
	struct rmig_stats st;
	struct pair_cfg c;
	struct pair p;

	(void)state;
	if (!two_rails(&c))
		return;
	open_filled(&p, &c, 17);
	rmig_sess_test_no_resend(p.src, true);
	assert_int_equal(cut_both(&p, 100), 0); /* no digests asked: nothing notices */
	assert_int_equal(pair_join(&p), 0);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.tcp_fallbacks, 1);
	assert_memory_not_equal(p.smem, p.dmem, LEN);
	pair_close(&p);
}

/*
 * Negative control: both rails cut, and TCP cannot reach the destination
 * either (nothing listens where it says): the migration fails, naming
 * that and each rail's cause.
 */
static void test_no_rail_left(void **state)
{
	struct pair_cfg c;
	struct pair p;
	int rc;

	(void)state;
	if (!two_rails(&c))
		return;
	c.dst_hook = rmig_sess_test_fallback_refuse;
	open_filled(&p, &c, 14);
	rc = cut_both(&p, 100);
	assert_int_not_equal(rc, 0);
	printf("# %s\n", rmig_last_error(p.src));
	assert_non_null(strstr(rmig_last_error(p.src), "tcp data channel"));
	assert_non_null(strstr(rmig_last_error(p.src), "rail 0"));
	assert_non_null(strstr(rmig_last_error(p.src), "rail 1"));
	pair_join(&p);
	pair_close(&p);
}

/* A source with RMIG_F_NO_FALLBACK: both rails cut, and it fails rather than go on over TCP. */
static void test_no_fallback_flag(void **state)
{
	struct rmig_stats st, dt;
	struct pair_cfg c;
	struct pair p;
	int rc;

	(void)state;
	if (!two_rails(&c))
		return;
	c.flags = RMIG_F_NO_FALLBACK;
	c.dst_drop = RMIG_F_NO_FALLBACK; /* the source's choice alone */
	open_filled(&p, &c, 19);
	rc = cut_both(&p, 100);
	assert_int_not_equal(rc, 0);
	printf("# %s\n", rmig_last_error(p.src));
	rmig_get_stats(p.src, &st);
	rmig_get_stats(p.dst, &dt);
	assert_int_equal(st.tcp_fallbacks, 0);
	assert_int_equal(dt.tcp_fallbacks, 0);
	pair_join(&p);
	pair_close(&p);
}

/* Negative control: a source of an earlier release (no RMIG_CAP_FAILOVER): the cut fails it. */
static void test_peer_without_failover(void **state)
{
	struct rmig_stats st;
	struct pair_cfg c;
	struct pair p;
	int rc;

	(void)state;
	if (!two_rails(&c))
		return;
	c.src_hook = rmig_sess_test_no_failover_cap;
	open_filled(&p, &c, 15);
	rc = send_and_cut(&p, 0, LEN, p.src, 150);
	if (!rc)
		rc = rmig_complete(p.src);
	assert_int_not_equal(rc, 0);
	printf("# %s\n", rmig_last_error(p.src));
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.failovers, 0);
	pair_join(&p);
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cut_source),
		cmocka_unit_test(test_cut_destination),
		cmocka_unit_test(test_resend_bounded_by_sync),
		cmocka_unit_test(test_no_resend_differs),
		cmocka_unit_test(test_all_rails_fall_back_to_tcp),
		cmocka_unit_test(test_one_rail_falls_back),
		cmocka_unit_test(test_one_tcp_rail_no_fallback),
		cmocka_unit_test(test_fallback_no_resend_differs),
		cmocka_unit_test(test_no_rail_left),
		cmocka_unit_test(test_no_fallback_flag),
		cmocka_unit_test(test_peer_without_failover),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
