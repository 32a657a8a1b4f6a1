/* SPDX-License-Identifier: MIT */
/*
 * rmig.h - public API of librmig, a live-migration transport for VMMs.
 *
 * A session moves guest RAM blocks and device-state blobs from a source to a
 * destination over one TCP control connection plus N parallel data channels
 * (RDMA queue pairs or TCP sockets). All state lives in the session object:
 * several sessions may run in one process.
 *
 * Conventions: every function returns 0 or a negative errno. A call refused
 * for its arguments or its moment (-EINVAL, -ERANGE, -ENOENT, -EBUSY,
 * -ENOTCONN...) changes nothing: it is logged, and the session goes on. A
 * failure of the migration itself fails the session: it keeps the first
 * such error, and rmig_last_error() describes it. No function calls exit().
 * Callbacks are never invoked with a library lock held.
 */
#ifndef RMIG_H
#define RMIG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RMIG_BUILD) && defined(__GNUC__)
#define RMIG_API __attribute__((visibility("default")))
#else
#define RMIG_API
#endif

#define RMIG_NAME_MAX 64 /* RAM block and device names, including NUL */
#define RMIG_CHANNELS_MAX 64
#define RMIG_BLOCKS_MAX 256
#define RMIG_RAILS_MAX 8 /* destination addresses one migration spreads over */
#define RMIG_KEY_MIN 16     /* rmig_opts.key: bytes, at least */
#define RMIG_KEY_MAX 4096   /* and at most */
#define RMIG_HOST_MAX 256   /* the host part of a URI, NUL included */

typedef struct rmig_session rmig_session;

enum rmig_role {
	RMIG_ROLE_SOURCE = 1,
	RMIG_ROLE_DEST = 2,
};

enum rmig_transport_kind {
	RMIG_TRANSPORT_AUTO = 0, /* RDMA when a device reaches the peer, else TCP */
	RMIG_TRANSPORT_TCP = 1,
	RMIG_TRANSPORT_RDMA = 2,
	RMIG_TRANSPORT_FILE = 3, /* a "file:PATH" session (see the end of this header);
				  * chosen by the address, not an option value */
};

enum rmig_log_level {
	RMIG_LOG_ERROR = 0,
	RMIG_LOG_WARN = 1,
	RMIG_LOG_INFO = 2,
	RMIG_LOG_DEBUG = 3,
};

/* Compare an end-to-end digest of every block and blob at completion. */
#define RMIG_F_VERIFY (1u << 0)
/*
 * Source: when max_rounds is reached and what is left does not fit the
 * downtime limit, rmig_estimate() says RMIG_DECIDE_FORCED (switch over
 * anyway) instead of RMIG_DECIDE_GIVE_UP (cancel; the guest stays here).
 */
#define RMIG_F_SWITCH_ANYWAY (1u << 1)
/*
 * Both sides: TLS 1.3 on every connection (control and data channels), keyed
 * by the shared key (required). Data channels then run over TCP: with
 * transport AUTO the source picks TCP, and TRANSPORT_RDMA is refused, since
 * RDMA writes are not encrypted. Both sides must agree; a side without TLS
 * is refused with -EPROTONOSUPPORT.
 */
#define RMIG_F_TLS (1u << 2)
/*
 * Source: the migration may switch to postcopy (rmig_postcopy_start()). One
 * more data channel opens, the urgent one: it carries requested pages only,
 * so they never queue behind background pages. TCP only for now.
 */
#define RMIG_F_POSTCOPY (1u << 3)
/* Source, with RMIG_F_POSTCOPY: no urgent channel; requested pages share the
 * channels with the background pages (to measure what the urgent one buys). */
#define RMIG_F_NO_URGENT (1u << 4)
/*
 * Both sides: make the RAM blocks resident ahead of the data, on a thread
 * that starts at connect (source) or once the layout is checked
 * (destination), so that neither the zero scan nor the placement meets
 * fresh memory one page fault at a time. Destination: MADV_HUGEPAGE (for
 * anonymous memory), then MADV_POPULATE_WRITE; memory that cannot be had
 * (a full file system, a hugetlbfs pool too small) fails the session with
 * -ENOSPC and the cause. Source: MADV_POPULATE_READ. Not applied to the
 * destination of a postcopy migration.
 */
#define RMIG_F_PREPARE (1u << 5)
/*
 * Destination: every RAM block reads as zero before the migration (fresh
 * anonymous memory, a new or emptied file). The destination says so in its
 * handshake, and the source then sends no zero-page marker for a page it
 * never sent before (one it sent with data, now zero, still goes), so fresh
 * memory is not faulted in only to be cleared. Wrong when a block holds old
 * data: its zero pages would keep it. Ignored under postcopy, which must
 * hear of every page.
 */
