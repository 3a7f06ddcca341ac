#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "util.h"

#define HISTORY_CHUNK 4096 /* terminal frames, as the live path (B6) */

/* The records of one agent, (project, id): a ring of at most --history-tasks, oldest at `head`. */
typedef struct hagent {
    char project[IPC_ID_MAX + 1];
    char id[IPC_ID_MAX + 1];
    history_task **slots;
    unsigned head, n;
    struct hagent *next;
} hagent;

typedef enum evict_reason { EVICT_BUDGET, EVICT_WINDOW, EVICT_COUNT, EVICT_REASONS } evict_reason;
static const char *const evict_names[EVICT_REASONS] = {"budget", "window", "count"};

struct history {
    const config *cfg;
    unsigned per_agent;     /* --history-tasks */
    size_t tail_max;        /* --history-tail */
    size_t budget;          /* --history-bytes */
    uint64_t window_ns;     /* --history-window */
    hagent *agents;
    history_task *lru_head; /* most recently used tail first */
    history_task *lru_tail;
    size_t bytes;           /* sum of held tails */
    uint64_t records;       /* records held */
    uint64_t tails;         /* tails held */
    uint64_t evicted[EVICT_REASONS]; /* tails dropped, by reason */
};

history *history_new(const config *cfg)
{
    history *hs = xcalloc(1, sizeof *hs);
    hs->cfg = cfg;
    hs->per_agent = (unsigned)cfg->history_tasks;
    hs->tail_max = (size_t)cfg->history_tail;
    hs->budget = (size_t)cfg->history_bytes;
    hs->window_ns = (uint64_t)cfg->history_window * 1000000000ull;
    return hs;
}

static void lru_unlink(history *hs, history_task *t)
{
    if (t->lru_prev != NULL)
        t->lru_prev->lru_next = t->lru_next;
    else if (hs->lru_head == t)
        hs->lru_head = t->lru_next;
    if (t->lru_next != NULL)
        t->lru_next->lru_prev = t->lru_prev;
    else if (hs->lru_tail == t)
        hs->lru_tail = t->lru_prev;
    t->lru_prev = t->lru_next = NULL;
}

static void lru_push(history *hs, history_task *t)
{
    t->lru_prev = NULL;
    t->lru_next = hs->lru_head;
    if (hs->lru_head != NULL)
        hs->lru_head->lru_prev = t;
    hs->lru_head = t;
    if (hs->lru_tail == NULL)
        hs->lru_tail = t;
}

/* Drops t's tail (the record stays); counts and logs why. */
static void drop_tail(history *hs, history_task *t, evict_reason why)
{
    if (t->tail_state != HISTORY_TAIL_HELD)
        return;
    lru_unlink(hs, t);
    hs->bytes -= t->tail_len;
    hs->tails--;
    hs->evicted[why]++;
    log_debug("history tail dropped", "\"task\":\"%s\",\"bytes\":%zu,\"reason\":\"%s\"",
              t->task_id, t->tail_len, evict_names[why]);
    free(t->tail);
    t->tail = NULL;
    t->tail_len = 0;
    t->tail_state = HISTORY_TAIL_EXPIRED;
}

static void record_free(history *hs, history_task *t, evict_reason why)
{
    drop_tail(hs, t, why);
    hs->records--;
    free(t);
}

static hagent *find_hagent(const history *hs, const char *project_id, const char *agent_id)
{
    for (hagent *a = hs->agents; a != NULL; a = a->next) {
        if (strcmp(a->id, agent_id) == 0 && strcmp(a->project, project_id) == 0)
            return a;
    }
    return NULL;
}

static history_task *slot(const history *hs, const hagent *a, unsigned i)
{
    return a->slots[(a->head + i) % hs->per_agent];
}

