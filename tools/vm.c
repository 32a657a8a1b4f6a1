/* SPDX-License-Identifier: MIT */
/*
 * vm.c - `rdma-migrate vm-send` and `vm-recv`: live-migrate an unmodified
 * QEMU VM with rmig moving its RAM.
 *
 * QEMU keeps guest RAM in memory-backend-file objects with share=on, so
 * this process can map the same pages. With the x-ignore-shared capability
 * QEMU's own migration stream carries only the device state and the small
 * non-shared blocks (ROMs, ACPI tables); pause-before-switchover gives an
 * ordering point after the VM has stopped and before the devices are
 * serialised. The source side:
 *
 *   1. rmig rounds while the guest runs, the pages the guest wrote found
 *      by sdtrack.h (the kernel's soft-dirty bits in QEMU's page tables:
 *      no copy of the RAM) or vmtrack.h (a shadow copy of the RAM: exact
 *      on any kernel), as --track says;
 *   2. once rmig_estimate() says the rest fits the downtime limit: QEMU
 *      `migrate fd:` into a socket this process reads; QEMU stops the VM and
 *      waits in pre-switchover;
 *   3. the last round, with the guest stopped;
 *   4. migrate-continue: QEMU writes the device state; it goes to the
 *      destination as one device-state blob over the data channels;
 *   5. rmig_complete(): the destination has fed the stream to its QEMU
 *      (migrate-incoming fd:) and QEMU reported completed; it runs `cont`.
 *
 * A failure before the destination took over leaves the source VM running
 * (migrate_cancel, or cont after a completed QEMU stream); on the
 * destination the VM stays paused and the message says so.
 */
#define _GNU_SOURCE /* SEEK_DATA */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "image.h"
#include "qmp.h"
#include "sdtrack.h"
#include "tool.h"
#include "vmtrack.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define VM_BLOCKS_MAX 32
#define DEV_BLOB "qemu-device-state"
#define DEV_FD "rmig-device-state"

struct vmblock {
	char name[RMIG_NAME_MAX];
	char path[4096];
	int fd;
	uint8_t *map;
	uint64_t len;
	uint32_t page;
	struct vmtrack tr; /* source, tracking by shadow compare */
};

