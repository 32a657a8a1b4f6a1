/* SPDX-License-Identifier: MIT */
/*
 * hostile_rdma.c - hostile RDMA sources against a destination session, on a
 * real RDMA device (the soft-RoCE VM; RMIG_TEST_ADDR is its address). The
 * destination's RAM sits between PROT_NONE guard pages. Cases: wrong CM
 * private data (rejected), malformed and out-of-range SENDs (clear error),
 * and an RDMA WRITE past the registered block, which the NIC must refuse by
 * rkey bounds with guest RAM left untouched.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "sock.h"
#include "testlib.h"
#include "wire.h"

#define BLOCK_LEN (1u << 20)

static const char *addr(void)
{
	return getenv("RMIG_TEST_ADDR") ? getenv("RMIG_TEST_ADDR") : "10.0.0.1";
}

struct raw {
	int ctl;
	uint64_t sid;
	uint16_t port;
	uint64_t raddr, rlen;
	uint32_t rkey;
	struct rdma_event_channel *ech;
	struct rdma_cm_id *id, *id2; /* id2: a second queue pair (raw_qp()) */
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	uint8_t buf[8192];
};

static int wait_ev(struct raw *r, enum rdma_cm_event_type want)
{
	struct pollfd pfd = { .fd = r->ech->fd, .events = POLLIN };
	struct rdma_cm_event *ev;
	int got;

	if (poll(&pfd, 1, 3000) <= 0 || rdma_get_cm_event(r->ech, &ev))
		return -1;
	got = ev->event;
	rdma_ack_cm_event(ev);
	return got == (int)want ? 0 : got;
}

/*
 * One RC QP on @r's connection into *@id_p, claiming channel @chan of
 * session @sid: 0 once established, the event's number where another came
 * (REJECTED...), or a negative step number.
 */
static int raw_qp(struct raw *r, struct rdma_cm_id **id_p, uint16_t chan, uint64_t sid)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(r->port) };
	uint8_t priv[16];
	struct rdma_conn_param cp = { .private_data = priv, .private_data_len = 16,
				      .responder_resources = 1, .initiator_depth = 1,
				      .retry_count = 3, .rnr_retry_count = 7 };
	struct ibv_qp_init_attr qa = { .qp_type = IBV_QPT_RC,
				       .cap = { .max_send_wr = 16, .max_recv_wr = 4,
						.max_send_sge = 1, .max_recv_sge = 1 } };

	inet_pton(AF_INET, addr(), &sa.sin_addr);
	rmig_put_be32(priv, 0x524d434du);
	rmig_put_be16(priv + 4, RMIG_PROTO_VERSION);
	rmig_put_be16(priv + 6, chan);
	rmig_put_be64(priv + 8, sid);
	if (rdma_create_id(r->ech, id_p, NULL, RDMA_PS_TCP) ||
	    rdma_resolve_addr(*id_p, NULL, (struct sockaddr *)&sa, 2000) ||
	    wait_ev(r, RDMA_CM_EVENT_ADDR_RESOLVED) || rdma_resolve_route(*id_p, 2000) ||
	    wait_ev(r, RDMA_CM_EVENT_ROUTE_RESOLVED))
		return -3;
	if (!r->pd) {
		r->pd = ibv_alloc_pd((*id_p)->verbs);
		r->cq = ibv_create_cq((*id_p)->verbs, 32, NULL, NULL, 0);
		r->mr = r->pd ? ibv_reg_mr(r->pd, r->buf, sizeof(r->buf), IBV_ACCESS_LOCAL_WRITE) : NULL;
	}
	qa.send_cq = qa.recv_cq = r->cq;
	if (!r->pd || !r->cq || !r->mr || rdma_create_qp(*id_p, r->pd, &qa) ||
	    rdma_connect(*id_p, &cp))
		return -4;
	return wait_ev(r, RDMA_CM_EVENT_ESTABLISHED); /* REJECTED comes back as its number */
}

