/* SPDX-License-Identifier: MIT */
/*
 * postcopy.c - page requests, the urgent channel, placement at the
 * destination (see postcopy.h); the userfaultfd side is pc_uffd.c, pause
 * and resume pc_pause.c.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pc_bits.h"
#include "postcopy.h"
#include "sess.h"

void rmig_pc_init(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;

	pc->uffd = -1;
	if (s->opts.role == RMIG_ROLE_SOURCE && (s->opts.flags & RMIG_F_POSTCOPY)) {
		pc->enabled = true;
		pc->urgent = !(s->opts.flags & RMIG_F_NO_URGENT);
	}
}

void rmig_pc_stop(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;

	atomic_store(&pc->serve_stop, true);
	/* the handler thread leaves on wake_fd, which the caller made readable */
	if (pc->uffd_started)
		pthread_join(pc->uffd_thread, NULL);
	pc->uffd_started = false;
	rmig_pc_unregister(s);
}

void rmig_pc_destroy(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;

	rmig_pc_stop(s);
	if (pc->uffd >= 0)
		close(pc->uffd);
	free(pc->zeros);
	for (unsigned int i = 0; i < RMIG_BLOCKS_MAX; i++) {
		free(pc->missing[i]);
		free(pc->sent[i]);
		free(pc->requested[i]);
		free(pc->placing[i]);
	}
	free(pc->ujob);
}

/* ---- source ---- */

/*
 * The pages of request @r the destination lacked at the switchover, as
 * extents of one job (a request has at most RMIG_JOB_EXTENTS pages). Each
 * is claimed by the channel as it posts it.
 */
static void request_job(struct rmig_session *s, struct rmig_job *j,
			const struct rmig_msg_page_req *r)
{
	const struct rmig_block *b = &s->blocks[r->block];
	uint64_t ps = b->page_size;

	j->kind = RMIG_JOB_NONE;
	j->n = 0;
	j->bytes = 0;
	for (uint64_t p = r->offset / ps; p < (r->offset + r->len) / ps; p++) {
		struct rmig_extent *last = j->n ? &j->ext[j->n - 1] : NULL;

		if (!bit_test(s->pc.missing[r->block], p))
			continue; /* never missing: the destination zero-fills it */
		j->kind = RMIG_JOB_RAM;
		j->id = r->block;
		if (last && last->offset + last->len == p * ps &&
		    last->len + ps <= s->opts.extent_max)
			last->len += ps;
		else
			j->ext[j->n++] = (struct rmig_extent){ p * ps, ps };
		j->bytes += ps;
	}
	j->urgent = true;
}

/*
 * Background channel threads step back once postcopy runs: on both sides
 * they yield the CPU to the urgent path (the fault handler, the control
 * threads, the urgent channel) and to the guest's vCPUs. Threads end with
 * the session, so the nice value is never raised again.
 */
static __thread bool tl_backseat;

static void thread_background(struct rmig_session *s, unsigned int chan)
{
	if (tl_backseat || (s->pc.urgent && chan == s->nchannels - 1))
		return;
	tl_backseat = true;
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), RMIG_PC_BG_NICE) < 0)
		rmig_dbg(&s->log, "postcopy: channel %u: setpriority: %s", chan, strerror(errno));
}

static bool src_active(struct rmig_session *s, uint32_t b)
{
	return s->opts.role == RMIG_ROLE_SOURCE && b < RMIG_BLOCKS_MAX && s->pc.sent[b];
}

static bool claim(struct rmig_session *s, uint32_t b, uint64_t page, bool requested)
{
	struct rmig_postcopy *pc = &s->pc;

	if (!bit_test(pc->missing[b], page))
		return false;
	if (!bit_test_set(pc->sent[b], page))
		return true;
	if (!requested)
		return false;
	/* asked for while its background copy is on the way: this one may be first */
	atomic_fetch_add_explicit(&pc->st_resent, 1, memory_order_relaxed);
	return true;
}

static void count(struct rmig_session *s, bool requested, uint64_t pages)
{
	atomic_fetch_add_explicit(requested ? &s->pc.st_urgent_pages : &s->pc.st_background,
				  pages, memory_order_relaxed);
}

