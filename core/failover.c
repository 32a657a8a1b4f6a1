/* SPDX-License-Identifier: MIT */
/*
 * failover.c - a rail that fails mid-migration is left out, and what its
 * channels may have lost goes again through the other rails, within the
 * session: no new handshake, no reconnect.
 *
 * The rule that makes the re-send safe: what the destination holds is
 * known exactly only at a sync. A page is held once a sync that followed
 * its write on every channel was acknowledged (an RDMA write lands without
 * the destination's CPU, so nothing finer can be known). When a rail fails,
 * every page posted since the last acknowledged sync may be half there, so
 * the sync in flight (or the next one) does not count: resume.c's record
 * of those pages (posted, and syncing put back into posted) goes again,
 * with the job the failed channel held, through the rails left, and the
 * sync runs again. A live round ends with a sync, so a failure costs at
 * most what went since the round began (or since the last sync within it).
 * Over several rails the same record is kept per rail too, and only the
 * failed rails' pages go again while a rail is left: that rail is intact,
 * and the sync that runs again covers what it carried. When the last rail
 * failed (the TCP fallback below), everything in the record goes again.
 *
 * The failed rail must be fenced first: not one write of it may land after
 * the page goes again, or an old copy would overwrite the new one. So:
 *   - the side that sees the failure (a channel's I/O error, or at the
 *     destination a channel stalled behind a sync) shuts that rail's
 *     transport down: its queue pairs go to the error state, its sockets
 *     shut, its channels take no more jobs and their threads end;
 *   - the source tells the destination (RAIL_DOWN, source to destination);
 *   - the destination, once every channel thread of the rail has ended,
 *     confirms (RAIL_DOWN, destination to source), and from then on no
 *     sync waits for the rail's markers;
 *   - the source sends again only after that confirmation, which comes
 *     before any SYNC_ACK that leaves the rail out (one control connection,
 *     in order).
 *
 * It fails over only where the session can go on without the rail: the
 * control connection alive, another rail in use and up (or the TCP
 * fallback below still to come), no postcopy (the
 * destination's guest runs on pages that cannot be taken back), no device
 * state sent yet (a blob's bytes are counted as they land and cannot come
 * twice). Otherwise the failure fails the session as before, and a resume
 * (resume.c) is the way on.
 *
 * The TCP fallback. When the last rail fails (an RDMA session's last
 * device, say), the migration goes on over TCP to the control
 * connection's address, which is known to work: the control connection
 * is alive. Once the destination confirmed every rail fenced, the source
 * asks for it (FALLBACK, the new rail's index); the destination opens a
 * TCP listener on the control connection's address and answers with its
 * endpoint; the source opens every channel again there, and each side
 * runs each channel on its new TCP connection (rmig_chan_revive()). What
 * the failed rails may have lost goes again over TCP, as above. It
 * happens once: when the TCP rail fails too, nothing is left. A source
 * with RMIG_F_NO_FALLBACK does not offer it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bitmap.h"
#include "sess.h"
#include "sock.h"
#include "transport.h"

#define RAIL_BIT(r) (1ull << (r))

/* s->fb_state */
enum { FB_NONE, FB_OPENING, FB_OPEN, FB_FAILED };

/* The errors of a link that broke, as opposed to a peer that misbehaved. */
static bool link_error(int err)
{
	switch (err) {
	case -EIO:
	case -ETIMEDOUT:
	case -ECONNRESET:
	case -EPIPE:
	case -ECONNABORTED:
	case -ENOTCONN:
	case -ENETDOWN:
	case -ENETUNREACH:
	case -ENETRESET:
	case -EHOSTUNREACH:
	case -EHOSTDOWN:
	case -ECANCELED:
	case -ENOLINK:
		return true;
	default:
		return false;
	}
}

static bool rail_in_use(const struct rmig_session *s, uint64_t r)
{
	for (unsigned int k = 0; k < s->nrails_used; k++)
		if (s->rail_used[k] == r)
			return true;
	return false;
}

/* Under s->lock: how many rails in use have not failed. */
static unsigned int rails_up(const struct rmig_session *s)
{
	unsigned int n = 0;

	for (unsigned int k = 0; k < s->nrails_used; k++)
		n += !(s->fo_down & RAIL_BIT(s->rail_used[k]));
	return n;
}

