/* SPDX-License-Identifier: MIT */
/* hostile.h - what hostile.c's cases and hostile_dst.c's share. */
#ifndef RMIG_TEST_HOSTILE_H
#define RMIG_TEST_HOSTILE_H

#define TIMEOUT_MS 1500 /* each session's timeout_ms: every case ends well within it */

/* hostile_dst.c */
void test_hostile_destinations(void **state);
void test_unreachable(void **state);

#endif
