/* SPDX-License-Identifier: MIT */
/*
 * sess_dest.c - the destination's upcalls from the backend (each write's
 * offset and length from the wire checked against its RAM block before
 * memory is touched; zero pages; sync markers and their acks), the digests
 * of RAM blocks, and the destination's completion check.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "sess.h"
#include "sock.h"

/* ---- destination placement (upcalls from the backend) ---- */

static int place(struct rmig_session *s, unsigned int chan, const struct rmig_target *t,
		 uint64_t len, void **dst_p);

/* Every write a channel begins counts until its next sync marker (rmig_up_sync). */
int rmig_up_place(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len,
		  void **dst_p)
{
	struct rmig_session *s = arg;

	if (s->chans && chan < s->nchannels)
		atomic_fetch_add_explicit(&s->chans[chan].since_sync, 1, memory_order_relaxed);
	return place(s, chan, t, len, dst_p);
}

static int place(struct rmig_session *s, unsigned int chan, const struct rmig_target *t,
		 uint64_t len, void **dst_p)
{
	const struct rmig_feature *owner = t->kind != RMIG_TGT_RAM ? rmig_sess_tgt_owner(s, t->kind) :
								    NULL;
	const struct rmig_block *b;

	if (owner) /* device state */
		return owner->tgt_place(s, t, len, dst_p);
	if (t->kind != RMIG_TGT_RAM || t->id >= s->nblocks)
		return rmig_sess_fail(s, -EBADMSG, "write to unknown ram block %u", t->id);
	b = &s->blocks[t->id];
	/* Overflow-safe: offset <= length, then len <= length - offset. */
	if (t->offset > b->length || len > b->length - t->offset || len == 0)
		return rmig_sess_fail(s, -ERANGE,
				      "write outside ram block '%s': offset %llu length %llu "
				      "(block length %llu)",
				      b->name, (unsigned long long)t->offset,
				      (unsigned long long)len, (unsigned long long)b->length);
	rmig_for_each_feature(s, f, ram_place) {
		int rc = f->ram_place(s, chan, t->id, t->offset, len, dst_p);

		if (rc)
			return rc < 0 ? rc : 0;
	}
	*dst_p = b->host + t->offset;
	return 0;
}

static int placed(struct rmig_session *s, unsigned int chan, const struct rmig_target *t,
		  uint64_t len);

/*
 * What a destination's channel placed, for its statistics as the source
 * counts what it sent: payload bytes and writes per channel, pages. (RDMA
 * WRITEs land unseen: there only what came by message is counted.)
 */
static void count_in(struct rmig_session *s, unsigned int chan, const struct rmig_target *t,
		     uint64_t len, bool zero)
{
	uint64_t pages = len / s->blocks[t->id].page_size;

	atomic_fetch_add_explicit(&s->st_pages, pages, memory_order_relaxed);
	if (zero) {
		atomic_fetch_add_explicit(&s->st_zero_pages, pages, memory_order_relaxed);
		return;
	}
	atomic_fetch_add_explicit(&s->st_bytes, len, memory_order_relaxed);
	if (s->chans && chan < s->nchannels) {
		atomic_fetch_add_explicit(&s->chans[chan].bytes, len, memory_order_relaxed);
		atomic_fetch_add_explicit(&s->chans[chan].writes, 1, memory_order_relaxed);
	}
}

int rmig_up_placed(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len)
{
	struct rmig_session *s = arg;

	if (t->kind == RMIG_TGT_RAM && t->id < s->nblocks)
		count_in(s, chan, t, len, false);
	return placed(s, chan, t, len);
}

static int placed(struct rmig_session *s, unsigned int chan, const struct rmig_target *t,
		  uint64_t len)
{
	const struct rmig_feature *owner = t->kind != RMIG_TGT_RAM ? rmig_sess_tgt_owner(s, t->kind) :
								    NULL;

	if (owner)
		return owner->tgt_placed(s, t, len);
	atomic_fetch_add_explicit(&s->st_handled, len, memory_order_relaxed);
	rmig_for_each_feature(s, f, ram_placed) {
		int rc = f->ram_placed(s, chan, t->id, t->offset, len);

		if (rc)
			return rc;
	}
	return 0;
}

