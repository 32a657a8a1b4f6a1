/* SPDX-License-Identifier: MIT */
/*
 * test_place.c - placement (core/place.c) on hwloc XML topologies: two NUMA
 * nodes with a NIC each and a NIC with no locality (topo/2node-3nic.xml):
 * which node and CPUs each device gets, what binds, when a block is remote
 * from every device; an unreadable topology; and this machine's. Also the
 * public view of it, rmig_get_topology() and rmig_device_place(), with the
 * topology named by RMIG_TOPOLOGY.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "place.h"
#include "rmig.h"

static char xml[4096];

static struct rmig_place *load_xml(void)
{
	struct rmig_place *pl = NULL;
	char err[256] = "";

	assert_int_equal(rmig_place_load(&pl, xml, err, sizeof(err)), 0);
	assert_non_null(pl);
	return pl;
}

static void expect_loc(struct rmig_place *pl, enum rmig_dev_kind kind, const char *name, int node,
		       const char *cpus)
{
	struct rmig_loc loc;

	assert_int_equal(rmig_place_locate(pl, kind, name, &loc), 0);
	assert_string_equal(loc.dev, name);
	assert_int_equal(loc.node, node);
	assert_string_equal(loc.cpus, cpus);
	/* an XML topology is not this machine: nothing is ever bound */
	assert_int_equal(rmig_place_bind_thread(pl, &loc), 0);
	assert_false(loc.bound);
	rmig_loc_fini(&loc);
	rmig_loc_fini(&loc); /* idempotent */
}

static void test_two_nodes(void **state)
{
	struct rmig_place *pl = load_xml();

	(void)state;
	assert_int_equal(rmig_place_nodes(pl), 2);
	assert_int_equal(rmig_place_cpus(pl), 4);
	assert_false(rmig_place_this_system(pl));
	expect_loc(pl, RMIG_DEV_IB, "mlx5_0", 0, "0-1");
	expect_loc(pl, RMIG_DEV_IB, "mlx5_1", 1, "2-3");
	expect_loc(pl, RMIG_DEV_NET, "ens1f0", 0, "0-1");
	expect_loc(pl, RMIG_DEV_NET, "ens2f0", 1, "2-3");
	/* attached to the whole machine: no locality, every CPU */
	expect_loc(pl, RMIG_DEV_IB, "mlx5_2", -1, "0-3");
	/* unknown, or the right name of the wrong kind: no locality */
	expect_loc(pl, RMIG_DEV_IB, "mlx5_9", -1, "0-3");
	expect_loc(pl, RMIG_DEV_NET, "mlx5_1", -1, "0-3");
	expect_loc(pl, RMIG_DEV_IB, "ens2f0", -1, "0-3");
	expect_loc(pl, RMIG_DEV_NET, "", -1, "0-3");
	rmig_place_free(pl);
}

static void remote(struct rmig_place *pl, int mem_node, const char *const *devs, unsigned int n,
		   bool want, const char *want_devs)
{
	struct rmig_loc locs[4];
	hwloc_nodeset_t mem = hwloc_bitmap_alloc();
	char text[256];

	for (unsigned int i = 0; i < n; i++)
		assert_int_equal(rmig_place_locate(pl, RMIG_DEV_IB, devs[i], &locs[i]), 0);
	hwloc_bitmap_only(mem, (unsigned int)mem_node);
	assert_int_equal(rmig_place_is_remote(mem, locs, n, text, sizeof(text)), want);
	assert_string_equal(text, want_devs);
	for (unsigned int i = 0; i < n; i++)
		rmig_loc_fini(&locs[i]);
	hwloc_bitmap_free(mem);
}

static void test_block_far_from_devices(void **state)
{
	struct rmig_place *pl = load_xml();
	const char *n0[] = { "mlx5_0", "mlx5_0" }, *both[] = { "mlx5_0", "mlx5_1" },
		   *none[] = { "mlx5_2" }, *mixed[] = { "mlx5_2", "mlx5_1" };

	(void)state;
	/* memory on node 1, both channels through the NIC on node 0: warned */
	remote(pl, 1, n0, 2, true, "mlx5_0 (node 0)");
	/* memory on node 0: near */
	remote(pl, 0, n0, 2, false, "mlx5_0 (node 0)");
	/* one rail per node: one of them is near */
	remote(pl, 1, both, 2, false, "mlx5_0 (node 0), mlx5_1 (node 1)");
	/* a device with no locality says nothing either way */
	remote(pl, 1, none, 1, false, "");
	remote(pl, 0, mixed, 2, true, "mlx5_1 (node 1)");
	rmig_place_free(pl);
}

static void test_unreadable(void **state)
{
	char path[] = "/tmp/rmig-topo-XXXXXX", err[256] = "";
	struct rmig_place *pl = (struct rmig_place *)&err; /* must come back NULL */
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "<topology><nonsense", 19), 19);
	close(fd);
	assert_true(rmig_place_load(&pl, path, err, sizeof(err)) < 0);
	assert_null(pl);
	assert_non_null(strstr(err, path));
	unlink(path);
	pl = (struct rmig_place *)&err;
	assert_true(rmig_place_load(&pl, "/nonexistent/topo.xml", err, sizeof(err)) < 0);
	assert_null(pl);
	assert_non_null(strstr(err, "/nonexistent/topo.xml"));
	rmig_place_free(NULL);
}

