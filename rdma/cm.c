/* SPDX-License-Identifier: MIT */
/*
 * cm.c - connection management: the destination listens with librdmacm on
 * the control socket's local address and accepts one RC queue pair per
 * channel, checking the CM private data (magic, version, session, channel);
 * the source connects each channel to the same address. Each channel gets
 * its own completion queue, polled by that channel's thread only.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "place.h"
#include "rdma_int.h"
#include "sock.h"

static void priv_encode(uint8_t *b, uint16_t chan, uint64_t sid)
{
	rmig_put_be32(b, RMIG_RDMA_CM_MAGIC);
	rmig_put_be16(b + 4, RMIG_PROTO_VERSION);
	rmig_put_be16(b + 6, chan);
	rmig_put_be64(b + 8, sid);
}

int rmig_rdma_priv_check(const void *pd, size_t len, uint64_t sid, unsigned int nchannels,
			 unsigned int *chan_p)
{
	const uint8_t *b = pd;

	/* rdma_cm may pad private data: at least our length, the rest ignored */
	if (!b || len < RMIG_RDMA_CM_PRIV_LEN || rmig_get_be32(b) != RMIG_RDMA_CM_MAGIC ||
	    rmig_get_be16(b + 4) != RMIG_PROTO_VERSION || rmig_get_be64(b + 8) != sid ||
	    rmig_get_be16(b + 6) >= nchannels)
		return -EPROTO;
	*chan_p = rmig_get_be16(b + 6);
	return 0;
}

int rmig_rdma_cm_wait(struct rmig_rdma_tp *t, struct rdma_cm_event **ev_p)
{
	int rc = rmig_wait_readable(t->ech->fd, t->wake_fd, t->base.p.timeout_ms);

	return rc ? rc : rmig_rv_get_event(t->ech, ev_p);
}

int rmig_rdma_pd_init(struct rmig_rdma_tp *t, struct ibv_context *verbs)
{
	int rc;

	if (t->pd)
		return t->verbs == verbs ? 0 : RMIG_RDMA_FAIL(t, -EXDEV, "rdma: channels on two devices");
	rc = rmig_rv_alloc_pd(verbs, &t->pd);
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "rdma: allocating a protection domain on %s: %s",
				 ibv_get_device_name(verbs->device), strerror(-rc));
	t->verbs = verbs;
	return 0;
}

static int track(struct rmig_rdma_tp *t, struct rmig_rdma_chan *c)
{
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	if (t->shut)
		rc = -ECANCELED;
	else
		t->chans[t->nchans++] = c;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* CQ, QP and buffers for a channel whose cm id knows its device. */
static int chan_setup(struct rmig_rdma_tp *t, struct rmig_rdma_chan *c)
{
	const struct rmig_tp_params *p = &t->base.p;
	bool src = p->role == RMIG_ROLE_SOURCE;
	struct ibv_qp_init_attr qa = { 0 };
	int rc;

	rc = rmig_rdma_pd_init(t, c->id->verbs);
	if (!rc)
		rc = rmig_rv_create_comp_channel(t->verbs, &c->cc);
	if (!rc)
		rc = rmig_rv_create_cq(t->verbs, RMIG_RDMA_SQ_DEPTH + RMIG_RDMA_RECV_BUFS + 8, c->cc, &c->cq);
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: completion queue: %s", c->base.idx,
				 strerror(-rc));
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = RMIG_RDMA_SQ_DEPTH + 4;
	qa.cap.max_recv_wr = RMIG_RDMA_RECV_BUFS;
	qa.cap.max_send_sge = 2;
	qa.cap.max_recv_sge = 1;
	rc = rmig_rv_create_qp(c->id, t->pd, &qa);
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: creating the queue pair: %s",
				 c->base.idx, strerror(-rc));
	c->qp_num = c->id->qp->qp_num;
	if (src) {
		c->hdrs = calloc(RMIG_RDMA_SQ_DEPTH, RMIG_FRAME_HDR_LEN);
		rc = c->hdrs ? rmig_rv_reg_mr(t->pd, c->hdrs, RMIG_RDMA_SQ_DEPTH * RMIG_FRAME_HDR_LEN,
					      IBV_ACCESS_LOCAL_WRITE, &c->hdr_mr)
			     : -ENOMEM;
	} else {
		/* the largest SEND: a state chunk, or a postcopy write (extent_max here) */
		c->rbuf_size = RMIG_FRAME_HDR_LEN +
			       (p->extent_max > RMIG_STATE_CHUNK_MAX ? p->extent_max : RMIG_STATE_CHUNK_MAX);
		c->rbuf = malloc(c->rbuf_size * RMIG_RDMA_RECV_BUFS);
		/* on the device's NUMA node, before the first touch */
		if (c->rbuf)
			rmig_place_membind_dev(p->place, RMIG_DEV_IB,
					       ibv_get_device_name(c->id->verbs->device), c->rbuf,
					       c->rbuf_size * RMIG_RDMA_RECV_BUFS);
		rc = c->rbuf ? rmig_rv_reg_mr(t->pd, c->rbuf, c->rbuf_size * RMIG_RDMA_RECV_BUFS,
					      IBV_ACCESS_LOCAL_WRITE, &c->rbuf_mr)
			     : -ENOMEM;
		for (unsigned int i = 0; !rc && i < RMIG_RDMA_RECV_BUFS; i++) {
			c->slots[i].c = c;
			c->slots[i].buf = c->rbuf + i * c->rbuf_size;
			rc = rmig_rdma_post_recv_slot(c, &c->slots[i]);
		}
	}
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: staging buffers: %s", c->base.idx,
				 strerror(-rc));
	return rmig_rv_req_notify_cq(c->cq);
}

