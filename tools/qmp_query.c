/* SPDX-License-Identifier: MIT */
/* qmp_query.c - query-migrate and the memory backends, on the QMP client (see qmp.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qmp.h"
#include "qmp_int.h"

#define QMP_POLL_MS    1                 /* qmp_wait_status: between two query-migrate */

/* query-migrate: its status ("none" if absent) and error-desc ("" if absent). */
static int migrate_query(struct qmp *q, char *status, size_t len, char *desc, size_t desclen,
			 char *err, size_t errlen)
{
	const char *st = "none", *d;
	json_t *ret, *v;
	size_t i, n;
	int r = qmp_exec(q, "query-migrate", NULL, &ret, err, errlen);

	if (r)
		return r;
	if (!json_is_object(ret)) {
		json_decref(ret);
		seterr(err, errlen, "QMP reply to query-migrate: not an object");
		return fail(q, -EBADMSG, err);
	}
	v = json_object_get(ret, "status");
	if (v) {
		st = json_string_value(v);
		n = st ? strlen(st) : 0;
		for (i = 0; i < n && (islower((unsigned char)st[i]) || st[i] == '-'); i++)
			;
		if (!n || i < n || n >= 64) {
			json_decref(ret);
			seterr(err, errlen, "QMP reply to query-migrate: malformed status");
			return fail(q, -EBADMSG, err);
		}
	}
	if (strlen(st) >= len) {
		seterr(err, errlen, "QMP query-migrate: status \"%s\" too long for its buffer", st);
		json_decref(ret);
		return -ERANGE;
	}
	snprintf(status, len, "%s", st);
	if (desc && desclen) {
		d = json_string_value(json_object_get(ret, "error-desc"));
		show(d ? d : "", d ? strlen(d) : 0, desc, desclen);
	}
	json_decref(ret);
	return 0;
}

int qmp_migrate_status(struct qmp *q, char *status, size_t len, char *err, size_t errlen)
{
	return migrate_query(q, status, len, NULL, 0, err, errlen);
}

/* Is @s one of the |-separated @list? */
static int in_list(const char *list, const char *s)
{
	size_t n = strlen(s);

	while (list) {
		const char *bar = strchr(list, '|');
		size_t l = bar ? (size_t)(bar - list) : strlen(list);

		if (l == n && !memcmp(list, s, n))
			return 1;
		list = bar ? bar + 1 : NULL;
	}
	return 0;
}

int qmp_wait_status(struct qmp *q, const char *want, unsigned int timeout_ms, char *status,
		    size_t len, char *err, size_t errlen)
{
	char st[64], desc[QMP_SHOW * 2], t[QMP_SHOW];
	struct qmp_wait w;
	int r;

	if (status && len)
		status[0] = '\0';
	if (!want || !*want) {
		seterr(err, errlen, "QMP: no migration status to wait for");
		return -EINVAL;
	}
	wait_init(&w, timeout_ms);
	for (;;) {
		r = migrate_query(q, st, sizeof(st), desc, sizeof(desc), err, errlen);
		if (r)
			return r;
		if (status && len)
			snprintf(status, len, "%s", st);
		if (in_list(want, st))
			return 0;
		if (!strcmp(st, "failed")) {
			if (desc[0])
				seterr(err, errlen, "migration failed: %s", desc);
			else
				seterr(err, errlen, "migration failed (QEMU gave no reason)");
			return -EIO;
		}
		if (!strcmp(st, "cancelled")) {
			seterr(err, errlen, "migration cancelled");
			return -EIO;
		}
		if (now_ms() >= w.deadline) {
			seterr(err, errlen,
			       "migration status still \"%s\" after %u ms (waiting for %s)", st,
			       timeout_ms, shows(want, t, sizeof(t)));
			return -ETIMEDOUT;
		}
		{
			int ms = left_ms(&w) < QMP_POLL_MS ? left_ms(&w) : QMP_POLL_MS;
			struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000};

			while (nanosleep(&ts, &ts) && errno == EINTR)
				;
		}
	}
}

