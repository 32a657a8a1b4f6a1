/* SPDX-License-Identifier: MIT */
/*
 * sess.h - the session object and the interfaces between core modules:
 * session.c and sess_*.c (lifecycle, handshake, control connection, sync,
 * completion), chan.c (jobs and channel threads), state.c (device-state
 * blobs).
 */
#ifndef RMIG_SESS_H
#define RMIG_SESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "converge.h"
#include "log.h"
#include "place.h"
#include "pool.h"
#include "prep.h"
#include "postcopy.h"
#include "rmig.h"
#include "tls.h"
#include "transport.h"
#include "wire.h"

#define RMIG_JOB_EXTENTS 64

struct rmig_block {
	/* set by rmig_add_ram, fixed once the session starts */
	char name[RMIG_NAME_MAX];
	uint8_t *host;
	uint64_t length;
	uint32_t page_size;
	uint64_t npages;
	/* source, destination ZEROED: pages ever sent (bits set atomically), or NULL */
	unsigned long *sent;
	/*
	 * Source, for a resume (resume.c); NULL for a file target. @posted:
	 * pages the channels posted since the last sync began (bits set
	 * atomically); @syncing: those the sync in flight covers; @held: pages
	 * placed at the destination as of the last acknowledged sync; @round:
	 * the dirty pages of an rmig_send_round() not yet synced.
	 */
	unsigned long *posted, *syncing, *held, *round;
	/*
	 * Source over several rails (failover.c): @posted and @syncing kept
	 * per rail too, so that a failed rail's pages alone go again. NULL
	 * for a rail not in use, or one rail in all.
	 */
	unsigned long *rposted[RMIG_RAILS_MAX], *rsyncing[RMIG_RAILS_MAX];
};

enum rmig_job_kind {
	RMIG_JOB_NONE = 0,
	RMIG_JOB_RAM,   /* ext[] are byte ranges of block @id */
	RMIG_JOB_STATE, /* ext[0] is a byte range of blob @id at @data */
	RMIG_JOB_SYNC,  /* flush, then a marker with @sync_id */
};

struct rmig_extent {
	uint64_t offset;
	uint64_t len;
};

/*
 * One generic job for every payload. A producer owns one and hands it to an
 * idle channel by swapping it for that channel's empty one.
 */
struct rmig_job {
	enum rmig_job_kind kind;
	uint32_t id;
	unsigned int n;
	uint64_t bytes;
	const uint8_t *data;
	uint64_t total;
	uint64_t sync_id;
	bool urgent; /* pages the destination asked for: a guest thread waits on them */
	struct rmig_extent ext[RMIG_JOB_EXTENTS];
};

struct rmig_chan {
	/* set at creation, no lock */
	unsigned int idx;
	struct rmig_session *s;
	struct rmig_tp_chan *tch;
	pthread_t thread;
	bool thread_started;
	pthread_cond_t work; /* signalled when @pending becomes true; uses s->cs_lock */
	/*
	 * Held by the thread posting on the channel: its own thread, or for
	 * the urgent channel the control thread serving a page request.
	 */
	pthread_mutex_t post_lock;
	/* protected by s->cs_lock */
	struct rmig_job *job;
	bool pending;
	/*
	 * Placement: filled before the thread starts; the thread sets
	 * loc.bound (read with __atomic) once bound.
	 */
	struct rmig_loc loc;
	/* written by the channel thread, read anywhere */
	_Atomic uint64_t bytes;
	_Atomic uint64_t writes;
	/*
	 * Source: when it last took a job, finished a write or a wait for the
	 * bandwidth limit, and whether it waits for that limit now. A channel
	 * that does either is slow by design, not stalled (rmig_chan_submit).
	 */
	_Atomic uint64_t alive_ns;
	atomic_bool pacing;
	/* Destination: writes begun on it since its last sync marker (COMPLETE wants none). */
	_Atomic uint64_t since_sync;
	/*
	 * Failover (failover.c). @down: its rail failed mid-session: it takes
	 * no more jobs (under s->cs_lock). @exited: its thread ended; @excluded
	 * (destination): no sync waits for its marker any more (both under
	 * s->lock).
	 */
	bool down;
	bool exited;
	bool excluded;
	/*
	 * Moved to another rail mid-session (rmig_chan_revive(): the TCP
	 * fallback): its rail, that rail's transport, and the channel of the
	 * rail it left (closed at destroy), and that rail and the bytes this
	 * channel carried there. Set while no thread runs it.
	 */
	bool moved;
	unsigned int rail;
	unsigned int rail_before;
	uint64_t bytes_before;
	const struct rmig_transport_ops *ops;
	struct rmig_tp_chan *old_tch;
};

struct rmig_blob; /* state.c */

/*
 * A control message's handler: the roles that may receive it
 * (RMIG_CTL_TO_*) and what it does with the payload (wire.h encoding). On
 * the control thread, or for a local backend the thread of its up->ctl().
 * 0, or the session's error.
 */
