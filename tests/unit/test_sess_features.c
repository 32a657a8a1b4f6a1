/* SPDX-License-Identifier: MIT */
/*
 * test_sess_features.c - how a session carries its features (core/sess.h,
 * sess_ctl.c, session.c), with no connection: every control message type
 * has its handler from the session or one feature, and a message this role
 * does not take is refused by name; a type handled twice cannot be
 * registered; init runs in order, and a failed init fails the create, with
 * destroy for exactly the features whose init ran, in reverse; each feature
 * checks its own options, and a session without the feature does not.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sess.h"

static rmig_session *dest(void)
{
	struct rmig_opts o;
	rmig_session *s = NULL;

	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_DEST;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	return s;
}

static void test_every_message_has_a_handler(void **state)
{
	static const uint16_t dest_takes[] = { RMIG_MSG_PING, RMIG_MSG_ERROR, RMIG_MSG_COMPLETE,
					       RMIG_MSG_STATE_BEGIN, RMIG_MSG_PC_DISCARD,
					       RMIG_MSG_PC_RUN, RMIG_MSG_RAIL_DOWN };
	static const uint16_t source_takes[] = { RMIG_MSG_PING, RMIG_MSG_ERROR, RMIG_MSG_SYNC_ACK,
						 RMIG_MSG_COMPLETE_ACK, RMIG_MSG_PC_DISCARD,
						 RMIG_MSG_PC_RUN, RMIG_MSG_PAGE_REQ, RMIG_MSG_RAIL_DOWN };
	rmig_session *s = dest();

	(void)state;
	/* the session's own messages first, then its features, api.c's order */
	assert_string_equal(s->features[0]->name, "session");
	assert_int_equal(s->nfeatures, 8);
	assert_int_equal(s->features_inited, s->nfeatures);
	for (size_t i = 0; i < sizeof(dest_takes) / sizeof(dest_takes[0]); i++) {
		assert_non_null(s->ctl_handlers[dest_takes[i]]);
		assert_true(s->ctl_handlers[dest_takes[i]]->to & RMIG_CTL_TO_DEST);
	}
	for (size_t i = 0; i < sizeof(source_takes) / sizeof(source_takes[0]); i++) {
		assert_non_null(s->ctl_handlers[source_takes[i]]);
		assert_true(s->ctl_handlers[source_takes[i]]->to & RMIG_CTL_TO_SOURCE);
	}
	/* the handshake's messages are read in order, never dispatched */
	assert_null(s->ctl_handlers[RMIG_MSG_HELLO]);
	assert_null(s->ctl_handlers[RMIG_MSG_AUTH_PROOF]);
	/* the owner of device-state targets, and of COMPLETE's blob section */
	assert_string_equal(rmig_sess_tgt_owner(s, RMIG_TGT_STATE)->name, "device state");
	assert_null(rmig_sess_tgt_owner(s, RMIG_TGT_RAM));
	assert_string_equal(rmig_sess_blob_owner(s)->name, "device state");
	rmig_session_destroy(s);
}

/* A destination refuses what only a source takes, naming it; a bad PING too. */
static void test_wrong_role_refused(void **state)
{
	uint8_t ack[8] = { 0 };
	rmig_session *s = dest();

	(void)state;
	assert_int_equal(rmig_up_ctl(s, RMIG_MSG_SYNC_ACK, ack, sizeof(ack)), -EBADMSG);
	assert_string_equal(rmig_last_error(s), "control connection: unexpected SYNC_ACK message");
	rmig_session_destroy(s);
	s = dest();
	assert_int_equal(rmig_up_ctl(s, RMIG_MSG_PING, ack, 1), -EBADMSG);
	assert_string_equal(rmig_last_error(s), "control connection: PING with payload");
	rmig_session_destroy(s);
	s = dest();
	assert_int_equal(rmig_up_ctl(s, RMIG_MSG_TYPE_MAX + 7, NULL, 0), -EBADMSG);
	assert_non_null(strstr(rmig_last_error(s), "unexpected"));
	rmig_session_destroy(s);
	s = dest();
	assert_int_equal(rmig_up_ctl(s, RMIG_MSG_PING, NULL, 0), 0);
	assert_int_equal(rmig_error(s), 0);
	rmig_session_destroy(s);
}

static int noop(struct rmig_session *s, const uint8_t *buf, uint32_t len)
{
	(void)s, (void)buf, (void)len;
	return 0;
}

static void test_type_handled_twice(void **state)
{
	static const struct rmig_ctl_handler ping[] = { { RMIG_MSG_PING, RMIG_CTL_TO_DEST, noop } };
	static const struct rmig_ctl_handler out[] = { { RMIG_MSG_TYPE_MAX, RMIG_CTL_TO_DEST, noop } };
	static const struct rmig_feature again = { .name = "again", .ctl = ping, .nctl = 1 };
	static const struct rmig_feature past = { .name = "past", .ctl = out, .nctl = 1 };
	rmig_session *s = dest();
	const struct rmig_ctl_handler *was = s->ctl_handlers[RMIG_MSG_PING];
	unsigned int n = s->nfeatures;

	(void)state;
	assert_int_equal(rmig_sess_add_feature(s, &again), -EEXIST);
	assert_int_equal(rmig_sess_add_feature(s, &past), -EEXIST);
	assert_ptr_equal(s->ctl_handlers[RMIG_MSG_PING], was);
	assert_int_equal(s->nfeatures, n);
	rmig_session_destroy(s);
}

/* A log of the lifecycle calls of three features, a, b and c. */
static char calls[64];

