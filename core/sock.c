/* SPDX-License-Identifier: MIT */
/* sock.c - blocking TCP helpers with bounded waits. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sock.h"

int rmig_uri_fd(const char *uri, int *fd_p)
{
	char *end;
	long v;

	if (!uri || strncmp(uri, "fd:", 3))
		return 0;
	if (uri[3] < '0' || uri[3] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(uri + 3, &end, 10);
	if (errno || *end || v < 0 || v > INT_MAX)
		return -EINVAL;
	*fd_p = (int)v;
	return 1;
}

int rmig_sock_check_conn(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type = 0;
	socklen_t tl = sizeof(type);

	if (fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
		return errno == ENOTSOCK ? -ENOTSOCK : -errno;
	if (type != SOCK_STREAM)
		return -EPROTOTYPE;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return -ENOTCONN;
	return 0;
}

int rmig_uri_parse(const char *uri, enum rmig_transport_kind *kind_p, char *host, char *port)
{
	const char *p = uri, *colon, *hend;
	size_t hlen, plen;
	char *end;
	long v;

	if (!uri)
		return -EINVAL;
	if (!strncmp(p, "tcp://", 6)) {
		*kind_p = RMIG_TRANSPORT_TCP;
		p += 6;
	} else if (!strncmp(p, "rdma://", 7)) {
		*kind_p = RMIG_TRANSPORT_RDMA;
		p += 7;
	} else if (strstr(p, "://")) {
		return -EINVAL;
	}
	if (*p == '[') {
		hend = strchr(p, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		p++;
		hlen = (size_t)(hend - p);
		colon = hend + 1;
	} else {
		colon = strrchr(p, ':');
		if (!colon || memchr(p, ':', (size_t)(colon - p)))
			return -EINVAL;
		hlen = (size_t)(colon - p);
	}
	plen = strlen(colon + 1);
	if (hlen == 0 || hlen >= RMIG_HOST_MAX || plen == 0 || plen >= RMIG_PORT_MAX)
		return -EINVAL;
	errno = 0;
	v = strtol(colon + 1, &end, 10);
	if (errno || *end || v < 0 || v > 65535)
		return -EINVAL;
	memcpy(host, p, hlen);
	host[hlen] = '\0';
	memcpy(port, colon + 1, plen + 1);
	return 0;
}

static int wait_fd(int fd, short events, unsigned int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };
	int rc;

	do {
		rc = poll(&pfd, 1, timeout_ms ? (int)timeout_ms : -1);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	return 0;
}

int rmig_wait_readable(int fd, int wake_fd, unsigned int timeout_ms)
{
	return rmig_sock_wait(fd, POLLIN, wake_fd, timeout_ms);
}

int rmig_sock_wait(int fd, short events, int wake_fd, unsigned int timeout_ms)
{
	struct pollfd pfd[2] = { { .fd = fd, .events = events }, { .fd = wake_fd, .events = POLLIN } };
	int rc;

	do {
		rc = poll(pfd, 2, timeout_ms ? (int)timeout_ms : -1);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	return pfd[1].revents ? -ECANCELED : 0;
}

int rmig_sock_connect_addr(const struct sockaddr *sa, socklen_t salen, unsigned int timeout_ms,
			   int *fd_p)
{
	int fd, rc, err = 0, flags;
	socklen_t elen = sizeof(err);

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, sa, salen);
	if (rc < 0 && errno != EINPROGRESS) {
		rc = -errno;
		goto out_close;
	}
	if (rc < 0) {
		rc = wait_fd(fd, POLLOUT, timeout_ms);
		if (rc)
			goto out_close;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
			rc = err ? -err : -errno;
			goto out_close;
		}
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		rc = -errno;
		goto out_close;
	}
	*fd_p = fd;
	return 0;
out_close:
	close(fd);
	return rc;
}

static __thread char resolve_why[320];

const char *rmig_sock_resolve_why(void)
{
	return resolve_why;
}

static int resolve(const char *host, const char *port, int passive, struct addrinfo **res_p)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = passive ? AI_PASSIVE : 0,
	};
	int rc = getaddrinfo(host, port, &hints, res_p);

	resolve_why[0] = '\0';
	if (rc == EAI_SYSTEM)
		return -errno;
	if (rc) {
		snprintf(resolve_why, sizeof(resolve_why), "cannot resolve '%s': %s", host,
			 gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	return 0;
}

int rmig_sock_connect(const char *host, const char *port, unsigned int timeout_ms, int *fd_p)
{
	struct addrinfo *res, *ai;
	int rc;

	rc = resolve(host, port, 0, &res);
	if (rc)
		return rc;
	rc = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		rc = rmig_sock_connect_addr(ai->ai_addr, ai->ai_addrlen, timeout_ms, fd_p);
		if (!rc)
			break;
	}
	freeaddrinfo(res);
	return rc;
}

int rmig_sock_listen(const char *host, const char *port, int *fd_p)
{
	struct addrinfo *res, *ai;
	int fd = -1, rc, one = 1;

	rc = resolve(host, port, 1, &res);
	if (rc)
		return rc;
	rc = -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return rc;
	*fd_p = fd;
	return 0;
}

int rmig_sock_accept(int lfd, unsigned int timeout_ms, int *fd_p)
{
	int fd, rc;

	for (;;) {
		rc = wait_fd(lfd, POLLIN, timeout_ms);
		if (rc)
			return rc;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
			continue;
		/* shutdown() of the listener from an error path lands here */
		return errno == EINVAL ? -ECANCELED : -errno;
	}
	*fd_p = fd;
	return 0;
}

