/* SPDX-License-Identifier: MIT */
/*
 * test_resume.c - precopy resume between two sessions in one process, over
 * TCP or (RMIG_TEST_TRANSPORT=rdma, RMIG_TEST_ADDR) RDMA in the soft-RoCE
 * VM. Round 1 lands; the guest dirties half its RAM; round 2 is cut off
 * mid-way (every socket of the destination shut, no ERROR sent: a dead
 * link); the guest dirties more. New sessions resume both ends, and the
 * source sends what rmig_resume_missing() names plus what the guest
 * dirtied since. The destination must end byte for byte equal (and the
 * digests agree), having received less than a fresh start would send.
 * Negative control: a resume that sends only the newly dirtied pages
 * leaves the destination different. Also: another session, or another
 * key, is refused while a destination keeps a migration, which the right
 * source then still resumes; and the API's refusals.
 *
 * Postcopy: the destination's guest (a thread reading every page, each a
 * userfaultfd fault) runs while the link breaks. It waits, sees no zero
 * page, and goes on once both ends resume; the memory ends equal. Twice
 * in a row too. Past the recovery window: today's failure, the guest
 * unblocked (reading zero pages: the negative control), and no resume.
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
#include <time.h>

#include <cmocka.h>

#include "bitmap.h"
#include "sess.h"
#include "testlib.h"

#define PAGE 4096u
#define LEN (32ull << 20)
#define NPAGES (LEN / PAGE)

static const char key_a[] = "resume test key, the right one..";
static const char key_b[] = "resume test key, another one....";

static struct pair_cfg base(void)
{
	const char *t = getenv("RMIG_TEST_TRANSPORT");
	/* 64 MB/s: round 2 (16 MiB) takes 250 ms at least, and the cut lands within it */
	struct pair_cfg c = { .channels = 4, .len = LEN, .page_size = PAGE, .timeout_ms = 20000,
			      .max_bandwidth = 64ull << 20, .flags = RMIG_F_VERIFY };

	c.transport = t && !strcmp(t, "rdma") ? RMIG_TRANSPORT_RDMA : RMIG_TRANSPORT_TCP;
	c.addr = getenv("RMIG_TEST_ADDR");
	return c;
}

/* The guest writes pages [first, first + n) with a new pattern and logs them dirty. */
static void dirty(struct pair *p, unsigned long *log, uint64_t first, uint64_t n, uint64_t seed)
{
	fill_random(p->smem + first * PAGE, n * PAGE, seed);
	for (uint64_t i = first; i < first + n; i++)
		rmig_bit_set(log, i);
}

struct round {
	struct pair *p;
	unsigned long *map;
	int rc;
	pthread_t th;
};

static void *round_main(void *arg)
{
	struct round *r = arg;
	const unsigned long *maps[1] = { r->map };

	r->rc = rmig_send_round(r->p->src, maps, 1, NULL);
	return NULL;
}

/*
 * Round 1 whole, the upper half dirtied, round 2 cut off 100 ms in, then
 * the first 256 pages dirtied: returns their log (round 2's pages are
 * the library's to remember).
 */
static unsigned long *round2_cut(struct pair *p)
{
	unsigned long *all = calloc(rmig_bitmap_longs(NPAGES), sizeof(long));
	unsigned long *later = calloc(rmig_bitmap_longs(NPAGES), sizeof(long));
	const unsigned long *maps[1] = { all };
	struct timespec ts = { 0, 100000000 };
	struct round r = { .p = p, .map = calloc(rmig_bitmap_longs(NPAGES), sizeof(long)) };

	assert_non_null(all);
	assert_non_null(later);
	assert_non_null(r.map);
	fill_random(p->smem, LEN, 1);
	memset(all, 0xff, rmig_bitmap_longs(NPAGES) * sizeof(long));
	assert_int_equal(rmig_send_round(p->src, maps, 1, NULL), 0);
	dirty(p, r.map, NPAGES / 2, NPAGES / 2, 2);
	assert_int_equal(pthread_create(&r.th, NULL, round_main, &r), 0);
	nanosleep(&ts, NULL);
	rmig_sess_test_cut(p->dst);
	pthread_join(r.th, NULL);
	assert_int_not_equal(r.rc, 0); /* the round did not land */
	dirty(p, later, 0, 256, 3);
	free(all);
	free(r.map);
	return later;
}

