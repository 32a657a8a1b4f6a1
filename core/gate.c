/* SPDX-License-Identifier: MIT */
/*
 * gate.c - the destination's door: accept connections and take each one
 * through TLS, HELLO and the key proof, before anything else is opened,
 * created or sent.
 *
 * Each connection gets its own thread and its own deadline (the timeout
 * from its accept), up to GATE_MAX at once; one more evicts the oldest. A
 * connection that fails is logged, told why where it can read it, and
 * closed; the wait goes on.
 *
 * With a key a stranger must not cost the migration: the wait goes on until
 * one connection proves the key or the timeout passes with none. Port scans,
 * idle or trickling clients and wrong keys are all just refused connections.
 *
 * Without a key the first connection that sends a HELLO (or an ERROR: a
 * source that gave up, say on a transport it lacks) is the source: if it
 * then fails the handshake (another version, a key this side lacks), the
 * session fails, as anyone may be the source. A connection that never gets
 * that far (a port scan, a health check, a client of another protocol, one
 * that stays silent) is a stray, refused like a stranger with a key is.
 * A connection handed over (rmig_listen("fd:N")) is the source, key or not.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "auth.h"
#include "ctl.h"
#include "gate.h"
#include "sess.h"
#include "sock.h"

#define GATE_MAX 32 /* connections proving themselves at once */
#define WHY_MAX (RMIG_ERRMSG_MAX + 64)

struct cand {
	struct gate *g;
	struct rmig_ctl_conn c;
	char addr[INET6_ADDRSTRLEN + 8];
	uint64_t t_accept;
	uint64_t deadline;
	uint8_t *buf; /* RMIG_CTL_MAX: the HELLO as received, then scratch */
	struct rmig_msg_hello hello;
	int rc;
	bool mute;      /* the peer cannot read an ERROR (failed TLS, or it sent one) */
	bool from_peer; /* the failure is the peer's own ERROR */
	bool heard;     /* its HELLO (or its ERROR) decoded: a source, not a stray */
	char why[WHY_MAX];
	pthread_t th;
	bool done; /* under g->lock */
	bool cut;  /* stopped by the end of the wait, not done on its own */
	struct cand *next;
};

struct gate {
	struct rmig_session *s;
	pthread_mutex_t lock;
	int efd; /* eventfd: a candidate finished */
	struct cand *list;
	unsigned int n;
	unsigned int refused;
	char last[WHY_MAX + 64];
};

static void peer_addr(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
	socklen_t sl = sizeof(ss);

	if (getpeername(fd, (struct sockaddr *)&ss, &sl))
		ss.ss_family = AF_UNSPEC;
	rmig_sockaddr_str(&ss, true, out, len);
}

static unsigned int ms_left(uint64_t deadline)
{
	uint64_t now = rmig_mono_ns();

	return now >= deadline ? 1 : (unsigned int)((deadline - now + 999999) / 1000000);
}

