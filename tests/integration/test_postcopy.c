/* SPDX-License-Identifier: MIT */
/*
 * test_postcopy.c - postcopy over TCP, or (RMIG_TEST_TRANSPORT=rdma,
 * RMIG_TEST_ADDR) over RDMA in the soft-RoCE VM.
 *
 * A precopy round moves the RAM, then some pages change at the source and
 * the migration switches to postcopy. The destination touches those pages
 * (through rmig_postcopy_fetch(), or as plain memory reads under the
 * userfaultfd handler) and each must hold the source's new contents before
 * the background pages are sent; then the rest follows and the whole RAM is
 * compared byte for byte. Also: pure postcopy (no precopy round), the
 * shared-channel variant (RMIG_F_NO_URGENT), a source that goes away while
 * the destination's threads wait on faults, 2 MiB pages (fetched, and
 * hugetlb memory under userfaultfd), and the refused options.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sess.h"
#include "testlib.h"

#define LEN (16u << 20)
#define PS 4096u
#define NPAGES (LEN / PS)
#define NDIRTY 300
#define HPS (2u << 20)
#define HLEN (16 * HPS)

struct toucher {
	struct pair *p;
	bool uffd;
	const uint64_t *pages;
	unsigned int n;
	int rc;
	unsigned int bad;
	uint64_t done_ns;
};

/* The destination's guest: touch each page, compare it with the source's. */
static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	t->rc = rmig_postcopy_wait(t->p->dst);
	for (unsigned int i = 0; i < t->n && !t->rc; i++) {
		uint64_t off = t->pages[i] * PS;

		if (!t->uffd)
			t->rc = rmig_postcopy_fetch(t->p->dst, "ram", off, PS);
		/* under userfaultfd the read itself faults and waits */
		if (!t->rc && memcmp(t->p->dmem + off, t->p->smem + off, PS))
			t->bad++;
	}
	t->done_ns = rmig_now_ns();
	return NULL;
}

static void dirty_pages(struct pair *p, unsigned long *bm, uint64_t *pages, unsigned int n,
			uint64_t seed)
{
	memset(bm, 0, NPAGES / 8);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t pg;

		do {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			pg = (seed >> 33) % NPAGES;
		} while (bm[pg / (8 * sizeof(long))] & (1ul << (pg % (8 * sizeof(long)))));
		bm[pg / (8 * sizeof(long))] |= 1ul << (pg % (8 * sizeof(long)));
		pages[i] = pg;
		fill_random(p->smem + pg * PS, PS, seed);
	}
}

/* The transport under test, from the environment (tcp by default). */
static struct pair_cfg env_cfg(struct pair_cfg c)
{
	const char *t = getenv("RMIG_TEST_TRANSPORT");