/*
 * The concrete memory backend types (qom-list-types' reply @ret, result @r),
 * or NULL in *types_p if QEMU cannot say.
 */
static int backend_types(struct qmp *q, json_t *ret, int r, json_t **types_p, char *err,
			 size_t errlen)
{
	*types_p = NULL;
	if (r == -EREMOTEIO)
		return 0; /* fall back to the "memory-backend-" prefix */
	if (r)
		return r;
	if (!json_is_array(ret)) {
		json_decref(ret);
		seterr(err, errlen, "QMP reply to qom-list-types: not an array");
		return fail(q, -EBADMSG, err);
	}
	*types_p = ret;
	return 0;
}

static int is_backend(json_t *types, const char *type)
{
	size_t i;
	json_t *t;

	if (!types)
		return !strncmp(type, "memory-backend-", 15);
	json_array_foreach (types, i, t) {
		const char *name = json_string_value(json_object_get(t, "name"));

		if (name && !strcmp(name, type))
			return 1;
	}
	return 0;
}

/* The qom-gets of one backend, in the order backend_props() checks them. */
static const char *const props[] = { "size", "share", "mem-path" };

static unsigned int nprops(const struct qmp_backend *b)
{
	return strcmp(b->type, "memory-backend-file") ? 2 : 3;
}

/* Check and keep the values of @b's props (v[i] for props[i]). */
static int backend_props(struct qmp_backend *b, json_t *const *v, char *err, size_t errlen)
{
	if (!json_is_integer(v[0]) || json_integer_value(v[0]) < 0) {
		seterr(err, errlen, "QMP: memory backend %s: size is not a size", b->id);
		return -EBADMSG;
	}
	b->size = (uint64_t)json_integer_value(v[0]);
	if (!json_is_boolean(v[1])) {
		seterr(err, errlen, "QMP: memory backend %s: share is not a boolean", b->id);
		return -EBADMSG;
	}
	b->share = json_is_true(v[1]);
	if (nprops(b) < 3)
		return 0;
	if (!json_is_string(v[2]) || !json_string_length(v[2])) {
		seterr(err, errlen, "QMP: memory backend %s: mem-path is not a path", b->id);
		return -EBADMSG;
	}
	if (json_string_length(v[2]) >= sizeof(b->mem_path)) {
		seterr(err, errlen, "QMP: memory backend %s: mem-path too long (%zu bytes)", b->id,
		       json_string_length(v[2]));
		return -ENAMETOOLONG;
	}
	memcpy(b->mem_path, json_string_value(v[2]), json_string_length(v[2]) + 1);
	return 0;
}

/*
 * Every backend's properties in one batch of qom-gets (one round trip: under
 * TCG each costs tens of milliseconds).
 */
static int backends_props(struct qmp *q, struct qmp_backend *out, unsigned int n, char *err,
			  size_t errlen)
{
	unsigned int total = 0, k = 0;
	const char **cmds;
	json_t **args, **rets;
	int *rcs, r = -ENOMEM;

	for (unsigned int i = 0; i < n; i++)
		total += nprops(&out[i]);
	if (!total)
		return 0;
	cmds = calloc(total, sizeof(*cmds));
	args = calloc(total, sizeof(*args));
	rets = calloc(total, sizeof(*rets));
	rcs = calloc(total, sizeof(*rcs));
	if (!cmds || !args || !rets || !rcs) {
		seterr(err, errlen, "QMP: out of memory");
		goto out;
	}
	for (unsigned int i = 0; i < n; i++) {
		char path[sizeof(out[i].id) + 16];

		snprintf(path, sizeof(path), "/objects/%s", out[i].id);
		for (unsigned int p = 0; p < nprops(&out[i]); p++, k++) {
			cmds[k] = "qom-get";
			args[k] = json_pack("{s:s, s:s}", "path", path, "property", props[p]);
		}
	}
	r = qmp_exec_n(q, total, cmds, args, rets, rcs, err, errlen);
	for (unsigned int i = 0, at = 0; !r && i < n; at += nprops(&out[i]), i++)
		r = backend_props(&out[i], rets + at, err, errlen);
out:
	for (unsigned int i = 0; rets && i < total; i++)
		json_decref(rets[i]);
	for (unsigned int i = 0; args && i < total; i++)
		json_decref(args[i]);
	free(cmds);
	free(args);
	free(rets);
	free(rcs);
	return r;
}

