/* SPDX-License-Identifier: MIT */
/*
 * test_file.c - "file:PATH" sessions: save to a file at fixed offsets and
 * restore from it. Round trips byte for byte (random, sparse, 2 MiB pages,
 * hugetlb memory when the host has a pool), 1/4/8 channels, with and without
 * O_DIRECT, misaligned memory (the bounce buffers), device state, digests;
 * a live save with a writer dirtying pages between rounds, restored against
 * the final memory; hostile and broken files, each refused with its reason
 * before any memory or device state is written; a file system that fills up
 * mid-save.
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
#include "testlib.h"

static char dir[64];

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* ---- blobs (device state) ---- */

#define NBLOBS_MAX 8

struct blobs {
	unsigned int n;
	char name[NBLOBS_MAX][16];
	uint32_t instance[NBLOBS_MAX];
	uint8_t *data[NBLOBS_MAX];
	uint64_t len[NBLOBS_MAX];
	/* destination */
	pthread_mutex_t lock;
	unsigned int loaded, good;
};

static int load(void *arg, const char *name, uint32_t instance, const void *data, uint64_t len)
{
	struct blobs *b = arg;

	pthread_mutex_lock(&b->lock);
	b->loaded++;
	for (unsigned int i = 0; i < b->n; i++)
		if (!strcmp(name, b->name[i]) && instance == b->instance[i] && len == b->len[i] &&
		    !memcmp(data, b->data[i], len))
			b->good++;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* ---- save and restore ---- */

struct side {
	unsigned int channels;
	unsigned int flags;
	uint32_t extent_max;
	uint64_t blob_max; /* destination; 0: default */
};

static void opts(struct rmig_opts *o, enum rmig_role role, const struct side *sd)
{
	rmig_opts_init(o, sizeof(*o));
	o->role = role;
	o->channels = sd->channels ? sd->channels : 4;
	o->flags = sd->flags;
	o->timeout_ms = 20000;
	if (sd->extent_max)
		o->extent_max = sd->extent_max;
	if (sd->blob_max)
		o->blob_max = sd->blob_max;
	if (getenv("RMIG_TEST_LOG"))
		o->log_level = RMIG_LOG_DEBUG;
	else
		o->log_fn = NULL;
}

static char last_err[1024];

/* Save one block "ram" (and @b's blobs) to @path. */
static int save(const char *path, uint8_t *mem, uint64_t len, uint32_t ps, const struct side *sd,
		const struct blobs *b)
{
	struct rmig_opts o;
	rmig_session *s;
	char uri[300];
	int rc;

	opts(&o, RMIG_ROLE_SOURCE, sd);
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, len, ps), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	rc = rmig_connect(s, uri);
	if (!rc)
		rc = rmig_send_range(s, "ram", 0, len);
	for (unsigned int i = 0; b && i < b->n && !rc; i++)
		rc = rmig_send_state(s, b->name[i], b->instance[i], b->data[i], b->len[i]);
	if (!rc)
		rc = rmig_complete(s);
	snprintf(last_err, sizeof(last_err), "%s", rmig_last_error(s));
	if (rc)
		printf("# save: %s\n", last_err);
	rmig_session_destroy(s);
	return rc;
}

struct layout_seen {
	unsigned int calls;
};

static int layout_cb(void *arg, rmig_session *s, const struct rmig_block_info *bi, unsigned int n)
{
	struct layout_seen *l = arg;

	(void)s, (void)bi, (void)n;
	l->calls++;
	return 0;
}

/* Restore @path into "ram" at @mem; @b (may be NULL) takes the blobs. */
static int restore_ex(const char *path, uint8_t *mem, uint64_t len, uint32_t ps,
		      const struct side *sd, struct blobs *b, struct layout_seen *l)
{
	struct rmig_opts o;
	rmig_session *s;
	char uri[300];
	int rc;

	opts(&o, RMIG_ROLE_DEST, sd);
	o.state_fn = load;
	o.state_arg = b;
	o.layout_fn = l ? layout_cb : NULL;
	o.layout_arg = l;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, len, ps), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	rc = rmig_listen(s, uri);
	if (!rc)
		rc = rmig_accept(s);
	if (!rc)
		rc = rmig_complete(s);
	snprintf(last_err, sizeof(last_err), "%s", rmig_last_error(s));
	if (rc)
		printf("# restore: %s\n", last_err);
	rmig_session_destroy(s);
	return rc;
}

