/* SPDX-License-Identifier: MIT */
/*
 * bench_live.c - `rdma-migrate bench --live`: a built-in guest for the CLI. Guest
 * RAM of --ram-size bytes, writer threads (the vCPUs) that dirty pages at
 * --dirty-rate and log exactly what they dirtied, a live migration driven as
 * a VMM drives it (rounds, estimate, switchover, the rest and the device
 * state, completion), to a destination in this process or to a recv peer
 * (--to). The destination is checked byte for byte; the report gives every
 * round, the decision, the downtime, the total time and the throughput.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_live.h"
#include "tool.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_GUEST_LOST 3 /* postcopy failed after the destination ran the guest */
#define MiB 1048576.0

/* ---- the guest ---- */

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ull),
			       .tv_nsec = (long)(t % 1000000000ull) };

	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/*
 * A vCPU: store into a page, then set its bit in the dirty log (release), as
 * a VMM's dirty log orders them: whoever takes the bit (acquire) and then
 * reads the page sees this store or a later one.
 */
static void *writer_main(void *arg)
{
	struct writer_arg *wa = arg;
	struct guest *g = wa->g;
	uint64_t x = 0x9e3779b97f4a7c15ull * (wa->idx + 1), n = 0, t0 = now_ns();
	unsigned int batch = g->pps >= 64000 ? 64 : g->pps >= 1000 ? (unsigned int)(g->pps / 1000) : 1;

	while (!atomic_load_explicit(&g->stop, memory_order_relaxed)) {
		uint64_t due;

		if (g->pps <= 0) {
			sleep_until(now_ns() + 1000000ull);
			continue;
		}
		for (unsigned int i = 0; i < batch; i++) {
			uint64_t r = xorshift(&x), pg = r % g->span;
			uint64_t *w = (uint64_t *)(void *)(g->mem + pg * PAGE) + (r >> 40) % (PAGE / 8);

			__atomic_store_n(w, r | 1, __ATOMIC_RELAXED);
			atomic_fetch_or_explicit(&g->log[pg / RMIG_BITS_PER_LONG],
						 1UL << (pg % RMIG_BITS_PER_LONG),
						 memory_order_release);
		}
		n += batch;
		atomic_fetch_add_explicit(&g->writes, batch, memory_order_relaxed);
		/*
		 * Keep to the rate; a writer that falls behind runs flat out. Sleep
		 * in 1 ms slices: stopping the guest must not wait for a writer.
		 */
		due = t0 + (uint64_t)((double)n / g->pps * 1e9);
		while (due > now_ns() && !atomic_load_explicit(&g->stop, memory_order_relaxed)) {
			uint64_t cap = now_ns() + 1000000ull;

			sleep_until(due < cap ? due : cap);
		}
	}
	return NULL;
}

void guest_stop(struct guest *g)
{
	atomic_store(&g->stop, true);
	for (unsigned int i = 0; i < g->started; i++)
		pthread_join(g->th[i], NULL);
	g->started = 0;
}

int guest_start(struct guest *g, struct writer_arg *wa)
{
	for (unsigned int i = 0; i < g->nwriters; i++) {
		wa[i] = (struct writer_arg){ g, i };
		if (pthread_create(&g->th[i], NULL, writer_main, &wa[i])) {
			guest_stop(g);
			return -EAGAIN;
		}
		g->started++;
	}
	return 0;
}

/* OR into @map what was dirtied since the last collection. */
void collect(struct guest *g, unsigned long *map)
{
	for (size_t i = 0; i < g->nlongs; i++)
		map[i] |= atomic_exchange_explicit(&g->log[i], 0, memory_order_acquire);
}

static void fill(uint8_t *p, uint64_t len, uint64_t seed)
{
	uint64_t x = 0x2545f4914f6cdd1dull ^ (seed * 0x9e3779b97f4a7c15ull);

	for (uint64_t i = 0; i < len / 8; i++)
		((uint64_t *)(void *)p)[i] = xorshift(&x) | 1;
	for (uint64_t i = len / 8 * 8; i < len; i++)
		p[i] = (uint8_t)xorshift(&x);
}

