/* SPDX-License-Identifier: MIT */
/*
 * pc_pause.c - postcopy pause and resume.
 *
 * Once the destination runs the guest, a break of the connection used to
 * end it: the blocks were unregistered and faulting threads read zero
 * pages. With recovery_timeout_ms, the destination's fault handler instead
 * pauses: it keeps reading faults and keeps the faulting threads waiting
 * (their pages marked requested, nothing sent), until either
 *  - rmig_resume_from() hands the postcopy over to a new session
 *    (rmig_pc_take_over()): the handler thread ends without unregistering,
 *    and the new session takes the userfaultfd, the page maps (missing,
 *    requested) and the counters; or
 *  - the window passes, or the session is destroyed: today's failure
 *    path runs (unregister, "the guest cannot continue").
 * The source's side of it is a new session made from the old one
 * (rmig_pc_resume_source()): postcopy on, page maps empty.
 *
 * Once the resumed session is started (rmig_pc_resumed()), the destination
 * says which pages it still lacks (PC_DISCARD, as the source does at the
 * switchover), then PC_RUN, then asks again for every page a thread waits
 * on, and starts its handler thread. The source takes the DISCARDs into
 * its missing map, serves requests from PC_RUN on, and its connect returns
 * once PC_RUN came: the caller then sends the rest
 * (rmig_postcopy_send_rest()) as before the break.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "pc_bits.h"
#include "sess.h"

bool rmig_pc_pausable(struct rmig_session *s)
{
	return s->opts.role == RMIG_ROLE_DEST && s->opts.recovery_timeout_ms &&
	       s->pc.run_seen && s->pc.uffd_registered && !s->finishing &&
	       !atomic_load(&s->pc.serve_stop) && rmig_pc_missing_any(s);
}

enum rmig_pc_pause_end rmig_pc_pause(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	uint64_t t0 = rmig_now_ns();
	enum rmig_pc_pause_end e = RMIG_PC_PAUSE_EXPIRED;

	if (!pc->pause_deadline_ns) {
		/* a new break: its window starts now, and carries over to the sessions that resume */
		pc->pause_deadline_ns = t0 + (uint64_t)s->opts.recovery_timeout_ms * 1000000ull;
		atomic_fetch_add(&pc->st_pauses, 1);
		rmig_warn(&s->log, "postcopy paused: faulting threads wait up to %u ms for the "
				   "source to resume the migration",
			  s->opts.recovery_timeout_ms);
	}
	atomic_store(&pc->paused, true);
	for (;;) {
		struct pollfd pfd = { .fd = pc->uffd, .events = POLLIN };
		struct uffd_msg msg[16];
		ssize_t got;

		if (atomic_load(&pc->handoff)) {
			e = RMIG_PC_PAUSE_HANDED;
			break;
		}
		if (atomic_exchange(&pc->go, false)) { /* once: a later break pauses anew */
			e = RMIG_PC_PAUSE_RESUMED;
			break;
		}
		if (atomic_load(&pc->serve_stop) || rmig_now_ns() >= pc->pause_deadline_ns)
			break;
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		got = read(pc->uffd, msg, sizeof(msg));
		for (ssize_t j = 0; got > 0 && j < got / (ssize_t)sizeof(msg[0]); j++)
			if (msg[j].event == UFFD_EVENT_PAGEFAULT)
				(void)rmig_pc_fault(s, (uintptr_t)msg[j].arg.pagefault.address, true);
	}
	atomic_fetch_add(&pc->st_paused_ns, rmig_now_ns() - t0);
	atomic_store(&pc->paused, false);
	if (e == RMIG_PC_PAUSE_RESUMED) {
		pc->pause_deadline_ns = 0; /* the next break opens a window of its own */
		atomic_store(&pc->go_seen, true);
	} else if (e == RMIG_PC_PAUSE_EXPIRED) {
		atomic_store(&pc->expired, true);
		rmig_err(&s->log, "postcopy: no source resumed the migration within %u ms; the "
				  "guest cannot continue",
			 s->opts.recovery_timeout_ms);
	}
	return e;
}

