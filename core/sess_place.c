/* SPDX-License-Identifier: MIT */
/*
 * sess_place.c - a session's placement: the topology loaded (on a thread
 * of its own from connect or listen on, which under TCG or on a large
 * machine takes a tenth of a second or more, so it overlaps the connect
 * and the opening of the data channels, or the wait for a source; the
 * destination's transport creation waits for it, for its receive buffers,
 * the source only before its channel threads start), each
 * data channel located by the device it goes
 * through before its thread starts, the thread bound there, RAM blocks far
 * from every device warned about, and rmig_get_placement().
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sess.h"
#include "sized.h"

static bool place_wanted(const struct rmig_session *s)
{
	return !s->place && !s->local && !(s->opts.flags & RMIG_F_NO_BIND);
}

static void *place_main(void *arg)
{
	struct rmig_session *s = arg;

	s->place_rc = rmig_place_load_machine(&s->place_loaded, s->place_why, sizeof(s->place_why));
	return NULL;
}

void rmig_sess_place_prefetch(struct rmig_session *s)
{
	if (place_wanted(s) && !s->place_th_started)
		s->place_th_started = !pthread_create(&s->place_th, NULL, place_main, s);
}

/* Wait for the prefetch's thread, if one runs. */
static void place_join(struct rmig_session *s)
{
	if (s->place_th_started)
		pthread_join(s->place_th, NULL);
	s->place_th_started = false;
}

void rmig_sess_place_load(struct rmig_session *s)
{
	if (s->place_done || !place_wanted(s))
		return;
	s->place_done = true;
	if (s->place_th_started)
		place_join(s);
	else
		place_main(s); /* no prefetch: load it here */
	s->place = s->place_loaded;
	s->place_loaded = NULL;
	if (s->place_rc)
		rmig_warn(&s->log, "placement off: %s", s->place_why);
}

void rmig_sess_place_chan(struct rmig_session *s, struct rmig_chan *c)
{
	char name[sizeof(c->loc.dev)] = "";
	int kind = RMIG_DEV_NONE;

	rmig_loc_fini(&c->loc); /* a channel moved mid-session was placed before */
	if (rmig_chan_ops(c)->locate && c->tch)
		kind = rmig_chan_ops(c)->locate(c->tch, name, sizeof(name));
	if (s->place && kind != RMIG_DEV_NONE &&
	    !rmig_place_locate(s->place, (enum rmig_dev_kind)kind, name, &c->loc)) {
		rmig_info(&s->log, "channel %u: %s, NUMA node %d, cpus %s", c->idx, c->loc.dev,
			  c->loc.node, c->loc.cpus);
		return;
	}
	memset(&c->loc, 0, sizeof(c->loc));
	c->loc.node = -1;
	snprintf(c->loc.dev, sizeof(c->loc.dev), "%s", name);
}

/* A RAM block whose resident pages sit on no node of any channel's device. */
static void check_blocks(struct rmig_session *s)
{
	struct rmig_loc locs[RMIG_CHANNELS_MAX];
	hwloc_nodeset_t mem = hwloc_bitmap_alloc();
	char devs[256], nodes[64];

	if (!mem)
		return;
	for (unsigned int i = 0; i < s->nchannels && i < RMIG_CHANNELS_MAX; i++)
		locs[i] = s->chans[i].loc; /* shallow: read-only here */
	for (unsigned int b = 0; b < s->nblocks; b++) {
		const struct rmig_block *blk = &s->blocks[b];

		if (rmig_place_area_nodes(s->place, blk->host, blk->length, mem) <= 0)
			continue;
		if (!rmig_place_is_remote(mem, locs, s->nchannels, devs, sizeof(devs)))
			continue;
		hwloc_bitmap_list_snprintf(nodes, sizeof(nodes), mem);
		rmig_warn(&s->log,
			  "ram block '%s' sits on NUMA node %s, but the devices that move it are "
			  "on other nodes: %s; every byte crosses the interconnect",
			  blk->name, nodes, devs);
	}
	hwloc_bitmap_free(mem);
}

void rmig_sess_place_chans(struct rmig_session *s)
{
	if (s->placed || !s->chans)
		return;
	rmig_sess_place_load(s); /* the source's channels opened while it loaded */
	for (unsigned int i = 0; i < s->nchannels; i++)
		rmig_sess_place_chan(s, &s->chans[i]);
	s->placed = true;
	/* one NUMA node: no memory is far from any device */
	if (s->place && rmig_place_nodes(s->place) > 1)
		check_blocks(s);
}

void rmig_chan_bind(struct rmig_chan *c)
{
	struct rmig_session *s = c->s;
	struct rmig_loc tmp;
	int rc;

	if (!s->place || !s->placed)
		return;
	tmp = c->loc; /* the thread writes only loc.bound, atomically */
	rc = rmig_place_bind_thread(s->place, &tmp);
	if (rc)
		rmig_warn(&s->log, "channel %u: binding to cpus %s near %s: %s", c->idx, c->loc.cpus,
			  c->loc.dev, strerror(-rc));
	__atomic_store_n(&c->loc.bound, tmp.bound, __ATOMIC_RELEASE);
}

void rmig_sess_place_fini(struct rmig_session *s)
{
	place_join(s);
	rmig_place_free(s->place_loaded);
	s->place_loaded = NULL;
	for (unsigned int i = 0; s->chans && i < s->nchannels; i++)
		rmig_loc_fini(&s->chans[i].loc);
	rmig_place_free(s->place);
	s->place = NULL;
}

int rmig_get_placement(rmig_session *s, unsigned int chan, struct rmig_chan_place *p, size_t size)
{
	struct rmig_chan_place full;
	const struct rmig_chan *c;

	if (!s || !p || !size || !s->placed || chan >= s->nchannels)
		return -EINVAL;
	c = &s->chans[chan];
	memset(&full, 0, sizeof(full));
	snprintf(full.device, sizeof(full.device), "%s", c->loc.dev);
	full.numa_node = c->loc.node;
	snprintf(full.cpus, sizeof(full.cpus), "%s", c->loc.cpus);
	full.bound = __atomic_load_n(&c->loc.bound, __ATOMIC_ACQUIRE) ? 1 : 0;
	full.rail = rmig_chan_rail(s, chan);
	snprintf(full.rail_addr, sizeof(full.rail_addr), "%s", s->rail[full.rail].name);
	rmig_copy_sized(p, size, &full, sizeof(full));
	return 0;
}
