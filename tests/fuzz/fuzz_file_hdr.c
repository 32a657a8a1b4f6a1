/* SPDX-License-Identifier: MIT */
/*
 * fuzz_file_hdr.c - the save file's checked decoders (core/file.h), as a
 * restore runs them on a file it did not write. Input:
 *
 *   u8 mode | u64 file size (LE) | the header | then, when it decodes, each
 *   block's bitmaps, the device-state region and the trailer, back to back
 *
 * mode bit 0: store the right header checksum first (the fuzzer cannot
 * guess a 64-bit sum); bit 1: refuse a file without the complete mark. A
 * header that decodes must describe regions inside the file and apart from
 * each other, and encode back to a header that decodes the same; blobs that
 * decode must lie inside their region.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rmig_file_hdr h, h2;
static uint8_t buf[RMIG_FILE_HDR_MAX];
static struct rmig_file_blob blobs[RMIG_BLOBS_MAX];
static uint8_t digests[RMIG_BLOCKS_MAX + RMIG_BLOBS_MAX][RMIG_DIGEST_LEN];

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The checksum the decoder expects: XXH3-64 with its own 8 bytes as zero. */
static void fix_sum(uint8_t *p, size_t len)
{
	uint32_t hl = le32(p + 12);
	uint64_t v;

	if (len < RMIG_FILE_HDR_FIXED || hl < RMIG_FILE_HDR_FIXED || hl > len)
		return;
	memset(p + 56, 0, 8);
	v = XXH3_64bits(p, hl);
	for (int i = 0; i < 8; i++)
		p[56 + i] = (uint8_t)(v >> (8 * i));
}

static bool inside(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static bool apart(uint64_t a, uint64_t al, uint64_t b, uint64_t bl)
{
	return !al || !bl || a + al <= b || b + bl <= a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t fsize, pos;
	size_t len;
	char why[512];
	uint32_t tflags;

	if (size < 9)
		return 0;
	fsize = le64(data + 1);
	len = size - 9 < sizeof(buf) ? size - 9 : sizeof(buf);
	memcpy(buf, data + 9, len);
	if (data[0] & 1)
		fix_sum(buf, len);
	if (rmig_file_hdr_decode(buf, len, fsize, data[0] & 2, &h, why, sizeof(why)))
		return 0;
	/* what the restore then relies on */
	if (h.hdr_len > len || !h.nblocks || h.nblocks > RMIG_BLOCKS_MAX ||
	    ((data[0] & 2) && !(h.flags & RMIG_FILE_F_COMPLETE)))
		abort();
	for (unsigned int i = 0; i < h.nblocks; i++) {
		const struct rmig_file_block *b = &h.blocks[i];

		if (!inside(b->data_off, b->length, fsize) ||
		    !inside(b->bitmap_off, b->bitmap_len, fsize) || b->data_off % RMIG_FILE_DATA_ALIGN ||
		    !b->page_size || b->length % b->page_size || b->npages != b->length / b->page_size ||
		    b->bitmap_len != 2 * rmig_file_bitmap_bytes(b->npages) ||
		    !apart(b->data_off, b->length, 0, h.hdr_len) ||
		    !apart(b->bitmap_off, b->bitmap_len, 0, h.hdr_len) ||
		    !apart(b->data_off, b->length, b->bitmap_off, b->bitmap_len))
			abort();
		for (unsigned int j = 0; j < i; j++) {
			const struct rmig_file_block *o = &h.blocks[j];

			if (!apart(b->data_off, b->length, o->data_off, o->length) ||
			    !apart(b->data_off, b->length, o->bitmap_off, o->bitmap_len) ||
			    !apart(b->bitmap_off, b->bitmap_len, o->data_off, o->length) ||
			    !strcmp(b->name, o->name))
				abort();
		}
		if ((h.flags & RMIG_FILE_F_COMPLETE) &&
		    (!apart(b->data_off, b->length, h.state_off, h.state_len) ||
		     !apart(b->data_off, b->length, h.trailer_off,
			    rmig_file_trailer_len(h.nblocks, h.nblobs))))
			abort();
	}
	/* encode, decode again: the same header */
	rmig_file_hdr_encode(&h, buf);
	if (rmig_file_hdr_decode(buf, h.hdr_len, fsize, data[0] & 2, &h2, why, sizeof(why)) ||
	    memcmp(&h, &h2, sizeof(h)))
		abort();
	/* the rest of the input: each block's bitmaps, the device state, the trailer */
	pos = 9 + (uint64_t)h.hdr_len;
	for (unsigned int i = 0; i < h.nblocks; i++) {
		const struct rmig_file_block *b = &h.blocks[i];

		if (size - pos < b->bitmap_len)
			return 0;
		(void)rmig_file_bitmaps_check(b, data + pos, why, sizeof(why));
		pos += b->bitmap_len;
	}
	if (!(h.flags & RMIG_FILE_F_COMPLETE) || size - pos < h.state_len)
		return 0;
	if (!rmig_file_state_decode(data + pos, h.state_len, h.state_off, h.nblobs, blobs, why,
				    sizeof(why))) {
		for (uint32_t i = 0; i < h.nblobs; i++)
			if (blobs[i].data_off < h.state_off + RMIG_FILE_BLOB_HDR ||
			    !inside(blobs[i].data_off - h.state_off, blobs[i].len, h.state_len))
				abort();
	}
	pos += h.state_len;
	(void)rmig_file_trailer_decode(data + pos, size - pos, &h, &tflags, digests, why,
				       sizeof(why));
	return 0;
}
