/* SPDX-License-Identifier: MIT */
/* auth.c - the shared-key handshake (see auth.h). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "auth.h"
#include "sess.h"

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

static int send_auth(struct rmig_session *s, uint16_t type, const struct rmig_msg_auth *m)
{
	uint8_t buf[RMIG_AUTH_NONCE_LEN + RMIG_AUTH_MAC_LEN];
	int n = rmig_auth_encode(m, buf, sizeof(buf));

	return n < 0 ? n : rmig_ctl_send(s, type, buf, (uint32_t)n);
}

static int recv_auth(struct rmig_session *s, uint16_t type, uint8_t *buf, struct rmig_msg_auth *m)
{
	struct rmig_ctl_hdr h;
	int rc = rmig_ctl_expect(s, type, &h, buf);

	if (rc)
		return rc;
	if (rmig_auth_decode(buf, h.len, m))
		return rmig_sess_fail(s, -EBADMSG, "authentication: malformed %s (%u bytes)",
				      rmig_msg_name(type), h.len);
	return 0;
}

int rmig_auth_source(struct rmig_session *s, const uint8_t hello_hash[RMIG_HELLO_HASH_LEN],
		     uint8_t *buf)
{
	struct rmig_msg_auth ch, proof = { .nonce = { 0 } }, theirs;
	uint8_t want[RMIG_AUTH_MAC_LEN];
	int rc;

	/* A destination without a key refuses with an ERROR that says so. */
	rc = recv_auth(s, RMIG_MSG_AUTH_CHALLENGE, buf, &ch);
	if (rc)
		return rc;
	if (RAND_bytes(proof.nonce, sizeof(proof.nonce)) != 1)
		return rmig_sess_fail(s, -EIO, "authentication: no random numbers");
	rc = rmig_auth_mac(s->key, s->key_len, RMIG_AUTH_SOURCE, hello_hash, ch.nonce, proof.nonce,
			   proof.mac);
	if (!rc)
		rc = send_auth(s, RMIG_MSG_AUTH_PROOF, &proof);
	if (!rc)
		rc = recv_auth(s, RMIG_MSG_AUTH_PROOF, buf, &theirs);
	if (!rc)
		rc = rmig_auth_mac(s->key, s->key_len, RMIG_AUTH_DEST, hello_hash, ch.nonce,
				   proof.nonce, want);
	if (rc)
		return rmig_sess_err(s) ? rmig_sess_err(s) : rmig_sess_fail(s, rc, "authentication: %s",
									  strerror(-rc));
	if (!rmig_auth_mac_equal(want, theirs.mac))
		return rmig_sess_fail(s, -EACCES,
				      "authentication failed: the destination's key does not match");
	rmig_info(&s->log, "authenticated the destination");
	return 0;
}
