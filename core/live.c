/* SPDX-License-Identifier: MIT */
/*
 * live.c - live migration on the source: precopy rounds and their ordering
 * rule, the measurements a VMM needs to decide when to stop the guest
 * (dirty rate, bandwidth, expected downtime), the switchover, and the
 * bandwidth limit every channel thread honours.
 */
#include <errno.h>
#include <time.h>

#include "bitmap.h"
#include "sess.h"

/* A round updates the bandwidth estimate only if it moved this much... */
#define BW_MIN_BYTES (1ull << 20)
/* ...or lasted this long: tiny rounds are all sync latency. */
#define BW_MIN_NS (20ull * 1000000ull)

void rmig_sess_test_break_round_order(struct rmig_session *s, bool broken)
{
	s->test_no_round_sync = broken;
}

static uint64_t dirty_pages(struct rmig_session *s, const unsigned long *const *bitmaps,
			    uint64_t *bytes_p)
{
	uint64_t pages = 0, bytes = 0;

	for (unsigned int i = 0; i < s->nblocks; i++) {
		uint64_t n;

		if (!bitmaps[i])
			continue;
		n = rmig_bitmap_count(bitmaps[i], s->blocks[i].npages);
		pages += n;
		bytes += n * s->blocks[i].page_size;
	}
	*bytes_p = bytes;
	return pages;
}

int rmig_send_round(rmig_session *s, const unsigned long *const *bitmaps, unsigned int nblocks,
		    struct rmig_round_stats *st_p)
{
	struct rmig_round_stats st = { 0 };
	uint64_t t0 = rmig_now_ns(), p0, z0, b0, dbytes, prev, t_sync;
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	if (!bitmaps || nblocks != s->nblocks)
		return -EINVAL;
	st.dirty_pages = dirty_pages(s, bitmaps, &dbytes);
	p0 = atomic_load(&s->st_pages);
	z0 = atomic_load(&s->st_zero_pages);
	b0 = atomic_load(&s->st_bytes);
	pthread_mutex_lock(&s->lock);
	prev = s->t_round_ns;
	s->t_round_ns = t0;
	pthread_mutex_unlock(&s->lock);
	rmig_for_each_feature(s, f, round_begin) /* resume: sent again until synced */
		f->round_begin(s, bitmaps);
	for (unsigned int i = 0; i < nblocks && !rc; i++)
		if (bitmaps[i])
			rc = rmig_send_bitmap(s, s->blocks[i].name, bitmaps[i]);
	/* The ordering rule: the round ends placed, before the next one starts. */
	if (!rc && !s->test_no_round_sync)
		rc = rmig_source_sync(s);
	rmig_for_each_feature(s, f, round_end)
		if (!rc && !s->test_no_round_sync)
			f->round_end(s);
	/*
	 * One more sync with nothing in flight: its duration is the bare round
	 * trip that the switchover pays twice (last round, completion), which
	 * the closing sync above hides behind draining the round's data.
	 */
	t_sync = rmig_now_ns();
	if (!rc && !s->test_no_round_sync)
		rc = rmig_source_sync(s);
	t_sync = rmig_now_ns() - t_sync;
	if (rc)
		return rc;
	st.pages = atomic_load(&s->st_pages) - p0;
	st.zero_pages = atomic_load(&s->st_zero_pages) - z0;
	st.bytes = atomic_load(&s->st_bytes) - b0;
	st.duration_ns = rmig_now_ns() - t0;
	st.bandwidth = rmig_rate_of(st.bytes, st.duration_ns);
	if (prev)
		st.dirty_rate = rmig_rate_of(dbytes, t0 - prev);
	pthread_mutex_lock(&s->lock);
	st.round = ++s->rounds;
	if (st.bytes >= BW_MIN_BYTES || st.duration_ns >= BW_MIN_NS || !s->bandwidth)
		s->bandwidth = st.bandwidth ? st.bandwidth : s->bandwidth;
	s->sync_ns = t_sync;
	pthread_mutex_unlock(&s->lock);
	if (st_p)
		*st_p = st;
	return 0;
}

int rmig_estimate(rmig_session *s, const unsigned long *const *bitmaps, unsigned int nblocks,
		  uint64_t state_bytes, struct rmig_estimate *e)
{
	struct rmig_conv_in in = { 0 };
	uint64_t now = rmig_now_ns();
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	if (!bitmaps || !e || nblocks != s->nblocks)
		return -EINVAL;
	*e = (struct rmig_estimate){ 0 };
	e->dirty_pages = dirty_pages(s, bitmaps, &e->dirty_bytes);
	pthread_mutex_lock(&s->lock);
	e->rounds = s->rounds;
	e->bandwidth = s->bandwidth;
	in.fixed_ns = 2 * s->sync_ns;
	if (s->t_round_ns)
		e->dirty_rate = rmig_rate_of(e->dirty_bytes, now - s->t_round_ns);
	pthread_mutex_unlock(&s->lock);
	if (!e->bandwidth) {
		rmig_err(&s->log, "no round has measured the bandwidth yet: send one first");
		return -ENODATA;
	}
	in.dirty_bytes = e->dirty_bytes;
	in.state_bytes = state_bytes;
	in.bandwidth = e->bandwidth;
	in.limit_ns = (uint64_t)s->opts.downtime_limit_ms * 1000000ull;
	in.rounds = e->rounds;
	in.max_rounds = s->opts.max_rounds;
	in.switch_anyway = s->opts.flags & RMIG_F_SWITCH_ANYWAY;
	e->decision = rmig_decide(&in, &e->expected_downtime_ns);
	return 0;
}

int rmig_switchover(rmig_session *s)
{
	return rmig_sess_switchover(s);
}

/* The guest has stopped: what is left goes at full speed. */
static void switchover(struct rmig_session *s)
{
	rmig_rl_set(&s->rl, 0);
}

/* Wait until @len bytes may go under max_bandwidth; -ECANCELED on stop. */
static int throttle(struct rmig_session *s, uint64_t len)
{
	uint64_t at, now;

	if (!rmig_rl_rate(&s->rl))
		return 0;
	now = rmig_now_ns();
	at = rmig_rl_reserve(&s->rl, len, now);
	/* Sleep in slices, so that a stop or a lifted limit is noticed soon. */
	while (at > now && rmig_rl_rate(&s->rl)) {
		uint64_t d = at - now < 20000000ull ? at - now : 20000000ull;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)d };

		if (rmig_sess_err(s))
			return -ECANCELED;
		nanosleep(&ts, NULL);
		now = rmig_now_ns();
	}
	return 0;
}

/* The downtime limit and the bandwidth limit. */
static int opts_check(const struct rmig_opts *o, const struct rmig_logger *lg)
{
	if (o->downtime_limit_ms < 1 || o->downtime_limit_ms > 3600000) {
		rmig_err(lg, "option downtime_limit_ms: %u is not in 1..3600000",
			 o->downtime_limit_ms);
		return -EINVAL;
	}
	if (o->max_bandwidth && o->max_bandwidth < 4096) {
		rmig_err(lg, "option max_bandwidth: %llu bytes/s is below 4096 (0 = unlimited)",
			 (unsigned long long)o->max_bandwidth);
		return -EINVAL;
	}
	return 0;
}

const struct rmig_feature rmig_live_feature = {
	.name = "live",
	.opts_check = opts_check,
	.pace = throttle,
	.switchover = switchover,
};