int rmig_sock_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

int rmig_sock_set_timeouts(int fd, unsigned int rcv_ms, unsigned int snd_ms)
{
	struct timeval rtv = { .tv_sec = rcv_ms / 1000, .tv_usec = (rcv_ms % 1000) * 1000 };
	struct timeval stv = { .tv_sec = snd_ms / 1000, .tv_usec = (snd_ms % 1000) * 1000 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof(stv)) < 0)
		return -errno;
	return 0;
}

void rmig_sock_tune(int fd, int nodelay, int bufsize)
{
	if (nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	if (bufsize) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof(bufsize));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof(bufsize));
	}
}

static int io_errno(void)
{
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -ETIMEDOUT;
	if (errno == EPIPE)
		return -ECONNRESET;
	return -errno;
}

int rmig_sock_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_WAITALL);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return io_errno();
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

uint64_t rmig_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t rmig_deadline_after(unsigned int timeout_ms)
{
	return timeout_ms ? rmig_mono_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
}

int rmig_sock_wait_until(int fd, short events, int wake_fd, uint64_t deadline_ns)
{
	uint64_t now, left_ms;

	if (!deadline_ns)
		return rmig_sock_wait(fd, events, wake_fd, 0);
	now = rmig_mono_ns();
	if (now >= deadline_ns)
		return -ETIMEDOUT;
	/* round up: a wait of 0 ms would mean "forever" to rmig_sock_wait() */
	left_ms = (deadline_ns - now + 999999) / 1000000;
	return rmig_sock_wait(fd, events, wake_fd, left_ms > INT32_MAX ? INT32_MAX : (unsigned int)left_ms);
}

int rmig_sock_read_until(int fd, void *buf, size_t len, int wake_fd, uint64_t deadline_ns)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			int rc;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return io_errno();
			rc = rmig_sock_wait_until(fd, POLLIN, wake_fd, deadline_ns);
			if (rc)
				return rc;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int rmig_sock_write_full(int fd, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)buf, .iov_len = len };

	return rmig_sock_writev_full(fd, &iov, 1);
}

int rmig_sock_writev_full(int fd, struct iovec *iov, int iovcnt)
{
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };

	while (mh.msg_iovlen) {
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return io_errno();
		}
		while (n > 0 && mh.msg_iovlen) {
			if ((size_t)n >= mh.msg_iov->iov_len) {
				n -= (ssize_t)mh.msg_iov->iov_len;
				mh.msg_iov++;
				mh.msg_iovlen--;
			} else {
				mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + n;
				mh.msg_iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
		/* skip empty trailing entries */
		while (mh.msg_iovlen && mh.msg_iov->iov_len == 0) {
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
	}
	return 0;
}

const char *rmig_strerror(int neg_errno)
{
	switch (-neg_errno) {
	case ECONNRESET:
		return "connection closed by peer";
	case ETIMEDOUT:
		return "timed out";
	case ECANCELED:
		return "cancelled";
	case EBADMSG:
		return "malformed message";
	case EPROTO:
		return "protocol error";
	default: {
		/* strerror()'s text for an unknown value is a per-thread buffer, not static */
		const char *d = strerrordesc_np(-neg_errno);

		return d ? d : "unknown error";
	}
	}
}

int rmig_sock_ifname(int fd, char *name, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ifaddrs *ifs = NULL;
	int rc = -ENOENT;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) || getifaddrs(&ifs))
		return -errno;
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		const struct sockaddr *a = i->ifa_addr;
		bool same = false;

		if (!a || a->sa_family != ss.ss_family || !i->ifa_name)
			continue;
		if (a->sa_family == AF_INET)
			same = ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr ==
			       ((const struct sockaddr_in *)(const void *)&ss)->sin_addr.s_addr;
		else if (a->sa_family == AF_INET6)
			same = !memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
				       &((const struct sockaddr_in6 *)(const void *)&ss)->sin6_addr,
				       sizeof(struct in6_addr));
		if (same) {
			snprintf(name, len, "%s", i->ifa_name);
			rc = 0;
			break;
		}
	}
	freeifaddrs(ifs);
	return rc;
}

int rmig_sockaddr_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		return -EAFNOSUPPORT;
	return 0;
}

void rmig_sockaddr_str(const struct sockaddr_storage *ss, bool port, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned int pn = 0;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		pn = ntohs(a->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		pn = ntohs(a->sin6_port);
	}
	if (port)
		snprintf(out, len, "%s:%u", host, pn);
	else
		snprintf(out, len, "%s", host);
}
