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

uint64_t vmtrack_collect(struct vmtrack *t, bool all, bool keep)
{
	uint64_t n = 0;

	if (!keep)
		memset(t->map, 0, t->nlongs * sizeof(*t->map));
	if (all) {
		memcpy(t->shadow, t->guest, t->len);
		for (uint64_t p = 0; p < t->npages; p++)
			t->map[p / LONG_BITS] |= 1ul << (p % LONG_BITS);
		return t->npages;
	}
	for (uint64_t p = 0; p < t->npages; p++) {
		uint64_t off = p * t->page;

		if (!memcmp(t->guest + off, t->shadow + off, t->page))
			continue;
		/* the destination gets exactly these bytes, whatever the guest does next */
		memcpy(t->shadow + off, t->guest + off, t->page);
		n += !(t->map[p / LONG_BITS] & (1ul << (p % LONG_BITS)));
		t->map[p / LONG_BITS] |= 1ul << (p % LONG_BITS);
	}
	return n;
}

void vmtrack_free(struct vmtrack *t)
{
	if (t->shadow)
		munmap(t->shadow, t->len);
	free(t->map);
	memset(t, 0, sizeof(*t));
}
