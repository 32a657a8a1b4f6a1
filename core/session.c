/* SPDX-License-Identifier: MIT */
/*
 * session.c - a migration session: options and creation, the public error
 * calls, stats and teardown. The rest, lowest first: sess_err.c (the
 * clock, the sticky first error and shutdown), sess_ctl.c (the control
 * connection: dispatch, keepalive, TLS), sess_blocks.c (RAM blocks),
 * rails.c, sess_dest.c (the destination's placement checks: every offset
 * and length that comes from the wire is checked there before memory is
 * touched), sess_msgs.c (the session's own control messages), sess_sync.c
 * (the source's data API, sync, completion), sess_connect.c (transport,
 * connect, listen and accept, handshake) and sess_place.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "ctl.h"
#include "sess.h"

#define DEFAULT_CHANNELS 4
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_EXTENT (1u << 20)
#define DEFAULT_BLOB_MAX (4ull << 30)
#define DEFAULT_LOAD_THREADS 4
#define DEFAULT_DOWNTIME_MS 300
#define DEFAULT_MAX_ROUNDS 30
#define RMIG_FLAGS_ALL \
	(RMIG_F_VERIFY | RMIG_F_SWITCH_ANYWAY | RMIG_F_TLS | RMIG_F_POSTCOPY | RMIG_F_NO_URGENT | \
	 RMIG_F_PREPARE | RMIG_F_ZEROED | RMIG_F_DIRECT | RMIG_F_NO_BIND | RMIG_F_NO_FALLBACK)

const char *rmig_transport_name(enum rmig_transport_kind k)
{
	switch (k) {
	case RMIG_TRANSPORT_TCP:
		return "tcp";
	case RMIG_TRANSPORT_RDMA:
		return "rdma";
	case RMIG_TRANSPORT_FILE:
		return "file";
	case RMIG_TRANSPORT_AUTO:
		return "auto";
	default:
		return "unknown";
	}
}

void rmig_opts_init(struct rmig_opts *o, size_t size)
{
	struct rmig_opts d = {
		.size = sizeof(struct rmig_opts),
		.transport = RMIG_TRANSPORT_AUTO,
		.channels = DEFAULT_CHANNELS,
		.timeout_ms = DEFAULT_TIMEOUT_MS,
		.extent_max = DEFAULT_EXTENT,
		.blob_max = DEFAULT_BLOB_MAX,
		.load_threads = DEFAULT_LOAD_THREADS,
		.inflight_max = 64ull << 20,
		.downtime_limit_ms = DEFAULT_DOWNTIME_MS,
		.max_rounds = DEFAULT_MAX_ROUNDS,
		.log_fn = rmig_log_stderr,
		.log_level = RMIG_LOG_WARN,
	};

	if (size > sizeof(d))
		size = sizeof(d);
	memcpy(o, &d, size);
	if (size >= offsetof(struct rmig_opts, size) + sizeof(o->size))
		o->size = size;
}

static int opts_check(const struct rmig_opts *o, const struct rmig_logger *lg)
{
	if (o->role != RMIG_ROLE_SOURCE && o->role != RMIG_ROLE_DEST) {
		rmig_err(lg, "option role: must be source or destination");
		return -EINVAL;
	}
	if (o->channels < 1 || o->channels > RMIG_CHANNELS_MAX) {
		rmig_err(lg, "option channels: %u is not in 1..%u", o->channels,
			 RMIG_CHANNELS_MAX);
		return -EINVAL;
	}
	if (o->transport > RMIG_TRANSPORT_RDMA) {
		rmig_err(lg, "option transport: unknown value %d", o->transport);
		return -EINVAL;
	}
	if (o->timeout_ms < 10) {
		rmig_err(lg, "option timeout_ms: %u is below 10 ms", o->timeout_ms);
		return -EINVAL;
	}
	if (o->extent_max < 4096 || o->extent_max > (256u << 20) ||
	    (o->extent_max & (o->extent_max - 1))) {
		rmig_err(lg, "option extent_max: %u is not a power of two in 4 KiB..256 MiB",
			 o->extent_max);
		return -EINVAL;
	}
	if (o->inflight_max < (1u << 20) || o->inflight_max > (1ull << 34)) {
		rmig_err(lg, "option inflight_max: %llu is not in 1 MiB..16 GiB",
			 (unsigned long long)o->inflight_max);
		return -EINVAL;
	}
	if (o->load_threads < 1 || o->load_threads > 64) {
		rmig_err(lg, "option load_threads: %u is not in 1..64", o->load_threads);
		return -EINVAL;
	}
	if (!memchr(o->rails, '\0', sizeof(o->rails))) {
		rmig_err(lg, "option rails: not a string of at most %zu bytes", sizeof(o->rails) - 1);
		return -EINVAL;
	}
	for (const char *p = o->rails, *e; *p; p = *e ? e + 1 : e) {
		e = p + strcspn(p, ",");
		if (e == p || e - p >= 64 || (*e && !e[1])) { /* empty, long, or a trailing comma */
			rmig_err(lg, "option rails: '%s' is not a list of device names (NAME[,NAME...], "
				     "each 1..63 bytes)", o->rails);
			return -EINVAL;
		}
	}
	if (o->flags & ~RMIG_FLAGS_ALL) {
		rmig_err(lg, "option flags: unknown bits 0x%x", o->flags & ~RMIG_FLAGS_ALL);
		return -EINVAL;
	}
	return 0;
}

