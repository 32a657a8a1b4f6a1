/* SPDX-License-Identifier: MIT */
/*
 * chan.c - the channel engine. Source: producers fill a generic job and swap
 * it with an idle channel's empty one (M producers + N channels = M+N jobs);
 * each channel thread posts its job through the transport, finding zero pages
 * on the way. Destination: one thread per channel drives the backend's
 * progress(), which places data through the session's upcalls.
 *
 * The engine names no feature: what a feature adds to a channel (claiming
 * pages as they go, staging, pacing, a record of what was posted) comes
 * through the session's features' channel hooks (struct rmig_feature, sess.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "sess.h"

/* The channel this thread runs (failover.c reads it in a failure upcall). */
static __thread struct rmig_chan *chan_self;

struct rmig_chan *rmig_chan_self(void)
{
	return chan_self;
}

struct rmig_job *rmig_job_new(void)
{
	return calloc(1, sizeof(struct rmig_job));
}

static void job_reset(struct rmig_job *j)
{
	j->kind = RMIG_JOB_NONE;
	j->n = 0;
	j->bytes = 0;
	j->data = NULL;
	j->urgent = false;
}

/* A failure, reported as a transport reports one: through the session's upcall. */
#define engine_fail(s, ...) (s)->up.fail((s)->up.arg, __VA_ARGS__)

static int pace(struct rmig_chan *c, uint64_t len)
{
	struct rmig_session *s = c->s;
	int rc = 0;

	atomic_store(&c->pacing, true);
	rmig_for_each_feature(s, h, pace)
		if (!rc)
			rc = h->pace(s, len);
	atomic_store(&c->pacing, false);
	atomic_store(&c->alive_ns, rmig_now_ns());
	return rc;
}

/* The feature that claims block @bidx's pages as they go, or NULL. */
static const struct rmig_feature *claimer(struct rmig_session *s, uint32_t bidx)
{
	rmig_for_each_feature(s, h, claims)
		if (h->claims(s, bidx))
			return h;
	return NULL;
}

/*
 * A zero run for a destination whose memory reads as zero: only the pages
 * sent before (and so maybe not zero there now) need a marker.
 */
static int zero_run(struct rmig_chan *c, const struct rmig_block *b, struct rmig_target *t,
		    uint64_t off, uint64_t end)
{
	const struct rmig_transport_ops *ops = rmig_chan_ops(c);
	uint64_t ps = b->page_size;
	int rc = 0;

	if (!b->sent)
		return ops->zero(c->tch, t, end - off);
	while (off < end && !rc) {
		bool was = rmig_bit_test(b->sent, off / ps);
		uint64_t q = off + ps;

		while (q < end && rmig_bit_test(b->sent, q / ps) == was)
			q += ps;
		if (was) {
			t->offset = off;
			rc = ops->zero(c->tch, t, q - off);
		}
		off = q;
	}
	return rc;
}

/*
 * Post one RAM extent: runs of non-zero pages become writes straight from
 * source memory, runs of zero pages become zero markers (none for pages a
 * zeroed destination never got).
 */