int qmp_backends(struct qmp *q, struct qmp_backend *out, unsigned int max, unsigned int *n_p,
		 char *err, size_t errlen)
{
	json_t *types = NULL, *objs, *o;
	unsigned int n = 0;
	char t[QMP_SHOW];
	size_t i;
	int r;

	*n_p = 0;
	{ /* the types and the objects: one round trip */
		const char *const cmds[] = { "qom-list-types", "qom-list" };
		json_t *args[] = { json_pack("{s:s, s:b}", "implements", "memory-backend", "abstract",
					     0),
				   json_pack("{s:s}", "path", "/objects") };
		json_t *rets[2];
		int rcs[2];

		r = qmp_exec_n(q, 2, cmds, args, rets, rcs, err, errlen);
		objs = rets[1];
		if (!r || r == -EREMOTEIO)
			r = backend_types(q, rets[0], rcs[0], &types, err, errlen);
		else
			json_decref(rets[0]);
		if (!r && rcs[1] && rcs[0]) /* both refused: qom-list's own words */
			r = qmp_exec(q, "qom-list", json_pack("{s:s}", "path", "/objects"), NULL,
				     err, errlen);
		else if (!r && rcs[1])
			r = rcs[1];
		if (r) {
			json_decref(types);
			json_decref(objs);
			return r;
		}
	}
	if (!json_is_array(objs)) {
		seterr(err, errlen, "QMP reply to qom-list /objects: not an array");
		r = fail(q, -EBADMSG, err);
		goto out;
	}
	json_array_foreach (objs, i, o) {
		const char *name = json_string_value(json_object_get(o, "name"));
		const char *type = json_string_value(json_object_get(o, "type"));
		size_t tl = type ? strlen(type) : 0, nl, k;
		struct qmp_backend *b;

		if (!name || !type) {
			seterr(err, errlen, "QMP reply to qom-list /objects: an entry without a "
					    "name and a type");
			r = fail(q, -EBADMSG, err);
			goto out;
		}
		if (tl < 8 || strncmp(type, "child<", 6) || type[tl - 1] != '>')
			continue; /* a property, not an object */
		nl = strlen(name);
		if (tl - 7 >= sizeof(out->type))
			continue; /* no memory backend type is that long */
		{
			char tn[sizeof(out->type)];

			memcpy(tn, type + 6, tl - 7);
			tn[tl - 7] = '\0';
			if (!is_backend(types, tn))
				continue;
			if (n == max) {
				seterr(err, errlen, "QMP: more than %u memory backends", max);
				r = -E2BIG;
				goto out;
			}
			for (k = 0; k < nl && name[k] > 0x20 && name[k] < 0x7f; k++)
				if (name[k] == '/')
					break;
			if (!nl || k < nl || nl >= sizeof(out->id)) {
				seterr(err, errlen, "QMP: memory backend id %s %s",
				       show(name, nl, t, 80),
				       nl >= sizeof(out->id) ? "too long" : "malformed");
				r = nl >= sizeof(out->id) ? -ENAMETOOLONG : -EBADMSG;
				goto out;
			}
			b = &out[n];
			memset(b, 0, sizeof(*b));
			memcpy(b->id, name, nl + 1);
			memcpy(b->type, tn, tl - 6);
		}
		n++;
	}
	r = backends_props(q, out, n, err, errlen);
	if (r)
		goto out;
	*n_p = n;
out:
	json_decref(objs);
	json_decref(types);
	return r;
}
