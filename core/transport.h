/* SPDX-License-Identifier: MIT */
/*
 * transport.h - the transport SPI: one ops table that every data-channel
 * backend fills (core/tcp.c, rdma/). The core calls a backend only through
 * this table and never knows which one it holds.
 *
 * Objects: one struct rmig_tp per session (backends embed it first in their
 * own struct and recover it with container_of), one struct rmig_tp_chan per
 * data channel (the same). The control connection is always the core's TCP
 * socket; backends may read its addresses but never read or write it.
 *
 * Threads: connect/accept/listen/reg/set_remote run on the API caller's
 * thread before the channel threads start. write/zero/push/flush/marker run on the
 * source channel thread that owns the channel; progress runs on the
 * destination channel thread that owns it. shutdown may run on any thread at
 * any time, concurrently with everything else. destroy and chan_close run
 * after every channel thread has been joined.
 *
 * Errors: 0 or a negative errno. A backend that knows more than the errno
 * (a completion status, a QP number) reports it once through up->fail()
 * before returning; the first error of the session wins.
 */
#ifndef RMIG_TRANSPORT_H
#define RMIG_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "log.h"
#include "rmig.h"

struct rmig_msg_hello; /* wire.h */
struct rmig_place;     /* place.h */

#ifndef container_of
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

enum rmig_target_kind {
	RMIG_TGT_RAM = 1,   /* id = RAM block index, offset within the block */
	RMIG_TGT_STATE = 2, /* id = device-state blob id, offset within the blob */
};

/* Where bytes go at the destination. */
struct rmig_target {
	enum rmig_target_kind kind;
	uint32_t id;
	uint64_t offset;
	uint64_t total; /* STATE: the blob's full length; RAM: unused */
	/*
	 * RAM in postcopy: the destination must see these bytes arrive and
	 * place them itself (userfaultfd), so a backend that writes straight
	 * into remote memory (RDMA) sends them into a staging slot instead.
	 */
	bool staged;
};

/*
 * Destination upcalls: how a backend hands received data to the core. The
 * core validates every target against its blocks and blobs; a backend never
 * touches destination memory except through a pointer place() returned.
 */
