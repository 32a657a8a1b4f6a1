/* SPDX-License-Identifier: MIT */
/* test_wire.c - control messages and data frames: round trips, and every malformed shape. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "wire.h"

static void hello_fill(struct rmig_msg_hello *m, uint32_t nblocks)
{
	memset(m, 0, sizeof(*m));
	m->version = RMIG_PROTO_VERSION;
	m->caps = RMIG_CAP_VERIFY;
	m->session_id = 0x1122334455667788ull;
	m->nchannels = 8;
	m->transport = 1;
	m->nblocks = nblocks;
	for (uint32_t i = 0; i < nblocks; i++) {
		snprintf(m->blocks[i].name, RMIG_NAME_MAX, "block%u", i);
		m->blocks[i].length = (uint64_t)(i + 1) << 30;
		m->blocks[i].page_size = 4096u << (i % 10);
	}
}

static void test_hello_roundtrip(void **state)
{
	static struct rmig_msg_hello in, out;
	static uint8_t buf[RMIG_CTL_MAX];
	int n;

	(void)state;
	hello_fill(&in, RMIG_BLOCKS_MAX);
	n = rmig_hello_encode(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(rmig_hello_decode(buf, (size_t)n, &out), 0);
	assert_int_equal(out.nblocks, RMIG_BLOCKS_MAX);
	assert_int_equal(out.session_id, in.session_id);
	for (uint32_t i = 0; i < in.nblocks; i++) {
		assert_string_equal(out.blocks[i].name, in.blocks[i].name);
		assert_int_equal(out.blocks[i].length, in.blocks[i].length);
		assert_int_equal(out.blocks[i].page_size, in.blocks[i].page_size);
	}
	/* Every truncation is rejected. */
	for (int cut = 0; cut < n; cut += 7)
		assert_int_equal(rmig_hello_decode(buf, (size_t)cut, &out), -EBADMSG);
	/* Trailing garbage is rejected. */
	assert_int_equal(rmig_hello_decode(buf, (size_t)n + 1, &out), -EBADMSG);
	/* Too small a buffer: the encoder says so. */
	assert_int_equal(rmig_hello_encode(&in, buf, 100), -ENOSPC);
}

static void test_hello_bad_fields(void **state)
{
	static struct rmig_msg_hello in, out;
	uint8_t buf[4096];
	int n;

	(void)state;
	hello_fill(&in, 2);
	n = rmig_hello_encode(&in, buf, sizeof(buf));
	/* block count beyond the limit */
	rmig_put_be32(buf + 24, RMIG_BLOCKS_MAX + 1);
	assert_int_equal(rmig_hello_decode(buf, (size_t)n, &out), -EBADMSG);
	rmig_put_be32(buf + 24, 2);
	/* a name without its NUL */
	memset(buf + 32, 'x', RMIG_NAME_MAX);
	assert_int_equal(rmig_hello_decode(buf, (size_t)n, &out), -EBADMSG);
	/* an empty name */
	memset(buf + 32, 0, RMIG_NAME_MAX);
	assert_int_equal(rmig_hello_decode(buf, (size_t)n, &out), -EBADMSG);
	/* another version decodes just far enough to be reported as such */
	n = rmig_hello_encode(&in, buf, sizeof(buf));
	rmig_put_be32(buf, 99);
	assert_int_equal(rmig_hello_decode(buf, 32, &out), 0);
	assert_int_equal(out.version, 99);
}

static void test_ctl_hdr(void **state)
{
	uint8_t b[RMIG_CTL_HDR_LEN];
	struct rmig_ctl_hdr h;

	(void)state;
	rmig_ctl_hdr_encode(b, RMIG_MSG_SYNC_ACK, 8);
	assert_int_equal(rmig_ctl_hdr_decode(b, &h), 0);
	assert_int_equal(h.type, RMIG_MSG_SYNC_ACK);
	assert_int_equal(h.len, 8);
	b[0] ^= 1; /* magic */
	assert_int_equal(rmig_ctl_hdr_decode(b, &h), -EBADMSG);
	rmig_ctl_hdr_encode(b, RMIG_MSG_TYPE_MAX, 0); /* unknown type */
	assert_int_equal(rmig_ctl_hdr_decode(b, &h), -EBADMSG);
	rmig_ctl_hdr_encode(b, 0, 0);
	assert_int_equal(rmig_ctl_hdr_decode(b, &h), -EBADMSG);
	rmig_ctl_hdr_encode(b, RMIG_MSG_PING, RMIG_CTL_MAX + 1); /* oversized */
	assert_int_equal(rmig_ctl_hdr_decode(b, &h), -EBADMSG);
	assert_string_equal(rmig_msg_name(RMIG_MSG_COMPLETE), "COMPLETE");
	assert_string_equal(rmig_msg_name(999), "UNKNOWN");
}

