/* SPDX-License-Identifier: MIT */
/*
 * sess_err.c - what every part of a session reads of its state, below the
 * session itself: the clock its deadlines use, a deadline from its timeout,
 * its sticky first error and how it is set (the peer told, everything shut
 * down so every waiter wakes), and the wait on its condition. The engine
 * (chan.c) reads these; it reports errors through the session's upcall
 * (s->up.fail), as a transport does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>

#include "ctl.h"
#include "sess.h"

uint64_t rmig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t rmig_sess_deadline(const struct rmig_session *s)
{
	return rmig_now_ns() + (uint64_t)s->opts.timeout_ms * 1000000ull;
}

int rmig_sess_err(struct rmig_session *s)
{
	int err;

	pthread_mutex_lock(&s->lock);
	err = s->err;
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* s->lock held. */
int rmig_sess_wait(struct rmig_session *s, uint64_t deadline_ns)
{
	struct timespec ts;

	if (!deadline_ns) {
		pthread_cond_wait(&s->cond, &s->lock);
		return 0;
	}
	if (rmig_now_ns() >= deadline_ns)
		return -ETIMEDOUT;
	ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
	ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
	pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	return 0;
}

/* ---- the first error ---- */

void rmig_sess_shut(struct rmig_session *s)
{
	/*
	 * A thread woken by the first error (the caller of rmig_complete(),
	 * then rmig_session_destroy()) must not half-close the control
	 * connection before the failing thread has written the ERROR there:
	 * the peer would read only "peer closed". tell_peer() takes 1 s at most.
	 */
	uint64_t deadline = rmig_now_ns() + 2000000000ull;

	pthread_mutex_lock(&s->lock);
	while (s->telling && rmig_sess_wait(s, deadline) == 0)
		;
	pthread_mutex_unlock(&s->lock);
	if (s->tp)
		s->tp_ops->shutdown(s->tp);
	for (unsigned int r = 1; r < s->nrails; r++) /* rail 0's is s->tp */
		if (s->rail[r].tp)
			rmig_rail_ops(s, r)->shutdown(s->rail[r].tp);
	/*
	 * Half-close only: the peer reads our queued ERROR, then EOF. Readers
	 * of the control socket wake on wake_fd; a full shutdown here would
	 * leave unread input at close() and so send RST, which may destroy
	 * what the peer has not read yet.
	 */
	if (s->ctl_fd >= 0)
		shutdown(s->ctl_fd, SHUT_WR);
	(void)!eventfd_write(s->wake_fd, 1);
	if (s->listen_fd >= 0)
		shutdown(s->listen_fd, SHUT_RDWR);
	pthread_mutex_lock(&s->cs_lock);
	s->cs_stop = true;
	for (unsigned int i = 0; s->chans && i < s->nchannels; i++)
		pthread_cond_signal(&s->chans[i].work);
	pthread_cond_broadcast(&s->cs_idle);
	pthread_mutex_unlock(&s->cs_lock);
}

struct rmig_ctl_conn rmig_sess_ctl_conn(const struct rmig_session *s)
{
	return (struct rmig_ctl_conn){ .fd = s->ctl_fd, .tls = s->ctl_tls, .wake_fd = s->wake_fd };
}

static void tell_peer(struct rmig_session *s, int err, const char *msg)
{
	struct rmig_ctl_conn c = rmig_sess_ctl_conn(s);
	uint64_t d = rmig_now_ns() + 1000000000ull;
	struct timespec ts = { .tv_sec = (time_t)(d / 1000000000ull),
			       .tv_nsec = (long)(d % 1000000000ull) };

	if (s->ctl_fd < 0 || s->ctl_mute)
		return;
	/* Best effort: wait a moment for a PING in flight, never for a stuck sender. */
	if (pthread_mutex_timedlock(&s->ctl_send_lock, &ts))
		return;
	rmig_conn_send_error(&c, err, msg);
	pthread_mutex_unlock(&s->ctl_send_lock);
}

int rmig_sess_vfail(struct rmig_session *s, int err, bool from_peer, const char *fmt,
		      va_list ap)
{
	bool first = false;

	if (err >= 0)
		err = -EIO;
	pthread_mutex_lock(&s->lock);
	if (!s->err && s->state != RMIG_S_DONE && !s->finishing) {
		first = true;
		s->telling = !from_peer;
		s->err = err;
		s->err_from_peer = from_peer;
		{
			/* it may quote what a peer sent: no control bytes for the caller to print */
			char raw[sizeof(s->errmsg)];

			vsnprintf(raw, sizeof(raw), fmt, ap);
			rmig_escape(s->errmsg, sizeof(s->errmsg), raw);
		}
		/* what the error means to each feature (postcopy: for the guest) */
		rmig_for_each_feature(s, f, error_note)
			f->error_note(s, s->errmsg, sizeof(s->errmsg));
		if (!s->t_end_ns)
			s->t_end_ns = rmig_now_ns();
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (first) {
		rmig_err(&s->log, "%s", s->errmsg);
		if (!from_peer) {
			tell_peer(s, err, s->errmsg);
			pthread_mutex_lock(&s->lock);
			s->telling = false;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
		}
		rmig_sess_shut(s);
	}
	return s->err ? s->err : err;
}

int rmig_sess_fail(struct rmig_session *s, int err, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = rmig_sess_vfail(s, err, false, fmt, ap);
	va_end(ap);
	return rc;
}

int rmig_sess_fail_from(struct rmig_session *s, int err, bool from_peer, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = rmig_sess_vfail(s, err, from_peer, fmt, ap);
	va_end(ap);
	return rc;
}