static int up_fail(void *arg, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int rmig_sess_new(const struct rmig_opts *o, const struct rmig_feature *const *f,
		  unsigned int nf, struct rmig_session **s_p)
{
	struct rmig_session *s;
	struct rmig_logger lg;
	size_t n;
	int rc;

	if (!o || !s_p || o->size < offsetof(struct rmig_opts, transport))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	rmig_opts_init(&s->opts, sizeof(s->opts));
	n = o->size < sizeof(s->opts) ? o->size : sizeof(s->opts);
	memcpy(&s->opts, o, n);
	s->opts.size = sizeof(s->opts);
	lg = (struct rmig_logger){ s->opts.log_fn, s->opts.log_arg, s->opts.log_level };
	rc = opts_check(&s->opts, &lg);
	for (unsigned int i = 0; i < nf && !rc; i++) /* each feature checks its own */
		rc = f[i]->opts_check ? f[i]->opts_check(&s->opts, &lg) : 0;
	if (rc) {
		free(s);
		return rc;
	}
	s->log = lg;
	s->up = (struct rmig_tp_upcalls){ .arg = s,
					  .place = rmig_up_place,
					  .placed = rmig_up_placed,
					  .place_from = rmig_up_place_from,
					  .zero = rmig_up_zero,
					  .sync = rmig_up_sync,
					  .fail = up_fail,
					  .ctl = rmig_up_ctl };
	s->ctl_fd = -1;
	s->listen_fd = -1;
	s->given_fd = -1;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		rc = -errno;
		free(s);
		return rc;
	}
	s->peer_verdict = 1;
	s->nchannels = s->opts.channels;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->sync_lock, NULL);
	pthread_mutex_init(&s->cs_lock, NULL);
	pthread_cond_init(&s->cs_idle, NULL);
	pthread_mutex_init(&s->ctl_send_lock, NULL);
	pthread_mutex_init(&s->state_lock, NULL);
	/* the features (sess.h): their control messages, hooks, and state */
	rc = rmig_sess_add_feature(s, &rmig_sess_msgs); /* the session's own messages first */
	for (unsigned int i = 0; i < nf && !rc; i++)
		rc = rmig_sess_add_feature(s, f[i]);
	if (rc) { /* a message type handled twice: these tables disagree */
		rmig_session_destroy(s);
		return -EINVAL;
	}
	for (; s->features_inited < s->nfeatures; s->features_inited++) {
		const struct rmig_feature *ft = s->features[s->features_inited];

		rc = ft->init ? ft->init(s) : 0;
		if (rc) {
			rmig_session_destroy(s);
			return rc;
		}
	}
	rmig_rl_init(&s->rl, s->opts.role == RMIG_ROLE_SOURCE ? s->opts.max_bandwidth : 0);
	s->verify = s->opts.role == RMIG_ROLE_SOURCE && (s->opts.flags & RMIG_F_VERIFY);
	if (s->opts.key_len) {
		s->key = malloc(s->opts.key_len);
		if (!s->key) {
			rmig_session_destroy(s);
			return -ENOMEM;
		}
		memcpy(s->key, s->opts.key, s->opts.key_len);
		s->key_len = s->opts.key_len;
	}
	if (s->opts.flags & RMIG_F_TLS) {
		rc = rmig_tls_conf_new(s->opts.role == RMIG_ROLE_DEST, s->key, s->key_len,
				       &s->tls_conf);
		if (rc) {
			rmig_err(&s->log, "TLS: cannot set up OpenSSL: %s", strerror(-rc));
			rmig_session_destroy(s);
			return rc;
		}
	}
	s->opts.key = NULL; /* only the copy is kept */
	*s_p = s;
	return 0;
}

