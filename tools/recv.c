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
#include "tool.h"

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
	bool accepted; /* a source was accepted: recv --keep keeps what it sent */
	bool heard;    /* a source's HELLO came (the layout): recv --keep waits for it again */
	/* device-state files written in this run: two blobs never share one */
	pthread_mutex_t paths_lock;
	char **paths;
	unsigned int npaths;
	/*
	 * Blobs written whole to their .part file, renamed into place only
	 * once the migration has succeeded (and verified): a failed one leaves
	 * no blob that looks complete. Under paths_lock.
	 */
	struct staged {
		char *tmp, *path;
	} *staged;
	unsigned int nstaged;
};

/* Remember a blob written to @tmp, for @path; the caller unlinks @tmp on failure. */
static int stage(struct recv_ctx *r, const char *tmp, const char *path)
{
	struct staged *n;
	int rc = 0;

	pthread_mutex_lock(&r->paths_lock);
	for (unsigned int i = 0; i < r->nstaged; i++) {
		if (!strcmp(r->staged[i].tmp, tmp)) { /* written anew after a resume */
			pthread_mutex_unlock(&r->paths_lock);
			return 0;
		}
	}
	n = realloc(r->staged, (r->nstaged + 1) * sizeof(*n));
	if (n) {
		r->staged = n;
		n[r->nstaged].tmp = strdup(tmp);
		n[r->nstaged].path = strdup(path);
		if (n[r->nstaged].tmp && n[r->nstaged].path)
			r->nstaged++;
		else
			rc = -ENOMEM;
		if (rc) {
			free(n[r->nstaged].tmp);
			free(n[r->nstaged].path);
		}
	} else {
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&r->paths_lock);
	return rc;
}

/*
 * The migration's verdict for its blobs: @ok renames each into place (0, or
 * -errno after naming the one that could not be); else each .part goes.
 * Called once the session has ended; what is left is removed either way.
 */
static int staged_end(struct recv_ctx *r, bool ok)
{
	int rc = 0;

	pthread_mutex_lock(&r->paths_lock);
	for (unsigned int i = 0; i < r->nstaged; i++) {
		if (ok && !rc && rename(r->staged[i].tmp, r->staged[i].path) < 0) {
			rc = -errno;
			fprintf(stderr, "rdma-migrate %s: writing %s: %s\n", r->name,
				r->staged[i].path, strerror(errno));
		}
		if (!ok || rc)
			unlink(r->staged[i].tmp);
		free(r->staged[i].tmp);
		free(r->staged[i].path);
	}
	free(r->staged);
	r->staged = NULL;
	r->nstaged = 0;
	pthread_mutex_unlock(&r->paths_lock);
	return rc;
}

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

/*
 * The device state a save file holds (a network source declares none
 * before its data): refused now, before any image is emptied, where recv
 * could not store it: no --state-dir, or a name that is no file name.
 */
static int peer_state_ok(struct recv_ctx *r, rmig_session *s)
{
	int n = rmig_peer_state(s, NULL, 0), rc = 0;
	struct rmig_state_info *bi;
	char esc[4 * RMIG_NAME_MAX];

	if (n <= 0)
		return 0;
	bi = calloc((size_t)n, sizeof(*bi));
	if (!bi)
		return -ENOMEM;
	n = rmig_peer_state(s, bi, (unsigned int)n);
	for (int i = 0; i < n && !rc; i++) {
		shown(esc, sizeof(esc), bi[i].name);
		if (!r->c->state_dir) {
			fprintf(stderr,
				"rdma-migrate %s: %s device state '%s' (%d blob%s) but no "
				"--state-dir was given: nothing restored\n",
				r->name, r->peer, esc, n, n == 1 ? "" : "s");
			rc = -ENOENT;
		} else if (!cli_blob_name_ok(bi[i].name)) {
			fprintf(stderr, "rdma-migrate %s: refusing device-state name '%s': "
					"nothing restored\n", r->name, esc);
			rc = -EINVAL;
		}
	}
	free(bi);
	return rc;
}

/* The PATH of "--ram @block=PATH", or NULL when none names that block. */
static const char *ram_path(const struct cli *c, const char *block)
{
	for (unsigned int j = 0; j < c->ram.n; j++) {
		char name[RMIG_NAME_MAX];
		const char *path;

		if (!cli_split_assign(c->ram.v[j], name, sizeof(name), &path) && !strcmp(name, block))
			return path;
	}
	return NULL;
}