/* Under s->lock: a failure @err may fail over at all in this session, now. */
static bool session_can_fail_over(const struct rmig_session *s, int err, bool blobs)
{
	return s->fo_agreed && link_error(err) && !blobs && !s->local && !s->err &&
	       s->state == RMIG_S_RUNNING && !s->finishing && !s->pc.enabled && s->chans;
}

/*
 * Under s->lock: the last rail may still fail over to TCP (the fallback,
 * not yet opened). Only where TCP to the control connection's address is
 * another path than the rails were: RDMA rails, several TCP rails, or one
 * that is not rail 0. A single TCP rail 0 is that very path, and it failed.
 * Both sides decide alike (the same transport, the same rails in use).
 */
static bool fb_possible(const struct rmig_session *s)
{
	return s->fb_agreed && s->fb_state == FB_NONE && s->nrails < RMIG_RAILS_MAX &&
	       (s->tp_ops->kind != RMIG_TRANSPORT_TCP || s->nrails_used >= 2 ||
		(s->nrails_used == 1 && s->rail_used[0] != 0));
}

/* Under s->lock: one more rail may fail and the session go on (another up, or the fallback). */
static bool rail_to_spare(const struct rmig_session *s)
{
	unsigned int up = rails_up(s);

	return up >= 2 || (up == 1 && fb_possible(s));
}

/* Under s->lock: the session may go on without rail @r (one in use, not yet down). */
static bool can_fail_over(struct rmig_session *s, unsigned int r, int err, bool blobs)
{
	return session_can_fail_over(s, err, blobs) && rail_in_use(s, r) &&
	       !(s->fo_down & RAIL_BIT(r)) && rail_to_spare(s);
}

/* Under s->lock: every channel thread of the rails @mask has ended. */
static bool rails_quiet(const struct rmig_session *s, uint64_t mask)
{
	for (unsigned int i = 0; i < s->nchannels; i++)
		if ((mask & RAIL_BIT(rmig_chan_rail(s, i))) && !s->chans[i].exited)
			return false;
	return true;
}

/*
 * Under s->lock: the rails of @mask are fenced: confirmed (the source: by
 * the destination's RAIL_DOWN; the destination: said so) and quiet here.
 */
static bool rails_fenced(const struct rmig_session *s, uint64_t mask)
{
	return (s->fo_fenced & mask) == mask && rails_quiet(s, mask);
}

static int send_rail_down(struct rmig_session *s, unsigned int r)
{
	uint8_t buf[8];

	rmig_u64_encode(r, buf, sizeof(buf));
	return rmig_ctl_send(s, RMIG_MSG_RAIL_DOWN, buf, sizeof(buf));
}

/*
 * Destination: once rail @r is down and its channel threads have all ended,
 * nothing of it lands any more: say so (once), then leave its channels out
 * of the syncs (after the message: the source must hear of the rail before
 * any SYNC_ACK that leaves it out).
 */
static void dest_fence(struct rmig_session *s, unsigned int r)
{
	bool now;

	pthread_mutex_lock(&s->lock);
	now = (s->fo_down & RAIL_BIT(r)) && !(s->fo_fenced & RAIL_BIT(r)) &&
	      rails_quiet(s, RAIL_BIT(r));
	if (now)
		s->fo_fenced |= RAIL_BIT(r);
	pthread_mutex_unlock(&s->lock);
	if (!now)
		return;
	if (send_rail_down(s, r))
		return;
	pthread_mutex_lock(&s->lock);
	for (unsigned int i = 0; i < s->nchannels; i++)
		if (rmig_chan_rail(s, i) == r)
			s->chans[i].excluded = true;
	pthread_mutex_unlock(&s->lock);
	rmig_dest_sync_advance(s);
}

/* Rail @r was just marked down (fo_down): stop its channels and shut its transport. */
static void rail_down(struct rmig_session *s, unsigned int r, const char *why, bool tell)
{
	unsigned int left;

	pthread_mutex_lock(&s->lock);
	snprintf(s->fo_why[r], sizeof(s->fo_why[r]), "%s", why);
	left = rails_up(s);
	pthread_mutex_unlock(&s->lock);
	if (left)
		rmig_warn(&s->log, "rail %u (%s) failed: %s; the migration goes on through the other "
				   "%u rail%s",
			  r, s->rail[r].name[0] ? s->rail[r].name : "?", why, left,
			  left == 1 ? "" : "s");
	else
		rmig_warn(&s->log, "rail %u (%s) failed: %s; it was the last: the migration goes on "
				   "over tcp to the control connection's address",
			  r, s->rail[r].name[0] ? s->rail[r].name : "?", why);
	for (unsigned int i = 0; i < s->nchannels; i++)
		if (rmig_chan_rail(s, i) == r)
			rmig_chan_set_down(s, i);
	if (s->rail[r].tp)
		rmig_rail_ops(s, r)->shutdown(s->rail[r].tp);
	if (s->opts.role == RMIG_ROLE_SOURCE) {
		if (tell)
			send_rail_down(s, r);
	} else {
		dest_fence(s, r);
	}
}

