/* SPDX-License-Identifier: MIT */
/*
 * pool.h - the one task pool of a session (device-state loads, completion
 * checks). Tasks run in submission order on up to N threads; a task may not
 * wait for a task submitted after it.
 */
#ifndef RMIG_POOL_H
#define RMIG_POOL_H

struct rmig_pool;
typedef void (*rmig_task_fn)(void *arg);

int rmig_pool_create(unsigned int nthreads, struct rmig_pool **pool_p);
/* -ECANCELED after rmig_pool_destroy() began, -ENOMEM. */
int rmig_pool_submit(struct rmig_pool *pool, rmig_task_fn fn, void *arg);
/* Runs every queued task, joins the threads, frees. NULL-safe. */
void rmig_pool_destroy(struct rmig_pool *pool);

#endif
