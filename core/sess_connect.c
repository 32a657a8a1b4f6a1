/* SPDX-License-Identifier: MIT */
/*
 * sess_connect.c - a session's connection: the transport chosen and
 * created, RAM blocks registered, the source's connect (to a peer, or to a
 * file) with its HELLO, the destination's listen and accept with the layout
 * check, and the session started once every data channel is open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "bitmap.h"
#include "gate.h"
#include "sess.h"
#include "sock.h"

/* ---- transport choice ---- */

static int pick_transport(struct rmig_session *s, enum rmig_transport_kind kind)
{
	char why[320];
	int rc;

	if (s->tp_ops) /* set by a test */
		return 0;
	rc = rmig_tp_select(kind, s->tls_conf ? RMIG_TP_CAP_TLS : 0, s->ctl_fd, &s->tp_ops, why,
			    sizeof(why));
	if (rc < 0)
		return rmig_sess_fail(s, rc, "%s", why);
	if (kind == RMIG_TRANSPORT_TCP)
		return 0;
	if (rc)
		rmig_warn(&s->log, "transport: %s", why);
	else
		rmig_info(&s->log, "transport: %s", why);
	return 0;
}

static int tp_create(struct rmig_session *s)
{
	s->chans = calloc(s->nchannels, sizeof(*s->chans));
	s->chan_sync = calloc(s->nchannels, sizeof(*s->chan_sync));
	if (!s->chans || !s->chan_sync)
		return rmig_sess_fail(s, -ENOMEM, "no memory for %u channels", s->nchannels);
	for (unsigned int i = 0; i < s->nchannels; i++) {
		s->chans[i].idx = i;
		s->chans[i].s = s;
		pthread_cond_init(&s->chans[i].work, NULL);
		pthread_mutex_init(&s->chans[i].post_lock, NULL);
	}
	if (!s->nrails)
		s->nrails = 1;
	return rmig_tp_create_rail(s, 0);
}

static int reg_blocks(struct rmig_session *s, bool send_desc)
{
	struct rmig_msg_reg m;
	uint8_t buf[RMIG_DESC_MAX + 16];
	uint64_t t0 = rmig_now_ns();
	int rc = 0, n;

	/* every block on every rail: each rail is a device of its own (rail-major) */
	for (unsigned int k = 0; k < s->nblocks * (s->nrails ? s->nrails : 1) && !rc; k++) {
		unsigned int i = k % s->nblocks, r = k / s->nblocks;
		struct rmig_block *b = &s->blocks[i];

		if (s->rail[r].off) /* a source's rail left out: no channel, no device */
			continue;
		m.block = i;
		m.desc_len = 0;
		/*
		 * Not where pages come by message only (a destination that
		 * resumes postcopy): pinning a block under userfaultfd with
		 * pages missing would fault on them.
		 */
		if (!(s->opts.role == RMIG_ROLE_DEST && rmig_sess_by_message_only(s)))
			rc = s->tp_ops->reg(s->rail[r].tp, i, b->host, b->length, m.desc,
					    &m.desc_len);
		if (rc) {
			rc = rmig_sess_fail(s, rc, "registering ram block '%s' (%llu bytes)%s%s: %s",
					    b->name, (unsigned long long)b->length,
					    r ? " for rail " : "", r ? s->rail[r].name : "",
					    strerror(-rc));
			break;
		}
		if (!send_desc)
			continue;
		n = rmig_reg_encode(&m, buf, sizeof(buf));
		rc = n < 0 ? n : rmig_ctl_send(s, RMIG_MSG_REG, buf, (uint32_t)n);
	}
	atomic_fetch_add(&s->st_reg_ns, rmig_now_ns() - t0);
	return rc;
}

