/* SPDX-License-Identifier: MIT */
/*
 * rails.c - multi-rail: one migration spread over several destination
 * addresses, each reached through its own device.
 *
 * Rail 0 is the control connection's address. A destination given more
 * addresses (rmig_listen_add()) opens a transport on each, with its own
 * listener, device, protection domain and registrations, and announces
 * them in a RAILS message right after HELLO_ACK. The source opens a
 * transport per rail and connects channel i through rail i % nrails, rail
 * by rail (a rail's channels at once where the backend can); the
 * destination accepts them rail by rail, so an RDMA connect never waits on
 * an accept made on another rail. Each rail
 * registers every block and sends its own REG descriptors (rail-major).
 * A rail whose channel fails fails the migration, naming the channel.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sess.h"
#include "sock.h"

/* Rail @r's transport: rail 0 is the control connection's (tp_create()). */
int rmig_tp_create_rail(struct rmig_session *s, unsigned int r)
{
	struct rmig_tp_params p = {
		.log = &s->log,
		.up = &s->up,
		.session_id = s->session_id,
		.nchannels = s->nchannels,
		.timeout_ms = s->opts.timeout_ms,
		.extent_max = (uint32_t)rmig_sess_write_max(s), /* postcopy: whole hugepages */
		.inflight_max = s->opts.inflight_max,
		.role = s->opts.role,
		.tls = s->tls_conf,
		.path = s->file_path,
		.flags = s->opts.flags,
		.blob_max = s->opts.blob_max,
	};
	int rc;

	if (r) {
		memcpy(&p.rail_addr, &s->rail[r].addr, s->rail[r].addr_len);
		p.rail_addr_len = s->rail[r].addr_len;
	}
	/*
	 * The destination's transport puts its receive buffers on each device's
	 * node. The source's places nothing: its channels open while the
	 * topology loads, and rmig_sess_place_chans() waits for it.
	 */
	if (s->opts.role != RMIG_ROLE_SOURCE)
		rmig_sess_place_load(s);
	p.place = s->place;
	rc = rmig_rail_ops(s, r)->create(&p, &s->rail[r].tp);
	if (rc)
		return rmig_sess_fail(s, rc, "creating the %s transport%s%s: %s",
				      rmig_rail_ops(s, r)->name,
				      r ? " for rail " : "", r ? s->rail[r].name : "", strerror(-rc));
	if (!r)
		s->tp = s->rail[0].tp;
	return 0;
}

int rmig_listen_add(rmig_session *s, const char *addr)
{
	enum rmig_transport_kind kind;
	char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX], uri[RMIG_HOST_MAX + 16];
	struct rmig_rail *rl;
	int fd, rc;

	if (!s || !addr || s->opts.role != RMIG_ROLE_DEST || s->local)
		return -EINVAL;
	if (s->state != RMIG_S_NEW || s->ctl_fd >= 0)
		return -EBUSY;
	if (s->rails_asked + (s->rails_asked ? 0 : 1) >= RMIG_RAILS_MAX)
		return -ENOSPC;
	/* HOST:PORT or [V6]:PORT as a URI takes them; a bare HOST or V6 address: port 0 */
	if (strlen(addr) >= RMIG_HOST_MAX)
		return -EINVAL;
	if (rmig_uri_parse(addr, &kind, host, port)) {
		snprintf(uri, sizeof(uri), strchr(addr, ':') && !strstr(addr, "://") ? "[%s]:0" : "%s:0",
			 addr);
		if (rmig_uri_parse(uri, &kind, host, port))
			return -EINVAL;
	}
	/* an address of this host, free to listen on: else say so now, not at accept */
	rc = rmig_sock_listen(host, port, &fd);
	if (rc) {
		rmig_err(&s->log, "rail address '%s': %s", addr,
			 rc == -EHOSTUNREACH	 ? "does not resolve" :
			 rc == -EADDRNOTAVAIL ? "not an address of this host" :
						 strerror(-rc));
		return rc == -EHOSTUNREACH ? -EINVAL : rc;
	}
	if (!s->rails_asked)
		s->rails_asked = 1; /* rail 0: the control connection's */
	rl = &s->rail[s->rails_asked];
	rl->addr_len = sizeof(rl->addr);
	rc = getsockname(fd, (struct sockaddr *)&rl->addr, &rl->addr_len) ? -errno : 0;
	close(fd);
	/* the port asked for (0: any, when the rail opens), not the one just probed */
	if (!rc)
		rc = rmig_sockaddr_set_port(&rl->addr, (uint16_t)atoi(port));
	if (rc)
		return rc;
	rmig_sockaddr_str(&rl->addr, false, rl->name, sizeof(rl->name));
	s->rails_asked++;
	return 0;
}

