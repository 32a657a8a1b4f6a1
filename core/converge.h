/* SPDX-License-Identifier: MIT */
/*
 * converge.h - the arithmetic of live migration, kept free of sessions so
 * that unit tests drive it with their own clock: a bandwidth limiter shared
 * by every channel, and the switchover decision.
 */
#ifndef RMIG_CONVERGE_H
#define RMIG_CONVERGE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rmig.h"

/*
 * A virtual clock: each reservation of @len bytes starts where the previous
 * one ended (or now, if that is past), lasts len / rate, and may go when it
 * ends. Channels share one limiter, so the sum of all channels keeps to the
 * rate over any interval that starts with the first reservation.
 */
struct rmig_rate_limit {
	pthread_mutex_t lock;
	_Atomic uint64_t rate; /* bytes/s; 0 = unlimited */
	uint64_t next_ns;      /* protected by lock */
};

void rmig_rl_init(struct rmig_rate_limit *rl, uint64_t rate);
void rmig_rl_destroy(struct rmig_rate_limit *rl);
/* Change the rate; 0 lifts the limit (waiters notice on their next check). */
void rmig_rl_set(struct rmig_rate_limit *rl, uint64_t rate);
static inline uint64_t rmig_rl_rate(struct rmig_rate_limit *rl)
{
	return atomic_load_explicit(&rl->rate, memory_order_relaxed);
}
/* Reserve @len bytes at @now_ns: the time they may go (now when unlimited). */
uint64_t rmig_rl_reserve(struct rmig_rate_limit *rl, uint64_t len, uint64_t now_ns);

struct rmig_conv_in {
	uint64_t dirty_bytes;
	uint64_t state_bytes;
	uint64_t bandwidth;      /* bytes/s, > 0 */
	uint64_t fixed_ns;       /* what the switchover costs beyond the bytes: round trips */
	uint64_t limit_ns;       /* downtime limit */
	unsigned int rounds;     /* rounds sent so far */
	unsigned int max_rounds; /* 0 = no limit */
	bool switch_anyway;
};

/* Expected downtime into *downtime_ns_p, and what to do about it. */
enum rmig_decision rmig_decide(const struct rmig_conv_in *in, uint64_t *downtime_ns_p);

/* bytes / ns as bytes/s, without overflow; 0 when ns is 0. */
uint64_t rmig_rate_of(uint64_t bytes, uint64_t ns);

#endif
