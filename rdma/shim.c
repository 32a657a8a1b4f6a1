/* SPDX-License-Identifier: MIT */
/* shim.c - thin out-of-line wrappers; see shim.h. */
#include <errno.h>

#include "shim.h"

/* librdmacm: -1 and errno. */
static int cm_rc(int rc)
{
	return rc ? (errno ? -errno : -EIO) : 0;
}

/* libibverbs: a positive errno (some providers: -1 and errno). */
static int vb_rc(int rc)
{
	if (rc > 0)
		return -rc;
	if (rc < 0)
		return errno ? -errno : -EIO;
	return 0;
}

int rmig_rv_create_channel(struct rdma_event_channel **ch_p)
{
	*ch_p = rdma_create_event_channel();
	return *ch_p ? 0 : (errno ? -errno : -ENODEV);
}

void rmig_rv_destroy_channel(struct rdma_event_channel *ch)
{
	if (ch)
		rdma_destroy_event_channel(ch);
}

int rmig_rv_create_id(struct rdma_event_channel *ch, void *ctx, struct rdma_cm_id **id_p)
{
	return cm_rc(rdma_create_id(ch, id_p, ctx, RDMA_PS_TCP));
}

int rmig_rv_destroy_id(struct rdma_cm_id *id)
{
	return id ? cm_rc(rdma_destroy_id(id)) : 0;
}

int rmig_rv_migrate_id(struct rdma_cm_id *id, struct rdma_event_channel *ch)
{
	return cm_rc(rdma_migrate_id(id, ch));
}

int rmig_rv_bind_addr(struct rdma_cm_id *id, struct sockaddr *sa)
{
	return cm_rc(rdma_bind_addr(id, sa));
}

int rmig_rv_listen(struct rdma_cm_id *id, int backlog)
{
	return cm_rc(rdma_listen(id, backlog));
}

int rmig_rv_resolve_addr(struct rdma_cm_id *id, struct sockaddr *dst, int timeout_ms)
{
	return cm_rc(rdma_resolve_addr(id, NULL, dst, timeout_ms));
}

int rmig_rv_resolve_route(struct rdma_cm_id *id, int timeout_ms)
{
	return cm_rc(rdma_resolve_route(id, timeout_ms));
}

int rmig_rv_connect(struct rdma_cm_id *id, struct rdma_conn_param *p)
{
	return cm_rc(rdma_connect(id, p));
}

int rmig_rv_accept(struct rdma_cm_id *id, struct rdma_conn_param *p)
{
	return cm_rc(rdma_accept(id, p));
}

int rmig_rv_reject(struct rdma_cm_id *id, const void *priv, uint8_t len)
{
	return cm_rc(rdma_reject(id, priv, len));
}

int rmig_rv_disconnect(struct rdma_cm_id *id)
{
	return cm_rc(rdma_disconnect(id));
}

int rmig_rv_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev_p)
{
	return cm_rc(rdma_get_cm_event(ch, ev_p));
}

int rmig_rv_ack_event(struct rdma_cm_event *ev)
{
	return cm_rc(rdma_ack_cm_event(ev));
}

int rmig_rv_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *a)
{
	return cm_rc(rdma_create_qp(id, pd, a));
}

void rmig_rv_destroy_qp(struct rdma_cm_id *id)
{
	if (id && id->qp)
		rdma_destroy_qp(id);
}

uint16_t rmig_rv_get_src_port(struct rdma_cm_id *id)
{
	return rdma_get_src_port(id);
}

int rmig_rv_alloc_pd(struct ibv_context *ctx, struct ibv_pd **pd_p)
{
	*pd_p = ibv_alloc_pd(ctx);
	return *pd_p ? 0 : (errno ? -errno : -ENOMEM);
}

int rmig_rv_dealloc_pd(struct ibv_pd *pd)
{
	return pd ? vb_rc(ibv_dealloc_pd(pd)) : 0;
}

int rmig_rv_create_comp_channel(struct ibv_context *ctx, struct ibv_comp_channel **ch_p)
{
	*ch_p = ibv_create_comp_channel(ctx);
	return *ch_p ? 0 : (errno ? -errno : -ENOMEM);
}

int rmig_rv_destroy_comp_channel(struct ibv_comp_channel *ch)
{
	return ch ? vb_rc(ibv_destroy_comp_channel(ch)) : 0;
}

int rmig_rv_create_cq(struct ibv_context *ctx, int cqe, struct ibv_comp_channel *ch,
		      struct ibv_cq **cq_p)
{
	*cq_p = ibv_create_cq(ctx, cqe, NULL, ch, 0);
	return *cq_p ? 0 : (errno ? -errno : -ENOMEM);
}

int rmig_rv_destroy_cq(struct ibv_cq *cq)
{
	return cq ? vb_rc(ibv_destroy_cq(cq)) : 0;
}

int rmig_rv_req_notify_cq(struct ibv_cq *cq)
{
	return vb_rc(ibv_req_notify_cq(cq, 0));
}

int rmig_rv_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq_p)
{
	void *ctx;

	return ibv_get_cq_event(ch, cq_p, &ctx) ? (errno ? -errno : -EIO) : 0;
}

void rmig_rv_ack_cq_events(struct ibv_cq *cq, unsigned int n)
{
	ibv_ack_cq_events(cq, n);
}

int rmig_rv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **mr_p)
{
	*mr_p = ibv_reg_mr(pd, addr, len, access);
	return *mr_p ? 0 : (errno ? -errno : -ENOMEM);
}

int rmig_rv_dereg_mr(struct ibv_mr *mr)
{
	return mr ? vb_rc(ibv_dereg_mr(mr)) : 0;
}

int rmig_rv_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr)
{
	struct ibv_send_wr *bad;

	return vb_rc(ibv_post_send(qp, wr, &bad));
}

int rmig_rv_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr)
{
	struct ibv_recv_wr *bad;

	return vb_rc(ibv_post_recv(qp, wr, &bad));
}

int rmig_rv_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
	int rc = ibv_poll_cq(cq, n, wc);

	return rc >= 0 ? rc : (errno ? -errno : -EIO);
}

int rmig_rv_qp_to_error(struct ibv_qp *qp)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_ERR };

	return vb_rc(ibv_modify_qp(qp, &a, IBV_QP_STATE));
}

int rmig_rv_set_min_rnr_timer(struct ibv_qp *qp, uint8_t code)
{
	struct ibv_qp_attr a = { .min_rnr_timer = code };

	return vb_rc(ibv_modify_qp(qp, &a, IBV_QP_MIN_RNR_TIMER));
}

const char *rmig_rv_wc_status_str(enum ibv_wc_status s)
{
	return ibv_wc_status_str(s);
}

int rmig_rv_port_state(struct ibv_context *ctx, uint8_t port, enum ibv_port_state *st_p)
{
	struct ibv_port_attr a;
	int rc = vb_rc(ibv_query_port(ctx, port, &a));

	if (!rc)
		*st_p = a.state;
	return rc;
}

int rmig_rv_device_count(void)
{
	int n = 0;
	struct ibv_device **l = ibv_get_device_list(&n);

	if (l)
		ibv_free_device_list(l);
	return l ? n : 0;
}