/* The resumed source sends @extra (and, when @honest, what the destination lacks). */
static void finish(struct pair *p, unsigned long *extra, bool honest)
{
	unsigned long *map = calloc(rmig_bitmap_longs(NPAGES), sizeof(long));
	unsigned long *mapv[1] = { map };
	const unsigned long *maps[1] = { map };
	struct rmig_stats st;
	int64_t missing;

	assert_non_null(map);
	missing = rmig_resume_missing(p->src, mapv, 1);
	/* round 1 was acknowledged: exactly round 2's half is missing */
	assert_int_equal(missing, NPAGES / 2);
	if (!honest)
		memset(map, 0, rmig_bitmap_longs(NPAGES) * sizeof(long));
	for (size_t w = 0; w < rmig_bitmap_longs(NPAGES); w++)
		map[w] |= extra[w];
	assert_int_equal(rmig_send_round(p->src, maps, 1, NULL), 0);
	rmig_get_stats(p->src, &st);
	assert_true(st.pages < NPAGES * 3 / 4); /* less than a fresh start */
	if (honest) {
		assert_int_equal(rmig_complete(p->src), 0);
		assert_int_equal(pair_join(p), 0);
		assert_memory_equal(p->smem, p->dmem, LEN);
	} else {
		/* the digests catch it too; the memory shows what went wrong */
		assert_int_not_equal(rmig_complete(p->src), 0);
		pair_join(p);
		assert_memory_not_equal(p->smem, p->dmem, LEN);
	}
	free(map);
}

/* Cut, resume, and the resumed source honest (or, as the negative control, not). */
static void cut_and_resume(bool honest)
{
	struct pair_cfg c = base();
	unsigned long *later;
	struct pair p;

	assert_int_equal(pair_open(&p, &c), 0);
	later = round2_cut(&p);
	assert_int_equal(pair_resume(&p, NULL, 0), 0);
	finish(&p, later, honest);
	free(later);
	pair_close(&p);
}

static void test_resume_after_cut(void **state)
{
	(void)state;
	cut_and_resume(true);
}

/* Negative control: without the pages the library names, round 2's half is stale. */
static void test_resume_without_missing_fails(void **state)
{
	(void)state;
	cut_and_resume(false);
}

/* Twice in a row: the second resume starts from what the first acknowledged. */
static void test_resume_twice(void **state)
{
	struct pair_cfg c = base();
	unsigned long *later;
	struct pair p;

	(void)state;
	assert_int_equal(pair_open(&p, &c), 0);
	later = round2_cut(&p);
	assert_int_equal(pair_resume(&p, NULL, 0), 0);
	/* the resumed session breaks before it sends anything */
	rmig_sess_test_cut(p.dst);
	assert_int_not_equal(rmig_sync(p.src), 0);
	assert_int_equal(pair_resume(&p, NULL, 0), 0);
	finish(&p, later, true);
	free(later);
	pair_close(&p);
}

/* The destination's thread with the one-call API: recover, then complete. */
static void *recover_main(void *arg)
{
	struct pair *p = arg;
	char uri[128];

	snprintf(uri, sizeof(uri), "tcp://%s:%d", p->cfg.addr ? p->cfg.addr : "127.0.0.1", p->port);
	p->accept_rc = rmig_recover(&p->dst, uri);
	p->dst_rc = p->accept_rc ? p->accept_rc : rmig_complete(p->dst);
	return NULL;
}

/*
 * rmig_recover() and rmig_resume(): the handles become the new sessions.
 * The source may come before the destination listens again: each refused
 * try leaves a failed session that the next call resumes.
 */
