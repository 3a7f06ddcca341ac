/*
 * history.h — ended tasks kept per agent, for the snapshot and for late terminal viewers
 * (issue #19, REQUIREMENTS B4, B6).
 *
 * Per agent the last --history-tasks ended tasks are kept (outcome, exit status, start, end,
 * output size).  The tail of each task's terminal output (at most --history-tail bytes) is copied
 * in at task end and kept for --history-window seconds while all tails together stay within
 * --history-bytes; over the budget the least recently used tail (ended or viewed longest ago) is
 * dropped first.  A task whose tail was dropped keeps its record: its terminal is then "expired".
 *
 * Single-threaded (the event loop).  Strings passed in are copied; pointers returned are borrowed
 * until the next call that changes the history.
 */
#ifndef RINGSIDE_HISTORY_H
#define RINGSIDE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "conn.h"
#include "ipc_reader.h"

typedef struct history history;

/* One ended task.  `tail` is NULL when no output is held here: tail_state says why. */
typedef enum history_tail_state {
    HISTORY_TAIL_HELD = 0,    /* tail/tail_len are the last output bytes (possibly none) */
    HISTORY_TAIL_EXPIRED = 1, /* dropped: window passed or byte budget needed the room */
    HISTORY_TAIL_REMOTE = 2,  /* the task ran on another instance (Redis mode) */
} history_tail_state;

typedef struct history_task {
    char task_id[IPC_ID_MAX + 1];
    char title[IPC_TEXT_MAX + 1];
    const char *outcome; /* static string: completed, failed, cancelled */
    int32_t exit_code;
    uint64_t started_ns, ended_ns; /* wall clock, ns since the epoch */
    uint64_t output_bytes;         /* all output the task wrote, not only the tail */
    uint64_t lost_bytes;           /* output lost before the sidecar read it */
    unsigned char *tail;
    size_t tail_len;
    history_tail_state tail_state;
    /* private */
    uint64_t ended_mono;
    struct history_task *lru_prev, *lru_next;
} history_task;

/* A new, empty history sized by cfg (borrowed; must outlive the history). */
history *history_new(const config *cfg);
/* Frees everything; NULL is a no-op. */
void history_free(history *hs);

/* Records an ended task of the agent (project_id, agent_id): an agent is the pair, so the same
 * id in two projects has two histories (D2).  t's metadata fields are copied (tail and private
 * fields ignored).  The tail is copied from a ring buffer holding output bytes [start, end) by absolute
 * position at ring[pos % ring_cap]; ring may be NULL (no output held: remote, or none written).
 * The same task (agent, id, end time) recorded twice is kept once. */
void history_record(history *hs, const char *project_id, const char *agent_id,
                    const history_task *t, const unsigned char *ring, size_t ring_cap,
                    uint64_t start, uint64_t end);

/* The newest record of task_id of the agent, or NULL.  Marks its tail as used (LRU). */
history_task *history_find(history *hs, const char *project_id, const char *agent_id,
                           const char *task_id);

/* The record of task_id of the agent whose run started at started_ns (the "run" of the
 * protocol: a task id an agent starts again is a new run), or NULL.  Marks its tail as used. */
history_task *history_find_run(history *hs, const char *project_id, const char *agent_id,
                               const char *task_id, uint64_t started_ns);

/* Appends `,"history":[…]` (newest first) for the agent to b, after the agent's other fields. */
void history_render(const history *hs, buf *b, const char *project_id, const char *agent_id);

/* Serves a terminal of an ended task from its record: the `terminal` header, the tail in
 * binary frames, `task_ended`, then close 1000.  project_id is for the messages' fields.
 * Returns 0, or -1 if the tail is not held here (the caller closes as expired or asks Redis). */
int history_serve(conn *c, const char *agent_id, const char *project_id, const history_task *t);

/* Drops tails of tasks that ended more than --history-window before now_mono (util_mono_ns()).
 * Call periodically (the hub does every 30 s). */
void history_expire(history *hs, uint64_t now_mono);
/* Drops every record of the agent (it left the snapshot). */
void history_forget(history *hs, const char *project_id, const char *agent_id);

/* Appends history metrics (Prometheus text). */
void history_render_metrics(buf *b, const history *hs);

#endif
