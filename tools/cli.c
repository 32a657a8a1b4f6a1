/* SPDX-License-Identifier: MIT */
/* cli.c - the option table and its parser. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "rmig.h"

#define OFF(f) offsetof(struct cli, f)
#define ALL (CMD_SEND | CMD_RECV | CMD_BENCH | CMD_INFO | CMD_VM_SEND | CMD_VM_RECV | FILE_CMDS)
#define VM (CMD_VM_SEND | CMD_VM_RECV)
#define FILE_CMDS (CMD_SAVE | CMD_RESTORE)

static const char *const transports[] = { "tcp", "rdma", "auto", NULL };
static const char *const patterns[] = { "uniform", "hot", NULL };
static const char *const trackings[] = { "auto", "soft-dirty", "shadow", NULL };

static const struct cli_opt opts[] = {
	{ "to", "HOST:PORT", OPT_STR, CMD_SEND | CMD_BENCH | CMD_VM_SEND | CMD_SAVE, OFF(to), 0, 0,
	  NULL, NULL,
	  "destination to migrate to (send: required, or file:PATH to save there; bench --live: "
	  "a recv peer instead of a destination in this process, or file:PATH; save: the file "
	  "to write, required: created or truncated, mode 0600, removed if the save fails)" },
	{ "from", "FILE", OPT_STR, CMD_RESTORE, OFF(from), 0, 0, NULL, NULL,
	  "the save file to restore (required); it is checked whole before any image is "
	  "written" },
	{ "listen", "ADDR:PORT", OPT_LIST, CMD_RECV | CMD_VM_RECV, OFF(listens), 0, 0, NULL, NULL,
	  "address to listen on for the one source served (required; PORT 0 picks one). recv: "
	  "repeatable; each further address is a rail: data channels are opened there too "
	  "(PORT 0: any), and the source spreads its channels over all of them in turn, each "
	  "through the device that reaches it" },
	{ "port-file", "FILE", OPT_STR, CMD_RECV | CMD_VM_RECV, OFF(port_file), 0, 0, NULL, NULL,
	  "write the bound port to FILE once listening" },
	{ "ram", "NAME=PATH", OPT_LIST, CMD_SEND | CMD_RECV | FILE_CMDS, OFF(ram), 0, 0, NULL, NULL,
	  "memory image (file, /dev/shm or hugetlbfs file), mapped shared; repeatable, each "
	  "NAME (at most 63 bytes) once. recv and restore create or resize it to the source's "
	  "size; there each PATH must be a file of its own" },
	{ "state", "NAME=FILE", OPT_LIST, CMD_SEND | CMD_SAVE, OFF(state), 0, 0, NULL, NULL,
	  "device-state file (a regular file, read to its end: /proc files too) to send as "
	  "blob NAME; repeatable, each NAME (at most 63 bytes) once" },
	{ "state-dir", "DIR", OPT_STR, CMD_RECV | CMD_RESTORE, OFF(state_dir), 0, 0, NULL, NULL,
	  "write received device-state blobs to DIR/NAME" },
	{ "channels", "N", OPT_UINT, CMD_SEND | CMD_BENCH | CMD_VM_SEND | FILE_CMDS, OFF(channels), 1,
	  64, NULL, "4",
	  "parallel data channels (1..64; bench: with --live or --postcopy; save, restore: "
	  "threads writing or reading the file)" },
	{ "transport", "KIND", OPT_CHOICE, CMD_SEND | CMD_BENCH | CMD_VM_SEND, OFF(transport), 0, 0, transports,
	  "auto", "tcp, rdma, or auto (rdma when a device reaches the peer, else tcp)" },
	{ "timeout", "SECONDS", OPT_UINT, CMD_SEND | CMD_RECV | CMD_BENCH | VM | FILE_CMDS, OFF(timeout_s), 1,
	  86400, NULL, "30", "bound on every wait: connect, accept, a silent or stalled peer" },
	{ "extent", "SIZE", OPT_SIZE, CMD_SEND | CMD_BENCH | FILE_CMDS, OFF(extent), 4096, 256ull << 20, NULL,
	  "1M", "largest coalesced write (power of two, 4K..256M)" },
	{ "inflight", "SIZE", OPT_SIZE, CMD_SEND | CMD_BENCH, OFF(inflight), 1 << 20, 16ull << 30,
	  NULL, "64M", "rdma: outstanding bytes per channel before polling it down to half" },
	{ "verify", NULL, OPT_FLAG, CMD_SEND | FILE_CMDS, OFF(verify), 0, 0, NULL, NULL,
	  "compare an end-to-end digest of every block and blob at the destination (save: "
	  "store the digests in the file; restore: check them, and refuse a file without)" },
	{ "direct", NULL, OPT_FLAG, FILE_CMDS | CMD_BENCH, OFF(direct), 0, 0, NULL, NULL,
	  "page data with O_DIRECT, past the page cache (falls back, with a warning, where the "
	  "file system cannot; bench: --live --to file:PATH)" },
	{ "no-bind", NULL, OPT_FLAG, CMD_SEND | CMD_RECV | CMD_BENCH | VM, OFF(no_bind), 0, 0, NULL,
	  NULL,
	  "no placement: channel threads float over every CPU and buffers go where the kernel "
	  "puts them (default: each channel thread is bound to the CPUs near the device it goes "
	  "through, its buffers on that device's NUMA node, where hwloc finds a locality)" },
	{ "no-tcp-fallback", NULL, OPT_FLAG, CMD_SEND | CMD_VM_SEND, OFF(no_fallback), 0, 0, NULL,
	  NULL,
	  "when the last rail fails (every RDMA device, or every rail of several), fail rather "
	  "than go on over tcp to the control connection's address (default: go on)" },
	{ "rails", "DEV[,DEV...]", OPT_STR, CMD_SEND | CMD_VM_SEND, OFF(rails), 0, 0, NULL, NULL,
	  "multi-rail (recv --listen A --listen B): the local devices to use, RDMA devices "
	  "(rxe0,mlx5_1) or network interfaces over tcp; a destination address reached through "
	  "another device is left out (default: every device that reaches one), the control "
	  "connection's too (it then carries only the control connection)" },
	{ "resume", NULL, OPT_FLAG, CMD_SEND, OFF(resume), 0, 0, NULL, NULL,
	  "when the connection breaks, reconnect and go on within --recovery-timeout: a "
	  "destination that kept the migration (recv --keep) is sent only what it may lack. "
	  "Syncs after every sixteenth of the images (4 to 128 MiB), so that a break costs at "
	  "most that much again" },
	{ "keep", NULL, OPT_FLAG, CMD_RECV, OFF(keep), 0, 0, NULL, NULL,
	  "when the connection breaks, keep the images and wait up to --recovery-timeout for "
	  "the same source to resume (send --resume); any other source is refused meanwhile" },
	{ "recovery-timeout", "SECONDS", OPT_UINT, CMD_SEND | CMD_RECV, OFF(recovery_s), 1, 86400,
	  NULL, "60", "--resume, --keep: how long to wait for the other end after a break" },
	{ "json", NULL, OPT_FLAG, CMD_SEND | CMD_RECV | CMD_BENCH | CMD_INFO | VM | FILE_CMDS, OFF(json), 0, 0,
	  NULL, NULL, "print the results (final statistics, device facts) as JSON on stdout" },
	{ "quiet", NULL, OPT_FLAG, CMD_SEND | CMD_RECV | CMD_BENCH | VM | FILE_CMDS, OFF(quiet), 0, 0, NULL, NULL,
	  "no progress line and no summary on stderr" },
	{ "size", "SIZE", OPT_SIZE, CMD_BENCH, OFF(size), 1 << 20, 1ull << 40, NULL, "2G",
	  "image size to move (without --live)" },
	{ "channel-list", "N[,N...]", OPT_STR, CMD_BENCH, OFF(channel_list), 0, 0, NULL, "1,2,4",
	  "channel counts to measure (without --live)" },
	{ "addr", "HOST", OPT_STR, CMD_BENCH, OFF(addr), 0, 0, NULL, "127.0.0.1",
	  "local address both benchmark endpoints use" },
	{ "max-bandwidth", "SIZE", OPT_SIZE, CMD_SEND | CMD_BENCH | CMD_VM_SEND, OFF(max_bandwidth), 0,
	  1ull << 50, NULL, "0",
	  "bytes per second for RAM and device state (bench --live: until switchover); "
	  "0 = unlimited" },
	{ "live", NULL, OPT_FLAG, CMD_BENCH, OFF(live), 0, 0, NULL, NULL,
	  "migrate a running built-in guest: writer threads dirty its RAM during the rounds; "
	  "verified byte for byte" },
	{ "postcopy", NULL, OPT_FLAG, CMD_BENCH, OFF(postcopy), 0, 0, NULL, NULL,
	  "migrate the built-in guest as --live does, then switch to postcopy: the "
	  "destination runs it and a workload there touches missing pages; reports the fault "
	  "latency (p50, p99, max) idle and under background load; verified byte for byte" },
	{ "postcopy-after", "N", OPT_UINT, CMD_BENCH, OFF(postcopy_after), 0, 1000, NULL, "0",
	  "--postcopy: live rounds before switching (0: at once, every page is missing; then "
	  "the pages dirtied since the last round are)" },
	{ "faults", "N", OPT_UINT, CMD_BENCH, OFF(faults), 1, 1000000, NULL, "1000",
	  "--postcopy: faults the workload times in each phase, at most" },
	{ "no-urgent", NULL, OPT_FLAG, CMD_BENCH, OFF(no_urgent), 0, 0, NULL, NULL,
	  "--postcopy: no urgent channel: requested pages queue behind the background ones "
	  "on the shared channels" },
	{ "ram-size", "SIZE", OPT_SIZE, CMD_BENCH, OFF(ram_size), 1 << 20, 1ull << 40, NULL, "1G",
	  "--live, --postcopy: guest RAM size" },
	{ "writers", "N", OPT_UINT, CMD_BENCH, OFF(writers), 1, 64, NULL, "2",
	  "--live, --postcopy: writer threads (the guest's vCPUs)" },
	{ "dirty-rate", "SIZE", OPT_SIZE, CMD_BENCH, OFF(dirty_rate), 0, 1ull << 40, NULL, "64M",
	  "--live, --postcopy: bytes of pages the writers dirty per second, all together "
	  "(0: none)" },
	{ "pattern", "KIND", OPT_CHOICE, CMD_BENCH, OFF(pattern), 0, 0, patterns, "uniform",
	  "--live, --postcopy: uniform (any page) or hot (pages of the first --hot-size bytes)" },
	{ "hot-size", "SIZE", OPT_SIZE, CMD_BENCH, OFF(hot_size), 4096, 1ull << 40, NULL, "64M",
	  "--live --pattern hot: size of the hot set" },
	{ "downtime", "MS", OPT_UINT, CMD_BENCH | CMD_VM_SEND, OFF(downtime_ms), 1, 3600000, NULL, "300",
	  "--live, vm-send: downtime limit; switch over once what is left fits it" },
	{ "max-rounds", "N", OPT_UINT, CMD_BENCH | CMD_VM_SEND, OFF(max_rounds), 0, 1000000, NULL, "30",
	  "--live, vm-send: live rounds before giving up (or see --switch-anyway); 0 = no "
	  "limit" },
	{ "switch-anyway", NULL, OPT_FLAG, CMD_BENCH | CMD_VM_SEND, OFF(switch_anyway), 0, 0, NULL, NULL,
	  "--live, vm-send: at --max-rounds, switch over even over the downtime limit instead of "
	  "cancelling" },
	{ "device-state", "SIZE[,SIZE...]", OPT_STR, CMD_BENCH, OFF(device_state), 0, 0, NULL, NULL,
	  "--live, --postcopy: device-state blobs of these sizes, sent at switchover" },
	{ "key-file", "FILE", OPT_STR, CMD_SEND | CMD_RECV | CMD_BENCH | VM, OFF(key_file), 0, 0, NULL,
	  NULL, "shared secret (a regular file of 16..4096 bytes) that both ends must hold; "
		"without it anyone who reaches the port can write into the images" },
	{ "tls", NULL, OPT_FLAG, CMD_SEND | CMD_RECV | CMD_BENCH | VM, OFF(tls), 0, 0, NULL, NULL,
	  "TLS 1.3 on every connection, keyed by --key-file (both ends): the data on the "
	  "wire is private; data channels then run over tcp" },
	{ "verbose", NULL, OPT_FLAG, CMD_SEND | CMD_RECV | CMD_BENCH | VM | FILE_CMDS, OFF(verbose), 0, 0, NULL, NULL,
	  "log more (repeat for debug)" },
	{ "qmp", "SOCKET", OPT_STR, VM, OFF(qmp), 0, 0, NULL, NULL,
	  "QEMU's QMP unix socket (required): its RAM must be memory-backend-file,share=on" },
	{ "track", "HOW", OPT_CHOICE, CMD_VM_SEND, OFF(track), 0, 0, trackings, "auto",
	  "how vm-send finds the pages the guest wrote: soft-dirty (the kernel's bits in "
	  "QEMU's page tables, read and reset with QEMU stopped for a moment; no copy of the "
	  "RAM), shadow (a copy of guest RAM compared each round; any kernel), or auto "
	  "(soft-dirty where it works and the RAM cannot be reclaimed, else shadow)" },
	{ "paused", NULL, OPT_FLAG, CMD_VM_RECV, OFF(paused), 0, 0, NULL, NULL,
	  "leave the destination VM paused after the migration (default: cont)" },
	{ "help", NULL, OPT_FLAG, ALL, OFF(help), 0, 0, NULL, NULL, "show this help" },
};

_Static_assert(sizeof(opts) / sizeof(opts[0]) <= 64, "struct cli.seen has 64 bits");

static const struct {
	unsigned int cmd;
	const char *name;
	const char *what;
} cmds[] = {
	{ CMD_SEND, "send", "migrate memory images and device state to a recv peer" },
	{ CMD_RECV, "recv", "serve one migration into memory images, then exit" },
	{ CMD_BENCH, "bench", "measure rmig against a raw stream on this machine, or (--live) "
			      "migrate a running built-in guest, or (--postcopy) measure postcopy "
			      "fault latency" },
	{ CMD_INFO, "info", "show RDMA devices, limits, and whether RDMA can be used here" },
	{ CMD_VM_SEND, "vm-send", "live-migrate a running QEMU VM's RAM and device state to a "
				  "vm-recv peer (QEMU's QMP socket)" },
	{ CMD_VM_RECV, "vm-recv", "receive a QEMU VM into a QEMU started with -incoming defer, "
				  "then run it" },
	{ CMD_SAVE, "save", "save memory images and device state to a file, every page at a "
			    "fixed offset, written in parallel" },
	{ CMD_RESTORE, "restore", "restore memory images and device state from a save file, "
				  "read in parallel" },
};

const char *cli_cmd_name(unsigned int cmd)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (cmds[i].cmd == cmd)
			return cmds[i].name;
	return NULL;
}

int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *v_p)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*v_p = v;
	return 0;
}

int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *v_p)
{
	static const char units[] = "KMGTP";
	unsigned long long v;
	unsigned int shift = 0;
	const char *u;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end) {
		u = strchr(units, toupper((unsigned char)*end));
		if (!u)
			return -EINVAL;
		shift = 10 * (unsigned int)(u - units + 1);
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B"))
			end += strlen(end);
		if (*end)
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -ERANGE;
		v <<= shift;
	}
	if (v < min || v > max)
		return -ERANGE;
	*v_p = v;
	return 0;
}

int cli_split_assign(const char *s, char *name, size_t name_len, const char **value_p)
{
	const char *eq = strchr(s, '=');

	if (!eq || eq == s || !eq[1])
		return -EINVAL;
	if ((size_t)(eq - s) >= name_len)
		return -ENAMETOOLONG;
	memcpy(name, s, (size_t)(eq - s));
	name[eq - s] = '\0';
	*value_p = eq + 1;
	return 0;
}

static const struct cli_opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
			return &opts[i];
	return NULL;
}

static int set_opt(struct cli *c, const struct cli_opt *o, const char *val)
{
	char *base = (char *)c;
	uint64_t v;
	int rc;

	switch (o->type) {
	case OPT_FLAG:
		if (o->off == OFF(verbose))
			c->verbose++;
		else
			*(bool *)(base + o->off) = true;
		return 0;
	case OPT_STR:
		*(const char **)(base + o->off) = val;
		return 0;
	case OPT_CHOICE:
		for (const char *const *ch = o->choices; *ch; ch++) {
			if (!strcmp(*ch, val)) {
				*(const char **)(base + o->off) = *ch;
				return 0;
			}
		}
		fprintf(stderr, "rdma-migrate: --%s: '%s' is not one of", o->name, val);
		for (const char *const *ch = o->choices; *ch; ch++)
			fprintf(stderr, " %s", *ch);
		fprintf(stderr, "\n");
		return -EINVAL;
	case OPT_UINT:
		rc = cli_parse_uint(val, o->min, o->max, &v);
		if (!rc)
			*(unsigned int *)(base + o->off) = (unsigned int)v;
		break;
	case OPT_SIZE:
		rc = cli_parse_size(val, o->min, o->max, &v);
		/* what the library would refuse later, in its own words */
		if (!rc && o->off == OFF(extent) && (v & (v - 1))) {
			fprintf(stderr, "rdma-migrate: --%s: '%s' is not a power of two (4K, 8K ... 256M)\n",
				o->name, val);
			return -EINVAL;
		}
		if (!rc && o->off == OFF(max_bandwidth) && v && v < 4096) {
			fprintf(stderr, "rdma-migrate: --%s: '%s' is below 4K bytes/s (0 = unlimited)\n",
				o->name, val);
			return -EINVAL;
		}
		if (!rc)
			*(uint64_t *)(base + o->off) = v;
		break;
	case OPT_LIST: {
		struct cli_list *l = (struct cli_list *)(base + o->off);

		if (l->n == CLI_LIST_MAX) {
			fprintf(stderr, "rdma-migrate: --%s: at most %d\n", o->name, CLI_LIST_MAX);
			return -EINVAL;
		}
		l->v[l->n++] = val;
		return 0;
	}
	default:
		return -EINVAL;
	}
	if (rc == -ERANGE)
		fprintf(stderr, "rdma-migrate: --%s: '%s' is out of range (%llu..%llu)\n", o->name,
			val, (unsigned long long)o->min, (unsigned long long)o->max);
	else if (rc)
		fprintf(stderr, "rdma-migrate: --%s: '%s' is not a valid %s\n", o->name, val,
			o->type == OPT_SIZE ? "size" : "number");
	return rc;
}

