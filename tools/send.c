/* SPDX-License-Identifier: MIT */
/* send.c - `rdma-migrate send` and `save`: memory images and device state to a peer or a file. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "image.h"
#include "rmig.h"
#include "tool.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* ---- send ---- */

static size_t bitmap_bytes(const struct image *im)
{
	uint64_t n = im->len / im->page_size;

	return (size_t)((n + 63) / 64 * 8);
}

static bool bit_get(const unsigned long *m, uint64_t i)
{
	return (m[i / (8 * sizeof(long))] >> (i % (8 * sizeof(long)))) & 1;
}

struct fault_sync {
	rmig_session *s;
};

static void *fault_sync_main(void *arg)
{
	(void)rmig_sync(((struct fault_sync *)arg)->s);
	return NULL;
}

struct blobfile {
	char name[RMIG_NAME_MAX];
	uint8_t *data;
	uint64_t len;
};

/*
 * A device-state file, read to its end: a /proc or sysfs file says 0 bytes
 * and has content. At most the destination's default device-state limit.
 */
#define STATE_FILE_MAX (4ull << 30)

static int read_file(const char *path, uint8_t **data_p, uint64_t *len_p)
{
	int rc = cli_read_file("--state", path, STATE_FILE_MAX, data_p, len_p, NULL);

	if (rc == -EFBIG)
		fprintf(stderr, "rdma-migrate: --state %s: larger than %llu GiB, the destination's "
				"limit\n",
			path, STATE_FILE_MAX >> 30);
	return rc ? -1 : 0;
}

/* A regular file at @file that this save created, or truncated (@before: as it was). */
static bool save_created(const char *file, const struct stat *before)
{
	struct stat st;

	if (stat(file, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	return !before || st.st_dev != before->st_dev || st.st_ino != before->st_ino ||
	       st.st_ctim.tv_sec != before->st_ctim.tv_sec ||
	       st.st_ctim.tv_nsec != before->st_ctim.tv_nsec;
}

/*
 * A failed save's file goes, if this save made it (or emptied it) and no
 * other command holds it: a save refused because another one was writing
 * the same file must not remove that one's (their locks: core/file.c).
 * After the session is destroyed, so that its own lock is gone.
 */
void tool_save_remove(const char *cmd, const char *file, const struct stat *before)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0 && save_created(file, before) && unlink(file) == 0)
		fprintf(stderr, "rdma-migrate %s: removed the incomplete %s\n", cmd, file);
	close(fd);
}

/*
 * send --resume, and a send over several rails: a sync after each
 * sixteenth of the images, 4 to 128 MiB, so that a break (or a rail that
 * fails over) costs at most that much again.
 */
#define RESUME_STEP_MIN (4ull << 20)
#define RESUME_STEP_MAX (128ull << 20)

struct send_run {
	const struct cli *c;
	struct image *im;
	unsigned int nim;
	struct blobfile *bf;
	unsigned int nbf;
	/* per image, the pages this session sends (all, or what the destination lacks) */
	unsigned long **todo;
	uint64_t step; /* --resume, several rails: bytes between syncs */
	bool *shrank;  /* an image shrank during the send: said, and no resume */
};

/* The pages in @r->todo, a sync after each RESUME_STEP of every image. */
static int send_steps(rmig_session *s, const struct send_run *r)
{
	int err = 0;

	for (unsigned int i = 0; i < r->nim && !err; i++) {
		const struct image *im = &r->im[i];
		uint64_t npages = im->len / im->page_size;
		uint64_t step = r->step / im->page_size ? r->step / im->page_size : 1;

		for (uint64_t p = 0; p < npages && !err; p += step) {
			uint64_t end = p + step < npages ? p + step : npages, q = p;

			while (q < end && !err) {
				uint64_t first = q, n = 0;

				while (first < end && !bit_get(r->todo[i], first))
					first++;
				while (first + n < end && bit_get(r->todo[i], first + n))
					n++;
				if (n)
					err = rmig_send_range(s, im->name, first * im->page_size,
							      n * im->page_size);
				q = first + n;
			}
			if (!i && !p)
				fault_point("mid-round");
			if (!err)
				err = rmig_sync(s);
		}
	}
	return err;
}

/* Whether the channels go through more than one rail (a failed one fails over). */
static bool several_rails(rmig_session *s)
{
	struct rmig_chan_place pl;
	struct rmig_stats st;

	rmig_get_stats(s, &st);
	for (unsigned int i = 0; i < st.channels; i++)
		if (rmig_get_placement(s, i, &pl, sizeof(pl)) == 0 && pl.rail != 0)
			return true;
	return false;
}

