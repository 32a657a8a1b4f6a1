/* SPDX-License-Identifier: MIT */
/*
 * test_qmp.c - the QMP client against a fake QEMU monitor on a socketpair (a
 * thread that plays a script: greeting, replies, errors, events, a wrong id,
 * garbage, a reply trickled byte by byte, EOF mid-reply, an oversized reply),
 * and against a real qemu-system-x86_64 when there is one: its memory
 * backends as QOM shows them.
 */
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

#define GREETING                                                                                  \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "          \
	"\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* ------------------------------------------------------------------------ */
/* The fake monitor */

struct srv;
typedef void (*srv_fn)(struct srv *s);

struct srv {
	int fd;
	srv_fn fn;
	const void *arg;
	pthread_t th;
	char bad[256]; /* what went wrong in the thread, checked after the join */
	int got_fd;    /* a file descriptor received with a command, or -1 */
};

__attribute__((format(printf, 2, 3))) static void srv_fail(struct srv *s, const char *fmt, ...)
{
	va_list ap;

	if (s->bad[0])
		return;
	va_start(ap, fmt);
	vsnprintf(s->bad, sizeof(s->bad), fmt, ap);
	va_end(ap);
}

static int srv_sendn(struct srv *s, const char *p, size_t n)
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

static int srv_send(struct srv *s, const char *str)
{
	return srv_sendn(s, str, strlen(str));
}

__attribute__((format(printf, 2, 3))) static int srv_printf(struct srv *s, const char *fmt, ...)
{
	char b[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	return srv_send(s, b);
}

/* The next command (a line), NULL at EOF. A file descriptor that comes with it lands in got_fd. */
static json_t *srv_cmd(struct srv *s)
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
static json_int_t srv_expect(struct srv *s, const char *name, json_t **args_p)
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

static void srv_greet(struct srv *s)
{
	json_int_t id;

	srv_send(s, GREETING);
	id = srv_expect(s, "qmp_capabilities", NULL);
	if (id >= 0)
		srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
}

/* Until the client closes. */
static void srv_drain(struct srv *s)
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

static char err[512];

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Slack on a deadline: generous under valgrind. */
static int64_t slack_ms(void)
{
	return getenv("RMIG_VALGRIND") ? 3000 : 250;
}

/* Start the fake monitor running @fn; the client end in *cfd. */
static void srv_start(struct srv *s, srv_fn fn, const void *arg, int *cfd)
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
static struct qmp *srv_open(struct srv *s, srv_fn fn, const void *arg, unsigned int timeout_ms)
{
	struct qmp *q;
	int cfd, r;

	srv_start(s, fn, arg, &cfd);
	r = qmp_open_fd(cfd, timeout_ms, &q, err, sizeof(err));
	if (r)
		print_message("qmp_open_fd: %s\n", err);
	assert_int_equal(r, 0);
	return q;
}

static void srv_end(struct srv *s, struct qmp *q)
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

/* ------------------------------------------------------------------------ */

static void srv_basic(struct srv *s)
{
	json_t *args;
	json_int_t id;

	srv_greet(s);
	id = srv_expect(s, "query-status", &args);
	if (args)
		srv_fail(s, "query-status had arguments");
	srv_printf(s, "{\"return\": {\"status\": \"running\", \"singlestep\": false, "
		      "\"running\": true}, \"id\": %lld}\r\n",
		   (long long)id);
	id = srv_expect(s, "qom-get", &args);
	if (!json_is_object(args) ||
	    strcmp(json_string_value(json_object_get(args, "path")) ?: "", "/objects/m0") ||
	    strcmp(json_string_value(json_object_get(args, "property")) ?: "", "size"))
		srv_fail(s, "qom-get arguments wrong");
	json_decref(args);
	/* a blank line, then the reply split across writes, without "\r" */
	srv_send(s, "\r\n");
	srv_printf(s, "{\"return\": 67108864, ");
	sleep_ms(20);
	srv_printf(s, "\"id\": %lld}\n", (long long)id);
	id = srv_expect(s, "stop", NULL);
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
}

static void test_exec(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_basic, NULL, 2000);
	json_t *ret;

	(void)state;
	assert_int_equal(qmp_peer_pid(q), getpid());
	assert_int_equal(qmp_exec(q, "query-status", NULL, &ret, err, sizeof(err)), 0);
	assert_true(json_is_object(ret));
	assert_string_equal(json_string_value(json_object_get(ret, "status")), "running");
	json_decref(ret);
	assert_int_equal(qmp_exec(q, "qom-get",
				  json_pack("{s:s, s:s}", "path", "/objects/m0", "property", "size"),
				  &ret, err, sizeof(err)),
			 0);
	assert_int_equal(json_integer_value(ret), 64 << 20);
	json_decref(ret);
	assert_int_equal(qmp_exec(q, "stop", NULL, NULL, err, sizeof(err)), 0);
	/* arguments that are not an object are refused, and still released */
	assert_int_equal(qmp_exec(q, "stop", json_pack("[i]", 1), NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(qmp_exec(q, "", NULL, NULL, err, sizeof(err)), -EINVAL);
	srv_end(&s, q);
	assert_int_equal(qmp_peer_pid(NULL), -1);
}

static void srv_errors(struct srv *s)
{
	json_int_t id;

	srv_greet(s);
	id = srv_expect(s, "qom-get", NULL);
	srv_printf(s,
		   "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", \"desc\": "
		   "\"Property 'memory-backend-ram.mem-path' not found\\u0001\\n\\u001b[31m \\u00e9\"}}\r\n",
		   (long long)id);
	/* QEMU's answer to a line it cannot parse has no id */
	srv_expect(s, "stop", NULL);
	srv_send(s, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "
		    "invalid keyword 'garbage'\"}}\r\n");
	id = srv_expect(s, "cont", NULL);
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
}

static void test_error_reply(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_errors, NULL, 2000);
	json_t *ret = (json_t *)1;

	(void)state;
	assert_int_equal(qmp_exec(q, "qom-get", NULL, &ret, err, sizeof(err)), -EREMOTEIO);
	assert_null(ret);
	assert_string_equal(err, "GenericError: Property 'memory-backend-ram.mem-path' not "
				 "found\\x01\\x0a\\x1b[31m \\xc3\\xa9");
	assert_int_equal(qmp_exec(q, "stop", NULL, NULL, err, sizeof(err)), -EREMOTEIO);
	assert_string_equal(err, "GenericError: JSON parse error, invalid keyword 'garbage'");
	/* an error reply leaves the connection usable */
	assert_int_equal(qmp_exec(q, "cont", NULL, NULL, err, sizeof(err)), 0);
	srv_end(&s, q);
}

static void srv_events(struct srv *s)
{
	json_int_t id;

	srv_greet(s);
	id = srv_expect(s, "stop", NULL);
	srv_send(s, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
	srv_send(s, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": "
		    "\"MIGRATION\", \"data\": {\"status\": \"setup\"}}\r\n");
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
	sleep_ms(50);
	srv_send(s, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 4}, \"event\": "
		    "\"MIGRATION\", \"data\": {\"status\": \"active\"}}\r\n");
	srv_send(s, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 5}, \"event\": "
		    "\"RESUME\"}\r\n");
	id = srv_expect(s, "cont", NULL);
	/* 70 events: the client keeps the last 64 */
	for (int i = 0; i < 70; i++)
		srv_printf(s, "{\"event\": \"EV\", \"data\": {\"n\": %d}}\r\n", i);
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
}

