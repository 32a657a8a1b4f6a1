/* SPDX-License-Identifier: MIT */
/* qmp_srv.c - the fake QEMU monitor of the QMP client's tests (qmp_srv.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "qmp.h"
#include "qmp_srv.h"

__attribute__((format(printf, 2, 3))) void srv_fail(struct srv *s, const char *fmt, ...)
{
	va_list ap;

	if (s->bad[0])
		return;
	va_start(ap, fmt);
	vsnprintf(s->bad, sizeof(s->bad), fmt, ap);
	va_end(ap);
}

int srv_sendn(struct srv *s, const char *p, size_t n)
{
	while (n) {
		ssize_t r = send(s->fd, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1; /* the client has gone: fine */
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int srv_send(struct srv *s, const char *str)
{
	return srv_sendn(s, str, strlen(str));
}

__attribute__((format(printf, 2, 3))) int srv_printf(struct srv *s, const char *fmt, ...)
{
	char b[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	return srv_send(s, b);
}

/* The next command (a line), NULL at EOF. A file descriptor that comes with it lands in got_fd. */
json_t *srv_cmd(struct srv *s)
{
	char line[65536];
	size_t n = 0;
	json_error_t e;
	json_t *c;

	for (;;) {
		char cb[CMSG_SPACE(sizeof(int))];
		struct iovec iov = {.iov_base = line + n, .iov_len = 1};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb,
				    .msg_controllen = sizeof(cb)};
		struct cmsghdr *cm;
		ssize_t r = recvmsg(s->fd, &mh, MSG_CMSG_CLOEXEC);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return NULL;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				memcpy(&s->got_fd, CMSG_DATA(cm), sizeof(int));
		if (line[n] == '\n')
			break;
		if (++n == sizeof(line) - 1) {
			srv_fail(s, "command line too long");
			return NULL;
		}
	}
	if (memchr(line, '\r', n))
		srv_fail(s, "a carriage return in a command");
	c = json_loadb(line, n, 0, &e);
	if (!json_is_object(c)) {
		srv_fail(s, "command not a JSON object: %.*s", (int)n, line);
		json_decref(c);
		return NULL;
	}
	return c;
}

/* The next command, which must be @name: its id, or -1. */
json_int_t srv_expect(struct srv *s, const char *name, json_t **args_p)
{
	json_t *c = srv_cmd(s);
	const char *ex = json_string_value(json_object_get(c, "execute"));
	json_int_t id;

	if (args_p)
		*args_p = NULL;
	if (!c)
		return -1;
	if (!ex || strcmp(ex, name) || !json_is_integer(json_object_get(c, "id"))) {
		srv_fail(s, "expected %s, got %s", name, ex ? ex : "(none)");
		json_decref(c);
		return -1;
	}
	id = json_integer_value(json_object_get(c, "id"));
	if (args_p)
		*args_p = json_incref(json_object_get(c, "arguments"));
	json_decref(c);
	return id;
}

void srv_greet(struct srv *s)
{
	json_int_t id;

	srv_send(s, GREETING);
	id = srv_expect(s, "qmp_capabilities", NULL);
	if (id >= 0)
		srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
}

/* Until the client closes. */
void srv_drain(struct srv *s)
{
	char b[4096];

	while (recv(s->fd, b, sizeof(b), 0) > 0)
		;
}

static void *srv_main(void *arg)
{
	struct srv *s = arg;

	s->fn(s);
	srv_drain(s);
	return NULL;
}

/* Start the fake monitor running @fn; the client end in *cfd. */
void srv_start(struct srv *s, srv_fn fn, const void *arg, int *cfd)
{
	int sv[2];

	memset(s, 0, sizeof(*s));
	s->got_fd = -1;
	s->fn = fn;
	s->arg = arg;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s->fd = sv[1];
	*cfd = sv[0];
	assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

/* Start it and connect (greeting and qmp_capabilities must succeed). */
struct qmp *srv_open(struct srv *s, srv_fn fn, const void *arg, unsigned int timeout_ms)
{
	char why[512];
	struct qmp *q;
	int cfd, r;

	srv_start(s, fn, arg, &cfd);
	r = qmp_open_fd(cfd, timeout_ms, &q, why, sizeof(why));
	if (r)
		print_message("qmp_open_fd: %s\n", why);
	assert_int_equal(r, 0);
	return q;
}

void srv_end(struct srv *s, struct qmp *q)
{
	qmp_close(q);
	assert_int_equal(pthread_join(s->th, NULL), 0);
	close(s->fd);
	if (s->got_fd >= 0)
		close(s->got_fd);
	if (s->bad[0])
		print_message("fake QMP server: %s\n", s->bad);
	assert_string_equal(s->bad, "");
}

