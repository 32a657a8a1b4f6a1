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

/* qom-get @path @prop: the value (new ref). */
static int qom_get(struct qmp *q, const char *path, const char *prop, json_t **v_p, char *err,
		   size_t errlen)
{
	return qmp_exec(q, "qom-get", json_pack("{s:s, s:s}", "path", path, "property", prop), v_p,
			err, errlen);
}

/* The concrete memory backend types (qom-list-types), or NULL if QEMU cannot say. */
static int backend_types(struct qmp *q, json_t **types_p, char *err, size_t errlen)
{
	json_t *ret;
	int r = qmp_exec(q, "qom-list-types",
			 json_pack("{s:s, s:b}", "implements", "memory-backend", "abstract", 0),
			 &ret, err, errlen);

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

static int backend_props(struct qmp *q, struct qmp_backend *b, char *err, size_t errlen)
{
	char path[sizeof(b->id) + 16];
	json_t *v;
	int r;

	snprintf(path, sizeof(path), "/objects/%s", b->id);
	r = qom_get(q, path, "size", &v, err, errlen);
	if (r)
		return r;
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		json_decref(v);
		seterr(err, errlen, "QMP: memory backend %s: size is not a size", b->id);
		return -EBADMSG;
	}
	b->size = (uint64_t)json_integer_value(v);
	json_decref(v);
	r = qom_get(q, path, "share", &v, err, errlen);
	if (r)
		return r;
	if (!json_is_boolean(v)) {
		json_decref(v);
		seterr(err, errlen, "QMP: memory backend %s: share is not a boolean", b->id);
		return -EBADMSG;
	}
	b->share = json_is_true(v);
	json_decref(v);
	if (strcmp(b->type, "memory-backend-file"))
		return 0;
	r = qom_get(q, path, "mem-path", &v, err, errlen);
	if (r)
		return r;
	if (!json_is_string(v) || !json_string_length(v)) {
		json_decref(v);
		seterr(err, errlen, "QMP: memory backend %s: mem-path is not a path", b->id);
		return -EBADMSG;
	}
	if (json_string_length(v) >= sizeof(b->mem_path)) {
		seterr(err, errlen, "QMP: memory backend %s: mem-path too long (%zu bytes)", b->id,
		       json_string_length(v));
		json_decref(v);
		return -ENAMETOOLONG;
	}
	memcpy(b->mem_path, json_string_value(v), json_string_length(v) + 1);
	json_decref(v);
	return 0;
}

int qmp_backends(struct qmp *q, struct qmp_backend *out, unsigned int max, unsigned int *n_p,
		 char *err, size_t errlen)
{
	json_t *types, *objs, *o;
	unsigned int n = 0;
	char t[QMP_SHOW];
	size_t i;
	int r;

	*n_p = 0;
	r = backend_types(q, &types, err, errlen);
	if (r)
		return r;
	r = qmp_exec(q, "qom-list", json_pack("{s:s}", "path", "/objects"), &objs, err, errlen);
	if (r) {
		json_decref(types);
		return r;
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
		r = backend_props(q, b, err, errlen);
		if (r)
			goto out;
		n++;
	}
	*n_p = n;
	r = 0;
out:
	json_decref(objs);
	json_decref(types);
	return r;
}
