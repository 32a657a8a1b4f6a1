/* SPDX-License-Identifier: MIT */
/*
 * sess_ctl.c - a session's control connection: sending and receiving
 * messages, the table that dispatches the peer's messages to the handlers
 * the features register (the session's own come first: sess_msgs.c), the
 * control thread that keeps the link alive and runs the features' ticks,
 * and TLS on the connection.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ctl.h"
#include "sess.h"
#include "sock.h"

/* ---- control connection ---- */

int rmig_ctl_send(struct rmig_session *s, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct rmig_ctl_conn c = rmig_sess_ctl_conn(s);
	int rc;

	if (s->local) {
		/* the backend is the peer; it reports its own errors */
		rc = s->tp ? s->tp_ops->ctl(s->tp, type, payload, len) : -ENOTCONN;
		if (rc && !rmig_sess_err(s))
			rmig_sess_fail(s, rc, "%s: %s: %s", s->tp_ops->name, rmig_msg_name(type),
				       rmig_strerror(rc));
		return rc ? (rmig_sess_err(s) ? rmig_sess_err(s) : rc) : 0;
	}
	pthread_mutex_lock(&s->ctl_send_lock);
	rc = rmig_conn_send(&c, type, payload, len, s->opts.timeout_ms);
	pthread_mutex_unlock(&s->ctl_send_lock);
	if (rc)
		return rmig_sess_fail(s, rc, "control connection: sending %s: %s",
				      rmig_msg_name(type), rmig_strerror(rc));
	return 0;
}

/*
 * Read one control message into @buf (RMIG_CTL_MAX bytes). The whole
 * message must arrive within the timeout, counted from the call: a peer
 * that trickles it a byte at a time cannot hold the connection open.
 */
static int ctl_recv(struct rmig_session *s, struct rmig_ctl_hdr *h, uint8_t *buf)
{
	struct rmig_ctl_conn c = rmig_sess_ctl_conn(s);
	uint32_t magic = 0;
	int rc = rmig_conn_recv(&c, h, buf, rmig_deadline_after(s->opts.timeout_ms), &magic);

	if (rc == -EPROTONOSUPPORT)
		return rmig_sess_fail(s, rc,
				      "control connection: the peer speaks TLS; run both sides "
				      "with TLS (and the same key)");
	if (rc == -EBADMSG)
		return rmig_sess_fail(s, rc,
				      "control connection: malformed message header (magic 0x%08x)",
				      magic);
	return rc;
}

/* ERROR from the peer: its text becomes this side's error. */
int rmig_ctl_peer_error(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	struct rmig_msg_error m;

	if (rmig_error_decode(buf, len, &m))
		return rmig_sess_fail(s, -EBADMSG, "control connection: malformed ERROR message");
	return rmig_sess_fail_from(s, -m.code, true, "peer reported: %s", m.msg);
}

int rmig_ctl_last_words(struct rmig_session *s, const char *when)
{
	struct rmig_ctl_hdr h;
	uint8_t *buf = malloc(RMIG_CTL_MAX);
	int rc;

	if (!buf)
		return rmig_sess_fail(s, -ENOMEM, "no memory for a control message");
	/* what came before its ERROR no longer matters: the session is over */
	while (!(rc = ctl_recv(s, &h, buf)) && h.type != RMIG_MSG_ERROR)
		;
	if (!rc)
		rc = rmig_ctl_peer_error(s, buf, h.len);
	else
		rc = rmig_sess_fail(s, rc, "the %s closed the control connection %s",
				    s->opts.role == RMIG_ROLE_DEST ? "source" : "destination", when);
	free(buf);
	return rc;
}

