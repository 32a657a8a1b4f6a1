/* SPDX-License-Identifier: MIT */
/*
 * rails.c - multi-rail: one migration spread over several destination
 * addresses, each reached through its own device.
 *
 * Rail 0 is the control connection's address. A destination given more
 * addresses (rmig_listen_add()) opens a transport on each, with its own
 * listener, device, protection domain and registrations, and announces
 * them in a RAILS message right after HELLO_ACK. The source opens a
 * transport per rail and connects channel i through rail i % nrails, in
 * index order; the destination accepts them in that same order, so an RDMA
 * connect never waits on an accept made on another rail. Each rail
 * registers every block and sends its own REG descriptors (rail-major).
 * A rail whose channel fails fails the migration, naming the channel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sess.h"
#include "sock.h"

static void addr_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host,
			  sizeof(host));
	snprintf(buf, len, "%s", host);
}

int rmig_listen_add(rmig_session *s, const char *addr)
{
	char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX] = "0";
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	struct rmig_rail *rl;
	const char *colon;
	int rc;

	if (!s || !addr || s->opts.role != RMIG_ROLE_DEST || s->local)
		return -EINVAL;
	if (s->state != RMIG_S_NEW || s->ctl_fd >= 0)
		return -EBUSY;
	if (s->rails_asked + (s->rails_asked ? 0 : 1) >= RMIG_RAILS_MAX)
		return -ENOSPC;
	/* HOST, HOST:PORT or [V6]:PORT; a tcp:// or rdma:// prefix is taken too */
	if (!strncmp(addr, "tcp://", 6) || !strncmp(addr, "rdma://", 7))
		addr = strstr(addr, "://") + 3;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || (size_t)(end - addr - 1) >= sizeof(host) ||
		    (end[1] && (end[1] != ':' || !end[2])))
			return -EINVAL;
		memcpy(host, addr + 1, (size_t)(end - addr - 1));
		host[end - addr - 1] = '\0';
		if (end[1])
			snprintf(port, sizeof(port), "%s", end + 2);
	} else if ((colon = strrchr(addr, ':')) && strchr(addr, ':') == colon) {
		if ((size_t)(colon - addr) >= sizeof(host) || !colon[1] ||
		    strlen(colon + 1) >= sizeof(port))
			return -EINVAL;
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
		snprintf(port, sizeof(port), "%s", colon + 1);
	} else {
		if (strlen(addr) >= sizeof(host))
			return -EINVAL;
		snprintf(host, sizeof(host), "%s", addr); /* a bare IPv6 address too */
	}
	if (!host[0] || strspn(port, "0123456789") != strlen(port) || atol(port) > 65535)
		return -EINVAL;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc || !ai || ai->ai_addrlen > sizeof(rl->addr)) {
		if (ai)
			freeaddrinfo(ai);
		rmig_err(&s->log, "rail address '%s': %s", host, rc ? gai_strerror(rc) : "unusable");
		return -EINVAL;
	}
	/* an address of this host, free to listen on: else say so now, not at accept */
	{
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

		rc = fd < 0 ? -errno : 0;
		if (!rc)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!rc && bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
			rc = -errno;
		if (fd >= 0)
			close(fd);
		if (rc) {
			rmig_err(&s->log, "rail address '%s': %s", addr,
				 rc == -EADDRNOTAVAIL ? "not an address of this host" : strerror(-rc));
			freeaddrinfo(ai);
			return rc;
		}
	}
	if (!s->rails_asked)
		s->rails_asked = 1; /* rail 0: the control connection's */
	rl = &s->rail[s->rails_asked++];
	memcpy(&rl->addr, ai->ai_addr, ai->ai_addrlen);
	rl->addr_len = ai->ai_addrlen;
	addr_name(&rl->addr, rl->name, sizeof(rl->name));
	freeaddrinfo(ai);
	return 0;
}

struct rmig_tp *rmig_rail_tp(const struct rmig_session *s, unsigned int chan)
{
	return s->rail[chan % (s->nrails ? s->nrails : 1)].tp;
}

static void name_rail0(struct rmig_session *s, bool peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if ((peer ? getpeername(s->ctl_fd, (struct sockaddr *)&ss, &len)
		  : getsockname(s->ctl_fd, (struct sockaddr *)&ss, &len)) == 0)
		addr_name(&ss, s->rail[0].name, sizeof(s->rail[0].name));
	else
		snprintf(s->rail[0].name, sizeof(s->rail[0].name), "0");
}

