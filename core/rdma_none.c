/* SPDX-License-Identifier: MIT */
/* rdma_none.c - stands in for rdma/ when rmig is built without libibverbs/librdmacm. */
#include <errno.h>
#include <stdio.h>

#include "transport.h"

const struct rmig_transport_ops *rmig_rdma_transport(void)
{
	return NULL;
}

int rmig_rdma_probe(int ctl_fd, char *why, size_t why_len)
{
	(void)ctl_fd;
	snprintf(why, why_len, "rmig was built without the rdma backend "
			       "(libibverbs and librdmacm were not found at build time)");
	return -ENODEV;
}
