/* SPDX-License-Identifier: MIT */
/* log.c - format a message and hand it to the session's log callback. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static const char *const level_names[] = {
	[RMIG_LOG_ERROR] = "error",
	[RMIG_LOG_WARN] = "warning",
	[RMIG_LOG_INFO] = "info",
	[RMIG_LOG_DEBUG] = "debug",
};

void rmig_log_stderr(void *arg, enum rmig_log_level level, const char *msg)
{
	(void)arg;
	fprintf(stderr, "rmig: %s: %s\n", level_names[level], msg);
}

void rmig_logf(const struct rmig_logger *lg, enum rmig_log_level lvl, const char *fmt, ...)
{
	int saved = errno; /* logging must not clobber the caller's errno */
	char buf[512];
	va_list ap;

	if (!lg || lvl > lg->level || !lg->fn)
		goto out;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	lg->fn(lg->arg, lvl, buf);
out:
	errno = saved;
}
