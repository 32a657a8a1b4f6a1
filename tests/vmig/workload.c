// SPDX-License-Identifier: MIT
/*
 * workload - the test guest's init workload for VM live-migration tests.
 *
 *   workload [mib=32] [rate=2000] [progress_ms=1000] [seed=1]
 *
 * Allocates MIB MiB and fills every 4 KiB page with a header (magic, page
 * index, generation, checksum) and 4064 bytes of pseudo-random content that
 * is a function of (seed, index, generation) only. It then keeps rewriting
 * RATE pages a second, chosen pseudo-randomly, each rewrite incrementing the
 * page's generation; the generations are also kept in a separate table, so a
 * page that is stale (an older, self-consistent version) is caught as well as
 * one that is torn, zeroed or corrupted.
 *
 * Everything runs in one thread, so verifying never races with rewriting.
 * It reads commands from stdin (the serial console), one a line, and answers
 * each with exactly one final line:
 *   verify        VERIFY OK <pages> | VERIFY FAIL <bad pages> first=<index>
 *                 (on failure, up to 8 "BADPAGE index=<i> why=<check> ..."
 *                 lines and one "BADPAGES magic=<n> index=<n> generation=<n>
 *                 checksum=<n> content=<n>" line come first)
 *   counter       COUNTER <n>
 *   pause         PAUSED <rewrites>      (stops rewriting)
 *   resume        RESUMED <rewrites>     (starts it again)
 *   rate <n>      RATE <n>               (pages a second; 0 is like pause)
 *   ping          PONG <counter>
 *   anything else ERR unknown command
 * Every PROGRESS_MS it prints "PROGRESS <counter> <rewrites>". The counter is
 * the number of main-loop ticks since start (it advances while paused too):
 * it lives in guest RAM and never goes back, so reading it before and after a
 * migration shows the guest resumed where it stopped.
 *
 * Startup prints "WORKLOAD READY pages=<n> mib=<m> rate=<r> seed=<s>" once
 * the fill is done, then a first PROGRESS line at once. On a fatal error it
 * prints "WORKLOAD FATAL <why>" and, being PID 1, powers the guest off.
 *
 * Host-side tools find the pages in a guest RAM file by the magic at offset
 * 0 of a 4 KiB page (see struct page_hdr; little-endian).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define WL_MAGIC 0x31474d56474d4956ULL /* "VIMGVMG1" */

struct page_hdr {
	uint64_t magic;
	uint64_t index;
	uint64_t gen;
	uint64_t csum; /* over index, gen and the content words */
};
#define CONTENT_WORDS ((PAGE - sizeof(struct page_hdr)) / 8)

struct page {
	struct page_hdr h;
	uint64_t w[CONTENT_WORDS];
};
_Static_assert(sizeof(struct page) == PAGE, "page layout");

static struct page *pages;
static uint64_t *gens; /* separate copy of each page's generation */
static uint64_t npages, seed = 1;
static uint64_t counter, rewrites;

static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* one write per line: lines never interleave */
	for (int off = 0; off < n;) {
		ssize_t w = write(1, buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += w;
	}
}

