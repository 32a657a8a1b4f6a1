/* SPDX-License-Identifier: MIT */
/*
 * info.c - `rdma-migrate info`: RDMA devices, ports, GIDs and NUMA nodes, the
 * memlock limit and hugepages, and a verdict on whether RDMA can be used
 * here, with the fix when it cannot.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#ifdef RMIG_HAVE_RDMA
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#endif

#include "tool.h"
#include "sdtrack.h"

static void hugepages(FILE *o, bool json)
{
	FILE *f = fopen("/proc/meminfo", "r");
	long total = 0, freep = 0, size_kb = 0;
	char line[256];

	while (f && fgets(line, sizeof(line), f)) {
		sscanf(line, "HugePages_Total: %ld", &total);
		sscanf(line, "HugePages_Free: %ld", &freep);
		sscanf(line, "Hugepagesize: %ld kB", &size_kb);
	}
	if (f)
		fclose(f);
	if (json)
		fprintf(o, "\"hugepages\":{\"total\":%ld,\"free\":%ld,\"size_kB\":%ld}", total,
			freep, size_kb);
	else
		fprintf(o, "hugepages: %ld total, %ld free, %ld kB each%s\n", total, freep, size_kb,
			total ? "" : " (hugepage images need: sysctl vm.nr_hugepages=N)");
}

struct verdict {
	int devices;
	int active_ports;
	bool memlock_ok;
	char why[512];
};

#ifdef RMIG_HAVE_RDMA
static const char *port_state(enum ibv_port_state s)
{
	return ibv_port_state_str(s);
}

static void list_devices(FILE *o, bool json, struct verdict *v, bool topo)
{
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);

	if (json)
		fprintf(o, "\"devices\":[");
	for (int i = 0; list && i < n; i++) {
		struct ibv_context *ctx = ibv_open_device(list[i]);
		struct ibv_device_attr da;
		const char *name = ibv_get_device_name(list[i]);
		struct rmig_chan_place loc = { .numa_node = -1 };

		/* device -> NUMA node -> the CPUs near it, as placement sees them */
		if (topo && rmig_device_place(name, &loc, sizeof(loc)))
			loc.numa_node = -1;
		v->devices++;
		if (json) {
			fprintf(o, "%s{\"name\":", i ? "," : "");
			tool_json_str(o, name);
			fprintf(o, ",\"numa_node\":%d,\"cpus\":", loc.numa_node);
			tool_json_str(o, loc.cpus);
			fprintf(o, ",\"ports\":[");
		} else {
			fprintf(o, "device %s: numa node %d, cpus %s\n", name, loc.numa_node,
				loc.cpus[0] ? loc.cpus : "unknown (no topology)");
		}
		if (!ctx || ibv_query_device(ctx, &da)) {
			if (json)
				fprintf(o, "]}");
			else
				fprintf(o, "  cannot open: %s\n", strerror(errno));
			if (ctx)
				ibv_close_device(ctx);
			continue;
		}
		for (uint8_t p = 1; p <= da.phys_port_cnt; p++) {
			struct ibv_port_attr pa;
			bool first = true;

			if (ibv_query_port(ctx, p, &pa))
				continue;
			if (pa.state == IBV_PORT_ACTIVE)
				v->active_ports++;
			if (json)
				fprintf(o, "%s{\"port\":%u,\"state\":\"%s\",\"mtu\":%d,\"gids\":[",
					p > 1 ? "," : "", p, port_state(pa.state),
					128 << pa.active_mtu);
			else
				fprintf(o, "  port %u: %s, mtu %d, link %s\n", p, port_state(pa.state),
					128 << pa.active_mtu,
					pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "ethernet (RoCE)" :
										   "infiniband");
			for (int g = 0; g < pa.gid_tbl_len && g < 64; g++) {
				union ibv_gid gid;
				char txt[INET6_ADDRSTRLEN];
				static const uint8_t zero[16];

				if (ibv_query_gid(ctx, p, g, &gid) || !memcmp(gid.raw, zero, 16))
					continue;
				inet_ntop(AF_INET6, gid.raw, txt, sizeof(txt));
				if (json)
					fprintf(o, "%s{\"index\":%d,\"gid\":\"%s\"}", first ? "" : ",",
						g, txt);
				else
					fprintf(o, "    gid %d: %s\n", g, txt);
				first = false;
			}
			if (json)
				fprintf(o, "]}");
		}
		if (json)
			fprintf(o, "]}");
		ibv_close_device(ctx);
	}
	if (json)
		fprintf(o, "],");
	if (list)
		ibv_free_device_list(list);
}
#endif

