/* SPDX-License-Identifier: MIT */
/*
 * outside.c - a program written as a library user would write it: only
 * <rmig.h> and the public API, built against an installed librmig through
 * pkg-config (tests/outside/run.sh). Migrates 8 MiB of random memory over
 * loopback TCP between a source and a destination session on two threads,
 * compares the destination byte for byte, checks that the loaded library is
 * the header's version, and that the comparison can fail (one flipped byte).
 * Exit status 0 when everything holds, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rmig.h>

#define LEN (8u << 20)
#define PAGE 4096u

static int failures;

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "outside: FAIL %s:%d: %s: ", __FILE__, __LINE__,  \
				#cond);                                                   \
			fprintf(stderr, __VA_ARGS__);                                     \
			fputc('\n', stderr);                                              \
			failures++;                                                       \
		}                                                                         \
	} while (0)

/* -1 when @a and @b hold the same @len bytes, else the first differing offset. */
static long long first_mismatch(const unsigned char *a, const unsigned char *b, size_t len)
{
	if (memcmp(a, b, len) == 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return (long long)i;
	return -1; /* not reached */
}

static void fill_random(unsigned char *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (size_t i = 0; i < len; i += 8) {
		x ^= x >> 12; /* xorshift64* */
		x ^= x << 25;
		x ^= x >> 27;
		uint64_t v = x * 0x2545F4914F6CDD1DULL;
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

struct dest {
	rmig_session *s;
	int accept_rc, complete_rc;
};

static void *dest_main(void *arg)
{
	struct dest *d = arg;

	d->accept_rc = rmig_accept(d->s);
	d->complete_rc = d->accept_rc ? d->accept_rc : rmig_complete(d->s);
	return NULL;
}

static int make_session(enum rmig_role role, unsigned char *mem, rmig_session **s)
{
	struct rmig_opts o;
	int rc;

	rmig_opts_init(&o, sizeof(o));
	o.role = role;
	o.transport = RMIG_TRANSPORT_TCP;
	o.channels = 4;
	o.timeout_ms = 20000;
	o.flags = RMIG_F_VERIFY;
	rc = rmig_session_create(&o, s);
	if (rc)
		return rc;
	return rmig_add_ram(*s, "ram", mem, LEN, PAGE);
}

int main(void)
{
	unsigned char *src = NULL, *dst = NULL;
	rmig_session *ss = NULL;
	struct dest d = { 0 };
	struct rmig_stats st;
	pthread_t th;
	int rc, port, started = 0;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	char uri[64];
	long long off;

	printf("outside: header %s, library %s, seed %llu\n", RMIG_VERSION_STRING, rmig_version(),
	       (unsigned long long)seed);
	CHECK(strcmp(rmig_version(), RMIG_VERSION_STRING) == 0, "library %s, header %s",
	      rmig_version(), RMIG_VERSION_STRING);

	if (posix_memalign((void **)&src, PAGE, LEN) || posix_memalign((void **)&dst, PAGE, LEN)) {
		fprintf(stderr, "outside: FAIL: out of memory\n");
		return 1;
	}
	fill_random(src, LEN, seed);
	memset(dst, 0xa5, LEN);

	rc = make_session(RMIG_ROLE_DEST, dst, &d.s);
	CHECK(rc == 0, "destination: %s", strerror(-rc));
	if (!rc) {
		rc = rmig_listen(d.s, "tcp://127.0.0.1:0");
		CHECK(rc == 0, "rmig_listen: %s", rmig_last_error(d.s));
	}
	if (!rc) {
		rc = -pthread_create(&th, NULL, dest_main, &d);
		CHECK(rc == 0, "pthread_create: %s", strerror(-rc));
		started = !rc;
	}
	if (!rc) {
		rc = make_session(RMIG_ROLE_SOURCE, src, &ss);
		CHECK(rc == 0, "source: %s", strerror(-rc));
	}
	if (!rc) {
		port = rmig_listen_port(d.s);
		snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
		rc = rmig_connect(ss, uri);
		CHECK(rc == 0, "rmig_connect %s: %s", uri, rmig_last_error(ss));
	}
	if (!rc) {
		rc = rmig_send_range(ss, "ram", 0, LEN);
		CHECK(rc == 0, "rmig_send_range: %s", rmig_last_error(ss));
	}
	if (!rc) {
		rc = rmig_complete(ss);
		CHECK(rc == 0, "rmig_complete (source): %s", rmig_last_error(ss));
	}
	if (rc) { /* wake whichever side still waits */
		if (ss)
			rmig_cancel(ss, "outside: the source failed");
		if (d.s)
			rmig_cancel(d.s, "outside: the source failed");
	}
	if (started) {
		pthread_join(th, NULL);
		CHECK(d.accept_rc == 0, "rmig_accept: %s", rmig_last_error(d.s));
		CHECK(d.complete_rc == 0, "rmig_complete (destination): %s", rmig_last_error(d.s));
	}

	if (!rc && d.complete_rc == 0) {
		off = first_mismatch(src, dst, LEN);
		CHECK(off < 0, "destination differs from the source at byte %lld", off);
		rc = rmig_get_stats_sized(ss, &st, sizeof(st));
		CHECK(rc == 0, "rmig_get_stats_sized: %d", rc);
		CHECK(st.handled == LEN, "source handled %llu bytes, want %u",
		      (unsigned long long)st.handled, LEN);
		CHECK(st.transport == RMIG_TRANSPORT_TCP, "transport %s",
		      rmig_transport_name(st.transport));
		printf("outside: migrated %u MiB over %s on %u channels, %llu zero pages, "
		       "destination identical\n", LEN >> 20, rmig_transport_name(st.transport),
		       st.channels, (unsigned long long)st.zero_pages);

		/* negative control: the comparison sees a single flipped byte */
		dst[LEN / 2 + 123] ^= 0x01;
		off = first_mismatch(src, dst, LEN);
		CHECK(off == (long long)(LEN / 2 + 123), "a flipped byte at %u reported as %lld",
		      LEN / 2 + 123, off);
		dst[LEN / 2 + 123] ^= 0x01;
		CHECK(first_mismatch(src, dst, LEN) < 0, "restoring the byte did not restore equality");
	}

	rmig_session_destroy(ss);
	rmig_session_destroy(d.s);
	free(src);
	free(dst);
	printf("outside: %s\n", failures ? "FAIL" : "ok");
	return failures ? 1 : 0;
}