bool cli_blob_name_ok(const char *n)
{
	if (!n[0] || !strcmp(n, ".") || !strcmp(n, ".."))
		return false;
	for (const char *p = n; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			return false;
	return true;
}

/*
 * --ram NAME=PATH, --state NAME=FILE: each well formed, each NAME once. A
 * name given twice would send two blocks (or blobs) the destination tells
 * apart by name only: one would be lost, or written over the other.
 */
static int check_assign_list(unsigned int cmd, const char *opt, const char *arg,
			     const char *what, const struct cli_list *l)
{
	char name[CLI_NAME_MAX], other[CLI_NAME_MAX];
	const char *val;

	for (unsigned int i = 0; i < l->n; i++) {
		int rc = cli_split_assign(l->v[i], name, sizeof(name), &val);

		if (rc == -ENAMETOOLONG) {
			fprintf(stderr, "rdma-migrate %s: --%s '%s': name longer than %d bytes\n",
				cli_cmd_name(cmd), opt, l->v[i], CLI_NAME_MAX - 1);
			return -EINVAL;
		}
		if (rc) {
			fprintf(stderr, "rdma-migrate %s: --%s '%s': expected %s\n",
				cli_cmd_name(cmd), opt, l->v[i], arg);
			return -EINVAL;
		}
		/* a blob's name is a file name at the destination (recv --state-dir) */
		if (!strcmp(opt, "state") && !cli_blob_name_ok(name)) {
			fprintf(stderr,
				"rdma-migrate %s: --%s '%s': a device-state name may not be empty, "
				"'.' or '..', or hold '/' or control characters (it names a file "
				"at the destination)\n",
				cli_cmd_name(cmd), opt, l->v[i]);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < i; j++) {
			if (cli_split_assign(l->v[j], other, sizeof(other), &val) ||
			    strcmp(name, other))
				continue;
			fprintf(stderr, "rdma-migrate %s: --%s '%s' and --%s '%s': %s name '%s' "
					"given twice\n",
				cli_cmd_name(cmd), opt, l->v[j], opt, l->v[i], what, name);
			return -EINVAL;
		}
	}
	return 0;
}

int cli_check_addr(const char *opt, const char *v, bool listen)
{
	const char *p = v, *colon, *port;
	unsigned int min = listen ? 0 : 1;
	uint64_t n;
	size_t hlen;

	/* send --to also takes the library's file:PATH, tcp:// and rdma:// */
	if (!listen && !strncmp(p, "file:", 5)) {
		if (p[5])
			return 0;
		fprintf(stderr, "rdma-migrate: --%s '%s': expected file:PATH\n", opt, v);
		return -EINVAL;
	}
	/* the library's fd:N is a socket its caller connected: a command line has none to give */
	if (!strncmp(p, "fd:", 3)) {
		fprintf(stderr, "rdma-migrate: --%s '%s': fd:N is for programs that link librmig and "
				"hand it a connected socket; give HOST:PORT\n", opt, v);
		return -EINVAL;
	}
	if (!listen && !strncmp(p, "tcp://", 6))
		p += 6;
	else if (!listen && !strncmp(p, "rdma://", 7))
		p += 7;
	if (strstr(p, "://")) {
		fprintf(stderr, "rdma-migrate: --%s '%s': expected HOST:PORT%s\n", opt, v,
			listen ? " (no scheme: recv listens on tcp)" : " (or tcp:// or rdma://)");
		return -EINVAL;
	}
	if (*p == '[') {
		colon = strchr(p, ']');
		if (!colon || colon[1] != ':') {
			fprintf(stderr, "rdma-migrate: --%s '%s': expected [ADDR]:PORT\n", opt, v);
			return -EINVAL;
		}
		hlen = (size_t)(colon - p - 1);
		colon++;
	} else {
		colon = strrchr(p, ':');
		if (!colon) {
			fprintf(stderr, "rdma-migrate: --%s '%s': expected HOST:PORT\n", opt, v);
			return -EINVAL;
		}
		if (memchr(p, ':', (size_t)(colon - p))) {
			fprintf(stderr, "rdma-migrate: --%s '%s': expected HOST:PORT (an IPv6 "
					"address in brackets: [ADDR]:PORT)\n",
				opt, v);
			return -EINVAL;
		}
		hlen = (size_t)(colon - p);
	}
	port = colon + 1;
	if (!hlen) {
		fprintf(stderr, "rdma-migrate: --%s '%s': empty host, expected HOST:PORT%s\n", opt,
			v, listen ? " (0.0.0.0 or [::] for every address)" : "");
		return -EINVAL;
	}
	if (hlen > CLI_HOST_MAX) {
		fprintf(stderr, "rdma-migrate: --%s '%s': host longer than %d bytes\n", opt, v,
			CLI_HOST_MAX);
		return -EINVAL;
	}
	if (!*port) {
		fprintf(stderr, "rdma-migrate: --%s '%s': no port, expected HOST:PORT\n", opt, v);
		return -EINVAL;
	}
	if (cli_parse_uint(port, 0, UINT64_MAX, &n) == -EINVAL) {
		fprintf(stderr, "rdma-migrate: --%s '%s': port '%s' is not a number\n", opt, v,
			port);
		return -EINVAL;
	}
	/* five digits at most: the library takes no longer port string */
	if (strlen(port) > 5 || n < min || n > 65535) {
		fprintf(stderr, "rdma-migrate: --%s '%s': port %s out of range %u..65535%s\n", opt,
			v, port, min, listen ? " (0 picks one)" : "");
		return -EINVAL;
	}
	return 0;
}

static int cli_check_rails(unsigned int cmd, const char *list);

int cli_parse(struct cli *c, unsigned int cmd, int argc, char **argv)
{
	memset(c, 0, sizeof(*c));
	c->cmd = cmd;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (opts[i].def && (opts[i].cmds & cmd) && set_opt(c, &opts[i], opts[i].def))
			return -EINVAL;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *eq, *val = NULL;
		const struct cli_opt *o;

		if (strncmp(a, "--", 2) || !a[2]) {
			fprintf(stderr, "rdma-migrate %s: unexpected argument '%s'\n",
				cli_cmd_name(cmd), a);
			return -EINVAL;
		}
		a += 2;
		eq = strchr(a, '=');
		o = find_opt(a, eq ? (size_t)(eq - a) : strlen(a));
		if (!o || !(o->cmds & cmd)) {
			fprintf(stderr, "rdma-migrate %s: unknown option '%s'\n", cli_cmd_name(cmd),
				argv[i]);
			return -EINVAL;
		}
		if (o->arg) {
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			if (!val) {
				fprintf(stderr, "rdma-migrate %s: --%s needs %s\n", cli_cmd_name(cmd),
					o->name, o->arg);
				return -EINVAL;
			}
		} else if (eq) {
			fprintf(stderr, "rdma-migrate %s: --%s takes no value\n", cli_cmd_name(cmd),
				o->name);
			return -EINVAL;
		}
		/* given twice, the last one counts (scripts append overrides); lists add up */
		if (set_opt(c, o, val))
			return -EINVAL;
		c->seen |= 1ull << (o - opts);
	}
	if (c->help)
		return 0;
	/* all before anything is opened, listened on or connected to */
	if (check_assign_list(cmd, "ram", "NAME=PATH", "block", &c->ram) ||
	    check_assign_list(cmd, "state", "NAME=FILE", "device-state", &c->state))
		return -EINVAL;
	c->listen = c->listens.n ? c->listens.v[0] : NULL;
	if (c->listens.n > 1 && cmd != CMD_RECV) {
		fprintf(stderr, "rdma-migrate %s: --listen: one address only\n", cli_cmd_name(cmd));
		return -EINVAL;
	}
	if (c->listens.n > RMIG_RAILS_MAX) {
		fprintf(stderr, "rdma-migrate %s: --listen: at most %d addresses (rails)\n",
			cli_cmd_name(cmd), RMIG_RAILS_MAX);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < c->listens.n; i++)
		if (cli_check_addr("listen", c->listens.v[i], true))
			return -EINVAL;
	if (c->to && cmd != CMD_SAVE && cli_check_addr("to", c->to, false))
		return -EINVAL;
	if (c->to && cmd == CMD_SAVE && (!*c->to || !strcmp(c->to, "file:"))) {
		fprintf(stderr, "rdma-migrate save: --to: an empty file name\n");
		return -EINVAL;
	}
	if (c->rails && c->to && !strncmp(c->to, "file:", 5)) {
		fprintf(stderr, "rdma-migrate %s: --rails with --to file:: a file has no rails\n",
			cli_cmd_name(cmd));
		return -EINVAL;
	}
	if (c->rails && cli_check_rails(cmd, c->rails))
		return -EINVAL;
	if (c->tls && !c->key_file) {
		fprintf(stderr, "rdma-migrate %s: --tls needs --key-file (the TLS keys derive from "
				"the shared key)\n",
			cli_cmd_name(cmd));
		return -EINVAL;
	}
	if (c->tls && c->transport && !strcmp(c->transport, "rdma")) {
		fprintf(stderr, "rdma-migrate %s: --tls with --transport rdma: RDMA writes are not "
				"encrypted; use --transport tcp (or auto, which picks tcp with --tls)\n",
			cli_cmd_name(cmd));
		return -EINVAL;
	}
	return 0;
}

