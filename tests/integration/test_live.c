/* SPDX-License-Identifier: MIT */
/*
 * test_live.c - live migration between two sessions in one process, over TCP
 * or (RMIG_TEST_TRANSPORT=rdma, RMIG_TEST_ADDR) RDMA in the soft-RoCE VM: a
 * writer thread dirties guest RAM during the rounds and logs exactly what it
 * dirtied, the rounds, estimate and switchover run as a VMM drives them, and
 * the destination must end byte-for-byte equal. Also: the bandwidth limit, a
 * migration that cannot converge (give up, or switch over anyway), and the
 * API's refusals.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "bitmap.h"
#include "testlib.h"

#define PAGE 4096u

static struct pair_cfg base(unsigned int ch, uint64_t len)
{
	const char *t = getenv("RMIG_TEST_TRANSPORT");
	struct pair_cfg c = { .channels = ch, .len = len, .page_size = PAGE, .timeout_ms = 20000 };

	c.transport = t && !strcmp(t, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	c.addr = getenv("RMIG_TEST_ADDR");
	return c;
}

/* A guest vCPU: writes pages, then logs them dirty (the order a VMM's dirty log gives). */
struct writer {
	uint8_t *mem;
	uint64_t npages;
	_Atomic unsigned long *log;
	atomic_bool stop;
	uint64_t writes;
	pthread_t th;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t x = 0x2545f4914f6cdd1dull;

	while (!atomic_load(&w->stop)) {
		for (int i = 0; i < 64; i++) {
			uint64_t pg, off, *word;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			pg = x % w->npages;
			off = (x >> 32) % (PAGE / 8);
			word = (uint64_t *)(void *)(w->mem + pg * PAGE) + off;
			__atomic_store_n(word, x | 1, __ATOMIC_RELAXED);
			atomic_fetch_or_explicit(&w->log[pg / RMIG_BITS_PER_LONG],
						 1UL << (pg % RMIG_BITS_PER_LONG),
						 memory_order_release);
			w->writes++;
		}
		struct timespec ts = { 0, 200000 }; /* a bounded dirty rate */
		nanosleep(&ts, NULL);
	}
	return NULL;
}

struct loads {
	pthread_mutex_t lock;
	const uint8_t *data[2];
	uint64_t len[2];
	unsigned int good;
	unsigned int live_before_switch; /* blobs loaded before the switchover began */
	atomic_bool switched;
};

