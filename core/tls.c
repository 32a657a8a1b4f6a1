/* SPDX-License-Identifier: MIT */
/* tls.c - TLS 1.3 with an external pre-shared key on the TCP connections (see tls.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include "sock.h"
#include "tls.h"
#include "wire.h"

#define PSK_LEN 32
static const unsigned char psk_identity[] = "rmig-tls-1";
/* TLS_AES_128_GCM_SHA256: the PSK's hash must be the suite's */
static const unsigned char suite_id[2] = { 0x13, 0x01 };

struct rmig_tls_conf {
	SSL_CTX *ctx;
	bool server;
	uint8_t psk[PSK_LEN];
};

struct rmig_tls {
	SSL *ssl;
	int fd;
	pthread_mutex_t lock;
	/* the first bytes the peer sent during the handshake, to name a plain-text peer */
	uint8_t first[4];
	unsigned int nfirst;
};

static int conf_idx = -1, tls_idx = -1;
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void idx_init(void)
{
	conf_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	tls_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- a socket BIO that never blocks and never raises SIGPIPE ---- */

static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *buf, int len)
{
	struct rmig_tls *t = BIO_get_data(b);
	ssize_t n = send(t->fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);

	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return n < 0 ? -1 : (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct rmig_tls *t = BIO_get_data(b);
	ssize_t n = recv(t->fd, buf, (size_t)len, MSG_DONTWAIT);

	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	if (n > 0 && t->nfirst < sizeof(t->first)) {
		size_t k = sizeof(t->first) - t->nfirst < (size_t)n ? sizeof(t->first) - t->nfirst :
								      (size_t)n;

		memcpy(t->first + t->nfirst, buf, k);
		t->nfirst += (unsigned int)k;
	}
	return n < 0 ? -1 : (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void bio_meth_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rmig socket");

	if (m && (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
		  !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create))) {
		BIO_meth_free(m);
		m = NULL;
	}
	bio_meth = m;
}

/* ---- the pre-shared key ---- */

static SSL_SESSION *psk_session(SSL *ssl, const struct rmig_tls_conf *c)
{
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, suite_id);
	SSL_SESSION *sess;

	if (!cipher)
		return NULL;
	sess = SSL_SESSION_new();
	if (sess && (!SSL_SESSION_set1_master_key(sess, c->psk, PSK_LEN) ||
		     !SSL_SESSION_set_cipher(sess, cipher) ||
		     !SSL_SESSION_set_protocol_version(sess, TLS1_3_VERSION))) {
		SSL_SESSION_free(sess);
		sess = NULL;
	}
	return sess;
}

static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *id_len,
		      SSL_SESSION **sess_p)
{
	const struct rmig_tls_conf *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), conf_idx);
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, suite_id);

	*sess_p = NULL;
	if (!cipher || (md && md != SSL_CIPHER_get_handshake_digest(cipher)))
		return 1; /* no usable PSK: the handshake fails, there is no other way in */
	*sess_p = psk_session(ssl, c);
	*id = psk_identity;
	*id_len = sizeof(psk_identity) - 1;
	return *sess_p ? 1 : 0;
}

static int psk_find_cb(SSL *ssl, const unsigned char *id, size_t id_len, SSL_SESSION **sess_p)
{
	const struct rmig_tls_conf *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), conf_idx);

	*sess_p = NULL;
	if (id_len != sizeof(psk_identity) - 1 || memcmp(id, psk_identity, id_len))
		return 1; /* unknown identity: no PSK, and without a certificate no handshake */
	*sess_p = psk_session(ssl, c);
	return *sess_p ? 1 : 0;
}

int rmig_tls_conf_new(bool server, const uint8_t *key, size_t key_len,
		      struct rmig_tls_conf **conf_p)
{
	static const char label[] = "rmig-tls-1 psk";
	struct rmig_tls_conf *c;
	unsigned int n = 0;

