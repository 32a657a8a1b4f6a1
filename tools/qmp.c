/* SPDX-License-Identifier: MIT */
/* qmp.c - a small, bounded QMP client (see qmp.h). */
#define _GNU_SOURCE /* struct ucred */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "qmp.h"
#include "qmp_int.h"

#define QMP_BUF_MIN    (4u << 10)
#define QMP_BUF_MAX    (QMP_MSG_MAX + 2) /* a whole message, "\r\n" included */
#define QMP_CMD_MAX    128               /* bytes in a command or event name */

struct qmp {
	int fd;
	unsigned int timeout_ms;
	int peer_pid;
	int broken;           /* the error that left the stream out of step, or 0 */
	char broken_msg[256]; /* and its message */
	char *buf;            /* received bytes; buf[start, len) not taken yet */
	size_t start, len, cap;
	size_t scan; /* buf[start, start + scan) holds no '\n' */
	json_int_t next_id;
	json_t *ev[QMP_EVENTS_MAX]; /* queued events, oldest at ev_head */
	unsigned int ev_head, ev_n;
	unsigned long ev_dropped;
};

__attribute__((format(printf, 3, 4))) void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * @n bytes of @s as text for an error message: control and non-ASCII bytes as
 * \xNN, cut with "..." where @out is too small. Returns @out.
 */
const char *show(const void *s, size_t n, char *out, size_t outlen)
{
	const unsigned char *p = s;
	size_t o = 0, i;

	if (!outlen)
		return "";
	for (i = 0; i < n; i++) {
		size_t need = (p[i] < 0x20 || p[i] >= 0x7f) ? 4 : 1;

		if (o + need + 4 > outlen) {
			if (o + 4 <= outlen)
				memcpy(out + o, "...", 3), o += 3;
			break;
		}
		if (need == 4)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
		else
			out[o++] = (char)p[i];
	}
	out[o] = '\0';
	return out;
}

const char *shows(const char *s, char *out, size_t outlen)
{
	return show(s, strlen(s), out, outlen);
}

/* strerror, lower case first: "connection refused". */
static const char *errstr(int e, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", strerror(e));
	if (out[0] && out[1] && !isupper((unsigned char)out[1]))
		out[0] = (char)tolower((unsigned char)out[0]);
	return out;
}

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void wait_init(struct qmp_wait *w, unsigned int ms)
{
	w->deadline = now_ms() + ms;
	w->ms = ms;
	w->tried = 0;
}

int left_ms(const struct qmp_wait *w)
{
	int64_t r = w->deadline - now_ms();

	return r < 0 ? 0 : r > INT_MAX ? INT_MAX : (int)r;
}

