/*
 * history_redis.h — ended tasks' output tails in Redis, so any instance can serve the terminal of
 * a task that ran on another (issue #19, REQUIREMENTS C3).  Redis mode only.
 *
 * Key (one per agent — the pair of project and agent id — and task id; a task id run again
 * replaces it):
 *   ws:output:{PROJECT/AGENT}:TASK   string "<ended_ns> <output_bytes> <lost_bytes>\n" + the last
 *                            --history-tail bytes of output, EX --history-window
 * The instance that reads the agent's ring writes it at task end; another instance reads it when
 * a viewer opens that task's terminal.  Redis being down loses nothing locally: the owner still
 * serves the tail from memory, and other instances close the viewer with 1011 (retry later).
 *
 * Loop thread only.
 */
#ifndef RINGSIDE_HISTORY_REDIS_H
#define RINGSIDE_HISTORY_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "history.h"

/* Stores t's tail (t->tail, at most max_tail bytes: the newest) with a TTL of window_s seconds.
 * Fire and forget: a failure is counted (ringside_history_redis_total{op="store",result}). */
void history_redis_store(cluster *cl, const char *project_id, const char *agent_id,
                         const history_task *t, size_t max_tail, long window_s);

/* Serves c the terminal of an ended task that ran on another instance: reads its tail from Redis,
 * then sends it as history_serve() does; closes 4010 if the key is gone (or holds another run of
 * the task id), 1011 if Redis fails.  meta (copied) is the task's record.  Asynchronous: the
 * caller must call history_redis_cancel(c) when c goes away. */
void history_redis_serve(cluster *cl, conn *c, const char *agent_id, const char *project_id,
                         const history_task *meta);

/* Forgets c in every pending read (its reply is then dropped).  Idempotent. */
void history_redis_cancel(const conn *c);

/* Appends ringside_history_redis_total{op,result} (Prometheus text). */
void history_redis_render_metrics(buf *b);

#endif
