/* SPDX-License-Identifier: MIT */
/*
 * pc_latency.c - postcopy fault latency over TCP on this machine, under the
 * userfaultfd handler. Usage: pc_latency [RAM_MiB [CHANNELS]]
 *
 * Pure postcopy of a RAM of random pages: the destination's guest thread
 * touches random pages it does not have and times each touch (the fault,
 * the request, the page on the wire, UFFDIO_COPY). Three runs:
 *   idle        no background pages while the guest touches
 *   background  every other page streams on the shared channels meanwhile
 *   no-urgent   the same, with RMIG_F_NO_URGENT: requested pages queue
 *               behind the background ones
 * Every run is compared byte for byte at the end. Prints p50, p99, max.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sess.h"
#include "testlib.h"

#define PS 4096u
#define MAX_TOUCH 4000

struct run {
	struct pair *p;
	uint64_t npages;
	atomic_bool bg_done;
	bool background;
	uint64_t lat[MAX_TOUCH];
	unsigned int n;
	int rc;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void *guest_main(void *arg)
{
	struct run *r = arg;
	uint64_t seed = 99;
	volatile uint8_t sink = 0;

	r->rc = rmig_postcopy_wait(r->p->dst);
	while (!r->rc && r->n < MAX_TOUCH) {
		uint64_t pg, t0;
		int has;

		if (r->background && atomic_load(&r->bg_done))
			break; /* only touches made under background load count */
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		pg = (seed >> 33) % r->npages;
		has = rmig_postcopy_has(r->p->dst, "ram", pg * PS);
		if (has)
			continue;
		t0 = rmig_now_ns();
		sink += r->p->dmem[pg * PS];
		r->lat[r->n++] = rmig_now_ns() - t0;
	}
	(void)sink;
	return NULL;
}

static int one_run(const char *name, uint64_t len, unsigned int channels, bool background,
		   unsigned int flags)
{
	struct pair_cfg c = { .channels = channels, .len = len, .page_size = PS, .timeout_ms = 20000 };
	struct run *r = calloc(1, sizeof(*r));
	unsigned long *bm = malloc(len / PS / 8 + 8);
	const unsigned long *bms[1] = { bm };
	struct pair p;
	pthread_t th;
	int rc;

	if (!r || !bm)
		return -ENOMEM;
	c.flags = RMIG_F_POSTCOPY | flags;
	c.dst_uffd = true;
	rc = pair_open(&p, &c);
	if (rc) {
		fprintf(stderr, "pc_latency: %s: %s\n", name,
			p.dst ? rmig_last_error(p.dst) : strerror(-rc));
		goto out;
	}
	fill_random(p.smem, len, 1);
	memset(bm, 0xff, len / PS / 8 + 8);
	r->p = &p;
	r->npages = len / PS;
	r->background = background;
	rc = -pthread_create(&th, NULL, guest_main, r);
	if (!rc)
		rc = rmig_postcopy_start(p.src, bms, 1);
	if (!rc && background) {
		rc = rmig_postcopy_send_rest(p.src);
		if (!rc)
			rc = rmig_sync(p.src);
		atomic_store(&r->bg_done, true);
	}
	pthread_join(th, NULL);
	if (!rc)
		rc = r->rc;
	if (!rc && !background)
		rc = rmig_postcopy_send_rest(p.src);
	if (!rc)
		rc = rmig_complete(p.src);
	if (!rc)
		rc = pair_join(&p);
	if (!rc && memcmp(p.smem, p.dmem, len)) {
		fprintf(stderr, "pc_latency: %s: destination RAM differs\n", name);
		rc = -EIO;
	}
	if (rc) {
		fprintf(stderr, "pc_latency: %s failed: %s / %s\n", name, rmig_last_error(p.src),
			rmig_last_error(p.dst));
	} else if (r->n) {
		qsort(r->lat, r->n, sizeof(r->lat[0]), cmp_u64);
		printf("%-11s %6u faults   p50 %8.1f us   p99 %8.1f us   max %8.1f us   verified\n",
		       name, r->n, r->lat[r->n / 2] / 1e3, r->lat[(uint64_t)r->n * 99 / 100] / 1e3,
		       r->lat[r->n - 1] / 1e3);
	} else {
		printf("%-11s no fault measured (background finished first)\n", name);
	}
	pair_close(&p);
out:
	free(r);
	free(bm);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 0) : 1024;
	unsigned int ch = argc > 2 ? (unsigned int)strtoul(argv[2], NULL, 0) : 4;
	uint64_t len = mib << 20;
	int rc;

	printf("postcopy fault latency over tcp on 127.0.0.1: %llu MiB of random pages, %u "
	       "channels, userfaultfd\n",
	       (unsigned long long)mib, ch);
	rc = one_run("idle", len, ch, false, 0);
	if (!rc)
		rc = one_run("background", len, ch, true, 0);
	if (!rc)
		rc = one_run("no-urgent", len, ch, true, RMIG_F_NO_URGENT);
	return rc ? 1 : 0;
}
