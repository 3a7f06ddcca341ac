#include "hub.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "history.h"
#include "history_redis.h"
#include "log.h"
#include "server.h"
#include "util.h"

#define TERM_CHUNK 4096        /* largest terminal frame (B6) */
#define ENDED_TASKS_KEPT 32    /* ended tasks kept per agent for late terminal viewers */
#define TERMINAL_OPCODE 2      /* binary frames */

static const char *const status_names[] = {"idle",      "working",   "stuck",
                                           "failed",    "completed", "cancelled"};

static const char *status_name(unsigned s)
{
    return s < ARRAY_LEN(status_names) ? status_names[s] : "unknown";
}

typedef struct task {
    char id[IPC_ID_MAX + 1];
    char title[IPC_TEXT_MAX + 1];
    int ended;
    uint8_t outcome;
    int32_t exit_code;
    uint64_t started_ns, ended_ns;
    /* progress */
    int has_progress;
    uint32_t cur, total;
    char message[IPC_TEXT_MAX + 1];
    uint64_t progress_ts_ns;
    uint64_t rate_t0_ns; /* first progress observation, for the ETA */
    uint32_t rate_step0;
    int progress_dirty;
    uint64_t progress_sent_mono;
    /* terminal scrollback: bytes [sb_start, sb_end) by absolute position */
    unsigned char *sb;
    size_t sb_cap;   /* --scrollback */
    size_t sb_alloc; /* bytes of sb allocated: grows with use up to sb_cap (issue 17) */
    uint64_t sb_start, sb_end;
    uint64_t term_lost;
    conn *subs; /* terminal subscribers */
    uint64_t relay_until; /* owner: relay bytes to the cluster until then (a remote watcher) */
    uint64_t active_mono; /* last event of the task, for --task-idle-timeout */
    struct agent *agent;
    struct task *next;
} task;

typedef struct agent {
    char id[IPC_ID_MAX + 1];
    char project[IPC_ID_MAX + 1];
    char owner[IPC_ID_MAX + 1];
    char origin[256]; /* instance whose event or state was applied last ("" until then) */
    int has_status;
    uint8_t status;
    char detail[IPC_TEXT_MAX + 1];
    uint64_t status_ts_ns;
    int rings; /* attached rings (processes) of this agent */
    int died;  /* its last process ended without closing (cleared when a ring attaches) */
    int local; /* its rings are read by this instance (it owns the terminal bytes) */
    uint32_t replay_refs; /* replay entries pointing here: the agent is kept while any exist */
    uint64_t active_mono; /* last event or ring change, for eviction */
    /* --agent-status-rate: two buckets (every status; the critical lane for final statuses), and
     * the latest status that waits for a token (coalesced: a newer one replaces it) */
    double st_tokens, crit_tokens;
    uint64_t st_tokens_mono;
    int st_pending, over_budget;
    uint8_t pending_status;
    uint64_t pending_ts_ns;
    char pending_detail[IPC_TEXT_MAX + 1];
    uint64_t closed_mono; /* its last ring closed cleanly then (0: a ring is attached or it died) */
    task *tasks;
    struct agent *next;
} agent;

typedef struct replay_entry {
    msg *m;
    uint64_t seq;
    uint64_t mono_ns;
    uint32_t type; /* FILTER_EV_* */
    agent *a;      /* agents are never freed while the hub lives */
} replay_entry;

struct hub {
    struct ev_loop *loop;
    const config *cfg;
    cluster *cl;            /* NULL in embedded mode */
    int closing;
    double g_tokens;        /* --global-msg-rate bucket */
    uint64_t g_tokens_mono;
    int cluster_up;         /* last hub_cluster_state() */
    uint64_t cluster_seq;   /* last persisted seq delivered from the cluster stream */
    uint64_t evicted;       /* agents forgotten by the sweep */
    char cluster_epoch[64];
    agent *agents;
    conn *event_subs;
    uint64_t seq;
    char epoch[17];
    replay_entry *replay;
    size_t r_head, r_len, r_cap;
    ev_timer progress_timer;
    ev_timer sweep_timer;   /* evicts agents gone for longer than the replay window */
    ev_timer task_timer;    /* ends idle tasks and those of cleanly closed agents */
    ev_timer relay_timer;   /* renews terminal watch requests to the owning instance */
    ev_timer budget_timer;  /* publishes statuses that waited for --agent-status-rate */
    history *hist;          /* ended tasks for the snapshot and late terminal viewers */
    buf scratch;
};

static void share_agent(hub *h, const agent *a);
static int replay_event(void *ud, const char *json, size_t len, uint64_t seq);
static void replay_done(void *ud, int status, uint64_t last_seq, const char *epoch);
static void replay_pump(hub *h, conn *c);
static void replay_finish_cluster(hub *h, conn *c);
static void snapshot(hub *h, conn *c, buf *b);

/* ---- helpers --------------------------------------------------------------------------------- */

/* An agent is (project_id, agent_id): the same id in two projects is two agents, and nothing
 * ever changes an agent's project (D2). */
static agent *lookup_agent(hub *h, const char *project_id, const char *agent_id)
{
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if (strcmp(a->id, agent_id) == 0 && strcmp(a->project, project_id) == 0)
            return a;
    }
    return NULL;
}

static agent *find_agent(hub *h, const ipc_identity *id, int create)
{
    agent *found = lookup_agent(h, id->project_id, id->agent_id);
    if (found != NULL)
        return found;
    if (!create)
        return NULL;
    agent *a = xcalloc(1, sizeof *a);
    a->active_mono = util_mono_ns();
    snprintf(a->id, sizeof a->id, "%s", id->agent_id);
    snprintf(a->project, sizeof a->project, "%s", id->project_id);
    snprintf(a->owner, sizeof a->owner, "%s", id->owner);
    a->st_tokens = (double)h->cfg->agent_status_rate;
    a->crit_tokens = a->st_tokens / 4 + 1;
    a->st_tokens_mono = a->active_mono;
    a->next = h->agents;
    h->agents = a;
    return a;
}

static task *find_task(agent *a, const char *task_id)
{
    for (task *t = a->tasks; t != NULL; t = t->next) {
        if (strcmp(t->id, task_id) == 0)
            return t;
    }
    return NULL;
}

static void task_free(task *t)
{
    free(t->sb);
    free(t);
}

/* Drops the oldest ended tasks beyond ENDED_TASKS_KEPT that nobody is watching. */
static void trim_tasks(agent *a)
{
    unsigned ended = 0;
    for (task *t = a->tasks; t != NULL; t = t->next)
        ended += (unsigned)t->ended;
    while (ended > ENDED_TASKS_KEPT) {
        task **victim = NULL;
        for (task **pp = &a->tasks; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->ended && (*pp)->subs == NULL &&
                (victim == NULL || (*pp)->ended_ns < (*victim)->ended_ns))
                victim = pp;
        }
        if (victim == NULL)
            return;
        task *t = *victim;
        *victim = t->next;
        task_free(t);
        ended--;
    }
}

static task *new_task(hub *h, agent *a, const char *task_id, uint64_t ts_ns)
{
    task *t = xcalloc(1, sizeof *t);
    t->active_mono = util_mono_ns();
    snprintf(t->id, sizeof t->id, "%s", task_id);
    t->started_ns = ts_ns;
    t->agent = a;
    t->sb_cap = (size_t)h->cfg->scrollback;
    t->next = a->tasks;
    a->tasks = t;
    return t;
}

static task *get_task(hub *h, agent *a, const char *task_id, uint64_t ts_ns)
{
    task *t = find_task(a, task_id);
    if (t != NULL) {
        t->active_mono = util_mono_ns();
        return t;
    }
    return new_task(h, a, task_id, ts_ns);
}

/* An agent starts the id of an ended task again: a new run with its own scrollback (issue 19).
 * The ended run's output is in the history.  A viewer still reading the ended run (behind or
 * paused) keeps it: the old task stays in the list, behind the new one, until trim_tasks. */
static task *restart_task(hub *h, agent *a, task *old, uint64_t ts_ns)
{
    char id[IPC_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", old->id);
    if (old->subs == NULL) {
        for (task **pp = &a->tasks; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == old) {
                *pp = old->next;
                break;
            }
        }
        task_free(old);
    }
    return new_task(h, a, id, ts_ns);
}

static void common_fields(buf *b, const char *type, const agent *a, uint64_t ts_ns)
{
    char ts[40];
    util_rfc3339(ts, sizeof ts, ts_ns);
    buf_puts(b, "{");
    json_kstr(b, "type", type);
    json_kstr(b, "agent_id", a->id);
    json_kstr(b, "project_id", a->project);
    json_kstr(b, "timestamp", ts);
    json_ku64(b, "ts_ns", ts_ns);
}

static void progress_fields(buf *b, const task *t)
{
    json_kstr(b, "task_id", t->id);
    json_ku64(b, "current_step", t->cur);
    json_ku64(b, "total_steps", t->total);
    if (t->total > 0) {
        double pct = 100.0 * (double)t->cur / (double)t->total;
        json_kdbl(b, "progress_percent", pct > 100.0 ? 100.0 : pct, 1);
    } else {
        json_knull(b, "progress_percent");
    }
    json_kstr(b, "message", t->message);
    /* ETA from the observed step rate since the first progress report. */
    double elapsed = (double)(t->progress_ts_ns - t->rate_t0_ns) / 1e9;
    if (t->total > 0 && t->cur > t->rate_step0 && elapsed > 0 && t->cur <= t->total) {
        double rate = (double)(t->cur - t->rate_step0) / elapsed;
        json_kdbl(b, "eta_seconds", (double)(t->total - t->cur) / rate, 1);
    } else if (t->total > 0 && t->cur >= t->total) {
        json_kdbl(b, "eta_seconds", 0.0, 1);
    } else {
        json_knull(b, "eta_seconds");
    }
}

/* ---- fan-out --------------------------------------------------------------------------------- */

