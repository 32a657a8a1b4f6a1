/* SPDX-License-Identifier: MIT */
/*
 * state.c - device-state blobs. Source: a blob is announced on the control
 * connection (name, instance, length) and its chunks are spread over the
 * data channels as jobs, sent from the caller's buffer without a copy.
 * Destination: a blob is created by whichever arrives first, its
 * announcement or a chunk; chunks land at their offset in the blob's buffer;
 * once announced and complete it is handed to the load callback on the
 * session's task pool, so several devices load at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "bitmap.h"
#include "sess.h"

struct rmig_blob {
	uint32_t id;
	bool announced;
	char name[RMIG_NAME_MAX];
	uint32_t instance;
	uint64_t total;
	uint64_t received;
	uint8_t *buf;
	uint64_t map_len; /* buf is an anonymous mapping of this length, or 0: malloc */
	unsigned long *claimed; /* dest: 4 KiB units a chunk was placed into */
	bool dispatched;
	bool loaded;
	int load_rc;
	uint8_t digest[RMIG_DIGEST_LEN];
	struct rmig_session *s;
};

#define HUGE_SZ (2ull << 20)
#define CHUNK_UNIT 4096u /* chunks start on, and (but the last) span, whole units */

/*
 * Destination blob buffers are written once, at switchover, inside the
 * guest's downtime: a large one is mapped with transparent huge pages where
 * the kernel allows, so filling it takes one fault per 2 MiB instead of
 * one per 4 KiB.
 */
static int blob_buf_alloc(struct rmig_blob *b, uint64_t len)
{
	if (len >= HUGE_SZ) {
		uint64_t ml = (len + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
		void *p = mmap(NULL, ml, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return -ENOMEM;
		(void)madvise(p, ml, MADV_HUGEPAGE); /* advice only: fine to be refused */
		b->buf = p;
		b->map_len = ml;
		return 0;
	}
	b->buf = malloc(len);
	return b->buf ? 0 : -ENOMEM;
}

static void blob_buf_free(struct rmig_blob *b)
{
	if (b->map_len)
		munmap(b->buf, b->map_len);
	else
		free(b->buf);
	b->buf = NULL;
	b->map_len = 0;
}

static void digest(const void *p, uint64_t len, uint8_t *out)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits(p, (size_t)len));
	memcpy(out, c.digest, RMIG_DIGEST_LEN);
}

/* Source or destination: the blob with @id, growing the table; state_lock held. */
static struct rmig_blob *blob_get(struct rmig_session *s, uint32_t id, bool create)
{
	struct rmig_blob *b;

	if (id >= RMIG_BLOBS_MAX)
		return NULL;
	if (id >= s->nblobs) {
		struct rmig_blob **nb;

		if (!create)
			return NULL;
		nb = realloc(s->blobs, (id + 1) * sizeof(*nb));
		if (!nb)
			return NULL;
		memset(nb + s->nblobs, 0, (id + 1 - s->nblobs) * sizeof(*nb));
		s->blobs = nb;
		s->nblobs = id + 1;
	}
	b = s->blobs[id];
	if (!b && create) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		b->id = id;
		b->s = s;
		s->blobs[id] = b;
	}
	return b;
}

uint32_t rmig_state_count(struct rmig_session *s)
{
	uint32_t n;

	pthread_mutex_lock(&s->state_lock);
	n = s->nblobs;
	pthread_mutex_unlock(&s->state_lock);
	return n;
}

/*
 * Source or destination, state_lock held: the blob other than @self already
 * named @name, @instance. A device's state is loaded once: a second blob
 * of one (name, instance) would be loaded over the first, or the first lost.
 */
static struct rmig_blob *blob_named(struct rmig_session *s, const char *name, uint32_t instance,
				    const struct rmig_blob *self)
{
	for (uint32_t i = 0; i < s->nblobs; i++) {
		struct rmig_blob *b = s->blobs[i];

		if (b && b != self && b->announced && b->instance == instance &&
		    !strcmp(b->name, name))
			return b;
	}
	return NULL;
}

