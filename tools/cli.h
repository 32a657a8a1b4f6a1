/* SPDX-License-Identifier: MIT */
/*
 * cli.h - rdma-migrate's option table: one row per option (name, argument,
 * type, subcommands, bounds, help) drives parsing, validation and --help.
 */
#ifndef RMIG_CLI_H
#define RMIG_CLI_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define CLI_LIST_MAX 256
#define CLI_KEY_MIN 16   /* RMIG_KEY_MIN */
#define CLI_KEY_MAX 4096 /* RMIG_KEY_MAX */
#define CLI_NAME_MAX 64  /* RMIG_NAME_MAX: block and blob names, NUL included */
#define CLI_HOST_MAX 255 /* RMIG_HOST_MAX - 1 */

enum cli_cmd {
	CMD_SEND = 1u << 0,
	CMD_RECV = 1u << 1,
	CMD_BENCH = 1u << 2,
	CMD_INFO = 1u << 3,
	CMD_VM_SEND = 1u << 4,
	CMD_VM_RECV = 1u << 5,
	CMD_SAVE = 1u << 6,
	CMD_RESTORE = 1u << 7,
};
#define CMD_LAST CMD_RESTORE

enum cli_type {
	OPT_FLAG,   /* bool */
	OPT_STR,    /* const char * */
	OPT_UINT,   /* unsigned int, decimal, within [min, max] */
	OPT_SIZE,   /* uint64_t with K/M/G/T suffix (powers of 1024) */
	OPT_LIST,   /* repeatable: struct cli_list */
	OPT_CHOICE, /* const char *, one of choices */
};

struct cli_list {
	unsigned int n;
	const char *v[CLI_LIST_MAX];
};

struct cli {
	unsigned int cmd;
	const char *to;
	const char *listen;       /* the first --listen */
	struct cli_list listens;  /* every --listen: recv opens a rail on each after the first */
	const char *port_file;
	struct cli_list ram;
	struct cli_list state;
	const char *state_dir;
	unsigned int channels;
	const char *transport;
	const char *rails; /* --rails DEV[,DEV...] */
	unsigned int timeout_s;
	uint64_t extent;
	uint64_t inflight;
	bool verify;
	bool tls;
	bool json;
	bool quiet;
	unsigned int verbose;
	/* bench */
	uint64_t size;
	const char *channel_list;
	const char *addr;
	/* live migration: send, bench --live */
	uint64_t max_bandwidth;
	bool live;
	/* bench --postcopy */
	bool postcopy;
	unsigned int postcopy_after;
	unsigned int faults;
	bool no_urgent;
	uint64_t ram_size;
	unsigned int writers;
	uint64_t dirty_rate;
	const char *pattern;
	uint64_t hot_size;
	unsigned int downtime_ms;
	unsigned int max_rounds;
	bool switch_anyway;
	const char *device_state;
	const char *key_file;
	const uint8_t *key; /* loaded from key_file by cli_load_key() */
	size_t key_len;
	/* save, restore */
	const char *from;
	bool direct;
	bool no_bind;
	bool no_fallback;
	/* send --resume, recv --keep */
	bool resume;
	bool keep;
	unsigned int recovery_s;
	/* vm-send, vm-recv */
	const char *qmp;
	const char *track; /* vm-send: auto, soft-dirty or shadow */
	bool paused;
	bool help;
	uint64_t seen; /* bit i: opts[i] was given on the command line */
};

struct cli_opt {
	const char *name;
	const char *arg; /* NULL for flags */
	enum cli_type type;
	unsigned int cmds;
	size_t off;
	uint64_t min, max;
	const char *const *choices;
	const char *def; /* shown in --help and applied before parsing */
	const char *help;
};

/* Strict numbers: the whole string, in range, no sign. 0 or -EINVAL / -ERANGE. */
int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *v_p);
/* "4096", "64K", "1M", "2G", "1T" (powers of 1024; optional trailing "iB" or "B"). */
int cli_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *v_p);
/*
 * Split "NAME=VALUE"; NAME non-empty and shorter than @name_len. 0,
 * -ENAMETOOLONG, or -EINVAL (no '=', empty NAME or VALUE).
 */
int cli_split_assign(const char *s, char *name, size_t name_len, const char **value_p);
/*
 * Check --@opt HOST:PORT (or [ADDR]:PORT) before anything connects: 0, or
 * -EINVAL after printing what is wrong. @listen: port 0 allowed; without
 * it, the library's tcp:// or rdma:// prefix is.
 */
int cli_check_addr(const char *opt, const char *v, bool listen);

/*
 * Parse argv after the subcommand into @c. On error prints the reason to
 * stderr and returns -EINVAL. Unknown options, options of another
 * subcommand, missing arguments and out-of-range values are errors.
 */
int cli_parse(struct cli *c, unsigned int cmd, int argc, char **argv);
void cli_usage(FILE *f, unsigned int cmd);
/*
 * Read --key-file into @key (CLI_KEY_MAX bytes): 0 and *len_p (0 without
 * the option), or -EINVAL after printing why. Warns when others may read it.
 */
int cli_load_key(const struct cli *c, uint8_t *key, size_t *len_p);
/*
 * Open a regular file to read: the fd (O_NONBLOCK), or -1 after printing
 * why ("@what @path: ..."). A FIFO, device or directory is refused before
 * open(), which could block on it.
 */
int cli_open_regular(const char *what, const char *path);
/*
 * Read all of a regular file (to its end, whatever st_size says: /proc),
 * at most @max bytes, into a malloc'ed *data_p. 0; -EFBIG, silent, when it
 * holds more than @max; or -EINVAL after printing why. @mode_p, when not
 * NULL, gets its st_mode.
 */
int cli_read_file(const char *what, const char *path, uint64_t max, uint8_t **data_p,
		  uint64_t *len_p, unsigned int *mode_p);

/*
 * Which file a path names, for telling whether two options name one file
 * that may not exist yet: its (st_dev, st_ino) when it exists; else the
 * real path of its directory and its base name, dangling symlinks followed.
 */
struct cli_file_id {
	bool exists;
	dev_t dev;
	ino_t ino;
	char name[PATH_MAX + 256];
};
void cli_file_id(const char *path, struct cli_file_id *id);
bool cli_file_id_eq(const struct cli_file_id *a, const struct cli_file_id *b);
/*
 * Whether @n may name a device-state blob: a file name in recv's
 * --state-dir, so not empty, '.' or '..', and no '/' or control byte.
 */
bool cli_blob_name_ok(const char *n);
/* True when option --@name was given on the command line (not a default). */
bool cli_seen(const struct cli *c, const char *name);
const char *cli_cmd_name(unsigned int cmd);

#endif