#define HELD_MAX 4096 /* live events held per connection while its cluster replay runs */
#define REPLAY_BACKLOG_MAX 512 /* cluster: replayed events read ahead of a client's queue */

static void broadcast(hub *h, msg *m, uint32_t type, const agent *a)
{
    /* next is taken first: sending may end a connection (and unlink it) */
    for (conn *c = h->event_subs, *next; c != NULL; c = next) {
        next = c->sub_next;
        if (!filter_match(&c->filt, type, a->id, a->project) || !conn_may_see(c, a->project, a->id))
            continue;
        if (c->replaying && h->cl == NULL) {
            /* Persisted events reach a resuming client from the replay buffer, in order;
             * latest values (progress) are not replayed and go now. */
            if (m->seq == 0)
                conn_send(c, m);
            continue;
        }
        if (c->replaying) {
            if (c->n_held == HELD_MAX) {
                c->held_overflow = 1;
                continue;
            }
            if (c->held == NULL)
                c->held = xcalloc(HELD_MAX, sizeof *c->held);
            c->held[c->n_held++] = msg_ref(m);
            continue;
        }
        conn_send(c, m);
    }
}

/* Drops replay entries older than --replay-window, and beyond `keep` entries. */
static void replay_expire(hub *h, uint64_t now, size_t keep)
{
    uint64_t window = (uint64_t)h->cfg->replay_window * 1000000000ull;
    while (h->r_len > 0 && (now - h->replay[h->r_head].mono_ns > window || h->r_len > keep)) {
        replay_entry *e = &h->replay[h->r_head];
        msg_unref(e->m);
        e->a->replay_refs--;
        h->r_head = (h->r_head + 1) % h->r_cap;
        h->r_len--;
    }
}

static void replay_push(hub *h, msg *m, uint32_t type, agent *a)
{
    uint64_t now = util_mono_ns();
    replay_expire(h, now, (size_t)h->cfg->replay_max - 1);
    if (h->r_len == h->r_cap) {
        size_t ncap = h->r_cap ? h->r_cap * 2 : 256;
        replay_entry *n = xcalloc(ncap, sizeof *n);
        for (size_t i = 0; i < h->r_len; i++)
            n[i] = h->replay[(h->r_head + i) % h->r_cap];
        free(h->replay);
        h->replay = n;
        h->r_cap = ncap;
        h->r_head = 0;
    }
    replay_entry *e = &h->replay[(h->r_head + h->r_len) % h->r_cap];
    e->m = msg_ref(m);
    e->seq = m->seq;
    e->mono_ns = now;
    e->type = type;
    e->a = a;
    a->replay_refs++;
    h->r_len++;
}

/* Delivers one finished event (JSON text) to matching local subscribers and, in embedded mode,
 * keeps persisted ones for replay. */
static void deliver_local(hub *h, agent *a, const char *json, size_t len, uint32_t type,
                          msg_kind kind, int persisted, uint64_t seq, uint64_t ts_ns,
                          uint64_t coalesce_key)
{
    msg *m = msg_new(json, len, 1, kind, persisted);
    m->ts_ns = ts_ns;
    m->coalesce_key = coalesce_key;
    m->seq = seq;
    if (persisted && h->cl == NULL)
        replay_push(h, m, type, a);
    g_metrics.events_in[kind]++;
    broadcast(h, m, type, a);
    msg_unref(m);
}

/* ---- paced resume ------------------------------------------------------------------------------
 * A resuming client may have missed far more events than its send queue holds (--send-queue, 4x
 * for critical ones): queued at once they would close it 4008 on every attempt.  So the replay
 * is pumped into the queue while it has room (half of --send-queue and --send-queue-bytes) and
 * continued when the queue drains (hub_conn_drained); live persisted events wait for it. */

/* Embedded: tells c the events after from_seq are no longer retained (or of another epoch). */
static void send_replay_truncated(hub *h, conn *c, const char *client_epoch, uint64_t from_seq,
                                  uint64_t oldest)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"type\":\"replay_truncated\"");
    json_kstr(&b, "epoch", h->epoch);
    json_kstr(&b, "client_epoch", client_epoch);
    json_ku64(&b, "from_seq", from_seq);
    json_ku64(&b, "oldest_seq", oldest);
    json_ku64(&b, "to_seq", h->seq);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    buf_free(&b);
}

static int replay_room(const hub *h, const conn *c)
{
    size_t n = (size_t)h->cfg->send_queue / 2;
    return c->q_len < (n > 0 ? n : 1) && c->q_bytes < (size_t)h->cfg->send_queue_bytes / 2;
}

static void rq_push(conn *c, msg *m)
{
    if (c->rq_len == c->rq_cap) {
        size_t ncap = c->rq_cap ? c->rq_cap * 2 : 64;
        msg **n = xcalloc(ncap, sizeof *n);
        for (size_t i = 0; i < c->rq_len; i++)
            n[i] = c->rq[(c->rq_head + i) % c->rq_cap];
        free(c->rq);
        c->rq = n;
        c->rq_cap = ncap;
        c->rq_head = 0;
    }
    c->rq[(c->rq_head + c->rq_len) % c->rq_cap] = msg_ref(m);
    c->rq_len++;
}

static msg *rq_pop(conn *c)
{
    msg *m = c->rq[c->rq_head];
    c->rq_head = (c->rq_head + 1) % c->rq_cap;
    c->rq_len--;
    return m;
}

/* Embedded: from the hub's buffer, up to the newest event; then the client is live. */
static void replay_pump_local(hub *h, conn *c)
{
    while (c->replaying && c->state == CONN_WS && replay_room(h, c)) {
        if (c->replay_next > h->seq) {
            c->replaying = 0; /* caught up: live from here, nothing in between */
            return;
        }
        uint64_t oldest = h->r_len ? h->replay[h->r_head].seq : h->seq + 1;
        replay_entry *e = c->replay_next >= oldest
                              ? &h->replay[(h->r_head + (size_t)(c->replay_next - oldest)) % h->r_cap]
                              : NULL;
        if (e == NULL || e->seq != c->replay_next) {
            /* Expired from the buffer while this client was replaying: say so, then the
             * present state, then live events. */
            send_replay_truncated(h, c, h->epoch, c->replay_next - 1, oldest);
            c->replaying = 0;
            buf b;
            buf_init(&b);
            snapshot(h, c, &b);
            conn_send_text(c, b.data, b.len, MSG_SNAPSHOT, 1);
            buf_free(&b);
            return;
        }
        c->replay_next++;
        if (filter_match(&c->filt, e->type, e->a->id, e->a->project) &&
            conn_may_see(c, e->a->project, e->a->id))
            conn_send(c, e->m);
    }
}

/* Cluster: from the events read from the stream (read ahead by at most a page), then the held
 * live ones. */
static void replay_pump_cluster(hub *h, conn *c)
{
    while (c->rq_len > 0 && c->state == CONN_WS && replay_room(h, c)) {
        msg *m = rq_pop(c);
        conn_send(c, m);
        msg_unref(m);
    }
    if (c->state != CONN_WS || !c->replaying)
        return;
    if (c->replay_fetching) {
        if (c->rq_len < REPLAY_BACKLOG_MAX / 2)
            cluster_replay_resume(h->cl, c);
        return;
    }
    if (c->rq_len == 0)
        replay_finish_cluster(h, c);
}

static void replay_pump(hub *h, conn *c)
{
    if (h->cl != NULL)
        replay_pump_cluster(h, c);
    else
        replay_pump_local(h, c);
}

/* Finishes h->scratch (an event object without its closing brace and, if persisted, without
 * seq/epoch) with this instance's own sequence and delivers it locally.  In cluster mode this is
 * the fallback while Redis is unavailable: such events are marked stale. */
static void publish_local(hub *h, agent *a, uint32_t type, msg_kind kind, int persisted,
                          uint64_t ts_ns, uint64_t coalesce_key)
{
    buf *b = &h->scratch;
    uint64_t seq = 0;
    if (h->cl != NULL)
        json_kbool(b, "stale", 1);
    if (persisted) {
        seq = ++h->seq;
        json_ku64(b, "seq", seq);
        json_kstr(b, "epoch", h->epoch);
    }
    buf_puts(b, "}");
    deliver_local(h, a, b->data, b->len, type, kind, persisted, seq, ts_ns, coalesce_key);
    buf_reset(b);
}

typedef struct pending_persist {
    hub *h;
    agent *a;
    uint32_t type;
    msg_kind kind;
    uint64_t ts_ns;
    size_t len;
    char prefix[];
} pending_persist;

/* Redis assigned (or failed to assign) the event's sequence.  On success the event reaches every
 * instance, this one included, through the ws:events subscription, in sequence order; on failure it
 * is delivered locally with this instance's own sequence, marked stale. */
static void persist_done(void *ud, int status, const char *json, size_t len, uint64_t seq,
                         const char *epoch)
{
    (void)json;
    (void)len;
    (void)seq;
    (void)epoch;
    pending_persist *p = ud;
    hub *h = p->h;
    if (status != 0 && status != CLUSTER_REFUSED && !h->closing) {
        buf_reset(&h->scratch);
        buf_append(&h->scratch, p->prefix, p->len);
        publish_local(h, p->a, p->type, p->kind, 1, p->ts_ns, 0);
    }
    free(p);
}

/* Publishes h->scratch (see publish_local) and consumes it: through Redis when the cluster is
 * available, else locally. */
static void publish(hub *h, agent *a, uint32_t type, msg_kind kind, int persisted, uint64_t ts_ns,
                    uint64_t coalesce_key)
{
    buf *b = &h->scratch;
    if (h->cl != NULL && cluster_available(h->cl)) {
        if (persisted) {
            pending_persist *p = xmalloc(sizeof *p + b->len);
            p->h = h;
            p->a = a;
            p->type = type;
            p->kind = kind;
            p->ts_ns = ts_ns;
            p->len = b->len;
            memcpy(p->prefix, b->data, b->len);
            if (cluster_persist(h->cl, a->id, a->project, type, b->data, b->len, persist_done, p) ==
                0) {
                buf_reset(b);
                return;
            }
            free(p);
        } else {
            buf_puts(b, "}");
            cluster_publish(h->cl, type, a->project, b->data, b->len);
            buf_reset(b);
            return;
        }
    }
    publish_local(h, a, type, kind, persisted, ts_ns, coalesce_key);
}