/* Wait until the socket is ready for @events or the deadline passes. */
static int wait_fd(struct qmp *q, short events, const struct qmp_wait *w)
{
	for (;;) {
		struct pollfd p = {.fd = q->fd, .events = events};
		int r = poll(&p, 1, left_ms(w));

		if (r > 0)
			return 0; /* ready, or hung up: the next read or write says which */
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* An error that leaves the stream out of step: every later call fails with it. */
int fail(struct qmp *q, int r, const char *err)
{
	if (r && r != -EREMOTEIO && !q->broken) {
		q->broken = r;
		snprintf(q->broken_msg, sizeof(q->broken_msg), "%s", err ? err : "");
	}
	return r;
}

static int check_broken(struct qmp *q, char *err, size_t errlen)
{
	if (!q->broken)
		return 0;
	seterr(err, errlen, "QMP connection unusable after an earlier error: %s", q->broken_msg);
	return q->broken;
}

static int parse(const char *buf, size_t len, json_t **msg_p, const char *what, char *err,
		 size_t errlen)
{
	json_error_t e;
	json_t *m;
	char t[QMP_SHOW];

	*msg_p = NULL;
	if (len > QMP_MSG_MAX) {
		seterr(err, errlen, "%s: over %u MiB", what, QMP_MSG_MAX >> 20);
		return -EBADMSG;
	}
	m = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e);
	if (!m) {
		seterr(err, errlen, "%s: not JSON (%s, at byte %d)", what,
		       shows(e.text, t, sizeof(t)), e.position);
		return -EBADMSG;
	}
	if (!json_is_object(m)) {
		json_decref(m);
		seterr(err, errlen, "%s: not a JSON object", what);
		return -EBADMSG;
	}
	*msg_p = m;
	return 0;
}

int qmp_parse(const char *buf, size_t len, json_t **msg_p, char *err, size_t errlen)
{
	return parse(buf, len, msg_p, "QMP message", err, errlen);
}

/*
 * The next whole line in the buffer, without its "\r\n": 1 and *line_p,
 * *n_p (valid until the next read), 0 if there is none yet, or -EMSGSIZE.
 */
static int take_line(struct qmp *q, const char **line_p, size_t *n_p, const char *what, char *err,
		     size_t errlen)
{
	char *s, *nl;
	size_t have = q->len - q->start, n;

	if (!have)
		return 0;
	s = q->buf + q->start;
	nl = q->scan < have ? memchr(s + q->scan, '\n', have - q->scan) : NULL;

	if (!nl) {
		q->scan = have;
		if (have > QMP_MSG_MAX + 1) {
			seterr(err, errlen, "%s: message over %u MiB", what, QMP_MSG_MAX >> 20);
			return -EMSGSIZE;
		}
		return 0;
	}
	n = (size_t)(nl - s);
	q->start += n + 1;
	q->scan = 0;
	if (n && s[n - 1] == '\r')
		n--;
	if (n > QMP_MSG_MAX) {
		seterr(err, errlen, "%s: message over %u MiB", what, QMP_MSG_MAX >> 20);
		return -EMSGSIZE;
	}
	*line_p = s;
	*n_p = n;
	return 1;
}

/* Read once from the socket into the buffer, waiting up to the deadline. */
static int fill(struct qmp *q, struct qmp_wait *w, const char *what, char *err, size_t errlen)
{
	char e[64];

	if (q->start) {
		memmove(q->buf, q->buf + q->start, q->len - q->start);
		q->len -= q->start;
		q->start = 0;
	}
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : QMP_BUF_MIN;
		char *b;

		if (cap > QMP_BUF_MAX)
			cap = QMP_BUF_MAX;
		b = realloc(q->buf, cap);
		if (!b) {
			seterr(err, errlen, "%s: out of memory", what);
			return -ENOMEM;
		}
		q->buf = b;
		q->cap = cap;
	}
	for (;;) {
		ssize_t n = recv(q->fd, q->buf + q->len, q->cap - q->len, MSG_DONTWAIT);
		int r;

		if (n > 0) {
			q->len += (size_t)n;
			return 0;
		}
		if (n == 0) {
			if (q->len)
				seterr(err, errlen,
				       "%s: connection closed by QEMU in the middle of a message",
				       what);
			else
				seterr(err, errlen, "%s: connection closed by QEMU", what);
			return -ECONNRESET;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -errno;
			seterr(err, errlen, "%s: %s", what, errstr(-r, e, sizeof(e)));
			return r;
		}
		r = wait_fd(q, POLLIN, w);
		if (r == -ETIMEDOUT)
			seterr(err, errlen, "%s: timed out after %u ms", what, w->ms);
		else if (r)
			seterr(err, errlen, "%s: %s", what, errstr(-r, e, sizeof(e)));
		if (r)
			return r;
	}
}

/*
 * The next message: one that is already whole in the buffer, else what the
 * socket brings before the deadline (a peer that keeps sending bytes without
 * ending a message still runs out of time).
 */
static int read_msg(struct qmp *q, struct qmp_wait *w, json_t **msg_p, const char *what,
		    char *err, size_t errlen)
{
	for (;;) {
		const char *line;
		size_t n, i;
		int r = take_line(q, &line, &n, what, err, errlen);

		if (r < 0)
			return r;
		if (r > 0) {
			for (i = 0; i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r');
			     i++)
				;
			if (i == n)
				continue; /* a blank line */
			return parse(line, n, msg_p, what, err, errlen);
		}
		if (w->tried && now_ms() >= w->deadline) {
			seterr(err, errlen, "%s: timed out after %u ms", what, w->ms);
			return -ETIMEDOUT;
		}
		w->tried = 1;
		r = fill(q, w, what, err, errlen);
		if (r)
			return r;
	}
}

