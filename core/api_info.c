/* SPDX-License-Identifier: MIT */
/*
 * api_info.c - what this library and this machine offer, without a session:
 * the transports built in, and the topology channel placement works from
 * (for `rdma-migrate info`, or a VMM that reports where its channels would
 * run).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "place.h"
#include "rmig.h"
#include "sized.h"
#include "transport.h"

int rmig_transport_built(enum rmig_transport_kind k)
{
	return rmig_tp_find(k, NULL, 0) != NULL;
}

void rmig_preload(void)
{
	const struct rmig_transport_ops *rdma = rmig_rdma_transport();

	if (rdma && rdma->preload)
		rdma->preload();
}

int rmig_get_topology(struct rmig_topology *t, size_t size, char *why, size_t whylen)
{
	struct rmig_topology full = { 0 };
	struct rmig_place *pl = NULL;
	char err[256] = "";
	int rc;

	if (!t || !size)
		return -EINVAL;
	rc = rmig_place_load_machine(&pl, err, sizeof(err));
	if (!rc) {
		full.numa_nodes = rmig_place_nodes(pl);
		full.cpus = rmig_place_cpus(pl);
	}
	rmig_place_free(pl);
	if (why && whylen)
		snprintf(why, whylen, "%s", rc ? err : "");
	rmig_copy_sized(t, size, &full, sizeof(full));
	return rc;
}

int rmig_device_place(const char *device, struct rmig_chan_place *p, size_t size)
{
	struct rmig_chan_place full;
	struct rmig_loc loc = { .node = -1 };
	struct rmig_place *pl = NULL;
	char err[256], path[320];
	const char *xml;
	int rc;

	if (!device || !*device || !p || !size || strchr(device, '/'))
		return -EINVAL;
	rc = rmig_place_load_machine(&pl, err, sizeof(err));
	/*
	 * A name that is no device here is an error, not "anywhere" (unless a
	 * topology file, RMIG_TOPOLOGY, stands for this machine and its devices)
	 */
	xml = getenv("RMIG_TOPOLOGY");
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s", device);
	if (!rc && !(xml && *xml) && access(path, F_OK))
		rc = -ENODEV;
	if (!rc)
		rc = rmig_place_locate(pl, RMIG_DEV_IB, device, &loc);
	rmig_place_free(pl);
	if (rc) {
		rmig_loc_fini(&loc);
		return rc;
	}
	memset(&full, 0, sizeof(full));
	snprintf(full.device, sizeof(full.device), "%s", device);
	full.numa_node = loc.node;
	snprintf(full.cpus, sizeof(full.cpus), "%s", loc.cpus);
	rmig_loc_fini(&loc);
	rmig_copy_sized(p, size, &full, sizeof(full));
	return 0;
}