	if (!key || !key_len)
		return -EINVAL;
	pthread_once(&idx_once, idx_init);
	pthread_once(&bio_once, bio_meth_init);
	if (conf_idx < 0 || tls_idx < 0 || !bio_meth)
		return -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->server = server;
	if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)label, sizeof(label) - 1,
		  c->psk, &n) ||
	    n != PSK_LEN)
		goto fail;
	c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!c->ctx || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(c->ctx, "TLS_AES_128_GCM_SHA256") ||
	    !SSL_CTX_set_ex_data(c->ctx, conf_idx, c))
		goto fail;
	/* One handshake per connection, nothing to resume: no tickets, no cache. */
	SSL_CTX_set_num_tickets(c->ctx, 0);
	SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
	/* rmig ends a session with its own messages; a bare EOF reads as a close */
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	if (server)
		SSL_CTX_set_psk_find_session_callback(c->ctx, psk_find_cb);
	else
		SSL_CTX_set_psk_use_session_callback(c->ctx, psk_use_cb);
	*conf_p = c;
	return 0;
fail:
	rmig_tls_conf_free(c);
	return -ENOMEM;
}

void rmig_tls_conf_free(struct rmig_tls_conf *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->ctx);
	OPENSSL_cleanse(c->psk, sizeof(c->psk));
	free(c);
}

/* ---- I/O ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The outcome of an SSL call that returned @ret <= 0: -EAGAIN when it wants
 * the socket readable, -ENOBUFS when it wants it writable, or the error.
 */
static int ssl_result(struct rmig_tls *t, int ret, int saved_errno)
{
	switch (SSL_get_error(t->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		return -ENOBUFS;
	case SSL_ERROR_ZERO_RETURN:
		return -ECONNRESET;
	case SSL_ERROR_SYSCALL:
		return saved_errno && saved_errno != EPIPE ? -saved_errno : -ECONNRESET;
	default:
		return -EPROTO;
	}
}

long rmig_tls_read_some(struct rmig_tls *t, void *buf, size_t len)
{
	int n, rc, e;

	if (len > INT32_MAX)
		len = INT32_MAX;
	pthread_mutex_lock(&t->lock);
	ERR_clear_error();
	errno = 0;
	n = SSL_read(t->ssl, buf, (int)len);
	e = errno;
	rc = n > 0 ? n : ssl_result(t, n, e);
	ERR_clear_error();
	pthread_mutex_unlock(&t->lock);
	return rc;
}

bool rmig_tls_pending(struct rmig_tls *t)
{
	bool p;

	pthread_mutex_lock(&t->lock);
	p = SSL_pending(t->ssl) > 0;
	pthread_mutex_unlock(&t->lock);
	return p;
}

int rmig_tls_read_full(struct rmig_tls *t, void *buf, size_t len, int wake_fd,
		       uint64_t deadline_ns)
{
	uint8_t *p = buf;

	while (len) {
		long n = rmig_tls_read_some(t, p, len);
		int rc;

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n != -EAGAIN && n != -ENOBUFS)
			return (int)n;
		rc = rmig_sock_wait_until(t->fd, n == -EAGAIN ? POLLIN : POLLOUT, wake_fd,
					  deadline_ns);
		if (rc)
			return rc;
	}
	return 0;
}

static int write_full(struct rmig_tls *t, const uint8_t *p, size_t len, int wake_fd,
		      unsigned int timeout_ms)
{
	while (len) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : len;
		int n, rc, e;

		pthread_mutex_lock(&t->lock);
		ERR_clear_error();
		errno = 0;
		n = SSL_write(t->ssl, p, (int)chunk);
		e = errno;
		rc = n > 0 ? 0 : ssl_result(t, n, e);
		ERR_clear_error();
		pthread_mutex_unlock(&t->lock);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (rc != -EAGAIN && rc != -ENOBUFS)
			return rc;
		/* a retried SSL_write gets the same buffer, as OpenSSL requires */
		rc = rmig_sock_wait(t->fd, rc == -EAGAIN ? POLLIN : POLLOUT, wake_fd, timeout_ms);
		if (rc)
			return rc;
	}
	return 0;
}

