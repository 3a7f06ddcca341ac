#include "history_redis.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "redis_conn.h"
#include "util.h"

#define KEY_MAX (2 * IPC_ID_MAX + 32)

typedef struct fetch {
    conn *c; /* NULL once cancelled */
    char agent_id[IPC_ID_MAX + 1], project_id[IPC_ID_MAX + 1];
    history_task meta;
    struct fetch *prev, *next;
} fetch;

static fetch *pending; /* fetches in flight (loop thread only) */

/* Counters for /metrics: [op][result]. */
enum { OP_STORE, OP_FETCH, OPS };
enum { RES_OK, RES_MISSING, RES_ERROR, RESULTS };
static const char *const op_names[OPS] = {"store", "fetch"};
static const char *const res_names[RESULTS] = {"ok", "missing", "error"};
static uint64_t counts[OPS][RESULTS];

/* The agent is the pair (project, agent): ids cannot contain '/', so the key is unambiguous. */
static void key_of(char *out, size_t len, const char *project_id, const char *agent_id,
                   const char *task_id)
{
    snprintf(out, len, "ws:output:{%s/%s}:%s", project_id, agent_id, task_id);
}

static void store_reply(void *ud, int status, const struct redisReply *r)
{
    (void)ud;
    int ok = status == RC_OK && r != NULL && r->type != REDIS_REPLY_ERROR;
    counts[OP_STORE][ok ? RES_OK : RES_ERROR]++;
    if (!ok)
        log_warn("history output not stored in redis", "\"error\":\"%s\"",
                 status != RC_OK ? redis_conn_strerror(status) : r->str);
}

void history_redis_store(cluster *cl, const char *project_id, const char *agent_id,
                         const history_task *t, size_t max_tail, long window_s)
{
    redis_conn *rc = cluster_command_conn(cl);
    if (rc == NULL || t->tail_state != HISTORY_TAIL_HELD) {
        counts[OP_STORE][RES_ERROR] += rc == NULL;
        return;
    }
    size_t n = t->tail_len < max_tail ? t->tail_len : max_tail;
    char key[KEY_MAX], head[96], ttl[24];
    key_of(key, sizeof key, project_id, agent_id, t->task_id);
    int hl = snprintf(head, sizeof head, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", t->ended_ns,
                      t->output_bytes, t->lost_bytes);
    snprintf(ttl, sizeof ttl, "%ld", window_s);
    unsigned char *val = xmalloc((size_t)hl + n + 1);
    memcpy(val, head, (size_t)hl);
    if (n > 0)
        memcpy(val + hl, t->tail + (t->tail_len - n), n);
    const char *argv[] = {"SET", key, (const char *)val, "EX", ttl};
    size_t lens[] = {3, strlen(key), (size_t)hl + n, 2, strlen(ttl)};
    if (redis_conn_command(rc, 0, store_reply, NULL, 5, argv, lens) != RC_OK)
        counts[OP_STORE][RES_ERROR]++;
    free(val);
}

static void fetch_unlink(fetch *f)
{
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        pending = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
}

static void fetch_reply(void *ud, int status, const struct redisReply *r)
{
    fetch *f = ud;
    fetch_unlink(f);
    int result = RES_ERROR;
    history_task t = f->meta;
    if (status == RC_OK && r != NULL && r->type == REDIS_REPLY_NIL) {
        result = RES_MISSING;
    } else if (status == RC_OK && r != NULL && r->type == REDIS_REPLY_STRING) {
        const char *nl = memchr(r->str, '\n', r->len);
        uint64_t ended = 0, out = 0, lost = 0;
        if (nl != NULL &&
            sscanf(r->str, "%" SCNu64 " %" SCNu64 " %" SCNu64, &ended, &out, &lost) == 3) {
            /* Another run of the same task id replaced the key: not this task's output. */
            result = ended == t.ended_ns ? RES_OK : RES_MISSING;
            t.tail = (unsigned char *)(uintptr_t)(nl + 1);
            t.tail_len = (size_t)(r->str + r->len - (nl + 1));
            t.output_bytes = out;
            t.lost_bytes = lost;
            t.tail_state = HISTORY_TAIL_HELD;
        } else {
            log_warn("history output in redis is malformed: ignored", "\"task\":\"%s\"",
                     t.task_id);
            result = RES_MISSING;
        }
    }
    counts[OP_FETCH][result]++;
    conn *c = f->c;
    if (c != NULL) {
        if (result == RES_OK)
            (void)history_serve(c, f->agent_id, f->project_id, &t);
        else if (result == RES_MISSING)
            conn_close_ws(c, 4010, CLOSE_OUTPUT_EXPIRED, "task ended; its output is no longer kept");
        else
            conn_close_ws(c, 1011, CLOSE_HISTORY_UNAVAILABLE,
                          "task output not reachable (Redis unavailable): retry later");
        conn_mark_dirty(c);
    }
    free(f);
}

void history_redis_serve(cluster *cl, conn *c, const char *agent_id, const char *project_id,
                         const history_task *meta)
{
    redis_conn *rc = cluster_command_conn(cl);
    fetch *f = rc != NULL ? xcalloc(1, sizeof *f) : NULL;
    if (f != NULL) {
        f->c = c;
        snprintf(f->agent_id, sizeof f->agent_id, "%s", agent_id);
        snprintf(f->project_id, sizeof f->project_id, "%s", project_id);
        f->meta = *meta;
        f->meta.tail = NULL;
        f->meta.tail_len = 0;
        f->meta.lru_prev = f->meta.lru_next = NULL;
        char key[KEY_MAX];
        key_of(key, sizeof key, project_id, agent_id, meta->task_id);
        const char *argv[] = {"GET", key};
        f->next = pending;
        if (pending != NULL)
            pending->prev = f;
        pending = f;
        if (redis_conn_command(rc, 0, fetch_reply, f, 2, argv, NULL) == RC_OK)
            return;
        fetch_unlink(f);
        free(f);
    }
    counts[OP_FETCH][RES_ERROR]++;
    conn_close_ws(c, 1011, CLOSE_HISTORY_UNAVAILABLE,
                  "task output not reachable (Redis unavailable): retry later");
}

void history_redis_cancel(const conn *c)
{
    for (fetch *f = pending; f != NULL; f = f->next) {
        if (f->c == c)
            f->c = NULL;
    }
}

void history_redis_render_metrics(buf *b)
{
    buf_puts(b, "# HELP ringside_history_redis_total Ended tasks' output tails stored in and read "
                "from Redis, by result.\n# TYPE ringside_history_redis_total counter\n");
    for (int o = 0; o < OPS; o++)
        for (int r = 0; r < RESULTS; r++)
            buf_printf(b, "ringside_history_redis_total{op=\"%s\",result=\"%s\"} %llu\n",
                       op_names[o], res_names[r], (unsigned long long)counts[o][r]);
}
