/* SPDX-License-Identifier: MIT */
/*
 * wire.h - rmig wire format: control messages (TCP control connection) and
 * data frames (TCP data channels). Host structs are separate from the wire
 * bytes; all wire integers are big-endian; encoders never fail on valid host
 * structs, decoders reject truncated, oversized and inconsistent input with
 * -EBADMSG and never read past the given length.
 *
 * Control message: 16-byte header then `len` payload bytes.
 *   u32 magic "RMIG" | u16 type | u16 flags (0) | u32 len | u32 reserved (0)
 * Data frame: 32-byte header, then `len` payload bytes for WRITE_RAM/STATE.
 *   u32 magic "RMDF" | u8 type | u8 flags | u16 reserved | u32 id | u32 len |
 *   u64 offset | u64 arg
 */
#ifndef RMIG_WIRE_H
#define RMIG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rmig.h"

#define RMIG_PROTO_VERSION 1
#define RMIG_CTL_MAGIC 0x524d4947u  /* "RMIG" */
#define RMIG_DATA_MAGIC 0x524d4446u /* "RMDF" */
#define RMIG_CTL_HDR_LEN 16
#define RMIG_CTL_MAX 131072 /* largest control payload */
#define RMIG_FRAME_HDR_LEN 32
/*
 * A device-state chunk carries at most this much, whatever extent_max is:
 * on RDMA it travels by SEND, and a destination's receive slots hold at
 * least this much (the destination cannot know the source's extent_max).
 */
#define RMIG_STATE_CHUNK_MAX (1u << 20)
#define RMIG_EP_MAX 256     /* transport endpoint descriptor */
#define RMIG_DESC_MAX 256   /* registration descriptor */
#define RMIG_ERRMSG_MAX 256
#define RMIG_BLOBS_MAX 4096 /* device-state blobs per session */
#define RMIG_DIGEST_LEN 16

/* Capability bits exchanged in HELLO/HELLO_ACK. */
#define RMIG_CAP_VERIFY (1u << 0)
#define RMIG_CAP_AUTH (1u << 1) /* the source holds a key: challenge it */
#define RMIG_CAP_POSTCOPY (1u << 2) /* the source may switch to postcopy */
#define RMIG_CAP_URGENT (1u << 3)   /* the last data channel carries requested pages only */
/*
 * The source resumes session @session_id, which failed in precopy; a
 * destination that kept that session's memory answers RMIG_ACK_RESUMED,
 * one that did not takes it as a new migration (a source that sends this
 * bit then sends every page). A destination that keeps a session refuses
 * every HELLO but its source's.
 */
#define RMIG_CAP_RESUME (1u << 4)
/*
 * The source takes RAIL_DOWN: a rail that fails mid-session fails over
 * (core/failover.c). Only where the destination answers RMIG_ACK_FAILOVER;
 * otherwise a failed rail fails the session, as with a peer of an earlier
 * release, which knows neither bit nor message.
 */
#define RMIG_CAP_FAILOVER (1u << 5)
/*
 * The source takes FALLBACK: when its last rail fails, the channels go on
 * over TCP to the control connection's address (core/failover.c). Only
 * with RMIG_CAP_FAILOVER, and where the destination answers
 * RMIG_ACK_FALLBACK.
 */
#define RMIG_CAP_FALLBACK (1u << 6)
/*
 * HELLO_ACK caps. ZEROED: every destination block reads as zero, so a zero
 * page the source never sent needs no marker (a page it sent before, now
 * zero, still does). A source that does not know the bit sends markers.
 */
#define RMIG_ACK_ZEROED (1u << 0)
/* A RAILS message follows HELLO_ACK: more destination addresses (rails). */
#define RMIG_ACK_RAILS (1u << 1)
/* The destination kept the resumed session's memory (see RMIG_CAP_RESUME). */
#define RMIG_ACK_RESUMED (1u << 2)
/* The destination takes RAIL_DOWN too (see RMIG_CAP_FAILOVER). */
#define RMIG_ACK_FAILOVER (1u << 3)
/* The destination takes FALLBACK too (see RMIG_CAP_FALLBACK). */
#define RMIG_ACK_FALLBACK (1u << 4)

#define RMIG_AUTH_NONCE_LEN 32
#define RMIG_AUTH_MAC_LEN 32 /* HMAC-SHA256 */

