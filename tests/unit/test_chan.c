/* SPDX-License-Identifier: MIT */
/*
 * test_chan.c - the channel engine over the in-memory fake transport, its
 * control connection a socketpair handed over as "fd:N" (no network, no
 * port): job handoff from several producers, zero pages, sync placing
 * everything posted before it (writes are held until flush), device-state
 * chunks, and the sticky first error with injected failures and
 * cancellation.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fake_tp.h"
#include "sess.h"
#include "testlib.h"

#define PS 4096u

static struct pair_cfg cfg(unsigned int ch, uint64_t len)
{
	struct pair_cfg c = { .channels = ch, .len = len, .page_size = PS, .ops = &fake_ops,
			      .timeout_ms = 5000, .extent_max = 64 << 10, .ctl_pair = true };
	return c;
}

static void open_pair(struct pair *p, struct pair_cfg c)
{
	fake_reset();
	assert_int_equal(pair_open(p, &c), 0);
}

static void test_sync_places_everything(void **state)
{
	struct pair p;
	uint64_t npages = 512, pages[512];

	(void)state;
	for (unsigned int ch = 1; ch <= 3; ch++) {
		open_pair(&p, cfg(ch, npages * PS));
		memset(p.dmem, 0xaa, npages * PS);
		for (int round = 0; round < 3; round++) {
			uint64_t n = 0;

			fill_random(p.smem, npages * PS, (uint64_t)round + 1);
			/* every third page, in reverse order: not contiguous, not sorted */
			for (uint64_t i = npages; i-- > 0;)
				if (i % 3 == (uint64_t)round)
					pages[n++] = i;
			assert_int_equal(rmig_send_pages(p.src, "ram", pages, n), 0);
			assert_int_equal(rmig_sync(p.src), 0);
			/* writes are held until flush: equality proves flush-before-marker */
			for (uint64_t i = 0; i < n; i++)
				assert_memory_equal(p.dmem + pages[i] * PS, p.smem + pages[i] * PS,
						    PS);
		}
		assert_int_equal(fake_ctl.markers, 3 * (int)ch);
		assert_int_equal(rmig_complete(p.src), 0);
		assert_int_equal(pair_join(&p), 0);
		pair_close(&p);
	}
}

static void test_zero_pages_overwrite(void **state)
{
	struct pair p;
	struct rmig_stats st;
	uint64_t len = 64 * PS;

	(void)state;
	open_pair(&p, cfg(2, len));
	fill_sparse(p.smem, len, PS, 4, 7); /* 16 data pages, 48 zero pages */
	memset(p.dmem, 0x55, len);          /* stale data must be zeroed */
	assert_int_equal(rmig_send_range(p.src, "ram", 0, len), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, len);
	rmig_get_stats(p.src, &st);
	assert_int_equal(st.pages, 64);
	assert_int_equal(st.zero_pages, 48);
	assert_int_equal(st.bytes, 16 * PS);
	assert_int_equal(st.handled, len);
	pair_close(&p);
}

struct producer {
	rmig_session *s;
	uint64_t first, n;
	int rc;
};

static void *produce(void *arg)
{
	struct producer *pr = arg;

	for (uint64_t i = 0; i < pr->n && !pr->rc; i++) {
		uint64_t page = pr->first + i;

		pr->rc = rmig_send_pages(pr->s, "ram", &page, 1);
	}
	return NULL;
}

