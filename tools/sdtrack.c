/* SPDX-License-Identifier: MIT */
/* sdtrack.c - dirty tracking by the kernel's soft-dirty bits (see sdtrack.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "sdtrack.h"

#define LONG_BITS    (sizeof(unsigned long) * CHAR_BIT)
#define PM_SOFTDIRTY (1ull << 55)
#define PM_SWAP      (1ull << 62)
#define PM_PRESENT   (1ull << 63)
#define ENTS_MAX     (1u << 15) /* pagemap entries read at once: 256 KiB */
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

/* The process frozen now, for a terminating signal's handler to let go. */
static volatile sig_atomic_t frozen_pid;

static void let_go(int sig)
{
	if (frozen_pid > 0)
		kill((pid_t)frozen_pid, SIGCONT);
	signal(sig, SIG_DFL);
	raise(sig); /* delivered once this handler returns: the usual death */
}

/* Ctrl-C or a kill between SIGSTOP and SIGCONT must not leave the process stopped. */
static void guard_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct sigaction sa, cur;

		if (sigaction(sigs[i], NULL, &cur) || cur.sa_handler != SIG_DFL)
			continue; /* ignored, or someone's handler: theirs */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = let_go;
		sigaction(sigs[i], &sa, NULL);
	}
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void set_bit(unsigned long *m, uint64_t p)
{
	m[p / LONG_BITS] |= 1ul << (p % LONG_BITS);
}

bool sdtrack_works(char *why, size_t len)
{
	long psz = sysconf(_SC_PAGESIZE);
	uint8_t *p = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			  -1, 0);
	int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t ent = 0;
	bool ok = false;

	if (p == MAP_FAILED || cr < 0 || pm < 0) {
		snprintf(why, len, "no /proc/self/clear_refs or pagemap");
		goto out;
	}
	p[0] = 1;
	if (write(cr, "4", 1) != 1) {
		snprintf(why, len, "clear_refs refused the soft-dirty reset");
		goto out;
	}
	p[0] = 2; /* must set bit 55 again */
	if (pread(pm, &ent, sizeof(ent), (off_t)((uintptr_t)p / (uintptr_t)psz * 8)) !=
	    sizeof(ent)) {
		snprintf(why, len, "pagemap unreadable");
		goto out;
	}
	ok = ent & PM_SOFTDIRTY;
	snprintf(why, len, "%s", ok ? "a written page shows the soft-dirty bit after a reset" :
				      "the kernel accepts the reset but never sets the bit "
				      "(CONFIG_MEM_SOFT_DIRTY off)");
out:
	if (p != MAP_FAILED)
		munmap(p, (size_t)psz);
	if (cr >= 0)
		close(cr);
	if (pm >= 0)
		close(pm);
	return ok;
}

/* The state letter of /proc/PID[/task/TID]/stat (after the last ')'), or 0. */
static char stat_state(const char *path)
{
	char buf[512], *rp;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' ? rp[2] : 0;
}