static void test_frame(void **state)
{
	struct rmig_frame in = { .type = RMIG_FRAME_WRITE_RAM,
				 .id = 7,
				 .len = 1u << 20,
				 .offset = 0xfffffffffffff000ull,
				 .arg = 42 };
	struct rmig_frame out;
	uint8_t b[RMIG_FRAME_HDR_LEN];

	(void)state;
	rmig_frame_encode(&in, b);
	assert_int_equal(rmig_frame_decode(b, &out), 0);
	assert_int_equal(out.type, in.type);
	assert_int_equal(out.id, 7);
	assert_int_equal(out.len, 1u << 20);
	assert_int_equal(out.offset, in.offset);
	assert_int_equal(out.arg, 42);
	b[2] ^= 0xff; /* magic */
	assert_int_equal(rmig_frame_decode(b, &out), -EBADMSG);
	rmig_frame_encode(&in, b);
	b[4] = RMIG_FRAME_TYPE_MAX; /* unknown type */
	assert_int_equal(rmig_frame_decode(b, &out), -EBADMSG);
	rmig_frame_encode(&in, b);
	b[5] = 1; /* flags must be zero */
	assert_int_equal(rmig_frame_decode(b, &out), -EBADMSG);
	rmig_frame_encode(&in, b);
	b[7] = 1; /* reserved must be zero */
	assert_int_equal(rmig_frame_decode(b, &out), -EBADMSG);
}

static void test_error_msg(void **state)
{
	struct rmig_msg_error in = { .code = 71 }, out;
	uint8_t b[512];
	int n;

	(void)state;
	strcpy(in.msg, "layout mismatch\n\x01");
	n = rmig_error_encode(&in, b, sizeof(b));
	assert_int_equal(rmig_error_decode(b, (size_t)n, &out), 0);
	assert_int_equal(out.code, 71);
	/* control bytes made printable */
	assert_string_equal(out.msg, "layout mismatch\\x0a\\x01");
	strcpy(in.msg, "\x1b[31mred\x9b" "2J");
	n = rmig_error_encode(&in, b, sizeof(b));
	assert_int_equal(rmig_error_decode(b, (size_t)n, &out), 0);
	assert_string_equal(out.msg, "\\x1b[31mred\\x9b2J");
	assert_int_equal(rmig_error_decode(b, (size_t)n - 1, &out), -EBADMSG);
	rmig_put_be16(b + 4, RMIG_ERRMSG_MAX); /* text length over the limit */
	assert_int_equal(rmig_error_decode(b, (size_t)n, &out), -EBADMSG);
	rmig_put_be32(b, 0); /* code 0 is not an error */
	assert_int_equal(rmig_error_decode(b, (size_t)n, &out), -EBADMSG);
}

/* The one escape every log line and peer ERROR text goes through. */
static void test_escape(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(rmig_escape(out, sizeof(out), "plain ~text"), 11);
	assert_string_equal(out, "plain ~text");
	assert_int_equal(rmig_escape(out, sizeof(out), "\x1b[1m\x7f\xff"), 15);
	assert_string_equal(out, "\\x1b[1m\\x7f\\xff");
	/* cut on a whole escape, never inside one */
	assert_int_equal(rmig_escape(out, sizeof(out), "abcdefghijklm\n"), 13);
	assert_string_equal(out, "abcdefghijklm");
	assert_int_equal(rmig_escape(out, 1, "abc"), 0);
	assert_string_equal(out, "");
}