int rmig_state_send(struct rmig_session *s, const char *name, uint32_t instance,
		    const void *data, uint64_t len)
{
	struct rmig_msg_state_begin m = { .instance = instance, .total = len };
	uint8_t buf[128];
	struct rmig_blob *b;
	struct rmig_job *job;
	uint64_t off, chunk;
	int rc, n;

	if (!name || !*name || strlen(name) >= RMIG_NAME_MAX || (!data && len))
		return -EINVAL;
	pthread_mutex_lock(&s->state_lock);
	if (blob_named(s, name, instance, NULL)) {
		pthread_mutex_unlock(&s->state_lock);
		return -EEXIST;
	}
	b = blob_get(s, s->nblobs, true);
	if (b) {
		b->announced = true;
		b->total = len;
		b->instance = instance;
		strcpy(b->name, name);
		if (s->verify) /* the blob is unchanged until completion: see rmig.h */
			digest(data, len, b->digest);
	}
	pthread_mutex_unlock(&s->state_lock);
	if (!b)
		return s->nblobs >= RMIG_BLOBS_MAX ? -E2BIG : -ENOMEM;
	m.blob = b->id;
	strcpy(m.name, name);
	n = rmig_state_begin_encode(&m, buf, sizeof(buf));
	rc = rmig_ctl_send(s, RMIG_MSG_STATE_BEGIN, buf, (uint32_t)n);
	if (rc)
		return rc;

	job = rmig_job_new();
	if (!job)
		return -ENOMEM;
	chunk = s->opts.extent_max < RMIG_STATE_CHUNK_MAX ? s->opts.extent_max : RMIG_STATE_CHUNK_MAX;
	for (off = 0; off < len && !rc; off += chunk) {
		job->kind = RMIG_JOB_STATE;
		job->id = b->id;
		job->data = data;
		job->total = len;
		job->n = 1;
		job->ext[0].offset = off;
		job->ext[0].len = len - off < chunk ? len - off : chunk;
		rc = rmig_chan_submit(s, &job, -1);
	}
	free(job);
	if (!rc)
		atomic_fetch_add_explicit(&s->st_state_bytes, len, memory_order_relaxed);
	return rc;
}

/* Destination, state_lock held: create or check blob @id against @total. */
static int blob_admit(struct rmig_session *s, uint32_t id, uint64_t total, struct rmig_blob **b_p)
{
	struct rmig_blob *b = blob_get(s, id, false);

	if (id >= RMIG_BLOBS_MAX)
		return rmig_sess_fail(s, -EBADMSG, "device-state blob id %u out of range", id);
	if (!b) {
		if (total > s->opts.blob_max - s->state_reserved)
			return rmig_sess_fail(s, -E2BIG,
					      "device state over the limit: blob %u of %llu bytes, "
					      "%llu already, limit %llu",
					      id, (unsigned long long)total,
					      (unsigned long long)s->state_reserved,
					      (unsigned long long)s->opts.blob_max);
		b = blob_get(s, id, true);
		if (b && total) {
			b->claimed = calloc(rmig_bitmap_longs((total + CHUNK_UNIT - 1) / CHUNK_UNIT),
					    sizeof(unsigned long));
			if (!b->claimed || blob_buf_alloc(b, total))
				return rmig_sess_fail(s, -ENOMEM,
						      "no memory for a %llu-byte device-state blob",
						      (unsigned long long)total);
		}
		if (!b)
			return rmig_sess_fail(s, -ENOMEM, "no memory for device-state blob %u", id);
		b->total = total;
		s->state_reserved += total;
	} else if (b->total != total) {
		return rmig_sess_fail(s, -EBADMSG,
				      "device-state blob %u: length %llu, announced as %llu", id,
				      (unsigned long long)total, (unsigned long long)b->total);
	}
	*b_p = b;
	return 0;
}

