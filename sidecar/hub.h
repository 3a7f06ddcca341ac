/*
 * hub.h — who sees what: agent state, tasks, terminal scrollback, replay buffer, and fan-out of
 * events to subscribed connections (REQUIREMENTS B2–B6, B8, C1, C4 embedded mode).
 *
 * Records from rings enter through hub_ring_*; each event is serialised once into a msg and the
 * same bytes are queued on every connection whose filter (and, later, permissions) match.
 */
#ifndef RINGSIDE_HUB_H
#define RINGSIDE_HUB_H

#include <ev.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "ipc_reader.h"

typedef struct hub hub;

hub *hub_new(struct ev_loop *loop, const config *cfg);
void hub_free(hub *h);

/* ---- ring side (called by watch) ---- */

/* A ring of this agent was attached (the agent is alive). */
void hub_ring_attached(hub *h, const ipc_identity *id);
/* One event read from a ring of this agent. */
void hub_ring_event(hub *h, const ipc_identity *id, const ipc_event *ev);
/* A ring of this agent is gone.  clean: the process called rs_close().  When the agent has no
 * ring left and did not end cleanly, the hub publishes status `failed` (A4). */
void hub_ring_detached(hub *h, const ipc_identity *id, int clean);

/* ---- connection side ---- */

/* Subscribes c to /ws/events: sends the snapshot, then (when resume is set and epoch matches)
 * every retained persisted event after resume_seq that c may see, or replay_truncated. */
void hub_subscribe_events(hub *h, conn *c, int resume, uint64_t resume_seq, const char *epoch);

/* Subscribes c to the terminal of task_id (agent_id and project_id may be "" for any), chosen
 * only among the tasks c may see (D2).  Sends the header, scrollback and, for an ended task, its
 * end.  run (0: none) selects one run of a task id the agent started more than once: its
 * "run" field, the run's start in ns; without it the live run, else the newest ended one.
 * Returns 0, -3 if that run's output is no longer kept, or -1 if no such task is visible to c (unknown and forbidden look the same). */
int hub_subscribe_terminal(hub *h, conn *c, const char *task_id, const char *agent_id,
                           const char *project_id, uint64_t run);

/* c's rights were just replaced (token refresh): a terminal of a project no longer allowed is
 * closed with 4003 at once; event streams apply the new rights from the next message. */
void hub_rights_changed(hub *h, conn *c);

/* Removes c from whatever it is subscribed to.  Idempotent. */
void hub_unsubscribe(hub *h, conn *c);

/* The connection's queue drained: paused-then-resumed or lagging terminal clients catch up. */
void hub_conn_drained(hub *h, conn *c);

/* Sends a `subscribed` reply with c's effective filters. */
void hub_send_subscribed(hub *h, conn *c);

/* The epoch of the sequence numbers clients see (borrowed, lives as long as the hub): this
 * instance's own in embedded mode, the cluster stream's with Redis. */
const char *hub_epoch(const hub *h);
/* The last persisted seq the hub delivered (what a snapshot reflects). */
uint64_t hub_seq(const hub *h);

struct cluster;
/* Routes events through the cluster (Redis mode).  Call before any event flows. */
void hub_set_cluster(hub *h, struct cluster *cl);

/* Appends per-agent metrics (Prometheus text). */
void hub_render_metrics(buf *b, void *h);

#endif