/*
 * Whether the source has sent device state (then no failover: see above).
 * Read without state_lock: callers may hold s->lock.
 */
static bool blobs_sent(const struct rmig_session *s)
{
	return s->opts.role == RMIG_ROLE_SOURCE && __atomic_load_n(&s->nblobs, __ATOMIC_RELAXED) > 0;
}

static bool fo_chan_fail(struct rmig_chan *c, int err, const char *why)
{
	struct rmig_session *s = c->s;
	unsigned int r = rmig_chan_rail(s, c->idx);
	bool blobs = blobs_sent(s), known, ok;

	pthread_mutex_lock(&s->lock);
	known = s->fo_down & RAIL_BIT(r);
	ok = !known && can_fail_over(s, r, err, blobs);
	if (ok) {
		s->fo_down |= RAIL_BIT(r);
		s->failovers++;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (ok)
		rail_down(s, r, why, true);
	return known || ok;
}

/* ---- the record per rail: what each rail posted since the last sync ---- */

/*
 * Source, once the rails are known (the channels take their first job
 * after this: jobs come from the caller once connect returned): over
 * several rails, each one's record, beside resume.c's.
 */
static int fo_started(struct rmig_session *s)
{
	if (s->opts.role != RMIG_ROLE_SOURCE || !s->fo_agreed || s->nrails_used < 2 ||
	    !s->nblocks || !s->blocks[0].posted)
		return 0;
	for (unsigned int i = 0; i < s->nblocks; i++)
		for (unsigned int k = 0; k < s->nrails_used; k++) {
			struct rmig_block *b = &s->blocks[i];
			unsigned int r = s->rail_used[k];

			b->rposted[r] = rmig_bitmap_new(b->npages);
			b->rsyncing[r] = rmig_bitmap_new(b->npages);
			if (!b->rposted[r] || !b->rsyncing[r])
				return rmig_sess_fail(s, -ENOMEM,
						      "no memory for the page maps of block '%s'",
						      b->name);
		}
	return 0;
}

static void fo_destroy(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++)
		for (unsigned int r = 0; r < RMIG_RAILS_MAX; r++) {
			free(s->blocks[i].rposted[r]);
			free(s->blocks[i].rsyncing[r]);
			s->blocks[i].rposted[r] = s->blocks[i].rsyncing[r] = NULL;
		}
}

/* Channel @c's thread: pages [first, first + n) of block @b went out on @c's rail. */
static void fo_posted(const struct rmig_chan *c, const struct rmig_block *b, uint64_t first,
		      uint64_t n)
{
	unsigned int r = rmig_chan_rail(c->s, c->idx);

	if (r < RMIG_RAILS_MAX && b->rposted[r])
		rmig_bitmap_set_range_atomic(b->rposted[r], first, n);
}

/* Source: a sync begins (before any marker): each rail's posted moves to its syncing. */
static void fo_sync_begin(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];
		size_t n = rmig_bitmap_longs(b->npages);

		for (unsigned int r = 0; r < RMIG_RAILS_MAX; r++)
			if (b->rposted[r])
				rmig_bitmap_take_atomic(b->rsyncing[r], b->rposted[r], n);
	}
}

/* Source: the sync ended: acknowledged, its pages are held; else they count as posted again. */
static void fo_sync_end(struct rmig_session *s, bool acked)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];
		size_t n = rmig_bitmap_longs(b->npages);

		for (unsigned int r = 0; r < RMIG_RAILS_MAX; r++) {
			if (!b->rposted[r])
				continue;
			if (!acked)
				rmig_bitmap_or_atomic(b->rposted[r], b->rsyncing[r], n);
			memset(b->rsyncing[r], 0, n * sizeof(*b->rsyncing[r]));
		}
	}
}

