/* SPDX-License-Identifier: MIT */
/* testlib.c - see testlib.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sess.h"
#include "sock.h"
#include "testlib.h"

static size_t pagesz(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

void *guarded_alloc(uint64_t len)
{
	size_t ps = pagesz();
	uint64_t body = round_up(len, ps);
	uint8_t *p = mmap(NULL, body + 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (mprotect(p + ps, body, PROT_READ | PROT_WRITE)) {
		munmap(p, body + 2 * ps);
		return NULL;
	}
	/* The block ends exactly at the upper guard page. */
	return p + ps + (body - len);
}

void guarded_free(void *p, uint64_t len)
{
	size_t ps = pagesz();
	uint64_t body = round_up(len, ps);

	if (p)
		munmap((uint8_t *)p - (body - len) - ps, body + 2 * ps);
}

void fill_random(uint8_t *p, uint64_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (uint64_t i = 0; i < len; i++) {
		if (i % 8 == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		p[i] = (uint8_t)(x >> (8 * (i % 8)));
	}
}

void fill_sparse(uint8_t *p, uint64_t len, uint32_t page, unsigned int every, uint64_t seed)
{
	memset(p, 0, len);
	for (uint64_t off = 0; off + page <= len; off += (uint64_t)page * every)
		fill_random(p + off, page, seed + off);
}

static void *dest_thread(void *arg)
{
	struct pair *p = arg;

	p->accept_rc = rmig_accept(p->dst);
	p->dst_rc = p->accept_rc ? p->accept_rc : rmig_complete(p->dst);
	return NULL;
}

/* The destination accepts (and completes) on a thread; the source connects to @addr:p->port. */
static int accept_and_connect(struct pair *p, const char *addr)
{
	char uri[128];
	int rc = -pthread_create(&p->th, NULL, dest_thread, p);

	if (rc)
		return rc;
	p->th_started = true;
	if (p->cfg.ctl_pair)
		snprintf(uri, sizeof(uri), "fd:%d", p->src_fd);
	else
		snprintf(uri, sizeof(uri), "%s:%d", addr, p->port);
	return rmig_connect(p->src, uri);
}

/* A TCP connection to @addr: sv[0] the connecting end, sv[1] the accepted one. */
static int tcp_conn(const char *addr, int sv[2])
{
	char port[16];
	int lfd, rc;

	rc = rmig_sock_listen(addr, "0", &lfd);
	if (rc)
		return rc;
	snprintf(port, sizeof(port), "%d", rmig_sock_local_port(lfd));
	rc = rmig_sock_connect(addr, port, 5000, &sv[0]);
	if (!rc) {
		rc = rmig_sock_accept(lfd, 5000, &sv[1]);
		if (rc)
			close(sv[0]);
	}
	close(lfd);
	return rc;
}

/*
 * ctl_pair: the destination "listens" on one end of a connection the test
 * made ("fd:N"); the source gets the other.
 */
static int listen_pair(struct pair *p, const char *addr)
{
	char uri[32];
	int sv[2], rc;

	if (p->cfg.ctl_tcp)
		rc = tcp_conn(addr, sv);
	else
		rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0;
	if (rc)
		return rc;
	snprintf(uri, sizeof(uri), "fd:%d", sv[1]);
	rc = rmig_listen(p->dst, uri);
	if (rc) {
		close(sv[0]);
		close(sv[1]);
		return rc;
	}
	p->src_fd = sv[0];
	return 0;
}

int pair_open(struct pair *p, const struct pair_cfg *cfg)
{
	struct rmig_opts so, dopt;
	const char *addr;
	char uri[128];
	int rc;

	memset(p, 0, sizeof(*p));
	p->cfg = *cfg;
	addr = cfg->addr ? cfg->addr : "127.0.0.1";
	p->smem = guarded_alloc(cfg->len);
	if (cfg->dst_huge) {
		p->dmem = mmap(NULL, cfg->len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (p->dmem == MAP_FAILED) {
			rc = -errno;
			p->dmem = NULL;
			guarded_free(p->smem, cfg->len);
			p->smem = NULL;
			return rc;
		}
	} else {
		p->dmem = guarded_alloc(cfg->len);
	}
	if (!p->smem || !p->dmem)
		return -ENOMEM;
	rmig_opts_init(&so, sizeof(so));
	so.role = RMIG_ROLE_SOURCE;
	so.channels = cfg->channels;
	so.timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;
	so.flags = cfg->flags;
	so.transport = cfg->transport ? cfg->transport : RMIG_TRANSPORT_TCP;
	/* Quiet unless asked: the tests assert on rmig_last_error() instead. */
	if (getenv("RMIG_TEST_LOG"))
		so.log_level = RMIG_LOG_DEBUG;
	else
		so.log_fn = NULL;
	if (cfg->extent_max)
		so.extent_max = cfg->extent_max;
	dopt = so;
	dopt.role = RMIG_ROLE_DEST;
	so.flags &= ~cfg->src_drop;
	dopt.flags &= ~cfg->dst_drop;
	so.max_bandwidth = cfg->max_bandwidth;
	if (cfg->downtime_limit_ms)
		so.downtime_limit_ms = cfg->downtime_limit_ms;
	if (cfg->max_rounds)
		so.max_rounds = cfg->max_rounds;
	dopt.state_fn = cfg->state_fn;
	dopt.state_arg = cfg->state_arg;
	so.key = cfg->src_key;
	so.key_len = cfg->src_key_len;
	dopt.recovery_timeout_ms = cfg->recovery_timeout_ms;
	dopt.key = cfg->dst_key;
	dopt.key_len = cfg->dst_key_len;
	rc = rmig_session_create(&so, &p->src);
	if (!rc)
		rc = rmig_session_create(&dopt, &p->dst);
	if (rc)
		return rc;
	rmig_sess_test_start_delay(p->dst, cfg->dst_start_delay_ms);
	if (cfg->src_hook)
		cfg->src_hook(p->src);
	if (cfg->dst_hook)
		cfg->dst_hook(p->dst);
	if (cfg->ops) {
		rmig_sess_set_transport(p->src, cfg->ops);
		rmig_sess_set_transport(p->dst, cfg->ops);
	}
	rc = rmig_add_ram(p->src, "ram", p->smem, cfg->len, cfg->page_size);
	if (!rc)
		rc = rmig_add_ram(p->dst, "ram", p->dmem, cfg->len, cfg->page_size);
	if (!rc && cfg->dst_uffd)
		rc = rmig_postcopy_uffd(p->dst, "ram");
	snprintf(uri, sizeof(uri), "tcp://%s:0", addr);
	if (!rc)
		rc = cfg->ctl_pair ? listen_pair(p, addr) : rmig_listen(p->dst, uri);
	for (unsigned int i = 0; !rc && i < 4 && p->cfg.rails[i]; i++)
		rc = rmig_listen_add(p->dst, p->cfg.rails[i]);
	if (rc)
		return rc;
	p->port = cfg->ctl_pair ? -1 : rmig_listen_port(p->dst);
	p->so = so;
	p->dopt = dopt;
	return accept_and_connect(p, addr);
}

int pair_resume(struct pair *p, const void *src_key, size_t src_key_len)
{
	const char *addr = p->cfg.addr ? p->cfg.addr : "127.0.0.1";
	struct rmig_opts so = p->so;
	rmig_session *s = NULL, *d = NULL;
	char uri[128];
	int rc;

	pair_join(p);
	if (src_key) {
		so.key = src_key;
		so.key_len = src_key_len;
	}
	rc = rmig_session_create(&so, &s);
	if (!rc)
		rc = rmig_session_create(&p->dopt, &d);
	if (rc) {
		rmig_session_destroy(s);
		return rc;
	}
	/* the old sessions are destroyed by the call, whatever it returns */
	rc = rmig_resume_from(d, p->dst);
	p->dst = d;
	if (!rc)
		rc = rmig_resume_from(s, p->src);
	else
		rmig_session_destroy(p->src);
	p->src = s;
	snprintf(uri, sizeof(uri), "tcp://%s:%d", addr, p->port);
	if (!rc)
		rc = p->cfg.ctl_pair ? listen_pair(p, addr) : rmig_listen(p->dst, uri);
	return rc ? rc : accept_and_connect(p, addr);
}

int pair_join(struct pair *p)
{
	if (p->th_started) {
		pthread_join(p->th, NULL);
		p->th_started = false;
	}
	return p->dst_rc;
}

void pair_close(struct pair *p)
{
	if (p->th_started) {
		rmig_cancel(p->dst, "test over");
		pair_join(p);
	}
	rmig_session_destroy(p->src);
	rmig_session_destroy(p->dst);
	guarded_free(p->smem, p->cfg.len);
	if (p->cfg.dst_huge && p->dmem)
		munmap(p->dmem, p->cfg.len);
	else
		guarded_free(p->dmem, p->cfg.len);
	p->src = p->dst = NULL;
	p->smem = p->dmem = NULL;
}

int test_send_ctl(int fd, uint16_t type, const void *payload, uint32_t len)
{
	uint8_t hdr[RMIG_CTL_HDR_LEN];

	rmig_ctl_hdr_encode(hdr, type, len);
	if (rmig_sock_write_full(fd, hdr, sizeof(hdr)))
		return -1;
	return len ? rmig_sock_write_full(fd, payload, len) : 0;
}

int test_recv_ctl(int fd, struct rmig_ctl_hdr *h, uint8_t *buf)
{
	uint8_t hdr[RMIG_CTL_HDR_LEN];

	if (rmig_sock_read_full(fd, hdr, sizeof(hdr)) || rmig_ctl_hdr_decode(hdr, h))
		return -1;
	return rmig_sock_read_full(fd, buf, h->len);
}

double test_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
