/* SPDX-License-Identifier: MIT */
/* bench_live.h - the built-in guest and its migration, shared by bench --live and --postcopy. */
#ifndef RMIG_BENCH_LIVE_H
#define RMIG_BENCH_LIVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "tool.h"

#define PAGE 4096u
#define BLOBS_MAX 64

/* The guest: its RAM, and the writers that dirty it (bench_live.c). */
struct guest {
	uint8_t *mem;
	uint64_t size, npages;
	uint64_t span;      /* pages the writers pick from: all, or the hot set */
	double pps;         /* page writes per second, per writer */
	unsigned int nwriters;
	_Atomic unsigned long *log; /* the dirty log: bit n = page n written */
	size_t nlongs;
	atomic_bool stop;
	_Atomic uint64_t writes;
	pthread_t th[64];
	unsigned int started;
};

struct writer_arg {
	struct guest *g;
	unsigned int idx;
};

/* The device-state blobs, and what the destination made of them. */
struct blobs {
	unsigned int n;
	uint64_t len[BLOBS_MAX];
	uint8_t *data[BLOBS_MAX];
	pthread_mutex_t lock;
	unsigned int good, bad;
};

/* The destination in this process, on a thread of its own. */
struct dest {
	struct tool_dest t;
	pthread_t th;
	bool started;
};

/* One round of the report. */
struct round_rec {
	struct rmig_round_stats st;
	double expected_ms; /* the estimate that chose this round; < 0 for the first */
};

/* One bench --live or --postcopy run. */
struct live {
	const struct cli *c;
	struct guest g;
	struct blobs b;
	uint64_t state_total;
	rmig_session *s;
	struct dest d;
	uint8_t *dst;
	struct round_rec *rec;
	unsigned int nrec, cap;
	struct round_rec final;
	struct rmig_estimate last;
	double total_s;
	const char *transport;
	struct pc_report *pc; /* --postcopy */
	const char *file;     /* --to file:PATH: the save file */
	uint64_t file_min, file_max; /* its size after each live round */
	uint64_t file_end;           /* and at completion */
};

/*
 * The workload: the destination's guest reads the pages missing at the
 * switchover, in a random order, and times each read that faults (the
 * request, the page on the wire, UFFDIO_COPY). Phase 0 runs with nothing
 * else on the link; phase 1 while the background pages stream.
 */
struct pc_report {
	struct live *L;
	uint64_t *pages; /* missing at the switchover, shuffled */
	uint64_t npages, next;
	unsigned int max;
	uint64_t *lat[2];
	unsigned int n[2];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool idle_done;
	atomic_bool bg_done;
	int rc;
	double bg_s;
	uint64_t faults, requests;
};

/* CLOCK_MONOTONIC, in ns. */
uint64_t now_ns(void);
/* The next number of a xorshift sequence; @x its state. */
uint64_t xorshift(uint64_t *x);
/* Stop the writers and wait for them. */
void guest_stop(struct guest *g);
/* Start the writers, @wa one argument for each; -EAGAIN, all stopped, when one cannot start. */
int guest_start(struct guest *g, struct writer_arg *wa);
/* OR into @map what was dirtied since the last collection. */
void collect(struct guest *g, unsigned long *map);
/* Record a round of the report, and print it unless --json or --quiet. */
int add_rec(struct live *L, const struct rmig_round_stats *st, double expected_ms);
/* bench_postcopy.c: --postcopy-after live rounds, the switchover, then postcopy. */
int migrate_pc(struct live *L, unsigned long *map, struct writer_arg *wa);
/* bench_postcopy.c: the --postcopy report, fault latencies idle and under background load. */
void pc_report(struct live *L);

#endif
