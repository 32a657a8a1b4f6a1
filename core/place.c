/* SPDX-License-Identifier: MIT */
/*
 * place.c - placement with hwloc: see place.h.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hwloc/linux.h>

#include "place.h"

struct rmig_place {
	hwloc_topology_t topo;
	bool this_system;
};

static const char *const skip[] = { "pci", "opencl", "gl", "cuda", "nvml", "rsmi", "levelzero" };

static int load(struct rmig_place **pp, const char *xml, bool mine, char *err, size_t errlen)
{
	struct rmig_place *pl = calloc(1, sizeof(*pl));
	int rc;

	*pp = NULL;
	if (!pl) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (hwloc_topology_init(&pl->topo)) {
		rc = -errno;
		snprintf(err, errlen, "hwloc_topology_init: %s", strerror(errno));
		free(pl);
		return rc ? rc : -EIO;
	}
	/* the network and RDMA devices (and, from a file, the PCI tree above them) */
	hwloc_topology_set_io_types_filter(pl->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	/*
	 * No caches: placement needs NUMA nodes, CPUs and devices only, and
	 * reading every CPU's cache levels from sysfs is most of the load on a
	 * big machine (it sits before the data channels open).
	 */
	hwloc_topology_set_cache_types_filter(pl->topo, HWLOC_TYPE_FILTER_KEEP_NONE);
	hwloc_topology_set_icache_types_filter(pl->topo, HWLOC_TYPE_FILTER_KEEP_NONE);
	/*
	 * Linux's own backend finds the PCI tree and each device's locality in
	 * sysfs. The libpciaccess plugin would add only device names, for a
	 * third more time (and memory it never frees); the GPU plugins add
	 * devices no channel goes through. A name not built in is ignored.
	 */
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		(void)hwloc_topology_set_components(pl->topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
						    skip[i]);
	/*
	 * This machine: no PCI device or bridge objects. The network and RDMA
	 * devices stay, each under the CPUs and NUMA node near it (hwloc
	 * finds that from the device's own locality in sysfs), which is all
	 * placement asks. Classifying the PCI tree reads every device's
	 * config space, which in a virtual machine traps to the hypervisor:
	 * 8 of the 9 ms of a load on a 6-device VM. A file keeps its tree.
	 */
	if (!xml) {
		hwloc_topology_set_type_filter(pl->topo, HWLOC_OBJ_PCI_DEVICE,
					       HWLOC_TYPE_FILTER_KEEP_NONE);
		hwloc_topology_set_type_filter(pl->topo, HWLOC_OBJ_BRIDGE, HWLOC_TYPE_FILTER_KEEP_NONE);
	}
	if (xml && hwloc_topology_set_xml(pl->topo, xml)) {
		rc = errno ? -errno : -EINVAL;
		snprintf(err, errlen, "cannot read the topology in %s%s: %s", xml,
			 mine ? " (RMIG_TOPOLOGY)" : "", strerror(-rc));
		goto fail;
	}
	/* a file that stands for this machine: binding applies */
	if (xml && mine)
		hwloc_topology_set_flags(pl->topo, HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM);
	if (hwloc_topology_load(pl->topo)) {
		rc = errno ? -errno : -EIO;
		/* a file hwloc may refuse here rather than at set_xml: the same words */
		if (xml)
			snprintf(err, errlen, "cannot read the topology in %s%s: %s", xml,
				 mine ? " (RMIG_TOPOLOGY)" : "", strerror(-rc));
		else
			snprintf(err, errlen, "hwloc cannot read the topology of this machine: %s",
				 strerror(-rc));
		goto fail;
	}
	pl->this_system = hwloc_topology_is_thissystem(pl->topo);
	*pp = pl;
	return 0;
fail:
	hwloc_topology_destroy(pl->topo);
	free(pl);
	return rc;
}

int rmig_place_load(struct rmig_place **pp, const char *xml, char *err, size_t errlen)
{
	return load(pp, xml, false, err, errlen);
}

int rmig_place_load_machine(struct rmig_place **pp, char *err, size_t errlen)
{
	const char *xml = getenv("RMIG_TOPOLOGY");

	return load(pp, xml && *xml ? xml : NULL, true, err, errlen);
}

