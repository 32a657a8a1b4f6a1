/* SPDX-License-Identifier: MIT */
/*
 * file_src.c - the file backend's save: a channel's write() is one pwritev at
 * the page's fixed offset, zero() marks pages present with no data (a hole),
 * the session's HELLO lays the file out, STATE_BEGIN appends a device-state
 * record, and COMPLETE writes the bitmaps and the trailer and marks the file
 * complete. See file.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/file.h>
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

#include "file_int.h"

int file_src_write(struct rmig_tp_chan *ch, const struct rmig_target *tg,
		      const struct iovec *iov, int iovcnt)
{
	struct file_chan *c = fch(ch);
	struct file_tp *t = ftp(ch->tp);
	uint64_t len = 0, off;
	int rc;

	if (file_is_shut(t))
		return -ECANCELED;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (tg->kind == RMIG_TGT_RAM) {
		const struct rmig_file_block *b;
		uint64_t ps;

		if (tg->id >= t->h->nblocks)
			return file_fail(t, -ERANGE, "write to unknown ram block %u", tg->id);
		b = &t->h->blocks[tg->id];
		ps = b->page_size;
		if (tg->offset > b->length || len > b->length - tg->offset)
			return file_fail(t, -ERANGE, "write outside ram block '%s'", b->name);
		off = b->data_off + tg->offset;
		rc = file_write_data(c, iov, iovcnt, off, len);
		if (rc)
			return file_io_fail(t, rc, "writing page data", off, len);
		/* present and data; a partial page (pages over extent_max) counts whole */
		if (len) {
			uint64_t first = tg->offset / ps, end = (tg->offset + len + ps - 1) / ps;

			file_bits_set(t->data[tg->id], first, end - first);
			file_bits_set(t->present[tg->id], first, end - first);
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
		return file_fail(t, rc, "device-state write outside blob %u", tg->id);
	rc = file_pwritev_full(t->fd, iov, iovcnt, off);
	return rc ? file_io_fail(t, rc, "writing device state", off, len) : 0;
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

		rc = file_pwrite_full(t->fd, zeros, n, off + done);
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
int file_src_zero(struct rmig_tp_chan *ch, const struct rmig_target *tg, uint64_t len)
{
	struct file_tp *t = ftp(ch->tp);
	const struct rmig_file_block *b;
	uint64_t ps, first, end, full_first, full_end;
	bool had = false;

	if (file_is_shut(t))
		return -ECANCELED;
	if (tg->kind != RMIG_TGT_RAM || tg->id >= t->h->nblocks)
		return -EINVAL;
	b = &t->h->blocks[tg->id];
	ps = b->page_size;
	if (!len || tg->offset > b->length || len > b->length - tg->offset)
		return file_fail(t, -ERANGE, "zero pages outside ram block '%s'", b->name);
	first = tg->offset / ps;
	end = (tg->offset + len + ps - 1) / ps;
	full_first = (tg->offset + ps - 1) / ps;
	full_end = (tg->offset + len) / ps;
	if (full_end > full_first)
		had = file_bits_clear(t->data[tg->id], full_first, full_end - full_first);
	if (first < full_first || first >= full_end)
		had |= file_bit_get(t->data[tg->id], first);
	if (end - 1 < full_first || end - 1 >= full_end)
		had |= file_bit_get(t->data[tg->id], end - 1);
	file_bits_set(t->present[tg->id], first, end - first);
	if (had) {
		int rc = punch(t, b->data_off + tg->offset, len);

		if (rc)
			return file_io_fail(t, rc, "clearing a page that became zero",
					    b->data_off + tg->offset, len);
	}
	return 0;
}

int file_src_flush(struct rmig_tp_chan *ch)
{
	/* pwritev returned: the bytes are in the file (or on the disk with O_DIRECT) */
	return file_is_shut(ftp(ch->tp)) ? -ECANCELED : 0;
}

int file_src_marker(struct rmig_tp_chan *ch, uint64_t id)
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
		return file_fail(t, -ENOMEM, "no memory");
	if (t->laid_out || rmig_hello_decode(payload, len, m) || !m->nblocks) {
		free(m);
		return file_fail(t, -EPROTO, "bad layout");
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
		return file_fail(t, rc, "the ram blocks cannot be laid out");
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
			return file_fail(t, -ENOMEM, "no memory for the page bitmaps");
	}
	buf = malloc(h->hdr_len);
	if (!buf)
		return file_fail(t, -ENOMEM, "no memory");
	rmig_file_hdr_encode(h, buf);
	rc = file_pwrite_full(t->fd, buf, h->hdr_len, 0);
	free(buf);
	if (rc)
		return file_io_fail(t, rc, "writing the header", 0, h->hdr_len);
	/* the page data's extent, as holes: the file is as large as it will get, but for metadata */
	if (ftruncate(t->fd, (off_t)h->state_off) < 0)
		return file_fail(t, -errno, "sizing it to %llu bytes: %s",
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
		return file_fail(t, -EPROTO, "bad device-state announcement");
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
		t->state_end = at + RMIG_FILE_BLOB_HDR + rmig_align_up(m.total, 8);
		memcpy(rec, m.name, strnlen(m.name, RMIG_NAME_MAX - 1));
		rmig_put_le32(rec + 64, m.instance);
		rmig_put_le64(rec + 72, m.total);
		rc = file_pwrite_full(t->fd, rec, sizeof(rec), at);
		if (rc) {
			pthread_mutex_unlock(&t->lock);
			return file_io_fail(t, rc, "writing a device-state record", at, sizeof(rec));
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (rc)
		return file_fail(t, rc, "device-state blob %u: %s", m.blob, strerror(-rc));
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
		return file_fail(t, -ENOMEM, "no memory");
	m.block_digest = dg;
	m.blob_digest = dg + RMIG_BLOCKS_MAX;
	if (!t->laid_out ||
	    rmig_complete_decode(payload, len, &m, RMIG_BLOCKS_MAX, RMIG_BLOBS_MAX) ||
	    m.nblocks != h->nblocks) {
		rc = file_fail(t, -EPROTO, "bad completion");
		goto out;
	}
	pthread_mutex_lock(&t->lock);
	if (m.nblobs != t->nrec || t->nsblobs != t->nrec)
		rc = -EPROTO;
	pthread_mutex_unlock(&t->lock);
	if (rc) {
		rc = file_fail(t, rc, "completion names %u device-state blobs, %u were announced",
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
			rc = file_fail(t, -ENOMEM, "no memory");
			break;
		}
		bitmap_bytes(t->present[i], b->npages, buf);
		bitmap_bytes(t->data[i], b->npages, buf + one);
		rc = file_pwrite_full(t->fd, buf, b->bitmap_len, b->bitmap_off);
		free(buf);
		buf = NULL;
		if (rc)
			rc = file_io_fail(t, rc, "writing the page bitmaps", b->bitmap_off, b->bitmap_len);
	}
	if (rc)
		goto out;
	/* the trailer: block digests, then blob digests in record order */
	out = calloc((size_t)h->nblocks + h->nblobs, RMIG_DIGEST_LEN);
	buf = malloc(tlen);
	if (!out || !buf) {
		rc = file_fail(t, -ENOMEM, "no memory");
		goto out;
	}
	memcpy(out, m.block_digest, (size_t)h->nblocks * RMIG_DIGEST_LEN);
	for (uint32_t r = 0; r < h->nblobs; r++)
		memcpy(out[h->nblocks + r], m.blob_digest[t->order[r]], RMIG_DIGEST_LEN);
	rmig_file_trailer_encode(h->nblocks, h->nblobs,
				 (m.flags & RMIG_F_VERIFY) ? RMIG_FILE_T_DIGESTS : 0,
				 (const uint8_t(*)[RMIG_DIGEST_LEN])out, buf);
	rc = file_pwrite_full(t->fd, buf, tlen, h->trailer_off);
	free(buf);
	buf = NULL;
	if (rc) {
		rc = file_io_fail(t, rc, "writing the trailer", h->trailer_off, tlen);
		goto out;
	}
	if (fdatasync(t->fd) < 0) {
		rc = file_io_fail(t, -errno, "flushing the save to stable storage", 0, h->trailer_off + tlen);
		goto out;
	}
	/* only now: the complete mark */
	h->flags |= RMIG_FILE_F_COMPLETE;
	buf = malloc(h->hdr_len);
	if (!buf) {
		rc = file_fail(t, -ENOMEM, "no memory");
		goto out;
	}
	rmig_file_hdr_encode(h, buf);
	rc = file_pwrite_full(t->fd, buf, h->hdr_len, 0);
	if (!rc && fdatasync(t->fd) < 0)
		rc = -errno;
	if (rc) {
		rc = file_io_fail(t, rc, "marking the save complete", 0, h->hdr_len);
		goto out;
	}
	flock(t->fd, LOCK_UN); /* written whole: others may read it now (open_source's lock) */
	rc = up->ctl(up->arg, RMIG_MSG_COMPLETE_ACK, ack, sizeof(ack));
out:
	free(buf);
	free(out);
	free(dg);
	return rc;
}

int file_src_ctl(struct rmig_tp *tp, uint16_t type, const uint8_t *payload, uint32_t len)
{
	struct file_tp *t = ftp(tp);

	if (!t->source)
		return 0; /* SYNC_ACK, COMPLETE_ACK: nobody to tell */
	if (file_is_shut(t) && type != RMIG_MSG_SYNC_ACK && type != RMIG_MSG_PING)
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