#define RMIG_F_ZEROED (1u << 6)
/*
 * File sessions ("file:PATH", see the end of this header): read and write
 * the page data with O_DIRECT, bypassing the page cache. Memory that is not
 * aligned as the file system asks goes through an aligned bounce buffer; a
 * file system without O_DIRECT, or pages smaller than its direct I/O
 * alignment, fall back to the page cache with a warning. Ignored by network
 * sessions.
 */
#define RMIG_F_DIRECT (1u << 7)
/*
 * Network sessions place each data channel by the device it goes through
 * (hwloc): the channel thread is bound to the CPUs near the device and its
 * staging buffers go to the device's NUMA node, and a RAM block whose
 * memory sits on another node than every device is warned about. A device
 * with no locality (soft-RoCE, loopback) binds nothing. This flag turns
 * placement off; see rmig_get_placement() for what was done.
 */
#define RMIG_F_NO_BIND (1u << 8)
/*
 * Source: when the last rail fails, fail the session rather than go on
 * over TCP to the control connection's address (the TCP fallback of an
 * RDMA session, or of a TCP session over several rails; see
 * rmig_listen_add()). Where TCP would take a path the operator does not
 * want migration traffic on.
 */
#define RMIG_F_NO_FALLBACK (1u << 9)

typedef void (*rmig_log_fn)(void *arg, enum rmig_log_level level, const char *msg);

struct rmig_block_info {
	char name[RMIG_NAME_MAX];
	uint64_t length;    /* bytes, a multiple of page_size */
	uint32_t page_size; /* bytes, a power of two >= 512 */
};

/*
 * Destination only: called once from rmig_accept() with the source's RAM
 * layout, before it is checked against the blocks declared on this side.
 * The callback may declare blocks with rmig_add_ram() (for example after
 * sizing an image file). Return 0 to go on, a negative errno to refuse.
 */
typedef int (*rmig_layout_fn)(void *arg, rmig_session *s, const struct rmig_block_info *blocks,
			      unsigned int nblocks);

/*
 * Destination only: a complete device-state blob. Runs on a load thread;
 * several blobs may load at once. @data is valid (never NULL, even when @len
 * is 0) until the callback returns.
 * Return 0, or a negative errno to fail the migration.
 */
typedef int (*rmig_state_fn)(void *arg, const char *name, uint32_t instance, const void *data,
			     uint64_t len);

struct rmig_opts {
	size_t size;                   /* sizeof(struct rmig_opts) as the caller knows it */
	enum rmig_role role;           /* required */
	enum rmig_transport_kind transport; /* source decides; default AUTO */
	unsigned int channels;         /* source: data channels, 1..RMIG_CHANNELS_MAX; default 4 */
	unsigned int timeout_ms;       /* bound on every wait; default 30000 */
	uint32_t extent_max;           /* largest coalesced write, bytes; default 1 MiB */
	unsigned int flags;            /* RMIG_F_* */
	uint64_t blob_max;             /* destination: largest blob accepted; default 4 GiB */
	unsigned int load_threads;     /* destination: blob load threads; default 4 */
	uint64_t inflight_max;         /* RDMA: outstanding bytes per channel before a
					* partial flush (poll until half is left); default 64 MiB */
	rmig_log_fn log_fn;            /* default: stderr */
	void *log_arg;
	enum rmig_log_level log_level; /* default WARN */
	rmig_layout_fn layout_fn;      /* destination */
	void *layout_arg;
	rmig_state_fn state_fn;        /* destination */
	void *state_arg;
	/* source, live migration (see rmig_estimate() and rmig_switchover()) */
	uint64_t max_bandwidth;        /* bytes/s for RAM pages and device state until
					* rmig_switchover(); 0 = unlimited (default) */
	unsigned int downtime_limit_ms; /* switch over once what is left fits; default 300 */
	unsigned int max_rounds;       /* live rounds before giving up or forcing; default 30,
					* 0 = no limit */
	/*
	 * Both sides: a shared secret of RMIG_KEY_MIN..RMIG_KEY_MAX bytes
	 * (16..4096, copied at create), or
	 * NULL/0 for none. With a key, each side proves it holds the key
	 * before the destination opens a data channel or sends a registration
	 * key; a side without the key, or with another, is refused (-EACCES).
	 */
	const void *key;
	size_t key_len;
	/*
	 * Destination, postcopy (userfaultfd blocks): when the connection
	 * breaks after the guest began to run here, faulting threads wait
	 * this long for the source to come back (rmig_resume_from()) before
	 * the blocks are unregistered and the guest is lost. 0 (default): at
	 * once, as without it. Also, for a destination session made with
	 * rmig_resume_from(): how long rmig_accept() waits for the source to
	 * come back (instead of timeout_ms).
	 */
	unsigned int recovery_timeout_ms;
	/*
	 * Source, multi-rail (rmig_listen_add()): the local devices to use, by
	 * name, comma-separated: RDMA devices ("mlx5_0,mlx5_1"), or network
	 * interfaces over TCP. "" (default): every device that reaches one of
	 * the destination's addresses. A rail whose device is not named is
	 * left out, rail 0 (the control connection's address) too: it then
	 * carries the control connection alone. Connect fails (-EINVAL,
	 * said) when a named device reaches none of the addresses, or the
	 * destination has one address and its device is not named. A
	 * destination of an earlier release refuses a source that leaves rail
	 * 0 out (bad RAILS_USE).
	 */
	char rails[256];
};

