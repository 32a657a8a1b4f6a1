/* SPDX-License-Identifier: MIT */
/*
 * test_file.c - "file:PATH" sessions: save to a file at fixed offsets and
 * restore from it. Round trips byte for byte (random, sparse, 2 MiB pages,
 * hugetlb memory when the host has a pool), 1/4/8 channels, with and without
 * O_DIRECT, misaligned memory (the bounce buffers), device state, digests;
 * a live save with a writer dirtying pages between rounds, restored against
 * the final memory. Broken files: test_file_bad.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bitmap.h"
#include "file.h"
#include "file_util.h"
#include "testlib.h"

/* One round trip: @fill the source, save, restore into memory full of 0x5a. */
static void roundtrip(uint64_t len, uint32_t ps, unsigned int ch, unsigned int flags,
		      void (*fill)(uint8_t *, uint64_t))
{
	struct side sd = { .channels = ch, .flags = flags };
	uint8_t *src = guarded_alloc(len), *dst = guarded_alloc(len);
	char path[128];

	path_of(path, sizeof(path), "rt.rmig");
	fill(src, len);
	memset(dst, 0x5a, len);
	assert_int_equal(save(path, src, len, ps, &sd, NULL), 0);
	assert_int_equal(restore(path, dst, len, ps, &sd, NULL), 0);
	assert_memory_equal(src, dst, len);
	guarded_free(src, len);
	guarded_free(dst, len);
	unlink(path);
}

static void random_fill(uint8_t *p, uint64_t len)
{
	fill_random(p, len, len + 7);
}

static void sparse_fill(uint8_t *p, uint64_t len)
{
	fill_sparse(p, len, 4096, 37, 5);
}

static void test_roundtrip_channels(void **state)
{
	static const unsigned int chans[] = { 1, 4, 8 };

	(void)state;
	for (unsigned int d = 0; d < 2; d++)
		for (unsigned int i = 0; i < 3; i++) {
			roundtrip(24 << 20, 4096, chans[i], d ? RMIG_F_DIRECT : 0, random_fill);
			roundtrip(32 << 20, 4096, chans[i], d ? RMIG_F_DIRECT : 0, sparse_fill);
		}
}

/* Zero pages are holes: never written, so never allocated. */
static void test_sparse_holes(void **state)
{
	uint64_t len = 64 << 20, alloc, size;
	uint8_t *src = guarded_alloc(len), *dst = guarded_alloc(len);
	struct side sd = { .channels = 4 };
	char path[128];

	(void)state;
	path_of(path, sizeof(path), "sparse.rmig");
	fill_sparse(src, len, 4096, 64, 11); /* 1/64 of the pages hold data */
	assert_int_equal(save(path, src, len, 4096, &sd, NULL), 0);
	size = file_size(path, &alloc);
	printf("# 64 MiB, 1/64 data: file %llu bytes, %llu allocated\n", (unsigned long long)size,
	       (unsigned long long)alloc);
	assert_true(size >= len && size < len + (4 << 20)); /* RAM plus layout */
	assert_true(alloc < len / 16);
	/* a destination that holds old data: every zero page is cleared there */
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), 0);
	assert_memory_equal(src, dst, len);
	/* a zeroed destination (RMIG_F_ZEROED): zero pages are not even touched */
	memset(dst, 0, len);
	sd.flags = RMIG_F_ZEROED;
	assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), 0);
	assert_memory_equal(src, dst, len);
	/* the control: ZEROED over old data keeps it, as the flag warns */
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), 0);
	assert_memory_not_equal(src, dst, len);
	guarded_free(src, len);
	guarded_free(dst, len);
	unlink(path);
}

static void test_hugepages(void **state)
{
	uint64_t len = 16 << 20;
	struct side sd = { .channels = 4 };
	uint8_t *src, *dst;
	char path[128];

	(void)state;
	/* 2 MiB pages in ordinary memory: larger than extent_max (1 MiB) */
	roundtrip(64 << 20, 2 << 20, 4, 0, sparse_fill);
	roundtrip(32 << 20, 2 << 20, 2, RMIG_F_DIRECT, random_fill);
	/* hugetlb memory on both sides, when the host has a pool */
	src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
		   -1, 0);
	dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
		   -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED) {
		printf("# skipped hugetlb memory: no 2 MiB pages to be had here (%s); "
		       "/proc/sys/vm/nr_hugepages\n",
		       strerror(errno));
	} else {
		path_of(path, sizeof(path), "huge.rmig");
		fill_sparse(src, len, 2 << 20, 2, 3);
		memset(dst, 0x5a, len);
		for (unsigned int d = 0; d < 2; d++) {
			sd.flags = d ? RMIG_F_DIRECT : 0;
			assert_int_equal(save(path, src, len, 2 << 20, &sd, NULL), 0);
			assert_int_equal(restore(path, dst, len, 2 << 20, &sd, NULL), 0);
			assert_memory_equal(src, dst, len);
			memset(dst, 0x5a, len);
		}
		unlink(path);
	}
	if (src != MAP_FAILED)
		munmap(src, len);
	if (dst != MAP_FAILED)
		munmap(dst, len);
}

