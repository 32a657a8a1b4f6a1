/* SPDX-License-Identifier: MIT */
/*
 * resume.c - precopy resume: a migration whose connection failed goes on
 * in a new session that sends only what the destination may lack.
 *
 * What the destination holds is known exactly only at a sync: an RDMA
 * write lands without the destination's CPU, so the destination cannot
 * tell which pages arrived; the source can tell which it posted before the
 * marker of a sync the destination acknowledged. So the record is the
 * source's, per block:
 *   posted   pages a channel posted since the last sync began (the channel
 *            thread sets the bits, before the marker it posts later);
 *   syncing  at a sync's start, posted is moved here (word by word,
 *            atomically), and posted starts empty;
 *   held     when the destination acknowledges the sync, syncing joins
 *            held; when the sync fails, syncing goes back to posted.
 *   round    the dirty bitmaps given to rmig_send_round(), until its
 *            closing sync is acknowledged: a page the caller took out of
 *            its dirty log for a round that did not finish may not have
 *            been posted at all.
 * A page posted while a sync is in flight may be in posted although it went
 * out before the marker: it then counts as not held until the next sync,
 * which errs on the side of sending it again. A page of held that is posted
 * again is in posted (or syncing) too, and what may lack is
 * ~held | posted | syncing: a page whose newer copy may have half landed is
 * sent again.
 *
 * Postcopy goes on the same way (pc_pause.c): the destination's paused
 * fault handler is handed over to the new session.
 *
 * The destination keeps the memory, the session id, and nothing else: a
 * new session made with rmig_resume_from() accepts only a HELLO with
 * RMIG_CAP_RESUME and that id, after the key proof as any HELLO. The old
 * session is destroyed by rmig_resume_from() on both sides, so that the
 * old data channels are closed, and on RDMA the old registrations
 * revoked, before the new session issues its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "sess.h"

/* Channel threads: pages [first, first + n) of block @b were posted. */
static void posted(const struct rmig_chan *c, const struct rmig_block *b, uint64_t first,
		   uint64_t n)
{
	(void)c;
	if (b->posted)
		rmig_bitmap_set_range_atomic(b->posted, first, n);
}

static void resume_free(struct rmig_session *s);

/* A network source keeps its maps from connect on (a file target has no resume). */
static int resume_start(struct rmig_session *s)
{
	return s->opts.role == RMIG_ROLE_SOURCE && !s->local ? rmig_resume_track(s) : 0;
}

const struct rmig_feature rmig_resume_feature = {
	.name = "resume",
	.destroy = resume_free,
	.start = resume_start,
	.src_hello_ack = rmig_resume_on_ack,
	.dest_hello = rmig_resume_check_hello,
	.sync_begin = rmig_resume_sync_begin,
	.sync_end = rmig_resume_sync_end,
	.posted = posted,
	.round_begin = rmig_resume_round_begin,
	.round_end = rmig_resume_round_end,
};

int rmig_resume_track(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];

		if (!b->posted)
			b->posted = rmig_bitmap_new(b->npages);
		if (!b->syncing)
			b->syncing = rmig_bitmap_new(b->npages);
		if (!b->held)
			b->held = rmig_bitmap_new(b->npages);
		if (!b->round)
			b->round = rmig_bitmap_new(b->npages);
		if (!b->posted || !b->syncing || !b->held || !b->round)
			return rmig_sess_fail(s, -ENOMEM, "no memory for the page maps of block '%s'",
					      b->name);
	}
	return 0;
}

void rmig_resume_sync_begin(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];
		size_t n = rmig_bitmap_longs(b->npages);

		if (b->posted)
			rmig_bitmap_take_atomic(b->syncing, b->posted, n);
	}
}

void rmig_resume_sync_end(struct rmig_session *s, bool acked)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];
		size_t n = rmig_bitmap_longs(b->npages);

		if (!b->posted)
			continue;
		if (acked)
			for (size_t w = 0; w < n; w++)
				b->held[w] |= b->syncing[w];
		else
			rmig_bitmap_or_atomic(b->posted, b->syncing, n);
		memset(b->syncing, 0, n * sizeof(*b->syncing));
	}
}

void rmig_resume_round_begin(struct rmig_session *s, const unsigned long *const *bitmaps)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];

		for (size_t w = 0; b->round && bitmaps[i] && w < rmig_bitmap_longs(b->npages); w++)
			b->round[w] |= bitmaps[i][w];
	}
}

void rmig_resume_round_end(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++)
		if (s->blocks[i].round)
			memset(s->blocks[i].round, 0,
			       rmig_bitmap_longs(s->blocks[i].npages) * sizeof(unsigned long));
}

int rmig_resume_on_ack(struct rmig_session *s, uint32_t ack_caps)
{
	if (!s->resuming)
		return 0;
	/* a postcopy that resumes needs the destination that runs the guest */
	if (!(ack_caps & RMIG_ACK_RESUMED) && rmig_sess_by_message_only(s))
		return rmig_sess_fail(s, -ESRCH, "resuming postcopy of session %016" PRIx64 ": the "
						 "destination did not keep it (the guest is lost there)",
				      s->session_id);
	if (ack_caps & RMIG_ACK_RESUMED) {
		s->resumed = true;
		rmig_info(&s->log, "resuming session %016" PRIx64 ": the destination kept its memory",
			  s->session_id);
		return 0;
	}
	rmig_warn(&s->log, "resuming session %016" PRIx64 ": the destination did not keep it; "
			   "every page goes again",
		  s->session_id);
	for (unsigned int i = 0; i < s->nblocks; i++)
		if (s->blocks[i].held)
			memset(s->blocks[i].held, 0,
			       rmig_bitmap_longs(s->blocks[i].npages) * sizeof(unsigned long));
	return 0;
}

