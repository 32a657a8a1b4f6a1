/* SPDX-License-Identifier: MIT */
/* log.c - format a message and hand it to the session's log callback. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "log.h"

static const char *const level_names[] = {
	[RMIG_LOG_ERROR] = "error",
	[RMIG_LOG_WARN] = "warning",
	[RMIG_LOG_INFO] = "info",
	[RMIG_LOG_DEBUG] = "debug",
};

size_t rmig_escape(char *dst, size_t cap, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (!cap)
		return 0;
	if (!src)
		src = "(null)";
	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		bool plain = *p >= 0x20 && *p < 0x7f;

		/* an escape is copied whole or not at all: no "\x1" at the end */
		if (o + (plain ? 1 : 4) >= cap)
			break;
		if (plain) {
			dst[o++] = (char)*p;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[*p >> 4];
			dst[o++] = hex[*p & 15];
		}
	}
	dst[o] = '\0';
	return o;
}

void rmig_log_stderr(void *arg, enum rmig_log_level level, const char *msg)
{
	(void)arg;
	fprintf(stderr, "rmig: %s: %s\n", level_names[level], msg);
}

void rmig_logf(const struct rmig_logger *lg, enum rmig_log_level lvl, const char *fmt, ...)
{
	int saved = errno; /* logging must not clobber the caller's errno */
	char buf[512], out[4 * sizeof(buf)];
	va_list ap;

	if (!lg || lvl > lg->level || !lg->fn)
		goto out;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/*
	 * Messages quote what peers sent (block and device names, ERROR
	 * texts): escape here, once for every message, so that none can
	 * carry a terminal control sequence to the host's log, whatever
	 * its source.
	 */
	rmig_escape(out, sizeof(out), buf);
	lg->fn(lg->arg, lvl, out);
out:
	errno = saved;
}
