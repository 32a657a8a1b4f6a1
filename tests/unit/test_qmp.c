/* SPDX-License-Identifier: MIT */
/*
 * test_qmp.c - the QMP client's protocol against a fake QEMU monitor on a
 * socketpair (qmp_srv.c: greeting, replies, errors, events, a wrong id,
 * garbage, a reply trickled byte by byte, EOF mid-reply, an oversized reply,
 * a file descriptor passed with a command). The queries built on it:
 * test_qmp_query.c.
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
#include "qmp_srv.h"

static char err[512];

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
	srv_sleep_ms(20);
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

/* Reads all three commands before it answers any: a client that waits between them hangs. */
static void srv_batch(struct srv *s)
{
	json_int_t a, b, c;

	srv_greet(s);
	a = srv_expect(s, "query-status", NULL);
	b = srv_expect(s, "qom-get", NULL);
	c = srv_expect(s, "query-name", NULL);
	srv_printf(s, "{\"return\": {\"status\": \"running\"}, \"id\": %lld}\r\n", (long long)a);
	srv_send(s, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n");
	srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", \"desc\": \"no\"}}\r\n",
		   (long long)b);
	srv_printf(s, "{\"return\": {\"name\": \"vm1\"}, \"id\": %lld}\r\n", (long long)c);
	/* a second batch answered out of order: out of step */
	a = srv_expect(s, "query-status", NULL);
	b = srv_expect(s, "query-name", NULL);
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)b);
	srv_printf(s, "{\"return\": {}, \"id\": %lld}\r\n", (long long)a);
}

/* qmp_exec_n: one round trip; an error reply in the middle leaves the rest; ids checked. */
static void test_batch(void **state)
{
	struct srv s;
	struct qmp *q = srv_open(&s, srv_batch, NULL, 2000);
	const char *const cmds[] = { "query-status", "qom-get", "query-name" };
	json_t *args[3] = { NULL, json_pack("{s:s}", "path", "/x"), NULL }, *rets[3];
	int rcs[3];

	(void)state;
	assert_int_equal(qmp_exec_n(q, 3, cmds, args, rets, rcs, err, sizeof(err)), -EREMOTEIO);
	assert_null(args[1]); /* stolen */
	assert_int_equal(rcs[0], 0);
	assert_string_equal(json_string_value(json_object_get(rets[0], "status")), "running");
	assert_int_equal(rcs[1], -EREMOTEIO);
	assert_null(rets[1]);
	assert_string_equal(err, "GenericError: no");
	assert_int_equal(rcs[2], 0);
	assert_string_equal(json_string_value(json_object_get(rets[2], "name")), "vm1");
	for (int i = 0; i < 3; i++)
		json_decref(rets[i]);
	/* the event that came between the replies is queued */
	assert_int_equal(qmp_wait_event(q, "STOP", 100, NULL, err, sizeof(err)), 0);
	args[0] = args[1] = NULL;
	assert_int_equal(qmp_exec_n(q, 2, (const char *const[]){ "query-status", "query-name" }, args,
				    rets, rcs, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "wrong id"));
	json_decref(rets[0]);
	json_decref(rets[1]);
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
	srv_sleep_ms(50);
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
	t0 = srv_now_ms();
	assert_int_equal(qmp_wait_event(q, "SHUTDOWN", 200, &data, err, sizeof(err)), -ETIMEDOUT);
	assert_true(srv_now_ms() - t0 >= 200 && srv_now_ms() - t0 < 200 + srv_slack_ms());
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
	srv_sleep_ms(50);
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
			srv_sleep_ms(1);
		}
		return;
	}
	snprintf(b, sizeof(b), "{\"return\": {\"status\": \"active\"}, \"id\": %lld}\r\n",
		 (long long)id);
	for (i = 0; b[i]; i++) {
		if (srv_sendn(s, b + i, 1))
			return;
		srv_sleep_ms(30);
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
		int64_t t0 = srv_now_ms(), dt;

		assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)),
				 -ETIMEDOUT);
		dt = srv_now_ms() - t0;
		print_message("timed out after %lld ms: %s\n", (long long)dt, err);
		assert_true(dt >= 300 && dt < 300 + srv_slack_ms());
		assert_string_equal(err, "QMP reply to query-migrate: timed out after 300 ms");
		t0 = srv_now_ms();
		assert_int_equal(qmp_exec(q, "stop", NULL, NULL, err, sizeof(err)), -ETIMEDOUT);
		assert_true(srv_now_ms() - t0 < 50);
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

	/* a file that is no socket: said so, not "connection refused" */
	{
		char plain[80];
		int pfd;

		snprintf(plain, sizeof(plain), "%s/plain", dir);
		pfd = open(plain, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		assert_true(pfd >= 0);
		close(pfd);
		assert_int_equal(qmp_open(plain, 500, &q, err, sizeof(err)), -ECONNREFUSED);
		assert_non_null(strstr(err, ": not a unix socket"));
		unlink(plain);
	}

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_exec),
		cmocka_unit_test(test_error_reply),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_bad_replies),
		cmocka_unit_test(test_closed),
		cmocka_unit_test(test_trickle),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_open_path),
		cmocka_unit_test(test_getfd),
	};

	/* SIGPIPE stays fatal: the client must never raise it */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