static void claim_begin(struct rmig_chan *c)
{
	thread_background(c->s, c->idx);
}

/* the urgent channel, the last one, takes only the pages asked for */
static unsigned int reserved(const struct rmig_session *s)
{
	return s->pc.urgent ? 1 : 0;
}

/* Destination channel thread: pages for a userfaultfd block land in @ctx, then UFFDIO_COPY. */
static int dest_start(struct rmig_chan *c, void **ctx)
{
	struct rmig_session *s = c->s;
	uint64_t len;
	void *stage;

	if (!s->pc.enabled)
		return 0;
	len = rmig_pc_write_max(s);
	stage = aligned_alloc(4096, len);
	if (!stage)
		return -ENOMEM;
	rmig_place_membind(s->place, &c->loc, stage, len); /* near the device, before the first touch */
	s->pc.stage[c->idx] = (struct rmig_pc_stage){ .buf = stage, .len = len };
	*ctx = stage;
	return 0;
}

static void dest_progress(struct rmig_chan *c, void *ctx)
{
	struct rmig_session *s = c->s;

	if (s->pc.enabled && __atomic_load_n(&s->pc.run_seen, __ATOMIC_ACQUIRE))
		thread_background(s, c->idx);
}

static void dest_end(struct rmig_chan *c, void *ctx)
{
	c->s->pc.stage[c->idx] = (struct rmig_pc_stage){ 0 };
	free(ctx);
}


int rmig_pc_on_page_req(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	struct rmig_postcopy *pc = &s->pc;
	struct rmig_msg_page_req r;
	const struct rmig_block *b;
	int rc;

	if (!pc->serving)
		return rmig_sess_fail(s, -EPROTO, "control connection: PAGE_REQ before postcopy");
	if (rmig_page_req_decode(buf, len, &r))
		return rmig_sess_fail(s, -EBADMSG, "control connection: malformed PAGE_REQ");
	if (r.block >= s->nblocks)
		return rmig_sess_fail(s, -EBADMSG, "PAGE_REQ: unknown ram block %u", r.block);
	b = &s->blocks[r.block];
	if (r.offset % b->page_size || r.len % b->page_size || !r.len || r.offset > b->length ||
	    r.len > b->length - r.offset || r.len > 64ull * b->page_size)
		return rmig_sess_fail(s, -ERANGE,
				      "PAGE_REQ: block '%s' offset %llu length %llu is not whole "
				      "pages inside it (at most 64)",
				      b->name, (unsigned long long)r.offset,
				      (unsigned long long)r.len);
	atomic_fetch_add_explicit(&pc->st_requests, 1, memory_order_relaxed);
	if (atomic_load(&pc->serve_stop))
		return 0; /* stopping: the session ends anyway */
	/*
	 * Served right here: on the urgent channel, with no thread to wake on
	 * the way; with RMIG_F_NO_URGENT, handed to the next idle shared
	 * channel, behind the background pages.
	 */
	request_job(s, pc->ujob, &r);
	if (pc->ujob->kind == RMIG_JOB_NONE)
		return 0;
	rc = pc->urgent ? rmig_chan_run(s, s->nchannels - 1, pc->ujob) :
			  rmig_chan_submit(s, &pc->ujob, -1);
	if (rc == -ECANCELED)
		return 0;
	if (rc)
		return rmig_sess_fail(s, rc, "postcopy: serving a page request: %s",
				      strerror(-rc));
	return 0;
}