/*
 * Handshake on the control connection for a source of @nchannels channels,
 * then one RC QP for channel 0 with @sid (0: the right one) in its private data.
 */
static int raw_open_n(struct raw *r, const char *port, uint64_t sid, unsigned int nchannels)
{
	static struct rmig_msg_hello m;
	static uint8_t b[RMIG_CTL_MAX];
	struct rmig_msg_hello_ack ack;
	struct rmig_msg_reg reg;
	struct rmig_ctl_hdr h;
	int n;

	memset(r, 0, sizeof(*r));
	r->sid = 0x5eed5eed5eed5eedull;
	if (rmig_sock_connect(addr(), port, 3000, &r->ctl))
		return -1;
	memset(&m, 0, sizeof(m));
	m.version = RMIG_PROTO_VERSION;
	m.session_id = r->sid;
	m.nchannels = nchannels;
	m.transport = RMIG_TRANSPORT_RDMA;
	m.nblocks = 1;
	strcpy(m.blocks[0].name, "ram");
	m.blocks[0].length = BLOCK_LEN;
	m.blocks[0].page_size = 4096;
	n = rmig_hello_encode(&m, b, sizeof(b));
	if (test_send_ctl(r->ctl, RMIG_MSG_HELLO, b, (uint32_t)n) || test_recv_ctl(r->ctl, &h, b) ||
	    h.type != RMIG_MSG_HELLO_ACK || rmig_hello_ack_decode(b, h.len, &ack) ||
	    test_recv_ctl(r->ctl, &h, b) || h.type != RMIG_MSG_REG || rmig_reg_decode(b, h.len, &reg) ||
	    reg.desc_len != 20)
		return -2;
	r->port = rmig_get_be16(ack.ep);
	r->raddr = rmig_get_be64(reg.desc);
	r->rlen = rmig_get_be64(reg.desc + 8);
	r->rkey = rmig_get_be32(reg.desc + 16);
	r->ech = rdma_create_event_channel();
	if (!r->ech)
		return -3;
	return raw_qp(r, &r->id, 0, sid ? sid : r->sid);
}

static int raw_open(struct raw *r, const char *port, uint64_t sid)
{
	return raw_open_n(r, port, sid, 1);
}

static void raw_close(struct raw *r)
{
	if (r->id2) {
		if (r->id2->qp)
			rdma_destroy_qp(r->id2);
		rdma_destroy_id(r->id2);
	}
	if (r->id && r->id->qp) {
		rdma_disconnect(r->id);
		rdma_destroy_qp(r->id);
	}
	if (r->mr)
		ibv_dereg_mr(r->mr);
	if (r->cq)
		ibv_destroy_cq(r->cq);
	if (r->pd)
		ibv_dealloc_pd(r->pd);
	if (r->id)
		rdma_destroy_id(r->id);
	if (r->ech)
		rdma_destroy_event_channel(r->ech);
	if (r->ctl > 0)
		close(r->ctl);
}

