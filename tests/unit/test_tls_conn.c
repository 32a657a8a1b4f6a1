/* SPDX-License-Identifier: MIT */
/*
 * test_tls_conn.c - TLS on one connection (core/tls.c), on a socketpair with
 * no session: the same key connects and carries bytes both ways (a record
 * is read whole and in pieces); another key fails the handshake (-EACCES); a
 * peer that speaks rmig in plain text is named (-EPROTONOSUPPORT); a silent
 * peer times out; the wake fd cuts a wait short; a key is required.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "sock.h"
#include "tls.h"
#include "wire.h"

static const uint8_t key_a[] = "a key of sixteen bytes or more";
static const uint8_t key_b[] = "another key, also long enough";

struct side {
	struct rmig_tls_conf *conf;
	int fd;
	int wake_fd;
	unsigned int timeout_ms;
	struct rmig_tls *tls;
	int rc;
	char why[256];
};

static void *start_main(void *arg)
{
	struct side *s = arg;

	s->rc = rmig_tls_start(s->conf, s->fd, s->wake_fd, s->timeout_ms, &s->tls, s->why,
			       sizeof(s->why));
	return NULL;
}

/* Both ends' handshakes at once: the server on a thread, the client here. */
static void pair(const uint8_t *ks, const uint8_t *kc, struct side *srv, struct side *cli)
{
	int sv[2];
	pthread_t th;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(srv, 0, sizeof(*srv));
	memset(cli, 0, sizeof(*cli));
	assert_int_equal(rmig_tls_conf_new(true, ks, strlen((const char *)ks), &srv->conf), 0);
	assert_int_equal(rmig_tls_conf_new(false, kc, strlen((const char *)kc), &cli->conf), 0);
	srv->fd = sv[0];
	cli->fd = sv[1];
	srv->wake_fd = cli->wake_fd = -1;
	srv->timeout_ms = cli->timeout_ms = 3000;
	assert_int_equal(pthread_create(&th, NULL, start_main, srv), 0);
	start_main(cli);
	if (cli->rc) /* the server may wait for bytes that will not come */
		shutdown(cli->fd, SHUT_RDWR);
	assert_int_equal(pthread_join(th, NULL), 0);
}

static void unpair(struct side *srv, struct side *cli)
{
	rmig_tls_free(srv->tls);
	rmig_tls_free(cli->tls);
	rmig_tls_conf_free(srv->conf);
	rmig_tls_conf_free(cli->conf);
	close(srv->fd);
	close(cli->fd);
}

static void test_same_key(void **state)
{
	static const char msg[] = "guest RAM, encrypted";
	struct side srv, cli;
	struct iovec iov[2] = { { (void *)msg, 5 }, { (void *)(msg + 5), sizeof(msg) - 5 } };
	char got[sizeof(msg)] = "";
	long n;

	(void)state;
	pair(key_a, key_a, &srv, &cli);
	assert_int_equal(srv.rc, 0);
	assert_int_equal(cli.rc, 0);
	assert_int_equal(rmig_tls_writev_full(cli.tls, iov, 2, -1, 2000), 0);
	assert_int_equal(rmig_tls_read_full(srv.tls, got, 5, -1, rmig_deadline_after(2000)), 0);
	/* the rest of the record is decrypted and buffered: a read will not wait */
	assert_true(rmig_tls_pending(srv.tls));
	n = rmig_tls_read_some(srv.tls, got + 5, sizeof(got) - 5);
	assert_int_equal(n, (long)(sizeof(msg) - 5));
	assert_string_equal(got, msg);
	/* and the other way */
	iov[0] = (struct iovec){ (void *)msg, sizeof(msg) };
	assert_int_equal(rmig_tls_writev_full(srv.tls, iov, 1, -1, 2000), 0);
	memset(got, 0, sizeof(got));
	assert_int_equal(rmig_tls_read_full(cli.tls, got, sizeof(got), -1,
					    rmig_deadline_after(2000)),
			 0);
	assert_string_equal(got, msg);
	unpair(&srv, &cli);
}

static void test_other_key(void **state)
{
	struct side srv, cli;

	(void)state;
	pair(key_a, key_b, &srv, &cli);
	assert_true(srv.rc == -EACCES || cli.rc == -EACCES);
	assert_true(srv.rc != 0 && cli.rc != 0);
	assert_null(srv.tls);
	assert_null(cli.tls);
	unpair(&srv, &cli);
}

static void test_plain_peer(void **state)
{
	struct side srv = { 0 };
	uint8_t hdr[RMIG_CTL_HDR_LEN];
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(rmig_tls_conf_new(true, key_a, sizeof(key_a) - 1, &srv.conf), 0);
	rmig_ctl_hdr_encode(hdr, RMIG_MSG_HELLO, 0); /* a source without TLS says HELLO */
	assert_int_equal(write(sv[1], hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	srv.rc = rmig_tls_start(srv.conf, sv[0], -1, 2000, &srv.tls, srv.why, sizeof(srv.why));
	assert_int_equal(srv.rc, -EPROTONOSUPPORT);
	assert_non_null(strstr(srv.why, "without TLS"));
	rmig_tls_conf_free(srv.conf);
	close(sv[0]);
	close(sv[1]);
}

static void test_silent_peer_and_wake(void **state)
{
	struct side s = { 0 };
	int sv[2], wfd = eventfd(0, EFD_CLOEXEC);

	(void)state;
	assert_true(wfd >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(rmig_tls_conf_new(true, key_a, sizeof(key_a) - 1, &s.conf), 0);
	s.rc = rmig_tls_start(s.conf, sv[0], -1, 200, &s.tls, s.why, sizeof(s.why));
	assert_int_equal(s.rc, -ETIMEDOUT);
	assert_string_equal(s.why, "no answer within the timeout");
	/* a wake fd already readable: the wait ends at once, cancelled */
	assert_int_equal(eventfd_write(wfd, 1), 0);
	s.rc = rmig_tls_start(s.conf, sv[0], wfd, 10000, &s.tls, s.why, sizeof(s.why));
	assert_int_equal(s.rc, -ECANCELED);
	assert_null(s.tls);
	rmig_tls_conf_free(s.conf);
	close(sv[0]);
	close(sv[1]);
	close(wfd);
}

static void test_key_required(void **state)
{
	struct rmig_tls_conf *c = NULL;

	(void)state;
	assert_true(rmig_tls_conf_new(true, NULL, 0, &c) < 0);
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_key),
		cmocka_unit_test(test_other_key),
		cmocka_unit_test(test_plain_peer),
		cmocka_unit_test(test_silent_peer_and_wake),
		cmocka_unit_test(test_key_required),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