int rmig_ctl_expect(struct rmig_session *s, uint16_t type, struct rmig_ctl_hdr *h, uint8_t *buf)
{
	int rc = ctl_recv(s, h, buf);

	if (rc)
		return rmig_sess_fail(s, rc, "control connection: waiting for %s: %s",
				      rmig_msg_name(type),
				      rc == -ECONNRESET ? "peer closed the connection" :
							  rmig_strerror(rc));
	if (h->type == RMIG_MSG_ERROR && type != RMIG_MSG_ERROR)
		return rmig_ctl_peer_error(s, buf, h->len);
	if (h->type != type)
		return rmig_sess_fail(s, -EPROTO, "control connection: expected %s, got %s",
				      rmig_msg_name(type), rmig_msg_name(h->type));
	return 0;
}

int rmig_sess_add_feature(struct rmig_session *s, const struct rmig_feature *f)
{
	if (s->nfeatures == RMIG_FEATURES_MAX)
		return -ENOSPC;
	for (unsigned int i = 0; i < f->nctl; i++)
		if (f->ctl[i].type >= RMIG_MSG_TYPE_MAX || s->ctl_handlers[f->ctl[i].type])
			return -EEXIST;
	for (unsigned int i = 0; i < f->nctl; i++)
		s->ctl_handlers[f->ctl[i].type] = &f->ctl[i];
	s->features[s->nfeatures++] = f;
	return 0;
}

int rmig_sess_start_features(struct rmig_session *s)
{
	int rc = 0;

	rmig_for_each_feature(s, f, start)
		if (!rc)
			rc = f->start(s);
	return rc;
}

int rmig_sess_started_features(struct rmig_session *s)
{
	int rc = 0;

	rmig_for_each_feature(s, f, started)
		if (!rc)
			rc = f->started(s);
	return rc;
}

uint64_t rmig_sess_write_max(const struct rmig_session *s)
{
	uint64_t m = s->opts.extent_max;

	rmig_for_each_feature(s, f, write_max) {
		uint64_t w = f->write_max(s);

		m = w > m ? w : m;
	}
	return m;
}

bool rmig_sess_every_page(const struct rmig_session *s)
{
	rmig_for_each_feature(s, f, every_page)
		if (f->every_page(s))
			return true;
	return false;
}

bool rmig_sess_by_message_only(const struct rmig_session *s)
{
	rmig_for_each_feature(s, f, by_message_only)
		if (f->by_message_only(s))
			return true;
	return false;
}

const struct rmig_feature *rmig_sess_tgt_owner(const struct rmig_session *s,
					       enum rmig_target_kind k)
{
	rmig_for_each_feature(s, f, tgt_place)
		if (f->tgt_kind == k)
			return f;
	return NULL;
}

const struct rmig_feature *rmig_sess_blob_owner(const struct rmig_session *s)
{
	rmig_for_each_feature(s, f, blobs)
		return f;
	return NULL;
}

int rmig_ctl_unexpected(struct rmig_session *s, uint16_t type)
{
	return rmig_sess_fail(s, -EBADMSG, "control connection: unexpected %s message",
			      rmig_msg_name(type));
}

/* One message from the peer (or a local backend), through the handler of its type. */
static int handle_msg(struct rmig_session *s, const struct rmig_ctl_hdr *h, const uint8_t *buf)
{
	const struct rmig_ctl_handler *hd = h->type < RMIG_MSG_TYPE_MAX ? s->ctl_handlers[h->type] :
									    NULL;
	uint8_t me = s->opts.role == RMIG_ROLE_SOURCE ? RMIG_CTL_TO_SOURCE : RMIG_CTL_TO_DEST;

	if (!hd || !(hd->to & me))
		return rmig_ctl_unexpected(s, h->type);
	return hd->fn(s, buf, h->len);
}

/* A local backend's message, as the control thread would take a peer's. */
int rmig_up_ctl(void *arg, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct rmig_ctl_hdr h = { .type = type, .len = len };

	return handle_msg(arg, &h, payload);
}

static bool sess_done(struct rmig_session *s)
{
	bool done;

	pthread_mutex_lock(&s->lock);
	done = s->state == RMIG_S_DONE || s->err || s->finishing;
	pthread_mutex_unlock(&s->lock);
	return done;
}

