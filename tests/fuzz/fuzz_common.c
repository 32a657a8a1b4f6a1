/* SPDX-License-Identifier: MIT */
/* fuzz_common.c - see fuzz_common.h. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

#define PAGE 4096u

static uint8_t *guarded(size_t len)
{
	uint8_t *p = mmap(NULL, len + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		abort();
	if (mprotect(p + PAGE, len, PROT_READ | PROT_WRITE))
		abort();
	return p + PAGE;
}

/* Made once: every input writes into the same blocks, which is fine. */
static uint8_t *ram0, *ram1;

/*
 * One session for the whole run: creating one (eventfd, locks, a load
 * thread) and destroying it cost far more than an input, so each input
 * gets the same session back, reset to "running, nothing received".
 */
static struct rmig_session *sess;

static struct rmig_session *dest_create(void)
{
	struct rmig_session *s;
	struct rmig_opts o;

	ram0 = guarded(64 * PAGE);
	ram1 = guarded(8 * PAGE);
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.blob_max = 1u << 20;
	o.load_threads = 1;
	if (rmig_session_create(&o, &s) || rmig_add_ram(s, "ram", ram0, 64 * PAGE, PAGE) ||
	    rmig_add_ram(s, "rom", ram1, 8 * PAGE, PAGE))
		abort();
	s->nchannels = FZ_CHANNELS;
	s->chan_sync = calloc(FZ_CHANNELS, sizeof(*s->chan_sync));
	s->ctl_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (!s->chan_sync || s->ctl_fd < 0 || rmig_pool_create(1, &s->pool))
		abort();
	return s;
}

/* What an input may have changed: its error, blobs, sync progress. */
static void dest_reset(struct rmig_session *s)
{
	eventfd_t v;

	/* blob loads run on the pool: let them finish before their blobs go */
	for (;;) {
		uint32_t n;

		pthread_mutex_lock(&s->state_lock);
		n = s->blobs_loading;
		pthread_mutex_unlock(&s->state_lock);
		if (!n)
			break;
		sched_yield();
	}
	pthread_mutex_lock(&s->state_lock);
	rmig_state_feature.destroy(s); /* the blobs go: device state's own free */
	s->state_reserved = 0;
	pthread_mutex_unlock(&s->state_lock);
	pthread_mutex_lock(&s->lock);
	s->err = 0;
	s->errmsg[0] = '\0';
	s->err_from_peer = false;
	s->state = RMIG_S_RUNNING;
	s->finishing = false;
	s->complete_seen = false;
	s->sync_acked = 0;
	s->sync_lead_ns = 0;
	s->t_end_ns = 0;
	memset(s->chan_sync, 0, FZ_CHANNELS * sizeof(*s->chan_sync));
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&s->cs_lock);
	s->cs_stop = false;
	pthread_mutex_unlock(&s->cs_lock);
	(void)!eventfd_read(s->wake_fd, &v); /* a failure woke it: quiet again */
}

struct rmig_session *fz_dest_open(void)
{
	if (!sess)
		sess = dest_create();
	dest_reset(sess);
	return sess;
}

void fz_dest_close(struct rmig_session *s)
{
	(void)s; /* kept for the next input */
}