/* --rails: names of RDMA devices or network interfaces of this host, comma-separated. */
static int cli_check_rails(unsigned int cmd, const char *list)
{
	const char *p = list;

	if (!*list || strlen(list) > 255) {
		fprintf(stderr, "rdma-migrate %s: --rails: %s\n", cli_cmd_name(cmd),
			*list ? "longer than 255 bytes" : "empty");
		return -1;
	}
	for (;;) {
		size_t n = strcspn(p, ",");
		char name[64], path[128];
		struct stat st;

		if (!n || n >= sizeof(name) || memchr(p, '/', n) || (n <= 2 && p[0] == '.')) {
			fprintf(stderr, "rdma-migrate %s: --rails: '%.*s' is not a device name\n",
				cli_cmd_name(cmd), (int)n, p);
			return -1;
		}
		snprintf(name, sizeof(name), "%.*s", (int)n, p);
		snprintf(path, sizeof(path), "/sys/class/infiniband/%s", name);
		if (stat(path, &st)) {
			snprintf(path, sizeof(path), "/sys/class/net/%s", name);
			if (stat(path, &st)) {
				fprintf(stderr, "rdma-migrate %s: --rails: no RDMA device or network "
						"interface named '%s' on this host (see 'rdma-migrate "
						"info')\n",
					cli_cmd_name(cmd), name);
				return -1;
			}
		}
		if (!p[n])
			return 0;
		p += n + 1;
	}
}

