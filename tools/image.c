/* SPDX-License-Identifier: MIT */
/* image.c - open, size and map memory images shared. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "image.h"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

uint32_t image_page_size(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == HUGETLBFS_MAGIC)
		return (uint32_t)sfs.f_bsize;
	return (uint32_t)sysconf(_SC_PAGESIZE);
}

static int map(struct image *im, int prot)
{
	im->addr = mmap(NULL, im->len, prot, MAP_SHARED, im->fd, 0);
	if (im->addr == MAP_FAILED) {
		int rc = -errno;

		im->addr = NULL;
		fprintf(stderr, "rdma-migrate: mapping %s (%llu bytes): %s\n", im->path,
			(unsigned long long)im->len, strerror(-rc));
		return rc;
	}
	return 0;
}

static int image_init(struct image *im, const char *name, const char *path)
{
	memset(im, 0, sizeof(*im));
	im->fd = -1;
	im->path = path;
	if (strlen(name) >= RMIG_NAME_MAX) {
		fprintf(stderr, "rdma-migrate: image name '%s' is longer than %d bytes\n", name,
			RMIG_NAME_MAX - 1);
		return -EINVAL;
	}
	strcpy(im->name, name);
	return 0;
}

int image_open_source(struct image *im, const char *name, const char *path)
{
	struct stat st;
	int rc = image_init(im, name, path);

	if (rc)
		return rc;
	/*
	 * Writable when the file allows it, though never written: Linux (6.1
	 * at least) pins only writable mappings for RDMA, and fails a
	 * read-only one with EFAULT.
	 */
	im->fd = open(path, O_RDWR | O_CLOEXEC);
	if (im->fd >= 0)
		im->writable = true;
	else if (errno == EACCES || errno == EROFS || errno == EPERM)
		im->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (im->fd < 0 || fstat(im->fd, &st) < 0) {
		rc = -errno;
		fprintf(stderr, "rdma-migrate: image %s: %s\n", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "rdma-migrate: image %s: not a regular file\n", path);
		return -EINVAL;
	}
	im->len = (uint64_t)st.st_size;
	im->page_size = image_page_size(im->fd);
	if (im->len == 0 || im->len % im->page_size) {
		fprintf(stderr,
			"rdma-migrate: image %s: size %llu is not a non-zero multiple of its "
			"%u-byte page size\n",
			path, (unsigned long long)im->len, im->page_size);
		return -EINVAL;
	}
	return map(im, im->writable ? PROT_READ | PROT_WRITE : PROT_READ);
}

int image_open_dest(struct image *im, const char *name, const char *path, uint64_t len)
{
	struct stat st;
	int rc = image_init(im, name, path);

	if (rc)
		return rc;
	im->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (im->fd < 0 || fstat(im->fd, &st) < 0) {
		rc = -errno;
		fprintf(stderr, "rdma-migrate: image %s: %s\n", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "rdma-migrate: image %s: not a regular file\n", path);
		return -EINVAL;
	}
	im->page_size = image_page_size(im->fd);
	if ((uint64_t)st.st_size != len && ftruncate(im->fd, (off_t)len) < 0) {
		rc = -errno;
		fprintf(stderr, "rdma-migrate: image %s: resizing to %llu bytes: %s\n", path,
			(unsigned long long)len, strerror(-rc));
		return rc;
	}
	im->len = len;
	return map(im, PROT_READ | PROT_WRITE);
}

void image_close(struct image *im)
{
	if (im->addr)
		munmap(im->addr, im->len);
	if (im->fd >= 0)
		close(im->fd);
	im->addr = NULL;
	im->fd = -1;
}
