/* SPDX-License-Identifier: MIT */
/* auth.c - the shared-key handshake's source side (see auth.h; the arithmetic: auth_mac.c). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "auth.h"
#include "sess.h"

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

/* The key, and TLS, which derives its keys from it. */
static int opts_check(const struct rmig_opts *o, const struct rmig_logger *lg)
{
	if (o->key_len && (!o->key || o->key_len < RMIG_KEY_MIN || o->key_len > RMIG_KEY_MAX)) {
		rmig_err(lg, "option key: %zu bytes; a key has %d..%d bytes", o->key_len,
			 RMIG_KEY_MIN, RMIG_KEY_MAX);
		return -EINVAL;
	}
	if ((o->flags & RMIG_F_TLS) && !o->key_len) {
		rmig_err(lg, "option flags: TLS needs a key (the TLS keys derive from it)");
		return -EINVAL;
	}
	if ((o->flags & RMIG_F_TLS) && o->role == RMIG_ROLE_SOURCE &&
	    o->transport == RMIG_TRANSPORT_RDMA) {
		rmig_err(lg, "option transport: rdma with TLS: RDMA writes are not encrypted; "
			     "use tcp (or auto, which picks tcp with TLS)");
		return -EINVAL;
	}
	return 0;
}

/* The source proves it holds the key right after its HELLO (a session with one). */
static int src_handshake(struct rmig_session *s, const uint8_t *hello_hash, uint8_t *buf)
{
	return s->key_len ? rmig_auth_source(s, hello_hash, buf) : 0;
}

/* A source with a key says so: a destination without one then refuses it. */
static uint32_t hello_caps(const struct rmig_session *s)
{
	return s->key_len ? RMIG_CAP_AUTH : 0;
}

const struct rmig_feature rmig_auth_feature = {
	.name = "key",
	.hello_caps = hello_caps,
	.opts_check = opts_check,
	.src_handshake = src_handshake,
};
