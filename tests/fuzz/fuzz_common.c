/* SPDX-License-Identifier: MIT */
/* fuzz_common.c - see fuzz_common.h. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.h"

#define PAGE 4096u

static uint8_t *guarded(size_t len)
{
	uint8_t *p = mmap(NULL, len + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		abort();
	if (mprotect(p + PAGE, len, PROT_READ | PROT_WRITE))
		abort();
	return p + PAGE;
}

/* Made once: every run writes into the same blocks, which is fine. */
static uint8_t *ram0, *ram1;

struct rmig_session *fz_dest_open(void)
{
	struct rmig_session *s;
	struct rmig_opts o;

	if (!ram0) {
		ram0 = guarded(64 * PAGE);
		ram1 = guarded(8 * PAGE);
	}
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	o.log_fn = NULL;
	o.blob_max = 1u << 20;
	o.load_threads = 1;
	if (rmig_session_create(&o, &s) || rmig_add_ram(s, "ram", ram0, 64 * PAGE, PAGE) ||
	    rmig_add_ram(s, "rom", ram1, 8 * PAGE, PAGE))
		abort();
	s->nchannels = FZ_CHANNELS;
	s->chan_sync = calloc(FZ_CHANNELS, sizeof(*s->chan_sync));
	s->ctl_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (!s->chan_sync || s->ctl_fd < 0 || rmig_pool_create(1, &s->pool))
		abort();
	s->state = RMIG_S_RUNNING;
	return s;
}

void fz_dest_close(struct rmig_session *s)
{
	rmig_session_destroy(s);
}
