/* SPDX-License-Identifier: MIT */
/*
 * api.c - the entry points that assemble a session from its parts: the
 * session itself and the features it carries (the session names no
 * feature; this table does), and the one-call resume, which makes a new
 * session to carry on an old one.
 */
#include "sess.h"

/*
 * In registration order: a feature's init() may rely on those before it,
 * and their stop()/destroy() run in reverse.
 */
static const struct rmig_feature *const features[] = {
	&rmig_auth_feature, &rmig_live_feature, &rmig_resume_feature,
	&rmig_state_feature, &rmig_pc_feature,	&rmig_prep_feature, &rmig_failover_feature,
};

int rmig_session_create(const struct rmig_opts *o, rmig_session **s_p)
{
	return rmig_sess_new(o, features, sizeof(features) / sizeof(features[0]), s_p);
}

/* *@s_p: a new session made with its options (and its key), resumed from it */
static int resume_new(rmig_session **s_p, enum rmig_role role)
{
	rmig_session *old = s_p ? *s_p : NULL, *n = NULL;
	struct rmig_opts o;
	int rc;

	if (!old || old->opts.role != role)
		return -EINVAL;
	o = old->opts;
	o.key = old->key; /* the caller's key may be gone: the old session's copy */
	o.key_len = old->key_len;
	rc = rmig_session_create(&o, &n);
	if (rc)
		return rc;
	rc = rmig_resume_from(n, old);
	*s_p = n;
	return rc;
}

int rmig_resume(rmig_session **s_p, const char *uri)
{
	int rc = resume_new(s_p, RMIG_ROLE_SOURCE);

	return rc ? rc : rmig_connect(*s_p, uri);
}

int rmig_recover(rmig_session **s_p, const char *uri)
{
	int rc = resume_new(s_p, RMIG_ROLE_DEST);

	if (!rc)
		rc = rmig_listen(*s_p, uri);
	return rc ? rc : rmig_accept(*s_p);
}
