/* SPDX-License-Identifier: MIT */
/*
 * qmp.h - a small, bounded QMP client: talks to the QEMU monitor over its unix
 * socket to drive a live migration (commands, events, query-migrate) and to
 * find the guest's memory backends.
 *
 * Messages are newline-delimited JSON objects (QEMU ends each with "\r\n";
 * the "pretty" monitor mode is not supported). Every command carries an
 * "id" that its reply must echo. Every wait has a deadline, every message is
 * at most QMP_MSG_MAX bytes, and every string from QEMU that goes into an
 * error message has its control and non-ASCII bytes shown as \xNN.
 *
 * All functions return 0 or a negative errno and, on error, write a one-line
 * message to @err (which may be NULL). After an error that leaves the stream
 * out of step (a timeout or EOF while a reply is due, a malformed or
 * oversized message, a wrong id), every later call fails with the first error.
 * A QMP error reply (-EREMOTEIO) and a timeout in qmp_wait_event or
 * qmp_wait_status leave the connection usable. A connection is used by one
 * thread at a time.
 */
#ifndef RMIG_QMP_H
#define RMIG_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define QMP_MSG_MAX    (16u << 20) /* bytes in one message, line end excluded */
#define QMP_EVENTS_MAX 64          /* events queued; beyond, the oldest is dropped */

struct qmp;

/*
 * Connect to a QMP unix socket, read the greeting, negotiate
 * (qmp_capabilities). Every wait is bounded by timeout_ms (a whole reply must
 * arrive within it, however the peer paces its bytes). Errors: -errno; @err
 * gets a clear message (e.g. "QMP socket /x: connection refused",
 * "QMP greeting: not QMP (no \"QMP\" key)").
 */
int qmp_open(const char *path, unsigned int timeout_ms, struct qmp **q_p, char *err,
	     size_t errlen);
/*
 * As qmp_open, on a connected stream socket @fd (a socketpair end, say), which
 * becomes the client's: it is closed by qmp_close, or here on error.
 */
int qmp_open_fd(int fd, unsigned int timeout_ms, struct qmp **q_p, char *err, size_t errlen);
void qmp_close(struct qmp *q);

/*
 * Run one command; @args a JSON object or NULL (stolen: the call decrefs it).
 * Asynchronous events that arrive meanwhile are queued. On success *ret_p (if
 * not NULL) gets the "return" value (new reference). A QMP error reply ->
 * -EREMOTEIO with "CLASS: desc" in @err. Malformed replies (-EBADMSG), replies
 * over QMP_MSG_MAX (-EMSGSIZE), a wrong id (-EBADMSG), EOF (-ECONNRESET),
 * timeouts (-ETIMEDOUT) -> negative errno with a clear message. An error reply
 * without an id is taken as this command's: QEMU sends those when it could
 * not parse a command, id included.
 */
int qmp_exec(struct qmp *q, const char *cmd, json_t *args, json_t **ret_p, char *err,
	     size_t errlen);

/*
 * Run @n commands at once: all are sent, then their replies read in order
 * (QMP answers in order), so they cost one round trip. @args[i] as for
 * qmp_exec (each stolen, set to NULL); rets[i] gets command i's "return"
 * (new ref) or NULL, rcs[i] its result. Returns the first error (its message
 * in @err), after reading every reply when that error is a QMP error reply.
 */
int qmp_exec_n(struct qmp *q, unsigned int n, const char *const *cmds, json_t **args,
	       json_t **rets, int *rcs, char *err, size_t errlen);

/* Pass @fd to QEMU under @name (the getfd command with SCM_RIGHTS). */
int qmp_getfd(struct qmp *q, const char *name, int fd, char *err, size_t errlen);

/*
 * Wait for the next event named @event (queued ones first; other events that
 * arrive meanwhile are queued) up to timeout_ms; *data_p (if not NULL) gets
 * its "data" (new ref, may be NULL). -ETIMEDOUT.
 */
int qmp_wait_event(struct qmp *q, const char *event, unsigned int timeout_ms, json_t **data_p,
		   char *err, size_t errlen);

/*
 * query-migrate's "status" string into @status ("none", "setup", "active",
 * "pre-switchover", "device", "completed", "failed", "cancelled", ...). A QEMU
 * that has not migrated yet answers {}: that is "none".
 */
int qmp_migrate_status(struct qmp *q, char *status, size_t len, char *err, size_t errlen);

/*
 * Poll query-migrate every few ms until status is one of the |-separated @want
 * (e.g. "pre-switchover|completed"), or "failed"/"cancelled" (-> -EIO with
 * QEMU's error-desc if any), or timeout_ms passes (-ETIMEDOUT; each
 * query-migrate itself waits at most the connection's timeout). @status (if
 * not NULL) gets the last status seen.
 */
int qmp_wait_status(struct qmp *q, const char *want, unsigned int timeout_ms, char *status,
		    size_t len, char *err, size_t errlen);

/* PID of the QEMU at the other end (SO_PEERCRED), or -1. */
int qmp_peer_pid(struct qmp *q);

/*
 * The memory backends: every object under /objects whose type (qom-list's
 * "child<TYPE>") is a memory backend (qom-list-types implements
 * memory-backend). For memory-backend-file: id, type, mem-path, share and
 * size (qom-get); the others (memory-backend-ram, -memfd, ...) with mem_path
 * "", so the caller can refuse them clearly. More than @max -> -E2BIG; an id,
 * type or mem-path too long for its field -> -ENAMETOOLONG.
 */
struct qmp_backend {
	char id[128];
	char type[64];
	char mem_path[4096];
	bool share;
	uint64_t size;
};
int qmp_backends(struct qmp *q, struct qmp_backend *out, unsigned int max, unsigned int *n_p,
		 char *err, size_t errlen);

/*
 * Parse one QMP message (one line, its line end excluded) from a buffer: 0 and
 * *msg_p (a JSON object, new ref), or -EBADMSG with @err.
 */
int qmp_parse(const char *buf, size_t len, json_t **msg_p, char *err, size_t errlen);

#endif
