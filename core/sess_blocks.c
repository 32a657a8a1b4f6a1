/* SPDX-License-Identifier: MIT */
/*
 * sess_blocks.c - a session's RAM blocks: declared before the session
 * connects (rmig_add_ram()), checked (whole pages; a destination's blocks
 * never overlap), and found by name.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sess.h"

struct rmig_block *rmig_block_find(struct rmig_session *s, const char *name, unsigned int *idx_p)
{
	for (unsigned int i = 0; name && i < s->nblocks; i++) {
		if (!strcmp(s->blocks[i].name, name)) {
			if (idx_p)
				*idx_p = i;
			return &s->blocks[i];
		}
	}
	return NULL;
}

#define RMIG_ADDR_END (1ull << 57)

int rmig_add_ram(rmig_session *s, const char *name, void *host, uint64_t length,
		 uint32_t page_size)
{
	struct rmig_block *b;

	/* no process's address space reaches past 2^57 (5-level page tables) */
	if (!s || !name || !*name || strlen(name) >= RMIG_NAME_MAX || !host || !length ||
	    page_size < 512 || (page_size & (page_size - 1)) || length % page_size ||
	    length > RMIG_ADDR_END || (uintptr_t)host > RMIG_ADDR_END - length) {
		rmig_err(s ? &s->log : NULL, "ram block '%s': bad name, address, length or page size",
			 name ? name : "(null)");
		return -EINVAL;
	}
	/* a file restore opens its file (the backend) before the layout callback */
	if (s->state != RMIG_S_NEW || (s->tp && !s->local))
		return -EBUSY;
	if (rmig_block_find(s, name, NULL)) {
		rmig_err(&s->log, "ram block '%s' declared twice", name);
		return -EINVAL;
	}
	if (s->nblocks == RMIG_BLOCKS_MAX)
		return -ENOSPC;
	/*
	 * Two destination blocks over the same memory would each take the
	 * other's pages: the result holds neither. (A source may read one
	 * range twice.)
	 */
	for (unsigned int i = 0; i < s->nblocks && s->opts.role == RMIG_ROLE_DEST; i++) {
		const struct rmig_block *o = &s->blocks[i];
		uintptr_t a = (uintptr_t)host, oa = (uintptr_t)o->host;

		if (a < oa + o->length && oa < a + length) {
			rmig_err(&s->log, "ram block '%s' overlaps ram block '%s' in memory", name,
				 o->name);
			return -EINVAL;
		}
	}
	b = &s->blocks[s->nblocks++];
	snprintf(b->name, sizeof(b->name), "%s", name);
	b->host = host;
	b->length = length;
	b->page_size = page_size;
	b->npages = length / page_size;
	return 0;
}