/*
 * The control thread reads every message and keeps the link alive: it sends
 * a PING when idle for a third of the timeout and fails the session when the
 * peer said nothing for the whole timeout (a dead or stalled peer). After
 * each message, and at least every tick, it runs the features' tick hooks.
 */
static void *ctl_thread(void *arg)
{
	struct rmig_session *s = arg;
	unsigned int tick = s->opts.timeout_ms / 3 ? s->opts.timeout_ms / 3 : 1;
	uint64_t last_rx = rmig_now_ns(), last_tx = last_rx;
	uint8_t *buf = malloc(RMIG_CTL_MAX);
	struct rmig_ctl_hdr h;
	int rc = buf ? 0 : -ENOMEM;

	while (!rc) {
		struct pollfd pfd[2] = { { .fd = s->ctl_fd, .events = POLLIN },
					 { .fd = s->wake_fd, .events = POLLIN } };
		uint64_t now;
		/* decrypted bytes already buffered do not make the socket readable */
		int n = s->ctl_tls && rmig_tls_pending(s->ctl_tls) ? 1 : poll(pfd, 2, (int)tick);

		if (n < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		if (n > 0 && pfd[1].revents)
			break; /* shut down: whoever did it holds the error */
		now = rmig_now_ns();
		if (n > 0) {
			rc = ctl_recv(s, &h, buf);
			if (rc == -ETIMEDOUT && !sess_done(s))
				rc = rmig_sess_fail(s, rc,
						    "control connection: a message did not arrive whole "
						    "within %u ms (the peer trickles or stalled)",
						    s->opts.timeout_ms);
			if (!rc)
				rc = handle_msg(s, &h, buf);
			last_rx = now;
		} else if (now - last_rx > (uint64_t)s->opts.timeout_ms * 1000000ull) {
			rc = rmig_sess_fail(s, -ETIMEDOUT,
					    "peer silent for %u ms (stalled or unreachable)",
					    s->opts.timeout_ms);
			break;
		}
		rmig_for_each_feature(s, f, tick)
			if (!rc && !sess_done(s))
				rc = f->tick(s);
		if (!rc && !sess_done(s) && now - last_tx >= (uint64_t)tick * 1000000ull) {
			rc = rmig_ctl_send(s, RMIG_MSG_PING, NULL, 0);
			last_tx = now;
		}
	}
	if (rc && !sess_done(s))
		rmig_sess_fail(s, rc, "control connection: %s",
			       rc == -ECONNRESET ? "peer closed the connection" : rmig_strerror(rc));
	/* Answer the peer's close with ours, so its lingering close ends now. */
	if (rc == -ECONNRESET)
		shutdown(s->ctl_fd, SHUT_WR);
	free(buf);
	return NULL;
}

int rmig_ctl_thread_start(struct rmig_session *s)
{
	int rc = pthread_create(&s->ctl_thread, NULL, ctl_thread, s);

	if (rc)
		return rmig_sess_fail(s, -rc, "starting the control thread: %s", strerror(rc));
	s->ctl_thread_started = true;
	return 0;
}

/* ---- TLS on the control connection ---- */

int rmig_ctl_start_tls(struct rmig_session *s)
{
	char why[256];
	int rc;

	if (!s->tls_conf)
		return 0;
	rc = rmig_tls_start(s->tls_conf, s->ctl_fd, s->wake_fd, s->opts.timeout_ms, &s->ctl_tls,
			    why, sizeof(why));
	if (rc) {
		/*
		 * A peer in plain text reads our ERROR; one in TLS only ever
		 * sees TLS records (OpenSSL sent it an alert if it could).
		 */
		s->ctl_mute = rc != -EPROTONOSUPPORT;
		return rmig_sess_fail(s, rc, "control connection: TLS handshake: %s", why);
	}
	rmig_info(&s->log, "control connection: TLS 1.3 with the shared key");
	return 0;
}