int rmig_up_zero(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len)
{
	struct rmig_session *s = arg;
	void *dst;
	int rc;

	if (t->kind != RMIG_TGT_RAM)
		return rmig_sess_fail(s, -EBADMSG, "zero-page marker for a device-state blob");
	rc = rmig_up_place(arg, chan, t, len, &dst);
	if (rc)
		return rc;
	/*
	 * Always written: to a destination that reads as zero (RMIG_F_ZEROED)
	 * the source sends markers only for pages it sent before, which may
	 * hold data here now. A file restore places every page once: there a
	 * zero page in memory that reads as zero needs nothing.
	 */
	if (!s->local || !(s->opts.flags & RMIG_F_ZEROED))
		memset(dst, 0, len);
	count_in(s, chan, t, len, true);
	return placed(s, chan, t, len);
}

int rmig_up_place_from(void *arg, unsigned int chan, const struct rmig_target *t, const void *src,
		       uint64_t len)
{
	struct rmig_session *s = arg;
	bool by_message = false, taken = false;
	void *dst;
	int rc;

	rmig_for_each_feature(s, f, ram_by_message)
		by_message |= t->kind == RMIG_TGT_RAM && f->ram_by_message(s);
	if (t->kind == RMIG_TGT_RAM && !by_message)
		return rmig_sess_fail(s, -EPROTO, "RAM by SEND outside postcopy (RAM goes by RDMA "
						  "WRITE until the destination runs the guest)");
	rc = rmig_up_place(arg, chan, t, len, &dst);
	if (rc)
		return rc;
	/* a feature may place it straight from the backend's buffer (UFFDIO_COPY) */
	rmig_for_each_feature(s, f, ram_from)
		taken = taken || (t->kind == RMIG_TGT_RAM && f->ram_from(s, chan, src));
	if (!taken)
		memcpy(dst, src, len);
	return rmig_up_placed(arg, chan, t, len);
}

/* Caller holds s->lock: every channel has passed marker @id and none is further. */
/* Channel @i left the syncs (its rail failed over; s->chans may be absent in a harness). */
static bool excluded(const struct rmig_session *s, unsigned int i)
{
	return s->chans && s->chans[i].excluded;
}

static bool sync_all_at(struct rmig_session *s, uint64_t id)
{
	for (unsigned int i = 0; i < s->nchannels; i++)
		if (!excluded(s, i) && s->chan_sync[i] != id)
			return false;
	return true;
}

/*
 * Destination, on the control thread's tick: a channel whose sync marker is
 * missing for the whole timeout while another channel has passed it is
 * stalled, even though the control connection is alive. Where its rail can
 * fail over (failover.c), the migration goes on without that rail.
 */
int rmig_check_sync_lag(struct rmig_session *s)
{
	uint64_t lead, behind = UINT64_MAX, ahead = 0;
	unsigned int idx = 0;
	bool stalled = false;
	char why[200];

	if (s->opts.role != RMIG_ROLE_DEST || !s->chan_sync)
		return 0;
	pthread_mutex_lock(&s->lock);
	lead = s->sync_lead_ns;
	if (lead && rmig_mono_ns() - lead > (uint64_t)s->opts.timeout_ms * 1000000ull) {
		for (unsigned int i = 0; i < s->nchannels; i++) {
			if (excluded(s, i))
				continue;
			if (s->chan_sync[i] < behind) {
				behind = s->chan_sync[i];
				idx = i;
			}
			ahead = s->chan_sync[i] > ahead ? s->chan_sync[i] : ahead;
		}
		stalled = behind < ahead;
	}
	pthread_mutex_unlock(&s->lock);
	if (!stalled)
		return 0;
	snprintf(why, sizeof(why),
		 "data channel %u stalled: sync %llu reached another channel, but not this one "
		 "within %u ms",
		 idx, (unsigned long long)ahead, s->opts.timeout_ms);
	rmig_for_each_feature(s, f, chan_fail)
		if (s->chans && f->chan_fail(&s->chans[idx], -ETIMEDOUT, why)) {
			pthread_mutex_lock(&s->lock);
			s->sync_lead_ns = 0; /* the rail is going: no second report */
			pthread_mutex_unlock(&s->lock);
			return 0;
		}
	return rmig_sess_fail(s, -ETIMEDOUT, "%s", why);
}

/* Under s->lock: the lowest marker of the channels a sync waits for, and the lag clock. */
static uint64_t sync_min(struct rmig_session *s, bool *advanced)
{
	uint64_t min = UINT64_MAX;

	for (unsigned int i = 0; i < s->nchannels; i++)
		if (!excluded(s, i))
			min = s->chan_sync[i] < min ? s->chan_sync[i] : min;
	*advanced = false;
	if (min != UINT64_MAX && min > s->sync_acked) {
		s->sync_acked = min;
		*advanced = true;
		pthread_cond_broadcast(&s->cond);
	}
	/* the control thread fails a channel that lags behind the others too long */
	if (min == UINT64_MAX || sync_all_at(s, min))
		s->sync_lead_ns = 0;
	else if (*advanced || !s->sync_lead_ns)
		s->sync_lead_ns = rmig_mono_ns();
	return min;
}