static int refuse(struct cand *k, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int refuse(struct cand *k, int err, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(k->why, sizeof(k->why), "refusing the source: ");

	va_start(ap, fmt);
	vsnprintf(k->why + n, sizeof(k->why) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

/* Receive @type on the candidate's connection; on failure k->why says why. */
static int expect(struct cand *k, uint16_t type, struct rmig_ctl_hdr *h)
{
	int rc = rmig_conn_expect(&k->c, type, h, k->buf, k->deadline, k->why, sizeof(k->why),
				  &k->from_peer);

	if (k->from_peer) /* it speaks the protocol: a source that gave up, not a stray */
		k->mute = k->heard = true;
	return rc;
}

static int send_auth(struct cand *k, uint16_t type, const struct rmig_msg_auth *m)
{
	uint8_t b[RMIG_AUTH_NONCE_LEN + RMIG_AUTH_MAC_LEN];
	int n = rmig_auth_encode(m, b, sizeof(b)), rc;

	rc = n < 0 ? n : rmig_conn_send(&k->c, type, b, (uint32_t)n, ms_left(k->deadline));
	if (rc)
		snprintf(k->why, sizeof(k->why), "control connection: sending %s: %s",
			 rmig_msg_name(type), rmig_strerror(rc));
	return rc;
}

/* The key proof, destination side (see auth.h for the exchange). */
static int auth_dest(struct cand *k, const uint8_t hash[RMIG_HELLO_HASH_LEN])
{
	struct rmig_session *s = k->g->s;
	struct rmig_msg_auth ch = { .nonce = { 0 } }, theirs, proof = { .nonce = { 0 } };
	uint8_t want[RMIG_AUTH_MAC_LEN];
	struct rmig_ctl_hdr h;
	int rc;

	if (!s->key_len && !(k->hello.caps & RMIG_CAP_AUTH))
		return 0;
	if (!s->key_len)
		return refuse(k, -EACCES, "it has a key, but this destination has none "
					  "(--key-file; rmig_opts.key)");
	if (!(k->hello.caps & RMIG_CAP_AUTH))
		return refuse(k, -EACCES, "authentication failed: this destination requires a key "
					  "and the source has none (--key-file; rmig_opts.key)");
	if (RAND_bytes(ch.nonce, sizeof(ch.nonce)) != 1) {
		snprintf(k->why, sizeof(k->why), "authentication: no random numbers");
		return -EIO;
	}
	rc = send_auth(k, RMIG_MSG_AUTH_CHALLENGE, &ch);
	if (!rc)
		rc = expect(k, RMIG_MSG_AUTH_PROOF, &h);
	if (rc)
		return rc;
	if (rmig_auth_decode(k->buf, h.len, &theirs)) {
		snprintf(k->why, sizeof(k->why), "authentication: malformed AUTH_PROOF (%u bytes)",
			 h.len);
		return -EBADMSG;
	}
	rc = rmig_auth_mac(s->key, s->key_len, RMIG_AUTH_SOURCE, hash, ch.nonce, theirs.nonce,
			   want);
	if (!rc && !rmig_auth_mac_equal(want, theirs.mac))
		return refuse(k, -EACCES, "authentication failed: the source's key does not match");
	if (!rc)
		rc = rmig_auth_mac(s->key, s->key_len, RMIG_AUTH_DEST, hash, ch.nonce, theirs.nonce,
				   proof.mac);
	if (rc) {
		snprintf(k->why, sizeof(k->why), "authentication: %s", strerror(-rc));
		return rc;
	}
	return send_auth(k, RMIG_MSG_AUTH_PROOF, &proof);
}

/*
 * TLS, HELLO, the checks that need no key, and the key proof. Reads the
 * session's settings only; changes nothing in it.
 */
static int handshake(struct cand *k)
{
	struct rmig_session *s = k->g->s;
	uint8_t hash[RMIG_HELLO_HASH_LEN];
	struct rmig_ctl_hdr h;
	char tw[256];
	int rc;

	if (s->tls_conf) {
		rc = rmig_tls_start(s->tls_conf, k->c.fd, k->c.wake_fd, ms_left(k->deadline),
				    &k->c.tls, tw, sizeof(tw));
		if (rc) {
			/*
			 * A peer in plain text reads our ERROR; one in TLS only ever
			 * sees TLS records (OpenSSL sent it an alert if it could).
			 */
			k->mute = rc != -EPROTONOSUPPORT;
			snprintf(k->why, sizeof(k->why), "control connection: TLS handshake: %s", tw);
			return rc;
		}
	}
	rc = expect(k, RMIG_MSG_HELLO, &h);
	if (rc)
		return rc;
	if (rmig_hello_decode(k->buf, h.len, &k->hello))
		return refuse(k, -EBADMSG, "malformed HELLO");
	k->heard = true;
	rmig_auth_hello_hash(k->buf, h.len, hash);
	if (k->hello.version != RMIG_PROTO_VERSION)
		return refuse(k, -EPROTO, "protocol version %u, this side speaks %u",
			      k->hello.version, RMIG_PROTO_VERSION);
	if (k->hello.nchannels < 1 || k->hello.nchannels > RMIG_CHANNELS_MAX)
		return refuse(k, -EPROTO, "channel count out of range");
	if (k->hello.transport == RMIG_TRANSPORT_RDMA) {
		const struct rmig_transport_ops *ops = s->tp_ops ? s->tp_ops :
					rmig_tp_find(RMIG_TRANSPORT_RDMA, NULL, 0);

		if (s->tls_conf && !(ops && ops->caps & RMIG_TP_CAP_TLS))
			return refuse(k, -EPROTO, "rdma data channels asked, but this destination "
						  "requires TLS, which covers tcp only");
		if (!ops)
			return refuse(k, -ENODEV,
				      "rdma asked, but this destination was built without rdma");
	} else if (k->hello.transport != RMIG_TRANSPORT_TCP) {
		return refuse(k, -EPROTO, "unknown transport");
	}
	/* Nothing is opened, created or sent past this point without the key. */
	return auth_dest(k, hash);
}

static struct cand *cand_new(struct gate *g, int fd)
{
	struct cand *k = calloc(1, sizeof(*k));

	if (k)
		k->buf = malloc(RMIG_CTL_MAX);
	if (!k || !k->buf) {
		free(k);
		return NULL;
	}
	k->g = g;
	k->c.fd = fd;
	k->c.wake_fd = g->s->wake_fd;
	k->t_accept = rmig_mono_ns();
	k->deadline = k->t_accept + (uint64_t)g->s->opts.timeout_ms * 1000000ull;
	peer_addr(fd, k->addr, sizeof(k->addr));
	rmig_sock_tune(fd, 1, 0);
	/* sends are bounded by the socket; reads by the candidate's deadline */
	(void)rmig_sock_set_timeouts(fd, g->s->opts.timeout_ms, g->s->opts.timeout_ms);
	return k;
}

static void cand_free(struct cand *k)
{
	if (!k)
		return;
	if (k->c.fd >= 0) {
		if (!k->mute)
			rmig_conn_send_error(&k->c, k->rc ? k->rc : -ECANCELED,
					     k->rc ? k->why : "another source was accepted");
		rmig_conn_close(&k->c, 200);
	}
	free(k->buf);
	free(k);
}

static void *cand_main(void *arg)
{
	struct cand *k = arg;
	struct gate *g = k->g;

	k->rc = handshake(k);
	pthread_mutex_lock(&g->lock);
	k->done = true;
	pthread_mutex_unlock(&g->lock);
	(void)!eventfd_write(g->efd, 1);
	return NULL;
}

/* A candidate lost or failed: log it, tell it why where it can read it, close it. */
static void reap(struct gate *g, struct cand *k)
{
	struct rmig_session *s = g->s;

	pthread_join(k->th, NULL);
	if (k->rc) {
		g->refused++;
		snprintf(g->last, sizeof(g->last), "from %s: %s", k->addr, k->why);
		rmig_warn(&s->log, "refused a connection from %s: %s", k->addr, k->why);
	}
	cand_free(k);
}

/* Unlink the candidate @pp points at. */
static struct cand *unlink_cand(struct gate *g, struct cand **pp)
{
	struct cand *k = *pp;

	*pp = k->next;
	g->n--;
	return k;
}

/*
 * Make room: stop the oldest candidate still proving itself. The caller
 * has collected the finished ones, so none that finished is lost here;
 * one that finishes meanwhile is left for the next collect().
 */
static void evict_oldest(struct gate *g)
{
	struct cand **pp = &g->list, **oldest = NULL;

	pthread_mutex_lock(&g->lock);
	for (; *pp; pp = &(*pp)->next)
		if (!(*pp)->done && (!oldest || (*pp)->t_accept < (*oldest)->t_accept))
			oldest = pp;
	pthread_mutex_unlock(&g->lock);
	if (!oldest)
		return;
	shutdown((*oldest)->c.fd, SHUT_RDWR); /* its thread returns at once */
	{
		struct cand *k = unlink_cand(g, oldest);

		pthread_join(k->th, NULL);
		k->rc = -EBUSY;
		k->mute = true;
		snprintf(k->why, sizeof(k->why),
			 "evicted: %u connections were proving themselves at once", GATE_MAX);
		g->refused++;
		snprintf(g->last, sizeof(g->last), "from %s: %s", k->addr, k->why);
		rmig_warn(&g->s->log, "refused a connection from %s: %s", k->addr, k->why);
		cand_free(k);
	}
}

/*
 * Finished candidates: the first that succeeded wins (without a key, the
 * first that sent a HELLO, succeeded or not); the others are refused.
 */
static bool can_win(const struct gate *g, const struct cand *k)
{
	return !k->rc || (!g->s->key_len && k->heard);
}

/* Does @a win over @b (both finished)? Success first, then the earlier accept. */
static bool beats(const struct gate *g, const struct cand *a, const struct cand *b)
{
	if (!can_win(g, a))
		return false;
	if (!b || !can_win(g, b) || (!a->rc && b->rc))
		return true;
	return (!a->rc) == (!b->rc) && a->t_accept < b->t_accept;
}

static struct cand *collect(struct gate *g)
{
	struct cand **pp, *best = NULL, *winner = NULL;

	/* the list is newest first: pick the winner among all that finished, then reap */
	pthread_mutex_lock(&g->lock);
	for (struct cand *k = g->list; k; k = k->next)
		if (k->done && beats(g, k, best))
			best = k;
	pthread_mutex_unlock(&g->lock);
	pp = &g->list;
	while (*pp) {
		bool done;

		pthread_mutex_lock(&g->lock);
		done = (*pp)->done;
		pthread_mutex_unlock(&g->lock);
		if (*pp == best) {
			winner = unlink_cand(g, pp);
			pthread_join(winner->th, NULL);
			continue;
		}
		if (!done) {
			pp = &(*pp)->next;
			continue;
		}
		reap(g, unlink_cand(g, pp));
	}
	return winner;
}

/*
 * The wait is over: a connection still in its handshake is cut off and
 * counted as refused; one that proved the key too late still hears why.
 */
static void stop_all(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	for (struct cand *k = g->list; k; k = k->next) {
		k->cut = !k->done;
		if (k->cut) /* a finished one still reads why (cand_free) */
			shutdown(k->c.fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&g->lock);
	while (g->list) {
		struct cand *k = unlink_cand(g, &g->list);

		pthread_join(k->th, NULL);
		if (!k->rc) {
			k->rc = -ECANCELED;
			snprintf(k->why, sizeof(k->why), "another source was accepted");
			cand_free(k);
			continue;
		}
		if (k->cut) {
			k->mute = true; /* shut down: it can no longer read an ERROR */
			snprintf(k->why, sizeof(k->why), "still in the handshake when the wait ended");
		}
		g->refused++;
		snprintf(g->last, sizeof(g->last), "from %s: %s", k->addr, k->why);
		rmig_warn(&g->s->log, "refused a connection from %s: %s", k->addr, k->why);
		cand_free(k);
	}
}

static int accept_one(struct rmig_session *s, int *fd_p)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);

	if (fd >= 0) {
		*fd_p = fd;
		return 0;
	}
	if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
		return -EAGAIN;
	return errno == EINVAL ? -ECANCELED : -errno;
}

/* The winner becomes the session's control connection. */
static void install(struct rmig_session *s, struct cand *k, uint8_t *buf,
		    struct rmig_msg_hello *hello)
{
	s->ctl_fd = k->c.fd;
	s->ctl_tls = k->c.tls;
	s->ctl_mute = k->mute;
	k->c.fd = -1;
	k->c.tls = NULL;
	memcpy(buf, k->buf, RMIG_CTL_MAX);
	*hello = k->hello;
}

/*
 * How long rmig_accept() waits for a source: timeout_ms, or for a session
 * that resumes another, recovery_timeout_ms when set (its source may take
 * that long to come back).
 */
static unsigned int wait_ms(const struct rmig_session *s)
{
	return s->resuming && s->opts.recovery_timeout_ms ? s->opts.recovery_timeout_ms :
							    s->opts.timeout_ms;
}

/* A connection handed over (rmig_listen("fd:N")) is the source, key or not. */
static int gate_given(struct gate *g, uint8_t *buf, struct rmig_msg_hello *hello)
{
	struct rmig_session *s = g->s;
	struct cand *k;
	int fd, rc;

	fd = s->given_fd;
	s->given_fd = -1;
	k = cand_new(g, fd);
	if (!k) {
		close(fd);
		return rmig_sess_fail(s, -ENOMEM, "no memory for the handshake");
	}
	s->t_start_ns = rmig_now_ns();
	k->rc = handshake(k);
	rc = k->rc;
	install(s, k, buf, hello);
	if (rc)
		rmig_sess_fail_from(s, rc, k->from_peer, "%s", k->why);
	cand_free(k);
	return rc;
}

static int gate_wait(struct gate *g, uint8_t *buf, struct rmig_msg_hello *hello)
{
	struct rmig_session *s = g->s;
	uint64_t deadline = rmig_mono_ns() + (uint64_t)wait_ms(s) * 1000000ull;
	struct cand *winner = NULL;
	int rc = 0, fl = fcntl(s->listen_fd, F_GETFL);

	/* poll() said readable, but the client may be gone by accept(): never block there */
	if (fl >= 0)
		(void)fcntl(s->listen_fd, F_SETFL, fl | O_NONBLOCK);
	while (!winner) {
		struct pollfd pfd[3] = { { .fd = s->listen_fd, .events = POLLIN },
					 { .fd = g->efd, .events = POLLIN },
					 { .fd = s->wake_fd, .events = POLLIN } };
		uint64_t now = rmig_mono_ns();
		eventfd_t ev;
		int n, fd = -1;

		if (now >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		n = poll(pfd, 3, (int)((deadline - now + 999999) / 1000000));
		if (n < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		if (n <= 0)
			continue;
		if (pfd[2].revents) {
			rc = -ECANCELED;
			break;
		}
		if (pfd[1].revents) {
			(void)!eventfd_read(g->efd, &ev);
			winner = collect(g);
			if (winner)
				break;
		}
		if (!pfd[0].revents)
			continue;
		rc = accept_one(s, &fd);
		if (rc == -EAGAIN) {
			rc = 0;
			continue;
		}
		if (rc)
			break;
		if (g->n == GATE_MAX) {
			/* the finished first: a source that just got through is never evicted */
			winner = collect(g);
			if (winner) {
				close(fd);
				break;
			}
			evict_oldest(g);
		}
		{
			struct cand *k = cand_new(g, fd);

			if (!k || pthread_create(&k->th, NULL, cand_main, k)) {
				rmig_warn(&s->log, "refused a connection: no memory or thread for it");
				if (k) {
					k->c.fd = -1;
					cand_free(k);
				}
				close(fd);
				continue;
			}
			k->next = g->list;
			g->list = k;
			g->n++;
		}
	}
	if (!winner && rc == -ETIMEDOUT) /* one may have got through just as time ran out */
		winner = collect(g);
	stop_all(g);
	if (winner) {
		rc = winner->rc;
		if (!rc)
			rmig_info(&s->log, "source %s %s", winner->addr,
				  s->key_len ? "proved the key" : "sent its HELLO");
		s->t_start_ns = rmig_now_ns();
		install(s, winner, buf, hello);
		/* without a key, a source that failed its handshake fails the session */
		if (rc)
			rmig_sess_fail_from(s, rc, winner->from_peer, "%s", winner->why);
		cand_free(winner);
		return rc;
	}
	if (rc == -ETIMEDOUT && g->refused)
		return rmig_sess_fail(s, rc,
				      "waiting for a source: timed out after %u ms with no source%s; "
				      "refused %u connection%s, the last %s",
				      wait_ms(s), s->key_len ? " that holds the key" : "",
				      g->refused, g->refused == 1 ? "" : "s", g->last);
	return rmig_sess_fail(s, rc, "waiting for a source: %s", rmig_strerror(rc));
}

int rmig_gate_accept(struct rmig_session *s, uint8_t *buf, struct rmig_msg_hello *hello)
{
	struct gate g = { .s = s };
	int rc;

	g.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g.efd < 0)
		return rmig_sess_fail(s, -errno, "eventfd: %s", strerror(errno));
	pthread_mutex_init(&g.lock, NULL);
	rc = s->given_fd < 0 ? gate_wait(&g, buf, hello) : gate_given(&g, buf, hello);
	pthread_mutex_destroy(&g.lock);
	close(g.efd);
	return rc;
}
