/* SPDX-License-Identifier: MIT */
/* recv.c - `rdma-migrate recv` and `restore`: one migration, or a save file, into images. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "image.h"
#include "rmig.h"
#include "sock.h"
#include "tool.h"
#include "wire.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* ---- recv ---- */

/*
 * recv: fault_point("mid-round") once half of the RAM has landed, or 500 ms
 * after the accept: RDMA WRITEs land without the destination's CPU, so its
 * counters cannot tell.
 */
struct fault_watch {
	rmig_session *s;
	uint64_t total;
	pthread_t th;
	atomic_bool stop;
};

static void *fault_watch_main(void *arg)
{
	struct fault_watch *w = arg;

	for (unsigned int ms = 0; !atomic_load(&w->stop); ms++) {
		struct rmig_stats st;
		struct timespec ts = { 0, 1000000 };

		rmig_get_stats(w->s, &st);
		if ((st.handled >= w->total / 2 && w->total) || ms >= 500)
			fault_point("mid-round");
		nanosleep(&ts, NULL);
	}
	return NULL;
}

struct recv_ctx {
	const struct cli *c;
	const char *name; /* "recv" or "restore" */
	const char *peer; /* "the source sends", "the file holds" */
	struct image *im;
	unsigned int nim;
	uint64_t total;
	struct image_reserve *reserve;
	/* device-state files written in this run: two blobs never share one */
	pthread_mutex_t paths_lock;
	char **paths;
	unsigned int npaths;
};

/*
 * Claim @path for one blob ('dev' instance 1 and 'dev.1' instance 0 both
 * name DIR/dev.1): 0, or -EEXIST when another blob of this run has it.
 */
static int claim_path(struct recv_ctx *r, const char *path)
{
	int rc = 0;
	char **n;

	pthread_mutex_lock(&r->paths_lock);
	for (unsigned int i = 0; i < r->npaths && !rc; i++)
		if (!strcmp(r->paths[i], path))
			rc = -EEXIST;
	if (!rc) {
		n = realloc(r->paths, (r->npaths + 1) * sizeof(*n));
		if (n) {
			r->paths = n;
			r->paths[r->npaths] = strdup(path);
			if (r->paths[r->npaths])
				r->npaths++;
		}
	}
	pthread_mutex_unlock(&r->paths_lock);
	return rc;
}

static void paths_free(struct recv_ctx *r)
{
	for (unsigned int i = 0; i < r->npaths; i++)
		free(r->paths[i]);
	free(r->paths);
	r->paths = NULL;
	r->npaths = 0;
}

/* The reservation behind the data failed: the migration cannot land whole. */
static void reserve_failed(void *arg, const char *why)
{
	rmig_cancel(arg, why);
}

static int recv_layout(void *arg, rmig_session *s, const struct rmig_block_info *b, unsigned int n)
{
	struct recv_ctx *r = arg;
	const struct cli *c = r->c;

	fault_point("handshake");
	if (n != c->ram.n) {
		fprintf(stderr, "rdma-migrate %s: %s %u ram blocks, %u --ram given\n", r->name,
			r->peer, n, c->ram.n);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < n; i++) {
		char name[RMIG_NAME_MAX], esc[4 * RMIG_NAME_MAX];
		const char *path = NULL;
		unsigned int j;

		for (j = 0; j < c->ram.n; j++) {
			if (!cli_split_assign(c->ram.v[j], name, sizeof(name), &path) &&
			    !strcmp(name, b[i].name))
				break;
		}
		if (j == c->ram.n) {
			/* the source's name, shown escaped: it may be a terminal control sequence */
			shown(esc, sizeof(esc), b[i].name);
			fprintf(stderr,
				"rdma-migrate %s: %s ram block '%s' but no --ram %s=PATH was "
				"given\n",
				r->name, r->peer, esc, esc);
			return -ENOENT;
		}
		if (image_open_dest(&r->im[r->nim], b[i].name, path, b[i].length))
			return -EIO;
		r->nim++;
		r->total += b[i].length;
		if (rmig_add_ram(s, b[i].name, r->im[r->nim - 1].addr, b[i].length,
				 r->im[r->nim - 1].page_size))
			return -EINVAL;
	}
	/* the room was checked; reserve it while the data comes */
	r->reserve = image_reserve_start(r->im, r->nim, reserve_failed, s);
	return 0;
}