int rmig_rails_dest_open(struct rmig_session *s, struct rmig_msg_hello_ack *ack)
{
	unsigned int want = s->rails_asked ? s->rails_asked : 1;

	name_rail0(s, false);
	/* a rail with no channel on it would only idle */
	s->nrails = want < s->nchannels ? want : s->nchannels;
	for (unsigned int r = 1; r < s->nrails; r++) {
		struct rmig_rail *rl = &s->rail[r];
		int rc = rmig_tp_create_rail(s, r);

		if (!rc)
			rc = s->tp_ops->listen(rl->tp, s->ctl_fd, rl->ep, &rl->ep_len);
		if (rc)
			return rmig_sess_err(s) ? rmig_sess_err(s) :
			       rmig_sess_fail(s, rc, "opening %s data channels on rail %s: %s",
					      s->tp_ops->name, rl->name, strerror(-rc));
	}
	if (s->nrails > 1)
		ack->caps |= RMIG_ACK_RAILS;
	return 0;
}

int rmig_rails_dest_send(struct rmig_session *s)
{
	struct rmig_msg_rails *m;
	uint8_t *buf;
	int n, rc;

	if (s->nrails < 2)
		return 0;
	m = calloc(1, sizeof(*m));
	buf = malloc(RMIG_CTL_MAX);
	if (!m || !buf) {
		free(m);
		free(buf);
		return rmig_sess_fail(s, -ENOMEM, "no memory for the rails");
	}
	m->n = s->nrails - 1;
	for (unsigned int r = 1; r < s->nrails; r++) {
		const struct rmig_rail *rl = &s->rail[r];
		struct rmig_wire_rail *w = &m->r[r - 1];

		if (rl->addr.ss_family == AF_INET) {
			w->family = 4;
			memcpy(w->addr, &((const struct sockaddr_in *)&rl->addr)->sin_addr, 4);
		} else {
			w->family = 6;
			memcpy(w->addr, &((const struct sockaddr_in6 *)&rl->addr)->sin6_addr, 16);
		}
		w->ep_len = rl->ep_len;
		memcpy(w->ep, rl->ep, rl->ep_len);
	}
	n = rmig_rails_encode(m, buf, RMIG_CTL_MAX);
	rc = n < 0 ? rmig_sess_fail(s, n, "encoding the rails: %s", strerror(-n))
		   : rmig_ctl_send(s, RMIG_MSG_RAILS, buf, (uint32_t)n);
	free(m);
	free(buf);
	return rc;
}

int rmig_rails_source_take(struct rmig_session *s, const struct rmig_msg_hello_ack *ack,
			   uint8_t *buf)
{
	struct rmig_msg_rails *m;
	struct rmig_ctl_hdr h;
	int rc;

	name_rail0(s, true);
	s->nrails = 1;
	if (!(ack->caps & RMIG_ACK_RAILS))
		return 0;
	m = calloc(1, sizeof(*m));
	if (!m)
		return rmig_sess_fail(s, -ENOMEM, "no memory for the rails");
	rc = rmig_ctl_expect(s, RMIG_MSG_RAILS, &h, buf);
	if (!rc && rmig_rails_decode(buf, h.len, m))
		rc = rmig_sess_fail(s, -EBADMSG,
				    "control connection: bad RAILS (the destination's other "
				    "addresses): a count out of 1..%u, or an address that is not "
				    "unicast",
				    RMIG_RAILS_MAX - 1);
	else if (!rc && m->n + 1 > s->nchannels)
		rc = rmig_sess_fail(s, -EBADMSG,
				    "control connection: RAILS announces %u rails for %u channels",
				    m->n + 1, s->nchannels);
	for (unsigned int r = 1; !rc && r <= m->n; r++) {
		const struct rmig_wire_rail *w = &m->r[r - 1];
		struct rmig_rail *rl = &s->rail[r];

		memset(&rl->addr, 0, sizeof(rl->addr));
		if (w->family == 4) {
			struct sockaddr_in *in = (struct sockaddr_in *)&rl->addr;

			in->sin_family = AF_INET;
			memcpy(&in->sin_addr, w->addr, 4);
			rl->addr_len = sizeof(*in);
		} else {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&rl->addr;

			in6->sin6_family = AF_INET6;
			memcpy(&in6->sin6_addr, w->addr, 16);
			rl->addr_len = sizeof(*in6);
		}
		addr_name(&rl->addr, rl->name, sizeof(rl->name));
		rl->ep_len = w->ep_len;
		memcpy(rl->ep, w->ep, w->ep_len);
		rc = rmig_tp_create_rail(s, r);
		if (!rc)
			s->nrails = r + 1;
	}
	if (!rc && s->nrails > 1)
		rmig_info(&s->log, "the destination offers %u rails", s->nrails);
	free(m);
	return rc;
}

void rmig_rails_shutdown(struct rmig_session *s)
{
	for (unsigned int r = 1; r < s->nrails; r++)
		if (s->rail[r].tp)
			s->tp_ops->shutdown(s->rail[r].tp);
}

void rmig_rails_destroy(struct rmig_session *s)
{
	for (unsigned int r = 1; r < s->nrails; r++) {
		if (s->rail[r].tp)
			s->tp_ops->destroy(s->rail[r].tp);
		s->rail[r].tp = NULL;
	}
}