struct rmig_tp *rmig_rail_tp(const struct rmig_session *s, unsigned int chan)
{
	return s->rail[rmig_chan_rail(s, chan)].tp;
}

/* Every rail carries channels (until RAILS_USE says otherwise). */
static void use_all(struct rmig_session *s)
{
	s->nrails_used = s->nrails ? s->nrails : 1;
	for (unsigned int r = 0; r < s->nrails_used; r++)
		s->rail_used[r] = r;
}

static void name_rail0(struct rmig_session *s, bool peer)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if ((peer ? getpeername(s->ctl_fd, (struct sockaddr *)&ss, &len)
		  : getsockname(s->ctl_fd, (struct sockaddr *)&ss, &len)) == 0)
		rmig_sockaddr_str(&ss, false, s->rail[0].name, sizeof(s->rail[0].name));
	else
		snprintf(s->rail[0].name, sizeof(s->rail[0].name), "0");
}

int rmig_rails_dest_open(struct rmig_session *s, struct rmig_msg_hello_ack *ack)
{
	unsigned int want = s->rails_asked ? s->rails_asked : 1, w = 1;

	name_rail0(s, false);
	s->nrails = 1;
	/* a rail with no channel on it would only idle: at most one per channel */
	for (unsigned int r = 1; r < want && w < s->nchannels; r++) {
		struct rmig_rail *rl = &s->rail[w];
		char dev[64], why[200] = "";
		int rc;

		if (r != w) { /* a rail before it was left out: this one moves down */
			*rl = s->rail[r];
			memset(&s->rail[r], 0, sizeof(s->rail[r]));
		}
		s->nrails = w + 1; /* destroyed with the session from here on */
		rc = rmig_tp_create_rail(s, w);
		if (rc)
			return rc;
		/*
		 * A rail whose device is gone or whose link is down is not
		 * offered: the migration (or the resume of one that lost the
		 * rail) goes on through the others. Rail 0 is the control
		 * connection's own: it fails the migration as before.
		 */
		if (s->tp_ops->reach && s->tp_ops->reach(rl->tp, s->ctl_fd, dev, sizeof(dev), why,
							  sizeof(why))) {
			rmig_warn(&s->log, "rail %s: not offered: %s", rl->name, why);
			s->tp_ops->destroy(rl->tp);
			rl->tp = NULL;
			s->nrails = w;
			s->rails_down++;
			continue;
		}
		rc = s->tp_ops->listen(rl->tp, s->ctl_fd, rl->ep, &rl->ep_len);
		if (rc)
			return rmig_sess_err(s) ? rmig_sess_err(s) :
			       rmig_sess_fail(s, rc, "opening %s data channels on rail %s: %s",
					      s->tp_ops->name, rl->name, strerror(-rc));
		w++;
	}
	use_all(s);
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
	use_all(s);
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
		rmig_sockaddr_str(&rl->addr, false, rl->name, sizeof(rl->name));
		rl->ep_len = w->ep_len;
		memcpy(rl->ep, w->ep, w->ep_len);
		rc = rmig_tp_create_rail(s, r);
		if (!rc)
			s->nrails = r + 1;
	}
	if (!rc && s->nrails > 1)
		rmig_info(&s->log, "the destination offers %u rails", s->nrails);
	use_all(s);
	free(m);
	return rc;
}

/* The name at @p of a comma-separated list: its length in *@len; returns where the next begins. */
static const char *name_next(const char *p, size_t *len)
{
	*len = strcspn(p, ",");
	return p[*len] ? p + *len + 1 : p + *len;
}

/* Whether @dev is one of the comma-separated names of @list. */
static bool listed(const char *list, const char *dev)
{
	size_t n = strlen(dev), len;

	for (const char *p = list, *next; n && *p; p = next) {
		next = name_next(p, &len);
		if (len == n && !strncmp(p, dev, n))
			return true;
	}
	return false;
}