static void test_events(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_events, NULL, 2000);
	json_t *data = (json_t *)1;
	int64_t t0;
	int i;

	(void)state;
	assert_int_equal(qmp_exec(q, "stop", NULL, NULL, err, sizeof(err)), 0);
	/* queued while the reply was awaited */
	assert_int_equal(qmp_wait_event(q, "STOP", 0, &data, err, sizeof(err)), 0);
	assert_null(data);
	assert_int_equal(qmp_wait_event(q, "MIGRATION", 0, &data, err, sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(data, "status")), "setup");
	json_decref(data);
	/* arrives later, with another event first, which is queued */
	assert_int_equal(qmp_wait_event(q, "RESUME", 2000, NULL, err, sizeof(err)), 0);
	assert_int_equal(qmp_wait_event(q, "MIGRATION", 0, &data, err, sizeof(err)), 0);
	assert_string_equal(json_string_value(json_object_get(data, "status")), "active");
	json_decref(data);
	t0 = now_ms();
	assert_int_equal(qmp_wait_event(q, "SHUTDOWN", 200, &data, err, sizeof(err)), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 200 && now_ms() - t0 < 200 + slack_ms());
	assert_string_equal(err, "QMP event SHUTDOWN: not received within 200 ms");
	/* a timed-out wait leaves the connection usable */
	assert_int_equal(qmp_exec(q, "cont", NULL, NULL, err, sizeof(err)), 0);
	for (i = 6; i < 70; i++) {
		assert_int_equal(qmp_wait_event(q, "EV", 0, &data, err, sizeof(err)), 0);
		assert_int_equal(json_integer_value(json_object_get(data, "n")), i);
		json_decref(data);
	}
	assert_int_equal(qmp_wait_event(q, "EV", 0, &data, err, sizeof(err)), -ETIMEDOUT);
	srv_end(&s, q);
}