static int session_start(struct rmig_session *s)
{
	int rc;

	rmig_sess_place_chans(s);
	rc = s->opts.role == RMIG_ROLE_SOURCE ? rmig_chans_start_source(s)
					      : rmig_chans_start_dest(s);

	if (!rc && !s->local) /* a local session has no control connection */
		rc = rmig_ctl_thread_start(s);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) : rc;
	if (s->test_start_delay_ms) {
		struct timespec ts = { .tv_sec = s->test_start_delay_ms / 1000,
				       .tv_nsec = (long)(s->test_start_delay_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&s->lock);
	/*
	 * Only from NEW: once the control thread runs, a fast source can
	 * finish the whole migration (the destination DONE) before we get here.
	 */
	if (!s->err && s->state == RMIG_S_NEW)
		s->state = RMIG_S_RUNNING;
	rc = s->err;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ---- source: connect ---- */

/* The source's HELLO: its capabilities, channels and RAM layout. */
static void hello_fill(struct rmig_session *s, struct rmig_msg_hello *hello)
{
	hello->version = RMIG_PROTO_VERSION;
	hello->caps = (s->opts.flags & RMIG_F_VERIFY) ? RMIG_CAP_VERIFY : 0;
	if (s->resuming)
		hello->caps |= RMIG_CAP_RESUME;
	rmig_for_each_feature(s, f, hello_caps) /* the key, postcopy */
		hello->caps |= f->hello_caps(s);
	hello->session_id = s->session_id;
	hello->nchannels = s->nchannels;
	hello->transport = s->tp_ops->kind;
	hello->nblocks = s->nblocks;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		memcpy(hello->blocks[i].name, s->blocks[i].name, RMIG_NAME_MAX);
		hello->blocks[i].length = s->blocks[i].length;
		hello->blocks[i].page_size = s->blocks[i].page_size;
	}
}

/* "file:PATH": a local session; the backend lays out the file from the HELLO. */
static int local_path(struct rmig_session *s, const char *path)
{
	if (!*path) {
		rmig_err(&s->log, "bad address 'file:': expected file:PATH");
		return -EINVAL;
	}
	if (s->opts.flags & (RMIG_F_TLS | RMIG_F_POSTCOPY)) {
		rmig_err(&s->log, "file:%s: %s needs a peer", path,
			 (s->opts.flags & RMIG_F_TLS) ? "RMIG_F_TLS" : "RMIG_F_POSTCOPY");
		return -EINVAL;
	}
	s->file_path = strdup(path);
	if (!s->file_path)
		return -ENOMEM;
	s->local = true;
	if (!s->tp_ops) /* else set by a test */
		s->tp_ops = &rmig_file_ops;
	return 0;
}

static int connect_local(struct rmig_session *s, const char *path)
{
	struct rmig_msg_hello *hello = NULL;
	uint8_t *buf = NULL;
	int rc, n;

	if (!s->nblocks) {
		rmig_err(&s->log, "no ram blocks declared before connect");
		return -EINVAL;
	}
	rc = local_path(s, path);
	if (rc)
		return rc;
	s->t_start_ns = rmig_now_ns();
	rc = rmig_sess_start_features(s);
	if (rc)
		return rc;
	if (getrandom(&s->session_id, sizeof(s->session_id), 0) != sizeof(s->session_id))
		s->session_id = s->t_start_ns ^ (uint64_t)getpid() << 32;
	hello = calloc(1, sizeof(*hello));
	buf = malloc(RMIG_CTL_MAX);
	if (!hello || !buf) {
		rc = rmig_sess_fail(s, -ENOMEM, "no memory for the layout");
		goto out;
	}
	rc = tp_create(s);
	if (rc)
		goto out;
	hello_fill(s, hello);
	n = rmig_hello_encode(hello, buf, RMIG_CTL_MAX);
	rc = n < 0 ? rmig_sess_fail(s, n, "encoding the layout") :
		     rmig_ctl_send(s, RMIG_MSG_HELLO, buf, (uint32_t)n);
	for (unsigned int i = 0; i < s->nchannels && !rc; i++) {
		rc = s->tp_ops->connect(s->tp, -1, NULL, 0, i, &s->chans[i].tch);
		if (rc && !rmig_sess_err(s))
			rmig_sess_fail(s, rc, "opening %s channel %u: %s", s->tp_ops->name, i,
				       rmig_strerror(rc));
	}
	if (!rc)
		rc = reg_blocks(s, false);
	if (!rc)
		rc = session_start(s);
	if (!rc)
		rmig_info(&s->log, "saving to file %s with %u channels", path, s->nchannels);
out:
	free(hello);
	free(buf);
	return rc ? (rmig_sess_err(s) ? rmig_sess_err(s) : rc) : 0;
}

/*
 * Open rail @r's data channels (those rmig_chan_rail() puts on it). A backend with
 * connect_n opens them all at once; the destination takes them in
 * whatever order they come (accept_rail()).
 */
static int connect_rail(struct rmig_session *s, unsigned int r)
{
	const struct rmig_rail *rl = &s->rail[r];
	unsigned int idx[RMIG_CHANNELS_MAX], n = 0;
	struct rmig_tp_chan *chs[RMIG_CHANNELS_MAX];
	int rc = 0;

	for (unsigned int i = 0; i < s->nchannels; i++)
		if (rmig_chan_rail(s, i) == r)
			idx[n++] = i;
	if (s->tp_ops->connect_n && n > 1) {
		rc = s->tp_ops->connect_n(rl->tp, s->ctl_fd, rl->ep, rl->ep_len, idx, n, chs);
		for (unsigned int k = 0; k < n && !rc; k++)
			s->chans[idx[k]].tch = chs[k];
	} else {
		for (unsigned int k = 0; k < n && !rc; k++)
			rc = s->tp_ops->connect(rl->tp, s->ctl_fd, rl->ep, rl->ep_len, idx[k],
						&s->chans[idx[k]].tch);
	}
	if (rc && !rmig_sess_err(s))
		rmig_sess_fail(s, rc, "connecting %s data channels of rail %s: %s", s->tp_ops->name,
			       rl->name, rmig_strerror(rc));
	return rc;
}

/* "fd:N": 0 if N is a connected stream socket; else -EINVAL, said (N stays the caller's). */
static int fd_usable(struct rmig_session *s, int fd)
{
	int rc = rmig_sock_check_conn(fd);

	if (rc)
		rmig_err(&s->log, "fd:%d: not a connected stream socket: %s", fd, strerror(-rc));
	return rc ? -EINVAL : 0;
}

int rmig_connect(rmig_session *s, const char *uri)
{
	enum rmig_transport_kind kind;
	char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX];
	struct rmig_msg_hello *hello = NULL;
	struct rmig_msg_hello_ack ack;
	uint8_t hello_hash[RMIG_HELLO_HASH_LEN];
	struct rmig_ctl_hdr h;
	uint8_t *buf = NULL;
	int rc, n, given, fd = -1;

	if (!s || s->opts.role != RMIG_ROLE_SOURCE)
		return -EINVAL;
	if (s->state != RMIG_S_NEW || s->ctl_fd >= 0 || s->local)
		return -EBUSY;
	if (uri && !strncmp(uri, "file:", 5) && s->resuming) {
		rmig_err(&s->log, "resume: a file target has nothing to resume");
		return -EINVAL;
	}
	if (uri && !strncmp(uri, "file:", 5))
		return connect_local(s, uri + 5);
	kind = s->opts.transport;
	given = rmig_uri_fd(uri, &fd);
	if (given > 0) {
		snprintf(host, sizeof(host), "fd");
		snprintf(port, sizeof(port), "%d", fd);
		if (fd_usable(s, fd))
			return -EINVAL;
	} else if (given < 0 || rmig_uri_parse(uri, &kind, host, port)) {
		rmig_err(&s->log, "bad address '%s': expected [tcp://|rdma://]HOST:PORT or fd:N",
			 uri ? uri : "(null)");
		return -EINVAL;
	}
	if (!s->nblocks) {
		rmig_err(&s->log, "no ram blocks declared before connect");
		return -EINVAL;
	}
	if (given > 0)
		s->ctl_fd = fd; /* past the argument checks: the session's from here on */
	s->t_start_ns = rmig_now_ns();
	rmig_sess_place_prefetch(s); /* the topology, while connecting */
	rc = rmig_sess_start_features(s); /* RMIG_F_PREPARE overlaps the handshake */
	if (rc)
		return rc;
	/* a resuming session keeps the id of the one it resumes */
	if (!s->resuming &&
	    getrandom(&s->session_id, sizeof(s->session_id), 0) != sizeof(s->session_id))
		s->session_id = s->t_start_ns ^ (uint64_t)getpid() << 32;

	if (given <= 0)
		rc = rmig_sock_connect(host, port, s->opts.timeout_ms, &s->ctl_fd);
	if (rc)
		return rmig_sess_fail(s, rc, "connecting to %s:%s: %s", host, port,
				      rmig_sock_resolve_why()[0] ? rmig_sock_resolve_why() :
								   rmig_strerror(rc));
	rmig_sock_tune(s->ctl_fd, 1, 0);
	rc = rmig_sock_set_timeouts(s->ctl_fd, s->opts.timeout_ms, s->opts.timeout_ms);
	if (rc)
		return rmig_sess_fail(s, rc, "control socket: %s", strerror(-rc));
	rc = rmig_ctl_start_tls(s);
	if (rc)
		return rc;
	rc = pick_transport(s, kind);
	if (rc)
		return rc;

	hello = calloc(1, sizeof(*hello));
	buf = malloc(RMIG_CTL_MAX);
	if (!hello || !buf) {
		rc = rmig_sess_fail(s, -ENOMEM, "no memory for the handshake");
		goto out;
	}
	hello_fill(s, hello);
	n = rmig_hello_encode(hello, buf, RMIG_CTL_MAX);
	rmig_auth_hello_hash(buf, (size_t)n, hello_hash);
	rc = rmig_ctl_send(s, RMIG_MSG_HELLO, buf, (uint32_t)n);
	rmig_for_each_feature(s, f, src_handshake) /* the key proof */
		if (!rc)
			rc = f->src_handshake(s, hello_hash, buf);
	if (!rc)
		rc = rmig_ctl_expect(s, RMIG_MSG_HELLO_ACK, &h, buf);
	if (rc)
		goto out;
	if (rmig_hello_ack_decode(buf, h.len, &ack) || ack.version != RMIG_PROTO_VERSION) {
		rc = rmig_sess_fail(s, -EPROTO, "control connection: bad HELLO_ACK");
		goto out;
	}
	rmig_for_each_feature(s, f, src_hello_ack)
		if (!rc)
			rc = f->src_hello_ack(s, ack.caps);
	if (rc)
		goto out;
	/* a destination of zeros: zero pages never sent before need no marker */
	for (unsigned int i = 0; i < s->nblocks && (ack.caps & RMIG_ACK_ZEROED) && !rc; i++) {
		s->blocks[i].sent = rmig_bitmap_new(s->blocks[i].npages);
		if (!s->blocks[i].sent)
			rc = rmig_sess_fail(s, -ENOMEM, "no memory for the sent-page maps");
	}
	if (rc)
		goto out;
	rc = tp_create(s);
	if (!rc)
		rc = rmig_rails_source_take(s, &ack, buf);
	s->rail[0].ep_len = ack.ep_len;
	memcpy(s->rail[0].ep, ack.ep, ack.ep_len);
	if (!rc)
		rc = rmig_rails_source_use(s);
	for (unsigned int k = 0; k < s->nrails_used && !rc; k++)
		rc = connect_rail(s, s->rail_used[k]);
	if (!rc)
		rc = reg_blocks(s, false);
	/*
	 * The destination sends one REG per block, in order, after HELLO_ACK
	 * (and RAILS): all of rail 0's, then all of rail 1's...
	 */
	for (unsigned int k = 0; k < s->nblocks * s->nrails && !rc; k++) {
		unsigned int i = k % s->nblocks, r = k / s->nblocks;
		struct rmig_msg_reg m;

		rc = rmig_ctl_expect(s, RMIG_MSG_REG, &h, buf);
		if (!rc && (rmig_reg_decode(buf, h.len, &m) || m.block != i))
			rc = rmig_sess_fail(s, -EBADMSG, "control connection: bad REG for block %u",
					    i);
		/* a destination whose pages come by message only exposes no memory (reg_blocks()) */
		if (!rc && !(rmig_sess_by_message_only(s) && !m.desc_len) && !s->rail[r].off)
			rc = s->tp_ops->set_remote(s->rail[r].tp, i, s->blocks[i].length, m.desc,
						   m.desc_len);
	}
	if (!rc)
		rc = session_start(s);
	if (!rc)
		rc = rmig_sess_started_features(s); /* a paused postcopy goes on */
	if (!rc)
		rmig_info(&s->log, "connected to %s:%s over %s with %u channels", host, port,
			  s->tp_ops->name, s->nchannels);
out:
	free(hello);
	free(buf);
	return rc ? (rmig_sess_err(s) ? rmig_sess_err(s) : rc) : 0;
}