int rmig_pc_take_over(struct rmig_session *s, struct rmig_session *old)
{
	struct rmig_postcopy *pc = &s->pc, *op = &old->pc;

	if (!op->uffd_started)
		return -ETIMEDOUT;
	/*
	 * The handler pauses at the break (rmig_resume_from() made sure of
	 * one), or is paused already (@old took over and never resumed), and
	 * hands over. The blocks must be declared on @s first: faults are
	 * looked up in them.
	 */
	atomic_store(&op->handoff, true);
	pthread_join(op->uffd_thread, NULL);
	op->uffd_started = false;
	if (!op->uffd_registered) /* the window passed meanwhile */
		return -ETIMEDOUT;
	pc->enabled = true;
	pc->run_seen = true;
	pc->uffd = op->uffd;
	op->uffd = -1;
	pc->uffd_registered = true;
	op->uffd_registered = false;
	pc->zeros = op->zeros;
	op->zeros = NULL;
	memcpy(pc->uffd_block, op->uffd_block, sizeof(pc->uffd_block));
	for (unsigned int i = 0; i < RMIG_BLOCKS_MAX; i++) {
		pc->missing[i] = op->missing[i];
		pc->requested[i] = op->requested[i];
		pc->placing[i] = op->placing[i];
		op->missing[i] = op->requested[i] = op->placing[i] = NULL;
	}
	/* the waiting faults: their timeouts count from the resume */
	memcpy(pc->track, op->track, op->ntrack * sizeof(op->track[0]));
	pc->ntrack = op->ntrack;
	pc->st_pauses = atomic_load(&op->st_pauses);
	pc->st_paused_ns = atomic_load(&op->st_paused_ns);
	pc->st_rerequested = atomic_load(&op->st_rerequested);
	pc->st_requests = atomic_load(&op->st_requests);
	pc->st_faults = atomic_load(&op->st_faults);
	pc->st_placed = atomic_load(&op->st_placed);
	pc->resuming = true;
	/* faulting threads go on waiting here, within the same window, until this session resumes */
	pc->pause_deadline_ns = op->pause_deadline_ns;
	pc->start_paused = true;
	return rmig_pc_handler_start(s);
}

int rmig_pc_resume_source(struct rmig_session *s, const struct rmig_session *old)
{
	struct rmig_postcopy *pc = &s->pc;

	pc->enabled = true;
	pc->urgent = old->pc.urgent;
	pc->resuming = true;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		/* missing: filled from the destination's PC_DISCARD; sent: all again */
		pc->missing[i] = bits_new(s->blocks[i].npages);
		pc->sent[i] = bits_new(s->blocks[i].npages);
		if (!pc->missing[i] || !pc->sent[i])
			return -ENOMEM;
	}
	pc->ujob = rmig_job_new();
	return pc->ujob ? 0 : -ENOMEM;
}

/* Destination: every page a thread waits on, asked for again, in runs of at most 64. */
int rmig_pc_resume_check(struct rmig_session *old, const char **why_p)
{
	int rc = 0;

	pthread_mutex_lock(&old->lock);
	if (old->pc.serving && !old->pc.running) {
		*why_p = "postcopy was starting: whether the destination runs the guest is unknown";
		rc = -EINVAL;
	} else if (old->pc.run_seen && !old->pc.uffd_started) {
		*why_p = "postcopy pauses only with userfaultfd blocks and recovery_timeout_ms";
		rc = -EINVAL;
	}
	pthread_mutex_unlock(&old->lock);
	return rc;
}

int rmig_pc_resume_from(struct rmig_session *s, struct rmig_session *old)
{
	int rc = 0;

	/* (a resume whose connect failed goes on with postcopy as well) */
	if (old->opts.role == RMIG_ROLE_SOURCE && (old->pc.running || old->pc.resuming))
		rc = rmig_pc_resume_source(s, old);
	if (old->opts.role == RMIG_ROLE_DEST && old->pc.run_seen) {
		rc = rmig_pc_take_over(s, old);
		if (rc == -ETIMEDOUT)
			rmig_err(&s->log, "resume: postcopy of session %016" PRIx64 " is over: no "
					  "source came back within %u ms",
				 old->session_id, old->opts.recovery_timeout_ms);
	}
	return rc;
}