/* @text with each "@ID@" replaced by @id. */
static void srv_send_id(struct srv *s, const char *text, json_int_t id)
{
	char b[4096], *o = b;
	const char *at;

	while ((at = strstr(text, "@ID@")) && o + (at - text) + 24 < b + sizeof(b)) {
		memcpy(o, text, (size_t)(at - text));
		o += at - text;
		o += sprintf(o, "%lld", (long long)id);
		text = at + 4;
	}
	snprintf(o, sizeof(b) - (size_t)(o - b), "%s", text);
	srv_send(s, b);
}

/* One reply, or bytes, in answer to the first command after the greeting, then EOF. */
static void srv_reply(struct srv *s)
{
	json_int_t id;

	srv_greet(s);
	id = srv_expect(s, "query-migrate", NULL);
	if (id >= 0)
		srv_send_id(s, s->arg, id);
	shutdown(s->fd, SHUT_WR);
}

static const struct {
	const char *reply; /* "@ID@": the id */
	int rc;
	const char *msg; /* in the message */
} bad[] = {
	{"{\"return\": {}, \"id\": 999}\r\n", -EBADMSG, "wrong id 999 (expected 2)"},
	{"{\"return\": {}, \"id\": \"x\"}\r\n", -EBADMSG, "wrong id \"x\" (expected 2)"},
	{"{\"return\": {}}\r\n", -EBADMSG, "wrong id (none)"},
	{"{\"id\": 7, \"error\": {\"class\": \"X\", \"desc\": \"y\"}}\r\n", -EBADMSG, "wrong id 7"},
	{"garbage\r\n", -EBADMSG, "not JSON"},
	{"\x01\xff{\r\n", -EBADMSG, "not JSON"},
	{"[1, 2]\r\n", -EBADMSG, "not a JSON object"},
	{"\"return\"\r\n", -EBADMSG, "not JSON"},
	{"{\"return\": {}, \"id\": @ID@} {}\r\n", -EBADMSG, "not JSON"},
	{"{\"return\": {}, \"id\": @ID@, \"id\": @ID@}\r\n", -EBADMSG, "not JSON"},
	{"{\"id\": @ID@}\r\n", -EBADMSG, "none of \"return\", \"error\", \"event\""},
	{"{\"return\": {}, \"error\": {}, \"id\": @ID@}\r\n", -EBADMSG, "both"},
	{"{\"error\": \"x\", \"id\": @ID@}\r\n", -EBADMSG, "without a class and a desc"},
	{"{\"event\": 5}\r\n", -EBADMSG, "malformed event"},
	{"{\"event\": \"\"}\r\n", -EBADMSG, "malformed event"},
	{GREETING, -EBADMSG, "a second greeting"},
	{"{\"return\": {}, \"id\": @ID@", -ECONNRESET, "in the middle of a message"},
	{"", -ECONNRESET, "QMP reply to query-migrate: connection closed by QEMU"},
	{"{\"return\": {\"status\": \"act\\nive\"}, \"id\": @ID@}\r\n", -EBADMSG,
	 "malformed status"},
	{"{\"return\": [], \"id\": @ID@}\r\n", -EBADMSG, "not an object"},
};

static void test_bad_replies(void **state)
{
	unsigned int i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct srv s;
		struct qmp *q = srv_open(&s, srv_reply, bad[i].reply, 2000);
		char st[32];
		int r;

		r = qmp_migrate_status(q, st, sizeof(st), err, sizeof(err));
		if (r != bad[i].rc || !strstr(err, bad[i].msg))
			print_message("case %u: %d %s\n", i, r, err);
		assert_int_equal(r, bad[i].rc);
		assert_non_null(strstr(err, bad[i].msg));
		for (size_t k = 0; err[k]; k++)
			assert_true((unsigned char)err[k] >= 0x20 && (unsigned char)err[k] < 0x7f);
		/* the stream is out of step: every later call fails at once */
		assert_int_equal(qmp_exec(q, "stop", NULL, NULL, err, sizeof(err)), bad[i].rc);
		assert_non_null(strstr(err, "unusable after an earlier error"));
		srv_end(&s, q);
	}
}

/* Greets, then goes: the next command meets a closed socket. */
static void srv_gone(struct srv *s)
{
	srv_greet(s);
	shutdown(s->fd, SHUT_RDWR);
}

static void test_closed(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_gone, NULL, 2000);
	int r;

	(void)state;
	sleep_ms(50);
	r = qmp_exec(q, "stop", NULL, NULL, err, sizeof(err));
	assert_true(r == -EPIPE || r == -ECONNRESET);
	assert_string_equal(err, "QMP reply to stop: connection closed by QEMU");
	srv_end(&s, q);
}

