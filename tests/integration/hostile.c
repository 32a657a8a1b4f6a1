/* SPDX-License-Identifier: MIT */
/*
 * hostile.c - peers that break the protocol on purpose. A hostile source
 * talks raw bytes to a destination session whose RAM sits between PROT_NONE
 * guard pages (a write outside the block crashes the test); a hostile
 * destination answers a source session badly. Every case must end in a clear
 * error within the timeout, never a hang or a write outside guest RAM.
 *
 *   hostile                      run every case in-process (cmocka)
 *   hostile source CASE HOST:PORT   be a hostile source for `rdma-migrate recv`
 *   hostile list                 print the source cases
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "sock.h"
#include "testlib.h"
#include "wire.h"
#include "hostile.h"

#define BLOCK_LEN (1u << 20)

/* ---- a raw source ---- */

struct raw {
	int ctl;
	int data;
	int stray; /* a stranger's silent connection to the data port, or -1 */
	uint64_t sid;
	uint16_t port;
};

static void hello_default(struct rmig_msg_hello *m, uint64_t sid)
{
	memset(m, 0, sizeof(*m));
	m->version = RMIG_PROTO_VERSION;
	m->session_id = sid;
	m->nchannels = 1;
	m->transport = RMIG_TRANSPORT_TCP;
	m->nblocks = 1;
	strcpy(m->blocks[0].name, "ram");
	m->blocks[0].length = BLOCK_LEN;
	m->blocks[0].page_size = 4096;
}

/* A stranger on the data port before the channel: none, garbage then gone, or silent. */
enum stray { STRAY_NONE, STRAY_GARBAGE, STRAY_SILENT, STRAY_PARTIAL };

/*
 * Full handshake and one data channel. 0 or -1. @stray_first: a stranger's
 * connection to the data port before the channel's.
 */
/* HELLO caps a case adds to the defaults (reset after each case) */
static uint32_t raw_caps;

static int raw_open2(struct raw *r, const char *host, const char *port, uint64_t sid_on_data,
		     enum stray stray_first)
{
	static struct rmig_msg_hello m;
	static uint8_t buf[RMIG_CTL_MAX];
	struct rmig_msg_hello_ack ack;
	struct rmig_ctl_hdr h;
	struct rmig_frame f = { .type = RMIG_FRAME_CHAN_HELLO, .offset = RMIG_PROTO_VERSION };
	uint8_t fb[RMIG_FRAME_HDR_LEN];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int n;

	r->sid = 0xfeedfacecafebeefull;
	r->data = -1;
	r->stray = -1;
	if (rmig_sock_connect(host, port, 2000, &r->ctl))
		return -1;
	hello_default(&m, r->sid);
	m.caps |= raw_caps;
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	if (test_send_ctl(r->ctl, RMIG_MSG_HELLO, buf, (uint32_t)n) || test_recv_ctl(r->ctl, &h, buf) ||
	    h.type != RMIG_MSG_HELLO_ACK || rmig_hello_ack_decode(buf, h.len, &ack) ||
	    test_recv_ctl(r->ctl, &h, buf) || h.type != RMIG_MSG_REG)
		return -1;
	r->port = rmig_get_be16(ack.ep);
	getpeername(r->ctl, (struct sockaddr *)&ss, &sl);
	((struct sockaddr_in *)&ss)->sin_port = htons(r->port);
	if (stray_first == STRAY_GARBAGE) {
		int sfd;

		if (rmig_sock_connect_addr((struct sockaddr *)&ss, sl, 2000, &sfd))
			return -1;
		rmig_sock_write_full(sfd, "GET / HTTP/1.0\r\n\r\n", 18);
		usleep(100000);
		close(sfd);
	} else if (stray_first == STRAY_SILENT || stray_first == STRAY_PARTIAL) {
		if (rmig_sock_connect_addr((struct sockaddr *)&ss, sl, 2000, &r->stray))
			return -1;
		if (stray_first == STRAY_PARTIAL) { /* the start of a hello, and no more */
			rmig_frame_encode(&f, fb);
			rmig_sock_write_full(r->stray, fb, 10);
		}
		usleep(100000); /* accepted first */
	}
	if (rmig_sock_connect_addr((struct sockaddr *)&ss, sl, 2000, &r->data))
		return -1;
	f.arg = sid_on_data ? sid_on_data : r->sid;
	rmig_frame_encode(&f, fb);
	return rmig_sock_write_full(r->data, fb, sizeof(fb));
}

static int raw_open(struct raw *r, const char *host, const char *port, uint64_t sid_on_data)
{
	return raw_open2(r, host, port, sid_on_data, STRAY_NONE);
}