static int sync_ack(struct rmig_session *s, uint64_t id)
{
	uint8_t buf[8];

	/* Acks may leave out of order between channel threads; the source keeps the max. */
	rmig_u64_encode(id, buf, sizeof(buf));
	return rmig_ctl_send(s, RMIG_MSG_SYNC_ACK, buf, sizeof(buf));
}

int rmig_up_sync(void *arg, unsigned int chan, uint64_t id)
{
	struct rmig_session *s = arg;
	bool advanced;
	uint64_t min;

	pthread_mutex_lock(&s->lock);
	if (chan >= s->nchannels || id <= s->chan_sync[chan]) {
		pthread_mutex_unlock(&s->lock);
		return rmig_sess_fail(s, -EBADMSG, "channel %u: sync marker %llu out of order",
				      chan, (unsigned long long)id);
	}
	s->chan_sync[chan] = id;
	if (s->chans)
		atomic_store(&s->chans[chan].since_sync, 0);
	min = sync_min(s, &advanced);
	pthread_mutex_unlock(&s->lock);
	return advanced ? sync_ack(s, min) : 0;
}

int rmig_dest_sync_advance(struct rmig_session *s)
{
	bool advanced = false;
	uint64_t min = 0;

	pthread_mutex_lock(&s->lock);
	if (s->chan_sync)
		min = sync_min(s, &advanced);
	pthread_mutex_unlock(&s->lock);
	return advanced ? sync_ack(s, min) : 0;
}

/*
 * At COMPLETE, the source's last sync has passed every data channel and
 * nothing came after it: each channel that still counts stands at the same
 * acknowledged marker, with no write begun since. A source that sent data
 * past its last sync, or completed while a frame was half sent, would
 * otherwise be told all arrived over a torn page. Not under postcopy, whose
 * page requests are answered as they come.
 */
static int channels_synced(struct rmig_session *s, char *why, size_t len)
{
	if (s->local || !s->chans || !s->chan_sync || rmig_sess_every_page(s))
		return 0;
	pthread_mutex_lock(&s->lock);
	for (unsigned int i = 0; i < s->nchannels && !why[0]; i++) {
		uint64_t n = atomic_load(&s->chans[i].since_sync);

		if (excluded(s, i))
			continue;
		if (s->chan_sync[i] != s->sync_acked)
			snprintf(why, len, "data channel %u is at sync %llu, the others at %llu", i,
				 (unsigned long long)s->chan_sync[i],
				 (unsigned long long)s->sync_acked);
		else if (n)
			snprintf(why, len,
				 "data channel %u began %llu write%s after its last sync marker (%llu)",
				 i, (unsigned long long)n, n == 1 ? "" : "s",
				 (unsigned long long)s->chan_sync[i]);
	}
	pthread_mutex_unlock(&s->lock);
	return why[0] ? -EPROTO : 0;
}

/* ---- digests ---- */

struct complete_msg {
	struct rmig_session *s;
	uint32_t len;
	uint8_t buf[];
};

static void dest_complete_task(void *arg);

int rmig_handle_complete(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	struct complete_msg *c;
	int rc;

	pthread_mutex_lock(&s->lock);
	rc = s->complete_seen ? -EBADMSG : 0;
	s->complete_seen = true;
	pthread_mutex_unlock(&s->lock);
	if (rc)
		return rmig_sess_fail(s, rc, "control connection: COMPLETE received twice");
	/* The check may wait for device loads: keep the control thread free. */
	c = malloc(sizeof(*c) + len);
	if (!c)
		return rmig_sess_fail(s, -ENOMEM, "no memory for the completion check");
	c->s = s;
	c->len = len;
	memcpy(c->buf, buf, len);
	rc = rmig_pool_submit(s->pool, dest_complete_task, c);
	if (rc) {
		free(c);
		return rmig_sess_fail(s, rc, "queueing the completion check failed");
	}
	return 0;
}

void rmig_block_digests(struct rmig_session *s, uint8_t (*out)[RMIG_DIGEST_LEN])
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		XXH128_canonical_t c;

		XXH128_canonicalFromHash(&c, XXH3_128bits(s->blocks[i].host, s->blocks[i].length));
		memcpy(out[i], c.digest, RMIG_DIGEST_LEN);
	}
}

