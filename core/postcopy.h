/* SPDX-License-Identifier: MIT */
/*
 * postcopy.h - postcopy: the destination runs the guest before every page
 * arrived and asks for the pages it touches.
 *
 * Source (RMIG_F_POSTCOPY): rmig_postcopy_start() syncs, tells the
 * destination which pages it does not have (PC_DISCARD messages), sends
 * PC_RUN and waits for the destination's PC_RUN answer: from then on the
 * destination runs the guest. Requests (PAGE_REQ on the control connection)
 * go to a queue; the request thread sends those pages on the urgent channel
 * (the last data channel, which carries nothing else but sync markers), or
 * with RMIG_F_NO_URGENT on the shared channels behind the background pages.
 * rmig_postcopy_send_rest() sends the background pages. A page is sent at
 * most once: both paths claim it in the @sent bitmap first.
 *
 * Destination: @missing holds the pages not here yet; a placed page clears
 * its bit. Blocks given to rmig_postcopy_uffd() are registered with
 * userfaultfd (missing mode) at PC_RUN, their missing pages dropped; from
 * then on every page for them lands in a channel's staging buffer and is
 * placed with UFFDIO_COPY, which wakes the faulting threads. The handler
 * thread turns faults into requests and fails the session when a request
 * is not answered within the timeout; at any failure it unregisters the
 * blocks, so that no faulting thread stays blocked.
 */
#ifndef RMIG_POSTCOPY_H
#define RMIG_POSTCOPY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rmig.h"
#include "wire.h"

struct rmig_session;
struct rmig_tp_chan;

#define RMIG_PC_QUEUE 1024 /* source: requests waiting for the request thread */
#define RMIG_PC_TRACK 4096 /* destination: unanswered faults watched for the timeout */
#define RMIG_PC_STAGE (1u << 20) /* destination: staging per channel; the source's largest write */

struct rmig_pc_fault {
	uint32_t block;
	uint64_t page;
	uint64_t t_ns;
};

struct rmig_postcopy {
	/* set before the session starts */
	bool enabled; /* source: RMIG_F_POSTCOPY; destination: the source's cap */
	bool urgent;  /* the last data channel is the urgent one */
	bool uffd_block[RMIG_BLOCKS_MAX]; /* destination: rmig_postcopy_uffd() */

	/* protected by s->lock; s->cond is broadcast on change */
	bool running;  /* source: the destination answered PC_RUN; dest: set up */
	bool run_seen; /* destination: PC_RUN received */
	unsigned int waiters; /* destination: threads in rmig_postcopy_fetch() */

	/* one bit per page, allocated at rmig_postcopy_start() / first PC_DISCARD */
	_Atomic unsigned long *missing[RMIG_BLOCKS_MAX];   /* both: pages not at the destination */
	_Atomic unsigned long *sent[RMIG_BLOCKS_MAX];      /* source: claimed for sending */
	_Atomic unsigned long *requested[RMIG_BLOCKS_MAX]; /* destination: asked for */

	/* source: the request queue, protected by qlock */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct rmig_msg_page_req q[RMIG_PC_QUEUE];
	unsigned int qhead, qlen;
	bool qstop;
	pthread_t req_thread;
	bool req_started;

	/* destination: userfaultfd */
	int uffd;
	pthread_t uffd_thread;
	bool uffd_started;
	bool uffd_registered;
	struct rmig_pc_fault track[RMIG_PC_TRACK]; /* the handler thread's own */
	unsigned int ntrack;

	/* counters */
	_Atomic uint64_t st_requests;      /* destination: PAGE_REQ sent; source: received */
	_Atomic uint64_t st_urgent_pages;  /* source: pages sent for a request */
	_Atomic uint64_t st_background;    /* source: pages sent by rmig_postcopy_send_rest() */
	_Atomic uint64_t st_faults;        /* destination: userfaultfd faults */
	_Atomic uint64_t st_placed;        /* destination: pages placed in postcopy */
};

void rmig_pc_init(struct rmig_session *s);
void rmig_pc_destroy(struct rmig_session *s);
/* Stop the threads (request, userfaultfd); unregister; any thread. */
void rmig_pc_stop(struct rmig_session *s);

/* Control messages: 0 or the session's error. */
int rmig_pc_on_discard(struct rmig_session *s, const uint8_t *buf, uint32_t len);
int rmig_pc_on_run(struct rmig_session *s);
int rmig_pc_on_page_req(struct rmig_session *s, const uint8_t *buf, uint32_t len);

/*
 * Destination data path: where @len bytes for RAM block @b at @off land
 * while postcopy runs. 1 and *dst_p (a staging buffer) when the block is
 * under userfaultfd; 0 to write in place; an error.
 */
int rmig_pc_place(struct rmig_session *s, uint32_t b, uint64_t off, uint64_t len, void **dst_p);
/* After the bytes landed: place staged pages, clear missing bits, wake waiters. */
int rmig_pc_placed(struct rmig_session *s, uint32_t b, uint64_t off, uint64_t len);
/* Destination: every page is here (checked at completion). */
int rmig_pc_check_complete(struct rmig_session *s);

/* Channel threads: the staging buffer of the calling destination thread. */
void rmig_pc_thread_stage(void *buf, uint64_t len);

#endif
