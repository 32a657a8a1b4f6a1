/* SPDX-License-Identifier: MIT */
/*
 * file_int.h - inside the file backend (core/file.c, file_src.c, file_dst.c):
 * its transport and channel objects and the I/O helpers the save and the
 * restore share. Nothing outside the backend includes it.
 */
#ifndef RMIG_FILE_INT_H
#define RMIG_FILE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "bitmap.h"
#include "file.h"
#include "transport.h"
#include "wire.h"

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

static inline struct file_tp *ftp(struct rmig_tp *tp)
{
	return container_of(tp, struct file_tp, base);
}

static inline struct file_chan *fch(struct rmig_tp_chan *ch)
{
	return container_of(ch, struct file_chan, base);
}

/* Atomically set bits [first, first + n) of @map. */
static inline void file_bits_set(unsigned long *map, uint64_t first, uint64_t n)
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
static inline bool file_bits_clear(unsigned long *map, uint64_t first, uint64_t n)
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

static inline bool file_bit_get(const unsigned long *map, uint64_t bit)
{
	return (__atomic_load_n(&map[bit / RMIG_BITS_PER_LONG], __ATOMIC_RELAXED) >>
		(bit % RMIG_BITS_PER_LONG)) & 1;
}

/* file_io.c: errors and I/O, shared by the save and the restore */
int file_fail(struct file_tp *t, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int file_io_fail(struct file_tp *t, int err, const char *what, uint64_t off, uint64_t len);
bool file_is_shut(struct file_tp *t);
int file_pwritev_full(int fd, const struct iovec *iov_in, int iovcnt, uint64_t off);
int file_pwrite_full(int fd, const void *buf, uint64_t len, uint64_t off);
int file_pread_full(int fd, void *buf, uint64_t len, uint64_t off);
int file_write_data(struct file_chan *c, const struct iovec *iov, int iovcnt, uint64_t off,
		    uint64_t len);
int file_read_data(struct file_chan *c, uint8_t *dst, uint64_t len, uint64_t off);

/* file_src.c: the save's ops */
int file_src_write(struct rmig_tp_chan *ch, const struct rmig_target *tg,
		   const struct iovec *iov, int iovcnt);
int file_src_zero(struct rmig_tp_chan *ch, const struct rmig_target *tg, uint64_t len);
int file_src_flush(struct rmig_tp_chan *ch);
int file_src_marker(struct rmig_tp_chan *ch, uint64_t id);
int file_src_ctl(struct rmig_tp *tp, uint16_t type, const uint8_t *payload, uint32_t len);

/* file_dst.c: the restore's ops */
int file_dst_layout(struct rmig_tp *tp, struct rmig_msg_hello *m);
int file_dst_progress(struct rmig_tp_chan *ch);

#endif
