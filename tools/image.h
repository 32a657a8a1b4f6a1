/* SPDX-License-Identifier: MIT */
/*
 * image.h - memory images for rdma-migrate: regular, /dev/shm or hugetlbfs
 * files mapped shared, with the page size of the filesystem they live on.
 */
#ifndef RMIG_IMAGE_H
#define RMIG_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "rmig.h"

struct image {
	char name[RMIG_NAME_MAX];
	const char *path;
	int fd;
	uint8_t *addr;
	uint64_t len;
	uint32_t page_size;
	bool writable; /* mapped writable (never written by the source) */
	int guard;     /* slot in the SIGBUS guard, or -1 */
	bool created;  /* the destination's file did not exist before this run */
	bool locked;   /* the destination holds its flock (image_open_dest) */
};

/*
 * Source: map an existing image shared; writable if the file permits (RDMA
 * pins only writable mappings), never written. Prints the cause on error.
 */
int image_open_source(struct image *im, const char *name, const char *path);
/*
 * Destination, in two steps, so that a migration refused for any of its
 * images leaves every file as it was. image_open_dest() opens the image
 * (creating it if missing), takes its lock, and checks everything without
 * changing it: a regular file, @len a non-zero multiple of its page size,
 * which equals the source's @page_size, and room on its file system (or
 * pages in its hugetlbfs pool: an error naming the space needed and left).
 * Then image_ready_dest() empties it to @len bytes that read as zero (what
 * it held is discarded) and maps it read-write. image_discard() closes an
 * image that will not be received, removing the file if it was created.
 */
int image_open_dest(struct image *im, const char *name, const char *path, uint64_t len,
		    uint32_t page_size);
int image_ready_dest(struct image *im);
void image_discard(struct image *im);
/*
 * Reserve (fallocate) the destination images in chunks, in order, on a
 * thread that runs ahead of the data, so that no page of theirs can fail to
 * be allocated later. A failure calls @fail(@arg, why) once. NULL if no
 * thread could start (the room was checked; the SIGBUS guard still holds).
 */
struct image_reserve;
struct image_reserve *image_reserve_start(struct image *ims, unsigned int n,
					  void (*fail)(void *arg, const char *why), void *arg);
void image_reserve_stop(struct image_reserve *r);
/*
 * Every mapped image is guarded: a SIGBUS on it (the file shrank, or its
 * file system is full) maps anonymous memory over the page instead of
 * killing the process, and marks the image. After the data has moved
 * (@during: "during the send"...), 0, or -EIO after printing which image
 * shrank or lost pages.
 */
int image_check(const struct image *im, const char *during);
void image_close(struct image *im);
/* Page size of the filesystem holding @fd: the huge page size on hugetlbfs. */
uint32_t image_page_size(int fd);

#endif
