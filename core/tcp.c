/* SPDX-License-Identifier: MIT */
/*
 * tcp.c - the socket backend of the transport SPI. An RDMA WRITE becomes a
 * 32-byte frame header (target, offset, length) plus the payload, sent with
 * one sendmsg from source memory; the receiver asks the core where the bytes
 * go (checked against the block) and reads them straight into destination
 * memory, with no bounce buffer. Writes complete when sendmsg returns, so
 * flush has nothing to wait for; TCP's in-order delivery orders the sync
 * marker after every earlier write of the channel.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "place.h"
#include "sock.h"
#include "tls.h"
#include "transport.h"
#include "wire.h"

#define TCP_SOCKBUF (4 << 20)

/*
 * Source: frames are gathered and go out in one sendmsg once they hold
 * TCP_BATCH_BYTES of payload, fill TCP_BATCH_IOV entries, or the core
 * pushes (the end of each job, a flush, a sync marker). An image of small
 * extents (zero and data pages alternating) then costs a system call per
 * batch, not one per page; a large extent still goes out at once.
 */
#define TCP_BATCH_IOV 64
#define TCP_BATCH_BYTES (256u << 10)

/*
 * Connections on the data listener waiting for their first byte: a channel
 * says its hello at once, a stranger may never say anything. Past this many
 * the oldest is dropped as a stray.
 */
#define TCP_PEND_MAX (2 * RMIG_CHANNELS_MAX)
/* Connections whose TLS handshake and hello are read at once, each on a thread of its own. */
#define TCP_HELLO_MAX 16

/* What reading one connection's hello came to (accept_one()). */
struct hello_out {
	struct rmig_tp_chan *ch;
	int rc;
	char why[160];
};

struct tcp_chan {
	struct rmig_tp_chan base;
	int fd;
	struct rmig_tls *tls; /* RMIG_F_TLS; NULL: plain */
	/* source: the gathered frames; the thread that posts on the channel only */
	struct iovec bv[TCP_BATCH_IOV];
	uint8_t bhdr[TCP_BATCH_IOV][RMIG_FRAME_HDR_LEN];
	int bn, bh;      /* entries of bv, headers of bhdr in use */
	size_t bbytes;   /* payload bytes gathered */
	uint8_t blast;   /* the type of the last frame gathered, for errors */
	/* destination: read ahead of the parser (plain TCP; TLS buffers its own) */
	struct rmig_tcp_rd rd;
};

struct tcp_tp {
	struct rmig_tp base;
	int lfd;
	int ctl_fd; /* destination: the control connection, watched while accepting */
	/* protected by lock: fds that shutdown() must wake: the data listener and every channel */
	pthread_mutex_t lock;
	bool shut;
	unsigned int nfds;
	int fds[RMIG_CHANNELS_MAX + 1];
	/* destination: connections accepted on the data listener, their hello not yet read */
	unsigned int npend;
	int pend[TCP_PEND_MAX];
	/*
	 * Destination, under lock: hellos being read on threads (hello_main),
	 * their connections (for shutdown), and the outcomes not yet taken by
	 * tcp_accept(), which @evfd wakes (-1: not made yet).
	 */
	int evfd;
	unsigned int nhello, nout;
	int hello_fd[TCP_HELLO_MAX];
	struct hello_out out[TCP_HELLO_MAX];
	pthread_cond_t hello_done;
};

static struct tcp_tp *tcp_tp(struct rmig_tp *tp)
{
	return container_of(tp, struct tcp_tp, base);
}

static struct tcp_chan *tcp_chan(struct rmig_tp_chan *ch)
{
	return container_of(ch, struct tcp_chan, base);
}

static int tcp_create(const struct rmig_tp_params *p, struct rmig_tp **tp_p)
{
	struct tcp_tp *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->base.ops = &rmig_tcp_ops;
	t->base.p = *p;
	t->lfd = -1;
	t->ctl_fd = -1;
	t->evfd = -1;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->hello_done, NULL);
	*tp_p = &t->base;
	return 0;
}

static void tcp_chan_close(struct rmig_tp_chan *ch);

static void tcp_destroy(struct rmig_tp *tp)
{
	struct tcp_tp *t;

	if (!tp)
		return;
	t = tcp_tp(tp);
	/* hellos still being read: cut short, and waited for (they use @t) */
	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < t->nhello; i++)
		shutdown(t->hello_fd[i], SHUT_RDWR);
	while (t->nhello)
		pthread_cond_wait(&t->hello_done, &t->lock);
	pthread_mutex_unlock(&t->lock);
	for (unsigned int i = 0; i < t->nout; i++)
		tcp_chan_close(t->out[i].ch); /* channels accepted, never taken */
	if (t->evfd >= 0)
		close(t->evfd);
	if (t->lfd >= 0)
		close(t->lfd);
	for (unsigned int i = 0; i < t->npend; i++)
		close(t->pend[i]);
	pthread_cond_destroy(&t->hello_done);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Remember @fd for shutdown(); if shutdown already ran, shut it now. */