static void publish_status(hub *h, agent *a, uint8_t status, const char *detail, uint64_t ts_ns)
{
    a->st_pending = 0; /* whatever waited is superseded */
    buf *b = &h->scratch;
    common_fields(b, "agent_status", a, ts_ns);
    if (a->has_status)
        json_kstr(b, "old_status", status_name(a->status));
    else
        json_knull(b, "old_status");
    json_kstr(b, "new_status", status_name(status));
    json_kstr(b, "detail", detail);
    a->has_status = 1;
    a->status = status;
    snprintf(a->detail, sizeof a->detail, "%s", detail);
    a->status_ts_ns = ts_ns;
    publish(h, a, FILTER_EV_STATUS, MSG_STATUS, 1, ts_ns, 0);
    share_agent(h, a);
}

/* ---- per-agent status budget (--agent-status-rate) ---------------------------------------------
 * One agent must not flood Redis, every instance and every dashboard.  Each agent has a bucket of
 * --agent-status-rate statuses per second (burst: one second's worth) and a critical lane, a
 * quarter of that, for final statuses (failed, completed, cancelled) once the bucket is empty.  A
 * status over budget is not lost: it waits, replaced by any newer one, and goes out when a token
 * comes back, so the latest state always arrives.  Task events are not budgeted. */

static int is_final_status(uint8_t s)
{
    return s == 3 || s == 4 || s == 5;
}

static int agent_admit(hub *h, agent *a, uint8_t status)
{
    double rate = (double)h->cfg->agent_status_rate;
    if (rate <= 0)
        return 1;
    uint64_t now = util_mono_ns();
    double dt = (double)(now - a->st_tokens_mono) / 1e9;
    a->st_tokens_mono = now;
    a->st_tokens = a->st_tokens + dt * rate > rate ? rate : a->st_tokens + dt * rate;
    double crate = rate / 4 + 1;
    a->crit_tokens = a->crit_tokens + dt * crate > crate ? crate : a->crit_tokens + dt * crate;
    if (a->st_tokens >= 1.0) {
        a->st_tokens -= 1.0;
        return 1;
    }
    if (is_final_status(status) && a->crit_tokens >= 1.0) {
        a->crit_tokens -= 1.0;
        return 1;
    }
    return 0;
}

static void agent_status(hub *h, agent *a, uint8_t status, const char *detail, uint64_t ts_ns)
{
    if (!a->st_pending && agent_admit(h, a, status)) {
        a->over_budget = 0;
        publish_status(h, a, status, detail, ts_ns);
        return;
    }
    if (a->st_pending)
        g_metrics.agent_status_coalesced++; /* the waiting one is replaced */
    a->st_pending = 1;
    a->pending_status = status;
    a->pending_ts_ns = ts_ns;
    snprintf(a->pending_detail, sizeof a->pending_detail, "%s", detail);
    if (!a->over_budget) {
        a->over_budget = 1;
        g_metrics.agent_status_over_budget++;
        log_warn("agent over its status budget: the latest status waits",
                 "\"project\":\"%s\",\"agent\":\"%s\",\"reason\":\"--agent-status-rate %ld\"",
                 a->project, a->id, h->cfg->agent_status_rate);
    }
    if (!ev_is_active(&h->budget_timer)) {
        ev_timer_set(&h->budget_timer, 1.0 / (double)h->cfg->agent_status_rate, 0.);
        ev_timer_start(h->loop, &h->budget_timer);
    }
}

/* A waiting status goes out now, whatever the budget says (its agent is leaving). */
static void flush_pending_status(hub *h, agent *a)
{
    if (a->st_pending)
        publish_status(h, a, a->pending_status, a->pending_detail, a->pending_ts_ns);
}

static void budget_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hub *h = container_of(w, hub, budget_timer);
    int waiting = 0;
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if (!a->st_pending)
            continue;
        if (agent_admit(h, a, a->pending_status))
            publish_status(h, a, a->pending_status, a->pending_detail, a->pending_ts_ns);
        else
            waiting = 1;
    }
    if (waiting) {
        ev_timer_set(&h->budget_timer, 1.0 / (double)h->cfg->agent_status_rate, 0.);
        ev_timer_start(h->loop, &h->budget_timer);
    }
}

/* --global-msg-rate (B9): a token bucket over the progress events the hub accepts per second.
 * Status and task events are high priority and bypass it; progress over the rate waits in its
 * task slot (where newer values replace it) and goes out when tokens come back. */
static int global_admit(hub *h)
{
    long rate = h->cfg->global_msg_rate;
    if (rate <= 0)
        return 1;
    uint64_t now = util_mono_ns();
    h->g_tokens += (double)(now - h->g_tokens_mono) / 1e9 * (double)rate;
    if (h->g_tokens > (double)rate)
        h->g_tokens = (double)rate;
    h->g_tokens_mono = now;
    if (h->g_tokens < 1.0) {
        g_metrics.rate_limited++;
        return 0;
    }
    h->g_tokens -= 1.0;
    return 1;
}

static void send_progress(hub *h, task *t)
{
    agent *a = t->agent;
    buf *b = &h->scratch;
    common_fields(b, "progress", a, t->progress_ts_ns);
    progress_fields(b, t);
    t->progress_dirty = 0;
    t->progress_sent_mono = util_mono_ns();
    /* The key lets a connection's queue replace an older value of the same task (B8). */
    uint64_t key = (uint64_t)(uintptr_t)t | 1u;
    publish(h, a, FILTER_EV_PROGRESS, MSG_PROGRESS, 0, t->progress_ts_ns, key);
}

static void terminal_end_for(hub *h, conn *c, task *t);
static void end_task(hub *h, agent *a, task *t, uint8_t outcome, int32_t exit_code, uint64_t ts_ns);

/* Ends a's running tasks (only those idle since before idle_before, when not 0) with outcome.
 * end_task may free ended tasks (trim_tasks), so the list is walked afresh after each end.
 * Returns how many ended. */
static unsigned end_running_tasks(hub *h, agent *a, uint8_t outcome, uint64_t idle_before,
                                  uint64_t ts_ns)
{
    unsigned n = 0;
    for (;;) {
        task *t = a->tasks;
        while (t != NULL && (t->ended || (idle_before != 0 && t->active_mono >= idle_before)))
            t = t->next;
        if (t == NULL)
            return n;
        end_task(h, a, t, outcome, -1, ts_ns);
        n++;
    }
}

/* Copies an ended task into the history (its output tail when this instance holds it); the
 * scrollback is then freed unless someone is still reading it. */
static void record_history(hub *h, agent *a, task *t, history_tail_state tail)
{
    history_task r = {.outcome = status_name(t->outcome), .exit_code = t->exit_code,
                      .started_ns = t->started_ns, .ended_ns = t->ended_ns,
                      .output_bytes = t->sb_end, .lost_bytes = t->term_lost, .tail_state = tail};
    snprintf(r.task_id, sizeof r.task_id, "%s", t->id);
    snprintf(r.title, sizeof r.title, "%s", t->title);
    history_record(h->hist, a->project, a->id, &r, t->sb, t->sb_cap, t->sb_start, t->sb_end);
    if (h->cl != NULL && tail == HISTORY_TAIL_HELD && a->local) {
        /* Redis mode: any instance can serve this task's output (C3). */
        const history_task *kept = history_find(h->hist, a->project, a->id, t->id);
        if (kept != NULL)
            history_redis_store(h->cl, a->project, a->id, kept, (size_t)h->cfg->history_tail,
                                h->cfg->history_window);
    }
    if (t->subs == NULL && t->sb != NULL) {
        free(t->sb);
        t->sb = NULL;
        t->sb_start = t->sb_end;
    }
}

static void end_task(hub *h, agent *a, task *t, uint8_t outcome, int32_t exit_code, uint64_t ts_ns)
{
    if (t->ended)
        return;
    if (t->progress_dirty)
        send_progress(h, t);
    t->ended = 1;
    t->outcome = outcome;
    t->exit_code = exit_code;
    t->ended_ns = ts_ns;
    buf *b = &h->scratch;
    char rs[24];
    common_fields(b, "task_ended", a, ts_ns);
    json_kstr(b, "task_id", t->id);
    json_kstr(b, "run", util_u64str(rs, sizeof rs, t->started_ns));
    json_kstr(b, "outcome", status_name(outcome));
    json_ki64(b, "exit_code", exit_code);
    publish(h, a, FILTER_EV_TASK_ENDED, MSG_TASK, 1, ts_ns, 0);
    record_history(h, a, t, HISTORY_TAIL_HELD);
    for (conn *c = t->subs, *next; c != NULL; c = next) {
        next = c->sub_next;
        if (!c->term_behind && !c->paused)
            terminal_end_for(h, c, t);
    }
    trim_tasks(a);
}

/* ---- terminal -------------------------------------------------------------------------------- */

static void sb_append(task *t, const uint8_t *data, size_t len)
{
    if (t->sb_cap == 0) {
        t->sb_start = t->sb_end += len;
        return;
    }
    if (len > t->sb_cap) {
        data += len - t->sb_cap;
        t->sb_end += len - t->sb_cap;
        len = t->sb_cap;
    }
    /* Allocated as used: before the first wrap, position p sits at offset p, so the buffer can
     * grow (doubling, from 4 KiB) up to --scrollback without moving anything. */
    if (t->sb_alloc < t->sb_cap) {
        uint64_t need = t->sb_end + len;
        if (need > t->sb_alloc) {
            size_t n = t->sb_alloc ? t->sb_alloc : 4096;
            while (n < need && n < t->sb_cap)
                n *= 2;
            if (n > t->sb_cap || need > t->sb_cap)
                n = t->sb_cap;
            t->sb = xrealloc(t->sb, n);
            t->sb_alloc = n;
        }
    }
    for (size_t i = 0; i < len;) {
        size_t off = (size_t)(t->sb_end % t->sb_cap);
        size_t n = t->sb_cap - off;
        if (n > len - i)
            n = len - i;
        memcpy(t->sb + off, data + i, n);
        i += n;
        t->sb_end += n;
    }
    if (t->sb_end - t->sb_start > t->sb_cap)
        t->sb_start = t->sb_end - t->sb_cap;
}

