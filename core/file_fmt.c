/* SPDX-License-Identifier: MIT */
/*
 * file_fmt.c - the save file's format (file.h): laying it out, encoding the
 * header and trailer, and the checked decoders a restore runs on every byte
 * before it touches memory (also the fuzz target's entry points).
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

#include "file.h"
#include "wire.h"

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
	off = rmig_align_up(h->hdr_len, RMIG_FILE_META_ALIGN);
	for (unsigned int i = 0; i < h->nblocks; i++) {
		struct rmig_file_block *b = &h->blocks[i];

		if (!b->page_size || b->length % b->page_size || b->length > (1ull << 56))
			return -EINVAL;
		b->npages = b->length / b->page_size;
		b->bitmap_off = off;
		b->bitmap_len = 2 * rmig_file_bitmap_bytes(b->npages);
		off = rmig_align_up(off + b->bitmap_len, RMIG_FILE_META_ALIGN);
	}
	for (unsigned int i = 0; i < h->nblocks; i++) {
		off = rmig_align_up(off, RMIG_FILE_DATA_ALIGN);
		h->blocks[i].data_off = off;
		off += h->blocks[i].length;
	}
	h->state_off = rmig_align_up(off, RMIG_FILE_META_ALIGN);
	return 0;
}

void rmig_file_hdr_encode(const struct rmig_file_hdr *h, uint8_t *buf)
{
	memset(buf, 0, h->hdr_len);
	memcpy(buf, RMIG_FILE_MAGIC, 8);
	rmig_put_le32(buf + 8, h->version);
	rmig_put_le32(buf + 12, h->hdr_len);
	rmig_put_le32(buf + 16, h->flags);
	rmig_put_le32(buf + 20, h->nblocks);
	rmig_put_le64(buf + 24, h->state_off);
	rmig_put_le64(buf + 32, h->state_len);
	rmig_put_le64(buf + 40, h->trailer_off);
	rmig_put_le32(buf + 48, h->nblobs);
	for (unsigned int i = 0; i < h->nblocks; i++) {
		const struct rmig_file_block *b = &h->blocks[i];
		uint8_t *e = buf + RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * i;

		memcpy(e, b->name, strnlen(b->name, RMIG_NAME_MAX - 1));
		rmig_put_le64(e + 64, b->length);
		rmig_put_le32(e + 72, b->page_size);
		rmig_put_le64(e + 80, b->data_off);
		rmig_put_le64(e + 88, b->bitmap_off);
		rmig_put_le64(e + 96, b->bitmap_len);
	}
	rmig_put_le64(buf + 56, hdr_sum(buf, h->hdr_len));
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
	b->length = rmig_get_le64(e + 64);
	b->page_size = rmig_get_le32(e + 72);
	b->data_off = rmig_get_le64(e + 80);
	b->bitmap_off = rmig_get_le64(e + 88);
	b->bitmap_len = rmig_get_le64(e + 96);
	if (rmig_get_le32(e + 76) || !all_zero(e + 104, 24) ||
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
	h->version = rmig_get_le32(buf + 8);
	if (h->version != RMIG_FILE_VERSION) {
		snprintf(why, why_len, "format version %u; this build reads version %u",
			 h->version, RMIG_FILE_VERSION);
		return -EPROTONOSUPPORT;
	}
	h->hdr_len = rmig_get_le32(buf + 12);
	h->flags = rmig_get_le32(buf + 16);
	h->nblocks = rmig_get_le32(buf + 20);
	h->state_off = rmig_get_le64(buf + 24);
	h->state_len = rmig_get_le64(buf + 32);
	h->trailer_off = rmig_get_le64(buf + 40);
	h->nblobs = rmig_get_le32(buf + 48);
	if (!h->nblocks || h->nblocks > RMIG_BLOCKS_MAX)
		return WHY("header: %u ram blocks (1..%u)", h->nblocks, RMIG_BLOCKS_MAX);
	if (h->hdr_len != RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * h->nblocks)
		return WHY("header: %u bytes long for %u ram blocks (expected %u)", h->hdr_len,
			   h->nblocks, RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * h->nblocks);
	if (file_size < h->hdr_len || len < h->hdr_len)
		return WHY("truncated: %llu bytes, shorter than its %u-byte header",
			   (unsigned long long)(file_size < len ? file_size : len), h->hdr_len);
	if (rmig_get_le64(buf + 56) != hdr_sum(buf, h->hdr_len))
		return WHY("header checksum mismatch: the header is damaged");
	if (h->flags & ~RMIG_FILE_F_ALL)
		return WHY("header: unknown flags 0x%x", h->flags & ~RMIG_FILE_F_ALL);
	if (need_complete && !(h->flags & RMIG_FILE_F_COMPLETE))
		return WHY("the save did not complete (the file has no complete mark): it was "
			   "interrupted, failed, or is still being written");
	if (rmig_get_le32(buf + 52))
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
int rmig_file_blob_decode(const uint8_t *rec, uint64_t avail, uint64_t off, unsigned int idx,
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
	b->instance = rmig_get_le32(rec + 64);
	b->len = rmig_get_le64(rec + 72);
	if (rmig_get_le32(rec + 68))
		return WHY("device state: record %u: reserved bytes are not zero", idx);
	if (b->len > avail - RMIG_FILE_BLOB_HDR ||
	    rmig_align_up(b->len, 8) > avail - RMIG_FILE_BLOB_HDR)
		return WHY("device state: blob '%s' of %llu bytes runs past the region", b->name,
			   (unsigned long long)b->len);
	b->data_off = off + RMIG_FILE_BLOB_HDR;
	*rec_len_p = RMIG_FILE_BLOB_HDR + rmig_align_up(b->len, 8);
	return 0;
}

int rmig_file_blob_dup(const struct rmig_file_blob *b, unsigned int n, char *why, size_t why_len)
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
		rc = rmig_file_blob_decode(buf + pos, len - pos, off + pos, i, &out[i], &rl, why,
					   why_len);
		if (!rc)
			rc = rmig_file_blob_dup(out, i, why, why_len);
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
	rmig_put_le32(buf + 8, nblocks);
	rmig_put_le32(buf + 12, nblobs);
	rmig_put_le32(buf + 16, flags);
	if (flags & RMIG_FILE_T_DIGESTS)
		memcpy(buf + RMIG_FILE_TRAILER_FIXED, digests,
		       ((size_t)nblocks + nblobs) * RMIG_DIGEST_LEN);
	rmig_put_le64(buf + n, XXH3_64bits(buf, (size_t)n));
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
	if (rmig_get_le64(buf + n - 8) != XXH3_64bits(buf, (size_t)(n - 8)))
		return WHY("trailer checksum mismatch: the trailer is damaged");
	if (rmig_get_le32(buf + 8) != h->nblocks || rmig_get_le32(buf + 12) != h->nblobs)
		return WHY("trailer: %u blocks and %u blobs, the header says %u and %u",
			   rmig_get_le32(buf + 8), rmig_get_le32(buf + 12), h->nblocks, h->nblobs);
	*flags_p = rmig_get_le32(buf + 16);
	if ((*flags_p & ~RMIG_FILE_T_DIGESTS) || rmig_get_le32(buf + 20))
		return WHY("trailer: unknown flags 0x%x", *flags_p);
	memcpy(digests, buf + RMIG_FILE_TRAILER_FIXED,
	       ((size_t)h->nblocks + h->nblobs) * RMIG_DIGEST_LEN);
	return 0;
}

#undef WHY