static void push_event(struct qmp *q, json_t *m)
{
	if (q->ev_n == QMP_EVENTS_MAX) {
		json_decref(q->ev[q->ev_head]);
		q->ev_head = (q->ev_head + 1) % QMP_EVENTS_MAX;
		q->ev_n--;
		q->ev_dropped++;
	}
	q->ev[(q->ev_head + q->ev_n) % QMP_EVENTS_MAX] = m;
	q->ev_n++;
}

/* Take the oldest queued event named @name: 1 and its "data", or 0. */
static int take_event(struct qmp *q, const char *name, json_t **data_p)
{
	unsigned int i, j;

	for (i = 0; i < q->ev_n; i++) {
		json_t *m = q->ev[(q->ev_head + i) % QMP_EVENTS_MAX];

		if (strcmp(json_string_value(json_object_get(m, "event")), name))
			continue;
		for (j = i; j + 1 < q->ev_n; j++)
			q->ev[(q->ev_head + j) % QMP_EVENTS_MAX] =
				q->ev[(q->ev_head + j + 1) % QMP_EVENTS_MAX];
		q->ev_n--;
		if (data_p)
			*data_p = json_incref(json_object_get(m, "data"));
		json_decref(m);
		return 1;
	}
	return 0;
}

enum { QMP_EVENT, QMP_REPLY };

/* An event (with a string "event") or a reply (one of "return", "error"). */
static int classify(json_t *m, const char *what, char *err, size_t errlen)
{
	json_t *ev = json_object_get(m, "event");
	int ret = json_object_get(m, "return") != NULL;
	int error = json_object_get(m, "error") != NULL;

	if (ev) {
		if (!json_is_string(ev) || !json_string_length(ev) ||
		    json_string_length(ev) >= QMP_CMD_MAX || ret || error) {
			seterr(err, errlen, "%s: malformed event", what);
			return -EBADMSG;
		}
		return QMP_EVENT;
	}
	if (ret && error) {
		seterr(err, errlen, "%s: reply has both \"return\" and \"error\"", what);
		return -EBADMSG;
	}
	if (ret || error)
		return QMP_REPLY;
	if (json_object_get(m, "QMP"))
		seterr(err, errlen, "%s: a second greeting", what);
	else
		seterr(err, errlen, "%s: message has none of \"return\", \"error\", \"event\"",
		       what);
	return -EBADMSG;
}

/* "CLASS: desc" of an error reply. */
static int error_reply(json_t *m, const char *what, char *err, size_t errlen)
{
	json_t *e = json_object_get(m, "error");
	const char *cls = json_string_value(json_object_get(e, "class"));
	const char *desc = json_string_value(json_object_get(e, "desc"));
	char c[64], d[QMP_SHOW * 2];

	if (!json_is_object(e) || !cls || !desc) {
		seterr(err, errlen, "%s: error reply without a class and a desc", what);
		return -EBADMSG;
	}
	seterr(err, errlen, "%s: %s", shows(cls, c, sizeof(c)), shows(desc, d, sizeof(d)));
	return -EREMOTEIO;
}

static int send_all(struct qmp *q, const char *s, size_t n, int fd, struct qmp_wait *w,
		    const char *what, char *err, size_t errlen)
{
	size_t off = 0;
	char e[64];

	while (off < n) {
		struct iovec iov = {.iov_base = (void *)(s + off), .iov_len = n - off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} c;
		ssize_t r;
		int rc;

		if (fd >= 0 && off == 0) {
			struct cmsghdr *cm;

			memset(&c, 0, sizeof(c));
			mh.msg_control = c.b;
			mh.msg_controllen = sizeof(c.b);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		}
		r = sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r > 0) {
			off += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			rc = -errno;
			if (rc == -EPIPE || rc == -ECONNRESET)
				seterr(err, errlen, "%s: connection closed by QEMU", what);
			else
				seterr(err, errlen, "%s: %s", what, errstr(-rc, e, sizeof(e)));
			return rc;
		}
		rc = wait_fd(q, POLLOUT, w);
		if (rc == -ETIMEDOUT)
			seterr(err, errlen, "%s: QEMU took nothing for %u ms", what, w->ms);
		else if (rc)
			seterr(err, errlen, "%s: %s", what, errstr(-rc, e, sizeof(e)));
		if (rc)
			return rc;
	}
	return 0;
}

