/* SPDX-License-Identifier: MIT */
/*
 * fuzz_cm_priv.c - the private data of an RDMA CM connect request, checked
 * before a queue pair is accepted (rmig_rdma_priv_check): an accepted one
 * must name a channel in range and the right session, version and magic.
 */
#include <stdlib.h>

#include "../../rdma/rdma_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t sid = 0x0123456789abcdefull;
	unsigned int chan = 999;

	if (!rmig_rdma_priv_check(size ? data : NULL, size, sid, 4, &chan)) {
		if (size < RMIG_RDMA_CM_PRIV_LEN || chan >= 4 || rmig_get_be64(data + 8) != sid ||
		    rmig_get_be32(data) != RMIG_RDMA_CM_MAGIC)
			abort();
	}
	return 0;
}