/*
 * Source: the pages of a job a failed channel held are counted as posted:
 * they go again. And as sent, for a destination that reads as zero: a
 * write that failed may have half landed, so a page zero by the time it
 * goes again needs its marker.
 */
static void fo_chan_lost(struct rmig_chan *c, const struct rmig_job *j)
{
	const struct rmig_block *b;
	unsigned int r = rmig_chan_rail(c->s, c->idx);

	if (j->kind != RMIG_JOB_RAM || j->id >= c->s->nblocks)
		return;
	b = &c->s->blocks[j->id];
	for (unsigned int i = 0; i < j->n && b->posted; i++) {
		uint64_t first = j->ext[i].offset / b->page_size;
		uint64_t end = (j->ext[i].offset + j->ext[i].len + b->page_size - 1) / b->page_size;

		if (end > b->npages)
			end = b->npages;
		if (first < end) {
			rmig_bitmap_set_range_atomic(b->posted, first, end - first);
			if (r < RMIG_RAILS_MAX && b->rposted[r])
				rmig_bitmap_set_range_atomic(b->rposted[r], first, end - first);
			if (b->sent)
				rmig_bitmap_set_range_atomic(b->sent, first, end - first);
		}
	}
}

static void fo_chan_exit(struct rmig_chan *c)
{
	struct rmig_session *s = c->s;
	unsigned int r = rmig_chan_rail(s, c->idx);
	bool down;

	pthread_mutex_lock(&s->lock);
	c->exited = true;
	down = s->fo_down & RAIL_BIT(r);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (down && s->opts.role == RMIG_ROLE_DEST)
		dest_fence(s, r);
}

/* Under s->lock: a rail may still fail over (then the late ack may come after it). */
static bool fo_sync_late(struct rmig_session *s)
{
	return session_can_fail_over(s, -ETIMEDOUT, blobs_sent(s)) && rail_to_spare(s);
}

static bool fo_sync_lost(struct rmig_session *s)
{
	return s->fo_down & ~s->fo_handled;
}

/* Rails of @mask as "1 (10.0.1.1), 2 (...)" into @buf. */
static void rail_names(const struct rmig_session *s, uint64_t mask, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned int r = 0; r < s->nrails && off + 1 < len; r++)
		if (mask & RAIL_BIT(r)) {
			int n = snprintf(buf + off, len - off, "%s%u (%s)", off ? ", " : "", r,
					 s->rail[r].name);

			off += n > 0 ? (size_t)n : 0;
		}
}

/* Every rail of @mask keeps a record of its own (fo_started()). */
static bool rails_recorded(const struct rmig_session *s, uint64_t mask)
{
	for (unsigned int r = 0; r < RMIG_RAILS_MAX; r++)
		if ((mask & RAIL_BIT(r)) && (!s->nblocks || !s->blocks[0].rposted[r]))
			return false;
	return true;
}

/*
 * Source: what the rails of @mask may have lost goes again, on the channels
 * left: their own record where each rail keeps one and another rail is up;
 * else everything in resume.c's (posted, with syncing put back). A rail's
 * record is emptied as its pages go (they are posted again elsewhere).
 */
static int resend(struct rmig_session *s, uint64_t mask, bool per_rail, uint64_t *pages_p)
{
	struct rmig_job *job = rmig_job_new();
	int rc = 0;

	if (!job)
		return -ENOMEM;
	*pages_p = 0;
	for (unsigned int i = 0; i < s->nblocks && !rc; i++) {
		struct rmig_block *b = &s->blocks[i];
		size_t words = rmig_bitmap_longs(b->npages);
		unsigned long *snap;

		if (!b->posted)
			continue;
		snap = rmig_bitmap_new(b->npages);
		if (!snap) {
			rc = -ENOMEM;
			break;
		}
		for (size_t w = 0; !per_rail && w < words; w++)
			snap[w] = __atomic_load_n(&b->posted[w], __ATOMIC_ACQUIRE);
		for (unsigned int r = 0; per_rail && r < RMIG_RAILS_MAX; r++)
			if ((mask & RAIL_BIT(r)) && b->rposted[r])
				rmig_bitmap_take_atomic(snap, b->rposted[r], words);
		rc = rmig_job_add_bitmap(s, &job, i, snap, pages_p);
		free(snap);
	}
	if (!rc)
		rc = rmig_job_flush(s, &job);
	free(job);
	return rc;
}

