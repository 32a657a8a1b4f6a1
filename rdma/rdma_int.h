/* SPDX-License-Identifier: MIT */
/*
 * rdma_int.h - the verbs backend's objects. One RC queue pair per data
 * channel, set up with librdmacm; RAM goes by RDMA WRITE from registered
 * source RAM into registered destination RAM; zero ranges, device-state
 * chunks and sync markers go by SEND (a 32-byte rmig frame header, then the
 * payload) into destination-registered staging buffers, ordered after every
 * earlier WRITE of the same QP.
 */
#ifndef RMIG_RDMA_INT_H
#define RMIG_RDMA_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "shim.h"
#include "transport.h"
#include "wire.h"

#define RMIG_RDMA_SQ_DEPTH 256     /* send WRs outstanding per channel, at most */
#define RMIG_RDMA_SIGNAL_EVERY 16  /* signal every Nth send WR */
#define RMIG_RDMA_RECV_BUFS 16     /* staging buffers per destination channel */
#define RMIG_RDMA_POLL_BATCH 16
#define RMIG_RDMA_CM_MAGIC 0x524d434du /* "RMCM" */
#define RMIG_RDMA_DESC_LEN 20          /* addr u64, len u64, rkey u32 */
#define RMIG_RDMA_MIN_RNR_TIMER 6      /* 0.08 ms before a SEND is retried */

/* CM private data: who is connecting. Big-endian on the wire. */
struct rmig_rdma_cm_priv {
	uint32_t magic;
	uint16_t version;
	uint16_t chan;
	uint64_t session_id;
};
#define RMIG_RDMA_CM_PRIV_LEN 16

struct rmig_rdma_mr_ent {
	uint8_t *addr;
	uint64_t len;
	struct ibv_mr *mr;
};

struct rmig_rdma_remote {
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	bool set;
};

/* Send-side context: wr_id points here (never an index packed in bits). */
struct rmig_rdma_wr_ctx {
	uint64_t seq;
	uint64_t cum_bytes; /* bytes posted up to and including this WR */
};

struct rmig_rdma_recv_slot {
	struct rmig_rdma_chan *c;
	uint8_t *buf;
};

struct rmig_rdma_chan {
	struct rmig_tp_chan base;
	struct rdma_cm_id *id;
	struct ibv_cq *cq;
	struct ibv_comp_channel *cc;
	uint32_t qp_num;

	/* source, channel thread only */
	uint64_t posted, done;
	uint64_t posted_bytes, done_bytes;
	uint64_t last_signaled;
	uint64_t signaled_bytes; /* cum_bytes of the last signalled WR */
	unsigned int since_signal;
	struct rmig_rdma_wr_ctx ctx[RMIG_RDMA_SQ_DEPTH];
	uint8_t *hdrs;
	struct ibv_mr *hdr_mr;

	/* destination, channel thread only */
	uint8_t *rbuf;
	size_t rbuf_size;
	struct ibv_mr *rbuf_mr;
	struct rmig_rdma_recv_slot slots[RMIG_RDMA_RECV_BUFS];
};

struct rmig_rdma_tp {
	struct rmig_tp base;
	int wake_fd;
	struct rdma_event_channel *ech;
	struct rdma_cm_id *listen_id;
	struct ibv_context *verbs;
	struct ibv_pd *pd;
	uint64_t budget; /* outstanding bytes per channel */

	/* set before the channel threads start */
	struct rmig_rdma_mr_ent blocks[RMIG_BLOCKS_MAX];
	struct rmig_rdma_remote remote[RMIG_BLOCKS_MAX];
	uint64_t locked;

	/* protected by lock */
	pthread_mutex_t lock;
	bool shut;
	struct rmig_rdma_chan *chans[RMIG_CHANNELS_MAX];
	unsigned int nchans;
	struct rmig_rdma_mr_ent *dyn; /* device-state buffers registered on first use */
	unsigned int ndyn, capdyn;
};

static inline struct rmig_rdma_tp *rmig_rdma_tp(struct rmig_tp *tp)
{
	return container_of(tp, struct rmig_rdma_tp, base);
}