static int post_ram_extent(struct rmig_chan *c, const struct rmig_block *b, uint32_t bidx,
			   const struct rmig_extent *e, bool urgent, bool staged)
{
	struct rmig_session *s = c->s;
	const struct rmig_transport_ops *ops = rmig_chan_ops(c);
	/*
	 * Zero scan in pages, or in extent_max units when pages are larger;
	 * staged (claimed) always whole pages: the destination places pages whole.
	 */
	uint64_t ps = b->page_size < s->opts.extent_max || staged ? b->page_size :
								       s->opts.extent_max;
	uint64_t off = e->offset, end = e->offset + e->len;
	uint64_t pages = 0, zeros = 0;
	int rc = 0;

	while (off < end) {
		bool zero = rmig_is_zero(b->host + off, ps);
		uint64_t run = off + ps;
		struct rmig_target t = { .kind = RMIG_TGT_RAM,
					 .id = bidx,
					 .offset = off,
					 .staged = staged };

		while (run < end && rmig_is_zero(b->host + run, ps) == zero)
			run += ps;
		pages += (run - off) / ps;
		if (zero) {
			zeros += (run - off) / ps;
			rc = zero_run(c, b, &t, off, run);
		} else {
			struct iovec iov = { .iov_base = b->host + off, .iov_len = run - off };

			/* a guest thread waits on a requested page: never held back */
			rc = urgent ? 0 : pace(c, run - off);
			if (!rc)
				rc = ops->write(c->tch, &t, &iov, 1);
			if (!rc) {
				atomic_store(&c->alive_ns, rmig_now_ns());
				atomic_fetch_add_explicit(&c->bytes, run - off, memory_order_relaxed);
				atomic_fetch_add_explicit(&s->st_bytes, run - off,
							  memory_order_relaxed);
			}
		}
		if (rc)
			break;
		if (b->sent) /* pages sent (data or marker) */
			rmig_bitmap_set_range_atomic(b->sent, off / b->page_size,
						     (run - off) / b->page_size);
		rmig_for_each_feature(s, h, posted)
			h->posted(c, b, off / b->page_size, (run - off) / b->page_size);
		atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
		off = run;
	}
	atomic_fetch_add_explicit(&s->st_handled, off - e->offset, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->st_pages, pages, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->st_zero_pages, zeros, memory_order_relaxed);
	return rc;
}

/*
 * A claimed block: each page is claimed right before it goes out, so that a
 * page the destination asks for is never stuck behind a queued job: only
 * the runs this channel claims are posted; pages another path claimed, or
 * the destination has, are skipped.
 */
static int post_ram_extent_claimed(struct rmig_chan *c, const struct rmig_feature *h,
				   const struct rmig_job *j, const struct rmig_extent *e)
{
	const struct rmig_block *b = &c->s->blocks[j->id];
	uint64_t ps = b->page_size, off = e->offset, end = e->offset + e->len, n = 0;
	int rc = 0;

	if (h->claim_begin)
		h->claim_begin(c);
	while (off < end && !rc) {
		uint64_t run = off;

		while (run < end && h->claim(c->s, j->id, run / ps, j->urgent))
			run += ps;
		if (run > off) {
			struct rmig_extent sub = { .offset = off, .len = run - off };

			n += (run - off) / ps;
			rc = post_ram_extent(c, b, j->id, &sub, j->urgent, true);
		}
		off = run + ps; /* skip the page that could not be claimed */
	}
	if (h->claim_end)
		h->claim_end(c->s, j->urgent, n);
	return rc;
}

static int run_job(struct rmig_chan *c, struct rmig_job *j)
{
	struct rmig_session *s = c->s;
	const struct rmig_transport_ops *ops = rmig_chan_ops(c);
	int rc = 0;

	switch (j->kind) {
	case RMIG_JOB_RAM: {
		const struct rmig_feature *h = claimer(s, j->id);

		for (unsigned int i = 0; i < j->n && !rc; i++)
			rc = h && h->claim ? post_ram_extent_claimed(c, h, j, &j->ext[i]) :
					     post_ram_extent(c, &s->blocks[j->id], j->id, &j->ext[i],
							     false, h != NULL);
		break;
	}
	case RMIG_JOB_STATE: {
		struct rmig_target t = { .kind = RMIG_TGT_STATE,
					 .id = j->id,
					 .offset = j->ext[0].offset,
					 .total = j->total };
		struct iovec iov = { .iov_base = (void *)(uintptr_t)(j->data + j->ext[0].offset),
				     .iov_len = j->ext[0].len };

		rc = pace(c, iov.iov_len);
		if (!rc)
			rc = ops->write(c->tch, &t, &iov, 1);
		if (!rc) {
			atomic_store(&c->alive_ns, rmig_now_ns());
			atomic_fetch_add_explicit(&c->bytes, iov.iov_len, memory_order_relaxed);
			atomic_fetch_add_explicit(&c->writes, 1, memory_order_relaxed);
		}
		break;
	}
	case RMIG_JOB_SYNC:
		rc = ops->flush(c->tch);
		if (!rc)
			rc = ops->marker(c->tch, j->sync_id);
		break;
	case RMIG_JOB_NONE:
		break;
	}
	/* what the backend gathered goes out now: nothing waits for the next job */
	if (!rc && ops->push)
		rc = ops->push(c->tch);
	return rc;
}

