/* SPDX-License-Identifier: MIT */
/*
 * sess_err.c - what every part of a session reads of its state, below the
 * session itself: the clock its deadlines use, a deadline from its timeout,
 * its sticky error, and the wait on its condition. The engine (chan.c)
 * reads these; it reports errors through the session's upcall (s->up.fail),
 * as a transport does, so it never calls into the session.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

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
