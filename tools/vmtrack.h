/* SPDX-License-Identifier: MIT */
/*
 * vmtrack.h - exact dirty tracking of a VM's RAM from outside the VMM,
 * without help from the kernel: a shadow copy of the RAM.
 *
 * The shadow holds exactly the bytes the destination has (or will have
 * once the round's sync returns), because the migration sends from the
 * shadow, never from the guest's RAM. A round compares each guest page
 * with its shadow page; a page that differs is copied into the shadow and
 * marked. What the destination receives is therefore always what the
 * comparison saw:
 *
 * - a page that changes after its copy differs from the shadow at the next
 *   round, and goes again;
 * - a page that changes and changes back between two rounds equals the
 *   shadow, and so equals what the destination holds: nothing to send;
 * - a page torn by a write during its copy differs at the next round; the
 *   last round runs with the guest stopped, so nothing is torn there.
 *
 * Hashing a page when deciding and reading it later, as a mover that sends
 * from guest RAM must, misses a page that changes and changes back in
 * between; this design has no "later". It costs memory the size of the
 * RAM and one compare pass a round.
 */
#ifndef RMIG_VMTRACK_H
#define RMIG_VMTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vmtrack {
	const uint8_t *guest; /* the VM's RAM, as this process maps it */
	uint8_t *shadow;      /* what the destination holds: the source block */
	uint64_t len;
	uint32_t page;
	uint64_t npages;
	unsigned long *map; /* bit n: page n dirty in the last collect */
	size_t nlongs;
};

/* 0, or -ENOMEM. The shadow starts as zeros; the first collect copies everything. */
int vmtrack_init(struct vmtrack *t, const uint8_t *guest, uint64_t len, uint32_t page);
/*
 * One round's pages: those whose guest bytes differ from the shadow (every
 * page with @all), copied into the shadow and marked in t->map. Returns
 * how many. The marks of the previous collect are cleared first, unless
 * @keep: pages collected but not sent yet (a collect that only fed an
 * estimate) must go with the next round, since the shadow already holds
 * them and no later compare will find them again.
 */
uint64_t vmtrack_collect(struct vmtrack *t, bool all, bool keep);
/*
 * The same over pages [@first, @first + @n) only, @first a multiple of
 * VMTRACK_ALIGN: threads may collect disjoint ranges of one tracker at once.
 */
#define VMTRACK_ALIGN (8 * sizeof(unsigned long))
uint64_t vmtrack_collect_range(struct vmtrack *t, uint64_t first, uint64_t n, bool all, bool keep);
void vmtrack_free(struct vmtrack *t);

#endif