/*
 * A destination counts what its channels placed: payload bytes, writes,
 * pages. RDMA WRITEs land without its CPU, so over RDMA these stay 0 there.
 */
struct rmig_chan_stats {
	uint64_t bytes;  /* payload bytes written on (destination: placed from) this channel */
	uint64_t writes; /* write operations posted (destination: frames placed) */
};

struct rmig_stats {
	uint64_t bytes;        /* RAM payload bytes moved (zero pages excluded) */
	uint64_t handled;      /* RAM bytes sent or placed, zero pages included */
	uint64_t pages;        /* RAM pages handled, zero pages included */
	uint64_t zero_pages;   /* pages sent as zero markers */
	uint64_t state_bytes;  /* device-state bytes */
	uint64_t blobs;        /* device-state blobs */
	uint64_t syncs;        /* completed sync points */
	uint64_t duration_ns;  /* from connect/accept to completion or now */
	uint64_t reg_ns;       /* time spent registering memory (RDMA) */
	uint64_t rounds;       /* source: rmig_send_round() calls completed */
	uint64_t downtime_ns;  /* source: rmig_switchover() to the destination's
				* completion verdict (postcopy: to its PC_RUN
				* answer, when it runs the guest); 0 before that */
	/* postcopy */
	uint64_t pc_requests;     /* page requests sent (dest) or received (source) */
	uint64_t pc_urgent_pages; /* source: pages sent for a request */
	uint64_t pc_background;   /* source: pages sent by rmig_postcopy_send_rest() */
	uint64_t pc_faults;       /* destination: userfaultfd faults handled */
	uint64_t pc_resent;       /* source: requested pages sent again, their background
				   * copy still on the way (the destination keeps the first) */
	unsigned int channels;
	enum rmig_transport_kind transport; /* the one in use; before one is, the one asked for */
	struct rmig_chan_stats chan[RMIG_CHANNELS_MAX];
	/* postcopy pause and resume (destination; carried to the resumed session) */
	uint64_t pc_pauses;      /* breaks that paused postcopy */
	uint64_t pc_paused_ns;   /* time paused, all breaks together */
	uint64_t pc_rerequested; /* pages asked for again after a resume */
	/* multi-rail: rails this session goes without, their link down or device gone
	 * (the destination offers only those it can open; the source leaves out those it
	 * cannot reach). A migration resumed after losing a rail goes on through the rest. */
	uint64_t rails_down;
	/*
	 * Rails that failed mid-migration, and the session went on without
	 * them (failover: what they may have lost went again through the
	 * others, failover_pages pages; source).
	 */
	uint64_t failovers;
	uint64_t failover_pages;
	/*
	 * 1 when every rail failed and the migration went on over TCP
	 * channels to the control connection's address (the TCP fallback).
	 */
	uint64_t tcp_fallbacks;
	/*
	 * Payload bytes per rail (the sum of its channels' bytes). A channel
	 * the TCP fallback moved counts on each rail what it carried there.
	 */
	uint64_t rail_bytes[RMIG_RAILS_MAX];
};

/* Fill @o with defaults; @size is sizeof(*o). */
RMIG_API void rmig_opts_init(struct rmig_opts *o, size_t size);

/*
 * Create a session. Fields past o->size take their defaults.
 * Errors: -EINVAL (bad option, named in the log), -ENOMEM.
 */
RMIG_API int rmig_session_create(const struct rmig_opts *o, rmig_session **s_p);

/* Tear down: cancels if still running, joins threads, frees. NULL-safe. */
RMIG_API void rmig_session_destroy(rmig_session *s);

/*
 * Declare a RAM block. Both sides declare the same names, lengths and page
 * sizes (the destination may do it from its layout callback). @host must
 * stay mapped for the session's life. Only before connect/accept completes.
 * Errors: -EINVAL (name empty or too long, length or page size invalid,
 * @host + @length past the end of any address space, duplicate name, a
 * destination block over another's memory), -EBUSY (session already started), -ENOSPC (too many).
 */
