/* SPDX-License-Identifier: MIT */
/* file_util.c - save, restore and blobs for the file-session tests (file_util.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "bitmap.h"
#include "file.h"
#include "file_util.h"
#include "testlib.h"

char dir[64];

void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* ---- blobs (device state) ---- */

int load(void *arg, const char *name, uint32_t instance, const void *data, uint64_t len)
{
	struct blobs *b = arg;

	pthread_mutex_lock(&b->lock);
	b->loaded++;
	for (unsigned int i = 0; i < b->n; i++)
		if (!strcmp(name, b->name[i]) && instance == b->instance[i] && len == b->len[i] &&
		    !memcmp(data, b->data[i], len))
			b->good++;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* ---- save and restore ---- */

void opts(struct rmig_opts *o, enum rmig_role role, const struct side *sd)
{
	rmig_opts_init(o, sizeof(*o));
	o->role = role;
	o->channels = sd->channels ? sd->channels : 4;
	o->flags = sd->flags;
	o->timeout_ms = 20000;
	if (sd->extent_max)
		o->extent_max = sd->extent_max;
	if (sd->blob_max)
		o->blob_max = sd->blob_max;
	if (getenv("RMIG_TEST_LOG"))
		o->log_level = RMIG_LOG_DEBUG;
	else
		o->log_fn = NULL;
}

char last_err[1024];

/* Save one block "ram" (and @b's blobs) to @path. */
int save(const char *path, uint8_t *mem, uint64_t len, uint32_t ps, const struct side *sd,
	 const struct blobs *b)
{
	struct rmig_opts o;
	rmig_session *s;
	char uri[300];
	int rc;

	opts(&o, RMIG_ROLE_SOURCE, sd);
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, len, ps), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	rc = rmig_connect(s, uri);
	if (!rc)
		rc = rmig_send_range(s, "ram", 0, len);
	for (unsigned int i = 0; b && i < b->n && !rc; i++)
		rc = rmig_send_state(s, b->name[i], b->instance[i], b->data[i], b->len[i]);
	if (!rc)
		rc = rmig_complete(s);
	snprintf(last_err, sizeof(last_err), "%s", rmig_last_error(s));
	if (rc)
		printf("# save: %s\n", last_err);
	rmig_session_destroy(s);
	return rc;
}

int layout_cb(void *arg, rmig_session *s, const struct rmig_block_info *bi, unsigned int n)
{
	struct layout_seen *l = arg;

	(void)bi, (void)n;
	l->calls++;
	l->blobs = rmig_peer_state(s, l->first_blobs, 2);
	return 0;
}

/* Restore @path into "ram" at @mem; @b (may be NULL) takes the blobs. */
int restore_ex(const char *path, uint8_t *mem, uint64_t len, uint32_t ps,
	       const struct side *sd, struct blobs *b, struct layout_seen *l)
{
	struct rmig_opts o;
	rmig_session *s;
	char uri[300];
	int rc;

	opts(&o, RMIG_ROLE_DEST, sd);
	o.state_fn = load;
	o.state_arg = b;
	o.layout_fn = l ? layout_cb : NULL;
	o.layout_arg = l;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	assert_int_equal(rmig_add_ram(s, "ram", mem, len, ps), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	rc = rmig_listen(s, uri);
	if (!rc)
		rc = rmig_accept(s);
	if (!rc)
		rc = rmig_complete(s);
	snprintf(last_err, sizeof(last_err), "%s", rmig_last_error(s));
	if (rc)
		printf("# restore: %s\n", last_err);
	rmig_session_destroy(s);
	return rc;
}

int restore(const char *path, uint8_t *mem, uint64_t len, uint32_t ps,
	    const struct side *sd, struct blobs *b)
{
	struct blobs none = { .lock = PTHREAD_MUTEX_INITIALIZER };

	return restore_ex(path, mem, len, ps, sd, b ? b : &none, NULL);
}

uint64_t file_size(const char *path, uint64_t *alloc_p)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	if (alloc_p)
		*alloc_p = (uint64_t)st.st_blocks * 512;
	return (uint64_t)st.st_size;
}


void blobs_init(struct blobs *b)
{
	static const uint64_t lens[] = { 0, 3 * 1000 * 1000 + 7, 100, 2 << 20 };

	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	b->n = 4;
	for (unsigned int i = 0; i < b->n; i++) {
		snprintf(b->name[i], sizeof(b->name[i]), i == 3 ? "nic" : "cpu");
		b->instance[i] = i;
		b->len[i] = lens[i];
		b->data[i] = malloc(lens[i] ? lens[i] : 1);
		fill_random(b->data[i], lens[i], 1000 + i);
	}
}

void blobs_free(struct blobs *b)
{
	for (unsigned int i = 0; i < b->n; i++)
		free(b->data[i]);
}

/* The group's directory: made before the first case, removed after the last. */
int file_group_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/rmig-file-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

int file_group_teardown(void **state)
{
	(void)state;
	return rmdir(dir);
}
