/* SPDX-License-Identifier: MIT */
/*
 * testlib.h - test helpers: memory with PROT_NONE guard pages on both sides
 * (a write outside a block crashes the test), fill patterns, and a
 * source/destination session pair in one process.
 */
#ifndef RMIG_TESTLIB_H
#define RMIG_TESTLIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "rmig.h"
#include "transport.h"
#include "wire.h"

/* CLOCK_MONOTONIC, in seconds */
double test_now_s(void);

void *guarded_alloc(uint64_t len);
void guarded_free(void *p, uint64_t len);
void fill_random(uint8_t *p, uint64_t len, uint64_t seed);
/* Mostly zero: one random page in @every, the rest zero. */
void fill_sparse(uint8_t *p, uint64_t len, uint32_t page, unsigned int every, uint64_t seed);

/* A raw peer's control messages: 0, or -1 on any I/O or framing error. */
int test_send_ctl(int fd, uint16_t type, const void *payload, uint32_t len);
int test_recv_ctl(int fd, struct rmig_ctl_hdr *h, uint8_t *buf);

struct pair_cfg {
	unsigned int channels;
	uint64_t len;
	uint32_t page_size;
	uint32_t extent_max;   /* 0: default */
	unsigned int timeout_ms;
	unsigned int flags;    /* both sides (less the drops below) */
	unsigned int src_drop; /* flags the source does not get */
	unsigned int dst_drop; /* flags the destination does not get */
	const struct rmig_transport_ops *ops; /* NULL: the real transport (TCP) */
	enum rmig_transport_kind transport;   /* default TCP */
	const char *addr;                     /* default 127.0.0.1 */
	rmig_state_fn state_fn;
	void *state_arg;
	uint64_t max_bandwidth;          /* source; 0: unlimited */
	unsigned int downtime_limit_ms;  /* source; 0: default */
	unsigned int max_rounds;         /* source; 0: default */
	unsigned int dst_start_delay_ms; /* see rmig_sess_test_start_delay() */
	bool dst_uffd;                   /* rmig_postcopy_uffd() on the destination's block */
	bool dst_huge;                   /* destination RAM from MAP_HUGETLB (2 MiB pages) */
	const char *rails[4];            /* destination: rmig_listen_add() each (NULL ends) */
	unsigned int recovery_timeout_ms; /* destination: postcopy pauses this long */
	const void *src_key, *dst_key;   /* NULL: none */
	size_t src_key_len, dst_key_len;
	/*
	 * ctl_pair: the control connection is made by the test and handed to
	 * both sessions as "fd:N": a unix socketpair (no network at all), or
	 * with ctl_tcp a TCP connection to addr.
	 */
	bool ctl_pair, ctl_tcp;
	/* called on the source session right after it is made (a test hook of sess.h) */
	void (*src_hook)(rmig_session *s);
	void (*dst_hook)(rmig_session *s); /* the same on the destination */
};

struct pair {
	struct pair_cfg cfg;
	rmig_session *src, *dst;
	uint8_t *smem, *dmem;
	pthread_t th;
	bool th_started;
	int accept_rc;
	int dst_rc; /* rmig_complete on the destination */
	struct rmig_opts so, dopt; /* the options both sessions were made with */
	int port;
	int src_fd; /* ctl_pair: the source's end, for rmig_connect("fd:N") */
};

/* Create both sessions, accept on a thread, connect. Returns rmig_connect's result. */
int pair_open(struct pair *p, const struct pair_cfg *cfg);
/* Wait for the destination thread; returns its rmig_complete result. */
int pair_join(struct pair *p);
void pair_close(struct pair *p);
/*
 * After a break: the destination thread is joined, then new sessions
 * resume both (rmig_resume_from()), the destination accepts on a thread
 * on the same port, and the source connects (with @src_key, or the
 * configured key when NULL). Returns rmig_connect's result.
 */
int pair_resume(struct pair *p, const void *src_key, size_t src_key_len);

#endif