int cli_open_regular(const char *what, const char *path)
{
	struct stat st, fst;
	int fd;

	/*
	 * stat first: open() of a FIFO blocks until a writer comes, of a
	 * device may rewind a tape. O_NONBLOCK and the second check close the
	 * window in which the name could be swapped for one.
	 */
	if (stat(path, &st) < 0) {
		fprintf(stderr, "rdma-migrate: %s %s: %s\n", what, path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "rdma-migrate: %s %s: not a regular file\n", what, path);
		return -1;
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &fst) < 0) {
		fprintf(stderr, "rdma-migrate: %s %s: %s\n", what, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(fst.st_mode) || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
		fprintf(stderr, "rdma-migrate: %s %s: not a regular file (replaced while "
				"opening)\n",
			what, path);
		close(fd);
		return -1;
	}
	/*
	 * O_NONBLOCK stays: a regular file ignores it, but a /proc file that
	 * would wait for data (/proc/kmsg) then says EAGAIN instead.
	 */
	return fd;
}

int cli_read_file(const char *what, const char *path, uint64_t max, uint8_t **data_p,
		  uint64_t *len_p, unsigned int *mode_p)
{
	struct stat st;
	uint64_t cap, len = 0;
	uint8_t *buf = NULL;
	int fd = cli_open_regular(what, path);

	if (fd < 0)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		st.st_size = 0;
	if (mode_p)
		*mode_p = (unsigned int)st.st_mode;
	/*
	 * To the end, not to st_size: a /proc or sysfs file says 0 bytes and
	 * has content; a file still being written has more. One byte over
	 * st_size is room for the read that sees the end.
	 */
	cap = (uint64_t)st.st_size < max ? (uint64_t)st.st_size + 1 : max + 1;
	if (cap < 4096)
		cap = max + 1 < 4096 ? max + 1 : 4096;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			uint64_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
			uint8_t *nb;

			if (len > max) {
				free(buf);
				close(fd);
				return -EFBIG;
			}
			nb = realloc(buf, (size_t)ncap);
			if (!nb)
				goto nomem;
			buf = nb;
			cap = ncap;
		} else if (!buf) {
			buf = malloc((size_t)cap);
			if (!buf)
				goto nomem;
		}
		n = read(fd, buf + len, (size_t)(cap - len));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "rdma-migrate: reading %s %s: %s\n", what, path,
				strerror(errno));
			goto fail;
		}
		if (!n)
			break;
		len += (uint64_t)n;
	}
	close(fd);
	*data_p = buf;
	*len_p = len;
	return 0;
