/* SPDX-License-Identifier: MIT */
/*
 * shim.h - the only place rmig calls libibverbs and librdmacm. Every call is
 * out of line (the data-path verbs are static inline in the headers, and
 * ibv_reg_mr is a macro), so unit tests can replace any of them with the
 * linker's --wrap. Every function returns 0 or a negative errno: verbs'
 * positive errno and rdmacm's -1/errno are normalised here, in one place.
 */
#ifndef RMIG_RDMA_SHIM_H
#define RMIG_RDMA_SHIM_H

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

int rmig_rv_create_channel(struct rdma_event_channel **ch_p);
void rmig_rv_destroy_channel(struct rdma_event_channel *ch);
int rmig_rv_create_id(struct rdma_event_channel *ch, void *ctx, struct rdma_cm_id **id_p);
int rmig_rv_destroy_id(struct rdma_cm_id *id);
int rmig_rv_migrate_id(struct rdma_cm_id *id, struct rdma_event_channel *ch);
int rmig_rv_bind_addr(struct rdma_cm_id *id, struct sockaddr *sa);
int rmig_rv_listen(struct rdma_cm_id *id, int backlog);
int rmig_rv_resolve_addr(struct rdma_cm_id *id, struct sockaddr *dst, int timeout_ms);
int rmig_rv_resolve_route(struct rdma_cm_id *id, int timeout_ms);
int rmig_rv_connect(struct rdma_cm_id *id, struct rdma_conn_param *p);
int rmig_rv_accept(struct rdma_cm_id *id, struct rdma_conn_param *p);
int rmig_rv_reject(struct rdma_cm_id *id, const void *priv, uint8_t len);
int rmig_rv_disconnect(struct rdma_cm_id *id);
int rmig_rv_get_event(struct rdma_event_channel *ch, struct rdma_cm_event **ev_p);
int rmig_rv_ack_event(struct rdma_cm_event *ev);
int rmig_rv_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *a);
void rmig_rv_destroy_qp(struct rdma_cm_id *id);
uint16_t rmig_rv_get_src_port(struct rdma_cm_id *id);

int rmig_rv_alloc_pd(struct ibv_context *ctx, struct ibv_pd **pd_p);
int rmig_rv_dealloc_pd(struct ibv_pd *pd);
int rmig_rv_create_comp_channel(struct ibv_context *ctx, struct ibv_comp_channel **ch_p);
int rmig_rv_destroy_comp_channel(struct ibv_comp_channel *ch);
int rmig_rv_create_cq(struct ibv_context *ctx, int cqe, struct ibv_comp_channel *ch,
		      struct ibv_cq **cq_p);
int rmig_rv_destroy_cq(struct ibv_cq *cq);
int rmig_rv_req_notify_cq(struct ibv_cq *cq);
int rmig_rv_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq_p);
void rmig_rv_ack_cq_events(struct ibv_cq *cq, unsigned int n);
int rmig_rv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **mr_p);
int rmig_rv_dereg_mr(struct ibv_mr *mr);
int rmig_rv_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr);
int rmig_rv_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr);
/* Number of completions (>= 0) or a negative errno. */
int rmig_rv_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc);
int rmig_rv_qp_to_error(struct ibv_qp *qp);
/* RTS: how long a sender waits after an RNR NAK (IB encoding, 1 = 0.01 ms). */
int rmig_rv_set_min_rnr_timer(struct ibv_qp *qp, uint8_t code);
const char *rmig_rv_wc_status_str(enum ibv_wc_status s);
int rmig_rv_device_count(void);
/* The state of @ctx's @port (IBV_PORT_ACTIVE: its link is up). */
int rmig_rv_port_state(struct ibv_context *ctx, uint8_t port, enum ibv_port_state *st_p);

#endif
