/* SPDX-License-Identifier: MIT */
/*
 * rdma-migrate - move memory images and device-state files between two
 * hosts with librmig (send, recv), benchmark a link (bench), and report what
 * RDMA can do here (info).
 */
#define _GNU_SOURCE /* sigabbrev_np */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rmig.h"
#include "tool.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* ---- fault injection (tests/fault/fault-matrix.sh) ---- */

/*
 * RMIG_FAULT=POINT:kill|stop makes this process die (SIGKILL) or stall
 * (SIGSTOP) when it reaches POINT, so that the fault matrix can check what
 * the peer does. Points: send: connected, mid-round, sync, state, complete;
 * recv: handshake, accepted, mid-round, state. bench --postcopy takes
 * postcopy-running:source-dies: its source fails once the destination runs
 * the guest.
 */
void fault_point(const char *point)
{
	const char *f = getenv("RMIG_FAULT");
	size_t n = strlen(point);

	if (!f || strncmp(f, point, n) || f[n] != ':')
		return;
	if (!strcmp(f + n + 1, "kill"))
		raise(SIGKILL);
	else if (!strcmp(f + n + 1, "stop"))
		raise(SIGSTOP);
}

bool tool_fault_armed(const char *point, const char *action)
{
	const char *f = getenv("RMIG_FAULT");
	size_t n = strlen(point);

	return f && !strncmp(f, point, n) && f[n] == ':' && !strcmp(f + n + 1, action);
}

bool fault_armed(const char *point)
{
	const char *f = getenv("RMIG_FAULT");

	return f && !strncmp(f, point, strlen(point)) && f[strlen(point)] == ':';
}

/* ---- progress and statistics ---- */

/* A number from a one-line file; false when absent or "max" (no limit). */
static bool read_u64(const char *path, uint64_t *v)
{
	unsigned long long x;
	FILE *f = fopen(path, "re");
	bool ok = f && fscanf(f, "%llu", &x) == 1;

	if (f)
		fclose(f);
	if (ok)
		*v = x;
	return ok;
}

/*
 * What this process's memory cgroup, and each one above it, still lets it
 * have (a container's --memory, a systemd slice); UINT64_MAX when none is
 * set. cgroup v2 (memory.max) or v1 (memory.limit_in_bytes).
 */
static uint64_t cgroup_room(void)
{
	static const struct {
		const char *ctl, *root, *max, *cur;
	} kind[] = {
		{ "0::", "/sys/fs/cgroup", "memory.max", "memory.current" },
		{ ":memory:", "/sys/fs/cgroup/memory", "memory.limit_in_bytes",
		  "memory.usage_in_bytes" },
	};
	uint64_t room = UINT64_MAX;
	char line[512], dir[1024], file[1200];
	FILE *f = fopen("/proc/self/cgroup", "re");

	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		for (unsigned int k = 0; k < sizeof(kind) / sizeof(kind[0]); k++) {
			const char *at = strstr(line, kind[k].ctl);
			char *slash;

			if (!at || (k == 0 && at != line))
				continue;
			snprintf(dir, sizeof(dir), "%s%s", kind[k].root, at + strlen(kind[k].ctl));
			/* this cgroup and each one above it, to the root */
			for (;;) {
				uint64_t max, cur;

				snprintf(file, sizeof(file), "%s/%s", dir, kind[k].max);
				if (read_u64(file, &max)) {
					snprintf(file, sizeof(file), "%s/%s", dir, kind[k].cur);
					if (!read_u64(file, &cur))
						cur = 0;
					cur = cur < max ? max - cur : 0; /* what is left */
					if (cur < room)
						room = cur;
				}
				slash = strrchr(dir, '/');
				if (!slash || (size_t)(slash - dir) < strlen(kind[k].root))
					break;
				*slash = '\0';
			}
		}
	}
	if (f)
		fclose(f);
	return room;
}

uint64_t tool_mem_available(void)
{
	unsigned long long kib = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");
	uint64_t room;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	/* a limit of the process's own cgroup may be the nearer one */
	room = cgroup_room();
	if (kib && room < (uint64_t)kib * 1024)
		return room ? room : 1;
	return (uint64_t)kib * 1024;
}