/* A channel thread ends: the features hear of it. */
static void chan_exit(struct rmig_chan *c)
{
	rmig_for_each_feature(c->s, h, chan_exit)
		h->chan_exit(c);
}

/* A down channel's job @j never went out whole: the features hear of it. */
static void chan_lost(struct rmig_chan *c, const struct rmig_job *j)
{
	rmig_for_each_feature(c->s, h, chan_lost)
		h->chan_lost(c, j);
}

static void *source_thread(void *arg)
{
	struct rmig_chan *c = arg;
	struct rmig_session *s = c->s;
	struct rmig_job *j;
	bool down;
	int rc;

	chan_self = c;
	rmig_chan_bind(c);
	pthread_mutex_lock(&s->cs_lock);
	for (;;) {
		while (!c->pending && !s->cs_stop && !c->down)
			pthread_cond_wait(&c->work, &s->cs_lock);
		if (s->cs_stop)
			break;
		j = c->job;
		down = c->down;
		atomic_store(&c->alive_ns, rmig_now_ns());
		pthread_mutex_unlock(&s->cs_lock);

		rc = 0;
		if (!down) {
			pthread_mutex_lock(&c->post_lock);
			rc = run_job(c, j);
			pthread_mutex_unlock(&c->post_lock);
			if (rc)
				engine_fail(s, rc, "channel %u: %s job failed: %s", c->idx,
					  j->kind == RMIG_JOB_SYNC ? "sync" : "write", strerror(-rc));
		}
		pthread_mutex_lock(&s->cs_lock);
		down = c->down;
		pthread_mutex_unlock(&s->cs_lock);
		/* its rail failed over: the job (if any) goes again elsewhere */
		if (down)
			chan_lost(c, j);
		job_reset(j);

		pthread_mutex_lock(&s->cs_lock);
		c->pending = false;
		/* Pairs with the wait in rmig_chan_submit(). */
		pthread_cond_broadcast(&s->cs_idle);
		if (rc || down)
			break;
	}
	pthread_mutex_unlock(&s->cs_lock);
	chan_exit(c);
	return NULL;
}

static void *dest_thread(void *arg)
{
	struct rmig_chan *c = arg;
	struct rmig_session *s = c->s;
	void *ctx[RMIG_FEATURES_MAX] = { NULL };
	int rc = 0;

	chan_self = c;
	rmig_chan_bind(c);
	rmig_for_each_feature(s, h, dest_start)
		if (!rc)
			rc = h->dest_start(c, &ctx[h_i]);
	while (!rc) {
		rmig_for_each_feature(s, h, dest_progress)
			h->dest_progress(c, ctx[h_i]);
		rc = rmig_chan_ops(c)->progress(c->tch);
	}
	if (rc != -ECANCELED)
		engine_fail(s, rc, "channel %u: receive failed: %s", c->idx, strerror(-rc));
	rmig_for_each_feature(s, h, dest_end)
		h->dest_end(c, ctx[h_i]);
	chan_exit(c);
	return NULL;
}

static int start_threads(struct rmig_session *s, void *(*fn)(void *))
{
	for (unsigned int i = 0; i < s->nchannels; i++) {
		struct rmig_chan *c = &s->chans[i];
		int rc = pthread_create(&c->thread, NULL, fn, c);

		if (rc)
			return engine_fail(s, -rc, "starting channel thread %u: %s", i, strerror(rc));
		c->thread_started = true;
	}
	return 0;
}

int rmig_chans_start_source(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nchannels; i++) {
		s->chans[i].job = rmig_job_new();
		if (!s->chans[i].job)
			return -ENOMEM;
	}
	return start_threads(s, source_thread);
}