/* ---- destination: listen and accept ---- */

int rmig_listen(rmig_session *s, const char *uri)
{
	enum rmig_transport_kind kind = RMIG_TRANSPORT_AUTO;
	char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX];
	int rc, fd = -1;

	if (!s || s->opts.role != RMIG_ROLE_DEST)
		return -EINVAL;
	if (s->listen_fd >= 0 || s->given_fd >= 0 || s->state != RMIG_S_NEW || s->local)
		return -EBUSY;
	if (uri && !strncmp(uri, "file:", 5))
		return local_path(s, uri + 5); /* opened and checked by rmig_accept() */
	rc = rmig_uri_fd(uri, &fd);
	if (rc > 0) { /* the control connection, already made: rmig_accept() takes it */
		if (fd_usable(s, fd))
			return -EINVAL;
		s->given_fd = fd;
		rmig_sess_place_prefetch(s); /* the topology, while the source comes */
		return 0;
	}
	if (rc < 0 || rmig_uri_parse(uri, &kind, host, port)) {
		rmig_err(&s->log, "bad address '%s': expected [tcp://]HOST:PORT or fd:N",
			 uri ? uri : "(null)");
		return -EINVAL;
	}
	rc = rmig_sock_listen(host, port, &s->listen_fd);
	if (rc)
		rmig_err(&s->log, "listening on %s:%s: %s", host, port,
			 rmig_sock_resolve_why()[0] ? rmig_sock_resolve_why() : rmig_strerror(rc));
	else
		rmig_sess_place_prefetch(s); /* the topology, while the source comes */
	return rc;
}