static int restore(const char *path, uint8_t *mem, uint64_t len, uint32_t ps,
		   const struct side *sd, struct blobs *b)
{
	struct blobs none = { .lock = PTHREAD_MUTEX_INITIALIZER };

	return restore_ex(path, mem, len, ps, sd, b ? b : &none, NULL);
}

static uint64_t file_size(const char *path, uint64_t *alloc_p)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	if (alloc_p)
		*alloc_p = (uint64_t)st.st_blocks * 512;
	return (uint64_t)st.st_size;
}

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

static void blobs_init(struct blobs *b)
{
	static const uint64_t lens[] = { 0, 3 * 1000 * 1000 + 7, 100, 2 << 20 };

	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	b->n = 4;
	for (unsigned int i = 0; i < b->n; i++) {
		snprintf(b->name[i], sizeof(b->name[i]), i == 3 ? "nic" : "cpu");
		b->instance[i] = i;
		b->len[i] = lens[i];
		b->data[i] = malloc(lens[i] ? lens[i] : 1);
		fill_random(b->data[i], lens[i], 1000 + i);
	}
}

static void blobs_free(struct blobs *b)
{
	for (unsigned int i = 0; i < b->n; i++)
		free(b->data[i]);
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

/* ---- hostile and broken files ---- */

struct file_img {
	uint8_t *buf;
	uint64_t len;
	struct rmig_file_hdr h;
};

static const uint64_t HLEN = 4 << 20;
static const uint64_t VLEN = 259 * 4096; /* 259 pages: its bitmaps have bits past the block */

/* A good file of two blocks ("ram" 4 MiB, "vga" 259 pages) and two blobs, read into memory. */
static void good_file(struct file_img *f, const char *path)
{
	uint8_t *a = guarded_alloc(HLEN), *v = guarded_alloc(VLEN);
	struct side sd = { .channels = 2, .flags = RMIG_F_VERIFY };
	struct blobs b;
	struct rmig_opts o;
	rmig_session *s;
	char uri[200], why[256];
	int fd;

	blobs_init(&b);
	b.n = 2;
	fill_sparse(a, HLEN, 4096, 2, 1);
	fill_random(v, VLEN, 2);
	opts(&o, RMIG_ROLE_SOURCE, &sd);
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", a, HLEN, 4096), 0);
	assert_int_equal(rmig_add_ram(s, "vga", v, VLEN, 4096), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(rmig_connect(s, uri), 0);
	assert_int_equal(rmig_send_range(s, "ram", 0, HLEN), 0);
	assert_int_equal(rmig_send_range(s, "vga", 0, VLEN), 0);
	for (unsigned int i = 0; i < b.n; i++)
		assert_int_equal(rmig_send_state(s, b.name[i], b.instance[i], b.data[i], b.len[i]),
				 0);
	assert_int_equal(rmig_complete(s), 0);
	rmig_session_destroy(s);
	f->len = file_size(path, NULL);
	f->buf = malloc(f->len);
	fd = open(path, O_RDONLY);
	assert_int_equal(pread(fd, f->buf, f->len, 0), (ssize_t)f->len);
	close(fd);
	assert_int_equal(rmig_file_hdr_decode(f->buf, f->len, f->len, true, &f->h, why, sizeof(why)),
			 0);
	guarded_free(a, HLEN);
	guarded_free(v, VLEN);
	b.n = 4; /* all that blobs_init() made */
	blobs_free(&b);
}

struct damage {
	const char *what;
	const char *expect; /* in the error */
	int err;
	void (*apply)(struct file_img *f);
};

static void rewrite_hdr(struct file_img *f)
{
	rmig_file_hdr_encode(&f->h, f->buf);
}

static void d_truncate_half(struct file_img *f)
{
	f->len /= 2;
}

static void d_truncate_tail(struct file_img *f)
{
	f->len -= 1;
}

static void d_truncate_header(struct file_img *f)
{
	f->len = 100;
}

static void d_no_complete(struct file_img *f)
{
	f->h.flags &= ~RMIG_FILE_F_COMPLETE;
	rewrite_hdr(f);
}

static void d_magic(struct file_img *f)
{
	memcpy(f->buf, "QEVMFILE", 8);
}

static void d_version(struct file_img *f)
{
	f->h.version = 2;
	rewrite_hdr(f);
}

static void d_checksum(struct file_img *f)
{
	f->buf[64 + 70] ^= 1; /* a block's page size, behind the checksum */
}

static void d_offset_past_end(struct file_img *f)
{
	f->h.blocks[1].data_off = (f->len + (4 << 20)) & ~((2ull << 20) - 1);
	rewrite_hdr(f);
}

static void d_overlap(struct file_img *f)
{
	f->h.blocks[1].data_off = f->h.blocks[0].data_off + (2 << 20);
	rewrite_hdr(f);
}

static void d_length_lie(struct file_img *f)
{
	f->h.blocks[0].length = 5 << 20; /* and bitmaps to match: only the data overlaps */
	f->h.blocks[0].npages = f->h.blocks[0].length / 4096;
	f->h.blocks[0].bitmap_len = 2 * rmig_file_bitmap_bytes(f->h.blocks[0].npages);
	rewrite_hdr(f);
}

static void d_bitmap_into_data(struct file_img *f)
{
	f->h.blocks[0].bitmap_off = f->h.blocks[0].data_off;
	rewrite_hdr(f);
}

static void d_bitmap_past_block(struct file_img *f)
{
	/* "vga": 259 pages; bit 3 of its present bitmap's byte 32 is page 259 */
	const struct rmig_file_block *b = &f->h.blocks[1];

	f->buf[b->bitmap_off + 32] |= 0x08;
}

static void d_data_not_present(struct file_img *f)
{
	const struct rmig_file_block *b = &f->h.blocks[0];
	uint64_t one = rmig_file_bitmap_bytes(b->npages);

	f->buf[b->bitmap_off + 3] &= (uint8_t)~0x02; /* page 25: present off, data stays */
	f->buf[b->bitmap_off + one + 3] |= 0x02;
}

static void d_blob_len_lie(struct file_img *f)
{
	uint64_t at = f->h.state_off + 72; /* the first record's length */

	for (int i = 0; i < 8; i++)
		f->buf[at + i] = (uint8_t)((0x7fffffffffull >> (8 * i)) & 0xff);
}

static void d_blob_count_lie(struct file_img *f)
{
	f->h.nblobs = 3; /* the trailer says 2, and the records run out */
	rewrite_hdr(f);
}

static void d_trailer(struct file_img *f)
{
	f->buf[f->h.trailer_off + 30] ^= 0x80;
}

static void d_dup_name(struct file_img *f)
{
	strcpy(f->h.blocks[1].name, "ram");
	rewrite_hdr(f);
}

static void d_page_size(struct file_img *f)
{
	f->h.blocks[0].page_size = 3000;
	rewrite_hdr(f);
}

static const struct damage damages[] = {
	{ "truncated to half", "truncated", -EBADMSG, d_truncate_half },
	{ "one byte short", "truncated", -EBADMSG, d_truncate_tail },
	{ "cut inside the header", "truncated", -EBADMSG, d_truncate_header },
	{ "no complete mark", "did not complete", -EBADMSG, d_no_complete },
	{ "wrong magic", "not an rmig save file", -EBADMSG, d_magic },
	{ "another version", "format version 2", -EPROTONOSUPPORT, d_version },
	{ "header damaged", "header checksum mismatch", -EBADMSG, d_checksum },
	{ "block data past the end", "lies past the end of the file", -EBADMSG,
	  d_offset_past_end },
	{ "blocks overlap", "overlaps", -EBADMSG, d_overlap },
	{ "block length lies", "overlaps", -EBADMSG, d_length_lie },
	{ "bitmap inside the data", "overlaps", -EBADMSG, d_bitmap_into_data },
	{ "bitmap claims a page past the block", "page 259, past the block's 259 pages", -EBADMSG,
	  d_bitmap_past_block },
	{ "data without presence", "has data but is not marked present", -EBADMSG,
	  d_data_not_present },
	{ "blob length lies", "runs past the region", -EBADMSG, d_blob_len_lie },
	{ "blob count lies", "truncated", -EBADMSG, d_blob_count_lie },
	{ "trailer damaged", "trailer checksum mismatch", -EBADMSG, d_trailer },
	{ "block named twice", "appears twice", -EBADMSG, d_dup_name },
	{ "page size not a power of two", "page size 3000", -EBADMSG, d_page_size },
};

static void test_hostile_files(void **state)
{
	uint8_t *ram = guarded_alloc(HLEN), *vga = guarded_alloc(VLEN);
	struct file_img good, f;
	char gpath[128], path[128];

	(void)state;
	path_of(gpath, sizeof(gpath), "good.rmig");
	path_of(path, sizeof(path), "bad.rmig");
	good_file(&good, gpath);
	for (size_t i = 0; i <= sizeof(damages) / sizeof(damages[0]); i++) {
		const struct damage *d = i < sizeof(damages) / sizeof(damages[0]) ? &damages[i] : NULL;
		struct blobs got = { .lock = PTHREAD_MUTEX_INITIALIZER };
		struct layout_seen l = { 0 };
		struct side sd = { .channels = 2, .flags = RMIG_F_VERIFY };
		struct rmig_opts o;
		rmig_session *s;
		char uri[200];
		int fd, rc;

		f = good;
		f.buf = malloc(good.len);
		memcpy(f.buf, good.buf, good.len);
		if (d)
			d->apply(&f);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, f.buf, f.len, 0), (ssize_t)f.len);
		close(fd);
		memset(ram, 0x5a, HLEN);
		memset(vga, 0x5a, VLEN);
		opts(&o, RMIG_ROLE_DEST, &sd);
		o.state_fn = load;
		o.state_arg = &got;
		o.layout_fn = layout_cb;
		o.layout_arg = &l;
		assert_int_equal(rmig_session_create(&o, &s), 0);
		assert_int_equal(rmig_add_ram(s, "ram", ram, HLEN, 4096), 0);
		assert_int_equal(rmig_add_ram(s, "vga", vga, VLEN, 4096), 0);
		snprintf(uri, sizeof(uri), "file:%s", path);
		assert_int_equal(rmig_listen(s, uri), 0);
		rc = rmig_accept(s);
		if (!rc)
			rc = rmig_complete(s);
		printf("# %-36s -> %d %s\n", d ? d->what : "(the good file)", rc,
		       rmig_last_error(s));
		if (!d) { /* the control: the same file, undamaged, restores */
			assert_int_equal(rc, 0);
			assert_int_equal(got.loaded, 2);
			assert_int_equal(l.calls, 1);
		} else {
			assert_int_equal(rc, d->err);
			assert_non_null(strstr(rmig_last_error(s), d->expect));
			assert_non_null(strstr(rmig_last_error(s), path));
			/* refused before anything was written: memory, device state */
			for (uint64_t k = 0; k < HLEN; k += 4093)
				assert_int_equal(ram[k], 0x5a);
			for (uint64_t k = 0; k < VLEN; k += 4093)
				assert_int_equal(vga[k], 0x5a);
			assert_int_equal(got.loaded, 0);
			assert_int_equal(l.calls, 0);
		}
		rmig_session_destroy(s);
		free(f.buf);
	}
	free(good.buf);
	guarded_free(ram, HLEN);
	guarded_free(vga, VLEN);
	unlink(path);
	unlink(gpath);
}