int rmig_chans_start_dest(struct rmig_session *s)
{
	return start_threads(s, dest_thread);
}

/* Caller: the transport was shut down (or will be), so progress() returns. */
void rmig_chans_stop(struct rmig_session *s)
{
	if (!s->chans)
		return;
	pthread_mutex_lock(&s->cs_lock);
	s->cs_stop = true;
	for (unsigned int i = 0; i < s->nchannels; i++)
		pthread_cond_signal(&s->chans[i].work);
	pthread_cond_broadcast(&s->cs_idle);
	pthread_mutex_unlock(&s->cs_lock);
	for (unsigned int i = 0; i < s->nchannels; i++) {
		struct rmig_chan *c = &s->chans[i];

		if (c->thread_started)
			pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
}

/*
 * An idle channel's index; -1 when none is idle now, -2 when channel @want
 * is down, -3 when every channel a job could go to is down.
 */
static int find_idle(struct rmig_session *s, int want)
{
	/* a reserved channel (the last ones) takes only what is handed to it by index */
	unsigned int shared = s->nchannels, down = 0;

	rmig_for_each_feature(s, h, reserved)
		shared -= h->reserved(s);

	if (want >= 0)
		return s->chans[want].down ? -2 : s->chans[want].pending ? -1 : want;
	for (unsigned int k = 0; k < shared; k++) {
		unsigned int i = (s->cs_next + k) % shared;

		down += s->chans[i].down;
		if (!s->chans[i].pending && !s->chans[i].down) {
			s->cs_next = (i + 1) % shared;
			return (int)i;
		}
	}
	return shared && down == shared ? -3 : -1;
}

/* Every channel a job could go to is down: a feature may open others (0), or the error. */
static int chans_gone(struct rmig_session *s)
{
	int rc = -ENOLINK;

	rmig_for_each_feature(s, h, chans_gone)
		if (rc == -ENOLINK)
			rc = h->chans_gone(s);
	if (rc == -ENOLINK && !rmig_sess_err(s))
		rc = engine_fail(s, rc, "every data channel is down");
	return rc ? (rmig_sess_err(s) ? rmig_sess_err(s) : rc) : 0;
}

/*
 * The channels of @busy (a mask) never came back within the timeout: the
 * features may take each one (failover: its rail is left out). True when
 * every one was taken, so the caller may wait again.
 */
static bool stalled_taken(struct rmig_session *s, uint64_t busy)
{
	char why[200];

	for (unsigned int k = 0; k < s->nchannels; k++) {
		bool taken = false;

		if (!(busy & (1ull << k)))
			continue;
		snprintf(why, sizeof(why), "channel %u stalled sending for %u ms", k,
			 s->opts.timeout_ms);
		rmig_for_each_feature(s, h, chan_fail)
			if (!taken && h->chan_fail(&s->chans[k], -ETIMEDOUT, why))
				taken = true;
		if (!taken)
			return false;
	}
	return busy != 0;
}

/*
 * s->cs_lock held. Busy channel @c goes on: it waits for the bandwidth
 * limit, or took its job, wrote or waited within the timeout.
 */
static bool chan_alive(const struct rmig_session *s, const struct rmig_chan *c, uint64_t now)
{
	return atomic_load(&c->pacing) ||
	       now - atomic_load(&c->alive_ns) < (uint64_t)s->opts.timeout_ms * 1000000ull;
}

/* s->cs_lock held. Whether any busy channel goes on (chan_alive). */
static bool busy_alive(struct rmig_session *s)
{
	uint64_t now = rmig_now_ns();

	for (unsigned int k = 0; k < s->nchannels; k++)
		if (s->chans[k].pending && !s->chans[k].down && chan_alive(s, &s->chans[k], now))
			return true;
	return false;
}

int rmig_chan_submit(struct rmig_session *s, struct rmig_job **job_p, int want)
{
	struct rmig_job *tmp;
	char busy[160] = "";
	uint64_t busy_mask = 0;
	unsigned int tries = 0;
	unsigned int gone = 0;
	int i, rc;

again:
	rc = 0;
	busy[0] = '\0';
	busy_mask = 0;
	uint64_t deadline = rmig_sess_deadline(s);
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ull),
			       .tv_nsec = (long)(deadline % 1000000000ull) };

	pthread_mutex_lock(&s->cs_lock);
	while ((i = find_idle(s, want)) == -1 && !s->cs_stop && !rc) {
		/* Pairs with the broadcast in source_thread(). */
		rc = -pthread_cond_timedwait(&s->cs_idle, &s->cs_lock, &ts);
		/* slow by the bandwidth limit, not stalled: a busy channel went on meanwhile */
		if (rc == -ETIMEDOUT && busy_alive(s)) {
			deadline = rmig_sess_deadline(s);
			ts = (struct timespec){ .tv_sec = (time_t)(deadline / 1000000000ull),
						.tv_nsec = (long)(deadline % 1000000000ull) };
			rc = 0;
		}
	}
	/* which channels never came back, and through which rails: the stuck link */
	for (unsigned int k = 0; rc == -ETIMEDOUT && k < s->nchannels; k++) {
		size_t off = strlen(busy);

		if (!s->chans[k].pending || s->chans[k].down)
			continue;
		busy_mask |= 1ull << k;
		if (off + 40 < sizeof(busy))
			snprintf(busy + off, sizeof(busy) - off, "%s%u (rail %s)", off ? ", " : "", k,
				 s->rail[rmig_chan_rail(s, k)].name);
	}
	if (s->cs_stop) {
		rc = -ECANCELED;
	} else if (i == -2) {
		rc = -ENOLINK;
	} else if (i == -3) {
		rc = -ENETDOWN;
	} else if (i >= 0) {
		rc = 0;
		tmp = s->chans[i].job;
		s->chans[i].job = *job_p;
		s->chans[i].pending = true;
		*job_p = tmp;
		pthread_cond_signal(&s->chans[i].work);
	}
	pthread_mutex_unlock(&s->cs_lock);
	if (rc == -ENOLINK)
		return rc;
	/* every rail failed: a feature may open new channels (failover.c's TCP fallback) */
	if (rc == -ENETDOWN) {
		rc = gone++ ? engine_fail(s, rc, "every data channel is down") : chans_gone(s);
		if (!rc)
			goto again;
		return rmig_sess_err(s) ? rmig_sess_err(s) : rc;
	}
	/* a stalled rail may fail over: then wait again, on the rails left */
	if (rc == -ETIMEDOUT && tries++ < RMIG_RAILS_MAX && stalled_taken(s, busy_mask))
		goto again;
	if (rc == -ETIMEDOUT)
		return engine_fail(s, rc,
				 "no data channel became idle within %u ms: channel %s stalled "
				 "sending (link down or peer not reading)",
				 s->opts.timeout_ms, busy[0] ? busy : "?");
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) : rc;
	return 0;
}