/* Build and send @cmd (with @fd if >= 0; @args stolen); its id in *id_p. */
static int send_cmd(struct qmp *q, const char *cmd, json_t *args, int fd, struct qmp_wait *w,
		    json_int_t *id_p, char *err, size_t errlen)
{
	char what[QMP_CMD_MAX + 32], t[QMP_SHOW], *s = NULL;
	json_t *m;
	size_t n;
	int r;

	if (!cmd || !*cmd || strlen(cmd) >= QMP_CMD_MAX || (args && !json_is_object(args))) {
		json_decref(args);
		seterr(err, errlen, "QMP: invalid command or arguments");
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "QMP reply to %s", shows(cmd, t, sizeof(t)));
	*id_p = ++q->next_id;
	m = json_pack("{s:s, s:I}", "execute", cmd, "id", *id_p);
	if (!m || (args && json_object_set_new(m, "arguments", args))) {
		json_decref(m);
		if (!m)
			json_decref(args);
		seterr(err, errlen, "QMP: cannot build the command %s", shows(cmd, t, sizeof(t)));
		return -EINVAL;
	}
	n = json_dumpb(m, NULL, 0, JSON_COMPACT);
	if (n)
		s = malloc(n + 1);
	if (!s || json_dumpb(m, s, n, JSON_COMPACT) != n) {
		json_decref(m);
		free(s);
		seterr(err, errlen, "QMP: cannot encode the command %s", shows(cmd, t, sizeof(t)));
		return -ENOMEM;
	}
	json_decref(m);
	s[n] = '\n';
	r = send_all(q, s, n + 1, fd, w, what, err, errlen);
	free(s);
	return r ? fail(q, r, err) : 0;
}

/*
 * Wait for the reply to command @id (@cmd, for messages), queuing events.
 * A QMP error reply is -EREMOTEIO and leaves the stream in step.
 */
