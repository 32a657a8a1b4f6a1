/* SPDX-License-Identifier: MIT */
/*
 * sess_sync.c - the source's data API (pages, bitmaps, ranges and device
 * state handed to the channels), syncs, and completion on either side.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "bitmap.h"
#include "sess.h"

/* ---- source data API ---- */

int rmig_src_ready(struct rmig_session *s)
{
	int rc;

	if (!s || s->opts.role != RMIG_ROLE_SOURCE)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	rc = s->err ? s->err : s->state == RMIG_S_RUNNING ? 0 : -ENOTCONN;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int rmig_sess_switchover(struct rmig_session *s)
{
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	if (s->t_switch_ns)
		rc = -EALREADY;
	else
		s->t_switch_ns = rmig_now_ns();
	pthread_mutex_unlock(&s->lock);
	if (rc)
		return rc;
	rmig_for_each_feature(s, f, switchover)
		f->switchover(s);
	return 0;
}

/* A running source's block @name: 0 and its index, or the error. */
static int src_block(struct rmig_session *s, const char *name, unsigned int *idx_p)
{
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	if (!rmig_block_find(s, name, idx_p)) {
		rmig_err(&s->log, "no ram block named '%s'", name ? name : "(null)");
		return -ENOENT;
	}
	return 0;
}

static int finish_job(struct rmig_session *s, struct rmig_job *job, int rc)
{
	if (!rc)
		rc = rmig_job_flush(s, &job);
	free(job);
	return rc;
}

int rmig_send_pages(rmig_session *s, const char *block, const uint64_t *pages, size_t npages)
{
	struct rmig_job *job;
	struct rmig_block *b;
	unsigned int idx;
	int rc = src_block(s, block, &idx);

	if (rc)
		return rc;
	if (!pages && npages)
		return -EINVAL;
	b = &s->blocks[idx];
	for (size_t i = 0; i < npages; i++)
		if (pages[i] >= b->npages)
			return -ERANGE;
	job = rmig_job_new();
	if (!job)
		return -ENOMEM;
	for (size_t i = 0; i < npages && !rc; i++)
		rc = rmig_job_add_range(s, &job, idx, pages[i] * b->page_size, b->page_size);
	return finish_job(s, job, rc);
}

int rmig_send_bitmap(rmig_session *s, const char *block, const unsigned long *bitmap)
{
	struct rmig_job *job;
	unsigned int idx;
	int rc = src_block(s, block, &idx);

	if (rc)
		return rc;
	if (!bitmap)
		return -EINVAL;
	job = rmig_job_new();
	if (!job)
		return -ENOMEM;
	rc = rmig_job_add_bitmap(s, &job, idx, bitmap, NULL);
	return finish_job(s, job, rc);
}

int rmig_send_range(rmig_session *s, const char *block, uint64_t offset, uint64_t len)
{
	struct rmig_job *job;
	struct rmig_block *b;
	unsigned int idx;
	int rc = src_block(s, block, &idx);

	if (rc)
		return rc;
	b = &s->blocks[idx];
	if (offset % b->page_size || len % b->page_size || offset > b->length ||
	    len > b->length - offset)
		return -ERANGE;
	job = rmig_job_new();
	if (!job)
		return -ENOMEM;
	rc = rmig_job_add_range(s, &job, idx, offset, len);
	return finish_job(s, job, rc);
}

/* ---- sync and completion ---- */

/* Under s->lock: a channel's rail failed, so that a sync's acknowledgement cannot be trusted. */
static bool sync_lost(struct rmig_session *s)
{
	rmig_for_each_feature(s, f, sync_lost)
		if (f->sync_lost(s))
			return true;
	return false;
}

/* Under s->lock: the sync's ack is late; whether to wait one more timeout. */
static bool sync_late(struct rmig_session *s)
{
	rmig_for_each_feature(s, f, sync_late)
		if (f->sync_late(s))
			return true;
	return false;
}

/*
 * One sync: markers on every channel, then the acknowledgement. 1 when a
 * rail failed meanwhile and what it may have lost went again (the caller
 * syncs again), 0 once acknowledged, or the error.
 */
static int source_sync_once(struct rmig_session *s)
{
	struct rmig_job *job = rmig_job_new();
	uint64_t id, deadline;
	bool lost, extended = false;
	int rc;

	if (!job)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	id = ++s->sync_sent;
	pthread_mutex_unlock(&s->lock);
	rmig_for_each_feature(s, f, sync_begin) /* before any marker: see resume.c */
		f->sync_begin(s);
	rc = rmig_chans_mark(s, id, &job);
	free(job);
	deadline = rmig_sess_deadline(s);
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!rc && !s->err && s->sync_acked < id && !sync_lost(s))
			rc = rmig_sess_wait(s, deadline);
		if (rc != -ETIMEDOUT || extended || s->err || !sync_late(s))
			break;
		extended = true;
		rc = 0;
		deadline = rmig_sess_deadline(s);
	}
	lost = !rc && !s->err && sync_lost(s);
	if (!rc)
		rc = s->err;
	pthread_mutex_unlock(&s->lock);
	rmig_for_each_feature(s, f, sync_end)
		f->sync_end(s, !rc && !lost);
	if (rc == -ETIMEDOUT && !rmig_sess_err(s))
		rc = rmig_sess_fail(s, rc, "sync %llu: no acknowledgement within %u ms",
				    (unsigned long long)id,
				    extended ? 2 * s->opts.timeout_ms : s->opts.timeout_ms);
	if (rc || !lost)
		return rc;
	/* a rail failed: what it may have lost goes again, through the others */
	rmig_for_each_feature(s, f, sync_repair)
		if (!rc)
			rc = f->sync_repair(s);
	return rc < 0 ? rc : 1;
}