static struct rmig_rdma_chan *chan_alloc(struct rmig_rdma_tp *t, unsigned int idx)
{
	struct rmig_rdma_chan *c = calloc(1, sizeof(*c));

	if (c) {
		c->base.tp = &t->base;
		c->base.idx = idx;
	}
	return c;
}

/* Whether @id's port is known to be down (not active), and its state in *@st_p. */
static bool port_down(struct rdma_cm_id *id, enum ibv_port_state *st_p)
{
	*st_p = IBV_PORT_NOP;
	return id && id->verbs && id->port_num &&
	       !rmig_rv_port_state(id->verbs, id->port_num, st_p) && *st_p != IBV_PORT_ACTIVE;
}

/*
 * Connections closed while their port is down. Destroying a connected id
 * sends a disconnect request, and under soft-RoCE one connection-manager
 * message sent through a port that is down leaves the device's connection
 * manager deaf to every later request, for every process, from then on.
 * So such an id is not destroyed then: it moves to this process-wide event
 * channel (whose events nobody reads, so destroying it never waits), and
 * is destroyed once its port is up again, before this process sends its
 * next connection request or listens anew (graves_reap()), or at exit.
 */
#define GRAVES_MAX 256
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rdma_event_channel *grave_ech;
static struct rdma_cm_id *graves[GRAVES_MAX];
static unsigned int ngraves;

/* Keep @id until its port is up: true, or false where it must be destroyed now. */
static bool grave_keep(struct rdma_cm_id *id)
{
	bool kept = false;

	pthread_mutex_lock(&grave_lock);
	if (ngraves < GRAVES_MAX && (grave_ech || !rmig_rv_create_channel(&grave_ech)) &&
	    !rmig_rv_migrate_id(id, grave_ech)) {
		graves[ngraves++] = id;
		kept = true;
	}
	pthread_mutex_unlock(&grave_lock);
	return kept;
}

/* Destroy the kept ids whose port is up again. */
static void graves_reap(void)
{
	pthread_mutex_lock(&grave_lock);
	for (unsigned int i = 0; i < ngraves;) {
		enum ibv_port_state st;

		if (port_down(graves[i], &st)) {
			i++;
			continue;
		}
		rmig_rv_destroy_id(graves[i]);
		graves[i] = graves[--ngraves];
	}
	pthread_mutex_unlock(&grave_lock);
}

/*
 * 0 if @id's port is up. A connection request sent or awaited through a
 * port whose link is down fails, and under soft-RoCE it may leave the
 * device's connection manager deaf to later ones: fail at once, so a
 * caller that retries (a resume) tries again once the link is back.
 */