RMIG_API int rmig_add_ram(rmig_session *s, const char *name, void *host, uint64_t length,
			  uint32_t page_size);

/*
 * Source: connect to "tcp://HOST:PORT", "rdma://HOST:PORT" or "HOST:PORT"
 * (transport from the options), handshake, open the data channels.
 * "fd:N": the control connection is N, a connected stream socket the
 * caller made (the destination passes its end to rmig_listen()); the data
 * channels go to its peer's address (TCP or RDMA), so N must be a TCP
 * socket, unless the transport needs no address. The session owns N once
 * the call has accepted its arguments, and closes it at destroy; when the
 * call returns -EINVAL (the URI, N not a connected stream socket, no
 * blocks) or -EBUSY, N stays the caller's.
 * Errors: -EINVAL (URI), -ECONNREFUSED/-EHOSTUNREACH/-ETIMEDOUT (peer),
 * -EPROTO (handshake refused: version, layout), -ENODEV (RDMA asked, none).
 */
RMIG_API int rmig_connect(rmig_session *s, const char *uri);

/*
 * Destination: bind and listen on "tcp://HOST:PORT" (PORT 0 picks one; see
 * rmig_listen_port()). "fd:N": no listener; rmig_accept() takes N, a
 * connected stream socket, as the source's control connection (with a key,
 * it must prove it; no other connection is waited for), and the data
 * channels listen on N's local address. Ownership of N as for
 * rmig_connect(). Errors: -EINVAL, -EADDRINUSE, other socket errors.
 */
RMIG_API int rmig_listen(rmig_session *s, const char *uri);

/*
 * Destination, after rmig_listen() and before rmig_accept(): one more
 * address of this host ("HOST", "HOST:PORT", "[V6]:PORT"; PORT 0 or none:
 * any) to open data channels on: a rail. The source spreads its channels
 * over the control connection's address (rail 0) and these, in turn, each
 * rail through the device that reaches it (for RDMA a device of its own,
 * with its own registrations); at most as many rails as channels are used.
 * Errors: -EINVAL (not a destination, an address that does not resolve),
 * -EADDRNOTAVAIL (not an address of this host), -EADDRINUSE (its port is
 * taken), -EBUSY (already accepted), -ENOSPC (RMIG_RAILS_MAX in all).
 */
RMIG_API int rmig_listen_add(rmig_session *s, const char *addr);

/* Destination: the bound port after rmig_listen(), or -EINVAL. */
RMIG_API int rmig_listen_port(rmig_session *s);

/*
 * Destination: accept one source, check its handshake and layout, open the
 * data channels and start receiving. Waits at most timeout_ms for the
 * source. Errors: -ETIMEDOUT, -EPROTO (bad magic, version, layout mismatch).
 */
RMIG_API int rmig_accept(rmig_session *s);

/*
 * Source: send the pages listed in @pages (page indexes within the block).
 * Contiguous pages coalesce into extents; zero pages go as markers. Returns
 * when every page is handed to a channel (not yet placed: see rmig_sync()).
 * Errors: -ENOENT (no such block), -ERANGE (page out of range), -EINVAL
 * (@pages NULL with @npages > 0), or the session's error.
 */
RMIG_API int rmig_send_pages(rmig_session *s, const char *block, const uint64_t *pages,
			     size_t npages);

/*
 * Page bitmaps, here and below: bit i is page i of the block, bit i of a
 * map is bit (i % RMIG_BITS_PER_LONG) of unsigned long
 * (i / RMIG_BITS_PER_LONG); a block of N pages takes RMIG_BITMAP_LONGS(N).
 */
#define RMIG_BITS_PER_LONG (sizeof(unsigned long) * 8)
#define RMIG_BITMAP_LONGS(npages) (((npages) + RMIG_BITS_PER_LONG - 1) / RMIG_BITS_PER_LONG)

/* Source: send every page whose bit is set. */
RMIG_API int rmig_send_bitmap(rmig_session *s, const char *block, const unsigned long *bitmap);

/*
 * Source: send a byte range; @offset and @len are page aligned. Errors:
 * -ENOENT (no such block), -ERANGE (not page aligned, or past the block's
 * end), or the session's error.
 */
RMIG_API int rmig_send_range(rmig_session *s, const char *block, uint64_t offset, uint64_t len);

