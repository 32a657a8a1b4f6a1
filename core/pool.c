/* SPDX-License-Identifier: MIT */
/* pool.c - a fixed set of worker threads over a FIFO of tasks. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "pool.h"

struct task {
	struct task *next;
	rmig_task_fn fn;
	void *arg;
};

struct rmig_pool {
	/* protected by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct task *head, **tail;
	bool stopping;
	/* set at creation */
	unsigned int n;
	pthread_t threads[];
};

static void *worker(void *arg)
{
	struct rmig_pool *p = arg;
	struct task *t;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		t = p->head;
		if (!t)
			break; /* stopping and drained */
		p->head = t->next;
		if (!p->head)
			p->tail = &p->head;
		pthread_mutex_unlock(&p->lock);
		t->fn(t->arg);
		free(t);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int rmig_pool_create(unsigned int nthreads, struct rmig_pool **pool_p)
{
	struct rmig_pool *p;
	unsigned int i;
	int rc;

	if (!nthreads)
		return -EINVAL;
	p = calloc(1, sizeof(*p) + nthreads * sizeof(pthread_t));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->tail = &p->head;
	for (i = 0; i < nthreads; i++) {
		rc = pthread_create(&p->threads[i], NULL, worker, p);
		if (rc) {
			p->n = i;
			rmig_pool_destroy(p);
			return -rc;
		}
	}
	p->n = nthreads;
	*pool_p = p;
	return 0;
}

int rmig_pool_submit(struct rmig_pool *p, rmig_task_fn fn, void *arg)
{
	struct task *t = malloc(sizeof(*t));
	int rc = 0;

	if (!t)
		return -ENOMEM;
	t->next = NULL;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_lock(&p->lock);
	if (p->stopping) {
		rc = -ECANCELED;
	} else {
		*p->tail = t;
		p->tail = &t->next;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc)
		free(t);
	return rc;
}

void rmig_pool_destroy(struct rmig_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}
