/* SPDX-License-Identifier: MIT */
/* converge.c - the bandwidth limiter and the switchover decision. */
#include "converge.h"

void rmig_rl_init(struct rmig_rate_limit *rl, uint64_t rate)
{
	pthread_mutex_init(&rl->lock, NULL);
	atomic_init(&rl->rate, rate);
	rl->next_ns = 0;
}

void rmig_rl_destroy(struct rmig_rate_limit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

void rmig_rl_set(struct rmig_rate_limit *rl, uint64_t rate)
{
	atomic_store(&rl->rate, rate);
}

/* len / rate in ns, without overflow for any len below 2^64 / 1e9 * rate. */
static uint64_t cost_ns(uint64_t len, uint64_t rate)
{
	unsigned __int128 ns = (unsigned __int128)len * 1000000000u / rate;

	return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

uint64_t rmig_rl_reserve(struct rmig_rate_limit *rl, uint64_t len, uint64_t now_ns)
{
	uint64_t rate = rmig_rl_rate(rl), at;

	if (!rate)
		return now_ns;
	pthread_mutex_lock(&rl->lock);
	if (rl->next_ns < now_ns)
		rl->next_ns = now_ns; /* idle time is not saved up as a burst */
	/* Pay before going: no interval from the start ever exceeds the rate. */
	rl->next_ns = UINT64_MAX - rl->next_ns < cost_ns(len, rate) ? UINT64_MAX
								    : rl->next_ns + cost_ns(len, rate);
	at = rl->next_ns;
	pthread_mutex_unlock(&rl->lock);
	return at;
}

uint64_t rmig_rate_of(uint64_t bytes, uint64_t ns)
{
	if (!ns)
		return 0;
	unsigned __int128 r = (unsigned __int128)bytes * 1000000000u / ns;

	return r > UINT64_MAX ? UINT64_MAX : (uint64_t)r;
}

enum rmig_decision rmig_decide(const struct rmig_conv_in *in, uint64_t *downtime_ns_p)
{
	uint64_t bw = in->bandwidth ? in->bandwidth : 1;
	uint64_t left = in->dirty_bytes + in->state_bytes;

	*downtime_ns_p = left < in->dirty_bytes ? UINT64_MAX : cost_ns(left, bw);
	*downtime_ns_p = UINT64_MAX - *downtime_ns_p < in->fixed_ns ? UINT64_MAX
								     : *downtime_ns_p + in->fixed_ns;
	if (*downtime_ns_p <= in->limit_ns)
		return RMIG_DECIDE_SWITCHOVER;
	/* Out of rounds, or nothing dirty (device state alone is over the
	 * limit): another round cannot bring the downtime down. */
	if ((in->max_rounds && in->rounds >= in->max_rounds) || !in->dirty_bytes)
		return in->switch_anyway ? RMIG_DECIDE_FORCED : RMIG_DECIDE_GIVE_UP;
	return RMIG_DECIDE_ROUND;
}
