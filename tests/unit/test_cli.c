/* SPDX-License-Identifier: MIT */
/* test_cli.c - option table, strict numbers and sizes, and session option checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "rmig.h"
#include "sock.h"

static void test_numbers(void **state)
{
	uint64_t v;

	(void)state;
	assert_int_equal(cli_parse_uint("8", 1, 64, &v), 0);
	assert_int_equal(v, 8);
	assert_int_equal(cli_parse_uint("0", 1, 64, &v), -ERANGE);
	assert_int_equal(cli_parse_uint("65", 1, 64, &v), -ERANGE);
	assert_int_equal(cli_parse_uint("-1", 1, 64, &v), -EINVAL);
	assert_int_equal(cli_parse_uint("4x", 1, 64, &v), -EINVAL);
	assert_int_equal(cli_parse_uint("", 1, 64, &v), -EINVAL);
	assert_int_equal(cli_parse_uint(" 4", 1, 64, &v), -EINVAL);
	assert_int_equal(cli_parse_uint("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(cli_parse_size("2G", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(cli_parse_size("64KiB", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 64ull << 10);
	assert_int_equal(cli_parse_size("1m", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 1ull << 20);
	assert_int_equal(cli_parse_size("4096", 0, UINT64_MAX, &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(cli_parse_size("1P", 0, UINT64_MAX, &v), 0);
	assert_true(v == 1ull << 50);
	assert_int_equal(cli_parse_size("1Q", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(cli_parse_size("1GB2", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(cli_parse_size("20000000T", 0, UINT64_MAX, &v), -ERANGE);
}

static void test_assign(void **state)
{
	char name[8];
	const char *val;

	(void)state;
	assert_int_equal(cli_split_assign("ram=/dev/shm/x", name, sizeof(name), &val), 0);
	assert_string_equal(name, "ram");
	assert_string_equal(val, "/dev/shm/x");
	assert_int_equal(cli_split_assign("=x", name, sizeof(name), &val), -EINVAL);
	assert_int_equal(cli_split_assign("ram=", name, sizeof(name), &val), -EINVAL);
	assert_int_equal(cli_split_assign("ram", name, sizeof(name), &val), -EINVAL);
	assert_int_equal(cli_split_assign("toolongname=x", name, sizeof(name), &val),
			 -ENAMETOOLONG);
	assert_int_equal(cli_split_assign("seven77=x", name, sizeof(name), &val), 0);
}

/* --ram and --state: each NAME once, at most 63 bytes; 64 channels is the most. */
static void test_lists(void **state)
{
	struct cli c;
	char n63[80], n64[80];
	char *dup_ram[] = { "--to", "h:1", "--ram", "a=x", "--ram", "a=y" };
	char *dup_recv[] = { "--listen", "h:0", "--ram", "b=x", "--ram", "a=x", "--ram", "b=z" };
	char *dup_state[] = { "--to", "h:1", "--ram", "a=x", "--state", "dev=A", "--state",
			      "dev=B" };
	char *long_name[] = { "--to", "h:1", "--ram", n64 };
	char *max_name[] = { "--to", "h:1", "--ram", n63 };
	char *ch64[] = { "--to", "h:1", "--ram", "a=x", "--channels", "64" };
	char *ch65[] = { "--to", "h:1", "--ram", "a=x", "--channels", "65" };
	char *help[] = { "--ram", "a=x", "--ram", "a=y", "--help" };
	char *to_twice[] = { "--to", "h:1", "--to", "h:2", "--ram", "a=x" };
	char *verbose2[] = { "--to", "h:1", "--ram", "a=x", "--verbose", "--verbose" };
	char *bad_blob[] = { "--to", "h:1", "--ram", "a=x", "--state", "..=x" };
	char *esc_blob[] = { "--to", "h:1", "--ram", "a=x", "--state", "a\x1b=x" };

	(void)state;
	memset(n63, 'n', 63);
	strcpy(n63 + 63, "=x");
	memset(n64, 'n', 64);
	strcpy(n64 + 64, "=x");
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, dup_ram), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_RECV, 8, dup_recv), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 8, dup_state), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 4, long_name), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 4, max_name), 0);
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, ch64), 0);
	assert_int_equal(c.channels, 64);
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, ch65), -EINVAL);
	/* the last value counts, as scripts that append an override expect; --verbose adds up */
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, to_twice), 0);
	assert_string_equal(c.to, "h:2");
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, verbose2), 0);
	assert_int_equal(c.verbose, 2);
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, bad_blob), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 6, esc_blob), -EINVAL);
	assert_true(cli_blob_name_ok("dev.1") && !cli_blob_name_ok("a/b") && !cli_blob_name_ok(""));
	/* --help shows the help whatever else is wrong */
	assert_int_equal(cli_parse(&c, CMD_SEND, 5, help), 0);
	assert_true(c.help);
}