int rmig_peer_state(rmig_session *s, struct rmig_state_info *out, unsigned int max)
{
	if (!s || (!out && max))
		return -EINVAL;
	if (!s->tp || !s->local || !s->tp_ops->blobs)
		return 0;
	return s->tp_ops->blobs(s->tp, out, max);
}

int rmig_listen_port(rmig_session *s)
{
	if (!s || s->listen_fd < 0)
		return -EINVAL;
	return rmig_sock_local_port(s->listen_fd);
}

static int check_layout(struct rmig_session *s, const struct rmig_msg_hello *m, char *why,
			size_t wlen)
{
	if (m->nblocks != s->nblocks) {
		snprintf(why, wlen, "source has %u ram blocks, destination %u", m->nblocks,
			 s->nblocks);
		return -EPROTO;
	}
	for (unsigned int i = 0; i < m->nblocks; i++) {
		const struct rmig_wire_block *w = &m->blocks[i];
		unsigned int j;
		struct rmig_block *b = rmig_block_find(s, w->name, &j);

		if (!b) {
			snprintf(why, wlen, "ram block '%s' unknown at the destination", w->name);
			return -EPROTO;
		}
		if (b->length != w->length || b->page_size != w->page_size) {
			snprintf(why, wlen,
				 "ram block '%s': source %llu bytes in %u-byte pages, "
				 "destination %llu bytes in %u-byte pages",
				 w->name, (unsigned long long)w->length, w->page_size,
				 (unsigned long long)b->length, b->page_size);
			return -EPROTO;
		}
		if (j != i) { /* keep the source's order: block ids on the wire are indexes */
			struct rmig_block tmp = s->blocks[i];

			s->blocks[i] = s->blocks[j];
			s->blocks[j] = tmp;
		}
	}
	return 0;
}