#define RMIG_CTL_TO_SOURCE (1u << 0)
#define RMIG_CTL_TO_DEST (1u << 1)
struct rmig_ctl_handler {
	uint16_t type;
	uint8_t to;
	int (*fn)(struct rmig_session *s, const uint8_t *buf, uint32_t len);
};

/*
 * A feature (postcopy, live migration's bandwidth limit, resume, device
 * state) and how it takes part in the session: the control messages it
 * handles, and its hooks on the channel engine (chan.c), which names no
 * feature. Every session registers each feature at create
 * (rmig_sess_add_feature()); a hook left NULL is skipped, and a hook whose
 * feature is off in this session does nothing. Source channel hooks run on
 * the thread that posts on the channel (its own, or for a reserved channel
 * the control thread, under the channel's post_lock); destination channel
 * hooks on the channel's thread.
 */
struct rmig_feature {
	const char *name;
	/*
	 * Lifecycle. init: at create, in registration order (0 or -errno).
	 * stop: the session shuts down (after the control thread is joined,
	 * before the channels are). destroy: at destroy, for a feature whose
	 * init ran (or that has none).
	 */
	int (*init)(struct rmig_session *s);
	/* Before init: the feature's own options (0, or -EINVAL and the option named in @lg). */
	int (*opts_check)(const struct rmig_opts *o, const struct rmig_logger *lg);
	void (*stop)(struct rmig_session *s);
	void (*destroy)(struct rmig_session *s);
	/*
	 * The session's first error, @msg (@cap bytes, NUL-terminated), may
	 * get a clause from the feature (what it means for the guest). Under
	 * s->lock.
	 */
	void (*error_note)(struct rmig_session *s, char *msg, size_t cap);
	/* rmig_get_stats(): the feature's counters. */
	void (*stats)(struct rmig_session *s, struct rmig_stats *st);
	/*
	 * The session starts to move data, its blocks fixed: a source at
	 * connect (before the handshake, which it may overlap), a destination
	 * once the source's layout is agreed. 0 or the session's error.
	 */
	int (*start)(struct rmig_session *s);
	/*
	 * The handshake. src_handshake: a source, its HELLO sent (@hello_hash
	 * its hash), before the HELLO_ACK is read (@buf: RMIG_CTL_MAX bytes).
	 * src_hello_ack: the HELLO_ACK's capability bits. dest_hello: a
	 * destination, the source's HELLO past the gate: 0, or the refusal.
	 * started: either side, its channels open and the session running.
	 * All: 0 or the session's error.
	 */
	int (*src_handshake)(struct rmig_session *s, const uint8_t *hello_hash, uint8_t *buf);
	/* Source: the capability bits (RMIG_CAP_*) it announces in the HELLO. */
	uint32_t (*hello_caps)(const struct rmig_session *s);
	/*
	 * Destination, after dest_hello: whether it must hear of every page
	 * (no zero-page shortcut: RMIG_ACK_ZEROED is not offered), and
	 * whether its pages now come by message only, so no block is exposed
	 * to one-sided writes (either side: no REG descriptor is sent or
	 * expected).
	 */
	bool (*every_page)(const struct rmig_session *s);
	bool (*by_message_only)(const struct rmig_session *s);
	int (*src_hello_ack)(struct rmig_session *s, uint32_t ack_caps);
	int (*dest_hello)(struct rmig_session *s, const struct rmig_msg_hello *hello);
	int (*started)(struct rmig_session *s);
	/* The largest single write it needs (a whole page, for a page placed whole). */
	uint64_t (*write_max)(const struct rmig_session *s);
	/*
	 * Destination data path, any channel thread, for RAM writes checked
	 * against their block. ram_place: 1 and *dst_p where the feature
	 * takes the bytes (postcopy: a staging buffer, then UFFDIO_COPY), 0
	 * to write in place, or an error. ram_placed: they landed.
	 * ram_by_message: RAM may come as a message now (not by one-sided
	 * write). ram_from: bytes that came as a message at @src, placed by
	 * the feature straight from there (true), or to be copied (false).
	 */
	int (*ram_place)(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
			 uint64_t len, void **dst_p);
	/* Destination: the target kind it owns (0: none), placed as the upcalls place. */
	enum rmig_target_kind tgt_kind;
	int (*tgt_place)(struct rmig_session *s, const struct rmig_target *t, uint64_t len,
			 void **dst_p);
	int (*tgt_placed)(struct rmig_session *s, const struct rmig_target *t, uint64_t len);
	/*
	 * COMPLETE's blob section (device state). blobs: how many the source
	 * sent. blob_digests: theirs into @out[0..@n). blobs_done (destination,
	 * after the source's sync): 0 once @n blobs have all arrived and
	 * loaded (it waits for the loads), or the error, reported.
	 */
	uint32_t (*blobs)(struct rmig_session *s);
	int (*blob_digests)(struct rmig_session *s, uint8_t (*out)[RMIG_DIGEST_LEN], uint32_t n);
	int (*blobs_done)(struct rmig_session *s, uint32_t n);
	int (*ram_placed)(struct rmig_session *s, unsigned int chan, uint32_t b, uint64_t off,
			  uint64_t len);
	bool (*ram_by_message)(struct rmig_session *s);
	bool (*ram_from)(struct rmig_session *s, unsigned int chan, const void *src);
	/* Source, under sync_lock: a sync begins (before any marker); it ended (@acked). */
	void (*sync_begin)(struct rmig_session *s);
	void (*sync_end)(struct rmig_session *s, bool acked);
	/*
	 * Source, live migration: a round of @bitmaps (one per block, NULL:
	 * nothing dirty) begins; the round ended, synced. switchover: the
	 * guest has stopped (rmig_sess_switchover()).
	 */
	void (*round_begin)(struct rmig_session *s, const unsigned long *const *bitmaps);
	void (*round_end)(struct rmig_session *s);
	void (*switchover)(struct rmig_session *s);
	/*
	 * Resume (rmig_resume_from()): resume_check: 0 when the feature's part
	 * of @old may be resumed, else the error and *@why_p. resume_from: @s,
	 * its blocks declared, takes the feature's state over from @old (which
	 * is destroyed next): 0 or an error, logged.
	 */
	int (*resume_check)(struct rmig_session *old, const char **why_p);
	int (*resume_from)(struct rmig_session *s, struct rmig_session *old);
	const struct rmig_ctl_handler *ctl;
	unsigned int nctl;
	/* Destination, COMPLETE received: 0, or an error that refuses it (reported). */
	int (*complete_check)(struct rmig_session *s);
	/*
	 * The control thread, after each message and at least every third of
	 * the timeout: 0 or an error, reported.
	 */
	int (*tick)(struct rmig_session *s);
	/*
	 * Source: whether this feature claims the pages of block @bidx as
	 * they go (whole pages, staged writes). Then, per RAM job on that
	 * block: claim_begin(), claim() right before each page goes (false:
	 * skip it, another path took it or the destination has it), and
	 * claim_end() with how many pages went.
	 */
	bool (*claims)(struct rmig_session *s, uint32_t bidx);
	void (*claim_begin)(struct rmig_chan *c);
	bool (*claim)(struct rmig_session *s, uint32_t bidx, uint64_t page, bool urgent);
	void (*claim_end)(struct rmig_session *s, bool urgent, uint64_t pages);
	/* Source: wait until @len more bytes may go; urgent jobs are never held back. */
	int (*pace)(struct rmig_session *s, uint64_t len);
	/* Source, channel @c's thread: pages [first, first + n) of @b were posted (data or zero marker). */
	void (*posted)(const struct rmig_chan *c, const struct rmig_block *b, uint64_t first,
		       uint64_t n);
	/* Channels kept out of the shared pool, the last ones, fed by index only. */
	unsigned int (*reserved)(const struct rmig_session *s);
	/*
	 * Destination channel thread: at its start (may set *ctx, its own
	 * per-channel state), before each progress(), and at its end.
	 */
	int (*dest_start)(struct rmig_chan *c, void **ctx);
	void (*dest_progress)(struct rmig_chan *c, void *ctx);
	void (*dest_end)(struct rmig_chan *c, void *ctx);
	/*
	 * A channel's link failed. chan_fail: @c's I/O failed with @err
	 * (@why: the backend's message), on its own thread, or on the control
	 * thread for a destination channel stalled behind a sync: true when
	 * the feature takes it (the session goes on without the channel's
	 * rail), false to fail the session. chan_lost (source): @c's rail is
	 * down and job @j (its last, maybe half posted) never went out whole.
	 * chan_exit: @c's thread ends, whatever the reason.
	 */
	bool (*chan_fail)(struct rmig_chan *c, int err, const char *why);
	void (*chan_lost)(struct rmig_chan *c, const struct rmig_job *j);
	void (*chan_exit)(struct rmig_chan *c);
	/*
	 * Source, a sync in flight (under s->lock): sync_lost says whether a
	 * channel's rail failed, so that the sync's acknowledgement cannot be
	 * trusted and the wait ends. sync_repair, the sync ended as failed:
	 * 1 once what may have been lost went again (the sync runs again), 0
	 * where nothing was lost, or the session's error.
	 */
	bool (*sync_lost)(struct rmig_session *s);
	int (*sync_repair)(struct rmig_session *s);
	/*
	 * Source, under s->lock: a sync's acknowledgement is late (its
	 * timeout passed). True to wait one more timeout: a rail may be
	 * failing over (the destination finds a stalled rail only after
	 * the timeout).
	 */
	bool (*sync_late)(struct rmig_session *s);
	/*
	 * Source: every channel a job could go to is down (their rails
	 * failed over), seen by rmig_chan_submit(). 0 once other channels
	 * took their places (the job goes there), or the session's error.
	 */
	int (*chans_gone)(struct rmig_session *s);
};