static void terminal_end_for(hub *h, conn *c, task *t)
{
    (void)h;
    buf b;
    buf_init(&b);
    char rs[24];
    common_fields(&b, "task_ended", t->agent, t->ended_ns);
    json_kstr(&b, "task_id", t->id);
    json_kstr(&b, "run", util_u64str(rs, sizeof rs, t->started_ns));
    json_kstr(&b, "outcome", status_name(t->outcome));
    json_ki64(&b, "exit_code", t->exit_code);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_TASK, 1);
    buf_free(&b);
    conn_close_ws(c, 1000, CLOSE_TASK_ENDED, "task ended");
}

static void send_gap(conn *c, const task *t, const char *reason, uint64_t bytes)
{
    buf b;
    buf_init(&b);
    common_fields(&b, "gap", t->agent, util_now_ns());
    json_kstr(&b, "task_id", t->id);
    json_kstr(&b, "reason", reason);
    json_ku64(&b, "bytes", bytes);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    buf_free(&b);
}

/* ---- terminal relay across instances (C3) -----------------------------------------------------
 * The instance that reads an agent's ring owns its terminal bytes.  Another instance with a
 * viewer of that task publishes a watch request ("project\tagent\ttask\tfrom", every
 * RELAY_RENEW_S); the owner then publishes the bytes from `from` (its scrollback) and every new
 * chunk, each with its absolute position ("project\tagent\ttask\tpos\n" + bytes), for
 * RELAY_TTL_S after the last request.  Nothing is relayed while nobody remote watches.  A viewer
 * takes bytes only for the exact (project, agent) it knows, and only from the instance its state
 * came from (D2, C3). */
#define CLUSTER_TYPE_TERM_WATCH 0x100u
#define CLUSTER_TYPE_TERM_DATA 0x200u
#define RELAY_TTL_S 30
#define RELAY_RENEW_S 10.0

static void relay_chunk(hub *h, const task *t, uint64_t pos, const uint8_t *data, size_t len)
{
    buf b;
    buf_init(&b);
    buf_printf(&b, "%s\t%s\t%s\t%llu\n", t->agent->project, t->agent->id, t->id,
               (unsigned long long)pos);
    buf_append(&b, data, len);
    cluster_publish(h->cl, CLUSTER_TYPE_TERM_DATA, t->agent->project, b.data, b.len);
    buf_free(&b);
}

/* Owner: sends scrollback bytes [from, end) to the cluster in TERM_CHUNK pieces. */
static void relay_scrollback(hub *h, const task *t, uint64_t from)
{
    if (from < t->sb_start)
        from = t->sb_start;
    while (from < t->sb_end) {
        size_t n = (size_t)(t->sb_end - from);
        if (n > TERM_CHUNK)
            n = TERM_CHUNK;
        unsigned char tmp[TERM_CHUNK];
        for (size_t i = 0; i < n;) {
            size_t off = (size_t)((from + i) % t->sb_cap);
            size_t k = t->sb_cap - off;
            if (k > n - i)
                k = n - i;
            memcpy(tmp + i, t->sb + off, k);
            i += k;
        }
        relay_chunk(h, t, from, tmp, n);
        from += n;
    }
}

/* Viewer side: asks the owner for the bytes of t from what this instance already holds. */
static void relay_request(hub *h, const task *t)
{
    if (h->cl == NULL || t->agent->local)
        return;
    char req[240];
    int n = snprintf(req, sizeof req, "%s\t%s\t%s\t%llu", t->agent->project, t->agent->id, t->id,
                     (unsigned long long)(t->sb_end > 0 ? t->sb_end : 0));
    cluster_publish(h->cl, CLUSTER_TYPE_TERM_WATCH, NULL, req, (size_t)n);
}

static void relay_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hub *h = container_of(w, hub, relay_timer);
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if (a->local)
            continue;
        for (task *t = a->tasks; t != NULL; t = t->next) {
            if (t->subs != NULL && !t->ended)
                relay_request(h, t);
        }
    }
}

static void term_bytes(hub *h, task *t, const uint8_t *data, size_t len, uint64_t ts_ns)
{
    uint64_t pos = t->sb_end;
    if (h->cl != NULL && t->relay_until > util_mono_ns())
        relay_chunk(h, t, pos, data, len);
    sb_append(t, data, len);
    msg *m = NULL;
    for (conn *c = t->subs, *next; c != NULL; c = next) {
        next = c->sub_next;
        if (c->paused || c->term_behind || c->term_pos != pos)
            continue;
        if (m == NULL) {
            m = msg_new(data, len, TERMINAL_OPCODE, MSG_TERMINAL, 0);
            m->ts_ns = ts_ns;
        }
        c->term_pos = pos + len;
        uint64_t drops = c->drops_total;
        conn_send(c, m);
        if (c->drops_total != drops)
            c->term_pos = pos; /* dropped: catch up from scrollback once the queue drains */
    }
    if (m != NULL)
        g_metrics.events_in[MSG_TERMINAL]++;
    msg_unref(m);
}

void hub_conn_drained(hub *h, conn *c)
{
    if (c->endpoint == EP_EVENTS && c->replaying && c->state == CONN_WS) {
        replay_pump(h, c);
        return;
    }
    if (c->endpoint != EP_TERMINAL || c->sub_owner == NULL || c->state != CONN_WS)
        return;
    task *t = c->sub_owner;
    if (c->paused)
        return;
    size_t room = (size_t)h->cfg->send_queue / 2;
    if (room == 0)
        room = 1;
    if (c->term_pos < t->sb_start) {
        send_gap(c, t, "scrollback_overrun", t->sb_start - c->term_pos);
        c->term_pos = t->sb_start;
    }
    while (c->term_pos < t->sb_end && c->q_len < room) {
        size_t n = (size_t)(t->sb_end - c->term_pos);
        if (n > TERM_CHUNK)
            n = TERM_CHUNK;
        unsigned char tmp[TERM_CHUNK];
        for (size_t i = 0; i < n;) {
            size_t off = (size_t)((c->term_pos + i) % t->sb_cap);
            size_t k = t->sb_cap - off;
            if (k > n - i)
                k = n - i;
            memcpy(tmp + i, t->sb + off, k);
            i += k;
        }
        msg *m = msg_new(tmp, n, TERMINAL_OPCODE, MSG_TERMINAL, 1);
        conn_send(c, m);
        msg_unref(m);
        c->term_pos += n;
    }
    if (c->term_pos == t->sb_end) {
        c->term_behind = 0;
        if (t->ended)
            terminal_end_for(h, c, t);
    }
}

/* ---- ring side -------------------------------------------------------------------------------- */

void hub_ring_attached(hub *h, const ipc_identity *id)
{
    agent *a = find_agent(h, id, 1);
    a->rings++;
    a->closed_mono = 0; /* a new process continues the agent's tasks */
    a->died = 0;
    a->local = 1;
    snprintf(a->origin, sizeof a->origin, "%s", h->cfg->instance_id);
}

/* 1 if ev would make a new running task of a while it has --max-tasks-per-agent of them: the
 * event is then dropped, counted and logged (at most once a second), issue 17. */
static int task_over_limit(hub *h, agent *a, const ipc_event *ev)
{
    if (ev->type != IPC_EV_TASK_START && ev->type != IPC_EV_PROGRESS && ev->type != IPC_EV_TERM &&
        ev->type != IPC_EV_TERM_GAP)
        return 0;
    task *t = find_task(a, ev->task_id);
    if (t != NULL && !t->ended)
        return 0;
    if (t != NULL && ev->type != IPC_EV_TASK_START)
        return 0; /* late bytes or progress of an ended task do not restart it */
    long running = 0;
    for (task *u = a->tasks; u != NULL; u = u->next)
        running += !u->ended;
    if (running < h->cfg->max_tasks_per_agent)
        return 0;
    g_metrics.tasks_refused++;
    static uint64_t logged_mono;
    uint64_t now = util_mono_ns();
    if (now - logged_mono >= 1000000000ull) {
        log_warn("task event dropped: --max-tasks-per-agent reached",
                 "\"agent\":\"%s\",\"project\":\"%s\",\"task\":\"%s\",\"running\":%ld",
                 a->id, a->project, ev->task_id, running);
        logged_mono = now;
    }
    return 1;
}