/* The reply to the first command one byte every 30 ms, or spaces every ms, never whole. */
static void srv_trickle(struct srv *s)
{
	char b[128];
	json_int_t id;
	int i;

	srv_greet(s);
	id = srv_expect(s, "query-migrate", NULL);
	if (s->arg) {
		srv_send(s, "{");
		for (i = 0; i < 3000; i++) {
			if (srv_send(s, " "))
				return;
			sleep_ms(1);
		}
		return;
	}
	snprintf(b, sizeof(b), "{\"return\": {\"status\": \"active\"}, \"id\": %lld}\r\n",
		 (long long)id);
	for (i = 0; b[i]; i++) {
		if (srv_sendn(s, b + i, 1))
			return;
		sleep_ms(30);
	}
}

static void test_trickle(void **state)
{
	int flood;

	(void)state;
	for (flood = 0; flood < 2; flood++) {
		struct srv s;
		struct qmp *q = srv_open(&s, srv_trickle, flood ? "" : NULL, 300);
		char st[32];
		int64_t t0 = now_ms(), dt;

		assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)),
				 -ETIMEDOUT);
		dt = now_ms() - t0;
		print_message("timed out after %lld ms: %s\n", (long long)dt, err);
		assert_true(dt >= 300 && dt < 300 + slack_ms());
		assert_string_equal(err, "QMP reply to query-migrate: timed out after 300 ms");
		t0 = now_ms();
		assert_int_equal(qmp_exec(q, "stop", NULL, NULL, err, sizeof(err)), -ETIMEDOUT);
		assert_true(now_ms() - t0 < 50);
		srv_end(&s, q);
	}
}

/* A reply line of exactly QMP_MSG_MAX bytes, then one of QMP_MSG_MAX + 1. */
static void srv_big(struct srv *s)
{
	size_t len = QMP_MSG_MAX + (s->arg ? 1 : 0), head, chunk = 1 << 16, off;
	char *b = malloc(len + 2);
	json_int_t id;
	int n;

	srv_greet(s);
	id = srv_expect(s, "query-status", NULL);
	if (!b || id < 0) {
		free(b);
		return;
	}
	n = snprintf(b, 64, "{\"id\": %lld, \"return\": \"", (long long)id);
	head = (size_t)n;
	memset(b + head, 'a', len - head - 2);
	memcpy(b + len - 2, "\"}\r\n", 4);
	for (off = 0; off < len + 2; off += chunk)
		if (srv_sendn(s, b + off, len + 2 - off < chunk ? len + 2 - off : chunk))
			break;
	free(b);
}

static void test_oversized(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_big, NULL, 10000);
	json_t *ret;

	(void)state;
	assert_int_equal(qmp_exec(q, "query-status", NULL, &ret, err, sizeof(err)), 0);
	assert_true(json_is_string(ret));
	assert_int_equal(json_string_length(ret), QMP_MSG_MAX - strlen("{\"id\": 2, \"return\": \"") - 2);
	json_decref(ret);
	srv_end(&s, q);

	q = srv_open(&s, srv_big, "", 10000);
	assert_int_equal(qmp_exec(q, "query-status", NULL, &ret, err, sizeof(err)), -EMSGSIZE);
	assert_null(ret);
	assert_string_equal(err, "QMP reply to query-status: message over 16 MiB");
	srv_end(&s, q);
}

static void srv_greeting(struct srv *s)
{
	if (s->arg) {
		srv_send(s, s->arg);
		shutdown(s->fd, SHUT_WR);
	}
}

static void test_greeting(void **state)
{
	static const struct {
		const char *greeting;
		int rc;
		const char *msg;
	} g[] = {
		{"{\"hello\": {}}\r\n", -EPROTO, "QMP greeting: not QMP (no \"QMP\" key)"},
		{"{\"QMP\": 1}\r\n", -EPROTO, "QMP greeting: not QMP (no \"QMP\" key)"},
		{"{\"QMP\": {}", -ECONNRESET,
		 "QMP greeting: connection closed by QEMU in the middle of a message"},
		{"<html>\r\n", -EBADMSG, "QMP greeting: not JSON"},
		{NULL, -ETIMEDOUT, "QMP greeting: timed out after 200 ms"},
	};
	unsigned int i;

	(void)state;
	for (i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		struct srv s;
		struct qmp *q = (struct qmp *)1;
		int cfd;

		srv_start(&s, srv_greeting, g[i].greeting, &cfd);
		assert_int_equal(qmp_open_fd(cfd, 200, &q, err, sizeof(err)), g[i].rc);
		assert_null(q);
		assert_non_null(strstr(err, g[i].msg));
		srv_end(&s, NULL);
	}
}

