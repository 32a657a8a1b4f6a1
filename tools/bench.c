/* SPDX-License-Identifier: MIT */
/*
 * bench.c - `rdma-migrate bench`: move one image between two sessions in this
 * process, and in the same run push the same bytes over the same number of
 * plain TCP connections; print both throughputs and their ratio. For each
 * channel count both are run once untimed (the first run of either pays for
 * cold code paths and sockets), then BENCH_RUNS times each, alternating which
 * goes first; the figures are the medians and the ratio is that of the
 * medians. Every rmig run is checked byte for byte. Figures only: nothing
 * here passes or fails on speed.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <inttypes.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tool.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define BENCH_RUNS 5 /* timed runs of each kind per channel count */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill_random(uint8_t *p, uint64_t len)
{
	uint64_t x = 0x9e3779b97f4a7c15ull, *w = (uint64_t *)(void *)p;

	for (uint64_t i = 0; i < len / 8; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[i] = x | 1; /* never a zero page: measure the data path */
	}
}

void *tool_dest_main(void *arg)
{
	struct tool_dest *d = arg;

	d->rc = rmig_accept(d->s);
	if (!d->rc)
		d->rc = rmig_complete(d->s);
	return NULL;
}

/* *secs_p: connect to complete; *reg_p: of that, pinning memory on both sides. */
static int run_rmig(const struct cli *c, unsigned int nch, uint8_t *src, uint8_t *dst,
		    uint64_t size, double *secs_p, double *reg_p)
{
	struct rmig_stats ss, ds;
	struct rmig_opts so, dopt;
	rmig_session *s = NULL, *d = NULL;
	struct tool_dest da = { 0 };
	pthread_t th;
	char uri[320];
	double t0;
	int rc;

	tool_opts(&so, c, RMIG_ROLE_SOURCE);
	so.channels = nch;
	tool_opts(&dopt, c, RMIG_ROLE_DEST);
	rc = rmig_session_create(&dopt, &d);
	if (!rc)
		rc = rmig_session_create(&so, &s);
	if (!rc)
		rc = rmig_add_ram(d, "ram", dst, size, 4096);
	if (!rc)
		rc = rmig_add_ram(s, "ram", src, size, 4096);
	/* an IPv6 literal goes in brackets, on both ends */
	snprintf(uri, sizeof(uri), strchr(c->addr, ':') ? "tcp://[%s]:0" : "tcp://%s:0", c->addr);
	if (!rc)
		rc = rmig_listen(d, uri);
	if (rc)
		goto out;
	snprintf(uri, sizeof(uri), strchr(c->addr, ':') ? "%s://[%s]:%d" : "%s://%s:%d",
		 strcmp(c->transport, "auto") ? c->transport : "tcp", c->addr, rmig_listen_port(d));
	da.s = d;
	rc = -pthread_create(&th, NULL, tool_dest_main, &da);
	if (rc)
		goto out;
	t0 = now_s();
	rc = rmig_connect(s, uri);
	if (!rc)
		rc = rmig_send_range(s, "ram", 0, size);
	if (!rc)
		rc = rmig_complete(s);
	*secs_p = now_s() - t0;
	if (rc)
		rmig_cancel(d, "source failed");
	pthread_join(th, NULL);
	rmig_get_stats(s, &ss);
	rmig_get_stats(d, &ds);
	*reg_p = (double)(ss.reg_ns + ds.reg_ns) / 1e9;
	if (!rc)
		rc = da.rc;
	if (!rc && memcmp(src, dst, size)) {
		fprintf(stderr, "rdma-migrate bench: destination differs from source\n");
		rc = -EBADMSG;
	}
	if (rc)
		fprintf(stderr, "rdma-migrate bench: rmig run failed: %s\n",
			rmig_last_error(s)[0] ? rmig_last_error(s) : rmig_last_error(d));
out:
	rmig_session_destroy(s);
	rmig_session_destroy(d);
	return rc;
}

struct raw_conn {
	int fd;
	uint8_t *p;
	uint64_t len;
	int rc;
};

/*
 * The raw stream: plain blocking sockets, as a program that only copies
 * bytes would use them, with the same 4 MiB buffers rmig's TCP channels ask for.
 */
static int raw_io(int fd, uint8_t *p, uint64_t len, bool tx)
{
	while (len) {
		ssize_t n = tx ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, MSG_WAITALL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? -errno : -ECONNRESET;
		p += n;
		len -= (uint64_t)n;
	}
	return 0;
}

static void *raw_send(void *arg)
{
	struct raw_conn *r = arg;

	r->rc = raw_io(r->fd, r->p, r->len, true);
	return NULL;
}

static void *raw_recv(void *arg)
{
	struct raw_conn *r = arg;

	r->rc = raw_io(r->fd, r->p, r->len, false);
	return NULL;
}