/* ---- the TCP fallback ---- */

/* Rail @r becomes a TCP rail to the control connection's address, its transport created. */
static int fb_rail_open(struct rmig_session *s, unsigned int r)
{
	struct rmig_rail *rl = &s->rail[r];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char addr[sizeof(rl->name) - 8] = "?";
	int rc;

	if ((s->opts.role == RMIG_ROLE_SOURCE ? getpeername : getsockname)(
		    s->ctl_fd, (struct sockaddr *)&ss, &len) == 0)
		rmig_sockaddr_str(&ss, false, addr, sizeof(addr));
	memset(&rl->addr, 0, sizeof(rl->addr));
	rl->addr_len = 0; /* the control connection's address */
	rl->ops = &rmig_tcp_ops;
	rl->off = false;
	snprintf(rl->name, sizeof(rl->name), "%s, tcp", addr);
	rc = rmig_tp_create_rail(s, r);
	if (rc)
		return rc;
	/* shut down with the other rails from now on (a failure meanwhile: now) */
	__atomic_store_n(&s->nrails, r + 1, __ATOMIC_RELEASE);
	if (rmig_sess_err(s)) {
		rl->ops->shutdown(rl->tp);
		return rmig_sess_err(s);
	}
	return 0;
}

/* Under s->lock: the channels moved to rail @r; it counts as a rail in use, and up. */
static void fb_opened(struct rmig_session *s, unsigned int r)
{
	s->rail_used[s->nrails_used++] = r;
	s->fb_state = FB_OPEN;
	pthread_cond_broadcast(&s->cond);
}

/* Source: FALLBACK asked for (rail @r), the endpoint awaited, every channel opened again there. */
static int fb_connect(struct rmig_session *s, unsigned int r)
{
	const struct rmig_transport_ops *ops = &rmig_tcp_ops;
	struct rmig_tp_chan *chs[RMIG_CHANNELS_MAX] = { NULL };
	unsigned int n = s->nchannels;
	uint64_t deadline;
	uint8_t buf[8];
	int rc;

	rc = fb_rail_open(s, r);
	if (!rc) {
		rmig_warn(&s->log, "every rail failed: %u channels go on over tcp (%s)", n,
			  s->rail[r].name);
		rmig_u64_encode(r, buf, sizeof(buf));
		rc = rmig_ctl_send(s, RMIG_MSG_FALLBACK, buf, sizeof(buf));
	}
	deadline = rmig_sess_deadline(s);
	pthread_mutex_lock(&s->lock);
	while (!rc && !s->err && !s->fb_ep_len)
		rc = rmig_sess_wait(s, deadline);
	if (!rc)
		rc = s->err;
	pthread_mutex_unlock(&s->lock);
	if (rc == -ETIMEDOUT && !rmig_sess_err(s))
		return rmig_sess_fail(s, rc, "every rail failed, and the destination did not open "
					     "tcp channels within %u ms",
				      s->opts.timeout_ms);
	/* each connect names what failed (the session's error) */
	for (unsigned int i = 0; i < n && !rc; i++)
		rc = ops->connect(s->rail[r].tp, s->ctl_fd, s->fb_ep, s->fb_ep_len, i, &chs[i]);
	for (unsigned int i = 0; i < n && !rc; i++) {
		rc = rmig_chan_revive(s, i, ops, chs[i], r);
		if (!rc)
			chs[i] = NULL; /* the channel's now */
	}
	for (unsigned int i = 0; i < n; i++)
		ops->chan_close(chs[i]);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) :
		       rmig_sess_fail(s, rc, "opening tcp channels after every rail failed: %s",
				      rmig_strerror(rc));
	pthread_mutex_lock(&s->lock);
	fb_opened(s, r);
	pthread_mutex_unlock(&s->lock);
	rmig_info(&s->log, "tcp fallback: %u channels open (%s)", n, s->rail[r].name);
	return 0;
}

/*
 * Source: every rail in use failed. Once the destination confirmed each
 * one fenced, the channels open again over TCP (once; a second caller
 * waits for the first). 0 when they are open; -ENOLINK where the session
 * has no fallback (not agreed, or it failed before); or the session's error.
 */