static void raw_close(struct raw *r)
{
	if (r->ctl >= 0)
		close(r->ctl);
	if (r->data >= 0)
		close(r->data);
	if (r->stray >= 0)
		close(r->stray);
	r->ctl = r->data = r->stray = -1;
}

static int send_frame(struct raw *r, uint8_t type, uint32_t id, uint64_t off, uint32_t len,
		      uint64_t arg, uint32_t payload)
{
	struct rmig_frame f = { .type = type, .id = id, .len = len, .offset = off, .arg = arg };
	uint8_t fb[RMIG_FRAME_HDR_LEN];
	static uint8_t junk[BLOCK_LEN];

	memset(junk, 0xee, sizeof(junk));
	rmig_frame_encode(&f, fb);
	if (rmig_sock_write_full(r->data, fb, sizeof(fb)))
		return -1;
	return payload ? rmig_sock_write_full(r->data, junk, payload) : 0;
}

/* ---- the cases ---- */

struct hcase {
	const char *name;
	const char *expect; /* in the destination's error */
	int (*run)(const char *host, const char *port);
};

static int c_bad_magic(const char *host, const char *port)
{
	uint8_t b[RMIG_CTL_HDR_LEN] = "NOPE-not-rmig!!";
	int fd;

	if (rmig_sock_connect(host, port, 2000, &fd))
		return -1;
	rmig_sock_write_full(fd, b, sizeof(b));
	sleep(3);
	close(fd);
	return 0;
}

/* A block name that is a terminal escape sequence: shown escaped, never raw. */
static int c_escape_name(const char *host, const char *port)
{
	static struct rmig_msg_hello m;
	static uint8_t buf[RMIG_CTL_MAX];
	int fd, n;

	if (rmig_sock_connect(host, port, 2000, &fd))
		return -1;
	hello_default(&m, 1);
	strcpy(m.blocks[0].name, "evil\x1b[31m\x9b" "2J");
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	test_send_ctl(fd, RMIG_MSG_HELLO, buf, (uint32_t)n);
	sleep(3);
	close(fd);
	return 0;
}

/* Two blobs of one (name, instance): the second would be loaded over the first. */
static int c_state_name_twice(const char *host, const char *port)
{
	struct rmig_msg_state_begin m = { .total = 4096 }; /* neither complete: nothing loads */
	uint8_t buf[256];
	struct raw r;
	int rc = raw_open(&r, host, port, 0), n;

	strcpy(m.name, "dev");
	for (uint32_t id = 0; id < 2 && !rc; id++) {
		m.blob = id;
		n = rmig_state_begin_encode(&m, buf, sizeof(buf));
		rc = test_send_ctl(r.ctl, RMIG_MSG_STATE_BEGIN, buf, (uint32_t)n);
	}
	sleep(3);
	raw_close(&r);
	return rc;
}

static int c_bad_version(const char *host, const char *port)
{
	static struct rmig_msg_hello m;
	uint8_t buf[4096];
	int fd, n;

	if (rmig_sock_connect(host, port, 2000, &fd))
		return -1;
	hello_default(&m, 1);
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	rmig_put_be32(buf, 99);
	test_send_ctl(fd, RMIG_MSG_HELLO, buf, (uint32_t)n);
	sleep(3);
	close(fd);
	return 0;
}

static int c_truncated_hello(const char *host, const char *port)
{
	uint8_t hdr[RMIG_CTL_HDR_LEN], body[50] = { 0 };
	int fd;

	if (rmig_sock_connect(host, port, 2000, &fd))
		return -1;
	rmig_ctl_hdr_encode(hdr, RMIG_MSG_HELLO, 100); /* promises 100, sends 50, leaves */
	rmig_sock_write_full(fd, hdr, sizeof(hdr));
	rmig_sock_write_full(fd, body, sizeof(body));
	close(fd);
	return 0;
}

static int c_many_blocks(const char *host, const char *port)
{
	static struct rmig_msg_hello m;
	static uint8_t buf[RMIG_CTL_MAX];
	int fd, n;

	if (rmig_sock_connect(host, port, 2000, &fd))
		return -1;
	hello_default(&m, 1);
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	rmig_put_be32(buf + 24, 100000); /* nblocks far beyond the limit */
	test_send_ctl(fd, RMIG_MSG_HELLO, buf, (uint32_t)n);
	sleep(3);
	close(fd);
	return 0;
}

/* A HELLO whose layout breaks what a layout callback is promised: refused before it. */
static int send_layout(const char *host, const char *port, void (*bend)(struct rmig_msg_hello *))
{
	static struct rmig_msg_hello m;
	static uint8_t buf[RMIG_CTL_MAX];
	int fd, n;

	if (rmig_sock_connect(host, port, 2000, &fd))
		return -1;
	hello_default(&m, 1);
	bend(&m);
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	test_send_ctl(fd, RMIG_MSG_HELLO, buf, (uint32_t)n);
	sleep(3);
	close(fd);
	return 0;
}