static void test_state_begin_and_reg(void **state)
{
	struct rmig_msg_state_begin in = { .blob = 3, .instance = 9, .total = 400ull << 20 }, out;
	struct rmig_msg_reg rin = { .block = 2, .desc_len = 12 }, rout;
	uint8_t b[512];
	int n;

	(void)state;
	strcpy(in.name, "virtio-net");
	n = rmig_state_begin_encode(&in, b, sizeof(b));
	assert_int_equal(rmig_state_begin_decode(b, (size_t)n, &out), 0);
	assert_string_equal(out.name, "virtio-net");
	assert_int_equal(out.total, 400ull << 20);
	assert_int_equal(rmig_state_begin_decode(b, (size_t)n - 1, &out), -EBADMSG);

	memset(rin.desc, 0xab, rin.desc_len);
	n = rmig_reg_encode(&rin, b, sizeof(b));
	assert_int_equal(rmig_reg_decode(b, (size_t)n, &rout), 0);
	assert_int_equal(rout.desc_len, 12);
	assert_memory_equal(rout.desc, rin.desc, 12);
	rmig_put_be16(b + 4, RMIG_DESC_MAX + 1);
	assert_int_equal(rmig_reg_decode(b, (size_t)n, &rout), -EBADMSG);
}

static void test_complete(void **state)
{
	uint8_t bd[2][RMIG_DIGEST_LEN], od[2][RMIG_DIGEST_LEN];
	uint8_t blob[3][RMIG_DIGEST_LEN], oblob[3][RMIG_DIGEST_LEN];
	struct rmig_msg_complete in = { .flags = RMIG_F_VERIFY, .nblocks = 2, .nblobs = 3,
					.block_digest = bd, .blob_digest = blob };
	struct rmig_msg_complete out = { .block_digest = od, .blob_digest = oblob };
	uint8_t b[1024];
	int n;

	(void)state;
	memset(bd, 1, sizeof(bd));
	memset(blob, 2, sizeof(blob));
	n = rmig_complete_encode(&in, b, sizeof(b));
	assert_int_equal(rmig_complete_decode(b, (size_t)n, &out, 2, 3), 0);
	assert_memory_equal(od, bd, sizeof(bd));
	assert_memory_equal(oblob, blob, sizeof(blob));
	/* more blocks or blobs than the receiver allows */
	assert_int_equal(rmig_complete_decode(b, (size_t)n, &out, 1, 3), -EBADMSG);
	assert_int_equal(rmig_complete_decode(b, (size_t)n, &out, 2, 2), -EBADMSG);
	/* unknown flag bits */
	rmig_put_be32(b, 0x80000001u);
	assert_int_equal(rmig_complete_decode(b, (size_t)n, &out, 2, 3), -EBADMSG);
}

static void test_random_garbage(void **state)
{
	static struct rmig_msg_hello h;
	struct rmig_msg_hello_ack a;
	struct rmig_msg_error e;
	uint8_t b[600];
	uint32_t x = 12345;

	(void)state;
	/* Decoders never crash on noise (ASan checks the reads). */
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(x % sizeof(b));

		for (size_t i = 0; i < sizeof(b); i++) {
			x = x * 1103515245u + 12345u;
			b[i] = (uint8_t)(x >> 16);
		}
		if (rmig_hello_decode(b, len, &h) == 0 && h.version == RMIG_PROTO_VERSION)
			assert_true(h.nblocks <= RMIG_BLOCKS_MAX);
		if (rmig_hello_ack_decode(b, len, &a) == 0)
			assert_true(a.ep_len <= RMIG_EP_MAX);
		if (rmig_error_decode(b, len, &e) == 0) {
			assert_true(e.code > 0 && e.code <= 4095);
			for (const char *p = e.msg; *p; p++)
				assert_true((unsigned char)*p >= 0x20);
		}
	}
}