static int port_up(struct rmig_rdma_tp *t, struct rdma_cm_id *id, const char *what)
{
	enum ibv_port_state st;

	if (!port_down(id, &st)) /* up, or unknown: then the connection manager says */
		return 0;
	return RMIG_RDMA_FAIL(t, -ENETDOWN, "rdma: %s: device %s port %u is %s (its link is down)",
			      what, ibv_get_device_name(id->verbs->device), id->port_num,
			      ibv_port_state_str(st));
}

int rmig_rdma_route(const struct sockaddr_storage *ss, bool resolve, char *dev, size_t dev_len,
		    char *why, size_t why_len)
{
	struct rdma_event_channel *ech = NULL;
	struct rdma_cm_event *ev = NULL;
	struct rdma_cm_id *id = NULL;
	enum ibv_port_state st;
	char host[64];
	int rc;

	*dev = '\0';
	rmig_sockaddr_str(ss, false, host, sizeof(host));
	/* an id of its own event channel: never connected, so no message goes out */
	rc = rmig_rv_create_channel(&ech);
	if (!rc)
		rc = rmig_rv_create_id(ech, NULL, &id);
	if (!rc && resolve) {
		rc = rmig_rv_resolve_addr(id, (struct sockaddr *)ss, 2000);
		if (!rc)
			rc = rmig_wait_readable(ech->fd, -1, 3000);
		if (!rc)
			rc = rmig_rv_get_event(ech, &ev);
		if (!rc && ev->event != RDMA_CM_EVENT_ADDR_RESOLVED)
			rc = -EHOSTUNREACH;
	} else if (!rc) {
		rc = rmig_rv_bind_addr(id, (struct sockaddr *)ss);
	}
	if (!rc && !id->verbs)
		rc = -ENODEV;
	if (rc) {
		snprintf(why, why_len, "no RDMA device %s %s (%s)", resolve ? "reaches" : "holds", host,
			 ev && ev->event != RDMA_CM_EVENT_ADDR_RESOLVED ? rdma_event_str(ev->event)
									 : strerror(-rc));
		rc = -ENODEV;
	} else {
		snprintf(dev, dev_len, "%s", ibv_get_device_name(id->verbs->device));
		if (port_down(id, &st)) {
			rc = -ENETDOWN;
			snprintf(why, why_len, "device %s port %u is %s (its link is down)", dev,
				 id->port_num, ibv_port_state_str(st));
		}
	}
	if (ev)
		rmig_rv_ack_event(ev);
	rmig_rv_destroy_id(id);
	rmig_rv_destroy_channel(ech);
	return rc;
}

int rmig_rdma_reach(struct rmig_tp *tp, int ctl_fd, char *dev, size_t dev_len, char *why,
		    size_t why_len)
{
	bool src = tp->p.role == RMIG_ROLE_SOURCE;
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = rmig_tp_addr(&tp->p, ctl_fd, src, 0, &ss, &sl);

	if (rc) {
		*dev = '\0';
		snprintf(why, why_len, "no address: %s", strerror(-rc));
		return rc;
	}
	return rmig_rdma_route(&ss, src, dev, dev_len, why, why_len);
}

int rmig_rdma_listen(struct rmig_tp *tp, int ctl_fd, uint8_t *ep, uint16_t *ep_len_p)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(tp);
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc;

	rc = rmig_tp_addr(&tp->p, ctl_fd, false, 0, &ss, &sl);
	if (!rc)
		rc = rmig_rv_create_id(t->ech, t, &t->listen_id);
	if (!rc)
		rc = rmig_rv_bind_addr(t->listen_id, (struct sockaddr *)&ss);
	if (rc)
		return RMIG_RDMA_FAIL(t, rc == -EADDRNOTAVAIL || rc == -ENODEV ? -ENODEV : rc,
				 "rdma: no RDMA device on this side's control address (%s)",
				 strerror(-rc));
	if (!t->listen_id->verbs)
		return RMIG_RDMA_FAIL(t, -ENODEV, "rdma: the control address has no RDMA device");
	rc = port_up(t, t->listen_id, "listening for data channels");
	if (rc)
		return rc;
	graves_reap();
	rc = rmig_rv_listen(t->listen_id, RMIG_CHANNELS_MAX);
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "rdma: listen: %s", strerror(-rc));
	rc = rmig_rdma_pd_init(t, t->listen_id->verbs);
	if (rc)
		return rc;
	rmig_put_be16(ep, ntohs(rmig_rv_get_src_port(t->listen_id))); /* network order */
	*ep_len_p = 2;
	return 0;
}