static void bend_page(struct rmig_msg_hello *m)
{
	m->blocks[0].page_size = 3;
}

static void bend_length(struct rmig_msg_hello *m)
{
	m->blocks[0].length = BLOCK_LEN + 512;
}

static void bend_twice(struct rmig_msg_hello *m)
{
	m->nblocks = 2;
	m->blocks[1] = m->blocks[0];
}

static int c_layout_page(const char *host, const char *port)
{
	return send_layout(host, port, bend_page);
}

static int c_layout_length(const char *host, const char *port)
{
	return send_layout(host, port, bend_length);
}

static int c_layout_twice(const char *host, const char *port)
{
	return send_layout(host, port, bend_twice);
}

static int c_bad_chan_hello(const char *host, const char *port)
{
	struct raw r;
	int rc = raw_open(&r, host, port, 0x1234); /* wrong session id on the data channel */

	sleep(3);
	raw_close(&r);
	return rc;
}

/*
 * A stranger on the data port first (@how), then the source's own channel:
 * the channel is taken at once, and the destination, past its accept,
 * finds the source gone after half a second (within every timeout the
 * cases run under).
 */
static int stray_then_channel(const char *host, const char *port, enum stray how)
{
	struct raw r;
	int rc = raw_open2(&r, host, port, 0, how);

	usleep(500000);
	raw_close(&r);
	return rc;
}

/* It sends garbage and hangs up: refused. */
static int c_stray_then_channel(const char *host, const char *port)
{
	return stray_then_channel(host, port, STRAY_GARBAGE);
}

/* It says nothing and stays (before: its hello's wait ran out the timeout, and the session). */
static int c_silent_stray_then_channel(const char *host, const char *port)
{
	return stray_then_channel(host, port, STRAY_SILENT);
}

/* It starts a hello and stalls (before: the source had gone by the time its wait ended). */
static int c_stalled_stray_then_channel(const char *host, const char *port)
{
	return stray_then_channel(host, port, STRAY_PARTIAL);
}

#define FRAME_CASE(fn, ...)                                                                        \
	static int fn(const char *host, const char *port)                                         \
	{                                                                                          \
		struct raw r;                                                                      \
		int rc = raw_open(&r, host, port, 0);                                              \
		if (!rc)                                                                           \
			send_frame(&r, __VA_ARGS__);                                               \
		sleep(3);                                                                          \
		raw_close(&r);                                                                     \
		return rc;                                                                         \
	}

FRAME_CASE(c_block_oob, RMIG_FRAME_WRITE_RAM, 5, 0, 4096, 0, 4096)
FRAME_CASE(c_offset_oob, RMIG_FRAME_WRITE_RAM, 0, BLOCK_LEN - 4095, 4096, 0, 4096)
FRAME_CASE(c_offset_wrap, RMIG_FRAME_WRITE_RAM, 0, UINT64_MAX - 4095, 8192, 0, 8192)
FRAME_CASE(c_zero_oob, RMIG_FRAME_ZERO_RAM, 0, BLOCK_LEN, 4096, 0, 0)
FRAME_CASE(c_state_oob, RMIG_FRAME_WRITE_STATE, 0, 100, 4096, 1000, 4096)
FRAME_CASE(c_state_huge, RMIG_FRAME_WRITE_STATE, 0, 0, 16, 1ull << 50, 16)
FRAME_CASE(c_unknown_frame, 99, 0, 0, 0, 0, 0)

/* Two chunks that add up to the blob's length but overlap, leaving a hole. */
static int c_state_overlap(const char *host, const char *port)
{
	struct raw r;
	int rc = raw_open(&r, host, port, 0);

	if (!rc)
		rc = send_frame(&r, RMIG_FRAME_WRITE_STATE, 0, 0, 8192, 16384, 8192);
	if (!rc)
		send_frame(&r, RMIG_FRAME_WRITE_STATE, 0, 4096, 8192, 16384, 8192);
	sleep(3);
	raw_close(&r);
	return rc;
}

/* A chunk that does not start on a 4 KiB unit. */
FRAME_CASE(c_state_unaligned, RMIG_FRAME_WRITE_STATE, 0, 100, 4096, 16384, 4096)
FRAME_CASE(c_sync_zero, RMIG_FRAME_SYNC, 0, 0, 0, 0, 0)

