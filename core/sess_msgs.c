/* SPDX-License-Identifier: MIT */
/*
 * sess_msgs.c - the session's own control messages: PING, ERROR, the sync
 * acks and completion, and the control thread's tick (a destination fails
 * a channel whose sync lags). They plug in as a feature that every session
 * registers first (rmig_sess_new()); the other features bring theirs.
 */
#include <errno.h>

#include "sess.h"

static int ctl_ping(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	return len ? rmig_sess_fail(s, -EBADMSG, "control connection: PING with payload") : 0;
}

static int ctl_sync_ack(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	uint64_t v;

	if (rmig_u64_decode(buf, len, &v))
		return rmig_sess_fail(s, -EBADMSG, "control connection: malformed SYNC_ACK");
	pthread_mutex_lock(&s->lock);
	if (v > s->sync_sent) {
		pthread_mutex_unlock(&s->lock);
		return rmig_sess_fail(s, -EBADMSG,
				      "control connection: SYNC_ACK for sync %llu never sent",
				      (unsigned long long)v);
	}
	if (v > s->sync_acked)
		s->sync_acked = v;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int ctl_complete_ack(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	struct rmig_msg_error m = { 0 };
	bool asked;

	pthread_mutex_lock(&s->lock);
	asked = s->complete_sent;
	pthread_mutex_unlock(&s->lock);
	if (!asked)
		return rmig_sess_fail(s, -EBADMSG,
				      "control connection: unexpected COMPLETE_ACK (this side "
				      "has not asked to complete)");
	if (len == 4 && rmig_get_be32(buf) == 0) {
		/*
		 * Done here, not in rmig_complete(): the destination closes
		 * its sockets right after this ack, and that close must not
		 * be taken for an error.
		 */
		pthread_mutex_lock(&s->lock);
		s->peer_verdict = 0;
		if (!s->err) {
			s->state = RMIG_S_DONE;
			s->t_end_ns = rmig_now_ns();
		}
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (rmig_error_decode(buf, len, &m))
		return rmig_sess_fail(s, -EBADMSG, "control connection: malformed COMPLETE_ACK");
	return rmig_sess_fail_from(s, -m.code, true, "destination refused completion: %s", m.msg);
}

/* COMPLETE: each feature may refuse it first (postcopy: a page is still missing). */
static int ctl_complete(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	rmig_for_each_feature(s, f, complete_check)
		if (f->complete_check(s))
			return rmig_sess_err(s);
	return rmig_handle_complete(s, buf, len);
}

static const struct rmig_ctl_handler sess_ctl[] = {
	{ RMIG_MSG_PING, RMIG_CTL_TO_SOURCE | RMIG_CTL_TO_DEST, ctl_ping },
	{ RMIG_MSG_ERROR, RMIG_CTL_TO_SOURCE | RMIG_CTL_TO_DEST, rmig_ctl_peer_error },
	{ RMIG_MSG_SYNC_ACK, RMIG_CTL_TO_SOURCE, ctl_sync_ack },
	{ RMIG_MSG_COMPLETE_ACK, RMIG_CTL_TO_SOURCE, ctl_complete_ack },
	{ RMIG_MSG_COMPLETE, RMIG_CTL_TO_DEST, ctl_complete },
};

const struct rmig_feature rmig_sess_msgs = {
	.name = "session",
	.ctl = sess_ctl,
	.nctl = sizeof(sess_ctl) / sizeof(sess_ctl[0]),
	.tick = rmig_check_sync_lag,
};
