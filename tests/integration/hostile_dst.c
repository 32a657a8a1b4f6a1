/* SPDX-License-Identifier: MIT */
/*
 * hostile_dst.c - hostile destinations against a source session: a fake
 * destination that answers the handshake with garbage, silence, a close, a
 * bad endpoint, a bogus acknowledgement, an unasked COMPLETE or FALLBACK,
 * or rails that do not hold together; and a destination that cannot be reached. Each must
 * end in a clear error within the timeout (run by hostile.c's main).
 */
#include <errno.h>
#include <netinet/in.h>
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

enum dmode { D_GARBAGE, D_SILENT, D_CLOSE, D_BAD_EP, D_BOGUS_ACK, D_UNASKED_COMPLETE, D_BAD_RAILS,
	     D_RAIL_MULTICAST, D_RAILS_NONE, D_TOO_MANY_RAILS, D_UNASKED_FALLBACK };

struct fake_dst {
	int lfd;
	enum dmode mode;
};

static void *fake_dst_main(void *arg)
{
	struct fake_dst *f = arg;
	static uint8_t buf[RMIG_CTL_MAX];
	struct rmig_ctl_hdr h;
	int fd;

	if (rmig_sock_accept(f->lfd, 5000, &fd))
		return NULL;
	test_recv_ctl(fd, &h, buf);
	switch (f->mode) {
	case D_GARBAGE:
		rmig_sock_write_full(fd, "garbage garbage garbage", 20);
		sleep(3);
		break;
	case D_SILENT:
		sleep(3);
		break;
	case D_CLOSE:
		break;
	case D_BAD_EP: {
		struct rmig_msg_hello_ack a = { .version = RMIG_PROTO_VERSION, .ep_len = 7 };
		int n = rmig_hello_ack_encode(&a, buf, sizeof(buf));

		test_send_ctl(fd, RMIG_MSG_HELLO_ACK, buf, (uint32_t)n);
		sleep(3);
		break;
	}
	case D_BOGUS_ACK: {
		uint8_t v[8];

		rmig_u64_encode(77, v, sizeof(v));
		test_send_ctl(fd, RMIG_MSG_SYNC_ACK, v, 8); /* instead of HELLO_ACK */
		sleep(3);
		break;
	}
	case D_BAD_RAILS:
	case D_RAIL_MULTICAST:
	case D_RAILS_NONE:
	case D_TOO_MANY_RAILS: {
		/* HELLO_ACK says rails follow; the RAILS message is garbage */
		struct rmig_msg_hello_ack a = { .version = RMIG_PROTO_VERSION, .ep_len = 2,
						.caps = RMIG_ACK_RAILS };
		static struct rmig_msg_rails m;
		int n = rmig_hello_ack_encode(&a, buf, sizeof(buf));

		test_send_ctl(fd, RMIG_MSG_HELLO_ACK, buf, (uint32_t)n);
		memset(&m, 0, sizeof(m));
		m.n = f->mode == D_TOO_MANY_RAILS ? 2 : 1; /* the source has 2 channels */
		for (unsigned int r = 0; r < m.n; r++) {
			m.r[r].family = 4;
			m.r[r].addr[0] = 127;
			m.r[r].addr[3] = (uint8_t)(2 + r);
			m.r[r].ep_len = 2;
		}
		if (f->mode == D_RAIL_MULTICAST)
			m.r[0].addr[0] = 239;
		n = rmig_rails_encode(&m, buf, sizeof(buf));
		if (f->mode == D_BAD_RAILS)
			buf[4] = 9; /* family 9 */
		if (f->mode == D_RAILS_NONE)
			n = 0; /* an empty message */
		test_send_ctl(fd, RMIG_MSG_RAILS, buf, (uint32_t)n);
		sleep(3);
		break;
	}
	case D_UNASKED_COMPLETE:
	case D_UNASKED_FALLBACK: {
		/*
		 * A real handshake and data channel, then a COMPLETE_ACK nobody
		 * asked for; or, having said it takes them, a FALLBACK endpoint
		 * while every rail is up.
		 */
		struct rmig_msg_hello_ack a = { .version = RMIG_PROTO_VERSION, .ep_len = 2 };
		struct rmig_msg_reg r = { .block = 0, .desc_len = 0 };
		uint8_t zero[4] = { 0 }, ch[RMIG_FRAME_HDR_LEN];
		int dl, dfd = -1, n;

		if (rmig_sock_listen("127.0.0.1", "0", &dl))
			break;
		rmig_put_be16(a.ep, (uint16_t)rmig_sock_local_port(dl));
		if (f->mode == D_UNASKED_FALLBACK)
			a.caps = RMIG_ACK_FAILOVER | RMIG_ACK_FALLBACK;
		n = rmig_hello_ack_encode(&a, buf, sizeof(buf));
		test_send_ctl(fd, RMIG_MSG_HELLO_ACK, buf, (uint32_t)n);
		n = rmig_reg_encode(&r, buf, sizeof(buf));
		test_send_ctl(fd, RMIG_MSG_REG, buf, (uint32_t)n);
		if (!rmig_sock_accept(dl, 3000, &dfd))
			rmig_sock_read_full(dfd, ch, sizeof(ch));
		usleep(200000);
		if (f->mode == D_UNASKED_FALLBACK)
			test_send_ctl(fd, RMIG_MSG_FALLBACK, zero, 2);
		else
			test_send_ctl(fd, RMIG_MSG_COMPLETE_ACK, zero, sizeof(zero));
		sleep(3);
		if (dfd >= 0)
			close(dfd);
		close(dl);
		break;
	}
	}
	close(fd);
	return NULL;
}