void hub_ring_event(hub *h, const ipc_identity *id, const ipc_event *ev)
{
    agent *a = find_agent(h, id, 1);
    a->active_mono = util_mono_ns();
    if (task_over_limit(h, a, ev))
        return;
    switch (ev->type) {
    case IPC_EV_STATUS:
        agent_status(h, a, ev->status, ev->detail, ev->ts_ns);
        break;
    case IPC_EV_TASK_START: {
        char rs[24];
        task *t = find_task(a, ev->task_id);
        if (t != NULL && !t->ended)
            break; /* a second process of the agent re-announcing a running task */
        if (t != NULL && ev->ts_ns <= t->ended_ns)
            break; /* a late-read start from another process, older than the end we saw */
        t = t != NULL ? restart_task(h, a, t, ev->ts_ns) : get_task(h, a, ev->task_id, ev->ts_ns);
        t->started_ns = ev->ts_ns;
        snprintf(t->title, sizeof t->title, "%s", ev->detail);
        buf *b = &h->scratch;
        common_fields(b, "task_started", a, ev->ts_ns);
        json_kstr(b, "task_id", t->id);
        json_kstr(b, "run", util_u64str(rs, sizeof rs, t->started_ns));
        json_kstr(b, "title", t->title);
        publish(h, a, FILTER_EV_TASK_STARTED, MSG_TASK, 1, ev->ts_ns, 0);
        break;
    }
    case IPC_EV_TASK_END: {
        task *t = get_task(h, a, ev->task_id, ev->ts_ns);
        end_task(h, a, t, ev->status, ev->exit_code, ev->ts_ns);
        break;
    }
    case IPC_EV_PROGRESS: {
        task *t = get_task(h, a, ev->task_id, ev->ts_ns);
        if (t->ended)
            break;
        if (!t->has_progress || ev->current_step < t->rate_step0) {
            t->rate_t0_ns = ev->ts_ns;
            t->rate_step0 = ev->current_step;
        }
        t->has_progress = 1;
        t->cur = ev->current_step;
        t->total = ev->total_steps;
        snprintf(t->message, sizeof t->message, "%s", ev->detail);
        t->progress_ts_ns = ev->ts_ns;
        uint64_t interval = (uint64_t)h->cfg->progress_interval * 1000000ull;
        if (util_mono_ns() - t->progress_sent_mono >= interval && global_admit(h)) {
            send_progress(h, t); /* leading edge: the first update is not delayed */
        } else {
            t->progress_dirty = 1; /* trailing edge: the timer sends the latest value */
            if (!ev_is_active(&h->progress_timer)) {
                ev_timer_set(&h->progress_timer, (double)h->cfg->progress_interval / 1000.0, 0.);
                ev_timer_start(h->loop, &h->progress_timer);
            }
        }
        break;
    }
    case IPC_EV_TERM: {
        task *t = get_task(h, a, ev->task_id, ev->ts_ns);
        term_bytes(h, t, ev->bytes, ev->len, ev->ts_ns);
        break;
    }
    case IPC_EV_TERM_GAP: {
        task *t = get_task(h, a, ev->task_id, ev->ts_ns);
        t->term_lost += ev->lost;
        for (conn *c = t->subs, *next; c != NULL; c = next) {
            next = c->sub_next;
            send_gap(c, t, "ring_overrun", ev->lost);
        }
        break;
    }
    case IPC_EV_LOST: {
        buf *b = &h->scratch;
        common_fields(b, "gap", a, ev->ts_ns ? ev->ts_ns : util_now_ns());
        json_kstr(b, "reason", "ring_overrun");
        json_ku64(b, "count", ev->lost);
        publish(h, a, FILTER_EV_STATUS, MSG_CONTROL, 0, 0, 0);
        break;
    }
    }
}

void hub_ring_detached(hub *h, const ipc_identity *id, int clean)
{
    agent *a = find_agent(h, id, 1);
    a->active_mono = util_mono_ns();
    if (a->rings > 0)
        a->rings--;
    if (a->rings == 0)
        flush_pending_status(h, a); /* the agent's last word is not held back */
    if (a->rings == 0 && clean)
        a->closed_mono = a->active_mono; /* its running tasks end after --task-close-grace */
    if (a->rings > 0 || clean)
        return;
    g_metrics.agent_deaths++;
    a->died = 1;
    uint64_t now = util_now_ns();
    log_warn("agent ended without closing", "\"agent\":\"%s\",\"project\":\"%s\",\"pid\":%d",
             a->id, a->project, (int)id->pid);
    end_running_tasks(h, a, 3 /* failed */, 0, now);
    if (!a->has_status || (a->status != 3 && a->status != 4 && a->status != 5))
        publish_status(h, a, 3, "agent process ended without closing", now);
}

static void progress_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hub *h = container_of(w, hub, progress_timer);
    uint64_t now = util_mono_ns();
    uint64_t interval = (uint64_t)h->cfg->progress_interval * 1000000ull;
    double next = 0;
    for (agent *a = h->agents; a != NULL; a = a->next) {
        for (task *t = a->tasks; t != NULL; t = t->next) {
            if (!t->progress_dirty)
                continue;
            if (now - t->progress_sent_mono >= interval) {
                if (global_admit(h)) {
                    send_progress(h, t);
                } else {
                    next = 0.01; /* over --global-msg-rate: the latest value waits, coalescing */
                }
            } else {
                double left = (double)(interval - (now - t->progress_sent_mono)) / 1e9;
                if (next == 0 || left < next)
                    next = left;
            }
        }
    }
    if (next > 0) {
        ev_timer_set(&h->progress_timer, next, 0.);
        ev_timer_start(h->loop, &h->progress_timer);
    }
}

/* ---- connection side ------------------------------------------------------------------------- */

static void snapshot(hub *h, conn *c, buf *b)
{
    char ts[40];
    uint64_t now = util_now_ns();
    util_rfc3339(ts, sizeof ts, now);
    buf_puts(b, "{");
    json_kstr(b, "type", "snapshot");
    json_kstr(b, "timestamp", ts);
    json_ku64(b, "ts_ns", now);
    json_kstr(b, "epoch", hub_epoch(h));
    json_ku64(b, "seq", hub_seq(h));
    json_kbool(b, "stale", h->cl != NULL && !h->cluster_up);
    json_key(b, "agents");
    buf_puts(b, "[");
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if (!filter_match(&c->filt, FILTER_EV_ALL, a->id, a->project) ||
            !conn_may_see(c, a->project, a->id))
            continue;
        buf_puts(b, b->data[b->len - 1] == '[' ? "{" : ",{");
        json_kstr(b, "agent_id", a->id);
        json_kstr(b, "project_id", a->project);
        json_kstr(b, "owner", a->owner);
        if (a->has_status) {
            json_kstr(b, "status", status_name(a->status));
            util_rfc3339(ts, sizeof ts, a->status_ts_ns);
            json_kstr(b, "timestamp", ts);
            json_ku64(b, "ts_ns", a->status_ts_ns);
        } else {
            json_knull(b, "status");
        }
        json_kstr(b, "detail", a->detail);
        /* alive: not known to have died.  Shell agents publish from short-lived processes that
         * close cleanly, so "no ring open right now" alone says nothing. */
        json_kbool(b, "alive", !a->died);
        json_key(b, "tasks");
        buf_puts(b, "[");
        for (task *t = a->tasks; t != NULL; t = t->next) {
            if (t->ended)
                continue;
            buf_puts(b, b->data[b->len - 1] == '[' ? "{" : ",{");
            json_kstr(b, "title", t->title);
            json_kstr(b, "state", "running");
            json_kstr(b, "run", util_u64str(ts, sizeof ts, t->started_ns));
            util_rfc3339(ts, sizeof ts, t->started_ns);
            json_kstr(b, "started_at", ts);
            progress_fields(b, t);
            buf_puts(b, "}");
        }
        buf_puts(b, "]");
        history_render(h->hist, b, a->project, a->id);
        buf_puts(b, "}");
    }
    buf_puts(b, "]}");
}

void hub_subscribe_events(hub *h, conn *c, int resume, uint64_t resume_seq, const char *epoch)
{
    c->sub_next = h->event_subs;
    c->sub_prev = NULL;
    if (h->event_subs != NULL)
        h->event_subs->sub_prev = c;
    h->event_subs = c;
    c->sub_owner = h;
    buf b;
    buf_init(&b);
    if (h->cl != NULL) {
        /* B4: the snapshot first; then, resuming, the retained history up to the snapshot's seq
         * read from the cluster stream, while live events are held back so none jumps the queue. */
        snapshot(h, c, &b);
        conn_send_text(c, b.data, b.len, MSG_SNAPSHOT, 1);
        buf_free(&b);
        if (resume) {
            c->replay_snap_seq = hub_seq(h);
            c->replaying = 1;
            c->replay_fetching = 1;
            if (cluster_replay(h->cl, resume_seq, epoch, replay_event, replay_done, c) != 0)
                replay_done(c, -1, 0, "");
        }
        return;
    }
    int truncated = 0;
    uint64_t oldest = h->r_len ? h->replay[h->r_head].seq : h->seq + 1;
    if (resume) {
        /* Every event after resume_seq must still be retained, in this epoch. */
        truncated = strcmp(epoch, h->epoch) != 0 || resume_seq + 1 < oldest || resume_seq > h->seq;
        if (truncated)
            send_replay_truncated(h, c, epoch, resume_seq, oldest);
    }
    /* B4: the snapshot comes first; its seq says which persisted events it already reflects. */
    snapshot(h, c, &b);
    conn_send_text(c, b.data, b.len, MSG_SNAPSHOT, 1);
    buf_free(&b);
    if (resume && !truncated) {
        c->replaying = 1;
        c->replay_next = resume_seq + 1;
        replay_pump(h, c);
    }
}

/* The terminal of an ended task (live: the newest visible task of that id, ended, or NULL)
 * comes from the history, searched like the live tasks: only among the agents c may see.
 * Returns 0 served, -1 unknown (or not visible: one answer), -3 its output is no longer kept. */
static int terminal_from_history(hub *h, conn *c, const char *task_id, const char *agent_id,
                                 const char *project_id, const task *live)
{
    history_task *best = NULL;
    const agent *owner = NULL;
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if ((agent_id[0] != '\0' && strcmp(a->id, agent_id) != 0) ||
            (project_id[0] != '\0' && strcmp(a->project, project_id) != 0) ||
            !conn_may_see(c, a->project, a->id))
            continue;
        history_task *r = history_find(h->hist, a->project, a->id, task_id);
        if (r != NULL && (best == NULL || r->ended_ns > best->ended_ns)) {
            best = r;
            owner = a;
        }
    }
    if (best == NULL)
        return live == NULL ? -1 : -3; /* ended, and its record already left the history */
    if (best->tail_state == HISTORY_TAIL_REMOTE && h->cl != NULL) {
        history_redis_serve(h->cl, c, owner->id, owner->project, best);
        return 0;
    }
    return history_serve(c, owner->id, owner->project, best) == 0 ? 0 : -3;
}

