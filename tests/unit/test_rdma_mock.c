/* SPDX-License-Identifier: MIT */
/*
 * test_rdma_mock.c - the verbs backend's error paths and posting rules with
 * the shim mocked (linked with --wrap): completion errors name the status,
 * QP and channel; every Nth work request is signalled; the in-flight budget
 * is never exceeded; registration failures say what to fix; malformed
 * receives are rejected. The real path runs on soft-RoCE (tests/vm).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rdma_int.h"

/* ---- the mocked shim ---- */

static struct {
	int post_rc;
	unsigned int posted, signalled;
	struct ibv_wc pending[1024];
	unsigned int npending;
	bool deliver; /* completions for signalled WRs appear at the next poll */
	enum ibv_wc_status status;
	int reg_rc;
	struct ibv_wc recv_wc;
	bool have_recv;
} m;

int __wrap_rmig_rv_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr);
int __wrap_rmig_rv_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr)
{
	uint64_t bytes = 0;

	(void)qp;
	if (m.post_rc)
		return m.post_rc;
	for (int i = 0; i < wr->num_sge; i++)
		bytes += wr->sg_list[i].length;
	assert_true(bytes <= (64u << 10) + RMIG_FRAME_HDR_LEN);
	m.posted++;
	if (wr->send_flags & IBV_SEND_SIGNALED) {
		m.signalled++;
		m.pending[m.npending++] = (struct ibv_wc){ .wr_id = wr->wr_id,
							  .status = m.status,
							  .qp_num = 0x1234,
							  .opcode = IBV_WC_RDMA_WRITE };
	}
	return 0;
}

int __wrap_rmig_rv_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc);
int __wrap_rmig_rv_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
	int k = 0;

	(void)cq;
	if (m.have_recv) {
		wc[0] = m.recv_wc;
		m.have_recv = false;
		return 1;
	}
	if (!m.deliver)
		return 0;
	while (k < n && m.npending) {
		wc[k++] = m.pending[0];
		memmove(m.pending, m.pending + 1, --m.npending * sizeof(m.pending[0]));
	}
	return k;
}

int __wrap_rmig_rv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access,
			  struct ibv_mr **mr_p);
int __wrap_rmig_rv_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access,
			  struct ibv_mr **mr_p)
{
	static struct ibv_mr mr = { .lkey = 7, .rkey = 9 };

	(void)pd, (void)addr, (void)len, (void)access;
	if (m.reg_rc)
		return m.reg_rc;
	*mr_p = &mr;
	return 0;
}

int __wrap_rmig_rv_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr);
int __wrap_rmig_rv_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr)
{
	(void)qp, (void)wr;
	return 0;
}

/* ---- a backend with fake upcalls ---- */

static char failmsg[512];
static int failerr;

static int up_fail(void *arg, int err, const char *fmt, ...)
{
	va_list ap;

	(void)arg;
	if (!failerr) {
		failerr = err;
		va_start(ap, fmt);
		vsnprintf(failmsg, sizeof(failmsg), fmt, ap);
		va_end(ap);
	}
	return err;
}

static int up_place(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len,
		    void **dst_p)
{
	(void)arg, (void)chan, (void)t, (void)len, (void)dst_p;
	return up_fail(NULL, -ERANGE, "place: out of range");
}

static int up_zero(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len)
{
	(void)arg, (void)chan, (void)t, (void)len;
	return up_fail(NULL, -ERANGE, "zero: out of range");
}

static const struct rmig_tp_upcalls up = { .fail = up_fail, .place = up_place, .zero = up_zero };
static struct ibv_qp qp = { .qp_num = 0x1234 };
static struct rdma_cm_id cmid = { .qp = &qp };
static struct ibv_mr hdr_mr = { .lkey = 1 };

static struct rmig_rdma_tp *tp_new(enum rmig_role role, uint64_t budget)
{
	struct rmig_rdma_tp *t = calloc(1, sizeof(*t));

	t->base.ops = rmig_rdma_transport();
	t->base.p = (struct rmig_tp_params){ .up = &up, .nchannels = 4, .timeout_ms = 200,
					     .extent_max = 1 << 20, .role = role };
	t->budget = budget;
	t->pd = (struct ibv_pd *)(uintptr_t)0x1; /* never dereferenced: reg_mr is mocked */
	pthread_mutex_init(&t->lock, NULL);
	t->remote[0] = (struct rmig_rdma_remote){ .addr = 0x10000, .len = 64 << 20, .rkey = 5,
						   .set = true };
	t->blocks[0] = (struct rmig_rdma_mr_ent){ .addr = (uint8_t *)0x1, .len = 64 << 20,
						   .mr = &hdr_mr };
	return t;
}