static void test_resume_one_call(void **state)
{
	struct pair_cfg c = base();
	struct timespec ts = { 0, 20000000 };
	rmig_session *old_src;
	unsigned long *later;
	struct pair p;
	char uri[128];
	int rc = -1;

	(void)state;
	assert_int_equal(pair_open(&p, &c), 0);
	later = round2_cut(&p);
	/* the wrong role, or no session: -EINVAL, and the handle is left alone */
	old_src = p.src;
	assert_int_equal(rmig_recover(&p.src, "tcp://127.0.0.1:0"), -EINVAL);
	assert_ptr_equal(p.src, old_src);
	assert_int_equal(rmig_resume(NULL, "x"), -EINVAL);
	pair_join(&p);
	snprintf(uri, sizeof(uri), "%s:%d", c.addr ? c.addr : "127.0.0.1", p.port);
	assert_int_equal(pthread_create(&p.th, NULL, recover_main, &p), 0);
	p.th_started = true;
	for (int i = 0; i < 250 && rc; i++) {
		rc = rmig_resume(&p.src, uri);
		if (rc)
			nanosleep(&ts, NULL);
	}
	/*
	 * No pointer check on the new handle: each refused try frees the
	 * session before it, so the allocator may hand back old_src's address.
	 */
	assert_int_equal(rc, 0);
	finish(&p, later, true);
	free(later);
	pair_close(&p);
}

struct accept_arg {
	rmig_session *d;
	int rc;  /* rmig_accept() */
	int crc; /* rmig_complete(), after an accept */
};

static void *accept_main(void *arg)
{
	struct accept_arg *a = arg;

	a->rc = rmig_accept(a->d);
	a->crc = a->rc ? a->rc : rmig_complete(a->d);
	return NULL;
}

/* The destination keeps @p's migration and listens again on its port: the thread accepts. */
static void keep_and_listen(struct pair *p, struct accept_arg *a, pthread_t *th)
{
	char uri[128];

	pair_join(p);
	assert_int_equal(rmig_session_create(&p->dopt, &a->d), 0);
	assert_int_equal(rmig_resume_from(a->d, p->dst), 0);
	p->dst = a->d;
	snprintf(uri, sizeof(uri), "tcp://%s:%d", p->cfg.addr ? p->cfg.addr : "127.0.0.1",
		 p->port);
	assert_int_equal(rmig_listen(a->d, uri), 0);
	assert_int_equal(pthread_create(th, NULL, accept_main, a), 0);
}

/* A source of another migration is refused; the kept one still resumes. */
static void test_stranger_refused(void **state)
{
	struct pair_cfg c = base();
	struct accept_arg a = { 0 };
	struct rmig_opts o;
	unsigned long *later;
	rmig_session *x;
	char uri[128];
	pthread_t th;
	struct pair p;

	(void)state;
	assert_int_equal(pair_open(&p, &c), 0);
	later = round2_cut(&p);
	keep_and_listen(&p, &a, &th);
	o = p.so;
	assert_int_equal(rmig_session_create(&o, &x), 0);
	assert_int_equal(rmig_add_ram(x, "ram", p.smem, LEN, PAGE), 0);
	snprintf(uri, sizeof(uri), "%s:%d", p.cfg.addr ? p.cfg.addr : "127.0.0.1", p.port);
	assert_int_not_equal(rmig_connect(x, uri), 0);
	assert_non_null(strstr(rmig_last_error(x), "keeps another migration"));
	/* the kept id is not told to a stranger */
	assert_null(strstr(rmig_last_error(x), "session"));
	rmig_session_destroy(x);
	pthread_join(th, NULL);
	assert_int_equal(a.rc, -EACCES);
	assert_non_null(strstr(rmig_last_error(p.dst), "keeps another migration"));
	/* the refused session is kept in turn */
	assert_int_equal(pair_resume(&p, NULL, 0), 0);
	finish(&p, later, true);
	free(later);
	pair_close(&p);
}

