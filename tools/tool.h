/* SPDX-License-Identifier: MIT */
/* tool.h - pieces shared by rdma-migrate's subcommands. */
#ifndef RMIG_TOOL_H
#define RMIG_TOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "rmig.h"

/* A buffer for an error text made safe to print (rmig_escape() at most quadruples) */
#define TOOL_WHY_MAX 1024

static inline bool tool_rdma_built(void)
{
	return rmig_transport_built(RMIG_TRANSPORT_RDMA);
}

void tool_opts(struct rmig_opts *o, const struct cli *c, enum rmig_role role);
void tool_fmt_bytes(char *buf, size_t len, double v);
/*
 * 0 when @bytes of new memory fit in what the kernel reports available;
 * else prints why (@who: the command, @what: what needs it) and -ENOMEM.
 * Touching more would end in the OOM killer's SIGKILL, not an error.
 */
int tool_mem_check(const char *who, const char *what, uint64_t bytes);
/*
 * Memory this process may still have, in bytes: MemAvailable from
 * /proc/meminfo, or what its memory cgroup (v2 or v1, and those above it)
 * leaves, when that is less; 0 when /proc/meminfo cannot be read.
 */
uint64_t tool_mem_available(void);
/* @resumes: how often a broken migration was resumed (send --resume, recv --keep) */
void tool_print_json(FILE *f, const char *role, rmig_session *s, int rc, bool verified,
		     unsigned int resumes);
void tool_json_placement(FILE *f, rmig_session *s, unsigned int channels);
/* @str as a JSON string, quotes included; control and non-ASCII bytes as \u00XX. */
void tool_json_str(FILE *f, const char *str);
int tool_bench(const struct cli *c);
/* A destination session on a thread of its own: accept, then complete. */
struct tool_dest {
	rmig_session *s;
	int rc;
};
void *tool_dest_main(void *arg);
/* bench --live (bench_live.c); tool_bench_check refuses options of the other mode. */
int tool_bench_live(const struct cli *c);
int tool_bench_check(const struct cli *c);
int tool_info(const struct cli *c);
/* vm.c: a QEMU VM's RAM and device state, through its QMP socket */
int tool_vm_send(const struct cli *c);
int tool_vm_recv(const struct cli *c);
/* RMIG_FAULT=POINT:ACTION names this point and action (fault injection for the tests). */
bool tool_fault_armed(const char *point, const char *action);
/* RMIG_FAULT=POINT:kill|stop: die (SIGKILL) or stall (SIGSTOP) here, at POINT. */
void fault_point(const char *point);
/* RMIG_FAULT names this point, whatever its action. */
bool fault_armed(const char *point);

/* The progress line on stderr, twice a second while a migration runs (rdma-migrate.c). */
struct progress {
	rmig_session *s;
	uint64_t total;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	bool shown;
	bool active;
};
/* Start the progress line for @total bytes: not with @quiet, nor when stderr is no terminal. */
void progress_start(struct progress *p, rmig_session *s, uint64_t total, bool quiet);
/* Stop it, and end its line. */
void progress_stop(struct progress *p);
/* @s, which may hold what a peer sent, made safe to print in @buf; returns @buf. */
const char *shown(char *buf, size_t len, const char *s);
/* The summary line on stderr ("sent ...", "received ..."); @images: the destination's bytes. */
void summary(const char *verb, rmig_session *s, bool verified, uint64_t images);
/*
 * The session SIGINT, SIGTERM or SIGHUP cancel (send, recv, save, restore);
 * NULL before one exists and before it is destroyed. Whether one came.
 */
void tool_session(rmig_session *s);
/* --listen HOST:PORT as bound, in @buf: PORT 0 (any) replaced by @port. Returns @buf. */
const char *tool_bound_addr(char *buf, size_t len, const char *listen, int port);
bool tool_interrupted(void);
/* "interrupted by SIGINT": what ended the command, once tool_interrupted() */
const char *tool_interrupt_why(void);
/*
 * A failed save's file @file (@before: stat of what was there before the
 * command, or NULL): removed if this command made or emptied it and no
 * other holds its lock; says so. Call after the session is destroyed.
 */
struct stat;
void tool_save_remove(const char *cmd, const char *file, const struct stat *before);
/* send.c: send and save */
int cmd_send(const struct cli *c);
int cmd_save(const struct cli *c);
/* recv.c: recv and restore */
int cmd_recv(const struct cli *c);

#endif
