/* SPDX-License-Identifier: MIT */
/* image.c - open, size and map memory images shared. */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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

/*
 * The SIGBUS guard. A shared mapping of a file raises SIGBUS on a page the
 * file no longer has (it shrank under us) or cannot get (its file system is
 * full). The handler maps anonymous memory over the faulting page of an
 * image, so the access completes, and marks the image damaged; the command
 * then fails naming it (image_check()), instead of dying by a signal.
 * Anything else re-raises SIGBUS as before.
 */
#define GUARD_MAX 512

static struct {
	_Atomic(uint8_t *) addr;
	_Atomic uint64_t len;
	_Atomic uint32_t page;
	atomic_bool hit;
} guard[GUARD_MAX];

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
	uint8_t *a = si->si_addr;

	(void)uc;
	for (unsigned int i = 0; i < GUARD_MAX; i++) {
		uint8_t *base = atomic_load(&guard[i].addr);
		uint64_t len = atomic_load(&guard[i].len), pg = atomic_load(&guard[i].page);

		if (!base || a < base || a >= base + len)
			continue;
		a = base + (uint64_t)(a - base) / pg * pg;
		if (mmap(a, pg, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0) == MAP_FAILED)
			break;
		atomic_store(&guard[i].hit, true);
		return;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void guard_add(struct image *im)
{
	static atomic_bool installed;

	if (!atomic_exchange(&installed, true)) {
		struct sigaction sa = { .sa_sigaction = guard_handler, .sa_flags = SA_SIGINFO };

		sigemptyset(&sa.sa_mask);
		sigaction(SIGBUS, &sa, NULL);
	}
	for (unsigned int i = 0; i < GUARD_MAX; i++) {
		uint8_t *none = NULL;

		if (atomic_load(&guard[i].addr))
			continue;
		atomic_store(&guard[i].len, im->len);
		atomic_store(&guard[i].page, im->page_size);
		atomic_store(&guard[i].hit, false);
		if (atomic_compare_exchange_strong(&guard[i].addr, &none, im->addr)) {
			im->guard = (int)i;
			return;
		}
	}
}

static void guard_del(struct image *im)
{
	if (im->guard >= 0)
		atomic_store(&guard[im->guard].addr, NULL);
	im->guard = -1;
}

int image_check(const struct image *im, const char *during)
{
	struct stat st;
	bool hit = im->guard >= 0 && atomic_load(&guard[im->guard].hit);

	if (fstat(im->fd, &st) == 0 && (uint64_t)st.st_size < im->len) {
		fprintf(stderr, "rdma-migrate: image %s ('%s') shrank from %llu to %llu bytes %s\n",
			im->path, im->name, (unsigned long long)im->len,
			(unsigned long long)st.st_size, during);
		return -EIO;
	}
	if (hit) {
		fprintf(stderr,
			"rdma-migrate: image %s ('%s'): pages became unreadable or could not be "
			"allocated %s (file truncated, or its file system full)\n",
			im->path, im->name, during);
		return -EIO;
	}
	return 0;
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
	guard_add(im);
	return 0;
}

#ifndef HUGETLBFS_MAGIC_FS
#define HUGETLBFS_MAGIC_FS HUGETLBFS_MAGIC
#endif

/* Free, unreserved huge pages of @size bytes in the kernel's pool. */
static unsigned long long pool_free(uint32_t size)
{
	unsigned long long v[2] = { 0, 0 };
	static const char *const what[2] = { "free_hugepages", "resv_hugepages" };

	for (int i = 0; i < 2; i++) {
		char path[128];
		FILE *f;

		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%ukB/%s",
			 size / 1024, what[i]);
		f = fopen(path, "r");
		if (!f || fscanf(f, "%llu", &v[i]) != 1)
			v[i] = 0;
		if (f)
			fclose(f);
	}
	return v[0] > v[1] ? v[0] - v[1] : 0;
}

/*
 * Is there room for the image? Checked before a byte moves, so that a file
 * system that cannot hold it is a clear error, not a failure halfway. The
 * space is then reserved by image_reserve_start(), in the background.
 */
static int check_room(struct image *im)
{
	struct statfs sfs;
	struct statvfs vfs;
	struct stat st;
	unsigned long long need, have, used = 0;

	if (fstat(im->fd, &st) == 0)
		used = (unsigned long long)st.st_blocks * 512;
	need = im->len > used ? im->len - used : 0;
	if (fstatfs(im->fd, &sfs) == 0 && (unsigned long)sfs.f_type == HUGETLBFS_MAGIC_FS) {
		unsigned long long pages = need / im->page_size, avail = sfs.f_bfree;

		/* a mount without size= has no limit of its own: the pool's is what counts */
		if (!sfs.f_blocks)
			avail = pool_free(im->page_size);
		if (pages <= avail)
			return 0;
		sfs.f_bfree = avail;
		fprintf(stderr,
			"rdma-migrate: image %s: the hugetlbfs pool is too small: it needs %llu "
			"pages of %u bytes, %llu are free (raise /proc/sys/vm/nr_hugepages)\n",
			im->path, pages, im->page_size, (unsigned long long)sfs.f_bfree);
		return -ENOSPC;
	}
	if (fstatvfs(im->fd, &vfs) < 0)
		return 0; /* cannot tell: the reservation and the guard still hold */
	have = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	if (need <= have)
		return 0;
	fprintf(stderr,
		"rdma-migrate: image %s: no room on its file system: it needs %llu bytes "
		"(%llu more than it holds), %llu are free\n",
		im->path, (unsigned long long)im->len, need, have);
	return -ENOSPC;
}