int rmig_chan_run(struct rmig_session *s, unsigned int idx, struct rmig_job *j)
{
	struct rmig_chan *c = &s->chans[idx];
	int rc;

	pthread_mutex_lock(&c->post_lock);
	rc = run_job(c, j);
	pthread_mutex_unlock(&c->post_lock);
	job_reset(j);
	return rc;
}

int rmig_chans_mark(struct rmig_session *s, uint64_t sync_id, struct rmig_job **job_p)
{
	int rc;

	for (unsigned int i = 0; i < s->nchannels; i++) {
		(*job_p)->kind = RMIG_JOB_SYNC;
		(*job_p)->sync_id = sync_id;
		rc = rmig_chan_submit(s, job_p, (int)i);
		if (rc == -ENOLINK) { /* down: no marker of it is waited for */
			job_reset(*job_p);
			continue;
		}
		if (rc)
			return rc;
	}
	return 0;
}

int rmig_chan_revive(struct rmig_session *s, unsigned int idx,
		     const struct rmig_transport_ops *ops, struct rmig_tp_chan *tch,
		     unsigned int rail)
{
	struct rmig_chan *c = &s->chans[idx];
	int rc;

	if (c->thread_started) /* its thread ended already (the caller waited for it) */
		pthread_join(c->thread, NULL);
	c->thread_started = false;
	c->rail_before = rmig_chan_rail(s, idx);
	c->bytes_before = atomic_load(&c->bytes);
	c->old_tch = c->tch;
	c->tch = tch;
	c->ops = ops;
	c->rail = rail;
	c->moved = true;
	if (s->placed) /* where the new connection runs: its thread binds there */
		rmig_sess_place_chan(s, c);
	pthread_mutex_lock(&s->lock);
	c->exited = false;
	c->excluded = false;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&s->cs_lock);
	c->down = false;
	c->pending = false;
	pthread_mutex_unlock(&s->cs_lock);
	rc = pthread_create(&c->thread, NULL,
			    s->opts.role == RMIG_ROLE_SOURCE ? source_thread : dest_thread, c);
	if (rc) {
		rmig_chan_set_down(s, idx);
		return engine_fail(s, -rc, "starting channel thread %u: %s", idx, strerror(rc));
	}
	c->thread_started = true;
	return 0;
}