enum rmig_msg_type {
	RMIG_MSG_HELLO = 1,
	RMIG_MSG_HELLO_ACK = 2,
	RMIG_MSG_ERROR = 3,
	RMIG_MSG_SYNC_ACK = 4,
	RMIG_MSG_STATE_BEGIN = 5,
	RMIG_MSG_COMPLETE = 6,
	RMIG_MSG_COMPLETE_ACK = 7,
	RMIG_MSG_PING = 8,
	RMIG_MSG_REG = 9,
	RMIG_MSG_AUTH_CHALLENGE = 10, /* dest: nonce; mac all zero */
	RMIG_MSG_AUTH_PROOF = 11,     /* source: nonce + mac; dest: mac (nonce zero) */
	RMIG_MSG_PC_DISCARD = 12,     /* source: pages the destination does not have */
	RMIG_MSG_PC_RUN = 13,         /* source: postcopy begins (after every DISCARD) */
	RMIG_MSG_PAGE_REQ = 14,       /* dest: send these pages now */
	RMIG_MSG_RAILS = 15,          /* dest, after HELLO_ACK: its other rails */
	RMIG_MSG_RAILS_USE = 16,      /* source, after RAILS: the rails it uses (u64 mask) */
	RMIG_MSG_RAIL_DOWN = 17,      /* either: a rail failed mid-session (u64 rail index) */
	RMIG_MSG_FALLBACK = 18,       /* source: open TCP channels (u64 rail); dest: their endpoint */
	RMIG_MSG_TYPE_MAX,
};

enum rmig_frame_type {
	RMIG_FRAME_WRITE_RAM = 1, /* id = block, offset, len payload bytes */
	RMIG_FRAME_ZERO_RAM = 2,  /* id = block, offset, len bytes to zero */
	RMIG_FRAME_WRITE_STATE = 3, /* id = blob, offset, len payload, arg = blob total */
	RMIG_FRAME_SYNC = 4,      /* arg = sync id */
	RMIG_FRAME_CHAN_HELLO = 5, /* id = channel, offset = version, arg = session id */
	RMIG_FRAME_TYPE_MAX,
};

const char *rmig_msg_name(unsigned int type);
const char *rmig_frame_name(unsigned int type);

struct rmig_ctl_hdr {
	uint16_t type;
	uint32_t len;
};

struct rmig_wire_block {
	char name[RMIG_NAME_MAX];
	uint64_t length;
	uint32_t page_size;
};

struct rmig_msg_hello {
	uint32_t version;
	uint32_t caps;
	uint64_t session_id;
	uint32_t nchannels;
	uint32_t transport;
	uint32_t nblocks;
	struct rmig_wire_block blocks[RMIG_BLOCKS_MAX];
};

struct rmig_msg_hello_ack {
	uint32_t version;
	uint32_t caps;
	uint16_t ep_len;
	uint8_t ep[RMIG_EP_MAX];
};

/*
 * RAILS: the destination's data-channel endpoints beyond the control
 * connection's own (rail 0): rail r is an address of the destination and
 * the transport's endpoint there (as HELLO_ACK's ep). Channel i goes
 * through rail i % (n + 1). Addresses are unicast and specified.
 */
struct rmig_wire_rail {
	uint8_t family;   /* 4 or 6 */
	uint8_t addr[16]; /* IPv4: the first 4 bytes, the rest zero */
	uint16_t ep_len;
	uint8_t ep[RMIG_EP_MAX];
};

struct rmig_msg_rails {
	uint32_t n; /* 1..RMIG_RAILS_MAX - 1 */
	struct rmig_wire_rail r[RMIG_RAILS_MAX - 1];
};

struct rmig_msg_error {
	int32_t code; /* positive errno */
	char msg[RMIG_ERRMSG_MAX];
};

struct rmig_msg_state_begin {
	uint32_t blob;
	uint32_t instance;
	uint64_t total;
	char name[RMIG_NAME_MAX];
};

struct rmig_msg_complete {
	uint32_t flags; /* RMIG_F_VERIFY: digests follow */
	uint32_t nblocks;
	uint32_t nblobs;
	uint8_t (*block_digest)[RMIG_DIGEST_LEN]; /* nblocks, caller-owned */
	uint8_t (*blob_digest)[RMIG_DIGEST_LEN];  /* nblobs, by blob id order */
};

struct rmig_msg_reg {
	uint32_t block;
	uint16_t desc_len;
	uint8_t desc[RMIG_DESC_MAX];
};

struct rmig_msg_auth {
	uint8_t nonce[RMIG_AUTH_NONCE_LEN];
	uint8_t mac[RMIG_AUTH_MAC_LEN];
};

