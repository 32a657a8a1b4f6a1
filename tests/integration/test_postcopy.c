/* SPDX-License-Identifier: MIT */
/*
 * test_postcopy.c - postcopy over TCP.
 *
 * A precopy round moves the RAM, then some pages change at the source and
 * the migration switches to postcopy. The destination touches those pages
 * (through rmig_postcopy_fetch(), or as plain memory reads under the
 * userfaultfd handler) and each must hold the source's new contents before
 * the background pages are sent; then the rest follows and the whole RAM is
 * compared byte for byte. Also: pure postcopy (no precopy round), the
 * shared-channel variant (RMIG_F_NO_URGENT), a source that goes away while
 * the destination's threads wait on faults, and the refused options.
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
#include <unistd.h>

#include <cmocka.h>

#include "sess.h"
#include "testlib.h"

#define LEN (16u << 20)
#define PS 4096u
#define NPAGES (LEN / PS)
#define NDIRTY 300

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

static void postcopy_case(bool uffd, bool precopy, unsigned int flags)
{
	struct pair_cfg c = { .channels = 3, .len = LEN, .page_size = PS, .timeout_ms = 10000 };
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
	rmig_get_stats(p.dst, &st);
	if (uffd)
		assert_true(st.pc_faults >= NDIRTY);
	pair_close(&p);
}

static void test_fetch_after_precopy(void **state)
{
	(void)state;
	postcopy_case(false, true, 0);
}

static void test_fetch_shared_channels(void **state)
{
	(void)state;
	postcopy_case(false, true, RMIG_F_NO_URGENT);
}

static void test_uffd_after_precopy(void **state)
{
	(void)state;
	postcopy_case(true, true, 0);
}

static void test_uffd_pure_postcopy(void **state)
{
	(void)state;
	postcopy_case(true, false, 0);
}

/* The source goes away while the guest waits on faults: nobody stays blocked. */
static void test_uffd_source_gone(void **state)
{
	struct pair_cfg c = { .channels = 2, .len = LEN, .page_size = PS, .timeout_ms = 2000 };
	static unsigned long bm[NPAGES / (8 * sizeof(long))];
	static uint64_t pages[NDIRTY];
	const unsigned long *bms[1] = { bm };
	struct toucher t = { .uffd = true };
	uint64_t t0;
	struct pair p;
	pthread_t th;
	int rc;

	(void)state;
	c.flags = RMIG_F_POSTCOPY;
	c.dst_uffd = true;
	rc = pair_open(&p, &c);
	if (!uffd_usable(&c, &p, rc))
		skip();
	assert_int_equal(rc, 0);
	memset(bm, 0xff, sizeof(bm));
	for (unsigned int i = 0; i < NDIRTY; i++)
		pages[i] = i * 13;
	fill_random(p.smem, LEN, 5);
	assert_int_equal(rmig_postcopy_start(p.src, bms, 1), 0);
	/* the source stops serving: requests will never be answered */
	pthread_mutex_lock(&p.src->pc.qlock);
	p.src->pc.qstop = true;
	pthread_cond_broadcast(&p.src->pc.qcond);
	pthread_mutex_unlock(&p.src->pc.qlock);
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
	o.transport = RMIG_TRANSPORT_RDMA;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.transport = RMIG_TRANSPORT_AUTO;
	o.extent_max = 4u << 20;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.extent_max = 1u << 20;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	/* not connected yet */
	assert_int_not_equal(rmig_postcopy_start(s, NULL, 0), 0);
	rmig_session_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fetch_after_precopy),
		cmocka_unit_test(test_fetch_shared_channels),
		cmocka_unit_test(test_uffd_after_precopy),
		cmocka_unit_test(test_uffd_pure_postcopy),
		cmocka_unit_test(test_uffd_source_gone),
		cmocka_unit_test(test_postcopy_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
