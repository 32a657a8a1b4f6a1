/* SPDX-License-Identifier: MIT */
/*
 * test_tp_select.c - the transport registry (core/tp_select.c): every
 * backend this build holds states its size, kind and capabilities; the
 * choice for a session: TCP as asked, RDMA only where its probe reaches the
 * peer (else a clear refusal), AUTO falling back to TCP with the reason, and
 * TLS, which only TCP carries, steering the choice.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sock.h"
#include "transport.h"

static int ctl_fd = -1, peer_fd = -1;

/* A control connection over loopback, as a source would hold. */
static int setup(void **state)
{
	char port[16];
	int lfd;

	(void)state;
	if (rmig_sock_listen("127.0.0.1", "0", &lfd))
		return -1;
	snprintf(port, sizeof(port), "%d", rmig_sock_local_port(lfd));
	if (rmig_sock_connect("127.0.0.1", port, 2000, &ctl_fd) ||
	    rmig_sock_accept(lfd, 2000, &peer_fd))
		return -1;
	close(lfd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(ctl_fd);
	close(peer_fd);
	return 0;
}

static void test_registry(void **state)
{
	static const enum rmig_transport_kind kinds[] = { RMIG_TRANSPORT_TCP, RMIG_TRANSPORT_RDMA,
							  RMIG_TRANSPORT_FILE };
	char why[256] = "";

	(void)state;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const struct rmig_transport_ops *ops = rmig_tp_find(kinds[i], why, sizeof(why));

		if (!ops) { /* only RDMA may be missing from a build */
			assert_int_equal(kinds[i], RMIG_TRANSPORT_RDMA);
			assert_non_null(strstr(why, "built without the rdma backend"));
			continue;
		}
		assert_int_equal(ops->size, sizeof(struct rmig_transport_ops));
		assert_int_equal(ops->kind, kinds[i]);
		assert_non_null(ops->create);
	}
	assert_true(rmig_tp_find(RMIG_TRANSPORT_TCP, NULL, 0)->caps & RMIG_TP_CAP_TLS);
	assert_true(rmig_tp_find(RMIG_TRANSPORT_FILE, NULL, 0)->caps & RMIG_TP_CAP_LOCAL);
	assert_non_null(rmig_tp_find(RMIG_TRANSPORT_FILE, NULL, 0)->ctl);
	if (rmig_tp_find(RMIG_TRANSPORT_RDMA, NULL, 0)) {
		assert_true(rmig_tp_find(RMIG_TRANSPORT_RDMA, NULL, 0)->caps &
			    RMIG_TP_CAP_ONE_SIDED);
		assert_non_null(rmig_tp_find(RMIG_TRANSPORT_RDMA, NULL, 0)->probe);
	}
	assert_null(rmig_tp_find(RMIG_TRANSPORT_AUTO, why, sizeof(why)));
	assert_string_equal(why, "no such transport");
}

static void test_select(void **state)
{
	const struct rmig_transport_ops *ops, *rdma = rmig_tp_find(RMIG_TRANSPORT_RDMA, NULL, 0);
	char why[320];
	int rc;

	(void)state;
	assert_int_equal(rmig_tp_select(RMIG_TRANSPORT_TCP, 0, ctl_fd, &ops, why, sizeof(why)), 0);
	assert_ptr_equal(ops, &rmig_tcp_ops);
	/* TLS: only TCP carries it */
	assert_int_equal(rmig_tp_select(RMIG_TRANSPORT_RDMA, RMIG_TP_CAP_TLS, ctl_fd, &ops, why,
					sizeof(why)),
			 -EINVAL);
	assert_null(ops);
	assert_non_null(strstr(why, "RDMA writes are not encrypted"));
	assert_int_equal(rmig_tp_select(RMIG_TRANSPORT_AUTO, RMIG_TP_CAP_TLS, ctl_fd, &ops, why,
					sizeof(why)),
			 0);
	assert_ptr_equal(ops, &rmig_tcp_ops);
	assert_string_equal(why, "tcp, because TLS covers TCP connections only");
	/* RDMA as asked: the RDMA backend where its probe reaches the peer, else refused */
	rc = rmig_tp_select(RMIG_TRANSPORT_RDMA, 0, ctl_fd, &ops, why, sizeof(why));
	print_message("# rdma over loopback: %d, %s\n", rc, why);
	if (rc == 0) {
		assert_ptr_equal(ops, rdma);
		assert_true(strncmp(why, "rdma (", 6) == 0);
	} else {
		assert_int_equal(rc, -ENODEV);
		assert_null(ops);
		assert_true(strncmp(why, "transport rdma unavailable: ", 28) == 0);
		assert_true(strlen(why) > 28);
	}
	/* AUTO: the same, falling back to TCP with the reason */
	rc = rmig_tp_select(RMIG_TRANSPORT_AUTO, 0, ctl_fd, &ops, why, sizeof(why));
	if (rc == 0) {
		assert_ptr_equal(ops, rdma);
	} else {
		assert_int_equal(rc, 1);
		assert_ptr_equal(ops, &rmig_tcp_ops);
		assert_true(strncmp(why, "tcp, because rdma is unavailable: ", 34) == 0);
	}
	assert_int_equal(rmig_tp_select(RMIG_TRANSPORT_FILE, 0, ctl_fd, &ops, why, sizeof(why)),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_select),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