static int c_truncated_frame(const char *host, const char *port)
{
	struct raw r;
	int rc = raw_open(&r, host, port, 0);

	if (!rc)
		send_frame(&r, RMIG_FRAME_WRITE_RAM, 0, 0, 65536, 0, 100); /* 100 of 65536 bytes */
	/* the data channel dies first; the control connection lingers */
	close(r.data);
	r.data = -1;
	usleep(500000);
	raw_close(&r);
	return rc;
}

static int c_disconnect(const char *host, const char *port)
{
	struct raw r;
	int rc = raw_open(&r, host, port, 0);

	if (!rc)
		send_frame(&r, RMIG_FRAME_WRITE_RAM, 0, 0, 65536, 0, 65536);
	raw_close(&r);
	return rc;
}

static int c_silent(const char *host, const char *port)
{
	struct raw r;
	int rc = raw_open(&r, host, port, 0);

	sleep(4); /* no PING, nothing: a stalled source */
	raw_close(&r);
	return rc;
}

/* Keep the control connection alive with PINGs for @ms: only the data side misbehaves. */
static void ping_for(int ctl, unsigned int ms)
{
	for (unsigned int t = 0; t < ms; t += 200) {
		test_send_ctl(ctl, RMIG_MSG_PING, NULL, 0);
		usleep(200000);
	}
}

/* Half a frame on the data channel, then nothing there; the control connection stays alive. */
static int c_stall_mid_frame(const char *host, const char *port)
{
	struct raw r;
	int rc = raw_open(&r, host, port, 0);

	if (!rc)
		rc = send_frame(&r, RMIG_FRAME_WRITE_RAM, 0, 0, 65536, 0, 100);
	if (!rc)
		ping_for(r.ctl, 4000);
	raw_close(&r);
	return rc;
}

/* A control message a byte at a time, each byte well inside the timeout. */
static int c_trickle_control(const char *host, const char *port)
{
	uint8_t hdr[RMIG_CTL_HDR_LEN];
	struct raw r;
	int rc = raw_open(&r, host, port, 0);

	rmig_ctl_hdr_encode(hdr, RMIG_MSG_PING, 0);
	/* the destination gives up and closes partway: that is the point */
	for (size_t i = 0; i < sizeof(hdr) && !rc; i++) {
		if (rmig_sock_write_full(r.ctl, hdr + i, 1))
			break;
		usleep(300000);
	}
	sleep(1);
	raw_close(&r);
	return rc;
}

/* HELLO and its HELLO_ACK on a new control connection: 0 and @fd_p, or -1. @buf: RMIG_CTL_MAX. */
static int hello_acked(const char *host, const char *port, uint8_t *buf, int *fd_p)
{
	static struct rmig_msg_hello m;
	struct rmig_ctl_hdr h;
	int n;

	if (rmig_sock_connect(host, port, 2000, fd_p))
		return -1;
	hello_default(&m, 7);
	n = rmig_hello_encode(&m, buf, RMIG_CTL_MAX);
	if (test_send_ctl(*fd_p, RMIG_MSG_HELLO, buf, (uint32_t)n) || test_recv_ctl(*fd_p, &h, buf) ||
	    h.type != RMIG_MSG_HELLO_ACK)
		return -1;
	return 0;
}