int sdtrack_open(struct sdtrack *t, pid_t pid, char *err, size_t elen)
{
	char why[160], path[64];
	char st;

	memset(t, 0, sizeof(*t));
	t->pagemap = t->clear_refs = -1;
	t->pid = pid;
	t->page = (uint32_t)sysconf(_SC_PAGESIZE);
	t->stop_ms = 2000;
	guard_signals();
	if (!sdtrack_works(why, sizeof(why))) {
		snprintf(err, elen, "soft-dirty bits do not work on this kernel: %s", why);
		return -EOPNOTSUPP;
	}
	if (pid <= 0) {
		snprintf(err, elen, "the process to track is not known (no peer pid)");
		return -ESRCH;
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	st = stat_state(path);
	if (!st) {
		snprintf(err, elen, "process %d: no such process", (int)pid);
		return -ESRCH;
	}
	if (st == 'T' || st == 't') {
		snprintf(err, elen,
			 "process %d is stopped already (SIGSTOP or a debugger): soft-dirty "
			 "tracking stops and resumes it, and would resume it",
			 (int)pid);
		return -EBUSY;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	t->pagemap = open(path, O_RDONLY | O_CLOEXEC);
	if (t->pagemap >= 0) {
		snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
		t->clear_refs = open(path, O_WRONLY | O_CLOEXEC);
	}
	if (t->pagemap < 0 || t->clear_refs < 0) {
		int rc = -errno;

		snprintf(err, elen, "%s: %s (soft-dirty tracking needs the process's user or root)",
			 path, strerror(errno));
		sdtrack_close(t);
		return rc;
	}
	t->ents = malloc(ENTS_MAX * sizeof(*t->ents));
	if (!t->ents) {
		sdtrack_close(t);
		snprintf(err, elen, "out of memory");
		return -ENOMEM;
	}
	t->ents_cap = ENTS_MAX;
	return 0;
}

/* The VmFlags of the mapping at @va in /proc/PID/smaps include "lo" (mlocked). */
static bool vma_locked(pid_t pid, uint64_t va)
{
	char path[64], line[512];
	bool in = false, locked = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end;

		if (sscanf(line, "%llx-%llx ", &start, &end) == 2 && strchr(line, ' ') &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = start == va;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			locked = strstr(line, " lo") != NULL;
			break;
		}
	}
	fclose(f);
	return locked;
}

int sdtrack_add(struct sdtrack *t, int fd, uint64_t len, uint32_t page, char *err, size_t elen)
{
	struct sdblock *b;
	struct stat st;
	struct statfs sf;
	char path[64], line[4608];
	uint64_t covered = 0;
	FILE *f;
	int rc = 0;

	if (t->n >= SDTRACK_BLOCKS_MAX) {
		snprintf(err, elen, "more than %d blocks", SDTRACK_BLOCKS_MAX);
		return -E2BIG;
	}
	if (page != t->page || !len || len % page) {
		snprintf(err, elen,
			 "pages of %" PRIu32 " bytes: soft-dirty bits cover %" PRIu32
			 "-byte pages only (hugetlbfs has none)",
			 page, t->page);
		return -EOPNOTSUPP;
	}
	if (fstat(fd, &st) < 0 || fstatfs(fd, &sf) < 0)
		return -errno;
	b = &t->b[t->n];
	memset(b, 0, sizeof(*b));
	b->len = len;
	b->npages = len / page;
	b->nlongs = (b->npages + LONG_BITS - 1) / LONG_BITS;
	b->tmpfs = sf.f_type == TMPFS_MAGIC;
	b->map = calloc(b->nlongs * 4, sizeof(unsigned long));
	if (!b->map)
		return -ENOMEM;
	b->present = b->map + b->nlongs;
	b->now = b->present + b->nlongs;
	b->sd = b->now + b->nlongs;

	/* the process's shared mappings of this file (device and inode), clipped to the block */
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)t->pid);
	f = fopen(path, "re");
	if (!f) {
		rc = -errno;
		snprintf(err, elen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, off, ino;
		unsigned int maj, min;
		char perms[8];
		struct sdseg *g;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &start, &end, perms, &off, &maj,
			   &min, &ino) != 7)
			continue;
		if (ino != (unsigned long long)st.st_ino || makedev(maj, min) != st.st_dev ||
		    perms[3] != 's' || off >= len || end <= start)
			continue;
		if (b->nseg == SDTRACK_SEGS_MAX) {
			rc = -E2BIG;
			snprintf(err, elen, "process %d maps the file more than %d times", (int)t->pid,
				 SDTRACK_SEGS_MAX);
			break;
		}
		g = &b->seg[b->nseg++];
		g->va = start;
		g->off = off;
		g->len = end - start < len - off ? end - start : len - off;
		/* coverage, marked in the scratch map */
		for (uint64_t p = off / page; p < (off + g->len) / page; p++)
			if (!(b->now[p / LONG_BITS] & (1ul << (p % LONG_BITS)))) {
				set_bit(b->now, p);
				covered++;
			}
	}
	fclose(f);
	if (rc)
		goto fail;
	if (covered != b->npages) {
		rc = -ENOENT;
		snprintf(err, elen,
			 "process %d maps %" PRIu64 " of the block's %" PRIu64
			 " pages shared (mapped private, or not this file)",
			 (int)t->pid, covered, b->npages);
		goto fail;
	}
	memset(b->now, 0, b->nlongs * sizeof(unsigned long));
	t->n++;
	return 0;