struct rmig_tp_upcalls {
	void *arg;
	/*
	 * Where @len bytes for @t, received on channel @chan, land. Returns 0
	 * and *dst_p, or -EBADMSG / -ERANGE (already reported through fail())
	 * if the target is invalid. Non-blocking. The channel's receiving
	 * thread calls place() and then placed() for the same write before it
	 * places another on that channel: the core may hand out a buffer of
	 * the channel's own (postcopy stages pages there).
	 */
	int (*place)(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len,
		     void **dst_p);
	/* The @len bytes returned by place() for @t are now in memory. */
	int (*placed)(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len);
	/*
	 * The @len bytes for @t are at @src, a backend's own receive buffer:
	 * place them (UFFDIO_COPY straight from @src for a postcopy page under
	 * userfaultfd; otherwise place(), copy, placed()).
	 */
	int (*place_from)(void *arg, unsigned int chan, const struct rmig_target *t, const void *src,
			  uint64_t len);
	/*
	 * @len zero bytes for RAM target @t (a zero-page marker): the core
	 * checks the range and writes them, or skips the write where the
	 * destination memory is known to be zero already. The channel's
	 * receiving thread, as place().
	 */
	int (*zero)(void *arg, unsigned int chan, const struct rmig_target *t, uint64_t len);
	/*
	 * A sync marker with @id arrived on channel @chan; every byte the
	 * source posted on that channel before it is placed.
	 */
	int (*sync)(void *arg, unsigned int chan, uint64_t id);
	/* Report the session's error with a precise cause; returns @err. */
	int (*fail)(void *arg, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
	/*
	 * Local backends only (see ops->ctl): a control message that a peer
	 * would have sent the session (@payload of @len bytes, wire.h
	 * encoding), handled as the control thread handles one. Any thread.
	 */
	int (*ctl)(void *arg, uint16_t type, const uint8_t *payload, uint32_t len);
};

struct rmig_tp_params {
	const struct rmig_logger *log;
	const struct rmig_tp_upcalls *up;
	uint64_t session_id;
	unsigned int nchannels;
	unsigned int timeout_ms;
	uint32_t extent_max;
	uint64_t inflight_max;
	enum rmig_role role;
	/* RMIG_F_TLS: TLS on every TCP data channel (NULL: none; RDMA ignores it) */
	struct rmig_tls_conf *tls;
	/* local backends: the file ("file:PATH" without the prefix); else NULL */
	const char *path;
	unsigned int flags; /* the session's RMIG_F_* */
	uint64_t blob_max;  /* destination: the device state it takes, in all */
	/* placement (place.h): the destination's receive buffers go near the device; NULL: off,
	 * and always for a source (its channels open while the topology loads) */
	const struct rmig_place *place;
	/*
	 * Multi-rail: the address of this transport's rail, where it is not
	 * the control connection's (rail_addr_len 0). Destination: the local
	 * address to listen on (its port, 0: any); source: the destination's
	 * address to connect to (the port comes from the endpoint).
	 */
	struct sockaddr_storage rail_addr;
	socklen_t rail_addr_len;
};

struct rmig_tp {
	const struct rmig_transport_ops *ops;
	struct rmig_tp_params p;
};

struct rmig_tp_chan {
	struct rmig_tp *tp;
	unsigned int idx;
};

/* What a backend can do (ops->caps). */
#define RMIG_TP_CAP_TLS (1u << 0)       /* its data channels can carry TLS (RMIG_F_TLS) */
#define RMIG_TP_CAP_ONE_SIDED (1u << 1) /* writes land in the peer's memory with no peer CPU:
					 * reg() descriptors matter, staged writes use slots */
#define RMIG_TP_CAP_LOCAL (1u << 2)     /* no peer: the backend stands in (ctl, layout) */

struct rmig_transport_ops {
	/* sizeof(struct rmig_transport_ops) as the backend was built: ops are only appended */
	size_t size;
	const char *name;
	enum rmig_transport_kind kind;
	uint32_t caps; /* RMIG_TP_CAP_* */

	/*
	 * Optional (NULL: always usable): whether this backend can reach the
	 * peer of control socket @ctl_fd from here: 0, or -ENODEV with the
	 * reason in @why. Source, API thread, before create.
	 */
	int (*probe)(int ctl_fd, char *why, size_t why_len);

	/* Allocate the backend; copies @p. May block briefly (device open). */
	int (*create)(const struct rmig_tp_params *p, struct rmig_tp **tp_p);
	/* NULL-safe; after every channel is closed. Deregisters all memory. */
	void (*destroy)(struct rmig_tp *tp);

	/*
	 * Destination: open the data-channel listener on the local address of
	 * the control socket @ctl_fd and describe it in @ep (at most
	 * RMIG_EP_MAX bytes) for the source.
	 */
	int (*listen)(struct rmig_tp *tp, int ctl_fd, uint8_t *ep, uint16_t *ep_len_p);
	/*
	 * Destination: accept one data channel, waiting at most timeout_ms.
	 * The channel says its own index (checked < nchannels, session id
	 * checked); the core checks for duplicates.
	 */
	int (*accept)(struct rmig_tp *tp, struct rmig_tp_chan **ch_p);
	/* Source: open channel @idx to the peer of @ctl_fd at endpoint @ep. */
	int (*connect)(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
		       unsigned int idx, struct rmig_tp_chan **ch_p);

	/*
	 * Register RAM block @block. Destination: for remote write, filling a
	 * descriptor (at most RMIG_DESC_MAX bytes, may be empty) that the core
	 * sends to the source. Source: for local access; @desc unused.
	 */
	int (*reg)(struct rmig_tp *tp, unsigned int block, void *addr, uint64_t len,
		   uint8_t *desc, uint16_t *desc_len_p);
	/* Source: the destination's descriptor for @block. -EBADMSG if invalid. */
	int (*set_remote)(struct rmig_tp *tp, unsigned int block, uint64_t len,
			  const uint8_t *desc, uint16_t desc_len);

