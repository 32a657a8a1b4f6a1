/* SPDX-License-Identifier: MIT */
/* vmtrack.c - dirty tracking by a shadow copy (see vmtrack.h). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmtrack.h"

#define LONG_BITS (sizeof(unsigned long) * CHAR_BIT)

int vmtrack_init(struct vmtrack *t, const uint8_t *guest, uint64_t len, uint32_t page)
{
	memset(t, 0, sizeof(*t));
	if (!page || len % page)
		return -EINVAL;
	t->guest = guest;
	t->len = len;
	t->page = page;
	t->npages = len / page;
	t->nlongs = (t->npages + LONG_BITS - 1) / LONG_BITS;
	t->map = calloc(t->nlongs ? t->nlongs : 1, sizeof(*t->map));
	t->shadow = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!t->map || t->shadow == MAP_FAILED) {
		if (t->shadow == MAP_FAILED)
			t->shadow = NULL;
		vmtrack_free(t);
		return -ENOMEM;
	}
	(void)madvise(t->shadow, len, MADV_HUGEPAGE); /* advice: fewer faults on the first copy */
	return 0;
}

/* All of @len bytes (a multiple of 16) zero: the first 16, then each 16 equal to the one before. */
static bool is_zero(const uint8_t *p, size_t len)
{
	static const uint8_t zero16[16];

	return !memcmp(p, zero16, 16) && !memcmp(p, p + 16, len - 16);
}

uint64_t vmtrack_collect_range(struct vmtrack *t, uint64_t first, uint64_t n, bool all, bool keep)
{
	uint64_t end = first + n > t->npages ? t->npages : first + n, count = 0;

	if (first >= end)
		return 0;
	if (!keep) /* whole words: @first is aligned, and the last range ends the map */
		memset(t->map + first / LONG_BITS, 0,
		       ((end + LONG_BITS - 1) / LONG_BITS - first / LONG_BITS) * sizeof(*t->map));
	if (all) {
		/*
		 * Every page, copied: but a zero page over a zero shadow page (the
		 * first collect: guest RAM never touched, a fresh shadow) is left
		 * alone, so that the shadow is neither written nor allocated there.
		 */
		for (uint64_t p = first; p < end; p++) {
			uint64_t off = p * t->page;

			if (t->page < 32 || !is_zero(t->guest + off, t->page) ||
			    !is_zero(t->shadow + off, t->page))
				memcpy(t->shadow + off, t->guest + off, t->page);
			t->map[p / LONG_BITS] |= 1ul << (p % LONG_BITS);
		}
		return end - first;
	}
	for (uint64_t p = first; p < end; p++) {
		uint64_t off = p * t->page;

		if (!memcmp(t->guest + off, t->shadow + off, t->page))
			continue;
		/* the destination gets exactly these bytes, whatever the guest does next */
		memcpy(t->shadow + off, t->guest + off, t->page);
		count += !(t->map[p / LONG_BITS] & (1ul << (p % LONG_BITS)));
		t->map[p / LONG_BITS] |= 1ul << (p % LONG_BITS);
	}
	return count;
}

uint64_t vmtrack_collect(struct vmtrack *t, bool all, bool keep)
{
	return vmtrack_collect_range(t, 0, t->npages, all, keep);
}

void vmtrack_free(struct vmtrack *t)
{
	if (t->shadow)
		munmap(t->shadow, t->len);
	free(t->map);
	memset(t, 0, sizeof(*t));
}