static void fatal(const char *why)
{
	say("WORKLOAD FATAL %s (errno %d)", why, errno);
	if (getpid() == 1) {
		sync();
		reboot(RB_POWER_OFF);
		for (;;)
			pause();
	}
	exit(1);
}

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t page_csum(const struct page *p)
{
	uint64_t h = mix64(p->h.index ^ 0x6a09e667f3bcc908ULL) ^ mix64(p->h.gen + 0xbb67ae8584caa73bULL);
	for (size_t i = 0; i < CONTENT_WORDS; i++) {
		h ^= p->w[i];
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return mix64(h);
}

/* splitmix64 stream seeded from (seed, index, gen) */
static void fill_content(uint64_t *w, uint64_t index, uint64_t gen)
{
	uint64_t s = mix64(seed * 0x9e3779b97f4a7c15ULL ^ mix64(index + 1) ^ mix64(gen + 0x1234567ULL) * 3);
	for (size_t i = 0; i < CONTENT_WORDS; i++) {
		s += 0x9e3779b97f4a7c15ULL;
		w[i] = mix64(s);
	}
}

static void write_page(uint64_t i, uint64_t gen)
{
	struct page *p = &pages[i];
	p->h.magic = WL_MAGIC;
	p->h.index = i;
	p->h.gen = gen;
	fill_content(p->w, i, gen);
	p->h.csum = page_csum(p);
	gens[i] = gen;
}

enum { BAD_NONE, BAD_MAGIC, BAD_INDEX, BAD_GEN, BAD_CSUM, BAD_CONTENT, BAD_KINDS };
static const char *const bad_name[BAD_KINDS] = {"none", "magic", "index", "generation", "checksum", "content"};

/* why a page is bad (the first check it fails), or BAD_NONE */
static int check_page(uint64_t i, uint64_t *scratch)
{
	const struct page *p = &pages[i];
	if (p->h.magic != WL_MAGIC)
		return BAD_MAGIC;
	if (p->h.index != i)
		return BAD_INDEX;
	if (p->h.gen != gens[i])
		return BAD_GEN; /* a stale (or future) but self-consistent page */
	if (p->h.csum != page_csum(p))
		return BAD_CSUM;
	fill_content(scratch, i, p->h.gen);
	if (memcmp(scratch, p->w, sizeof(p->w)))
		return BAD_CONTENT;
	return BAD_NONE;
}

static void verify(void)
{
	static uint64_t scratch[CONTENT_WORDS];
	uint64_t bad = 0, first = 0, kinds[BAD_KINDS] = {0};
	for (uint64_t i = 0; i < npages; i++) {
		int why = check_page(i, scratch);
		if (why == BAD_NONE)
			continue;
		if (!bad)
			first = i;
		if (bad < 8)
			say("BADPAGE index=%llu why=%s gen=%llu want=%llu", (unsigned long long)i, bad_name[why],
			    (unsigned long long)pages[i].h.gen, (unsigned long long)gens[i]);
		kinds[why]++;
		bad++;
	}
	if (bad)
		say("BADPAGES magic=%llu index=%llu generation=%llu checksum=%llu content=%llu",
		    (unsigned long long)kinds[BAD_MAGIC], (unsigned long long)kinds[BAD_INDEX],
		    (unsigned long long)kinds[BAD_GEN], (unsigned long long)kinds[BAD_CSUM],
		    (unsigned long long)kinds[BAD_CONTENT]);
	if (bad)
		say("VERIFY FAIL %llu first=%llu", (unsigned long long)bad, (unsigned long long)first);
	else
		say("VERIFY OK %llu", (unsigned long long)npages);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end) {
		say("WORKLOAD bad %s '%s'", what, s);
		fatal("usage");
	}
	return v;
}

