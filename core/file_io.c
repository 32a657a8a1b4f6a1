/* SPDX-License-Identifier: MIT */
/*
 * file_io.c - what the file backend's save and restore share: its errors
 * (with what a full file system means for a save), whether it is shutting
 * down, and full-length positioned I/O, O_DIRECT with a bounce buffer where
 * the memory or the offset does not suit it (RMIG_F_DIRECT: see file.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "file_int.h"

int file_fail(struct file_tp *t, int err, const char *fmt, ...)
{
	const struct rmig_tp_upcalls *up = t->base.p.up;
	char msg[640];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return up->fail(up->arg, err, "file %s: %s", t->path, msg);
}

/* An I/O error, with what a full file system means for the save. */
int file_io_fail(struct file_tp *t, int err, const char *what, uint64_t off, uint64_t len)
{
	if (err == -ENOSPC || err == -EDQUOT)
		return file_fail(t, err, "%s (%llu bytes at offset %llu): %s: the file system is "
				     "full; the save is incomplete and marked so",
			     what, (unsigned long long)len, (unsigned long long)off,
			     strerror(-err));
	return file_fail(t, err, "%s (%llu bytes at offset %llu): %s", what, (unsigned long long)len,
			 (unsigned long long)off, strerror(-err));
}

bool file_is_shut(struct file_tp *t)
{
	return atomic_load_explicit(&t->shut_flag, memory_order_acquire);
}

/* All @len bytes of @iov at @off; 0 or a negative errno (-EIO: wrote nothing). */
int file_pwritev_full(int fd, const struct iovec *iov_in, int iovcnt, uint64_t off)
{
	struct iovec iov[16];

	if (iovcnt > 16)
		return -EINVAL;
	memcpy(iov, iov_in, (size_t)iovcnt * sizeof(*iov));
	for (struct iovec *v = iov; iovcnt;) {
		ssize_t n = pwritev(fd, v, iovcnt, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (iovcnt && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			iovcnt--;
		}
		if (iovcnt) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int file_pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { (void *)(uintptr_t)buf, (size_t)len };

	return len ? file_pwritev_full(fd, &v, 1, off) : 0;
}

/* All @len bytes at @off; -ENODATA when the file ends first. */
int file_pread_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static bool direct_ok(struct file_tp *t, uint64_t off, uint64_t len)
{
	return t->dfd >= 0 && off % t->off_align == 0 && len % t->off_align == 0;
}

/* Page data out: O_DIRECT when it can (bounced when memory is unaligned), else cached. */
int file_write_data(struct file_chan *c, const struct iovec *iov, int iovcnt, uint64_t off,
		      uint64_t len)
{
	struct file_tp *t = ftp(c->base.tp);
	bool mem_ok = true;
	uint64_t done = 0;

	if (!direct_ok(t, off, len))
		return file_pwritev_full(t->fd, iov, iovcnt, off);
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % t->mem_align || iov[i].iov_len % t->off_align)
			mem_ok = false;
	if (mem_ok)
		return file_pwritev_full(t->dfd, iov, iovcnt, off);
	/* gather into the bounce buffer, a bounce_len piece at a time */
	for (uint64_t i = 0, k = 0; done < len;) {
		uint64_t piece = len - done < c->bounce_len ? len - done : c->bounce_len, got = 0;
		int rc;

		while (got < piece) {
			uint64_t n = iov[i].iov_len - k;

			n = n < piece - got ? n : piece - got;
			memcpy(c->bounce + got, (const uint8_t *)iov[i].iov_base + k, n);
			got += n;
			k += n;
			if (k == iov[i].iov_len) {
				i++;
				k = 0;
			}
		}
		rc = file_pwrite_full(t->dfd, c->bounce, piece, off + done);
		if (rc)
			return rc;
		done += piece;
	}
	return 0;
}

/* Page data in, the same way. */
int file_read_data(struct file_chan *c, uint8_t *dst, uint64_t len, uint64_t off)
{
	struct file_tp *t = ftp(c->base.tp);

	if (!direct_ok(t, off, len))
		return file_pread_full(t->fd, dst, len, off);
	if ((uintptr_t)dst % t->mem_align == 0)
		return file_pread_full(t->dfd, dst, len, off);
	for (uint64_t done = 0; done < len;) {
		uint64_t piece = len - done < c->bounce_len ? len - done : c->bounce_len;
		int rc = file_pread_full(t->dfd, c->bounce, piece, off + done);

		if (rc)
			return rc;
		memcpy(dst + done, c->bounce, piece);
		done += piece;
	}
	return 0;
}
