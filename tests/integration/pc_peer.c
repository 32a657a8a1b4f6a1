/* SPDX-License-Identifier: MIT */
/*
 * pc_peer - one end of a postcopy migration between two processes, for the
 * fault matrix (a link taken down while the destination's guest runs).
 *
 *   pc_peer dest   ADDR PORT MIB WINDOW_S [KEY]
 *   pc_peer source ADDR PORT MIB WINDOW_S [KEY]
 *
 * The source fills MIB of anonymous memory with a pattern, connects, and
 * switches to postcopy at once (every page missing); for 4 s only the
 * pages the guest asks for move, then it sends the rest over 4 channels
 * (after a resume the same).
 * The destination serves its memory with the built-in userfaultfd handler,
 * and once postcopy runs a guest thread reads every page in a scattered
 * order, one each 0.5 ms or so, checking each against the pattern as it
 * faults in. After a break both ends resume the migration within WINDOW_S
 * (rmig_resume() and rmig_recover()): the source reconnects every 250 ms,
 * the destination listens again on the same port. Every wait is bounded by
 * 3 s: a link down longer than that breaks the migration. At the end the
 * destination checks the whole memory once more.
 *
 * PC_PEER_RDMA=1 (source): the data channels over RDMA.
 *
 * Exit 0: migrated, every page right (destination: the guest read no
 * wrong page, whole memory equal); 1: the migration failed, or a page was
 * wrong (said on stderr); 2: usage. Lines on stderr start "pc_peer ROLE:".
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "rmig.h"

#define PAGE 4096u

static const char *role;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* the pattern of page @p: every 8 bytes a function of the page and the word */
static void pattern(uint64_t *w, uint64_t p)
{
	for (unsigned int i = 0; i < PAGE / 8; i++) {
		uint64_t x = (p << 12 | i) * 0x9e3779b97f4a7c15ull;

		w[i] = x ^ (x >> 29);
	}
}

static bool page_ok(const uint8_t *mem, uint64_t p)
{
	uint64_t want[PAGE / 8];

	pattern(want, p);
	return !memcmp(mem + p * PAGE, want, PAGE);
}

static void say(const char *what)
{
	fprintf(stderr, "pc_peer %s: %s\n", role, what);
}

static void why(rmig_session *s, int rc, const char *what)
{
	const char *e = s ? rmig_last_error(s) : "";

	fprintf(stderr, "pc_peer %s: %s: %s\n", role, what, e && *e ? e : strerror(-rc));
}

struct guest {
	const uint8_t *mem;
	uint64_t npages;
	_Atomic uint64_t done, bad;
	pthread_t th;
};

/* The guest: read every page, a stride apart (each read a fault), and check it. */
static void *guest_main(void *arg)
{
	struct guest *g = arg;
	uint64_t stride = 7919 % g->npages ? 7919 : 1;

	for (uint64_t i = 0, p = 0; i < g->npages; i++, p = (p + stride) % g->npages) {
		struct timespec ts = { 0, 500000 };

		nanosleep(&ts, NULL); /* a guest at work: the migration runs for seconds */
		if (!page_ok(g->mem, p))
			atomic_fetch_add(&g->bad, 1);
		atomic_fetch_add(&g->done, 1);
	}
	return NULL;
}

static int run_dest(struct rmig_opts *o, const char *uri, uint8_t *mem, uint64_t len)
{
	uint64_t npages = len / PAGE, bad = 0;
	struct guest g = { .mem = mem, .npages = npages };
	unsigned int resumes = 0;
	bool guest_started = false;
	rmig_session *s = NULL;
	int rc;

	rc = rmig_session_create(o, &s);
	if (!rc)
		rc = rmig_add_ram(s, "ram", mem, len, PAGE);
	if (!rc)
		rc = rmig_postcopy_uffd(s, "ram");
	if (!rc)
		rc = rmig_listen(s, uri);
	if (rc) {
		why(s, rc, "setting up");
		rmig_session_destroy(s);
		return 1;
	}
	rc = rmig_accept(s);
	if (!rc)
		rc = rmig_postcopy_wait(s);
	if (!rc) {
		say("postcopy runs: the guest starts");
		rc = -pthread_create(&g.th, NULL, guest_main, &g);
		guest_started = !rc;
	}
	if (!rc)
		rc = rmig_complete(s);
	/* a break once the guest runs: resume the migration, as often as it breaks */
	while (rc && guest_started) {
		uint64_t deadline = mono_ms() + o->recovery_timeout_ms;

		why(s, rc, "the migration broke; waiting for the source to resume it");
		do {
			rc = rmig_recover(&s, uri); /* s is a new session from here on */
			if (rc == -EACCES) /* a stranger, refused: wait on for the source */
				why(s, rc, "refused a connection");
		} while (rc == -EACCES && mono_ms() < deadline);
		if (rc) {
			why(s, rc, "no resume");
			break;
		}
		resumes++;
		{
			struct timespec now;

			clock_gettime(CLOCK_REALTIME, &now); /* for the link-up-to-resumed figure */
			fprintf(stderr, "pc_peer dest: resumed by the source at %lld.%09ld\n",
				(long long)now.tv_sec, now.tv_nsec);
		}
		rc = rmig_complete(s);
	}
	if (guest_started)
		pthread_join(g.th, NULL);
	if (rc) {
		why(s, rc, "migration failed");
		rmig_session_destroy(s);
		return 1;
	}
	for (uint64_t p = 0; p < npages; p++)
		bad += !page_ok(mem, p);
	if (bad || atomic_load(&g.bad) || atomic_load(&g.done) != npages) {
		fprintf(stderr, "pc_peer dest: WRONG: the guest read %llu wrong page(s) of %llu; %llu "
				"page(s) differ at the end\n",
			(unsigned long long)atomic_load(&g.bad), (unsigned long long)npages,
			(unsigned long long)bad);
		rmig_session_destroy(s);
		return 1;
	}
	{
		struct rmig_stats st;

		rmig_get_stats(s, &st);
		fprintf(stderr, "pc_peer dest: migrated after %u resume(s); the guest read all %llu "
				"pages right, and the memory is equal; %llu pause(s), %.0f ms paused, "
				"%llu page(s) asked for again\n",
			resumes, (unsigned long long)npages, (unsigned long long)st.pc_pauses,
			st.pc_paused_ns / 1e6, (unsigned long long)st.pc_rerequested);
	}
	rmig_session_destroy(s);
	return 0;
}