int tool_info(const struct cli *c)
{
	struct verdict v = { 0 };
	struct rlimit rl;
	bool json = c->json, root = geteuid() == 0;
	bool kernel = access("/sys/class/infiniband", F_OK) == 0;
	bool uverbs = access("/dev/infiniband", F_OK) == 0;
	FILE *o = stdout;
	char ml[64];

	getrlimit(RLIMIT_MEMLOCK, &rl);
	if (rl.rlim_cur == RLIM_INFINITY)
		snprintf(ml, sizeof(ml), "unlimited");
	else
		snprintf(ml, sizeof(ml), "%llu KiB", (unsigned long long)rl.rlim_cur / 1024);
	/* CAP_IPC_LOCK (root) lifts the limit for registration. */
	v.memlock_ok = root || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (1ull << 30);
	if (json)
		fprintf(o, "{\"rdma_backend_built\":%s,", tool_rdma_built() ? "true" : "false");
	else
		fprintf(o, "rdma backend: %s\n", tool_rdma_built() ? "built" :
					"not built (libibverbs/librdmacm missing at build time)");
	char why[256] = "";
	struct rmig_topology topo;
	bool pl = !rmig_get_topology(&topo, sizeof(topo), why, sizeof(why));

#ifdef RMIG_HAVE_RDMA
	list_devices(o, json, &v, pl);
#endif
	/* placement: what channel threads and buffers are bound by */
	if (json) {
		fprintf(o, "\"placement\":{\"topology\":%s,\"numa_nodes\":%u,\"cpus\":%u",
			pl ? "true" : "false", pl ? topo.numa_nodes : 0, pl ? topo.cpus : 0);
		if (!pl) {
			fprintf(o, ",\"why\":");
			tool_json_str(o, why);
		}
		fprintf(o, "},");
	} else if (pl) {
		fprintf(o, "placement: hwloc topology, %u NUMA node%s, %u cpus; each channel thread "
			   "is bound near its device unless --no-bind\n",
			topo.numa_nodes, topo.numa_nodes == 1 ? "" : "s", topo.cpus);
	} else {
		fprintf(o, "placement: off (%s)\n", why);
	}
	if (!json) {
		fprintf(o, "kernel rdma support: %s\n", kernel ? "yes (/sys/class/infiniband)" :
							       "no (/sys/class/infiniband missing)");
		fprintf(o, "memlock limit: %s%s\n", ml, root ? " (root: CAP_IPC_LOCK lifts it)" : "");
	} else {
		fprintf(o, "\"kernel_rdma\":%s,\"memlock\":\"%s\",\"root\":%s,", kernel ? "true" : "false",
			ml, root ? "true" : "false");
	}
	hugepages(o, json);
	{
		char sdw[160];
		bool sd = sdtrack_works(sdw, sizeof(sdw));

		/* vm-send --track auto: soft-dirty where the bits work (and the RAM stays put) */
		if (json)
			fprintf(o, ",\"soft_dirty\":%s,\"soft_dirty_why\":\"%s\","
				   "\"vm_tracking\":\"%s\"",
				sd ? "true" : "false", sdw, sd ? "soft-dirty" : "shadow-compare");
		else
			fprintf(o, "soft-dirty tracking: %s (%s)\nvm-send dirty tracking: %s\n",
				sd ? "works" : "unavailable", sdw,
				sd ? "soft-dirty bits of QEMU's page tables (exact while its RAM is not "
				     "reclaimed; else shadow compare)" :
				     "shadow compare (exact; a copy of guest RAM)");
	}

	if (!tool_rdma_built())
		snprintf(v.why, sizeof(v.why),
			 "rmig was built without rdma: install libibverbs-dev and librdmacm-dev, "
			 "then rebuild");
	else if (!kernel)
		snprintf(v.why, sizeof(v.why),
			 "this kernel has no RDMA support (no /sys/class/infiniband): use a kernel "
			 "with RDMA drivers, or soft-RoCE: modprobe rdma_rxe && rdma link add rxe0 "
			 "type rxe netdev IFACE");
	else if (!v.devices)
		snprintf(v.why, sizeof(v.why),
			 "no RDMA devices%s: load the NIC's driver, or for soft-RoCE run "
			 "'rdma link add rxe0 type rxe netdev IFACE'",
			 uverbs ? "" : " (/dev/infiniband missing: modprobe ib_uverbs)");
	else if (!v.active_ports)
		snprintf(v.why, sizeof(v.why),
			 "no RDMA port is ACTIVE: check the link and the netdev under it");
	else if (!v.memlock_ok)
		snprintf(v.why, sizeof(v.why),
			 "memlock limit %s is too low to register guest RAM: raise it to at least "
			 "the image size (ulimit -l unlimited, LimitMEMLOCK=infinity, or "
			 "/etc/security/limits.conf)",
			 ml);
	if (json)
		fprintf(o, ",\"rdma_usable\":%s,\"why\":\"%s\"}\n", v.why[0] ? "false" : "true",
			v.why);
	else if (v.why[0])
		fprintf(o, "rdma usable: no: %s\n", v.why);
	else
		fprintf(o, "rdma usable: yes (%d device%s, %d active port%s)\n", v.devices,
			v.devices == 1 ? "" : "s", v.active_ports, v.active_ports == 1 ? "" : "s");
	return 0;
}
