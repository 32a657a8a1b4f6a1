/* SPDX-License-Identifier: MIT */
/*
 * test_qmp_query.c - the queries vm-send and vm-recv build on the QMP client
 * (tools/qmp_query.c): migration status waits against a fake monitor
 * (qmp_srv.c), memory backends as a fake QOM tree shows them, and against a
 * real qemu-system-x86_64 when there is one: its memory backends as QOM
 * shows them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "qmp.h"
#include "qmp_srv.h"

static char err[512];

static void srv_migrate(struct srv *s)
{
	const char *const *r = s->arg;
	json_int_t id;
	unsigned int i = 0;

	srv_greet(s);
	while ((id = srv_expect(s, "query-migrate", NULL)) >= 0) {
		srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", r[i], (long long)id);
		if (r[i + 1])
			i++;
	}
}

static void test_wait_status(void **state)
{
	static const char *const ok[] = {
		"{}",
		"{\"status\": \"setup\"}",
		"{\"status\": \"active\", \"ram\": {\"transferred\": 1}}",
		"{\"status\": \"pre-switchover\"}",
		NULL,
	};
	static const char *const failed[] = {
		"{\"status\": \"active\"}",
		"{\"status\": \"failed\", \"error-desc\": \"Unable to write to socket: "
		"Broken pipe\\n\\u0007\"}",
		NULL,
	};
	static const char *const failed_nodesc[] = {"{\"status\": \"failed\"}", NULL};
	static const char *const cancelled[] = {"{\"status\": \"cancelled\"}", NULL};
	static const char *const stuck[] = {"{\"status\": \"active\"}", NULL};
	struct srv s;
	struct qmp *q;
	char st[32], tiny[4];
	int64_t t0;

	(void)state;
	q = srv_open(&s, srv_migrate, ok, 2000);
	assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)), 0);
	assert_string_equal(st, "none");
	assert_int_equal(qmp_migrate_status(q, tiny, sizeof(tiny), err, sizeof(err)), -ERANGE);
	assert_int_equal(
		qmp_wait_status(q, "pre-switchover|completed", 2000, st, sizeof(st), err, sizeof(err)),
		0);
	assert_string_equal(st, "pre-switchover");
	assert_int_equal(qmp_wait_status(q, "completed|pre-switchover", 0, st, sizeof(st), err,
					 sizeof(err)),
			 0);
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, failed, 2000);
	assert_int_equal(qmp_wait_status(q, "completed", 2000, st, sizeof(st), err, sizeof(err)),
			 -EIO);
	assert_string_equal(st, "failed");
	assert_string_equal(err,
			    "migration failed: Unable to write to socket: Broken pipe\\x0a\\x07");
	/* asked for, failed is not an error */
	assert_int_equal(qmp_wait_status(q, "completed|failed", 100, st, sizeof(st), err,
					 sizeof(err)),
			 0);
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, failed_nodesc, 2000);
	assert_int_equal(qmp_wait_status(q, "completed", 2000, NULL, 0, err, sizeof(err)), -EIO);
	assert_string_equal(err, "migration failed (QEMU gave no reason)");
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, cancelled, 2000);
	assert_int_equal(qmp_wait_status(q, "completed", 2000, st, sizeof(st), err, sizeof(err)),
			 -EIO);
	assert_string_equal(err, "migration cancelled");
	srv_end(&s, q);

	q = srv_open(&s, srv_migrate, stuck, 2000);
	t0 = srv_now_ms();
	assert_int_equal(qmp_wait_status(q, "complete", 200, st, sizeof(st), err, sizeof(err)),
			 -ETIMEDOUT);
	assert_true(srv_now_ms() - t0 >= 200 && srv_now_ms() - t0 < 200 + srv_slack_ms());
	assert_string_equal(err, "migration status still \"active\" after 200 ms (waiting for "
				 "complete)");
	/* still usable */
	assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)), 0);
	assert_string_equal(st, "active");
	srv_end(&s, q);
}

/*
 * A fake QEMU for qmp_backends: qom-list-types, qom-list /objects and
 * qom-get answered from a table, as QEMU 7.2 answers them.
 */
struct fake_qom {
	const char *types;   /* qom-list-types' return, or NULL: CommandNotFound */
	const char *objects; /* qom-list /objects' return */
	const char *props;   /* {"/objects/m0": {"size": ..., ...}, ...} */
};

