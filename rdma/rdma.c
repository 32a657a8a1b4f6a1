/* SPDX-License-Identifier: MIT */
/*
 * rdma.c - the verbs backend's ops table, its lifecycle and shutdown, and the
 * probe that tells whether an RDMA device reaches a peer.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rdma_int.h"

/*
 * Preloading. librdmacm's first call in a process reads every device (open,
 * query each port): 100-270 ms in the soft-RoCE VM, paid inside the
 * handshake where the destination's listen or the source's probe makes it.
 * rmig_preload() starts that on a thread of its own, early; the first real
 * call waits for it (preload_join()), and so does exit, whose destructors
 * must not run under a thread still inside librdmacm. A child forked while
 * it runs has no such thread: it neither joins nor waits.
 */
static pthread_mutex_t preload_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t preload_th;
static pid_t preload_pid; /* the process whose thread it is; 0: none running */
static bool preloaded;

static void *preload_main(void *arg)
{
	struct rdma_event_channel *ech = NULL;

	(void)arg;
	if (!rmig_rv_create_channel(&ech))
		rmig_rv_destroy_channel(ech);
	return NULL;
}

static void rmig_rdma_preload(void)
{
	pthread_mutex_lock(&preload_lock);
	if (!preloaded && !preload_pid && !pthread_create(&preload_th, NULL, preload_main, NULL))
		preload_pid = getpid();
	preloaded = true;
	pthread_mutex_unlock(&preload_lock);
}

static void preload_join(void)
{
	pthread_mutex_lock(&preload_lock);
	if (preload_pid == getpid())
		pthread_join(preload_th, NULL);
	preload_pid = 0;
	pthread_mutex_unlock(&preload_lock);
}

__attribute__((destructor)) static void preload_fini(void)
{
	preload_join();
}

static int rmig_rdma_create(const struct rmig_tp_params *p, struct rmig_tp **tp_p)
{
	preload_join(); /* its device list, not a second one */
	struct rmig_rdma_tp *t = calloc(1, sizeof(*t));
	int rc;

	if (!t)
		return -ENOMEM;
	t->base.ops = rmig_rdma_transport();
	t->base.p = *p;
	t->budget = p->inflight_max > 2ull * p->extent_max ? p->inflight_max : 2ull * p->extent_max;
	pthread_mutex_init(&t->lock, NULL);
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	rc = t->wake_fd < 0 ? -errno : rmig_rv_create_channel(&t->ech);
	if (rc) {
		if (t->wake_fd >= 0)
			close(t->wake_fd);
		free(t);
		return rc;
	}
	*tp_p = &t->base;
	return 0;
}

static void rmig_rdma_destroy(struct rmig_tp *tp)
{
	struct rmig_rdma_tp *t;

	if (!tp)
		return;
	t = rmig_rdma_tp(tp);
	rmig_rdma_mr_release(t);
	rmig_rv_destroy_id(t->listen_id);
	rmig_rv_dealloc_pd(t->pd);
	rmig_rv_destroy_channel(t->ech);
	close(t->wake_fd);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Wake every waiter; queue pairs go to the error state, flushing their work. */
static void rmig_rdma_shutdown(struct rmig_tp *tp)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(tp);

	pthread_mutex_lock(&t->lock);
	if (!t->shut) {
		t->shut = true;
		(void)!eventfd_write(t->wake_fd, 1);
		for (unsigned int i = 0; i < t->nchans; i++)
			if (t->chans[i]->id && t->chans[i]->id->qp)
				rmig_rv_qp_to_error(t->chans[i]->id->qp);
	}
	pthread_mutex_unlock(&t->lock);
}

/*
 * Whether an RDMA device reaches the peer of @ctl_fd: its address resolves
 * to one. -ENETDOWN where it does but the device's link is down (an auto
 * transport then takes TCP; one asked for fails at connect, naming it).
 */
static int rmig_rdma_probe(int ctl_fd, char *why, size_t why_len)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char dev[64];
	int rc;

	preload_join();
	if (rmig_rv_device_count() == 0) {
		snprintf(why, why_len, "no RDMA devices on this host (see 'rdma-migrate info')");
		return -ENODEV;
	}
	if (getpeername(ctl_fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	rc = rmig_rdma_route(&ss, true, dev, sizeof(dev), why, why_len);
	if (!rc)
		snprintf(why, why_len, "device %s reaches the peer", dev);
	return rc;
}

static const struct rmig_transport_ops rmig_rdma_ops = {
	.size = sizeof(struct rmig_transport_ops),
	.name = "rdma",
	.kind = RMIG_TRANSPORT_RDMA,
	.caps = RMIG_TP_CAP_ONE_SIDED,
	.probe = rmig_rdma_probe,
	.create = rmig_rdma_create,
	.destroy = rmig_rdma_destroy,
	.listen = rmig_rdma_listen,
	.accept = rmig_rdma_accept,
	.connect = rmig_rdma_connect,
	.reg = rmig_rdma_reg,
	.set_remote = rmig_rdma_set_remote,
	.write = rmig_rdma_write,
	.zero = rmig_rdma_zero,
	.flush = rmig_rdma_flush,
	.marker = rmig_rdma_marker,
	.progress = rmig_rdma_progress,
	.shutdown = rmig_rdma_shutdown,
	.chan_close = rmig_rdma_chan_close,
	.locate = rmig_rdma_locate,
	.accept_n = rmig_rdma_accept_n,
	.connect_n = rmig_rdma_connect_n,
	.preload = rmig_rdma_preload,
	.reach = rmig_rdma_reach,
};

const struct rmig_transport_ops *rmig_rdma_transport(void)
{
	return &rmig_rdma_ops;
}

