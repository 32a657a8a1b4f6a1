/* SPDX-License-Identifier: MIT */
/* prep.h - RMIG_F_PREPARE: populate RAM blocks ahead of the channels (see prep.c). */
#ifndef RMIG_PREP_H
#define RMIG_PREP_H

struct rmig_session;
struct rmig_prep;

/* Start populating every block on a thread, if the session asked for it. 0 or the error. */
int rmig_prep_start(struct rmig_session *s);
/* Stop (between chunks) and join. Safe when never started. */
void rmig_prep_stop(struct rmig_session *s);

#endif
