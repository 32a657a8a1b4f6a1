/* SPDX-License-Identifier: MIT */
/*
 * test_failover.c - a rail fails mid-migration and the session goes on
 * through the other one, within the session (failover.c): the pages the
 * failed rail may have lost go again, and the destination ends
 * byte-identical. Two rails: TCP over 127.0.0.1 and 127.0.0.2, or in the
 * soft-RoCE VM RDMA over RMIG_TEST_ADDR and RMIG_TEST_ADDR2. A rail's link
 * breaks as rmig_sess_test_cut_rail() shuts its transport down on one side.
 *
 * Negative controls: with the re-send left out, the destination differs;
 * with no rail left, or a source that does not take RAIL_DOWN (an earlier
 * release), the migration fails, naming the cause.
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

/* Send [@from, @from + @len) on a thread; @ms in, rail 1 breaks on @side. */
static int send_and_cut(struct pair *p, uint64_t from, uint64_t len, rmig_session *side,
			unsigned int ms)
{
	struct sender x = { .p = p, .from = from, .len = len };

	assert_int_equal(pthread_create(&x.th, NULL, send_main, &x), 0);
	sleep_ms(ms);
	rmig_sess_test_cut_rail(side, 1);
	pthread_join(x.th, NULL);
	return x.rc;
}

static uint64_t rail_bytes(rmig_session *s, unsigned int rail)
{
	struct rmig_chan_place pl;
	struct rmig_stats st;
	uint64_t n = 0;

	rmig_get_stats(s, &st);
	for (unsigned int i = 0; i < st.channels; i++)
		if (rmig_get_placement(s, i, &pl, sizeof(pl)) == 0 && pl.rail == rail)
			n += st.chan[i].bytes;
	return n;
}

/* The whole image with rail 1 cut on @dst_side's end: byte-identical, one failover each side. */
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
	assert_true(rail_bytes(p.src, 0) > rail_bytes(p.src, 1));
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

/* Negative control: both rails cut, nothing is left: the migration fails, naming the cause. */
static void test_no_rail_left(void **state)
{
	struct pair_cfg c;
	struct pair p;
	int rc;

	(void)state;
	if (!two_rails(&c))
		return;
	open_filled(&p, &c, 14);
	rmig_sess_test_cut_rail(p.src, 0);
	rc = send_and_cut(&p, 0, LEN, p.src, 100);
	if (!rc)
		rc = rmig_complete(p.src);
	assert_int_not_equal(rc, 0);
	printf("# %s\n", rmig_last_error(p.src));
	assert_non_null(strstr(rmig_last_error(p.src), "channel"));
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
		cmocka_unit_test(test_no_rail_left),
		cmocka_unit_test(test_peer_without_failover),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