static int recv_layout(void *arg, rmig_session *s, const struct rmig_block_info *b, unsigned int n)
{
	struct recv_ctx *r = arg;
	const struct cli *c = r->c;
	int rc;

	fault_point("handshake");
	r->heard = true;
	rc = peer_state_ok(r, s);
	if (rc)
		return rc;
	if (n != c->ram.n) {
		fprintf(stderr, "rdma-migrate %s: %s %u ram blocks, %u --ram given\n", r->name,
			r->peer, n, c->ram.n);
		return -EINVAL;
	}
	/* every block named on this side, before any image is opened */
	for (unsigned int i = 0; i < n; i++) {
		char esc[4 * RMIG_NAME_MAX];

		if (ram_path(c, b[i].name))
			continue;
		/* the source's name, shown escaped: it may be a terminal control sequence */
		shown(esc, sizeof(esc), b[i].name);
		fprintf(stderr, "rdma-migrate %s: %s ram block '%s' but no --ram %s=PATH was given\n",
			r->name, r->peer, esc, esc);
		return -ENOENT;
	}
	/* every image checked before any is emptied: a refusal changes no file */
	for (unsigned int i = 0; i < n && !rc; i++) {
		rc = image_open_dest(&r->im[r->nim], b[i].name, ram_path(c, b[i].name), b[i].length,
				     b[i].page_size);
		r->nim++;
		r->total += b[i].length;
	}
	for (unsigned int i = 0; i < r->nim && !rc; i++) {
		rc = image_ready_dest(&r->im[i]);
		if (!rc && rmig_add_ram(s, r->im[i].name, r->im[i].addr, r->im[i].len,
					r->im[i].page_size))
			rc = -EINVAL;
	}
	if (rc) { /* the cause, for the source's message too */
		for (unsigned int k = 0; k < r->nim; k++)
			image_discard(&r->im[k]);
		r->nim = 0;
		r->total = 0;
		return rc;
	}
	/* the room was checked; reserve it while the data comes */
	r->reserve = image_reserve_start(r->im, r->nim, reserve_failed, s);
	return 0;
}

/* The files this run reads or writes besides its images, with their options. */
struct run_file {
	const char *path, *opt;
};

static unsigned int run_files(const struct cli *c, struct run_file f[3])
{
	unsigned int n = 0;

	if (c->from)
		f[n++] = (struct run_file){ c->from, "--from" };
	if (c->port_file)
		f[n++] = (struct run_file){ c->port_file, "--port-file" };
	if (c->key_file)
		f[n++] = (struct run_file){ c->key_file, "--key-file" };
	return n;
}

/*
 * What of this run @path names (the same file, by any name): "--ram
 * NAME=PATH", or one of run_files(); or NULL. A blob's name is the
 * source's to choose: written there, it would replace an image just
 * received, or a file this run reads.
 */
static const char *used_at(const struct recv_ctx *r, const char *path, char *buf, size_t len)
{
	struct run_file f[3];
	unsigned int n = run_files(r->c, f);
	struct cli_file_id a, b;

	cli_file_id(path, &a);
	for (unsigned int i = 0; i < r->nim; i++) {
		cli_file_id(r->im[i].path, &b);
		if (cli_file_id_eq(&a, &b)) {
			snprintf(buf, len, "--ram %s=%s", r->im[i].name, r->im[i].path);
			return buf;
		}
	}
	for (unsigned int i = 0; i < n; i++) {
		cli_file_id(f[i].path, &b);
		if (cli_file_id_eq(&a, &b)) {
			snprintf(buf, len, "%s %s", f[i].opt, f[i].path);
			return buf;
		}
	}
	return NULL;
}

