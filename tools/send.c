/* SPDX-License-Identifier: MIT */
/* send.c - `rdma-migrate send` and `save`: memory images and device state to a peer or a file. */
#include <errno.h>
#include <pthread.h>
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
#include "wire.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* ---- send ---- */

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

int cmd_send(const struct cli *c)
{
	const char *cmd = c->cmd == CMD_SAVE ? "save" : "send";
	/* send --to file:PATH, or save: a save file, removed when the save fails */
	const char *file = c->to && !strncmp(c->to, "file:", 5) ? c->to + 5 : NULL;
	struct stat before;
	bool existed = file && stat(file, &before) == 0;
	struct image *im = calloc(c->ram.n ? c->ram.n : 1, sizeof(*im));
	struct blobfile *bf = calloc(c->state.n ? c->state.n : 1, sizeof(*bf));
	struct progress prog = { 0 };
	struct rmig_opts o;
	rmig_session *s = NULL;
	uint64_t total = 0;
	unsigned int nim = 0, nbf = 0;
	int rc = EXIT_USAGE, err = 0;
	struct fault_sync fsync_arg = { NULL };
	bool fsync_started = false;
	pthread_t fsync_th;

	if (!im || !bf)
		goto out;
	if (!c->to || !c->ram.n) {
		fprintf(stderr, "rdma-migrate %s: --to and at least one --ram are required\n", cmd);
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
	}
	for (unsigned int i = 0; i < c->state.n; i++, nbf++) {
		const char *path;

		if (cli_split_assign(c->state.v[i], bf[i].name, sizeof(bf[i].name), &path))
			goto out;
		if (read_file(path, &bf[i].data, &bf[i].len))
			goto out;
		total += bf[i].len;
	}
	tool_opts(&o, c, RMIG_ROLE_SOURCE);
	if (c->verify)
		o.flags |= RMIG_F_VERIFY;
	if (rmig_session_create(&o, &s))
		goto out;
	for (unsigned int i = 0; i < nim; i++) {
		if (rmig_add_ram(s, im[i].name, im[i].addr, im[i].len, im[i].page_size)) {
			fprintf(stderr, "rdma-migrate %s: cannot use image '%s'\n", cmd, im[i].name);
			goto out;
		}
	}
	rc = EXIT_FAILED;
	err = rmig_connect(s, c->to);
	if (err)
		goto out_err;
	fault_point("connected");
	progress_start(&prog, s, total, c->quiet);
	for (unsigned int i = 0; i < nim && !err; i++) {
		/* in two halves, with the mid-round fault point between them */
		uint64_t half = im[i].len / 2 / im[i].page_size * im[i].page_size;

		err = rmig_send_range(s, im[i].name, 0, half);
		if (!i)
			fault_point("mid-round");
		if (!err)
			err = rmig_send_range(s, im[i].name, half, im[i].len - half);
	}
	/*
	 * Every page has been read once the sync returns: an image that shrank
	 * meanwhile (read as zeros past its end, by the SIGBUS guard) fails
	 * the migration here, before the destination is told it is complete.
	 */
	if (!err)
		err = rmig_sync(s);
	for (unsigned int i = 0; i < nim && !err; i++) {
		if (image_check(&im[i], "during the send")) {
			rmig_cancel(s, "a source image shrank during the send");
			err = -EIO;
		}
	}
	if (!err && fault_armed("sync")) {
		struct timespec ts = { 0, 2000000 };

		/* stop or die while a sync is in flight: markers posted, the ack not back */
		fsync_arg.s = s;
		if (!pthread_create(&fsync_th, NULL, fault_sync_main, &fsync_arg)) {
			fsync_started = true;
			nanosleep(&ts, NULL);
			fault_point("sync");
		}
	}
	for (unsigned int i = 0; i < nbf && !err; i++) {
		err = rmig_send_state(s, bf[i].name, 0, bf[i].data, bf[i].len);
		if (!i)
			fault_point("state");
	}
	fault_point("complete");
	if (!err)
		err = rmig_complete(s);
	progress_stop(&prog);
out_err:
	if (c->json)
		tool_print_json(stdout, "source", s, err, c->verify && !err);
	if (err && err != -EIO) /* a copy that failed with EFAULT: did an image shrink? */
		for (unsigned int i = 0; i < nim; i++)
			image_check(&im[i], "during the send");
	if (err) {
		char why[4 * RMIG_ERRMSG_MAX];

		fprintf(stderr, "rdma-migrate %s: %s failed: %s\n", cmd, file ? "save" : "migration",
			rmig_last_error(s)[0] ? shown(why, sizeof(why), rmig_last_error(s)) :
						strerror(-err));
		/* what is there has no complete mark; on a full file system it is room */
		if (file && save_created(file, existed ? &before : NULL) && unlink(file) == 0)
			fprintf(stderr, "rdma-migrate %s: removed the incomplete %s\n", cmd, file);
		goto out;
	}
	if (!c->quiet)
		summary(file ? "saved" : "sent", s, c->verify, 0);
	rc = 0;
out:
	/* its rmig_sync() has returned by now: the session completed or failed */
	if (fsync_started)
		pthread_join(fsync_th, NULL);
	rmig_session_destroy(s);
	for (unsigned int i = 0; i < nim; i++)
		image_close(&im[i]);
	for (unsigned int i = 0; i < nbf; i++)
		free(bf[i].data);
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
