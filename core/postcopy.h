/* SPDX-License-Identifier: MIT */
/*
 * postcopy.h - postcopy: the destination runs the guest before every page
 * arrived and asks for the pages it touches.
 *
 * Source (RMIG_F_POSTCOPY): rmig_postcopy_start() syncs, tells the
 * destination which pages it does not have (PC_DISCARD messages), sends
 * PC_RUN and waits for the destination's PC_RUN answer: from then on the
 * destination runs the guest. The control thread that reads a request
 * (PAGE_REQ) posts its pages itself on the urgent channel (the last data
 * channel, which carries nothing else but sync markers): no thread hop
 * between the request and the page on the wire. With RMIG_F_NO_URGENT, it
 * hands them to the next idle shared channel, behind the background pages. Background channel threads run
 * at a lower priority once postcopy runs, on both sides.
 * rmig_postcopy_send_rest() sends the background pages. The channel that
 * posts a background page claims it in the @sent bitmap right before it
 * goes out, so no page waits behind queued jobs, and none goes twice in
 * the background. A requested page is sent on the urgent channel even when
 * its background copy is still on the way (in a socket buffer behind
 * megabytes of others): the destination places whichever copy comes first
 * and drops the other, and keeps nothing twice.
 *
 * Destination placement in postcopy is idempotent: every write lands in a
 * staging buffer; under userfaultfd UFFDIO_COPY places each page at most
 * once (EEXIST for the second copy); elsewhere a page is claimed in
 * @placing before it is copied in, and only its first copy is.
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

#define RMIG_PC_TRACK 4096 /* destination: unanswered faults watched for the timeout */
#define RMIG_PC_STAGE (1u << 20) /* destination: staging per channel; the source's largest write */
#define RMIG_PC_PAGE_MAX (2u << 20) /* largest page size postcopy takes (a 2 MiB hugepage) */
#define RMIG_PC_BG_NICE 19       /* background channel threads in postcopy */
#define RMIG_PC_BG_EXTENT (128u << 10) /* background writes in postcopy, at most */

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
	_Atomic unsigned long *placing[RMIG_BLOCKS_MAX];   /* destination: being copied in
							    * (blocks not under userfaultfd) */

	/* source: set by rmig_pc_stop(): requests are no longer served */
	atomic_bool serve_stop;
	bool serving;          /* source: PAGE_REQ is served (set before PC_RUN goes out) */
	struct rmig_job *ujob; /* source: the control thread's job for requested pages */

	/* destination: userfaultfd */
	int uffd;
	uint8_t *zeros; /* a zero page of the largest size (UFFDIO_ZEROPAGE: base pages only) */
	pthread_t uffd_thread;
	bool uffd_started;
	bool uffd_registered;
	struct rmig_pc_fault track[RMIG_PC_TRACK]; /* the handler thread's own */
	unsigned int ntrack;
	/*
	 * Destination: each channel's staging buffer (allocated by its thread
	 * at start, rmig_pc_write_max() bytes), whether its last place()
	 * handed it out, and where those bytes are (the buffer, or the
	 * backend's receive buffer for place_from()). Only the channel's
	 * receiving thread touches its own (see place() in transport.h).
	 */
	struct rmig_pc_stage {
		uint8_t *buf;
		uint64_t len;
		bool staged;
		const uint8_t *src;
	} stage[RMIG_CHANNELS_MAX];

	/*
	 * Pause and resume (resume.c). Destination: after a break, the handler
	 * thread keeps faulting threads waiting (@paused) until the session
	 * is handed over (@handoff, by rmig_resume_from()), this session
	 * resumes (@go; the thread answers @go_seen), or the recovery window
	 * passes (@pause_deadline_ns, carried across sessions; @expired). A
	 * session that took over starts its handler paused (@start_paused).
	 * Source: @resuming until the destination's PC_RUN.
	 */
	atomic_bool paused;
	atomic_bool handoff;
	atomic_bool go;
	atomic_bool go_seen;
	atomic_bool expired;
	bool start_paused;
	uint64_t pause_deadline_ns;
	bool resuming;

	/* counters */
	_Atomic uint64_t st_pauses;
	_Atomic uint64_t st_paused_ns;
	_Atomic uint64_t st_rerequested;
	_Atomic uint64_t st_requests;      /* destination: PAGE_REQ sent; source: received */
	_Atomic uint64_t st_urgent_pages;  /* source: pages sent for a request */
	_Atomic uint64_t st_background;    /* source: pages sent by rmig_postcopy_send_rest() */
	_Atomic uint64_t st_resent;        /* source: requested while on the way; sent again */
	_Atomic uint64_t st_faults;        /* destination: userfaultfd faults */
	_Atomic uint64_t st_placed;        /* destination: pages placed in postcopy */
};