static inline struct rmig_rdma_chan *rmig_rdma_chan(struct rmig_tp_chan *ch)
{
	return container_of(ch, struct rmig_rdma_chan, base);
}

#define RMIG_RDMA_FAIL(t, err, ...) ((t)->base.p.up->fail((t)->base.p.up->arg, (err), __VA_ARGS__))

/* cq.c: whether the backend is shutting down */
bool rmig_rdma_is_shut(struct rmig_rdma_tp *t);
/* The CM private data of a connect request: 0 and *chan_p, or -EPROTO. */
int rmig_rdma_priv_check(const void *pd, size_t len, uint64_t sid, unsigned int nchannels,
			 unsigned int *chan_p);
/* Apply one received SEND (a frame in a staging buffer of @len bytes) through @up. */
int rmig_rdma_apply_msg(const struct rmig_tp_upcalls *up, unsigned int idx, const uint8_t *buf,
			uint32_t len);
/* Wait for the next CM event on t->ech, at most timeout_ms; the caller acks it. */
int rmig_rdma_cm_wait(struct rmig_rdma_tp *t, struct rdma_cm_event **ev_p);
int rmig_rdma_pd_init(struct rmig_rdma_tp *t, struct ibv_context *verbs);

/* cm.c */
int rmig_rdma_listen(struct rmig_tp *tp, int ctl_fd, uint8_t *ep, uint16_t *ep_len_p);
int rmig_rdma_accept(struct rmig_tp *tp, struct rmig_tp_chan **ch_p);
/*
 * Whether an RDMA device reaches @ss (@resolve: a peer's address) or holds
 * it (a local one), and its port is active: 0 with the device's name in
 * @dev; -ENODEV (no device) or -ENETDOWN (its link is down) with the cause
 * in @why. Sends nothing to anyone.
 */
int rmig_rdma_route(const struct sockaddr_storage *ss, bool resolve, char *dev, size_t dev_len,
		    char *why, size_t why_len);
int rmig_rdma_reach(struct rmig_tp *tp, int ctl_fd, char *dev, size_t dev_len, char *why,
		    size_t why_len);
int rmig_rdma_accept_n(struct rmig_tp *tp, unsigned int n, struct rmig_tp_chan **chs);
int rmig_rdma_connect_n(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
			const unsigned int *idx, unsigned int n, struct rmig_tp_chan **chs);
int rmig_rdma_connect(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
		 unsigned int idx, struct rmig_tp_chan **ch_p);
void rmig_rdma_chan_close(struct rmig_tp_chan *ch);
int rmig_rdma_locate(struct rmig_tp_chan *ch, char *name, size_t len);

/* mr.c */
int rmig_rdma_reg(struct rmig_tp *tp, unsigned int block, void *addr, uint64_t len, uint8_t *desc,
	     uint16_t *desc_len_p);
int rmig_rdma_set_remote(struct rmig_tp *tp, unsigned int block, uint64_t len, const uint8_t *desc,
		    uint16_t desc_len);
/* lkey for @len bytes at @p of device state (registered on first use). */
int rmig_rdma_state_lkey(struct rmig_rdma_tp *t, const struct rmig_target *tg, const void *p, uint64_t len,
		    uint32_t *lkey_p);
void rmig_rdma_mr_release(struct rmig_rdma_tp *t);

/* io.c: posting */
int rmig_rdma_write(struct rmig_tp_chan *ch, const struct rmig_target *t, const struct iovec *iov,
	       int iovcnt);
int rmig_rdma_zero(struct rmig_tp_chan *ch, const struct rmig_target *t, uint64_t len);
int rmig_rdma_flush(struct rmig_tp_chan *ch);
int rmig_rdma_marker(struct rmig_tp_chan *ch, uint64_t id);

/* cq.c: completion polling */
int rmig_rdma_progress(struct rmig_tp_chan *ch);
int rmig_rdma_post_recv_slot(struct rmig_rdma_chan *c, struct rmig_rdma_recv_slot *slot);
/* Source: poll until at most @target work requests are outstanding. */
int rmig_rdma_poll_down_to(struct rmig_rdma_chan *c, uint64_t target);

#endif
