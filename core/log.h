/* SPDX-License-Identifier: MIT */
/*
 * log.h - per-session logging through the host's callback. Errors are logged
 * once, where first detected. Data-path debug logging compiles out unless
 * RMIG_DEBUG_DATAPATH is defined.
 */
#ifndef RMIG_LOG_H
#define RMIG_LOG_H

#include <stddef.h>

#include "rmig.h"

struct rmig_logger {
	rmig_log_fn fn;
	void *arg;
	enum rmig_log_level level;
};

void rmig_logf(const struct rmig_logger *lg, enum rmig_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void rmig_log_stderr(void *arg, enum rmig_log_level level, const char *msg);
/* rmig_escape(): public, in rmig.h */

#define rmig_err(lg, ...) rmig_logf((lg), RMIG_LOG_ERROR, __VA_ARGS__)
#define rmig_warn(lg, ...) rmig_logf((lg), RMIG_LOG_WARN, __VA_ARGS__)
#define rmig_info(lg, ...) rmig_logf((lg), RMIG_LOG_INFO, __VA_ARGS__)
#define rmig_dbg(lg, ...) rmig_logf((lg), RMIG_LOG_DEBUG, __VA_ARGS__)

#ifdef RMIG_DEBUG_DATAPATH
#define rmig_dp_dbg(lg, ...) rmig_dbg(lg, __VA_ARGS__)
#else
#define rmig_dp_dbg(lg, ...) do { } while (0)
#endif

#endif
