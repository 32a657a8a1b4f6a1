/* SPDX-License-Identifier: MIT */
/*
 * file_util.h - what the file-session tests share (test_file.c, round trips
 * and live saves; test_file_bad.c, broken files and refusals): save and
 * restore with options per side, the device-state blobs, the group's
 * scratch directory.
 */
#ifndef RMIG_TEST_FILE_UTIL_H
#define RMIG_TEST_FILE_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "testlib.h"

extern char dir[64];
/* the last save's or restore's rmig_last_error() */
extern char last_err[1024];

#define NBLOBS_MAX 8

struct blobs {
	unsigned int n;
	char name[NBLOBS_MAX][16];
	uint32_t instance[NBLOBS_MAX];
	uint8_t *data[NBLOBS_MAX];
	uint64_t len[NBLOBS_MAX];
	/* destination */
	pthread_mutex_t lock;
	unsigned int loaded, good;
};

struct side {
	unsigned int channels;
	unsigned int flags;
	uint32_t extent_max;
	uint64_t blob_max; /* destination; 0: default */
};

struct layout_seen {
	unsigned int calls;
	int blobs;                           /* rmig_peer_state() from the callback */
	struct rmig_state_info first_blobs[2]; /* what it gave of the first two */
};

void path_of(char *buf, size_t len, const char *name);
int load(void *arg, const char *name, uint32_t instance, const void *data, uint64_t len);
void opts(struct rmig_opts *o, enum rmig_role role, const struct side *sd);
int save(const char *path, uint8_t *mem, uint64_t len, uint32_t ps, const struct side *sd,
	 const struct blobs *b);
int layout_cb(void *arg, rmig_session *s, const struct rmig_block_info *bi, unsigned int n);
int restore_ex(const char *path, uint8_t *mem, uint64_t len, uint32_t ps,
	       const struct side *sd, struct blobs *b, struct layout_seen *l);
int restore(const char *path, uint8_t *mem, uint64_t len, uint32_t ps,
	    const struct side *sd, struct blobs *b);
uint64_t file_size(const char *path, uint64_t *alloc_p);
void blobs_init(struct blobs *b);
void blobs_free(struct blobs *b);
int file_group_setup(void **state);
int file_group_teardown(void **state);

#endif
