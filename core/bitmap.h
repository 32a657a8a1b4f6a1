/* SPDX-License-Identifier: MIT */
/*
 * bitmap.h - page bitmaps (bit i = page i, unsigned long words, as a VMM's
 * dirty log) and the run iterator that turns set bits into bounded extents.
 */
#ifndef RMIG_BITMAP_H
#define RMIG_BITMAP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rmig.h" /* RMIG_BITS_PER_LONG, RMIG_BITMAP_LONGS(): the API's bitmaps */

static inline size_t rmig_bitmap_longs(uint64_t nbits)
{
	return (size_t)RMIG_BITMAP_LONGS(nbits);
}

static inline bool rmig_bit_test(const unsigned long *map, uint64_t bit)
{
	return (map[bit / RMIG_BITS_PER_LONG] >> (bit % RMIG_BITS_PER_LONG)) & 1;
}

static inline void rmig_bit_set(unsigned long *map, uint64_t bit)
{
	map[bit / RMIG_BITS_PER_LONG] |= 1UL << (bit % RMIG_BITS_PER_LONG);
}

static inline void rmig_bit_clear(unsigned long *map, uint64_t bit)
{
	map[bit / RMIG_BITS_PER_LONG] &= ~(1UL << (bit % RMIG_BITS_PER_LONG));
}

/* First set (or clear) bit in [start, nbits), or nbits if none. */
uint64_t rmig_bitmap_next_set(const unsigned long *map, uint64_t nbits, uint64_t start);
uint64_t rmig_bitmap_next_clear(const unsigned long *map, uint64_t nbits, uint64_t start);
uint64_t rmig_bitmap_count(const unsigned long *map, uint64_t nbits);
/* Set bits [first, first + n) with atomic ORs (threads may set others in the same words). */
void rmig_bitmap_set_range_atomic(unsigned long *map, uint64_t first, uint64_t n);
/* A zeroed map of @nbits bits, with one spare zero word past them; NULL without memory. */
unsigned long *rmig_bitmap_new(uint64_t nbits);
/*
 * Records kept by channel threads (set_range_atomic) and moved by another:
 * take ORs each word of @src into @dst and clears it, atomically on @src;
 * or ORs @src into @dst atomically on @dst. @words words each.
 */
void rmig_bitmap_take_atomic(unsigned long *dst, unsigned long *src, size_t words);
void rmig_bitmap_or_atomic(unsigned long *dst, const unsigned long *src, size_t words);

/*
 * Iterate runs of set bits, each at most @max_run bits long. Bits past nbits
 * in the last word are ignored.
 */
struct rmig_run_iter {
	const unsigned long *map;
	uint64_t nbits;
	uint64_t pos;
	uint64_t max_run;
};

void rmig_run_iter_init(struct rmig_run_iter *it, const unsigned long *map, uint64_t nbits,
			uint64_t max_run);
/* Next run: true with [*first_p, *first_p + *count_p), false at the end. */
bool rmig_run_iter_next(struct rmig_run_iter *it, uint64_t *first_p, uint64_t *count_p);

/* True when @len bytes at @p are all zero. */
bool rmig_is_zero(const void *p, size_t len);

#endif
