/*
 * cluster.h — cluster-wide state, fan-out and replay through Redis (REQUIREMENTS C2–C6, B9's
 * cluster-wide limits).  Only used when --redis is set; embedded mode never creates one.
 *
 * Everything is asynchronous on the sidecar's libev loop (hiredis async + the libev adapter, with
 * our own connect and command deadlines, since hiredis 0.14.1 has none).  Nothing on the local
 * delivery path waits for Redis: a failed or slow Redis opens a circuit breaker and the hub goes
 * on delivering local events, marked stale.
 *
 * Keys (hash tags keep each family in one Cluster slot):
 *   ws:instances:{ID}:state        hash  state (running|draining), heartbeat, started_at,
 *                                        projects (announced --projects)                  TTL 30 s
 *   ws:connections:{CONN}          hash  user_id (keyed fingerprint), connected_at,
 *                                        last_heartbeat, instance_id, filters            TTL 24 h
 *   ws:replay:{events}             stream of persisted events, id "<seq>-0", field "e" = JSON
 *   ws:replay:{events}:seq         counter (INCR) — seq is contiguous within an epoch
 *   ws:replay:{events}:epoch       string — new random value when the stream is lost or reset
 *   ws:replay:{events}:projects    hash  instance → its --projects, "*" or ",p1,p2," (rewritten with
 *                                        every heartbeat; the scripts refuse events for projects
 *                                        their origin did not announce)
 *   ws:agents:{state}              hash  "<project_id>/<agent_id>" → latest agent JSON (snapshots),
 *                                        refreshed by its owner every sweep (seen_ms), trimmed
 *                                        by any instance once older than the replay window
 *   ws:limits:{ip:<IP>}            sorted set of connection attempts (sliding window)
 *   ws:limits:{user:<FP>}          counter of open connections, per-instance leases
 * Channels:
 *   ws:events                      every event, "<origin>\n<type>\n<seq>\n<epoch>\n<json>"
 *                                  (seq 0 and epoch "" for events that are not persisted)
 * CONN is conn->cid (random; "<instance>-<conn->id>" if empty).  User leases in
 * ws:limits:{user:<FP>} are named "<instance>:<CONN>".
 *
 * Callback contract (STYLE 3): if a call taking a callback fails, the callback never runs;
 * otherwise it runs exactly once, also on teardown (with a non-zero status).
 */
#ifndef RINGSIDE_CLUSTER_H
#define RINGSIDE_CLUSTER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"

struct hub;
struct conn;
typedef struct cluster cluster;

/* Circuit breaker states, for /metrics (ringside_redis_circuit_state) and logs. */
typedef enum cluster_circuit {
    CLUSTER_CLOSED = 0,    /* healthy */
    CLUSTER_OPEN = 1,      /* 5 consecutive failures: Redis not used until the probe succeeds */
    CLUSTER_HALF_OPEN = 2  /* one probe in flight */
} cluster_circuit;

/* Parses cfg->redis and starts connecting (returns at once).  Returns NULL with one line in
 * errbuf only for a malformed URL; an unreachable Redis is not an error (the breaker opens). */
cluster *cluster_new(struct ev_loop *loop, const config *cfg, struct hub *h, char *errbuf,
                     size_t errlen);

/* Marks this instance draining, removes its registry entries (best effort, bounded by a short
 * deadline), closes connections and frees.  NULL is a no-op. */
void cluster_free(cluster *cl);

/* 1 when connected and the breaker is closed (the cluster view is complete). */
int cluster_available(const cluster *cl);
/* 1 when available and the subscription has caught up with the replay stream (no event another
 * instance persisted is missing): /readyz should report not-ready until then. */
int cluster_ready(const cluster *cl);
cluster_circuit cluster_circuit_state(const cluster *cl);

/* ---- persisted events (status, task lifecycle) -------------------------------------------- */

/* Result of cluster_persist: status 0 with the final JSON (json_prefix + ",\"seq\":N,\"epoch\":\"E\"}")
 * as stored and published; non-zero when Redis could not take it (breaker open, timeout, error) —
 * then json is NULL and the hub falls back to local sequencing — except CLUSTER_REFUSED: the
 * event's project is not one this instance announced (--projects), and it must not be delivered
 * anywhere.  json is valid during the call. */
#define CLUSTER_REFUSED 2
typedef void (*cluster_persist_cb)(void *ud, int status, const char *json, size_t len,
                                   uint64_t seq, const char *epoch);

/* Assigns the event its (epoch, seq) in Redis atomically (one Lua script: detect a lost or reset
 * stream → new epoch; INCR; XADD with id seq-0, capped to --replay-window / --replay-max; PUBLISH
 * on ws:events), then calls cb.  json_prefix is a JSON object without its closing brace. Copied.
 * Returns 0 (cb will run) or -1 (breaker open: cb will not run). */
int cluster_persist(cluster *cl, const char *agent_id, const char *project_id, uint32_t type,
                    const char *json_prefix, size_t len, cluster_persist_cb cb, void *ud);