struct rmig_round_stats {
	unsigned int round;   /* 1 for the first round */
	uint64_t dirty_pages; /* bits set in the bitmaps */
	uint64_t pages;       /* pages sent, zero pages included */
	uint64_t zero_pages;
	uint64_t bytes;       /* payload bytes */
	uint64_t duration_ns; /* from the call to the end of its sync */
	uint64_t dirty_rate;  /* bytes/s: this round's dirty bytes over the time since
			       * the previous round began; 0 for the first round */
	uint64_t bandwidth;   /* bytes/s: payload bytes over the duration */
};

/*
 * Source: one precopy round. @bitmaps[i] is the dirty bitmap of the i-th
 * block declared on this side (bit n = page n; NULL: nothing dirty). Sends
 * those pages, then syncs (and times one more, empty sync: the round trip
 * rmig_estimate() adds to the downtime): when it returns 0, every page of the round is
 * placed at the destination. That is the ordering rule across channels: a
 * page resent in the next round, maybe on another channel, can never be
 * overwritten by this round's older copy. @st_p may be NULL.
 * Errors: -EINVAL (@nblocks differs from the blocks declared), the session's.
 */
RMIG_API int rmig_send_round(rmig_session *s, const unsigned long *const *bitmaps,
			     unsigned int nblocks, struct rmig_round_stats *st_p);

enum rmig_decision {
	RMIG_DECIDE_ROUND = 0,      /* send these pages as another live round */
	RMIG_DECIDE_SWITCHOVER = 1, /* the rest fits the downtime limit: stop the guest */
	RMIG_DECIDE_FORCED = 2,     /* over the limit, and no round can help (max_rounds
				     * reached, or nothing dirty: the device state alone
				     * is over it), and RMIG_F_SWITCH_ANYWAY: stop anyway */
	RMIG_DECIDE_GIVE_UP = 3,    /* the same without RMIG_F_SWITCH_ANYWAY: cancel;
				     * the guest keeps running here */
};

struct rmig_estimate {
	uint64_t dirty_pages;     /* bits set in the bitmaps */
	uint64_t dirty_bytes;     /* their bytes */
	uint64_t dirty_rate;      /* bytes/s dirtied since the last round began */
	uint64_t bandwidth;       /* bytes/s, measured over the last rounds that moved data */
	uint64_t expected_downtime_ns; /* (dirty_bytes + state_bytes) / bandwidth, plus
					* two sync round trips (the last round's, and
					* the completion's) as the last round measured */
	unsigned int rounds;      /* live rounds sent so far */
	enum rmig_decision decision;
};

/*
 * Source, before each round after the first: what would the downtime be if
 * the guest stopped now? @bitmaps as for rmig_send_round() (just collected,
 * not yet sent); @state_bytes is the device state the switchover will send.
 * The decision follows downtime_limit_ms, max_rounds and
 * RMIG_F_SWITCH_ANYWAY. Sends nothing. Errors: -EINVAL, -ENODATA (no round
 * measured the bandwidth yet), the session's error.
 */
RMIG_API int rmig_estimate(rmig_session *s, const unsigned long *const *bitmaps,
			   unsigned int nblocks, uint64_t state_bytes, struct rmig_estimate *e);

/*
 * Source: the guest is stopped. Starts the downtime clock (see
 * rmig_stats.downtime_ns) and lifts max_bandwidth, so the last round and
 * the device state go at full speed. Errors: -EALREADY, the session's.
 */
RMIG_API int rmig_switchover(rmig_session *s);

/*
 * Source: when it returns 0, every byte handed over before the call is
 * placed in destination memory. Destination: waits for the source's next
 * sync point. Callable any number of times, from any thread.
 */
RMIG_API int rmig_sync(rmig_session *s);

/*
 * Source: send a device-state blob, chunked across the channels. @data must
 * stay valid and unchanged until the next rmig_sync() or rmig_complete()
 * returns (it is sent without a copy). One blob per (@name, @instance): the
 * destination refuses a second one. Errors: -EINVAL (name), -EEXIST (a blob
 * of this name and instance was sent already), -E2BIG.
 */
RMIG_API int rmig_send_state(rmig_session *s, const char *name, uint32_t instance,
			     const void *data, uint64_t len);

/*
 * Source: sync, send the completion (with digests under RMIG_F_VERIFY) and
 * wait for the destination's verdict. Destination: wait until the source
 * completed, every blob is loaded and digests match. Errors: -EBADMSG
 * (digest mismatch), -ECANCELED, -ETIMEDOUT, -ECONNRESET, the session error.
 */
RMIG_API int rmig_complete(rmig_session *s);

/* Either side: abort, tell the peer, wake every waiter. Thread-safe. */
RMIG_API void rmig_cancel(rmig_session *s, const char *reason);