static int refuse(struct rmig_session *s, int err, const char *why)
{
	return rmig_sess_fail(s, err, "refusing the %s: %s", s->local ? "file" : "source", why);
}

/*
 * What struct rmig_block_info promises a layout callback, checked before it
 * sees the source's layout: a page size that is a power of two from 512
 * bytes to 1 GiB, a length that is a non-zero multiple of it within an
 * address space, and names that are not empty and differ.
 */
static int sane_layout(const struct rmig_msg_hello *m, char *why, size_t wlen)
{
	for (unsigned int i = 0; i < m->nblocks; i++) {
		const struct rmig_wire_block *w = &m->blocks[i];
		char esc[4 * RMIG_NAME_MAX];
		const char *bad = NULL;

		rmig_escape(esc, sizeof(esc), w->name);
		if (!w->name[0])
			bad = "has no name";
		else if (w->page_size < 512 || w->page_size > (1u << 30) ||
			 (w->page_size & (w->page_size - 1)))
			bad = "has a page size that is not a power of two from 512 bytes to 1 GiB";
		else if (!w->length || w->length % w->page_size || w->length > (1ull << 57))
			bad = "has a length that is not a whole number of its pages";
		for (unsigned int j = 0; j < i && !bad; j++)
			if (!strcmp(m->blocks[j].name, w->name))
				bad = "is named twice";
		if (bad) {
			snprintf(why, wlen,
				 "malformed layout: ram block %u ('%s', %llu bytes, %u-byte pages) %s",
				 i, esc, (unsigned long long)w->length, w->page_size, bad);
			return -EPROTO;
		}
	}
	return 0;
}