void history_record(history *hs, const char *project_id, const char *agent_id,
                    const history_task *t, const unsigned char *ring, size_t ring_cap,
                    uint64_t start, uint64_t end)
{
    if (hs->per_agent == 0)
        return;
    hagent *a = find_hagent(hs, project_id, agent_id);
    if (a == NULL) {
        a = xcalloc(1, sizeof *a);
        snprintf(a->project, sizeof a->project, "%s", project_id);
        snprintf(a->id, sizeof a->id, "%s", agent_id);
        a->slots = xcalloc(hs->per_agent, sizeof *a->slots);
        a->next = hs->agents;
        hs->agents = a;
    }
    for (unsigned i = 0; i < a->n; i++) {
        const history_task *r = slot(hs, a, i);
        if (r->ended_ns == t->ended_ns && strcmp(r->task_id, t->task_id) == 0)
            return;
    }
    if (a->n == hs->per_agent) {
        record_free(hs, a->slots[a->head], EVICT_COUNT);
        a->slots[a->head] = NULL;
        a->head = (a->head + 1) % hs->per_agent;
        a->n--;
    }
    history_task *r = xcalloc(1, sizeof *r);
    memcpy(r->task_id, t->task_id, sizeof r->task_id);
    memcpy(r->title, t->title, sizeof r->title);
    r->outcome = t->outcome;
    r->exit_code = t->exit_code;
    r->started_ns = t->started_ns;
    r->ended_ns = t->ended_ns;
    r->output_bytes = t->output_bytes;
    r->lost_bytes = t->lost_bytes;
    r->ended_mono = util_mono_ns();
    r->tail_state = t->tail_state == HISTORY_TAIL_REMOTE ? HISTORY_TAIL_REMOTE : HISTORY_TAIL_HELD;
    if (hs->tail_max == 0)
        r->tail_state = HISTORY_TAIL_EXPIRED; /* --history-tail 0: no output is kept at all */
    a->slots[(a->head + a->n) % hs->per_agent] = r;
    a->n++;
    hs->records++;
    if (r->tail_state != HISTORY_TAIL_HELD)
        return;
    uint64_t len = ring != NULL && ring_cap > 0 && end > start ? end - start : 0;
    if (len > ring_cap)
        len = ring_cap;
    if (len > hs->tail_max)
        len = hs->tail_max;
    if (len > hs->budget)
        len = hs->budget;
    if (len > 0) {
        r->tail = xmalloc((size_t)len);
        for (uint64_t pos = end - len, i = 0; i < len;) {
            size_t off = (size_t)(pos % ring_cap);
            size_t k = ring_cap - off;
            if (k > len - i)
                k = (size_t)(len - i);
            memcpy(r->tail + i, ring + off, k);
            i += k;
            pos += k;
        }
    }
    r->tail_len = (size_t)len;
    hs->bytes += r->tail_len;
    hs->tails++;
    lru_push(hs, r);
    while (hs->bytes > hs->budget && hs->lru_tail != NULL && hs->lru_tail != r)
        drop_tail(hs, hs->lru_tail, EVICT_BUDGET);
}

/* The newest record of task_id (of the run started at started_ns when that is not 0). */
static history_task *find_record(history *hs, const char *project_id, const char *agent_id,
                                 const char *task_id, uint64_t started_ns)
{
    hagent *a = find_hagent(hs, project_id, agent_id);
    if (a == NULL)
        return NULL;
    for (unsigned i = a->n; i-- > 0;) {
        history_task *r = slot(hs, a, i);
        if (strcmp(r->task_id, task_id) != 0 || (started_ns != 0 && r->started_ns != started_ns))
            continue;
        if (r->tail_state == HISTORY_TAIL_HELD) {
            lru_unlink(hs, r);
            lru_push(hs, r);
        }
        return r;
    }
    return NULL;
}

history_task *history_find(history *hs, const char *project_id, const char *agent_id,
                           const char *task_id)
{
    return find_record(hs, project_id, agent_id, task_id, 0);
}

history_task *history_find_run(history *hs, const char *project_id, const char *agent_id,
                               const char *task_id, uint64_t started_ns)
{
    return started_ns == 0 ? NULL : find_record(hs, project_id, agent_id, task_id, started_ns);
}

void history_render(const history *hs, buf *b, const char *project_id, const char *agent_id)
{
    json_key(b, "history");
    buf_puts(b, "[");
    const hagent *a = find_hagent(hs, project_id, agent_id);
    for (unsigned i = a != NULL ? a->n : 0; i-- > 0;) {
        const history_task *r = slot(hs, a, i);
        char ts[40];
        buf_puts(b, b->data[b->len - 1] == '[' ? "{" : ",{");
        json_kstr(b, "task_id", r->task_id);
        json_kstr(b, "run", util_u64str(ts, sizeof ts, r->started_ns));
        json_kstr(b, "title", r->title);
        json_kstr(b, "state", r->outcome);
        json_ki64(b, "exit_code", r->exit_code);
        util_rfc3339(ts, sizeof ts, r->started_ns);
        json_kstr(b, "started_at", ts);
        util_rfc3339(ts, sizeof ts, r->ended_ns);
        json_kstr(b, "ended_at", ts);
        uint64_t d = r->ended_ns > r->started_ns ? r->ended_ns - r->started_ns : 0;
        json_kdbl(b, "duration_seconds", (double)d / 1e9, 3);
        json_ku64(b, "output_bytes", r->output_bytes);
        json_kbool(b, "output_retained", r->tail_state != HISTORY_TAIL_EXPIRED);
        buf_puts(b, "}");
    }
    buf_puts(b, "]");
}