void rmig_sess_test_start_delay(struct rmig_session *s, unsigned int ms)
{
	s->test_start_delay_ms = ms;
}

void rmig_sess_test_cut(struct rmig_session *s)
{
	pthread_mutex_lock(&s->ctl_send_lock);
	s->ctl_mute = true;
	pthread_mutex_unlock(&s->ctl_send_lock);
	if (s->tp)
		s->tp_ops->shutdown(s->tp);
	rmig_rails_shutdown(s);
	if (s->ctl_fd >= 0)
		shutdown(s->ctl_fd, SHUT_RDWR);
}

void rmig_sess_test_cut_rail(struct rmig_session *s, unsigned int r)
{
	if (r < s->nrails && s->rail[r].tp)
		rmig_rail_ops(s, r)->shutdown(s->rail[r].tp);
}

void rmig_sess_test_no_resend(struct rmig_session *s, bool skip)
{
	s->test_no_resend = skip;
}

void rmig_sess_test_no_failover_cap(struct rmig_session *s)
{
	s->test_no_fo_cap = true;
}

void rmig_sess_test_fallback_refuse(struct rmig_session *s)
{
	s->test_fb_refuse = true;
}

void rmig_sess_set_transport(struct rmig_session *s, const struct rmig_transport_ops *ops)
{
	s->tp_ops = ops;
}

/* ---- errors ---- */

/*
 * A channel thread's failure (@c, the calling thread's channel): true when a
 * feature takes it (failover.c: the session goes on without the rail).
 */
static bool chan_fail_taken(struct rmig_session *s, struct rmig_chan *c, int err, const char *fmt,
			    va_list ap) __attribute__((format(printf, 4, 0)));

static bool chan_fail_taken(struct rmig_session *s, struct rmig_chan *c, int err, const char *fmt,
			    va_list ap)
{
	char why[RMIG_ERRMSG_MAX];

	vsnprintf(why, sizeof(why), fmt, ap);
	rmig_for_each_feature(s, f, chan_fail)
		if (f->chan_fail(c, err, why))
			return true;
	return false;
}

static int up_fail(void *arg, int err, const char *fmt, ...)
{
	struct rmig_session *s = arg;
	struct rmig_chan *c = rmig_chan_self();
	va_list ap;
	int rc;

	if (c && c->s != s)
		c = NULL;
	/* a channel whose rail failed over ends with an error, and that is all */
	if (c) {
		bool down;

		pthread_mutex_lock(&s->cs_lock);
		down = c->down;
		pthread_mutex_unlock(&s->cs_lock);
		if (down)
			return err;
	}

	/*
	 * A peer that fails closes its data channels right after it sends its
	 * reason on the control connection: give that reason a moment to
	 * arrive, so the operator reads the cause, not "connection reset".
	 */
	if (err == -ECONNRESET || err == -EPIPE || (err == -EIO && c)) {
		uint64_t deadline = rmig_now_ns() + 200000000ull;

		pthread_mutex_lock(&s->lock);
		while (!s->err && s->state != RMIG_S_DONE && !s->finishing &&
		       rmig_sess_wait(s, deadline) == 0)
			;
		pthread_mutex_unlock(&s->lock);
	}
	if (c) {
		bool taken;

		va_start(ap, fmt);
		taken = chan_fail_taken(s, c, err, fmt, ap);
		va_end(ap);
		if (taken)
			return err;
	}
	va_start(ap, fmt);
	rc = rmig_sess_vfail(arg, err, false, fmt, ap);
	va_end(ap);
	return rc;
}

int rmig_error(rmig_session *s)
{
	return s ? rmig_sess_err(s) : -EINVAL;
}

const char *rmig_last_error(rmig_session *s)
{
	return s ? s->errmsg : "";
}

void rmig_cancel(rmig_session *s, const char *reason)
{
	if (s)
		rmig_sess_fail(s, -ECANCELED, "migration cancelled: %s", reason ? reason : "");
}

/* ---- stats and teardown ---- */

