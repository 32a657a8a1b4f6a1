/* SPDX-License-Identifier: MIT */
/*
 * test_pc_engine.c - postcopy on the channel engine, over the in-memory
 * fake transport with a socketpair for the control connection (no network),
 * and without userfaultfd (rmig_postcopy_fetch()): the
 * pages the destination asks for arrive with the source's newest bytes
 * before any background page goes, each page is sent exactly once, a
 * completion with pages still missing is refused (and the destination told
 * why), and the staging buffers are the channels' own.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_tp.h"
#include "sess.h"
#include "testlib.h"

#define PS 4096u
#define NPAGES 256u
#define LEN (NPAGES * PS)
#define NDIRTY 40u
#define BPL (8 * sizeof(long))

static struct pair_cfg cfg(unsigned int flags)
{
	return (struct pair_cfg){ .channels = 3, .len = LEN, .page_size = PS, .ops = &fake_ops,
				  .flags = RMIG_F_POSTCOPY | flags, .timeout_ms = 5000,
				  .ctl_pair = true };
}

struct toucher {
	struct pair *p;
	const uint64_t *pages;
	unsigned int n, bad;
	int rc;
};

/* The destination's guest: fetch each page, compare it with the source's. */
static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	t->rc = rmig_postcopy_wait(t->p->dst);
	for (unsigned int i = 0; i < t->n && !t->rc; i++) {
		uint64_t off = t->pages[i] * PS;

		t->rc = rmig_postcopy_fetch(t->p->dst, "ram", off, PS);
		if (!t->rc && memcmp(t->p->dmem + off, t->p->smem + off, PS))
			t->bad++;
	}
	return NULL;
}

/*
 * The fake transport applies a write on the source's thread, not on the
 * destination channel's (as a real receiver does, after its thread has
 * set up the channel's staging buffer): wait for every destination
 * channel thread to have one before postcopy starts.
 */
static void wait_staging(struct pair *p)
{
	for (int i = 0; i < 5000; i++) {
		unsigned int ready = 0;

		for (unsigned int c = 0; c < p->dst->nchannels; c++)
			ready += __atomic_load_n(&p->dst->pc.stage[c].buf, __ATOMIC_ACQUIRE) != NULL;
		if (ready == p->dst->nchannels)
			return;
		usleep(1000);
	}
	fail_msg("the destination's channel threads set up no staging buffers");
}

/*
 * A precopy round, then NDIRTY pages change and postcopy starts; the
 * destination fetches half of them. @rest: the source sends the other half
 * in the background before it completes.
 */
static int run(unsigned int flags, bool rest, struct rmig_stats *st, struct pair *p)
{
	static unsigned long bm[NPAGES / BPL];
	const unsigned long *bms[1] = { bm };
	uint64_t pages[NDIRTY];
	struct toucher t = { .p = p, .pages = pages, .n = NDIRTY / 2 };
	struct pair_cfg c = cfg(flags);
	pthread_t th;
	int rc;

	fake_reset();
	assert_int_equal(pair_open(p, &c), 0);
	fill_random(p->smem, LEN, 5);
	assert_int_equal(rmig_send_range(p->src, "ram", 0, LEN), 0);
	memset(bm, 0, sizeof(bm));
	for (unsigned int i = 0; i < NDIRTY; i++) {
		pages[i] = (i * 37u + 11u) % NPAGES; /* distinct: 37 is prime to 256 */
		bm[pages[i] / BPL] |= 1ul << (pages[i] % BPL);
		fill_random(p->smem + pages[i] * PS, PS, 100 + i);
	}
	wait_staging(p);
	assert_int_equal(pthread_create(&th, NULL, touch_main, &t), 0);
	assert_int_equal(rmig_postcopy_start(p->src, bms, 1), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.rc, 0);
	assert_int_equal(t.bad, 0);
	rmig_get_stats(p->src, st);
	/* only requests moved pages so far */
	assert_int_equal(st->pc_background, 0);
	assert_true(st->pc_urgent_pages >= 1);
	if (rest)
		assert_int_equal(rmig_postcopy_send_rest(p->src), 0);
	rc = rmig_complete(p->src);
	rmig_get_stats(p->src, st);
	return rc;
}

