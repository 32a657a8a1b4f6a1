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
};

/*
 * Source: map an existing image shared; writable if the file permits (RDMA
 * pins only writable mappings), never written. Prints the cause on error.
 */
int image_open_source(struct image *im, const char *name, const char *path);
/* Destination: create or resize the image to @len and map it read-write. */
int image_open_dest(struct image *im, const char *name, const char *path, uint64_t len);
void image_close(struct image *im);
/* Page size of the filesystem holding @fd: the huge page size on hugetlbfs. */
uint32_t image_page_size(int fd);

#endif
