/* SPDX-License-Identifier: MIT */
/*
 * test_sdtrack.c - dirty tracking of another process by soft-dirty bits
 * (tools/sdtrack.c), as vm-send tracks QEMU.
 *
 * A child process maps a shared memfd and writes into it on command, or
 * without pause; this process tracks it and keeps a "destination" copy
 * fed only with the pages the tracker marks. Where the kernel has no
 * soft-dirty bits (the host here) only the refusal is checked; the
 * soft-RoCE VM's kernel has them and runs every case.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sdtrack.h"

#define NP 64u

static long pg;

struct child {
	pid_t pid;
	int fd;               /* the memfd */
	uint8_t *mem;         /* this process's mapping of it */
	volatile int *ctl;    /* shared: [0] stop the writer, [1] writes done */
	int cmd[2], ack[2];   /* pipes to and from the child */
};

struct cmd {
	char op; /* 'w' write a page, 'p' punch it, 'r' write without pause, 'q' quit */
	uint32_t page;
	uint8_t byte;
};

static void child_main(struct child *c, bool priv)
{
	uint8_t *m = mmap(NULL, NP * pg, PROT_READ | PROT_WRITE, priv ? MAP_PRIVATE : MAP_SHARED,
			  c->fd, 0);
	struct cmd k;

	munmap(c->mem, NP * pg); /* the parent's shared mapping: not this process's */
	if (m == MAP_FAILED)
		_exit(2);
	memset(m, 0, NP * pg); /* every page in the page tables */
	if (write(c->ack[1], "r", 1) != 1)
		_exit(2);
	while (read(c->cmd[0], &k, sizeof(k)) == sizeof(k)) {
		if (k.op == 'q')
			break;
		if (k.op == 'w')
			memset(m + k.page * pg, k.byte, pg);
		if (k.op == 'p' && fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					     (off_t)k.page * pg, pg))
			_exit(3);
		if (k.op == 'r') { /* stamps into pages in turn until told to stop */
			uint64_t i = 0;

			while (!__atomic_load_n(&c->ctl[0], __ATOMIC_ACQUIRE)) {
				uint64_t *p = (uint64_t *)(m + ((i * 7) % NP) * pg);

				for (size_t w = 0; w < pg / sizeof(uint64_t); w++)
					p[w] = i;
				i++;
			}
			/* one more write, after the stop was asked for */
			memset(m + 5 * pg, 0xee, pg);
			__atomic_store_n(&c->ctl[1], (int)(i & 0x7fffffff) + 1, __ATOMIC_RELEASE);
		}
		if (write(c->ack[1], "a", 1) != 1)
			_exit(2);
	}
	_exit(0);
}