static void note(const char *what)
{
	strncat(calls, what, sizeof(calls) - strlen(calls) - 1);
}

static int init_a(struct rmig_session *s) { (void)s; note("ia "); return 0; }
static int init_b(struct rmig_session *s) { (void)s; note("ib "); return -ENOTSUP; }
static int init_c(struct rmig_session *s) { (void)s; note("ic "); return 0; }
static void destroy_a(struct rmig_session *s) { (void)s; note("da "); }
static void destroy_b(struct rmig_session *s) { (void)s; note("db "); }
static void destroy_c(struct rmig_session *s) { (void)s; note("dc "); }
static int ok_b(struct rmig_session *s) { (void)s; note("ib "); return 0; }

static void test_lifecycle_order(void **state)
{
	const struct rmig_feature a = { .name = "a", .init = init_a, .destroy = destroy_a };
	const struct rmig_feature b = { .name = "b", .init = init_b, .destroy = destroy_b };
	const struct rmig_feature b_ok = { .name = "b", .init = ok_b, .destroy = destroy_b };
	const struct rmig_feature c = { .name = "c", .init = init_c, .destroy = destroy_c };
	const struct rmig_feature *const failing[] = { &a, &b, &c };
	const struct rmig_feature *const fine[] = { &a, &b_ok, &c };
	struct rmig_opts o;
	rmig_session *s = NULL;

	(void)state;
	rmig_opts_init(&o, sizeof(o));
	o.role = RMIG_ROLE_SOURCE;
	calls[0] = '\0';
	/* b's init fails: c's never runs, a is undone, b is not */
	assert_int_equal(rmig_sess_new(&o, failing, 3, &s), -ENOTSUP);
	assert_string_equal(calls, "ia ib da ");
	calls[0] = '\0';
	assert_int_equal(rmig_sess_new(&o, fine, 3, &s), 0);
	assert_string_equal(calls, "ia ib ic ");
	rmig_session_destroy(s);
	assert_string_equal(calls, "ia ib ic dc db da ");
}

/* The last error logged by a session being created. */
static char logged[512];

static void log_to(void *arg, enum rmig_log_level level, const char *msg)
{
	(void)arg;
	if (level == RMIG_LOG_ERROR)
		snprintf(logged, sizeof(logged), "%s", msg);
}

static void opts_base(struct rmig_opts *o, enum rmig_role role)
{
	rmig_opts_init(o, sizeof(*o));
	o->role = role;
	o->log_fn = log_to;
}

/* rmig_session_create() with @o: -EINVAL, and the log names @what. */
static void refused(const struct rmig_opts *o, const char *what)
{
	rmig_session *s = NULL;

	logged[0] = '\0';
	assert_int_equal(rmig_session_create(o, &s), -EINVAL);
	assert_null(s);
	if (!strstr(logged, what))
		fail_msg("expected '%s' in '%s'", what, logged);
}

static void test_features_check_their_options(void **state)
{
	static const uint8_t key[32] = { 1 };
	static const struct rmig_feature none = { .name = "none" };
	const struct rmig_feature *const bare[] = { &none };
	struct rmig_opts o;
	rmig_session *s = NULL;

	(void)state;
	/* live */
	opts_base(&o, RMIG_ROLE_SOURCE);
	o.downtime_limit_ms = 0;
	refused(&o, "option downtime_limit_ms: 0 is not in 1..3600000");
	opts_base(&o, RMIG_ROLE_SOURCE);
	o.max_bandwidth = 100;
	refused(&o, "option max_bandwidth: 100 bytes/s is below 4096");
	/* the key and TLS */
	opts_base(&o, RMIG_ROLE_DEST);
	o.key = key;
	o.key_len = 4;
	refused(&o, "option key: 4 bytes");
	opts_base(&o, RMIG_ROLE_DEST);
	o.flags = RMIG_F_TLS;
	refused(&o, "TLS needs a key");
	opts_base(&o, RMIG_ROLE_SOURCE);
	o.flags = RMIG_F_TLS;
	o.key = key;
	o.key_len = sizeof(key);
	o.transport = RMIG_TRANSPORT_RDMA;
	refused(&o, "rdma with TLS");
	/* postcopy */
	opts_base(&o, RMIG_ROLE_SOURCE);
	o.flags = RMIG_F_NO_URGENT;
	refused(&o, "RMIG_F_NO_URGENT without RMIG_F_POSTCOPY");
	opts_base(&o, RMIG_ROLE_SOURCE);
	o.flags = RMIG_F_POSTCOPY;
	o.channels = RMIG_CHANNELS_MAX;
	refused(&o, "leaves no room for the urgent channel");
	/* the control: each of those options fixed is accepted */
	o.channels = RMIG_CHANNELS_MAX - 1;
	assert_int_equal(rmig_session_create(&o, &s), 0);
	rmig_session_destroy(s);
	/* the options are the features': a session without them takes them unchecked */
	opts_base(&o, RMIG_ROLE_SOURCE);
	o.downtime_limit_ms = 0;
	o.flags = RMIG_F_NO_URGENT;
	assert_int_equal(rmig_sess_new(&o, bare, 1, &s), 0);
	rmig_session_destroy(s);
	/* ...but not the session's own */
	o.channels = 0;
	assert_int_equal(rmig_sess_new(&o, bare, 1, &s), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_message_has_a_handler),
		cmocka_unit_test(test_wrong_role_refused),
		cmocka_unit_test(test_type_handled_twice),
		cmocka_unit_test(test_lifecycle_order),
		cmocka_unit_test(test_features_check_their_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