/*
 * Precopy resume: a migration whose connection failed before completion
 * (and before postcopy) goes on in a new session, which sends only what
 * the destination may lack. Both sides:
 *
 *   new = rmig_session_create(...);  (same role, any options; no blocks)
 *   rmig_resume_from(new, old);      (old is destroyed by the call)
 *
 * @s takes @old's RAM blocks (the same memory) and its session id; @old is
 * destroyed in every case, its channels closed and, on RDMA, its
 * registrations revoked before @s opens its own. Then as before: the
 * destination calls rmig_listen() and rmig_accept() (no layout callback:
 * the blocks are known) and accepts only the source of @old, after the key
 * proof; any other source is refused (-EACCES). The source calls
 * rmig_connect(), then rmig_resume_missing(), and sends those pages and
 * what the guest dirtied since it last collected its dirty log (pages it
 * handed to rmig_send_pages() and the like since the last rmig_sync()
 * that returned 0 count as dirty too). A destination that did not keep @old's memory
 * takes the source as a new migration, and every page is missing.
 *
 * Postcopy goes on too, when the destination's blocks are under
 * userfaultfd and its recovery_timeout_ms is set: after a break there,
 * faulting threads wait (no zero page is ever read) and the destination
 * keeps what arrived. rmig_resume_from() on the destination takes over the
 * paused fault handler (do not call rmig_postcopy_uffd() on @s); once
 * accepted, the destination tells the source which pages it still lacks
 * and asks again for every page a thread waits on. On the source,
 * rmig_connect() returns once the destination runs again; then call
 * rmig_postcopy_send_rest() and rmig_complete() as before. Threads in
 * rmig_postcopy_fetch() on @old get its error: call it again on @s.
 *
 * Errors: -EINVAL (roles differ, @old never connected, was a file target,
 * was starting postcopy, or ran postcopy without userfaultfd),
 * -ETIMEDOUT (destination: the recovery window passed, or postcopy could
 * not pause), -EALREADY (@old completed), -EBUSY (@s is not fresh),
 * -ENOMEM.
 */
RMIG_API int rmig_resume_from(rmig_session *s, rmig_session *old);

/*
 * The same in one call, for a VMM that resumes at once. *@s_p is a session
 * whose connection broke; it is replaced by a new session made with its
 * options (its key included) and resumed from it, as rmig_resume_from().
 *
 * rmig_resume() (source) then connects to @uri; rmig_recover()
 * (destination) listens on @uri and accepts the same source, waiting
 * recovery_timeout_ms at most, refusing any other (-EACCES).
 *
 * Once the call returns, *@s_p is the new session, whatever the result
 * (except -EINVAL for a NULL or a session of the other role, and -ENOMEM,
 * which leave it as it was); on an error it is a failed session that
 * another call may resume again, within the window. Errors: as
 * rmig_resume_from(), rmig_connect(), rmig_listen(), rmig_accept().
 */
RMIG_API int rmig_resume(rmig_session **s_p, const char *uri);
RMIG_API int rmig_recover(rmig_session **s_p, const char *uri);

/*
 * Source, once a resuming session is connected: set in @bitmaps[i] (bit n
 * = page n of the i-th block, as for rmig_send_round(); other bits are
 * kept) every page the destination may lack: all but those placed at the
 * last sync the old sessions had acknowledged, and the pages of an
 * rmig_send_round() that had not returned. It errs on the side of sending
 * again: a page counts as placed at a sync only if a channel posted it
 * before that sync began, so pages rmig_send_range() or rmig_send_pages()
 * had queued but no channel had posted yet when rmig_sync() was called
 * count at the next acknowledged sync (rmig_send_round() ends with its own
 * sync, so its pages count at once). Returns how many pages the
 * destination may lack, or -EINVAL (not a resuming session, @nblocks
 * wrong, a NULL bitmap), or the session's error.
 */
RMIG_API int64_t rmig_resume_missing(rmig_session *s, unsigned long *const *bitmaps,
				     unsigned int nblocks);

/* Snapshot of the counters; callable at any time from any thread. */
RMIG_API void rmig_get_stats(rmig_session *s, struct rmig_stats *st);

/* Where data channel @chan runs: see rmig_get_placement(). */
struct rmig_chan_place {
	char device[32]; /* the local device it goes through (mlx5_0, rxe0, eth0, lo);
			  * "" where not known (file sessions) */
	int numa_node;   /* that device's NUMA node; -1: no locality, or not known */
	char cpus[64];   /* the CPUs near the device, as a list ("0-15,32-47"); "" unknown */
	int bound;       /* 1 once the channel's thread is bound to those CPUs */
	unsigned int rail;  /* the rail it goes through (see rmig_listen_add()) */
	char rail_addr[48]; /* that rail's destination address */
};

