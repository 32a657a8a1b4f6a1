/* SPDX-License-Identifier: MIT */
/*
 * file.h - the save file of a "file:" session (the backend is core/file.c):
 * its layout, and the checked decoders a restore runs before it touches
 * memory (also the fuzz target's entry points).
 *
 * Layout, version 1. Every integer is little-endian.
 *
 *   0            header: 64 fixed bytes, then one 128-byte entry per RAM block
 *   4 KiB-aligned per block: its page bitmaps (present, then data)
 *   2 MiB-aligned per block: its page data, page n at data_off + n * page_size
 *   4 KiB-aligned device-state region: one record per blob, in the order sent
 *   8-aligned     trailer: digests, then a checksum of the trailer
 *
 * Header (64 bytes):
 *   0 magic "RMIGFILE" | 8 u32 version | 12 u32 hdr_len (64 + 128 * nblocks)
 *   16 u32 flags (RMIG_FILE_F_*) | 20 u32 nblocks | 24 u64 state_off
 *   32 u64 state_len | 40 u64 trailer_off | 48 u32 nblobs | 52 u32 0
 *   56 u64 XXH3-64 of the hdr_len header bytes with these 8 read as zero
 * Block entry (128 bytes):
 *   0 name[64] (NUL-terminated, NUL-padded) | 64 u64 length | 72 u32 page_size
 *   76 u32 0 | 80 u64 data_off | 88 u64 bitmap_off | 96 u64 bitmap_len | 104 24 zero bytes
 * Bitmaps: two of ceil(npages / 64) * 8 bytes each; bit n (byte n / 8, bit
 *   n % 8) stands for page n. "present": the page was saved. "data": its
 *   bytes are in the file. Present without data is a zero page: a hole,
 *   never written. Data implies present; bits past npages are zero. A page
 *   not present was never saved: a restore leaves it as it is.
 * Device-state record: 0 name[64] | 64 u32 instance | 68 u32 0 | 72 u64 len |
 *   80 the len bytes, padded with zeros to a multiple of 8.
 * Trailer: 0 magic "RMIGTRLR" | 8 u32 nblocks | 12 u32 nblobs | 16 u32 flags
 *   (RMIG_FILE_T_DIGESTS) | 20 u32 0 | 24 XXH3-128 digests (canonical, 16
 *   bytes each) of every block, then of every blob in record order (zeros
 *   without RMIG_FILE_T_DIGESTS) | then u64 XXH3-64 of the trailer before it.
 *
 * A save writes the header without RMIG_FILE_F_COMPLETE first; the page
 * data then goes to fixed offsets (a live round rewrites the same ones: the
 * file never grows past its layout); completion writes the bitmaps, the
 * trailer, fdatasync, then the header with the complete mark, fdatasync.
 */
#ifndef RMIG_FILE_H
#define RMIG_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rmig.h"
#include "wire.h"

#define RMIG_FILE_MAGIC "RMIGFILE"
#define RMIG_FILE_TRAILER_MAGIC "RMIGTRLR"
#define RMIG_FILE_VERSION 1u
#define RMIG_FILE_HDR_FIXED 64u
#define RMIG_FILE_ENTRY 128u
#define RMIG_FILE_HDR_MAX (RMIG_FILE_HDR_FIXED + RMIG_FILE_ENTRY * RMIG_BLOCKS_MAX)
#define RMIG_FILE_DATA_ALIGN (2ull << 20)
#define RMIG_FILE_META_ALIGN 4096ull
#define RMIG_FILE_BLOB_HDR 80u
#define RMIG_FILE_TRAILER_FIXED 24u
/* A restore reads every bitmap before the first page: at most this much. */
#define RMIG_FILE_BITMAPS_MAX (1ull << 30)

#define RMIG_FILE_F_COMPLETE (1u << 0) /* header: the save completed */
#define RMIG_FILE_F_ALL RMIG_FILE_F_COMPLETE
#define RMIG_FILE_T_DIGESTS (1u << 0)  /* trailer: the digests are real */

