/* SPDX-License-Identifier: MIT */
/*
 * test_api_stats.c - rmig_get_stats_sized(): a caller's smaller struct gets
 * the prefix and nothing past it, a larger one a zeroed tail, bad arguments
 * leave the buffer alone; rmig_version() against the header's macros; and
 * the calls a tool needs without a session: rmig_transport_built(),
 * rmig_strerror(), rmig_escape().
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fake_tp.h"
#include "testlib.h"

#define PS 4096u
#define NPAGES 64u
#define FILL 0x5a

/* A finished migration over the fake transport: its counters no longer move. */
static void migrate(struct pair *p)
{
	struct pair_cfg c = { .channels = 2, .len = NPAGES * PS, .page_size = PS,
			      .ops = &fake_ops, .timeout_ms = 5000 };

	fake_reset();
	assert_int_equal(pair_open(p, &c), 0);
	fill_random(p->smem, NPAGES * PS, 7);
	memset(p->smem, 0, 4 * PS); /* four zero pages */
	assert_int_equal(rmig_send_range(p->src, "ram", 0, NPAGES * PS), 0);
	assert_int_equal(rmig_complete(p->src), 0);
	assert_int_equal(pair_join(p), 0);
}

static int all_bytes(const void *p, size_t len, int v)
{
	for (size_t i = 0; i < len; i++)
		if (((const unsigned char *)p)[i] != (unsigned char)v)
			return 0;
	return 1;
}

static void test_prefix_only(void **state)
{
	struct pair p;
	struct rmig_stats full, st;
	/* whole fields, and one cut inside a field */
	const size_t sizes[] = { offsetof(struct rmig_stats, handled),
				 offsetof(struct rmig_stats, zero_pages),
				 offsetof(struct rmig_stats, pages) + 3,
				 offsetof(struct rmig_stats, channels),
				 offsetof(struct rmig_stats, chan[1]) };

	(void)state;
	migrate(&p);
	rmig_get_stats(p.src, &full);
	assert_int_equal(full.pages, NPAGES);
	assert_int_equal(full.zero_pages, 4);
	assert_int_equal(full.bytes, (NPAGES - 4) * PS);
	assert_int_equal(full.channels, 2);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];

		memset(&st, FILL, sizeof(st));
		assert_int_equal(rmig_get_stats_sized(p.src, &st, n), 0);
		assert_memory_equal(&st, &full, n);
		assert_true(all_bytes((char *)&st + n, sizeof(st) - n, FILL));
	}
	/* the prefix holds real counters, not the fill */
	memset(&st, FILL, sizeof(st));
	assert_int_equal(rmig_get_stats_sized(p.src, &st, offsetof(struct rmig_stats, zero_pages)), 0);
	assert_int_equal(st.bytes, (NPAGES - 4) * PS);
	assert_int_equal(st.handled, NPAGES * PS);
	assert_int_equal(st.pages, NPAGES);
	assert_true(all_bytes(&st.zero_pages, sizeof(st.zero_pages), FILL));
	/* the full size is rmig_get_stats() */
	memset(&st, FILL, sizeof(st));
	assert_int_equal(rmig_get_stats_sized(p.src, &st, sizeof(st)), 0);
	assert_memory_equal(&st, &full, sizeof(st));
	pair_close(&p);
}

static void test_larger_size_zero_tail(void **state)
{
	struct pair p;
	struct rmig_stats full;
	unsigned char buf[sizeof(struct rmig_stats) + 64 + 1];

	(void)state;
	migrate(&p);
	rmig_get_stats(p.dst, &full);
	memset(buf, FILL, sizeof(buf));
	/* a caller built against a struct 64 bytes larger; the last byte is past its size */
	assert_int_equal(rmig_get_stats_sized(p.dst, (struct rmig_stats *)(void *)buf,
					      sizeof(buf) - 1), 0);
	assert_memory_equal(buf, &full, sizeof(full));
	assert_true(all_bytes(buf + sizeof(full), 64, 0));
	assert_int_equal(buf[sizeof(buf) - 1], FILL);
	pair_close(&p);
}

static void test_bad_args(void **state)
{
	struct rmig_opts o;
	rmig_session *s;
	struct rmig_stats st;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	o.log_fn = NULL;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	memset(&st, FILL, sizeof(st));
	assert_int_equal(rmig_get_stats_sized(NULL, &st, sizeof(st)), -EINVAL);
	assert_int_equal(rmig_get_stats_sized(s, NULL, sizeof(st)), -EINVAL);
	assert_int_equal(rmig_get_stats_sized(s, &st, 0), -EINVAL);
	assert_int_equal(rmig_get_stats_sized(s, &st, sizeof(st.bytes) - 1), -EINVAL);
	assert_true(all_bytes(&st, sizeof(st), FILL));
	/* the smallest size accepted: the first field alone */
	assert_int_equal(rmig_get_stats_sized(s, &st, sizeof(st.bytes)), 0);
	assert_int_equal(st.bytes, 0);
	assert_true(all_bytes(&st.handled, sizeof(st) - sizeof(st.bytes), FILL));
	rmig_session_destroy(s);
}

static void test_version(void **state)
{
	char want[32];

	(void)state;
	snprintf(want, sizeof(want), "%d.%d.%d", RMIG_VERSION_MAJOR, RMIG_VERSION_MINOR,
		 RMIG_VERSION_PATCH);
	assert_string_equal(RMIG_VERSION_STRING, want);
	assert_string_equal(rmig_version(), RMIG_VERSION_STRING);
}

static void test_sessionless(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(rmig_transport_built(RMIG_TRANSPORT_TCP), 1);
	assert_int_equal(rmig_transport_built(RMIG_TRANSPORT_FILE), 1);
	assert_true(rmig_transport_built(RMIG_TRANSPORT_RDMA) == 0 ||
		    rmig_transport_built(RMIG_TRANSPORT_RDMA) == 1);
	assert_int_equal(rmig_transport_built((enum rmig_transport_kind)77), 0);
	assert_string_equal(rmig_strerror(-ETIMEDOUT), "timed out");
	assert_string_equal(rmig_strerror(-ECONNRESET), "connection closed by peer");
	assert_string_equal(rmig_strerror(-ENOENT), strerror(ENOENT));
	{ /* static, even for a value with no name: not a buffer the next call frees */
		const char *a = rmig_strerror(-100000);

		assert_string_equal(rmig_strerror(-100001), "unknown error");
		assert_string_equal(a, "unknown error");
	}
	assert_string_equal(rmig_transport_name(RMIG_TRANSPORT_FILE), "file");
	assert_string_equal(rmig_transport_name((enum rmig_transport_kind)99), "unknown");
	assert_int_equal(rmig_escape(buf, sizeof(buf), NULL), 6);
	assert_string_equal(buf, "(null)");
	/* a terminal escape from a peer is shown, not obeyed */
	assert_int_equal(rmig_escape(buf, sizeof(buf), "ok\x1b[2J\x7f\xc3"), 17);
	assert_string_equal(buf, "ok\\x1b[2J\\x7f\\xc3");
	/* cut on a whole escape, always terminated */
	assert_int_equal(rmig_escape(buf, 5, "a\x1b"), 1);
	assert_string_equal(buf, "a");
	assert_true(RMIG_KEY_MIN == 16 && RMIG_KEY_MAX == 4096);
	assert_int_equal(RMIG_BITMAP_LONGS(RMIG_BITS_PER_LONG + 1), 2);
	assert_int_equal(RMIG_BITMAP_LONGS(0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefix_only),
		cmocka_unit_test(test_larger_size_zero_tail),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_sessionless),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
