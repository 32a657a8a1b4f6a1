/* SPDX-License-Identifier: MIT */
/*
 * io.c - posting, on the source. RAM extents go by RDMA WRITE straight from
 * registered source RAM to the destination's registered RAM; zero ranges,
 * device-state chunks and sync markers go by SEND (frame header + payload).
 * Every Nth work request is signalled; over the in-flight budget the channel
 * polls its CQ (cq.c) until at most half is outstanding, so the link never
 * drains between writes; flush polls until nothing is.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "rdma_int.h"

/* Post one send WR within the budget: over it, poll down to half first. */
static int post(struct rmig_rdma_chan *c, struct ibv_send_wr *wr, uint64_t bytes)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(c->base.tp);
	uint64_t half = t->budget / 2;
	struct rmig_rdma_wr_ctx *x;
	int rc;

	if (c->posted - c->done >= RMIG_RDMA_SQ_DEPTH - 1 ||
	    c->posted_bytes - c->done_bytes + bytes > t->budget) {
		rc = rmig_rdma_poll_down_to(c, (RMIG_RDMA_SQ_DEPTH - 1) / 2);
		/* and down to half the bytes: retire until under */
		while (!rc && c->posted_bytes - c->done_bytes > half && c->posted > c->done)
			rc = rmig_rdma_poll_down_to(c, c->posted - c->done - 1);
		if (rc)
			return rc;
	}
	x = &c->ctx[(c->posted + 1) % RMIG_RDMA_SQ_DEPTH];
	x->seq = c->posted + 1;
	x->cum_bytes = c->posted_bytes + bytes;
	wr->wr_id = (uintptr_t)x;
	wr->send_flags &= ~IBV_SEND_SIGNALED;
	/*
	 * Signal every Nth request, and whenever a quarter of the budget went
	 * out since the last signal: a partial flush can then always retire
	 * down to half the budget and half the queue.
	 */
	if (++c->since_signal >= RMIG_RDMA_SIGNAL_EVERY ||
	    x->cum_bytes - c->signaled_bytes >= t->budget / 4) {
		wr->send_flags |= IBV_SEND_SIGNALED;
		c->since_signal = 0;
		c->last_signaled = x->seq;
		c->signaled_bytes = x->cum_bytes;
	}
	rc = rmig_rv_post_send(c->id->qp, wr);
	if (rc) {
		if (x->seq == c->last_signaled)
			c->last_signaled = 0;
		return rmig_rdma_is_shut(t) ? -ECANCELED
				       : RMIG_RDMA_FAIL(t, rc, "rdma: channel %u: posting: %s (qp 0x%x)",
						   c->base.idx, strerror(-rc), c->qp_num);
	}
	c->posted = x->seq;
	c->posted_bytes = x->cum_bytes;
	return 0;
}

/*
 * Postcopy: the destination places each page itself (UFFDIO_COPY), so RAM
 * goes by SEND, header and payload straight from registered source RAM,
 * into one of its registered staging slots.
 */
static int send_ram(struct rmig_rdma_chan *c, const struct rmig_target *tg,
		    const struct iovec *iov, uint32_t lkey)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(c->base.tp);
	struct rmig_frame f = { .type = RMIG_FRAME_WRITE_RAM,
				.id = tg->id,
				.len = (uint32_t)iov[0].iov_len,
				.offset = tg->offset };
	uint8_t *hdr = c->hdrs + ((c->posted + 1) % RMIG_RDMA_SQ_DEPTH) * RMIG_FRAME_HDR_LEN;
	struct ibv_sge sge[2] = {
		{ .addr = (uintptr_t)hdr, .length = RMIG_FRAME_HDR_LEN, .lkey = c->hdr_mr->lkey },
		{ .addr = (uintptr_t)iov[0].iov_base, .length = (uint32_t)iov[0].iov_len, .lkey = lkey },
	};
	struct ibv_send_wr wr = { .sg_list = sge, .num_sge = 2, .opcode = IBV_WR_SEND };

	if (!iov[0].iov_len || iov[0].iov_len > t->base.p.extent_max)
		return RMIG_RDMA_FAIL(t, -EINVAL, "rdma: a %zu-byte postcopy write does not fit a "
					  "staging slot", iov[0].iov_len);
	rmig_frame_encode(&f, hdr);
	return post(c, &wr, RMIG_FRAME_HDR_LEN + iov[0].iov_len);
}