static int fb_open(struct rmig_session *s)
{
	uint64_t deadline = rmig_sess_deadline(s), mask;
	unsigned int r = 0;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		mask = s->fo_down;
		if (s->err) {
			rc = s->err;
			break;
		}
		if (s->fb_state == FB_OPEN) {
			rc = 0;
			break;
		}
		if (s->fb_state == FB_FAILED || !s->fb_agreed || rails_up(s)) {
			rc = -ENOLINK;
			break;
		}
		if (s->fb_state == FB_NONE && rails_fenced(s, mask)) {
			s->fb_state = FB_OPENING;
			r = s->nrails;
			rc = 1;
			break;
		}
		rc = rmig_sess_wait(s, deadline);
		if (rc)
			break;
	}
	pthread_mutex_unlock(&s->lock);
	if (rc == -ETIMEDOUT && !rmig_sess_err(s))
		return rmig_sess_fail(s, rc, "every rail failed, and the destination did not confirm "
					     "within %u ms that nothing of them lands any more",
				      s->opts.timeout_ms);
	if (rc != 1)
		return rc;
	rc = fb_connect(s, r);
	if (rc) {
		pthread_mutex_lock(&s->lock);
		s->fb_state = FB_FAILED;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	return rc;
}

/* Source: every channel is down (rmig_chan_submit()): the fallback takes their places. */
static int fo_chans_gone(struct rmig_session *s)
{
	return fb_open(s);
}

/*
 * Destination: FALLBACK from the source. Every rail is down and fenced: a
 * TCP listener on the control connection's address, its endpoint to the
 * source, and each channel taken again there as it connects.
 */
static int fb_accept(struct rmig_session *s, unsigned int r)
{
	const struct rmig_transport_ops *ops = &rmig_tcp_ops;
	bool seen[RMIG_CHANNELS_MAX] = { false };
	uint8_t ep[RMIG_EP_MAX];
	uint16_t ep_len = 0;
	uint64_t top = 0;
	int rc, refuse_fd = -1;

	rc = fb_rail_open(s, r);
	if (!rc)
		rc = ops->listen(s->rail[r].tp, s->ctl_fd, ep, &ep_len);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) :
		       rmig_sess_fail(s, rc, "every rail failed, and no tcp listener opens on %s: %s",
				      s->rail[r].name, rmig_strerror(rc));
	if (s->test_fb_refuse) { /* a port where nothing listens: the source's connect is refused */
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (!getsockname(s->ctl_fd, (struct sockaddr *)&ss, &len) &&
		    !rmig_sockaddr_set_port(&ss, 0) &&
		    (refuse_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0 &&
		    !bind(refuse_fd, (struct sockaddr *)&ss, len) && rmig_sock_local_port(refuse_fd) > 0)
			rmig_put_be16(ep, (uint16_t)rmig_sock_local_port(refuse_fd));
	}
	rmig_warn(&s->log, "every rail failed: the channels go on over tcp (%s)", s->rail[r].name);
	/* each channel's syncs go on from the furthest one's: a marker to come is past it */
	pthread_mutex_lock(&s->lock);
	for (unsigned int i = 0; i < s->nchannels; i++)
		top = s->chan_sync[i] > top ? s->chan_sync[i] : top;
	for (unsigned int i = 0; i < s->nchannels; i++)
		s->chan_sync[i] = top;
	pthread_mutex_unlock(&s->lock);
	rc = rmig_ctl_send(s, RMIG_MSG_FALLBACK, ep, ep_len);
	for (unsigned int got = 0; got < s->nchannels && !rc; got++) {
		struct rmig_tp_chan *ch;

		rc = ops->accept(s->rail[r].tp, &ch);
		if (rc)
			break;
		if (ch->idx >= s->nchannels || seen[ch->idx]) {
			ops->chan_close(ch);
			rc = rmig_sess_fail(s, -EPROTO, "tcp fallback: data channel %u connected twice",
					    ch->idx);
			break;
		}
		seen[ch->idx] = true;
		rc = rmig_chan_revive(s, ch->idx, ops, ch, r);
	}
	if (refuse_fd >= 0)
		close(refuse_fd);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) :
		       rmig_sess_fail(s, rc, "tcp fallback: %s", rmig_strerror(rc));
	pthread_mutex_lock(&s->lock);
	fb_opened(s, r);
	pthread_mutex_unlock(&s->lock);
	rmig_info(&s->log, "tcp fallback: %u channels open (%s)", s->nchannels, s->rail[r].name);
	return 0;
}