nomem:
	fprintf(stderr, "rdma-migrate: %s %s: out of memory\n", what, path);
fail:
	free(buf);
	close(fd);
	return -EINVAL;
}

int cli_load_key(const struct cli *c, uint8_t *key, size_t *len_p)
{
	unsigned int mode;
	uint8_t *data;
	uint64_t len;
	int rc;

	*len_p = 0;
	if (!c->key_file)
		return 0;
	rc = cli_read_file("--key-file", c->key_file, CLI_KEY_MAX, &data, &len, &mode);
	if (rc == -EINVAL)
		return rc;
	if (rc || len < CLI_KEY_MIN) {
		fprintf(stderr, "rdma-migrate: --key-file %s: a key is a regular file of %d..%d "
				"bytes (try: head -c 32 /dev/urandom > FILE)\n",
			c->key_file, CLI_KEY_MIN, CLI_KEY_MAX);
		if (!rc)
			free(data);
		return -EINVAL;
	}
	memcpy(key, data, (size_t)len);
	free(data);
	if (mode & 077)
		fprintf(stderr, "rdma-migrate: warning: --key-file %s can be read by other users "
				"(mode %03o); chmod 600 it\n",
			c->key_file, mode & 0777);
	*len_p = (size_t)len;
	return 0;
}