static int ask_again(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	int rc = 0;

	for (unsigned int i = 0; i < s->nblocks && !rc; i++) {
		const struct rmig_block *b = &s->blocks[i];

		for (uint64_t p = 0; pc->requested[i] && p < b->npages && !rc;) {
			uint64_t n = 0;

			while (p + n < b->npages && n < 64 && bit_test(pc->requested[i], p + n) &&
			       bit_test(pc->missing[i], p + n))
				n++;
			if (n) {
				atomic_fetch_add(&pc->st_rerequested, n);
				rc = rmig_pc_send_req(s, i, p * b->page_size, n * b->page_size);
			}
			p += n ? n : 1;
		}
	}
	return rc;
}

/*
 * Destination: the paused handler serves normally again. Faults it took
 * while paused are marked requested, not asked for: ask_again() runs once
 * it has left the pause, so none is missed.
 */
static int wake_handler(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	struct timespec ts = { 0, 1000000 };
	uint64_t deadline = rmig_now_ns() + (uint64_t)s->opts.timeout_ms * 1000000ull;

	atomic_store(&pc->go, true);
	while (!atomic_load(&pc->go_seen) && !atomic_load(&pc->expired) &&
	       rmig_now_ns() < deadline)
		nanosleep(&ts, NULL);
	if (atomic_load(&pc->go_seen))
		return 0;
	return rmig_sess_fail(s, -ETIMEDOUT, "postcopy: the recovery window passed before the "
					     "source came back; the guest cannot continue");
}

int rmig_pc_resumed(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	uint64_t now = rmig_now_ns();
	int rc = 0;

	if (!pc->resuming)
		return 0;
	if (s->opts.role == RMIG_ROLE_DEST) {
		for (unsigned int j = 0; j < pc->ntrack; j++)
			pc->track[j].t_ns = now;
		rc = rmig_pc_send_discards(s);
		if (!rc) {
			pthread_mutex_lock(&s->lock);
			pc->running = true;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			rc = rmig_ctl_send(s, RMIG_MSG_PC_RUN, NULL, 0);
		}
		if (!rc)
			rc = wake_handler(s);
		if (!rc)
			rc = ask_again(s);
		if (!rc)
			rmig_info(&s->log, "postcopy resumed: the waiting faults were asked for again");
		return rc;
	}
	/* source: the destination's DISCARDs, then its PC_RUN (the control thread's) */
	rc = rmig_pc_wait_running(s, "resume");
	if (!rc)
		rmig_info(&s->log, "postcopy resumed: the destination runs the guest");
	return rc;
}

/* ---- the fault handler thread: it serves faults, and pauses on a break ---- */

static void *uffd_main(void *arg)
{
	struct rmig_session *s = arg;
	enum rmig_pc_pause_end e = s->pc.start_paused ? rmig_pc_pause(s) : RMIG_PC_PAUSE_RESUMED;

	while (e == RMIG_PC_PAUSE_RESUMED) {
		(void)rmig_pc_serve(s);
		/* a break: faulting threads may wait for the source to come back */
		e = rmig_pc_pausable(s) ? rmig_pc_pause(s) : RMIG_PC_PAUSE_EXPIRED;
	}
	/* Failed or done: no thread may stay blocked on a fault. Handed over: they wait on. */
	if (e != RMIG_PC_PAUSE_HANDED)
		rmig_pc_unregister(s);
	return NULL;
}

int rmig_pc_handler_start(struct rmig_session *s)
{
	if (pthread_create(&s->pc.uffd_thread, NULL, uffd_main, s))
		return rmig_sess_fail(s, -EAGAIN, "postcopy: starting the fault thread");
	s->pc.uffd_started = true;
	return 0;
}
