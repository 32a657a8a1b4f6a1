/* SPDX-License-Identifier: MIT */
/*
 * fuzz_qmp.c - the QMP client (tools/qmp.c) against a hostile monitor: the
 * input is everything QEMU sends, through a socketpair, then EOF. The client
 * reads it as it talks to QEMU, with these commands and ids, whatever comes:
 *
 *   greeting, qmp_capabilities (id 1), query-status (2), getfd (3),
 *   query-migrate (4), qom-list-types (5), qom-list /objects (6), then per
 *   memory backend qom-get size, share and, for memory-backend-file,
 *   mem-path (7, ...), query-migrate again (qmp_wait_status "completed", no
 *   wait), and last the event STOP (queued meanwhile, or next).
 *
 * Every error message must be one line of printable ASCII, every string
 * copied must end within its field. The input is also parsed whole as one
 * message (qmp_parse).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char err[256];

static void check_err(int r)
{
	size_t i;

	if (r >= 0)
		return;
	if (!err[0] || !memchr(err, '\0', sizeof(err)))
		abort();
	for (i = 0; err[i]; i++)
		if ((unsigned char)err[i] < 0x20 || (unsigned char)err[i] >= 0x7f)
			abort();
}

static void check_str(const char *s, size_t len)
{
	if (!memchr(s, '\0', len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct qmp_backend b[4];
	char st[32];
	unsigned int n, i;
	struct qmp *q;
	json_t *v;
	int fds[2], buf = 1 << 18, r;

	if (!qmp_parse((const char *)data, size, &v, err, sizeof(err))) {
		if (!json_is_object(v))
			abort();
		json_decref(v);
	} else {
		check_err(-EBADMSG);
	}

	if (size > 65536)
		size = 65536; /* fits the socket buffer: the writer never blocks */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
		abort();
	setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	if (size && write(fds[1], data, size) != (ssize_t)size)
		abort();
	shutdown(fds[1], SHUT_WR); /* EOF after the input: no wait ever runs to its end */

	memset(err, 0, sizeof(err));
	r = qmp_open_fd(fds[0], 1000, &q, err, sizeof(err));
	check_err(r);
	if (r) {
		close(fds[1]);
		return 0;
	}
	v = NULL;
	check_err(qmp_exec(q, "query-status", NULL, &v, err, sizeof(err)));
	json_decref(v);
	check_err(qmp_getfd(q, "fuzzfd", fds[1], err, sizeof(err)));
	r = qmp_migrate_status(q, st, sizeof(st), err, sizeof(err));
	check_err(r);
	if (!r)
		check_str(st, sizeof(st));
	n = 0;
	r = qmp_backends(q, b, 4, &n, err, sizeof(err));
	check_err(r);
	if (n > 4 || (r && n))
		abort();
	for (i = 0; i < n; i++) {
		check_str(b[i].id, sizeof(b[i].id));
		check_str(b[i].type, sizeof(b[i].type));
		check_str(b[i].mem_path, sizeof(b[i].mem_path));
		if (!b[i].id[0] ||
		    (strcmp(b[i].type, "memory-backend-file") == 0) != !!b[i].mem_path[0])
			abort();
	}
	check_err(qmp_wait_status(q, "completed", 0, st, sizeof(st), err, sizeof(err)));
	v = NULL;
	check_err(qmp_wait_event(q, "STOP", 0, &v, err, sizeof(err)));
	json_decref(v);
	qmp_close(q);
	close(fds[1]);
	return 0;
}