/* One session's transfer, after its connect: the images, a sync, the device state, completion. */
static int send_session(rmig_session *s, const struct send_run *r, struct fault_sync *fsync_arg,
			pthread_t *fsync_th, bool *fsync_started)
{
	const struct cli *c = r->c;
	int err = 0;

	if (c->resume || several_rails(s)) {
		err = send_steps(s, r);
	} else {
		for (unsigned int i = 0; i < r->nim && !err; i++) {
			/* in two halves, with the mid-round fault point between them */
			const struct image *im = &r->im[i];
			uint64_t half = im->len / 2 / im->page_size * im->page_size;

			err = rmig_send_range(s, im->name, 0, half);
			if (!i)
				fault_point("mid-round");
			if (!err)
				err = rmig_send_range(s, im->name, half, im->len - half);
		}
	}
	/*
	 * Every page has been read once the sync returns: an image that shrank
	 * meanwhile (read as zeros past its end, by the SIGBUS guard) fails
	 * the migration here, before the destination is told it is complete.
	 */
	if (!err)
		err = rmig_sync(s);
	for (unsigned int i = 0; i < r->nim && !err; i++) {
		if (image_check(&r->im[i], "during the send")) {
			rmig_cancel(s, "a source image shrank during the send");
			*r->shrank = true;
			err = -EIO;
		}
	}
	if (!err && !*fsync_started && fault_armed("sync")) {
		struct timespec ts = { 0, 2000000 };

		/* stop or die while a sync is in flight: markers posted, the ack not back */
		fsync_arg->s = s;
		if (!pthread_create(fsync_th, NULL, fault_sync_main, fsync_arg)) {
			*fsync_started = true;
			nanosleep(&ts, NULL);
			fault_point("sync");
		}
	}
	for (unsigned int i = 0; i < r->nbf && !err; i++) {
		err = rmig_send_state(s, r->bf[i].name, 0, r->bf[i].data, r->bf[i].len);
		if (!i)
			fault_point("state");
	}
	fault_point("complete");
	if (!err)
		err = rmig_complete(s);
	return err;
}