/* ---- the destination in this process ---- */

/* Runs on the destination's load threads, several at once. */
static int load_blob(void *arg, const char *name, uint32_t instance, const void *data,
		     uint64_t len)
{
	struct blobs *b = arg;
	bool ok = !strcmp(name, "dev") && instance < b->n && len == b->len[instance] &&
		  !memcmp(data, b->data[instance], len);

	pthread_mutex_lock(&b->lock);
	ok ? b->good++ : b->bad++;
	pthread_mutex_unlock(&b->lock);
	return ok ? 0 : -EBADMSG;
}

/* ---- options ---- */

static int parse_sizes(const char *list, struct blobs *b)
{
	const char *p = list;

	while (p && *p) {
		char tok[32];
		size_t len = strcspn(p, ",");
		uint64_t v;

		if (!len || len >= sizeof(tok) || b->n == BLOBS_MAX)
			return -EINVAL;
		memcpy(tok, p, len);
		tok[len] = '\0';
		if (cli_parse_size(tok, 0, 4ull << 30, &v))
			return -EINVAL;
		b->len[b->n++] = v;
		p += len;
		if (*p == ',' && !*++p)
			return -EINVAL;
	}
	return 0;
}

static const char *const live_only[] = { "ram-size", "writers",	   "dirty-rate",
					 "pattern",  "hot-size",   "downtime",
					 "max-rounds", "switch-anyway", "device-state",
					 "channels", "to",	   NULL };
/* the guest's options that --postcopy takes too */
static const char *const guest_opts[] = { "ram-size", "writers", "dirty-rate", "pattern",
					  "hot-size", "device-state", "channels", NULL };
static const char *const postcopy_only[] = { "postcopy-after", "faults", "no-urgent", NULL };

static bool in_list(const char *const *l, const char *o)
{
	for (; *l; l++)
		if (!strcmp(*l, o))
			return true;
	return false;
}