/* ---- reserving destination images, behind the data ---- */

#define RESERVE_CHUNK (64ull << 20)

struct image_reserve {
	struct image *ims;
	unsigned int n;
	void (*fail)(void *arg, const char *why);
	void *arg;
	pthread_t th;
	atomic_bool stop;
};

static void *reserve_main(void *argp)
{
	struct image_reserve *r = argp;

	for (unsigned int i = 0; i < r->n && !atomic_load(&r->stop); i++) {
		struct image *im = &r->ims[i];

		for (uint64_t off = 0; off < im->len && !atomic_load(&r->stop);
		     off += RESERVE_CHUNK) {
			uint64_t len = im->len - off < RESERVE_CHUNK ? im->len - off : RESERVE_CHUNK;
			char why[512];

			if (fallocate(im->fd, 0, (off_t)off, (off_t)len) == 0)
				continue;
			if (errno == EINTR) {
				off -= RESERVE_CHUNK;
				continue;
			}
			if (errno == EOPNOTSUPP || errno == ENOSYS)
				break; /* cannot reserve here: the guard still holds */
			snprintf(why, sizeof(why),
				 "image %s: reserving its %llu bytes failed at offset %llu: %s "
				 "(its file system filled up meanwhile?)",
				 im->path, (unsigned long long)im->len, (unsigned long long)off,
				 strerror(errno));
			r->fail(r->arg, why);
			return NULL;
		}
	}
	return NULL;
}

struct image_reserve *image_reserve_start(struct image *ims, unsigned int n,
					  void (*fail)(void *arg, const char *why), void *arg)
{
	struct image_reserve *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->ims = ims;
	r->n = n;
	r->fail = fail;
	r->arg = arg;
	if (pthread_create(&r->th, NULL, reserve_main, r)) {
		free(r);
		return NULL;
	}
	return r;
}

void image_reserve_stop(struct image_reserve *r)
{
	if (!r)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->th, NULL);
	free(r);
}

static int image_init(struct image *im, const char *name, const char *path)
{
	memset(im, 0, sizeof(*im));
	im->fd = -1;
	im->guard = -1;
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
	/* shared with other readers; a recv or restore into this file holds it alone */
	if (flock(im->fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		fprintf(stderr,
			"rdma-migrate: image %s is being written by another rdma-migrate (a recv "
			"or restore into it): refusing to read it\n",
			path);
		return -EBUSY;
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

int image_open_dest(struct image *im, const char *name, const char *path, uint64_t len,
		    uint32_t page_size)
{
	struct stat st;
	int rc = image_init(im, name, path);

	if (rc)
		return rc;
	/* created here, it is removed again if the migration is refused (image_discard) */
	im->fd = open(path, O_RDWR | O_CLOEXEC);
	if (im->fd < 0 && errno == ENOENT) {
		im->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		im->created = im->fd >= 0;
		if (im->fd < 0 && errno == EEXIST)
			im->fd = open(path, O_RDWR | O_CLOEXEC);
		/* a symbolic link to a file yet to be made: made there, and left if refused */
		if (im->fd < 0 && errno == ENOENT)
			im->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	if (im->fd < 0 || fstat(im->fd, &st) < 0) {
		rc = -errno;
		fprintf(stderr, "rdma-migrate: image %s: %s\n", path, strerror(-rc));
		return rc;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "rdma-migrate: image %s: not a regular file\n", path);
		return -EINVAL;
	}
	/*
	 * Held alone until the command ends: emptying an image that another
	 * rdma-migrate reads (a send of it on this host: the source's own
	 * image given as the destination) or writes would destroy it.
	 */
	if (flock(im->fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		fprintf(stderr,
			"rdma-migrate: image %s is in use by another rdma-migrate (a send or save "
			"reading it, or a recv or restore writing it): refusing to empty it\n",
			path);
		return -EBUSY;
	}
	im->locked = true;
	im->page_size = image_page_size(im->fd);
	if (page_size != im->page_size || !len || len % im->page_size) {
		fprintf(stderr,
			"rdma-migrate: image %s: the source's block '%s' is %llu bytes of %u-byte "
			"pages; this file's pages are %u bytes%s\n",
			path, name, (unsigned long long)len, page_size, im->page_size,
			im->page_size > 4096 ? " (hugetlbfs)" : "");
		return -EINVAL;
	}
	im->len = len;
	/* what the file holds now is freed when it is emptied: check_room counts it */
	return check_room(im);
}

int image_ready_dest(struct image *im)
{
	/*
	 * Start from an empty file: every page then reads as zero, so zero
	 * pages need no write (RMIG_F_ZEROED), and old contents never mix
	 * with the new ones.
	 */
	if (ftruncate(im->fd, 0) < 0 || ftruncate(im->fd, (off_t)im->len) < 0) {
		int rc = -errno;

		fprintf(stderr, "rdma-migrate: image %s: resizing to %llu bytes: %s\n", im->path,
			(unsigned long long)im->len, strerror(-rc));
		return rc;
	}
	return map(im, PROT_READ | PROT_WRITE);
}

void image_discard(struct image *im)
{
	struct stat a, b;

	/* only the file this run made and holds, still under that name */
	if (im->created && im->locked && im->fd >= 0 && !fstat(im->fd, &a) && !stat(im->path, &b) &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlink(im->path);
	image_close(im);
}

void image_close(struct image *im)
{
	guard_del(im);
	if (im->addr)
		munmap(im->addr, im->len);
	if (im->fd >= 0)
		close(im->fd);
	im->addr = NULL;
	im->fd = -1;
}