int rmig_tls_writev_full(struct rmig_tls *t, const struct iovec *iov, int iovcnt, int wake_fd,
			 unsigned int timeout_ms)
{
	uint8_t small[256];
	size_t used = 0;
	int rc;

	/*
	 * Small pieces (frame and message headers) go into one record with
	 * what follows when they fit; a large payload is written in place.
	 */
	for (int i = 0; i < iovcnt; i++) {
		if (used + iov[i].iov_len <= sizeof(small)) {
			memcpy(small + used, iov[i].iov_base, iov[i].iov_len);
			used += iov[i].iov_len;
			continue;
		}
		if (used) {
			rc = write_full(t, small, used, wake_fd, timeout_ms);
			if (rc)
				return rc;
			used = 0;
		}
		rc = write_full(t, iov[i].iov_base, iov[i].iov_len, wake_fd, timeout_ms);
		if (rc)
			return rc;
	}
	return used ? write_full(t, small, used, wake_fd, timeout_ms) : 0;
}

void rmig_tls_write_try(struct rmig_tls *t, const void *buf, size_t len)
{
	pthread_mutex_lock(&t->lock);
	ERR_clear_error();
	(void)!SSL_write(t->ssl, buf, (int)len);
	ERR_clear_error();
	pthread_mutex_unlock(&t->lock);
}

/* ---- handshake ---- */

static bool is_plain_rmig(const uint8_t *b, size_t n)
{
	uint32_t m;

	if (n < 4)
		return false;
	m = rmig_get_be32(b);
	return m == RMIG_CTL_MAGIC || m == RMIG_DATA_MAGIC;
}

/* Why the handshake failed, from OpenSSL's error queue. */
static void handshake_why(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	if (!r)
		r = "unknown error";
	if (e && ERR_GET_REASON(e) == SSL_R_BINDER_DOES_NOT_VERIFY)
		snprintf(buf, len, "the peer holds a different key (PSK binder does not verify)");
	else if (e && ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET)
		snprintf(buf, len, "the peer refused it (%s): a different key?", r);
	else
		snprintf(buf, len, "%s (a different key, or no TLS on the peer?)", r);
}

int rmig_tls_start(struct rmig_tls_conf *c, int fd, int wake_fd, unsigned int timeout_ms,
		   struct rmig_tls **tls_p, char *why, size_t why_len)
{
	struct rmig_tls *t;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	BIO *bio;
	int rc;

	*tls_p = NULL;
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	t->fd = fd;
	pthread_mutex_init(&t->lock, NULL);
	t->ssl = SSL_new(c->ctx);
	bio = t->ssl ? BIO_new(bio_meth) : NULL;
	if (!bio) {
		snprintf(why, why_len, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	BIO_set_data(bio, t);
	SSL_set_bio(t->ssl, bio, bio);
	if (c->server)
		SSL_set_accept_state(t->ssl);
	else
		SSL_set_connect_state(t->ssl);

	for (;;) {
		uint64_t now;
		int ret, e;

		ERR_clear_error();
		errno = 0;
		ret = SSL_do_handshake(t->ssl);
		e = errno;
		if (ret == 1)
			break;
		rc = ssl_result(t, ret, e);
		if (is_plain_rmig(t->first, t->nfirst)) {
			snprintf(why, why_len, "the peer speaks rmig without TLS (run both sides with TLS)");
			rc = -EPROTONOSUPPORT;
			goto fail;
		}
		if (rc == -EAGAIN || rc == -ENOBUFS) {
			now = now_ns();
			rc = now >= deadline ? -ETIMEDOUT :
					       rmig_sock_wait(fd, rc == -EAGAIN ? POLLIN : POLLOUT, wake_fd,
							 (unsigned int)((deadline - now) / 1000000ull) + 1);
			if (!rc)
				continue;
			snprintf(why, why_len, "%s", rc == -ETIMEDOUT ? "no answer within the timeout" :
							  rmig_strerror(rc));
			goto fail;
		}
		if (rc == -EPROTO) {
			handshake_why(why, why_len);
			rc = -EACCES;
		} else {
			snprintf(why, why_len, "%s (a different key, or no TLS on the peer?)",
				 rc == -ECONNRESET ? "the peer closed the connection" :
						     rmig_strerror(rc));
		}
		ERR_clear_error();
		goto fail;
	}
	ERR_clear_error();
	*tls_p = t;
	return 0;
fail:
	rmig_tls_free(t);
	return rc;
}

void rmig_tls_free(struct rmig_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl); /* frees the BIO; the socket is the caller's */
	pthread_mutex_destroy(&t->lock);
	free(t);
}