#define RMIG_FEATURES_MAX 10

/* The features: live.c, postcopy.c, resume.c, state.c, prep.c, auth.c, failover.c */
extern const struct rmig_feature rmig_live_feature;
extern const struct rmig_feature rmig_pc_feature;
extern const struct rmig_feature rmig_resume_feature;
extern const struct rmig_feature rmig_state_feature;
extern const struct rmig_feature rmig_prep_feature;
extern const struct rmig_feature rmig_auth_feature;
extern const struct rmig_feature rmig_failover_feature;

/*
 * rmig_session_create() with the features @f[0..@nf) (api.c names them):
 * each is registered, then each init() runs, in that order.
 */
int rmig_sess_new(const struct rmig_opts *o, const struct rmig_feature *const *f,
		  unsigned int nf, struct rmig_session **s_p);

enum rmig_sess_state {
	RMIG_S_NEW = 0,
	RMIG_S_RUNNING,
	RMIG_S_DONE,
};

struct rmig_session {
	/* set at creation, no lock */
	struct rmig_opts opts;
	struct rmig_logger log;
	struct rmig_tp_upcalls up;

	/* set before the session starts, then read-only */
	struct rmig_block blocks[RMIG_BLOCKS_MAX];
	unsigned int nblocks;
	uint64_t session_id;
	unsigned int nchannels;
	bool verify;  /* digests at completion: the source's flag, told in HELLO */
	uint8_t *key; /* the shared key (a copy), or NULL */
	size_t key_len;
	int ctl_fd;
	/*
	 * A "file:PATH" session: no peer and no control connection; the
	 * backend (file.c) stands in for the peer (see transport.h, ops->ctl).
	 */
	bool local;
	char *file_path;
	struct rmig_tls_conf *tls_conf; /* RMIG_F_TLS */
	struct rmig_tls *ctl_tls;       /* the control connection's TLS, once started */
	bool ctl_mute; /* the peer cannot read an ERROR message (a failed TLS handshake) */
	int listen_fd;
	int given_fd; /* destination, rmig_listen("fd:N"): the control connection to accept */
	int wake_fd;  /* eventfd: readable once the session shuts down */
	const struct rmig_transport_ops *tp_ops;
	struct rmig_tp *tp;
	/*
	 * Multi-rail (rails.c): rail 0 is the control connection's address and
	 * its transport is s->tp; channel i goes through rail i % nrails, each
	 * rail a transport of its own (its device, PD, registrations). Set
	 * before the channels open, then read-only. nrails 0: not yet known.
	 */
	struct rmig_rail {
		struct rmig_tp *tp;
		struct sockaddr_storage addr; /* dest: listen here; source: connect there */
		socklen_t addr_len;           /* 0 for rail 0: the control connection's */
		char name[64];                /* the address as text */
		uint16_t ep_len;              /* source: the endpoint the destination gave */
		uint8_t ep[RMIG_EP_MAX];
		bool off;                     /* source: offered, but left out (unreachable) */
		/* its transport where not the session's (the TCP fallback's rail); NULL: tp_ops */
		const struct rmig_transport_ops *ops;
	} rail[RMIG_RAILS_MAX];
	unsigned int nrails;
	/* the rails the channels go through: channel i through rail_used[i % nrails_used] */
	unsigned int rail_used[RMIG_RAILS_MAX];
	unsigned int nrails_used;
	uint64_t rails_down; /* rails left out: not offered (dest) or unreachable (source) */
	unsigned int rails_asked; /* destination: rail 0 and the rmig_listen_add() ones */
	/* the topology for placement (place.h); NULL: off or unreadable */
	struct rmig_place *place;
	/* rmig_sess_place_prefetch(): the topology loading on a thread of its own */
	pthread_t place_th;
	bool place_th_started;
	struct rmig_place *place_loaded;
	int place_rc;
	char place_why[200];
	bool place_done; /* rmig_sess_place_load() ran: s->place is what it will be */
	bool placed; /* every channel's loc is filled */
	struct rmig_chan *chans;
	/* the features, registered at create, then read-only */
	const struct rmig_feature *features[RMIG_FEATURES_MAX];
	unsigned int nfeatures;
	unsigned int features_inited; /* the first n ran init(): destroy() for those */
	/* every control message type's handler, from the session and its features */
	const struct rmig_ctl_handler *ctl_handlers[RMIG_MSG_TYPE_MAX];
	struct rmig_pool *pool;
	pthread_t ctl_thread;
	bool ctl_thread_started;
	uint64_t t_start_ns;

