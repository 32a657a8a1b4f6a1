/* SPDX-License-Identifier: MIT */
/*
 * cq.c - completion polling; each CQ is polled by its channel's thread only.
 * Source: a signalled completion retires every earlier request of the QP (RC
 * completes in order). Destination: the channel thread sleeps on its
 * completion channel and turns each received SEND into placement through the
 * core's upcalls. A receive completion means every earlier WRITE of that QP
 * is placed, so a SYNC frame seen here covers the channel's RAM writes.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "rdma_int.h"
#include "sock.h"

/* Whether the backend is shutting down: every waiting loop checks it. */
bool rmig_rdma_is_shut(struct rmig_rdma_tp *t)
{
	bool shut;

	pthread_mutex_lock(&t->lock);
	shut = t->shut;
	pthread_mutex_unlock(&t->lock);
	return shut;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int wc_error(struct rmig_rdma_chan *c, const struct ibv_wc *wc)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(c->base.tp);

	if (rmig_rdma_is_shut(t))
		return -ECANCELED;
	return RMIG_RDMA_FAIL(t, -EIO, "rdma: channel %u: completion error: %s (qp 0x%x, vendor 0x%x)",
			 c->base.idx, rmig_rv_wc_status_str(wc->status), wc->qp_num,
			 wc->vendor_err);
}

/* Source: poll until at most @target work requests are outstanding. */
int rmig_rdma_poll_down_to(struct rmig_rdma_chan *c, uint64_t target)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(c->base.tp);
	uint64_t deadline = now_ns() + (uint64_t)t->base.p.timeout_ms * 1000000ull;
	struct ibv_wc wc[RMIG_RDMA_POLL_BATCH];
	unsigned int idle = 0;

	while (c->posted - c->done > target) {
		int n = rmig_rv_poll_cq(c->cq, RMIG_RDMA_POLL_BATCH, wc);

		if (n < 0)
			return RMIG_RDMA_FAIL(t, n, "rdma: channel %u: polling the CQ: %s", c->base.idx,
					 strerror(-n));
		for (int i = 0; i < n; i++) {
			const struct rmig_rdma_wr_ctx *x = (const struct rmig_rdma_wr_ctx *)(uintptr_t)wc[i].wr_id;

			if (wc[i].status != IBV_WC_SUCCESS)
				return wc_error(c, &wc[i]);
			if (x->seq > c->done) {
				c->done = x->seq;
				c->done_bytes = x->cum_bytes;
			}
		}
		if (n)
			continue;
		if (rmig_rdma_is_shut(t))
			return -ECANCELED;
		if (now_ns() > deadline)
			return RMIG_RDMA_FAIL(t, -ETIMEDOUT,
					 "rdma: channel %u: no completion within %u ms (qp 0x%x)",
					 c->base.idx, t->base.p.timeout_ms, c->qp_num);
		/* Spin briefly, then yield the CPU: soft-RoCE runs on the same cores. */
		if (++idle > 64)
			sched_yield();
	}
	return 0;
}

int rmig_rdma_post_recv_slot(struct rmig_rdma_chan *c, struct rmig_rdma_recv_slot *slot)
{
	struct ibv_sge sge = { .addr = (uintptr_t)slot->buf,
			       .length = (uint32_t)c->rbuf_size,
			       .lkey = c->rbuf_mr->lkey };
	struct ibv_recv_wr wr = { .wr_id = (uintptr_t)slot, .sg_list = &sge, .num_sge = 1 };

	return rmig_rv_post_recv(c->id->qp, &wr);
}