static void srv_qom(struct srv *s)
{
	const struct fake_qom *f = s->arg;
	json_t *c, *props = json_loads(f->props, 0, NULL);

	srv_greet(s);
	while ((c = srv_cmd(s))) {
		const char *ex = json_string_value(json_object_get(c, "execute"));
		json_t *a = json_object_get(c, "arguments");
		long long id = json_integer_value(json_object_get(c, "id"));

		if (!strcmp(ex, "qom-list-types") && f->types) {
			srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", f->types, id);
		} else if (!strcmp(ex, "qom-list") &&
			   !strcmp(json_string_value(json_object_get(a, "path")), "/objects")) {
			srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", f->objects, id);
		} else if (!strcmp(ex, "qom-get")) {
			const char *path = json_string_value(json_object_get(a, "path"));
			const char *prop = json_string_value(json_object_get(a, "property"));
			json_t *o = json_object_get(props, path), *v = json_object_get(o, prop);
			char *d = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;

			if (!o)
				srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"DeviceNotFound\", "
					      "\"desc\": \"Device '%s' not found\"}}\r\n",
					   id, path);
			else if (!v)
				srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"GenericError\", "
					      "\"desc\": \"Property '%s' not found\"}}\r\n",
					   id, prop);
			else
				srv_printf(s, "{\"return\": %s, \"id\": %lld}\r\n", d, id);
			free(d);
		} else {
			srv_printf(s, "{\"id\": %lld, \"error\": {\"class\": \"CommandNotFound\", "
				      "\"desc\": \"The command %s has not been found\"}}\r\n",
				   id, ex);
		}
		json_decref(c);
	}
	json_decref(props);
}

static const char qom_types[] =
	"[{\"name\": \"memory-backend-ram\", \"parent\": \"memory-backend\"}, "
	"{\"name\": \"memory-backend-file\", \"parent\": \"memory-backend\"}, "
	"{\"name\": \"memory-backend-memfd\", \"parent\": \"memory-backend\"}]";
static const char qom_objects[] =
	"[{\"name\": \"type\", \"type\": \"string\"}, "
	"{\"name\": \"m1\", \"type\": \"child<memory-backend-ram>\"}, "
	"{\"name\": \"tc\", \"type\": \"child<thread-context>\"}, "
	"{\"name\": \"m2\", \"type\": \"child<memory-backend-memfd>\"}, "
	"{\"name\": \"m0\", \"type\": \"child<memory-backend-file>\"}]";
static const char qom_props[] =
	"{\"/objects/m0\": {\"type\": \"memory-backend-file\", \"size\": 67108864, \"share\": true,"
	" \"mem-path\": \"/dev/shm/vm.img\"},"
	" \"/objects/m1\": {\"type\": \"memory-backend-ram\", \"size\": 16777216, \"share\": false},"
	" \"/objects/m2\": {\"type\": \"memory-backend-memfd\", \"size\": 8388608, \"share\": true}}";

static void test_backends_fake(void **state)
{
	static const struct fake_qom f = {qom_types, qom_objects, qom_props};
	static const struct fake_qom nolisttypes = {NULL, qom_objects, qom_props};
	static const struct fake_qom badsize = {
		qom_types, "[{\"name\": \"m1\", \"type\": \"child<memory-backend-ram>\"}]",
		"{\"/objects/m1\": {\"size\": -1, \"share\": false}}"};
	static const struct fake_qom badid = {
		qom_types, "[{\"name\": \"../m1\", \"type\": \"child<memory-backend-ram>\"}]", "{}"};
	const struct fake_qom *ok[] = {&f, &nolisttypes};
	struct qmp_backend b[4];
	unsigned int n, i;
	struct srv s;
	struct qmp *q;

	(void)state;
	for (i = 0; i < 2; i++) {
		q = srv_open(&s, srv_qom, ok[i], 2000);
		assert_int_equal(qmp_backends(q, b, 4, &n, err, sizeof(err)), 0);
		assert_int_equal(n, 3);
		assert_string_equal(b[0].id, "m1");
		assert_string_equal(b[0].type, "memory-backend-ram");
		assert_string_equal(b[0].mem_path, "");
		assert_false(b[0].share);
		assert_int_equal(b[0].size, 16 << 20);
		assert_string_equal(b[1].id, "m2");
		assert_string_equal(b[1].type, "memory-backend-memfd");
		assert_true(b[1].share);
		assert_string_equal(b[2].id, "m0");
		assert_string_equal(b[2].type, "memory-backend-file");
		assert_string_equal(b[2].mem_path, "/dev/shm/vm.img");
		assert_true(b[2].share);
		assert_int_equal(b[2].size, 64 << 20);
		assert_int_equal(qmp_backends(q, b, 2, &n, err, sizeof(err)), -E2BIG);
		assert_string_equal(err, "QMP: more than 2 memory backends");
		srv_end(&s, q);
	}
	q = srv_open(&s, srv_qom, &badsize, 2000);
	assert_int_equal(qmp_backends(q, b, 4, &n, err, sizeof(err)), -EBADMSG);
	assert_int_equal(n, 0);
	srv_end(&s, q);
	q = srv_open(&s, srv_qom, &badid, 2000);
	assert_int_equal(qmp_backends(q, b, 4, &n, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "QMP: memory backend id ../m1 malformed");
	srv_end(&s, q);
}

/* ------------------------------------------------------------------------ */
/* A real QEMU */

static int find_qemu(char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096], *save = NULL, *d;

	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
	for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(out, len, "%s/qemu-system-x86_64", d);
		if (!access(out, X_OK))
			return 0;
	}
	return -1;
}