/* With a key: a resume with another key is refused, and the right key resumes. */
static void test_wrong_key_refused(void **state)
{
	struct pair_cfg c = base();
	struct accept_arg a = { 0 };
	struct rmig_opts o;
	unsigned long *later;
	rmig_session *s2, *s3;
	char uri[128];
	pthread_t th;
	struct pair p;

	(void)state;
	c.src_key = c.dst_key = key_a;
	c.src_key_len = c.dst_key_len = sizeof(key_a) - 1;
	assert_int_equal(pair_open(&p, &c), 0);
	later = round2_cut(&p);
	keep_and_listen(&p, &a, &th);
	snprintf(uri, sizeof(uri), "%s:%d", p.cfg.addr ? p.cfg.addr : "127.0.0.1", p.port);
	o = p.so;
	o.key = key_b;
	o.key_len = sizeof(key_b) - 1;
	assert_int_equal(rmig_session_create(&o, &s2), 0);
	assert_int_equal(rmig_resume_from(s2, p.src), 0);
	p.src = s2;
	assert_int_equal(rmig_connect(s2, uri), -EACCES);
	/* the destination still waits for its source */
	o.key = key_a;
	assert_int_equal(rmig_session_create(&o, &s3), 0);
	assert_int_equal(rmig_resume_from(s3, s2), 0);
	p.src = s3;
	assert_int_equal(rmig_connect(s3, uri), 0);
	{
		unsigned long *map = calloc(rmig_bitmap_longs(NPAGES), sizeof(long));
		unsigned long *mapv[1] = { map };
		const unsigned long *maps[1] = { map };

		assert_int_equal(rmig_resume_missing(s3, mapv, 1), NPAGES / 2);
		for (size_t w = 0; w < rmig_bitmap_longs(NPAGES); w++)
			map[w] |= later[w];
		assert_int_equal(rmig_send_round(s3, maps, 1, NULL), 0);
		assert_int_equal(rmig_complete(s3), 0);
		pthread_join(th, NULL);
		assert_int_equal(a.rc, 0);
		assert_int_equal(a.crc, 0);
		assert_memory_equal(p.smem, p.dmem, LEN);
		free(map);
	}
	free(later);
	pair_close(&p);
}

static void test_refusals(void **state)
{
	struct pair_cfg c = base();
	unsigned long *mapv[1] = { NULL };
	rmig_session *a, *b, *d;
	struct rmig_opts o;
	struct pair p;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.log_fn = NULL;
	/* a session that never connected has nothing to resume (and is destroyed) */
	assert_int_equal(rmig_session_create(&o, &a), 0);
	assert_int_equal(rmig_session_create(&o, &b), 0);
	assert_int_equal(rmig_resume_from(b, a), -EINVAL);
	assert_int_equal(rmig_resume_from(b, NULL), -EINVAL);
	/* not a resuming session */
	assert_int_equal(rmig_resume_missing(b, mapv, 1), -ENOTCONN);
	rmig_session_destroy(b);
	/* roles differ */
	o.role = RMIG_ROLE_DEST;
	assert_int_equal(rmig_session_create(&o, &d), 0);
	o.role = RMIG_ROLE_SOURCE;
	assert_int_equal(rmig_session_create(&o, &b), 0);
	assert_int_equal(rmig_resume_from(b, d), -EINVAL);
	rmig_session_destroy(b);

	/* a completed migration is not resumed; a connected, fresh one has nothing missing */
	c.max_bandwidth = 0;
	c.len = 1 << 20;
	assert_int_equal(pair_open(&p, &c), 0);
	mapv[0] = calloc(1, (1 << 20) / PAGE / 8);
	assert_int_equal(rmig_resume_missing(p.src, mapv, 1), -EINVAL);
	assert_int_equal(rmig_send_range(p.src, "ram", 0, 1 << 20), 0);
	assert_int_equal(rmig_complete(p.src), 0);
	assert_int_equal(pair_join(&p), 0);
	assert_int_equal(rmig_session_create(&o, &b), 0);
	assert_int_equal(rmig_resume_from(b, p.src), -EALREADY);
	p.src = NULL;
	rmig_session_destroy(b);
	free(mapv[0]);
	pair_close(&p);
}

/* ---- postcopy ---- */