static void raw_tune(int fd)
{
	int sz = 4 << 20;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

/* A listener on @host, port chosen by the kernel, and its address to connect to. */
static int raw_listen(const char *host, int *lfd_p, struct sockaddr_storage *sa, socklen_t *sl)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	int fd, rc = getaddrinfo(host, "0", &hints, &ai);

	if (rc)
		return -EHOSTUNREACH;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	*sl = sizeof(*sa);
	getsockname(fd, (struct sockaddr *)sa, sl);
	*lfd_p = fd;
	return 0;
}

/* One connection of the pair: connect to the listener, and accept it within @timeout_ms. */
static int raw_pair(int lfd, const struct sockaddr_storage *sa, socklen_t sl,
		    unsigned int timeout_ms, int *tx_p, int *rx_p)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };
	int tx = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), rx = -1, rc;

	if (tx < 0)
		return -errno;
	if (connect(tx, (const struct sockaddr *)sa, sl)) {
		rc = -errno;
		close(tx);
		return rc;
	}
	rc = poll(&pfd, 1, (int)timeout_ms);
	if (rc > 0)
		rx = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (rx < 0) {
		rc = rc > 0 ? -errno : rc ? -errno : -ETIMEDOUT;
		close(tx);
		return rc;
	}
	raw_tune(tx);
	raw_tune(rx);
	*tx_p = tx;
	*rx_p = rx;
	return 0;
}

/* The same bytes over @nch plain connections, each carrying a slice. */
static int run_raw(const struct cli *c, unsigned int nch, uint8_t *src, uint8_t *dst,
		   uint64_t size, double *secs_p)
{
	struct raw_conn tx[64], rx[64];
	pthread_t tt[64], rt[64];
	struct sockaddr_storage sa;
	socklen_t sl;
	unsigned int open = 0;
	int lfd = -1, rc = 0;
	uint64_t slice = size / nch / 4096 * 4096;
	double t0;

	rc = raw_listen(c->addr, &lfd, &sa, &sl);
	if (rc)
		return rc;
	t0 = now_s();
	for (; open < nch && !rc; open++) {
		uint64_t off = open * slice, len = open + 1 == nch ? size - off : slice;

		rc = raw_pair(lfd, &sa, sl, c->timeout_s * 1000u, &tx[open].fd, &rx[open].fd);
		if (rc)
			break;
		tx[open].p = src + off;
		rx[open].p = dst + off;
		tx[open].len = rx[open].len = len;
	}
	close(lfd);
	if (rc) {
		for (unsigned int i = 0; i < open; i++) {
			close(tx[i].fd);
			close(rx[i].fd);
		}
		return rc;
	}
	for (unsigned int i = 0; i < nch; i++) {
		pthread_create(&rt[i], NULL, raw_recv, &rx[i]);
		pthread_create(&tt[i], NULL, raw_send, &tx[i]);
	}
	for (unsigned int i = 0; i < nch; i++) {
		pthread_join(tt[i], NULL);
		pthread_join(rt[i], NULL);
		rc = rc ? rc : tx[i].rc ? tx[i].rc : rx[i].rc;
		close(tx[i].fd);
		close(rx[i].fd);
	}
	*secs_p = now_s() - t0;
	return rc;
}

/* The timed runs for one channel count, in MiB/s (rmig: whole, and without registration). */
struct bench_runs {
	double rmig[BENCH_RUNS], rmig_data[BENCH_RUNS], reg_s[BENCH_RUNS], raw[BENCH_RUNS];
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *samples)
{
	double v[BENCH_RUNS];

	memcpy(v, samples, sizeof(v));
	qsort(v, BENCH_RUNS, sizeof(v[0]), cmp_double);
	return BENCH_RUNS % 2 ? v[BENCH_RUNS / 2] : (v[BENCH_RUNS / 2 - 1] + v[BENCH_RUNS / 2]) / 2;
}

/*
 * rmig and the raw stream over @nch connections: one untimed run of each,
 * then BENCH_RUNS of each, alternating which goes first. The destination is
 * cleared before every run, outside the clock, so that both find it in the
 * same state and rmig's check cannot pass on bytes an earlier run left.
 */
