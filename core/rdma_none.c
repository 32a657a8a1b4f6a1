/* SPDX-License-Identifier: MIT */
/* rdma_none.c - stands in for rdma/ when rmig is built without libibverbs/librdmacm. */
#include <errno.h>
#include <stdio.h>

#include "transport.h"

const struct rmig_transport_ops *rmig_rdma_transport(void)
{
	return NULL;
}
