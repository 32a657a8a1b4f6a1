/* SPDX-License-Identifier: MIT */
/*
 * api_stats.c - the library's version, and the counters for a caller built
 * against another size of struct rmig_stats.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "rmig.h"
#include "sized.h"

const char *rmig_version(void)
{
	return RMIG_VERSION_STRING;
}

int rmig_get_stats_sized(rmig_session *s, struct rmig_stats *st, size_t size)
{
	struct rmig_stats full;

	if (!s || !st || size < offsetof(struct rmig_stats, handled))
		return -EINVAL;
	rmig_get_stats(s, &full);
	rmig_copy_sized(st, size, &full, sizeof(full));
	return 0;
}