static int wait_reply(struct qmp *q, const char *cmd, json_int_t id, struct qmp_wait *w,
		      json_t **ret_p, char *err, size_t errlen)
{
	char what[QMP_CMD_MAX + 32], t[QMP_SHOW];
	json_t *m, *rid;
	int r;

	snprintf(what, sizeof(what), "QMP reply to %s", shows(cmd, t, sizeof(t)));
	for (;;) {
		r = read_msg(q, w, &m, what, err, errlen);
		if (r)
			return fail(q, r, err);
		r = classify(m, what, err, errlen);
		if (r < 0) {
			json_decref(m);
			return fail(q, r, err);
		}
		if (r == QMP_EVENT) {
			push_event(q, m);
			continue;
		}
		r = 0;
		rid = json_object_get(m, "id");
		if (!rid && json_object_get(m, "error")) {
			r = error_reply(m, what, err, errlen); /* QEMU could not parse it */
		} else if (!json_is_integer(rid) || json_integer_value(rid) != id) {
			char *d = rid ? json_dumps(rid, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

			seterr(err, errlen, "%s: wrong id %s (expected %lld)", what,
			       d ? show(d, strlen(d), t, 64) : "(none)", (long long)id);
			free(d);
			r = -EBADMSG;
		} else if (json_object_get(m, "error")) {
			r = error_reply(m, what, err, errlen);
		} else if (ret_p) {
			*ret_p = json_incref(json_object_get(m, "return"));
		}
		json_decref(m);
		return fail(q, r, err);
	}
}

/* Send @cmd (with @fd if >= 0) and wait for its reply, queuing events. */
static int exec(struct qmp *q, const char *cmd, json_t *args, int fd, json_t **ret_p, char *err,
		size_t errlen)
{
	struct qmp_wait w;
	json_int_t id;
	int r;

	if (ret_p)
		*ret_p = NULL;
	r = check_broken(q, err, errlen);
	if (r) {
		json_decref(args);
		return r;
	}
	wait_init(&w, q->timeout_ms);
	r = send_cmd(q, cmd, args, fd, &w, &id, err, errlen);
	return r ? r : wait_reply(q, cmd, id, &w, ret_p, err, errlen);
}

int qmp_exec_n(struct qmp *q, unsigned int n, const char *const *cmds, json_t **args,
	       json_t **rets, int *rcs, char *err, size_t errlen)
{
	json_int_t id0 = 0, id;
	struct qmp_wait w;
	unsigned int sent = 0;
	int r, first = 0;

	for (unsigned int i = 0; i < n; i++) {
		rets[i] = NULL;
		rcs[i] = 0;
	}
	r = check_broken(q, err, errlen);
	wait_init(&w, q->timeout_ms);
	for (; !r && sent < n; sent++) {
		r = send_cmd(q, cmds[sent], args[sent], -1, &w, &id, err, errlen);
		args[sent] = NULL; /* stolen */
		if (!sent)
			id0 = id;
	}
	for (unsigned int i = sent; i < n; i++) {
		json_decref(args[i]);
		args[i] = NULL;
	}
	if (r)
		return r;
	/* QMP answers in order: an error reply leaves the rest to read */
	for (unsigned int i = 0; i < n; i++) {
		char e[512] = "";

		rcs[i] = wait_reply(q, cmds[i], id0 + (json_int_t)i, &w, &rets[i], e, sizeof(e));
		if (rcs[i] && rcs[i] != -EREMOTEIO) {
			seterr(err, errlen, "%s", e);
			return rcs[i]; /* out of step */
		}
		if (rcs[i] && !first) {
			first = rcs[i];
			seterr(err, errlen, "%s", e);
		}
	}
	return first;
}

int qmp_exec(struct qmp *q, const char *cmd, json_t *args, json_t **ret_p, char *err,
	     size_t errlen)
{
	return exec(q, cmd, args, -1, ret_p, err, errlen);
}

int qmp_getfd(struct qmp *q, const char *name, int fd, char *err, size_t errlen)
{
	json_t *args;

	if (!name || !*name || strlen(name) >= QMP_CMD_MAX || fd < 0) {
		seterr(err, errlen, "QMP getfd: invalid name or file descriptor");
		return -EINVAL;
	}
	args = json_pack("{s:s}", "fdname", name);
	if (!args) {
		seterr(err, errlen, "QMP getfd: invalid name");
		return -EINVAL;
	}
	return exec(q, "getfd", args, fd, NULL, err, errlen);
}

int qmp_wait_event(struct qmp *q, const char *event, unsigned int timeout_ms, json_t **data_p,
		   char *err, size_t errlen)
{
	char what[QMP_CMD_MAX + 32], t[QMP_SHOW];
	struct qmp_wait w;
	json_t *m;
	int r;

	if (data_p)
		*data_p = NULL;
	if (!event || !*event) {
		seterr(err, errlen, "QMP: no event to wait for");
		return -EINVAL;
	}
	r = check_broken(q, err, errlen);
	if (r)
		return r;
	if (take_event(q, event, data_p))
		return 0;
	snprintf(what, sizeof(what), "QMP event %s", shows(event, t, sizeof(t)));
	wait_init(&w, timeout_ms);
	for (;;) {
		r = read_msg(q, &w, &m, what, err, errlen);
		if (r == -ETIMEDOUT) {
			seterr(err, errlen, "%s: not received within %u ms", what, timeout_ms);
			return r; /* nothing was due: the stream is still in step */
		}
		if (r)
			return fail(q, r, err);
		r = classify(m, what, err, errlen);
		if (r == QMP_REPLY) {
			seterr(err, errlen, "%s: a reply came with no command pending", what);
			r = -EBADMSG;
		}
		if (r < 0) {
			json_decref(m);
			return fail(q, r, err);
		}
		push_event(q, m);
		if (take_event(q, event, data_p))
			return 0;
	}
}

int qmp_peer_pid(struct qmp *q)
{
	return q ? q->peer_pid : -1;
}

int qmp_open_fd(int fd, unsigned int timeout_ms, struct qmp **q_p, char *err, size_t errlen)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct qmp_wait w;
	struct qmp *q;
	json_t *m;
	int r, fl;

	*q_p = NULL;
	q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		seterr(err, errlen, "QMP: out of memory");
		return -ENOMEM;
	}
	q->fd = fd;
	q->timeout_ms = timeout_ms;
	q->peer_pid = -1;
	if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) && cl == sizeof(cred) &&
	    cred.pid > 0)
		q->peer_pid = cred.pid;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		seterr(err, errlen, "QMP: cannot make the socket non-blocking");
		goto fail;
	}
	wait_init(&w, timeout_ms);
	r = read_msg(q, &w, &m, "QMP greeting", err, errlen);
	if (r)
		goto fail;
	if (!json_is_object(json_object_get(m, "QMP"))) {
		json_decref(m);
		seterr(err, errlen, "QMP greeting: not QMP (no \"QMP\" key)");
		r = -EPROTO;
		goto fail;
	}
	json_decref(m);
	r = qmp_exec(q, "qmp_capabilities", NULL, NULL, err, errlen);
	if (r)
		goto fail;
	*q_p = q;
	return 0;
