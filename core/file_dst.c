/* SPDX-License-Identifier: MIT */
/*
 * file_dst.c - the file backend's restore: each channel takes the next chunk
 * from a shared cursor and reads its data pages with preadv straight into the
 * block, hands zero runs to up->zero(), then the device-state blobs; the last
 * channel to run out hands the session a COMPLETE. See file.c.
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

#include "file_int.h"

int file_dst_layout(struct rmig_tp *tp, struct rmig_msg_hello *m)
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
			rc = up->place(up->arg, c->base.idx, &tg, len, &dst);
			if (!rc) {
				rc = file_read_data(c, dst, len, fb->data_off + tg.offset);
				if (rc == -ENODATA)
					rc = file_fail(t, -EIO, "it ended at offset %llu while ram block "
							    "'%s' was read: cut short while restoring?",
						   (unsigned long long)(fb->data_off + tg.offset),
						   fb->name);
				else if (rc)
					rc = file_io_fail(t, rc, "reading page data",
							  fb->data_off + tg.offset, len);
			}
			if (!rc)
				rc = up->placed(up->arg, c->base.idx, &tg, len);
		} else if (cls == 1) {
			rc = up->zero(up->arg, c->base.idx, &tg, len);
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
	rc = up->place(up->arg, c->base.idx, &tg, len, &dst);
	if (rc)
		return rc;
	rc = file_pread_full(t->fd, dst, len, fb->data_off + tg.offset);
	if (rc)
		return file_io_fail(t, rc == -ENODATA ? -EIO : rc, "reading device state",
				    fb->data_off + tg.offset, len);
	return up->placed(up->arg, c->base.idx, &tg, len);
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
		return file_fail(t, -ENOMEM, "no memory");
	n = rmig_complete_encode(&m, buf, RMIG_CTL_MAX);
	rc = n < 0 ? file_fail(t, n, "encoding the completion") :
		     up->ctl(up->arg, RMIG_MSG_COMPLETE, buf, (uint32_t)n);
	free(buf);
	return rc;
}

int file_dst_progress(struct rmig_tp_chan *ch)
{
	struct file_chan *c = fch(ch);
	struct file_tp *t = ftp(ch->tp);
	const struct rmig_tp_upcalls *up = t->base.p.up;
	uint64_t k;
	int rc;

	if (file_is_shut(t))
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

