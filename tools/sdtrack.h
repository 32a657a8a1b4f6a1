/* SPDX-License-Identifier: MIT */
/*
 * sdtrack.h - dirty tracking of another process's shared file mappings by
 * the kernel's soft-dirty bits: how vm-send follows QEMU's writes to guest
 * RAM without a copy of it.
 *
 * A collect freezes the process (SIGSTOP, then waits until every thread has
 * stopped), reads bit 55 of /proc/PID/pagemap over each mapping of the RAM
 * file, resets the bits (writing 4 to /proc/PID/clear_refs) and lets the
 * process go on (SIGCONT). Reading and resetting are two steps: a page
 * written between them would be lost, hence the freeze. A page written after
 * the reset carries the bit at the next collect, however often it changed
 * in between and whatever it holds then, so a page sent from live memory and
 * torn by a write goes again; the last collect runs with the guest stopped.
 *
 * Soft-dirty bits live in the process's page table entries. A page whose
 * entry goes away (reclaimed to swap or written back and dropped, a hole
 * punched by a balloon) loses its bit. A page that was in the page tables at
 * the last collect and is not now is therefore counted as written. What no
 * bit can show is a page written, dropped and faulted back in between two
 * collects: sdtrack_reclaim_risk() says when the RAM can be reclaimed at all
 * (a file on disk, or tmpfs with swap and the mapping not locked).
 *
 * Writes that do not go through the process's page tables are not seen:
 * device DMA (VFIO), another process mapping the file (vhost-user).
 * Soft-dirty is per process: the tracker's own mapping of the file neither
 * sets nor resets the tracked process's bits. Resetting them affects every
 * mapping of that process (another soft-dirty user of QEMU would be misled).
 */
#ifndef RMIG_SDTRACK_H
#define RMIG_SDTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SDTRACK_BLOCKS_MAX 32
#define SDTRACK_SEGS_MAX   8 /* mappings of one file in the tracked process */

struct sdseg {
	uint64_t va;  /* where the process maps ... */
	uint64_t off; /* ... these file bytes ... */
	uint64_t len; /* ... this many (clipped to the block) */
};

struct sdblock {
	uint64_t len;
	uint64_t npages;
	size_t nlongs;
	unsigned long *map;     /* bit n: page n written (to send) */
	unsigned long *present; /* bit n: page n in the page tables at the last collect */
	unsigned long *now;     /* scratch: present at this collect */
	unsigned long *sd;      /* scratch: soft-dirty at this collect */
	struct sdseg seg[SDTRACK_SEGS_MAX];
	unsigned int nseg;
	bool tmpfs; /* the file lives in tmpfs or shmem */
};

struct sdtrack {
	pid_t pid;
	int pagemap;
	int clear_refs;
	uint32_t page; /* the kernel's page size: one pagemap entry each */
	unsigned int n;
	struct sdblock b[SDTRACK_BLOCKS_MAX];
	uint64_t *ents; /* pagemap read buffer */
	size_t ents_cap;
	unsigned int stop_ms; /* bound on the wait for every thread to stop */
	/* figures */
	unsigned int collects;
	uint64_t freeze_ns_max;
	uint64_t freeze_ns_sum;
};

/*
 * Whether the kernel's soft-dirty bits work here: a page written after a
 * clear_refs reset shows bit 55 in pagemap. @why says why not (or that they
 * do). A kernel built without CONFIG_MEM_SOFT_DIRTY accepts the reset and
 * never sets the bit: a tracker that trusted it would send nothing.
 */
bool sdtrack_works(char *why, size_t len);

/*
 * Track process @pid. 0, or a negative errno with why in @err: soft-dirty
 * not working (-EOPNOTSUPP), no such process (-ESRCH), its /proc files not
 * ours to read or write (-EACCES), the process stopped already (-EBUSY: a
 * collect would resume it).
 */
int sdtrack_open(struct sdtrack *t, pid_t pid, char *err, size_t elen);
/*
 * Add the block held in the file open as @fd, @len bytes from offset 0, in
 * pages of @page bytes (the kernel's page size: hugetlbfs has no soft-dirty
 * bits). The process must map all of it shared. Block i is the i-th added.
 */
int sdtrack_add(struct sdtrack *t, int fd, uint64_t len, uint32_t page, char *err, size_t elen);
/*
 * Whether pages of the blocks can leave the process's page tables under
 * memory pressure and come back between two collects (see above): a reason
 * in @why when they can, false when they cannot.
 */
bool sdtrack_reclaim_risk(const struct sdtrack *t, char *why, size_t len);
/*
 * One collect: every block's map marks the pages written since the last
 * collect (every page with @all), the previous marks cleared first unless
 * @keep (pages collected but not yet sent). *count (may be NULL) gets how
 * many marks are new. Errors: the process gone (-ESRCH), a thread that
 * would not stop within stop_ms (-ETIMEDOUT), /proc refusing (-errno); the
 * process is never left stopped.
 */
int sdtrack_collect(struct sdtrack *t, bool all, bool keep, uint64_t *count, char *err,
		    size_t elen);
void sdtrack_close(struct sdtrack *t);

#endif
