/* SPDX-License-Identifier: MIT */
/*
 * tp_select.c - the transport registry: which backends this build holds,
 * and which one a session gets (transport.h). RDMA is preferred where a
 * device reaches the peer; TCP is the fallback that always exists.
 */
#include <errno.h>
#include <stdio.h>

#include "transport.h"

const struct rmig_transport_ops *rmig_tp_find(enum rmig_transport_kind k, char *why,
					      size_t why_len)
{
	const struct rmig_transport_ops *ops = NULL;

	switch (k) {
	case RMIG_TRANSPORT_TCP:
		ops = &rmig_tcp_ops;
		break;
	case RMIG_TRANSPORT_RDMA:
		ops = rmig_rdma_transport();
		break;
	case RMIG_TRANSPORT_FILE:
		ops = &rmig_file_ops;
		break;
	default:
		break;
	}
	if (!ops && why && why_len)
		snprintf(why, why_len, k == RMIG_TRANSPORT_RDMA ?
			 "rmig was built without the rdma backend (libibverbs and librdmacm "
			 "were not found at build time)" : "no such transport");
	return ops;
}

/* @why (@why_len bytes) becomes what it said, between @before and @after. */
static void reword(char *why, size_t why_len, const char *before, const char *after)
{
	char was[200];

	snprintf(was, sizeof(was), "%s", why);
	snprintf(why, why_len, "%s%s%s", before, was, after);
}

/* @ops can serve: it has @need, and its probe (if any) reaches the peer. */
static int usable(const struct rmig_transport_ops *ops, uint32_t need, int ctl_fd, char *why,
		  size_t why_len)
{
	if ((ops->caps & need) != need) {
		snprintf(why, why_len, "%s lacks what the session needs", ops->name);
		return -EINVAL;
	}
	if (ops->probe)
		return ops->probe(ctl_fd, why, why_len);
	snprintf(why, why_len, "%s", ops->name);
	return 0;
}

int rmig_tp_select(enum rmig_transport_kind want, uint32_t need, int ctl_fd,
		   const struct rmig_transport_ops **ops_p, char *why, size_t why_len)
{
	const struct rmig_transport_ops *rdma = rmig_tp_find(RMIG_TRANSPORT_RDMA, why, why_len);
	int rc = -ENODEV;

	*ops_p = NULL;
	if (want == RMIG_TRANSPORT_TCP) {
		*ops_p = &rmig_tcp_ops;
		snprintf(why, why_len, "tcp, as asked");
		return 0;
	}
	if (want != RMIG_TRANSPORT_RDMA && want != RMIG_TRANSPORT_AUTO) {
		snprintf(why, why_len, "no such network transport");
		return -EINVAL;
	}
	if (need & RMIG_TP_CAP_TLS && !(rdma && rdma->caps & RMIG_TP_CAP_TLS)) {
		if (want == RMIG_TRANSPORT_RDMA) {
			snprintf(why, why_len, "rdma with TLS: RDMA writes are not encrypted; use "
					       "tcp (or auto)");
			return -EINVAL;
		}
		*ops_p = &rmig_tcp_ops;
		snprintf(why, why_len, "tcp, because TLS covers TCP connections only");
		return 0;
	}
	if (rdma)
		rc = usable(rdma, need, ctl_fd, why, why_len);
	/* asked for, through a device whose link is down: its connect says so, on both ends */
	if (rc == -ENETDOWN && want == RMIG_TRANSPORT_RDMA)
		rc = 0;
	if (!rc) {
		reword(why, why_len, "rdma (", ")");
		*ops_p = rdma;
		return 0;
	}
	if (want == RMIG_TRANSPORT_RDMA) {
		reword(why, why_len, "transport rdma unavailable: ", "");
		return -ENODEV;
	}
	reword(why, why_len, "tcp, because rdma is unavailable: ", "");
	*ops_p = &rmig_tcp_ops;
	return 1;
}
