/* SPDX-License-Identifier: MIT */
/*
 * mr.c - memory registration. The destination registers each RAM block for
 * remote write and describes it (address, length, rkey) for the source; the
 * source registers its blocks for local access, and device-state buffers on
 * first use. The memlock limit is checked before pinning, so a low limit is
 * a message that says what to raise and by how much, not a bare ENOMEM.
 * Everything is deregistered when the backend is destroyed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "rdma_int.h"

/* CAP_IPC_LOCK in the effective set lifts RLIMIT_MEMLOCK for pinning. */
static bool cap_ipc_lock(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	unsigned long long caps = 0;
	char line[256];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	if (f)
		fclose(f);
	return caps & (1ull << 14);
}

/* 0, or -ENOMEM with the fix spelled out in @why. */
static int memlock_check(struct rmig_rdma_tp *t, const char *what, uint64_t len, char *why,
			 size_t wlen)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY || cap_ipc_lock())
		return 0;
	if (t->locked + len <= rl.rlim_cur)
		return 0;
	snprintf(why, wlen,
		 "rdma: cannot pin %s (%" PRIu64 " KiB): the memlock limit is %llu KiB and "
		 "%" PRIu64 " KiB are pinned; raise it by at least %" PRIu64
		 " KiB (ulimit -l, systemd LimitMEMLOCK=, /etc/security/limits.conf) or run with "
		 "CAP_IPC_LOCK",
		 what, len >> 10, (unsigned long long)rl.rlim_cur >> 10, t->locked >> 10,
		 (t->locked + len - rl.rlim_cur + 1023) >> 10);
	return -ENOMEM;
}

/* Register without reporting: the caller may hold t->lock, which fail() needs. */
static int reg(struct rmig_rdma_tp *t, const char *what, void *addr, uint64_t len, int access,
	       struct ibv_mr **mr_p, char *why, size_t wlen)
{
	int rc = memlock_check(t, what, len, why, wlen);

	if (rc)
		return rc;
	rc = rmig_rv_reg_mr(t->pd, addr, len, access, mr_p);
	if (rc) {
		snprintf(why, wlen, "rdma: registering %s (%" PRIu64 " bytes): %s%s", what, len,
			 strerror(-rc),
			 rc == -ENOMEM ? " (is the memlock limit high enough?)" :
			 rc == -EFAULT ? " (the kernel pins only writable mappings: map guest RAM "
					 "writable, or make the image file writable for this user)" :
					 "");
		return rc;
	}
	t->locked += len;
	return 0;
}

int rmig_rdma_reg(struct rmig_tp *tp, unsigned int block, void *addr, uint64_t len, uint8_t *desc,
	     uint16_t *desc_len_p)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(tp);
	bool dst = tp->p.role == RMIG_ROLE_DEST;
	struct rmig_rdma_mr_ent *e = &t->blocks[block];
	char what[64], why[512];
	int rc;

	if (!t->pd)
		return RMIG_RDMA_FAIL(t, -ENODEV, "rdma: no device to register memory with");
	snprintf(what, sizeof(what), "ram block %u", block);
	/* The source only reads its RAM: no write access, so read-only mappings work. */
	rc = reg(t, what, addr, len, dst ? IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE : 0,
		 &e->mr, why, sizeof(why));
	if (rc)
		return RMIG_RDMA_FAIL(t, rc, "%s", why);
	e->addr = addr;
	e->len = len;
	*desc_len_p = 0;
	if (dst) {
		rmig_put_be64(desc, (uint64_t)(uintptr_t)addr);
		rmig_put_be64(desc + 8, len);
		rmig_put_be32(desc + 16, e->mr->rkey);
		*desc_len_p = RMIG_RDMA_DESC_LEN;
	}
	return 0;
}

int rmig_rdma_set_remote(struct rmig_tp *tp, unsigned int block, uint64_t len, const uint8_t *desc,
		    uint16_t desc_len)
{
	struct rmig_rdma_tp *t = rmig_rdma_tp(tp);
	struct rmig_rdma_remote *r = &t->remote[block];

	if (desc_len != RMIG_RDMA_DESC_LEN || rmig_get_be64(desc + 8) != len)
		return RMIG_RDMA_FAIL(t, -EBADMSG,
				 "rdma: bad registration descriptor for block %u (%u bytes)", block,
				 desc_len);
	r->addr = rmig_get_be64(desc);
	r->len = len;
	r->rkey = rmig_get_be32(desc + 16);
	r->set = true;
	return 0;
}

int rmig_rdma_state_lkey(struct rmig_rdma_tp *t, const struct rmig_target *tg, const void *p, uint64_t len,
		    uint32_t *lkey_p)
{
	/* The whole blob: its base is the chunk minus the chunk's offset. */
	uint8_t *base = (uint8_t *)(uintptr_t)p - tg->offset;
	struct rmig_rdma_mr_ent *e = NULL;
	char why[512] = "rdma: no memory";
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < t->ndyn; i++) {
		struct rmig_rdma_mr_ent *d = &t->dyn[i];

		if ((const uint8_t *)p >= d->addr && (const uint8_t *)p + len <= d->addr + d->len) {
			e = d;
			break;
		}
	}
	if (!e) {
		if (t->ndyn == t->capdyn) {
			struct rmig_rdma_mr_ent *n = realloc(t->dyn, (t->capdyn * 2 + 8) * sizeof(*n));

			if (!n)
				rc = -ENOMEM;
			else {
				t->dyn = n;
				t->capdyn = t->capdyn * 2 + 8;
			}
		}
		if (!rc) {
			e = &t->dyn[t->ndyn];
			rc = reg(t, "a device-state buffer", base, tg->total, 0, &e->mr, why,
				 sizeof(why));
		}
		if (!rc) {
			e->addr = base;
			e->len = tg->total;
			t->ndyn++;
		}
	}
	if (!rc)
		*lkey_p = e->mr->lkey;
	pthread_mutex_unlock(&t->lock);
	return rc ? RMIG_RDMA_FAIL(t, rc, "%s", why) : 0;
}

void rmig_rdma_mr_release(struct rmig_rdma_tp *t)
{
	for (unsigned int i = 0; i < RMIG_BLOCKS_MAX; i++) {
		rmig_rv_dereg_mr(t->blocks[i].mr);
		t->blocks[i].mr = NULL;
	}
	for (unsigned int i = 0; i < t->ndyn; i++)
		rmig_rv_dereg_mr(t->dyn[i].mr);
	free(t->dyn);
	t->dyn = NULL;
	t->ndyn = t->capdyn = 0;
	t->locked = 0;
}
