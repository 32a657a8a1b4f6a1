/* SPDX-License-Identifier: MIT */
/* qmp_int.h - the QMP client's internals, shared by qmp.c and qmp_query.c. */
#ifndef RMIG_QMP_INT_H
#define RMIG_QMP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "qmp.h"

#define QMP_SHOW       200               /* bytes of a string from QEMU shown in a message */

/* One wait: its deadline, and whether it has read from the socket yet. */
struct qmp_wait {
	int64_t deadline;
	unsigned int ms;
	int tried;
};

/* printf into @err, if there is one. */
__attribute__((format(printf, 3, 4))) void seterr(char *err, size_t errlen, const char *fmt, ...);
/* @n bytes of @s as text for an error message, control and non-ASCII bytes as \xNN. */
const char *show(const void *s, size_t n, char *out, size_t outlen);
/* show() of a string. */
const char *shows(const char *s, char *out, size_t outlen);
/* CLOCK_MONOTONIC, in ms. */
int64_t now_ms(void);
/* Start a wait of @ms from now. */
void wait_init(struct qmp_wait *w, unsigned int ms);
/* The ms left before the wait's deadline; 0 once it has passed. */
int left_ms(const struct qmp_wait *w);
/* An error that leaves the stream out of step: every later call fails with it. */
int fail(struct qmp *q, int r, const char *err);

#endif