static void load_task(void *arg)
{
	static const uint8_t empty[1];
	struct rmig_blob *b = arg;
	struct rmig_session *s = b->s;
	/* never NULL, even for an empty blob: memcpy(dst, NULL, 0) is undefined */
	const void *data = b->buf ? b->buf : empty;
	int rc = 0;

	if (s->verify)
		digest(data, b->total, b->digest);
	if (s->opts.state_fn && !rmig_sess_err(s))
		rc = s->opts.state_fn(s->opts.state_arg, b->name, b->instance, data, b->total);
	if (rc)
		rmig_sess_fail(s, rc < 0 ? rc : -EIO, "loading device state '%s' instance %u: %s",
			       b->name, b->instance, strerror(rc < 0 ? -rc : EIO));
	pthread_mutex_lock(&s->state_lock);
	b->loaded = true;
	b->load_rc = rc;
	s->blobs_loading--;
	pthread_mutex_unlock(&s->state_lock);
	/* Wake rmig_state_all_loaded() waiters. */
	pthread_mutex_lock(&s->lock);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* state_lock held; the caller submits *b_p to the pool after unlocking. */
static bool blob_ready(struct rmig_session *s, struct rmig_blob *b)
{
	if (!b->announced || b->received != b->total || b->dispatched)
		return false;
	b->dispatched = true;
	s->blobs_loading++;
	return true;
}

static int dispatch(struct rmig_session *s, struct rmig_blob *b)
{
	int rc = rmig_pool_submit(s->pool, load_task, b);

	if (rc) {
		pthread_mutex_lock(&s->state_lock);
		s->blobs_loading--;
		pthread_mutex_unlock(&s->state_lock);
		return rmig_sess_fail(s, rc, "queueing a device-state load: %s", strerror(-rc));
	}
	return 0;
}

static int state_begin(struct rmig_session *s, const struct rmig_msg_state_begin *m)
{
	struct rmig_blob *b, *other;
	bool ready = false;
	int rc;

	pthread_mutex_lock(&s->state_lock);
	rc = blob_admit(s, m->blob, m->total, &b);
	if (!rc && b->announced)
		rc = rmig_sess_fail(s, -EBADMSG, "device-state blob %u announced twice", m->blob);
	if (!rc && (other = blob_named(s, m->name, m->instance, b)))
		rc = rmig_sess_fail(s, -EBADMSG,
				    "device-state blob '%s' instance %u announced twice (blobs %u "
				    "and %u)",
				    m->name, m->instance, other->id, m->blob);
	if (!rc) {
		b->announced = true;
		b->instance = m->instance;
		memcpy(b->name, m->name, RMIG_NAME_MAX);
		ready = blob_ready(s, b);
	}
	pthread_mutex_unlock(&s->state_lock);
	return ready ? dispatch(s, b) : rc;
}

/*
 * Every byte of a blob arrives exactly once: a chunk that overlaps one
 * already placed is refused, so "received == total" means no holes.
 * Caller: state_lock held, range already checked.
 */
static int claim(struct rmig_session *s, struct rmig_blob *b, uint64_t off, uint64_t len)
{
	uint64_t first = off / CHUNK_UNIT, end = (off + len + CHUNK_UNIT - 1) / CHUNK_UNIT;

	if (off % CHUNK_UNIT || (len % CHUNK_UNIT && off + len != b->total))
		return rmig_sess_fail(s, -EBADMSG,
				      "device-state blob %u: chunk at %llu of %llu bytes is not "
				      "aligned to %u",
				      b->id, (unsigned long long)off, (unsigned long long)len,
				      CHUNK_UNIT);
	for (uint64_t u = first; u < end; u++)
		if (rmig_bit_test(b->claimed, u))
			return rmig_sess_fail(s, -EBADMSG,
					      "device-state blob %u: chunk at %llu overlaps data "
					      "already received",
					      b->id, (unsigned long long)off);
	for (uint64_t u = first; u < end; u++)
		rmig_bit_set(b->claimed, u);
	return 0;
}

int rmig_state_place(struct rmig_session *s, const struct rmig_target *t, uint64_t len,
		     void **dst_p)
{
	struct rmig_blob *b;
	int rc;

	pthread_mutex_lock(&s->state_lock);
	rc = blob_admit(s, t->id, t->total, &b);
	if (!rc && (t->offset > b->total || len > b->total - t->offset || len == 0 ||
		    b->dispatched))
		rc = rmig_sess_fail(s, -ERANGE,
				    "device-state chunk out of range: blob %u offset %llu length "
				    "%llu (blob length %llu)",
				    t->id, (unsigned long long)t->offset, (unsigned long long)len,
				    (unsigned long long)b->total);
	if (!rc)
		rc = claim(s, b, t->offset, len);
	if (!rc)
		*dst_p = b->buf + t->offset;
	pthread_mutex_unlock(&s->state_lock);
	return rc;
}

int rmig_state_placed(struct rmig_session *s, const struct rmig_target *t, uint64_t len)
{
	struct rmig_blob *b;
	bool ready = false;
	int rc = 0;

	pthread_mutex_lock(&s->state_lock);
	b = blob_get(s, t->id, false);
	if (!b) {
		rc = -EBADMSG;
	} else if (len > b->total - b->received) {
		rc = rmig_sess_fail(s, -EBADMSG, "device-state blob %u: more bytes than its length",
				    t->id);
	} else {
		b->received += len;
		ready = blob_ready(s, b);
	}
	pthread_mutex_unlock(&s->state_lock);
	atomic_fetch_add_explicit(&s->st_state_bytes, len, memory_order_relaxed);
	return ready ? dispatch(s, b) : rc;
}

int rmig_state_check_arrived(struct rmig_session *s, uint32_t expected, char *why, size_t why_len)
{
	int rc = 0;

	pthread_mutex_lock(&s->state_lock);
	if (s->nblobs != expected) {
		snprintf(why, why_len, "COMPLETE names %u device-state blobs, %u arrived", expected,
			 s->nblobs);
		rc = -EBADMSG;
	}
	for (uint32_t i = 0; i < s->nblobs && !rc; i++) {
		struct rmig_blob *b = s->blobs[i];

		if (!b) {
			snprintf(why, why_len, "device-state blob %u never arrived", i);
			rc = -EBADMSG;
		} else if (!b->announced) {
			snprintf(why, why_len, "device-state blob %u was sent but never announced", i);
			rc = -EBADMSG;
		} else if (b->received != b->total) {
			snprintf(why, why_len, "device-state blob '%s' instance %u: %llu of %llu bytes",
				 b->name, b->instance, (unsigned long long)b->received,
				 (unsigned long long)b->total);
			rc = -EBADMSG;
		}
	}
	pthread_mutex_unlock(&s->state_lock);
	return rc;
}

int rmig_state_all_loaded(struct rmig_session *s, uint32_t expected)
{
	int rc = 0;

	pthread_mutex_lock(&s->state_lock);
	if (s->nblobs != expected)
		rc = s->nblobs > expected ? -EBADMSG : -EAGAIN;
	for (uint32_t i = 0; i < s->nblobs && !rc; i++) {
		struct rmig_blob *b = s->blobs[i];

		if (!b || !b->loaded)
			rc = -EAGAIN;
		else if (b->load_rc)
			rc = b->load_rc < 0 ? b->load_rc : -EIO;
	}
	pthread_mutex_unlock(&s->state_lock);
	return rc;
}

int rmig_state_digests(struct rmig_session *s, uint8_t (*out)[RMIG_DIGEST_LEN], uint32_t n)
{
	int rc = 0;

	pthread_mutex_lock(&s->state_lock);
	if (n != s->nblobs)
		rc = -EINVAL;
	for (uint32_t i = 0; i < n && !rc; i++) {
		if (!s->blobs[i])
			rc = -EINVAL;
		else
			memcpy(out[i], s->blobs[i]->digest, RMIG_DIGEST_LEN);
	}
	pthread_mutex_unlock(&s->state_lock);
	return rc;
}

static void state_free(struct rmig_session *s)
{
	for (uint32_t i = 0; i < s->nblobs; i++) {
		if (s->blobs[i])
			blob_buf_free(s->blobs[i]);
		if (s->blobs[i])
			free(s->blobs[i]->claimed);
		free(s->blobs[i]);
	}
	free(s->blobs);
	s->blobs = NULL;
	s->nblobs = 0;
}

/* STATE_BEGIN: a blob is announced (the destination). */
static int ctl_state_begin(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	struct rmig_msg_state_begin m;

	if (rmig_state_begin_decode(buf, len, &m))
		return rmig_sess_fail(s, -EBADMSG, "control connection: malformed STATE_BEGIN");
	return state_begin(s, &m);
}

static const struct rmig_ctl_handler state_ctl[] = {
	{ RMIG_MSG_STATE_BEGIN, RMIG_CTL_TO_DEST, ctl_state_begin },
};

static void state_stats(struct rmig_session *s, struct rmig_stats *st)
{
	st->blobs = rmig_state_count(s);
}

/*
 * Destination, COMPLETE after the source's sync: every byte it sent has
 * landed, so a blob still short of its length will never complete; only
 * loads may still be running: wait for them.
 */
static int blobs_done(struct rmig_session *s, uint32_t n)
{
	char why[RMIG_ERRMSG_MAX] = "";
	int rc = rmig_state_check_arrived(s, n, why, sizeof(why));

	if (rc)
		return rmig_sess_fail(s, rc, "device state incomplete at completion: %s", why);
	pthread_mutex_lock(&s->lock);
	while (!s->err && (rc = rmig_state_all_loaded(s, n)) == -EAGAIN)
		rmig_sess_wait(s, rmig_now_ns() + 100000000ull);
	pthread_mutex_unlock(&s->lock);
	if (rmig_sess_err(s))
		return rmig_sess_err(s);
	if (rc)
		return rmig_sess_fail(s, rc, "device state incomplete or failed to load (%s)",
				      strerror(-rc));
	return 0;
}

int rmig_send_state(rmig_session *s, const char *name, uint32_t instance, const void *data,
		    uint64_t len)
{
	int rc = rmig_src_ready(s);

	return rc ? rc : rmig_state_send(s, name, instance, data, len);
}

const struct rmig_feature rmig_state_feature = {
	.name = "device state",
	.tgt_kind = RMIG_TGT_STATE,
	.tgt_place = rmig_state_place,
	.tgt_placed = rmig_state_placed,
	.blobs = rmig_state_count,
	.blob_digests = rmig_state_digests,
	.blobs_done = blobs_done,
	.destroy = state_free,
	.stats = state_stats,
	.ctl = state_ctl,
	.nctl = sizeof(state_ctl) / sizeof(state_ctl[0]),
};
