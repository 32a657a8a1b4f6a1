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
		return file_fail(t, -EINVAL, "not a regular file");
	t->fd = open(t->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (t->fd < 0)
		return file_fail(t, -errno, "cannot create it: %s", strerror(errno));
	/*
	 * Held alone until the session ends, and taken before the file is
	 * emptied: a second save to it, a restore reading it, or an image
	 * (flock shared by a reader, alone by a writer) would otherwise mix
	 * with this save or lose what it holds.
	 */
	if (flock(t->fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK)
		return file_fail(t, -EBUSY, "in use by another rdma-migrate (a save to it, a "
					    "restore from it, or an image a send, recv or "
					    "restore uses): refusing to write it");
	if (ftruncate(t->fd, 0) < 0)
		return file_fail(t, -errno, "cannot empty it: %s", strerror(errno));
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
		return file_fail(t, -ENOMEM, "no memory for %u device-state records", h->nblobs);
	for (uint32_t i = 0; i < h->nblobs; i++) {
		uint8_t rec[RMIG_FILE_BLOB_HDR];
		uint64_t avail = h->state_len - pos;

		rc = avail >= sizeof(rec) ? file_pread_full(t->fd, rec, sizeof(rec), h->state_off + pos) : 0;
		if (rc)
			return file_io_fail(t, rc, "reading a device-state record", h->state_off + pos,
					    sizeof(rec));
		rc = rmig_file_blob_decode(rec, avail, h->state_off + pos, i, &t->blobs[i], &rl, why,
					   sizeof(why));
		if (!rc)
			rc = rmig_file_blob_dup(t->blobs, i, why, sizeof(why));
		if (rc)
			return file_fail(t, rc, "%s", why);
		pos += rl;
		total += t->blobs[i].len;
		if (total > t->base.p.blob_max) /* what a network source would meet, up front */
			return file_fail(t, -E2BIG, "device state: at least %llu bytes, over this "
						"destination's limit of %llu (blob_max)",
				     (unsigned long long)total,
				     (unsigned long long)t->base.p.blob_max);
	}
	if (pos != h->state_len)
		return file_fail(t, -EBADMSG, "device state: %llu bytes follow its %u records",
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
			return file_fail(t, -ENOMEM, "no memory for the bitmaps of ram block '%s'",
					 b->name);
		}
		rc = file_pread_full(t->fd, bm, b->bitmap_len, b->bitmap_off);
		if (rc) {
			rc = file_io_fail(t, rc, "reading the page bitmaps", b->bitmap_off,
					  b->bitmap_len);
		} else if ((rc = rmig_file_bitmaps_check(b, bm, why, sizeof(why)))) {
			rc = file_fail(t, rc, "%s", why);
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
		return file_fail(t, -ENOMEM, "no memory");
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
		return file_fail(t, -errno, "cannot open it: %s", strerror(errno));
	if (fstat(t->fd, &st) < 0)
		return file_fail(t, -errno, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return file_fail(t, -EINVAL, "not a regular file");
	/* shared with other restores; a save to it holds it alone */
	if (flock(t->fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
		return file_fail(t, -EBUSY, "being written by another rdma-migrate (a save to it, "
					    "or a recv or restore into it as an image): refusing "
					    "to read it");
	n = (uint64_t)st.st_size < RMIG_FILE_HDR_MAX ? (uint64_t)st.st_size : RMIG_FILE_HDR_MAX;
	buf = malloc(RMIG_FILE_HDR_MAX);
	if (!buf)
		return file_fail(t, -ENOMEM, "no memory");
	rc = file_pread_full(t->fd, buf, n, 0);
	if (rc) {
		free(buf);
		return file_io_fail(t, rc, "reading the header", 0, n);
	}
	rc = rmig_file_hdr_decode(buf, n, (uint64_t)st.st_size, true, h, why, sizeof(why));
	free(buf);
	if (rc)
		return file_fail(t, rc, "%s", why);
	tlen = rmig_file_trailer_len(h->nblocks, h->nblobs);
	buf = malloc(tlen);
	t->digests = calloc((size_t)h->nblocks + h->nblobs, RMIG_DIGEST_LEN);
	if (!buf || !t->digests) {
		free(buf);
		return file_fail(t, -ENOMEM, "no memory");
	}
	rc = file_pread_full(t->fd, buf, tlen, h->trailer_off);
	if (rc) {
		free(buf);
		return file_io_fail(t, rc, "reading the trailer", h->trailer_off, tlen);
	}
	rc = rmig_file_trailer_decode(buf, tlen, h, &t->tflags, t->digests, why, sizeof(why));
	free(buf);
	if (rc)
		return file_fail(t, rc, "%s", why);
	if ((t->base.p.flags & RMIG_F_VERIFY) && !(t->tflags & RMIG_FILE_T_DIGESTS))
		return file_fail(t, -ENODATA, "it holds no digests (it was saved without "
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

		c->bounce_len = rmig_align_up(t->base.p.extent_max, t->off_align);
		c->bounce = aligned_alloc(a, rmig_align_up(c->bounce_len, a));
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

/* Restore: the device-state blobs of the file's table. */
static int file_blobs(struct rmig_tp *tp, struct rmig_state_info *out, unsigned int max)
{
	struct file_tp *t = ftp(tp);

	if (t->source || !t->blobs)
		return 0;
	for (uint32_t i = 0; i < t->h->nblobs && i < max; i++) {
		memcpy(out[i].name, t->blobs[i].name, RMIG_NAME_MAX);
		out[i].instance = t->blobs[i].instance;
		out[i].length = t->blobs[i].len;
	}
	return (int)t->h->nblobs;
}

const struct rmig_transport_ops rmig_file_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "file",
	.kind = RMIG_TRANSPORT_FILE,
	.caps = RMIG_TP_CAP_LOCAL,
	.create = file_create,
	.destroy = file_destroy,
	.listen = file_listen,
	.accept = file_accept,
	.connect = file_connect,
	.reg = file_reg,
	.set_remote = file_set_remote,
	.write = file_src_write,
	.zero = file_src_zero,
	.flush = file_src_flush,
	.marker = file_src_marker,
	.progress = file_dst_progress,
	.shutdown = file_shutdown,
	.chan_close = file_chan_close,
	.ctl = file_src_ctl,
	.layout = file_dst_layout,
	.blobs = file_blobs,
};

