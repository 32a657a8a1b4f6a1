/* SPDX-License-Identifier: MIT */
/*
 * test_vmtrack.c - dirty tracking by a shadow copy (tools/vmtrack.c), the
 * exact fallback of vm-send where the kernel has no soft-dirty bits.
 *
 * The race it must survive: a page that changes after the tracker decided
 * it was dirty and before its bytes were read for sending, then changes
 * back. A tracker that decides by hash and reads the guest later records
 * one version and sends another, and then misses the page for good; the
 * naive tracker below is that design, the negative control.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vmtrack.h"

#define PG 4096u
#define NP 16u

static bool dirty(const struct vmtrack *t, uint64_t p)
{
	return t->map[p / (8 * sizeof(long))] & (1ul << (p % (8 * sizeof(long))));
}

/* "Send" a round: the destination gets the marked pages from the shadow. */
static void send_round(const struct vmtrack *t, uint8_t *dst)
{
	for (uint64_t p = 0; p < t->npages; p++)
		if (dirty(t, p))
			memcpy(dst + p * PG, t->shadow + p * PG, PG);
}

static void test_rounds(void **state)
{
	uint8_t *g = calloc(NP, PG), *dst = calloc(NP, PG);
	struct vmtrack t;

	(void)state;
	for (unsigned int i = 0; i < NP * PG; i++)
		g[i] = (uint8_t)(i * 7);
	assert_int_equal(vmtrack_init(&t, g, NP * PG, PG), 0);
	assert_int_equal(vmtrack_collect(&t, true, false), NP);
	send_round(&t, dst);
	assert_memory_equal(g, dst, NP * PG);
	assert_int_equal(vmtrack_collect(&t, false, false), 0); /* nothing changed */
	g[3 * PG + 100] ^= 1;
	assert_int_equal(vmtrack_collect(&t, false, false), 1);
	assert_true(dirty(&t, 3));
	send_round(&t, dst);
	assert_memory_equal(g, dst, NP * PG);
	/* a page changed and changed back between rounds: the destination already has it */
	g[5 * PG] ^= 0xff;
	g[5 * PG] ^= 0xff;
	assert_int_equal(vmtrack_collect(&t, false, false), 0);
	assert_memory_equal(g, dst, NP * PG);
	vmtrack_free(&t);
	free(g);
	free(dst);
}

/* The race: B decided, A written back before the send, then B again. */
static void test_change_back_during_round(void **state)
{
	uint8_t *g = calloc(NP, PG), *dst = calloc(NP, PG);
	struct vmtrack t;

	(void)state;
	memset(g + 7 * PG, 'A', PG);
	assert_int_equal(vmtrack_init(&t, g, NP * PG, PG), 0);
	vmtrack_collect(&t, true, false);
	send_round(&t, dst);
	memset(g + 7 * PG, 'B', PG);
	assert_int_equal(vmtrack_collect(&t, false, false), 1); /* decided: B */
	memset(g + 7 * PG, 'A', PG);                     /* back to A before the send */
	send_round(&t, dst);                             /* sends what was decided */
	memset(g + 7 * PG, 'B', PG);                     /* and B again */
	vmtrack_collect(&t, false, false);                      /* the last round, guest stopped */
	send_round(&t, dst);
	assert_memory_equal(g, dst, NP * PG);
	/* the other ending: it stays at A */
	memset(g + 7 * PG, 'C', PG);
	vmtrack_collect(&t, false, false);
	memset(g + 7 * PG, 'A', PG);
	send_round(&t, dst);
	vmtrack_collect(&t, false, false);
	send_round(&t, dst);
	assert_memory_equal(g, dst, NP * PG);
	vmtrack_free(&t);
	free(g);
	free(dst);
}