fail:
	free(b->map);
	memset(b, 0, sizeof(*b));
	return rc;
}

bool sdtrack_reclaim_risk(const struct sdtrack *t, char *why, size_t len)
{
	bool swap = false;
	char line[256];
	FILE *f = fopen("/proc/swaps", "re");

	if (f) { /* a header line, then one line per active swap area */
		swap = fgets(line, sizeof(line), f) && fgets(line, sizeof(line), f);
		fclose(f);
	}
	for (unsigned int i = 0; i < t->n; i++) {
		const struct sdblock *b = &t->b[i];
		bool locked = true;

		if (b->tmpfs && !swap)
			continue; /* nowhere to go */
		/* smaps is slow to read (it counts every mapping's pages): only here */
		for (unsigned int k = 0; k < b->nseg && locked; k++)
			locked = vma_locked(t->pid, b->seg[k].va);
		if (locked)
			continue;
		if (!b->tmpfs) {
			snprintf(why, len,
				 "block %u's file is not in tmpfs: its written pages are written back "
				 "and may be dropped from the page tables",
				 i);
			return true;
		}
		if (swap) {
			snprintf(why, len,
				 "swap is on and block %u is not locked in memory (QEMU: -overcommit "
				 "mem-lock=on)",
				 i);
			return true;
		}
	}
	snprintf(why, len, "the RAM stays in the page tables (tmpfs without swap, or locked)");
	return false;
}

/* SIGSTOP, then wait until every thread of the process has stopped. */
static int freeze(struct sdtrack *t, char *err, size_t elen)
{
	uint64_t deadline = now_ns() + (uint64_t)t->stop_ms * 1000000ull;
	char path[64];

	if (kill(t->pid, SIGSTOP) < 0) {
		int e = errno;

		snprintf(err, elen, "process %d: %s", (int)t->pid, strerror(e));
		return -e;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)t->pid);
	for (;;) {
		DIR *d = opendir(path);
		struct dirent *e;
		char busy[300] = "", tp[sizeof(path) + 280];
		bool any = false;

		if (!d) {
			snprintf(err, elen, "process %d exited", (int)t->pid);
			return -ESRCH;
		}
		while ((e = readdir(d))) {
			char s;

			if (e->d_name[0] == '.')
				continue;
			if ((size_t)snprintf(tp, sizeof(tp), "%s/%s/stat", path, e->d_name) >= sizeof(tp))
				continue;
			s = stat_state(tp);
			any = true;
			if (s && s != 'T' && s != 't' && s != 'Z' && s != 'X') {
				snprintf(busy, sizeof(busy), "thread %s in state %c", e->d_name, s);
				break;
			}
		}
		closedir(d);
		if (!any) {
			snprintf(err, elen, "process %d exited", (int)t->pid);
			return -ESRCH;
		}
		if (!busy[0])
			return 0;
		if (now_ns() > deadline) {
			snprintf(err, elen, "process %d did not stop within %u ms (%s)", (int)t->pid,
				 t->stop_ms, busy);
			return -ETIMEDOUT;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 20000 }, NULL);
	}
}