/* qmp_open on a path: missing, refused, too long, and a listening fake monitor. */
static void *accept_one(void *arg)
{
	struct srv *s = arg;
	int lfd = s->fd;

	s->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	if (s->fd < 0) {
		srv_fail(s, "accept: %s", strerror(errno));
		return NULL;
	}
	srv_greet(s);
	srv_drain(s);
	return NULL;
}

static void test_open_path(void **state)
{
	char dir[] = "/tmp/rmig-qmp-XXXXXX", path[64], longp[200];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct qmp *q;
	struct srv s;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/q.sock", dir);
	assert_int_equal(qmp_open(path, 500, &q, err, sizeof(err)), -ENOENT);
	assert_null(q);
	assert_non_null(strstr(err, ": no such file or directory"));

	/* bound, not listening */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(qmp_open(path, 500, &q, err, sizeof(err)), -ECONNREFUSED);
	snprintf(longp, sizeof(longp), "QMP socket %s: connection refused", path);
	assert_string_equal(err, longp);

	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(qmp_open(longp, 500, &q, err, sizeof(err)), -ENAMETOOLONG);

	assert_int_equal(listen(fd, 1), 0);
	memset(&s, 0, sizeof(s));
	s.fd = fd;
	s.got_fd = -1;
	assert_int_equal(pthread_create(&s.th, NULL, accept_one, &s), 0);
	assert_int_equal(qmp_open(path, 2000, &q, err, sizeof(err)), 0);
	assert_int_equal(qmp_peer_pid(q), getpid());
	srv_end(&s, q);
	unlink(path);
	rmdir(dir);
}

static void srv_getfd(struct srv *s)
{
	json_t *args;
	json_int_t id;

	srv_greet(s);
	id = srv_expect(s, "getfd", &args);
	if (s->got_fd < 0)
		srv_fail(s, "no file descriptor came with getfd");
	if (strcmp(json_string_value(json_object_get(args, "fdname")) ?: "", "migfd"))
		srv_fail(s, "getfd fdname wrong");
	json_decref(args);
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)id);
}

static void test_getfd(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_getfd, NULL, 2000);
	struct stat a, b;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(qmp_getfd(q, "migfd", p[1], err, sizeof(err)), 0);
	assert_int_equal(qmp_getfd(q, "", p[1], err, sizeof(err)), -EINVAL);
	assert_int_equal(qmp_getfd(q, "x", -1, err, sizeof(err)), -EINVAL);
	qmp_close(q);
	assert_int_equal(pthread_join(s.th, NULL), 0);
	assert_true(s.got_fd >= 0);
	assert_int_equal(fstat(s.got_fd, &a), 0);
	assert_int_equal(fstat(p[1], &b), 0);
	assert_true(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
	assert_string_equal(s.bad, "");
	close(s.got_fd);
	close(s.fd);
	close(p[0]);
	close(p[1]);
}

/* query-migrate answered from a list of replies (the last one repeats). */
static void srv_migrate(struct srv *s)
{
	const char *const *r = s->arg;
	json_int_t id;
	unsigned int i = 0;

	srv_greet(s);
	while ((id = srv_expect(s, "query-migrate", NULL)) >= 0) {
		srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", r[i], (long long)id);
		if (r[i + 1])
			i++;
	}
}