/* The source's (or the file's) layout: the layout callback, then the check. */
static int take_layout(struct rmig_session *s, const struct rmig_msg_hello *hello)
{
	struct rmig_block_info *info = NULL;
	char why[4 * RMIG_NAME_MAX + 256];
	int rc;

	rc = sane_layout(hello, why, sizeof(why));
	if (rc)
		return refuse(s, rc, why);

	/* a resumed session has the old one's blocks: the layout is known */
	if (s->opts.layout_fn && !s->resuming) {
		info = calloc(hello->nblocks ? hello->nblocks : 1, sizeof(*info));
		if (!info)
			return rmig_sess_fail(s, -ENOMEM, "no memory for the layout");
		for (unsigned int i = 0; i < hello->nblocks; i++) {
			memcpy(info[i].name, hello->blocks[i].name, RMIG_NAME_MAX);
			info[i].length = hello->blocks[i].length;
			info[i].page_size = hello->blocks[i].page_size;
		}
		rc = s->opts.layout_fn(s->opts.layout_arg, s, info, hello->nblocks);
		free(info);
		if (rc) {
			snprintf(why, sizeof(why), "the destination declined the layout: %s",
				 strerror(rc < 0 ? -rc : EINVAL));
			return refuse(s, rc < 0 ? rc : -EINVAL, why);
		}
	}
	rc = check_layout(s, hello, why, sizeof(why));
	if (rc)
		return refuse(s, rc, why);
	return rmig_sess_start_features(s); /* RMIG_F_PREPARE: while the channels open */
}

static int dest_handshake(struct rmig_session *s, uint8_t *buf, struct rmig_msg_hello *hello)
{
	struct rmig_msg_hello_ack ack = { .version = RMIG_PROTO_VERSION };
	int rc, n;

	/* TLS, HELLO and the key proof: see gate.c */
	rc = rmig_gate_accept(s, buf, hello);
	rmig_for_each_feature(s, f, dest_hello)
		if (!rc)
			rc = f->dest_hello(s, hello);
	if (rc)
		return rc;
	if (!s->tp_ops)
		s->tp_ops = rmig_tp_find(hello->transport, NULL, 0); /* the gate checked it */
	s->session_id = hello->session_id;
	s->nchannels = hello->nchannels;
	s->verify = hello->caps & RMIG_CAP_VERIFY;
	rc = take_layout(s, hello);
	if (rc)
		return rc;

	/*
	 * A feature may need to hear of every page (postcopy places each);
	 * a resumed session's memory holds what the old one wrote.
	 */
	if ((s->opts.flags & RMIG_F_ZEROED) && !rmig_sess_every_page(s) && !s->resumed)
		ack.caps |= RMIG_ACK_ZEROED;
	if (s->resumed)
		ack.caps |= RMIG_ACK_RESUMED;
	if (s->fo_agreed) /* failover.c's dest_hello: the source takes RAIL_DOWN */
		ack.caps |= RMIG_ACK_FAILOVER;
	if (s->fb_agreed) /* and FALLBACK */
		ack.caps |= RMIG_ACK_FALLBACK;
	rc = tp_create(s);
	if (!rc)
		rc = s->tp_ops->listen(s->tp, s->ctl_fd, ack.ep, &ack.ep_len);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) :
		       rmig_sess_fail(s, rc, "opening %s data channels: %s", s->tp_ops->name,
				      rc == -EAFNOSUPPORT ?
					      "the control connection is not over IP (fd: a unix "
					      "socket?), and they listen on its address" :
					      strerror(-rc));
	rc = rmig_rails_dest_open(s, &ack);
	if (rc)
		return rc;
	rc = rmig_pool_create(s->opts.load_threads, &s->pool);
	if (rc)
		return rmig_sess_fail(s, rc, "starting load threads: %s", strerror(-rc));
	n = rmig_hello_ack_encode(&ack, buf, RMIG_CTL_MAX);
	rc = rmig_ctl_send(s, RMIG_MSG_HELLO_ACK, buf, (uint32_t)n);
	if (!rc)
		rc = rmig_rails_dest_send(s);
	if (!rc)
		rc = reg_blocks(s, true);
	return rc;
}

