/* SPDX-License-Identifier: MIT */
/*
 * pc_bits.h - postcopy's page maps: one bit per page, set and cleared
 * atomically by the channel, control and fault-handler threads.
 */
#ifndef RMIG_PC_BITS_H
#define RMIG_PC_BITS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define BPL (8 * sizeof(unsigned long))

static inline _Atomic unsigned long *bits_new(uint64_t n)
{
	return calloc((n + BPL - 1) / BPL ? (n + BPL - 1) / BPL : 1, sizeof(unsigned long));
}

static inline bool bit_test(_Atomic unsigned long *m, uint64_t i)
{
	return atomic_load_explicit(&m[i / BPL], memory_order_acquire) & (1ul << (i % BPL));
}

/* Set bit @i; true if it was set already. */
static inline bool bit_test_set(_Atomic unsigned long *m, uint64_t i)
{
	unsigned long b = 1ul << (i % BPL);

	return atomic_fetch_or_explicit(&m[i / BPL], b, memory_order_acq_rel) & b;
}

static inline void bit_clear(_Atomic unsigned long *m, uint64_t i)
{
	atomic_fetch_and_explicit(&m[i / BPL], ~(1ul << (i % BPL)), memory_order_release);
}

#endif