/* Destination: one received frame. */
int rmig_rdma_apply_msg(const struct rmig_tp_upcalls *up, unsigned int idx, const uint8_t *buf,
			uint32_t len)
{
	struct rmig_target tg;
	struct rmig_frame f;
	void *dst;
	int rc;

	if (len < RMIG_FRAME_HDR_LEN || rmig_frame_decode(buf, &f))
		return up->fail(up->arg, -EBADMSG, "rdma: channel %u: malformed message (%u bytes)",
				idx, len);
	switch (f.type) {
	case RMIG_FRAME_SYNC:
		if (len != RMIG_FRAME_HDR_LEN)
			break;
		return up->sync(up->arg, idx, f.arg);
	case RMIG_FRAME_WRITE_RAM:
		/* postcopy: a RAM write in this staging slot, placed from here */
		if (len - RMIG_FRAME_HDR_LEN != f.len || !f.len)
			break;
		tg = (struct rmig_target){ .kind = RMIG_TGT_RAM, .id = f.id, .offset = f.offset };
		if (up->place_from)
			return up->place_from(up->arg, idx, &tg, buf + RMIG_FRAME_HDR_LEN, f.len);
		rc = up->place(up->arg, idx, &tg, f.len, &dst);
		if (rc)
			return rc;
		memcpy(dst, buf + RMIG_FRAME_HDR_LEN, f.len);
		return up->placed(up->arg, idx, &tg, f.len);
	case RMIG_FRAME_ZERO_RAM:
	case RMIG_FRAME_WRITE_STATE:
		/* The length is the message's: a header that claims more is malformed. */
		if (len - RMIG_FRAME_HDR_LEN != (f.type == RMIG_FRAME_WRITE_STATE ? f.len : 0))
			break;
		tg.kind = f.type == RMIG_FRAME_ZERO_RAM ? RMIG_TGT_RAM : RMIG_TGT_STATE;
		tg.id = f.id;
		tg.offset = f.offset;
		tg.total = f.arg;
		if (f.type == RMIG_FRAME_ZERO_RAM)
			return up->zero(up->arg, idx, &tg, f.len);
		rc = up->place(up->arg, idx, &tg, f.len, &dst);
		if (rc)
			return rc;
		memcpy(dst, buf + RMIG_FRAME_HDR_LEN, f.len);
		return up->placed(up->arg, idx, &tg, f.len);
	default:
		break;
	}
	return up->fail(up->arg, -EBADMSG, "rdma: channel %u: %s frame of %u bytes is malformed", idx,
			rmig_frame_name(f.type), len);
}

static int handle_recv(struct rmig_rdma_chan *c, const struct ibv_wc *wc)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(c->base.tp);
	struct rmig_rdma_recv_slot *slot = (struct rmig_rdma_recv_slot *)(uintptr_t)wc->wr_id;
	int rc;

	if (wc->opcode != IBV_WC_RECV)
		return RMIG_RDMA_FAIL(t, -EBADMSG, "rdma: channel %u: unexpected completion opcode %d",
				      c->base.idx, wc->opcode);
	rc = rmig_rdma_apply_msg(t->base.p.up, c->base.idx, slot->buf, wc->byte_len);
	if (rc)
		return rc;
	rc = rmig_rdma_post_recv_slot(c, slot);
	if (rc && !rmig_rdma_is_shut(t))
		return RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: reposting a receive: %s", c->base.idx,
				 strerror(-rc));
	return rc;
}

int rmig_rdma_progress(struct rmig_tp_chan *ch)
{
	struct rmig_rdma_chan *c = rmig_rdma_chan(ch);
	struct rmig_rdma_tp *t = rmig_rdma_tp(ch->tp);
	struct ibv_wc wc[RMIG_RDMA_POLL_BATCH];

	for (;;) {
		struct ibv_cq *cq;
		int n = rmig_rv_poll_cq(c->cq, RMIG_RDMA_POLL_BATCH, wc), rc = 0;

		if (n < 0)
			return RMIG_RDMA_FAIL(t, n, "rdma: channel %u: polling the CQ: %s", c->base.idx,
					 strerror(-n));
		for (int i = 0; i < n && !rc; i++)
			rc = wc[i].status != IBV_WC_SUCCESS ? wc_error(c, &wc[i])
							    : handle_recv(c, &wc[i]);
		if (n || rc)
			return rc;
		if (rmig_rdma_is_shut(t))
			return -ECANCELED;
		/* Arm, then poll once more: a completion may have slipped in between. */
		rc = rmig_rv_req_notify_cq(c->cq);
		if (rc)
			return RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: arming the CQ: %s", c->base.idx,
					 strerror(-rc));
		n = rmig_rv_poll_cq(c->cq, RMIG_RDMA_POLL_BATCH, wc);
		for (int i = 0; i < n && !rc; i++)
			rc = wc[i].status != IBV_WC_SUCCESS ? wc_error(c, &wc[i])
							    : handle_recv(c, &wc[i]);
		if (n || rc)
			return n < 0 ? -EIO : rc;
		rc = rmig_wait_readable(c->cc->fd, t->wake_fd, 0);
		if (rc)
			return rc;
		if (rmig_rv_get_cq_event(c->cc, &cq) == 0)
			rmig_rv_ack_cq_events(cq, 1);
	}
}