static struct rmig_rdma_chan *chan_new(struct rmig_rdma_tp *t)
{
	struct rmig_rdma_chan *c = calloc(1, sizeof(*c));

	c->base.tp = &t->base;
	c->base.idx = 2;
	c->id = &cmid;
	c->qp_num = 0x1234;
	c->hdrs = calloc(RMIG_RDMA_SQ_DEPTH, RMIG_FRAME_HDR_LEN);
	c->hdr_mr = &hdr_mr;
	return c;
}

static int setup(void **state)
{
	(void)state;
	memset(&m, 0, sizeof(m));
	failerr = 0;
	failmsg[0] = '\0';
	return 0;
}

static void test_completion_error_names_cause(void **state)
{
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_SOURCE, 8 << 20);
	struct rmig_rdma_chan *c = chan_new(t);
	struct rmig_target tg = { .kind = RMIG_TGT_RAM, .id = 0, .offset = 0 };
	struct iovec iov = { .iov_base = (void *)0x1000, .iov_len = 65536 };

	(void)state;
	m.deliver = true;
	m.status = IBV_WC_REM_ACCESS_ERR;
	assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), 0);
	assert_int_equal(rmig_rdma_flush(&c->base), -EIO);
	assert_int_equal(failerr, -EIO);
	assert_non_null(strstr(failmsg, "remote access error"));
	assert_non_null(strstr(failmsg, "qp 0x1234"));
	assert_non_null(strstr(failmsg, "channel 2"));
	free(c->hdrs);
	free(c);
	free(t);
}

static void test_signal_every_nth_and_budget(void **state)
{
	uint64_t budget = 4 << 20;
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_SOURCE, budget);
	struct rmig_rdma_chan *c = chan_new(t);
	struct iovec iov = { .iov_base = (void *)0x1000, .iov_len = 64 << 10 };
	bool tail_signalled;

	(void)state;
	m.deliver = true;
	for (int i = 0; i < 1000; i++) {
		struct rmig_target tg = { .kind = RMIG_TGT_RAM, .offset = (uint64_t)i * 4096 };

		assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), 0);
		assert_true(c->posted_bytes - c->done_bytes <= budget);
	}
	tail_signalled = c->last_signaled == c->posted;
	assert_int_equal(rmig_rdma_flush(&c->base), 0);
	assert_int_equal(c->posted, c->done);
	/* a zero-length signalled WRITE only behind an unsignalled tail */
	assert_int_equal(m.posted, tail_signalled ? 1000 : 1001);
	/* a signal at least every 16th */
	assert_true(m.signalled >= 1000 / RMIG_RDMA_SIGNAL_EVERY);
	assert_true(m.signalled < 1000 / 2); /* not every one */
	free(c->hdrs);
	free(c);
	free(t);
}

static void test_no_completion_times_out(void **state)
{
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_SOURCE, 8 << 20);
	struct rmig_rdma_chan *c = chan_new(t);
	struct rmig_target tg = { .kind = RMIG_TGT_RAM };
	struct iovec iov = { .iov_base = (void *)0x1000, .iov_len = 4096 };

	(void)state;
	m.deliver = false; /* the NIC never answers */
	assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), 0);
	assert_int_equal(rmig_rdma_flush(&c->base), -ETIMEDOUT);
	assert_non_null(strstr(failmsg, "no completion within 200 ms"));
	free(c->hdrs);
	free(c);
	free(t);
}

static void test_write_outside_remote_block(void **state)
{
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_SOURCE, 8 << 20);
	struct rmig_rdma_chan *c = chan_new(t);
	struct rmig_target tg = { .kind = RMIG_TGT_RAM, .offset = (64 << 20) - 4096 };
	struct iovec iov = { .iov_base = (void *)0x1000, .iov_len = 8192 };

	(void)state;
	assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), -ERANGE);
	assert_int_equal(m.posted, 0); /* nothing reached the NIC */
	free(c->hdrs);
	free(c);
	free(t);
}

/*
 * A staged write (postcopy: a SEND the destination places) needs no remote
 * registration: a destination that resumes postcopy registers none. It is
 * bounded by the local block all the same.
 */
static void test_staged_write_without_remote(void **state)
{
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_SOURCE, 8 << 20);
	struct rmig_rdma_chan *c = chan_new(t);
	struct rmig_target tg = { .kind = RMIG_TGT_RAM, .offset = 4096, .staged = true };
	struct iovec iov = { .iov_base = (void *)0x1000, .iov_len = 4096 };

	(void)state;
	t->remote[0].set = false;
	assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), 0);
	assert_int_equal(m.posted, 1);
	/* not staged: the remote block is needed */
	tg.staged = false;
	assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), -ERANGE);
	/* staged past the local block */
	tg.staged = true;
	tg.offset = (64 << 20) - 4096;
	iov.iov_len = 8192;
	assert_int_equal(rmig_rdma_write(&c->base, &tg, &iov, 1), -ERANGE);
	assert_int_equal(m.posted, 1);
	free(c->hdrs);
	free(c);
	free(t);
}