/* FALLBACK: the source asks for TCP channels (rail index), or the destination says where. */
static int ctl_fallback(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	uint64_t r = 0;
	bool ok, quiet;
	int rc;

	pthread_mutex_lock(&s->lock);
	if (s->opts.role == RMIG_ROLE_SOURCE) {
		ok = s->fb_state == FB_OPENING && !s->fb_ep_len && len >= 1 && len <= RMIG_EP_MAX;
		if (ok) {
			memcpy(s->fb_ep, buf, len);
			s->fb_ep_len = (uint16_t)len;
			pthread_cond_broadcast(&s->cond);
		}
	} else {
		ok = !rmig_u64_decode(buf, len, &r) && r == s->nrails && fb_possible(s) &&
		     !rails_up(s) && s->chans && s->chan_sync && rails_fenced(s, s->fo_down);
		if (ok)
			s->fb_state = FB_OPENING;
	}
	quiet = s->err || s->finishing || s->state == RMIG_S_DONE;
	pthread_mutex_unlock(&s->lock);
	if (!ok)
		return quiet ? 0 :
		       rmig_sess_fail(s, -EBADMSG,
				      "control connection: unexpected FALLBACK (%s)",
				      s->opts.role == RMIG_ROLE_SOURCE ?
					      "none asked for, or a bad endpoint" :
					      "a rail still up, or not fenced, or not the next rail");
	if (s->opts.role == RMIG_ROLE_SOURCE)
		return 0;
	rc = fb_accept(s, (unsigned int)r);
	if (rc) {
		pthread_mutex_lock(&s->lock);
		s->fb_state = FB_FAILED;
		pthread_mutex_unlock(&s->lock);
	}
	return rc;
}

static int fo_sync_repair(struct rmig_session *s)
{
	uint64_t deadline = rmig_sess_deadline(s), mask, pages = 0;
	unsigned int up;
	char names[160];
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	mask = s->fo_down & ~s->fo_handled;
	while (!rc && !s->err && mask && !rails_fenced(s, mask))
		rc = rmig_sess_wait(s, deadline);
	if (!rc)
		rc = s->err;
	pthread_mutex_unlock(&s->lock);
	if (!mask)
		return 0;
	rail_names(s, mask, names, sizeof(names));
	if (rc == -ETIMEDOUT && !rmig_sess_err(s))
		return rmig_sess_fail(s, -ETIMEDOUT,
				      "rail %s failed, and the destination did not confirm within "
				      "%u ms that nothing of it lands any more",
				      names, s->opts.timeout_ms);
	if (rc)
		return rc;
	if (blobs_sent(s))
		return rmig_sess_fail(s, -ENETDOWN,
				      "rail %s failed while device state was on its way: device "
				      "state cannot go again",
				      names);
	pthread_mutex_lock(&s->lock);
	s->fo_handled |= mask;
	up = rails_up(s);
	pthread_mutex_unlock(&s->lock);
	/* the last rail failed: the channels go on over tcp (the re-send goes there) */
	if (!up) {
		rc = fb_open(s);
		if (rc == -ENOLINK && !rmig_sess_err(s))
			rc = rmig_sess_fail(s, -ENETDOWN, "every rail failed");
		if (rc)
			return rmig_sess_err(s) ? rmig_sess_err(s) : rc;
	}
	if (s->test_no_resend) {
		rmig_warn(&s->log, "tests: rail %s failed over, and nothing goes again", names);
		return 1;
	}
	rc = resend(s, mask, up && rails_recorded(s, mask), &pages);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) : rc;
	pthread_mutex_lock(&s->lock);
	s->fo_resent_pages += pages;
	pthread_mutex_unlock(&s->lock);
	rmig_info(&s->log, "rail %s failed over: %" PRIu64 " page%s posted since the last "
			   "acknowledged sync went again through the other rails",
		  names, pages, pages == 1 ? "" : "s");
	return 1;
}

