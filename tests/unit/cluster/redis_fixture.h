/*
 * redis_fixture.h — real redis-server / redis-sentinel processes for the cluster tests, on free
 * loopback ports with a temporary directory and no persistence; plus a bounded loop runner.
 */
#ifndef RINGSIDE_TEST_REDIS_FIXTURE_H
#define RINGSIDE_TEST_REDIS_FIXTURE_H

#include <ev.h>
#include <hiredis/hiredis.h>
#include <sys/types.h>

typedef struct rt_redis {
    pid_t pid;
    int port;
    char dir[256];
} rt_redis;

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int rt_free_port(void);
/* Starts redis-server on r->port (0: a free port) with extra arguments (NULL-terminated list,
 * may be NULL); waits (≤ 5 s) until it answers PING.  Returns 0 or -1. */
int rt_redis_start(rt_redis *r, const char *const *extra);
/* Starts redis-sentinel on a free port monitoring master_port as "mymaster" (quorum 1). */
int rt_sentinel_start(rt_redis *r, int master_port);
/* SIGKILL and reap (keeps the directory and port for a restart). */
void rt_redis_kill(rt_redis *r);
/* Kills and removes the directory.  Safe on a zeroed or killed struct. */
void rt_redis_stop(rt_redis *r);
/* A blocking connection with 1 s timeouts (NULL on failure). */
redisContext *rt_sync(int port);
/* Runs one command on a fresh blocking connection; returns the reply (free it) or NULL. */
redisReply *rt_cmd(int port, const char *fmt, ...);
/* Runs loop until pred(arg) != 0 or timeout seconds pass.  Returns 1 if pred became true. */
int rt_run_until(struct ev_loop *loop, int (*pred)(void *), void *arg, double timeout);
/* Runs loop for seconds (for time-based behaviour only: windows, backoff). */
void rt_run_for(struct ev_loop *loop, double seconds);

#endif
