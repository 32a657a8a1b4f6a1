/* SPDX-License-Identifier: MIT */
/*
 * auth.h - the shared-key handshake. With a key, the source and destination
 * each prove they hold it before the destination opens data channels or
 * sends a registration descriptor:
 *
 *   source                                destination
 *   HELLO (caps AUTH)              ->
 *                                  <-     AUTH_CHALLENGE (nonce_d)
 *   AUTH_PROOF (nonce_s, mac_s)    ->     checks mac_s
 *                                  <-     AUTH_PROOF (mac_d)
 *   checks mac_d                          ... HELLO_ACK, REG ...
 *
 *   mac_x = HMAC-SHA256(key, "rmig-auth-1 " ROLE || SHA-256(HELLO payload)
 *                             || nonce_d || nonce_s)
 *
 * Fresh random nonces from both ends make a proof useless in any other
 * session; the role label keeps one side's proof from serving as the
 * other's; the HELLO digest binds the layout and session id to the key.
 * Primitives come from OpenSSL's libcrypto.
 */
#ifndef RMIG_AUTH_H
#define RMIG_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define RMIG_HELLO_HASH_LEN 32

enum rmig_auth_role { RMIG_AUTH_SOURCE, RMIG_AUTH_DEST };

struct rmig_session;

void rmig_auth_hello_hash(const uint8_t *hello, size_t len, uint8_t out[RMIG_HELLO_HASH_LEN]);
int rmig_auth_mac(const uint8_t *key, size_t key_len, enum rmig_auth_role role,
		  const uint8_t hello_hash[RMIG_HELLO_HASH_LEN],
		  const uint8_t nonce_d[RMIG_AUTH_NONCE_LEN],
		  const uint8_t nonce_s[RMIG_AUTH_NONCE_LEN], uint8_t out[RMIG_AUTH_MAC_LEN]);
/* Constant time. */
bool rmig_auth_mac_equal(const uint8_t a[RMIG_AUTH_MAC_LEN], const uint8_t b[RMIG_AUTH_MAC_LEN]);

/* The handshake steps, on the control connection; @buf holds RMIG_CTL_MAX bytes. */
int rmig_auth_source(struct rmig_session *s, const uint8_t hello_hash[RMIG_HELLO_HASH_LEN],
		     uint8_t *buf);
/* The destination's side runs in gate.c, before the connection is the session's. */

#endif