	/* protected by lock; cond is broadcast on every change */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum rmig_sess_state state;
	int err;
	char errmsg[RMIG_ERRMSG_MAX + 64];
	bool err_from_peer;
	bool telling; /* the first error's ERROR is on its way to the peer: the ctl socket stays open */
	uint64_t sync_sent;     /* source: last sync id posted */
	uint64_t sync_acked;    /* source: highest SYNC_ACK; dest: highest sync done */
	uint64_t *chan_sync;    /* dest: last marker id per channel */
	uint64_t sync_lead_ns;  /* dest: since when a channel is past sync_acked
				 * and another is not (monotonic; 0: none ahead) */
	bool complete_seen;     /* dest: COMPLETE received */
	bool complete_sent;     /* source: COMPLETE sent (a COMPLETE_ACK may come) */
	bool finishing;         /* dest: acking completion; errors no longer count */
	int peer_verdict;       /* source: COMPLETE_ACK status, 1 = none yet */
	uint64_t t_end_ns;

	/*
	 * resume.c: @resuming: rmig_resume_from() made this session the
	 * continuation of session @session_id; @resumed: the handshake agreed
	 * (source: the destination kept the old state; destination: the old
	 * session's source came back).
	 */
	bool resuming;
	bool resumed;

	bool test_no_round_sync; /* tests only: see rmig_sess_test_break_round_order() */
	unsigned int test_start_delay_ms; /* tests only: see rmig_sess_test_start_delay() */