int rmig_resume_check_hello(struct rmig_session *s, const struct rmig_msg_hello *hello)
{
	char why[200];

	if (!s->resuming)
		return 0;
	if ((hello->caps & RMIG_CAP_RESUME) && hello->session_id == s->session_id &&
	    rmig_sess_by_message_only(s) && !(hello->caps & RMIG_CAP_POSTCOPY))
		return rmig_sess_fail(s, -EPROTO, "refusing the source: the guest runs here in "
						  "postcopy, and the source resumes without it");
	if ((hello->caps & RMIG_CAP_RESUME) && hello->session_id == s->session_id) {
		s->resumed = true;
		rmig_info(&s->log, "the source of session %016" PRIx64 " resumes it", s->session_id);
		return 0;
	}
	/* the kept id is the resume's only credential without a key: never told to a stranger */
	rmig_warn(&s->log, "resume: a source %s session %016" PRIx64 ", not the kept %016" PRIx64,
		  (hello->caps & RMIG_CAP_RESUME) ? "resuming" : "starting", hello->session_id,
		  s->session_id);
	snprintf(why, sizeof(why),
		 "this destination keeps another migration for its source to resume, and this "
		 "source %s",
		 (hello->caps & RMIG_CAP_RESUME) ? "resumes another one" : "starts a new one");
	return rmig_sess_fail(s, -EACCES, "refusing the source: %s", why);
}

static void resume_free(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		free(s->blocks[i].posted);
		free(s->blocks[i].syncing);
		free(s->blocks[i].held);
		free(s->blocks[i].round);
		s->blocks[i].posted = s->blocks[i].syncing = s->blocks[i].held = NULL;
		s->blocks[i].round = NULL;
	}
}

/* 0 when @old can be resumed; else the error, and *why_p says why. */
static int resumable(struct rmig_session *old, const char **why_p)
{
	int rc = 0;

	pthread_mutex_lock(&old->lock);
	if (old->local || old->file_path) {
		*why_p = "a file target has nothing to resume";
		rc = -EINVAL;
	} else if (!old->session_id) {
		*why_p = "it never connected";
		rc = -EINVAL;
	} else if (old->state == RMIG_S_DONE && !old->err) {
		*why_p = "it completed";
		rc = -EALREADY;
	}
	pthread_mutex_unlock(&old->lock);
	rmig_for_each_feature(old, f, resume_check)
		if (!rc)
			rc = f->resume_check(old, why_p);
	return rc;
}

int rmig_resume_from(rmig_session *s, rmig_session *old)
{
	const char *why = NULL;
	int rc = 0;

	if (!s || !old || s == old || s->opts.role != old->opts.role) {
		rmig_session_destroy(old != s ? old : NULL);
		return -EINVAL;
	}
	if (s->state != RMIG_S_NEW || s->ctl_fd >= 0 || s->listen_fd >= 0 || s->given_fd >= 0 || s->local ||
	    s->nblocks || s->resuming) {
		rmig_err(&s->log, "resume: the new session must be fresh: no blocks, not connected");
		rmig_session_destroy(old);
		return -EBUSY;
	}
	rc = resumable(old, &why);
	if (rc) {
		rmig_err(&s->log, "resume: session %016" PRIx64 " cannot be resumed: %s",
			 old->session_id, why);
		rmig_session_destroy(old);
		return rc;
	}
	/* the old channels end here: nothing of theirs lands once the new ones open */
	rmig_cancel(old, "resumed by a new session");
	for (unsigned int i = 0; i < old->nblocks && !rc; i++) {
		struct rmig_block *o = &old->blocks[i];

		rc = rmig_add_ram(s, o->name, o->host, o->length, o->page_size);
		if (!rc && o->held && o->posted && o->syncing && o->round &&
		    s->opts.role == RMIG_ROLE_SOURCE) {
			struct rmig_block *b = &s->blocks[i];

			/*
			 * Held, and not posted since: a page whose newer copy may
			 * have half landed, or of a round that did not finish, is
			 * missing.
			 */
			for (size_t w = 0; w < rmig_bitmap_longs(o->npages); w++)
				o->held[w] &= ~(o->posted[w] | o->syncing[w] | o->round[w]);
			b->held = o->held;
			o->held = NULL;
		}
	}
	/* after the blocks: postcopy's paused handler looks faults up in them */
	rmig_for_each_feature(s, f, resume_from)
		if (!rc)
			rc = f->resume_from(s, old);
	if (!rc) {
		s->session_id = old->session_id;
		s->resuming = true;
	} else {
		resume_free(s);
		s->nblocks = 0;
	}
	rmig_session_destroy(old);
	return rc;
}

int64_t rmig_resume_missing(rmig_session *s, unsigned long *const *bitmaps, unsigned int nblocks)
{
	int64_t n = 0;
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	if (!s->resuming || nblocks != s->nblocks || !bitmaps)
		return -EINVAL;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		const struct rmig_block *b = &s->blocks[i];
		size_t words = rmig_bitmap_longs(b->npages);

		if (!bitmaps[i])
			return -EINVAL;
		for (size_t w = 0; w < words; w++) {
			unsigned long m = ~b->held[w];

			if (w == words - 1 && b->npages % RMIG_BITS_PER_LONG)
				m &= (1UL << (b->npages % RMIG_BITS_PER_LONG)) - 1;
			bitmaps[i][w] |= m;
			n += __builtin_popcountl(m);
		}
	}
	return n;
}
