/* SPDX-License-Identifier: MIT */
/* fake_tp.c - see fake_tp.h. One source and one destination at a time. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_tp.h"
#include "wire.h"

struct fake_ctl fake_ctl;

struct pending {
	struct rmig_target t;
	const void *src; /* a snapshot taken at post time; NULL: zero */
	uint64_t len;
};

struct fake_chan {
	struct rmig_tp_chan base;
	struct pending *q;
	unsigned int n, cap;
};

struct fake_tp {
	struct rmig_tp base;
	bool shut;
};

/* The pairing between the two sides: protected by lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct fake_tp *dest;
static unsigned int connected, accepted;
/*
 * hold_chan0's view of the other channels: writes they applied, and the
 * newest sync marker of channel 0 and of any other channel.
 */
static unsigned long others_applied;
static uint64_t marker0, marker_others;

/* Note an event of a channel: applied writes, or a marker with this id. */
static void note_event(const struct rmig_tp_chan *ch, bool applied, uint64_t marker)
{
	pthread_mutex_lock(&lock);
	if (ch->idx == 0) {
		if (marker > marker0)
			marker0 = marker;
	} else {
		others_applied += applied;
		if (marker > marker_others)
			marker_others = marker;
	}
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

/*
 * hold_chan0: channel 0's writes wait until another channel has applied
 * writes since now, or has marked a sync that channel 0 has not marked yet
 * (the sync these writes are flushed for: holding longer would stall it).
 */
static void hold(void)
{
	struct timespec until;
	unsigned long seen;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&lock);
	seen = others_applied;
	while (others_applied == seen && marker_others <= marker0)
		if (pthread_cond_timedwait(&cond, &lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&lock);
}

void fake_reset(void)
{
	memset(&fake_ctl, 0, sizeof(fake_ctl));
	pthread_mutex_lock(&lock);
	dest = NULL;
	connected = accepted = 0;
	others_applied = 0;
	marker0 = marker_others = 0;
	pthread_mutex_unlock(&lock);
}

static int f_create(const struct rmig_tp_params *p, struct rmig_tp **tp_p)
{
	struct fake_tp *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->base.ops = &fake_ops;
	t->base.p = *p;
	*tp_p = &t->base;
	return 0;
}

static void f_destroy(struct rmig_tp *tp)
{
	pthread_mutex_lock(&lock);
	if (tp && dest == (struct fake_tp *)tp)
		dest = NULL;
	pthread_mutex_unlock(&lock);
	free(tp);
}

static int f_listen(struct rmig_tp *tp, int ctl_fd, uint8_t *ep, uint16_t *ep_len_p)
{
	(void)ctl_fd, (void)ep;
	pthread_mutex_lock(&lock);
	dest = (struct fake_tp *)tp;
	pthread_mutex_unlock(&lock);
	*ep_len_p = 0;
	return 0;
}

static struct rmig_tp_chan *chan_new(struct rmig_tp *tp, unsigned int idx)
{
	struct fake_chan *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base.tp = tp;
	c->base.idx = idx;
	return &c->base;
}

static int f_accept(struct rmig_tp *tp, struct rmig_tp_chan **ch_p)
{
	unsigned int idx;

	pthread_mutex_lock(&lock);
	while (accepted == connected && !((struct fake_tp *)tp)->shut)
		pthread_cond_wait(&cond, &lock);
	idx = accepted++;
	pthread_mutex_unlock(&lock);
	*ch_p = chan_new(tp, idx);
	return *ch_p ? 0 : -ENOMEM;
}

static int f_connect(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
		     unsigned int idx, struct rmig_tp_chan **ch_p)
{
	(void)ctl_fd, (void)ep, (void)ep_len;
	*ch_p = chan_new(tp, idx);
	if (!*ch_p)
		return -ENOMEM;
	pthread_mutex_lock(&lock);
	connected++;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	return 0;
}

static int f_reg(struct rmig_tp *tp, unsigned int block, void *addr, uint64_t len, uint8_t *desc,
		 uint16_t *desc_len_p)
{
	(void)tp, (void)block, (void)addr, (void)len, (void)desc;
	*desc_len_p = 0;
	return 0;
}

static int f_set_remote(struct rmig_tp *tp, unsigned int block, uint64_t len, const uint8_t *desc,
			uint16_t desc_len)
{
	(void)tp, (void)block, (void)len, (void)desc, (void)desc_len;
	return 0;
}

/* Apply one write through the destination's upcalls, as its NIC would. */
static int apply(struct rmig_tp_chan *ch, const struct pending *w)
{
	const struct rmig_tp_upcalls *up;
	void *dst;
	int rc;

	pthread_mutex_lock(&lock);
	up = dest ? dest->base.p.up : NULL;
	pthread_mutex_unlock(&lock);
	if (!up)
		return -ENOTCONN;
	rc = up->place(up->arg, ch->idx, &w->t, w->len, &dst);
	if (rc)
		return rc;
	if (w->src)
		memcpy(dst, w->src, w->len);
	else
		memset(dst, 0, w->len);
	return up->placed(up->arg, ch->idx, &w->t, w->len);
}

static int queue(struct rmig_tp_chan *ch, const struct rmig_target *t, const void *src,
		 uint64_t len)
{
	struct fake_chan *c = (struct fake_chan *)ch;
	int n;

	/* a staged write (postcopy) goes as a message: it arrives without a flush */
	if (t->staged) {
		n = __atomic_add_fetch(&fake_ctl.writes, 1, __ATOMIC_SEQ_CST);
		if (fake_ctl.fail_write_at && n == fake_ctl.fail_write_at)
			return ch->tp->p.up->fail(ch->tp->p.up->arg, -EIO,
						  "injected write failure #%d", n);
		return apply(ch, &(struct pending){ *t, src, len });
	}
	if (c->n == c->cap) {
		struct pending *q = realloc(c->q, (c->cap * 2 + 16) * sizeof(*q));

		if (!q)
			return -ENOMEM;
		c->q = q;
		c->cap = c->cap * 2 + 16;
	}
	/* In flight means already read: snapshot the bytes, as a NIC's DMA has. */
	if (src) {
		void *copy = malloc(len ? len : 1);

		if (!copy)
			return -ENOMEM;
		memcpy(copy, src, len);
		src = copy;
	}
	/* counted once read: a test that waits for the count may change the source after */
	n = __atomic_add_fetch(&fake_ctl.writes, 1, __ATOMIC_SEQ_CST);
	if (fake_ctl.fail_write_at && n == fake_ctl.fail_write_at) {
		free((void *)(uintptr_t)src);
		return ch->tp->p.up->fail(ch->tp->p.up->arg, -EIO, "injected write failure #%d", n);
	}
	c->q[c->n++] = (struct pending){ *t, src, len };
	return 0;
}

static int f_write(struct rmig_tp_chan *ch, const struct rmig_target *t, const struct iovec *iov,
		   int iovcnt)
{
	if (iovcnt != 1)
		return -EINVAL;
	return queue(ch, t, iov[0].iov_base, iov[0].iov_len);
}

static int f_zero(struct rmig_tp_chan *ch, const struct rmig_target *t, uint64_t len)
{
	return queue(ch, t, NULL, len);
}

/* Apply held writes through the destination's upcalls, as its NIC would. */
static int f_flush(struct rmig_tp_chan *ch)
{
	struct fake_chan *c = (struct fake_chan *)ch;
	const struct rmig_tp_upcalls *up;
	int rc = 0;

	pthread_mutex_lock(&lock);
	up = dest ? dest->base.p.up : NULL;
	pthread_mutex_unlock(&lock);
	if (!up)
		return -ENOTCONN;
	if (fake_ctl.hold_chan0 && ch->idx == 0 && c->n)
		hold();
	for (unsigned int i = 0; i < c->n && !rc; i++)
		rc = apply(ch, &c->q[i]);
	for (unsigned int i = 0; i < c->n; i++)
		free((void *)(uintptr_t)c->q[i].src);
	if (c->n) {
		__atomic_add_fetch(&fake_ctl.flushes, 1, __ATOMIC_SEQ_CST);
		note_event(ch, true, 0);
	}
	c->n = 0;
	return rc;
}

static int f_marker(struct rmig_tp_chan *ch, uint64_t id)
{
	const struct rmig_tp_upcalls *up;
	int rc;

	if (fake_ctl.drop_markers)
		return 0;
	pthread_mutex_lock(&lock);
	up = dest ? dest->base.p.up : NULL;
	pthread_mutex_unlock(&lock);
	if (!up)
		return -ENOTCONN;
	__atomic_add_fetch(&fake_ctl.markers, 1, __ATOMIC_SEQ_CST);
	rc = up->sync(up->arg, ch->idx, id);
	note_event(ch, false, id);
	return rc;
}

static int f_progress(struct rmig_tp_chan *ch)
{
	struct fake_tp *t = (struct fake_tp *)ch->tp;

	pthread_mutex_lock(&lock);
	while (!t->shut)
		pthread_cond_wait(&cond, &lock);
	pthread_mutex_unlock(&lock);
	return -ECANCELED;
}

static void f_shutdown(struct rmig_tp *tp)
{
	pthread_mutex_lock(&lock);
	((struct fake_tp *)tp)->shut = true;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void f_chan_close(struct rmig_tp_chan *ch)
{
	if (ch) {
		struct fake_chan *c = (struct fake_chan *)ch;

		for (unsigned int i = 0; i < c->n; i++)
			free((void *)(uintptr_t)c->q[i].src);
		free(c->q);
	}
	free(ch);
}

const struct rmig_transport_ops fake_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "fake",
	.kind = RMIG_TRANSPORT_TCP,
	.create = f_create,
	.destroy = f_destroy,
	.listen = f_listen,
	.accept = f_accept,
	.connect = f_connect,
	.reg = f_reg,
	.set_remote = f_set_remote,
	.write = f_write,
	.zero = f_zero,
	.flush = f_flush,
	.marker = f_marker,
	.progress = f_progress,
	.shutdown = f_shutdown,
	.chan_close = f_chan_close,
};
