/* SPDX-License-Identifier: MIT */
/*
 * file.c - the file backend of the transport SPI: a "file:PATH" session
 * saves to, or restores from, a file in which every page of every RAM block
 * has a fixed offset (the format: file.h). The channel engine does not know
 * it writes a file: a source channel's write() is one pwritev at the page's
 * offset, zero() marks the pages present with no data (a hole; a page that
 * held data in an earlier round is punched out), flush() has nothing to
 * wait for (the writes are synchronous), marker() acknowledges the sync at
 * once. There is no peer: the backend is the peer. The session's HELLO lays
 * out the file, STATE_BEGIN appends a device-state record, COMPLETE writes
 * the bitmaps and the trailer and marks the file complete (see
 * transport.h, ops->ctl).
 *
 * Restore: create() opens the file and checks all of it (header, block
 * table, regions, trailer, device-state table, bitmaps) before a byte of
 * memory is written; each channel thread then takes the next chunk of
 * pages (at most extent_max bytes) from a shared cursor and reads its runs
 * of data pages with preadv straight into the block (place()/placed()),
 * hands runs of zero pages to up->zero() and skips pages never saved; then
 * the device-state blobs, chunk by chunk. The last thread to run out hands
 * the session a COMPLETE with the trailer's digests.
 *
 * RMIG_F_DIRECT: page data through a second descriptor opened O_DIRECT;
 * memory the file system's direct I/O alignment does not accept goes
 * through the channel's aligned bounce buffer. Metadata and device state
 * always go through the page cache; completion fdatasync()s both.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "bitmap.h"
#include "file.h"
#include "transport.h"
#include "wire.h"

/* ---- the format ---- */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

uint64_t rmig_file_bitmap_bytes(uint64_t npages)
{
	return (npages + 63) / 64 * 8;
}

uint64_t rmig_file_trailer_len(uint32_t nblocks, uint32_t nblobs)
{
	return RMIG_FILE_TRAILER_FIXED + ((uint64_t)nblocks + nblobs) * RMIG_DIGEST_LEN + 8;
}

/* The header checksum: XXH3-64 of the header with its own 8 bytes as zero. */
static uint64_t hdr_sum(const uint8_t *buf, uint32_t hdr_len)
{
	static const uint8_t zero[8];
	XXH3_state_t *st = XXH3_createState();
	uint64_t v;

	if (!st)
		return 0; /* never matches a real header's sum by more than chance */
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, buf, 56);
	XXH3_64bits_update(st, zero, 8);
	XXH3_64bits_update(st, buf + 64, hdr_len - 64);
	v = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return v;
}

int rmig_file_layout(struct rmig_file_hdr *h)
{
	uint64_t off;

	if (!h->nblocks || h->nblocks > RMIG_BLOCKS_MAX)
		return -EINVAL;
	h->version = RMIG_FILE_VERSION;
	h->flags = 0;
	h->nblobs = 0;
	h->state_len = 0;
	h->trailer_off = 0;
	h->hdr_len = RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * h->nblocks;
	off = align_up(h->hdr_len, RMIG_FILE_META_ALIGN);
	for (unsigned int i = 0; i < h->nblocks; i++) {
		struct rmig_file_block *b = &h->blocks[i];

		if (!b->page_size || b->length % b->page_size || b->length > (1ull << 56))
			return -EINVAL;
		b->npages = b->length / b->page_size;
		b->bitmap_off = off;
		b->bitmap_len = 2 * rmig_file_bitmap_bytes(b->npages);
		off = align_up(off + b->bitmap_len, RMIG_FILE_META_ALIGN);
	}
	for (unsigned int i = 0; i < h->nblocks; i++) {
		off = align_up(off, RMIG_FILE_DATA_ALIGN);
		h->blocks[i].data_off = off;
		off += h->blocks[i].length;
	}
	h->state_off = align_up(off, RMIG_FILE_META_ALIGN);
	return 0;
}

void rmig_file_hdr_encode(const struct rmig_file_hdr *h, uint8_t *buf)
{
	memset(buf, 0, h->hdr_len);
	memcpy(buf, RMIG_FILE_MAGIC, 8);
	put_le32(buf + 8, h->version);
	put_le32(buf + 12, h->hdr_len);
	put_le32(buf + 16, h->flags);
	put_le32(buf + 20, h->nblocks);
	put_le64(buf + 24, h->state_off);
	put_le64(buf + 32, h->state_len);
	put_le64(buf + 40, h->trailer_off);
	put_le32(buf + 48, h->nblobs);
	for (unsigned int i = 0; i < h->nblocks; i++) {
		const struct rmig_file_block *b = &h->blocks[i];
		uint8_t *e = buf + RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * i;

		memcpy(e, b->name, strnlen(b->name, RMIG_NAME_MAX - 1));
		put_le64(e + 64, b->length);
		put_le32(e + 72, b->page_size);
		put_le64(e + 80, b->data_off);
		put_le64(e + 88, b->bitmap_off);
		put_le64(e + 96, b->bitmap_len);
	}
	put_le64(buf + 56, hdr_sum(buf, h->hdr_len));
}

#define WHY(...) (snprintf(why, why_len, __VA_ARGS__), -EBADMSG)

struct region {
	uint64_t off, len;
	char what[96];
};