void rmig_place_free(struct rmig_place *pl)
{
	if (!pl)
		return;
	hwloc_topology_destroy(pl->topo);
	free(pl);
}

unsigned int rmig_place_nodes(const struct rmig_place *pl)
{
	int n = hwloc_get_nbobjs_by_type(pl->topo, HWLOC_OBJ_NUMANODE);

	return n > 0 ? (unsigned int)n : 0;
}

unsigned int rmig_place_cpus(const struct rmig_place *pl)
{
	int n = hwloc_get_nbobjs_by_type(pl->topo, HWLOC_OBJ_PU);

	return n > 0 ? (unsigned int)n : 0;
}

bool rmig_place_this_system(const struct rmig_place *pl)
{
	return pl->this_system;
}

static hwloc_obj_t find_osdev(hwloc_topology_t t, enum rmig_dev_kind kind, const char *name)
{
	hwloc_obj_osdev_type_t want =
		kind == RMIG_DEV_IB ? HWLOC_OBJ_OSDEV_OPENFABRICS : HWLOC_OBJ_OSDEV_NETWORK;

	for (hwloc_obj_t o = hwloc_get_next_osdev(t, NULL); o; o = hwloc_get_next_osdev(t, o))
		if (o->attr->osdev.type == want && o->name && !strcmp(o->name, name))
			return o;
	return NULL;
}

/*
 * This machine, a device hwloc has no object for: the CPUs sysfs says are
 * local to its parent device (what hwloc's own openfabrics-verbs.h helper
 * hwloc_ibv_get_device_cpuset() reads), if it has one.
 */
static int sysfs_cpus(hwloc_topology_t t, enum rmig_dev_kind kind, const char *name,
		      hwloc_cpuset_t set)
{
	char path[256];

	if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	snprintf(path, sizeof(path), "/sys/class/%s/%s/device/local_cpus",
		 kind == RMIG_DEV_IB ? "infiniband" : "net", name);
	if (access(path, R_OK) || hwloc_linux_read_path_as_cpumask(path, set))
		return -ENOENT;
	hwloc_bitmap_and(set, set, hwloc_topology_get_topology_cpuset(t));
	return hwloc_bitmap_iszero(set) ? -ENOENT : 0;
}

int rmig_place_locate(const struct rmig_place *pl, enum rmig_dev_kind kind, const char *name,
		      struct rmig_loc *loc)
{
	hwloc_topology_t t = pl->topo;
	hwloc_obj_t o = name && *name ? find_osdev(t, kind, name) : NULL;

	memset(loc, 0, sizeof(*loc));
	loc->node = -1;
	snprintf(loc->dev, sizeof(loc->dev), "%s", name ? name : "");
	loc->cpuset = hwloc_bitmap_alloc();
	loc->nodeset = hwloc_bitmap_alloc();
	if (!loc->cpuset || !loc->nodeset) {
		rmig_loc_fini(loc);
		return -ENOMEM;
	}
	if (o) {
		hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(t, o);

		hwloc_bitmap_copy(loc->cpuset, anc->cpuset);
		hwloc_bitmap_copy(loc->nodeset, anc->nodeset);
	} else if (pl->this_system && name && *name && !sysfs_cpus(t, kind, name, loc->cpuset)) {
		hwloc_cpuset_to_nodeset(t, loc->cpuset, loc->nodeset);
	} else {
		hwloc_bitmap_copy(loc->cpuset, hwloc_topology_get_topology_cpuset(t));
		hwloc_bitmap_copy(loc->nodeset, hwloc_topology_get_topology_nodeset(t));
	}
	if (hwloc_bitmap_weight(loc->nodeset) == 1)
		loc->node = hwloc_bitmap_first(loc->nodeset);
	hwloc_bitmap_list_snprintf(loc->cpus, sizeof(loc->cpus), loc->cpuset);
	return 0;
}

void rmig_loc_fini(struct rmig_loc *loc)
{
	if (!loc)
		return;
	hwloc_bitmap_free(loc->cpuset);
	hwloc_bitmap_free(loc->nodeset);
	loc->cpuset = NULL;
	loc->nodeset = NULL;
}