static void test_wait_status(void **state)
{
	static const char *const ok[] = {
		"{}",
		"{\"status\": \"setup\"}",
		"{\"status\": \"active\", \"ram\": {\"transferred\": 1}}",
		"{\"status\": \"pre-switchover\"}",
		NULL,
	};
	static const char *const failed[] = {
		"{\"status\": \"active\"}",
		"{\"status\": \"failed\", \"error-desc\": \"Unable to write to socket: "
		"Broken pipe\\n\\u0007\"}",
		NULL,
	};
	static const char *const failed_nodesc[] = {"{\"status\": \"failed\"}", NULL};
	static const char *const cancelled[] = {"{\"status\": \"cancelled\"}", NULL};
	static const char *const stuck[] = {"{\"status\": \"active\"}", NULL};
	struct srv s;
	struct qmp *q;
	char st[32], tiny[4];
	int64_t t0;

	(void)state;
	q = srv_open(&s, srv_migrate, ok, 2000);
	assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)), 0);
	assert_string_equal(st, "none");
	assert_int_equal(qmp_migrate_status(q, tiny, sizeof(tiny), err, sizeof(err)), -ERANGE);
	assert_int_equal(
		qmp_wait_status(q, "pre-switchover|completed", 2000, st, sizeof(st), err, sizeof(err)),
		0);
	assert_string_equal(st, "pre-switchover");
	assert_int_equal(qmp_wait_status(q, "completed|pre-switchover", 0, st, sizeof(st), err,
					 sizeof(err)),
			 0);
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, failed, 2000);
	assert_int_equal(qmp_wait_status(q, "completed", 2000, st, sizeof(st), err, sizeof(err)),
			 -EIO);
	assert_string_equal(st, "failed");
	assert_string_equal(err,
			    "migration failed: Unable to write to socket: Broken pipe\\x0a\\x07");
	/* asked for, failed is not an error */
	assert_int_equal(qmp_wait_status(q, "completed|failed", 100, st, sizeof(st), err,
					 sizeof(err)),
			 0);
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, failed_nodesc, 2000);
	assert_int_equal(qmp_wait_status(q, "completed", 2000, NULL, 0, err, sizeof(err)), -EIO);
	assert_string_equal(err, "migration failed (QEMU gave no reason)");
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, cancelled, 2000);
	assert_int_equal(qmp_wait_status(q, "completed", 2000, st, sizeof(st), err, sizeof(err)),
			 -EIO);
	assert_string_equal(err, "migration cancelled");
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, stuck, 2000);
	t0 = now_ms();
	assert_int_equal(qmp_wait_status(q, "complete", 200, st, sizeof(st), err, sizeof(err)),
			 -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 200 && now_ms() - t0 < 200 + slack_ms());
	assert_string_equal(err, "migration status still \"active\" after 200 ms (waiting for "
				 "complete)");
	/* still usable */
	assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)), 0);
	assert_string_equal(st, "active");
	srv_end(&s, q);
}

/*
 * A fake QEMU for qmp_backends: qom-list-types, qom-list /objects and
 * qom-get answered from a table, as QEMU 7.2 answers them.
 */
struct fake_qom {
	const char *types;   /* qom-list-types' return, or NULL: CommandNotFound */
	const char *objects; /* qom-list /objects' return */
	const char *props;   /* {"/objects/m0": {"size": ..., ...}, ...} */
};

static void srv_qom(struct srv *s)
{
	const struct fake_qom *f = s->arg;
	json_t *c, *props = json_loads(f->props, 0, NULL);

	srv_greet(s);
	while ((c = srv_cmd(s))) {
		const char *ex = json_string_value(json_object_get(c, "execute"));
		json_t *a = json_object_get(c, "arguments");
		long long id = json_integer_value(json_object_get(c, "id"));

		if (!strcmp(ex, "qom-list-types") && f->types) {
			srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", f->types, id);
		} else if (!strcmp(ex, "qom-list") &&
			   !strcmp(json_string_value(json_object_get(a, "path")), "/objects")) {
			srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", f->objects, id);
		} else if (!strcmp(ex, "qom-get")) {
			const char *path = json_string_value(json_object_get(a, "path"));
			const char *prop = json_string_value(json_object_get(a, "property"));
			json_t *o = json_object_get(props, path), *v = json_object_get(o, prop);
			char *d = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;

			if (!o)
				srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"DeviceNotFound\", "
					      "\"desc\": \"Device '%s' not found\"}}\r\n",
					   id, path);
			else if (!v)
				srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", "
					      "\"desc\": \"Property '%s' not found\"}}\r\n",
					   id, prop);
			else
				srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", d, id);
			free(d);
		} else {
			srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", "
				      "\"desc\": \"The command %s has not been found\"}}\r\n",
				   id, ex);
		}
		json_decref(c);
	}
	json_decref(props);
}

static const char qom_types[] =
	"[{\"name\": \"memory-backend-ram\", \"parent\": \"memory-backend\"}, "
	"{\"name\": \"memory-backend-file\", \"parent\": \"memory-backend\"}, "
	"{\"name\": \"memory-backend-memfd\", \"parent\": \"memory-backend\"}]";
static const char qom_objects[] =
	"[{\"name\": \"type\", \"type\": \"string\"}, "
	"{\"name\": \"m1\", \"type\": \"child<memory-backend-ram>\"}, "
	"{\"name\": \"tc\", \"type\": \"child<thread-context>\"}, "
	"{\"name\": \"m2\", \"type\": \"child<memory-backend-memfd>\"}, "
	"{\"name\": \"m0\", \"type\": \"child<memory-backend-file>\"}]";
static const char qom_props[] =
	"{\"/objects/m0\": {\"type\": \"memory-backend-file\", \"size\": 67108864, \"share\": true,"
	" \"mem-path\": \"/dev/shm/vm.img\"},"
	" \"/objects/m1\": {\"type\": \"memory-backend-ram\", \"size\": 16777216, \"share\": false},"
	" \"/objects/m2\": {\"type\": \"memory-backend-memfd\", \"size\": 8388608, \"share\": true}}";