int tool_mem_check(const char *who, const char *what, uint64_t bytes)
{
	uint64_t avail = tool_mem_available();
	char need[32], have[32];

	if (!avail || bytes <= avail)
		return 0;
	tool_fmt_bytes(need, sizeof(need), (double)bytes);
	tool_fmt_bytes(have, sizeof(have), (double)avail);
	fprintf(stderr,
		"rdma-migrate %s: %s needs %s of memory, and this process may have %s "
		"(MemAvailable, or its memory cgroup's limit): refusing rather than be "
		"killed for memory\n",
		who, what, need, have);
	return -ENOMEM;
}

void tool_fmt_bytes(char *buf, size_t len, double v)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f %s", v, u[i]);
}

static void progress_line(struct progress *p)
{
	struct rmig_stats st;
	char done[32], total[32], rate[32];
	double secs, bps;
	uint64_t d;

	rmig_get_stats(p->s, &st);
	d = st.handled + st.state_bytes;
	secs = (double)st.duration_ns / 1e9;
	bps = secs > 0 ? (double)d / secs : 0;
	tool_fmt_bytes(done, sizeof(done), (double)d);
	tool_fmt_bytes(total, sizeof(total), (double)p->total);
	tool_fmt_bytes(rate, sizeof(rate), bps);
	if (bps > 0 && p->total > d) {
		unsigned long eta = (unsigned long)((double)(p->total - d) / bps);

		fprintf(stderr, "\r%s / %s  %3.0f%%  %s/s  ETA %lu:%02lu   ", done, total,
			p->total ? 100.0 * (double)d / (double)p->total : 100.0, rate, eta / 60,
			eta % 60);
	} else {
		fprintf(stderr, "\r%s / %s  %3.0f%%  %s/s            ", done, total,
			p->total ? 100.0 * (double)(d < p->total ? d : p->total) / (double)p->total
				 : 100.0,
			rate);
	}
	p->shown = true;
}

static void *progress_thread(void *arg)
{
	struct progress *p = arg;
	struct timespec ts;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 500000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
		if (!p->stop)
			progress_line(p);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void progress_start(struct progress *p, rmig_session *s, uint64_t total, bool quiet)
{
	memset(p, 0, sizeof(*p));
	p->s = s;
	p->total = total;
	if (quiet || !isatty(STDERR_FILENO))
		return;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->active = pthread_create(&p->thread, NULL, progress_thread, p) == 0;
}

void progress_stop(struct progress *p)
{
	if (!p->active)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	if (p->shown)
		fprintf(stderr, "\n");
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	p->active = false;
}

void tool_json_str(FILE *f, const char *str)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f) /* and no raw byte a terminal obeys */
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* @s, which may hold what a peer sent, made safe to print: see rmig_escape(). */
const char *shown(char *buf, size_t len, const char *s)
{
	rmig_escape(buf, len, s);
	return buf;
}

/*
 * ,"placement":[{channel, rail, device, numa_node, cpus, bound}...] and
 * ,"rails":[{rail, address, channels, devices, bytes, MiBps}...] once
 * channels are open
 */
void tool_json_placement(FILE *f, rmig_session *s, unsigned int channels)
{
	struct rmig_chan_place pl;
	struct rmig_stats st;
	struct {
		char addr[48];
		char dev[32];
		unsigned int channels;
	} rail[RMIG_RAILS_MAX] = { 0 };
	unsigned int nrails = 0;
	double secs;

	if (!channels || rmig_get_placement(s, 0, &pl, sizeof(pl)))
		return;
	rmig_get_stats(s, &st);
	secs = (double)st.duration_ns / 1e9;
	fprintf(f, ",\"placement\":[");
	for (unsigned int i = 0; i < channels && !rmig_get_placement(s, i, &pl, sizeof(pl)); i++) {
		fprintf(f, "%s{\"channel\":%u,\"rail\":%u,\"device\":", i ? "," : "", i, pl.rail);
		tool_json_str(f, pl.device);
		fprintf(f, ",\"numa_node\":%d,\"cpus\":", pl.numa_node);
		tool_json_str(f, pl.cpus);
		fprintf(f, ",\"bound\":%s}", pl.bound ? "true" : "false");
		if (pl.rail < RMIG_RAILS_MAX) {
			snprintf(rail[pl.rail].addr, sizeof(rail[pl.rail].addr), "%s", pl.rail_addr);
			snprintf(rail[pl.rail].dev, sizeof(rail[pl.rail].dev), "%s", pl.device);
			rail[pl.rail].channels++;
			nrails = pl.rail + 1 > nrails ? pl.rail + 1 : nrails;
		}
	}
	fprintf(f, "],\"rails\":[");
	for (unsigned int r = 0; r < nrails; r++) {
		fprintf(f, "%s{\"rail\":%u,\"address\":", r ? "," : "", r);
		tool_json_str(f, rail[r].addr);
		fprintf(f, ",\"device\":");
		tool_json_str(f, rail[r].dev);
		fprintf(f, ",\"channels\":%u,\"bytes\":%" PRIu64 ",\"MiBps\":%.2f}",
			rail[r].channels, st.rail_bytes[r],
			secs > 0 ? (double)st.rail_bytes[r] / secs / 1048576.0 : 0.0);
	}
	fprintf(f, "]");
}