fail:
	qmp_close(q);
	return r;
}

int qmp_open(const char *path, unsigned int timeout_ms, struct qmp **q_p, char *err,
	     size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char p[QMP_SHOW], e[64];
	struct qmp_wait w;
	int fd, r;

	*q_p = NULL;
	if (!path || !*path || strlen(path) >= sizeof(sa.sun_path)) {
		seterr(err, errlen, "QMP socket %s: path empty or too long",
		       path ? shows(path, p, sizeof(p)) : "");
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		seterr(err, errlen, "QMP socket %s: %s", shows(path, p, sizeof(p)),
		       errstr(-r, e, sizeof(e)));
		return r;
	}
	wait_init(&w, timeout_ms);
	for (;;) {
		struct qmp tmp = {.fd = fd};
		socklen_t sl = sizeof(r);

		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
			break;
		r = -errno;
		if (r == -EINTR)
			continue;
		if (r == -EAGAIN && now_ms() < w.deadline) {
			/* the listen queue is full: try again shortly */
			struct timespec ts = {.tv_sec = 0, .tv_nsec = 5 * 1000000};

			nanosleep(&ts, NULL);
			continue;
		}
		if (r == -EINPROGRESS) {
			r = wait_fd(&tmp, POLLOUT, &w);
			if (!r) {
				int so = 0;

				sl = sizeof(so);
				r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) ? -errno : -so;
			}
			if (!r)
				break;
		}
		if (r == -EAGAIN)
			r = -ETIMEDOUT;
		{
			struct stat st;

			/* a file that is there but is no socket refuses like a dead QEMU's */
			if (r == -ECONNREFUSED && !stat(path, &st) && !S_ISSOCK(st.st_mode))
				snprintf(e, sizeof(e), "not a unix socket (QEMU's -qmp "
						       "unix:PATH,server=on)");
			else
				errstr(-r, e, sizeof(e));
		}
		seterr(err, errlen, "QMP socket %s: %s", shows(path, p, sizeof(p)),
		       r == -ETIMEDOUT ? "connection timed out" : e);
		close(fd);
		return r;
	}
	return qmp_open_fd(fd, timeout_ms, q_p, err, errlen);
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	while (q->ev_n) {
		json_decref(q->ev[q->ev_head]);
		q->ev_head = (q->ev_head + 1) % QMP_EVENTS_MAX;
		q->ev_n--;
	}
	free(q->buf);
	free(q);
}
