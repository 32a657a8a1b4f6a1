/* SPDX-License-Identifier: MIT */
/* ctl.c - control messages on one connection (see ctl.h). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "sock.h"

int rmig_conn_send(const struct rmig_ctl_conn *c, uint16_t type, const uint8_t *payload,
		   uint32_t len, unsigned int timeout_ms)
{
	uint8_t hdr[RMIG_CTL_HDR_LEN];
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)(uintptr_t)payload, len } };

	rmig_ctl_hdr_encode(hdr, type, len);
	if (c->tls)
		return rmig_tls_writev_full(c->tls, iov, len ? 2 : 1, -1, timeout_ms);
	return rmig_sock_writev_full(c->fd, iov, len ? 2 : 1);
}

static int conn_read(const struct rmig_ctl_conn *c, void *buf, size_t len, uint64_t deadline_ns)
{
	if (c->tls)
		return rmig_tls_read_full(c->tls, buf, len, c->wake_fd, deadline_ns);
	return rmig_sock_read_until(c->fd, buf, len, c->wake_fd, deadline_ns);
}

int rmig_conn_recv(const struct rmig_ctl_conn *c, struct rmig_ctl_hdr *h, uint8_t *buf,
		   uint64_t deadline_ns, uint32_t *magic_p)
{
	uint8_t hdr[RMIG_CTL_HDR_LEN];
	int rc = conn_read(c, hdr, sizeof(hdr), deadline_ns);

	if (rc)
		return rc;
	if (!c->tls && hdr[0] == 0x16 && hdr[1] == 0x03) /* a TLS handshake record */
		return -EPROTONOSUPPORT;
	if (rmig_ctl_hdr_decode(hdr, h)) {
		*magic_p = rmig_get_be32(hdr);
		return -EBADMSG;
	}
	return conn_read(c, buf, h->len, deadline_ns);
}

int rmig_conn_expect(const struct rmig_ctl_conn *c, uint16_t type, struct rmig_ctl_hdr *h,
		     uint8_t *buf, uint64_t deadline_ns, char *why, size_t why_len,
		     bool *from_peer_p)
{
	struct rmig_msg_error m;
	uint32_t magic = 0;
	int rc = rmig_conn_recv(c, h, buf, deadline_ns, &magic);

	*from_peer_p = false;
	if (rc == -EPROTONOSUPPORT) {
		snprintf(why, why_len, "control connection: the peer speaks TLS; run both sides "
				       "with TLS (and the same key)");
		return rc;
	}
	if (rc == -EBADMSG) {
		snprintf(why, why_len, "control connection: malformed message header (magic 0x%08x)",
			 magic);
		return rc;
	}
	if (rc) {
		snprintf(why, why_len, "control connection: waiting for %s: %s", rmig_msg_name(type),
			 rc == -ECONNRESET ? "peer closed the connection" : rmig_strerror(rc));
		return rc;
	}
	if (h->type == RMIG_MSG_ERROR && type != RMIG_MSG_ERROR) {
		if (rmig_error_decode(buf, h->len, &m)) {
			snprintf(why, why_len, "control connection: malformed ERROR message");
			return -EBADMSG;
		}
		*from_peer_p = true;
		snprintf(why, why_len, "peer reported: %s", m.msg);
		return m.code > 0 && m.code < 4096 ? -m.code : -EIO;
	}
	if (h->type != type) {
		snprintf(why, why_len, "control connection: expected %s, got %s", rmig_msg_name(type),
			 rmig_msg_name(h->type));
		return -EPROTO;
	}
	return 0;
}

void rmig_conn_send_error(const struct rmig_ctl_conn *c, int err, const char *msg)
{
	struct rmig_msg_error m = { .code = -err };
	uint8_t buf[RMIG_CTL_HDR_LEN + RMIG_ERRMSG_MAX + 8];
	int n;

	if (c->fd < 0 || err >= 0 || -err > 4095)
		return;
	snprintf(m.msg, sizeof(m.msg), "%s", msg);
	n = rmig_error_encode(&m, buf + RMIG_CTL_HDR_LEN, sizeof(buf) - RMIG_CTL_HDR_LEN);
	if (n < 0)
		return;
	rmig_ctl_hdr_encode(buf, RMIG_MSG_ERROR, (uint32_t)n);
	if (c->tls)
		rmig_tls_write_try(c->tls, buf, RMIG_CTL_HDR_LEN + (size_t)n);
	else
		(void)!send(c->fd, buf, RMIG_CTL_HDR_LEN + (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void rmig_conn_close(struct rmig_ctl_conn *c, unsigned int budget_ms)
{
	uint64_t deadline = rmig_mono_ns() + (uint64_t)budget_ms * 1000000ull;
	uint8_t sink[4096];

	if (c->fd < 0)
		return;
	shutdown(c->fd, SHUT_WR);
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		uint64_t now = rmig_mono_ns();
		ssize_t n;

		if (now >= deadline || poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1) <= 0)
			break;
		n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		/* the peer's EOF ends it (0 sets no errno: a stale EAGAIN must not spin on) */
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			break;
	}
	rmig_tls_free(c->tls);
	c->tls = NULL;
	close(c->fd);
	c->fd = -1;
}