	/* live migration, see live.c; protected by lock */
	struct rmig_rate_limit rl;
	unsigned int rounds;
	uint64_t t_round_ns;    /* when the last round began */
	uint64_t bandwidth;     /* bytes/s, from the last round that moved enough */
	uint64_t sync_ns;       /* how long the last round's closing sync took */
	uint64_t t_switch_ns;   /* rmig_switchover(), 0 before */
	uint64_t downtime_ns;

	/* serialises whole sync operations on the source */
	pthread_mutex_t sync_lock;

	/* the channel handoff: protected by cs_lock */
	pthread_mutex_t cs_lock;
	pthread_cond_t cs_idle; /* a channel became idle, or stop */
	bool cs_stop;
	unsigned int cs_next;

	/* serialises writes on the control socket */
	pthread_mutex_t ctl_send_lock;

	/* device state, see state.c; protected by state_lock */
	pthread_mutex_t state_lock;
	struct rmig_blob **blobs;
	uint32_t nblobs;
	uint64_t state_reserved;  /* dest: bytes allocated for blobs */
	uint32_t blobs_loading;   /* dest: load tasks in flight */

	/* RMIG_F_PREPARE, see prep.c */
	struct rmig_prep *prep;

	/* postcopy, see postcopy.h */
	struct rmig_postcopy pc;

	/*
	 * Failover within the session, see failover.c; bit r for rail r,
	 * protected by lock. @fo_down: failed here, or told by the peer.
	 * @fo_fenced: source, the destination confirmed that nothing of the
	 * rail lands any more; destination, that confirmation was sent.
	 * @fo_handled: source, what the rail may have lost went again.
	 */
	bool fo_agreed; /* both sides take RAIL_DOWN (RMIG_CAP_FAILOVER, RMIG_ACK_FAILOVER) */
	uint64_t fo_down;
	uint64_t fo_fenced;
	uint64_t fo_handled;
	unsigned int failovers;
	uint64_t fo_resent_pages;
	char fo_why[RMIG_RAILS_MAX][120]; /* why each rail failed */
	/*
	 * The TCP fallback (failover.c): once every rail failed, the channels
	 * go on over TCP to the control connection's address, as one more
	 * rail. @fb_agreed: both sides take FALLBACK; @fb_state (under lock):
	 * failover.c's FB_*; @fb_ep: source, the destination's endpoint.
	 */
	bool fb_agreed;
	int fb_state;
	uint16_t fb_ep_len;
	uint8_t fb_ep[RMIG_EP_MAX];
	bool test_fb_refuse; /* tests only: see rmig_sess_test_fallback_refuse() */
	bool test_no_resend; /* tests only: see rmig_sess_test_no_resend() */
	bool test_no_fo_cap; /* tests only: see rmig_sess_test_no_failover_cap() */

	/* counters */
	_Atomic uint64_t st_bytes;
	_Atomic uint64_t st_handled;
	_Atomic uint64_t st_pages;
	_Atomic uint64_t st_zero_pages;
	_Atomic uint64_t st_state_bytes;
	_Atomic uint64_t st_reg_ns;
};

uint64_t rmig_now_ns(void);
/* now + the session's timeout on rmig_now_ns()'s clock (pthread_cond_timedwait) */
uint64_t rmig_sess_deadline(const struct rmig_session *s);