	/*
	 * Source data path. write: post the bytes of @iov (local memory of a
	 * registered block, or a device-state buffer) to @t on the peer. The
	 * memory must stay valid until flush() returns. zero: the peer zeroes
	 * @len bytes at @t. May block for back-pressure, at most timeout_ms.
	 */
	int (*write)(struct rmig_tp_chan *ch, const struct rmig_target *t, const struct iovec *iov,
		     int iovcnt);
	int (*zero)(struct rmig_tp_chan *ch, const struct rmig_target *t, uint64_t len);
	/* Wait until every write posted on @ch completed locally. */
	int (*flush)(struct rmig_tp_chan *ch);
	/* Post a sync marker ordered after every earlier write on @ch. */
	int (*marker)(struct rmig_tp_chan *ch, uint64_t id);
	/*
	 * Optional (NULL: writes go out as they are posted): a backend may
	 * gather what write/zero post and send it later; push sends all of it
	 * now. The core pushes at the end of every job, so a requested page
	 * never waits; flush and marker push first. Same thread as write.
	 */
	int (*push)(struct rmig_tp_chan *ch);

	/*
	 * Destination: wait for the next frame or completion on @ch and hand it
	 * to the upcalls. -ECANCELED once shutdown() was called.
	 */
	int (*progress)(struct rmig_tp_chan *ch);

	/* Any thread, idempotent: make every blocked call return soon. */
	void (*shutdown)(struct rmig_tp *tp);
	/* NULL-safe. */
	void (*chan_close)(struct rmig_tp_chan *ch);
	/*
	 * Optional (NULL: not known): the local device channel @ch goes
	 * through, its name into @name (@len bytes). Returns an enum
	 * rmig_dev_kind (place.h): RMIG_DEV_IB, RMIG_DEV_NET, or
	 * RMIG_DEV_NONE where not known. After connect/accept; API thread.
	 */
	int (*locate)(struct rmig_tp_chan *ch, char *name, size_t len);

	/*
	 * Local backends (the file backend; NULL in network ones): there is
	 * no peer and no control connection, and the backend stands in for
	 * the peer. The session sends it every control message it would send
	 * a peer (HELLO, STATE_BEGIN, COMPLETE, SYNC_ACK...: wire.h payloads)
	 * through ctl(), which ignores what it has no use for; the backend
	 * answers through up->ctl() (COMPLETE_ACK; at a destination
	 * STATE_BEGIN and COMPLETE), and acknowledges a source's sync marker
	 * through up->sync() once every earlier write on the channel returned.
	 * connect/accept take no control socket (-1) and no endpoint; listen
	 * and set_remote are not called. Any thread but a channel's own.
	 */
	int (*ctl)(struct rmig_tp *tp, uint16_t type, const uint8_t *payload, uint32_t len);
	/* Local destination, after create: the layout the file holds, as a source's HELLO. */
	int (*layout)(struct rmig_tp *tp, struct rmig_msg_hello *hello);
	/*
	 * Optional. Local destination, after create: the device-state blobs the
	 * file holds; fills at most @max of @out, returns how many there are.
	 */
	int (*blobs)(struct rmig_tp *tp, struct rmig_state_info *out, unsigned int max);

