/* SPDX-License-Identifier: MIT */
/* bitmap.c - word-at-a-time bitmap scans and the extent run iterator. */
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"

static uint64_t next_bit(const unsigned long *map, uint64_t nbits, uint64_t start, bool want_set)
{
	uint64_t i = start;

	while (i < nbits) {
		unsigned long w = map[i / RMIG_BITS_PER_LONG];

		if (!want_set)
			w = ~w;
		w &= ~0UL << (i % RMIG_BITS_PER_LONG);
		if (w) {
			i = (i / RMIG_BITS_PER_LONG) * RMIG_BITS_PER_LONG +
			    (uint64_t)__builtin_ctzl(w);
			return i < nbits ? i : nbits;
		}
		i = (i / RMIG_BITS_PER_LONG + 1) * RMIG_BITS_PER_LONG;
	}
	return nbits;
}

uint64_t rmig_bitmap_next_set(const unsigned long *map, uint64_t nbits, uint64_t start)
{
	return next_bit(map, nbits, start, true);
}

uint64_t rmig_bitmap_next_clear(const unsigned long *map, uint64_t nbits, uint64_t start)
{
	return next_bit(map, nbits, start, false);
}

uint64_t rmig_bitmap_count(const unsigned long *map, uint64_t nbits)
{
	uint64_t n = 0, full = nbits / RMIG_BITS_PER_LONG;
	unsigned int rem = nbits % RMIG_BITS_PER_LONG;

	for (uint64_t i = 0; i < full; i++)
		n += (uint64_t)__builtin_popcountl(map[i]);
	if (rem)
		n += (uint64_t)__builtin_popcountl(map[full] & ((1UL << rem) - 1));
	return n;
}

void rmig_run_iter_init(struct rmig_run_iter *it, const unsigned long *map, uint64_t nbits,
			uint64_t max_run)
{
	it->map = map;
	it->nbits = nbits;
	it->pos = 0;
	it->max_run = max_run ? max_run : 1;
}

bool rmig_run_iter_next(struct rmig_run_iter *it, uint64_t *first_p, uint64_t *count_p)
{
	uint64_t first = rmig_bitmap_next_set(it->map, it->nbits, it->pos);
	uint64_t end, limit;

	if (first >= it->nbits) {
		it->pos = it->nbits;
		return false;
	}
	limit = it->nbits - first > it->max_run ? first + it->max_run : it->nbits;
	end = rmig_bitmap_next_clear(it->map, limit, first);
	it->pos = end;
	*first_p = first;
	*count_p = end - first;
	return true;
}

bool rmig_is_zero(const void *p, size_t len)
{
	const unsigned char *c = p;
	static const unsigned char zero16[16];

	/*
	 * Check a 16-byte head, then compare the buffer with itself shifted by
	 * 16: glibc's memcmp picks SIMD at run time, so no -march is needed.
	 */
	if (len <= 16)
		return memcmp(c, zero16, len) == 0;
	return memcmp(c, zero16, 16) == 0 && memcmp(c, c + 16, len - 16) == 0;
}

void rmig_bitmap_set_range_atomic(unsigned long *map, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n;) {
		uint64_t w = p / RMIG_BITS_PER_LONG, bit = p % RMIG_BITS_PER_LONG;
		uint64_t k = RMIG_BITS_PER_LONG - bit < first + n - p ? RMIG_BITS_PER_LONG - bit
								       : first + n - p;
		unsigned long m = k == RMIG_BITS_PER_LONG ? ~0UL : ((1UL << k) - 1) << bit;

		__atomic_fetch_or(&map[w], m, __ATOMIC_RELAXED);
		p += k;
	}
}

unsigned long *rmig_bitmap_new(uint64_t nbits)
{
	return calloc(rmig_bitmap_longs(nbits) + 1, sizeof(unsigned long));
}

void rmig_bitmap_take_atomic(unsigned long *dst, unsigned long *src, size_t words)
{
	for (size_t w = 0; w < words; w++)
		dst[w] |= __atomic_exchange_n(&src[w], 0, __ATOMIC_ACQ_REL);
}

void rmig_bitmap_or_atomic(unsigned long *dst, const unsigned long *src, size_t words)
{
	for (size_t w = 0; w < words; w++)
		__atomic_fetch_or(&dst[w], src[w], __ATOMIC_RELEASE);
}
