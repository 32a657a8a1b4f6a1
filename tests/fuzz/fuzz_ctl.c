/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ctl.c - every control-message parser: the header, the handshake
 * (HELLO, HELLO_ACK, AUTH, RAILS), ERROR, SYNC_ACK, STATE_BEGIN, COMPLETE, REG. The
 * first byte picks the parser, the rest is the payload. A payload that
 * decodes must encode again to a payload that decodes to the same message.
 */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[RMIG_CTL_MAX];

#define ROUNDTRIP(type, dec, enc)                                                                \
	do {                                                                                     \
		static type a, b;                                                                \
		int n, n1;                                                                       \
		memset(&a, 0, sizeof(a));                                                        \
		memset(&b, 0, sizeof(b));                                                        \
		if (dec(p, len, &a))                                                             \
			break;                                                                   \
		n1 = enc(&a, out, RMIG_CTL_MAX / 2);                                             \
		if (n1 < 0 || dec(out, (size_t)n1, &b))                                          \
			abort();                                                                 \
		n = enc(&b, out + RMIG_CTL_MAX / 2, RMIG_CTL_MAX / 2);                           \
		if (n != n1 || memcmp(out, out + RMIG_CTL_MAX / 2, (size_t)n))                   \
			abort();                                                                 \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1;
	size_t len = size ? size - 1 : 0;

	if (!size)
		return 0;
	switch (data[0] % 10) {
	case 0: {
		struct rmig_ctl_hdr h;

		if (len >= RMIG_CTL_HDR_LEN && !rmig_ctl_hdr_decode(p, &h) &&
		    (h.len > RMIG_CTL_MAX || !h.type || h.type >= RMIG_MSG_TYPE_MAX))
			abort();
		break;
	}
	case 1: {
		static struct rmig_msg_hello m;

		/* Another version's HELLO decodes only as far as its version, by design. */
		if (len <= RMIG_CTL_MAX / 2 && !rmig_hello_decode(p, len, &m) &&
		    m.version == RMIG_PROTO_VERSION)
			ROUNDTRIP(struct rmig_msg_hello, rmig_hello_decode, rmig_hello_encode);
		break;
	}
	case 2:
		ROUNDTRIP(struct rmig_msg_hello_ack, rmig_hello_ack_decode, rmig_hello_ack_encode);
		break;
	case 3:
		ROUNDTRIP(struct rmig_msg_error, rmig_error_decode, rmig_error_encode);
		break;
	case 4: {
		uint64_t v;

		if (!rmig_u64_decode(p, len, &v) && len != 8)
			abort();
		break;
	}
	case 5:
		ROUNDTRIP(struct rmig_msg_state_begin, rmig_state_begin_decode,
			  rmig_state_begin_encode);
		break;
	case 6: {
		static uint8_t dg[2][RMIG_BLOCKS_MAX + 64][RMIG_DIGEST_LEN];
		struct rmig_msg_complete m = { .block_digest = dg[0], .blob_digest = dg[0] + RMIG_BLOCKS_MAX };
		struct rmig_msg_complete m2 = { .block_digest = dg[1], .blob_digest = dg[1] + RMIG_BLOCKS_MAX };
		int n;

		if (rmig_complete_decode(p, len, &m, RMIG_BLOCKS_MAX, 64))
			break;
		n = rmig_complete_encode(&m, out, sizeof(out));
		if (n < 0 || rmig_complete_decode(out, (size_t)n, &m2, RMIG_BLOCKS_MAX, 64) ||
		    m2.nblocks != m.nblocks || m2.nblobs != m.nblobs || m2.flags != m.flags)
			abort();
		break;
	}
	case 7:
		ROUNDTRIP(struct rmig_msg_reg, rmig_reg_decode, rmig_reg_encode);
		break;
	case 8:
		ROUNDTRIP(struct rmig_msg_auth, rmig_auth_decode, rmig_auth_encode);
		break;
	case 9:
		ROUNDTRIP(struct rmig_msg_rails, rmig_rails_decode, rmig_rails_encode);
		break;
	}
	return 0;
}