int rmig_postcopy_start(rmig_session *s, const unsigned long *const *bitmaps,
			unsigned int nblocks)
{
	struct rmig_postcopy *pc;
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	pc = &s->pc;
	if (!pc->enabled) {
		rmig_err(&s->log, "postcopy: the session was created without RMIG_F_POSTCOPY");
		return -EINVAL;
	}
	if (nblocks != s->nblocks)
		return -EINVAL;
	if (pc->missing[0])
		return -EALREADY;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		if (s->blocks[i].page_size > RMIG_PC_PAGE_MAX) {
			rmig_err(&s->log, "postcopy: block '%s' has %u-byte pages; postcopy takes "
					  "pages up to %u bytes",
				 s->blocks[i].name, s->blocks[i].page_size, RMIG_PC_PAGE_MAX);
			return -EINVAL;
		}
	}
	(void)rmig_sess_switchover(s); /* the guest is stopped; -EALREADY is fine */
	rc = rmig_source_sync(s); /* every precopy page is placed */
	if (rc)
		return rc;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		const struct rmig_block *b = &s->blocks[i];

		pc->missing[i] = bits_new(b->npages);
		pc->sent[i] = bits_new(b->npages);
		if (!pc->missing[i] || !pc->sent[i])
			return rmig_sess_fail(s, -ENOMEM, "postcopy: no memory for the page maps");
		for (uint64_t p = 0; bitmaps[i] && p < b->npages; p++)
			if (bitmaps[i][p / BPL] & (1ul << (p % BPL)))
				bit_test_set(pc->missing[i], p);
	}
	rc = rmig_pc_send_discards(s);
	if (!rc) {
		pc->ujob = rmig_job_new();
		if (!pc->ujob)
			rc = rmig_sess_fail(s, -ENOMEM, "postcopy: no memory");
	}
	pc->serving = !rc; /* from here on, the control thread takes PAGE_REQ */
	if (!rc)
		rc = rmig_ctl_send(s, RMIG_MSG_PC_RUN, NULL, 0);
	if (rc)
		return rc;
	/* the destination answers PC_RUN once its guest may run */
	rc = rmig_pc_wait_running(s, "start");
	pthread_mutex_lock(&s->lock);
	if (!rc && s->t_switch_ns)
		s->downtime_ns = rmig_now_ns() - s->t_switch_ns;
	pthread_mutex_unlock(&s->lock);
	if (!rc)
		rmig_info(&s->log, "postcopy: the destination runs the guest");
	return rc;
}

int rmig_postcopy_send_rest(rmig_session *s)
{
	struct rmig_postcopy *pc;
	struct rmig_job *job;
	int rc = rmig_src_ready(s);

	if (rc)
		return rc;
	pc = &s->pc;
	if (!pc->running)
		return -EINVAL;
	job = rmig_job_new();
	if (!job)
		return -ENOMEM;
	for (unsigned int i = 0; i < s->nblocks && !rc; i++) {
		const struct rmig_block *b = &s->blocks[i];
		uint64_t bg_max = s->opts.extent_max < RMIG_PC_BG_EXTENT ? s->opts.extent_max :
									  RMIG_PC_BG_EXTENT;

		if (bg_max < b->page_size)
			bg_max = b->page_size;

		for (uint64_t p = 0; p < b->npages && !rc; p++) {
			if (!bit_test(pc->missing[i], p) || bit_test(pc->sent[i], p))
				continue;
			rc = rmig_job_add_range_max(s, &job, i, p * b->page_size, b->page_size,
						    bg_max);
		}
	}
	if (!rc)
		rc = rmig_job_flush(s, &job);
	free(job);
	return rc;
}

/* ---- destination ---- */

static int maps_alloc(struct rmig_session *s, unsigned int i)
{
	struct rmig_postcopy *pc = &s->pc;

	if (!pc->missing[i])
		pc->missing[i] = bits_new(s->blocks[i].npages);
	if (!pc->requested[i])
		pc->requested[i] = bits_new(s->blocks[i].npages);
	if (!pc->placing[i])
		pc->placing[i] = bits_new(s->blocks[i].npages);
	return pc->missing[i] && pc->requested[i] && pc->placing[i] ? 0 : -ENOMEM;
}