/* First error wins; wakes every waiter and shuts down. Returns @err. */
int rmig_sess_fail(struct rmig_session *s, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same; @from_peer: the cause is the peer's own ERROR (not echoed back). */
int rmig_sess_fail_from(struct rmig_session *s, int err, bool from_peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int rmig_sess_vfail(struct rmig_session *s, int err, bool from_peer, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
/* Shut the transports, the control connection's sending side and the channels: every waiter wakes. */
void rmig_sess_shut(struct rmig_session *s);
/* The sticky error, or 0. */
int rmig_sess_err(struct rmig_session *s);
int rmig_ctl_send(struct rmig_session *s, uint16_t type, const uint8_t *payload, uint32_t len);
/* Receive the next control message, which must be @type (an ERROR fails with its text). */
int rmig_ctl_expect(struct rmig_session *s, uint16_t type, struct rmig_ctl_hdr *h, uint8_t *buf);
struct rmig_ctl_conn; /* ctl.h */
/* The session's control connection, for the helpers of ctl.c (sess_err.c). */
struct rmig_ctl_conn rmig_sess_ctl_conn(const struct rmig_session *s);
/* Start TLS on the control connection, if the session has a TLS configuration. */
int rmig_ctl_start_tls(struct rmig_session *s);
/* Start the control thread, which reads every message and keeps the link alive. */
int rmig_ctl_thread_start(struct rmig_session *s);
/*
 * Register feature @f: its control handlers join the session's table (a
 * type handled twice is -EEXIST). At create, before anything runs.
 */
int rmig_sess_add_feature(struct rmig_session *s, const struct rmig_feature *f);
/* sess_msgs.c: the session's own messages and tick, registered first by every session */
extern const struct rmig_feature rmig_sess_msgs;
/* ERROR from the peer: its text becomes this side's error (sess_ctl.c). */
int rmig_ctl_peer_error(struct rmig_session *s, const uint8_t *buf, uint32_t len);
/*
 * The peer hung up the control connection (@when: "before ..."): read what
 * it sent last and fail the session with its ERROR, or with its close.
 */
int rmig_ctl_last_words(struct rmig_session *s, const char *when);
/* Each registered feature @f of session @s whose hook @hook is set, in registration order. */
#define rmig_for_each_feature(s, f, hook)                                                         \
	for (unsigned int f##_i = 0; f##_i < (s)->nfeatures; f##_i++)                              \
		for (const struct rmig_feature *f = (s)->features[f##_i]; f && f->hook; f = NULL)
/* Each feature's start() in turn: 0 or the first error. */
int rmig_sess_start_features(struct rmig_session *s);
/* The same for started(), once the session runs. */
int rmig_sess_started_features(struct rmig_session *s);
/* The largest single write of the session: extent_max, or more where a feature needs it. */
uint64_t rmig_sess_write_max(const struct rmig_session *s);
/* A feature must hear of every page; a feature's pages come by message only (see the hooks). */
bool rmig_sess_every_page(const struct rmig_session *s);
bool rmig_sess_by_message_only(const struct rmig_session *s);
/* The feature that owns target kind @k, or NULL. */
const struct rmig_feature *rmig_sess_tgt_owner(const struct rmig_session *s,
					       enum rmig_target_kind k);
/* The feature with a blob section at completion, or NULL. */
const struct rmig_feature *rmig_sess_blob_owner(const struct rmig_session *s);
/* A control message this side does not take now: the session fails (-EBADMSG). */
int rmig_ctl_unexpected(struct rmig_session *s, uint16_t type);
/* A local backend's message, as the control thread would take a peer's (s->up). */
int rmig_up_ctl(void *arg, uint16_t type, const uint8_t *payload, uint32_t len);
struct rmig_block *rmig_block_find(struct rmig_session *s, const char *name, unsigned int *idx_p);
/* Wait on s->cond until @deadline_ns (0: forever). -ETIMEDOUT when past it. */
int rmig_sess_wait(struct rmig_session *s, uint64_t deadline_ns);

/* Source: flush every channel, mark, wait for the destination's ack. */
int rmig_source_sync(struct rmig_session *s);
/* Source: 0, or the session's error, or -ENOTCONN before connect. */
int rmig_src_ready(struct rmig_session *s);
/* Source: the guest has stopped; the first call counts (-EALREADY after), and tells the features. */
int rmig_sess_switchover(struct rmig_session *s);

/* chan.c: source channel engine */
int rmig_chans_start_source(struct rmig_session *s);
int rmig_chans_start_dest(struct rmig_session *s);
void rmig_chans_stop(struct rmig_session *s);
/*
 * Hand *job_p to an idle channel (any, or @chan >= 0); *job_p becomes an
 * empty job. -ENOLINK: channel @chan is down (failover.c).
 */
int rmig_chan_submit(struct rmig_session *s, struct rmig_job **job_p, int chan);
/*
 * Post @j on channel @idx from the calling thread, serialized with the
 * channel's own thread; @j is reset. The postcopy control thread serves
 * page requests on the urgent channel this way: no thread hop on the way.
 */
int rmig_chan_run(struct rmig_session *s, unsigned int idx, struct rmig_job *j);
struct rmig_job *rmig_job_new(void);
/* The channel whose thread calls (a channel thread's own), or NULL. */
struct rmig_chan *rmig_chan_self(void);
/* A channel of a failed rail: it takes no more jobs, and its thread ends. */
void rmig_chan_set_down(struct rmig_session *s, unsigned int idx);
/*
 * Channel @idx, down and its thread ended, goes on through channel @tch of
 * rail @rail (whose transport is @ops): a new thread runs it, and it takes
 * jobs (source) or counts in syncs (destination) again. The old channel is
 * kept and closed at destroy.
 */
int rmig_chan_revive(struct rmig_session *s, unsigned int idx,
		     const struct rmig_transport_ops *ops, struct rmig_tp_chan *tch,
		     unsigned int rail);
/* Post a sync marker on every channel that is not down, ordered after everything handed over. */
int rmig_chans_mark(struct rmig_session *s, uint64_t sync_id, struct rmig_job **job_p);
/* Add a byte range of block @bidx to *job_p, handing the job over when full. */
int rmig_job_add_range(struct rmig_session *s, struct rmig_job **job_p, uint32_t bidx,
		       uint64_t offset, uint64_t len);
/* The same with extents of at most @max bytes (at most extent_max). */
int rmig_job_add_range_max(struct rmig_session *s, struct rmig_job **job_p, uint32_t bidx,
			   uint64_t offset, uint64_t len, uint64_t max);
/* The runs of set bits of @map (a page bitmap of block @bidx); *@pages_p (if set) counts their pages. */
int rmig_job_add_bitmap(struct rmig_session *s, struct rmig_job **job_p, uint32_t bidx,
			const unsigned long *map, uint64_t *pages_p);
int rmig_job_flush(struct rmig_session *s, struct rmig_job **job_p);

/* state.c: device state */
int rmig_state_send(struct rmig_session *s, const char *name, uint32_t instance,
		    const void *data, uint64_t len);
int rmig_state_place(struct rmig_session *s, const struct rmig_target *t, uint64_t len,
		     void **dst_p);
int rmig_state_placed(struct rmig_session *s, const struct rmig_target *t, uint64_t len);
/*
 * Dest, at COMPLETE (after the source's sync): 0 when @nblobs_expected blobs
 * were announced and every byte of each has arrived; else -EBADMSG and why.
 */
int rmig_state_check_arrived(struct rmig_session *s, uint32_t nblobs_expected, char *why,
			     size_t why_len);
/* Dest: 0 when every announced blob is complete and loaded, -EAGAIN if not yet. */
int rmig_state_all_loaded(struct rmig_session *s, uint32_t nblobs_expected);
int rmig_state_digests(struct rmig_session *s, uint8_t (*out)[RMIG_DIGEST_LEN], uint32_t n);
uint32_t rmig_state_count(struct rmig_session *s);

/*
 * Tests only: rmig_send_round() skips its closing sync, which breaks the
 * ordering rule across channels (the ordering test shows what goes wrong).
 */
void rmig_sess_test_break_round_order(struct rmig_session *s, bool broken);

/*
 * Tests only: session_start() sleeps this long between starting the control
 * thread and marking the session running (widens a race for its test).
 */
void rmig_sess_test_start_delay(struct rmig_session *s, unsigned int ms);

/*
 * Tests only: the link breaks. Every socket of the session is shut down
 * at once, and no ERROR goes out (a dead link carries nothing).
 */
void rmig_sess_test_cut(struct rmig_session *s);

/*
 * Tests only: rail @r's link breaks (its transport is shut down; nothing
 * else). A failover takes over where it can.
 */
void rmig_sess_test_cut_rail(struct rmig_session *s, unsigned int r);

/* Tests only: a failover leaves out what the failed rail may have lost (it is not sent again). */
void rmig_sess_test_no_resend(struct rmig_session *s, bool skip);

/* Tests only: a source that does not announce RMIG_CAP_FAILOVER (as an earlier release). */
void rmig_sess_test_no_failover_cap(struct rmig_session *s);
/* Tests only: a destination whose TCP fallback listener takes no connection (it closes). */
void rmig_sess_test_fallback_refuse(struct rmig_session *s);

/* Tests only: run the session on another transport. */
void rmig_sess_set_transport(struct rmig_session *s, const struct rmig_transport_ops *ops);

/* sess_place.c: placement (place.h) */
/* Start loading the topology on a thread, to overlap the connect or the wait for a source. */
void rmig_sess_place_prefetch(struct rmig_session *s);
void rmig_sess_place_load(struct rmig_session *s);  /* before the transport is created */
void rmig_sess_place_chans(struct rmig_session *s); /* channels open, threads not started */
/* channel @c's device, node and cpus (its thread not running): a channel moved mid-session */
void rmig_sess_place_chan(struct rmig_session *s, struct rmig_chan *c);
void rmig_chan_bind(struct rmig_chan *c);           /* on the channel's own thread */
void rmig_sess_place_fini(struct rmig_session *s);  /* after the threads are joined */

/* sess_dest.c: the destination's upcalls from the backend (s->up), digests, completion */
/* Where a write of @len bytes at @t goes (*dst_p), once checked against its RAM block. */
int rmig_up_place(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len,
		  void **dst_p);
/* A write of @len bytes at @t has landed: counted, and postcopy told. */
int rmig_up_placed(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len);
/* A write that came as a message (@src, the backend's buffer): placed like rmig_up_place(). */
int rmig_up_place_from(void *arg, unsigned int chan, const struct rmig_target *t, const void *src,
		       uint64_t len);
/* A zero-page marker: @len bytes at @t zeroed. */
int rmig_up_zero(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len);
/* Channel @chan passed sync marker @id: SYNC_ACK once every channel has. */
int rmig_up_sync(void *arg, unsigned int chan, uint64_t id);
/* Dest: a channel left the sync (excluded): SYNC_ACK where the rest are past a new one. */
int rmig_dest_sync_advance(struct rmig_session *s);
/* Dest, on the control thread's tick: fail a channel stalled behind a sync. */
int rmig_check_sync_lag(struct rmig_session *s);
/* Dest: COMPLETE received; its check runs on a load thread. */
int rmig_handle_complete(struct rmig_session *s, const uint8_t *buf, uint32_t len);
/* The digest of each RAM block, into @out[0..nblocks). */
void rmig_block_digests(struct rmig_session *s, uint8_t (*out)[RMIG_DIGEST_LEN]);

/* resume.c: precopy resume */
/* Source, at connect: the maps of every block (kept from rmig_resume_from()). */
int rmig_resume_track(struct rmig_session *s);
/* Source, under sync_lock: a sync begins; it ended (@acked: the destination has it all). */
void rmig_resume_sync_begin(struct rmig_session *s);
void rmig_resume_sync_end(struct rmig_session *s, bool acked);
/* Source: a live round's dirty pages; the round's closing sync was acknowledged. */
void rmig_resume_round_begin(struct rmig_session *s, const unsigned long *const *bitmaps);
void rmig_resume_round_end(struct rmig_session *s);
/* Source: HELLO_ACK's answer to a resuming HELLO. */
int rmig_resume_on_ack(struct rmig_session *s, uint32_t ack_caps);
/* Destination, after the gate: 0 when @hello may go on here, or the refusal. */
int rmig_resume_check_hello(struct rmig_session *s, const struct rmig_msg_hello *hello);

/* rails.c: multi-rail */
int rmig_tp_create_rail(struct rmig_session *s, unsigned int r); /* creates s->rail[r].tp */
struct rmig_tp *rmig_rail_tp(const struct rmig_session *s, unsigned int chan);
/* the rail channel @chan goes through (the engine reads it too: inline) */
static inline unsigned int rmig_chan_rail(const struct rmig_session *s, unsigned int chan)
{
	if (s->chans && s->chans[chan].moved)
		return s->chans[chan].rail;
	return s->nrails_used ? s->rail_used[chan % s->nrails_used] : 0;
}
/* Rail @r's transport: the session's, or the one a fallback opened it with. */
static inline const struct rmig_transport_ops *rmig_rail_ops(const struct rmig_session *s,
							     unsigned int r)
{
	return s->rail[r].ops ? s->rail[r].ops : s->tp_ops;
}
/* Channel @c's transport. */
static inline const struct rmig_transport_ops *rmig_chan_ops(const struct rmig_chan *c)
{
	return c->ops ? c->ops : c->s->tp_ops;
}
/*
 * destination: open rails 1.. (after rail 0 listens); one that cannot carry
 * channels now is left out, and the rest move down; ack gets RMIG_ACK_RAILS
 */
int rmig_rails_dest_open(struct rmig_session *s, struct rmig_msg_hello_ack *ack);
int rmig_rails_dest_send(struct rmig_session *s); /* the RAILS message, after HELLO_ACK */
/* source: read the RAILS message if @ack says one follows; create rails 1.. */
int rmig_rails_source_take(struct rmig_session *s, const struct rmig_msg_hello_ack *ack,
			   uint8_t *buf);
/* source, after take: leave out the rails it cannot reach, and say which it uses (RAILS_USE) */
int rmig_rails_source_use(struct rmig_session *s);
/* destination, after its REGs: the source's RAILS_USE, where it offered rails */
int rmig_rails_dest_use(struct rmig_session *s, uint8_t *buf);
void rmig_rails_shutdown(struct rmig_session *s);
void rmig_rails_destroy(struct rmig_session *s); /* rails 1..; after every channel closed */

#endif