/* Source: the migration *@s_p was, resumed in a new session within the window. */
static int src_resume(rmig_session **s_p, const struct rmig_opts *o, const char *uri)
{
	uint64_t deadline = mono_ms() + o->recovery_timeout_ms;
	int rc = -ETIMEDOUT;

	for (unsigned int attempt = 0; mono_ms() < deadline; attempt++) {
		if (attempt)
			sleep_ms(250);
		rc = rmig_resume(s_p, uri); /* *s_p is a new session from here on */
		if (!rc || rc == -ESRCH || rc == -EACCES || rc == -EINVAL || rc == -ENOMEM)
			break;
	}
	return rc;
}

static int run_source(struct rmig_opts *o, const char *uri, uint8_t *mem, uint64_t len)
{
	uint64_t npages = len / PAGE;
	unsigned long *all = calloc((npages + 63) / 64, sizeof(long));
	const unsigned long *maps[1] = { all };
	unsigned int resumes = 0;
	rmig_session *s = NULL;
	int rc;

	if (!all)
		return 1;
	memset(all, 0xff, (npages + 63) / 64 * sizeof(long));
	rc = rmig_session_create(o, &s);
	if (!rc)
		rc = rmig_add_ram(s, "ram", mem, len, PAGE);
	if (!rc)
		rc = rmig_connect(s, uri);
	if (!rc)
		rc = rmig_postcopy_start(s, maps, 1);
	free(all);
	if (rc) {
		why(s, rc, "starting postcopy");
		rmig_session_destroy(s);
		return 1;
	}
	say("postcopy runs at the destination");
	for (;;) {
		/* the guest's requests alone for a while (the rest, unlimited, ends it at once) */
		sleep_ms(4000);
		rc = rmig_postcopy_send_rest(s);
		if (!rc)
			rc = rmig_complete(s);
		if (!rc || rc == -EBADMSG)
			break;
		why(s, rc, "the migration broke; resuming");
		rc = src_resume(&s, o, uri);
		if (rc) {
			why(s, rc, "could not resume");
			break;
		}
		resumes++;
		say("resumed: the destination runs the guest again");
	}
	if (rc)
		why(s, rc, "migration failed");
	else
		fprintf(stderr, "pc_peer source: migrated after %u resume(s)\n", resumes);
	rmig_session_destroy(s);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct rmig_opts o;
	uint64_t len;
	uint8_t *mem;
	char uri[128];
	int rc;

	if (argc < 6 || (strcmp(argv[1], "dest") && strcmp(argv[1], "source"))) {
		fprintf(stderr, "usage: pc_peer dest|source ADDR PORT MIB WINDOW_S [KEY]\n");
		return 2;
	}
	role = argv[1];
	len = strtoull(argv[4], NULL, 0) << 20;
	if (!len)
		return 2;
	rmig_opts_init(&o, sizeof(o));
	o.role = strcmp(role, "dest") ? RMIG_ROLE_SOURCE : RMIG_ROLE_DEST;
	o.channels = 4;
	o.timeout_ms = 3000; /* a link down longer than this breaks the migration */
	o.flags = RMIG_F_POSTCOPY | RMIG_F_VERIFY;
	o.recovery_timeout_ms = (unsigned int)strtoul(argv[5], NULL, 0) * 1000u;
	if (getenv("PC_PEER_RDMA")) /* the data channels over RDMA (the soft-RoCE VM) */
		o.transport = RMIG_TRANSPORT_RDMA;
	if (argc > 6 && argv[6][0]) {
		o.key = argv[6];
		o.key_len = strlen(argv[6]);
	}
	snprintf(uri, sizeof(uri), "tcp://%s:%s", argv[2], argv[3]);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("pc_peer: mmap");
		return 1;
	}
	if (o.role == RMIG_ROLE_SOURCE) {
		for (uint64_t p = 0; p < len / PAGE; p++)
			pattern((uint64_t *)(mem + p * PAGE), p);
		rc = run_source(&o, uri, mem, len);
	} else {
		rc = run_dest(&o, uri, mem, len);
	}
	munmap(mem, len);
	return rc;
}
