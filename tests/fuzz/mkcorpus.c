/* SPDX-License-Identifier: MIT */
/*
 * mkcorpus.c - write the seed corpus of every fuzz target under DIR (one
 * folder per target): well-formed messages and frames made with the real
 * encoders, plus a few near misses. Run once; the output is committed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wire.h"

#define CM_MAGIC 0x524d434du /* RMIG_RDMA_CM_MAGIC */
#define CM_SID 0x0123456789abcdefull

static const char *dir;

static void put(const char *target, const char *name, const void *p, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f))
		exit(1);
}

static uint8_t buf[1 << 16];

static void ctl_seed(const char *name, uint8_t sel, int n)
{
	static uint8_t tmp[sizeof(buf) + 1];

	if (n < 0)
		exit(1);
	tmp[0] = sel;
	memcpy(tmp + 1, buf, (size_t)n);
	put("ctl", name, tmp, (size_t)n + 1);
}

static size_t frame(uint8_t *p, uint8_t type, uint32_t id, uint64_t off, uint32_t len,
		    uint64_t arg, uint8_t fill)
{
	struct rmig_frame f = { .type = type, .id = id, .len = len, .offset = off, .arg = arg };
	size_t pay = type == RMIG_FRAME_WRITE_RAM || type == RMIG_FRAME_WRITE_STATE ? len : 0;

	rmig_frame_encode(&f, p);
	memset(p + RMIG_FRAME_HDR_LEN, fill, pay);
	return RMIG_FRAME_HDR_LEN + pay;
}

int main(int argc, char **argv)
{
	static struct rmig_msg_hello h;
	struct rmig_msg_hello_ack ha = { .version = 1, .ep_len = 2, .ep = { 0x12, 0x34 } };
	struct rmig_msg_error e = { .code = 5, .msg = "refusing the source: layout" };
	struct rmig_msg_state_begin sb = { .blob = 0, .instance = 1, .total = 200, .name = "nic" };
	struct rmig_msg_reg rg = { .block = 0, .desc_len = 16 };
	struct rmig_msg_auth au;
	static struct rmig_msg_rails rl;
	uint8_t dg[3][RMIG_DIGEST_LEN] = { { 1 }, { 2 }, { 3 } };
	struct rmig_msg_complete c = { .flags = RMIG_F_VERIFY, .nblocks = 2, .nblobs = 1,
				       .block_digest = dg, .blob_digest = dg + 2 };
	uint8_t *p;
	size_t n;

	if (argc != 2)
		return 2;
	dir = argv[1];
	mkdir(dir, 0755);

	/* ctl: selector byte, then the payload */
	h.version = RMIG_PROTO_VERSION;
	h.caps = RMIG_CAP_VERIFY | RMIG_CAP_AUTH;
	h.session_id = CM_SID;
	h.nchannels = 2;
	h.transport = RMIG_TRANSPORT_TCP;
	h.nblocks = 2;
	strcpy(h.blocks[0].name, "ram");
	h.blocks[0].length = 64 * 4096;
	h.blocks[0].page_size = 4096;
	strcpy(h.blocks[1].name, "rom");
	h.blocks[1].length = 8 * 4096;
	h.blocks[1].page_size = 4096;
	rmig_ctl_hdr_encode(buf, RMIG_MSG_HELLO, 120);
	ctl_seed("hdr", 0, RMIG_CTL_HDR_LEN);
	ctl_seed("hello", 1, rmig_hello_encode(&h, buf, sizeof(buf)));
	ctl_seed("hello_ack", 2, rmig_hello_ack_encode(&ha, buf, sizeof(buf)));
	ctl_seed("error", 3, rmig_error_encode(&e, buf, sizeof(buf)));
	ctl_seed("u64", 4, rmig_u64_encode(77, buf, sizeof(buf)));
	ctl_seed("state_begin", 5, rmig_state_begin_encode(&sb, buf, sizeof(buf)));
	ctl_seed("complete", 6, rmig_complete_encode(&c, buf, sizeof(buf)));
	memset(rg.desc, 0xab, rg.desc_len);
	ctl_seed("reg", 7, rmig_reg_encode(&rg, buf, sizeof(buf)));
	memset(&au, 0x42, sizeof(au));
	ctl_seed("auth", 8, rmig_auth_encode(&au, buf, sizeof(buf)));
	rl.n = 2;
	rl.r[0].family = 4;
	memcpy(rl.r[0].addr, (uint8_t[]){ 10, 0, 1, 1 }, 4);
	rl.r[0].ep_len = 2;
	rl.r[1].family = 6;
	rl.r[1].addr[0] = 0xfd;
	rl.r[1].addr[15] = 1;
	ctl_seed("rails", 9, rmig_rails_encode(&rl, buf, sizeof(buf)));

	/* tcp_frames: one data channel's stream into blocks ram (64 pages) and rom (8) */
	p = buf;
	p += frame(p, RMIG_FRAME_WRITE_RAM, 0, 0, 4096, 0, 0x11);
	p += frame(p, RMIG_FRAME_ZERO_RAM, 0, 8192, 8192, 0, 0);
	p += frame(p, RMIG_FRAME_WRITE_RAM, 1, 7 * 4096, 4096, 0, 0x22);
	p += frame(p, RMIG_FRAME_WRITE_STATE, 0, 0, 100, 200, 0x33);
	p += frame(p, RMIG_FRAME_WRITE_STATE, 0, 100, 100, 200, 0x44);
	p += frame(p, RMIG_FRAME_SYNC, 0, 0, 0, 1, 0);
	put("tcp_frames", "stream", buf, (size_t)(p - buf));
	n = frame(buf, RMIG_FRAME_WRITE_RAM, 1, 8 * 4096 - 16, 32, 0, 0x55); /* past rom's end */
	put("tcp_frames", "past_end", buf, n);
	n = frame(buf, RMIG_FRAME_ZERO_RAM, 0, 63 * 4096, 8192, 0, 0); /* zeroes past ram's end */
	put("tcp_frames", "zero_past_end", buf, n);
	n = frame(buf, RMIG_FRAME_WRITE_STATE, 3, 4000, 200, 4100, 0x66); /* chunk past its blob */
	put("tcp_frames", "state_past_end", buf, n);

	/* rdma_msg: 2-byte length, then one SEND as it lands in a staging buffer */
	p = buf;
	n = frame(p + 2, RMIG_FRAME_ZERO_RAM, 0, 4096, 4096, 0, 0);
	rmig_put_be16(p, (uint16_t)n);
	p += 2 + n;
	n = frame(p + 2, RMIG_FRAME_WRITE_STATE, 0, 0, 64, 64, 0x77);
	rmig_put_be16(p, (uint16_t)n);
	p += 2 + n;
	n = frame(p + 2, RMIG_FRAME_SYNC, 0, 0, 0, 1, 0);
	rmig_put_be16(p, (uint16_t)n);
	p += 2 + n;
	put("rdma_msg", "sends", buf, (size_t)(p - buf));

	/* cm_priv: magic, version, channel, session */
	rmig_put_be32(buf, CM_MAGIC);
	rmig_put_be16(buf + 4, RMIG_PROTO_VERSION);
	rmig_put_be16(buf + 6, 1);
	rmig_put_be64(buf + 8, CM_SID);
	put("cm_priv", "chan1", buf, 16);
	rmig_put_be16(buf + 6, 4);
	put("cm_priv", "chan_out_of_range", buf, 16);
	memset(buf + 16, 0, 40); /* rdma_cm pads private data */
	rmig_put_be16(buf + 6, 3);
	put("cm_priv", "padded", buf, 56);
	return 0;
}