static int load(void *arg, const char *name, uint32_t instance, const void *data, uint64_t len)
{
	struct loads *l = arg;

	pthread_mutex_lock(&l->lock);
	if (!strcmp(name, "nic") && instance < 2 && len == l->len[instance] &&
	    !memcmp(data, l->data[instance], len)) {
		l->good++;
		if (!atomic_load(&l->switched))
			l->live_before_switch++;
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static unsigned int loaded(struct loads *l)
{
	unsigned int n;

	pthread_mutex_lock(&l->lock);
	n = l->good;
	pthread_mutex_unlock(&l->lock);
	return n;
}

/* Take the dirty log: what was dirtied since the last collection. */
static void collect(struct writer *w, unsigned long *out)
{
	for (size_t i = 0; i < rmig_bitmap_longs(w->npages); i++)
		out[i] |= atomic_exchange_explicit(&w->log[i], 0, memory_order_acquire);
}

static void test_live_rounds_with_writer(void **state)
{
	struct pair_cfg c = base(4, 16 << 20);
	uint64_t npages = c.len / PAGE;
	size_t nl = rmig_bitmap_longs(npages);
	unsigned long *map = calloc(nl, sizeof(*map));
	const unsigned long *maps[1] = { map };
	struct writer w = { .npages = npages };
	struct loads l = { .lock = PTHREAD_MUTEX_INITIALIZER, .len = { 3 << 20, 5 << 20 } };
	uint8_t *blob0 = malloc(l.len[0]), *blob1 = malloc(l.len[1]);
	struct rmig_round_stats rs;
	struct rmig_estimate e;
	struct rmig_stats st;
	struct pair p;
	unsigned int rounds = 1;

	(void)state;
	w.log = calloc(nl, sizeof(*w.log));
	c.downtime_limit_ms = 1;
	c.max_rounds = 8;
	c.flags = RMIG_F_VERIFY | RMIG_F_SWITCH_ANYWAY;
	c.state_fn = load;
	c.state_arg = &l;
	fill_random(blob0, l.len[0], 1);
	fill_random(blob1, l.len[1], 2);
	l.data[0] = blob0;
	l.data[1] = blob1;
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 11);
	w.mem = p.smem;
	assert_int_equal(rmig_estimate(p.src, maps, 1, 0, &e), -ENODATA);
	assert_int_equal(pthread_create(&w.th, NULL, writer_main, &w), 0);

	/* round 1: all of RAM, while the guest runs */
	memset(map, 0xff, nl * sizeof(*map));
	assert_int_equal(rmig_send_round(p.src, maps, 1, &rs), 0);
	assert_int_equal(rs.round, 1);
	assert_int_equal(rs.dirty_pages, npages);
	assert_int_equal(rs.pages, npages);
	assert_int_equal(rs.dirty_rate, 0);
	assert_true(rs.bandwidth > 0);
	/* device state in the live phase: chunked over the channels, loaded at once */
	assert_int_equal(rmig_send_state(p.src, "nic", 0, blob0, l.len[0]), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	for (int i = 0; i < 1000 && !loaded(&l); i++) { /* it loads while the guest runs */
		struct timespec ts = { 0, 10000000 };

		nanosleep(&ts, NULL);
	}
	assert_int_equal(loaded(&l), 1);
	for (;;) {
		memset(map, 0, nl * sizeof(*map));
		collect(&w, map);
		assert_int_equal(rmig_estimate(p.src, maps, 1, 0, &e), 0);
		assert_int_equal(e.rounds, rounds);
		assert_int_equal(e.dirty_pages, rmig_bitmap_count(map, npages));
		assert_int_equal(e.dirty_bytes, e.dirty_pages * PAGE);
		assert_true(e.bandwidth > 0);
		if (e.decision != RMIG_DECIDE_ROUND)
			break;
		assert_int_equal(rmig_send_round(p.src, maps, 1, &rs), 0);
		assert_int_equal(rs.round, ++rounds);
		assert_int_equal(rs.dirty_pages, e.dirty_pages);
		assert_int_equal(rs.pages, e.dirty_pages);
		assert_true(rs.dirty_pages == 0 || rs.dirty_rate > 0);
	}
	printf("# %u live rounds, decision %d, expected downtime %.1f ms, %llu guest writes\n",
	       rounds, e.decision, (double)e.expected_downtime_ns / 1e6,
	       (unsigned long long)w.writes);
	assert_true(e.decision == RMIG_DECIDE_SWITCHOVER || e.decision == RMIG_DECIDE_FORCED);
	assert_true(rounds <= 8);

	/* switchover: stop the guest, send what it dirtied since and the rest of the state */
	atomic_store(&l.switched, true);
	assert_int_equal(rmig_switchover(p.src), 0);
	assert_int_equal(rmig_switchover(p.src), -EALREADY);
	atomic_store(&w.stop, true);
	pthread_join(w.th, NULL);
	collect(&w, map);
	assert_int_equal(rmig_send_round(p.src, maps, 1, &rs), 0);
	assert_int_equal(rmig_send_state(p.src, "nic", 1, blob1, l.len[1]), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_int_equal(l.good, 2);
	assert_int_equal(l.live_before_switch, 1);
	assert_true(w.writes > 0);
	assert_memory_equal(p.smem, p.dmem, c.len);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.rounds, rounds + 1);
	assert_true(st.downtime_ns > 0);
	assert_true(st.downtime_ns < st.duration_ns);
	pair_close(&p);
	free(map);
	free(w.log);
	free(blob0);
	free(blob1);
}

static void test_bandwidth_limit(void **state)
{
	struct pair_cfg c = base(4, 8 << 20);
	struct rmig_stats st;
	struct pair p;
	double t0, el;

	(void)state;
	c.max_bandwidth = 16 << 20; /* 8 MiB at 16 MiB/s: at least 0.5 s */
	assert_int_equal(pair_open(&p, &c), 0);
	fill_random(p.smem, c.len, 5);
	t0 = test_now_s();
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	el = test_now_s() - t0;
	printf("# 8 MiB under a 16 MiB/s limit: %.3f s\n", el);
	/* A lower bound only: the limit makes it slow; nothing here asserts speed. */
	assert_true(el >= 0.49);
	assert_memory_equal(p.smem, p.dmem, c.len);
	/* the limit lifts at switchover: the rest is bounded only by the link */
	assert_int_equal(rmig_switchover(p.src), 0);
	fill_random(p.smem, c.len, 6);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, c.len), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, c.len);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.bytes, 2 * c.len);
	pair_close(&p);
}