void rmig_chan_set_down(struct rmig_session *s, unsigned int idx)
{
	pthread_mutex_lock(&s->cs_lock);
	s->chans[idx].down = true;
	pthread_cond_signal(&s->chans[idx].work);
	pthread_cond_broadcast(&s->cs_idle);
	pthread_mutex_unlock(&s->cs_lock);
}

int rmig_job_add_bitmap(struct rmig_session *s, struct rmig_job **job_p, uint32_t bidx,
			const unsigned long *map, uint64_t *pages_p)
{
	const struct rmig_block *b = &s->blocks[bidx];
	struct rmig_run_iter it;
	uint64_t first, count;
	int rc = 0;

	rmig_run_iter_init(&it, map, b->npages, 0);
	it.max_run = b->npages ? b->npages : 1;
	while (!rc && rmig_run_iter_next(&it, &first, &count)) {
		if (pages_p)
			*pages_p += count;
		rc = rmig_job_add_range(s, job_p, bidx, first * b->page_size, count * b->page_size);
	}
	return rc;
}

int rmig_job_flush(struct rmig_session *s, struct rmig_job **job_p)
{
	if ((*job_p)->kind == RMIG_JOB_NONE)
		return 0;
	return rmig_chan_submit(s, job_p, -1);
}

int rmig_job_add_range(struct rmig_session *s, struct rmig_job **job_p, uint32_t bidx,
		       uint64_t offset, uint64_t len)
{
	return rmig_job_add_range_max(s, job_p, bidx, offset, len, s->opts.extent_max);
}

int rmig_job_add_range_max(struct rmig_session *s, struct rmig_job **job_p, uint32_t bidx,
			   uint64_t offset, uint64_t len, uint64_t max)
{
	int rc;

	while (len) {
		struct rmig_job *j = *job_p;
		uint64_t n = len < max ? len : max;
		struct rmig_extent *last = j->n ? &j->ext[j->n - 1] : NULL;

		if (j->kind != RMIG_JOB_NONE && (j->kind != RMIG_JOB_RAM || j->id != bidx)) {
			rc = rmig_job_flush(s, job_p);
			if (rc)
				return rc;
			continue;
		}
		j->kind = RMIG_JOB_RAM;
		j->id = bidx;
		/* Coalesce with the previous extent while it stays within extent_max. */
		if (last && last->offset + last->len == offset && last->len < max) {
			n = n < max - last->len ? n : max - last->len;
			last->len += n;
		} else {
			j->ext[j->n].offset = offset;
			j->ext[j->n].len = n;
			j->n++;
		}
		j->bytes += n;
		offset += n;
		len -= n;
		if (j->n == RMIG_JOB_EXTENTS || j->bytes >= 4 * max) {
			rc = rmig_job_flush(s, job_p);
			if (rc)
				return rc;
		}
	}
	return 0;
}