/* RAILS: what goes out comes back; a count, family or address out of place is refused. */
static void test_rails(void **state)
{
	static struct rmig_msg_rails m, d;
	static uint8_t b[RMIG_CTL_MAX];
	static const uint8_t v6[16] = { 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	int n;

	(void)state;
	memset(&m, 0, sizeof(m));
	m.n = 2;
	m.r[0].family = 4;
	memcpy(m.r[0].addr, (uint8_t[]){ 10, 0, 1, 1 }, 4);
	m.r[0].ep_len = 2;
	m.r[0].ep[0] = 0x12;
	m.r[0].ep[1] = 0x34;
	m.r[1].family = 6;
	memcpy(m.r[1].addr, v6, 16);
	m.r[1].ep_len = 0;
	n = rmig_rails_encode(&m, b, sizeof(b));
	assert_true(n > 0);
	assert_int_equal(rmig_rails_decode(b, (size_t)n, &d), 0);
	assert_int_equal(d.n, 2);
	assert_memory_equal(&d.r[0], &m.r[0], offsetof(struct rmig_wire_rail, ep) + 2);
	assert_int_equal(d.r[1].family, 6);
	assert_memory_equal(d.r[1].addr, v6, 16);
	/* truncated, or a byte too many */
	assert_int_equal(rmig_rails_decode(b, (size_t)n - 1, &d), -EBADMSG);
	assert_int_equal(rmig_rails_decode(b, (size_t)n + 1, &d), -EBADMSG);
	/* addresses no channel can go to */
	static const uint8_t bad4[][4] = { { 0, 0, 0, 0 }, { 0, 1, 2, 3 }, { 224, 0, 0, 1 },
					   { 255, 255, 255, 255 } };
	for (size_t i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++) {
		m.n = 1;
		memcpy(m.r[0].addr, bad4[i], 4);
		n = rmig_rails_encode(&m, b, sizeof(b));
		assert_int_equal(rmig_rails_decode(b, (size_t)n, &d), -EBADMSG);
	}
	m.r[0].family = 4;
	memcpy(m.r[0].addr, (uint8_t[]){ 10, 0, 1, 1 }, 4);
	m.r[0].addr[9] = 1; /* loose bytes past an IPv4 address */
	n = rmig_rails_encode(&m, b, sizeof(b));
	assert_int_equal(rmig_rails_decode(b, (size_t)n, &d), -EBADMSG);
	memset(m.r[0].addr, 0, 16);
	m.r[0].family = 6; /* :: */
	n = rmig_rails_encode(&m, b, sizeof(b));
	assert_int_equal(rmig_rails_decode(b, (size_t)n, &d), -EBADMSG);
	m.r[0].addr[0] = 0xff; /* multicast */
	n = rmig_rails_encode(&m, b, sizeof(b));
	assert_int_equal(rmig_rails_decode(b, (size_t)n, &d), -EBADMSG);
	m.r[0].family = 5;
	m.r[0].addr[0] = 0xfd;
	n = rmig_rails_encode(&m, b, sizeof(b));
	assert_int_equal(rmig_rails_decode(b, (size_t)n, &d), -EBADMSG);
	/* counts: none, and more than a destination may have */
	m.n = 0;
	assert_int_equal(rmig_rails_encode(&m, b, sizeof(b)), -EINVAL);
	memset(b, 0, 4);
	assert_int_equal(rmig_rails_decode(b, 4, &d), -EBADMSG);
	b[3] = RMIG_RAILS_MAX; /* big-endian count */
	assert_int_equal(rmig_rails_decode(b, 4, &d), -EBADMSG);
	assert_string_equal(rmig_msg_name(RMIG_MSG_RAILS), "RAILS");
}

static void test_auth_msg(void **state)
{
	struct rmig_msg_auth m, d;
	uint8_t buf[80];

	(void)state;
	memset(m.nonce, 0xa5, sizeof(m.nonce));
	memset(m.mac, 0x5a, sizeof(m.mac));
	assert_int_equal(rmig_auth_encode(&m, buf, 63), -ENOSPC);
	assert_int_equal(rmig_auth_encode(&m, buf, sizeof(buf)), 64);
	assert_int_equal(rmig_auth_decode(buf, 64, &d), 0);
	assert_memory_equal(&m, &d, sizeof(m));
	/* exactly 64 bytes: shorter and longer are both malformed */
	assert_int_equal(rmig_auth_decode(buf, 63, &d), -EBADMSG);
	assert_int_equal(rmig_auth_decode(buf, 65, &d), -EBADMSG);
	assert_int_equal(rmig_auth_decode(buf, 0, &d), -EBADMSG);
	assert_string_equal(rmig_msg_name(RMIG_MSG_AUTH_PROOF), "AUTH_PROOF");
	assert_string_equal(rmig_msg_name(RMIG_MSG_AUTH_CHALLENGE), "AUTH_CHALLENGE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello_roundtrip),
		cmocka_unit_test(test_hello_bad_fields),
		cmocka_unit_test(test_ctl_hdr),
		cmocka_unit_test(test_frame),
		cmocka_unit_test(test_error_msg),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_state_begin_and_reg),
		cmocka_unit_test(test_complete),
		cmocka_unit_test(test_random_garbage),
		cmocka_unit_test(test_auth_msg),
		cmocka_unit_test(test_rails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