int rmig_rails_source_use(struct rmig_session *s)
{
	const char *want = s->opts.rails;
	char dev[RMIG_RAILS_MAX][64] = { { 0 } }, seen[512] = "";
	uint8_t buf[16];
	uint64_t mask = 0;
	int n;

	if (s->nrails < 2 && !*want)
		return 0;
	for (unsigned int r = 0; r < s->nrails; r++) {
		struct rmig_rail *rl = &s->rail[r];
		char why[200] = "";
		bool up;

		if (!r && !*want)
			continue; /* rail 0, no --rails: used; its connect says what it needs to */
		up = !s->tp_ops->reach || !s->tp_ops->reach(rl->tp, s->ctl_fd, dev[r], sizeof(dev[r]),
							     why, sizeof(why));
		if (!r) {
			/* one that cannot carry channels: its connect says why */
			if (*dev[0] && !listed(want, dev[0]) && s->nrails >= 2) {
				/* the control connection stays; the data goes through the rails asked for */
				rl->off = true;
				rmig_info(&s->log, "rail %s (the control connection's): no data "
						   "channels: its device %s is not among the rails asked "
						   "for (%s)",
					  rl->name, dev[0], want);
			}
			continue;
		}
		if (!up) {
			rl->off = true;
			s->rails_down++;
			rmig_warn(&s->log, "rail %s: left out: %s; its channels go through the other "
					   "rails", rl->name, why);
		} else if (*want && !listed(want, dev[r])) {
			rl->off = true;
			rmig_info(&s->log, "rail %s: left out: its device %s is not among the rails "
					   "asked for (%s)", rl->name, dev[r], want);
		}
	}
	if (*want) {
		for (unsigned int r = 0; r < s->nrails; r++) {
			size_t off = strlen(seen);
			char one[160];

			if (!*dev[r])
				continue;
			snprintf(one, sizeof(one), "%s%.63s through %.63s", off ? ", " : "",
				 s->rail[r].name, dev[r]);
			if (off + strlen(one) < sizeof(seen))
				memcpy(seen + off, one, strlen(one) + 1);
		}
		if (*dev[0] && !listed(want, dev[0]) && s->nrails < 2)
			return rmig_sess_fail(s, -EINVAL,
					      "rails: %s, the destination's only address, is reached "
					      "through %s, which the rails asked for (%s) leave out",
					      s->rail[0].name, dev[0], want);
		for (const char *p = want, *next; *p; p = next) {
			char name[64];
			bool hit = false;
			size_t len;

			next = name_next(p, &len);
			snprintf(name, sizeof(name), "%.*s", (int)len, p);
			/* a device whose link is down still reaches it: its connect says the rest */
			for (unsigned int r = 0; r < s->nrails && !hit; r++)
				hit = !strcmp(dev[r], name);
			if (!hit)
				return rmig_sess_fail(s, -EINVAL,
						      "rails: device %s reaches none of the destination's "
						      "addresses (%s)", name, *seen ? seen : "none has a device");
		}
	}
	if (s->nrails < 2)
		return 0;
	s->nrails_used = 0;
	for (unsigned int r = 0; r < s->nrails; r++) {
		if (s->rail[r].off)
			continue;
		mask |= 1ull << r;
		s->rail_used[s->nrails_used++] = r;
	}
	if (!mask) /* rail 0 left out by --rails, and each rail asked for down */
		return rmig_sess_fail(s, -ENETUNREACH,
				      "rails: none of the rails asked for (%s) can carry channels "
				      "(%s)", want, *seen ? seen : "none has a device");
	n = rmig_u64_encode(mask, buf, sizeof(buf));
	return n < 0 ? rmig_sess_fail(s, n, "encoding the rails used: %s", strerror(-n))
		     : rmig_ctl_send(s, RMIG_MSG_RAILS_USE, buf, (uint32_t)n);
}

int rmig_rails_dest_use(struct rmig_session *s, uint8_t *buf)
{
	struct rmig_ctl_hdr h;
	uint64_t mask;
	int rc;

	if (s->nrails < 2)
		return 0;
	rc = rmig_ctl_expect(s, RMIG_MSG_RAILS_USE, &h, buf);
	if (rc)
		return rc;
	if (rmig_u64_decode(buf, h.len, &mask) || !mask || (mask >> s->nrails))
		return rmig_sess_fail(s, -EBADMSG,
				      "control connection: bad RAILS_USE (the rails the source uses): "
				      "none, or a rail of the %u offered that does not exist",
				      s->nrails);
	s->nrails_used = 0;
	for (unsigned int r = 0; r < s->nrails; r++) {
		if (mask & (1ull << r)) {
			s->rail_used[s->nrails_used++] = r;
		} else {
			s->rails_down++;
			rmig_warn(&s->log, "rail %s: the source left it out (it cannot reach it, "
					   "or its device is not among the source's --rails)",
				  s->rail[r].name);
		}
	}
	return 0;
}

void rmig_rails_shutdown(struct rmig_session *s)
{
	for (unsigned int r = 1; r < s->nrails; r++)
		if (s->rail[r].tp)
			rmig_rail_ops(s, r)->shutdown(s->rail[r].tp);
}

void rmig_rails_destroy(struct rmig_session *s)
{
	for (unsigned int r = 1; r < s->nrails; r++) {
		if (s->rail[r].tp)
			rmig_rail_ops(s, r)->destroy(s->rail[r].tp);
		s->rail[r].tp = NULL;
	}
}