static bool safe_name(const char *n)
{
	if (!n[0] || !strcmp(n, ".") || !strcmp(n, ".."))
		return false;
	for (const char *p = n; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20)
			return false;
	return true;
}

static int recv_state(void *arg, const char *name, uint32_t instance, const void *data,
		      uint64_t len)
{
	struct recv_ctx *r = arg;
	char path[4096], tmp[4200], esc[4 * RMIG_NAME_MAX];
	const uint8_t *p = data;
	uint64_t off = 0;

	fault_point("state");
	int fd, rc = 0;

	shown(esc, sizeof(esc), name); /* the source's, maybe a terminal control sequence */
	if (!r->c->state_dir) {
		fprintf(stderr,
			"rdma-migrate %s: %s device state '%s' but no --state-dir was given\n",
			r->name, r->peer, esc);
		return -ENOENT;
	}
	if (!safe_name(name)) {
		fprintf(stderr, "rdma-migrate %s: refusing device-state name '%s'\n", r->name, esc);
		return -EINVAL;
	}
	if (instance)
		snprintf(path, sizeof(path), "%s/%s.%u", r->c->state_dir, name, instance);
	else
		snprintf(path, sizeof(path), "%s/%s", r->c->state_dir, name);
	if (claim_path(r, path)) {
		fprintf(stderr,
			"rdma-migrate %s: device-state blob '%s' instance %u would be written to %s, "
			"as another blob of this migration is\n",
			r->name, esc, instance, path);
		return -EEXIST;
	}
	snprintf(tmp, sizeof(tmp), "%s.part", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		fprintf(stderr, "rdma-migrate %s: %s: %s\n", r->name, tmp, strerror(errno));
		return rc;
	}
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);

		if (n <= 0) {
			rc = -errno;
			break;
		}
		off += (uint64_t)n;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		fprintf(stderr, "rdma-migrate %s: writing %s: %s\n", r->name, path, strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

/*
 * Two --ram options that name one file would map it twice: each block
 * written over the other, one of them lost. The files may not exist yet
 * (recv creates them once the source says how large): nothing is created
 * here, a name that does not exist is compared by its resolved path.
 */
static int recv_check_paths(const struct cli *c)
{
	struct cli_file_id *id = calloc(c->ram.n + 1, sizeof(*id));
	const char *cmd = c->cmd == CMD_RESTORE ? "restore" : "recv";
	int rc = 0;

	if (!id)
		return -ENOMEM;
	for (unsigned int i = 0; i < c->ram.n && !rc; i++) {
		char name[RMIG_NAME_MAX];
		const char *path;

		if (cli_split_assign(c->ram.v[i], name, sizeof(name), &path)) { /* cli_parse checked */
			rc = -EINVAL;
			break;
		}
		cli_file_id(path, &id[i]);
		for (unsigned int j = 0; j < i; j++) {
			if (!cli_file_id_eq(&id[i], &id[j]))
				continue;
			fprintf(stderr, "rdma-migrate %s: --ram '%s' and --ram '%s' name the same "
					"file: each block needs a file of its own\n",
				cmd, c->ram.v[j], c->ram.v[i]);
			rc = -EINVAL;
			break;
		}
		/* restore empties its images first: never the file it reads */
		if (!rc && c->from) {
			cli_file_id(c->from, &id[c->ram.n]);
			if (cli_file_id_eq(&id[i], &id[c->ram.n])) {
				fprintf(stderr, "rdma-migrate restore: --ram '%s' is the file --from "
						"names: restoring would empty it before reading it\n",
					c->ram.v[i]);
				rc = -EINVAL;
			}
		}
	}
	free(id);
	return rc;
}

/* recv, and restore (its "source" is the file --from names: file:PATH). */
int cmd_recv(const struct cli *c)
{
	bool restore = c->cmd == CMD_RESTORE;
	struct recv_ctx r = { .c = c,
			      .name = restore ? "restore" : "recv",
			      .peer = restore ? "the file holds" : "the source sends" };
	struct progress prog = { 0 };
	struct rmig_opts o;
	rmig_session *s = NULL;
	char *uri = NULL;
	int rc = EXIT_USAGE, err, port;

	if (restore ? !c->from || !c->ram.n : !c->listen || !c->ram.n) {
		fprintf(stderr, "rdma-migrate %s: %s and at least one --ram are required\n", r.name,
			restore ? "--from" : "--listen");
		return EXIT_USAGE;
	}
	if (recv_check_paths(c))
		return EXIT_USAGE;
	if (c->state_dir) {
		struct stat st;

		if (stat(c->state_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "rdma-migrate %s: --state-dir %s: not a directory\n", r.name,
				c->state_dir);
			return EXIT_USAGE;
		}
	}
	pthread_mutex_init(&r.paths_lock, NULL);
	r.im = calloc(c->ram.n, sizeof(*r.im));
	uri = malloc(strlen(restore ? c->from : c->listen) + 8);
	if (!r.im || !uri) {
		pthread_mutex_destroy(&r.paths_lock);
		free(r.im);
		free(uri);
		return EXIT_FAILED;
	}
	tool_opts(&o, c, RMIG_ROLE_DEST);
	o.flags |= RMIG_F_ZEROED; /* image_open_dest() hands over images that read as zero */
	if (restore && c->verify)
		o.flags |= RMIG_F_VERIFY;
	/*
	 * Not RMIG_F_PREPARE here: tmpfs files get no huge pages, so
	 * populating them ahead only moves the same per-page work to another
	 * thread (measured: no gain); the reservation thread zeroes the pages
	 * ahead instead.
	 */
	o.flags &= ~RMIG_F_PREPARE;
	o.layout_fn = recv_layout;
	o.layout_arg = &r;
	o.state_fn = recv_state;
	o.state_arg = &r;
	if (rmig_session_create(&o, &s))
		goto out;
	sprintf(uri, restore ? "file:%s" : "tcp://%s", restore ? c->from : c->listen);
	if (rmig_listen(s, uri))
		goto out;
	/* each further --listen: a rail */
	for (unsigned int i = 1; !restore && i < c->listens.n; i++) {
		int lrc = rmig_listen_add(s, c->listens.v[i]);

		if (lrc) {
			fprintf(stderr, "rdma-migrate recv: --listen %s: %s\n", c->listens.v[i],
				lrc == -ENOSPC	      ? "too many rails" :
				lrc == -EADDRNOTAVAIL ? "not an address of this host" :
				lrc == -EINVAL	      ? "not an address" :
							rmig_strerror(lrc));
			goto out;
		}
	}
	rc = EXIT_FAILED;
	port = restore ? 0 : rmig_listen_port(s);
	if (restore) {
		/* nothing to announce: the file is opened and checked by the accept */
	} else if (c->port_file) {
		FILE *f = fopen(c->port_file, "w");

		if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f)) {
			fprintf(stderr, "rdma-migrate recv: writing %s: %s\n", c->port_file,
				strerror(errno));
			goto out;
		}
	}
	if (!c->key_len && !restore)
		fprintf(stderr, "rdma-migrate: warning: no --key-file: anyone who can reach %s can "
				"write into the images\n",
			c->listen);
	if (!c->quiet && !restore)
		fprintf(stderr, "rdma-migrate: listening on %s (port %d)\n", c->listen, port);
	err = rmig_accept(s);
	if (!err) {
		struct fault_watch fw = { .s = s, .total = r.total };
		bool watching;

		fault_point("accepted");
		watching = fault_armed("mid-round") && !pthread_create(&fw.th, NULL, fault_watch_main, &fw);
		progress_start(&prog, s, r.total, c->quiet);
		err = rmig_complete(s);
		progress_stop(&prog);
		if (watching) {
			atomic_store(&fw.stop, true);
			pthread_join(fw.th, NULL);
		}
	}
	image_reserve_stop(r.reserve);
	/* pages the SIGBUS guard had to replace never reached the image */
	for (unsigned int i = 0; i < r.nim; i++)
		if (image_check(&r.im[i], "during the migration") && !err)
			err = -EIO;
	if (c->json)
		tool_print_json(stdout, "destination", s, err, false);
	if (err) {
		char why[4 * RMIG_ERRMSG_MAX];

		/* the library's message may quote the source's names */
		fprintf(stderr, "rdma-migrate %s: %s failed: %s\n", r.name,
			restore ? "restore" : "migration",
			rmig_last_error(s)[0] ? shown(why, sizeof(why), rmig_last_error(s)) :
						strerror(-err));
		goto out;
	}
	if (!c->quiet)
		summary(restore ? "restored" : "received", s, restore && c->verify, r.total);
	rc = 0;
out:
	rmig_session_destroy(s);
	for (unsigned int i = 0; i < r.nim; i++)
		image_close(&r.im[i]);
	paths_free(&r);
	pthread_mutex_destroy(&r.paths_lock);
	free(r.im);
	free(uri);
	return rc;
}