static int track_fd(struct tcp_tp *t, int fd)
{
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	if (t->shut) {
		rc = -ECANCELED;
	} else if (t->nfds == sizeof(t->fds) / sizeof(t->fds[0])) {
		rc = -ENOSPC;
	} else {
		t->fds[t->nfds++] = fd;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static void untrack_fd(struct tcp_tp *t, int fd)
{
	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < t->nfds; i++) {
		if (t->fds[i] == fd) {
			t->fds[i] = t->fds[--t->nfds];
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

int rmig_tp_addr(const struct rmig_tp_params *p, int ctl_fd, bool peer, uint16_t port,
		 struct sockaddr_storage *ss, socklen_t *len_p)
{
	socklen_t len = sizeof(*ss);
	int rc = 0;

	if (p->rail_addr_len) {
		memcpy(ss, &p->rail_addr, p->rail_addr_len);
		len = p->rail_addr_len;
		if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
			return -EAFNOSUPPORT;
	} else {
		if ((peer ? getpeername(ctl_fd, (struct sockaddr *)ss, &len)
			  : getsockname(ctl_fd, (struct sockaddr *)ss, &len)) < 0)
			return -errno;
		rc = rmig_sockaddr_set_port(ss, 0);
	}
	if (!rc && port)
		rc = rmig_sockaddr_set_port(ss, port);
	*len_p = len;
	return rc;
}

/*
 * Source: a route to the rail's address (a UDP socket's connect sends
 * nothing); destination: the address is still this host's.
 */
static int tcp_reach(struct rmig_tp *tp, int ctl_fd, char *dev, size_t dev_len, char *why,
		     size_t why_len)
{
	const struct rmig_tp_params *p = &tp->p;
	bool src = p->role == RMIG_ROLE_SOURCE;
	struct sockaddr_storage ss;
	char host[64] = "?";
	socklen_t len;
	int fd, rc;

	*dev = '\0';
	rc = rmig_tp_addr(p, ctl_fd, src, src ? 9 : 0, &ss, &len);
	if (rc) {
		snprintf(why, why_len, "no address: %s", strerror(-rc));
		return rc;
	}
	rmig_sockaddr_str(&ss, false, host, sizeof(host));
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		rc = -errno;
	else if (src ? connect(fd, (struct sockaddr *)&ss, len) : bind(fd, (struct sockaddr *)&ss, len))
		rc = -errno;
	if (!rc && rmig_sock_ifname(fd, dev, dev_len))
		*dev = '\0'; /* the interface of the route's local address, where found */
	if (fd >= 0)
		close(fd);
	if (rc)
		snprintf(why, why_len, "%s %s: %s", src ? "no route to" : "cannot bind", host,
			 strerror(-rc));
	return rc;
}

static int tcp_listen(struct rmig_tp *tp, int ctl_fd, uint8_t *ep, uint16_t *ep_len_p)
{
	struct tcp_tp *t = tcp_tp(tp);
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, port;

	port = rmig_tp_addr(&tp->p, ctl_fd, false, 0, &ss, &len);
	if (port)
		return port;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, RMIG_CHANNELS_MAX) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	port = rmig_sock_local_port(fd);
	if (port < 0) {
		close(fd);
		return port;
	}
	t->lfd = fd;
	t->ctl_fd = ctl_fd;
	if (track_fd(t, fd)) {
		t->lfd = -1;
		close(fd);
		return -ECANCELED;
	}
	rmig_put_be16(ep, (uint16_t)port);
	*ep_len_p = 2;
	return 0;
}

/*
 * Read exactly @len bytes, in plain text or through TLS. Plain sockets
 * carry SO_RCVTIMEO = the timeout, so one blocking recv(MSG_WAITALL) per
 * frame part is the whole cost in the common case, and a call that returns
 * short (the peer paused) is checked against the frame's deadline.
 * @started: bytes of this frame already arrived (false: the channel may idle
 * as long as it likes before the first one). *deadline_p is set when the
 * first byte arrives, if it is 0.
 */
/*
 * Plain socket: read at least @min and at most @max bytes into @buf (*got_p
 * says how many). It waits as long as it takes for the first byte; once
 * bytes have come (@started: before this call), the rest of the frame must
 * beat *deadline_p, set at the first byte to @timeout_ms from then.
 */
static int sock_read(int fd, uint8_t *buf, size_t min, size_t max, bool started,
		     unsigned int timeout_ms, uint64_t *deadline_p, size_t *got_p)
{
	size_t got = 0;

	while (got < min) {
		ssize_t n = recv(fd, buf + got, max - got, min == max ? MSG_WAITALL : 0);

		if (n > 0) {
			got += (size_t)n;
			started = true;
			if (!*deadline_p)
				*deadline_p = rmig_deadline_after(timeout_ms);
		} else if (n == 0) {
			return -ECONNRESET;
		} else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
			return -errno;
		}
		if (got >= min)
			break;
		/* an idle channel waits on; a frame under way must beat its deadline */
		if (started && *deadline_p && rmig_mono_ns() >= *deadline_p)
			return -ETIMEDOUT;
	}
	*got_p = got;
	return 0;
}

static int stream_read(int fd, struct rmig_tls *tls, void *buf, size_t len, bool started,
		       unsigned int timeout_ms, uint64_t *deadline_p)
{
	size_t got;

	if (tls) {
		int rc = 0;

		if (!started && !rmig_tls_pending(tls))
			rc = rmig_sock_wait(fd, POLLIN, -1, 0);
		if (!rc && !*deadline_p)
			*deadline_p = rmig_deadline_after(timeout_ms);
		return rc ? rc : rmig_tls_read_full(tls, buf, len, -1, *deadline_p);
	}
	return sock_read(fd, buf, len, len, started, timeout_ms, deadline_p, &got);
}

/*
 * The TLS handshake of a new data channel, when the session asked for TLS,
 * within @timeout_ms. @what: the failure is reported under that name; NULL:
 * it is left to the caller, in @why.
 */
static int chan_tls(const struct rmig_tp_params *p, int fd, const char *what,
		    unsigned int timeout_ms, struct rmig_tls **tls_p, char *why, size_t why_len)
{
	int rc;

	*tls_p = NULL;
	if (!p->tls)
		return 0;
	rc = rmig_tls_start(p->tls, fd, -1, timeout_ms, tls_p, why, why_len);
	if (rc && what)
		p->up->fail(p->up->arg, rc, "%s: TLS handshake: %s", what, why);
	return rc;
}

static int chan_new(struct tcp_tp *t, int fd, unsigned int idx, struct rmig_tp_chan **ch_p)
{
	struct tcp_chan *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	rc = track_fd(t, fd);
	if (rc) {
		free(c);
		return rc;
	}
	c->base.tp = &t->base;
	c->base.idx = idx;
	c->fd = fd;
	*ch_p = &c->base;
	return 0;
}

/*
 * One connection on the data listener that has said something (or hung
 * up): its TLS handshake and hello, within @limit. 0 and the channel; a
 * positive 1 for a stray (not a channel of this session: @why says what it
 * sent, or why its handshake failed); or a negative errno. The caller
 * closes @fd when it is no channel.
 */
static int accept_one(struct tcp_tp *t, int fd, uint64_t limit, struct rmig_tp_chan **ch_p,
		      char *why, size_t why_len)
{
	const struct rmig_tp_params *p = &t->base.p;
	uint64_t now = rmig_mono_ns(), deadline = limit;
	unsigned int ms = limit > now ? (unsigned int)((limit - now + 999999) / 1000000) : 1;
	uint8_t hdr[RMIG_FRAME_HDR_LEN];
	struct rmig_tls *tls = NULL;
	struct rmig_frame f = { 0 };
	char tls_why[120];
	int rc;

	rmig_sock_tune(fd, 1, TCP_SOCKBUF); /* a marker must not wait for a delayed ACK */
	/* the hello within @limit; then each receive call within the timeout (tcp_progress) */
	rc = rmig_sock_set_timeouts(fd, ms, ms);
	if (!rc && chan_tls(p, fd, NULL, ms, &tls, tls_why, sizeof(tls_why))) {
		/* a stranger's connection can fail a handshake too: a stray, not the end */
		snprintf(why, why_len, "TLS handshake: %s", tls_why);
		rc = 1;
		goto drop;
	}
	if (!rc)
		rc = stream_read(fd, tls, hdr, sizeof(hdr), true, ms, &deadline);
	if (rc) {
		snprintf(why, why_len, "no data channel hello: %s", rmig_strerror(rc));
		rc = 1;
	} else if (rmig_frame_decode(hdr, &f)) {
		snprintf(why, why_len, "not an rmig data channel (it began with %02x %02x %02x %02x)",
			 hdr[0], hdr[1], hdr[2], hdr[3]);
		rc = 1;
	} else if (f.type != RMIG_FRAME_CHAN_HELLO || f.len != 0 ||
		   f.offset != RMIG_PROTO_VERSION || f.arg != p->session_id ||
		   f.id >= p->nchannels) {
		snprintf(why, why_len, "bad tcp data channel hello (type %u, channel %u, version %llu)",
			 f.type, f.id, (unsigned long long)f.offset);
		rc = 1;
	}
	if (!rc)
		rc = rmig_sock_set_timeouts(fd, p->timeout_ms, p->timeout_ms);
	if (!rc)
		rc = chan_new(t, fd, f.id, ch_p);
	if (!rc) {
		tcp_chan(*ch_p)->tls = tls;
		return 0;
	}
drop:
	rmig_tls_free(tls);
	return rc;
}

struct hello_arg {
	struct tcp_tp *t;
	int fd;
	uint64_t limit;
};

/*
 * What reading @fd's hello came to, @o: queued for tcp_accept(), which
 * @evfd wakes. @fd leaves the list of hellos under way (where a thread read
 * it) before it is closed for a stray, so that no shutdown() reaches a
 * number reused meanwhile. Everything under t->lock: tcp_destroy() waits
 * for the threads.
 */
static void hello_done(struct tcp_tp *t, int fd, const struct hello_out *o)
{
	uint64_t one = 1;

	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < t->nhello; i++) {
		if (t->hello_fd[i] == fd) {
			t->hello_fd[i] = t->hello_fd[--t->nhello];
			break;
		}
	}
	if (o->rc)
		close(fd);
	t->out[t->nout++] = *o; /* nhello + nout <= TCP_HELLO_MAX (hello_room()) */
	if (write(t->evfd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow: tcp_accept() wakes anyway */
	}
	pthread_cond_broadcast(&t->hello_done);
	pthread_mutex_unlock(&t->lock);
}

/* @fd's hello: the channel, a stray or an error, into t->out (hello_done()). */
static void hello_read(struct tcp_tp *t, int fd, uint64_t limit)
{
	struct hello_out o = { .ch = NULL };

	o.rc = accept_one(t, fd, limit, &o.ch, o.why, sizeof(o.why));
	hello_done(t, fd, &o);
}

/* A connection's hello on a thread of its own, so that one that stalls halfway holds up no other. */
static void *hello_main(void *argp)
{
	struct hello_arg *a = argp;

	hello_read(a->t, a->fd, a->limit);
	free(a);
	return NULL;
}

/* Read @fd's hello on a thread of its own; 0, or -errno (then nothing was started). */
static int hello_start(struct tcp_tp *t, int fd, uint64_t limit)
{
	struct hello_arg *a = malloc(sizeof(*a));
	pthread_attr_t attr;
	pthread_t th;
	int rc;

	if (!a)
		return -ENOMEM;
	*a = (struct hello_arg){ .t = t, .fd = fd, .limit = limit };
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&t->lock);
	t->hello_fd[t->nhello++] = fd;
	rc = -pthread_create(&th, &attr, hello_main, a);
	if (rc)
		t->nhello--;
	pthread_mutex_unlock(&t->lock);
	pthread_attr_destroy(&attr);
	if (rc)
		free(a);
	return rc;
}

/* A channel's hello and handshake get this long, at most the timeout, at least a second. */
static uint64_t hello_limit(const struct rmig_tp_params *p, uint64_t deadline)
{
	uint64_t ms = p->timeout_ms / 4 < 1000 ? 1000 : p->timeout_ms / 4;
	uint64_t limit = rmig_mono_ns() + ms * 1000000ull;

	return deadline && deadline < limit ? deadline : limit;
}

static void pend_drop(struct tcp_tp *t, unsigned int i)
{
	close(t->pend[i]);
	t->pend[i] = t->pend[--t->npend];
}

/* Whether one more hello may be read: each needs a slot for its outcome. */
static bool hello_room(struct tcp_tp *t)
{
	bool room;

	pthread_mutex_lock(&t->lock);
	room = t->nhello + t->nout < TCP_HELLO_MAX;
	pthread_mutex_unlock(&t->lock);
	return room;
}

/* A stray refused, @why: counted and logged; the wait goes on. */
static void stray(const struct rmig_tp_params *p, unsigned int *nstray, const char *why)
{
	(*nstray)++;
	rmig_warn(p->log, "tcp data listener: refused a stray connection: %s", why);
}

/*
 * The next data channel, within the timeout. Every connection on the data
 * listener waits in t->pend until it says something: a channel sends its
 * hello at once, so a stranger that connects and stays silent holds up
 * nobody. Then its TLS handshake and hello are read on a thread of their
 * own (up to TCP_HELLO_MAX at once), so one that starts and stalls holds up
 * nobody either; one that hangs up, sends something else or fails the
 * handshake is refused, logged, and the wait goes on: a stranger cannot
 * end the migration. Meanwhile the control connection is watched: a source
 * that hangs up is reported at once (-ECONNRESET), not after the whole
 * timeout; one that said something before it hung up (its ERROR) gets a
 * second for the session to read it (rmig_accept() watches the control
 * connection), and its shutdown ends this wait, with the source's cause.
 */
#define HUP_GRACE_NS 1000000000ull
static int tcp_accept(struct rmig_tp *tp, struct rmig_tp_chan **ch_p)
{
	struct tcp_tp *t = tcp_tp(tp);
	const struct rmig_tp_params *p = &tp->p;
	uint64_t deadline = rmig_deadline_after(p->timeout_ms);
	char why[160] = "", strays[200] = "";
	unsigned int nstray = 0;
	bool hup = false;
	int rc = 0;

	if (t->evfd < 0) {
		t->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (t->evfd < 0)
			return p->up->fail(p->up->arg, -errno, "accepting a tcp data channel: %s",
					   rmig_strerror(-errno));
	}
	for (;;) {
		struct pollfd pfd[3 + TCP_PEND_MAX];
		unsigned int nfd = 0, first_pend, ctl = 0;
		struct hello_out o = { .rc = 1 };
		uint64_t now = rmig_mono_ns();
		bool have = false, room;
		int n, ms = -1, unread = 0, fd;

		/* a hello read: the channel, or a stray */
		pthread_mutex_lock(&t->lock);
		if (t->nout) {
			o = t->out[0];
			t->out[0] = t->out[--t->nout];
			have = true;
		}
		pthread_mutex_unlock(&t->lock);
		if (have && !o.rc) {
			*ch_p = o.ch;
			return 0;
		}
		if (have && o.rc < 0) {
			rc = o.rc;
			break;
		}
		if (have) {
			snprintf(why, sizeof(why), "%s", o.why);
			stray(p, &nstray, why);
			continue;
		}
		room = hello_room(t);
		if (deadline && now >= deadline) {
			rc = hup ? -ECONNRESET : -ETIMEDOUT;
			break;
		}
		if (deadline)
			ms = (int)((deadline - now + 999999) / 1000000);
		pfd[nfd++] = (struct pollfd){ .fd = t->lfd, .events = POLLIN };
		pfd[nfd++] = (struct pollfd){ .fd = t->evfd, .events = POLLIN };
		if (t->ctl_fd >= 0 && !hup) {
			ctl = nfd;
			pfd[nfd++] = (struct pollfd){ .fd = t->ctl_fd, .events = POLLRDHUP };
		}
		first_pend = nfd;
		for (unsigned int i = 0; room && i < t->npend; i++) /* full: they wait, unpolled */
			pfd[nfd++] = (struct pollfd){ .fd = t->pend[i], .events = POLLIN };
		n = poll(pfd, nfd, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			continue; /* the deadline, above */
		if (pfd[1].revents) {
			uint64_t v;

			if (read(t->evfd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another read took it; the outcomes are under the lock */
			}
		}
		/* connections that spoke (or hung up): their hellos, each on its thread */
		for (unsigned int i = nfd; i-- > first_pend;) {
			unsigned int k = i - first_pend;
			uint64_t limit;

			if (!pfd[i].revents)
				continue;
			if (!hello_room(t))
				continue; /* it waits in t->pend for its turn */
			fd = t->pend[k];
			t->pend[k] = t->pend[--t->npend];
			limit = hello_limit(p, deadline);
			if (hello_start(t, fd, limit))
				hello_read(t, fd, limit); /* no thread: read it here */
		}
		if (pfd[0].revents) {
			rc = rmig_sock_accept(t->lfd, 1, &fd);
			if (rc == -ETIMEDOUT) { /* the client went away already */
				rc = 0;
				continue;
			}
			if (rc)
				break;
			if (t->npend == TCP_PEND_MAX) {
				snprintf(why, sizeof(why), "%u connections waiting, silent",
					 TCP_PEND_MAX);
				stray(p, &nstray, why);
				pend_drop(t, 0);
			}
			t->pend[t->npend++] = fd;
		}
		if (ctl && (pfd[ctl].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			if (ioctl(t->ctl_fd, FIONREAD, &unread) || unread <= 0) {
				rc = -ECONNRESET;
				break;
			}
			hup = true;
			if (!deadline || deadline > now + HUP_GRACE_NS)
				deadline = now + HUP_GRACE_NS;
		}
	}
	if (nstray)
		snprintf(strays, sizeof(strays), " (refused %u stray connection%s, the last: %s)",
			 nstray, nstray == 1 ? "" : "s", why);
	if (rc == -ECONNRESET)
		return p->up->fail(p->up->arg, rc,
				   "the source closed the control connection before opening every "
				   "data channel%s",
				   strays);
	return p->up->fail(p->up->arg, rc, "accepting a tcp data channel: %s%s", rmig_strerror(rc),
			   strays);
}

static int tcp_connect(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
		       unsigned int idx, struct rmig_tp_chan **ch_p)
{
	struct tcp_tp *t = tcp_tp(tp);
	const struct rmig_tp_params *p = &tp->p;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	uint8_t hdr[RMIG_FRAME_HDR_LEN];
	struct rmig_frame f = {
		.type = RMIG_FRAME_CHAN_HELLO,
		.id = idx,
		.offset = RMIG_PROTO_VERSION,
		.arg = p->session_id,
	};
	struct rmig_tls *tls = NULL;
	char what[64], why[256];
	uint16_t port;
	int fd, rc;

	if (ep_len != 2)
		return p->up->fail(p->up->arg, -EPROTO, "bad tcp endpoint (%u bytes)", ep_len);
	port = rmig_get_be16(ep);
	rc = port ? rmig_tp_addr(p, ctl_fd, true, port, &ss, &len) : -EPROTO;
	if (rc)
		return p->up->fail(p->up->arg, rc, "tcp data channel %u: no address to connect to: %s",
				   idx, rmig_strerror(rc));
	rc = rmig_sock_connect_addr((struct sockaddr *)&ss, len, p->timeout_ms, &fd);
	if (rc)
		return p->up->fail(p->up->arg, rc, "connecting tcp data channel %u (port %u): %s",
				   idx, port, rmig_strerror(rc));
	rmig_sock_tune(fd, 1, TCP_SOCKBUF); /* a marker must not wait for a delayed ACK */
	rc = rmig_sock_set_timeouts(fd, p->timeout_ms, p->timeout_ms);
	snprintf(what, sizeof(what), "tcp data channel %u", idx);
	if (!rc)
		rc = chan_tls(p, fd, what, p->timeout_ms, &tls, why, sizeof(why));
	rmig_frame_encode(&f, hdr);
	if (!rc && tls) {
		struct iovec v = { hdr, sizeof(hdr) };

		rc = rmig_tls_writev_full(tls, &v, 1, -1, p->timeout_ms);
	} else if (!rc) {
		rc = rmig_sock_write_full(fd, hdr, sizeof(hdr));
	}
	if (!rc)
		rc = chan_new(t, fd, idx, ch_p);
	if (rc) {
		rmig_tls_free(tls);
		close(fd);
		return rc;
	}
	tcp_chan(*ch_p)->tls = tls;
	return 0;
}

static int tcp_reg(struct rmig_tp *tp, unsigned int block, void *addr, uint64_t len,
		   uint8_t *desc, uint16_t *desc_len_p)
{
	(void)tp, (void)block, (void)addr, (void)len, (void)desc;
	*desc_len_p = 0; /* the receiver reads into memory itself: nothing to expose */
	return 0;
}

static int tcp_set_remote(struct rmig_tp *tp, unsigned int block, uint64_t len,
			  const uint8_t *desc, uint16_t desc_len)
{
	(void)block, (void)len, (void)desc;
	if (desc_len != 0)
		return tp->p.up->fail(tp->p.up->arg, -EBADMSG,
				      "unexpected registration descriptor on tcp");
	return 0;
}

/* Send every gathered frame. */
static int tcp_push_chan(struct tcp_chan *c)
{
	int rc;

	if (!c->bn)
		return 0;
	if (c->tls)
		rc = rmig_tls_writev_full(c->tls, c->bv, c->bn, -1, c->base.tp->p.timeout_ms);
	else
		rc = rmig_sock_writev_full(c->fd, c->bv, c->bn);
	c->bn = c->bh = 0;
	c->bbytes = 0;
	if (rc) {
		const struct rmig_tp_params *p = &c->base.tp->p;

		return p->up->fail(p->up->arg, rc, "tcp data channel %u: sending %s: %s",
				   c->base.idx, rmig_frame_name(c->blast), rmig_strerror(rc));
	}
	return 0;
}

/* Gather one frame; send the batch once it is full or holds enough payload. */
static int send_frame(struct tcp_chan *c, const struct rmig_frame *f, const struct iovec *iov,
		      int iovcnt)
{
	int rc = 0;

	if (iovcnt > TCP_BATCH_IOV - 1)
		return -EINVAL;
	if (c->bn + 1 + iovcnt > TCP_BATCH_IOV)
		rc = tcp_push_chan(c);
	if (rc)
		return rc;
	rmig_frame_encode(f, c->bhdr[c->bh]);
	c->bv[c->bn].iov_base = c->bhdr[c->bh];
	c->bv[c->bn].iov_len = RMIG_FRAME_HDR_LEN;
	c->bn++;
	c->bh++;
	for (int i = 0; i < iovcnt; i++) {
		c->bv[c->bn++] = iov[i];
		c->bbytes += iov[i].iov_len;
	}
	c->blast = f->type;
	return c->bbytes >= TCP_BATCH_BYTES ? tcp_push_chan(c) : 0;
}

static int tcp_write(struct rmig_tp_chan *ch, const struct rmig_target *t, const struct iovec *iov,
		     int iovcnt)
{
	struct rmig_frame f = {
		.type = t->kind == RMIG_TGT_RAM ? RMIG_FRAME_WRITE_RAM : RMIG_FRAME_WRITE_STATE,
		.id = t->id,
		.offset = t->offset,
		.arg = t->total,
	};
	uint64_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len > UINT32_MAX)
		return -EINVAL;
	f.len = (uint32_t)len;
	return send_frame(tcp_chan(ch), &f, iov, iovcnt);
}

static int tcp_zero(struct rmig_tp_chan *ch, const struct rmig_target *t, uint64_t len)
{
	struct rmig_frame f = {
		.type = RMIG_FRAME_ZERO_RAM,
		.id = t->id,
		.offset = t->offset,
		.len = (uint32_t)len,
	};

	if (len > UINT32_MAX || t->kind != RMIG_TGT_RAM)
		return -EINVAL;
	return send_frame(tcp_chan(ch), &f, NULL, 0);
}

static int tcp_push(struct rmig_tp_chan *ch)
{
	return tcp_push_chan(tcp_chan(ch));
}

static int tcp_flush(struct rmig_tp_chan *ch)
{
	/* once sendmsg returned, the kernel owns the bytes */
	return tcp_push_chan(tcp_chan(ch));
}

static int tcp_marker(struct rmig_tp_chan *ch, uint64_t id)
{
	struct rmig_frame f = { .type = RMIG_FRAME_SYNC, .arg = id };
	int rc = send_frame(tcp_chan(ch), &f, NULL, 0);

	return rc ? rc : tcp_push_chan(tcp_chan(ch));
}

static bool tcp_is_shut(struct tcp_tp *t)
{
	bool shut;

	pthread_mutex_lock(&t->lock);
	shut = t->shut;
	pthread_mutex_unlock(&t->lock);
	return shut;
}

/* Up to @len bytes already read ahead, into @dst; returns how many. */
static size_t rd_take(struct rmig_tcp_rd *rd, void *dst, size_t len)
{
	size_t n = rd->tail - rd->head;

	if (n > len)
		n = len;
	memcpy(dst, rd->buf + rd->head, n);
	rd->head += n;
	if (rd->head == rd->tail)
		rd->head = rd->tail = 0;
	return n;
}

/*
 * Read ahead until at least @len (<= RMIG_TCP_READAHEAD) bytes are
 * buffered: each recv takes whatever has arrived, up to the buffer's end.
 * The deadline rule is stream_read()'s.
 */
static int rd_fill(int fd, struct rmig_tcp_rd *rd, size_t len, unsigned int timeout_ms,
		   uint64_t *deadline_p)
{
	size_t have = rd->tail - rd->head, got;
	int rc;

	if (have >= len)
		return 0;
	if (sizeof(rd->buf) - rd->head < len) {
		memmove(rd->buf, rd->buf + rd->head, have);
		rd->tail = have;
		rd->head = 0;
	}
	rc = sock_read(fd, rd->buf + rd->tail, len - have, sizeof(rd->buf) - rd->tail, have > 0,
		       timeout_ms, deadline_p, &got);
	if (!rc)
		rd->tail += got;
	return rc;
}

int rmig_tcp_recv_frame(int fd, struct rmig_tls *tls, struct rmig_tcp_rd *rd, unsigned int idx,
			const struct rmig_tp_upcalls *up, unsigned int timeout_ms, int *io_err_p)
{
	uint8_t hdr[RMIG_FRAME_HDR_LEN];
	struct rmig_target tgt;
	struct rmig_frame f;
	uint64_t deadline;
	size_t got;
	void *dst;
	int rc;

	*io_err_p = 0;
	/* Once a frame has begun, all of it must arrive within the timeout. */
	deadline = 0;
	if (tls)
		rd = NULL;
	if (rd) {
		rc = rd_fill(fd, rd, sizeof(hdr), timeout_ms, &deadline);
		if (!rc)
			rd_take(rd, hdr, sizeof(hdr));
	} else {
		rc = stream_read(fd, tls, hdr, sizeof(hdr), false, timeout_ms, &deadline);
	}
	if (rc)
		return *io_err_p = rc;
	if (rmig_frame_decode(hdr, &f))
		return up->fail(up->arg, -EBADMSG, "tcp data channel %u: malformed frame header",
				idx);
	switch (f.type) {
	case RMIG_FRAME_WRITE_RAM:
	case RMIG_FRAME_WRITE_STATE:
	case RMIG_FRAME_ZERO_RAM:
		tgt.kind = f.type == RMIG_FRAME_WRITE_STATE ? RMIG_TGT_STATE : RMIG_TGT_RAM;
		tgt.id = f.id;
		tgt.offset = f.offset;
		tgt.total = f.arg;
		if (f.type == RMIG_FRAME_ZERO_RAM)
			return up->zero(up->arg, idx, &tgt, f.len);
		/* The core checks the range against the block or blob before any byte lands. */
		rc = up->place(up->arg, idx, &tgt, f.len, &dst);
		if (rc)
			return rc;
		got = rd ? rd_take(rd, dst, f.len) : 0;
		rc = got < f.len ? stream_read(fd, tls, (uint8_t *)dst + got, f.len - got, true,
					      timeout_ms, &deadline)
				 : 0;
		if (rc)
			return *io_err_p = rc;
		return up->placed(up->arg, idx, &tgt, f.len);
	case RMIG_FRAME_SYNC:
		return up->sync(up->arg, idx, f.arg);
	default:
		return up->fail(up->arg, -EBADMSG, "tcp data channel %u: unexpected %s frame", idx,
				rmig_frame_name(f.type));
	}
}

static int tcp_progress(struct rmig_tp_chan *ch)
{
	struct tcp_chan *c = tcp_chan(ch);
	struct tcp_tp *t = tcp_tp(ch->tp);
	const struct rmig_tp_upcalls *up = ch->tp->p.up;
	unsigned int tmo = ch->tp->p.timeout_ms;
	int io_err, rc = rmig_tcp_recv_frame(c->fd, c->tls, &c->rd, ch->idx, up, tmo, &io_err);

	if (!io_err)
		return rc;
	if (tcp_is_shut(t))
		return -ECANCELED;
	if (io_err == -ETIMEDOUT)
		return up->fail(up->arg, io_err,
				"tcp data channel %u: stalled: a frame did not arrive whole within "
				"%u ms",
				ch->idx, tmo);
	return up->fail(up->arg, io_err, "tcp data channel %u: %s", ch->idx,
			io_err == -ECONNRESET ? "peer closed the connection mid-transfer" :
						rmig_strerror(io_err));
}

static void tcp_shutdown(struct rmig_tp *tp)
{
	struct tcp_tp *t = tcp_tp(tp);

	pthread_mutex_lock(&t->lock);
	t->shut = true;
	for (unsigned int i = 0; i < t->nfds; i++)
		shutdown(t->fds[i], SHUT_RDWR);
	for (unsigned int i = 0; i < t->nhello; i++)
		shutdown(t->hello_fd[i], SHUT_RDWR);
	pthread_mutex_unlock(&t->lock);
}

static void tcp_chan_close(struct rmig_tp_chan *ch)
{
	struct tcp_chan *c;

	if (!ch)
		return;
	c = tcp_chan(ch);
	untrack_fd(tcp_tp(ch->tp), c->fd);
	rmig_tls_free(c->tls);
	close(c->fd);
	free(c);
}

static int tcp_locate(struct rmig_tp_chan *ch, char *name, size_t len)
{
	struct tcp_chan *c = container_of(ch, struct tcp_chan, base);

	return rmig_sock_ifname(c->fd, name, len) ? RMIG_DEV_NONE : RMIG_DEV_NET;
}

const struct rmig_transport_ops rmig_tcp_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "tcp",
	.kind = RMIG_TRANSPORT_TCP,
	.caps = RMIG_TP_CAP_TLS,
	.create = tcp_create,
	.destroy = tcp_destroy,
	.listen = tcp_listen,
	.accept = tcp_accept,
	.connect = tcp_connect,
	.reg = tcp_reg,
	.set_remote = tcp_set_remote,
	.write = tcp_write,
	.zero = tcp_zero,
	.flush = tcp_flush,
	.marker = tcp_marker,
	.push = tcp_push,
	.progress = tcp_progress,
	.shutdown = tcp_shutdown,
	.chan_close = tcp_chan_close,
	.locate = tcp_locate,
	.reach = tcp_reach,
};