/* The ended run of task_id started at run, from the history of the agents c may see.
 * Returns 0 served, -1 no such run visible, -3 its output is no longer kept. */
static int terminal_of_run(hub *h, conn *c, const char *task_id, const char *agent_id,
                           const char *project_id, uint64_t run)
{
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if ((agent_id[0] != '\0' && strcmp(a->id, agent_id) != 0) ||
            (project_id[0] != '\0' && strcmp(a->project, project_id) != 0) ||
            !conn_may_see(c, a->project, a->id))
            continue;
        history_task *r = history_find_run(h->hist, a->project, a->id, task_id, run);
        if (r == NULL)
            continue;
        if (r->tail_state == HISTORY_TAIL_REMOTE && h->cl != NULL) {
            history_redis_serve(h->cl, c, a->id, a->project, r);
            return 0;
        }
        return history_serve(c, a->id, a->project, r) == 0 ? 0 : -3;
    }
    return -1;
}

int hub_subscribe_terminal(hub *h, conn *c, const char *task_id, const char *agent_id,
                           const char *project_id, uint64_t run)
{
    /* Only among the tasks c may see: another project's task of the same id neither answers
     * (no existence oracle) nor shadows the user's own (D2). */
    task *found = NULL;
    for (agent *a = h->agents; a != NULL; a = a->next) {
        if ((agent_id[0] != '\0' && strcmp(a->id, agent_id) != 0) ||
            (project_id[0] != '\0' && strcmp(a->project, project_id) != 0) ||
            !conn_may_see(c, a->project, a->id))
            continue;
        task *t = find_task(a, task_id);
        if (t != NULL && (found == NULL || t->started_ns > found->started_ns) &&
            (run == 0 || (t->started_ns == run && !t->ended)))
            found = t;
    }
    if (run != 0 && found == NULL)
        return terminal_of_run(h, c, task_id, agent_id, project_id, run);
    if (found == NULL || found->ended)
        return terminal_from_history(h, c, task_id, agent_id, project_id, found);
    task *t = found;
    c->sub_owner = t;
    c->sub_prev = NULL;
    c->sub_next = t->subs;
    if (t->subs != NULL)
        t->subs->sub_prev = c;
    t->subs = c;
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    json_kstr(&b, "type", "terminal");
    char rs[24];
    json_kstr(&b, "task_id", t->id);
    json_kstr(&b, "run", util_u64str(rs, sizeof rs, t->started_ns));
    json_kstr(&b, "agent_id", t->agent->id);
    json_kstr(&b, "project_id", t->agent->project);
    json_ku64(&b, "scrollback_bytes", t->sb_end - t->sb_start);
    json_ku64(&b, "lost_bytes", t->term_lost);
    json_kbool(&b, "ended", t->ended);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    buf_free(&b);
    c->term_pos = t->sb_start;
    c->term_behind = 1;
    hub_conn_drained(h, c);
    if (!t->ended)
        relay_request(h, t);
    return 0;
}

void hub_unsubscribe(hub *h, conn *c)
{
    history_redis_cancel(c);
    if (c->replaying && h->cl != NULL)
        cluster_replay_cancel(h->cl, c);
    c->replaying = 0;
    c->replay_fetching = 0;
    while (c->rq_len > 0)
        msg_unref(rq_pop(c));
    free(c->rq);
    c->rq = NULL;
    c->rq_cap = 0;
    for (size_t i = 0; i < c->n_held; i++)
        msg_unref(c->held[i]);
    free(c->held);
    c->held = NULL;
    c->n_held = 0;
    if (c->sub_owner == NULL)
        return;
    conn **head = c->endpoint == EP_EVENTS ? &h->event_subs : &((task *)c->sub_owner)->subs;
    if (c->sub_prev != NULL)
        c->sub_prev->sub_next = c->sub_next;
    else
        *head = c->sub_next;
    if (c->sub_next != NULL)
        c->sub_next->sub_prev = c->sub_prev;
    c->sub_next = c->sub_prev = NULL;
    c->sub_owner = NULL;
}

void hub_rights_changed(hub *h, conn *c)
{
    if (!c->has_ident || c->sub_owner == NULL)
        return;
    if (c->endpoint == EP_TERMINAL) {
        const agent *a = ((task *)c->sub_owner)->agent;
        if (conn_may_see(c, a->project, a->id))
            return;
        g_metrics.tenancy_refusals[TENANCY_RIGHTS_REVOKED]++;
        log_info("terminal closed: rights revoked",
                 "\"conn\":%llu,\"user\":\"%s\",\"project\":\"%s\",\"agent\":\"%s\","
                 "\"reason\":\"refreshed token no longer allows the project\"",
                 (unsigned long long)c->id, c->ident.user, a->project, a->id);
        conn_close_ws(c, 4003, CLOSE_FORBIDDEN, "your token no longer allows this project");
        return;
    }
    /* Events: delivery checks the rights of every message already; the filter shrinks to the
     * projects still allowed (all of them gone: it matches nothing rather than everything). */
    filter_list *pl = &c->filt.projects;
    unsigned n = pl->n, kept = 0;
    for (unsigned i = 0; i < n; i++) {
        if (auth_allows_project(&c->ident, pl->ids[i])) {
            if (kept != i)
                memcpy(pl->ids[kept], pl->ids[i], sizeof pl->ids[0]);
            kept++;
        }
    }
    if (kept == n)
        return;
    pl->n = kept;
    if (kept == 0) {
        filter_list_free(pl);
        c->filt.types = 0;
    }
    hub_send_subscribed(h, c);
}

void hub_send_subscribed(hub *h, conn *c)
{
    (void)h;
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"type\":\"subscribed\",\"filters\":{");
    const filter_list *lists[] = {&c->filt.agents, &c->filt.projects};
    const char *names[] = {"agent_ids", "project_ids"};
    for (int i = 0; i < 2; i++) {
        json_key(&b, names[i]);
        buf_puts(&b, "[");
        for (unsigned k = 0; k < lists[i]->n; k++) {
            if (k > 0)
                buf_puts(&b, ",");
            json_str(&b, lists[i]->ids[k], strlen(lists[i]->ids[k]));
        }
        buf_puts(&b, "]");
    }
    json_key(&b, "event_types");
    buf_puts(&b, "[");
    int first = 1;
    for (uint32_t bit = 1; bit <= FILTER_EV_TASK_ENDED; bit <<= 1) {
        if (c->filt.types & bit) {
            if (!first)
                buf_puts(&b, ",");
            json_str(&b, filter_type_name(bit), strlen(filter_type_name(bit)));
            first = 0;
        }
    }
    buf_puts(&b, "]}}");
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    buf_free(&b);
}

const char *hub_epoch(const hub *h)
{
    return h->cl != NULL ? h->cluster_epoch : h->epoch;
}

uint64_t hub_seq(const hub *h)
{
    return h->cl != NULL ? h->cluster_seq : h->seq;
}

void hub_set_cluster(hub *h, cluster *cl)
{
    h->cl = cl;
    if (cl != NULL)
        ev_timer_start(h->loop, &h->relay_timer);
    else
        ev_timer_stop(h->loop, &h->relay_timer);
}

/* ---- cluster side ------------------------------------------------------------------------------ */