/* Close the channels of @cs[0..n) (NULL entries skipped), then free @cs. */
static void chans_drop(struct rmig_rdma_chan **cs, unsigned int n)
{
	for (unsigned int i = 0; cs && i < n; i++)
		if (cs[i])
			rmig_rdma_chan_close(&cs[i]->base);
	free(cs);
}

/* Which of @cs[0..n) has @id, or NULL. */
static struct rmig_rdma_chan *chan_of(struct rmig_rdma_chan **cs, unsigned int n,
				      const struct rdma_cm_id *id)
{
	for (unsigned int i = 0; i < n; i++)
		if (cs[i] && cs[i]->id == id)
			return cs[i];
	return NULL;
}

/* An event no step of a connection expects: its error, named. */
static int cm_unexpected(struct rmig_rdma_tp *t, const char *what, enum rdma_cm_event_type got,
			 int status)
{
	return RMIG_RDMA_FAIL(t, got == RDMA_CM_EVENT_REJECTED ? -ECONNREFUSED : -EPROTO,
			      "rdma: %s: got %s (status %d)", what, rdma_event_str(got), status);
}

/*
 * A connection request for the listener: check who it is, set up its
 * channel and accept it. 0 with the channel in *@c_p (its ESTABLISHED
 * still to come), or an error with the request refused.
 */
static int accept_req(struct rmig_rdma_tp *t, struct rdma_cm_event *ev, bool room,
		      struct rmig_rdma_chan **c_p)
{
	const struct rmig_tp_params *p = &t->base.p;
	struct rdma_conn_param cp = { .responder_resources = 1, .initiator_depth = 1,
				      .rnr_retry_count = 7, .retry_count = 7 };
	struct rdma_cm_id *id = ev->id;
	struct rmig_rdma_chan *c;
	unsigned int chan;
	int rc;

	if (rmig_rdma_priv_check(ev->param.conn.private_data, ev->param.conn.private_data_len,
				 p->session_id, p->nchannels, &chan)) {
		rmig_rv_reject(id, NULL, 0);
		rmig_rv_destroy_id(id);
		return RMIG_RDMA_FAIL(t, -EPROTO, "rdma: rejected a connection with bad private data "
					     "(wrong session, version or channel)");
	}
	if (!room) {
		rmig_rv_reject(id, NULL, 0);
		rmig_rv_destroy_id(id);
		return RMIG_RDMA_FAIL(t, -EPROTO, "rdma: rejected data channel %u: more channels "
					     "connected than the source announced", chan);
	}
	c = chan_alloc(t, chan);
	if (!c) {
		rmig_rv_reject(id, NULL, 0);
		rmig_rv_destroy_id(id);
		return -ENOMEM;
	}
	c->id = id;
	rc = chan_setup(t, c);
	if (!rc) {
		rc = rmig_rv_accept(id, &cp);
		if (rc)
			rc = RMIG_RDMA_FAIL(t, rc, "rdma: accepting data channel %u: %s", chan,
					    strerror(-rc));
	}
	if (rc) {
		rmig_rdma_chan_close(&c->base);
		return rc;
	}
	*c_p = c;
	return 0;
}

/*
 * Destination: accept @n data channels, their connection requests taken as
 * they come. A source connects its channels at once (connect_n), so their
 * requests and establishments interleave on the one event channel: each
 * step of each channel costs a round trip through the connection manager,
 * and n of them in flight take the time of one.
 */
