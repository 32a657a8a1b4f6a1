/* SPDX-License-Identifier: MIT */
/*
 * pc_base.c - what every postcopy file uses: the largest single write
 * (whole huge pages), whether any page is still missing, the PC_DISCARD
 * messages that carry the missing map to the other side, and the wait for
 * the destination to run the guest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pc_bits.h"
#include "sess.h"

uint64_t rmig_pc_write_max(const struct rmig_session *s)
{
	uint64_t m = s->opts.extent_max;

	for (unsigned int i = 0; s->pc.enabled && i < s->nblocks; i++)
		if (s->blocks[i].page_size > m)
			m = s->blocks[i].page_size;
	return m;
}

static int send_discards(struct rmig_session *s, uint8_t *buf, uint8_t *bits)
{
	for (unsigned int i = 0; i < s->nblocks; i++) {
		const struct rmig_block *b = &s->blocks[i];

		for (uint64_t first = 0; first < b->npages; first += RMIG_PC_DISCARD_BITS) {
			uint64_t left = b->npages - first;
			struct rmig_msg_pc_discard m = {
				.block = i,
				.first = first,
				.nbits = (uint32_t)(left < RMIG_PC_DISCARD_BITS ? left :
										 RMIG_PC_DISCARD_BITS),
				.bits = bits,
			};
			bool any = false;
			int n, rc;

			memset(bits, 0, (m.nbits + 7) / 8);
			for (uint32_t k = 0; k < m.nbits; k++) {
				if (bit_test(s->pc.missing[i], first + k)) {
					bits[k / 8] |= (uint8_t)(1u << (k % 8));
					any = true;
				}
			}
			if (!any)
				continue;
			n = rmig_pc_discard_encode(&m, buf, RMIG_CTL_MAX);
			rc = n < 0 ? n : rmig_ctl_send(s, RMIG_MSG_PC_DISCARD, buf, (uint32_t)n);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int rmig_pc_wait_running(struct rmig_session *s, const char *what)
{
	uint64_t deadline = rmig_sess_deadline(s);
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	while (!rc && !s->err && !s->pc.running)
		rc = rmig_sess_wait(s, deadline);
	if (!rc)
		rc = s->err;
	pthread_mutex_unlock(&s->lock);
	if (rc == -ETIMEDOUT)
		rc = rmig_sess_fail(s, rc, "postcopy: the destination did not %s within %u ms", what,
				    s->opts.timeout_ms);
	return rc;
}

int rmig_pc_send_discards(struct rmig_session *s)
{
	uint8_t *buf = malloc(RMIG_CTL_MAX), *bits = malloc(RMIG_PC_DISCARD_BITS / 8);
	int rc = buf && bits ? send_discards(s, buf, bits) :
			       rmig_sess_fail(s, -ENOMEM, "postcopy: no memory");

	free(buf);
	free(bits);
	return rc;
}

bool rmig_pc_missing_any(struct rmig_session *s)
{
	for (unsigned int i = 0; i < s->nblocks; i++)
		for (uint64_t w = 0; s->pc.missing[i] && w < (s->blocks[i].npages + BPL - 1) / BPL; w++)
			if (atomic_load_explicit(&s->pc.missing[i][w], memory_order_relaxed))
				return true;
	return false;
}