int rmig_rdma_write(struct rmig_tp_chan *ch, const struct rmig_target *tg, const struct iovec *iov,
	       int iovcnt)
{
	struct rmig_rdma_chan *c = rmig_rdma_chan(ch);
	struct rmig_rdma_tp *t = rmig_rdma_tp(ch->tp);
	struct ibv_sge sge[2];
	struct ibv_send_wr wr = { .sg_list = sge };
	int rc;

	if (iovcnt != 1)
		return -EINVAL;
	if (tg->kind == RMIG_TGT_RAM) {
		const struct rmig_rdma_remote *r;
		const struct rmig_rdma_mr_ent *l;

		if (tg->id >= RMIG_BLOCKS_MAX)
			return RMIG_RDMA_FAIL(t, -ERANGE, "rdma: write to block %u", tg->id);
		r = &t->remote[tg->id];
		l = &t->blocks[tg->id];
		/*
		 * A staged write (postcopy) is a SEND the destination places
		 * itself: it needs the local registration only. A destination
		 * that resumes postcopy registers none of its RAM.
		 */
		if (tg->staged) {
			if (!l->mr || tg->offset > l->len || iov[0].iov_len > l->len - tg->offset)
				return RMIG_RDMA_FAIL(t, -ERANGE, "rdma: staged write outside block %u",
						 tg->id);
			return send_ram(c, tg, iov, l->mr->lkey);
		}
		if (!r->set || !l->mr || tg->offset > r->len || iov[0].iov_len > r->len - tg->offset)
			return RMIG_RDMA_FAIL(t, -ERANGE, "rdma: write outside block %u", tg->id);
		sge[0] = (struct ibv_sge){ .addr = (uintptr_t)iov[0].iov_base,
					   .length = (uint32_t)iov[0].iov_len,
					   .lkey = l->mr->lkey };
		wr.num_sge = 1;
		wr.opcode = IBV_WR_RDMA_WRITE;
		wr.wr.rdma.remote_addr = r->addr + tg->offset;
		wr.wr.rdma.rkey = r->rkey;
		return post(c, &wr, iov[0].iov_len);
	}
	/* device state: header and payload in one SEND into a staging buffer */
	{
		struct rmig_frame f = { .type = RMIG_FRAME_WRITE_STATE,
					.id = tg->id,
					.len = (uint32_t)iov[0].iov_len,
					.offset = tg->offset,
					.arg = tg->total };
		uint8_t *hdr = c->hdrs + ((c->posted + 1) % RMIG_RDMA_SQ_DEPTH) * RMIG_FRAME_HDR_LEN;
		uint32_t lkey;

		if (iov[0].iov_len > t->base.p.extent_max)
			return -EINVAL;
		rc = rmig_rdma_state_lkey(t, tg, iov[0].iov_base, iov[0].iov_len, &lkey);
		if (rc)
			return rc;
		rmig_frame_encode(&f, hdr);
		sge[0] = (struct ibv_sge){ .addr = (uintptr_t)hdr,
					   .length = RMIG_FRAME_HDR_LEN,
					   .lkey = c->hdr_mr->lkey };
		sge[1] = (struct ibv_sge){ .addr = (uintptr_t)iov[0].iov_base,
					   .length = (uint32_t)iov[0].iov_len,
					   .lkey = lkey };
		wr.num_sge = iov[0].iov_len ? 2 : 1;
		wr.opcode = IBV_WR_SEND;
		return post(c, &wr, RMIG_FRAME_HDR_LEN + iov[0].iov_len);
	}
}

/* A header-only SEND. The header slot is the one of the WR's sequence number. */
static int send_hdr(struct rmig_rdma_chan *c, const struct rmig_frame *f)
{
	uint8_t *hdr = c->hdrs + ((c->posted + 1) % RMIG_RDMA_SQ_DEPTH) * RMIG_FRAME_HDR_LEN;
	struct ibv_sge sge = { .addr = (uintptr_t)hdr,
			       .length = RMIG_FRAME_HDR_LEN,
			       .lkey = c->hdr_mr->lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND };

	/*
	 * The slot is free: post() keeps fewer than RMIG_RDMA_SQ_DEPTH outstanding,
	 * but it may first poll, which only frees slots.
	 */
	rmig_frame_encode(f, hdr);
	return post(c, &wr, RMIG_FRAME_HDR_LEN);
}

int rmig_rdma_zero(struct rmig_tp_chan *ch, const struct rmig_target *tg, uint64_t len)
{
	struct rmig_frame f = { .type = RMIG_FRAME_ZERO_RAM,
				.id = tg->id,
				.len = (uint32_t)len,
				.offset = tg->offset };

	if (len > UINT32_MAX || tg->kind != RMIG_TGT_RAM)
		return -EINVAL;
	return send_hdr(rmig_rdma_chan(ch), &f);
}

int rmig_rdma_marker(struct rmig_tp_chan *ch, uint64_t id)
{
	struct rmig_frame f = { .type = RMIG_FRAME_SYNC, .arg = id };

	return send_hdr(rmig_rdma_chan(ch), &f);
}

int rmig_rdma_flush(struct rmig_tp_chan *ch)
{
	struct rmig_rdma_chan *c = rmig_rdma_chan(ch);
	struct rmig_rdma_tp *t = rmig_rdma_tp(ch->tp);

	if (c->posted == c->done)
		return 0;
	if (c->last_signaled != c->posted) {
		/*
		 * The tail is unsignalled: a signalled zero-length WRITE behind
		 * it completes only after everything before it.
		 */
		struct ibv_send_wr wr = { .opcode = IBV_WR_RDMA_WRITE, .num_sge = 0 };
		const struct rmig_rdma_remote *r = &t->remote[0];
		int rc;

		wr.wr.rdma.remote_addr = r->addr;
		wr.wr.rdma.rkey = r->rkey;
		c->since_signal = RMIG_RDMA_SIGNAL_EVERY; /* forces the signal */
		rc = post(c, &wr, 0);
		if (rc)
			return rc;
	}
	return rmig_rdma_poll_down_to(c, 0);
}