/* Bits 55 and 62/63 of one mapping into the block's scratch maps. */
static int read_seg(struct sdtrack *t, struct sdblock *b, const struct sdseg *g, char *err,
		    size_t elen)
{
	uint64_t n = g->len / t->page, first = g->off / t->page;

	for (uint64_t i = 0; i < n;) {
		size_t want = n - i < t->ents_cap ? (size_t)(n - i) : t->ents_cap;
		off_t at = (off_t)((g->va / t->page + i) * sizeof(uint64_t));
		ssize_t got = pread(t->pagemap, t->ents, want * sizeof(uint64_t), at);

		if (got <= 0 || got % sizeof(uint64_t)) {
			int rc = got < 0 ? -errno : -EIO;

			snprintf(err, elen, "reading process %d's pagemap: %s", (int)t->pid,
				 got < 0 ? strerror(errno) : "short read (the mapping went away)");
			return got == 0 ? -ESRCH : rc;
		}
		got /= (ssize_t)sizeof(uint64_t);
		for (ssize_t k = 0; k < got; k++) {
			uint64_t e = t->ents[k], p = first + i + (uint64_t)k;

			if (e & (PM_PRESENT | PM_SWAP))
				set_bit(b->now, p);
			if (e & PM_SOFTDIRTY)
				set_bit(b->sd, p);
		}
		i += (uint64_t)got;
	}
	return 0;
}

int sdtrack_collect(struct sdtrack *t, bool all, bool keep, uint64_t *count, char *err,
		    size_t elen)
{
	uint64_t t0, dt, fresh = 0;
	int rc;

	for (unsigned int i = 0; i < t->n; i++) {
		memset(t->b[i].now, 0, t->b[i].nlongs * sizeof(unsigned long));
		memset(t->b[i].sd, 0, t->b[i].nlongs * sizeof(unsigned long));
	}
	t0 = now_ns();
	frozen_pid = t->pid;
	rc = freeze(t, err, elen);
	for (unsigned int i = 0; i < t->n && !rc; i++)
		for (unsigned int k = 0; k < t->b[i].nseg && !rc; k++)
			rc = read_seg(t, &t->b[i], &t->b[i].seg[k], err, elen);
	if (!rc && write(t->clear_refs, "4", 1) != 1) {
		rc = errno == ESRCH ? -ESRCH : -EIO;
		snprintf(err, elen, "resetting process %d's soft-dirty bits: %s", (int)t->pid,
			 strerror(errno));
	}
	kill(t->pid, SIGCONT); /* whatever happened: never left stopped */
	frozen_pid = 0;
	dt = now_ns() - t0;
	if (rc)
		return rc;
	t->collects++;
	t->freeze_ns_sum += dt;
	if (dt > t->freeze_ns_max)
		t->freeze_ns_max = dt;

	for (unsigned int i = 0; i < t->n; i++) {
		struct sdblock *b = &t->b[i];

		if (!keep)
			memset(b->map, 0, b->nlongs * sizeof(unsigned long));
		for (size_t w = 0; w < b->nlongs; w++) {
			/* written, or gone from the page tables since the last look */
			unsigned long m = all ? ~0ul : b->sd[w] | (b->present[w] & ~b->now[w]);

			if (w == b->nlongs - 1 && b->npages % LONG_BITS)
				m &= (1ul << (b->npages % LONG_BITS)) - 1;
			fresh += (uint64_t)__builtin_popcountl(m & ~b->map[w]);
			b->map[w] |= m;
			b->present[w] = b->now[w];
		}
	}
	if (count)
		*count = fresh;
	return 0;
}

void sdtrack_close(struct sdtrack *t)
{
	if (!t->page) /* never opened */
		return;
	for (unsigned int i = 0; i < t->n; i++)
		free(t->b[i].map);
	if (t->pagemap >= 0)
		close(t->pagemap);
	if (t->clear_refs >= 0)
		close(t->clear_refs);
	free(t->ents);
	memset(t, 0, sizeof(*t));
	t->pagemap = t->clear_refs = -1;
}