void rmig_pc_init(struct rmig_session *s);
void rmig_pc_destroy(struct rmig_session *s);
/* Stop serving requests; stop the userfaultfd thread; unregister. */
void rmig_pc_stop(struct rmig_session *s);

/*
 * Source channels, once postcopy started: a page is claimed by the channel
 * that posts it, right before it goes out, and counted as requested or
 * background; background channel threads step back. The destination's
 * channel threads stage pages for UFFDIO_COPY. All of it through the
 * channel hooks of rmig_pc_feature (sess.h).
 */

/*
 * Between the postcopy files, lowest first: pc_base.c, pc_uffd.c (the
 * userfaultfd: registration, faults, requests), pc_pause.c (the handler
 * thread, pause and resume), postcopy.c (start, the messages, the hooks).
 */
void rmig_pc_unregister(struct rmig_session *s);
int rmig_pc_send_discards(struct rmig_session *s);
/* Source: wait for the destination's PC_RUN; "did not @what within" on timeout. */
int rmig_pc_wait_running(struct rmig_session *s, const char *what);
int rmig_pc_send_req(struct rmig_session *s, uint32_t block, uint64_t offset, uint64_t len);
/* A userfaultfd fault at @addr; @paused: recorded, asked for at the resume. */
int rmig_pc_fault(struct rmig_session *s, uintptr_t addr, bool paused);
/* The fault handler thread (pc_pause.c); once the blocks are registered. */
int rmig_pc_handler_start(struct rmig_session *s);
/* Read and serve faults until the session stops or the source is lost (pc_uffd.c). */
int rmig_pc_serve(struct rmig_session *s);
/* PC_RUN at the destination: register the blocks, drop their missing pages. */
int rmig_pc_uffd_setup(struct rmig_session *s);
/*
 * The handler thread after a break, or started paused (pc_pause.c): serve
 * faults without the source until the session is handed over (leave the
 * blocks registered), this session resumes (serve normally), or the window
 * passes or the session is destroyed (unregister).
 */
enum rmig_pc_pause_end {
	RMIG_PC_PAUSE_EXPIRED = 0,
	RMIG_PC_PAUSE_HANDED,
	RMIG_PC_PAUSE_RESUMED,
};
enum rmig_pc_pause_end rmig_pc_pause(struct rmig_session *s);

/* Destination: a break now pauses postcopy (RMIG opts recovery_timeout_ms, uffd blocks). */
bool rmig_pc_pausable(struct rmig_session *s);
/*
 * Destination, rmig_resume_from(): take over @old's paused postcopy (its
 * handler thread ends, the blocks stay registered). 0, or -ETIMEDOUT when
 * the window had passed.
 */
int rmig_pc_take_over(struct rmig_session *s, struct rmig_session *old);
/* Source, rmig_resume_from(): the maps for a postcopy that goes on. */
int rmig_pc_resume_source(struct rmig_session *s, const struct rmig_session *old);
/* The feature's resume hooks (sess.h): the two above, for the side that resumes. */
int rmig_pc_resume_check(struct rmig_session *old, const char **why_p);
int rmig_pc_resume_from(struct rmig_session *s, struct rmig_session *old);
/*
 * Once a resumed session is started. Destination: the pages still missing
 * (PC_DISCARD), PC_RUN, the requests again, the handler thread. Source:
 * wait for them.
 */
int rmig_pc_resumed(struct rmig_session *s);

/* Control messages: 0 or the session's error. */
int rmig_pc_on_discard(struct rmig_session *s, const uint8_t *buf, uint32_t len);
int rmig_pc_on_run(struct rmig_session *s);
int rmig_pc_on_page_req(struct rmig_session *s, const uint8_t *buf, uint32_t len);

/*
 * Destination data path: where @len bytes for RAM block @b at @off land
 * while postcopy runs. 1 and *dst_p (a staging buffer) when the block is
 * under userfaultfd; 0 to write in place; an error.
 */
int rmig_pc_place(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
		  uint64_t len, void **dst_p);
/* After the bytes landed: place staged pages, clear missing bits, wake waiters. */
int rmig_pc_placed(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
		   uint64_t len);
/* Destination: a page is still missing (any thread, lock-free). */
bool rmig_pc_missing_any(struct rmig_session *s);
/* Destination: every page is here (checked at completion). */
int rmig_pc_check_complete(struct rmig_session *s);

/*
 * The largest single write in postcopy: extent_max, or a whole page of the
 * block with the largest pages (a page is placed whole). The staging
 * buffers and the RDMA receive slots are this size.
 */
uint64_t rmig_pc_write_max(const struct rmig_session *s);

#endif
