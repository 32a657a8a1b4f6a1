/* SPDX-License-Identifier: MIT */
/*
 * auth_mac.c - the arithmetic of the shared-key proof (auth.h): the HELLO's
 * hash and each role's HMAC over it and both nonces, compared in constant
 * time. No session: the destination's door (gate.c) and the source's
 * handshake (auth.c) both use it.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "auth.h"

void rmig_auth_hello_hash(const uint8_t *hello, size_t len, uint8_t out[RMIG_HELLO_HASH_LEN])
{
	SHA256(hello, len, out);
}

int rmig_auth_mac(const uint8_t *key, size_t key_len, enum rmig_auth_role role,
		  const uint8_t hello_hash[RMIG_HELLO_HASH_LEN],
		  const uint8_t nonce_d[RMIG_AUTH_NONCE_LEN],
		  const uint8_t nonce_s[RMIG_AUTH_NONCE_LEN], uint8_t out[RMIG_AUTH_MAC_LEN])
{
	static const char src[] = "rmig-auth-1 source", dst[] = "rmig-auth-1 destination";
	const char *label = role == RMIG_AUTH_SOURCE ? src : dst;
	size_t ll = strlen(label);
	uint8_t msg[sizeof(dst) + RMIG_HELLO_HASH_LEN + 2 * RMIG_AUTH_NONCE_LEN];
	unsigned int out_len = 0;

	memcpy(msg, label, ll);
	memcpy(msg + ll, hello_hash, RMIG_HELLO_HASH_LEN);
	memcpy(msg + ll + RMIG_HELLO_HASH_LEN, nonce_d, RMIG_AUTH_NONCE_LEN);
	memcpy(msg + ll + RMIG_HELLO_HASH_LEN + RMIG_AUTH_NONCE_LEN, nonce_s, RMIG_AUTH_NONCE_LEN);
	if (!HMAC(EVP_sha256(), key, (int)key_len, msg,
		  ll + RMIG_HELLO_HASH_LEN + 2 * RMIG_AUTH_NONCE_LEN, out, &out_len) ||
	    out_len != RMIG_AUTH_MAC_LEN)
		return -EIO;
	return 0;
}

bool rmig_auth_mac_equal(const uint8_t a[RMIG_AUTH_MAC_LEN], const uint8_t b[RMIG_AUTH_MAC_LEN])
{
	return CRYPTO_memcmp(a, b, RMIG_AUTH_MAC_LEN) == 0;
}