static void check_case(unsigned int flags)
{
	struct rmig_stats st;
	struct pair p;

	assert_int_equal(run(flags, true, &st, &p), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, LEN);
	/* every changed page went once: asked for, or in the background */
	assert_int_equal(st.pc_urgent_pages + st.pc_background, NDIRTY);
	assert_true(st.pc_urgent_pages >= NDIRTY / 2);
	assert_true(st.pc_background > 0);
	assert_true(st.pc_requests >= 1);
	pair_close(&p);
}

static void test_requested_pages_first(void **state)
{
	(void)state;
	check_case(0);
}

/* RMIG_F_NO_URGENT: requests share the channels with the background pages. */
static void test_shared_channels(void **state)
{
	(void)state;
	check_case(RMIG_F_NO_URGENT);
}

/* The control: without the background pages the migration cannot complete. */
static void test_missing_pages_refuse_completion(void **state)
{
	struct rmig_stats st;
	struct pair p;

	(void)state;
	assert_int_not_equal(run(0, false, &st, &p), 0);
	assert_non_null(strstr(rmig_last_error(p.src), "never sent"));
	assert_int_not_equal(pair_join(&p), 0);
	assert_non_null(strstr(rmig_last_error(p.dst), "never sent"));
	pair_close(&p);
}

/*
 * The staging buffers are the channels' own: while postcopy runs, a write
 * placed on channel 0 and one on channel 1 get two buffers, neither of them
 * guest memory; a channel the session does not have is refused by name.
 */
static void test_staging_is_per_channel(void **state)
{
	static const unsigned long none[NPAGES / BPL];
	const unsigned long *bms[1] = { none };
	struct rmig_target t = { .kind = RMIG_TGT_RAM, .id = 0, .offset = 0 };
	struct pair_cfg c = cfg(0);
	void *d0 = NULL, *d1 = NULL, *dx = NULL;
	char want[32];
	struct pair p;

	(void)state;
	fake_reset();
	assert_int_equal(pair_open(&p, &c), 0);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, LEN), 0);
	wait_staging(&p);
	assert_int_equal(rmig_postcopy_start(p.src, bms, 1), 0);
	assert_int_equal(rmig_postcopy_wait(p.dst), 0);
	/* nothing was asked for or is missing: the channels are idle, as place() needs */
	assert_int_equal(p.dst->up.place(p.dst->up.arg, 0, &t, PS, &d0), 0);
	assert_int_equal(p.dst->up.place(p.dst->up.arg, 1, &t, PS, &d1), 0);
	assert_non_null(d0);
	assert_non_null(d1);
	assert_ptr_not_equal(d0, d1);
	assert_true((uint8_t *)d0 < p.dmem || (uint8_t *)d0 >= p.dmem + LEN);
	assert_true((uint8_t *)d1 < p.dmem || (uint8_t *)d1 >= p.dmem + LEN);
	assert_int_equal(p.dst->up.placed(p.dst->up.arg, 0, &t, PS), 0);
	assert_int_equal(p.dst->up.placed(p.dst->up.arg, 1, &t, PS), 0);
	assert_int_equal(rmig_error(p.dst), 0);
	assert_int_equal(p.dst->up.place(p.dst->up.arg, RMIG_CHANNELS_MAX, &t, PS, &dx), -E2BIG);
	snprintf(want, sizeof(want), "channel %u", RMIG_CHANNELS_MAX);
	assert_non_null(strstr(rmig_last_error(p.dst), want));
	(void)rmig_complete(p.src);
	(void)pair_join(&p);
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requested_pages_first),
		cmocka_unit_test(test_shared_channels),
		cmocka_unit_test(test_missing_pages_refuse_completion),
		cmocka_unit_test(test_staging_is_per_channel),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