static int recv_state(void *arg, const char *name, uint32_t instance, const void *data,
		      uint64_t len)
{
	struct recv_ctx *r = arg;
	char path[4096], tmp[4200], esc[4 * RMIG_NAME_MAX], what[4200 + RMIG_NAME_MAX];
	const char *used;
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
	if (!cli_blob_name_ok(name)) { /* the rule send and save apply */
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
	/* its scratch file too: blob 'x.part' must not be blob 'x''s scratch */
	if (claim_path(r, tmp)) {
		fprintf(stderr,
			"rdma-migrate %s: device-state blob '%s' instance %u would be staged in %s, "
			"which another blob of this migration uses\n",
			r->name, esc, instance, tmp);
		return -EEXIST;
	}
	used = used_at(r, path, what, sizeof(what));
	if (!used)
		used = used_at(r, tmp, what, sizeof(what));
	if (used) {
		fprintf(stderr,
			"rdma-migrate %s: device-state blob '%s' instance %u would be written to "
			"%s, over %s of this run\n",
			r->name, esc, instance, path, used);
		return -EEXIST;
	}
	/*
	 * A new file of our own: whatever was there (a stale scratch file, or
	 * a symbolic or hard link someone left) is removed, never written
	 * through.
	 */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		rc = -errno;
		fprintf(stderr, "rdma-migrate %s: removing %s: %s\n", r->name, tmp, strerror(errno));
		return rc;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
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
	if (!rc)
		rc = stage(r, tmp, path);
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
	struct run_file f[3];
	unsigned int nf = run_files(c, f);
	struct cli_file_id *id = calloc(c->ram.n + nf, sizeof(*id)), *fid = id + c->ram.n;
	const char *cmd = c->cmd == CMD_RESTORE ? "restore" : "recv";
	int rc = 0;

	if (!id)
		return -ENOMEM;
	for (unsigned int k = 0; k < nf; k++)
		cli_file_id(f[k].path, &fid[k]);
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
		/*
		 * The images are emptied first: never the file restore reads, the
		 * key this run reads, nor the port file it writes.
		 */
		for (unsigned int k = 0; k < nf && !rc; k++) {
			if (!cli_file_id_eq(&id[i], &fid[k]))
				continue;
			fprintf(stderr, "rdma-migrate %s: --ram '%s' is the file %s names%s\n", cmd,
				c->ram.v[i], f[k].opt,
				f[k].path == c->from ? ": restoring would empty it before reading it" :
						       "");
			rc = -EINVAL;
		}
	}
	free(id);
	return rc;
}

/* One session's migration: accept, then wait for completion. */
static int recv_session(struct recv_ctx *r, rmig_session *s, struct progress *prog)
{
	int err = rmig_accept(s);

	if (!err) {
		struct fault_watch fw = { .s = s, .total = r->total };
		bool watching;

		r->accepted = true;
		fault_point("accepted");
		watching = fault_armed("mid-round") &&
			   !pthread_create(&fw.th, NULL, fault_watch_main, &fw);
		progress_start(prog, s, r->total, r->c->quiet);
		err = rmig_complete(s);
		progress_stop(prog);
		if (watching) {
			atomic_store(&fw.stop, true);
			pthread_join(fw.th, NULL);
		}
	}
	return err;
}

/* recv --keep: ends a wait for the source at --recovery-timeout. */
struct keep_watch {
	rmig_session *s;
	unsigned int secs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop, fired;
};