/* The destination's "all placed, loaded and verified". */
static int send_complete_ack(struct rmig_session *s)
{
	uint8_t buf[4];

	rmig_put_be32(buf, 0);
	return rmig_ctl_send(s, RMIG_MSG_COMPLETE_ACK, buf, sizeof(buf));
}

static void dest_complete_task(void *arg)
{
	struct complete_msg *c = arg;
	struct rmig_session *s = c->s;
	struct rmig_msg_complete m;
	uint8_t (*want)[RMIG_DIGEST_LEN] = NULL, (*have)[RMIG_DIGEST_LEN] = NULL;
	const struct rmig_feature *bo;
	char why[RMIG_ERRMSG_MAX] = "";
	int rc = 0;

	want = calloc(RMIG_BLOCKS_MAX + RMIG_BLOBS_MAX, RMIG_DIGEST_LEN);
	have = calloc(RMIG_BLOCKS_MAX + RMIG_BLOBS_MAX, RMIG_DIGEST_LEN);
	if (!want || !have) {
		rmig_sess_fail(s, -ENOMEM, "no memory for the completion check");
		goto out;
	}
	m.block_digest = want;
	m.blob_digest = want + RMIG_BLOCKS_MAX;
	if (rmig_complete_decode(c->buf, c->len, &m, RMIG_BLOCKS_MAX, RMIG_BLOBS_MAX)) {
		rmig_sess_fail(s, -EBADMSG, "control connection: malformed COMPLETE");
		goto out;
	}
	if (m.nblocks != s->nblocks) {
		rmig_sess_fail(s, -EBADMSG, "COMPLETE names %u ram blocks, %u declared", m.nblocks,
			       s->nblocks);
		goto out;
	}
	if (channels_synced(s, why, sizeof(why))) {
		rmig_sess_fail(s, -EPROTO, "COMPLETE before the data was synced: %s", why);
		goto out;
	}
	/* every blob COMPLETE names has arrived and loaded (device state waits for it) */
	bo = rmig_sess_blob_owner(s);
	if (bo && bo->blobs_done(s, m.nblobs))
		goto out;
	if (m.flags & RMIG_F_VERIFY) {
		rmig_block_digests(s, have);
		if (bo)
			bo->blob_digests(s, have + RMIG_BLOCKS_MAX, m.nblobs);
		for (unsigned int i = 0; i < s->nblocks && !why[0]; i++)
			if (memcmp(have[i], want[i], RMIG_DIGEST_LEN))
				snprintf(why, sizeof(why), "digest mismatch in ram block '%s'",
					 s->blocks[i].name);
		for (unsigned int i = 0; i < m.nblobs && !why[0]; i++)
			if (memcmp(have[RMIG_BLOCKS_MAX + i], want[RMIG_BLOCKS_MAX + i],
				   RMIG_DIGEST_LEN))
				snprintf(why, sizeof(why), "digest mismatch in device-state blob %u",
					 i);
		if (why[0]) {
			/* the sticky error tells the source, before the half-close */
			rmig_sess_fail(s, -EBADMSG, "verification failed: %s", why);
			goto out;
		}
		rmig_info(&s->log, "verified %u ram blocks and %u blobs", s->nblocks, m.nblobs);
	}
	/*
	 * The source may close its sockets as soon as it reads the ack, so
	 * errors stop counting first ("finishing"); DONE, which releases
	 * rmig_complete() and so the close of this side, comes after the send.
	 */
	pthread_mutex_lock(&s->lock);
	rc = s->err;
	if (!rc)
		s->finishing = true;
	pthread_mutex_unlock(&s->lock);
	if (rc)
		goto out;
	rc = send_complete_ack(s);
	/*
	 * Migration is over: revoke the source's access to guest RAM now (RDMA
	 * queue pairs to the error state, data sockets shut), before the VMM
	 * resumes the guest, not whenever it destroys the session.
	 */
	if (!rc) {
		s->tp_ops->shutdown(s->tp);
		rmig_rails_shutdown(s);
	}
	pthread_mutex_lock(&s->lock);
	if (rc) {
		s->err = rc;
		snprintf(s->errmsg, sizeof(s->errmsg), "sending the completion ack: %s",
			 rmig_strerror(rc));
	} else {
		s->state = RMIG_S_DONE;
		s->t_end_ns = rmig_now_ns();
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
out:
	free(want);
	free(have);
	free(c);
}