struct guest {
	struct pair *p;
	_Atomic uint64_t done;
	_Atomic unsigned int bad;
	uint64_t *lat_ns; /* each page's read, fault included */
	pthread_t th;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The destination's guest: read every page in turn (each a fault), compare with the source's. */
static void *guest_main(void *arg)
{
	struct guest *g = arg;

	for (uint64_t i = 0; i < NPAGES; i++) {
		uint64_t t0 = mono_ns();

		if (memcmp(g->p->dmem + i * PAGE, g->p->smem + i * PAGE, PAGE))
			atomic_fetch_add(&g->bad, 1);
		g->lat_ns[i] = mono_ns() - t0;
		atomic_fetch_add(&g->done, 1);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Fault latency p50/p99 of the pages read before the break, and after it
 * (the @outages reads that waited through an outage left out).
 */
static void print_latency(struct guest *g, uint64_t cut_at, unsigned int outages)
{
	uint64_t *a = malloc(NPAGES * sizeof(*a)), n1 = cut_at, n2;

	assert_non_null(a);
	memcpy(a, g->lat_ns, n1 * sizeof(*a));
	qsort(a, n1, sizeof(*a), cmp_u64);
	printf("# postcopy fault latency before the break: p50 %.0f us, p99 %.0f us (%llu faults)\n",
	       a[n1 / 2] / 1e3, a[n1 * 99 / 100] / 1e3, (unsigned long long)n1);
	n2 = NPAGES - cut_at;
	memcpy(a, g->lat_ns + cut_at, n2 * sizeof(*a));
	qsort(a, n2, sizeof(*a), cmp_u64);
	n2 -= outages;
	printf("# postcopy fault latency after the resume: p50 %.0f us, p99 %.0f us (%llu faults; "
	       "the %u read(s) through the outage left out)\n",
	       a[n2 / 2] / 1e3, a[n2 * 99 / 100] / 1e3, (unsigned long long)n2, outages);
	free(a);
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * Cut the link once the guest has read NPAGES / 16 more pages than @from:
 * by its progress, not by a delay, so a fast machine cannot finish the
 * guest first and a slow one still faults before the cut.
 */
static void cut_when_moving(struct pair *p, struct guest *g, uint64_t from)
{
	for (int i = 0; i < 20000 && atomic_load(&g->done) < from + NPAGES / 16; i++)
		sleep_ms(1);
	assert_true(atomic_load(&g->done) < NPAGES);
	rmig_sess_test_cut(p->dst);
}

/*
 * Postcopy at once (every page missing), the guest started, the link cut
 * 100 ms in; false: no userfaultfd here (skipped).
 */
static bool pc_cut(struct pair *p, struct guest *g, unsigned int recovery_ms)
{
	struct pair_cfg c = base();
	unsigned long *all = calloc(rmig_bitmap_longs(NPAGES), sizeof(long));
	const unsigned long *maps[1] = { all };
	int rc;

	assert_non_null(all);
	if (getenv("RMIG_VALGRIND")) {
		printf("# userfaultfd under valgrind (one thread at a time): skipped\n");
		free(all);
		return false;
	}
	c.flags = RMIG_F_POSTCOPY | RMIG_F_VERIFY;
	c.dst_uffd = true;
	c.max_bandwidth = 0;
	c.recovery_timeout_ms = recovery_ms;
	rc = pair_open(p, &c);
	if (rc == -EPERM || rc == -ENOSYS) {
		printf("# no userfaultfd here (%s): skipped\n", strerror(-rc));
		pair_close(p);
		free(all);
		return false;
	}
	assert_int_equal(rc, 0);
	fill_random(p->smem, LEN, 7);
	memset(all, 0xff, rmig_bitmap_longs(NPAGES) * sizeof(long));
	assert_int_equal(rmig_postcopy_start(p->src, maps, 1), 0);
	free(all);
	*g = (struct guest){ .p = p, .lat_ns = calloc(NPAGES, sizeof(uint64_t)) };
	assert_non_null(g->lat_ns);
	assert_int_equal(pthread_create(&g->th, NULL, guest_main, g), 0);
	cut_when_moving(p, g, 0);
	return true;
}

/* The guest waits through the outage: no progress, no zero page. Returns the pages it read. */
static uint64_t assert_waiting(struct guest *g)
{
	uint64_t d0;

	sleep_ms(100); /* the fault in flight at the cut settles */
	d0 = atomic_load(&g->done);
	sleep_ms(300);
	assert_true(d0 < NPAGES);
	assert_int_equal(atomic_load(&g->done), d0);
	assert_int_equal(atomic_load(&g->bad), 0);
	return d0;
}

static void pc_finish(struct pair *p, struct guest *g, unsigned int pauses, uint64_t cut_at)
{
	struct rmig_stats st;

	assert_int_equal(rmig_postcopy_send_rest(p->src), 0);
	assert_int_equal(rmig_complete(p->src), 0);
	assert_int_equal(pair_join(p), 0);
	pthread_join(g->th, NULL);
	assert_int_equal(atomic_load(&g->done), NPAGES);
	assert_int_equal(atomic_load(&g->bad), 0);
	assert_memory_equal(p->smem, p->dmem, LEN);
	rmig_get_stats(p->dst, &st);
	assert_int_equal(st.pc_pauses, pauses);
	assert_true(st.pc_paused_ns > 0);
	/*
	 * (pc_rerequested: the guest's waiting fault, when the handler had
	 * taken it before the resume; one still queued is asked for anew)
	 */
	printf("# postcopy: %llu pause(s), %.0f ms paused, %llu page(s) asked for again\n",
	       (unsigned long long)st.pc_pauses, st.pc_paused_ns / 1e6,
	       (unsigned long long)st.pc_rerequested);
	print_latency(g, cut_at, pauses);
	free(g->lat_ns);
}

/* The link cut @breaks times while the guest runs, each time resumed. */
static void pc_pause_case(unsigned int breaks)
{
	uint64_t cut_at;
	struct guest g;
	struct pair p;

	if (!pc_cut(&p, &g, 20000))
		return;
	cut_at = assert_waiting(&g);
	assert_int_equal(pair_resume(&p, NULL, 0), 0);
	for (unsigned int i = 1; i < breaks; i++) {
		cut_when_moving(&p, &g, atomic_load(&g.done));
		assert_waiting(&g);
		assert_int_equal(pair_resume(&p, NULL, 0), 0);
	}
	pc_finish(&p, &g, breaks, cut_at);
	pair_close(&p);
}

static void test_postcopy_pause_resume(void **state)
{
	(void)state;
	pc_pause_case(1);
}

static void test_postcopy_pause_twice(void **state)
{
	(void)state;
	pc_pause_case(2);
}

/* Past the window: the blocks are unregistered, the guest reads zeros, no resume. */
static void test_postcopy_window_expires(void **state)
{
	struct rmig_stats st;
	rmig_session *d;
	struct guest g;
	struct pair p;

	(void)state;
	if (!pc_cut(&p, &g, 300))
		return;
	pthread_join(g.th, NULL); /* no thread stays blocked */
	free(g.lat_ns);
	assert_int_equal(atomic_load(&g.done), NPAGES);
	assert_true(atomic_load(&g.bad) > 0);
	assert_non_null(strstr(rmig_last_error(p.dst), "postcopy paused"));
	rmig_get_stats(p.dst, &st);
	assert_int_equal(st.pc_pauses, 1);
	assert_true(st.pc_paused_ns >= 300000000ull);
	pair_join(&p);
	assert_int_equal(rmig_session_create(&p.dopt, &d), 0);
	assert_int_equal(rmig_resume_from(d, p.dst), -ETIMEDOUT);
	p.dst = d;
	pair_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resume_after_cut),
		cmocka_unit_test(test_resume_without_missing_fails),
		cmocka_unit_test(test_resume_twice),
		cmocka_unit_test(test_resume_one_call),
		cmocka_unit_test(test_stranger_refused),
		cmocka_unit_test(test_wrong_key_refused),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_postcopy_pause_resume),
		cmocka_unit_test(test_postcopy_pause_twice),
		cmocka_unit_test(test_postcopy_window_expires),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