static void test_addr(void **state)
{
	char *no_port[] = { "--to", "host", "--ram", "a=x" };
	char *bad_listen[] = { "--listen", "h:99999", "--ram", "a=x" };

	(void)state;
	assert_int_equal(cli_check_addr("to", "h:1", false), 0);
	assert_int_equal(cli_check_addr("to", "10.0.0.1:65535", false), 0);
	assert_int_equal(cli_check_addr("to", "[::1]:80", false), 0);
	assert_int_equal(cli_check_addr("to", "rdma://h:4444", false), 0);
	assert_int_equal(cli_check_addr("listen", "0.0.0.0:0", true), 0);
	assert_int_equal(cli_check_addr("to", "h:0", false), -EINVAL); /* nowhere to connect */
	assert_int_equal(cli_check_addr("to", "host", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "h:99999", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "h:000080", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", ":80", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "h:", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "h:8x", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "h:-1", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "::1:80", false), -EINVAL);
	assert_int_equal(cli_check_addr("to", "[::1:80", false), -EINVAL);
	assert_int_equal(cli_check_addr("listen", "tcp://h:0", true), -EINVAL);
	assert_int_equal(cli_check_addr("to", "udp://h:1", false), -EINVAL);
	assert_int_equal(cli_check_addr("listen", ":0", true), -EINVAL);
	/* the library's fd:N is not a command line's (it would read as host "fd") */
	assert_int_equal(cli_check_addr("to", "fd:3", false), -EINVAL);
	assert_int_equal(cli_check_addr("listen", "fd:3", true), -EINVAL);
	/* whatever cli_check_addr takes, the library takes too */
	{
		static const char *const good[] = { "h:1", "[::1]:80", "rdma://h:4444",
						    "10.0.0.1:65535" };
		enum rmig_transport_kind k;
		char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX], big[300];

		for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
			assert_int_equal(rmig_uri_parse(good[i], &k, host, port), 0);
		memset(big, 'h', sizeof(big));
		snprintf(big + CLI_HOST_MAX, sizeof(big) - CLI_HOST_MAX, ":1");
		assert_int_equal(cli_check_addr("to", big, false), 0);
		assert_int_equal(rmig_uri_parse(big, &k, host, port), 0);
		big[CLI_HOST_MAX] = 'h';
		snprintf(big + CLI_HOST_MAX + 1, sizeof(big) - CLI_HOST_MAX - 1, ":1");
		assert_int_equal(cli_check_addr("to", big, false), -EINVAL);
	}
	/* checked by cli_parse, before anything connects */
	{
		struct cli c;

		assert_int_equal(cli_parse(&c, CMD_SEND, 4, no_port), -EINVAL);
		assert_int_equal(cli_parse(&c, CMD_RECV, 4, bad_listen), -EINVAL);
	}
}

/* Two names of one destination file, existing or not yet. */
static void test_file_id(void **state)
{
	char dir[] = "/tmp/rmig-cli-id.XXXXXX", cwd[PATH_MAX], p[PATH_MAX + 64], q[PATH_MAX + 64];
	struct cli_file_id a, b;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	/* X does not exist yet: X, ./X, sub/../X, a dangling link to it, a chain of links */
	assert_int_equal(mkdir("sub", 0700), 0);
	assert_int_equal(symlink("X", "L1"), 0);
	assert_int_equal(symlink("../L1", "sub/L2"), 0);
	snprintf(p, sizeof(p), "%s/X", dir);
	cli_file_id("X", &a);
	assert_false(a.exists);
	cli_file_id("./X", &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id("sub/../X", &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id(p, &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id("L1", &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id("sub/L2", &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id("Y", &b);
	assert_false(cli_file_id_eq(&a, &b));
	cli_file_id("sub/X", &b);
	assert_false(cli_file_id_eq(&a, &b));
	/* nothing was created */
	assert_int_equal(access("X", F_OK), -1);
	/* X exists: the same inode by any name, a hard link included */
	fclose(fopen("X", "w"));
	assert_int_equal(link("X", "H"), 0);
	cli_file_id("X", &a);
	assert_true(a.exists);
	cli_file_id("H", &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id("sub/L2", &b);
	assert_true(cli_file_id_eq(&a, &b));
	snprintf(q, sizeof(q), "%s/sub/../X", dir);
	cli_file_id(q, &b);
	assert_true(cli_file_id_eq(&a, &b));
	cli_file_id("Y", &b);
	assert_false(cli_file_id_eq(&a, &b));
	unlink("sub/L2");
	unlink("L1");
	unlink("H");
	unlink("X");
	rmdir("sub");
	assert_int_equal(chdir(cwd), 0);
	rmdir(dir);
}

/* State and key files: regular files only, read to their end. */
static void test_read_file(void **state)
{
	char dir[] = "/tmp/rmig-cli-rd.XXXXXX", fifo[64], reg[64];
	uint8_t *data;
	uint64_t len;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(reg, sizeof(reg), "%s/reg", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	/* refused at once: opening it would wait for a writer forever */
	assert_int_equal(cli_open_regular("--state", fifo), -1);
	assert_int_equal(cli_read_file("--state", fifo, 100, &data, &len, NULL), -EINVAL);
	assert_int_equal(cli_read_file("--state", dir, 100, &data, &len, NULL), -EINVAL);
	assert_int_equal(cli_read_file("--state", "/dev/null", 100, &data, &len, NULL), -EINVAL);
	f = fopen(reg, "w");
	fputs("0123456789", f);
	fclose(f);
	assert_int_equal(cli_read_file("--state", reg, 10, &data, &len, NULL), 0);
	assert_int_equal(len, 10);
	assert_memory_equal(data, "0123456789", 10);
	free(data);
	assert_int_equal(cli_read_file("--state", reg, 9, &data, &len, NULL), -EFBIG);
	/* st_size 0, content all the same */
	assert_int_equal(cli_read_file("--state", "/proc/self/status", 1 << 20, &data, &len, NULL),
			 0);
	assert_true(len > 0);
	assert_memory_equal(data, "Name:", 5);
	free(data);
	unlink(fifo);
	unlink(reg);
	rmdir(dir);
}

static void test_parse(void **state)
{
	struct cli c;
	char *ok[] = { "--to", "h:1", "--ram", "a=x", "--ram=b=y", "--channels=8", "--verify",
		       "--transport", "tcp", "--timeout", "5" };
	char *bad_num[] = { "--channels", "0" };
	char *bad_choice[] = { "--transport", "udp" };
	char *other_cmd[] = { "--listen", "x:1" };
	char *missing[] = { "--to" };
	char *flag_val[] = { "--verify=yes" };
	char *positional[] = { "stray" };

	(void)state;
	assert_int_equal(cli_parse(&c, CMD_SEND, 11, ok), 0);
	assert_string_equal(c.to, "h:1");
	assert_int_equal(c.ram.n, 2);
	assert_string_equal(c.ram.v[1], "b=y");
	assert_int_equal(c.channels, 8);
	assert_true(c.verify);
	assert_string_equal(c.transport, "tcp");
	assert_int_equal(c.timeout_s, 5);
	/* defaults come from the table */
	assert_int_equal(cli_parse(&c, CMD_SEND, 0, NULL), 0);
	assert_int_equal(c.channels, 4);
	assert_int_equal(c.timeout_s, 30);
	assert_int_equal(c.extent, 1u << 20);
	assert_string_equal(c.transport, "auto");
	assert_int_equal(cli_parse(&c, CMD_SEND, 2, bad_num), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 2, bad_choice), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 2, other_cmd), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 1, missing), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 1, flag_val), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 1, positional), -EINVAL);
}

static void test_live_options(void **state)
{
	struct cli c;
	char *live[] = { "--live", "--ram-size", "64M", "--dirty-rate=0", "--pattern", "hot",
			 "--max-rounds", "0", "--max-bandwidth", "10M" };
	char *bad_pattern[] = { "--live", "--pattern", "zipf" };
	char *not_send[] = { "--downtime", "5" };

	(void)state;
	assert_int_equal(cli_parse(&c, CMD_BENCH, 10, live), 0);
	assert_true(c.live);
	assert_int_equal(c.ram_size, 64u << 20);
	assert_int_equal(c.dirty_rate, 0);
	assert_string_equal(c.pattern, "hot");
	assert_int_equal(c.max_rounds, 0);
	assert_int_equal(c.max_bandwidth, 10u << 20);
	/* given on the command line, or only a default */
	assert_true(cli_seen(&c, "ram-size"));
	assert_true(cli_seen(&c, "live"));
	assert_false(cli_seen(&c, "downtime"));
	assert_false(cli_seen(&c, "no-such-option"));
	assert_int_equal(c.downtime_ms, 300);
	assert_int_equal(c.writers, 2);
	assert_int_equal(cli_parse(&c, CMD_BENCH, 3, bad_pattern), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_SEND, 2, not_send), -EINVAL);
}

/* save and restore: a file, not an address; their own options */
static void test_file_cmds(void **state)
{
	struct cli c;
	char *save[] = { "--ram", "a=x", "--to", "/tmp/s.rmig", "--direct", "--verify",
			 "--channels", "8", "--state", "d=f" };
	char *save_uri[] = { "--ram", "a=x", "--to", "file:rel/s" };
	char *save_empty[] = { "--ram", "a=x", "--to", "file:" };
	char *restore[] = { "--from", "s.rmig", "--ram", "a=x", "--state-dir", "d", "--direct" };
	char *restore_to[] = { "--from", "s", "--to", "f" };
	char *restore_state[] = { "--from", "s", "--state", "d=f" };
	char *send_file[] = { "--to", "file:/x" };
	char *send_nofile[] = { "--to", "file:" };
	char *recv_direct[] = { "--listen", "h:0", "--direct" };

	(void)state;
	assert_int_equal(cli_parse(&c, CMD_SAVE, 10, save), 0);
	assert_string_equal(c.to, "/tmp/s.rmig"); /* no HOST:PORT check for a file */
	assert_true(c.direct && c.verify);
	assert_int_equal(c.channels, 8);
	assert_int_equal(cli_parse(&c, CMD_SAVE, 4, save_uri), 0);
	assert_int_equal(cli_parse(&c, CMD_SAVE, 4, save_empty), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_RESTORE, 7, restore), 0);
	assert_string_equal(c.from, "s.rmig");
	assert_string_equal(c.state_dir, "d");
	assert_int_equal(c.channels, 4);
	assert_int_equal(cli_parse(&c, CMD_RESTORE, 4, restore_to), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_RESTORE, 4, restore_state), -EINVAL);
	/* send takes the library's file:PATH too */
	assert_int_equal(cli_parse(&c, CMD_SEND, 2, send_file), 0);
	assert_int_equal(cli_parse(&c, CMD_SEND, 2, send_nofile), -EINVAL);
	assert_int_equal(cli_parse(&c, CMD_RECV, 3, recv_direct), -EINVAL);
	assert_string_equal(cli_cmd_name(CMD_SAVE), "save");
	assert_string_equal(cli_cmd_name(CMD_RESTORE), "restore");
}