/*
 * "file:PATH": the backend opens and checks the whole file, its layout
 * stands in for the HELLO; the channels are reading threads, and the file's
 * own COMPLETE (up->ctl) ends the restore.
 */
static int accept_local(struct rmig_session *s)
{
	struct rmig_msg_hello *hello = calloc(1, sizeof(*hello));
	int rc;

	if (!hello)
		return rmig_sess_fail(s, -ENOMEM, "no memory for the layout");
	s->t_start_ns = rmig_now_ns();
	s->nchannels = s->opts.channels;
	rc = tp_create(s);
	if (!rc)
		rc = s->tp_ops->layout(s->tp, hello);
	if (!rc) {
		s->verify = hello->caps & RMIG_CAP_VERIFY;
		rc = take_layout(s, hello);
	}
	free(hello);
	if (!rc)
		rc = rmig_pool_create(s->opts.load_threads, &s->pool);
	for (unsigned int i = 0; i < s->nchannels && !rc; i++) {
		struct rmig_tp_chan *ch;

		rc = s->tp_ops->accept(s->tp, &ch);
		if (!rc)
			s->chans[ch->idx].tch = ch;
	}
	if (!rc)
		rc = reg_blocks(s, false);
	if (!rc)
		rc = session_start(s);
	if (rc && !rmig_sess_err(s))
		rmig_sess_fail(s, rc, "restoring from file %s: %s", s->file_path, rmig_strerror(rc));
	if (!rc)
		rmig_info(&s->log, "restoring from file %s with %u channels", s->file_path,
			  s->nchannels);
	return rc ? (rmig_sess_err(s) ? rmig_sess_err(s) : rc) : 0;
}

/*
 * Take rail @r's data channels (those rmig_chan_rail() puts on it) in the order they
 * come: each must be one of this rail's and new (@seen).
 */
static int accept_rail(struct rmig_session *s, unsigned int r, bool *seen)
{
	const struct rmig_rail *rl = &s->rail[r];
	struct rmig_tp_chan *chs[RMIG_CHANNELS_MAX];
	unsigned int n = 0, got = 0;
	int rc = 0;

	for (unsigned int i = 0; i < s->nchannels; i++)
		n += rmig_chan_rail(s, i) == r;
	if (s->tp_ops->accept_n && n > 1) {
		rc = s->tp_ops->accept_n(rl->tp, n, chs);
		got = rc ? 0 : n;
	} else {
		for (; got < n && !rc; got += !rc)
			rc = s->tp_ops->accept(rl->tp, &chs[got]);
	}
	/* a backend that said nothing more still leaves a cause */
	if (rc && !rmig_sess_err(s))
		rmig_sess_fail(s, rc, "accepting %s data channels of rail %s: %s", s->tp_ops->name,
			       rl->name, rmig_strerror(rc));
	for (unsigned int k = 0; k < got; k++) {
		unsigned int idx = chs[k]->idx;

		if (!rc && rmig_chan_rail(s, idx) != r)
			rc = rmig_sess_fail(s, -EPROTO, "data channel %u connected on rail %s, not %s",
					    idx, rl->name, s->rail[rmig_chan_rail(s, idx)].name);
		else if (!rc && seen[idx])
			rc = rmig_sess_fail(s, -EPROTO, "data channel %u connected twice", idx);
		if (rc) {
			s->tp_ops->chan_close(chs[k]);
			continue;
		}
		seen[idx] = true;
		s->chans[idx].tch = chs[k];
	}
	return rc;
}

