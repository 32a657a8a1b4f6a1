/* SPDX-License-Identifier: MIT */
/*
 * test_file_bad.c - "file:PATH" restores of hostile and broken files, each
 * refused with its reason before any memory or device state is written;
 * options a file session refuses; a file system that fills up mid-save.
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
			/* the layout callback saw the file's device state before any page */
			assert_int_equal(l.blobs, 2);
			assert_string_equal(l.first_blobs[0].name, "cpu");
			assert_int_equal(l.first_blobs[1].instance, 1);
			assert_int_equal(l.first_blobs[1].length, 3 * 1000 * 1000 + 7);
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


int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_files),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_enospc),
	};

	return cmocka_run_group_tests(tests, file_group_setup, file_group_teardown);
}