static const char *jstr(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static uint64_t jint(json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

static int status_parse(const char *name)
{
    for (unsigned i = 0; i < ARRAY_LEN(status_names); i++) {
        if (strcmp(status_names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

/* Applies the state change an event from another instance describes. */
static void apply_remote(hub *h, agent *a, const char *type, json_t *o, uint64_t ts_ns)
{
    if (strcmp(type, "agent_status") == 0) {
        int st = status_parse(jstr(o, "new_status"));
        if (st >= 0) {
            a->has_status = 1;
            a->status = (uint8_t)st;
            snprintf(a->detail, sizeof a->detail, "%s", jstr(o, "detail"));
            a->status_ts_ns = ts_ns;
        }
        return;
    }
    const char *task_id = jstr(o, "task_id");
    if (!filter_id_valid(task_id, strlen(task_id)))
        return;
    task *t = get_task(h, a, task_id, ts_ns);
    if (strcmp(type, "task_started") == 0 && t->ended && ts_ns > t->ended_ns)
        t = restart_task(h, a, t, ts_ns);
    if (strcmp(type, "task_started") == 0) {
        t->ended = 0;
        t->started_ns = ts_ns;
        snprintf(t->title, sizeof t->title, "%s", jstr(o, "title"));
    } else if (strcmp(type, "task_ended") == 0) {
        int st = status_parse(jstr(o, "outcome"));
        t->ended = 1;
        t->ended_ns = ts_ns;
        t->outcome = st >= 0 ? (uint8_t)st : 3;
        t->exit_code = (int32_t)json_integer_value(json_object_get(o, "exit_code"));
        record_history(h, a, t, a->local ? HISTORY_TAIL_HELD : HISTORY_TAIL_REMOTE);
        for (conn *c = t->subs, *next; c != NULL; c = next) {
            next = c->sub_next;
            if (!c->term_behind && !c->paused)
                terminal_end_for(h, c, t);
        }
        trim_tasks(a);
    } else if (strcmp(type, "progress") == 0) {
        t->has_progress = 1;
        t->cur = (uint32_t)jint(o, "current_step");
        t->total = (uint32_t)jint(o, "total_steps");
        snprintf(t->message, sizeof t->message, "%s", jstr(o, "message"));
        t->progress_ts_ns = ts_ns;
    }
}

/* Copies the id field [p, e) into out; returns 0 or -1 if it is not a valid id. */
static int relay_id(const char *p, const char *e, char out[IPC_ID_MAX + 1])
{
    size_t n = (size_t)(e - p);
    if (!filter_id_valid(p, n) || n > IPC_ID_MAX)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

/* Splits "project\tagent\ttask\tnumber" (the number ends at '\n' or the end); returns 0 or -1. */
static int relay_header(const char *p, size_t len, char project_id[IPC_ID_MAX + 1],
                        char agent_id[IPC_ID_MAX + 1], char task_id[IPC_ID_MAX + 1], uint64_t *num,
                        size_t *consumed)
{
    const char *end = p + len, *f[4];
    f[0] = p;
    for (int i = 1; i < 4; i++) {
        const char *tab = memchr(f[i - 1], '\t', (size_t)(end - f[i - 1]));
        if (tab == NULL)
            return -1;
        f[i] = tab + 1;
    }
    const char *nl = memchr(f[3], '\n', (size_t)(end - f[3]));
    const char *ne = nl != NULL ? nl : end;
    size_t nlen = (size_t)(ne - f[3]);
    if (relay_id(f[0], f[1] - 1, project_id) != 0 || relay_id(f[1], f[2] - 1, agent_id) != 0 ||
        relay_id(f[2], f[3] - 1, task_id) != 0 || nlen == 0 || nlen > 20)
        return -1;
    char num_s[24];
    memcpy(num_s, f[3], nlen);
    num_s[nlen] = '\0';
    char *e;
    *num = strtoull(num_s, &e, 10);
    if (*e != '\0')
        return -1;
    *consumed = nl != NULL ? (size_t)(nl + 1 - p) : len;
    return 0;
}

static void remote_terminal(hub *h, const char *origin, uint32_t type, const char *p, size_t len)
{
    char project_id[IPC_ID_MAX + 1], agent_id[IPC_ID_MAX + 1], task_id[IPC_ID_MAX + 1];
    uint64_t num;
    size_t used;
    if (relay_header(p, len, project_id, agent_id, task_id, &num, &used) != 0)
        return;
    agent *a = lookup_agent(h, project_id, agent_id);
    if (a == NULL)
        return;
    task *t = find_task(a, task_id);
    if (t == NULL)
        return;
    if (type == CLUSTER_TYPE_TERM_WATCH) {
        if (!a->local)
            return; /* not ours to serve */
        int fresh = t->relay_until <= util_mono_ns();
        t->relay_until = util_mono_ns() + (uint64_t)RELAY_TTL_S * 1000000000ull;
        if (fresh || num < t->sb_end)
            relay_scrollback(h, t, num);
        return;
    }
    if (a->local)
        return; /* our own bytes */
    if (strcmp(origin, a->origin) != 0) {
        /* Bytes for an agent this instance knows from another instance: not from its owner. */
        char eo[96], ea[96];
        g_metrics.tenancy_refusals[TENANCY_RELAY_NOT_OWNER]++;
        log_warn("terminal bytes refused",
                 "\"origin\":\"%s\",\"owner\":\"%s\",\"project\":\"%s\",\"agent\":\"%s\","
                 "\"reason\":\"not from the agent's instance\"",
                 log_esc(eo, sizeof eo, origin, strlen(origin)),
                 log_esc(ea, sizeof ea, a->origin, strlen(a->origin)), a->project, a->id);
        return;
    }
    const uint8_t *data = (const uint8_t *)p + used;
    size_t n = len - used;
    uint64_t pos = num;
    if (t->sb_end == 0 && t->sb_start == 0) {
        t->sb_start = t->sb_end = pos; /* first bytes seen here: the owner's position */
        for (conn *c = t->subs; c != NULL; c = c->sub_next) {
            if (c->term_pos < pos)
                c->term_pos = pos; /* they had nothing yet: no gap */
        }
    } else if (pos + n <= t->sb_end) {
        return; /* already have them */
    } else if (pos < t->sb_end) {
        data += t->sb_end - pos; /* overlap */
        n -= (size_t)(t->sb_end - pos);
        pos = t->sb_end;
    } else if (pos > t->sb_end) {
        /* lost on the way: viewers catch up past the hole and are told (gap) */
        t->term_lost += pos - t->sb_end;
        t->sb_start = t->sb_end = pos;
        for (conn *c = t->subs; c != NULL; c = c->sub_next) {
            c->term_behind = 1; /* the catch-up reports the hole, then follows live */
            conn_mark_dirty(c);
        }
    }
    term_bytes(h, t, data, n, util_now_ns());
}

void hub_remote_event(hub *h, const char *origin, uint32_t type, const char *json, size_t len)
{
    if (type == CLUSTER_TYPE_TERM_WATCH || type == CLUSTER_TYPE_TERM_DATA) {
        if (strcmp(origin, h->cfg->instance_id) != 0)
            remote_terminal(h, origin, type, json, len);
        return;
    }
    json_error_t err;
    json_t *o = json_loadb(json, len, 0, &err);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        log_warn("cluster event is not a JSON object: ignored", "\"origin\":\"%s\"", origin);
        return;
    }
    const char *etype = jstr(o, "type");
    const char *agent_id = jstr(o, "agent_id");
    const char *project_id = jstr(o, "project_id");
    if (!filter_id_valid(agent_id, strlen(agent_id)) ||
        !filter_id_valid(project_id, strlen(project_id))) {
        json_decref(o);
        return;
    }
    ipc_identity id;
    memset(&id, 0, sizeof id);
    snprintf(id.agent_id, sizeof id.agent_id, "%s", agent_id);
    snprintf(id.project_id, sizeof id.project_id, "%s", project_id);
    agent *a = find_agent(h, &id, 1);
    a->active_mono = util_mono_ns();
    uint64_t ts_ns = jint(o, "ts_ns");
    if (strcmp(origin, h->cfg->instance_id) != 0) {
        apply_remote(h, a, etype, o, ts_ns);
        if (a->rings == 0)
            snprintf(a->origin, sizeof a->origin, "%s", origin);
    }
    uint32_t ftype;
    msg_kind kind;
    int persisted = 0;
    uint64_t key = 0;
    if (strcmp(etype, "agent_status") == 0) {
        ftype = FILTER_EV_STATUS, kind = MSG_STATUS, persisted = 1;
    } else if (strcmp(etype, "task_started") == 0) {
        ftype = FILTER_EV_TASK_STARTED, kind = MSG_TASK, persisted = 1;
    } else if (strcmp(etype, "task_ended") == 0) {
        ftype = FILTER_EV_TASK_ENDED, kind = MSG_TASK, persisted = 1;
    } else if (strcmp(etype, "progress") == 0) {
        ftype = FILTER_EV_PROGRESS, kind = MSG_PROGRESS;
        task *t = find_task(a, jstr(o, "task_id"));
        key = t != NULL ? ((uint64_t)(uintptr_t)t | 1u) : 0;
    } else {
        ftype = FILTER_EV_STATUS, kind = MSG_CONTROL;
    }
    uint64_t seq = persisted ? jint(o, "seq") : 0;
    if (persisted) {
        const char *epoch = jstr(o, "epoch");
        if (seq > h->cluster_seq || strcmp(epoch, h->cluster_epoch) != 0) {
            h->cluster_seq = seq;
            snprintf(h->cluster_epoch, sizeof h->cluster_epoch, "%s", epoch);
        }
    }
    deliver_local(h, a, json, len, ftype, kind, persisted, seq, ts_ns, key);
    json_decref(o);
}

void hub_remote_agent(hub *h, const char *json, size_t len)
{
    json_error_t err;
    json_t *o = json_loadb(json, len, 0, &err);
    if (o == NULL || !json_is_object(o)) {
        json_decref(o);
        return;
    }
    const char *agent_id = jstr(o, "agent_id");
    const char *project_id = jstr(o, "project_id");
    if (filter_id_valid(agent_id, strlen(agent_id)) &&
        filter_id_valid(project_id, strlen(project_id))) {
        ipc_identity id;
        memset(&id, 0, sizeof id);
        snprintf(id.agent_id, sizeof id.agent_id, "%s", agent_id);
        snprintf(id.project_id, sizeof id.project_id, "%s", project_id);
        agent *a = find_agent(h, &id, 1);
        if (a->rings == 0) { /* a local agent's own state is authoritative here */
            int st = status_parse(jstr(o, "status"));
            if (st >= 0) {
                a->has_status = 1;
                a->status = (uint8_t)st;
                a->status_ts_ns = jint(o, "ts_ns");
            }
            snprintf(a->detail, sizeof a->detail, "%s", jstr(o, "detail"));
            snprintf(a->owner, sizeof a->owner, "%s", jstr(o, "owner"));
            snprintf(a->origin, sizeof a->origin, "%s", jstr(o, "instance"));
        }
    }
    json_decref(o);
}

void hub_cluster_state(hub *h, int available)
{
    if (h->cluster_up == available)
        return;
    h->cluster_up = available;
    log_write(available ? LOG_INFO : LOG_WARN,
              available ? "cluster view complete" : "cluster view incomplete: events are stale",
              NULL);
    /* Clients get a fresh snapshot whenever the cluster view changes, marked stale or not. */
    buf b;
    buf_init(&b);
    for (conn *c = h->event_subs, *next; c != NULL; c = next) {
        next = c->sub_next;
        buf_reset(&b);
        snapshot(h, c, &b);
        conn_send_text(c, b.data, b.len, MSG_SNAPSHOT, 1);
    }
    buf_free(&b);
}

/* Stores a local agent's state in the cluster for other instances' snapshots. */
static void share_agent(hub *h, const agent *a)
{
    if (h->cl == NULL || a->rings == 0)
        return;
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    json_kstr(&b, "agent_id", a->id);
    json_kstr(&b, "project_id", a->project);
    json_kstr(&b, "owner", a->owner);
    if (a->has_status)
        json_kstr(&b, "status", status_name(a->status));
    else
        json_knull(&b, "status");
    json_kstr(&b, "detail", a->detail);
    json_ku64(&b, "ts_ns", a->status_ts_ns);
    json_ku64(&b, "seen_ms", util_now_ns() / 1000000ull); /* refreshed every sweep while alive */
    json_kstr(&b, "instance", h->cfg->instance_id);
    buf_puts(&b, "}");
    cluster_put_agent(h->cl, a->project, a->id, b.data, b.len);
    buf_free(&b);
}

/* ---- cluster resume ---------------------------------------------------------------------------- */

static int replay_event(void *ud, const char *json, size_t len, uint64_t seq)
{
    conn *c = ud;
    if (seq > c->replay_snap_seq)
        return 0; /* newer than the snapshot: it comes live (held meanwhile) */
    json_error_t err;
    json_t *o = json_loadb(json, len, 0, &err);
    if (o == NULL)
        return 0;
    const char *etype = jstr(o, "type");
    uint32_t type = strcmp(etype, "agent_status") == 0   ? FILTER_EV_STATUS
                    : strcmp(etype, "task_started") == 0 ? FILTER_EV_TASK_STARTED
                                                         : FILTER_EV_TASK_ENDED;
    const char *agent_id = jstr(o, "agent_id"), *project_id = jstr(o, "project_id");
    if (filter_match(&c->filt, type, agent_id, project_id) &&
        conn_may_see(c, project_id, agent_id)) {
        msg *m = msg_new(json, len, 1, MSG_TASK, 1);
        m->seq = seq;
        rq_push(c, m);
        msg_unref(m);
    }
    json_decref(o);
    replay_pump(c->srv->hub, c);
    return c->rq_len >= REPLAY_BACKLOG_MAX; /* pause the read until the client takes some */
}

static void replay_done(void *ud, int status, uint64_t last_seq, const char *epoch)
{
    (void)last_seq;
    (void)epoch;
    conn *c = ud;
    c->replay_fetching = 0;
    c->replay_status = status;
    replay_pump(c->srv->hub, c);
}

/* The cluster replay is read and queued: the held live events follow (or, if it failed or too
 * many were held, replay_truncated and a fresh snapshot first). */
static void replay_finish_cluster(hub *h, conn *c)
{
    c->replaying = 0;
    if (c->replay_status != 0 || c->held_overflow) {
        char json[160];
        int n = snprintf(json, sizeof json,
                         "{\"type\":\"replay_truncated\",\"epoch\":\"%s\",\"reason\":\"%s\"}",
                         hub_epoch(h), c->replay_status == 1 ? "window" : "unavailable");
        conn_send_text(c, json, (size_t)n, MSG_CONTROL, 1);
        buf b;
        buf_init(&b);
        snapshot(h, c, &b);
        conn_send_text(c, b.data, b.len, MSG_SNAPSHOT, 1);
        buf_free(&b);
    }
    for (size_t i = 0; i < c->n_held; i++) {
        if (!c->held_overflow && (c->held[i]->seq == 0 || c->held[i]->seq > c->replay_snap_seq))
            conn_send(c, c->held[i]);
        msg_unref(c->held[i]);
    }
    free(c->held);
    c->held = NULL;
    c->n_held = 0;
    c->held_overflow = 0;
    free(c->rq);
    c->rq = NULL;
    c->rq_cap = 0;
}

void hub_render_metrics(buf *b, void *ud)
{
    hub *h = ud;
    size_t agents = 0, tasks = 0, running = 0;
    for (agent *a = h->agents; a != NULL; a = a->next) {
        agents++;
        for (task *t = a->tasks; t != NULL; t = t->next) {
            tasks++;
            running += (size_t)!t->ended;
        }
    }
    buf_printf(b, "# HELP ringside_agents Agents known to this instance.\n"
                  "# TYPE ringside_agents gauge\nringside_agents %zu\n",
               agents);
    buf_printf(b, "# HELP ringside_tasks_running Tasks started and not ended.\n"
                  "# TYPE ringside_tasks_running gauge\nringside_tasks_running %zu\n",
               running);
    buf_printf(b, "# HELP ringside_agents_evicted_total Agents forgotten after being gone longer "
                  "than the replay window.\n# TYPE ringside_agents_evicted_total counter\n"
                  "ringside_agents_evicted_total %llu\n",
               (unsigned long long)h->evicted);
    buf_printf(b, "# HELP ringside_replay_events Persisted events held for replay.\n"
                  "# TYPE ringside_replay_events gauge\nringside_replay_events %zu\n",
               h->r_len);
    buf_printf(b, "# HELP ringside_sequence Last sequence number assigned.\n"
                  "# TYPE ringside_sequence gauge\nringside_sequence %llu\n",
               (unsigned long long)hub_seq(h));
    (void)tasks;
    history_render_metrics(b, h->hist);
    if (h->cl != NULL)
        history_redis_render_metrics(b);
}

static void agent_free(agent *a)
{
    while (a->tasks != NULL) {
        task *t = a->tasks;
        a->tasks = t->next;
        task_free(t);
    }
    free(a);
}

/* Agents without a ring, a replay entry or a terminal viewer, idle for longer than the replay
 * window, are forgotten: memory follows the agents that matter, not every id ever seen. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hub *h = container_of(w, hub, sweep_timer);
    uint64_t now = util_mono_ns();
    long win_s = h->cfg->history_window > h->cfg->replay_window ? h->cfg->history_window
                                                                   : h->cfg->replay_window;
    uint64_t window = (uint64_t)win_s * 1000000000ull;
    replay_expire(h, now, (size_t)h->cfg->replay_max);
    history_expire(h->hist, now);
    for (agent **pp = &h->agents; *pp != NULL;) {
        agent *a = *pp;
        int watched = 0;
        for (task *t = a->tasks; t != NULL; t = t->next)
            watched |= t->subs != NULL;
        if (a->rings == 0 && a->replay_refs == 0 && !watched && now - a->active_mono > window) {
            *pp = a->next;
            h->evicted++;
            /* ws:agents:{state} forgets it too once its owner stopped refreshing it: ids of
             * long-gone agents are not kept around */
            cluster_trim_agent(h->cl, a->project, a->id, window / 1000000ull);
            history_forget(h->hist, a->project, a->id);
            agent_free(a);
        } else {
            if (a->rings > 0)
                share_agent(h, a); /* alive here: keep (or put back) its entry in ws:agents */
            pp = &a->next;
        }
    }
}

/* Issue 17: tasks that never end are ended — those of an agent whose last ring closed cleanly
 * --task-close-grace ago (no process continued them), and any idle for --task-idle-timeout —
 * with outcome "cancelled", counted and logged. */
static void task_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    hub *h = container_of(w, hub, task_timer);
    uint64_t now = util_mono_ns();
    uint64_t grace = (uint64_t)h->cfg->task_close_grace * 1000000000ull;
    uint64_t idle = (uint64_t)h->cfg->task_idle_timeout * 1000000000ull;
    for (agent *a = h->agents; a != NULL; a = a->next) {
        unsigned n = 0;
        const char *why = NULL;
        if (grace != 0 && a->rings == 0 && a->closed_mono != 0 && now - a->closed_mono >= grace) {
            a->closed_mono = 0;
            n = end_running_tasks(h, a, 5 /* cancelled */, 0, util_now_ns());
            g_metrics.tasks_ended_after_close += n;
            why = "closed";
        } else if (idle != 0 && now > idle) {
            n = end_running_tasks(h, a, 5 /* cancelled */, now - idle, util_now_ns());
            g_metrics.tasks_expired_idle += n;
            why = "idle";
        }
        if (n > 0)
            log_info("tasks ended by the sidecar",
                     "\"agent\":\"%s\",\"project\":\"%s\",\"tasks\":%u,\"reason\":\"%s\"",
                     a->id, a->project, n, why);
    }
}

hub *hub_new(struct ev_loop *loop, const config *cfg)
{
    hub *h = xcalloc(1, sizeof *h);
    h->loop = loop;
    h->cfg = cfg;
    h->g_tokens = (double)cfg->global_msg_rate;
    h->g_tokens_mono = util_mono_ns();
    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(h->epoch, sizeof h->epoch, rnd, sizeof rnd);
    buf_init(&h->scratch);
    h->hist = history_new(cfg);
    ev_timer_init(&h->progress_timer, progress_timer_cb, 0.1, 0.);
    /* at most half the window: an owner refreshes its live agents' ws:agents entries each sweep,
     * so a live entry is never older than the window that trims it */
    double sweep = cfg->replay_window < 60 ? (double)cfg->replay_window / 2 : 30.;
    ev_timer_init(&h->sweep_timer, sweep_cb, sweep, sweep);
    ev_timer_start(loop, &h->sweep_timer);
    /* A quarter of the shorter delay (1..30 s): a task ends at most 25 % late. */
    double shortest = cfg->task_close_grace > 0 ? (double)cfg->task_close_grace : 120.;
    if (cfg->task_idle_timeout > 0 && (double)cfg->task_idle_timeout < shortest)
        shortest = (double)cfg->task_idle_timeout;
    double period = shortest / 4.0 < 0.25 ? 0.25 : shortest / 4.0 > 30. ? 30. : shortest / 4.0;
    ev_timer_init(&h->task_timer, task_timer_cb, period, period);
    ev_timer_start(loop, &h->task_timer);
    ev_timer_init(&h->relay_timer, relay_timer_cb, RELAY_RENEW_S, RELAY_RENEW_S);
    ev_timer_init(&h->budget_timer, budget_timer_cb, 1.0, 0.);
    return h;
}

void hub_free(hub *h)
{
    if (h == NULL)
        return;
    h->closing = 1;
    ev_timer_stop(h->loop, &h->progress_timer);
    ev_timer_stop(h->loop, &h->sweep_timer);
    ev_timer_stop(h->loop, &h->task_timer);
    ev_timer_stop(h->loop, &h->relay_timer);
    ev_timer_stop(h->loop, &h->budget_timer);
    for (size_t i = 0; i < h->r_len; i++)
        msg_unref(h->replay[(h->r_head + i) % h->r_cap].m);
    free(h->replay);
    while (h->agents != NULL) {
        agent *a = h->agents;
        h->agents = a->next;
        agent_free(a);
    }
    history_free(h->hist);
    buf_free(&h->scratch);
    free(h);
}
