/* SPDX-License-Identifier: MIT */
/*
 * test_state_blobs.c - device state at a destination (core/state.c), with no
 * connection: blobs announced by STATE_BEGIN, their bytes placed in chunks
 * through the session's upcalls as a backend places them, each complete
 * blob loaded once with exactly its bytes, COMPLETE's blob section (the
 * count, the digests, arrived and loaded); and what is refused: a chunk out
 * of its blob, a name and instance announced twice, a blob short of its
 * length or missing at completion.
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

#include <cmocka.h>
#include <xxhash.h>

#include "pool.h"
#include "sess.h"

#define BIG 10000u

struct loaded {
	pthread_mutex_t lock;
	unsigned int n;
	char name[4][16];
	uint32_t instance[4];
	uint64_t len[4];
	uint8_t data[4][BIG];
};

static int load(void *arg, const char *name, uint32_t instance, const void *data, uint64_t len)
{
	struct loaded *l = arg;

	pthread_mutex_lock(&l->lock);
	if (l->n < 4 && len <= BIG) {
		snprintf(l->name[l->n], sizeof(l->name[0]), "%s", name);
		l->instance[l->n] = instance;
		l->len[l->n] = len;
		memcpy(l->data[l->n], data, len);
		l->n++;
	}
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static rmig_session *dest(struct loaded *l)
{
	struct rmig_opts o;
	rmig_session *s = NULL;

	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.state_fn = load;
	o.state_arg = l;
	o.log_level = RMIG_LOG_ERROR;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_pool_create(1, &s->pool), 0); /* the load threads accept makes */
	s->verify = true; /* as a source with RMIG_F_VERIFY asks in its HELLO: digests */
	return s;
}

static int announce(rmig_session *s, uint32_t blob, const char *name, uint32_t instance,
		    uint64_t total)
{
	struct rmig_msg_state_begin m = { .blob = blob, .instance = instance, .total = total };
	uint8_t buf[256];
	int n;

	snprintf(m.name, sizeof(m.name), "%s", name);
	n = rmig_state_begin_encode(&m, buf, sizeof(buf));
	assert_true(n > 0);
	return rmig_up_ctl(s, RMIG_MSG_STATE_BEGIN, buf, (uint32_t)n);
}

/* @len bytes of blob @blob at @off, as a backend places them. */
static int chunk(rmig_session *s, uint32_t blob, uint64_t total, uint64_t off, const uint8_t *p,
		 uint64_t len)
{
	struct rmig_target t = { .kind = RMIG_TGT_STATE, .id = blob, .offset = off, .total = total };
	void *dst;
	int rc = s->up.place(s->up.arg, 0, &t, len, &dst);

	if (rc)
		return rc;
	memcpy(dst, p, len);
	return s->up.placed(s->up.arg, 0, &t, len);
}

static void test_blobs_arrive_and_load(void **state)
{
	static uint8_t cpu[BIG];
	const struct rmig_feature *f;
	uint8_t dg[2][RMIG_DIGEST_LEN];
	XXH128_canonical_t c;
	struct loaded l;
	rmig_session *s = dest(&l);

	(void)state;
	for (unsigned int i = 0; i < BIG; i++)
		cpu[i] = (uint8_t)(i * 7 + 3);
	f = rmig_sess_blob_owner(s);
	assert_non_null(f);
	assert_int_equal(announce(s, 0, "cpu", 0, BIG), 0);
	assert_int_equal(announce(s, 1, "nic", 3, 0), 0); /* empty: loads at once */
	/* the second half first: chunks may come in any order, on any channel */
	assert_int_equal(chunk(s, 0, BIG, 4096, cpu + 4096, BIG - 4096), 0);
	assert_int_equal(chunk(s, 0, BIG, 0, cpu, 4096), 0);
	assert_int_equal(f->blobs(s), 2);
	assert_int_equal(f->blobs_done(s, 2), 0);
	assert_int_equal(l.n, 2);
	for (unsigned int i = 0; i < 2; i++) {
		bool is_cpu = !strcmp(l.name[i], "cpu");

		assert_int_equal(l.instance[i], is_cpu ? 0 : 3);
		assert_int_equal(l.len[i], is_cpu ? BIG : 0);
		if (is_cpu)
			assert_memory_equal(l.data[i], cpu, BIG);
		else
			assert_string_equal(l.name[i], "nic");
	}
	/* the digests COMPLETE compares: XXH3-128 of each blob, by blob id */
	assert_int_equal(f->blob_digests(s, dg, 2), 0);
	XXH128_canonicalFromHash(&c, XXH3_128bits(cpu, BIG));
	assert_memory_equal(dg[0], c.digest, RMIG_DIGEST_LEN);
	XXH128_canonicalFromHash(&c, XXH3_128bits(cpu, 0));
	assert_memory_equal(dg[1], c.digest, RMIG_DIGEST_LEN);
	assert_int_equal(f->blob_digests(s, dg, 1), -EINVAL); /* a count that does not match */
	assert_int_equal(rmig_error(s), 0);
	rmig_session_destroy(s);
}

static void test_refused(void **state)
{
	static const uint8_t bytes[8192];
	struct loaded l;
	rmig_session *s = dest(&l);

	(void)state;
	/* a chunk past its blob's end */
	assert_int_equal(announce(s, 0, "cpu", 0, 100), 0);
	assert_int_equal(chunk(s, 0, 100, 0, bytes, 200), -ERANGE);
	assert_non_null(strstr(rmig_last_error(s), "device-state chunk out of range"));
	rmig_session_destroy(s);
	/* one name and instance under two blob ids */
	s = dest(&l);
	assert_int_equal(announce(s, 0, "cpu", 0, 100), 0);
	assert_int_equal(announce(s, 1, "cpu", 0, 100), -EBADMSG);
	assert_non_null(strstr(rmig_last_error(s), "announced twice"));
	rmig_session_destroy(s);
	/* COMPLETE after the sync, a blob short of its length: never loaded */
	s = dest(&l);
	assert_int_equal(announce(s, 0, "cpu", 0, 8192), 0);
	assert_int_equal(chunk(s, 0, 8192, 0, bytes, 4096), 0);
	assert_int_not_equal(rmig_sess_blob_owner(s)->blobs_done(s, 1), 0);
	assert_non_null(strstr(rmig_last_error(s), "device state incomplete at completion"));
	assert_non_null(strstr(rmig_last_error(s), "4096 of 8192 bytes"));
	assert_int_equal(l.n, 0);
	rmig_session_destroy(s);
	/* COMPLETE names a blob that never came */
	s = dest(&l);
	assert_int_equal(announce(s, 0, "cpu", 0, 0), 0);
	assert_int_not_equal(rmig_sess_blob_owner(s)->blobs_done(s, 2), 0);
	assert_non_null(strstr(rmig_last_error(s), "COMPLETE names 2 device-state blobs, 1 arrived"));
	rmig_session_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blobs_arrive_and_load),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