/* Publishes a non-persisted event (progress, gap, terminal bytes) for project_id to the other
 * instances; fire and forget.  Redis refuses it when this instance did not announce project_id.
 * project_id NULL: a message that publishes nothing of a project (a terminal watch request). */
void cluster_publish(cluster *cl, uint32_t type, const char *project_id, const char *json,
                     size_t len);

/* Stores the latest state of an agent (snapshot JSON object) for other instances' snapshots. */
void cluster_put_agent(cluster *cl, const char *project_id, const char *agent_id, const char *json,
                       size_t len);

/* Removes an agent from ws:agents:{state} if its owner has not refreshed it (its JSON's seen_ms)
 * for max_age_ms: the agent is gone, and its id is not kept around. */
void cluster_trim_agent(cluster *cl, const char *project_id, const char *agent_id,
                        uint64_t max_age_ms);

/* ---- replay ---------------------------------------------------------------------------------- */

/* Returns 0 to go on, or 1 when the consumer has enough for now: the replay pauses after the
 * current page until cluster_replay_resume() (a resuming client's replay is paced by its queue). */
typedef int (*cluster_replay_event_cb)(void *ud, const char *json, size_t len, uint64_t seq);
/* status: 0 complete; 1 truncated (epoch differs or events after after_seq are gone);
 * -1 Redis unavailable.  last_seq: the newest seq in the stream when read. */
typedef void (*cluster_replay_done_cb)(void *ud, int status, uint64_t last_seq, const char *epoch);

/* Reads every retained persisted event with seq > after_seq (XRANGE in pages), calling on_event in
 * order, then on_done exactly once.  Returns 0, or -1 (breaker open: no callback runs). */
int cluster_replay(cluster *cl, uint64_t after_seq, const char *epoch, cluster_replay_event_cb on_event,
                   cluster_replay_done_cb on_done, void *ud);

/* Cancels the callbacks of a pending replay for ud (the connection went away).  Idempotent. */
void cluster_replay_cancel(cluster *cl, void *ud);

/* Continues a replay for ud that its on_event paused.  No-op if none is paused. */
void cluster_replay_resume(cluster *cl, void *ud);

/* ---- registry and limits (C2, B9) ----------------------------------------------------------- */

void cluster_conn_open(cluster *cl, const struct conn *c);
void cluster_conn_heartbeat(cluster *cl, const struct conn *c);
void cluster_conn_close(cluster *cl, const struct conn *c);
void cluster_set_draining(cluster *cl);

/* Cluster-wide admission (B9): counts one attempt from ip in a sliding 60 s window
 * (ws:limits:{ip:<IP>}) and, when user_fp is non-NULL, takes a lease for conn_id in the user's set
 * (ws:limits:{user:<FP>}, leases expire unless refreshed by cluster_conn_heartbeat, so a crashed
 * instance's connections stop counting).  cb(ud, 0, …) admitted; cb(ud, retry_after_s, reason)
 * refused, reason 0 = per-IP rate, 1 = per-user connections.  Returns -1 when Redis is unavailable
 * (no callback): the caller applies its local limits instead. */
/* conn_id must be conn->cid (cluster_conn_heartbeat refreshes the lease by it and
 * cluster_conn_close drops it).  If
 * Redis fails after the call was accepted, cb runs once with retry_after_s = -1, reason = -1:
 * apply the local limits then too. */
typedef void (*cluster_admit_cb)(void *ud, int retry_after_s, int reason);
int cluster_admit(cluster *cl, const char *ip, const char *user_fp, const char *conn_id,
                  long per_ip_per_min, long per_user, cluster_admit_cb cb, void *ud);
/* Cancels a pending admission callback for ud.  Idempotent. */
void cluster_admit_cancel(cluster *cl, void *ud);
/* Drops the user lease of conn_id (cluster_conn_close does it too). */
void cluster_release_user(cluster *cl, const char *user_fp, const char *conn_id);

/* The command connection when the cluster is available (borrowed, lives as long as cl), for
 * modules that keep their own keys (history_redis.c); NULL while unavailable. */
struct redis_conn *cluster_command_conn(cluster *cl);

/* Appends cluster metrics (circuit state, commands, failures, pub/sub lag, replay reads). */
void cluster_render_metrics(buf *b, void *cl);

/* ---- implemented by the hub, called by the cluster ------------------------------------------- */

/* An event published by any instance, this one included (compare origin with the instance id),
 * json as published (with seq/epoch if persisted).  Persisted events arrive exactly once each, in
 * seq order, also across reconnects (missed ones are read from the stream first); during the
 * first sync after start, history is not delivered. */
void hub_remote_event(struct hub *h, const char *origin, uint32_t type, const char *json,
                      size_t len);
/* An agent state loaded from ws:agents:{state} after (re)connecting. */
void hub_remote_agent(struct hub *h, const char *json, size_t len);
/* The cluster view became available (1) or incomplete (0): snapshots and events are marked stale. */
void hub_cluster_state(struct hub *h, int available);

#endif