void test_hostile_destinations(void **state)
{
	static const struct {
		enum dmode mode;
		int rc;
		const char *expect;
	} dc[] = {
		{ D_GARBAGE, -EBADMSG, "malformed message header" },
		{ D_SILENT, -ETIMEDOUT, "waiting for HELLO_ACK: timed out" },
		{ D_CLOSE, -ECONNRESET, "peer closed the connection" },
		{ D_BAD_EP, -EPROTO, "bad tcp endpoint" },
		{ D_BOGUS_ACK, -EPROTO, "expected HELLO_ACK, got SYNC_ACK" },
		{ D_UNASKED_COMPLETE, -EBADMSG, "unexpected COMPLETE_ACK" },
		{ D_BAD_RAILS, -EBADMSG, "bad RAILS" },
		{ D_RAIL_MULTICAST, -EBADMSG, "not unicast" },
		{ D_RAILS_NONE, -EBADMSG, "bad RAILS" },
		{ D_TOO_MANY_RAILS, -EBADMSG, "announces 3 rails for 2 channels" },
		{ D_UNASKED_FALLBACK, -EBADMSG, "unexpected FALLBACK (none asked for" },
	};
	static uint8_t mem[64 << 10];

	(void)state;
	for (size_t i = 0; i < sizeof(dc) / sizeof(dc[0]); i++) {
		struct fake_dst f = { .mode = dc[i].mode };
		struct rmig_opts o;
		rmig_session *s;
		pthread_t th;
		char uri[64];
		double t0;

		assert_int_equal(rmig_sock_listen("127.0.0.1", "0", &f.lfd), 0);
		rmig_opts_init(&o, sizeof(o));
		o.role = RMIG_ROLE_SOURCE;
		o.transport = RMIG_TRANSPORT_TCP;
		o.timeout_ms = TIMEOUT_MS;
		if (dc[i].mode >= D_BAD_RAILS && dc[i].mode <= D_TOO_MANY_RAILS)
			o.channels = 2; /* so that 3 rails are too many */
		o.log_fn = NULL;
		assert_int_equal(rmig_session_create(&o, &s), 0);
		assert_int_equal(rmig_add_ram(s, "ram", mem, sizeof(mem), 4096), 0);
		pthread_create(&th, NULL, fake_dst_main, &f);
		snprintf(uri, sizeof(uri), "127.0.0.1:%d", rmig_sock_local_port(f.lfd));
		t0 = test_now_s();
		if (dc[i].mode == D_UNASKED_COMPLETE || dc[i].mode == D_UNASKED_FALLBACK) {
			/* connected; the message arrives while the source waits on its first sync */
			assert_int_equal(rmig_connect(s, uri), 0);
			assert_int_equal(rmig_sync(s), dc[i].rc);
		} else {
			assert_int_equal(rmig_connect(s, uri), dc[i].rc);
		}
		assert_true(test_now_s() - t0 < 3.0 * TIMEOUT_MS / 1000.0);
		printf("# destination case %zu: %s\n", i, rmig_last_error(s));
		assert_non_null(strstr(rmig_last_error(s), dc[i].expect));
		rmig_session_destroy(s);
		pthread_join(th, NULL);
		close(f.lfd);
	}
}

void test_unreachable(void **state)
{
	static uint8_t mem[4096];
	struct rmig_opts o;
	rmig_session *s;
	int lfd, port;

	(void)state;
	/* a port that was just free: nobody listens there */
	assert_int_equal(rmig_sock_listen("127.0.0.1", "0", &lfd), 0);
	port = rmig_sock_local_port(lfd);
	close(lfd);
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.transport = RMIG_TRANSPORT_TCP;
	o.log_fn = NULL;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, sizeof(mem), 4096), 0);
	{
		char uri[64];

		snprintf(uri, sizeof(uri), "127.0.0.1:%d", port);
		assert_int_equal(rmig_connect(s, uri), -ECONNREFUSED);
	}
	assert_non_null(strstr(rmig_last_error(s), "Connection refused"));
	rmig_session_destroy(s);
}