/* Whether @loc narrows anything down: some CPUs, not all of them. */
static bool has_locality(const struct rmig_place *pl, const struct rmig_loc *loc)
{
	return loc->cpuset && !hwloc_bitmap_iszero(loc->cpuset) &&
	       !hwloc_bitmap_isincluded(hwloc_topology_get_topology_cpuset(pl->topo), loc->cpuset);
}

int rmig_place_bind_thread(const struct rmig_place *pl, struct rmig_loc *loc)
{
	loc->bound = false;
	if (!pl || !pl->this_system || !has_locality(pl, loc))
		return 0;
	if (hwloc_set_cpubind(pl->topo, loc->cpuset, HWLOC_CPUBIND_THREAD))
		return errno ? -errno : -EINVAL;
	loc->bound = true;
	return 0;
}

void rmig_place_membind(const struct rmig_place *pl, const struct rmig_loc *loc, void *addr,
			size_t len)
{
	if (!pl || !loc || !pl->this_system || loc->node < 0 || !addr || !len ||
	    rmig_place_nodes(pl) < 2)
		return;
	(void)hwloc_set_area_membind(pl->topo, addr, len, loc->nodeset, HWLOC_MEMBIND_BIND,
				     HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE);
}

void rmig_place_membind_dev(const struct rmig_place *pl, enum rmig_dev_kind kind,
			    const char *name, void *addr, size_t len)
{
	struct rmig_loc loc;

	if (!pl || !pl->this_system || rmig_place_nodes(pl) < 2 ||
	    rmig_place_locate(pl, kind, name, &loc))
		return;
	rmig_place_membind(pl, &loc, addr, len);
	rmig_loc_fini(&loc);
}

#define AREA_SAMPLES 64

int rmig_place_area_nodes(const struct rmig_place *pl, const void *addr, size_t len,
			  hwloc_nodeset_t nodes)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096;
	hwloc_nodeset_t one = hwloc_bitmap_alloc();
	size_t n = (len + page - 1) / page, step;

	if (!one)
		return -ENOMEM;
	hwloc_bitmap_zero(nodes);
	step = n > AREA_SAMPLES ? n / AREA_SAMPLES : 1;
	for (size_t i = 0; i < n; i += step) {
		uintptr_t a = ((uintptr_t)addr + i * page) & ~(uintptr_t)(page - 1);

		if (hwloc_get_area_memlocation(pl->topo, (const void *)a, page, one,
					       HWLOC_MEMBIND_BYNODESET)) {
			int rc = errno ? -errno : -ENOSYS;

			hwloc_bitmap_free(one);
			return rc;
		}
		hwloc_bitmap_or(nodes, nodes, one);
	}
	hwloc_bitmap_free(one);
	return hwloc_bitmap_weight(nodes) > 0 ? hwloc_bitmap_weight(nodes) : 0;
}

bool rmig_place_is_remote(hwloc_const_nodeset_t mem_nodes, const struct rmig_loc *locs,
			  unsigned int n, char *devs, size_t devs_len)
{
	hwloc_nodeset_t near = hwloc_bitmap_alloc();
	size_t off = 0;
	bool remote;

	if (devs_len)
		devs[0] = '\0';
	if (!near)
		return false;
	for (unsigned int i = 0; i < n; i++) {
		bool seen = false;

		if (locs[i].node < 0)
			continue;
		for (unsigned int j = 0; j < i; j++)
			seen |= locs[j].node == locs[i].node && !strcmp(locs[j].dev, locs[i].dev);
		hwloc_bitmap_set(near, (unsigned int)locs[i].node);
		if (!seen && off < devs_len) {
			int w = snprintf(devs + off, devs_len - off, "%s%s (node %d)", off ? ", " : "",
					 locs[i].dev, locs[i].node);
			off += w > 0 ? (size_t)w : 0;
		}
	}
	remote = !hwloc_bitmap_iszero(near) && !hwloc_bitmap_iszero(mem_nodes) &&
		 !hwloc_bitmap_intersects(near, mem_nodes);
	hwloc_bitmap_free(near);
	return remote;
}
