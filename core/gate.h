/* SPDX-License-Identifier: MIT */
/*
 * gate.h - the destination's door (see gate.c): accept the source and take
 * it through TLS, HELLO and the key proof.
 */
#ifndef RMIG_GATE_H
#define RMIG_GATE_H

#include <stdint.h>

#include "wire.h"

struct rmig_session;

/*
 * Destination: wait for a source that passes the handshake up to and
 * including the key proof. Without a key, the first connection is the
 * source, and its failure fails the session; with a key, connections that
 * fail are refused and logged, and the wait goes on until the timeout.
 * On 0 the session's control connection is set (ctl_fd, ctl_tls), @buf
 * (RMIG_CTL_MAX bytes) holds the HELLO and @hello its decoded form.
 * Otherwise the session has failed with the cause.
 */
int rmig_gate_accept(struct rmig_session *s, uint8_t *buf, struct rmig_msg_hello *hello);

#endif
