/* SPDX-License-Identifier: MIT */
/*
 * qmp_srv.h - a fake QEMU monitor for the QMP client's tests: a thread on
 * one end of a socketpair that plays a script (greeting, replies, errors,
 * events, garbage, a trickle, EOF), and the client's end opened against it.
 */
#ifndef RMIG_TEST_QMP_SRV_H
#define RMIG_TEST_QMP_SRV_H

#include <pthread.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "qmp.h"

#define GREETING                                                                                  \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "          \
	"\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"

struct srv;
typedef void (*srv_fn)(struct srv *s);

struct srv {
	int fd;
	srv_fn fn;
	const void *arg;
	pthread_t th;
	char bad[256]; /* what went wrong in the thread, checked after the join */
	int got_fd;    /* a file descriptor received with a command, or -1 */
};

__attribute__((format(printf, 2, 3))) void srv_fail(struct srv *s, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) int srv_printf(struct srv *s, const char *fmt, ...);
int srv_sendn(struct srv *s, const char *p, size_t n);
int srv_send(struct srv *s, const char *str);
json_t *srv_cmd(struct srv *s);
json_int_t srv_expect(struct srv *s, const char *name, json_t **args_p);
void srv_greet(struct srv *s);
void srv_drain(struct srv *s);
void srv_start(struct srv *s, srv_fn fn, const void *arg, int *cfd);
struct qmp *srv_open(struct srv *s, srv_fn fn, const void *arg, unsigned int timeout_ms);
void srv_end(struct srv *s, struct qmp *q);

static inline int64_t srv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void srv_sleep_ms(unsigned int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Slack on a deadline: generous under valgrind. */
static inline int64_t srv_slack_ms(void)
{
	return getenv("RMIG_VALGRIND") ? 3000 : 250;
}

#endif