static void test_backends_fake(void **state)
{
	static const struct fake_qom f = {qom_types, qom_objects, qom_props};
	static const struct fake_qom nolisttypes = {NULL, qom_objects, qom_props};
	static const struct fake_qom badsize = {
		qom_types, "[{\"name\": \"m1\", \"type\": \"child<memory-backend-ram>\"}]",
		"{\"/objects/m1\": {\"size\": -1, \"share\": false}}"};
	static const struct fake_qom badid = {
		qom_types, "[{\"name\": \"../m1\", \"type\": \"child<memory-backend-ram>\"}]", "{}"};
	const struct fake_qom *ok[] = {&f, &nolisttypes};
	struct qmp_backend b[4];
	unsigned int n, i;
	struct srv s;
	struct qmp *q;

	(void)state;
	for (i = 0; i < 2; i++) {
		q = srv_open(&s, srv_qom, ok[i], 2000);
		assert_int_equal(qmp_backends(q, b, 4, &n, err, sizeof(err)), 0);
		assert_int_equal(n, 3);
		assert_string_equal(b[0].id, "m1");
		assert_string_equal(b[0].type, "memory-backend-ram");
		assert_string_equal(b[0].mem_path, "");
		assert_false(b[0].share);
		assert_int_equal(b[0].size, 16 << 20);
		assert_string_equal(b[1].id, "m2");
		assert_string_equal(b[1].type, "memory-backend-memfd");
		assert_true(b[1].share);
		assert_string_equal(b[2].id, "m0");
		assert_string_equal(b[2].type, "memory-backend-file");
		assert_string_equal(b[2].mem_path, "/dev/shm/vm.img");
		assert_true(b[2].share);
		assert_int_equal(b[2].size, 64 << 20);
		assert_int_equal(qmp_backends(q, b, 2, &n, err, sizeof(err)), -E2BIG);
		assert_string_equal(err, "QMP: more than 2 memory backends");
		srv_end(&s, q);
	}
	q = srv_open(&s, srv_qom, &badsize, 2000);
	assert_int_equal(qmp_backends(q, b, 4, &n, err, sizeof(err)), -EBADMSG);
	assert_int_equal(n, 0);
	srv_end(&s, q);
	q = srv_open(&s, srv_qom, &badid, 2000);
	assert_int_equal(qmp_backends(q, b, 4, &n, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "QMP: memory backend id ../m1 malformed");
	srv_end(&s, q);
}

static void test_parse(void **state)
{
	static const char big_prefix[] = "{\"a\": \"";
	json_t *m = (json_t *)1;
	char *big;

	(void)state;
	assert_int_equal(qmp_parse("{\"return\": {}}", 14, &m, err, sizeof(err)), 0);
	assert_true(json_is_object(m));
	json_decref(m);
	/* the line end is not part of the message, trailing white space is fine */
	assert_int_equal(qmp_parse("{} \r", 4, &m, err, sizeof(err)), 0);
	json_decref(m);
	assert_int_equal(qmp_parse("", 0, &m, err, sizeof(err)), -EBADMSG);
	assert_null(m);
	assert_int_equal(qmp_parse("{\"a\":1}\n{}", 10, &m, err, sizeof(err)), -EBADMSG);
	assert_int_equal(qmp_parse("{\"a\":\"\\u0000\"}", 14, &m, err, sizeof(err)), -EBADMSG);
	assert_int_equal(qmp_parse("{\"a\":\x01\xfe}", 8, &m, err, sizeof(err)), -EBADMSG);
	assert_null(strchr(err, '\x01'));
	assert_null(strchr(err, '\xfe'));
	assert_int_equal(qmp_parse("{\"a\":1}", 7, &m, NULL, 0), 0);
	json_decref(m);
	assert_int_equal(qmp_parse("1", 1, &m, NULL, 0), -EBADMSG);
	big = malloc(QMP_MSG_MAX + 2);
	assert_non_null(big);
	memcpy(big, big_prefix, 7);
	memset(big + 7, 'x', QMP_MSG_MAX + 2 - 7 - 2);
	memcpy(big + QMP_MSG_MAX, "\"}", 2);
	assert_int_equal(qmp_parse(big, QMP_MSG_MAX + 2, &m, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "QMP message: over 16 MiB");
	free(big);
}

/* ------------------------------------------------------------------------ */
/* A real QEMU */

static int find_qemu(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096], *save = NULL, *d;

	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
	for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/qemu-system-x86_64", d);
		if (!access(out, X_OK))
			return 0;
	}
	return -1;
}

/* The QEMU and its files, removed by qemu_teardown even when a check fails. */
static pid_t qemu_pid = -1;
static char qemu_dir[] = "/tmp/rmig-qmp-XXXXXX", sock[128], img[128];