int rmig_pc_on_discard(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	struct rmig_postcopy *pc = &s->pc;
	struct rmig_msg_pc_discard m;

	/* the source hears what a resumed destination still lacks */
	if (s->opts.role == RMIG_ROLE_SOURCE ? !pc->resuming || pc->running :
					       !pc->enabled || pc->run_seen)
		return rmig_sess_fail(s, -EPROTO, "control connection: unexpected PC_DISCARD");
	if (rmig_pc_discard_decode(buf, len, &m))
		return rmig_sess_fail(s, -EBADMSG, "control connection: malformed PC_DISCARD");
	if (m.block >= s->nblocks || m.first > s->blocks[m.block].npages ||
	    m.nbits > s->blocks[m.block].npages - m.first)
		return rmig_sess_fail(s, -ERANGE, "PC_DISCARD: pages %llu+%u outside block %u",
				      (unsigned long long)m.first, m.nbits, m.block);
	if (s->opts.role == RMIG_ROLE_DEST && maps_alloc(s, m.block))
		return rmig_sess_fail(s, -ENOMEM, "postcopy: no memory for the page maps");
	for (uint32_t k = 0; k < m.nbits; k++)
		if (m.bits[k / 8] & (1u << (k % 8)))
			bit_test_set(pc->missing[m.block], m.first + k);
	return 0;
}

int rmig_pc_on_run(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	int rc = 0;

	if (s->opts.role == RMIG_ROLE_SOURCE) {
		if (pc->resuming && !pc->running)
			pc->serving = true; /* the destination asks again right behind it */
		if (!pc->serving)
			return rmig_sess_fail(s, -EPROTO, "control connection: unexpected PC_RUN");
		pthread_mutex_lock(&s->lock);
		pc->running = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (!pc->enabled || pc->run_seen)
		return rmig_sess_fail(s, -EPROTO, "control connection: unexpected PC_RUN");
	pc->run_seen = true;
	for (unsigned int i = 0; i < s->nblocks && !rc; i++)
		if (maps_alloc(s, i))
			rc = rmig_sess_fail(s, -ENOMEM, "postcopy: no memory for the page maps");
	if (!rc)
		rc = rmig_pc_uffd_setup(s);
	if (!rc && pc->uffd_registered)
		rc = rmig_pc_handler_start(s);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	pc->running = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	rmig_info(&s->log, "postcopy: running; missing pages come on request");
	return rmig_ctl_send(s, RMIG_MSG_PC_RUN, NULL, 0);
}

int rmig_pc_place(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
		  uint64_t len, void **dst_p)
{
	struct rmig_postcopy *pc = &s->pc;
	const struct rmig_block *blk = &s->blocks[b];
	struct rmig_pc_stage *st = chan < RMIG_CHANNELS_MAX ? &pc->stage[chan] : NULL;

	if (!pc->run_seen)
		return 0;
	if (off % blk->page_size || len % blk->page_size)
		return rmig_sess_fail(s, -ERANGE,
				      "postcopy: write to block '%s' at %llu+%llu is not whole pages",
				      blk->name, (unsigned long long)off, (unsigned long long)len);
	if (!st || !st->buf || len > st->len)
		return rmig_sess_fail(s, -E2BIG,
				      "postcopy: a %llu-byte write on channel %u does not fit its "
				      "staging buffer",
				      (unsigned long long)len, chan);
	*dst_p = st->buf;
	st->staged = true;
	st->src = st->buf;
	return 1;
}

static int copy_pages(struct rmig_session *s, const struct rmig_block *b, uint64_t off,
		      uint64_t len, const uint8_t *src)
{
	int uffd = s->pc.uffd;

	for (uint64_t done = 0; done < len;) {
		struct uffdio_copy c = { .dst = (uintptr_t)b->host + off + done,
					 .src = (uintptr_t)src + done,
					 .len = len - done };

		if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
			done = len;
		} else if (errno == EEXIST) {
			/* a page is here already (zero-filled on a fault): copy around it */
			done += c.copy > 0 ? (uint64_t)c.copy : b->page_size;
		} else if (errno == EAGAIN) {
			done += c.copy > 0 ? (uint64_t)c.copy : 0;
		} else {
			return rmig_sess_fail(s, -errno, "postcopy: UFFDIO_COPY into block '%s': %s",
					      b->name, strerror(errno));
		}
	}
	return 0;
}