	c.transport = t && !strcmp(t, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	c.addr = getenv("RMIG_TEST_ADDR");
	return c;
}

static bool uffd_usable(struct pair_cfg *c, struct pair *p, int rc)
{
	if (c->dst_uffd && getenv("RMIG_VALGRIND")) {
		printf("# userfaultfd under valgrind (one thread at a time): skipped\n");
		pair_close(p);
		return false;
	}
	if (c->dst_uffd && (rc == -EPERM || rc == -ENOSYS)) {
		printf("# no userfaultfd here (%s): skipped\n", strerror(-rc));
		pair_close(p);
		return false;
	}
	return true;
}

/* A pair with RMIG_F_POSTCOPY, the destination's block under userfaultfd; false: skip. */
static bool open_uffd_pair(struct pair *p, struct pair_cfg *c)
{
	int rc;

	c->flags = RMIG_F_POSTCOPY;
	c->dst_uffd = true;
	rc = pair_open(p, c);
	if (!uffd_usable(c, p, rc))
		return false;
	assert_int_equal(rc, 0);
	return true;
}

/* rails: the destination offers a second rail (RMIG_TEST_ADDR2, or 127.0.0.2 over TCP) */
static void postcopy_case(bool uffd, bool precopy, unsigned int flags, bool rails)
{
	struct pair_cfg c = env_cfg((struct pair_cfg){ .channels = 3, .len = LEN, .page_size = PS,
						      .timeout_ms = 10000 });
	static unsigned long bm[NPAGES / (8 * sizeof(long))];
	static uint64_t pages[NPAGES];
	const unsigned long *bms[1] = { bm };
	struct toucher t = { .uffd = uffd };
	struct rmig_stats st;
	struct pair p;
	pthread_t th;
	int rc;

	c.flags = RMIG_F_POSTCOPY | RMIG_F_VERIFY | flags;
	c.dst_uffd = uffd;
	if (rails) {
		c.rails[0] = getenv("RMIG_TEST_ADDR2");
		if (!c.rails[0] && c.transport == RMIG_TRANSPORT_RDMA) {
			printf("# no RMIG_TEST_ADDR2 for a second RDMA device: skipped\n");
			skip();
		}
		if (!c.rails[0])
			c.rails[0] = "127.0.0.2";
	}
	rc = pair_open(&p, &c);
	if (!uffd_usable(&c, &p, rc))
		skip();
	assert_int_equal(rc, 0);
	fill_random(p.smem, LEN, 3);
	if (precopy) {
		assert_int_equal(rmig_send_range(p.src, "ram", 0, LEN), 0);
		dirty_pages(&p, bm, pages, NDIRTY, 11);
		t.n = NDIRTY;
	} else {
		memset(bm, 0xff, sizeof(bm));
		for (unsigned int i = 0; i < NDIRTY; i++)
			pages[i] = (i * 7919ull) % NPAGES;
		t.n = NDIRTY;
	}
	t.p = &p;
	t.pages = pages;
	assert_int_equal(pthread_create(&th, NULL, touch_main, &t), 0);
	assert_int_equal(rmig_postcopy_start(p.src, bms, 1), 0);
	/* only requests move pages now: the toucher must finish without background help */
	pthread_join(th, NULL);
	assert_int_equal(t.rc, 0);
	assert_int_equal(t.bad, 0);
	assert_int_equal(rmig_postcopy_send_rest(p.src), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.smem, p.dmem, LEN);
	rmig_get_stats(p.src, &st);
	printf("# source: %llu requests, %llu urgent pages, %llu background pages\n",
	       (unsigned long long)st.pc_requests, (unsigned long long)st.pc_urgent_pages,
	       (unsigned long long)st.pc_background);
	assert_true(st.pc_urgent_pages >= NDIRTY);
	assert_int_equal(st.pc_urgent_pages + st.pc_background,
			 precopy ? NDIRTY : NPAGES); /* each page sent exactly once */
	if (rails) { /* both rails carried pages */
		uint64_t on[2] = { 0, 0 };

		for (unsigned int i = 0; i < c.channels; i++) {
			struct rmig_chan_place pl;

			assert_int_equal(rmig_get_placement(p.src, i, &pl, sizeof(pl)), 0);
			on[pl.rail] += st.chan[i].bytes;
		}
		printf("# rails: %llu and %llu bytes\n", (unsigned long long)on[0],
		       (unsigned long long)on[1]);
		assert_true(on[0] > 0 && on[1] > 0);
	}
	rmig_get_stats(p.dst, &st);
	if (uffd)
		assert_true(st.pc_faults >= NDIRTY);
	pair_close(&p);
}

static void test_uffd_two_rails(void **state)
{
	(void)state;
	postcopy_case(true, true, 0, true);
}

static void test_fetch_after_precopy(void **state)
{
	(void)state;
	postcopy_case(false, true, 0, false);
}

static void test_fetch_shared_channels(void **state)
{
	(void)state;
	postcopy_case(false, true, RMIG_F_NO_URGENT, false);
}

static void test_uffd_after_precopy(void **state)
{
	(void)state;
	postcopy_case(true, true, 0, false);
}

static void test_uffd_pure_postcopy(void **state)
{
	(void)state;
	postcopy_case(true, false, 0, false);
}

/* The source goes away while the guest waits on faults: nobody stays blocked. */
static void test_uffd_source_gone(void **state)
{
	struct pair_cfg c = env_cfg((struct pair_cfg){ .channels = 2, .len = LEN, .page_size = PS,
						      .timeout_ms = 2000 });
	static unsigned long bm[NPAGES / (8 * sizeof(long))];
	static uint64_t pages[NDIRTY];
	const unsigned long *bms[1] = { bm };
	struct toucher t = { .uffd = true };
	uint64_t t0;
	struct pair p;
	pthread_t th;

	(void)state;
	if (!open_uffd_pair(&p, &c))
		skip();
	memset(bm, 0xff, sizeof(bm));
	for (unsigned int i = 0; i < NDIRTY; i++)
		pages[i] = i * 13;
	fill_random(p.smem, LEN, 5);
	assert_int_equal(rmig_postcopy_start(p.src, bms, 1), 0);
	/* the source stops serving: requests will never be answered */
	atomic_store(&p.src->pc.serve_stop, true);
	t.p = &p;
	t.pages = pages;
	t.n = NDIRTY;
	t0 = rmig_now_ns();
	assert_int_equal(pthread_create(&th, NULL, touch_main, &t), 0);
	pthread_join(th, NULL);
	printf("# destination: %s; the toucher was free after %.1f s\n", rmig_last_error(p.dst),
	       (t.done_ns - t0) / 1e9);
	assert_int_equal(pair_join(&p), -ETIMEDOUT);
	assert_non_null(strstr(rmig_last_error(p.dst), "the guest cannot continue"));
	assert_true(t.done_ns - t0 < 3ull * c.timeout_ms * 1000000ull);
	pair_close(&p);
}

struct dest_run {
	rmig_session *s;
	int rc;
};

static void *dest_main(void *arg)
{
	struct dest_run *d = arg;

	d->rc = rmig_accept(d->s);
	if (!d->rc)
		d->rc = rmig_complete(d->s);
	return NULL;
}

/*
 * The source process of test_uffd_source_killed: this binary run again as
 * "test_postcopy source-child URI TRANSPORT FD" (exec'd, so that it shares no
 * RDMA context with the test). Postcopy of everything, then it serves
 * requests until it is killed; one byte on FD once the destination runs.
 */
static int source_child(const char *uri, const char *transport, int fd)
{
	static unsigned long all[NPAGES / (8 * sizeof(long))];
	const unsigned long *bms[1] = { all };
	uint8_t *smem = guarded_alloc(LEN), one = 1;
	struct rmig_opts o;
	rmig_session *s;

	prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
	alarm(30);
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.channels = 2;
	o.timeout_ms = 2000;
	o.flags = RMIG_F_POSTCOPY;
	o.transport = !strcmp(transport, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	o.log_fn = NULL;
	if (!smem || rmig_session_create(&o, &s) || rmig_add_ram(s, "ram", smem, LEN, PS))
		return 3;
	fill_random(smem, LEN, 9);
	memset(all, 0xff, sizeof(all));
	if (rmig_connect(s, uri) || rmig_postcopy_start(s, bms, 1)) {
		printf("# source: %s\n", rmig_last_error(s));
		return 4;
	}
	if (write(fd, &one, 1) != 1)
		return 5;
	for (;;)
		pause();
}

/*
 * The source is another process, killed (SIGKILL) while the destination's
 * guest runs: the next faults are freed within the timeout, and the
 * destination's error says the guest cannot continue.
 */
static void test_uffd_source_killed(void **state)
{
	struct pair_cfg c = env_cfg((struct pair_cfg){ .len = LEN });
	const char *addr = c.addr ? c.addr : "127.0.0.1";
	const char *tname = c.transport == RMIG_TRANSPORT_RDMA ? "rdma" : "tcp";
	struct rmig_opts o;
	struct dest_run d = { 0 };
	struct toucher t = { .uffd = true };
	static uint64_t pages[NDIRTY];
	struct pollfd pfd;
	struct pair p = { 0 };
	pthread_t th, dth;
	uint8_t *dmem, *expect, one;
	char uri[160], fdarg[16];
	int ready[2], rc, status;
	uint64_t t0;
	pid_t pid;

	(void)state;
	if (getenv("RMIG_VALGRIND"))
		skip(); /* userfaultfd and fork under valgrind */
	dmem = guarded_alloc(LEN);
	assert_non_null(dmem);
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.timeout_ms = 2000;
	o.log_fn = NULL;
	assert_int_equal(rmig_session_create(&o, &d.s), 0);
	assert_int_equal(rmig_add_ram(d.s, "ram", dmem, LEN, PS), 0);
	rc = rmig_postcopy_uffd(d.s, "ram");
	if (rc == -EPERM || rc == -ENOSYS) {
		printf("# no userfaultfd here (%s): skipped\n", strerror(-rc));
		rmig_session_destroy(d.s);
		guarded_free(dmem, LEN);
		skip();
	}
	assert_int_equal(rc, 0);
	snprintf(uri, sizeof(uri), "%s://%s:0", tname, addr);
	assert_int_equal(rmig_listen(d.s, uri), 0);
	snprintf(uri, sizeof(uri), "%s://%s:%d", tname, addr, rmig_listen_port(d.s));
	assert_int_equal(pipe(ready), 0);
	snprintf(fdarg, sizeof(fdarg), "%d", ready[1]);
	fflush(stdout);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		execl("/proc/self/exe", "test_postcopy", "source-child", uri, tname, fdarg,
		      (char *)NULL);
		_exit(6);
	}
	close(ready[1]);
	assert_int_equal(pthread_create(&dth, NULL, dest_main, &d), 0);
	pfd = (struct pollfd){ .fd = ready[0], .events = POLLIN };
	if (poll(&pfd, 1, 10000) != 1 || read(ready[0], &one, 1) != 1) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("the source process did not start postcopy (exit status %d)",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	assert_int_equal(rmig_postcopy_wait(d.s), 0);
	/* a fault the source still answers: the page holds the source's bytes */
	expect = malloc(LEN);
	assert_non_null(expect);
	fill_random(expect, LEN, 9);
	assert_memory_equal((const void *)(volatile uint8_t *)(dmem + PS * 5), expect + PS * 5, PS);
	free(expect);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	for (unsigned int i = 0; i < NDIRTY; i++)
		pages[i] = 100 + i * 7;
	p.dst = d.s;
	p.dmem = dmem;
	p.smem = dmem; /* the comparison is moot: nothing may block */
	t.p = &p;
	t.pages = pages;
	t.n = NDIRTY;
	t0 = rmig_now_ns();
	assert_int_equal(pthread_create(&th, NULL, touch_main, &t), 0);
	pthread_join(th, NULL);
	pthread_join(dth, NULL);
	printf("# destination: %s; the guest thread was free after %.1f s\n",
	       rmig_last_error(d.s), (rmig_now_ns() - t0) / 1e9);
	assert_int_not_equal(d.rc, 0);
	assert_non_null(strstr(rmig_last_error(d.s), "the guest cannot continue"));
	assert_true(rmig_now_ns() - t0 < 3ull * o.timeout_ms * 1000000ull);
	close(ready[0]);
	rmig_session_destroy(d.s);
	guarded_free(dmem, LEN);
}

/*
 * Postcopy cancelled before the switchover: the source keeps the guest, the
 * destination fails without ever dropping a page or registering its block.
 */
static void test_cancel_before_switchover(void **state)
{
	struct pair_cfg c = env_cfg((struct pair_cfg){ .channels = 2, .len = LEN, .page_size = PS,
						      .timeout_ms = 10000 });
	static unsigned long bm[NPAGES / (8 * sizeof(long))];
	const unsigned long *bms[1] = { bm };
	struct pair p;

	(void)state;
	if (!open_uffd_pair(&p, &c))
		skip();
	fill_random(p.smem, LEN, 31);
	memset(bm, 0xff, sizeof(bm));
	assert_int_equal(rmig_send_round(p.src, bms, 1, NULL), 0);
	assert_int_equal(rmig_sync(p.src), 0);
	rmig_cancel(p.src, "the operator changed their mind");
	assert_int_not_equal(rmig_postcopy_start(p.src, bms, 1), 0);
	assert_int_not_equal(pair_join(&p), 0);
	printf("# destination: %s\n", rmig_last_error(p.dst));
	assert_non_null(strstr(rmig_last_error(p.dst), "the operator changed their mind"));
	assert_null(strstr(rmig_last_error(p.dst), "the guest cannot continue"));
	assert_int_equal(rmig_postcopy_wait(p.dst), rmig_sess_err(p.dst));
	/* nothing was dropped or registered: the precopy round is all there, readable */
	assert_memory_equal(p.dmem, p.smem, LEN);
	pair_close(&p);
}

/*
 * 2 MiB pages: requests, background writes and placement go by whole pages.
 * @uffd: the destination's RAM is hugetlb memory under the userfaultfd
 * handler (skipped where no huge page is reserved); else rmig_postcopy_fetch()
 * of a few bytes inside pages of ordinary memory.
 */
static void hugepage_case(bool uffd)
{
	struct pair_cfg c = env_cfg((struct pair_cfg){ .channels = 3, .len = HLEN, .page_size = HPS,
						      .timeout_ms = 10000 });
	static unsigned long bm[1];
	const unsigned long *bms[1] = { bm };
	static const uint64_t touch[] = { 3, 7, 0, 15, 8 };
	struct rmig_stats st;
	struct pair p;
	int rc;

	c.flags = RMIG_F_POSTCOPY;
	c.dst_uffd = uffd;
	c.dst_huge = uffd;
	rc = pair_open(&p, &c);
	if (uffd && getenv("RMIG_VALGRIND")) {
		printf("# userfaultfd under valgrind (one thread at a time): skipped\n");
		pair_close(&p);
		skip();
	}
	if (uffd && !p.dmem) {
		printf("# no 2 MiB huge pages reserved (%s; echo 16 > "
		       "/proc/sys/vm/nr_hugepages): skipped\n", strerror(-rc));
		pair_close(&p);
		skip();
	}
	if (!uffd_usable(&c, &p, rc))
		skip();
	assert_int_equal(rc, 0);
	fill_random(p.smem, HLEN, 21);
	memset(p.smem + 5 * HPS, 0, HPS); /* a zero page goes as a zero marker */
	bm[0] = 0xffff; /* pure postcopy: all 16 pages missing */
	assert_int_equal(rmig_postcopy_start(p.src, bms, 1), 0);
	assert_int_equal(rmig_postcopy_wait(p.dst), 0);
	for (unsigned int i = 0; i < sizeof(touch) / sizeof(touch[0]); i++) {
		uint64_t off = touch[i] * HPS + 12345;

		if (!uffd)
			assert_int_equal(rmig_postcopy_fetch(p.dst, "ram", off, 100), 0);
		/* a read inside the page faults under userfaultfd; the whole page is here */
		assert_memory_equal(p.dmem + touch[i] * HPS, p.smem + touch[i] * HPS, HPS);
	}
	assert_int_equal(rmig_postcopy_send_rest(p.src), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_memory_equal(p.dmem, p.smem, HLEN);
	rmig_get_stats(p.src, &st);
	printf("# 2 MiB pages%s: %llu requests, %llu requested pages, %llu background\n",
	       uffd ? " under userfaultfd" : ", fetched", (unsigned long long)st.pc_requests,
	       (unsigned long long)st.pc_urgent_pages, (unsigned long long)st.pc_background);
	assert_true(st.pc_requests >= 1);
	assert_int_equal(st.pc_urgent_pages + st.pc_background - st.pc_resent, 16);
	pair_close(&p);
}

static void test_fetch_hugepages(void **state)
{
	(void)state;
	hugepage_case(false);
}

static void test_uffd_hugepages(void **state)
{
	(void)state;
	hugepage_case(true);
}

static void test_postcopy_options(void **state)
{
	struct rmig_opts o;
	rmig_session *s;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.log_fn = NULL;
	o.flags = RMIG_F_NO_URGENT;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.flags = RMIG_F_POSTCOPY;
	o.extent_max = 4u << 20;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.extent_max = 1u << 20;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	/* not connected yet */
	assert_int_not_equal(rmig_postcopy_start(s, NULL, 0), 0);
	rmig_session_destroy(s);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fetch_after_precopy),
		cmocka_unit_test(test_fetch_shared_channels),
		cmocka_unit_test(test_uffd_after_precopy),
		cmocka_unit_test(test_uffd_pure_postcopy),
		cmocka_unit_test(test_uffd_two_rails),
		cmocka_unit_test(test_uffd_source_gone),
		cmocka_unit_test(test_uffd_source_killed),
		cmocka_unit_test(test_cancel_before_switchover),
		cmocka_unit_test(test_fetch_hugepages),
		cmocka_unit_test(test_uffd_hugepages),
		cmocka_unit_test(test_postcopy_options),
	};

	if (argc == 5 && !strcmp(argv[1], "source-child"))
		return source_child(argv[2], argv[3], atoi(argv[4]));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