static int qemu_teardown(void **state)
{
	int status;

	(void)state;
	if (qemu_pid > 0) {
		kill(qemu_pid, SIGKILL);
		waitpid(qemu_pid, &status, 0);
		qemu_pid = -1;
	}
	if (img[0])
		unlink(img);
	if (sock[0])
		unlink(sock);
	rmdir(qemu_dir);
	return 0;
}

static void test_real_qemu(void **state)
{
	char qemu[PATH_MAX], qmparg[160], m0[256];
	struct qmp_backend b[8];
	unsigned int n, i, seen = 0;
	struct qmp *q = NULL;
	int64_t t0;
	pid_t pid;
	char st[32];
	json_t *ret;
	int p[2], r, status;

	(void)state;
	if (find_qemu(qemu, sizeof(qemu))) {
		print_message("qemu-system-x86_64 not found: skipping the real QEMU test\n");
		skip();
	}
	assert_non_null(mkdtemp(qemu_dir));
	snprintf(sock, sizeof(sock), "%s/q.sock", qemu_dir);
	snprintf(qmparg, sizeof(qmparg), "unix:%s,server=on,wait=off", sock);
	snprintf(img, sizeof(img), "/dev/shm/rmig-qmp-test-%d.img", (int)getpid());
	snprintf(m0, sizeof(m0), "memory-backend-file,id=m0,size=64M,mem-path=%s,share=on", img);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with the test */

		dup2(nul, 0);
		dup2(nul, 1);
		execl(qemu, qemu, "-machine", "none", "-nodefaults", "-display", "none", "-qmp",
		      qmparg, "-object", m0, "-object", "memory-backend-ram,id=m1,size=16M",
		      (char *)NULL);
		_exit(127);
	}
	qemu_pid = pid;
	t0 = now_ms();
	for (;;) {
		r = qmp_open(sock, 5000, &q, err, sizeof(err));
		if (!r || (r != -ENOENT && r != -ECONNREFUSED) || now_ms() - t0 > 10000)
			break;
		sleep_ms(20);
	}
	if (r)
		print_message("qmp_open: %s\n", err);
	assert_int_equal(r, 0);
	assert_int_equal(qmp_peer_pid(q), pid);

	r = qmp_backends(q, b, 8, &n, err, sizeof(err));
	if (r)
		print_message("qmp_backends: %s\n", err);
	assert_int_equal(r, 0);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++) {
		if (!strcmp(b[i].id, "m0")) {
			assert_string_equal(b[i].type, "memory-backend-file");
			assert_string_equal(b[i].mem_path, img);
			assert_true(b[i].share);
			assert_int_equal(b[i].size, 64 << 20);
			seen |= 1;
		} else {
			assert_string_equal(b[i].id, "m1");
			assert_string_equal(b[i].type, "memory-backend-ram");
			assert_string_equal(b[i].mem_path, "");
			assert_false(b[i].share);
			assert_int_equal(b[i].size, 16 << 20);
			seen |= 2;
		}
	}
	assert_int_equal(seen, 3);

	assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)), 0);
	assert_string_equal(st, "none");
	assert_int_equal(qmp_exec(q, "qom-get",
				  json_pack("{s:s, s:s}", "path", "/objects/m1", "property",
					    "mem-path"),
				  NULL, err, sizeof(err)),
			 -EREMOTEIO);
	assert_string_equal(err,
			    "GenericError: Property 'memory-backend-ram.mem-path' not found");
	assert_int_equal(qmp_exec(q, "no-such-command", NULL, NULL, err, sizeof(err)),
			 -EREMOTEIO);
	assert_string_equal(err, "CommandNotFound: The command no-such-command has not been found");
	assert_int_equal(pipe(p), 0);
	assert_int_equal(qmp_getfd(q, "migfd", p[1], err, sizeof(err)), 0);
	assert_int_equal(qmp_exec(q, "closefd", json_pack("{s:s}", "fdname", "migfd"), NULL, err,
				  sizeof(err)),
			 0);
	close(p[0]);
	close(p[1]);
	assert_int_equal(qmp_exec(q, "quit", NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(qmp_wait_event(q, "SHUTDOWN", 5000, &ret, err, sizeof(err)), 0);
	json_decref(ret);
	qmp_close(q);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	qemu_pid = -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_exec),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_bad_replies),
		cmocka_unit_test(test_closed),
		cmocka_unit_test(test_trickle),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_open_path),
		cmocka_unit_test(test_getfd),
		cmocka_unit_test(test_wait_status),
		cmocka_unit_test(test_backends_fake),
		cmocka_unit_test_teardown(test_real_qemu, qemu_teardown),
	};

	/* SIGPIPE stays fatal: the client must never raise it */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