int rmig_pc_placed(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
		   uint64_t len)
{
	struct rmig_postcopy *pc = &s->pc;
	const struct rmig_block *blk = &s->blocks[b];
	uint64_t first = off / blk->page_size, last = (off + len) / blk->page_size;
	struct rmig_pc_stage *st = chan < RMIG_CHANNELS_MAX ? &pc->stage[chan] : NULL;
	bool staged = st && st->staged;
	const uint8_t *src = staged ? st->src : NULL;
	int rc;

	if (st)
		st->staged = false;
	if (!pc->missing[b] || !pc->run_seen)
		return 0;
	if (staged && pc->uffd_block[b]) {
		rc = copy_pages(s, blk, off, len, src);
		if (rc)
			return rc;
	} else if (staged) {
		/* only a missing page's first copy goes in: the guest may use it already */
		for (uint64_t p = first; p < last; p++) {
			if (!bit_test(pc->missing[b], p) || bit_test_set(pc->placing[b], p))
				continue;
			memcpy(blk->host + p * blk->page_size,
			       src + (p - first) * blk->page_size, blk->page_size);
			bit_clear(pc->missing[b], p);
		}
	}
	/* (a page another thread is copying in stays missing until it is in) */
	for (uint64_t p = first; p < last && !(staged && !pc->uffd_block[b]); p++)
		bit_clear(pc->missing[b], p);
	atomic_fetch_add_explicit(&pc->st_placed, last - first, memory_order_relaxed);
	pthread_mutex_lock(&s->lock);
	if (pc->waiters)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int rmig_pc_check_complete(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;

	if (!pc->run_seen)
		return 0;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		uint64_t n = 0;

		for (uint64_t p = 0; p < s->blocks[i].npages; p++)
			n += bit_test(pc->missing[i], p);
		if (n)
			return rmig_sess_fail(s, -EPROTO,
					      "postcopy: completion with %llu pages of block '%s' "
					      "never sent",
					      (unsigned long long)n, s->blocks[i].name);
	}
	return 0;
}