struct rmig_file_block {
	char name[RMIG_NAME_MAX];
	uint64_t length;
	uint32_t page_size;
	uint64_t npages;
	uint64_t data_off;
	uint64_t bitmap_off;
	uint64_t bitmap_len; /* both bitmaps */
};

struct rmig_file_hdr {
	uint32_t version;
	uint32_t flags;
	uint32_t hdr_len;
	uint32_t nblocks;
	uint32_t nblobs;
	uint64_t state_off;
	uint64_t state_len;
	uint64_t trailer_off;
	struct rmig_file_block blocks[RMIG_BLOCKS_MAX];
};

struct rmig_file_blob {
	char name[RMIG_NAME_MAX];
	uint32_t instance;
	uint64_t len;
	uint64_t data_off; /* in the file */
};

/* Little-endian fields, and offsets rounded up to @a. */
static inline void rmig_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void rmig_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t rmig_get_le32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t rmig_get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t rmig_align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Bytes of one bitmap of @npages bits. */
uint64_t rmig_file_bitmap_bytes(uint64_t npages);
uint64_t rmig_file_trailer_len(uint32_t nblocks, uint32_t nblobs);
/*
 * Lay out a new file: h->nblocks and each block's name, length and page
 * size are set; fills hdr_len, every offset, state_off. 0 or -EINVAL.
 */
int rmig_file_layout(struct rmig_file_hdr *h);
/* The h->hdr_len header bytes, checksum included, into @buf. */
void rmig_file_hdr_encode(const struct rmig_file_hdr *h, uint8_t *buf);
/*
 * Decode and check a header read from a file of @file_size bytes (@len
 * bytes at offset 0: at least hdr_len, or the answer is that the file is
 * too short). Checks the magic, version, checksum, every block, that every
 * region (header, bitmaps, data, and with the complete mark the device
 * state and trailer) lies inside the file and none overlaps another, and,
 * with the complete mark, that the file ends with the trailer. @need_complete:
 * a file without the complete mark is refused. 0, -EBADMSG, or
 * -EPROTONOSUPPORT (another format version), with why in @why.
 */
int rmig_file_hdr_decode(const uint8_t *buf, size_t len, uint64_t file_size, bool need_complete,
			 struct rmig_file_hdr *h, char *why, size_t why_len);
/*
 * Check one block's bitmaps as read from the file (b->bitmap_len bytes):
 * no bit past the block, data only where present. 0 or -EBADMSG.
 */
int rmig_file_bitmaps_check(const struct rmig_file_block *b, const uint8_t *bm, char *why,
			    size_t why_len);
/*
 * Decode the device-state region (@len bytes read at file offset @off):
 * exactly @nblobs records filling it, each named, no two with one name and
 * instance. @out has room for @nblobs. 0 or -EBADMSG.
 */
int rmig_file_state_decode(const uint8_t *buf, uint64_t len, uint64_t off, uint32_t nblobs,
			   struct rmig_file_blob *out, char *why, size_t why_len);
/*
 * One record of it, the @idx-th, at file offset @off with @avail bytes of
 * the region left: fills @b and its whole length (*@rec_len_p). 0 or -EBADMSG.
 */
int rmig_file_blob_decode(const uint8_t *rec, uint64_t avail, uint64_t off, unsigned int idx,
			  struct rmig_file_blob *b, uint64_t *rec_len_p, char *why, size_t why_len);
/* -EBADMSG where record @n repeats the name and instance of one before it; else 0. */
int rmig_file_blob_dup(const struct rmig_file_blob *b, unsigned int n, char *why, size_t why_len);
void rmig_file_trailer_encode(uint32_t nblocks, uint32_t nblobs, uint32_t flags,
			      const uint8_t (*digests)[RMIG_DIGEST_LEN], uint8_t *buf);
/*
 * Decode the trailer (@len bytes) of a file whose header is @h: *flags_p and
 * nblocks + nblobs digests into @digests. 0 or -EBADMSG.
 */
int rmig_file_trailer_decode(const uint8_t *buf, size_t len, const struct rmig_file_hdr *h,
			     uint32_t *flags_p, uint8_t (*digests)[RMIG_DIGEST_LEN], char *why,
			     size_t why_len);

#endif