/* O_DIRECT from and into memory that is not aligned: the bounce buffers. */
static void test_direct_unaligned(void **state)
{
	uint64_t len = 8 << 20;
	uint8_t *sbuf = malloc(len + 4096), *dbuf = malloc(len + 4096);
	uint8_t *src = sbuf + 8 + (4096 - (uintptr_t)(sbuf + 8) % 4096) % 4096 + 8;
	uint8_t *dst = dbuf + 24 + (4096 - (uintptr_t)(dbuf + 24) % 4096) % 4096 + 24;
	struct side sd = { .channels = 3, .flags = RMIG_F_DIRECT, .extent_max = 64 << 10 };
	char path[128];

	(void)state;
	assert_true((uintptr_t)src % 512 && (uintptr_t)dst % 512);
	path_of(path, sizeof(path), "unaligned.rmig");
	fill_sparse(src, len, 4096, 3, 17);
	memset(dst, 0x5a, len);
	assert_int_equal(save(path, src, len, 4096, &sd, NULL), 0);
	assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), 0);
	assert_memory_equal(src, dst, len);
	/* 512-byte pages: at or below the direct I/O alignment (ext4: 512, else page cache) */
	memset(dst, 0x5a, len);
	assert_int_equal(save(path, src, len, 512, &sd, NULL), 0);
	assert_int_equal(restore(path, dst, len, 512, &sd, NULL), 0);
	assert_memory_equal(src, dst, len);
	free(sbuf);
	free(dbuf);
	unlink(path);
}

static void test_device_state_and_digests(void **state)
{
	uint64_t len = 8 << 20;
	uint8_t *src = guarded_alloc(len), *dst = guarded_alloc(len);
	struct side sd = { .channels = 4, .flags = RMIG_F_VERIFY };
	struct blobs b, got;
	char path[128];
	int fd;

	(void)state;
	path_of(path, sizeof(path), "state.rmig");
	blobs_init(&b);
	got = b;
	fill_sparse(src, len, 4096, 2, 99);
	assert_int_equal(save(path, src, len, 4096, &sd, &b), 0);
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len, 4096, &sd, &got), 0);
	assert_memory_equal(src, dst, len);
	assert_int_equal(got.loaded, 4);
	assert_int_equal(got.good, 4);
	/* more device state than this destination takes: refused before anything lands */
	sd.blob_max = 4 << 20;
	got.loaded = got.good = 0;
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len, 4096, &sd, &got), -E2BIG);
	assert_non_null(strstr(last_err, "over this destination's limit of 4194304"));
	assert_int_equal(got.loaded, 0);
	assert_true(dst[0] == 0x5a && dst[len - 1] == 0x5a);
	sd.blob_max = 0;

	/* damage one byte of page data behind the format's back */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	{
		struct rmig_file_hdr *h = calloc(1, sizeof(*h));
		uint8_t hb[RMIG_FILE_HDR_MAX], c;
		char why[256];
		ssize_t n = pread(fd, hb, sizeof(hb), 0);

		assert_true(n > 0);
		assert_int_equal(rmig_file_hdr_decode(hb, (size_t)n, file_size(path, NULL), true, h,
						      why, sizeof(why)), 0);
		/* page 0 holds data (fill_sparse every 2nd page from 0) */
		assert_int_equal(pread(fd, &c, 1, (off_t)h->blocks[0].data_off + 100), 1);
		c ^= 0x40;
		assert_int_equal(pwrite(fd, &c, 1, (off_t)h->blocks[0].data_off + 100), 1);
		free(h);
	}
	close(fd);
	got.loaded = got.good = 0;
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len, 4096, &sd, &got), -EBADMSG);
	assert_non_null(strstr(last_err, "digest mismatch in ram block 'ram'"));
	/* the control: without verification the damage goes through unseen */
	sd.flags = 0;
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), 0);
	assert_memory_not_equal(src, dst, len);
	assert_int_equal(dst[100], src[100] ^ 0x40);

	/* saved without digests: verification is refused, not skipped */
	assert_int_equal(save(path, src, len, 4096, &sd, &b), 0);
	sd.flags = RMIG_F_VERIFY;
	memset(dst, 0x5a, len);
	got.loaded = got.good = 0;
	assert_int_equal(restore(path, dst, len, 4096, &sd, &got), -ENODATA);
	assert_non_null(strstr(last_err, "holds no digests"));
	assert_int_equal(got.loaded, 0);
	assert_true(dst[0] == 0x5a && dst[len - 1] == 0x5a);
	guarded_free(src, len);
	guarded_free(dst, len);
	blobs_free(&b);
	unlink(path);
}