/* A break that a new connection may mend: not a refusal, a digest, or a local fault. */
static bool send_resumable(int err)
{
	switch (-err) {
	case ECONNRESET: case ECONNREFUSED: case ECONNABORTED: case ETIMEDOUT: case EPIPE:
	case ENOTCONN: case ENETUNREACH: case EHOSTUNREACH: case ENETDOWN: case EHOSTDOWN:
	case EPROTO: case ENODATA: case EIO: /* EIO: an RDMA completion error (a shrunk image is not) */
		return true;
	default:
		return false;
	}
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * send --resume: the session broke; a new one resumes it, connecting again
 * until --recovery-timeout has passed. 0 with *s_p connected and
 * @r->todo the pages to send; else the last error (*s_p failed).
 */
static int send_reconnect(rmig_session **s_p, const struct send_run *r, const struct rmig_opts *o,
			  bool *expired)
{
	const struct cli *c = r->c;
	uint64_t deadline = mono_ms() + (uint64_t)c->recovery_s * 1000u, total = 0, held = 0;
	int err = -ETIMEDOUT;
	int64_t missing;

	for (unsigned int attempt = 0; mono_ms() < deadline; attempt++) {
		struct timespec ts = { 0, 250000000 };
		rmig_session *n = NULL;

		if (attempt)
			nanosleep(&ts, NULL);
		if (tool_interrupted())
			return -ECANCELED;
		if (rmig_session_create(o, &n))
			return -ENOMEM;
		tool_session(n); /* before the old one goes */
		err = rmig_resume_from(n, *s_p); /* the old session is gone either way */
		*s_p = n;
		if (err)
			return err;
		err = rmig_connect(n, c->to);
		if (!err)
			break;
		if (tool_interrupted())
			return -ECANCELED;
		if (!send_resumable(err))
			return err;
	}
	*expired = err != 0;
	if (err)
		return err;
	for (unsigned int i = 0; i < r->nim; i++) {
		memset(r->todo[i], 0, bitmap_bytes(&r->im[i]));
		total += r->im[i].len;
	}
	missing = rmig_resume_missing(*s_p, r->todo, r->nim);
	if (missing < 0)
		return (int)missing;
	for (unsigned int i = 0; i < r->nim; i++) {
		uint64_t np = r->im[i].len / r->im[i].page_size, k = 0;

		for (uint64_t p = 0; p < np; p++)
			k += !bit_get(r->todo[i], p);
		held += k * r->im[i].page_size;
	}
	if (!c->quiet)
		fprintf(stderr, "rdma-migrate send: resumed: the destination holds %.1f of %.1f MiB; "
				"the rest goes again\n",
			held / 1048576.0, total / 1048576.0);
	return 0;
}

/* send --resume after @err (@what happened): say so, then send_reconnect(). */
static int send_resume(rmig_session **s_p, const struct send_run *r, const struct rmig_opts *o,
		       int err, const char *what)
{
	const struct cli *c = r->c;
	char why[TOOL_WHY_MAX];

	if (!c->quiet)
		fprintf(stderr, "rdma-migrate send: %s: %s; trying again within %u s\n", what,
			rmig_last_error(*s_p)[0] ? shown(why, sizeof(why), rmig_last_error(*s_p)) :
						   strerror(-err),
			c->recovery_s);
	bool expired = false;

	err = send_reconnect(s_p, r, o, &expired);
	if (expired)
		fprintf(stderr, "rdma-migrate send: could not resume within %u s\n", c->recovery_s);
	else if (err && !tool_interrupted()) /* the cause follows */
		fprintf(stderr, "rdma-migrate send: could not resume\n");
	return err;
}

int cmd_send(const struct cli *c)
{
	const char *cmd = c->cmd == CMD_SAVE ? "save" : "send";
	/* send --to file:PATH, or save: a save file, removed when the save fails */
	const char *file = c->to && !strncmp(c->to, "file:", 5) ? c->to + 5 : NULL;
	struct stat before;
	bool existed = file && stat(file, &before) == 0, remove_file = false;
	struct image *im = calloc(c->ram.n ? c->ram.n : 1, sizeof(*im));
	struct blobfile *bf = calloc(c->state.n ? c->state.n : 1, sizeof(*bf));
	unsigned long **todo = calloc(c->ram.n ? c->ram.n : 1, sizeof(*todo));
	bool shrank = false;
	struct send_run run = { .c = c, .im = im, .bf = bf, .todo = todo, .shrank = &shrank };
	struct progress prog = { 0 };
	struct rmig_opts o;
	rmig_session *s = NULL;
	uint64_t total = 0;
	unsigned int nim = 0, nbf = 0, resumes = 0;
	int rc = EXIT_USAGE, err = 0;
	struct fault_sync fsync_arg = { NULL };
	bool fsync_started = false;
	pthread_t fsync_th;

	if (!im || !bf || !todo)
		goto out;
	if (!c->to || !c->ram.n) {
		fprintf(stderr, "rdma-migrate %s: --to and at least one --ram are required\n", cmd);
		goto out;
	}
	if (c->resume && file) {
		fprintf(stderr, "rdma-migrate send: --resume needs a peer, not file:\n");
		goto out;
	}
	for (unsigned int i = 0; i < c->ram.n; i++, nim++) {
		char name[RMIG_NAME_MAX];
		const char *path;

		if (cli_split_assign(c->ram.v[i], name, sizeof(name), &path)) /* cli_parse checked */
			goto out;
		if (image_open_source(&im[i], name, path))
			goto out;
		total += im[i].len;
		todo[i] = malloc(bitmap_bytes(&im[i]));
		if (!todo[i])
			goto out;
		memset(todo[i], 0xff, bitmap_bytes(&im[i]));
	}
	run.nim = nim;
	run.step = total / 16 < RESUME_STEP_MIN ? RESUME_STEP_MIN :
		   total / 16 > RESUME_STEP_MAX ? RESUME_STEP_MAX : total / 16;
	for (unsigned int i = 0; i < c->state.n; i++, nbf++) {
		const char *path;

		if (cli_split_assign(c->state.v[i], bf[i].name, sizeof(bf[i].name), &path))
			goto out;
		if (read_file(path, &bf[i].data, &bf[i].len))
			goto out;
		total += bf[i].len;
	}
	run.nbf = nbf;
	tool_opts(&o, c, RMIG_ROLE_SOURCE);
	if (c->verify)
		o.flags |= RMIG_F_VERIFY;
	if (rmig_session_create(&o, &s))
		goto out;
	tool_session(s);
	for (unsigned int i = 0; i < nim; i++) {
		if (rmig_add_ram(s, im[i].name, im[i].addr, im[i].len, im[i].page_size)) {
			fprintf(stderr, "rdma-migrate %s: cannot use image '%s'\n", cmd, im[i].name);
			goto out;
		}
	}
	rc = EXIT_FAILED;
	err = rmig_connect(s, c->to);
	if (err && c->resume && send_resumable(err)) /* a break while connecting */
		err = send_resume(&s, &run, &o, err, "connecting failed");
	if (err)
		goto out_err;
	fault_point("connected");
	for (;;) {
		progress_start(&prog, s, total, c->quiet);
		err = send_session(s, &run, &fsync_arg, &fsync_th, &fsync_started);
		progress_stop(&prog);
		if (!err || !c->resume || !send_resumable(err) || tool_interrupted())
			break;
		for (unsigned int i = 0; i < nim && !shrank; i++)
			shrank = image_check(&im[i], "during the send") != 0;
		if (shrank) /* the source's own fault: no new connection mends it */
			break;
		if (fsync_started) { /* its rmig_sync() has returned: the session failed */
			pthread_join(fsync_th, NULL);
			fsync_started = false;
		}
		err = send_resume(&s, &run, &o, err, "the connection broke");
		if (err)
			break;
		resumes++;
	}
out_err:
	if (c->json)
		tool_print_json(stdout, "source", s, err, c->verify && !err, resumes);
	if (err && err != -EIO && !shrank) /* a copy that failed with EFAULT: did an image shrink? */
		for (unsigned int i = 0; i < nim; i++)
			image_check(&im[i], "during the send");
	if (err) {
		char why[TOOL_WHY_MAX];

		fprintf(stderr, "rdma-migrate %s: %s failed%s: %s\n", cmd, file ? "save" : "migration",
			resumes ? " after resuming" : "",
			tool_interrupted()     ? tool_interrupt_why() :
			rmig_last_error(s)[0] ? shown(why, sizeof(why), rmig_last_error(s)) :
						strerror(-err));
		/* what is there has no complete mark; on a full file system it is room */
		remove_file = file != NULL;
		goto out;
	}
	if (!c->quiet) {
		if (resumes)
			fprintf(stderr, "rdma-migrate send: resumed %u time%s\n", resumes,
				resumes == 1 ? "" : "s");
		summary(file ? "saved" : "sent", s, c->verify, 0);
	}
	rc = 0;
out:
	/* its rmig_sync() has returned by now: the session completed or failed */
	if (fsync_started)
		pthread_join(fsync_th, NULL);
	tool_session(NULL);
	rmig_session_destroy(s);
	if (remove_file)
		tool_save_remove(cmd, file, existed ? &before : NULL);
	for (unsigned int i = 0; i < nim; i++)
		image_close(&im[i]);
	for (unsigned int i = 0; i < nbf; i++)
		free(bf[i].data);
	for (unsigned int i = 0; todo && i < c->ram.n; i++)
		free(todo[i]);
	free(todo);
	free(im);
	free(bf);
	return rc;
}

/* ---- save ---- */

/* save --to FILE: never one of the files it reads (it is truncated first). */
static int save_check_paths(const struct cli *c, const char *file)
{
	struct cli_file_id to, id;

	cli_file_id(file, &to);
	for (unsigned int k = 0; k < 2; k++) {
		const struct cli_list *l = k ? &c->state : &c->ram;

		for (unsigned int i = 0; i < l->n; i++) {
			char name[RMIG_NAME_MAX];
			const char *path;

			if (cli_split_assign(l->v[i], name, sizeof(name), &path))
				return -EINVAL;
			cli_file_id(path, &id);
			if (cli_file_id_eq(&to, &id)) {
				fprintf(stderr, "rdma-migrate save: --to %s is also --%s '%s': the save "
						"would overwrite what it reads\n",
					file, k ? "state" : "ram", l->v[i]);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int cmd_save(const struct cli *c)
{
	const char *file = c->to && !strncmp(c->to, "file:", 5) ? c->to + 5 : c->to;
	struct cli *c2;
	char *uri;
	int rc;

	if (!c->to || !c->ram.n) {
		fprintf(stderr, "rdma-migrate save: --to FILE and at least one --ram are required\n");
		return EXIT_USAGE;
	}
	if (save_check_paths(c, file))
		return EXIT_USAGE;
	c2 = malloc(sizeof(*c2));
	uri = malloc(strlen(file) + 6);
	if (!c2 || !uri) {
		free(c2);
		free(uri);
		return EXIT_FAILED;
	}
	*c2 = *c;
	sprintf(uri, "file:%s", file);
	c2->to = uri;
	rc = cmd_send(c2);
	free(uri);
	free(c2);
	return rc;
}