/* The QEMU and its files, removed by qemu_teardown even when a check fails. */
static pid_t qemu_pid = -1;
static char qemu_dir[] = "/tmp/rmig-qmp-XXXXXX", sock[128], img[128];

static int qemu_teardown(void **state)
{
	int status;

	(void)state;
	if (qemu_pid > 0) {
		kill(qemu_pid, SIGKILL);
		waitpid(qemu_pid, &status, 0);
		qemu_pid = -1;
	}
	if (img[0])
		unlink(img);
	if (sock[0])
		unlink(sock);
	rmdir(qemu_dir);
	return 0;
}

static void test_real_qemu(void **state)
{
	char qemu[PATH_MAX], qmparg[160], m0[256];
	struct qmp_backend b[8];
	unsigned int n, i, seen = 0;
	struct qmp *q = NULL;
	int64_t t0;
	pid_t pid;
	char st[32];
	json_t *ret;
	int p[2], r, status;

	(void)state;
	if (find_qemu(qemu, sizeof(qemu))) {
		print_message("qemu-system-x86_64 not found: skipping the real QEMU test\n");
		skip();
	}
	assert_non_null(mkdtemp(qemu_dir));
	snprintf(sock, sizeof(sock), "%s/q.sock", qemu_dir);
	snprintf(qmparg, sizeof(qmparg), "unix:%s,server=on,wait=off", sock);
	snprintf(img, sizeof(img), "/dev/shm/rmig-qmp-test-%d.img", (int)getpid());
	snprintf(m0, sizeof(m0), "memory-backend-file,id=m0,size=64M,mem-path=%s,share=on", img);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* gone with the test */

		dup2(nul, 0);
		dup2(nul, 1);
		execl(qemu, qemu, "-machine", "none", "-nodefaults", "-display", "none", "-qmp",
		      qmparg, "-object", m0, "-object", "memory-backend-ram,id=m1,size=16M",
		      (char *)NULL);
		_exit(127);
	}
	qemu_pid = pid;
	t0 = srv_now_ms();
	for (;;) {
		r = qmp_open(sock, 5000, &q, err, sizeof(err));
		if (!r || (r != -ENOENT && r != -ECONNREFUSED) || srv_now_ms() - t0 > 10000)
			break;
		srv_sleep_ms(20);
	}
	if (r)
		print_message("qmp_open: %s\n", err);
	assert_int_equal(r, 0);
	assert_int_equal(qmp_peer_pid(q), pid);

	r = qmp_backends(q, b, 8, &n, err, sizeof(err));
	if (r)
		print_message("qmp_backends: %s\n", err);
	assert_int_equal(r, 0);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++) {
		if (!strcmp(b[i].id, "m0")) {
			assert_string_equal(b[i].type, "memory-backend-file");
			assert_string_equal(b[i].mem_path, img);
			assert_true(b[i].share);
			assert_int_equal(b[i].size, 64 << 20);
			seen |= 1;
		} else {
			assert_string_equal(b[i].id, "m1");
			assert_string_equal(b[i].type, "memory-backend-ram");
			assert_string_equal(b[i].mem_path, "");
			assert_false(b[i].share);
			assert_int_equal(b[i].size, 16 << 20);
			seen |= 2;
		}
	}
	assert_int_equal(seen, 3);

	assert_int_equal(qmp_migrate_status(q, st, sizeof(st), err, sizeof(err)), 0);
	assert_string_equal(st, "none");
	assert_int_equal(qmp_exec(q, "qom-get",
				  json_pack("{s:s, s:s}", "path", "/objects/m1", "property",
					    "mem-path"),
				  NULL, err, sizeof(err)),
			 -EREMOTEIO);
	assert_string_equal(err,
			    "GenericError: Property 'memory-backend-ram.mem-path' not found");
	assert_int_equal(qmp_exec(q, "no-such-command", NULL, NULL, err, sizeof(err)),
			 -EREMOTEIO);
	assert_string_equal(err, "CommandNotFound: The command no-such-command has not been found");
	assert_int_equal(pipe(p), 0);
	assert_int_equal(qmp_getfd(q, "migfd", p[1], err, sizeof(err)), 0);
	assert_int_equal(qmp_exec(q, "closefd", json_pack("{s:s}", "fdname", "migfd"), NULL, err,
				  sizeof(err)),
			 0);
	close(p[0]);
	close(p[1]);
	assert_int_equal(qmp_exec(q, "quit", NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(qmp_wait_event(q, "SHUTDOWN", 5000, &ret, err, sizeof(err)), 0);
	json_decref(ret);
	qmp_close(q);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	qemu_pid = -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wait_status),
		cmocka_unit_test(test_backends_fake),
		cmocka_unit_test_teardown(test_real_qemu, qemu_teardown),
	};

	/* SIGPIPE stays fatal: the client must never raise it */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