int rmig_postcopy_wait(rmig_session *s)
{
	int rc;

	if (!s || s->opts.role != RMIG_ROLE_DEST)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	while (!s->err && !s->pc.running && s->state != RMIG_S_DONE)
		rmig_sess_wait(s, 0);
	rc = s->err ? s->err : s->pc.running ? 0 : -ENODATA;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int dest_range(rmig_session *s, const char *block, uint64_t offset, uint64_t len,
		      unsigned int *idx_p, uint64_t *first_p, uint64_t *last_p)
{
	struct rmig_block *b;

	if (!s || s->opts.role != RMIG_ROLE_DEST || !s->pc.running)
		return -EINVAL;
	b = rmig_block_find(s, block, idx_p);
	if (!b)
		return -ENOENT;
	if (offset > b->length || len > b->length - offset)
		return -ERANGE;
	*first_p = offset / b->page_size;
	*last_p = (offset + len + b->page_size - 1) / b->page_size;
	return 0;
}

int rmig_postcopy_has(rmig_session *s, const char *block, uint64_t offset)
{
	uint64_t first, last;
	unsigned int i;
	int rc = dest_range(s, block, offset, 1, &i, &first, &last);

	return rc ? rc : !bit_test(s->pc.missing[i], first);
}

int rmig_postcopy_fetch(rmig_session *s, const char *block, uint64_t offset, uint64_t len)
{
	struct rmig_postcopy *pc;
	uint64_t first, last, deadline;
	unsigned int i;
	int rc = dest_range(s, block, offset, len, &i, &first, &last);

	if (rc)
		return rc;
	pc = &s->pc;
	for (uint64_t p = first; p < last && !rc;) {
		uint64_t n = 0;

		/* one request per run of missing pages not asked for yet, at most 64 pages */
		while (p + n < last && n < 64 && bit_test(pc->missing[i], p + n) &&
		       !bit_test_set(pc->requested[i], p + n))
			n++;
		if (n)
			rc = rmig_pc_send_req(s, i, p * s->blocks[i].page_size, n * s->blocks[i].page_size);
		p += n ? n : 1;
	}
	if (rc)
		return rc;
	deadline = rmig_sess_deadline(s);
	pthread_mutex_lock(&s->lock);
	pc->waiters++;
	for (uint64_t p = first; p < last && !rc && !s->err;) {
		if (!bit_test(pc->missing[i], p))
			p++;
		else
			rc = rmig_sess_wait(s, deadline);
	}
	pc->waiters--;
	if (!rc)
		rc = s->err;
	pthread_mutex_unlock(&s->lock);
	if (rc == -ETIMEDOUT && !rmig_sess_err(s))
		rc = rmig_sess_fail(s, rc,
				    "postcopy: pages %llu..%llu of block '%s' did not arrive within "
				    "%u ms; the guest cannot continue",
				    (unsigned long long)first, (unsigned long long)last - 1,
				    s->blocks[i].name, s->opts.timeout_ms);
	return rc;
}

/* ---- the feature: its control messages and hooks ---- */

/* To the source only when it resumes: what the destination still lacks. */
static int ctl_discard(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	if (s->opts.role == RMIG_ROLE_SOURCE && !s->pc.resuming)
		return rmig_ctl_unexpected(s, RMIG_MSG_PC_DISCARD);
	return rmig_pc_on_discard(s, buf, len);
}

static int ctl_run(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	return len ? rmig_sess_fail(s, -EBADMSG, "control connection: PC_RUN with payload") :
		     rmig_pc_on_run(s);
}

static const struct rmig_ctl_handler pc_ctl[] = {
	{ RMIG_MSG_PC_DISCARD, RMIG_CTL_TO_SOURCE | RMIG_CTL_TO_DEST, ctl_discard },
	{ RMIG_MSG_PC_RUN, RMIG_CTL_TO_SOURCE | RMIG_CTL_TO_DEST, ctl_run },
	{ RMIG_MSG_PAGE_REQ, RMIG_CTL_TO_SOURCE, rmig_pc_on_page_req },
};

static int pc_feature_init(struct rmig_session *s)
{
	rmig_pc_init(s);
	if (s->pc.urgent)
		s->nchannels++; /* the urgent channel: the last one */
	return 0;
}

static uint32_t hello_caps(const struct rmig_session *s)
{
	return s->pc.enabled ? RMIG_CAP_POSTCOPY | (s->pc.urgent ? RMIG_CAP_URGENT : 0) : 0;
}

/* Destination: postcopy as the source's HELLO asks. */
static int dest_hello(struct rmig_session *s, const struct rmig_msg_hello *hello)
{
	s->pc.enabled = hello->caps & RMIG_CAP_POSTCOPY;
	s->pc.urgent = (hello->caps & RMIG_CAP_URGENT) && s->pc.enabled;
	if (s->pc.urgent && hello->nchannels < 2)
		return rmig_sess_fail(s, -EPROTO, "refusing the source: an urgent channel needs "
						  "another one beside it");
	return 0;
}

/* Postcopy places every page itself: it must hear of each. */
static bool every_page(const struct rmig_session *s)
{
	return s->pc.enabled;
}

/* A postcopy that resumes: pages come by message into staging buffers only. */
static bool by_message_only(const struct rmig_session *s)
{
	return s->pc.resuming;
}

/* After PC_RUN the guest runs here while pages are still at the source. */
static void error_note(struct rmig_session *s, char *msg, size_t cap)
{
	size_t n = strlen(msg);

	if (s->opts.role != RMIG_ROLE_DEST || !s->pc.running || !rmig_pc_missing_any(s) ||
	    strstr(msg, "the guest cannot continue"))
		return;
	if (rmig_pc_pausable(s))
		snprintf(msg + n, cap - n,
			 "; postcopy paused: the guest waits up to %u ms for the source to resume",
			 s->opts.recovery_timeout_ms);
	else
		snprintf(msg + n, cap - n,
			 "; postcopy: pages are still missing here, the guest cannot continue");
}

static void pc_stats(struct rmig_session *s, struct rmig_stats *st)
{
	struct rmig_postcopy *pc = &s->pc;

	st->pc_requests = atomic_load(&pc->st_requests);
	st->pc_urgent_pages = atomic_load(&pc->st_urgent_pages);
	st->pc_background = atomic_load(&pc->st_background);
	st->pc_resent = atomic_load(&pc->st_resent);
	st->pc_faults = atomic_load(&pc->st_faults);
	st->pc_pauses = atomic_load(&pc->st_pauses);
	st->pc_paused_ns = atomic_load(&pc->st_paused_ns);
	st->pc_rerequested = atomic_load(&pc->st_rerequested);
}

/* The destination's data path while postcopy is on (see rmig_pc_place()). */
static int ram_place(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
		     uint64_t len, void **dst_p)
{
	return s->pc.enabled ? rmig_pc_place(s, chan, b, off, len, dst_p) : 0;
}

static int ram_placed(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
		      uint64_t len)
{
	return s->pc.enabled ? rmig_pc_placed(s, chan, b, off, len) : 0;
}

/* Requested pages come by SEND once the destination runs the guest. */
static bool ram_by_message(struct rmig_session *s)
{
	return s->pc.enabled && __atomic_load_n(&s->pc.run_seen, __ATOMIC_ACQUIRE);
}

/* Bytes that came as a message: a staged page goes by UFFDIO_COPY straight from @src. */
static bool ram_from(struct rmig_session *s, unsigned int chan, const void *src)
{
	struct rmig_pc_stage *st = chan < RMIG_CHANNELS_MAX ? &s->pc.stage[chan] : NULL;

	if (!s->pc.enabled || !st || !st->staged)
		return false;
	st->src = src;
	return true;
}

/* RMIG_F_POSTCOPY and RMIG_F_NO_URGENT, with the sizes they need. */
static int opts_check(const struct rmig_opts *o, const struct rmig_logger *lg)
{
	if ((o->flags & RMIG_F_NO_URGENT) && !(o->flags & RMIG_F_POSTCOPY)) {
		rmig_err(lg, "option flags: RMIG_F_NO_URGENT without RMIG_F_POSTCOPY");
		return -EINVAL;
	}
	if ((o->flags & RMIG_F_POSTCOPY) && o->extent_max > RMIG_PC_STAGE) {
		rmig_err(lg, "option extent_max: %u is over %u with postcopy (a write must fit "
			     "the destination's staging buffer)", o->extent_max, RMIG_PC_STAGE);
		return -EINVAL;
	}
	if ((o->flags & RMIG_F_POSTCOPY) && !(o->flags & RMIG_F_NO_URGENT) &&
	    o->role == RMIG_ROLE_SOURCE && o->channels >= RMIG_CHANNELS_MAX) {
		rmig_err(lg, "option channels: %u leaves no room for the urgent channel (at most %u "
			     "with postcopy)", o->channels, RMIG_CHANNELS_MAX - 1);
		return -EINVAL;
	}
	return 0;
}

const struct rmig_feature rmig_pc_feature = {
	.name = "postcopy",
	.opts_check = opts_check,
	.ram_place = ram_place,
	.ram_placed = ram_placed,
	.ram_by_message = ram_by_message,
	.ram_from = ram_from,
	.init = pc_feature_init,
	.stop = rmig_pc_stop,
	.destroy = rmig_pc_destroy,
	.error_note = error_note,
	.stats = pc_stats,
	.started = rmig_pc_resumed,
	.write_max = rmig_pc_write_max,
	.ctl = pc_ctl,
	.nctl = sizeof(pc_ctl) / sizeof(pc_ctl[0]),
	.complete_check = rmig_pc_check_complete,
	.claims = src_active,
	.claim_begin = claim_begin,
	.claim = claim,
	.claim_end = count,
	.reserved = reserved,
	.dest_start = dest_start,
	.dest_progress = dest_progress,
	.dest_end = dest_end,
	.resume_check = rmig_pc_resume_check,
	.hello_caps = hello_caps,
	.dest_hello = dest_hello,
	.every_page = every_page,
	.by_message_only = by_message_only,
	.resume_from = rmig_pc_resume_from,
};