void rmig_get_stats(rmig_session *s, struct rmig_stats *st)
{
	uint64_t end;

	memset(st, 0, sizeof(*st));
	if (!s)
		return;
	st->bytes = atomic_load(&s->st_bytes);
	st->handled = atomic_load(&s->st_handled);
	st->pages = atomic_load(&s->st_pages);
	st->zero_pages = atomic_load(&s->st_zero_pages);
	st->state_bytes = atomic_load(&s->st_state_bytes);
	st->reg_ns = atomic_load(&s->st_reg_ns);
	st->channels = s->chans ? s->nchannels : 0;
	st->transport = s->tp_ops ? s->tp_ops->kind : s->opts.transport;
	pthread_mutex_lock(&s->lock);
	st->syncs = s->sync_acked;
	st->rounds = s->rounds;
	st->downtime_ns = s->downtime_ns;
	st->rails_down = s->rails_down;
	end = s->t_end_ns ? s->t_end_ns : rmig_now_ns();
	if (s->t_start_ns)
		st->duration_ns = end - s->t_start_ns;
	pthread_mutex_unlock(&s->lock);
	for (unsigned int i = 0; i < st->channels; i++) {
		const struct rmig_chan *c = &s->chans[i];
		unsigned int r = rmig_chan_rail(s, i);
		uint64_t before = 0;

		st->chan[i].bytes = atomic_load(&c->bytes);
		st->chan[i].writes = atomic_load(&c->writes);
		if (c->moved && c->rail_before < RMIG_RAILS_MAX) { /* what it carried before the move */
			before = c->bytes_before;
			st->rail_bytes[c->rail_before] += before;
		}
		if (r < RMIG_RAILS_MAX)
			st->rail_bytes[r] += st->chan[i].bytes - before;
	}
	rmig_for_each_feature(s, f, stats)
		f->stats(s, st);
}

/*
 * Lingering close: after our FIN, read until the peer's EOF (bounded) so
 * that close() finds no unread input and sends FIN, not an RST that could
 * destroy the last message the peer has not read yet.
 */
static void ctl_close(struct rmig_session *s)
{
	struct rmig_ctl_conn c = rmig_sess_ctl_conn(s);

	rmig_conn_close(&c, s->opts.timeout_ms < 2000 ? s->opts.timeout_ms : 2000);
	s->ctl_fd = -1;
	s->ctl_tls = NULL; /* freed with the connection */
}

void rmig_session_destroy(rmig_session *s)
{
	if (!s)
		return;
	if (s->ctl_fd >= 0 || s->listen_fd >= 0 || s->local) {
		pthread_mutex_lock(&s->lock);
		bool running = s->state != RMIG_S_DONE && !s->err &&
			       (s->ctl_fd >= 0 || (s->local && s->tp));
		pthread_mutex_unlock(&s->lock);
		if (running)
			rmig_sess_fail(s, -ECANCELED, "session destroyed before completion");
	}
	rmig_sess_shut(s);
	if (s->ctl_thread_started)
		pthread_join(s->ctl_thread, NULL);
	for (unsigned int i = 0; i < s->features_inited; i++)
		if (s->features[i]->stop)
			s->features[i]->stop(s);
	rmig_chans_stop(s);
	rmig_pool_destroy(s->pool);
	for (unsigned int i = 0; s->chans && i < s->nchannels; i++) {
		if (s->tp) {
			rmig_chan_ops(&s->chans[i])->chan_close(s->chans[i].tch);
			s->tp_ops->chan_close(s->chans[i].old_tch); /* the rail it left */
		}
		free(s->chans[i].job);
		pthread_cond_destroy(&s->chans[i].work);
		pthread_mutex_destroy(&s->chans[i].post_lock);
	}
	rmig_rails_destroy(s);
	if (s->tp)
		s->tp_ops->destroy(s->tp);
	rmig_sess_place_fini(s);
	if (s->ctl_fd >= 0)
		ctl_close(s);
	rmig_tls_free(s->ctl_tls);
	rmig_tls_conf_free(s->tls_conf);
	for (unsigned int i = s->features_inited; i-- > 0;)
		if (s->features[i]->destroy)
			s->features[i]->destroy(s);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->given_fd >= 0)
		close(s->given_fd);
	close(s->wake_fd);
	for (unsigned int i = 0; i < s->nblocks; i++)
		free(s->blocks[i].sent);
	free(s->chans);
	free(s->chan_sync);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->sync_lock);
	pthread_mutex_destroy(&s->cs_lock);
	pthread_cond_destroy(&s->cs_idle);
	pthread_mutex_destroy(&s->ctl_send_lock);
	pthread_mutex_destroy(&s->state_lock);
	rmig_rl_destroy(&s->rl);
	free(s->file_path);
	if (s->key)
		OPENSSL_cleanse(s->key, s->key_len);
	free(s->key);
	free(s);
}