	/*
	 * Optional (NULL: accept/connect one at a time): several channels of
	 * one rail at once, for a backend whose connection setup takes round
	 * trips that overlap. accept_n: @n channels in whatever order they
	 * come, into @chs. connect_n: channels @idx[0..n), @chs[i] for
	 * @idx[i]. All or nothing: on an error no channel is left open. A
	 * source that has connect_n reaches a destination that uses accept_n.
	 */
	int (*accept_n)(struct rmig_tp *tp, unsigned int n, struct rmig_tp_chan **chs);
	int (*connect_n)(struct rmig_tp *tp, int ctl_fd, const uint8_t *ep, uint16_t ep_len,
			 const unsigned int *idx, unsigned int n, struct rmig_tp_chan **chs);
	/*
	 * Optional: start, on a thread of the backend's own, the process-wide
	 * setup its first create or probe would wait for (rmig_preload()).
	 * Returns at once; does its work once per process.
	 */
	void (*preload)(void);
	/*
	 * Optional (NULL: assumed to): whether this rail can carry data
	 * channels now, checked without a word to the peer and without
	 * up->fail(). Source: a route to the rail's address (p->rail_addr,
	 * else the control connection's peer) through a device whose link is
	 * up; destination: the same for its local address. 0 with the local
	 * device's name in @dev (may be empty), or a negative errno with the
	 * cause in @why. API thread, after create, before connect/listen.
	 */
	int (*reach)(struct rmig_tp *tp, int ctl_fd, char *dev, size_t dev_len, char *why,
		     size_t why_len);
};

extern const struct rmig_transport_ops rmig_tcp_ops;
/* Save to and restore from a file at fixed offsets (core/file.c, file.h). */
extern const struct rmig_transport_ops rmig_file_ops;

/* The RDMA backend's table, or NULL when rmig was built without it (rdma_none.c). */
const struct rmig_transport_ops *rmig_rdma_transport(void);

/*
 * The registry (tp_select.c): the backends this build holds, and the choice
 * of one for a session. rmig_tp_find(): the backend of kind @k, or NULL
 * when this build has none (@why, if not NULL, says so).
 */
const struct rmig_transport_ops *rmig_tp_find(enum rmig_transport_kind k, char *why,
					      size_t why_len);
/*
 * Source: the backend for a session that asks for @want over control socket
 * @ctl_fd, needing @need (RMIG_TP_CAP_*). TCP when asked. RDMA when asked:
 * the RDMA backend if its probe reaches the peer, else -ENODEV; RDMA with a
 * need it lacks: -EINVAL. AUTO: the first network backend (RDMA, then TCP)
 * that has what is needed and whose probe succeeds. Returns 0 (the choice
 * as asked), 1 (AUTO fell back from RDMA: worth a warning) or the error;
 * @why (@why_len bytes) says why either way.
 */
int rmig_tp_select(enum rmig_transport_kind want, uint32_t need, int ctl_fd,
		   const struct rmig_transport_ops **ops_p, char *why, size_t why_len);

/*
 * The address a backend listens on (@peer false) or connects to (@peer
 * true): the rail's (p->rail_addr), else the control connection's own
 * (@peer false: its local address; true: its peer's) with port 0. Then
 * @port, when not 0, replaces the port. 0 or a negative errno.
 */
int rmig_tp_addr(const struct rmig_tp_params *p, int ctl_fd, bool peer, uint16_t port,
		 struct sockaddr_storage *ss, socklen_t *len_p);

/*
 * TCP, destination: bytes read ahead of the frame parser, so that one recv
 * brings several small frames; a payload past what is buffered is read
 * straight into its place. Zero-initialise; one per channel.
 */
#define RMIG_TCP_READAHEAD (32u << 10)
struct rmig_tcp_rd {
	size_t head, tail;
	uint8_t buf[RMIG_TCP_READAHEAD];
};

/*
 * TCP: read one data frame from @fd (through @tls when not NULL; else
 * through the read-ahead @rd when not NULL) and apply it through @up
 * (bounds are the core's to check in place()). It waits as long as it
 * takes for the frame's first byte; from there the whole frame must arrive
 * within @timeout_ms (0: no bound), or -ETIMEDOUT. 0, or the error;
 * *io_err_p is set when reading the socket failed (and up->fail was not
 * called).
 */
struct rmig_tls;
int rmig_tcp_recv_frame(int fd, struct rmig_tls *tls, struct rmig_tcp_rd *rd, unsigned int idx,
			const struct rmig_tp_upcalls *up, unsigned int timeout_ms, int *io_err_p);

#endif
