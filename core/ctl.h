/* SPDX-License-Identifier: MIT */
/*
 * ctl.h - one control connection as a plain value: its socket, its TLS
 * state and the eventfd that cancels its waits. The session's control
 * connection is one; so is each connection that the destination's gate
 * (gate.c) holds before it knows whether the peer has the key. Nothing
 * here touches a session: errors come back as -errno plus a message.
 */
#ifndef RMIG_CTL_H
#define RMIG_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tls.h"
#include "wire.h"

struct rmig_ctl_conn {
	int fd;
	struct rmig_tls *tls; /* NULL: plain text */
	int wake_fd;          /* readable: stop waiting (-ECANCELED); -1: none */
};

/* Send one message; a stuck reader fails it after @timeout_ms without progress. */
int rmig_conn_send(const struct rmig_ctl_conn *c, uint16_t type, const uint8_t *payload,
		   uint32_t len, unsigned int timeout_ms);

/*
 * Receive one whole message before @deadline_ns (absolute, monotonic; 0:
 * none) into @buf (RMIG_CTL_MAX bytes). -EPROTONOSUPPORT: a TLS record on
 * a plain connection; -EBADMSG: a malformed header (its first four bytes
 * in *magic_p); else the I/O error.
 */
int rmig_conn_recv(const struct rmig_ctl_conn *c, struct rmig_ctl_hdr *h, uint8_t *buf,
		   uint64_t deadline_ns, uint32_t *magic_p);

/*
 * Receive the next message, which must be @type, before @deadline_ns. On
 * failure the whole cause is in @why, in the words the session uses (for
 * example "control connection: waiting for HELLO: peer closed the
 * connection"), and *from_peer_p says whether it is the peer's own ERROR.
 */
int rmig_conn_expect(const struct rmig_ctl_conn *c, uint16_t type, struct rmig_ctl_hdr *h,
		     uint8_t *buf, uint64_t deadline_ns, char *why, size_t why_len,
		     bool *from_peer_p);

/* Best effort, never blocking: an ERROR(@err, @msg) for the peer to read. */
void rmig_conn_send_error(const struct rmig_ctl_conn *c, int err, const char *msg);

/*
 * Half-close, read what the peer still sends for at most @budget_ms (so
 * that close() sends no RST that could destroy our last message), close.
 */
void rmig_conn_close(struct rmig_ctl_conn *c, unsigned int budget_ms);

#endif