/* RAIL_DOWN: the source lost a rail (fence it), or the destination fenced one. */
static int ctl_rail_down(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	bool src = s->opts.role == RMIG_ROLE_SOURCE, blobs = blobs_sent(s), known, ok, quiet;
	uint64_t r;

	if (rmig_u64_decode(buf, len, &r) || r >= s->nrails || !rail_in_use(s, r))
		return rmig_sess_fail(s, -EBADMSG, "control connection: bad RAIL_DOWN (a rail "
						   "not in use)");
	pthread_mutex_lock(&s->lock);
	known = s->fo_down & RAIL_BIT(r);
	ok = !known && can_fail_over(s, (unsigned int)r, -ENETDOWN, blobs);
	if (ok) {
		s->fo_down |= RAIL_BIT(r);
		s->failovers++;
	}
	if (src && (known || ok))
		s->fo_fenced |= RAIL_BIT(r);
	/* a session already ending: nothing to go on with (and the control thread reads on) */
	quiet = s->err || s->finishing || s->state == RMIG_S_DONE;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (!known && !ok && quiet)
		return 0;
	if (!known && !ok)
		return rmig_sess_fail(s, -ENETDOWN,
				      "the %s lost rail %u (%s), and this migration cannot go on "
				      "without it",
				      src ? "destination" : "source", (unsigned int)r,
				      s->rail[r].name);
	if (ok)
		rail_down(s, (unsigned int)r, src ? "the destination lost it" : "the source lost it",
			  false);
	return 0;
}

/* The session failed with rails failed over before: each one's cause too (under s->lock). */
static void fo_error_note(struct rmig_session *s, char *msg, size_t cap)
{
	size_t off = strlen(msg);

	if (s->err_from_peer) /* the peer's text says it, from its side */
		return;
	for (unsigned int r = 0; r < s->nrails && off + 1 < cap; r++)
		if (s->fo_down & RAIL_BIT(r)) {
			int n = snprintf(msg + off, cap - off, "; rail %u (%s) had failed: %s", r,
					 s->rail[r].name, s->fo_why[r]);

			off += n > 0 ? (size_t)n : 0;
		}
}

/* The handshake: both sides must take RAIL_DOWN (a peer of an earlier release does not). */
static uint32_t fo_hello_caps(const struct rmig_session *s)
{
	if (s->local || s->test_no_fo_cap)
		return 0;
	return RMIG_CAP_FAILOVER |
	       (s->opts.flags & RMIG_F_NO_FALLBACK ? 0 : RMIG_CAP_FALLBACK);
}

static int fo_src_hello_ack(struct rmig_session *s, uint32_t ack_caps)
{
	s->fo_agreed = ack_caps & RMIG_ACK_FAILOVER;
	s->fb_agreed = s->fo_agreed && (ack_caps & RMIG_ACK_FALLBACK);
	return 0;
}

/* The destination answers RMIG_ACK_FALLBACK where it has a rail to spare for it. */
static int fo_dest_hello(struct rmig_session *s, const struct rmig_msg_hello *hello)
{
	s->fo_agreed = hello->caps & RMIG_CAP_FAILOVER;
	s->fb_agreed = s->fo_agreed && (hello->caps & RMIG_CAP_FALLBACK) &&
		       s->rails_asked < RMIG_RAILS_MAX;
	return 0;
}

static void fo_stats(struct rmig_session *s, struct rmig_stats *st)
{
	pthread_mutex_lock(&s->lock);
	st->failovers = s->failovers;
	st->failover_pages = s->fo_resent_pages;
	st->tcp_fallbacks = s->fb_state == FB_OPEN;
	pthread_mutex_unlock(&s->lock);
}

static const struct rmig_ctl_handler fo_ctl[] = {
	{ RMIG_MSG_RAIL_DOWN, RMIG_CTL_TO_SOURCE | RMIG_CTL_TO_DEST, ctl_rail_down },
	{ RMIG_MSG_FALLBACK, RMIG_CTL_TO_SOURCE | RMIG_CTL_TO_DEST, ctl_fallback },
};

const struct rmig_feature rmig_failover_feature = {
	.name = "failover",
	.ctl = fo_ctl,
	.nctl = sizeof(fo_ctl) / sizeof(fo_ctl[0]),
	.stats = fo_stats,
	.hello_caps = fo_hello_caps,
	.src_hello_ack = fo_src_hello_ack,
	.dest_hello = fo_dest_hello,
	.error_note = fo_error_note,
	.chan_fail = fo_chan_fail,
	.chan_lost = fo_chan_lost,
	.chan_exit = fo_chan_exit,
	.sync_lost = fo_sync_lost,
	.sync_repair = fo_sync_repair,
	.sync_late = fo_sync_late,
	.chans_gone = fo_chans_gone,
	.started = fo_started,
	.destroy = fo_destroy,
	.posted = fo_posted,
	.sync_begin = fo_sync_begin,
	.sync_end = fo_sync_end,
};