/*
 * Follow @path's symlinks by hand (a dangling one names where the file will
 * be created), then name the result by its directory's real path: two names
 * of a file that does not exist yet resolve to one string.
 */
static void id_by_name(const char *path, char *out, size_t outlen)
{
	char cur[PATH_MAX], target[PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
	const char *base;
	char *slash;

	snprintf(cur, sizeof(cur), "%s", path);
	for (int hops = 0; hops < 40; hops++) { /* the kernel's MAXSYMLINKS */
		struct stat st;
		ssize_t n;

		if (lstat(cur, &st) < 0 || !S_ISLNK(st.st_mode))
			break;
		n = readlink(cur, target, sizeof(target) - 1);
		if (n < 0)
			break;
		target[n] = '\0';
		slash = strrchr(cur, '/');
		if (target[0] == '/' || !slash) {
			snprintf(cur, sizeof(cur), "%s", target);
		} else {
			slash[1] = '\0'; /* relative to the link's directory */
			if (strlen(cur) + strlen(target) >= sizeof(cur))
				break;
			strcat(cur, target);
		}
	}
	slash = strrchr(cur, '/');
	if (!slash) {
		snprintf(dir, sizeof(dir), ".");
		base = cur;
	} else {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - cur) ? (int)(slash - cur) : 1, cur);
		base = slash + 1;
	}
	if (!realpath(dir, real)) /* no such directory: the name as it stands */
		snprintf(real, sizeof(real), "%s", dir);
	snprintf(out, outlen, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base);
}