static void *keep_watch_main(void *arg)
{
	struct keep_watch *w = arg;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += w->secs;
	pthread_mutex_lock(&w->lock);
	while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
		;
	if (!w->stop) {
		w->fired = true;
		rmig_cancel(w->s, "no source resumed the migration within --recovery-timeout");
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/*
 * recv --keep: the migration broke (@err). Keep the images, listen again on
 * the same port, and take the same source back (rmig_resume_from()): a
 * session that a stranger's refusal ended is kept again, within the one
 * --recovery-timeout that began at the break. 0 once a resumed migration
 * completed, else its error; *again_p: the source came back, and the
 * resumed migration broke too.
 */
static int recv_keep(struct recv_ctx *r, rmig_session **s_p, const struct rmig_opts *o,
		     char *uri, int port, int err, bool *again_p)
{
	const struct cli *c = r->c;
	struct keep_watch w = { .secs = c->recovery_s };
	struct progress prog = { 0 };
	char why[TOOL_WHY_MAX];
	pthread_t th;
	bool watching = false;
	char *colon;
	int rc = err;

	if (!c->quiet)
		fprintf(stderr, "rdma-migrate recv: the migration broke: %s; keeping the images for "
				"its source to resume (--recovery-timeout %u)\n",
			rmig_last_error(*s_p)[0] ? shown(why, sizeof(why), rmig_last_error(*s_p)) :
						   strerror(-err),
			c->recovery_s);
	/* the reservation thread cancels the session it was given: end it with that one */
	image_reserve_stop(r->reserve);
	r->reserve = NULL;
	/* the resumed source sends its blobs again: their files are written anew */
	pthread_mutex_lock(&r->paths_lock);
	paths_free(r);
	pthread_mutex_unlock(&r->paths_lock);
	staged_end(r, false);
	/* PORT 0 picked one: the source comes back to the same */
	colon = strrchr(uri, ':');
	if (colon)
		sprintf(colon + 1, "%d", port);
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	for (bool first = true;; first = false) {
		rmig_session *n = NULL;

		if (rmig_session_create(o, &n)) {
			rc = -ENOMEM;
			break;
		}
		tool_session(n); /* before the old one goes */
		rc = rmig_resume_from(n, *s_p); /* the old session is gone either way */
		*s_p = n;
		if (!rc)
			rc = rmig_listen(n, uri);
		for (unsigned int i = 1; !rc && i < c->listens.n; i++)
			rc = rmig_listen_add(n, c->listens.v[i]);
		if (rc)
			break;
		pthread_mutex_lock(&w.lock);
		w.s = n;
		pthread_mutex_unlock(&w.lock);
		if (first) {
			if (pthread_create(&th, NULL, keep_watch_main, &w)) {
				rc = -EAGAIN;
				break;
			}
			watching = true;
		}
		rc = rmig_accept(n);
		pthread_mutex_lock(&w.lock);
		if (!rc || w.fired || tool_interrupted()) {
			/* the source is back (or never came): the window is over */
			w.stop = true;
			pthread_mutex_unlock(&w.lock);
			break;
		}
		pthread_mutex_unlock(&w.lock);
		if (!c->quiet)
			fprintf(stderr, "rdma-migrate recv: %s\n",
				rmig_last_error(n)[0] ? shown(why, sizeof(why), rmig_last_error(n)) :
							strerror(-rc));
	}
	if (watching) {
		pthread_mutex_lock(&w.lock);
		w.stop = true;
		pthread_cond_signal(&w.cond);
		pthread_mutex_unlock(&w.lock);
		pthread_join(th, NULL);
	}
	if (rc && w.fired) {
		fprintf(stderr, "rdma-migrate recv: no source resumed the migration within %u s\n",
			c->recovery_s);
		rc = err;
	} else if (!rc) {
		if (!c->quiet)
			fprintf(stderr, "rdma-migrate recv: the source resumed the migration\n");
		r->accepted = true;
		progress_start(&prog, *s_p, r->total, c->quiet);
		rc = rmig_complete(*s_p);
		progress_stop(&prog);
		*again_p = rc != 0;
	}
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
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
	unsigned int resumes = 0;
	bool accepted = false;
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
	uri = malloc(strlen(restore ? c->from : c->listen) + 16);
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
	if (c->keep) /* a kept migration's accept waits for its source this long */
		o.recovery_timeout_ms = c->recovery_s * 1000u;
	o.layout_fn = recv_layout;
	o.layout_arg = &r;
	o.state_fn = recv_state;
	o.state_arg = &r;
	if (rmig_session_create(&o, &s))
		goto out;
	tool_session(s);
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
	if (!restore) {
		char at[320];

		tool_bound_addr(at, sizeof(at), c->listen, port);
		if (!c->key_len)
			fprintf(stderr, "rdma-migrate: warning: no --key-file: anyone who can reach "
					"%s can write into the images\n",
				at);
		if (!c->quiet)
			fprintf(stderr, "rdma-migrate: listening on %s\n", at);
	}
	err = recv_session(&r, s, &prog);
	accepted = r.accepted || r.heard; /* a break while connecting counts too */
	/* each break of an accepted migration opens a window of its own */
	for (bool again = err && c->keep && accepted && !restore && !tool_interrupted(); again;) {
		again = false;
		err = recv_keep(&r, &s, &o, uri, port, err, &again);
		again = again && !tool_interrupted();
		if (!err || again)
			resumes++;
	}
	image_reserve_stop(r.reserve);
	r.reserve = NULL;
	/* pages the SIGBUS guard had to replace never reached the image */
	for (unsigned int i = 0; i < r.nim; i++)
		if (image_check(&r.im[i], "during the migration") && !err)
			err = -EIO;
	/* the blobs land only with a migration that did */
	if (staged_end(&r, !err) && !err)
		err = -EIO;
	if (c->json)
		tool_print_json(stdout, "destination", s, err, false, resumes);
	if (err) {
		char why[TOOL_WHY_MAX];

		/* the library's message may quote the source's names */
		fprintf(stderr, "rdma-migrate %s: %s failed: %s\n", r.name,
			restore ? "restore" : "migration",
			rmig_last_error(s)[0] ? shown(why, sizeof(why), rmig_last_error(s)) :
						strerror(-err));
		goto out;
	}
	if (!c->quiet && resumes)
		fprintf(stderr, "rdma-migrate recv: the source resumed %u time%s\n", resumes,
			resumes == 1 ? "" : "s");
	if (!c->quiet)
		summary(restore ? "restored" : "received", s, restore && c->verify, r.total);
	rc = 0;
out:
	tool_session(NULL);
	rmig_session_destroy(s);
	staged_end(&r, false); /* none left unless it failed before its verdict */
	for (unsigned int i = 0; i < r.nim; i++)
		image_close(&r.im[i]);
	paths_free(&r);
	pthread_mutex_destroy(&r.paths_lock);
	free(r.im);
	free(uri);
	return rc;
}
