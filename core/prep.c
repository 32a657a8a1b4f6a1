/* SPDX-License-Identifier: MIT */
/*
 * prep.c - RMIG_F_PREPARE: make RAM blocks resident before the data needs
 * them.
 *
 * A page fault costs microseconds; a migration that meets each 4 KiB page
 * of fresh memory by fault (the destination's receive, the source's zero
 * scan) spends more time faulting than copying. Populating a range with one
 * madvise() call maps every page in it at a fraction of that cost, and
 * anonymous memory marked MADV_HUGEPAGE faults once per 2 MiB.
 *
 * One thread walks the blocks in order, a chunk at a time, from the moment
 * the session knows its layout (source: connect; destination: the layout
 * check), so it overlaps the handshake and stays ahead of the channels,
 * which send and place from the start of each block. A channel that
 * overtakes it simply faults as it would have anyway.
 *
 * Destination: MADV_POPULATE_WRITE (pages allocated, zeroed and mapped
 * writable). Source: MADV_POPULATE_READ (page cache or zero pages mapped,
 * nothing allocated). A failure to populate on the destination means the
 * memory cannot be had (a full file system, a hugetlbfs pool too small):
 * the session fails with the cause, before a write could raise SIGBUS.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "prep.h"
#include "sess.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PREP_CHUNK (32ull << 20)

struct rmig_prep {
	struct rmig_session *s;
	pthread_t th;
	atomic_bool stop;
	_Atomic uint64_t done; /* bytes populated */
	uint64_t ns;
};

static int populate(struct rmig_prep *p, struct rmig_block *b, int advice)
{
	uint64_t chunk = PREP_CHUNK;

	if (chunk % b->page_size)
		chunk = b->page_size;
	for (uint64_t off = 0; off < b->length && !atomic_load(&p->stop); off += chunk) {
		uint64_t len = b->length - off < chunk ? b->length - off : chunk;

		if (madvise(b->host + off, len, advice) == 0) {
			atomic_fetch_add(&p->done, len);
			continue;
		}
		if (errno == EINTR) {
			off -= chunk;
			continue;
		}
		/* an older kernel or a mapping that cannot be populated: leave it to faults */
		if (errno == EINVAL || errno == EPERM || errno == EOPNOTSUPP)
			return 0;
		if (advice == MADV_POPULATE_READ)
			return 0; /* the source reads what it can; a hole reads as zero */
		return rmig_sess_fail(p->s, errno == EFAULT || errno == ENOMEM ? -ENOSPC : -errno,
				      "preparing ram block '%s' at offset %llu: %s: no memory for it "
				      "here (a full file system, or a hugetlbfs pool without %llu "
				      "more pages of %u bytes?)",
				      b->name, (unsigned long long)off, strerror(errno),
				      (unsigned long long)((b->length - off) / b->page_size), b->page_size);
	}
	return 0;
}

static void *prep_main(void *arg)
{
	struct rmig_prep *p = arg;
	struct rmig_session *s = p->s;
	bool dest = s->opts.role == RMIG_ROLE_DEST;
	uint64_t t0 = rmig_now_ns();

	for (unsigned int i = 0; i < s->nblocks && !atomic_load(&p->stop); i++) {
		struct rmig_block *b = &s->blocks[i];

		/* the kernel ignores it where it does not apply (file memory, hugetlb) */
		if (dest)
			(void)madvise(b->host, b->length, MADV_HUGEPAGE);
		if (populate(p, b, dest ? MADV_POPULATE_WRITE : MADV_POPULATE_READ))
			break;
	}
	p->ns = rmig_now_ns() - t0;
	rmig_logf(&s->log, RMIG_LOG_DEBUG, "prepared %llu bytes of ram in %.3f s",
		   (unsigned long long)atomic_load(&p->done), (double)p->ns / 1e9);
	return NULL;
}

int rmig_prep_start(struct rmig_session *s)
{
	struct rmig_prep *p;
	int rc;

	if (!(s->opts.flags & RMIG_F_PREPARE) || s->prep || !s->nblocks)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return rmig_sess_fail(s, -ENOMEM, "no memory to prepare ram");
	p->s = s;
	rc = pthread_create(&p->th, NULL, prep_main, p);
	if (rc) {
		free(p);
		return rmig_sess_fail(s, -rc, "starting the ram preparation thread: %s",
				      strerror(rc));
	}
	s->prep = p;
	return 0;
}

void rmig_prep_stop(struct rmig_session *s)
{
	struct rmig_prep *p = s->prep;

	if (!p)
		return;
	atomic_store(&p->stop, true);
	pthread_join(p->th, NULL);
	free(p);
	s->prep = NULL;
}

/*
 * A destination populates while the channels open, but not where a
 * feature places every page itself (postcopy): populating a page that
 * userfaultfd will serve would fault it in from the source.
 */
static int prep_feature_start(struct rmig_session *s)
{
	if (s->opts.role == RMIG_ROLE_DEST && rmig_sess_every_page(s))
		return 0;
	return rmig_prep_start(s);
}

const struct rmig_feature rmig_prep_feature = {
	.name = "prepare",
	.start = prep_feature_start,
	.stop = rmig_prep_stop,
};