int main(int argc, char **argv)
{
	uint64_t mib = 32, rate = 2000, progress_ms = 1000;
	for (int a = 1; a < argc; a++) {
		char *eq = strchr(argv[a], '=');
		if (!eq) {
			say("WORKLOAD ignoring argument '%s'", argv[a]);
			continue;
		}
		*eq = 0;
		const char *k = argv[a], *v = eq + 1;
		if (!strcmp(k, "mib"))
			mib = parse_u64(v, k);
		else if (!strcmp(k, "rate"))
			rate = parse_u64(v, k);
		else if (!strcmp(k, "progress_ms"))
			progress_ms = parse_u64(v, k);
		else if (!strcmp(k, "seed"))
			seed = parse_u64(v, k);
		else
			say("WORKLOAD ignoring unknown key '%s'", k);
	}
	if (!mib || mib > (1 << 20))
		fatal("mib out of range");
	if (!progress_ms)
		progress_ms = 1000;

	/* the console: no echo (replies only), lines as typed */
	struct termios t;
	if (tcgetattr(0, &t) == 0) {
		t.c_lflag &= ~(ECHO | ECHOE | ECHOK | ECHONL);
		t.c_lflag |= ICANON;
		tcsetattr(0, TCSANOW, &t);
	}

	npages = mib * (1 << 20) / PAGE;
	pages = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (pages == MAP_FAILED)
		fatal("mmap pages");
	gens = mmap(NULL, npages * sizeof(*gens), PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (gens == MAP_FAILED)
		fatal("mmap generations");
	for (uint64_t i = 0; i < npages; i++)
		write_page(i, 0);
	say("WORKLOAD READY pages=%llu mib=%llu rate=%llu seed=%llu", (unsigned long long)npages,
	    (unsigned long long)mib, (unsigned long long)rate, (unsigned long long)seed);

	int paused = 0, stdin_ok = 1;
	char line[256];
	size_t llen = 0;
	uint64_t rng = mix64(seed ^ 0x5bd1e995ULL);
	double credit = 0;
	uint64_t last = now_ns(), next_progress = last;

	for (;;) {
		uint64_t t_now = now_ns();
		if (t_now >= next_progress) {
			say("PROGRESS %llu %llu", (unsigned long long)counter, (unsigned long long)rewrites);
			next_progress = t_now + progress_ms * 1000000ULL;
		}

		struct pollfd pfd = {.fd = 0, .events = POLLIN};
		int n = poll(&pfd, stdin_ok ? 1 : 0, 10);
		if (n > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
			char buf[128];
			ssize_t r = read(0, buf, sizeof(buf));
			if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
				stdin_ok = 0;
			for (ssize_t i = 0; i < r; i++) {
				char c = buf[i];
				if (c != '\n' && c != '\r') {
					if (llen < sizeof(line) - 1)
						line[llen++] = c;
					continue;
				}
				line[llen] = 0;
				llen = 0;
				char *cmd = line;
				while (*cmd == ' ' || *cmd == '\t')
					cmd++;
				size_t cl = strlen(cmd);
				while (cl && (cmd[cl - 1] == ' ' || cmd[cl - 1] == '\t'))
					cmd[--cl] = 0;
				if (!*cmd)
					continue;
				if (!strcmp(cmd, "verify"))
					verify();
				else if (!strcmp(cmd, "counter"))
					say("COUNTER %llu", (unsigned long long)counter);
				else if (!strcmp(cmd, "pause")) {
					paused = 1;
					say("PAUSED %llu", (unsigned long long)rewrites);
				} else if (!strcmp(cmd, "resume")) {
					paused = 0;
					say("RESUMED %llu", (unsigned long long)rewrites);
				} else if (!strncmp(cmd, "rate ", 5)) {
					char *end;
					unsigned long long v = strtoull(cmd + 5, &end, 10);
					if (*end || end == cmd + 5)
						say("ERR bad rate");
					else {
						rate = v;
						say("RATE %llu", v);
					}
				} else if (!strcmp(cmd, "ping"))
					say("PONG %llu", (unsigned long long)counter);
				else
					say("ERR unknown command");
			}
		}

		counter++;
		t_now = now_ns();
		uint64_t dt = t_now - last;
		last = t_now;
		if (paused || !rate) {
			credit = 0;
			continue;
		}
		credit += (double)dt * rate / 1e9;
		/* at most 100 ms of backlog: no burst after the guest was stopped */
		double cap = rate / 10.0 < 1 ? 1 : rate / 10.0;
		if (credit > cap)
			credit = cap;
		while (credit >= 1) {
			rng += 0x9e3779b97f4a7c15ULL;
			uint64_t i = mix64(rng) % npages;
			write_page(i, gens[i] + 1);
			rewrites++;
			credit -= 1;
		}
	}
}