int rmig_rdma_accept_n(struct rmig_tp *tp, unsigned int n, struct rmig_tp_chan **chs)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(tp);
	struct rmig_rdma_chan **cs = calloc(n, sizeof(*cs));
	unsigned int nreq = 0, ndone = 0;
	int rc = cs ? 0 : -ENOMEM;

	while (!rc && ndone < n) {
		struct rdma_cm_event *ev;
		struct rmig_rdma_chan *c;
		enum rdma_cm_event_type got;
		int status;

		rc = rmig_rdma_cm_wait(t, &ev);
		if (rc) {
			rc = RMIG_RDMA_FAIL(t, rc, "rdma: %s: %s",
					    nreq ? "accepting a data channel" : "waiting for a data channel",
					    rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			break;
		}
		got = ev->event;
		status = ev->status;
		if (got == RDMA_CM_EVENT_CONNECT_REQUEST) {
			c = NULL;
			rc = accept_req(t, ev, nreq < n, &c);
			rmig_rv_ack_event(ev);
			if (!rc)
				cs[nreq++] = c;
			continue;
		}
		c = chan_of(cs, nreq, ev->id);
		rmig_rv_ack_event(ev); /* ev is gone from here on */
		if (got != RDMA_CM_EVENT_ESTABLISHED || !c) {
			rc = cm_unexpected(t, nreq ? "accepting a data channel" : "waiting for a data channel",
					   got, status);
			break;
		}
		/*
		 * A SEND that finds no receive posted is retried after the timer in
		 * this side's RNR NAK; the CM leaves it at code 0, 655 ms. Postcopy
		 * pages stream by SEND: retry after 0.08 ms instead. Best effort.
		 */
		if (rmig_rv_set_min_rnr_timer(c->id->qp, RMIG_RDMA_MIN_RNR_TIMER))
			rmig_dbg(tp->p.log, "rdma: channel %u: could not shorten the RNR timer",
				 c->base.idx);
		rc = track(t, c);
		if (!rc)
			chs[ndone++] = &c->base;
	}
	if (rc) {
		chans_drop(cs, nreq);
		return rc;
	}
	free(cs);
	return 0;
}

int rmig_rdma_accept(struct rmig_tp *tp, struct rmig_tp_chan **ch_p)
{
	return rmig_rdma_accept_n(tp, 1, ch_p);
}

/* The next step of @c's connect, now that @got came for it: 0, or its error. */
static int connect_step(struct rmig_rdma_tp *t, struct rmig_rdma_chan *c,
			enum rdma_cm_event_type got, int status, unsigned int *ndone_p)
{
	const struct rmig_tp_params *p = &t->base.p;
	uint8_t priv[RMIG_RDMA_CM_PRIV_LEN];
	struct rdma_conn_param cp = { .private_data = priv, .private_data_len = sizeof(priv),
				      .responder_resources = 1, .initiator_depth = 1,
				      .rnr_retry_count = 7, .retry_count = 7 };
	int rc;

	switch (got) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		return rmig_rv_resolve_route(c->id, (int)p->timeout_ms);
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		rc = port_up(t, c->id, "connecting a data channel");
		if (!rc)
			graves_reap();
		if (!rc)
			rc = chan_setup(t, c);
		priv_encode(priv, (uint16_t)c->base.idx, p->session_id);
		if (!rc)
			rc = rmig_rv_connect(c->id, &cp); /* the private data is copied */
		return rc;
	case RDMA_CM_EVENT_ESTABLISHED:
		rc = track(t, c);
		if (!rc)
			(*ndone_p)++;
		return rc;
	default:
		return cm_unexpected(t, got == RDMA_CM_EVENT_ROUTE_ERROR ? "resolving the route"
					: got == RDMA_CM_EVENT_ADDR_ERROR ? "resolving the peer address"
									  : "connecting a data channel",
				     got, status);
	}
}

/*
 * Source: open channels @idx[0..n) to the peer of @ctl_fd at endpoint @ep,
 * all at once. Each channel's id goes through address resolution, route
 * resolution and connect on its own; their events interleave on the one
 * event channel, each with its id. Under soft-RoCE in a VM each step is a
 * few tens of ms: n channels in flight cost about what one does.
 */