static void child_start(struct child *c, bool priv)
{
	char b;

	memset(c, 0, sizeof(*c));
	c->fd = memfd_create("sdtrack-test", MFD_CLOEXEC);
	assert_true(c->fd >= 0);
	assert_int_equal(ftruncate(c->fd, NP * pg), 0);
	c->mem = mmap(NULL, NP * pg, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	c->ctl = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(c->mem != MAP_FAILED && c->ctl != MAP_FAILED);
	assert_int_equal(pipe(c->cmd), 0);
	assert_int_equal(pipe(c->ack), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (!c->pid)
		child_main(c, priv);
	assert_int_equal(read(c->ack[0], &b, 1), 1);
}

static void child_do(struct child *c, char op, uint32_t page, uint8_t byte)
{
	struct cmd k = { .op = op, .page = page, .byte = byte };
	char b;

	assert_int_equal(write(c->cmd[1], &k, sizeof(k)), sizeof(k));
	if (op != 'r' && op != 'q') /* 'q': the child exits, no answer */
		assert_int_equal(read(c->ack[0], &b, 1), 1);
}

static void child_stop(struct child *c)
{
	int st;

	child_do(c, 'q', 0, 0);
	assert_int_equal(waitpid(c->pid, &st, 0), c->pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	munmap(c->mem, NP * pg);
	munmap((void *)c->ctl, (size_t)pg);
	close(c->fd);
	close(c->cmd[0]);
	close(c->cmd[1]);
	close(c->ack[0]);
	close(c->ack[1]);
}

static bool marked(const struct sdtrack *t, uint64_t p)
{
	return t->b[0].map[p / (8 * sizeof(long))] & (1ul << (p % (8 * sizeof(long))));
}

static unsigned int nmarked(const struct sdtrack *t)
{
	unsigned int n = 0;

	for (uint64_t p = 0; p < NP; p++)
		n += marked(t, p);
	return n;
}

static void track(struct sdtrack *t, struct child *c)
{
	char err[256] = "";
	int rc = sdtrack_open(t, c->pid, err, sizeof(err));

	if (!rc)
		rc = sdtrack_add(t, c->fd, NP * pg, (uint32_t)pg, err, sizeof(err));
	if (rc)
		fail_msg("tracking the child: %s", err);
}

static void collect(struct sdtrack *t, bool all, bool keep, uint64_t *count)
{
	char err[256] = "";

	if (sdtrack_collect(t, all, keep, count, err, sizeof(err)))
		fail_msg("collect: %s", err);
}

/* The cases that need the bits: skipped, and why, where the kernel has none. */
#define NEED_SOFT_DIRTY()                                                   \
	do {                                                                \
		char why_[160];                                             \
		if (!sdtrack_works(why_, sizeof(why_))) {                   \
			print_message("# skipped: %s\n", why_);             \
			skip();                                             \
		}                                                           \
	} while (0)

/* The probe answers either way and says why; "works" only where bit 55 came back. */
static void test_probe(void **state)
{
	char why[160] = "";
	bool works = sdtrack_works(why, sizeof(why));

	(void)state;
	assert_true(why[0] != '\0');
	assert_int_equal(works, strstr(why, "shows the soft-dirty bit") != NULL);
}

/* A kernel without the bits, a process that is not there: refused, and why. */
static void test_refusals(void **state)
{
	struct sdtrack t;
	char why[160], err[256] = "";
	bool works = sdtrack_works(why, sizeof(why));
	int rc = sdtrack_open(&t, getpid(), err, sizeof(err));

	(void)state;
	if (!works) {
		assert_int_equal(rc, -EOPNOTSUPP);
		assert_non_null(strstr(err, "CONFIG_MEM_SOFT_DIRTY"));
		return;
	}
	assert_int_equal(rc, 0);
	sdtrack_close(&t);
	assert_int_equal(sdtrack_open(&t, 0, err, sizeof(err)), -ESRCH);
	assert_int_equal(sdtrack_open(&t, 0x7ffffff0, err, sizeof(err)), -ESRCH);
	assert_non_null(strstr(err, "no such process"));
}

/* A stopped process, a private mapping, huge pages: refused by name. */
static void test_refused_mappings(void **state)
{
	struct child c;
	struct sdtrack t;
	char err[256] = "";

	(void)state;
	NEED_SOFT_DIRTY();
	child_start(&c, true); /* maps the file private */
	assert_int_equal(sdtrack_open(&t, c.pid, err, sizeof(err)), 0);
	assert_int_equal(sdtrack_add(&t, c.fd, NP * pg, (uint32_t)pg, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "maps 0 of the block's 64 pages shared"));
	assert_int_equal(sdtrack_add(&t, c.fd, NP * pg, 2u << 20, err, sizeof(err)), -EOPNOTSUPP);
	assert_non_null(strstr(err, "hugetlbfs"));
	sdtrack_close(&t);
	kill(c.pid, SIGSTOP);
	for (int i = 0; i < 1000; i++) { /* until the stop shows */
		char p[64], buf[256], *r;
		FILE *f;

		snprintf(p, sizeof(p), "/proc/%d/stat", (int)c.pid);
		f = fopen(p, "r");
		assert_non_null(f);
		r = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (r && r[2] == 'T')
			break;
		usleep(1000);
	}
	assert_int_equal(sdtrack_open(&t, c.pid, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "stopped already"));
	kill(c.pid, SIGCONT);
	child_stop(&c);
}

/* Exactly the pages written since the last collect, a change and change back included. */
static void test_exact_pages(void **state)
{
	struct child c;
	struct sdtrack t;
	uint64_t n;

	(void)state;
	NEED_SOFT_DIRTY();
	child_start(&c, false);
	track(&t, &c);
	collect(&t, true, false, &n);
	assert_int_equal(n, NP);
	collect(&t, false, false, &n);
	assert_int_equal(n, 0);
	assert_int_equal(nmarked(&t), 0);
	child_do(&c, 'w', 3, 1);
	child_do(&c, 'w', 9, 2);
	collect(&t, false, false, &n);
	assert_int_equal(n, 2);
	assert_true(marked(&t, 3) && marked(&t, 9));
	assert_int_equal(nmarked(&t), 2);
	/* page 12 changes and changes back: the same bytes, still written */
	child_do(&c, 'w', 12, 7);
	child_do(&c, 'w', 12, 0);
	collect(&t, false, false, &n);
	assert_int_equal(n, 1);
	assert_true(marked(&t, 12));
	/* keep: the marks of a collect not yet sent stay */
	child_do(&c, 'w', 20, 1);
	collect(&t, false, true, &n);
	assert_int_equal(n, 1);
	assert_true(marked(&t, 12) && marked(&t, 20));
	/* this process's own writes are not the child's */
	c.mem[30 * pg] = 1;
	collect(&t, false, false, &n);
	assert_int_equal(n, 0);
	assert_int_equal(t.collects, 6);
	sdtrack_close(&t);
	child_stop(&c);
}

/*
 * A page whose entry left the page tables lost its bit: it counts because it
 * was there at the last collect. The bit alone (the negative control) did
 * not show it.
 */
static void test_dropped_page(void **state)
{
	struct child c;
	struct sdtrack t;
	uint64_t n;

	(void)state;
	NEED_SOFT_DIRTY();
	child_start(&c, false);
	track(&t, &c);
	collect(&t, true, false, &n);
	child_do(&c, 'w', 6, 9);  /* written ... */
	child_do(&c, 'p', 6, 0);  /* ... then punched: its entry and its bit are gone */
	collect(&t, false, false, &n);
	assert_true(marked(&t, 6));
	assert_int_equal(n, 1);
	assert_false(t.b[0].sd[0] & (1ul << 6)); /* the bit did not show it */
	/* not there now, so not counted again until it comes back and is written */
	collect(&t, false, false, &n);
	assert_int_equal(n, 0);
	child_do(&c, 'w', 6, 3);
	collect(&t, false, false, &n);
	assert_int_equal(n, 1);
	assert_true(marked(&t, 6));
	sdtrack_close(&t);
	child_stop(&c);
}

static void copy_marked(const struct sdtrack *t, uint8_t *dst, const uint8_t *src)
{
	for (uint64_t p = 0; p < NP; p++)
		if (marked(t, p))
			memcpy(dst + p * pg, src + p * pg, pg);
}

/*
 * Rounds against a writer that never pauses: pages are copied while it
 * writes them (torn copies included). Once it stops, one last collect makes
 * the copy exact; without that collect (the negative control) it is not.
 */
static void test_live_writer(void **state)
{
	struct child c;
	struct sdtrack t;
	uint8_t *dst, *skip;
	uint64_t n, total = 0;
	char b;

	(void)state;
	NEED_SOFT_DIRTY();
	dst = malloc(NP * pg);
	skip = malloc(NP * pg);
	assert_non_null(dst);
	assert_non_null(skip);
	child_start(&c, false);
	track(&t, &c);
	child_do(&c, 'r', 0, 0);
	collect(&t, true, false, &n);
	copy_marked(&t, dst, c.mem);
	for (int r = 0; r < 30; r++) {
		usleep(2000);
		collect(&t, false, false, &n);
		total += n;
		copy_marked(&t, dst, c.mem);
	}
	assert_true(total > 0);
	__atomic_store_n(&c.ctl[0], 1, __ATOMIC_RELEASE);
	assert_int_equal(read(c.ack[0], &b, 1), 1);
	assert_true(c.ctl[1] > 0);
	memcpy(skip, dst, NP * pg);
	collect(&t, false, false, &n);
	assert_true(marked(&t, 5)); /* the write after the stop */
	copy_marked(&t, dst, c.mem);
	assert_memory_equal(dst, c.mem, NP * pg);
	assert_memory_not_equal(skip, c.mem, NP * pg);
	print_message("# %" PRIu64 " pages over 30 rounds; freeze max %.3f ms, mean %.3f ms\n",
		      total, (double)t.freeze_ns_max / 1e6,
		      (double)t.freeze_ns_sum / t.collects / 1e6);
	sdtrack_close(&t);
	child_stop(&c);
	free(dst);
	free(skip);
}

/* A process that dies between collects: the next one fails by name, nothing left stopped. */
static void test_process_gone(void **state)
{
	struct child c;
	struct sdtrack t;
	char err[256] = "";
	int st;

	(void)state;
	NEED_SOFT_DIRTY();
	child_start(&c, false);
	track(&t, &c);
	kill(c.pid, SIGKILL);
	assert_int_equal(waitpid(c.pid, &st, 0), c.pid);
	assert_int_equal(sdtrack_collect(&t, false, false, NULL, err, sizeof(err)), -ESRCH);
	assert_non_null(strstr(err, "process"));
	sdtrack_close(&t);
	munmap(c.mem, NP * pg);
	munmap((void *)c.ctl, (size_t)pg);
	close(c.fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_refused_mappings),
		cmocka_unit_test(test_exact_pages),
		cmocka_unit_test(test_dropped_page),
		cmocka_unit_test(test_live_writer),
		cmocka_unit_test(test_process_gone),
	};

	pg = sysconf(_SC_PAGESIZE);
	signal(SIGPIPE, SIG_IGN);
	alarm(120); /* a hang is a failure */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
