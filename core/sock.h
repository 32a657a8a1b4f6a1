/* SPDX-License-Identifier: MIT */
/*
 * sock.h - TCP socket helpers shared by the control connection and the TCP
 * backend: URI parsing, connect/accept bounded by a timeout, full reads and
 * writes that turn EOF into -ECONNRESET and socket timeouts into -ETIMEDOUT.
 */
#ifndef RMIG_SOCK_H
#define RMIG_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "rmig.h"

#define RMIG_PORT_MAX 16

/*
 * Parse "tcp://HOST:PORT", "rdma://HOST:PORT" or "HOST:PORT"; HOST may be
 * "[v6addr]". Without a scheme *kind_p is left unchanged. -EINVAL if bad.
 */
int rmig_uri_parse(const char *uri, enum rmig_transport_kind *kind_p, char *host, char *port);
/*
 * "fd:N": 1 and *fd_p = N; 0 for any other URI; -EINVAL for "fd:" without
 * a decimal descriptor.
 */
int rmig_uri_fd(const char *uri, int *fd_p);
/* 0 if @fd is a connected stream socket; else -EBADF, -ENOTSOCK, -EPROTOTYPE or -ENOTCONN. */
int rmig_sock_check_conn(int fd);

int rmig_sock_connect(const char *host, const char *port, unsigned int timeout_ms, int *fd_p);
int rmig_sock_connect_addr(const struct sockaddr *sa, socklen_t salen, unsigned int timeout_ms,
			   int *fd_p);
int rmig_sock_listen(const char *host, const char *port, int *fd_p);
/*
 * Why this thread's last rmig_sock_connect() or rmig_sock_listen() failed
 * to resolve its host (getaddrinfo's words), or "" when it did not fail so.
 */
const char *rmig_sock_resolve_why(void);
/* -ETIMEDOUT after @timeout_ms; -ECANCELED if the listener was shut down. */
int rmig_sock_accept(int lfd, unsigned int timeout_ms, int *fd_p);
int rmig_sock_local_port(int fd);
/*
 * The name of the network interface that holds connected socket @fd's local
 * address ("lo" for loopback) into @name. Returns 0, or -ENOENT where no
 * interface holds it.
 */
int rmig_sock_ifname(int fd, char *name, size_t len);
/* @ss's port set to @port (host order); -EAFNOSUPPORT if not IPv4 or IPv6. */
int rmig_sockaddr_set_port(struct sockaddr_storage *ss, uint16_t port);
/* @ss as text into @out: the address, and with @port ":PORT"; "?" if not IP. */
void rmig_sockaddr_str(const struct sockaddr_storage *ss, bool port, char *out, size_t len);

/*
 * Wait until @fd is readable: 0; -ECANCELED as soon as @wake_fd (an eventfd
 * written at shutdown) is readable; -ETIMEDOUT after @timeout_ms (0: forever).
 */
int rmig_wait_readable(int fd, int wake_fd, unsigned int timeout_ms);
/* The same for poll @events (POLLIN or POLLOUT); @wake_fd -1: none. */
int rmig_sock_wait(int fd, short events, int wake_fd, unsigned int timeout_ms);

/* SO_RCVTIMEO / SO_SNDTIMEO; 0 means wait forever. */
int rmig_sock_set_timeouts(int fd, unsigned int rcv_ms, unsigned int snd_ms);
void rmig_sock_tune(int fd, int nodelay, int bufsize);

/* 0, -ECONNRESET on EOF, -ETIMEDOUT, or another -errno. */
int rmig_sock_read_full(int fd, void *buf, size_t len);

/* CLOCK_MONOTONIC in ns. */
uint64_t rmig_mono_ns(void);
/* CLOCK_MONOTONIC now + @timeout_ms, in ns; 0 (no deadline) when @timeout_ms is 0. */
uint64_t rmig_deadline_after(unsigned int timeout_ms);
/*
 * Wait for @events like rmig_sock_wait(), until the absolute @deadline_ns
 * (0: forever): a bound on a whole operation, not on each step of it.
 */
int rmig_sock_wait_until(int fd, short events, int wake_fd, uint64_t deadline_ns);
/*
 * Read exactly @len bytes before @deadline_ns (0: no deadline): a peer that
 * trickles bytes cannot stretch the read past it. @wake_fd -1: none.
 * 0, -ECONNRESET on EOF, -ETIMEDOUT, -ECANCELED, or another -errno.
 */
int rmig_sock_read_until(int fd, void *buf, size_t len, int wake_fd, uint64_t deadline_ns);
int rmig_sock_write_full(int fd, const void *buf, size_t len);
/* Writes every iovec completely; @iov is modified. */
int rmig_sock_writev_full(int fd, struct iovec *iov, int iovcnt);

/* rmig_strerror(): public, in rmig.h */

#endif
