/* SPDX-License-Identifier: MIT */
/*
 * fake_tp.h - an in-memory transport for unit tests. Source writes are held
 * back (as an RDMA NIC holds posted work) and applied to the destination only
 * at flush(), so a core that posted a sync marker without flushing first
 * would be caught; a staged write (postcopy: a message, not a one-sided
 * write) is applied at once. Writes are applied on the posting (source)
 * thread, not on the destination channel's thread as a real receiver
 * would: a test of placement hooks that need the destination channel's
 * thread to have started waits for it. Failures are injected by count.
 */
#ifndef FAKE_TP_H
#define FAKE_TP_H

#include "transport.h"

struct fake_ctl {
	int fail_write_at;  /* fail the Nth write (1-based) with -EIO; 0 = never */
	int drop_markers;   /* markers vanish: syncs never complete */
	int hold_chan0;     /* channel 0 applies its writes only after another channel has
			     * applied writes or sent a marker (reordering across channels,
			     * by events, not by a delay); capped at 10 s */
	int writes;         /* writes seen (a queued write counts once its bytes are read) */
	int markers;        /* markers delivered */
	int flushes;        /* flushes that applied something */
};

extern struct fake_ctl fake_ctl;
extern const struct rmig_transport_ops fake_ops;
void fake_reset(void);

#endif
