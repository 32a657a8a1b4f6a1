/* SPDX-License-Identifier: MIT */
/*
 * sized.h - filling a caller's struct whose size the caller states: the
 * ABI rule of every sized getter in rmig.h. Fields are only ever appended,
 * so an older caller's smaller struct gets the leading fields, and a newer
 * caller's larger one has the bytes past the library's struct zeroed.
 */
#ifndef RMIG_SIZED_H
#define RMIG_SIZED_H

#include <string.h>

static inline void rmig_copy_sized(void *dst, size_t size, const void *full, size_t full_size)
{
	memcpy(dst, full, size < full_size ? size : full_size);
	if (size > full_size)
		memset((char *)dst + full_size, 0, size - full_size);
}

#endif
