/* SPDX-License-Identifier: MIT */
/*
 * test_converge.c - the bandwidth limiter on a clock the test drives, and
 * the switchover decision at and around its limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "converge.h"

#define MS 1000000ull
#define S 1000000000ull

static void test_rl_paces_to_the_rate(void **state)
{
	struct rmig_rate_limit rl;

	(void)state;
	rmig_rl_init(&rl, 1 << 20); /* 1 MiB/s */
	/* a MiB goes once it is paid for: one second */
	assert_int_equal(rmig_rl_reserve(&rl, 1 << 20, 10 * S), 11 * S);
	assert_int_equal(rmig_rl_reserve(&rl, 1 << 20, 10 * S), 12 * S);
	assert_int_equal(rmig_rl_reserve(&rl, 512 << 10, 10 * S + 1), 12 * S + 500 * MS);
	assert_int_equal(rmig_rl_reserve(&rl, 4096, 10 * S), 12 * S + 500 * MS + 3906250);
	rmig_rl_destroy(&rl);
}

static void test_rl_no_saved_burst(void **state)
{
	struct rmig_rate_limit rl;

	(void)state;
	rmig_rl_init(&rl, 1 << 20);
	assert_int_equal(rmig_rl_reserve(&rl, 1 << 20, 0), S);
	/* idle for a minute: the next reservation starts now, not a minute ago */
	assert_int_equal(rmig_rl_reserve(&rl, 1 << 20, 60 * S), 61 * S);
	assert_int_equal(rmig_rl_reserve(&rl, 1 << 20, 60 * S), 62 * S);
	rmig_rl_destroy(&rl);
}

static void test_rl_lifted(void **state)
{
	struct rmig_rate_limit rl;

	(void)state;
	rmig_rl_init(&rl, 0);
	assert_int_equal(rmig_rl_reserve(&rl, 1ull << 40, 7), 7);
	rmig_rl_set(&rl, 4096);
	assert_int_equal(rmig_rl_reserve(&rl, 4096, 0), S);
	assert_int_equal(rmig_rl_reserve(&rl, 4096, 0), 2 * S);
	rmig_rl_set(&rl, 0);
	assert_int_equal(rmig_rl_rate(&rl), 0);
	assert_int_equal(rmig_rl_reserve(&rl, 4096, 5), 5);
	rmig_rl_destroy(&rl);
}

static void test_rl_no_overflow(void **state)
{
	struct rmig_rate_limit rl;

	(void)state;
	rmig_rl_init(&rl, 4096);
	/* the clock saturates instead of wrapping to the past */
	assert_int_equal(rmig_rl_reserve(&rl, UINT64_MAX, 1), UINT64_MAX);
	assert_int_equal(rmig_rl_reserve(&rl, 4096, 2), UINT64_MAX);
	rmig_rl_destroy(&rl);
}

static void test_rate_of(void **state)
{
	(void)state;
	assert_int_equal(rmig_rate_of(1 << 20, S), 1 << 20);
	assert_int_equal(rmig_rate_of(1 << 20, S / 2), 2 << 20);
	assert_int_equal(rmig_rate_of(5, 0), 0);
	assert_int_equal(rmig_rate_of(UINT64_MAX, 1), UINT64_MAX);
}

static struct rmig_conv_in conv(uint64_t dirty, uint64_t bw, unsigned int rounds)
{
	return (struct rmig_conv_in){ .dirty_bytes = dirty,
				      .bandwidth = bw,
				      .limit_ns = 300 * MS,
				      .rounds = rounds,
				      .max_rounds = 5 };
}

static void test_decide(void **state)
{
	struct rmig_conv_in in;
	uint64_t dt;

	(void)state;
	/* 100 MiB at 1 GiB/s: 97.6 ms, fits 300 ms */
	in = conv(100 << 20, 1 << 30, 1);
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_SWITCHOVER);
	assert_int_equal(dt, 100 * S / 1024);
	/* exactly at the limit still fits */
	in = conv(300 << 20, 1 << 30, 1);
	in.limit_ns = 300 * S / 1024;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_SWITCHOVER);
	in.limit_ns -= 1;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	/* the device state counts: 100 MiB of RAM + 300 MiB of state is 390 ms */
	in = conv(100 << 20, 1 << 30, 1);
	in.state_bytes = 300 << 20;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	assert_int_equal(dt, 400 * S / 1024);
	/* nothing dirty and no state: zero downtime */
	in = conv(0, 1 << 30, 1);
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_SWITCHOVER);
	assert_int_equal(dt, 0);
	/* round trips count: 100 MiB (97.6 ms) plus 250 ms of them is over 300 ms */
	in = conv(100 << 20, 1 << 30, 1);
	in.fixed_ns = 250 * MS;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	assert_int_equal(dt, 100 * S / 1024 + 250 * MS);
	in.fixed_ns = UINT64_MAX; /* saturates */
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	assert_int_equal(dt, UINT64_MAX);
}

static void test_decide_at_max_rounds(void **state)
{
	struct rmig_conv_in in = conv(4ull << 30, 1 << 30, 4);
	uint64_t dt;

	(void)state;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	assert_int_equal(dt, 4 * S);
	in.rounds = 5;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_GIVE_UP);
	in.switch_anyway = true;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_FORCED);
	/* max_rounds 0: no limit */
	in.max_rounds = 0;
	in.rounds = 1000;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	/* nothing dirty but the state alone is over the limit: rounds cannot help */
	in = conv(0, 1 << 30, 1);
	in.state_bytes = 1ull << 30;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_GIVE_UP);
	in.switch_anyway = true;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_FORCED);
	/* fitting wins over max rounds */
	in = conv(1 << 20, 1 << 30, 50);
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_SWITCHOVER);
	/* no bandwidth measured is treated as 1 byte/s, never a division by zero */
	in = conv(1 << 20, 0, 1);
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	/* sums that overflow saturate */
	in = conv(UINT64_MAX, 1, 1);
	in.state_bytes = 2;
	assert_int_equal(rmig_decide(&in, &dt), RMIG_DECIDE_ROUND);
	assert_int_equal(dt, UINT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rl_paces_to_the_rate),
		cmocka_unit_test(test_rl_no_saved_burst),
		cmocka_unit_test(test_rl_lifted),
		cmocka_unit_test(test_rl_no_overflow),
		cmocka_unit_test(test_rate_of),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_decide_at_max_rounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
