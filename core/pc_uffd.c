/* SPDX-License-Identifier: MIT */
/*
 * pc_uffd.c - postcopy at the destination under userfaultfd: the blocks
 * registered at PC_RUN with their missing pages dropped, the fault handler
 * thread that turns faults into page requests (and times them out, or
 * pauses after a break: pc_pause.c), and rmig_postcopy_uffd().
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pc_bits.h"
#include "postcopy.h"
#include "sess.h"

void rmig_pc_unregister(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;

	if (!pc->uffd_registered)
		return;
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct uffdio_range r = { .start = (uintptr_t)s->blocks[i].host,
					  .len = s->blocks[i].length };

		/* wakes every thread blocked on a fault in the range */
		if (pc->uffd_block[i])
			(void)ioctl(pc->uffd, UFFDIO_UNREGISTER, &r);
	}
	pc->uffd_registered = false;
}

static struct rmig_block *fault_block(struct rmig_session *s, uintptr_t addr, unsigned int *idx_p)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];

		if (s->pc.uffd_block[i] && addr >= (uintptr_t)b->host &&
		    addr - (uintptr_t)b->host < b->length) {
			*idx_p = i;
			return b;
		}
	}
	return NULL;
}

int rmig_pc_send_req(struct rmig_session *s, uint32_t block, uint64_t offset, uint64_t len)
{
	struct rmig_msg_page_req r = { .block = block, .offset = offset, .len = len };
	uint8_t buf[32];
	int n = rmig_page_req_encode(&r, buf, sizeof(buf));

	atomic_fetch_add_explicit(&s->pc.st_requests, 1, memory_order_relaxed);
	return n < 0 ? n : rmig_ctl_send(s, RMIG_MSG_PAGE_REQ, buf, (uint32_t)n);
}

int rmig_pc_fault(struct rmig_session *s, uintptr_t addr, bool paused)
{
	struct rmig_postcopy *pc = &s->pc;
	struct rmig_block *b;
	unsigned int i;
	uint64_t page;

	b = fault_block(s, addr, &i);
	if (!b)
		return rmig_sess_fail(s, -EFAULT, "postcopy: fault at %#lx outside every block",
				      (unsigned long)addr);
	page = (addr - (uintptr_t)b->host) / b->page_size;
	atomic_fetch_add_explicit(&pc->st_faults, 1, memory_order_relaxed);
	if (!bit_test(pc->missing[i], page)) {
		/*
		 * Here already (placed after the fault was queued: UFFDIO_COPY
		 * woke the thread), or never sent because it was never written:
		 * zero. ZEROPAGE fails with EEXIST in the first case.
		 */
		struct uffdio_zeropage z = { .range = { .start = (uintptr_t)b->host +
								 page * b->page_size,
							.len = b->page_size } };
		struct uffdio_copy c = { .dst = z.range.start,
					 .src = (uintptr_t)pc->zeros,
					 .len = b->page_size };
		struct uffdio_range w = z.range;
		int r = b->page_size == (uint32_t)sysconf(_SC_PAGESIZE) ?
				ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) :
				ioctl(pc->uffd, UFFDIO_COPY, &c); /* hugetlb: no ZEROPAGE */

		if (r < 0 && errno != EEXIST)
			(void)ioctl(pc->uffd, UFFDIO_WAKE, &w);
		return 0;
	}
	if (pc->ntrack < RMIG_PC_TRACK)
		pc->track[pc->ntrack++] = (struct rmig_pc_fault){ i, page, rmig_now_ns() };
	if (bit_test_set(pc->requested[i], page))
		return 0; /* asked already; UFFDIO_COPY will wake this thread too */
	/* paused: asked for once the source is back (rmig_pc_resumed()) */
	return paused ? 0 : rmig_pc_send_req(s, i, page * b->page_size, b->page_size);
}

/* Unanswered faults past the timeout fail the session. */
static int check_track(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	uint64_t now = rmig_now_ns(), limit = (uint64_t)s->opts.timeout_ms * 1000000ull;
	unsigned int k = 0;

	for (unsigned int j = 0; j < pc->ntrack; j++) {
		struct rmig_pc_fault *f = &pc->track[j];

		if (!bit_test(pc->missing[f->block], f->page))
			continue;
		if (now - f->t_ns > limit)
			return rmig_sess_fail(s, -ETIMEDOUT,
					      "postcopy: page %llu of block '%s' was asked for and "
					      "did not arrive within %u ms; the guest cannot continue",
					      (unsigned long long)f->page, s->blocks[f->block].name,
					      s->opts.timeout_ms);
		pc->track[k++] = *f;
	}
	pc->ntrack = k;
	return 0;
}