/* Options that only mean something in another mode are refused, not ignored. */
int tool_bench_check(const struct cli *c)
{
	const char *mode = c->postcopy ? "--postcopy" : "--live";

	if (c->live && c->postcopy) {
		fprintf(stderr, "rdma-migrate bench: --live and --postcopy are two modes; choose "
				"one (--postcopy runs live rounds too: --postcopy-after)\n");
		return -EINVAL;
	}
	if (c->direct && (!c->live || !c->to || strncmp(c->to, "file:", 5))) {
		fprintf(stderr, "rdma-migrate bench: --direct is for --live --to file:PATH\n");
		return -EINVAL;
	}
	for (const char *const *o = postcopy_only; *o; o++) {
		if (!c->postcopy && cli_seen(c, *o)) {
			fprintf(stderr, "rdma-migrate bench: --%s needs --postcopy\n", *o);
			return -EINVAL;
		}
	}
	for (const char *const *o = live_only; *o; o++) {
		if (!c->live && !c->postcopy && cli_seen(c, *o)) {
			fprintf(stderr, "rdma-migrate bench: --%s needs --live\n", *o);
			return -EINVAL;
		}
		if (c->postcopy && !in_list(guest_opts, *o) && cli_seen(c, *o)) {
			fprintf(stderr, "rdma-migrate bench: --%s is not for --postcopy%s\n", *o,
				!strcmp(*o, "to") ? " (its workload runs at a destination in this "
						    "process)" :
						    " (it switches after --postcopy-after rounds)");
			return -EINVAL;
		}
	}
	if (!c->live && !c->postcopy)
		return 0;
	if (cli_seen(c, "size") || cli_seen(c, "channel-list")) {
		fprintf(stderr, "rdma-migrate bench: --size and --channel-list measure raw "
				"throughput; with %s use --ram-size and --channels\n", mode);
		return -EINVAL;
	}
	if (cli_seen(c, "hot-size") && strcmp(c->pattern, "hot")) {
		fprintf(stderr, "rdma-migrate bench: --hot-size needs --pattern hot\n");
		return -EINVAL;
	}
	if (cli_seen(c, "addr") && c->to) {
		fprintf(stderr, "rdma-migrate bench: --addr is for the destination in this "
				"process; --to names a remote one\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- the report ---- */

static const char *decision_name(enum rmig_decision d)
{
	switch (d) {
	case RMIG_DECIDE_ROUND:
		return "round";
	case RMIG_DECIDE_SWITCHOVER:
		return "switchover";
	case RMIG_DECIDE_FORCED:
		return "forced";
	case RMIG_DECIDE_GIVE_UP:
		return "give_up";
	}
	return "?";
}

static void json_round(FILE *f, const struct round_rec *r, bool comma)
{
	fprintf(f,
		"%s{\"round\":%u,\"dirty_pages\":%" PRIu64 ",\"pages\":%" PRIu64
		",\"zero_pages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"duration_ms\":%.3f"
		",\"bandwidth_MiBps\":%.1f",
		comma ? "," : "", r->st.round, r->st.dirty_pages, r->st.pages, r->st.zero_pages,
		r->st.bytes, (double)r->st.duration_ns / 1e6, (double)r->st.bandwidth / MiB);
	if (r->st.round > 1)
		fprintf(f, ",\"dirty_rate_MiBps\":%.1f", (double)r->st.dirty_rate / MiB);
	else
		fprintf(f, ",\"dirty_rate_MiBps\":null");
	if (r->expected_ms >= 0)
		fprintf(f, ",\"expected_downtime_ms\":%.3f}", r->expected_ms);
	else
		fprintf(f, ",\"expected_downtime_ms\":null}");
}

static void text_round(const struct round_rec *r, const char *label)
{
	char exp[32] = "-", dr[32] = "-";

	if (r->expected_ms >= 0)
		snprintf(exp, sizeof(exp), "%.1f", r->expected_ms);
	if (r->st.round > 1)
		snprintf(dr, sizeof(dr), "%.1f", (double)r->st.dirty_rate / MiB);
	printf("%6s %12" PRIu64 " %10.1f %8" PRIu64 " %9.1f %11.1f %11s %11s\n", label,
	       r->st.dirty_pages, (double)r->st.bytes / MiB, r->st.zero_pages,
	       (double)r->st.duration_ns / 1e6, (double)r->st.bandwidth / MiB, dr, exp);
	fflush(stdout);
}

/* ---- the migration ---- */

int add_rec(struct live *L, const struct rmig_round_stats *st, double expected_ms)
{
	if (L->nrec == L->cap) {
		unsigned int cap = L->cap ? 2 * L->cap : 32;
		struct round_rec *r = realloc(L->rec, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		L->rec = r;
		L->cap = cap;
	}
	L->rec[L->nrec] = (struct round_rec){ *st, expected_ms };
	if (L->file) {
		struct stat fs;

		if (stat(L->file, &fs) == 0) {
			if (!L->file_min || (uint64_t)fs.st_size < L->file_min)
				L->file_min = (uint64_t)fs.st_size;
			if ((uint64_t)fs.st_size > L->file_max)
				L->file_max = (uint64_t)fs.st_size;
		}
	}
	if (!L->c->json && !L->c->quiet) {
		char label[16];

		snprintf(label, sizeof(label), "%u", st->round);
		text_round(&L->rec[L->nrec], label);
	}
	L->nrec++;
	return 0;
}

static int open_sessions(struct live *L)
{
	const struct cli *c = L->c;
	struct rmig_opts so, dopt;
	char uri[320];
	int rc;

	tool_opts(&so, c, RMIG_ROLE_SOURCE);
	if (c->to) /* here, every byte is compared after completion instead */
		so.flags |= RMIG_F_VERIFY;
	if (c->postcopy)
		so.flags |= RMIG_F_POSTCOPY | (c->no_urgent ? RMIG_F_NO_URGENT : 0);
	rc = rmig_session_create(&so, &L->s);
	if (!rc)
		rc = rmig_add_ram(L->s, "ram", L->g.mem, L->g.size, PAGE);
	if (rc || c->to)
		return rc;
	tool_opts(&dopt, c, RMIG_ROLE_DEST);
	dopt.log_arg = (void *)"destination";
	dopt.state_fn = load_blob;
	dopt.state_arg = &L->b;
	rc = rmig_session_create(&dopt, &L->d.t.s);
	if (!rc)
		rc = rmig_add_ram(L->d.t.s, "ram", L->dst, L->g.size, PAGE);
	snprintf(uri, sizeof(uri), strchr(c->addr, ':') ? "tcp://[%s]:0" : "tcp://%s:0", c->addr);
	if (!rc && c->postcopy) /* the workload's touches fault; the handler asks for the page */
		rc = rmig_postcopy_uffd(L->d.t.s, "ram");
	if (!rc)
		rc = rmig_listen(L->d.t.s, uri);
	if (!rc)
		rc = -pthread_create(&L->d.th, NULL, tool_dest_main, &L->d.t);
	L->d.started = !rc;
	return rc;
}

static int connect_uri(struct live *L, char *uri, size_t len)
{
	const struct cli *c = L->c;
	const char *scheme = !strcmp(c->transport, "rdma") ? "rdma://" :
			     !strcmp(c->transport, "tcp")  ? "tcp://" : "";

	if (c->to)
		snprintf(uri, len, "%s%s", strstr(c->to, "://") || L->file ? "" : scheme, c->to);
	else
		snprintf(uri, len, strchr(c->addr, ':') ? "%s[%s]:%d" : "%s%s:%d", scheme, c->addr,
			 rmig_listen_port(L->d.t.s));
	return 0;
}

/* The rounds, as a VMM runs them. 0, or a negative errno; *gave_up_p when cancelled. */
static int migrate(struct live *L, bool *gave_up_p)
{
	const struct cli *c = L->c;
	struct guest *g = &L->g;
	unsigned long *map = calloc(g->nlongs, sizeof(*map));
	const unsigned long *maps[1] = { map };
	struct rmig_round_stats st;
	struct writer_arg wa[64];
	char uri[384];
	uint64_t t0 = now_ns();
	int rc;

	if (!map)
		return -ENOMEM;
	connect_uri(L, uri, sizeof(uri));
	rc = rmig_connect(L->s, uri);
	if (!rc && c->postcopy) {
		rc = migrate_pc(L, map, wa);
		goto out;
	}
	if (!rc)
		rc = guest_start(g, wa);
	if (rc)
		goto out;
	if (!c->json && !c->quiet)
		printf("%6s %12s %10s %8s %9s %11s %11s %11s\n", "round", "dirty pages", "sent MiB",
		       "zero", "time ms", "bw MiB/s", "dirty MiB/s", "expect ms");
	/* round 1: all of RAM while the guest runs */
	memset(map, 0xff, g->nlongs * sizeof(*map));
	rc = rmig_send_round(L->s, maps, 1, &st);
	if (!rc)
		rc = add_rec(L, &st, -1);
	while (!rc) {
		memset(map, 0, g->nlongs * sizeof(*map));
		collect(g, map);
		rc = rmig_estimate(L->s, maps, 1, L->state_total, &L->last);
		if (rc || L->last.decision != RMIG_DECIDE_ROUND)
			break;
		rc = rmig_send_round(L->s, maps, 1, &st);
		if (!rc)
			rc = add_rec(L, &st, (double)L->last.expected_downtime_ns / 1e6);
	}
	if (rc)
		goto out;
	if (L->last.decision == RMIG_DECIDE_GIVE_UP) {
		char why[160];

		guest_stop(g);
		snprintf(why, sizeof(why),
			 "did not converge: expected downtime %.1f ms over the %u ms limit after "
			 "%u rounds",
			 (double)L->last.expected_downtime_ns / 1e6, c->downtime_ms, L->last.rounds);
		rmig_cancel(L->s, why);
		*gave_up_p = true;
		rc = -ECANCELED;
		goto out;
	}
	/* switchover: stop the guest; the rest and the device state go at full speed */
	rc = rmig_switchover(L->s);
	guest_stop(g);
	collect(g, map);
	if (!rc)
		rc = rmig_send_round(L->s, maps, 1, &L->final.st);
	for (unsigned int i = 0; i < L->b.n && !rc; i++)
		rc = rmig_send_state(L->s, "dev", i, L->b.data[i], L->b.len[i]);
	if (!rc)
		rc = rmig_complete(L->s);
out:
	guest_stop(g);
	L->total_s = (double)(now_ns() - t0) / 1e9;
	free(map);
	return rc;
}

/*
 * --to file:PATH: restore the file here into fresh memory, with its digests,
 * and compare every byte with the guest's final memory.
 */
static int restore_check(struct live *L)
{
	struct rmig_opts o;
	rmig_session *d = NULL;
	char *uri = malloc(strlen(L->file) + 6);
	int rc;

	if (!uri)
		return -ENOMEM;
	sprintf(uri, "file:%s", L->file);
	tool_opts(&o, L->c, RMIG_ROLE_DEST);
	o.log_arg = (void *)"restore";
	o.flags |= RMIG_F_VERIFY | RMIG_F_ZEROED; /* L->dst is fresh: reads as zero */
	o.state_fn = load_blob;
	o.state_arg = &L->b;
	rc = rmig_session_create(&o, &d);
	if (!rc)
		rc = rmig_add_ram(d, "ram", L->dst, L->g.size, PAGE);
	if (!rc)
		rc = rmig_listen(d, uri);
	if (!rc)
		rc = rmig_accept(d);
	if (!rc)
		rc = rmig_complete(d);
	if (rc)
		fprintf(stderr, "rdma-migrate bench: restoring %s: %s\n", L->file,
			d && rmig_last_error(d)[0] ? rmig_last_error(d) : strerror(-rc));
	rmig_session_destroy(d);
	free(uri);
	return rc;
}

static void report(struct live *L, int rc, bool gave_up, bool verified)
{
	const struct cli *c = L->c;
	struct rmig_stats st;
	const struct rmig_estimate *e = &L->last;
	uint64_t moved;
	double tput, down;
	bool converged = e->decision == RMIG_DECIDE_SWITCHOVER;

	rmig_get_stats(L->s, &st);
	moved = st.bytes + L->state_total;
	tput = L->total_s > 0 ? (double)moved / L->total_s / MiB : 0;
	down = (double)st.downtime_ns / 1e6;
	if (c->json) {
		printf("{\"ok\":%s,\"transport\":\"%s\",\"channels\":%u,\"ram_size\":%" PRIu64
		       ",\"writers\":%u,\"dirty_rate_target\":%" PRIu64 ",\"pattern\":\"%s\""
		       ",\"downtime_limit_ms\":%u,\"max_rounds\":%u,\"max_bandwidth\":%" PRIu64
		       ",\"rounds\":[",
		       rc ? "false" : "true", rmig_transport_name(st.transport), st.channels,
		       L->g.size, c->writers, c->dirty_rate, c->pattern, c->downtime_ms,
		       c->max_rounds, c->max_bandwidth);
		for (unsigned int i = 0; i < L->nrec; i++)
			json_round(stdout, &L->rec[i], i > 0);
		printf("],\"decision\":\"%s\",\"converged\":%s,\"expected_downtime_ms\":%.3f",
		       decision_name(e->decision), converged ? "true" : "false",
		       (double)e->expected_downtime_ns / 1e6);
		if (!gave_up && L->final.st.round) {
			printf(",\"final_round\":");
			json_round(stdout, &(struct round_rec){ L->final.st, -1 }, false);
		}
		printf(",\"device_state\":{\"blobs\":%u,\"bytes\":%" PRIu64 "}", L->b.n,
		       L->state_total);
		printf(",\"downtime_ms\":%.3f,\"total_s\":%.3f,\"throughput_MiBps\":%.1f"
		       ",\"guest_writes\":%" PRIu64 ",\"verified\":%s",
		       down, L->total_s, tput, atomic_load(&L->g.writes),
		       verified ? "true" : "false");
		tool_json_placement(stdout, L->s, st.channels);
		if (L->file)
			printf(",\"file\":{\"bytes_each_round\":%" PRIu64
			       ",\"same_every_round\":%s,\"bytes_at_completion\":%" PRIu64 "}",
			       L->file_max, L->file_min == L->file_max ? "true" : "false",
			       L->file_end);
		if (rc) {
			printf(",\"error\":");
			tool_json_str(stdout, rmig_last_error(L->s));
		}
		printf("}\n");
	}
	if (gave_up) {
		fprintf(stderr,
			"rdma-migrate bench: did not converge: after %u rounds the expected "
			"downtime is %.1f ms, over the %u ms limit (dirty rate %.1f MiB/s, "
			"bandwidth %.1f MiB/s); cancelled, the guest keeps running on the source "
			"(--switch-anyway switches over regardless)\n",
			e->rounds, (double)e->expected_downtime_ns / 1e6, c->downtime_ms,
			(double)e->dirty_rate / MiB, (double)e->bandwidth / MiB);
		return;
	}
	if (rc)
		return;
	if (e->decision == RMIG_DECIDE_FORCED)
		fprintf(stderr,
			"rdma-migrate bench: warning: did not converge within %u rounds: "
			"switched over anyway with an expected downtime of %.1f ms, over the "
			"%u ms limit\n",
			e->rounds, (double)e->expected_downtime_ns / 1e6, c->downtime_ms);
	if (c->json || c->quiet)
		return;
	text_round(&(struct round_rec){ L->final.st, -1 }, "final");
	if (converged)
		printf("switchover after %u live rounds: the rest fit the limit (expected "
		       "%.1f ms <= %u ms)\n",
		       e->rounds, (double)e->expected_downtime_ns / 1e6, c->downtime_ms);
	else
		printf("switchover forced after %u live rounds (expected %.1f ms > %u ms)\n",
		       e->rounds, (double)e->expected_downtime_ns / 1e6, c->downtime_ms);
	printf("device state: %u blobs, %.1f MiB, over %u channels\n", L->b.n,
	       (double)L->state_total / MiB, st.channels);
	printf("downtime %.1f ms   total %.3f s   throughput %.1f MiB/s   guest writes %" PRIu64
	       "\n",
	       down, L->total_s, tput, atomic_load(&L->g.writes));
	if (L->file)
		printf("file %s: %" PRIu64 " bytes after each of the %u live rounds (%s; RAM %" PRIu64
		       " + %" PRIu64 " of layout), %" PRIu64 " at completion (+ bitmaps, device state, "
		       "trailer)\n",
		       L->file, L->file_max, L->nrec,
		       L->file_min == L->file_max ? "the same every round" : "it grew between rounds!",
		       L->g.size, L->file_max - L->g.size, L->file_end);
	printf("verified: %s\n",
	       L->file ? "the file, restored here with its digests: every byte of RAM and every "
			 "blob"
	       : c->to ? "end-to-end digests of the RAM and every blob match at the destination"
		       : "every byte of RAM and every blob at the destination");
}

int tool_bench_live(const struct cli *c)
{
	struct live L = { .c = c, .b = { .lock = PTHREAD_MUTEX_INITIALIZER } };
	struct pc_report pcr = { .L = &L,
				 .lock = PTHREAD_MUTEX_INITIALIZER,
				 .cond = PTHREAD_COND_INITIALIZER };
	struct guest *g = &L.g;
	bool gave_up = false, verified = false, file_existed = false, save_failed;
	struct stat file_before;
	char ram[32];
	int rc;

	if (parse_sizes(c->device_state, &L.b)) {
		fprintf(stderr, "rdma-migrate bench: --device-state '%s': expected SIZE[,SIZE...] "
				"with at most %d sizes of at most 4G\n",
			c->device_state, BLOBS_MAX);
		return EXIT_USAGE;
	}
	g->size = c->ram_size / PAGE * PAGE;
	g->npages = g->size / PAGE;
	if (!strcmp(c->pattern, "hot") && c->hot_size > g->size && cli_seen(c, "hot-size")) {
		fprintf(stderr, "rdma-migrate bench: --hot-size is larger than --ram-size\n");
		return EXIT_USAGE;
	}
	/* the default hot set (64M) is all of a smaller guest */
	g->span = !strcmp(c->pattern, "hot") ? (c->hot_size < g->size ? c->hot_size : g->size) / PAGE :
						 g->npages;
	if (!g->span)
		g->span = 1;
	g->nwriters = c->writers;
	g->pps = (double)c->dirty_rate / PAGE / c->writers;
	g->nlongs = RMIG_BITMAP_LONGS(g->npages);
	if (c->to && !strncmp(c->to, "file:", 5)) {
		L.file = c->to + 5;
		file_existed = stat(L.file, &file_before) == 0;
	}
	/* the guest and its blobs, twice when the destination is in this process too */
	{
		unsigned int copies = !c->to || L.file ? 2 : 1;
		uint64_t need = g->size;

		for (unsigned int i = 0; i < L.b.n; i++)
			need += L.b.len[i];
		if (tool_mem_check("bench", copies == 2 ? "--ram-size twice (the guest and "
							  "its destination) and --device-state" :
							  "--ram-size (the guest) and --device-state",
				   copies * need))
			return EXIT_FAILED;
	}
	g->log = calloc(g->nlongs, sizeof(*g->log));
	g->mem = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!c->to || L.file)
		L.dst = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	rc = !g->log || g->mem == MAP_FAILED || L.dst == MAP_FAILED ? -ENOMEM : 0;
	if (!rc && c->postcopy) {
		L.pc = &pcr;
		pcr.max = c->faults;
		pcr.pages = malloc(g->npages * sizeof(*pcr.pages));
		pcr.lat[0] = malloc(c->faults * sizeof(uint64_t));
		pcr.lat[1] = malloc(c->faults * sizeof(uint64_t));
		rc = pcr.pages && pcr.lat[0] && pcr.lat[1] ? 0 : -ENOMEM;
	}
	for (unsigned int i = 0; i < L.b.n && !rc; i++) {
		L.b.data[i] = malloc(L.b.len[i] ? L.b.len[i] : 1);
		rc = L.b.data[i] ? 0 : -ENOMEM;
		if (!rc)
			fill(L.b.data[i], L.b.len[i], 1000 + i);
		L.state_total += L.b.len[i];
	}
	if (rc) {
		fprintf(stderr, "rdma-migrate bench: cannot allocate the guest: %s\n",
			strerror(-rc));
		rc = EXIT_FAILED;
		goto out;
	}
	fill(g->mem, g->size, 1);
	if (L.dst)
		memset(L.dst, 0, g->size); /* fault it in: the destination is a running VMM */
	L.transport = strcmp(c->transport, "auto") ? c->transport : "auto";
	tool_fmt_bytes(ram, sizeof(ram), (double)g->size);
	if (!c->quiet && c->postcopy)
		fprintf(stderr,
			"rdma-migrate bench --postcopy: %s guest, %u live rounds (%u writers "
			"dirtying %.1f MiB/s), then postcopy over %s, %u channels%s; a workload at "
			"the destination touches up to %u missing pages idle and %u under "
			"background load\n",
			ram, c->postcopy_after, c->writers, (double)c->dirty_rate / MiB,
			L.transport, c->channels, c->no_urgent ? ", no urgent channel" : " + urgent",
			c->faults, c->faults);
	else if (!c->quiet)
		fprintf(stderr,
			"rdma-migrate bench --live: %s guest, %u writers dirtying %.1f MiB/s "
			"(%s), %s to %s, %u channels, downtime limit %u ms\n",
			ram, c->writers, (double)c->dirty_rate / MiB, c->pattern, L.transport,
			c->to ? c->to : "a destination in this process", c->channels,
			c->downtime_ms);
	rc = open_sessions(&L);
	if (!rc)
		rc = migrate(&L, &gave_up);
	if (L.d.started) {
		/* after giving up, the source's cancellation reaches it on the wire */
		if (rc && !gave_up)
			rmig_cancel(L.d.t.s, "the source failed");
		pthread_join(L.d.th, NULL);
		if (!rc)
			rc = L.d.t.rc;
	}
	if (!rc && L.file) { /* the final size too: completion appended to the file */
		struct stat fs;

		rc = restore_check(&L);
		if (!rc && stat(L.file, &fs) == 0)
			L.file_end = (uint64_t)fs.st_size;
	}
	if (!rc) {
		/* --to: RMIG_F_VERIFY compared digests; here, compare every byte too */
		verified = (c->to && !L.file) ||
			   (!memcmp(g->mem, L.dst, g->size) && L.b.good == L.b.n);
		if (!verified) {
			fprintf(stderr, "rdma-migrate bench: the destination differs from the "
					"source\n");
			rc = -EBADMSG;
		}
	}
	if (L.s && c->postcopy && !rc)
		pc_report(&L);
	else if (L.s && !c->postcopy)
		report(&L, rc, gave_up, verified);
	if (rc && c->postcopy && L.d.t.s &&
	    strstr(rmig_last_error(L.d.t.s), "the guest cannot continue")) {
		/* the destination ran the guest, and pages are lost with the source */
		if (c->json)
			printf("{\"ok\":false,\"guest_lost\":true,\"error\":\"%s\"}\n",
			       rmig_last_error(L.d.t.s));
		fprintf(stderr, "rdma-migrate bench: postcopy failed while the destination ran "
				"the guest: %s\n",
			rmig_last_error(L.d.t.s));
		rc = EXIT_GUEST_LOST;
		goto out;
	}
	if (rc && !gave_up)
		fprintf(stderr, "rdma-migrate bench: %s migration failed: %s\n",
			c->postcopy ? "postcopy" : "live",
			L.s && rmig_last_error(L.s)[0] ? rmig_last_error(L.s) :
			L.d.t.s && rmig_last_error(L.d.t.s)[0] ? rmig_last_error(L.d.t.s) :
							      strerror(-rc));
	if (rc && c->postcopy && c->json)
		printf("{\"ok\":false,\"guest_lost\":false,\"error\":\"%s\"}\n",
		       L.s && rmig_last_error(L.s)[0] ? rmig_last_error(L.s) : strerror(-rc));
	rc = rc ? EXIT_FAILED : 0;
out:
	/* the save failed: what it wrote goes, as after a failed `save` */
	save_failed = L.file && L.s && rmig_error(L.s);
	rmig_session_destroy(L.s);
	rmig_session_destroy(L.d.t.s);
	if (save_failed)
		tool_save_remove("bench", L.file, file_existed ? &file_before : NULL);
	for (unsigned int i = 0; i < L.b.n; i++)
		free(L.b.data[i]);
	free(L.rec);
	free(pcr.pages);
	free(pcr.lat[0]);
	free(pcr.lat[1]);
	free(g->log);
	if (g->mem && g->mem != MAP_FAILED)
		munmap(g->mem, g->size);
	if (L.dst && L.dst != MAP_FAILED)
		munmap(L.dst, g->size);
	return rc;
}