/*
 * The placement of data channel @chan (0 <= chan < the session's channels),
 * once connect/accept has opened the channels; @size is sizeof(*p) (a
 * smaller, older struct gets its leading fields). Errors: -EINVAL (bad
 * argument, or the channels are not open yet).
 */
RMIG_API int rmig_get_placement(rmig_session *s, unsigned int chan, struct rmig_chan_place *p,
				size_t size);

/*
 * Destination, from the layout callback on: the device-state blobs the
 * source has declared with its layout. A save file (restore) declares all
 * of them up front, so a layout callback can refuse what it could not
 * store before any page is written; a network source declares each just
 * before its data, so none here. Fills at most @max of @out; returns how
 * many there are (maybe more than @max), or -EINVAL.
 */
struct rmig_state_info {
	char name[RMIG_NAME_MAX];
	uint32_t instance;
	uint64_t length;
};
RMIG_API int rmig_peer_state(rmig_session *s, struct rmig_state_info *out, unsigned int max);

/* The session's first error as text, or "" if none. Valid until destroy. */
RMIG_API const char *rmig_last_error(rmig_session *s);

/* The session's first error as a negative errno, or 0. */
RMIG_API int rmig_error(rmig_session *s);

/*
 * Postcopy. Source, RMIG_F_POSTCOPY, the guest stopped (this calls
 * rmig_switchover() if it was not): syncs, tells the destination which
 * pages it lacks (@bitmaps as for rmig_send_round(): pages never sent, or
 * dirtied since), and returns once the destination runs the guest. From
 * then on page requests are served ahead of everything else. Errors:
 * -EINVAL (no RMIG_F_POSTCOPY, @nblocks), -EALREADY, the session's.
 */
RMIG_API int rmig_postcopy_start(rmig_session *s, const unsigned long *const *bitmaps,
				 unsigned int nblocks);
/*
 * Source, after rmig_postcopy_start(): send every page still missing that
 * no request took yet, on the shared channels. Then rmig_complete().
 */
RMIG_API int rmig_postcopy_send_rest(rmig_session *s);

/*
 * Destination, before rmig_accept(): serve RAM block @block with the
 * built-in userfaultfd handler in postcopy (missing mode; private anonymous
 * memory or hugetlbfs). Its missing pages are dropped when postcopy begins;
 * a thread that touches one blocks until the page is placed, atomically,
 * with UFFDIO_COPY. Errors: -ENOENT, -EBUSY (after accept), -ENOSYS /
 * -EPERM (no userfaultfd here; the message says why).
 */
RMIG_API int rmig_postcopy_uffd(rmig_session *s, const char *block);
/*
 * Destination: wait until postcopy runs (0: the guest may run here now),
 * or -ENODATA when the migration completed without it, or the error.
 */
RMIG_API int rmig_postcopy_wait(rmig_session *s);
/*
 * Destination, while postcopy runs: make sure [@offset, @offset + @len) of
 * @block is here, asking the source for what is missing, and wait for it
 * at most timeout_ms (a VMM's own fault handler). 0 at once for pages
 * already here. Errors: -EINVAL (postcopy not running), -ENOENT, -ERANGE,
 * -ETIMEDOUT (the session fails), the session's.
 */
RMIG_API int rmig_postcopy_fetch(rmig_session *s, const char *block, uint64_t offset,
				 uint64_t len);
/* Destination: 1 if the page at @offset is here, 0 if missing, or -errno. */
RMIG_API int rmig_postcopy_has(rmig_session *s, const char *block, uint64_t offset);

/* "tcp", "rdma", "file" or "auto"; "unknown" for any other value. */
RMIG_API const char *rmig_transport_name(enum rmig_transport_kind k);

/*
 * Whether this build of the library holds transport @k: 1 or 0. TCP and
 * file always; RDMA only when it was built with libibverbs and librdmacm.
 * No device is probed: rmig_connect() over RDMA may still fail for want of
 * one.
 */
RMIG_API int rmig_transport_built(enum rmig_transport_kind k);

/*
 * Optional: start loading what a transport's first use waits for, on a
 * thread of the library's own, and return at once. librdmacm reads every
 * RDMA device on its first call (100-300 ms on a slow host), inside the
 * handshake otherwise. Call it early in a process that will migrate (before
 * rmig_listen() or long before rmig_connect()); the first session that
 * needs the devices waits for what is left of it. Once per process; any
 * thread. A process that forks while it runs: the child should not use
 * RDMA (librdmacm may be mid-way in the parent's thread).
 */
RMIG_API void rmig_preload(void);

/*
 * Text for a negative errno that an rmig call returned: strerror(), with
 * the cases the library gives its own meaning ("timed out", "connection
 * closed by peer", "malformed message"...). A static string.
 */