/* Pages collected for an estimate and not sent go with the next round. */
static void test_keep(void **state)
{
	uint8_t *g = calloc(NP, PG), *dst = calloc(NP, PG);
	struct vmtrack t;

	(void)state;
	assert_int_equal(vmtrack_init(&t, g, NP * PG, PG), 0);
	vmtrack_collect(&t, true, false);
	send_round(&t, dst);
	g[2 * PG] = 1;
	assert_int_equal(vmtrack_collect(&t, false, false), 1); /* for the estimate only */
	g[9 * PG] = 1;
	assert_int_equal(vmtrack_collect(&t, false, true), 1); /* the last round: both go */
	assert_true(dirty(&t, 2) && dirty(&t, 9));
	send_round(&t, dst);
	assert_memory_equal(g, dst, NP * PG);
	/* the control: without keep, page 2 would stay behind */
	g[4 * PG] = 1;
	vmtrack_collect(&t, false, false);
	g[11 * PG] = 1;
	vmtrack_collect(&t, false, false);
	send_round(&t, dst);
	assert_memory_not_equal(g, dst, NP * PG);
	vmtrack_free(&t);
	free(g);
	free(dst);
}

/* The negative control: decide by hash now, read the guest at send time. */
static uint64_t fnv(const uint8_t *p)
{
	uint64_t h = 1469598103934665603ull;

	for (unsigned int i = 0; i < PG; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static void test_naive_tracker_loses_the_page(void **state)
{
	uint8_t *g = calloc(NP, PG), *dst = calloc(NP, PG);
	uint64_t sent[NP];
	bool mark[NP];

	(void)state;
	memset(g + 7 * PG, 'A', PG);
	for (unsigned int p = 0; p < NP; p++) { /* round 1: everything */
		sent[p] = fnv(g + p * PG);
		memcpy(dst + p * PG, g + p * PG, PG);
	}
	memset(g + 7 * PG, 'B', PG);
	for (unsigned int p = 0; p < NP; p++) { /* round 2: decide by hash... */
		uint64_t h = fnv(g + p * PG);

		mark[p] = h != sent[p];
		sent[p] = h;
	}
	memset(g + 7 * PG, 'A', PG); /* ...the page changes back... */
	for (unsigned int p = 0; p < NP; p++) /* ...and is read at send time */
		if (mark[p])
			memcpy(dst + p * PG, g + p * PG, PG);
	memset(g + 7 * PG, 'B', PG);
	for (unsigned int p = 0; p < NP; p++) /* the last round: B hashes as "sent" */
		if (fnv(g + p * PG) != sent[p])
			memcpy(dst + p * PG, g + p * PG, PG);
	assert_memory_not_equal(g, dst, NP * PG); /* the destination kept A: lost */
	free(g);
	free(dst);
}

/*
 * Every page with @all, zero pages too, and the shadow equal to the guest
 * after it: a zero page over a zero shadow page is left unwritten, a zero
 * page over old shadow bytes is cleared (the negative case of the skip).
 */
static void test_all_zero_pages(void **state)
{
	uint8_t *g = calloc(NP, PG), *dst = calloc(NP, PG);
	struct vmtrack t;

	(void)state;
	memset(g + 2 * PG, 'x', PG);
	g[9 * PG + PG - 1] = 1; /* nonzero only in its last byte */
	assert_int_equal(vmtrack_init(&t, g, NP * PG, PG), 0);
	assert_int_equal(vmtrack_collect(&t, true, false), NP);
	for (unsigned int p = 0; p < NP; p++)
		assert_true(dirty(&t, p));
	assert_memory_equal(g, t.shadow, NP * PG);
	/* the shadow holds old bytes where the guest now has zeros */
	memset(g + 2 * PG, 0, PG);
	memset(t.shadow + 4 * PG, 'y', PG);
	assert_int_equal(vmtrack_collect(&t, true, false), NP);
	assert_memory_equal(g, t.shadow, NP * PG);
	send_round(&t, dst);
	assert_memory_equal(g, dst, NP * PG);
	vmtrack_free(&t);
	free(g);
	free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rounds),
		cmocka_unit_test(test_change_back_during_round),
		cmocka_unit_test(test_keep),
		cmocka_unit_test(test_naive_tracker_loses_the_page),
		cmocka_unit_test(test_all_zero_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