void cli_file_id(const char *path, struct cli_file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (!stat(path, &st)) {
		id->exists = true;
		id->dev = st.st_dev;
		id->ino = st.st_ino;
		return;
	}
	id_by_name(path, id->name, sizeof(id->name));
}

bool cli_file_id_eq(const struct cli_file_id *a, const struct cli_file_id *b)
{
	if (a->exists != b->exists)
		return false;
	if (a->exists)
		return a->dev == b->dev && a->ino == b->ino;
	return !strcmp(a->name, b->name);
}

bool cli_seen(const struct cli *c, const char *name)
{
	const struct cli_opt *o = find_opt(name, strlen(name));

	return o && (c->seen >> (o - opts)) & 1;
}

void cli_usage(FILE *f, unsigned int cmd)
{
	if (!cmd) {
		fprintf(f, "usage: rdma-migrate COMMAND [OPTIONS]\n\n"
			   "rmig live-migration transport: RDMA queue pairs or TCP sockets.\n\n"
			   "commands:\n");
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
			fprintf(f, "  %-7s %s\n", cmds[i].name, cmds[i].what);
		fprintf(f, "\n'rdma-migrate COMMAND --help' lists a command's options;\n"
			   "'rdma-migrate --version' prints the version.\n"
			   "exit status: 0 success, 1 migration failed, 2 bad usage, 3 postcopy failed after\n"
			   "the destination ran the guest (the guest cannot continue).\n");
		return;
	}
	fprintf(f, "usage: rdma-migrate %s [OPTIONS]\n\n", cli_cmd_name(cmd));
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (cmds[i].cmd == cmd)
			fprintf(f, "%s.\n\noptions:\n", cmds[i].what);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const struct cli_opt *o = &opts[i];
		char lhs[64];

		if (!(o->cmds & cmd))
			continue;
		snprintf(lhs, sizeof(lhs), "--%s%s%s", o->name, o->arg ? " " : "",
			 cmd == CMD_SAVE && o->off == OFF(to) ? "FILE" : o->arg ? o->arg : "");
		fprintf(f, "  %-22s %s", lhs, o->help);
		if (o->def)
			fprintf(f, " [default: %s]", o->def);
		fprintf(f, "\n");
	}
	if (cmd == CMD_RECV)
		fprintf(f, "\nwhich source is served:\n"
			   "  with --key-file, recv keeps serving until a source that holds the key\n"
			   "  completes a migration or --timeout passes; connections without the key are\n"
			   "  refused and logged, and recv goes on listening.\n"
			   "  without --key-file, the first source to connect is the one served (first\n"
			   "  come); anyone who reaches the port can write into the images.\n"
			   "  with --keep, a migration that broke is kept for its own source to resume\n"
			   "  (send --resume); any other source is refused until --recovery-timeout.\n");
}