/* This machine: memory just touched lies on one of its nodes. */
static void test_this_machine(void **state)
{
	struct rmig_place *pl = NULL;
	char err[256] = "";
	size_t len = 1 << 20;
	char *buf = aligned_alloc(4096, len);
	hwloc_nodeset_t mem = hwloc_bitmap_alloc();
	struct rmig_loc loc;

	(void)state;
	assert_int_equal(rmig_place_load(&pl, NULL, err, sizeof(err)), 0);
	assert_true(rmig_place_nodes(pl) >= 1);
	memset(buf, 1, len);
	assert_true(rmig_place_area_nodes(pl, buf, len, mem) >= 1);
	/* loopback: no device under it, so no locality and nothing bound */
	assert_int_equal(rmig_place_locate(pl, RMIG_DEV_NET, "lo", &loc), 0);
	assert_int_equal(rmig_place_bind_thread(pl, &loc), 0);
	assert_false(loc.bound);
	rmig_place_membind(pl, &loc, buf, len); /* harmless */
	assert_int_equal(buf[len - 1], 1);
	/* a name that would walk out of sysfs is no device */
	rmig_loc_fini(&loc);
	assert_int_equal(rmig_place_locate(pl, RMIG_DEV_IB, "../../../etc", &loc), 0);
	assert_false(loc.bound);
	rmig_loc_fini(&loc);
	hwloc_bitmap_free(mem);
	free(buf);
	rmig_place_free(pl);
}

static void expect_dev(const char *dev, int node, const char *cpus)
{
	struct rmig_chan_place p;

	memset(&p, 0x55, sizeof(p));
	assert_int_equal(rmig_device_place(dev, &p, sizeof(p)), 0);
	assert_string_equal(p.device, dev);
	assert_int_equal(p.numa_node, node);
	assert_string_equal(p.cpus, cpus);
	assert_int_equal(p.bound, 0);
	assert_int_equal(p.rail, 0);
	assert_string_equal(p.rail_addr, "");
}

/* The API's view: what `rdma-migrate info` prints, from RMIG_TOPOLOGY. */
static void test_public_view(void **state)
{
	struct rmig_topology t;
	struct rmig_chan_place p;
	char why[256];
	size_t head = offsetof(struct rmig_chan_place, numa_node);

	(void)state;
	assert_int_equal(setenv("RMIG_TOPOLOGY", xml, 1), 0);
	assert_int_equal(rmig_get_topology(&t, sizeof(t), why, sizeof(why)), 0);
	assert_int_equal(t.numa_nodes, 2);
	assert_int_equal(t.cpus, 4);
	assert_string_equal(why, "");
	expect_dev("mlx5_0", 0, "0-1");
	expect_dev("mlx5_1", 1, "2-3");
	expect_dev("mlx5_2", -1, "0-3");
	expect_dev("mlx5_9", -1, "0-3");
	/* an older caller's smaller struct: the leading field only */
	memset(&p, 0x55, sizeof(p));
	assert_int_equal(rmig_device_place("mlx5_1", &p, head), 0);
	assert_string_equal(p.device, "mlx5_1");
	assert_int_equal(p.numa_node, 0x55555555);
	assert_int_equal(rmig_device_place("", &p, sizeof(p)), -EINVAL);
	assert_int_equal(rmig_device_place(NULL, &p, sizeof(p)), -EINVAL);
	assert_int_equal(rmig_device_place("mlx5_0", NULL, sizeof(p)), -EINVAL);
	assert_int_equal(rmig_get_topology(NULL, sizeof(t), why, sizeof(why)), -EINVAL);
	/* a topology that cannot be loaded: an error, and why */
	assert_int_equal(setenv("RMIG_TOPOLOGY", "/nonexistent/topo.xml", 1), 0);
	assert_true(rmig_get_topology(&t, sizeof(t), why, sizeof(why)) < 0);
	assert_non_null(strstr(why, "/nonexistent/topo.xml"));
	assert_int_equal(t.numa_nodes, 0);
	assert_true(rmig_device_place("mlx5_0", &p, sizeof(p)) < 0);
	assert_int_equal(unsetenv("RMIG_TOPOLOGY"), 0);
	/* this machine's: a name that is no RDMA device here is refused */
	assert_int_equal(rmig_get_topology(&t, sizeof(t), why, sizeof(why)), 0);
	assert_true(t.numa_nodes >= 1 && t.cpus >= 1);
	assert_int_equal(rmig_device_place("no_such_dev0", &p, sizeof(p)), -ENODEV);
	assert_int_equal(rmig_device_place("../../../etc", &p, sizeof(p)), -EINVAL);
}

int main(void)
{
	const char *dir = getenv("RMIG_TOPO_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_nodes),
		cmocka_unit_test(test_block_far_from_devices),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_this_machine),
		cmocka_unit_test(test_public_view),
	};

	snprintf(xml, sizeof(xml), "%s/2node-3nic.xml", dir ? dir : "tests/unit/topo");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
