/* SPDX-License-Identifier: MIT */
/*
 * fuzz_common.h - a destination session ready to receive data frames, as
 * rmig_accept() leaves it, without a peer: two RAM blocks between PROT_NONE
 * guard pages (a byte written outside them crashes the fuzzer), the task
 * pool for blob loads, and a control socket that swallows what it is sent.
 */
#ifndef RMIG_FUZZ_COMMON_H
#define RMIG_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "sess.h"

#define FZ_CHANNELS 2

struct rmig_session *fz_dest_open(void);
void fz_dest_close(struct rmig_session *s);

#endif