/*
 * Destination, while the data channels come: a source that hangs up the
 * control connection gave up (a failed source half-closes it after its
 * ERROR). The session fails at once with the source's cause, not after the
 * data channels' timeout with none. What the source sends meanwhile and
 * keeps the connection open for (a message right after its channels
 * connected, before this side took them all) is the control thread's.
 */
struct ctl_watch {
	struct rmig_session *s;
	int stop_fd;
	pthread_t th;
	bool on;
};

static void *ctl_watch_main(void *arg)
{
	struct ctl_watch *w = arg;
	struct pollfd p[3] = { { .fd = w->s->ctl_fd, .events = POLLRDHUP },
			       { .fd = w->stop_fd, .events = POLLIN },
			       { .fd = w->s->wake_fd, .events = POLLIN } };

	for (;;) {
		int n = poll(p, 3, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || p[1].revents || p[2].revents)
			return NULL;
		if (p[0].revents & (POLLRDHUP | POLLHUP | POLLERR))
			break;
	}
	(void)rmig_ctl_last_words(w->s, "before opening every data channel");
	return NULL;
}

static void ctl_watch_start(struct rmig_session *s, struct ctl_watch *w)
{
	w->s = s;
	w->on = false;
	w->stop_fd = s->ctl_fd >= 0 ? eventfd(0, EFD_CLOEXEC) : -1;
	if (w->stop_fd < 0)
		return; /* no watch: the data channels' timeout still ends the wait */
	w->on = !pthread_create(&w->th, NULL, ctl_watch_main, w);
	if (!w->on)
		close(w->stop_fd);
}

static void ctl_watch_stop(struct ctl_watch *w)
{
	if (!w->on)
		return;
	(void)!eventfd_write(w->stop_fd, 1);
	pthread_join(w->th, NULL);
	close(w->stop_fd);
	w->on = false;
}

int rmig_accept(rmig_session *s)
{
	struct ctl_watch watch = { .on = false };
	struct rmig_msg_hello *hello;
	uint8_t *buf;
	bool *seen = NULL;
	int rc;

	if (s && s->opts.role == RMIG_ROLE_DEST && s->local && s->state == RMIG_S_NEW && !s->tp)
		return accept_local(s);
	if (!s || s->opts.role != RMIG_ROLE_DEST || (s->listen_fd < 0 && s->given_fd < 0))
		return -EINVAL;
	if (s->state != RMIG_S_NEW || s->ctl_fd >= 0)
		return -EBUSY;
	hello = calloc(1, sizeof(*hello));
	buf = malloc(RMIG_CTL_MAX);
	if (!hello || !buf) {
		rc = rmig_sess_fail(s, -ENOMEM, "no memory for the handshake");
		goto out;
	}
	rc = dest_handshake(s, buf, hello);
	if (!rc) {
		seen = calloc(s->nchannels, sizeof(*seen));
		if (!seen)
			rc = rmig_sess_fail(s, -ENOMEM, "no memory");
	}
	/* rail by rail, as the source connects them (connect_rail()) */
	if (!rc)
		rc = rmig_rails_dest_use(s, buf);
	if (!rc)
		ctl_watch_start(s, &watch);
	for (unsigned int k = 0; k < s->nrails_used && !rc; k++)
		rc = accept_rail(s, s->rail_used[k], seen);
	ctl_watch_stop(&watch);
	if (!rc && rmig_sess_err(s)) /* the source gave up as the last channel came */
		rc = rmig_sess_err(s);
	if (!rc)
		rc = session_start(s);
	if (!rc)
		rc = rmig_sess_started_features(s); /* a paused postcopy goes on */
	if (!rc)
		rmig_info(&s->log, "accepted a source over %s with %u channels", s->tp_ops->name,
			  s->nchannels);
out:
	free(seen);
	free(hello);
	free(buf);
	return rc ? (rmig_sess_err(s) ? rmig_sess_err(s) : rc) : 0;
}