/* Serve faults until the session fails or ends: 0, or the error that ended it. */
int rmig_pc_serve(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;
	int rc = 0;

	while (!rc) {
		struct pollfd pfd[2] = { { .fd = pc->uffd, .events = POLLIN },
					 { .fd = s->wake_fd, .events = POLLIN } };
		struct uffd_msg msg[16];
		int n = poll(pfd, 2, 50);
		ssize_t got;

		if (n < 0 && errno != EINTR) {
			rc = rmig_sess_fail(s, -errno, "postcopy: poll on userfaultfd: %s",
					    strerror(errno));
			break;
		}
		if (n > 0 && pfd[1].revents)
			break;
		if (n > 0 && pfd[0].revents) {
			got = read(pc->uffd, msg, sizeof(msg));
			for (ssize_t j = 0; got > 0 && j < got / (ssize_t)sizeof(msg[0]) && !rc; j++)
				if (msg[j].event == UFFD_EVENT_PAGEFAULT)
					rc = rmig_pc_fault(s, (uintptr_t)msg[j].arg.pagefault.address, false);
		}
		if (!rc)
			rc = check_track(s);
	}
	return rc;
}

int rmig_pc_uffd_setup(struct rmig_session *s)
{
	struct rmig_postcopy *pc = &s->pc;

	for (unsigned int i = 0; i < s->nblocks; i++) {
		struct rmig_block *b = &s->blocks[i];
		struct uffdio_register r = { .range = { .start = (uintptr_t)b->host,
							.len = b->length },
					     .mode = UFFDIO_REGISTER_MODE_MISSING };
		uint64_t first, count;

		if (!pc->uffd_block[i])
			continue;
		if (ioctl(pc->uffd, UFFDIO_REGISTER, &r) < 0)
			return rmig_sess_fail(s, -errno,
					      "postcopy: registering block '%s' with userfaultfd: %s "
					      "(private anonymous memory is needed)",
					      b->name, strerror(errno));
		pc->uffd_registered = true;
		/* drop the stale copies: touching them must fault */
		for (uint64_t p = 0; p < b->npages; p = first + count) {
			for (first = p; first < b->npages && !bit_test(pc->missing[i], first); first++)
				;
			for (count = 0; first + count < b->npages &&
					bit_test(pc->missing[i], first + count);
			     count++)
				;
			if (count && madvise(b->host + first * b->page_size, count * b->page_size,
					     MADV_DONTNEED) < 0)
				return rmig_sess_fail(s, -errno,
						      "postcopy: dropping pages of block '%s': %s",
						      b->name, strerror(errno));
		}
	}
	if (!pc->uffd_registered)
		return 0;
	pc->zeros = calloc(1, rmig_pc_write_max(s));
	if (!pc->zeros)
		return rmig_sess_fail(s, -ENOMEM, "postcopy: no memory for a zero page");
	return 0;
}

int rmig_postcopy_uffd(rmig_session *s, const char *block)
{
	struct rmig_postcopy *pc;
	struct uffdio_api api = { .api = UFFD_API };
	unsigned int idx;
	struct rmig_block *b;

	if (!s || s->opts.role != RMIG_ROLE_DEST)
		return -EINVAL;
	pc = &s->pc;
	b = rmig_block_find(s, block, &idx);
	if (!b)
		return -ENOENT;
	if (s->state != RMIG_S_NEW || s->ctl_fd >= 0)
		return -EBUSY;
	if (b->page_size > RMIG_PC_PAGE_MAX || (uintptr_t)b->host % b->page_size ||
	    b->length % b->page_size) {
		rmig_err(&s->log, "postcopy: block '%s': the userfaultfd handler takes pages up to "
				  "%u bytes (this block has %u), and a block aligned to whole pages",
			 b->name, RMIG_PC_PAGE_MAX, b->page_size);
		return -EINVAL;
	}
	if (pc->uffd < 0) {
		int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

		if (fd < 0 && errno == EINVAL)
			fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0) {
			int e = errno;

			rmig_err(&s->log, "postcopy: userfaultfd: %s%s", strerror(e),
				 e == EPERM ? " (vm.unprivileged_userfaultfd is 0: run as root, "
					      "or with CAP_SYS_PTRACE)" :
				 e == ENOSYS ? " (this kernel has no userfaultfd)" : "");
			return -e;
		}
		if (ioctl(fd, UFFDIO_API, &api) < 0) {
			int e = errno;

			close(fd);
			rmig_err(&s->log, "postcopy: UFFDIO_API: %s", strerror(e));
			return -e;
		}
		pc->uffd = fd;
	}
	pc->uffd_block[idx] = true;
	return 0;
}