int rmig_rdma_connect_n(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
			const unsigned int *idx, unsigned int n, struct rmig_tp_chan **chs)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(tp);
	struct rmig_rdma_chan **cs;
	struct sockaddr_storage ss;
	unsigned int ndone = 0;
	socklen_t sl;
	int rc;

	if (ep_len != 2)
		return RMIG_RDMA_FAIL(t, -EPROTO, "rdma: bad endpoint (%u bytes)", ep_len);
	rc = rmig_tp_addr(&tp->p, ctl_fd, true, rmig_get_be16(ep), &ss, &sl);
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: no address to connect to: %s", idx[0],
				 strerror(-rc));
	cs = calloc(n, sizeof(*cs));
	if (!cs)
		return -ENOMEM;
	for (unsigned int i = 0; i < n && !rc; i++) {
		cs[i] = chan_alloc(t, idx[i]);
		rc = cs[i] ? rmig_rv_create_id(t->ech, cs[i], &cs[i]->id) : -ENOMEM;
		if (!rc)
			rc = rmig_rv_resolve_addr(cs[i]->id, (struct sockaddr *)&ss,
						  (int)tp->p.timeout_ms);
		if (rc)
			rc = RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: resolving the peer address: %s",
					    idx[i], strerror(-rc));
	}
	while (!rc && ndone < n) {
		struct rdma_cm_event *ev;
		struct rmig_rdma_chan *c;
		enum rdma_cm_event_type got;
		int status;

		rc = rmig_rdma_cm_wait(t, &ev);
		if (rc) {
			rc = RMIG_RDMA_FAIL(t, rc, "rdma: connecting %u data channel%s: %s", n - ndone,
					    n - ndone == 1 ? "" : "s",
					    rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			break;
		}
		got = ev->event;
		status = ev->status;
		c = chan_of(cs, n, ev->id);
		rmig_rv_ack_event(ev); /* ev is gone from here on */
		rc = c ? connect_step(t, c, got, status, &ndone)
		       : cm_unexpected(t, "connecting a data channel", got, status);
		if (rc && c)
			RMIG_RDMA_FAIL(t, rc, "rdma: connecting channel %u: %s", c->base.idx,
				       strerror(-rc));
	}
	if (rc) {
		chans_drop(cs, n);
		return rc;
	}
	for (unsigned int i = 0; i < n; i++)
		chs[i] = &cs[i]->base;
	free(cs);
	return 0;
}

int rmig_rdma_connect(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
		      unsigned int idx, struct rmig_tp_chan **ch_p)
{
	return rmig_rdma_connect_n(tp, ctl_fd, ep, ep_len, &idx, 1, ch_p);
}

int rmig_rdma_locate(struct rmig_tp_chan *ch, char *name, size_t len)
{
	struct rmig_rdma_chan *c = container_of(ch, struct rmig_rdma_chan, base);

	if (!c->id || !c->id->verbs)
		return RMIG_DEV_NONE;
	snprintf(name, len, "%s", ibv_get_device_name(c->id->verbs->device));
	return RMIG_DEV_IB;
}

void rmig_rdma_chan_close(struct rmig_tp_chan *ch)
{
	struct rmig_rdma_tp *t;
	struct rmig_rdma_chan *c;
	enum ibv_port_state st;
	bool down;

	if (!ch)
		return;
	c = rmig_rdma_chan(ch);
	t = rmig_rdma_tp(ch->tp);
	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < t->nchans; i++) {
		if (t->chans[i] == c) {
			t->chans[i] = t->chans[--t->nchans];
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	/* through a port that is down, no disconnect request: see grave_keep() */
	down = c->id && c->id->qp && port_down(c->id, &st);
	if (c->id && c->id->qp && !down)
		rmig_rv_disconnect(c->id);
	rmig_rv_destroy_qp(c->id);
	rmig_rv_dereg_mr(c->hdr_mr);
	rmig_rv_dereg_mr(c->rbuf_mr);
	rmig_rv_destroy_cq(c->cq);
	rmig_rv_destroy_comp_channel(c->cc);
	if (!(down && grave_keep(c->id)))
		rmig_rv_destroy_id(c->id);
	free(c->hdrs);
	free(c->rbuf);
	free(c);
}