/*
 * The guest dirties all of RAM every round, and the link is limited to
 * 32 MiB/s: 4 MiB can never fit a 1 ms downtime.
 */
static int hopeless(struct pair *p, unsigned int flags, struct rmig_estimate *e)
{
	struct pair_cfg c = base(2, 4 << 20);
	uint64_t npages = c.len / PAGE;
	unsigned long *map = malloc(rmig_bitmap_longs(npages) * sizeof(*map));
	const unsigned long *maps[1] = { map };
	int rc;

	c.max_bandwidth = 32 << 20;
	c.downtime_limit_ms = 1;
	c.max_rounds = 3;
	c.flags = flags;
	assert_int_equal(pair_open(p, &c), 0);
	memset(map, 0xff, rmig_bitmap_longs(npages) * sizeof(*map));
	for (unsigned int round = 1;; round++) {
		fill_random(p->smem, c.len, round);
		assert_int_equal(rmig_send_round(p->src, maps, 1, NULL), 0);
		assert_int_equal(rmig_estimate(p->src, maps, 1, 0, e), 0);
		assert_int_equal(e->rounds, round);
		assert_true(e->expected_downtime_ns > 1000000);
		assert_true(e->bandwidth <= (32u << 20) * 11 / 10);
		if (e->decision != RMIG_DECIDE_ROUND)
			break;
		assert_true(round < 3);
	}
	assert_int_equal(e->rounds, 3);
	rc = e->decision;
	free(map);
	return rc;
}

static void test_not_converging_gives_up(void **state)
{
	struct rmig_estimate e;
	struct pair p;

	(void)state;
	assert_int_equal(hopeless(&p, 0, &e), RMIG_DECIDE_GIVE_UP);
	/* the VMM cancels; the destination learns why */
	rmig_cancel(p.src, "did not converge after 3 rounds");
	assert_int_equal(pair_join(&p), -ECANCELED);
	printf("# destination: %s\n", rmig_last_error(p.dst));
	assert_non_null(strstr(rmig_last_error(p.dst), "did not converge after 3 rounds"));
	pair_close(&p);
}

static void test_not_converging_switches_anyway(void **state)
{
	struct rmig_estimate e;
	struct rmig_stats st;
	struct pair p;

	(void)state;
	assert_int_equal(hopeless(&p, RMIG_F_SWITCH_ANYWAY | RMIG_F_VERIFY, &e), RMIG_DECIDE_FORCED);
	assert_int_equal(rmig_switchover(p.src), 0);
	fill_random(p.smem, p.cfg.len, 99);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, p.cfg.len), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, p.cfg.len);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.rounds, 3);
	assert_true(st.downtime_ns > 0);
	pair_close(&p);
}

static void test_refusals(void **state)
{
	struct pair_cfg c = base(1, 1 << 20);
	const unsigned long *maps[2] = { NULL, NULL };
	struct rmig_opts o;
	struct rmig_estimate e;
	rmig_session *s;
	struct pair p;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.log_fn = NULL;
	assert_int_equal(o.downtime_limit_ms, 300);
	assert_int_equal(o.max_rounds, 30);
	assert_int_equal(o.max_bandwidth, 0);
	o.downtime_limit_ms = 0;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.downtime_limit_ms = 300;
	o.max_bandwidth = 100;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.max_bandwidth = 0;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	/* not connected yet */
	assert_int_equal(rmig_switchover(s), -ENOTCONN);
	assert_int_equal(rmig_estimate(s, maps, 0, 0, &e), -ENOTCONN);
	rmig_session_destroy(s);

	assert_int_equal(pair_open(&p, &c), 0);
	assert_int_equal(rmig_estimate(p.src, maps, 2, 0, &e), -EINVAL);
	assert_int_equal(rmig_send_round(p.src, maps, 2, NULL), -EINVAL);
	assert_int_equal(rmig_estimate(p.src, NULL, 1, 0, &e), -EINVAL);
	/* a round with nothing dirty is still a round, and syncs */
	assert_int_equal(rmig_send_round(p.src, maps, 1, NULL), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	/* the destination has no rounds to drive */
	assert_int_equal(rmig_switchover(p.dst), -EINVAL);
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_rounds_with_writer),
		cmocka_unit_test(test_bandwidth_limit),
		cmocka_unit_test(test_not_converging_gives_up),
		cmocka_unit_test(test_not_converging_switches_anyway),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
