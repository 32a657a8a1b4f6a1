/* SPDX-License-Identifier: MIT */
/*
 * fuzz_rdma_msg.c - SENDs that land in a destination's staging buffers over
 * RDMA (zero ranges, device-state chunks, sync markers), through the real
 * handler (rmig_rdma_apply_msg) into a destination session. The input is a
 * sequence of messages, each prefixed by a 2-byte length.
 */
#include "../../rdma/rdma_int.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmig_session *s = fz_dest_open();
	int rc = 0;

	while (size >= 2 && !rc) {
		size_t n = rmig_get_be16(data);

		data += 2;
		size -= 2;
		n = n < size ? n : size;
		rc = rmig_rdma_apply_msg(&s->up, (unsigned int)(n % FZ_CHANNELS), data, (uint32_t)n);
		data += n;
		size -= n;
	}
	fz_dest_close(s);
	return 0;
}
