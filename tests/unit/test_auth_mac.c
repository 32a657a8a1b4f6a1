/* SPDX-License-Identifier: MIT */
/*
 * test_auth_mac.c - the key proof's arithmetic (core/auth.c), without a
 * connection: known answers (computed apart from this code, with Python's
 * hmac and hashlib) for the HELLO hash and both roles' MACs, which protocol
 * v1 fixes; a MAC changes with every input; the comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"

static const uint8_t key[] = "0123456789abcdef";

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

static void mac(enum rmig_auth_role role, const uint8_t *hh, const uint8_t *nd, const uint8_t *ns,
		uint8_t *out)
{
	assert_int_equal(rmig_auth_mac(key, sizeof(key) - 1, role, hh, nd, ns, out), 0);
}

static void test_known_answers(void **state)
{
	uint8_t hh[RMIG_HELLO_HASH_LEN], nd[RMIG_AUTH_NONCE_LEN], ns[RMIG_AUTH_NONCE_LEN];
	uint8_t out[RMIG_AUTH_MAC_LEN];
	char text[2 * RMIG_AUTH_MAC_LEN + 1];

	(void)state;
	rmig_auth_hello_hash((const uint8_t *)"rmig hello", 10, hh);
	hex(hh, sizeof(hh), text);
	assert_string_equal(text,
			    "3928339ecf0063f80367875703f89e9178804bbe2d48f5012167dc40eabac437");
	memset(hh, 0x11, sizeof(hh));
	memset(nd, 0x22, sizeof(nd));
	memset(ns, 0x33, sizeof(ns));
	mac(RMIG_AUTH_SOURCE, hh, nd, ns, out);
	hex(out, sizeof(out), text);
	assert_string_equal(text,
			    "0470eec8531684e5b2bbf29f20808bcaf01731ff58d3d22e9ce59f22e76d0c75");
	mac(RMIG_AUTH_DEST, hh, nd, ns, out);
	hex(out, sizeof(out), text);
	assert_string_equal(text,
			    "aaca3a4a8c3b4f8e13304bd0aa3a66ae8581da929d9eef272a4b512191b53bea");
}

/* Every input counts: the role, the HELLO, each nonce, the key. */
static void test_every_input_counts(void **state)
{
	uint8_t hh[RMIG_HELLO_HASH_LEN] = { 1 }, nd[RMIG_AUTH_NONCE_LEN] = { 2 },
		ns[RMIG_AUTH_NONCE_LEN] = { 3 };
	uint8_t base[RMIG_AUTH_MAC_LEN], other[RMIG_AUTH_MAC_LEN];

	(void)state;
	mac(RMIG_AUTH_SOURCE, hh, nd, ns, base);
	mac(RMIG_AUTH_SOURCE, hh, nd, ns, other);
	assert_true(rmig_auth_mac_equal(base, other));
	mac(RMIG_AUTH_DEST, hh, nd, ns, other);
	assert_false(rmig_auth_mac_equal(base, other));
	hh[31] ^= 1;
	mac(RMIG_AUTH_SOURCE, hh, nd, ns, other);
	assert_false(rmig_auth_mac_equal(base, other));
	hh[31] ^= 1;
	nd[0] ^= 0x80;
	mac(RMIG_AUTH_SOURCE, hh, nd, ns, other);
	assert_false(rmig_auth_mac_equal(base, other));
	nd[0] ^= 0x80;
	ns[31] ^= 0x01;
	mac(RMIG_AUTH_SOURCE, hh, nd, ns, other);
	assert_false(rmig_auth_mac_equal(base, other));
	ns[31] ^= 0x01;
	/* the nonces are not interchangeable */
	mac(RMIG_AUTH_SOURCE, hh, ns, nd, other);
	assert_false(rmig_auth_mac_equal(base, other));
	assert_int_equal(rmig_auth_mac(key, sizeof(key) - 2, RMIG_AUTH_SOURCE, hh, nd, ns, other), 0);
	assert_false(rmig_auth_mac_equal(base, other));
	/* a difference in the last byte only is still a difference */
	memcpy(other, base, sizeof(base));
	other[RMIG_AUTH_MAC_LEN - 1] ^= 1;
	assert_false(rmig_auth_mac_equal(base, other));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_every_input_counts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