static void test_uri(void **state)
{
	enum rmig_transport_kind k = RMIG_TRANSPORT_AUTO;
	char host[RMIG_HOST_MAX], port[RMIG_PORT_MAX];

	(void)state;
	assert_int_equal(rmig_uri_parse("rdma://10.0.0.1:4444", &k, host, port), 0);
	assert_int_equal(k, RMIG_TRANSPORT_RDMA);
	assert_string_equal(host, "10.0.0.1");
	assert_string_equal(port, "4444");
	assert_int_equal(rmig_uri_parse("[::1]:80", &k, host, port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(rmig_uri_parse("tcp://h:65536", &k, host, port), -EINVAL);
	assert_int_equal(rmig_uri_parse("udp://h:1", &k, host, port), -EINVAL);
	assert_int_equal(rmig_uri_parse("h", &k, host, port), -EINVAL);
	assert_int_equal(rmig_uri_parse(":1", &k, host, port), -EINVAL);
	assert_int_equal(rmig_uri_parse("::1:80", &k, host, port), -EINVAL);
	assert_int_equal(rmig_uri_parse("h:1x", &k, host, port), -EINVAL);
}

static void test_session_opts(void **state)
{
	struct rmig_opts o;
	rmig_session *s = NULL;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.log_fn = NULL;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL); /* no role */
	o.role = RMIG_ROLE_SOURCE;
	o.channels = 0;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.channels = RMIG_CHANNELS_MAX + 1;
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.channels = 2;
	o.extent_max = 3 << 20; /* not a power of two */
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.extent_max = 1 << 20;
	o.flags = 1u << 30; /* no such flag */
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	o.flags = 0;
	/* rails: device names, comma-separated, none empty */
	static const char *const bad_rails[] = { ",", "a,", ",a", "a,,b",
		"x123456789012345678901234567890123456789012345678901234567890123" };
	for (size_t i = 0; i < sizeof(bad_rails) / sizeof(bad_rails[0]); i++) {
		snprintf(o.rails, sizeof(o.rails), "%s", bad_rails[i]);
		assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	}
	memset(o.rails, 'a', sizeof(o.rails)); /* no terminating NUL */
	assert_int_equal(rmig_session_create(&o, &s), -EINVAL);
	snprintf(o.rails, sizeof(o.rails), "mlx5_0,mlx5_1");
	assert_int_equal(rmig_session_create(&o, &s), 0);
	rmig_session_destroy(s);
	s = NULL;
	o.rails[0] = '\0';
	assert_null(s); /* filled only on success */
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_non_null(s);
	/* blocks: bad shapes and duplicates */
	static char mem[8192];
	assert_int_equal(rmig_add_ram(s, "", mem, 4096, 4096), -EINVAL);
	assert_int_equal(rmig_add_ram(s, "a", mem, 4095, 4096), -EINVAL);
	assert_int_equal(rmig_add_ram(s, "a", mem, 4096, 3000), -EINVAL);
	/* ranges no address space holds, or that wrap around it */
	assert_int_equal(rmig_add_ram(s, "a", mem, 1ull << 63, 4096), -EINVAL);
	assert_int_equal(rmig_add_ram(s, "a", (void *)(uintptr_t)0xfffffffffffff000ull, 1 << 20,
				      4096),
			 -EINVAL);
	assert_int_equal(rmig_add_ram(s, "a", mem, 8192, 4096), 0);
	assert_int_equal(rmig_add_ram(s, "a", mem, 4096, 4096), -EINVAL);
	/* data calls before connect */
	assert_int_equal(rmig_send_range(s, "a", 0, 4096), -ENOTCONN);
	/* no save file behind it: no device state declared up front */
	assert_int_equal(rmig_peer_state(s, NULL, 0), 0);
	assert_int_equal(rmig_peer_state(s, NULL, 1), -EINVAL);
	assert_int_equal(rmig_peer_state(NULL, NULL, 0), -EINVAL);
	assert_int_equal(rmig_connect(s, "nonsense"), -EINVAL);
	rmig_session_destroy(s);

	/* an older caller's smaller struct: later fields take defaults */
	memset(&o, 0, sizeof(o));
	o.size = offsetof(struct rmig_opts, timeout_ms);
	o.role = RMIG_ROLE_DEST;
	o.channels = 1;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	rmig_session_destroy(s);
	rmig_session_destroy(NULL); /* NULL-safe */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_numbers),     cmocka_unit_test(test_assign),
		cmocka_unit_test(test_parse),       cmocka_unit_test(test_uri),
		cmocka_unit_test(test_file_cmds),
		cmocka_unit_test(test_session_opts),
		cmocka_unit_test(test_live_options),
		cmocka_unit_test(test_lists),       cmocka_unit_test(test_addr),
		cmocka_unit_test(test_file_id),     cmocka_unit_test(test_read_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
