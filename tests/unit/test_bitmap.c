/* SPDX-License-Identifier: MIT */
/* test_bitmap.c - bit scans and extent runs at word and block edges, zero detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bitmap.h"

#define W RMIG_BITS_PER_LONG

static void test_next_set_clear_edges(void **state)
{
	unsigned long map[4] = { 0 };
	uint64_t nbits = 3 * W + 5; /* the last word is partial */

	(void)state;
	assert_int_equal(rmig_bitmap_next_set(map, nbits, 0), nbits);
	rmig_bit_set(map, W - 1);
	rmig_bit_set(map, W);
	rmig_bit_set(map, 3 * W + 4); /* the very last bit */
	assert_int_equal(rmig_bitmap_next_set(map, nbits, 0), W - 1);
	assert_int_equal(rmig_bitmap_next_set(map, nbits, W), W);
	assert_int_equal(rmig_bitmap_next_set(map, nbits, W + 1), 3 * W + 4);
	assert_int_equal(rmig_bitmap_next_clear(map, nbits, W - 1), W + 1);
	/* bits past nbits in the last word are ignored */
	map[3] |= ~0UL << 5;
	assert_int_equal(rmig_bitmap_next_set(map, nbits, 3 * W + 5), nbits);
	assert_int_equal(rmig_bitmap_count(map, nbits), 3);
	assert_true(rmig_bit_test(map, W) && !rmig_bit_test(map, W + 1));
	rmig_bit_clear(map, W);
	assert_false(rmig_bit_test(map, W));
	assert_int_equal(rmig_bitmap_next_set(map, nbits, W - 1), W - 1);
	assert_int_equal(rmig_bitmap_next_set(map, nbits, W), 3 * W + 4);
	rmig_bit_set(map, W);
	assert_int_equal(rmig_bitmap_longs(nbits), 4);
	assert_int_equal(rmig_bitmap_longs(3 * W), 3);
	assert_int_equal(rmig_bitmap_next_clear(map, 3 * W + 5, 3 * W + 4), nbits);
}

static void test_runs(void **state)
{
	unsigned long map[3] = { 0 };
	uint64_t nbits = 2 * W + 10, first, count;
	struct rmig_run_iter it;

	(void)state;
	/* a run across a word boundary, a single bit, and a run ending at nbits */
	for (uint64_t b = W - 3; b < W + 4; b++)
		rmig_bit_set(map, b);
	rmig_bit_set(map, W + 10);
	for (uint64_t b = 2 * W + 6; b < nbits; b++)
		rmig_bit_set(map, b);
	rmig_run_iter_init(&it, map, nbits, 1000);
	assert_true(rmig_run_iter_next(&it, &first, &count));
	assert_int_equal(first, W - 3);
	assert_int_equal(count, 7);
	assert_true(rmig_run_iter_next(&it, &first, &count));
	assert_int_equal(first, W + 10);
	assert_int_equal(count, 1);
	assert_true(rmig_run_iter_next(&it, &first, &count));
	assert_int_equal(first, 2 * W + 6);
	assert_int_equal(count, 4);
	assert_false(rmig_run_iter_next(&it, &first, &count));
	assert_false(rmig_run_iter_next(&it, &first, &count));
}

static void test_runs_bounded(void **state)
{
	unsigned long map[2];
	uint64_t first, count, total = 0, expect = 0;
	struct rmig_run_iter it;

	(void)state;
	memset(map, 0xff, sizeof(map));
	rmig_run_iter_init(&it, map, 2 * W, 5);
	while (rmig_run_iter_next(&it, &first, &count)) {
		assert_int_equal(first, expect);
		assert_true(count <= 5 && count > 0);
		expect += count;
		total += count;
	}
	assert_int_equal(total, 2 * W);
}

/* A record moved between maps: take empties its source, or leaves it; the spare word stays 0. */
static void test_take_or(void **state)
{
	unsigned long *a = rmig_bitmap_new(130), *b = rmig_bitmap_new(130);
	size_t n = rmig_bitmap_longs(130);

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(n, 130 / RMIG_BITS_PER_LONG + 1);
	rmig_bitmap_set_range_atomic(a, 3, 100);
	rmig_bit_set(b, 129);
	rmig_bitmap_take_atomic(b, a, n);
	assert_int_equal(rmig_bitmap_count(a, 130), 0);
	assert_int_equal(rmig_bitmap_count(b, 130), 101);
	assert_true(rmig_bit_test(b, 3) && rmig_bit_test(b, 102) && !rmig_bit_test(b, 103));
	rmig_bitmap_or_atomic(a, b, n);
	assert_int_equal(rmig_bitmap_count(a, 130), 101);
	assert_int_equal(rmig_bitmap_count(b, 130), 101);
	assert_int_equal(a[n], 0);
	assert_int_equal(b[n], 0);
	free(a);
	free(b);
}

static void test_is_zero(void **state)
{
	uint8_t *p = calloc(1, 8192);

	(void)state;
	assert_true(rmig_is_zero(p, 8192));
	assert_true(rmig_is_zero(p, 1));
	assert_true(rmig_is_zero(p, 17));
	p[8191] = 1; /* the last byte */
	assert_false(rmig_is_zero(p, 8192));
	assert_true(rmig_is_zero(p, 8191));
	p[8191] = 0;
	p[0] = 1; /* the first byte */
	assert_false(rmig_is_zero(p, 8192));
	p[0] = 0;
	p[15] = 0x80; /* the last byte of the head */
	assert_false(rmig_is_zero(p, 4096));
	p[15] = 0;
	p[16] = 2; /* the first byte after the head */
	assert_false(rmig_is_zero(p, 4096));
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next_set_clear_edges),
		cmocka_unit_test(test_runs),
		cmocka_unit_test(test_runs_bounded),
		cmocka_unit_test(test_is_zero),
		cmocka_unit_test(test_take_or),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