static int measure(const struct cli *c, unsigned int nch, uint8_t *src, uint8_t *dst,
		   uint64_t size, struct bench_runs *out)
{
	const double mib = (double)size / 1048576.0;
	int rc = 0;

	for (int i = -1; i < BENCH_RUNS && !rc; i++) {
		for (int k = 0; k < 2 && !rc; k++) {
			bool raw = (k == 0) == (i < 0 || i % 2 == 0); /* warm-up: raw first */
			double t = 0, treg = 0;

			memset(dst, 0, size);
			if (raw) {
				rc = run_raw(c, nch, src, dst, size, &t);
				if (rc)
					fprintf(stderr,
						"rdma-migrate bench: raw stream failed: %s\n",
						rmig_strerror(rc));
			} else {
				rc = run_rmig(c, nch, src, dst, size, &t, &treg);
			}
			if (rc)
				break;
			if (c->verbose)
				fprintf(stderr, "rdma-migrate bench: channels %u, %s %d: "
						"%s %.1f MiB/s\n",
					nch, i < 0 ? "warm-up" : "run", i < 0 ? 1 : i + 1,
					raw ? "raw tcp" : "rmig", mib / t);
			if (i < 0)
				continue;
			if (raw) {
				out->raw[i] = mib / t;
			} else {
				out->rmig[i] = mib / t;
				/* what a peer tool that registers first would report */
				out->rmig_data[i] = t > treg ? mib / (t - treg) : 0;
				out->reg_s[i] = treg;
			}
		}
	}
	return rc;
}

static void json_samples(const char *key, const double *v)
{
	printf(",\"%s\":[", key);
	for (unsigned int i = 0; i < BENCH_RUNS; i++)
		printf("%s%.1f", i ? "," : "", v[i]);
	printf("]");
}

int tool_bench(const struct cli *c)
{
	unsigned int list[16], n = 0;
	const char *p = c->channel_list;
	uint8_t *src, *dst;
	uint64_t size = c->size / 4096 * 4096;
	int rc = 0;

	if (tool_bench_check(c))
		return EXIT_USAGE;
	if (c->live || c->postcopy)
		return tool_bench_live(c);

	while (*p && n < 16) {
		char tok[16];
		size_t len = strcspn(p, ",");
		uint64_t v;

		if (len == 0 || len >= sizeof(tok))
			goto bad_list;
		memcpy(tok, p, len);
		tok[len] = '\0';
		if (cli_parse_uint(tok, 1, 64, &v))
			goto bad_list;
		list[n++] = (unsigned int)v;
		p += len + (p[len] == ',');
	}
	if (!n || *p) {
bad_list:
		fprintf(stderr, "rdma-migrate bench: --channel-list '%s': expected N[,N...] with "
				"N in 1..64 (at most 16)\n",
			c->channel_list);
		return EXIT_USAGE;
	}
	if (tool_mem_check("bench", "--size twice (a source and a destination)", 2 * size))
		return EXIT_FAILED;
	src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED) {
		fprintf(stderr, "rdma-migrate bench: cannot map 2 x %" PRIu64 " bytes\n", size);
		return EXIT_FAILED;
	}
	fill_random(src, size);
	memset(dst, 0xff, size); /* fault it in so neither side pays for page faults */
	if (!c->quiet)
		fprintf(stderr,
			"rdma-migrate bench: %" PRIu64 " MiB over %s on %s%s; per channel count, "
			"one untimed run of each, then the median of %d alternated runs each\n",
			size >> 20, strcmp(c->transport, "auto") ? c->transport : "tcp", c->addr,
			c->tls ? " with TLS (the raw stream is plain text)" : "", BENCH_RUNS);
	if (c->json)
		printf("{\"size\":%" PRIu64 ",\"transport\":\"%s\",\"tls\":%s,\"samples\":%d,"
		       "\"runs\":[",
		       size, strcmp(c->transport, "auto") ? c->transport : "tcp",
		       c->tls ? "true" : "false", BENCH_RUNS);
	for (unsigned int i = 0; i < n && !rc; i++) {
		struct bench_runs r;
		double rr, rm, rd, treg;

		rc = measure(c, list[i], src, dst, size, &r);
		if (rc)
			break;
		rr = median(r.raw);
		rm = median(r.rmig);
		rd = median(r.rmig_data);
		treg = median(r.reg_s);
		if (c->json) {
			printf("%s{\"channels\":%u,\"rmig_MiBps\":%.1f,\"rmig_data_MiBps\":%.1f,"
			       "\"registration_s\":%.3f,\"raw_MiBps\":%.1f,\"ratio\":%.3f",
			       i ? "," : "", list[i], rm, rd, treg, rr, rm / rr);
			json_samples("rmig_samples_MiBps", r.rmig);
			json_samples("raw_samples_MiBps", r.raw);
			printf("}");
		} else {
			printf("channels %2u: rmig %8.1f MiB/s (data phase %8.1f, registration "
			       "%.3f s)   raw tcp %8.1f MiB/s   ratio %.3f\n",
			       list[i], rm, rd, treg, rr, rm / rr);
		}
		fflush(stdout);
	}
	if (c->json) { /* a failure says so, as --live's and --postcopy's do */
		printf("],\"ok\":%s,\"error\":", rc ? "false" : "true");
		tool_json_str(stdout, rc ? strerror(rc < 0 ? -rc : rc) : "");
		printf("}\n");
	}
	munmap(src, size);
	munmap(dst, size);
	return rc ? EXIT_FAILED : 0;
}
