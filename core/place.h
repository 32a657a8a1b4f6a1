/* SPDX-License-Identifier: MIT */
/*
 * place.h - placement with hwloc: where each device a channel goes through
 * sits (its NUMA node and the CPUs near it), binding a channel thread and
 * its buffers there, and where a RAM block's memory lies.
 *
 * A struct rmig_place is one loaded topology, read-only once loaded, so any
 * thread may use it. The topology is this machine's (hwloc honours
 * HWLOC_XMLFILE and friends), or an XML file for tests; only a topology of
 * this machine binds anything.
 *
 * A device with no locality (no PCI parent, as a soft-RoCE or loopback
 * device, or attached to the whole machine) has node -1 and the machine's
 * CPUs: nothing is bound for it.
 */
#ifndef RMIG_PLACE_H
#define RMIG_PLACE_H

#include <stdbool.h>
#include <stddef.h>

#include <hwloc.h>

#include "log.h"

enum rmig_dev_kind {
	RMIG_DEV_NONE = 0,
	RMIG_DEV_IB,  /* an RDMA device, by its verbs name (mlx5_0, rxe0) */
	RMIG_DEV_NET, /* a network interface, by its name (eth0, lo) */
};

struct rmig_place;

struct rmig_loc {
	char dev[32];     /* the device's name; "" when none is known */
	int node;         /* the one NUMA node it sits on; -1: no locality */
	char cpus[64];    /* the CPUs near it, as a list ("0-3,8"); "" unknown */
	bool bound;       /* a thread was bound to them */
	hwloc_cpuset_t cpuset;   /* owned; NULL when unknown */
	hwloc_nodeset_t nodeset; /* owned; NULL when unknown */
};

/*
 * Load a topology: this machine's (@xml NULL) or the one in file @xml.
 * Returns 0, or a negative errno with the cause in @err.
 */
int rmig_place_load(struct rmig_place **pp, const char *xml, char *err, size_t errlen);
/*
 * This machine's topology, or where the environment names one,
 * RMIG_TOPOLOGY (an hwloc XML file, as `lstopo FILE.xml` writes it), taken
 * as this machine's: for hosts (containers) whose sysfs hides the devices.
 */
int rmig_place_load_machine(struct rmig_place **pp, char *err, size_t errlen);
void rmig_place_free(struct rmig_place *pl); /* NULL-safe */
/* The number of NUMA nodes and of CPUs (PUs) it holds. */
unsigned int rmig_place_nodes(const struct rmig_place *pl);
unsigned int rmig_place_cpus(const struct rmig_place *pl);
/* Whether it describes this machine (binding works). */
bool rmig_place_this_system(const struct rmig_place *pl);

/*
 * Where device @name of @kind sits. Fills @loc (release it with
 * rmig_loc_fini()) with the device's NUMA node and CPUs: those of its
 * nearest non-I/O ancestor in the topology, or on this machine sysfs's
 * local_cpus where hwloc has no object for it. A device hwloc does not know
 * has no locality (node -1, the machine's CPUs). Returns 0 or -ENOMEM.
 */
int rmig_place_locate(const struct rmig_place *pl, enum rmig_dev_kind kind, const char *name,
		      struct rmig_loc *loc);
void rmig_loc_fini(struct rmig_loc *loc); /* NULL-safe, idempotent */

/*
 * Bind the calling thread to @loc's CPUs, where it has a locality and @pl
 * is this machine. Sets loc->bound. Returns 0, or a negative errno.
 */
int rmig_place_bind_thread(const struct rmig_place *pl, struct rmig_loc *loc);

/*
 * Ask that the pages of [addr, addr+len) (not yet touched, or moved if they
 * were) lie on @loc's node. Nothing when @loc has no locality; failure is
 * only a missed optimisation, so nothing is returned. NULL @pl or @loc: no-op.
 */
void rmig_place_membind(const struct rmig_place *pl, const struct rmig_loc *loc, void *addr,
			size_t len);

/* rmig_place_membind() for device @name of @kind, located here. */
void rmig_place_membind_dev(const struct rmig_place *pl, enum rmig_dev_kind kind,
			    const char *name, void *addr, size_t len);

/*
 * The NUMA nodes that the resident pages of [addr, addr+len) sit on, into
 * @nodes (allocated by the caller), sampling at most 64 pages. Returns the
 * number of nodes found (0: no page resident, or unknown), or a negative errno.
 */
int rmig_place_area_nodes(const struct rmig_place *pl, const void *addr, size_t len,
			  hwloc_nodeset_t nodes);

/*
 * Whether memory on @mem_nodes is remote from every located device in
 * @locs[0..n): true only when some device has a node and none of those
 * nodes holds the memory. Writes the devices' nodes as a list into @devs.
 */
bool rmig_place_is_remote(hwloc_const_nodeset_t mem_nodes, const struct rmig_loc *locs,
			  unsigned int n, char *devs, size_t devs_len);

#endif
