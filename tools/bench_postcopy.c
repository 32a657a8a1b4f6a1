/* SPDX-License-Identifier: MIT */
/* bench_postcopy.c - `rdma-migrate bench --postcopy`: fault latency at the destination. */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_live.h"
#include "tool.h"

/* ---- postcopy ---- */

static void pc_touch(struct pc_report *r, unsigned int ph, uint64_t pg)
{
	rmig_session *d = r->L->d.t.s;
	volatile uint8_t *p = r->L->dst + pg * PAGE;
	uint64_t t0;

	if (rmig_postcopy_has(d, "ram", pg * PAGE) == 1)
		return; /* here already: no fault to time */
	t0 = now_ns();
	(void)*p;
	r->lat[ph][r->n[ph]++] = now_ns() - t0;
}

static void *pc_workload(void *arg)
{
	struct pc_report *r = arg;
	unsigned int idle_max = r->max < r->npages / 2 ? r->max : (unsigned int)(r->npages / 2);

	r->rc = rmig_postcopy_wait(r->L->d.t.s);
	while (!r->rc && r->n[0] < idle_max && r->next < r->npages)
		pc_touch(r, 0, r->pages[r->next++]);
	pthread_mutex_lock(&r->lock);
	r->idle_done = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	while (!r->rc && r->n[1] < r->max && r->next < r->npages &&
	       !atomic_load(&r->bg_done))
		pc_touch(r, 1, r->pages[r->next++]);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Switch over into postcopy: @map holds the pages the destination lacks. */
static int migrate_postcopy(struct live *L, unsigned long *map)
{
	const unsigned long *maps[1] = { map };
	struct pc_report *r = L->pc;
	uint64_t x = 0x853c49e6748fea9bull, t0;
	pthread_t th;
	int rc;

	for (uint64_t p = 0; p < L->g.npages; p++)
		if (map[p / RMIG_BITS_PER_LONG] & (1UL << (p % RMIG_BITS_PER_LONG)))
			r->pages[r->npages++] = p;
	for (uint64_t i = r->npages; i > 1; i--) { /* Fisher-Yates */
		uint64_t j = xorshift(&x) % i, t = r->pages[i - 1];

		r->pages[i - 1] = r->pages[j];
		r->pages[j] = t;
	}
	rc = -pthread_create(&th, NULL, pc_workload, r);
	if (rc)
		return rc;
	rc = rmig_postcopy_start(L->s, maps, 1);
	/* phase 0 first: no background page on the link */
	pthread_mutex_lock(&r->lock);
	while (!rc && !r->idle_done)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	/* the fault matrix's case: the source dies while the destination runs the guest */
	if (!rc && tool_fault_armed("postcopy-running", "source-dies"))
		rmig_cancel(L->s, "the source died (RMIG_FAULT)");
	t0 = now_ns();
	if (!rc)
		rc = rmig_postcopy_send_rest(L->s);
	if (!rc)
		rc = rmig_sync(L->s);
	r->bg_s = (double)(now_ns() - t0) / 1e9;
	atomic_store(&r->bg_done, true);
	if (rc) /* the workload may wait on a fault: free it */
		rmig_cancel(L->d.t.s, "the source failed");
	pthread_join(th, NULL);
	return rc ? rc : r->rc;
}

/* --postcopy: --postcopy-after live rounds, the switchover, then postcopy. */
int migrate_pc(struct live *L, unsigned long *map, struct writer_arg *wa)
{
	const struct cli *c = L->c;
	struct guest *g = &L->g;
	const unsigned long *maps[1] = { map };
	struct rmig_round_stats st;
	int rc = 0;

	if (c->postcopy_after) {
		rc = guest_start(g, wa);
		if (!rc && !c->json && !c->quiet)
			printf("%6s %12s %10s %8s %9s %11s %11s %11s\n", "round", "dirty pages",
			       "sent MiB", "zero", "time ms", "bw MiB/s", "dirty MiB/s", "expect ms");
	}
	memset(map, 0xff, g->nlongs * sizeof(*map)); /* round 1, or postcopy at once: all */
	for (unsigned int r = 0; r < c->postcopy_after && !rc; r++) {
		if (r) {
			memset(map, 0, g->nlongs * sizeof(*map));
			collect(g, map);
		}
		rc = rmig_send_round(L->s, maps, 1, &st);
		if (!rc)
			rc = add_rec(L, &st, -1);
	}
	/*
	 * The guest runs on until it has dirtied a page since the last round
	 * (at most 200 ms): rounds that fast leave nothing missing otherwise,
	 * and a postcopy with no missing page measures nothing.
	 */
	if (!rc && c->postcopy_after && g->pps > 0) {
		uint64_t w0 = atomic_load(&g->writes);

		for (int i = 0; i < 200 && atomic_load(&g->writes) == w0; i++) {
			struct timespec ts = { 0, 1000000 };

			nanosleep(&ts, NULL);
		}
	}
	if (!rc)
		rc = rmig_switchover(L->s);
	guest_stop(g);
	if (c->postcopy_after) { /* missing: what the guest dirtied since the last round */
		memset(map, 0, g->nlongs * sizeof(*map));
		collect(g, map);
	}
	for (unsigned int i = 0; i < L->b.n && !rc; i++)
		rc = rmig_send_state(L->s, "dev", i, L->b.data[i], L->b.len[i]);
	if (!rc)
		rc = migrate_postcopy(L, map);
	if (!rc)
		rc = rmig_complete(L->s);
	return rc;
}

void pc_report(struct live *L)
{
	static const char *const name[2] = { "idle", "background" };
	struct pc_report *r = L->pc;
	struct rmig_stats ss;
	double p[2][3] = { { 0 } };

	rmig_get_stats(L->s, &ss);
	for (unsigned int ph = 0; ph < 2; ph++) {
		unsigned int n = r->n[ph];

		if (!n)
			continue;
		qsort(r->lat[ph], n, sizeof(uint64_t), cmp_u64);
		p[ph][0] = (double)r->lat[ph][n / 2] / 1e3;
		p[ph][1] = (double)r->lat[ph][(uint64_t)n * 99 / 100] / 1e3;
		p[ph][2] = (double)r->lat[ph][n - 1] / 1e3;
	}
	if (L->c->json) {
		printf("{\"ok\":true,\"transport\":\"%s\",\"channels\":%u,\"urgent\":%s,"
		       "\"ram_size\":%" PRIu64 ",\"live_rounds\":%u,\"missing_pages\":%" PRIu64,
		       rmig_transport_name(ss.transport), L->c->channels,
		       L->c->no_urgent ? "false" : "true", L->g.size, L->c->postcopy_after,
		       r->npages);
		for (unsigned int ph = 0; ph < 2; ph++)
			printf(",\"%s\":{\"faults\":%u,\"p50_us\":%.1f,\"p99_us\":%.1f,"
			       "\"max_us\":%.1f}",
			       name[ph], r->n[ph], p[ph][0], p[ph][1], p[ph][2]);
		printf(",\"p99_ratio\":%.2f,\"background_pages\":%" PRIu64
		       ",\"background_s\":%.3f,\"requests\":%" PRIu64 ",\"urgent_pages\":%" PRIu64
		       ",\"resent\":%" PRIu64 ",\"downtime_ms\":%.3f,\"total_s\":%.3f"
		       ",\"verified\":true}\n",
		       p[0][1] > 0 ? p[1][1] / p[0][1] : 0, ss.pc_background, r->bg_s,
		       ss.pc_requests, ss.pc_urgent_pages, ss.pc_resent,
		       (double)ss.downtime_ns / 1e6, L->total_s);
		return;
	}
	if (L->c->quiet)
		return;
	printf("postcopy after %u live rounds: %" PRIu64 " pages missing at the switchover; "
	       "%s, %u channels%s\n",
	       L->c->postcopy_after, r->npages, rmig_transport_name(ss.transport),
	       L->c->channels, L->c->no_urgent ? ", no urgent channel" : " + the urgent one");
	printf("%-11s %7s %11s %11s %11s\n", "phase", "faults", "p50 us", "p99 us", "max us");
	for (unsigned int ph = 0; ph < 2; ph++)
		if (r->n[ph])
			printf("%-11s %7u %11.1f %11.1f %11.1f\n", name[ph], r->n[ph], p[ph][0],
			       p[ph][1], p[ph][2]);
		else
			printf("%-11s %7u %11s %11s %11s  (no missing page left to touch)\n",
			       name[ph], 0u, "-", "-", "-");
	if (r->n[0] && r->n[1])
		printf("p99 under background load: %.2fx the idle p99\n", p[1][1] / p[0][1]);
	printf("background: %" PRIu64 " pages in %.3f s; %" PRIu64 " requests, %" PRIu64
	       " pages sent for them (%" PRIu64 " again: their background copy was still on "
	       "the way)\n",
	       ss.pc_background, r->bg_s, ss.pc_requests, ss.pc_urgent_pages, ss.pc_resent);
	printf("downtime %.1f ms (stop to the guest running at the destination)   total %.3f s\n",
	       (double)ss.downtime_ns / 1e6, L->total_s);
	printf("verified: every byte of RAM%s at the destination\n",
	       L->b.n ? " and every blob" : "");
}