int rmig_source_sync(struct rmig_session *s)
{
	int rc;

	pthread_mutex_lock(&s->sync_lock);
	while ((rc = source_sync_once(s)) == 1)
		;
	pthread_mutex_unlock(&s->sync_lock);
	return rc;
}

int rmig_sync(rmig_session *s)
{
	uint64_t seen;
	int rc;

	if (!s)
		return -EINVAL;
	if (s->opts.role == RMIG_ROLE_SOURCE) {
		rc = rmig_src_ready(s);
		return rc ? rc : rmig_source_sync(s);
	}
	pthread_mutex_lock(&s->lock);
	seen = s->sync_acked;
	while (!s->err && s->state != RMIG_S_DONE && s->sync_acked == seen)
		rmig_sess_wait(s, 0);
	rc = s->sync_acked > seen ? 0 : s->err ? s->err : -ENOTCONN;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int source_complete(struct rmig_session *s)
{
	struct rmig_msg_complete m = { .flags = s->opts.flags & RMIG_F_VERIFY };
	const struct rmig_feature *bo;
	uint8_t (*dg)[RMIG_DIGEST_LEN] = NULL;
	uint8_t *buf = NULL;
	int rc, n;

	rc = rmig_source_sync(s);
	if (rc)
		return rc;
	m.nblocks = s->nblocks;
	bo = rmig_sess_blob_owner(s);
	m.nblobs = bo ? bo->blobs(s) : 0;
	dg = calloc(m.nblocks + m.nblobs + 1, RMIG_DIGEST_LEN);
	buf = malloc(RMIG_CTL_MAX);
	if (!dg || !buf) {
		rc = -ENOMEM;
		goto out;
	}
	m.block_digest = dg;
	m.blob_digest = dg + m.nblocks;
	if (m.flags & RMIG_F_VERIFY) {
		rmig_block_digests(s, m.block_digest);
		if (bo)
			bo->blob_digests(s, m.blob_digest, m.nblobs);
	}
	n = rmig_complete_encode(&m, buf, RMIG_CTL_MAX);
	pthread_mutex_lock(&s->lock);
	s->complete_sent = true; /* before the send: the ack may be read before it returns */
	pthread_mutex_unlock(&s->lock);
	rc = n < 0 ? n : rmig_ctl_send(s, RMIG_MSG_COMPLETE, buf, (uint32_t)n);
	if (rc)
		goto out;
	/* Bounded by the control thread: a silent peer fails the session. */
	pthread_mutex_lock(&s->lock);
	while (!s->err && s->peer_verdict)
		rmig_sess_wait(s, 0);
	rc = s->peer_verdict ? s->err : 0;
	if (!rc && s->t_switch_ns && !s->downtime_ns) /* (postcopy: set when the guest ran there) */
		s->downtime_ns = rmig_now_ns() - s->t_switch_ns;
	pthread_mutex_unlock(&s->lock);
out:
	free(dg);
	free(buf);
	return rc;
}

int rmig_complete(rmig_session *s)
{
	int rc;

	if (!s)
		return -EINVAL;
	if (s->opts.role == RMIG_ROLE_SOURCE) {
		rc = rmig_src_ready(s);
		return rc ? rc : source_complete(s);
	}
	pthread_mutex_lock(&s->lock);
	while (!s->err && s->state != RMIG_S_DONE) {
		if (s->state == RMIG_S_NEW) {
			pthread_mutex_unlock(&s->lock);
			return -ENOTCONN;
		}
		rmig_sess_wait(s, 0);
	}
	rc = s->err;
	pthread_mutex_unlock(&s->lock);
	return rc;
}