struct vm {
	const struct cli *c;
	struct qmp *q;
	struct vmblock b[VM_BLOCKS_MAX];
	unsigned int n;
	struct sdtrack sd; /* source, tracking by soft-dirty bits (sdon) */
	bool sdon;
	char tracking[320]; /* how the source tracks, and why */
	char err[1024];
	bool touched; /* destination: a source's layout was taken, its RAM may have changed */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned int tmo(const struct cli *c)
{
	return c->timeout_s * 1000u;
}

static void say(const struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	if (c->quiet)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "rdma-migrate: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* ---- QEMU's RAM ---- */

static void blocks_close(struct vm *v)
{
	sdtrack_close(&v->sd);
	v->sdon = false;
	for (unsigned int i = 0; i < v->n; i++) {
		vmtrack_free(&v->b[i].tr);
		if (v->b[i].map)
			munmap(v->b[i].map, v->b[i].len);
		if (v->b[i].fd >= 0)
			close(v->b[i].fd);
	}
	v->n = 0;
}

/*
 * Does block @b's file hold no data at all (a file QEMU created and sized,
 * never written: every page reads as zero)? Then the destination can say
 * RMIG_F_ZEROED, and zero pages are neither sent nor allocated here. A
 * file system without SEEK_DATA, or any data, answers false.
 */
static bool block_reads_zero(const struct vmblock *b)
{
	off_t d = lseek(b->fd, 0, SEEK_DATA);

	if (d < 0)
		return errno == ENXIO;
	return (uint64_t)d >= b->len;
}

/*
 * A destination whose RAM files hold no data gets only the pages with data
 * written, so populating all of them ahead (RMIG_F_PREPARE) would allocate,
 * clear and map the zero pages for nothing: on this host's kind of VM, each
 * fresh page also costs the hypervisor a fault. The room is reserved
 * instead (fallocate: allocated, not cleared or mapped), so that a file
 * system too small is a clear error now, not a SIGBUS mid-migration. Where
 * the file system cannot reserve, RMIG_F_PREPARE stays.
 */
static int reserve_blocks(struct vm *v, struct rmig_opts *o)
{
	for (unsigned int i = 0; i < v->n; i++) {
		struct vmblock *b = &v->b[i];

		if (fallocate(b->fd, 0, 0, (off_t)b->len) == 0)
			continue;
		if (errno == EOPNOTSUPP || errno == ENOSYS)
			return 0;
		snprintf(v->err, sizeof(v->err),
			 "RAM file %s of backend '%s': no room for its %" PRIu64 " bytes: %s",
			 b->path, b->name, b->len, strerror(errno));
		return -ENOSPC;
	}
	o->flags &= ~RMIG_F_PREPARE;
	return 0;
}

/* Map every RAM backend of the QEMU behind v->q; refuse what rmig cannot share. */
static int blocks_open(struct vm *v, const char *side)
{
	bool source = !strcmp(side, "source");
	static struct qmp_backend be[VM_BLOCKS_MAX];
	unsigned int n = 0;
	int rc = qmp_backends(v->q, be, VM_BLOCKS_MAX, &n, v->err, sizeof(v->err));

	if (rc)
		return rc;
	if (!n) {
		snprintf(v->err, sizeof(v->err),
			 "the %s QEMU has no memory backend: start it with -object "
			 "memory-backend-file,id=ram0,size=SIZE,mem-path=FILE,share=on -machine "
			 "memory-backend=ram0",
			 side);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < n; i++) {
		struct vmblock *b = &v->b[v->n];
		struct stat st;

		if (strcmp(be[i].type, "memory-backend-file") || !be[i].mem_path[0]) {
			snprintf(v->err, sizeof(v->err),
				 "the %s QEMU's RAM backend '%s' is a %s: rmig moves only "
				 "memory-backend-file with share=on",
				 side, be[i].id, be[i].type);
			return -EINVAL;
		}
		if (!be[i].share) {
			snprintf(v->err, sizeof(v->err),
				 "the %s QEMU's RAM backend '%s' (%s) has share=off: QEMU must map "
				 "its RAM file shared (share=on) for rmig to see the guest's pages",
				 side, be[i].id, be[i].mem_path);
			return -EINVAL;
		}
		if (strlen(be[i].id) >= RMIG_NAME_MAX) {
			snprintf(v->err, sizeof(v->err), "RAM backend id '%s' is longer than %d bytes",
				 be[i].id, RMIG_NAME_MAX - 1);
			return -EINVAL;
		}
		memset(b, 0, sizeof(*b));
		b->fd = -1;
		snprintf(b->name, sizeof(b->name), "%s", be[i].id);
		snprintf(b->path, sizeof(b->path), "%s", be[i].mem_path);
		b->len = be[i].size;
		v->n++;
		/* writable: RDMA pins only writable mappings; the source never writes */
		b->fd = open(b->path, O_RDWR | O_CLOEXEC);
		if (b->fd < 0 || fstat(b->fd, &st) < 0) {
			rc = -errno;
			snprintf(v->err, sizeof(v->err), "RAM file %s of backend '%s': %s", b->path,
				 b->name, strerror(errno));
			return rc;
		}
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < b->len) {
			snprintf(v->err, sizeof(v->err),
				 "RAM file %s of backend '%s': not a regular file of %" PRIu64
				 " bytes (a mem-path directory is not supported: name a file)",
				 b->path, b->name, b->len);
			return -EINVAL;
		}
		/*
		 * The destination holds its RAM files alone, the source shares
		 * them: two QEMUs on one host given the same mem-path would have
		 * vm-recv write stale copies of pages into the running source
		 * guest's RAM. Nothing is moved then (x-ignore-shared alone does
		 * that migration); recv, send and save take the same locks.
		 */
		if (flock(b->fd, (source ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0 &&
		    errno == EWOULDBLOCK) {
			snprintf(v->err, sizeof(v->err),
				 "RAM file %s of backend '%s' is in use by another rdma-migrate "
				 "(%s): refusing to %s it; on one host, the source and destination "
				 "QEMUs must not share a RAM file",
				 b->path, b->name,
				 source ? "a vm-recv or recv writing into it" : "a vm-send reading it, "
				 "or a vm-recv or recv writing into it",
				 source ? "read" : "write into");
			return -EBUSY;
		}
		b->page = image_page_size(b->fd);
		b->map = mmap(NULL, b->len, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
		if (b->map == MAP_FAILED) {
			rc = -errno;
			b->map = NULL;
			snprintf(v->err, sizeof(v->err), "mapping %s: %s", b->path, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

static int set_caps(struct vm *v, bool source)
{
	json_t *caps = json_pack("[{s:s, s:b}]", "capability", "x-ignore-shared", "state", 1);

	if (source)
		json_array_append_new(caps, json_pack("{s:s, s:b}", "capability",
						      "pause-before-switchover", "state", 1));
	return qmp_exec(v->q, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", caps),
			NULL, v->err, sizeof(v->err));
}

static int run_state(struct vm *v, char *state, size_t len)
{
	json_t *r = NULL;
	int rc = qmp_exec(v->q, "query-status", NULL, &r, v->err, sizeof(v->err));
	const char *st = rc ? NULL : json_string_value(json_object_get(r, "status"));

	if (!rc && !st) {
		snprintf(v->err, sizeof(v->err), "query-status: no status in the reply");
		rc = -EBADMSG;
	}
	if (!rc)
		snprintf(state, len, "%s", st);
	json_decref(r);
	return rc;
}

/*
 * A QEMU that dies while rmig moves its RAM is noticed by no QMP call: a
 * thread looks for its pid every 100 ms and cancels the session, naming it.
 */
struct watch {
	rmig_session *s;
	int pid;
	const char *side;
	pthread_t th;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled by watch_stop(): no sleep to sit out */
	bool stop;
};

static void *watch_main(void *arg)
{
	struct watch *w = arg;

	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		struct timespec ts;

		if (kill(w->pid, 0) < 0 && errno == ESRCH) {
			char why[128];

			pthread_mutex_unlock(&w->lock);
			snprintf(why, sizeof(why), "the %s QEMU (pid %d) exited", w->side, w->pid);
			rmig_cancel(w->s, why);
			return NULL;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&w->cond, &w->lock, &ts);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void watch_start(struct watch *w, struct vm *v, rmig_session *s, const char *side)
{
	memset(w, 0, sizeof(*w));
	w->s = s;
	w->side = side;
	w->pid = qmp_peer_pid(v->q);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	if (w->pid > 0)
		w->started = !pthread_create(&w->th, NULL, watch_main, w);
}

static void watch_stop(struct watch *w)
{
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->th, NULL);
		w->started = false;
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
}

/* ---- vm-send ---- */

/* QEMU's stream (device state, non-shared blocks), read to EOF on a thread. */
struct devstream {
	int fd;
	pthread_t th;
	bool started;
	uint8_t *buf;
	size_t len, cap;
	int rc;
};

static void *devstream_main(void *arg)
{
	struct devstream *d = arg;

	for (;;) {
		ssize_t n;

		if (d->len == d->cap) {
			size_t cap = d->cap ? d->cap * 2 : 1 << 20;
			uint8_t *nb = realloc(d->buf, cap);

			if (!nb) {
				d->rc = -ENOMEM;
				break;
			}
			d->buf = nb;
			d->cap = cap;
		}
		n = read(d->fd, d->buf + d->len, d->cap - d->len);
		if (n > 0) {
			d->len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		d->rc = n < 0 ? -errno : 0;
		break;
	}
	return NULL;
}

struct send_report {
	unsigned int rounds;
	uint64_t t_start, t_conn, t_collect1, t_round1, t_stop, t_final, t_stream, t_done;
	uint64_t final_pages, dev_bytes;
	uint64_t skipped_pages; /* tests only: the last round's pages not sent */
	struct rmig_estimate last;
};

/* One collect over every block, split across the CPUs: it runs inside the downtime. */
struct collect_part {
	struct vm *v;
	unsigned int idx, n;
	bool all, keep;
	pthread_t th;
};

static void *collect_part_main(void *arg)
{
	struct collect_part *p = arg;

	for (unsigned int i = 0; i < p->v->n; i++) {
		struct vmtrack *t = &p->v->b[i].tr;
		uint64_t per = (t->npages / p->n + VMTRACK_ALIGN - 1) / VMTRACK_ALIGN * VMTRACK_ALIGN;

		vmtrack_collect_range(t, per * p->idx, per, p->all, p->keep);
	}
	return NULL;
}

/* One collect: maps[i] marks block i's pages to send. 0, or -errno with v->err. */
static int collect(struct vm *v, unsigned long **maps, bool all, bool keep)
{
	struct collect_part part[8];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int n = cpus < 1 ? 1 : cpus > 8 ? 8 : (unsigned int)cpus, started = 1;

	if (v->sdon) {
		int rc = sdtrack_collect(&v->sd, all, keep, NULL, v->err, sizeof(v->err));

		if (rc == -ESRCH)
			snprintf(v->err, sizeof(v->err), "the source QEMU (pid %d) exited",
				 (int)v->sd.pid);
		for (unsigned int i = 0; i < v->n; i++)
			maps[i] = v->sd.b[i].map;
		return rc;
	}
	for (unsigned int i = 0; i < n; i++)
		part[i] = (struct collect_part){ .v = v, .idx = i, .n = n, .all = all, .keep = keep };
	for (unsigned int i = 1; i < n; i++, started++)
		if (pthread_create(&part[i].th, NULL, collect_part_main, &part[i]))
			break;
	if (started < n) { /* no thread: this one does the ranges left over */
		for (unsigned int i = started; i < n; i++)
			collect_part_main(&part[i]);
	}
	collect_part_main(&part[0]);
	for (unsigned int i = 1; i < started; i++)
		pthread_join(part[i].th, NULL);
	for (unsigned int i = 0; i < v->n; i++)
		maps[i] = v->b[i].tr.map;
	return 0;
}

/* Words in block i's map. */
static size_t map_longs(const struct vm *v, unsigned int i)
{
	return v->sdon ? v->sd.b[i].nlongs : v->b[i].tr.nlongs;
}

/*
 * Soft-dirty bits when --track allows and they work on QEMU's mappings (for
 * auto: and the RAM cannot be reclaimed between two collects), else a
 * shadow copy of each block. 0, or -errno with v->err.
 */
static int track_open(struct vm *v)
{
	const char *want = v->c->track ? v->c->track : "auto";
	uint64_t shadow = 0, avail;
	char why[256] = "";
	int rc = 0;

	if (strcmp(want, "shadow")) {
		pid_t pid = qmp_peer_pid(v->q);

		rc = sdtrack_open(&v->sd, pid, why, sizeof(why));
		for (unsigned int i = 0; i < v->n && !rc; i++)
			rc = sdtrack_add(&v->sd, v->b[i].fd, v->b[i].len, v->b[i].page, why,
					 sizeof(why));
		if (!rc && sdtrack_reclaim_risk(&v->sd, why, sizeof(why))) {
			if (!strcmp(want, "auto"))
				rc = -EAGAIN;
			else
				say(v->c, "warning: --track soft-dirty: %s; a page written, reclaimed "
					  "and faulted back between two rounds would be missed", why);
		}
		if (!rc) {
			v->sdon = true;
			snprintf(v->tracking, sizeof(v->tracking),
				 "soft-dirty bits of QEMU (pid %d)", (int)pid);
			return 0;
		}
		sdtrack_close(&v->sd);
		if (!strcmp(want, "soft-dirty")) {
			snprintf(v->err, sizeof(v->err), "--track soft-dirty: %s", why);
			return rc;
		}
	}
	/* the shadow is a copy of guest RAM: more than there is would end in the OOM killer */
	for (unsigned int i = 0; i < v->n; i++)
		shadow += v->b[i].len;
	avail = tool_mem_available();
	if (avail && shadow > avail) {
		snprintf(v->err, sizeof(v->err),
			 "no memory for the shadow compare: a copy of guest RAM needs %" PRIu64
			 " bytes, this process may have %" PRIu64 " (MemAvailable, or its memory "
			 "cgroup's limit)%s%s",
			 shadow, avail, why[0] ? "; no soft-dirty tracking: " : "", why);
		return -ENOMEM;
	}
	for (unsigned int i = 0; i < v->n; i++) {
		rc = vmtrack_init(&v->b[i].tr, v->b[i].map, v->b[i].len, v->b[i].page);
		if (rc) {
			snprintf(v->err, sizeof(v->err),
				 "no memory for the shadow of '%s' (%" PRIu64 " bytes)%s%s",
				 v->b[i].name, v->b[i].len, why[0] ? "; no soft-dirty tracking: " : "",
				 why);
			return rc;
		}
	}
	snprintf(v->tracking, sizeof(v->tracking), "shadow compare%s%s%s",
		 why[0] ? " (soft-dirty: " : "", why, why[0] ? ")" : "");
	return 0;
}

static int vm_send_run(struct vm *v, rmig_session *s, struct send_report *R, bool *migrating_p,
		       bool *completed_p)
{
	const struct cli *c = v->c;
	unsigned long *maps[VM_BLOCKS_MAX];
	struct rmig_round_stats st;
	struct devstream d = { .fd = -1 };
	char status[64];
	int sv[2] = { -1, -1 }, rc;

	/* round 1: all of RAM, while the guest runs */
	rc = collect(v, maps, true, false);
	R->t_collect1 = now_ns();
	if (!rc)
		rc = rmig_send_round(s, (const unsigned long *const *)maps, v->n, &st);
	R->t_round1 = now_ns();
	while (!rc) {
		R->rounds++;
		if (c->verbose)
			say(c, "round %u: %" PRIu64 " pages, %.1f ms", R->rounds, st.pages,
			    (double)st.duration_ns / 1e6);
		rc = collect(v, maps, false, false);
		if (rc)
			break;
		rc = rmig_estimate(s, (const unsigned long *const *)maps, v->n, 1 << 20, &R->last);
		if (rc || R->last.decision != RMIG_DECIDE_ROUND)
			break;
		rc = rmig_send_round(s, (const unsigned long *const *)maps, v->n, &st);
	}
	if (rc)
		return rc;
	if (R->last.decision == RMIG_DECIDE_GIVE_UP) {
		snprintf(v->err, sizeof(v->err),
			 "did not converge: expected downtime %.1f ms over the %u ms limit after %u "
			 "rounds (the VM keeps running here; raise --downtime or --max-rounds, or "
			 "--switch-anyway)",
			 (double)R->last.expected_downtime_ns / 1e6, c->downtime_ms, R->last.rounds);
		rmig_cancel(s, "the VM did not converge");
		return -ECANCELED;
	}
	/* switchover: QEMU's own stream goes into a socket read by a thread */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	d.fd = sv[0];
	rc = qmp_getfd(v->q, DEV_FD, sv[1], v->err, sizeof(v->err));
	close(sv[1]);
	if (!rc) {
		rc = -pthread_create(&d.th, NULL, devstream_main, &d);
		d.started = !rc;
	}
	if (!rc)
		rc = qmp_exec(v->q, "migrate", json_pack("{s:s}", "uri", "fd:" DEV_FD), NULL,
			      v->err, sizeof(v->err));
	if (!rc) {
		*migrating_p = true;
		rc = qmp_wait_status(v->q, "pre-switchover", tmo(c), status, sizeof(status), v->err,
				     sizeof(v->err));
	}
	if (rc)
		goto out;
	/* the VM is stopped: the downtime runs */
	R->t_stop = now_ns();
	rc = rmig_switchover(s);
	/* with the pages the estimate collected (and the shadow holds), unsent */
	if (!rc)
		rc = collect(v, maps, false, true);
	if (getenv("RMIG_VM_TEST_SKIP_FINAL")) { /* tests only: the negative control */
		for (unsigned int i = 0; i < v->n; i++) {
			for (size_t k = 0; k < map_longs(v, i); k++)
				R->skipped_pages += (uint64_t)__builtin_popcountl(maps[i][k]);
			memset(maps[i], 0, map_longs(v, i) * sizeof(unsigned long));
		}
	}
	if (!rc)
		rc = rmig_send_round(s, (const unsigned long *const *)maps, v->n, &st);
	R->final_pages = st.pages;
	R->t_final = now_ns();
	if (!rc)
		rc = qmp_exec(v->q, "migrate-continue", json_pack("{s:s}", "state", "pre-switchover"),
			      NULL, v->err, sizeof(v->err));
	if (!rc)
		rc = qmp_wait_status(v->q, "completed", tmo(c), status, sizeof(status), v->err,
				     sizeof(v->err));
	if (rc)
		goto out;
	*completed_p = true;
	pthread_join(d.th, NULL);
	d.started = false;
	rc = d.rc;
	if (rc) {
		snprintf(v->err, sizeof(v->err), "reading QEMU's device state: %s", strerror(-rc));
		goto out;
	}
	R->t_stream = now_ns();
	R->dev_bytes = d.len;
	rc = rmig_send_state(s, DEV_BLOB, 0, d.buf, d.len);
	if (!rc)
		rc = rmig_complete(s);
	R->t_done = now_ns();
out:
	if (d.started) {
		shutdown(d.fd, SHUT_RDWR);
		pthread_join(d.th, NULL);
	}
	if (d.fd >= 0)
		close(d.fd);
	free(d.buf);
	return rc;
}

static void print_send_json(const struct vm *v, rmig_session *s, const struct send_report *R,
			    int rc)
{
	struct rmig_stats st;

	rmig_get_stats(s, &st);
	printf("{\"role\":\"vm-source\",\"ok\":%s,\"transport\":\"%s\",\"channels\":%u,"
	       "\"tracking\":\"%s\",\"blocks\":%u,\"rounds\":%u,\"ram_bytes\":%" PRIu64
	       ",\"total_s\":%.6f,\"downtime_ms\":%.3f,\"final_round_ms\":%.3f,"
	       "\"final_pages\":%" PRIu64 ",\"setup_ms\":%.3f,\"registration_ms\":%.3f,"
	       "\"first_round_ms\":%.3f,\"first_collect_ms\":%.3f,"
	       "\"device_state_bytes\":%" PRIu64
	       ",\"device_state_ms\":%.3f,\"load_and_ack_ms\":%.3f,\"skipped_pages\":%" PRIu64,
	       rc ? "false" : "true", rmig_transport_name(st.transport), st.channels,
	       v->sdon ? "soft-dirty" : "shadow-compare", v->n,
	       R->rounds, st.bytes, (double)((R->t_done ? R->t_done : now_ns()) - R->t_start) / 1e9,
	       R->t_done && R->t_stop ? (double)(R->t_done - R->t_stop) / 1e6 : 0.0,
	       R->t_final && R->t_stop ? (double)(R->t_final - R->t_stop) / 1e6 : 0.0,
	       R->final_pages,
	       R->t_conn ? (double)(R->t_conn - R->t_start) / 1e6 : 0.0, (double)st.reg_ns / 1e6,
	       R->t_round1 && R->t_conn ? (double)(R->t_round1 - R->t_conn) / 1e6 : 0.0,
	       R->t_collect1 && R->t_conn ? (double)(R->t_collect1 - R->t_conn) / 1e6 : 0.0,
	       R->dev_bytes,
	       R->t_stream && R->t_final ? (double)(R->t_stream - R->t_final) / 1e6 : 0.0,
	       R->t_done && R->t_stream ? (double)(R->t_done - R->t_stream) / 1e6 : 0.0,
	       R->skipped_pages);
	printf(",\"tracking_why\":");
	tool_json_str(stdout, v->tracking);
	if (v->sdon)
		printf(",\"freezes\":%u,\"freeze_ms_max\":%.3f,\"freeze_ms_mean\":%.3f",
		       v->sd.collects, (double)v->sd.freeze_ns_max / 1e6,
		       v->sd.collects ? (double)v->sd.freeze_ns_sum / v->sd.collects / 1e6 : 0.0);
	tool_json_placement(stdout, s, st.channels);
	if (rc) {
		printf(",\"error\":");
		tool_json_str(stdout, v->err[0] ? v->err : rmig_last_error(s));
	}
	printf("}\n");
}

/* --json of a command that failed before it had a session. */
static void json_early(FILE *f, const char *role, const char *why)
{
	fprintf(f, "{\"role\":\"%s\",\"ok\":false,\"error\":", role);
	tool_json_str(f, why);
	fprintf(f, "}\n");
}

int tool_vm_send(const struct cli *c)
{
	static struct vm v;
	struct send_report R = { 0 };
	struct rmig_opts o;
	rmig_session *s = NULL;
	bool migrating = false, completed = false;
	int rc, ret = EXIT_FAILED;

	memset(&v, 0, sizeof(v));
	v.c = c;
	if (!c->qmp || !c->to) {
		fprintf(stderr, "rdma-migrate vm-send: --qmp and --to are required\n");
		return EXIT_USAGE;
	}
	R.t_start = now_ns();
	rc = qmp_open(c->qmp, tmo(c), &v.q, v.err, sizeof(v.err));
	if (!rc) { /* QEMU would refuse these only once all of RAM had moved */
		char st[64] = "";

		rc = run_state(&v, st, sizeof(st));
		if (!rc && (!strcmp(st, "postmigrate") || !strcmp(st, "inmigrate"))) {
			snprintf(v.err, sizeof(v.err),
				 "the source QEMU is '%s': %s", st,
				 !strcmp(st, "postmigrate") ?
					 "it was migrated already, and QEMU migrates it no more" :
					 "it waits for an incoming migration itself");
			rc = -EINVAL;
		}
	}
	if (!rc)
		rc = blocks_open(&v, "source");
	if (!rc)
		rc = track_open(&v);
	if (!rc)
		rc = set_caps(&v, true);
	if (rc)
		goto out;
	if (c->verbose)
		say(c, "tracking by %s", v.tracking);
	tool_opts(&o, c, RMIG_ROLE_SOURCE);
	if (!v.sdon) /* the blocks are the shadows, filled by the first collect */
		o.flags &= ~RMIG_F_PREPARE;
	rc = rmig_session_create(&o, &s);
	for (unsigned int i = 0; i < v.n && !rc; i++) /* soft-dirty: sent from guest RAM */
		rc = rmig_add_ram(s, v.b[i].name, v.sdon ? v.b[i].map : v.b[i].tr.shadow,
				  v.b[i].len, v.b[i].page);
	if (rc) {
		snprintf(v.err, sizeof(v.err), "setting up the session: %s", strerror(-rc));
		goto out;
	}
	rc = rmig_connect(s, c->to);
	R.t_conn = now_ns();
	if (!rc) {
		struct watch w;

		watch_start(&w, &v, s, "source");
		rc = vm_send_run(&v, s, &R, &migrating, &completed);
		watch_stop(&w);
	}
out:
	if (c->json && s)
		print_send_json(&v, s, &R, rc);
	else if (c->json) /* failed before a session: a reader of --json still learns why */
		json_early(stdout, "vm-source", v.err[0] ? v.err : strerror(-rc));
	if (rc) {
		char st[64] = "";

		fprintf(stderr, "rdma-migrate vm-send: migration failed: %s\n",
			v.err[0] ? v.err : s && rmig_last_error(s)[0] ? rmig_last_error(s) :
									strerror(-rc));
		/*
		 * The destination never ran the VM: it goes on here. A QMP
		 * connection an error left out of step is opened anew first.
		 */
		if (v.q && (migrating || completed) &&
		    qmp_exec(v.q, "query-status", NULL, NULL, NULL, 0)) {
			qmp_close(v.q);
			v.q = NULL;
			qmp_open(c->qmp, tmo(c), &v.q, NULL, 0);
		}
		if (v.q && migrating && !completed)
			qmp_exec(v.q, "migrate_cancel", NULL, NULL, NULL, 0);
		if (v.q && completed)
			qmp_exec(v.q, "cont", NULL, NULL, NULL, 0);
		if (v.q && !run_state(&v, st, sizeof(st)))
			fprintf(stderr, "rdma-migrate vm-send: the VM is %s on the source\n",
				!strcmp(st, "running") ? "still running" : st);
	} else {
		ret = 0;
		if (!c->quiet && !c->json)
			fprintf(stderr,
				"rdma-migrate: migrated the VM in %.2f s: %u rounds, downtime %.1f ms "
				"(last round %" PRIu64 " pages in %.1f ms, device state %" PRIu64
				" bytes), tracking by %s\n",
				(double)(R.t_done - R.t_start) / 1e9, R.rounds,
				(double)(R.t_done - R.t_stop) / 1e6, R.final_pages,
				(double)(R.t_final - R.t_stop) / 1e6, R.dev_bytes,
				v.sdon ? "soft-dirty bits" : "shadow compare");
	}
	rmig_session_destroy(s);
	blocks_close(&v);
	qmp_close(v.q);
	return ret;
}

/* ---- vm-recv ---- */

static int recv_layout(void *arg, rmig_session *s, const struct rmig_block_info *bi, unsigned int n)
{
	struct vm *v = arg;

	if (n != v->n) {
		snprintf(v->err, sizeof(v->err),
			 "the source VM has %u RAM blocks, the destination QEMU %u", n, v->n);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < n; i++) {
		unsigned int j;

		for (j = 0; j < v->n && strcmp(v->b[j].name, bi[i].name); j++)
			;
		if (j == v->n || v->b[j].len != bi[i].length || v->b[j].page != bi[i].page_size) {
			snprintf(v->err, sizeof(v->err),
				 "the source's RAM block '%s' (%" PRIu64 " bytes) has no backend of "
				 "that id and size in the destination QEMU",
				 bi[i].name, bi[i].length);
			return -ENOENT;
		}
		if (rmig_add_ram(s, v->b[j].name, v->b[j].map, v->b[j].len, v->b[j].page))
			return -EINVAL;
	}
	v->touched = true;
	return 0;
}

/* The device state: into the destination QEMU's incoming migration. */
static int recv_state(void *arg, const char *name, uint32_t instance, const void *data,
		      uint64_t len)
{
	struct vm *v = arg;
	const uint8_t *p = data;
	char status[64];
	int sv[2], rc;

	if (strcmp(name, DEV_BLOB) || instance) {
		snprintf(v->err, sizeof(v->err), "unexpected device-state blob '%s'", name);
		return -EINVAL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -errno;
	rc = qmp_getfd(v->q, DEV_FD, sv[1], v->err, sizeof(v->err));
	close(sv[1]);
	if (!rc)
		rc = qmp_exec(v->q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" DEV_FD), NULL,
			      v->err, sizeof(v->err));
	/* QEMU reads as it loads; the socket buffer bounds what waits in it */
	while (!rc && len) {
		ssize_t n = send(sv[0], p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -errno;
			snprintf(v->err, sizeof(v->err), "feeding the device state to QEMU: %s",
				 strerror(errno));
			break;
		}
		p += n;
		len -= (uint64_t)n;
	}
	if (!rc)
		shutdown(sv[0], SHUT_WR);
	if (!rc)
		rc = qmp_wait_status(v->q, "completed", tmo(v->c), status, sizeof(status), v->err,
				     sizeof(v->err));
	close(sv[0]);
	return rc;
}

int tool_vm_recv(const struct cli *c)
{
	static struct vm v;
	struct rmig_opts o;
	rmig_session *s = NULL;
	char uri[300], st[64] = "";
	int rc, ret = EXIT_FAILED;

	memset(&v, 0, sizeof(v));
	v.c = c;
	if (!c->qmp || !c->listen) {
		fprintf(stderr, "rdma-migrate vm-recv: --qmp and --listen are required\n");
		return EXIT_USAGE;
	}
	rc = qmp_open(c->qmp, tmo(c), &v.q, v.err, sizeof(v.err));
	if (!rc)
		rc = run_state(&v, st, sizeof(st));
	if (!rc && strcmp(st, "inmigrate")) {
		snprintf(v.err, sizeof(v.err),
			 "the destination QEMU is '%s', not waiting for a migration: start it with "
			 "-incoming defer",
			 st);
		rc = -EINVAL;
	}
	if (!rc)
		rc = blocks_open(&v, "destination");
	if (!rc && c->port_file) {
		struct cli_file_id pf, rf;

		/* written with the port: a RAM file named there would lose guest RAM */
		cli_file_id(c->port_file, &pf);
		for (unsigned int i = 0; i < v.n; i++) {
			cli_file_id(v.b[i].path, &rf);
			if (!cli_file_id_eq(&pf, &rf))
				continue;
			fprintf(stderr,
				"rdma-migrate vm-recv: --port-file %s is the RAM file of the "
				"destination QEMU's backend '%s'\n",
				c->port_file, v.b[i].name);
			ret = EXIT_USAGE;
			blocks_close(&v);
			qmp_close(v.q);
			return ret;
		}
	}
	if (!rc)
		rc = set_caps(&v, false);
	if (rc)
		goto out;
	tool_opts(&o, c, RMIG_ROLE_DEST);
	{
		bool zeroed = true;

		for (unsigned int i = 0; i < v.n; i++)
			zeroed = zeroed && block_reads_zero(&v.b[i]);
		/* tests only: the negative control of a destination RAM file with old data */
		if (zeroed || getenv("RMIG_VM_TEST_ASSUME_ZEROED"))
			o.flags |= RMIG_F_ZEROED;
		if (zeroed)
			rc = reserve_blocks(&v, &o);
		if (c->verbose)
			say(c, "the RAM files %s", zeroed ? "hold no data yet: zero pages need not be sent"
						       : "hold data: every zero page is sent");
	}
	if (rc)
		goto out;
	o.layout_fn = recv_layout;
	o.layout_arg = &v;
	o.state_fn = recv_state;
	o.state_arg = &v;
	rc = rmig_session_create(&o, &s);
	snprintf(uri, sizeof(uri), "tcp://%s", c->listen);
	if (!rc)
		rc = rmig_listen(s, uri);
	if (rc)
		goto out;
	if (c->port_file) {
		FILE *f = fopen(c->port_file, "w");

		if (!f || fprintf(f, "%d\n", rmig_listen_port(s)) < 0 || fclose(f)) {
			snprintf(v.err, sizeof(v.err), "writing %s: %s", c->port_file, strerror(errno));
			rc = -EIO;
			goto out;
		}
	}
	{
		char at[320];

		say(c, "waiting for the VM on %s",
		    tool_bound_addr(at, sizeof(at), c->listen, rmig_listen_port(s)));
	}
	{
		struct watch w;

		watch_start(&w, &v, s, "destination");
		rc = rmig_accept(s);
		if (!rc)
			rc = rmig_complete(s);
		watch_stop(&w);
	}
	if (!rc && !c->paused) {
		rc = run_state(&v, st, sizeof(st));
		if (!rc && strcmp(st, "running"))
			rc = qmp_exec(v.q, "cont", NULL, NULL, v.err, sizeof(v.err));
	}
out:
	if (c->json && s)
		tool_print_json(stdout, "vm-destination", s, rc, false, 0);
	else if (c->json)
		json_early(stdout, "vm-destination", v.err[0] ? v.err : strerror(-rc));
	if (rc) {
		const char *le = s ? rmig_last_error(s) : "";

		fprintf(stderr, "rdma-migrate vm-recv: migration failed: %s%s%s%s\n",
			le[0] ? le : v.err[0] ? v.err : strerror(-rc), le[0] && v.err[0] ? " (" : "",
			le[0] && v.err[0] ? v.err : "", le[0] && v.err[0] ? ")" : "");
		if (v.q && v.touched) /* else nothing reached its RAM */
			fprintf(stderr, "rdma-migrate vm-recv: the destination VM is left paused; it "
					"must not run (its RAM or devices are incomplete)\n");
	} else {
		ret = 0;
		say(c, "the VM %s on the destination", c->paused ? "is here, paused" : "runs");
	}
	rmig_session_destroy(s);
	blocks_close(&v);
	qmp_close(v.q);
	return ret;
}
