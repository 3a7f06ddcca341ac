/*
 * ratelimit.h — connection admission limits of one instance (REQUIREMENTS B9): new connections per
 * minute per IP (sliding window) and concurrent connections per user.
 *
 * Memory is O(active keys): one small entry per IP seen in the last two minutes and per user with
 * an open connection, whatever the configured rates.  Loop thread only.
 */
#ifndef RINGSIDE_RATELIMIT_H
#define RINGSIDE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* per_ip_per_min: 0 = unlimited; per_user: 0 = unlimited. */
ratelimit *ratelimit_new(long per_ip_per_min, long per_user);
void ratelimit_free(ratelimit *rl);

/* Counts one connection attempt from ip at now_ns (monotonic).  Returns 0 if admitted, else the
 * number of seconds after which a retry can succeed (for Retry-After, ≥ 1). */
int ratelimit_ip_admit(ratelimit *rl, const char *ip, uint64_t now_ns);

/* Takes one of user's concurrent-connection slots: 0 if taken, -1 if the user is at the limit. */
int ratelimit_user_acquire(ratelimit *rl, const char *user);

/* Gives a slot back (once per successful acquire). */
void ratelimit_user_release(ratelimit *rl, const char *user);

/* Current concurrent connections of user (for tests and logs). */
long ratelimit_user_count(const ratelimit *rl, const char *user);

/* Drops IP entries idle for more than two windows.  Call periodically. */
void ratelimit_sweep(ratelimit *rl, uint64_t now_ns);

/* Number of tracked keys (for metrics). */
size_t ratelimit_size(const ratelimit *rl);

#endif