/* Postcopy: bit i (LSB first in each byte) stands for page @first + i. */
#define RMIG_PC_DISCARD_BITS ((RMIG_CTL_MAX - 16) * 8)
struct rmig_msg_pc_discard {
	uint32_t block;
	uint64_t first;
	uint32_t nbits;
	const uint8_t *bits; /* decode: points into the payload */
};

struct rmig_msg_page_req {
	uint32_t block;
	uint64_t offset; /* bytes, a multiple of the block's page size */
	uint64_t len;
};

struct rmig_frame {
	uint8_t type;
	uint8_t flags;
	uint32_t id;
	uint32_t len;
	uint64_t offset;
	uint64_t arg;
};

/* Control header: encode into 16 bytes; decode checks magic, type, length. */
void rmig_ctl_hdr_encode(uint8_t *buf, uint16_t type, uint32_t len);
int rmig_ctl_hdr_decode(const uint8_t *buf, struct rmig_ctl_hdr *h);

/*
 * Payload encoders write at most @cap bytes and return the length used, or
 * -ENOSPC. Decoders return 0 or -EBADMSG.
 */
int rmig_hello_encode(const struct rmig_msg_hello *m, uint8_t *buf, size_t cap);
int rmig_hello_decode(const uint8_t *buf, size_t len, struct rmig_msg_hello *m);
int rmig_hello_ack_encode(const struct rmig_msg_hello_ack *m, uint8_t *buf, size_t cap);
int rmig_hello_ack_decode(const uint8_t *buf, size_t len, struct rmig_msg_hello_ack *m);
int rmig_error_encode(const struct rmig_msg_error *m, uint8_t *buf, size_t cap);
int rmig_error_decode(const uint8_t *buf, size_t len, struct rmig_msg_error *m);
int rmig_u64_encode(uint64_t v, uint8_t *buf, size_t cap);
int rmig_u64_decode(const uint8_t *buf, size_t len, uint64_t *v);
int rmig_state_begin_encode(const struct rmig_msg_state_begin *m, uint8_t *buf, size_t cap);
int rmig_state_begin_decode(const uint8_t *buf, size_t len, struct rmig_msg_state_begin *m);
/* Complete: digests arrays must be provided by the caller for decode too. */
int rmig_complete_encode(const struct rmig_msg_complete *m, uint8_t *buf, size_t cap);
int rmig_complete_decode(const uint8_t *buf, size_t len, struct rmig_msg_complete *m,
			 uint32_t max_blocks, uint32_t max_blobs);
int rmig_rails_encode(const struct rmig_msg_rails *m, uint8_t *buf, size_t cap);
/* -EBADMSG for a count out of range, a family not 4 or 6, an address that
 * is unspecified, multicast, broadcast or loose bytes past an IPv4 one. */
int rmig_rails_decode(const uint8_t *buf, size_t len, struct rmig_msg_rails *m);
int rmig_reg_encode(const struct rmig_msg_reg *m, uint8_t *buf, size_t cap);
int rmig_reg_decode(const uint8_t *buf, size_t len, struct rmig_msg_reg *m);

int rmig_pc_discard_encode(const struct rmig_msg_pc_discard *m, uint8_t *buf, size_t cap);
int rmig_pc_discard_decode(const uint8_t *buf, size_t len, struct rmig_msg_pc_discard *m);
int rmig_page_req_encode(const struct rmig_msg_page_req *m, uint8_t *buf, size_t cap);
int rmig_page_req_decode(const uint8_t *buf, size_t len, struct rmig_msg_page_req *m);

/* Auth messages: exactly nonce + mac, nothing more or less. */
int rmig_auth_encode(const struct rmig_msg_auth *m, uint8_t *buf, size_t cap);
int rmig_auth_decode(const uint8_t *buf, size_t len, struct rmig_msg_auth *m);

void rmig_frame_encode(const struct rmig_frame *f, uint8_t *buf);
int rmig_frame_decode(const uint8_t *buf, struct rmig_frame *f);

/* Big-endian helpers. */
static inline void rmig_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void rmig_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void rmig_put_be64(uint8_t *p, uint64_t v)
{
	rmig_put_be32(p, (uint32_t)(v >> 32));
	rmig_put_be32(p + 4, (uint32_t)v);
}
static inline uint16_t rmig_get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t rmig_get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t rmig_get_be64(const uint8_t *p)
{
	return ((uint64_t)rmig_get_be32(p) << 32) | rmig_get_be32(p + 4);
}

#endif