RMIG_API const char *rmig_strerror(int neg_errno);

/*
 * Copy @src into @dst (@cap bytes, always NUL-terminated) with every byte
 * below 0x20, 0x7f and every byte from 0x80 up written as \xNN: text that
 * came from a peer (rmig_last_error() may hold some), made safe to show on
 * a terminal. Returns the length written; truncates on a whole character or
 * escape. A NULL @src is written as "(null)".
 */
RMIG_API size_t rmig_escape(char *dst, size_t cap, const char *src);

/*
 * The machine as channel placement sees it (hwloc): its NUMA nodes and CPUs.
 * Returns 0, or -errno with the reason in @why (@whylen bytes) where no
 * topology could be loaded (placement is then off).
 */
struct rmig_topology {
	unsigned int numa_nodes;
	unsigned int cpus;
};
RMIG_API int rmig_get_topology(struct rmig_topology *t, size_t size, char *why, size_t whylen);

/*
 * Where device @device (an RDMA device such as "mlx5_0" or "rxe0") sits:
 * fills @p's device, numa_node (-1: no locality) and cpus, as a channel
 * through it would be placed; bound 0, rail 0, rail_addr "". @size is
 * sizeof(*p). Returns 0, -EINVAL, -ENODEV (no RDMA device of that name
 * here), -ENOMEM, or -errno where no topology could be loaded.
 */
RMIG_API int rmig_device_place(const char *device, struct rmig_chan_place *p, size_t size);

/*
 * Version. The macros are the version of this header (meson's project
 * version: the configure fails when they disagree); rmig_version() is the
 * version of the library actually loaded, which may be newer.
 */
#define RMIG_VERSION_MAJOR 0
#define RMIG_VERSION_MINOR 1
#define RMIG_VERSION_PATCH 0
#define RMIG_VERSION_STRING "0.1.0"

/* The loaded library's version, "MAJOR.MINOR.PATCH"; a static string. */
RMIG_API const char *rmig_version(void);

/*
 * rmig_get_stats() for a caller that may have been compiled against an
 * older, smaller struct rmig_stats (fields are only ever appended): fills
 * the first min(@size, sizeof(struct rmig_stats)) bytes of @st with the
 * snapshot; a larger @size (a caller built against a newer header) has the
 * bytes past the library's struct zeroed. Pass sizeof(*st). Callable at any
 * time from any thread. Errors: -EINVAL (@s or @st NULL, or @size smaller
 * than the first field, bytes); @st is then untouched.
 */
RMIG_API int rmig_get_stats_sized(rmig_session *s, struct rmig_stats *st, size_t size);

/*
 * File sessions: save to and restore from a file at fixed offsets.
 *
 * Source: rmig_connect(s, "file:PATH") creates (or truncates) PATH, mode
 * 0600, and lays it out: every page of every block has a fixed offset, so
 * the channels write in parallel (pwritev, no framing) and a live round
 * rewrites the same offsets: the file never grows past the RAM it holds
 * (plus its header, bitmaps, device state and a 2 MiB alignment per block).
 * Zero pages are never written (holes). Everything else is as in a network
 * migration: rmig_send_*(), rmig_send_round() (rounds, estimate, switchover),
 * rmig_send_state(). rmig_sync() returns once every channel's writes
 * returned: a page sent again after it can never be overwritten by an older
 * copy. rmig_complete() writes the page bitmaps, the device state's table
 * and a trailer (with RMIG_F_VERIFY, XXH3-128 digests of every block and
 * blob), fdatasync()s, and only then marks the file complete (fdatasync
 * again). No peer, no control connection: the key does not apply, and
 * RMIG_F_TLS and RMIG_F_POSTCOPY are refused (-EINVAL).
 *
 * Destination: rmig_listen(s, "file:PATH") names the file; rmig_accept(s)
 * opens and checks it (a file that is cut short, has no complete mark,
 * another magic or version, or a header, block table, bitmap or device-state
 * table that does not hold together, is refused with -EBADMSG or
 * -EPROTONOSUPPORT and the reason, before any memory is written), then runs
 * the same layout callback as a network migration, starts the channels
 * (threads that read the file in parallel with preadv straight into the
 * blocks; zero pages are holes, not read) and returns. The device state
 * reaches the state callback, and rmig_complete() returns once everything
 * is placed and loaded (and, with RMIG_F_VERIFY, the digests match: a file
 * saved without them is refused under RMIG_F_VERIFY). Pages the file does
 * not hold (never sent) are left as they are. opts.channels is the number
 * of reading threads. The format: core/file.h.
 */

#ifdef __cplusplus
}
#endif
#endif /* RMIG_H */