static int region_cmp(const void *a, const void *b)
{
	const struct region *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

static void region_add(struct region *r, unsigned int *n, uint64_t off, uint64_t len,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void region_add(struct region *r, unsigned int *n, uint64_t off, uint64_t len,
		       const char *fmt, ...)
{
	va_list ap;

	r[*n].off = off;
	r[*n].len = len;
	va_start(ap, fmt);
	vsnprintf(r[*n].what, sizeof(r[*n].what), fmt, ap);
	va_end(ap);
	(*n)++;
}

/* Every region inside the file, none over another. */
static int regions_check(struct region *r, unsigned int n, uint64_t file_size, char *why,
			 size_t why_len)
{
	for (unsigned int i = 0; i < n; i++) {
		if (r[i].off > file_size || r[i].len > file_size - r[i].off)
			return WHY("%s (%llu bytes at offset %llu) lies past the end of the file "
				   "(%llu bytes): the file is truncated or the block table is wrong",
				   r[i].what, (unsigned long long)r[i].len,
				   (unsigned long long)r[i].off, (unsigned long long)file_size);
	}
	qsort(r, n, sizeof(*r), region_cmp);
	for (unsigned int i = 1; i < n; i++) {
		if (r[i - 1].off + r[i - 1].len > r[i].off)
			return WHY("%s (bytes %llu..%llu) overlaps %s (bytes %llu..%llu)",
				   r[i - 1].what, (unsigned long long)r[i - 1].off,
				   (unsigned long long)(r[i - 1].off + r[i - 1].len),
				   r[i].what, (unsigned long long)r[i].off,
				   (unsigned long long)(r[i].off + r[i].len));
	}
	return 0;
}

static int block_decode(const uint8_t *e, unsigned int i, struct rmig_file_block *b, char *why,
			size_t why_len)
{
	const uint8_t *nul = memchr(e, 0, RMIG_NAME_MAX);

	if (!nul)
		return WHY("block table entry %u: the name is not terminated", i);
	if (nul == e)
		return WHY("block table entry %u: empty name", i);
	memcpy(b->name, e, (size_t)(nul - e) + 1);
	b->length = get_le64(e + 64);
	b->page_size = get_le32(e + 72);
	b->data_off = get_le64(e + 80);
	b->bitmap_off = get_le64(e + 88);
	b->bitmap_len = get_le64(e + 96);
	if (get_le32(e + 76) || !all_zero(e + 104, 24) ||
	    !all_zero(nul, (size_t)(e + RMIG_NAME_MAX - nul)))
		return WHY("ram block '%s': reserved bytes of its entry are not zero", b->name);
	if (b->page_size < 512 || b->page_size > (1u << 30) ||
	    (b->page_size & (b->page_size - 1)))
		return WHY("ram block '%s': page size %u is not a power of two in 512..1G",
			   b->name, b->page_size);
	if (!b->length || b->length % b->page_size || b->length > (1ull << 56))
		return WHY("ram block '%s': length %llu is not a non-zero multiple of its %u-byte "
			   "pages",
			   b->name, (unsigned long long)b->length, b->page_size);
	b->npages = b->length / b->page_size;
	if (b->bitmap_len != 2 * rmig_file_bitmap_bytes(b->npages))
		return WHY("ram block '%s': its bitmaps take %llu bytes; %llu pages need %llu",
			   b->name, (unsigned long long)b->bitmap_len,
			   (unsigned long long)b->npages,
			   (unsigned long long)(2 * rmig_file_bitmap_bytes(b->npages)));
	if (b->data_off % RMIG_FILE_DATA_ALIGN)
		return WHY("ram block '%s': its data at offset %llu is not 2 MiB-aligned", b->name,
			   (unsigned long long)b->data_off);
	return 0;
}

int rmig_file_hdr_decode(const uint8_t *buf, size_t len, uint64_t file_size, bool need_complete,
			 struct rmig_file_hdr *h, char *why, size_t why_len)
{
	struct region *r = NULL;
	uint64_t bitmaps = 0;
	unsigned int n = 0;
	int rc = 0;

	memset(h, 0, sizeof(*h));
	if (file_size < RMIG_FILE_HDR_FIXED || len < RMIG_FILE_HDR_FIXED)
		return WHY("truncated: %llu bytes, shorter than the %u-byte header",
			   (unsigned long long)(file_size < len ? file_size : len),
			   RMIG_FILE_HDR_FIXED);
	if (memcmp(buf, RMIG_FILE_MAGIC, 8))
		return WHY("not an rmig save file (it does not begin with \"%s\")", RMIG_FILE_MAGIC);
	h->version = get_le32(buf + 8);
	if (h->version != RMIG_FILE_VERSION) {
		snprintf(why, why_len, "format version %u; this build reads version %u",
			 h->version, RMIG_FILE_VERSION);
		return -EPROTONOSUPPORT;
	}
	h->hdr_len = get_le32(buf + 12);
	h->flags = get_le32(buf + 16);
	h->nblocks = get_le32(buf + 20);
	h->state_off = get_le64(buf + 24);
	h->state_len = get_le64(buf + 32);
	h->trailer_off = get_le64(buf + 40);
	h->nblobs = get_le32(buf + 48);
	if (!h->nblocks || h->nblocks > RMIG_BLOCKS_MAX)
		return WHY("header: %u ram blocks (1..%u)", h->nblocks, RMIG_BLOCKS_MAX);
	if (h->hdr_len != RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * h->nblocks)
		return WHY("header: %u bytes long for %u ram blocks (expected %u)", h->hdr_len,
			   h->nblocks, RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * h->nblocks);
	if (file_size < h->hdr_len || len < h->hdr_len)
		return WHY("truncated: %llu bytes, shorter than its %u-byte header",
			   (unsigned long long)(file_size < len ? file_size : len), h->hdr_len);
	if (get_le64(buf + 56) != hdr_sum(buf, h->hdr_len))
		return WHY("header checksum mismatch: the header is damaged");
	if (h->flags & ~RMIG_FILE_F_ALL)
		return WHY("header: unknown flags 0x%x", h->flags & ~RMIG_FILE_F_ALL);
	if (need_complete && !(h->flags & RMIG_FILE_F_COMPLETE))
		return WHY("the save did not complete (the file has no complete mark): it was "
			   "interrupted, failed, or is still being written");
	if (get_le32(buf + 52))
		return WHY("header: reserved bytes are not zero");
	if (h->nblobs > RMIG_BLOBS_MAX)
		return WHY("header: %u device-state blobs (at most %u)", h->nblobs, RMIG_BLOBS_MAX);
	r = calloc(2 * RMIG_BLOCKS_MAX + 3, sizeof(*r));
	if (!r)
		return WHY("out of memory");
	region_add(r, &n, 0, h->hdr_len, "the header");
	for (unsigned int i = 0; i < h->nblocks && !rc; i++) {
		struct rmig_file_block *b = &h->blocks[i];

		rc = block_decode(buf + RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * i, i, b, why,
				  why_len);
		for (unsigned int j = 0; j < i && !rc; j++)
			if (!strcmp(h->blocks[j].name, b->name))
				rc = WHY("ram block '%s' appears twice in the block table", b->name);
		if (rc)
			break;
		bitmaps += b->bitmap_len;
		if (bitmaps > RMIG_FILE_BITMAPS_MAX)
			rc = WHY("the page bitmaps take more than %llu bytes",
				 (unsigned long long)RMIG_FILE_BITMAPS_MAX);
		region_add(r, &n, b->bitmap_off, b->bitmap_len, "ram block '%s' bitmaps", b->name);
		region_add(r, &n, b->data_off, b->length, "ram block '%s' data", b->name);
	}
	if (!rc && (h->flags & RMIG_FILE_F_COMPLETE)) {
		uint64_t tlen = rmig_file_trailer_len(h->nblocks, h->nblobs);

		if (h->trailer_off > UINT64_MAX - tlen)
			rc = WHY("header: trailer offset %llu is out of range",
				 (unsigned long long)h->trailer_off);
		else if (file_size < h->trailer_off + tlen)
			rc = WHY("truncated: %llu bytes, the save ends at %llu",
				 (unsigned long long)file_size,
				 (unsigned long long)(h->trailer_off + tlen));
		else if (file_size > h->trailer_off + tlen)
			rc = WHY("%llu bytes past the end of the save (the file has %llu, the "
				 "trailer ends at %llu)",
				 (unsigned long long)(file_size - h->trailer_off - tlen),
				 (unsigned long long)file_size,
				 (unsigned long long)(h->trailer_off + tlen));
		else if (h->state_off > file_size || h->state_len > file_size - h->state_off)
			rc = WHY("the device-state region (%llu bytes at offset %llu) lies past the "
				 "end of the file (%llu bytes)",
				 (unsigned long long)h->state_len,
				 (unsigned long long)h->state_off, (unsigned long long)file_size);
		if (!rc && h->state_len)
			region_add(r, &n, h->state_off, h->state_len, "the device-state region");
		if (!rc)
			region_add(r, &n, h->trailer_off, tlen, "the trailer");
	}
	if (!rc)
		rc = regions_check(r, n, file_size, why, why_len);
	free(r);
	return rc;
}

int rmig_file_bitmaps_check(const struct rmig_file_block *b, const uint8_t *bm, char *why,
			    size_t why_len)
{
	uint64_t one = rmig_file_bitmap_bytes(b->npages);
	const uint8_t *present = bm, *data = bm + one;

	for (int k = 0; k < 2; k++) {
		const uint8_t *m = k ? data : present;

		for (uint64_t i = b->npages / 8; i < one; i++) {
			uint8_t past = m[i];

			if (i == b->npages / 8)
				past &= (uint8_t)(0xff << (b->npages % 8));
			if (past)
				return WHY("ram block '%s': the %s bitmap marks page %llu, past the "
					   "block's %llu pages",
					   b->name, k ? "data" : "present",
					   (unsigned long long)(i * 8 + (unsigned)__builtin_ctz(past)),
					   (unsigned long long)b->npages);
		}
	}
	for (uint64_t i = 0; i < one; i++) {
		uint8_t bad = data[i] & (uint8_t)~present[i];

		if (bad)
			return WHY("ram block '%s': page %llu has data but is not marked present",
				   b->name, (unsigned long long)(i * 8 + (unsigned)__builtin_ctz(bad)));
	}
	return 0;
}

/* One device-state record at file offset @off with @avail bytes of the region left. */
static int blob_decode(const uint8_t *rec, uint64_t avail, uint64_t off, unsigned int idx,
		       struct rmig_file_blob *b, uint64_t *rec_len_p, char *why, size_t why_len)
{
	const uint8_t *nul;

	if (avail < RMIG_FILE_BLOB_HDR)
		return WHY("device state: record %u is cut short (%llu bytes left in the region)",
			   idx, (unsigned long long)avail);
	nul = memchr(rec, 0, RMIG_NAME_MAX);
	if (!nul || nul == rec)
		return WHY("device state: record %u has no name or an unterminated one", idx);
	memcpy(b->name, rec, (size_t)(nul - rec) + 1);
	b->instance = get_le32(rec + 64);
	b->len = get_le64(rec + 72);
	if (get_le32(rec + 68))
		return WHY("device state: record %u: reserved bytes are not zero", idx);
	if (b->len > avail - RMIG_FILE_BLOB_HDR ||
	    align_up(b->len, 8) > avail - RMIG_FILE_BLOB_HDR)
		return WHY("device state: blob '%s' of %llu bytes runs past the region", b->name,
			   (unsigned long long)b->len);
	b->data_off = off + RMIG_FILE_BLOB_HDR;
	*rec_len_p = RMIG_FILE_BLOB_HDR + align_up(b->len, 8);
	return 0;
}

static int blob_dup(const struct rmig_file_blob *b, unsigned int n, char *why, size_t why_len)
{
	for (unsigned int j = 0; j < n; j++)
		if (b[j].instance == b[n].instance && !strcmp(b[j].name, b[n].name))
			return WHY("device state: blob '%s' instance %u appears twice", b[n].name,
				   b[n].instance);
	return 0;
}

int rmig_file_state_decode(const uint8_t *buf, uint64_t len, uint64_t off, uint32_t nblobs,
			   struct rmig_file_blob *out, char *why, size_t why_len)
{
	uint64_t pos = 0, rl;
	int rc;

	for (uint32_t i = 0; i < nblobs; i++) {
		rc = blob_decode(buf + pos, len - pos, off + pos, i, &out[i], &rl, why, why_len);
		if (!rc)
			rc = blob_dup(out, i, why, why_len);
		if (rc)
			return rc;
		pos += rl;
	}
	if (pos != len)
		return WHY("device state: %llu bytes follow its %u records",
			   (unsigned long long)(len - pos), nblobs);
	return 0;
}

void rmig_file_trailer_encode(uint32_t nblocks, uint32_t nblobs, uint32_t flags,
			      const uint8_t (*digests)[RMIG_DIGEST_LEN], uint8_t *buf)
{
	uint64_t n = rmig_file_trailer_len(nblocks, nblobs) - 8;

	memset(buf, 0, n + 8);
	memcpy(buf, RMIG_FILE_TRAILER_MAGIC, 8);
	put_le32(buf + 8, nblocks);
	put_le32(buf + 12, nblobs);
	put_le32(buf + 16, flags);
	if (flags & RMIG_FILE_T_DIGESTS)
		memcpy(buf + RMIG_FILE_TRAILER_FIXED, digests,
		       ((size_t)nblocks + nblobs) * RMIG_DIGEST_LEN);
	put_le64(buf + n, XXH3_64bits(buf, (size_t)n));
}

int rmig_file_trailer_decode(const uint8_t *buf, size_t len, const struct rmig_file_hdr *h,
			     uint32_t *flags_p, uint8_t (*digests)[RMIG_DIGEST_LEN], char *why,
			     size_t why_len)
{
	uint64_t n = rmig_file_trailer_len(h->nblocks, h->nblobs);

	if (len != n)
		return WHY("trailer: %zu bytes, expected %llu", len, (unsigned long long)n);
	if (memcmp(buf, RMIG_FILE_TRAILER_MAGIC, 8))
		return WHY("trailer: bad magic (the file is damaged, or the header points "
			   "elsewhere)");
	if (get_le64(buf + n - 8) != XXH3_64bits(buf, (size_t)(n - 8)))
		return WHY("trailer checksum mismatch: the trailer is damaged");
	if (get_le32(buf + 8) != h->nblocks || get_le32(buf + 12) != h->nblobs)
		return WHY("trailer: %u blocks and %u blobs, the header says %u and %u",
			   get_le32(buf + 8), get_le32(buf + 12), h->nblocks, h->nblobs);
	*flags_p = get_le32(buf + 16);
	if ((*flags_p & ~RMIG_FILE_T_DIGESTS) || get_le32(buf + 20))
		return WHY("trailer: unknown flags 0x%x", *flags_p);
	memcpy(digests, buf + RMIG_FILE_TRAILER_FIXED,
	       ((size_t)h->nblocks + h->nblobs) * RMIG_DIGEST_LEN);
	return 0;
}

#undef WHY

/* ---- the backend ---- */

struct file_chan {
	struct rmig_tp_chan base;
	uint8_t *bounce; /* O_DIRECT: aligned, bounce_len bytes */
	size_t bounce_len;
	bool finished; /* restore: no work left for this channel */
};

struct src_blob {
	bool announced;
	uint64_t data_off;
	uint64_t len;
};

struct file_tp {
	struct rmig_tp base;
	char *path;
	int fd;  /* the page cache */
	int dfd; /* O_DIRECT, or -1 */
	uint32_t mem_align, off_align;
	bool source;
	struct rmig_file_hdr *h;
	/* per block: present and data bitmaps, unsigned long words (atomic on the source) */
	unsigned long *present[RMIG_BLOCKS_MAX];
	unsigned long *data[RMIG_BLOCKS_MAX];

	pthread_mutex_t lock;
	pthread_cond_t cond; /* restore: a finished channel waits here for shutdown */
	bool shut;
	atomic_bool shut_flag;
	unsigned int nchans;

	/* source: device state, by blob id, and the ids in record order */
	bool laid_out;
	struct src_blob *sblobs;
	uint32_t nsblobs, cap;
	uint32_t *order;
	uint32_t nrec;
	uint64_t state_end;

	/* restore */
	struct rmig_file_blob *blobs;
	uint32_t tflags;
	uint8_t (*digests)[RMIG_DIGEST_LEN];
	uint64_t chunk_pages[RMIG_BLOCKS_MAX];
	uint64_t chunk_first[RMIG_BLOCKS_MAX + 1];
	uint64_t *blob_first; /* nblobs + 1 */
	uint64_t ram_chunks, total_chunks;
	_Atomic uint64_t cursor;
	atomic_uint done;
};

static struct file_tp *ftp(struct rmig_tp *tp)
{
	return container_of(tp, struct file_tp, base);
}

static struct file_chan *fch(struct rmig_tp_chan *ch)
{
	return container_of(ch, struct file_chan, base);
}

static int ffail(struct file_tp *t, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int ffail(struct file_tp *t, int err, const char *fmt, ...)
{
	const struct rmig_tp_upcalls *up = t->base.p.up;
	char msg[640];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return up->fail(up->arg, err, "file %s: %s", t->path, msg);
}

/* An I/O error, with what a full file system means for the save. */
static int io_fail(struct file_tp *t, int err, const char *what, uint64_t off, uint64_t len)
{
	if (err == -ENOSPC || err == -EDQUOT)
		return ffail(t, err, "%s (%llu bytes at offset %llu): %s: the file system is "
				     "full; the save is incomplete and marked so",
			     what, (unsigned long long)len, (unsigned long long)off,
			     strerror(-err));
	return ffail(t, err, "%s (%llu bytes at offset %llu): %s", what, (unsigned long long)len,
		     (unsigned long long)off, strerror(-err));
}

static bool is_shut(struct file_tp *t)
{
	return atomic_load_explicit(&t->shut_flag, memory_order_acquire);
}

/* All @len bytes of @iov at @off; 0 or a negative errno (-EIO: wrote nothing). */
static int pwritev_full(int fd, const struct iovec *iov_in, int iovcnt, uint64_t off)
{
	struct iovec iov[16];

	if (iovcnt > 16)
		return -EINVAL;
	memcpy(iov, iov_in, (size_t)iovcnt * sizeof(*iov));
	for (struct iovec *v = iov; iovcnt;) {
		ssize_t n = pwritev(fd, v, iovcnt, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		off += (uint64_t)n;
		while (iovcnt && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			iovcnt--;
		}
		if (iovcnt) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off)
{
	struct iovec v = { (void *)(uintptr_t)buf, (size_t)len };

	return len ? pwritev_full(fd, &v, 1, off) : 0;
}

/* All @len bytes at @off; -ENODATA when the file ends first. */
static int pread_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

static bool direct_ok(struct file_tp *t, uint64_t off, uint64_t len)
{
	return t->dfd >= 0 && off % t->off_align == 0 && len % t->off_align == 0;
}

/* Page data out: O_DIRECT when it can (bounced when memory is unaligned), else cached. */
static int write_data(struct file_chan *c, const struct iovec *iov, int iovcnt, uint64_t off,
		      uint64_t len)
{
	struct file_tp *t = ftp(c->base.tp);
	bool mem_ok = true;
	uint64_t done = 0;

	if (!direct_ok(t, off, len))
		return pwritev_full(t->fd, iov, iovcnt, off);
	for (int i = 0; i < iovcnt; i++)
		if ((uintptr_t)iov[i].iov_base % t->mem_align || iov[i].iov_len % t->off_align)
			mem_ok = false;
	if (mem_ok)
		return pwritev_full(t->dfd, iov, iovcnt, off);
	/* gather into the bounce buffer, a bounce_len piece at a time */
	for (uint64_t i = 0, k = 0; done < len;) {
		uint64_t piece = len - done < c->bounce_len ? len - done : c->bounce_len, got = 0;
		int rc;

		while (got < piece) {
			uint64_t n = iov[i].iov_len - k;

			n = n < piece - got ? n : piece - got;
			memcpy(c->bounce + got, (const uint8_t *)iov[i].iov_base + k, n);
			got += n;
			k += n;
			if (k == iov[i].iov_len) {
				i++;
				k = 0;
			}
		}
		rc = pwrite_full(t->dfd, c->bounce, piece, off + done);
		if (rc)
			return rc;
		done += piece;
	}
	return 0;
}

/* Page data in, the same way. */
static int read_data(struct file_chan *c, uint8_t *dst, uint64_t len, uint64_t off)
{
	struct file_tp *t = ftp(c->base.tp);

	if (!direct_ok(t, off, len))
		return pread_full(t->fd, dst, len, off);
	if ((uintptr_t)dst % t->mem_align == 0)
		return pread_full(t->dfd, dst, len, off);
	for (uint64_t done = 0; done < len;) {
		uint64_t piece = len - done < c->bounce_len ? len - done : c->bounce_len;
		int rc = pread_full(t->dfd, c->bounce, piece, off + done);

		if (rc)
			return rc;
		memcpy(dst + done, c->bounce, piece);
		done += piece;
	}
	return 0;
}

/* Atomically set bits [first, first + n) of @map. */
static void bits_set(unsigned long *map, uint64_t first, uint64_t n)
{
	while (n) {
		uint64_t w = first / RMIG_BITS_PER_LONG, b = first % RMIG_BITS_PER_LONG;
		uint64_t k = RMIG_BITS_PER_LONG - b < n ? RMIG_BITS_PER_LONG - b : n;
		unsigned long mask = (k == RMIG_BITS_PER_LONG ? ~0UL : ((1UL << k) - 1)) << b;

		__atomic_fetch_or(&map[w], mask, __ATOMIC_RELAXED);
		first += k;
		n -= k;
	}
}

/* Atomically clear bits [first, first + n); true if any was set. */
static bool bits_clear(unsigned long *map, uint64_t first, uint64_t n)
{
	bool any = false;

	while (n) {
		uint64_t w = first / RMIG_BITS_PER_LONG, b = first % RMIG_BITS_PER_LONG;
		uint64_t k = RMIG_BITS_PER_LONG - b < n ? RMIG_BITS_PER_LONG - b : n;
		unsigned long mask = (k == RMIG_BITS_PER_LONG ? ~0UL : ((1UL << k) - 1)) << b;

		any |= (__atomic_fetch_and(&map[w], ~mask, __ATOMIC_RELAXED) & mask) != 0;
		first += k;
		n -= k;
	}
	return any;
}

static bool bit_get(const unsigned long *map, uint64_t bit)
{
	return (__atomic_load_n(&map[bit / RMIG_BITS_PER_LONG], __ATOMIC_RELAXED) >>
		(bit % RMIG_BITS_PER_LONG)) & 1;
}

static int file_create(const struct rmig_tp_params *p, struct rmig_tp **tp_p);
static void file_destroy(struct rmig_tp *tp);

/* RMIG_F_DIRECT: the O_DIRECT descriptor and its alignment; a fallback is a warning. */
static void open_direct(struct file_tp *t, int mode)
{
	struct statx stx;
	struct stat a, b;

	if (!(t->base.p.flags & RMIG_F_DIRECT))
		return;
	t->dfd = open(t->path, mode | O_DIRECT | O_CLOEXEC);
	if (t->dfd < 0) {
		rmig_warn(t->base.p.log, "file %s: O_DIRECT is not available here (%s): using the "
					 "page cache",
			  t->path, strerror(errno));
		return;
	}
	if (fstat(t->fd, &a) < 0 || fstat(t->dfd, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) { /* renamed over meanwhile: not the file checked */
		rmig_warn(t->base.p.log, "file %s: changed while being opened: not using O_DIRECT",
			  t->path);
		close(t->dfd);
		t->dfd = -1;
		return;
	}
	t->mem_align = t->off_align = 4096;
	if (statx(t->dfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		if (!stx.stx_dio_offset_align) {
			rmig_warn(t->base.p.log, "file %s: its file system does not support "
						 "O_DIRECT on it: using the page cache", t->path);
			close(t->dfd);
			t->dfd = -1;
			return;
		}
		t->mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 1;
		t->off_align = stx.stx_dio_offset_align;
	}
	rmig_info(t->base.p.log, "file %s: O_DIRECT, memory aligned to %u bytes, offsets and "
				 "lengths to %u", t->path, t->mem_align, t->off_align);
}

static int open_source(struct file_tp *t)
{
	struct stat st;

	if (stat(t->path, &st) == 0 && !S_ISREG(st.st_mode))
		return ffail(t, -EINVAL, "not a regular file");
	t->fd = open(t->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (t->fd < 0)
		return ffail(t, -errno, "cannot create it: %s", strerror(errno));
	open_direct(t, O_WRONLY);
	return 0;
}

/* Restore: the device-state table, a record header at a time. */
static int read_state(struct file_tp *t)
{
	struct rmig_file_hdr *h = t->h;
	uint64_t pos = 0, rl, total = 0;
	char why[256];
	int rc;

	t->blobs = calloc(h->nblobs ? h->nblobs : 1, sizeof(*t->blobs));
	if (!t->blobs)
		return ffail(t, -ENOMEM, "no memory for %u device-state records", h->nblobs);
	for (uint32_t i = 0; i < h->nblobs; i++) {
		uint8_t rec[RMIG_FILE_BLOB_HDR];
		uint64_t avail = h->state_len - pos;

		rc = avail >= sizeof(rec) ? pread_full(t->fd, rec, sizeof(rec), h->state_off + pos) : 0;
		if (rc)
			return io_fail(t, rc, "reading a device-state record", h->state_off + pos,
				       sizeof(rec));
		rc = blob_decode(rec, avail, h->state_off + pos, i, &t->blobs[i], &rl, why,
				 sizeof(why));
		if (!rc)
			rc = blob_dup(t->blobs, i, why, sizeof(why));
		if (rc)
			return ffail(t, rc, "%s", why);
		pos += rl;
		total += t->blobs[i].len;
		if (total > t->base.p.blob_max) /* what a network source would meet, up front */
			return ffail(t, -E2BIG, "device state: at least %llu bytes, over this "
						"destination's limit of %llu (blob_max)",
				     (unsigned long long)total,
				     (unsigned long long)t->base.p.blob_max);
	}
	if (pos != h->state_len)
		return ffail(t, -EBADMSG, "device state: %llu bytes follow its %u records",
			     (unsigned long long)(h->state_len - pos), h->nblobs);
	return 0;
}

/* Restore: every block's bitmaps, checked, as unsigned long words. */
static int read_bitmaps(struct file_tp *t)
{
	struct rmig_file_hdr *h = t->h;
	char why[256];
	int rc = 0;

	for (unsigned int i = 0; i < h->nblocks && !rc; i++) {
		const struct rmig_file_block *b = &h->blocks[i];
		uint64_t one = rmig_file_bitmap_bytes(b->npages);
		size_t longs = rmig_bitmap_longs(b->npages);
		uint8_t *bm = malloc(b->bitmap_len);

		t->present[i] = calloc(longs, sizeof(unsigned long));
		t->data[i] = calloc(longs, sizeof(unsigned long));
		if (!bm || !t->present[i] || !t->data[i]) {
			free(bm);
			return ffail(t, -ENOMEM, "no memory for the bitmaps of ram block '%s'",
				     b->name);
		}
		rc = pread_full(t->fd, bm, b->bitmap_len, b->bitmap_off);
		if (rc) {
			rc = io_fail(t, rc, "reading the page bitmaps", b->bitmap_off,
				     b->bitmap_len);
		} else if ((rc = rmig_file_bitmaps_check(b, bm, why, sizeof(why)))) {
			rc = ffail(t, rc, "%s", why);
		} else {
			/* bytes to words: byte k holds pages 8k..8k+7 (no bit past npages) */
			for (uint64_t k = 0; k < (b->npages + 7) / 8; k++) {
				unsigned int sh = (unsigned int)(k % sizeof(unsigned long)) * 8;

				t->present[i][k / sizeof(unsigned long)] |= (unsigned long)bm[k] << sh;
				t->data[i][k / sizeof(unsigned long)] |= (unsigned long)bm[one + k] << sh;
			}
		}
		free(bm);
	}
	return rc;
}

/* Restore: the work, in chunks a channel takes one at a time. */
static int plan(struct file_tp *t)
{
	struct rmig_file_hdr *h = t->h;
	uint64_t k = 0;

	for (unsigned int i = 0; i < h->nblocks; i++) {
		uint64_t cp = t->base.p.extent_max / h->blocks[i].page_size;

		t->chunk_pages[i] = cp ? cp : 1;
		t->chunk_first[i] = k;
		k += (h->blocks[i].npages + t->chunk_pages[i] - 1) / t->chunk_pages[i];
	}
	t->chunk_first[h->nblocks] = k;
	t->ram_chunks = k;
	t->blob_first = calloc((size_t)h->nblobs + 1, sizeof(uint64_t));
	if (!t->blob_first)
		return ffail(t, -ENOMEM, "no memory");
	for (uint32_t i = 0; i < h->nblobs; i++) {
		uint64_t n = (t->blobs[i].len + RMIG_STATE_CHUNK_MAX - 1) / RMIG_STATE_CHUNK_MAX;

		t->blob_first[i] = k - t->ram_chunks;
		k += n ? n : 1; /* an empty blob still has its announcement */
	}
	t->blob_first[h->nblobs] = k - t->ram_chunks;
	t->total_chunks = k;
	return 0;
}

static int open_dest(struct file_tp *t)
{
	struct rmig_file_hdr *h = t->h;
	uint8_t *buf = NULL;
	struct stat st;
	char why[512];
	uint64_t n, tlen;
	int rc;

	t->fd = open(t->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (t->fd < 0)
		return ffail(t, -errno, "cannot open it: %s", strerror(errno));
	if (fstat(t->fd, &st) < 0)
		return ffail(t, -errno, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return ffail(t, -EINVAL, "not a regular file");
	n = (uint64_t)st.st_size < RMIG_FILE_HDR_MAX ? (uint64_t)st.st_size : RMIG_FILE_HDR_MAX;
	buf = malloc(RMIG_FILE_HDR_MAX);
	if (!buf)
		return ffail(t, -ENOMEM, "no memory");
	rc = pread_full(t->fd, buf, n, 0);
	if (rc) {
		free(buf);
		return io_fail(t, rc, "reading the header", 0, n);
	}
	rc = rmig_file_hdr_decode(buf, n, (uint64_t)st.st_size, true, h, why, sizeof(why));
	free(buf);
	if (rc)
		return ffail(t, rc, "%s", why);
	tlen = rmig_file_trailer_len(h->nblocks, h->nblobs);
	buf = malloc(tlen);
	t->digests = calloc((size_t)h->nblocks + h->nblobs, RMIG_DIGEST_LEN);
	if (!buf || !t->digests) {
		free(buf);
		return ffail(t, -ENOMEM, "no memory");
	}
	rc = pread_full(t->fd, buf, tlen, h->trailer_off);
	if (rc) {
		free(buf);
		return io_fail(t, rc, "reading the trailer", h->trailer_off, tlen);
	}
	rc = rmig_file_trailer_decode(buf, tlen, h, &t->tflags, t->digests, why, sizeof(why));
	free(buf);
	if (rc)
		return ffail(t, rc, "%s", why);
	if ((t->base.p.flags & RMIG_F_VERIFY) && !(t->tflags & RMIG_FILE_T_DIGESTS))
		return ffail(t, -ENODATA, "it holds no digests (it was saved without "
					  "verification), so it cannot be verified: restore it "
					  "without verification");
	rc = read_state(t);
	if (!rc)
		rc = read_bitmaps(t);
	if (!rc)
		rc = plan(t);
	if (!rc)
		open_direct(t, O_RDONLY);
	return rc;
}

static int file_create(const struct rmig_tp_params *p, struct rmig_tp **tp_p)
{
	struct file_tp *t = calloc(1, sizeof(*t));
	int rc;

	if (!t)
		return -ENOMEM;
	t->base.ops = &rmig_file_ops;
	t->base.p = *p;
	t->fd = t->dfd = -1;
	t->source = p->role == RMIG_ROLE_SOURCE;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	t->path = p->path ? strdup(p->path) : NULL;
	t->base.p.path = t->path;
	t->h = calloc(1, sizeof(*t->h));
	if (!t->path || !t->h) {
		file_destroy(&t->base);
		return p->path ? -ENOMEM : -EINVAL;
	}
	rc = t->source ? open_source(t) : open_dest(t);
	if (rc) {
		file_destroy(&t->base);
		return rc;
	}
	*tp_p = &t->base;
	return 0;
}

static void file_destroy(struct rmig_tp *tp)
{
	struct file_tp *t;

	if (!tp)
		return;
	t = ftp(tp);
	if (t->fd >= 0)
		close(t->fd);
	if (t->dfd >= 0)
		close(t->dfd);
	for (unsigned int i = 0; i < RMIG_BLOCKS_MAX; i++) {
		free(t->present[i]);
		free(t->data[i]);
	}
	free(t->sblobs);
	free(t->order);
	free(t->blobs);
	free(t->blob_first);
	free(t->digests);
	free(t->h);
	free(t->path);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t);
}

static int chan_new(struct file_tp *t, unsigned int idx, struct rmig_tp_chan **ch_p)
{
	struct file_chan *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->base.tp = &t->base;
	c->base.idx = idx;
	if (t->dfd >= 0) {
		size_t a = t->mem_align > 4096 ? t->mem_align : 4096;

		c->bounce_len = align_up(t->base.p.extent_max, t->off_align);
		c->bounce = aligned_alloc(a, align_up(c->bounce_len, a));
		if (!c->bounce) {
			free(c);
			return -ENOMEM;
		}
	}
	*ch_p = &c->base;
	return 0;
}

static int file_listen(struct rmig_tp *tp, int ctl_fd, uint8_t *ep, uint16_t *ep_len_p)
{
	(void)tp, (void)ctl_fd, (void)ep;
	*ep_len_p = 0;
	return 0;
}

static int file_accept(struct rmig_tp *tp, struct rmig_tp_chan **ch_p)
{
	struct file_tp *t = ftp(tp);

	if (t->nchans >= tp->p.nchannels)
		return -EINVAL;
	return chan_new(t, t->nchans++, ch_p);
}

static int file_connect(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
			unsigned int idx, struct rmig_tp_chan **ch_p)
{
	(void)ctl_fd, (void)ep, (void)ep_len;
	if (!ftp(tp)->laid_out)
		return -EINVAL; /* HELLO first */
	return chan_new(ftp(tp), idx, ch_p);
}

static int file_reg(struct rmig_tp *tp, unsigned int block, void *addr, uint64_t len,
		    uint8_t *desc, uint16_t *desc_len_p)
{
	(void)tp, (void)block, (void)addr, (void)len, (void)desc;
	*desc_len_p = 0;
	return 0;
}

static int file_set_remote(struct rmig_tp *tp, unsigned int block, uint64_t len,
			   const uint8_t *desc, uint16_t desc_len)
{
	(void)tp, (void)block, (void)len, (void)desc, (void)desc_len;
	return 0;
}

/* ---- source ---- */

static int file_write(struct rmig_tp_chan *ch, const struct rmig_target *tg,
		      const struct iovec *iov, int iovcnt)
{
	struct file_chan *c = fch(ch);
	struct file_tp *t = ftp(ch->tp);
	uint64_t len = 0, off;
	int rc;

	if (is_shut(t))
		return -ECANCELED;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (tg->kind == RMIG_TGT_RAM) {
		const struct rmig_file_block *b;
		uint64_t ps;

		if (tg->id >= t->h->nblocks)
			return ffail(t, -ERANGE, "write to unknown ram block %u", tg->id);
		b = &t->h->blocks[tg->id];
		ps = b->page_size;
		if (tg->offset > b->length || len > b->length - tg->offset)
			return ffail(t, -ERANGE, "write outside ram block '%s'", b->name);
		off = b->data_off + tg->offset;
		rc = write_data(c, iov, iovcnt, off, len);
		if (rc)
			return io_fail(t, rc, "writing page data", off, len);
		/* present and data; a partial page (pages over extent_max) counts whole */
		if (len) {
			uint64_t first = tg->offset / ps, end = (tg->offset + len + ps - 1) / ps;

			bits_set(t->data[tg->id], first, end - first);
			bits_set(t->present[tg->id], first, end - first);
		}
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	rc = tg->id < t->nsblobs && t->sblobs[tg->id].announced &&
			     tg->offset <= t->sblobs[tg->id].len &&
			     len <= t->sblobs[tg->id].len - tg->offset ?
		     0 : -ERANGE;
	off = rc ? 0 : t->sblobs[tg->id].data_off + tg->offset;
	pthread_mutex_unlock(&t->lock);
	if (rc)
		return ffail(t, rc, "device-state write outside blob %u", tg->id);
	rc = pwritev_full(t->fd, iov, iovcnt, off);
	return rc ? io_fail(t, rc, "writing device state", off, len) : 0;
}

static const uint8_t zeros[65536];

/* Make [off, off + len) of the file read as zero: a hole, or zeros written. */
static int punch(struct file_tp *t, uint64_t off, uint64_t len)
{
	int rc;

	if (fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < sizeof(zeros) ? len - done : sizeof(zeros);

		rc = pwrite_full(t->fd, zeros, n, off + done);
		if (rc)
			return rc;
		done += n;
	}
	return 0;
}

/*
 * Zero pages: present, no data, never written. A page that held data from
 * an earlier round loses it (its data bit, when the run covers it whole),
 * and its bytes in the file are punched out, so that a page only partly
 * covered here (pages over extent_max) reads as zero where it is zero.
 */
static int file_zero(struct rmig_tp_chan *ch, const struct rmig_target *tg, uint64_t len)
{
	struct file_tp *t = ftp(ch->tp);
	const struct rmig_file_block *b;
	uint64_t ps, first, end, full_first, full_end;
	bool had = false;

	if (is_shut(t))
		return -ECANCELED;
	if (tg->kind != RMIG_TGT_RAM || tg->id >= t->h->nblocks)
		return -EINVAL;
	b = &t->h->blocks[tg->id];
	ps = b->page_size;
	if (!len || tg->offset > b->length || len > b->length - tg->offset)
		return ffail(t, -ERANGE, "zero pages outside ram block '%s'", b->name);
	first = tg->offset / ps;
	end = (tg->offset + len + ps - 1) / ps;
	full_first = (tg->offset + ps - 1) / ps;
	full_end = (tg->offset + len) / ps;
	if (full_end > full_first)
		had = bits_clear(t->data[tg->id], full_first, full_end - full_first);
	if (first < full_first || first >= full_end)
		had |= bit_get(t->data[tg->id], first);
	if (end - 1 < full_first || end - 1 >= full_end)
		had |= bit_get(t->data[tg->id], end - 1);
	bits_set(t->present[tg->id], first, end - first);
	if (had) {
		int rc = punch(t, b->data_off + tg->offset, len);

		if (rc)
			return io_fail(t, rc, "clearing a page that became zero",
				       b->data_off + tg->offset, len);
	}
	return 0;
}

static int file_flush(struct rmig_tp_chan *ch)
{
	/* pwritev returned: the bytes are in the file (or on the disk with O_DIRECT) */
	return is_shut(ftp(ch->tp)) ? -ECANCELED : 0;
}

static int file_marker(struct rmig_tp_chan *ch, uint64_t id)
{
	const struct rmig_tp_upcalls *up = ch->tp->p.up;

	return up->sync(up->arg, ch->idx, id);
}

/* HELLO: lay the file out, write its header (no complete mark), size it. */
static int src_layout(struct file_tp *t, const uint8_t *payload, uint32_t len)
{
	struct rmig_msg_hello *m = calloc(1, sizeof(*m));
	struct rmig_file_hdr *h = t->h;
	uint64_t unit = UINT64_MAX;
	uint8_t *buf = NULL;
	int rc;

	if (!m)
		return ffail(t, -ENOMEM, "no memory");
	if (t->laid_out || rmig_hello_decode(payload, len, m) || !m->nblocks) {
		free(m);
		return ffail(t, -EPROTO, "bad layout");
	}
	h->nblocks = m->nblocks;
	for (unsigned int i = 0; i < m->nblocks; i++) {
		memcpy(h->blocks[i].name, m->blocks[i].name, RMIG_NAME_MAX);
		h->blocks[i].name[RMIG_NAME_MAX - 1] = '\0';
		h->blocks[i].length = m->blocks[i].length;
		h->blocks[i].page_size = m->blocks[i].page_size;
		unit = m->blocks[i].page_size < unit ? m->blocks[i].page_size : unit;
	}
	free(m);
	rc = rmig_file_layout(h);
	if (rc)
		return ffail(t, rc, "the ram blocks cannot be laid out");
	/* writes come in pages, or extent_max pieces of larger ones */
	unit = unit < t->base.p.extent_max ? unit : t->base.p.extent_max;
	if (t->dfd >= 0 && unit % t->off_align) {
		rmig_warn(t->base.p.log, "file %s: pages of %llu bytes are smaller than the "
					 "%u-byte alignment O_DIRECT needs here: using the page "
					 "cache",
			  t->path, (unsigned long long)unit, t->off_align);
		close(t->dfd);
		t->dfd = -1;
	}
	for (unsigned int i = 0; i < h->nblocks; i++) {
		size_t longs = rmig_bitmap_longs(h->blocks[i].npages);

		t->present[i] = calloc(longs ? longs : 1, sizeof(unsigned long));
		t->data[i] = calloc(longs ? longs : 1, sizeof(unsigned long));
		if (!t->present[i] || !t->data[i])
			return ffail(t, -ENOMEM, "no memory for the page bitmaps");
	}
	buf = malloc(h->hdr_len);
	if (!buf)
		return ffail(t, -ENOMEM, "no memory");
	rmig_file_hdr_encode(h, buf);
	rc = pwrite_full(t->fd, buf, h->hdr_len, 0);
	free(buf);
	if (rc)
		return io_fail(t, rc, "writing the header", 0, h->hdr_len);
	/* the page data's extent, as holes: the file is as large as it will get, but for metadata */
	if (ftruncate(t->fd, (off_t)h->state_off) < 0)
		return ffail(t, -errno, "sizing it to %llu bytes: %s",
			     (unsigned long long)h->state_off, strerror(errno));
	t->state_end = h->state_off;
	t->laid_out = true;
	return 0;
}

/* STATE_BEGIN: append the blob's record (its bytes come through the channels). */
static int src_blob(struct file_tp *t, const uint8_t *payload, uint32_t len)
{
	struct rmig_msg_state_begin m;
	uint8_t rec[RMIG_FILE_BLOB_HDR] = { 0 };
	uint64_t at;
	int rc = 0;

	if (rmig_state_begin_decode(payload, len, &m) || m.blob >= RMIG_BLOBS_MAX)
		return ffail(t, -EPROTO, "bad device-state announcement");
	pthread_mutex_lock(&t->lock);
	if (m.blob >= t->cap) {
		uint32_t cap = t->cap ? t->cap : 16;
		struct src_blob *nb;
		uint32_t *no;

		while (cap <= m.blob)
			cap *= 2;
		nb = realloc(t->sblobs, cap * sizeof(*nb));
		if (nb)
			t->sblobs = nb;
		no = realloc(t->order, cap * sizeof(*no));
		if (no)
			t->order = no;
		if (!nb || !no) {
			rc = -ENOMEM;
		} else {
			memset(nb + t->cap, 0, (cap - t->cap) * sizeof(*nb));
			t->cap = cap;
		}
	}
	if (!rc && t->sblobs[m.blob].announced)
		rc = -EEXIST;
	if (!rc) {
		at = t->state_end;
		t->sblobs[m.blob] = (struct src_blob){ true, at + RMIG_FILE_BLOB_HDR, m.total };
		t->order[t->nrec++] = m.blob;
		t->nsblobs = m.blob + 1 > t->nsblobs ? m.blob + 1 : t->nsblobs;
		t->state_end = at + RMIG_FILE_BLOB_HDR + align_up(m.total, 8);
		memcpy(rec, m.name, strnlen(m.name, RMIG_NAME_MAX - 1));
		put_le32(rec + 64, m.instance);
		put_le64(rec + 72, m.total);
		rc = pwrite_full(t->fd, rec, sizeof(rec), at);
		if (rc) {
			pthread_mutex_unlock(&t->lock);
			return io_fail(t, rc, "writing a device-state record", at, sizeof(rec));
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (rc)
		return ffail(t, rc, "device-state blob %u: %s", m.blob, strerror(-rc));
	return 0;
}

/* Bitmap words to the file's bytes (bit n: byte n / 8, bit n % 8). */
static void bitmap_bytes(const unsigned long *map, uint64_t npages, uint8_t *out)
{
	memset(out, 0, rmig_file_bitmap_bytes(npages));
	for (uint64_t w = 0; w < rmig_bitmap_longs(npages); w++) {
		unsigned long v = __atomic_load_n(&map[w], __ATOMIC_RELAXED);

		for (unsigned int k = 0; k < sizeof(v) && w * sizeof(v) + k < (npages + 7) / 8; k++)
			out[w * sizeof(v) + k] = (uint8_t)(v >> (8 * k));
	}
}

/*
 * COMPLETE (every channel synced before it): bitmaps, trailer, fdatasync;
 * then the header with the complete mark, fdatasync; then the verdict.
 */
static int src_finish(struct file_tp *t, const uint8_t *payload, uint32_t len)
{
	const struct rmig_tp_upcalls *up = t->base.p.up;
	struct rmig_file_hdr *h = t->h;
	struct rmig_msg_complete m = { 0 };
	uint8_t (*dg)[RMIG_DIGEST_LEN] = calloc(RMIG_BLOCKS_MAX + RMIG_BLOBS_MAX, RMIG_DIGEST_LEN);
	uint8_t (*out)[RMIG_DIGEST_LEN] = NULL;
	uint8_t *buf = NULL, ack[4] = { 0 };
	uint64_t tlen;
	int rc = 0;

	if (!dg)
		return ffail(t, -ENOMEM, "no memory");
	m.block_digest = dg;
	m.blob_digest = dg + RMIG_BLOCKS_MAX;
	if (!t->laid_out ||
	    rmig_complete_decode(payload, len, &m, RMIG_BLOCKS_MAX, RMIG_BLOBS_MAX) ||
	    m.nblocks != h->nblocks) {
		rc = ffail(t, -EPROTO, "bad completion");
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	if (m.nblobs != t->nrec || t->nsblobs != t->nrec)
		rc = -EPROTO;
	pthread_mutex_unlock(&t->lock);
	if (rc) {
		rc = ffail(t, rc, "completion names %u device-state blobs, %u were announced",
			   m.nblobs, t->nrec);
		goto out;
	}
	h->nblobs = t->nrec;
	h->state_len = t->state_end - h->state_off;
	h->trailer_off = t->state_end;
	tlen = rmig_file_trailer_len(h->nblocks, h->nblobs);
	/* the bitmaps: present, then data */
	for (unsigned int i = 0; i < h->nblocks && !rc; i++) {
		const struct rmig_file_block *b = &h->blocks[i];
		uint64_t one = rmig_file_bitmap_bytes(b->npages);

		buf = malloc(b->bitmap_len);
		if (!buf) {
			rc = ffail(t, -ENOMEM, "no memory");
			break;
		}
		bitmap_bytes(t->present[i], b->npages, buf);
		bitmap_bytes(t->data[i], b->npages, buf + one);
		rc = pwrite_full(t->fd, buf, b->bitmap_len, b->bitmap_off);
		free(buf);
		buf = NULL;
		if (rc)
			rc = io_fail(t, rc, "writing the page bitmaps", b->bitmap_off, b->bitmap_len);
	}
	if (rc)
		goto out;
	/* the trailer: block digests, then blob digests in record order */
	out = calloc((size_t)h->nblocks + h->nblobs, RMIG_DIGEST_LEN);
	buf = malloc(tlen);
	if (!out || !buf) {
		rc = ffail(t, -ENOMEM, "no memory");
		goto out;
	}
	memcpy(out, m.block_digest, (size_t)h->nblocks * RMIG_DIGEST_LEN);
	for (uint32_t r = 0; r < h->nblobs; r++)
		memcpy(out[h->nblocks + r], m.blob_digest[t->order[r]], RMIG_DIGEST_LEN);
	rmig_file_trailer_encode(h->nblocks, h->nblobs,
				 (m.flags & RMIG_F_VERIFY) ? RMIG_FILE_T_DIGESTS : 0,
				 (const uint8_t(*)[RMIG_DIGEST_LEN])out, buf);
	rc = pwrite_full(t->fd, buf, tlen, h->trailer_off);
	free(buf);
	buf = NULL;
	if (rc) {
		rc = io_fail(t, rc, "writing the trailer", h->trailer_off, tlen);
		goto out;
	}
	if (fdatasync(t->fd) < 0) {
		rc = io_fail(t, -errno, "flushing the save to stable storage", 0, h->trailer_off + tlen);
		goto out;
	}
	/* only now: the complete mark */
	h->flags |= RMIG_FILE_F_COMPLETE;
	buf = malloc(h->hdr_len);
	if (!buf) {
		rc = ffail(t, -ENOMEM, "no memory");
		goto out;
	}
	rmig_file_hdr_encode(h, buf);
	rc = pwrite_full(t->fd, buf, h->hdr_len, 0);
	if (!rc && fdatasync(t->fd) < 0)
		rc = -errno;
	if (rc) {
		rc = io_fail(t, rc, "marking the save complete", 0, h->hdr_len);
		goto out;
	}
	rc = up->ctl(up->arg, RMIG_MSG_COMPLETE_ACK, ack, sizeof(ack));
out:
	free(buf);
	free(out);
	free(dg);
	return rc;
}

static int file_ctl(struct rmig_tp *tp, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct file_tp *t = ftp(tp);

	if (!t->source)
		return 0; /* SYNC_ACK, COMPLETE_ACK: nobody to tell */
	if (is_shut(t) && type != RMIG_MSG_SYNC_ACK && type != RMIG_MSG_PING)
		return -ECANCELED;
	switch (type) {
	case RMIG_MSG_HELLO:
		return src_layout(t, payload, len);
	case RMIG_MSG_STATE_BEGIN:
		return src_blob(t, payload, len);
	case RMIG_MSG_COMPLETE:
		return src_finish(t, payload, len);
	default:
		return 0;
	}
}

/* ---- restore ---- */

static int file_layout(struct rmig_tp *tp, struct rmig_msg_hello *m)
{
	struct file_tp *t = ftp(tp);

	memset(m, 0, sizeof(*m));
	m->version = RMIG_PROTO_VERSION;
	m->caps = (tp->p.flags & RMIG_F_VERIFY) ? RMIG_CAP_VERIFY : 0;
	m->nchannels = tp->p.nchannels;
	m->transport = RMIG_TRANSPORT_FILE;
	m->nblocks = t->h->nblocks;
	for (unsigned int i = 0; i < m->nblocks; i++) {
		memcpy(m->blocks[i].name, t->h->blocks[i].name, RMIG_NAME_MAX);
		m->blocks[i].length = t->h->blocks[i].length;
		m->blocks[i].page_size = t->h->blocks[i].page_size;
	}
	return 0;
}

/* 0: not saved, 1: a zero page, 2: data */
static int page_class(struct file_tp *t, unsigned int b, uint64_t p)
{
	return rmig_bit_test(t->present[b], p) + rmig_bit_test(t->data[b], p);
}

static int read_ram_chunk(struct file_chan *c, uint64_t k)
{
	struct file_tp *t = ftp(c->base.tp);
	const struct rmig_tp_upcalls *up = t->base.p.up;
	unsigned int b = 0;
	const struct rmig_file_block *fb;
	uint64_t p, end;
	int rc = 0;

	while (k >= t->chunk_first[b + 1])
		b++;
	fb = &t->h->blocks[b];
	p = (k - t->chunk_first[b]) * t->chunk_pages[b];
	end = p + t->chunk_pages[b] < fb->npages ? p + t->chunk_pages[b] : fb->npages;
	while (p < end && !rc) {
		int cls = page_class(t, b, p);
		uint64_t q = p + 1, len;
		struct rmig_target tg = { .kind = RMIG_TGT_RAM, .id = b, .offset = p * fb->page_size };
		void *dst;

		while (q < end && page_class(t, b, q) == cls)
			q++;
		len = (q - p) * fb->page_size;
		if (cls == 2) {
			rc = up->place(up->arg, &tg, len, &dst);
			if (!rc) {
				rc = read_data(c, dst, len, fb->data_off + tg.offset);
				if (rc == -ENODATA)
					rc = ffail(t, -EIO, "it ended at offset %llu while ram block "
							    "'%s' was read: cut short while restoring?",
						   (unsigned long long)(fb->data_off + tg.offset),
						   fb->name);
				else if (rc)
					rc = io_fail(t, rc, "reading page data",
						     fb->data_off + tg.offset, len);
			}
			if (!rc)
				rc = up->placed(up->arg, &tg, len);
		} else if (cls == 1) {
			rc = up->zero(up->arg, &tg, len);
		}
		p = q;
	}
	return rc;
}

static int read_blob_chunk(struct file_chan *c, uint64_t k)
{
	struct file_tp *t = ftp(c->base.tp);
	const struct rmig_tp_upcalls *up = t->base.p.up;
	const struct rmig_file_blob *fb;
	struct rmig_target tg = { .kind = RMIG_TGT_STATE };
	uint64_t q, len;
	uint32_t i = 0;
	void *dst;
	int rc;

	while (k >= t->blob_first[i + 1])
		i++;
	fb = &t->blobs[i];
	q = k - t->blob_first[i];
	if (q == 0) { /* the blob's announcement, as a source's STATE_BEGIN */
		struct rmig_msg_state_begin m = { .blob = i, .instance = fb->instance,
						  .total = fb->len };
		uint8_t buf[128];
		int n;

		memcpy(m.name, fb->name, RMIG_NAME_MAX);
		n = rmig_state_begin_encode(&m, buf, sizeof(buf));
		rc = n < 0 ? n : up->ctl(up->arg, RMIG_MSG_STATE_BEGIN, buf, (uint32_t)n);
		if (rc || !fb->len)
			return rc;
	}
	tg.id = i;
	tg.offset = q * RMIG_STATE_CHUNK_MAX;
	tg.total = fb->len;
	len = fb->len - tg.offset < RMIG_STATE_CHUNK_MAX ? fb->len - tg.offset : RMIG_STATE_CHUNK_MAX;
	rc = up->place(up->arg, &tg, len, &dst);
	if (rc)
		return rc;
	rc = pread_full(t->fd, dst, len, fb->data_off + tg.offset);
	if (rc)
		return io_fail(t, rc == -ENODATA ? -EIO : rc, "reading device state",
			       fb->data_off + tg.offset, len);
	return up->placed(up->arg, &tg, len);
}

/* The last channel done: the session's COMPLETE, with the trailer's digests. */
static int send_complete(struct file_tp *t)
{
	const struct rmig_tp_upcalls *up = t->base.p.up;
	struct rmig_msg_complete m = {
		.flags = (t->base.p.flags & RMIG_F_VERIFY) ? RMIG_F_VERIFY : 0,
		.nblocks = t->h->nblocks,
		.nblobs = t->h->nblobs,
		.block_digest = t->digests,
		.blob_digest = t->digests + t->h->nblocks,
	};
	uint8_t *buf = malloc(RMIG_CTL_MAX);
	int n, rc;

	if (!buf)
		return ffail(t, -ENOMEM, "no memory");
	n = rmig_complete_encode(&m, buf, RMIG_CTL_MAX);
	rc = n < 0 ? ffail(t, n, "encoding the completion") :
		     up->ctl(up->arg, RMIG_MSG_COMPLETE, buf, (uint32_t)n);
	free(buf);
	return rc;
}

static int file_progress(struct rmig_tp_chan *ch)
{
	struct file_chan *c = fch(ch);
	struct file_tp *t = ftp(ch->tp);
	const struct rmig_tp_upcalls *up = t->base.p.up;
	uint64_t k;
	int rc;

	if (is_shut(t))
		return -ECANCELED;
	if (c->finished) {
		pthread_mutex_lock(&t->lock);
		while (!t->shut)
			pthread_cond_wait(&t->cond, &t->lock);
		pthread_mutex_unlock(&t->lock);
		return -ECANCELED;
	}
	k = atomic_fetch_add(&t->cursor, 1);
	if (k < t->ram_chunks)
		return read_ram_chunk(c, k);
	if (k < t->total_chunks)
		return read_blob_chunk(c, k - t->ram_chunks);
	c->finished = true;
	rc = up->sync(up->arg, ch->idx, 1);
	if (!rc && atomic_fetch_add(&t->done, 1) + 1 == t->base.p.nchannels)
		rc = send_complete(t);
	return rc;
}

static void file_shutdown(struct rmig_tp *tp)
{
	struct file_tp *t = ftp(tp);

	pthread_mutex_lock(&t->lock);
	t->shut = true;
	atomic_store_explicit(&t->shut_flag, true, memory_order_release);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

static void file_chan_close(struct rmig_tp_chan *ch)
{
	struct file_chan *c;

	if (!ch)
		return;
	c = fch(ch);
	free(c->bounce);
	free(c);
}

const struct rmig_transport_ops rmig_file_ops = {
	.name = "file",
	.kind = RMIG_TRANSPORT_FILE,
	.create = file_create,
	.destroy = file_destroy,
	.listen = file_listen,
	.accept = file_accept,
	.connect = file_connect,
	.reg = file_reg,
	.set_remote = file_set_remote,
	.write = file_write,
	.zero = file_zero,
	.flush = file_flush,
	.marker = file_marker,
	.progress = file_progress,
	.shutdown = file_shutdown,
	.chan_close = file_chan_close,
	.ctl = file_ctl,
	.layout = file_layout,
};