/* Refusals at the API: options a file cannot honour, a layout that differs. */
static void test_refusals(void **state)
{
	uint64_t len = 1 << 20;
	uint8_t *mem = guarded_alloc(len), *dst = guarded_alloc(len);
	struct side sd = { .channels = 2 };
	struct rmig_opts o;
	rmig_session *s;
	char path[128], uri[200];

	(void)state;
	path_of(path, sizeof(path), "refuse.rmig");
	snprintf(uri, sizeof(uri), "file:%s", path);
	opts(&o, RMIG_ROLE_SOURCE, &sd);
	o.flags = RMIG_F_POSTCOPY;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, len, 4096), 0);
	assert_int_equal(rmig_connect(s, uri), -EINVAL);
	assert_int_equal(access(path, F_OK), -1); /* nothing created */
	rmig_session_destroy(s);
	/* the file holds 1 MiB; a destination with 512 KiB is refused, untouched */
	fill_random(mem, len, 5);
	assert_int_equal(save(path, mem, len, 4096, &sd, NULL), 0);
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, len / 2, 4096, &sd, NULL), -EPROTO);
	assert_non_null(strstr(last_err, "refusing the file"));
	assert_int_equal(dst[0], 0x5a);
	/* a file that is not there */
	assert_int_equal(restore("/nonexistent/x.rmig", dst, len, 4096, &sd, NULL), -ENOENT);
	assert_non_null(strstr(last_err, "cannot open it"));
	guarded_free(mem, len);
	guarded_free(dst, len);
	unlink(path);
}

