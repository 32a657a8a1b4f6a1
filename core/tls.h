/* SPDX-License-Identifier: MIT */
/*
 * tls.h - optional TLS 1.3 on the TCP connections (control and TCP data
 * channels), with OpenSSL's libssl.
 *
 * Keys: no certificates. Both sides derive an external pre-shared key from
 * the session key (RMIG_F_TLS requires one):
 *
 *   psk = HMAC-SHA256(key, "rmig-tls-1 psk")
 *
 * and run a TLS 1.3 handshake in psk_dhe_ke mode (PSK plus ephemeral ECDHE:
 * a key that leaks later does not decrypt recorded traffic). A peer without
 * the key fails the handshake before any rmig byte is exchanged.
 *
 * I/O: every socket call is non-blocking (MSG_DONTWAIT, MSG_NOSIGNAL: no
 * SIGPIPE from the library); waits are poll() bounded by a timeout and cut
 * short by a wake fd. One mutex per connection serialises the SSL object, so
 * one thread may read while others write (the control connection); it is
 * never held while waiting.
 */
#ifndef RMIG_TLS_H
#define RMIG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct rmig_tls_conf;
struct rmig_tls;

/* The side that accepted the TCP connection is the TLS server. */
int rmig_tls_conf_new(bool server, const uint8_t *key, size_t key_len,
		      struct rmig_tls_conf **conf_p);
void rmig_tls_conf_free(struct rmig_tls_conf *conf);

/*
 * Run the handshake on the connected socket @fd: 0 and *tls_p, or an error
 * with the cause in @why: -ETIMEDOUT, -ECANCELED (wake_fd readable; -1 for
 * none), -ECONNRESET, -EPROTONOSUPPORT (the peer speaks rmig in plain text:
 * it runs without TLS), -EACCES (the handshake failed: most likely a
 * different key or no TLS on the peer).
 */
int rmig_tls_start(struct rmig_tls_conf *conf, int fd, int wake_fd, unsigned int timeout_ms,
		   struct rmig_tls **tls_p, char *why, size_t why_len);
void rmig_tls_free(struct rmig_tls *tls);

/*
 * Read at most @len bytes: the count (> 0), -EAGAIN when nothing is
 * decrypted yet (wait for the socket to be readable), -ECONNRESET at the
 * peer's close, -EPROTO for a record that fails authentication.
 */
long rmig_tls_read_some(struct rmig_tls *tls, void *buf, size_t len);
/* Decrypted bytes are buffered: the socket may not be readable, but a read will not wait. */
bool rmig_tls_pending(struct rmig_tls *tls);

/*
 * Read exactly @len bytes before the absolute CLOCK_MONOTONIC @deadline_ns
 * (0: none; see rmig_deadline_after()), however the peer paces them /
 * write every iovec, -ETIMEDOUT after no progress for @timeout_ms (0 waits
 * forever). Both: -ECANCELED (@wake_fd, -1 for none), -ECONNRESET, -EPROTO
 * or another -errno.
 */
int rmig_tls_read_full(struct rmig_tls *tls, void *buf, size_t len, int wake_fd,
		       uint64_t deadline_ns);
int rmig_tls_writev_full(struct rmig_tls *tls, const struct iovec *iov, int iovcnt, int wake_fd,
			 unsigned int timeout_ms);
/* One attempt, no waiting (a last error message at shutdown). */
void rmig_tls_write_try(struct rmig_tls *tls, const void *buf, size_t len);

#endif