/* Post one work request and wait for its completion status. */
static int post_wait(struct raw *r, enum ibv_wr_opcode op, uint32_t len, uint64_t raddr)
{
	struct ibv_sge sge = { .addr = (uintptr_t)r->buf, .length = len, .lkey = r->mr->lkey };
	struct ibv_send_wr wr = { .sg_list = &sge, .num_sge = 1, .opcode = op,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;
	struct ibv_wc wc;

	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = r->rkey;
	if (ibv_post_send(r->id->qp, &wr, &bad))
		return -1;
	for (int i = 0; i < 3000; i++) {
		if (ibv_poll_cq(r->cq, 1, &wc) == 1)
			return wc.status;
		usleep(1000);
	}
	return -2;
}

struct dest {
	rmig_session *s;
	uint8_t *mem;
	char port[16];
	int rc;
	pthread_t th;
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;

	d->rc = rmig_accept(d->s);
	if (!d->rc)
		d->rc = rmig_complete(d->s);
	return NULL;
}

static void dest_start(struct dest *d)
{
	struct rmig_opts o;
	char uri[64];

	d->mem = guarded_alloc(BLOCK_LEN);
	memset(d->mem, 0x5a, BLOCK_LEN);
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.timeout_ms = 2000;
	o.log_fn = NULL;
	assert_int_equal(rmig_session_create(&o, &d->s), 0);
	assert_int_equal(rmig_add_ram(d->s, "ram", d->mem, BLOCK_LEN, 4096), 0);
	snprintf(uri, sizeof(uri), "tcp://%s:0", addr());
	assert_int_equal(rmig_listen(d->s, uri), 0);
	snprintf(d->port, sizeof(d->port), "%d", rmig_listen_port(d->s));
	assert_int_equal(pthread_create(&d->th, NULL, dest_main, d), 0);
}

static void dest_finish(struct dest *d, const char *expect)
{
	pthread_join(d->th, NULL);
	printf("# destination: %s\n", rmig_last_error(d->s));
	assert_true(d->rc < 0);
	assert_non_null(strstr(rmig_last_error(d->s), expect));
	for (uint32_t k = 0; k < BLOCK_LEN; k += 512)
		assert_int_equal(d->mem[k], 0x5a);
	rmig_session_destroy(d->s);
	guarded_free(d->mem, BLOCK_LEN);
}

static void test_bad_private_data(void **state)
{
	struct dest d;
	struct raw r;

	(void)state;
	dest_start(&d);
	/* the wrong session id: the destination rejects the queue pair */
	assert_int_equal(raw_open(&r, d.port, 0x1111), RDMA_CM_EVENT_REJECTED);
	raw_close(&r);
	dest_finish(&d, "rejected a connection with bad private data");
}

/*
 * A source of two channels that connects channel 0 twice: the destination
 * takes requests in whatever order they come, and refuses the second 0
 * once both are up, writing nothing.
 */
static void test_channel_twice(void **state)
{
	struct dest d;
	struct raw r;

	(void)state;
	dest_start(&d);
	assert_int_equal(raw_open_n(&r, d.port, 0, 2), 0);
	assert_int_equal(raw_qp(&r, &r.id2, 0, r.sid), 0);
	dest_finish(&d, "data channel 0 connected twice");
	raw_close(&r);
}

/* The negative control: channels 0 and 1 as announced, and the destination takes both. */
static void test_two_channels(void **state)
{
	struct dest d;
	struct raw r;

	(void)state;
	dest_start(&d);
	assert_int_equal(raw_open_n(&r, d.port, 0, 2), 0);
	assert_int_equal(raw_qp(&r, &r.id2, 1, r.sid), 0);
	close(r.ctl); /* no migration follows: the destination fails, but past its accept */
	r.ctl = -1;
	pthread_join(d.th, NULL);
	printf("# destination: %s\n", rmig_last_error(d.s));
	assert_true(d.rc < 0);
	/* past the accept: the control connection's end, not a channel refused */
	assert_non_null(strstr(rmig_last_error(d.s), "control connection"));
	rmig_session_destroy(d.s);
	guarded_free(d.mem, BLOCK_LEN);
	raw_close(&r);
}

static void send_case(uint32_t len, const struct rmig_frame *f, const char *expect)
{
	struct dest d;
	struct raw r;

	dest_start(&d);
	assert_int_equal(raw_open(&r, d.port, 0), 0);
	if (f)
		rmig_frame_encode(f, r.buf);
	assert_int_equal(post_wait(&r, IBV_WR_SEND, len, 0), IBV_WC_SUCCESS);
	usleep(300000);
	raw_close(&r);
	dest_finish(&d, expect);
}

static void test_short_send(void **state)
{
	(void)state;
	send_case(10, NULL, "malformed message (10 bytes)");
}

static void test_zero_out_of_range(void **state)
{
	struct rmig_frame f = { .type = RMIG_FRAME_ZERO_RAM, .len = 4096, .offset = BLOCK_LEN };

	(void)state;
	send_case(RMIG_FRAME_HDR_LEN, &f, "write outside ram block 'ram'");
}

static void test_ram_by_send(void **state)
{
	struct rmig_frame f = { .type = RMIG_FRAME_WRITE_RAM, .len = 16 };

	(void)state;
	/* RAM travels by SEND on rdma in postcopy only: refused, not placed */
	send_case(RMIG_FRAME_HDR_LEN + 16, &f, "RAM by SEND outside postcopy");
}

static void test_write_past_the_block(void **state)
{
	struct dest d;
	struct raw r;
	int st;

	(void)state;
	dest_start(&d);
	assert_int_equal(raw_open(&r, d.port, 0), 0);
	assert_int_equal(r.rlen, BLOCK_LEN);
	memset(r.buf, 0xee, sizeof(r.buf));
	/* one page past the end, then one straddling it: the NIC must refuse both */
	st = post_wait(&r, IBV_WR_RDMA_WRITE, 4096, r.raddr + r.rlen);
	printf("# write past the block: %s\n", ibv_wc_status_str(st));
	assert_int_equal(st, IBV_WC_REM_ACCESS_ERR);
	raw_close(&r);
	dest_finish(&d, ""); /* the destination fails on the lost source, RAM intact */
}

/* Read control messages until one of @type, skipping PINGs. */
static int await_msg(struct raw *r, uint16_t type)
{
	static uint8_t b[RMIG_CTL_MAX];
	struct rmig_ctl_hdr h;

	do {
		if (test_recv_ctl(r->ctl, &h, b))
			return -1;
	} while (h.type == RMIG_MSG_PING);
	return h.type == type ? 0 : -1;
}

static void test_no_access_after_completion(void **state)
{
	uint8_t complete[12] = { 0 };
	struct rmig_frame f = { .type = RMIG_FRAME_SYNC, .arg = 1 };
	struct dest d;
	struct raw r;
	int st;

	(void)state;
	dest_start(&d);
	assert_int_equal(raw_open(&r, d.port, 0), 0);
	/* a proper migration: one page written, sync, complete */
	memset(r.buf, 0xee, 4096);
	assert_int_equal(post_wait(&r, IBV_WR_RDMA_WRITE, 4096, r.raddr), IBV_WC_SUCCESS);
	rmig_frame_encode(&f, r.buf);
	assert_int_equal(post_wait(&r, IBV_WR_SEND, RMIG_FRAME_HDR_LEN, 0), IBV_WC_SUCCESS);
	assert_int_equal(await_msg(&r, RMIG_MSG_SYNC_ACK), 0);
	rmig_put_be32(complete + 4, 1); /* flags 0, 1 block, 0 blobs */
	assert_int_equal(test_send_ctl(r.ctl, RMIG_MSG_COMPLETE, complete, sizeof(complete)), 0);
	assert_int_equal(await_msg(&r, RMIG_MSG_COMPLETE_ACK), 0);
	pthread_join(d.th, NULL);
	assert_int_equal(d.rc, 0);
	assert_int_equal(d.mem[0], 0xee);
	/* the session still exists (the VMM keeps it), but the source's access is gone */
	memset(r.buf, 0x77, 4096);
	st = post_wait(&r, IBV_WR_RDMA_WRITE, 4096, r.raddr + 8192);
	printf("# write after completion: %s\n", st < 0 ? "no completion" : ibv_wc_status_str(st));
	assert_int_not_equal(st, IBV_WC_SUCCESS);
	for (uint32_t k = 4096; k < BLOCK_LEN; k += 512)
		assert_int_equal(d.mem[k], 0x5a);
	raw_close(&r);
	rmig_session_destroy(d.s);
	guarded_free(d.mem, BLOCK_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_private_data),
		cmocka_unit_test(test_channel_twice),
		cmocka_unit_test(test_two_channels),
		cmocka_unit_test(test_short_send),
		cmocka_unit_test(test_zero_out_of_range),
		cmocka_unit_test(test_ram_by_send),
		cmocka_unit_test(test_write_past_the_block),
		cmocka_unit_test(test_no_access_after_completion),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