/* A small tmpfs fills up mid-save: a clear error, and no file that looks complete. */
static void test_enospc(void **state)
{
	uint64_t len = 16 << 20;
	uint8_t *mem = guarded_alloc(len), *dst = guarded_alloc(len);
	struct side sd = { .channels = 4 };
	struct rmig_file_hdr *h = calloc(1, sizeof(*h));
	char mnt[128], path[200], why[256];
	uint8_t hb[4096];
	int rc, fd;

	(void)state;
	path_of(mnt, sizeof(mnt), "small");
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("rmig-test", mnt, "tmpfs", 0, "size=4m")) {
		printf("# skipped: cannot mount a small tmpfs here (%s; needs root)\n",
		       strerror(errno));
		rmdir(mnt);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/full.rmig", mnt);
	fill_random(mem, len, 8);
	for (unsigned int d = 0; d < 2; d++) {
		sd.flags = d ? RMIG_F_DIRECT : 0;
		rc = save(path, mem, len, 4096, &sd, NULL);
		assert_int_equal(rc, -ENOSPC);
		assert_non_null(strstr(last_err, "the file system is full"));
		assert_non_null(strstr(last_err, path));
		/* what is there has a header without the complete mark */
		fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		assert_true(pread(fd, hb, sizeof(hb), 0) > 0);
		close(fd);
		assert_int_equal(rmig_file_hdr_decode(hb, sizeof(hb), file_size(path, NULL), false,
						      h, why, sizeof(why)), 0);
		assert_false(h->flags & RMIG_FILE_F_COMPLETE);
		memset(dst, 0x5a, len);
		assert_int_equal(restore(path, dst, len, 4096, &sd, NULL), -EBADMSG);
		assert_non_null(strstr(last_err, "did not complete"));
		assert_int_equal(dst[0], 0x5a);
	}
	/* the control: a save that fits there completes */
	sd.flags = 0;
	assert_int_equal(save(path, mem, 1 << 20, 4096, &sd, NULL), 0);
	memset(dst, 0x5a, len);
	assert_int_equal(restore(path, dst, 1 << 20, 4096, &sd, NULL), 0);
	assert_memory_equal(mem, dst, 1 << 20);
	unlink(path);
	umount(mnt);
	rmdir(mnt);
out:
	free(h);
	guarded_free(mem, len);
	guarded_free(dst, len);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/rmig-file-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(dir);
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
		cmocka_unit_test(test_hostile_files),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_enospc),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