int history_serve(conn *c, const char *agent_id, const char *project_id, const history_task *t)
{
    if (t->tail_state != HISTORY_TAIL_HELD)
        return -1;
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    json_kstr(&b, "type", "terminal");
    char run[24];
    json_kstr(&b, "task_id", t->task_id);
    json_kstr(&b, "run", util_u64str(run, sizeof run, t->started_ns));
    json_kstr(&b, "agent_id", agent_id);
    json_kstr(&b, "project_id", project_id);
    json_ku64(&b, "scrollback_bytes", t->tail_len);
    json_ku64(&b, "lost_bytes", t->lost_bytes);
    json_ku64(&b, "output_bytes", t->output_bytes);
    json_kbool(&b, "ended", 1);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    for (size_t off = 0; off < t->tail_len; off += HISTORY_CHUNK) {
        size_t n = t->tail_len - off < HISTORY_CHUNK ? t->tail_len - off : HISTORY_CHUNK;
        msg *m = msg_new(t->tail + off, n, 2 /* binary */, MSG_TERMINAL, 1);
        conn_send(c, m);
        msg_unref(m);
    }
    char ts[40];
    util_rfc3339(ts, sizeof ts, t->ended_ns);
    buf_reset(&b);
    buf_puts(&b, "{");
    json_kstr(&b, "type", "task_ended");
    json_kstr(&b, "agent_id", agent_id);
    json_kstr(&b, "project_id", project_id);
    json_kstr(&b, "timestamp", ts);
    json_ku64(&b, "ts_ns", t->ended_ns);
    json_kstr(&b, "task_id", t->task_id);
    json_kstr(&b, "run", run);
    json_kstr(&b, "outcome", t->outcome);
    json_ki64(&b, "exit_code", t->exit_code);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_TASK, 1);
    buf_free(&b);
    conn_close_ws(c, 1000, CLOSE_TASK_ENDED, "task ended");
    return 0;
}

void history_expire(history *hs, uint64_t now)
{
    /* The LRU order is not the end order (a view moves a tail up), so look at every tail. */
    for (history_task *t = hs->lru_tail, *prev; t != NULL; t = prev) {
        prev = t->lru_prev;
        if (now > t->ended_mono && now - t->ended_mono > hs->window_ns)
            drop_tail(hs, t, EVICT_WINDOW);
    }
}

void history_forget(history *hs, const char *project_id, const char *agent_id)
{
    for (hagent **pp = &hs->agents; *pp != NULL; pp = &(*pp)->next) {
        hagent *a = *pp;
        if (strcmp(a->id, agent_id) != 0 || strcmp(a->project, project_id) != 0)
            continue;
        for (unsigned i = 0; i < a->n; i++)
            record_free(hs, slot(hs, a, i), EVICT_WINDOW);
        *pp = a->next;
        free(a->slots);
        free(a);
        return;
    }
}

void history_render_metrics(buf *b, const history *hs)
{
    buf_printf(b,
               "# HELP ringside_history_tasks Ended tasks kept for the snapshot.\n"
               "# TYPE ringside_history_tasks gauge\nringside_history_tasks %llu\n"
               "# HELP ringside_history_output_bytes Bytes of ended tasks' output held for viewers.\n"
               "# TYPE ringside_history_output_bytes gauge\nringside_history_output_bytes %zu\n"
               "# HELP ringside_history_output_dropped_total Ended tasks' output tails dropped, by "
               "reason.\n# TYPE ringside_history_output_dropped_total counter\n",
               (unsigned long long)hs->records, hs->bytes);
    for (int r = 0; r < EVICT_REASONS; r++)
        buf_printf(b, "ringside_history_output_dropped_total{reason=\"%s\"} %llu\n",
                   evict_names[r], (unsigned long long)hs->evicted[r]);
}

void history_free(history *hs)
{
    if (hs == NULL)
        return;
    while (hs->agents != NULL)
        history_forget(hs, hs->agents->project, hs->agents->id);
    free(hs);
}