/* ---- live: a writer dirties pages while rounds go to the file ---- */

struct writer {
	uint8_t *mem;
	uint64_t npages;
	_Atomic unsigned long *log;
	atomic_bool stop;
	_Atomic uint64_t writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t x = 88172645463325252ull;

	while (!atomic_load(&w->stop)) {
		uint64_t pg, *word;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pg = x % w->npages;
		word = (uint64_t *)(void *)(w->mem + pg * 4096) + (x >> 40) % 512;
		/* some pages become zero: a page with data that turns into a hole */
		if ((x >> 20) % 16 == 0)
			memset(w->mem + pg * 4096, 0, 4096);
		else
			__atomic_store_n(word, x | 1, __ATOMIC_RELAXED);
		atomic_fetch_or_explicit(&w->log[pg / RMIG_BITS_PER_LONG],
					 1UL << (pg % RMIG_BITS_PER_LONG), memory_order_release);
		atomic_fetch_add(&w->writes, 1);
		if (atomic_load(&w->writes) % 64 == 0)
			usleep(50);
	}
	return NULL;
}

static void collect(struct writer *w, unsigned long *map, size_t longs)
{
	for (size_t i = 0; i < longs; i++)
		map[i] |= atomic_exchange_explicit(&w->log[i], 0, memory_order_acquire);
}

/* @final_round: false is the negative control (the pages dirtied last never go). */
static void live_save(bool final_round)
{
	uint64_t len = 32 << 20, npages = len / 4096, size0 = 0;
	size_t longs = rmig_bitmap_longs(npages);
	uint8_t *mem = guarded_alloc(len), *dst = guarded_alloc(len);
	unsigned long *map = calloc(longs, sizeof(*map));
	const unsigned long *maps[1] = { map };
	struct writer w = { .mem = mem, .npages = npages };
	struct side sd = { .channels = 4, .flags = RMIG_F_VERIFY };
	struct rmig_round_stats st;
	struct rmig_opts o;
	rmig_session *s;
	pthread_t th;
	char path[128], uri[200];

	w.log = calloc(longs, sizeof(*w.log));
	path_of(path, sizeof(path), "live.rmig");
	fill_sparse(mem, len, 4096, 3, 21);
	opts(&o, RMIG_ROLE_SOURCE, &sd);
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, len, 4096), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(rmig_connect(s, uri), 0);
	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	memset(map, 0xff, longs * sizeof(*map));
	for (int r = 0; r < 6; r++) {
		if (r) {
			memset(map, 0, longs * sizeof(*map));
			collect(&w, map, longs);
		}
		assert_int_equal(rmig_send_round(s, maps, 1, &st), 0);
		/* the file keeps its size: a round rewrites the same offsets */
		if (!r)
			size0 = file_size(path, NULL);
		assert_int_equal(file_size(path, NULL), size0);
		usleep(20000);
	}
	/* the guest stops; what it dirtied since the last round goes last */
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	assert_int_equal(rmig_switchover(s), 0);
	memset(map, 0, longs * sizeof(*map));
	collect(&w, map, longs);
	if (final_round)
		assert_int_equal(rmig_send_round(s, maps, 1, &st), 0);
	printf("# live save: %llu guest writes, %llu pages in the last round, file %llu bytes "
	       "for %llu of RAM\n",
	       (unsigned long long)atomic_load(&w.writes),
	       (unsigned long long)rmig_bitmap_count(map, npages),
	       (unsigned long long)file_size(path, NULL), (unsigned long long)len);
	assert_true(rmig_bitmap_count(map, npages) > 0);
	assert_int_equal(rmig_complete(s), 0);
	rmig_session_destroy(s);
	assert_true(file_size(path, NULL) < len + (4 << 20));
	memset(dst, 0x5a, len);
	if (!final_round) {
		/* the digests are of the final memory, which the file does not hold */
		assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), -EBADMSG);
		assert_non_null(strstr(last_err, "digest mismatch"));
		sd.flags = 0;
	}
	assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), 0);
	if (final_round)
		assert_memory_equal(mem, dst, len);
	else
		assert_memory_not_equal(mem, dst, len);
	guarded_free(mem, len);
	guarded_free(dst, len);
	free(map);
	free((void *)w.log);
	unlink(path);
}

static void test_live_save(void **state)
{
	(void)state;
	live_save(true);
	live_save(false);
}


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_channels),
		cmocka_unit_test(test_sparse_holes),
		cmocka_unit_test(test_hugepages),
		cmocka_unit_test(test_direct_unaligned),
		cmocka_unit_test(test_device_state_and_digests),
		cmocka_unit_test(test_live_save),
	};

	return cmocka_run_group_tests(tests, file_group_setup, file_group_teardown);
}