static void test_registration_errors(void **state)
{
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_DEST, 8 << 20);
	uint8_t desc[RMIG_DESC_MAX];
	uint16_t dlen;

	(void)state;
	memset(t->blocks, 0, sizeof(t->blocks));
	m.reg_rc = -EFAULT;
	assert_int_equal(rmig_rdma_reg(&t->base, 0, (void *)0x1000, 1 << 20, desc, &dlen), -EFAULT);
	assert_non_null(strstr(failmsg, "pins only writable mappings"));
	failerr = 0;
	m.reg_rc = -ENOMEM;
	assert_int_equal(rmig_rdma_reg(&t->base, 1, (void *)0x1000, 1 << 20, desc, &dlen), -ENOMEM);
	assert_non_null(strstr(failmsg, "memlock"));
	/* success: the descriptor carries address, length and rkey */
	m.reg_rc = 0;
	assert_int_equal(rmig_rdma_reg(&t->base, 2, (void *)0x5000, 1 << 20, desc, &dlen), 0);
	assert_int_equal(dlen, RMIG_RDMA_DESC_LEN);
	assert_int_equal(rmig_get_be64(desc), 0x5000);
	assert_int_equal(rmig_get_be64(desc + 8), 1 << 20);
	assert_int_equal(rmig_get_be32(desc + 16), 9);
	/* a descriptor whose length disagrees with the block is refused */
	failerr = 0;
	assert_int_equal(rmig_rdma_set_remote(&t->base, 2, 2 << 20, desc, dlen), -EBADMSG);
	assert_int_equal(rmig_rdma_set_remote(&t->base, 2, 1 << 20, desc, dlen - 1), -EBADMSG);
	free(t);
}

static void test_malformed_receive(void **state)
{
	struct rmig_rdma_tp *t = tp_new(RMIG_ROLE_DEST, 8 << 20);
	struct rmig_rdma_chan *c = chan_new(t);
	struct rmig_rdma_recv_slot slot = { .c = c };
	uint8_t buf[64] = { 0 };
	static struct ibv_comp_channel cc = { .fd = -1 };

	(void)state;
	c->cc = &cc;
	slot.buf = buf;
	c->rbuf_size = sizeof(buf);
	c->rbuf_mr = &hdr_mr;
	/* 10 bytes: shorter than a frame header */
	m.recv_wc = (struct ibv_wc){ .wr_id = (uintptr_t)&slot, .opcode = IBV_WC_RECV,
				     .byte_len = 10 };
	m.have_recv = true;
	assert_int_equal(rmig_rdma_progress(&c->base), -EBADMSG);
	assert_non_null(strstr(failmsg, "malformed message (10 bytes)"));
	/* a ZERO frame that the core refuses (out of range): its error stands */
	failerr = 0;
	{
		struct rmig_frame f = { .type = RMIG_FRAME_ZERO_RAM, .len = 4096, .offset = 1ull << 40 };

		rmig_frame_encode(&f, buf);
	}
	m.recv_wc.byte_len = RMIG_FRAME_HDR_LEN;
	m.have_recv = true;
	assert_int_equal(rmig_rdma_progress(&c->base), -ERANGE);
	/* a WRITE_STATE whose length disagrees with the bytes received */
	failerr = 0;
	{
		struct rmig_frame f = { .type = RMIG_FRAME_WRITE_STATE, .len = 100, .arg = 100 };

		rmig_frame_encode(&f, buf);
	}
	m.recv_wc.byte_len = RMIG_FRAME_HDR_LEN + 10;
	m.have_recv = true;
	assert_int_equal(rmig_rdma_progress(&c->base), -EBADMSG);
	assert_non_null(strstr(failmsg, "WRITE_STATE frame of 42 bytes is malformed"));
	free(c->hdrs);
	free(c);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_completion_error_names_cause, setup),
		cmocka_unit_test_setup(test_signal_every_nth_and_budget, setup),
		cmocka_unit_test_setup(test_no_completion_times_out, setup),
		cmocka_unit_test_setup(test_write_outside_remote_block, setup),
		cmocka_unit_test_setup(test_staged_write_without_remote, setup),
		cmocka_unit_test_setup(test_registration_errors, setup),
		cmocka_unit_test_setup(test_malformed_receive, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