static void test_many_producers(void **state)
{
	struct producer pr[4];
	pthread_t th[4];
	struct pair p;
	uint64_t npages = 1024;

	(void)state;
	open_pair(&p, cfg(3, npages * PS));
	fill_random(p.smem, npages * PS, 99);
	for (int i = 0; i < 4; i++) {
		pr[i] = (struct producer){ p.src, (uint64_t)i * npages / 4, npages / 4, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, produce, &pr[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(pr[i].rc, 0);
	}
	assert_int_equal(rmig_sync(p.src), 0);
	assert_memory_equal(p.smem, p.dmem, npages * PS);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	pair_close(&p);
}

struct loaded {
	pthread_mutex_t lock;
	int count;
	uint8_t *expect[3];
	uint64_t len[3];
	int ok;
};

static int on_state(void *arg, const char *name, uint32_t instance, const void *data,
		    uint64_t len)
{
	struct loaded *l = arg;

	pthread_mutex_lock(&l->lock);
	l->count++;
	if (instance < 3 && len == l->len[instance] && !strcmp(name, "dev") &&
	    !memcmp(data, l->expect[instance], len))
		l->ok++;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static void test_device_state_chunks(void **state)
{
	struct loaded l = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct pair_cfg c = cfg(3, 16 * PS);
	uint64_t sizes[3] = { 0, 5000, (64 << 10) * 5 + 123 }; /* empty, small, 6 chunks */
	struct pair p;

	(void)state;
	c.state_fn = on_state;
	c.state_arg = &l;
	c.flags = RMIG_F_VERIFY;
	open_pair(&p, c);
	for (int i = 0; i < 3; i++) {
		l.len[i] = sizes[i];
		l.expect[i] = malloc(sizes[i] + 1);
		fill_random(l.expect[i], sizes[i], (uint64_t)i + 10);
		assert_int_equal(rmig_send_state(p.src, "dev", (uint32_t)i, l.expect[i], sizes[i]),
				 0);
	}
	assert_int_equal(rmig_send_state(p.src, "", 0, l.expect[0], 1), -EINVAL);
	/* one blob per (name, instance): a second would be loaded over the first */
	assert_int_equal(rmig_send_state(p.src, "dev", 1, l.expect[1], sizes[1]), -EEXIST);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_int_equal(l.count, 3);
	assert_int_equal(l.ok, 3);
	pair_close(&p);
	for (int i = 0; i < 3; i++)
		free(l.expect[i]);
}

static void test_injected_write_failure(void **state)
{
	struct pair p;
	uint64_t len = 256 * PS;
	int rc;

	(void)state;
	open_pair(&p, cfg(2, len));
	fake_ctl.fail_write_at = 5;
	fill_random(p.smem, len, 3);
	rc = rmig_send_range(p.src, "ram", 0, len);
	if (!rc)
		rc = rmig_sync(p.src);
	assert_int_equal(rc, -EIO);
	assert_non_null(strstr(rmig_last_error(p.src), "injected write failure #5"));
	/* sticky: later calls report the same first error */
	assert_int_equal(rmig_send_range(p.src, "ram", 0, PS), -EIO);
	assert_int_equal(rmig_complete(p.src), -EIO);
	assert_non_null(strstr(rmig_last_error(p.src), "injected write failure #5"));
	/* the destination hears about it and stops waiting */
	assert_int_equal(pair_join(&p), -EIO);
	assert_non_null(strstr(rmig_last_error(p.dst), "injected write failure"));
	pair_close(&p);
}

struct canceller {
	rmig_session *s;
	unsigned int delay_ms;
};

static void *cancel_later(void *arg)
{
	struct canceller *c = arg;
	struct timespec ts = { 0, (long)c->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	rmig_cancel(c->s, "operator asked");
	return NULL;
}

static void test_cancel_wakes_sync(void **state)
{
	struct canceller c;
	struct pair p;
	pthread_t th;
	struct timespec t0, t1;

	(void)state;
	open_pair(&p, cfg(2, 16 * PS));
	fake_ctl.drop_markers = 1; /* this sync would wait for its whole timeout */
	c.s = p.src;
	c.delay_ms = 100;
	pthread_create(&th, NULL, cancel_later, &c);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(rmig_sync(p.src), -ECANCELED);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(th, NULL);
	/* woken by the cancel, long before the 5 s timeout */
	assert_true(t1.tv_sec - t0.tv_sec < 3);
	assert_non_null(strstr(rmig_last_error(p.src), "operator asked"));
	assert_int_equal(pair_join(&p), -ECANCELED);
	pair_close(&p);
}

static void test_sync_timeout(void **state)
{
	struct pair_cfg c = cfg(1, 16 * PS);
	struct pair p;

	(void)state;
	c.timeout_ms = 300;
	open_pair(&p, c);
	fake_ctl.drop_markers = 1;
	assert_int_equal(rmig_sync(p.src), -ETIMEDOUT);
	assert_non_null(strstr(rmig_last_error(p.src), "no acknowledgement"));
	pair_join(&p);
	pair_close(&p);
}

static void test_bad_pages(void **state)
{
	struct pair p;
	uint64_t bad = 16;

	(void)state;
	open_pair(&p, cfg(1, 16 * PS));
	assert_int_equal(rmig_send_pages(p.src, "ram", &bad, 1), -ERANGE);
	assert_int_equal(rmig_send_pages(p.src, "nope", &bad, 1), -ENOENT);
	assert_int_equal(rmig_send_pages(p.src, "ram", NULL, 1), -EINVAL);
	assert_int_equal(rmig_send_pages(p.src, "ram", NULL, 0), 0);
	assert_int_equal(rmig_send_range(p.src, "ram", 1, PS), -ERANGE);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, 17 * PS), -ERANGE);
	/* rejected calls are not session errors */
	assert_int_equal(rmig_error(p.src), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	pair_close(&p);
}

/*
 * Two rounds write the same page; the round-robin handoff puts round 1 on
 * channel 0 and round 2 on channel 1, and channel 0 applies its writes only
 * after channel 1 has done something, as RDMA may reorder across queue pairs:
 * with the rule, that is channel 1's marker for round 1's sync; without it,
 * round 2's write. Returns whether the destination ended
 * with the newest bytes.
 */
static bool two_rounds_end_current(bool break_rule)
{
	struct pair_cfg c = cfg(2, 4 * PS);
	unsigned long map = 1; /* page 0 */
	const unsigned long *maps[1] = { &map };
	struct rmig_round_stats st;
	struct pair p;
	bool current;

	open_pair(&p, c);
	fake_ctl.hold_chan0 = 1; /* ordered by events: no timing window to miss under load */
	rmig_sess_test_break_round_order(p.src, break_rule);
	memset(p.smem, 1, PS);
	assert_int_equal(rmig_send_round(p.src, maps, 1, &st), 0);
	if (!break_rule) {
		assert_int_equal(st.pages, 1);
		assert_int_equal(st.bytes, PS);
	}
	/* round 1's bytes are read (in flight) before the guest dirties the page again */
	while (__atomic_load_n(&fake_ctl.writes, __ATOMIC_SEQ_CST) < 1)
		usleep(1000);
	memset(p.smem, 2, PS);
	assert_int_equal(rmig_send_round(p.src, maps, 1, &st), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	current = memcmp(p.smem, p.dmem, PS) == 0;
	pair_close(&p);
	return current;
}

static void test_round_ordering_rule(void **state)
{
	(void)state;
	/* the rule holds: the newest copy wins */
	assert_true(two_rounds_end_current(false));
	/* the knob breaks the rule: round 1's older copy lands last */
	assert_false(two_rounds_end_current(true));
}

static void test_round_args(void **state)
{
	struct pair p;
	const unsigned long *maps[2] = { NULL, NULL };

	(void)state;
	open_pair(&p, cfg(1, 4 * PS));
	assert_int_equal(rmig_send_round(p.src, maps, 2, NULL), -EINVAL); /* one block declared */
	assert_int_equal(rmig_send_round(p.src, maps, 1, NULL), 0);      /* nothing dirty */
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	pair_close(&p);
}

/*
 * The source finishes the whole migration while the destination's accept is
 * still between starting its control thread and marking itself running: the
 * destination must end DONE, not be set back to RUNNING and wait forever.
 */
static void test_complete_before_accept_returns(void **state)
{
	struct pair_cfg c = cfg(1, 4 * PS);
	struct timespec ts;
	struct pair p;

	(void)state;
	c.dst_start_delay_ms = 300;
	open_pair(&p, c);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, 4 * PS), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	assert_int_equal(pthread_timedjoin_np(p.th, NULL, &ts), 0); /* no hang */
	p.th_started = false;
	assert_int_equal(p.dst_rc, 0);
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sync_places_everything),
		cmocka_unit_test(test_zero_pages_overwrite),
		cmocka_unit_test(test_many_producers),
		cmocka_unit_test(test_device_state_chunks),
		cmocka_unit_test(test_injected_write_failure),
		cmocka_unit_test(test_cancel_wakes_sync),
		cmocka_unit_test(test_sync_timeout),
		cmocka_unit_test(test_bad_pages),
		cmocka_unit_test(test_round_ordering_rule),
		cmocka_unit_test(test_round_args),
		cmocka_unit_test(test_complete_before_accept_returns),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