/* The handshake, then the control connection closes before any data channel opens. */
static int c_close_after_ack(const char *host, const char *port)
{
	static uint8_t buf[RMIG_CTL_MAX];
	int fd = -1, rc = hello_acked(host, port, buf, &fd);

	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * After HELLO_ACK, instead of its data channels: ERROR (@type 0), or
 * another message; then the connection half-closed and kept open @hold_ms
 * (a failed session not yet destroyed), or (@hold_ms 0) read to its end
 * and closed, as a session's close does. The destination must fail at once
 * with what the source said, not after its timeout for the data channels.
 */
static int after_ack(const char *host, const char *port, uint16_t type, unsigned int hold_ms)
{
	static uint8_t buf[RMIG_CTL_MAX];
	struct rmig_msg_error e = { .code = ENOMEM };
	int fd = -1, n, rc = hello_acked(host, port, buf, &fd);

	if (fd < 0)
		return -1;
	if (!rc && !type) {
		snprintf(e.msg, sizeof(e.msg), "registering ram block 'ram': no memory");
		n = rmig_error_encode(&e, buf, sizeof(buf));
		rc = n < 0 || test_send_ctl(fd, RMIG_MSG_ERROR, buf, (uint32_t)n) ? -1 : 0;
	} else if (!rc) {
		memset(buf, 0, 8);
		rc = test_send_ctl(fd, type, buf, 8) ? -1 : 0;
	}
	shutdown(fd, SHUT_WR);
	if (hold_ms)
		usleep(hold_ms * 1000);
	else /* to the destination's EOF: no unread bytes, so no RST that drops our ERROR */
		while (rmig_sock_wait(fd, POLLIN, -1, 3000) == 0 && read(fd, buf, sizeof(buf)) > 0)
			;
	close(fd);
	return rc;
}

static int c_error_after_ack(const char *host, const char *port)
{
	return after_ack(host, port, 0, TIMEOUT_MS);
}

static int c_error_close_after_ack(const char *host, const char *port)
{
	return after_ack(host, port, 0, 0);
}

static int c_msg_after_ack(const char *host, const char *port)
{
	return after_ack(host, port, RMIG_MSG_SYNC_ACK, TIMEOUT_MS);
}

/* A blob announced, never sent, and COMPLETE anyway: an error, not a wait for it. */
static int c_complete_without_blob(const char *host, const char *port)
{
	struct rmig_msg_state_begin sb = { .blob = 0, .total = 8192 };
	uint8_t dg[1][RMIG_DIGEST_LEN] = { { 0 } };
	struct rmig_msg_complete cm = { .nblocks = 1, .nblobs = 1, .block_digest = dg,
					.blob_digest = dg };
	static uint8_t buf[RMIG_CTL_MAX];
	struct raw r;
	int rc = raw_open(&r, host, port, 0), n;

	strcpy(sb.name, "dev");
	if (!rc) {
		n = rmig_state_begin_encode(&sb, buf, sizeof(buf));
		rc = test_send_ctl(r.ctl, RMIG_MSG_STATE_BEGIN, buf, (uint32_t)n);
	}
	if (!rc) {
		n = rmig_complete_encode(&cm, buf, sizeof(buf));
		rc = n < 0 ? -1 : test_send_ctl(r.ctl, RMIG_MSG_COMPLETE, buf, (uint32_t)n);
	}
	if (!rc)
		ping_for(r.ctl, 4000);
	raw_close(&r);
	return rc;
}

/*
 * One write on the data channel, @sent of its @len bytes, and COMPLETE
 * without a sync after it: refused, not acknowledged over a torn page.
 */
static int complete_after_write(const char *host, const char *port, uint32_t len, uint32_t sent)
{
	uint8_t dg[1][RMIG_DIGEST_LEN] = { { 0 } };
	struct rmig_msg_complete cm = { .nblocks = 1, .block_digest = dg, .blob_digest = dg };
	static uint8_t buf[RMIG_CTL_MAX];
	struct raw r;
	int rc = raw_open(&r, host, port, 0), n;

	if (!rc)
		rc = send_frame(&r, RMIG_FRAME_WRITE_RAM, 0, 0, len, 0, sent);
	usleep(300000); /* the channel has read what came */
	if (!rc) {
		n = rmig_complete_encode(&cm, buf, sizeof(buf));
		rc = n < 0 ? -1 : test_send_ctl(r.ctl, RMIG_MSG_COMPLETE, buf, (uint32_t)n);
	}
	if (!rc)
		ping_for(r.ctl, 4000);
	raw_close(&r);
	return rc;
}

static int c_complete_mid_frame(const char *host, const char *port)
{
	return complete_after_write(host, port, 4096, 100);
}

static int c_complete_unsynced(const char *host, const char *port)
{
	return complete_after_write(host, port, 4096, 4096);
}

/* RAIL_DOWN for rail @rail, then wait for the verdict. */
static int rail_down_case(const char *host, const char *port, uint64_t rail)
{
	struct raw r;
	uint8_t b[8];
	int rc = raw_open(&r, host, port, 0);

	if (!rc) {
		rmig_put_be64(b, rail);
		rc = test_send_ctl(r.ctl, RMIG_MSG_RAIL_DOWN, b, sizeof(b));
	}
	if (!rc)
		ping_for(r.ctl, 4000);
	raw_close(&r);
	return rc;
}

/* a rail this session never had */
static int c_rail_down_unknown(const char *host, const char *port)
{
	return rail_down_case(host, port, 5);
}

/* its only rail: nothing to fail over to */
static int c_rail_down_only(const char *host, const char *port)
{
	return rail_down_case(host, port, 0);
}

/* FALLBACK (the TCP rail after rail 0) from a source that takes it, while rail 0 is up */
static int c_fallback_rail_up(const char *host, const char *port)
{
	struct raw r;
	uint8_t b[8];
	int rc;

	raw_caps = RMIG_CAP_FAILOVER | RMIG_CAP_FALLBACK;
	rc = raw_open(&r, host, port, 0);
	raw_caps = 0;
	if (!rc) {
		rmig_put_be64(b, 1);
		rc = test_send_ctl(r.ctl, RMIG_MSG_FALLBACK, b, sizeof(b));
	}
	if (!rc)
		ping_for(r.ctl, 4000);
	raw_close(&r);
	return rc;
}

static const struct hcase cases[] = {
	{ "bad-magic", "malformed message header", c_bad_magic },
	{ "bad-version", "protocol version 99", c_bad_version },
	{ "truncated-hello", "peer closed the connection", c_truncated_hello },
	{ "many-blocks", "malformed HELLO", c_many_blocks },
	{ "layout-page-size", "malformed layout: ram block 0 ('ram', 1048576 bytes, 3-byte pages)",
	  c_layout_page },
	{ "layout-length", "has a length that is not a whole number of its pages",
	  c_layout_length },
	{ "layout-name-twice", "malformed layout: ram block 1 ('ram',", c_layout_twice },
	/* a stray on the data port is refused; the source's own channel never came */
	{ "bad-channel-hello", "refused 1 stray connection, the last: bad tcp data channel hello",
	  c_bad_chan_hello },
	/* the channel after the stray was taken: the session ran on until the source left */
	{ "stray-then-channel", "control connection: peer closed the connection",
	  c_stray_then_channel },
	{ "silent-stray-then-channel", "control connection: peer closed the connection",
	  c_silent_stray_then_channel },
	{ "stalled-stray-then-channel", "control connection: peer closed the connection",
	  c_stalled_stray_then_channel },
	{ "block-out-of-range", "unknown ram block 5", c_block_oob },
	{ "offset-out-of-range", "write outside ram block 'ram'", c_offset_oob },
	{ "offset-wraps", "write outside ram block 'ram'", c_offset_wrap },
	{ "zero-out-of-range", "write outside ram block 'ram'", c_zero_oob },
	{ "state-out-of-range", "device-state chunk out of range", c_state_oob },
	{ "state-too-big", "device state over the limit", c_state_huge },
	{ "state-overlap", "overlaps data already received", c_state_overlap },
	{ "state-unaligned", "is not aligned to 4096", c_state_unaligned },
	{ "unknown-frame", "malformed frame header", c_unknown_frame },
	{ "sync-out-of-order", "sync marker 0 out of order", c_sync_zero },
	{ "truncated-frame", "peer closed the connection mid-transfer", c_truncated_frame },
	/* "peer closed", or "the source closed" before this side took its data channel */
	{ "disconnect", "closed", c_disconnect },
	{ "silent", "peer silent", c_silent },
	{ "escape-name", "refusing the source", c_escape_name },
	{ "state-name-twice", "device-state blob 'dev' instance 0 announced twice",
	  c_state_name_twice },
	{ "stall-mid-frame", "stalled: a frame did not arrive whole", c_stall_mid_frame },
	{ "trickle-control", "did not arrive whole within", c_trickle_control },
	{ "close-after-ack", "closed the control connection before opening every data channel",
	  c_close_after_ack },
	{ "complete-without-blob", "incomplete at completion", c_complete_without_blob },
	/* before: COMPLETE_ACK, and exit 0 with 100 new bytes in the page */
	{ "complete-mid-frame",
	  "COMPLETE before the data was synced: data channel 0 began 1 write after its last sync "
	  "marker (0)",
	  c_complete_mid_frame },
	{ "complete-unsynced",
	  "COMPLETE before the data was synced: data channel 0 began 1 write after its last sync "
	  "marker (0)",
	  c_complete_unsynced },
	/* the source's word before its data channels: at once, not after the timeout */
	{ "error-after-ack", "peer reported: registering ram block 'ram': no memory",
	  c_error_after_ack },
	{ "error-close-after-ack", "peer reported: registering ram block 'ram': no memory",
	  c_error_close_after_ack },
	{ "message-after-ack", "closed the control connection before opening every data channel",
	  c_msg_after_ack },
	{ "rail-down-unknown", "bad RAIL_DOWN", c_rail_down_unknown },
	{ "rail-down-only", "cannot go on without it", c_rail_down_only },
	{ "fallback-rail-up", "unexpected FALLBACK (a rail still up", c_fallback_rail_up },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

/*
 * Two whole blobs whose files would be one: 'dev' instance 1 and 'dev.1'
 * instance 0 both name DIR/dev.1 for `recv --state-dir DIR`. A case for the
 * tool only (a library destination writes no files): cli.sh runs it.
 */
static int c_state_path_clash(const char *host, const char *port)
{
	static const struct {
		const char *name;
		uint32_t instance;
	} b[2] = { { "dev", 1 }, { "dev.1", 0 } };
	uint8_t buf[256];
	struct raw r;
	int rc = raw_open(&r, host, port, 0), n;

	for (uint32_t id = 0; id < 2 && !rc; id++) {
		struct rmig_msg_state_begin m = { .blob = id, .instance = b[id].instance,
						  .total = 4096 };

		strcpy(m.name, b[id].name);
		n = rmig_state_begin_encode(&m, buf, sizeof(buf));
		rc = test_send_ctl(r.ctl, RMIG_MSG_STATE_BEGIN, buf, (uint32_t)n);
		if (!rc)
			rc = send_frame(&r, RMIG_FRAME_WRITE_STATE, id, 0, 4096, 4096, 4096);
	}
	if (!rc)
		ping_for(r.ctl, 3000);
	raw_close(&r);
	return rc;
}

static const struct hcase cli_cases[] = {
	{ "state-path-clash", "as another blob of this migration is", c_state_path_clash },
};

/* ---- in-process: hostile source against a destination session ---- */

struct runner {
	const struct hcase *c;
	char port[16];
	int rc;
};

static char rails_use_port[16];
static volatile bool rails_use_sent;

/* Every message the destination logs: none may carry a control byte. */
static struct {
	pthread_mutex_t lock;
	bool raw;         /* a byte < 0x20 or >= 0x7f reached the callback */
	bool escaped_esc; /* a message showed ESC as \x1b */
} logged = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void log_check(void *arg, enum rmig_log_level level, const char *msg)
{
	(void)arg;
	(void)level;
	pthread_mutex_lock(&logged.lock);
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			logged.raw = true;
	if (strstr(msg, "\\x1b[31m"))
		logged.escaped_esc = true;
	pthread_mutex_unlock(&logged.lock);
}

static void *run_case(void *arg)
{
	struct runner *r = arg;

	r->rc = r->c->run("127.0.0.1", r->port);
	return NULL;
}

static void test_hostile_sources(void **state)
{
	(void)state;
	for (size_t i = 0; i < NCASES; i++) {
		struct rmig_opts o;
		rmig_session *d;
		uint8_t *mem = guarded_alloc(BLOCK_LEN);
		struct runner r = { .c = &cases[i] };
		char shown[4 * RMIG_ERRMSG_MAX];
		pthread_t th;
		double t0, dt;
		int rc;

		memset(mem, 0x5a, BLOCK_LEN);
		rmig_opts_init(&o, sizeof(o));
		o.role = RMIG_ROLE_DEST;
		o.timeout_ms = TIMEOUT_MS;
		o.blob_max = 1 << 20;
		o.log_fn = log_check;
		o.log_level = RMIG_LOG_DEBUG;
		logged.raw = logged.escaped_esc = false;
		assert_int_equal(rmig_session_create(&o, &d), 0);
		assert_int_equal(rmig_add_ram(d, "ram", mem, BLOCK_LEN, 4096), 0);
		assert_int_equal(rmig_listen(d, "tcp://127.0.0.1:0"), 0);
		snprintf(r.port, sizeof(r.port), "%d", rmig_listen_port(d));
		pthread_create(&th, NULL, run_case, &r);
		t0 = test_now_s();
		rc = rmig_accept(d);
		if (!rc)
			rc = rmig_complete(d);
		dt = test_now_s() - t0;
		rmig_escape(shown, sizeof(shown), rmig_last_error(d));
		printf("# %-22s rc=%d after %.2fs: %s\n", cases[i].name, rc, dt, shown);
		assert_true(rc < 0);
		assert_true(dt < 3.0 * TIMEOUT_MS / 1000.0);
		if (strstr(cases[i].name, "-after-ack") && strcmp(cases[i].name, "close-after-ack"))
			assert_true(dt < TIMEOUT_MS / 2000.0); /* not the data channels' timeout */
		assert_non_null(strstr(rmig_last_error(d), cases[i].expect));
		rmig_session_destroy(d);
		assert_false(logged.raw);
		if (!strcmp(cases[i].name, "escape-name"))
			assert_true(logged.escaped_esc);
		pthread_join(th, NULL);
		assert_int_equal(r.rc, 0); /* the hostile peer got as far as it meant to */
		/* a rejected write never touched guest RAM */
		if (strstr(cases[i].expect, "outside") || strstr(cases[i].expect, "unknown ram"))
			for (uint32_t k = 0; k < BLOCK_LEN; k += 512)
				assert_int_equal(mem[k], 0x5a);
		guarded_free(mem, BLOCK_LEN);
	}
}

/*
 * A source answering a destination of two rails with RAILS_USE @mask (of
 * @len bytes): HELLO for 2 channels, HELLO_ACK, RAILS, then the mask, and
 * it closes. The destination's verdict is its error.
 */
struct rails_use_case {
	uint64_t mask;
	uint32_t len;
	const char *expect;
};

static void *rails_use_src(void *arg)
{
	const struct rails_use_case *c = arg;
	static struct rmig_msg_hello m;
	static uint8_t buf[RMIG_CTL_MAX];
	struct rmig_msg_hello_ack ack;
	struct rmig_ctl_hdr h;
	struct raw r = { .ctl = -1, .data = -1 };
	uint8_t b[8];
	int n;

	if (rmig_sock_connect("127.0.0.1", rails_use_port, 2000, &r.ctl))
		return NULL;
	hello_default(&m, 0x5151515151515151ull);
	m.nchannels = 2;
	n = rmig_hello_encode(&m, buf, sizeof(buf));
	if (n > 0 && !test_send_ctl(r.ctl, RMIG_MSG_HELLO, buf, (uint32_t)n) &&
	    !test_recv_ctl(r.ctl, &h, buf) && h.type == RMIG_MSG_HELLO_ACK &&
	    !rmig_hello_ack_decode(buf, h.len, &ack) && (ack.caps & RMIG_ACK_RAILS) &&
	    !test_recv_ctl(r.ctl, &h, buf) && h.type == RMIG_MSG_RAILS) {
		rmig_put_be64(b, c->mask);
		test_send_ctl(r.ctl, RMIG_MSG_RAILS_USE, b, c->len);
		rails_use_sent = true;
	}
	usleep(300000);
	raw_close(&r);
	return NULL;
}

static void test_bad_rails_use(void **state)
{
	static const struct rails_use_case cases_ru[] = {
		{ 0, 8, "bad RAILS_USE" },    /* no rail */
		{ 0x21, 8, "bad RAILS_USE" }, /* a rail never offered */
		{ 3, 5, "bad RAILS_USE" },    /* not a u64 */
		/* the control: both rails, and the destination waits for channels */
		{ 3, 8, "before opening every data channel" },
		{ 1, 8, "before opening every data channel" },
		{ 2, 8, "before opening every data channel" }, /* rail 1 alone (--rails) */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases_ru) / sizeof(cases_ru[0]); i++) {
		uint8_t *mem = guarded_alloc(BLOCK_LEN);
		struct rmig_opts o;
		rmig_session *d;
		pthread_t th;
		int rc;

		memset(mem, 0x5a, BLOCK_LEN);
		rmig_opts_init(&o, sizeof(o));
		o.role = RMIG_ROLE_DEST;
		o.timeout_ms = TIMEOUT_MS;
		o.log_fn = NULL;
		assert_int_equal(rmig_session_create(&o, &d), 0);
		assert_int_equal(rmig_add_ram(d, "ram", mem, BLOCK_LEN, 4096), 0);
		assert_int_equal(rmig_listen(d, "tcp://127.0.0.1:0"), 0);
		assert_int_equal(rmig_listen_add(d, "127.0.0.2"), 0);
		snprintf(rails_use_port, sizeof(rails_use_port), "%d", rmig_listen_port(d));
		rails_use_sent = false;
		pthread_create(&th, NULL, rails_use_src, (void *)&cases_ru[i]);
		rc = rmig_accept(d);
		pthread_join(th, NULL);
		printf("# RAILS_USE %#llx (%u bytes): rc=%d: %s\n", (unsigned long long)cases_ru[i].mask,
		       cases_ru[i].len, rc, rmig_last_error(d));
		assert_true(rails_use_sent);
		assert_true(rc < 0);
		assert_non_null(strstr(rmig_last_error(d), cases_ru[i].expect));
		for (uint32_t k = 0; k < BLOCK_LEN; k += 512)
			assert_int_equal(mem[k], 0x5a);
		rmig_session_destroy(d);
		guarded_free(mem, BLOCK_LEN);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_sources),
		cmocka_unit_test(test_hostile_destinations),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_bad_rails_use),
	};

	if (argc == 2 && !strcmp(argv[1], "list")) {
		for (size_t i = 0; i < NCASES; i++)
			printf("%s\t%s\n", cases[i].name, cases[i].expect);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "source")) {
		enum rmig_transport_kind k;
		char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX];

		if (rmig_uri_parse(argv[3], &k, host, port))
			return 2;
		for (size_t i = 0; i < NCASES; i++)
			if (!strcmp(cases[i].name, argv[2]))
				return cases[i].run(host, port) ? 1 : 0;
		for (size_t i = 0; i < sizeof(cli_cases) / sizeof(cli_cases[0]); i++)
			if (!strcmp(cli_cases[i].name, argv[2]))
				return cli_cases[i].run(host, port) ? 1 : 0;
		fprintf(stderr, "hostile: unknown case %s\n", argv[2]);
		return 2;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