void tool_print_json(FILE *f, const char *role, rmig_session *s, int rc, bool verified,
		     unsigned int resumes)
{
	struct rmig_stats st;
	double secs;

	rmig_get_stats(s, &st);
	secs = (double)st.duration_ns / 1e9;
	fprintf(f,
		"{\"role\":\"%s\",\"ok\":%s,\"transport\":\"%s\",\"channels\":%u,"
		"\"bytes\":%" PRIu64 ",\"ram_bytes_handled\":%" PRIu64 ",\"pages\":%" PRIu64
		",\"zero_pages\":%" PRIu64 ",\"state_bytes\":%" PRIu64 ",\"blobs\":%" PRIu64
		",\"syncs\":%" PRIu64 ",\"duration_s\":%.6f,\"throughput_MiBps\":%.2f"
		",\"registration_s\":%.6f,\"verified\":%s,\"rails_down\":%" PRIu64
		",\"resumes\":%u,\"failovers\":%" PRIu64 ",\"failover_pages\":%" PRIu64
		",\"tcp_fallback\":%s,\"per_channel_bytes\":[",
		role, rc ? "false" : "true", rmig_transport_name(st.transport), st.channels, st.bytes,
		st.handled, st.pages, st.zero_pages, st.state_bytes, st.blobs, st.syncs, secs,
		secs > 0 ? (double)(st.handled + st.state_bytes) / secs / 1048576.0 : 0.0,
		(double)st.reg_ns / 1e9, verified ? "true" : "false", st.rails_down, resumes,
		st.failovers, st.failover_pages, st.tcp_fallbacks ? "true" : "false");
	for (unsigned int i = 0; i < st.channels; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", st.chan[i].bytes);
	fprintf(f, "]");
	tool_json_placement(f, s, st.channels);
	if (rc) {
		fprintf(f, ",\"error\":");
		tool_json_str(f, rmig_last_error(s));
	}
	fprintf(f, "}\n");
}

/* @images: bytes of the destination's images (0: not a destination). */
void summary(const char *verb, rmig_session *s, bool verified, uint64_t images)
{
	struct rmig_stats st;
	char bytes[32], rate[32];
	double secs;

	rmig_get_stats(s, &st);
	secs = (double)st.duration_ns / 1e9;
	tool_fmt_bytes(bytes, sizeof(bytes), (double)(st.handled + st.state_bytes));
	tool_fmt_bytes(rate, sizeof(rate),
		       secs > 0 ? (double)(st.handled + st.state_bytes) / secs : 0);
	char zeros[96] = "";

	/* Only the source knows which pages went as zero markers. */
	if (!strcmp(verb, "sent") || !strcmp(verb, "saved"))
		snprintf(zeros, sizeof(zeros), ", %" PRIu64 " zero pages", st.zero_pages);
	/*
	 * Over RDMA the source writes RAM straight into this side's memory:
	 * no byte of it passes through the destination, which counts only
	 * what came as messages (zero-page markers, device state, postcopy).
	 */
	if (!strcmp(verb, "received") && st.transport == RMIG_TRANSPORT_RDMA) {
		fprintf(stderr,
			"rdma-migrate: received in %.2f s over rdma, %u channels: RAM by one-sided "
			"writes (the source counts their bytes), %s by messages, %" PRIu64 " blobs\n",
			secs, st.channels, bytes, st.blobs);
		return;
	}
	/* a destination that reads as zero is not sent the zero pages it never had */
	if (images > st.handled) {
		char all[32];

		tool_fmt_bytes(all, sizeof(all), (double)images);
		snprintf(zeros, sizeof(zeros), " (images %s: zero pages need no data)", all);
	}
	fprintf(stderr,
		"rdma-migrate: %s %s in %.2f s (%s/s) %s %s, %u channels%s, %" PRIu64
		" blobs%s\n",
		verb, bytes, secs, rate,
		st.transport != RMIG_TRANSPORT_FILE ? "over" : strcmp(verb, "restored") ? "to" : "from",
		st.transport == RMIG_TRANSPORT_FILE ? "the file" : rmig_transport_name(st.transport),
		st.channels, zeros, st.blobs, verified ? ", verified" : "");
}

/* @arg: NULL, or a side's name to prefix (two sessions in one process). */
static void log_cb(void *arg, enum rmig_log_level level, const char *msg)
{
	fprintf(stderr, "rdma-migrate: %s%s%s%s\n", arg ? (const char *)arg : "", arg ? ": " : "",
		level == RMIG_LOG_ERROR ? "error: " :
						level == RMIG_LOG_WARN	? "warning: " :
									  "",
		msg);
}

void tool_opts(struct rmig_opts *o, const struct cli *c, enum rmig_role role)
{
	rmig_opts_init(o, sizeof(*o));
	o->role = role;
	o->timeout_ms = c->timeout_s * 1000u;
	if (c->extent)
		o->extent_max = (uint32_t)c->extent;
	if (c->channels)
		o->channels = c->channels;
	if (c->inflight)
		o->inflight_max = c->inflight;
	if (c->transport)
		o->transport = !strcmp(c->transport, "tcp")    ? RMIG_TRANSPORT_TCP :
			       !strcmp(c->transport, "rdma") ? RMIG_TRANSPORT_RDMA :
							       RMIG_TRANSPORT_AUTO;
	o->max_bandwidth = c->max_bandwidth;
	if (c->rails && role == RMIG_ROLE_SOURCE)
		snprintf(o->rails, sizeof(o->rails), "%s", c->rails); /* checked: < 256 bytes */
	o->key = c->key_len ? c->key : NULL;
	o->key_len = c->key_len;
	if (c->downtime_ms)
		o->downtime_limit_ms = c->downtime_ms;
	if (c->cmd == CMD_BENCH || c->cmd == CMD_VM_SEND)
		o->max_rounds = c->max_rounds;
	if (c->switch_anyway)
		o->flags |= RMIG_F_SWITCH_ANYWAY;
	if (c->tls)
		o->flags |= RMIG_F_TLS;
	if (c->direct)
		o->flags |= RMIG_F_DIRECT;
	if (c->no_bind)
		o->flags |= RMIG_F_NO_BIND;
	if (c->no_fallback)
		o->flags |= RMIG_F_NO_FALLBACK;
	o->log_fn = log_cb;
	/* the images are fresh mappings: populate them ahead of the channels */
	o->flags |= RMIG_F_PREPARE;
	o->log_level = c->verbose > 1 ? RMIG_LOG_DEBUG : c->verbose ? RMIG_LOG_INFO : RMIG_LOG_WARN;
}

_Static_assert(CLI_KEY_MIN == RMIG_KEY_MIN && CLI_KEY_MAX == RMIG_KEY_MAX, "key bounds");
_Static_assert(CLI_NAME_MAX == RMIG_NAME_MAX, "name bound");
_Static_assert(CLI_HOST_MAX == RMIG_HOST_MAX - 1, "host bound");

/*
 * SIGINT, SIGTERM, SIGHUP during send, recv, save or restore: the session is
 * cancelled, so that the peer reads why, the command cleans up as after any
 * failure (a save removes its incomplete file, recv the blobs it staged),
 * and then the process ends by the signal as before. A second one ends it
 * at once. The signals are blocked in every thread and taken by one of
 * their own, so no handler runs inside the library.
 */
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static rmig_session *sig_sess;
static atomic_int sig_got;
static sigset_t sig_set;

static void die_by(int sig)
{
	sigset_t one;

	fflush(stdout);
	signal(sig, SIG_DFL);
	sigemptyset(&one);
	sigaddset(&one, sig);
	pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	raise(sig);
	_exit(128 + sig);
}

static void *sig_main(void *arg)
{
	(void)arg;
	for (;;) {
		char why[64];
		int sig;

		if (sigwait(&sig_set, &sig))
			continue;
		if (atomic_exchange(&sig_got, sig))
			die_by(sig);
		pthread_mutex_lock(&sig_lock);
		if (!sig_sess) /* nothing under way to end cleanly */
			die_by(sig);
		snprintf(why, sizeof(why), "interrupted by SIG%s", sigabbrev_np(sig));
		fprintf(stderr, "rdma-migrate: %s: cancelling (again to end at once)\n", why);
		rmig_cancel(sig_sess, why);
		pthread_mutex_unlock(&sig_lock);
	}
	return NULL;
}

static void signals_start(void)
{
	pthread_t th;

	sigemptyset(&sig_set);
	for (unsigned int i = 0; i < 3; i++) {
		static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
		struct sigaction cur;

		/* ignored when we started (nohup; SIGINT of a script's & job): left so */
		if (sigaction(sigs[i], NULL, &cur) == 0 && cur.sa_handler == SIG_IGN)
			continue;
		sigaddset(&sig_set, sigs[i]);
	}
	/* before any thread starts: they all inherit the mask */
	if (pthread_sigmask(SIG_BLOCK, &sig_set, NULL) == 0 &&
	    pthread_create(&th, NULL, sig_main, NULL) == 0)
		pthread_detach(th);
	else
		pthread_sigmask(SIG_UNBLOCK, &sig_set, NULL);
}

void tool_session(rmig_session *s)
{
	pthread_mutex_lock(&sig_lock);
	sig_sess = s;
	pthread_mutex_unlock(&sig_lock);
}

const char *tool_bound_addr(char *buf, size_t len, const char *listen, int port)
{
	const char *colon = strrchr(listen, ':');

	snprintf(buf, len, "%.*s:%d", colon ? (int)(colon - listen) : (int)strlen(listen), listen,
		 port);
	return buf;
}

bool tool_interrupted(void)
{
	return atomic_load(&sig_got) != 0;
}

const char *tool_interrupt_why(void)
{
	static char why[64];
	int sig = atomic_load(&sig_got);

	snprintf(why, sizeof(why), "interrupted by SIG%s", sig ? sigabbrev_np(sig) : "?");
	return why;
}

static int run(int argc, char **argv)
{
	static uint8_t key[CLI_KEY_MAX];
	unsigned int cmd = 0;
	struct cli c;

	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("rdma-migrate %s\n", RMIG_TOOL_VERSION);
		return 0;
	}
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_usage(argc < 2 ? stderr : stdout, 0);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	for (unsigned int k = CMD_SEND; k <= CMD_LAST; k <<= 1)
		if (!strcmp(argv[1], cli_cmd_name(k)))
			cmd = k;
	if (!cmd) {
		fprintf(stderr, "rdma-migrate: unknown command '%s'\n", argv[1]);
		cli_usage(stderr, 0);
		return EXIT_USAGE;
	}
	if (cli_parse(&c, cmd, argc - 2, argv + 2)) {
		fprintf(stderr, "see 'rdma-migrate %s --help'\n", argv[1]);
		return EXIT_USAGE;
	}
	if (c.help) {
		cli_usage(stdout, cmd);
		return 0;
	}
	if (cli_load_key(&c, key, &c.key_len))
		return EXIT_USAGE;
	c.key = key;
	if (cmd & (CMD_SEND | CMD_RECV | CMD_SAVE | CMD_RESTORE))
		signals_start();
	/* librdmacm's device scan, on a thread, while the images are prepared or the peer comes */
	if ((cmd & (CMD_SEND | CMD_RECV | CMD_VM_SEND | CMD_VM_RECV)) && !c.tls &&
	    !(c.transport && !strcmp(c.transport, "tcp")))
		rmig_preload();
	switch (cmd) {
	case CMD_SEND:
		return cmd_send(&c);
	case CMD_RECV:
	case CMD_RESTORE:
		return cmd_recv(&c);
	case CMD_SAVE:
		return cmd_save(&c);
	case CMD_BENCH:
		return tool_bench(&c);
	case CMD_VM_SEND:
		return tool_vm_send(&c);
	case CMD_VM_RECV:
		return tool_vm_recv(&c);
	default:
		return tool_info(&c);
	}
}

int main(int argc, char **argv)
{
	int rc;

	signal(SIGPIPE, SIG_IGN);
	rc = run(argc, argv);
	if (atomic_load(&sig_got)) /* cleaned up: now end as the signal asked */
		die_by(atomic_load(&sig_got));
	/*
	 * What went to standard output (--json, info, --help) must have
	 * arrived: a full disk or a closed pipe there is an error, not an
	 * exit 0 with the results lost.
	 */
	if (fflush(stdout) || ferror(stdout)) {
		fprintf(stderr, "rdma-migrate: writing standard output: %s\n",
			errno ? strerror(errno) : "write error");
		if (!rc)
			rc = 1;
	}
	return rc;
}
