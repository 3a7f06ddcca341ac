/*
 * cluster.c — the Redis cluster layer (cluster.h; design in docs/cluster.md).
 *
 * Two Redis connections (redis_conn.h): "cmd" for commands and scripts, "sub" subscribed to
 * ws:events; with a redis-sentinel:// URL a redis_sentinel gives both their address.
 *
 * Gap detection: every persisted event carries (epoch, seq) and seq is contiguous within an
 * epoch, so the subscriber knows the next seq it must see.  A message with a larger seq, a new
 * epoch, a re-subscription, or the periodic check finding the counter ahead of what arrived over
 * Pub/Sub one interval earlier, starts a catch-up: the missing entries are read from the stream in
 * order (Pub/Sub messages meanwhile are dropped and re-read from the stream), and only then is the
 * instance "caught up" again (cluster_ready).  Every event goes to the hub this way, this
 * instance's own included, so that all instances deliver persisted events in the same seq order.
 */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "cluster_lua.h"
#include "conn.h"
#include "log.h"
#include "redis_conn.h"
#include "util.h"

#define CL_CHANNEL "ws:events"
#define CL_DEAD_MAX 16384 /* registry deletes remembered across an outage */
#define CL_STREAM "ws:replay:{events}"
#define CL_SEQ "ws:replay:{events}:seq"
#define CL_EPOCH "ws:replay:{events}:epoch"
#define CL_AGENTS "ws:agents:{state}"
#define CL_PROJECTS "ws:replay:{events}:projects" /* instance → announced projects (D2) */
#define CL_CONN_TTL 86400       /* s */
#define CL_INSTANCE_TTL 30      /* s */
#define CL_REGISTRY_PERIOD 10.0 /* s */
#define CL_CHECK_PERIOD 1.0     /* s, self-check */
#define CL_PAGE 512             /* replay page */
#define CL_MAX_PUBLISH_PENDING 10000
#define CL_EPOCH_MAX 40

enum {
    SCRIPT_PERSIST,
    SCRIPT_PAGE,
    SCRIPT_ADMIT,
    SCRIPT_LEASE,
    SCRIPT_PUBLISH,
    SCRIPT_TRIM,
    SCRIPT_COUNT
};
static const char *const cl_scripts[SCRIPT_COUNT] = {CLUSTER_LUA_PERSIST, CLUSTER_LUA_PAGE,
                                                     CLUSTER_LUA_ADMIT, CLUSTER_LUA_LEASE,
                                                     CLUSTER_LUA_PUBLISH, CLUSTER_LUA_TRIM};

typedef enum req_kind {
    REQ_PERSIST,
    REQ_REPLAY,
    REQ_CATCHUP,
    REQ_ADMIT,
    REQ_PUBLISH,
    REQ_OTHER
} req_kind;

typedef struct cl_req {
    cluster *cl;
    req_kind kind;
    int cancelled;
    void *ud;
    struct cl_req *next, *prev; /* cluster's list of requests with user callbacks */
    /* EVALSHA arguments, kept for the EVAL retry on NOSCRIPT */
    int script;
    int retried;
    int argc;
    char **argv;
    size_t *argvlen;
    /* per kind */
    cluster_persist_cb persist_cb;
    cluster_replay_event_cb on_event;
    cluster_replay_done_cb on_done;
    cluster_admit_cb admit_cb;
    uint64_t after;   /* replay: last seq delivered */
    uint64_t last;    /* replay: stream seq at the first page */
    int first_page;
    int paused;       /* replay: waiting for cluster_replay_resume (nothing in flight) */
    char epoch[CL_EPOCH_MAX + 1];
} cl_req;

typedef struct cl_entry { /* a live local connection, to re-write after an outage */
    uint64_t id;
    char cid[48]; /* registry id: conn->cid, or "<instance>-<id>" */
    uint64_t connected_at_ms;
    char fp[AUTH_FP_HEX + 1];
    char *filters;
    struct cl_entry *next;
} cl_entry;

struct cluster {
    struct ev_loop *loop;
    struct hub *hub;
    redis_url url;
    char instance[256];
    /* --projects as announced with the heartbeat: "*" or ",p1,p2," (D2) */
    char announced[CONFIG_PROJECTS_MAX * (CONFIG_PROJECT_ID_MAX + 1) + 2];
    long replay_window_s, replay_max;
    long lease_ms;
    redis_conn *cmd, *sub;
    redis_sentinel *sentinel;
    char sha[SCRIPT_COUNT][41];
    ev_timer registry_timer, check_timer;
    int draining;
    int closing;
    uint64_t started_ms;
    uint64_t attempt_counter;

    /* availability as last told to the hub */
    int available;
    int subscribed;

    /* subscriber position (see the file comment) */
    int synced;                   /* the first catch-up has set epoch and seen */
    char epoch[CL_EPOCH_MAX + 1]; /* "" while nothing was ever persisted */
    uint64_t seen;                /* highest contiguous seq processed */
    uint64_t pending_max;         /* highest seq dropped during a catch-up ... */
    char pending_epoch[CL_EPOCH_MAX + 1]; /* ... its epoch ... */
    uint64_t pending_round;       /* ... and the catch-up round during which it arrived */
    uint64_t catchup_round;
    int catching_up, catchup_again, caught_up;
    uint64_t check_prev; /* counter value at the previous check (same epoch) */
    int check_inflight;
    /* highest seq this instance knows of, for the persist script's rollback check */
    char known_epoch[CL_EPOCH_MAX + 1];
    uint64_t known_seq;

    cl_req *reqs;
    cl_entry **conns;
    size_t conns_cap, conns_n;
    /* Registry keys of connections that closed while Redis was unreachable: deleted when it
     * returns (else they would linger until their 24 h TTL).  Bounded; beyond, the TTL does it. */
    char (*dead)[48];
    size_t dead_n;

    /* metrics */
    uint64_t remote_events, replay_reads, replays, resyncs, dropped_publishes, persisted,
        persist_failures, divergences, truncated_catchups;
};

/* ---- helpers ------------------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return util_now_ns() / 1000000u;
}

static void cl_set_available(cluster *cl)
{
    int avail = redis_conn_ready(cl->cmd) && cl->subscribed;
    if (avail == cl->available || cl->closing)
        return;
    cl->available = avail;
    log_info(avail ? "cluster view available" : "cluster view incomplete", "\"instance\":\"%s\"",
             cl->instance);
    hub_cluster_state(cl->hub, avail);
}

static void req_link(cluster *cl, cl_req *r)
{
    r->next = cl->reqs;
    r->prev = NULL;
    if (cl->reqs != NULL)
        cl->reqs->prev = r;
    cl->reqs = r;
}

static void req_free(cl_req *r)
{
    cluster *cl = r->cl;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else if (cl->reqs == r)
        cl->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    for (int i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    free(r->argvlen);
    free(r);
}

static cl_req *req_new(cluster *cl, req_kind kind, void *ud)
{
    cl_req *r = xcalloc(1, sizeof(*r));
    r->cl = cl;
    r->kind = kind;
    r->ud = ud;
    req_link(cl, r);
    return r;
}

/* Sets r's arguments to EVALSHA <sha> <nkeys> keys... args... (all copied). */
static void req_args(cl_req *r, int script, int nkeys, int nargs, const char **args,
                     const size_t *lens)
{
    char nk[16];
    r->script = script;
    r->argc = 3 + nargs;
    r->argv = xcalloc((size_t)r->argc, sizeof(char *));
    r->argvlen = xcalloc((size_t)r->argc, sizeof(size_t));
    snprintf(nk, sizeof(nk), "%d", nkeys);
    r->argv[0] = xstrdup("EVALSHA");
    r->argvlen[0] = 7;
    r->argv[1] = xstrdup(r->cl->sha[script]);
    r->argvlen[1] = 40;
    r->argv[2] = xstrdup(nk);
    r->argvlen[2] = strlen(nk);
    for (int i = 0; i < nargs; i++) {
        size_t n = lens != NULL ? lens[i] : strlen(args[i]);
        r->argv[3 + i] = xmalloc(n + 1);
        memcpy(r->argv[3 + i], args[i], n);
        r->argv[3 + i][n] = '\0';
        r->argvlen[3 + i] = n;
    }
}

static void req_dispatch(cl_req *r, int status, const redisReply *reply);

static void req_reply(void *ud, int status, const redisReply *reply)
{
    cl_req *r = ud;
    if (status == RC_OK && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && !r->retried) {
        /* The script cache was lost (restart, failover): EVAL loads it again. */
        r->retried = 1;
        free(r->argv[0]);
        r->argv[0] = xstrdup("EVAL");
        r->argvlen[0] = 4;
        free(r->argv[1]);
        r->argv[1] = xstrdup(cl_scripts[r->script]);
        r->argvlen[1] = strlen(cl_scripts[r->script]);
        if (redis_conn_command(r->cl->cmd, 0, req_reply, r, r->argc, (const char **)r->argv,
                               r->argvlen) == RC_OK)
            return;
        status = RC_EDOWN;
        reply = NULL;
    }
    if (status == RC_OK && reply->type == REDIS_REPLY_ERROR) {
        int elen = reply->len > 255 ? 255 : (int)reply->len;
        log_warn("redis script error", "\"script\":%d,\"error\":\"%.*s\"", r->script, elen,
                 reply->str);
    }
    req_dispatch(r, status, reply);
}

/* Sends r; returns 0 or -1 (not sent: the caller frees r without calling back). */
static int req_send(cl_req *r)
{
    return redis_conn_command(r->cl->cmd, 0, req_reply, r, r->argc, (const char **)r->argv,
                              r->argvlen) == RC_OK
               ? 0
               : -1;
}

/* Fire and forget. */
static void cl_cmd(cluster *cl, int argc, const char **argv, const size_t *lens)
{
    (void)redis_conn_command(cl->cmd, 0, NULL, NULL, argc, argv, lens);
}

/* The connection's cluster-wide id: its random cid, or "<instance>-<id>" without one. */
static void conn_ident(const cluster *cl, const struct conn *c, char *out, size_t outlen)
{
    if (c->cid[0] != '\0')
        snprintf(out, outlen, "%s", c->cid);
    else
        snprintf(out, outlen, "%.24s-%llu", cl->instance, (unsigned long long)c->id);
}

static void conn_key(const char *ident, char *out, size_t outlen)
{
    snprintf(out, outlen, "ws:connections:{%s}", ident);
}

static void lease_member(const cluster *cl, const char *conn_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s:%s", cl->instance, conn_id);
}

/* ---- registry ------------------------------------------------------------------------------------ */

static void cl_write_instance(cluster *cl)
{
    char key[320], hb[32], st[32];
    snprintf(key, sizeof(key), "ws:instances:{%s}:state", cl->instance);
    snprintf(hb, sizeof(hb), "%llu", (unsigned long long)now_ms());
    snprintf(st, sizeof(st), "%llu", (unsigned long long)cl->started_ms);
    {
        const char *argv[] = {"HSET",    key, "state",      cl->draining ? "draining" : "running",
                              "heartbeat", hb, "started_at", st, "projects", cl->announced};
        cl_cmd(cl, 10, argv, NULL);
    }
    {
        /* The copy the scripts check events against, in the stream's slot (D2). */
        const char *argv[] = {"HSET", CL_PROJECTS, cl->instance, cl->announced};
        cl_cmd(cl, 4, argv, NULL);
    }
    {
        const char *argv[] = {"EXPIRE", key, "30"};
        cl_cmd(cl, 3, argv, NULL);
    }
}

/* Re-creates a connection's user lease (after Redis lost it): the admission script with no
 * limits only takes the lease. */
static void cl_write_lease(cluster *cl, const cl_entry *e)
{
    char ukey[128], member[320], lease[24];
    snprintf(ukey, sizeof(ukey), "ws:limits:{user:%s}", e->fp);
    lease_member(cl, e->cid, member, sizeof(member));
    snprintf(lease, sizeof(lease), "%ld", cl->lease_ms);
    const char *argv[] = {"EVALSHA", cl->sha[SCRIPT_ADMIT], "2", ukey, ukey, "0", "0",
                          member, lease, "-"};
    cl_cmd(cl, 10, argv, NULL);
}

static void cl_write_conn(cluster *cl, const cl_entry *e)
{
    char key[320], ca[32], hb[32];
    snprintf(ca, sizeof(ca), "%llu", (unsigned long long)e->connected_at_ms);
    snprintf(hb, sizeof(hb), "%llu", (unsigned long long)now_ms());
    conn_key(e->cid, key, sizeof(key));
    {
        const char *argv[] = {"HSET",      key, "user_id",     e->fp,        "connected_at",
                              ca,          "last_heartbeat", hb, "instance_id", cl->instance,
                              "filters",   e->filters};
        cl_cmd(cl, 12, argv, NULL);
    }
    {
        const char *argv[] = {"EXPIRE", key, "86400"};
        cl_cmd(cl, 3, argv, NULL);
    }
}

static size_t conn_slot(const cluster *cl, uint64_t id)
{
    return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 20) & (cl->conns_cap - 1);
}

static void conns_grow(cluster *cl)
{
    size_t old_cap = cl->conns_cap;
    cl_entry **old = cl->conns;
    cl->conns_cap = old_cap ? old_cap * 2 : 256;
    cl->conns = xcalloc(cl->conns_cap, sizeof(cl_entry *));
    for (size_t i = 0; i < old_cap; i++) {
        cl_entry *e = old[i];
        while (e != NULL) {
            cl_entry *next = e->next;
            size_t s = conn_slot(cl, e->id);
            e->next = cl->conns[s];
            cl->conns[s] = e;
            e = next;
        }
    }
    free(old);
}

static cl_entry **conns_find(cluster *cl, uint64_t id)
{
    cl_entry **pp;
    if (cl->conns_cap == 0)
        return NULL;
    for (pp = &cl->conns[conn_slot(cl, id)]; *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->id == id)
            return pp;
    return NULL;
}

static void filters_string(const struct conn *c, buf *b)
{
    const filter *f = &c->filt;
    unsigned i;
    buf_puts(b, "agents=");
    for (i = 0; i < f->agents.n; i++)
        buf_printf(b, "%s%s", i ? "," : "", f->agents.ids[i]);
    buf_puts(b, ";projects=");
    for (i = 0; i < f->projects.n; i++)
        buf_printf(b, "%s%s", i ? "," : "", f->projects.ids[i]);
    buf_printf(b, ";types=%u", (unsigned)f->types);
}

void cluster_conn_open(cluster *cl, const struct conn *c)
{
    cl_entry *e;
    buf b;
    if (cl == NULL || c == NULL || conns_find(cl, c->id) != NULL)
        return;
    if (cl->conns_n + 1 > cl->conns_cap)
        conns_grow(cl);
    e = xcalloc(1, sizeof(*e));
    e->id = c->id;
    conn_ident(cl, c, e->cid, sizeof(e->cid));
    e->connected_at_ms = now_ms();
    if (c->has_ident)
        snprintf(e->fp, sizeof(e->fp), "%s", c->ident.user_fp);
    buf_init(&b);
    filters_string(c, &b);
    buf_append(&b, "", 1);
    e->filters = b.data;
    {
        size_t s = conn_slot(cl, e->id);
        e->next = cl->conns[s];
        cl->conns[s] = e;
    }
    cl->conns_n++;
    if (redis_conn_ready(cl->cmd))
        cl_write_conn(cl, e);
}

void cluster_conn_heartbeat(cluster *cl, const struct conn *c)
{
    char key[320], hb[32], member[320], id[48], lease[24], ukey[128];
    if (cl == NULL || c == NULL || !redis_conn_ready(cl->cmd))
        return;
    conn_ident(cl, c, id, sizeof(id));
    conn_key(id, key, sizeof(key));
    snprintf(hb, sizeof(hb), "%llu", (unsigned long long)now_ms());
    {
        const char *argv[] = {"HSET", key, "last_heartbeat", hb};
        cl_cmd(cl, 4, argv, NULL);
    }
    {
        const char *argv[] = {"EXPIRE", key, "86400"};
        cl_cmd(cl, 3, argv, NULL);
    }
    if (c->has_ident && c->ident.user_fp[0] != '\0') {
        lease_member(cl, id, member, sizeof(member));
        snprintf(lease, sizeof(lease), "%ld", cl->lease_ms);
        snprintf(ukey, sizeof(ukey), "ws:limits:{user:%s}", c->ident.user_fp);
        {
            const char *argv[] = {"EVALSHA", cl->sha[SCRIPT_LEASE], "1", ukey, member, lease};
            cl_cmd(cl, 6, argv, NULL);
        }
    }
}

void cluster_conn_close(cluster *cl, const struct conn *c)
{
    cl_entry **pp, *e;
    char key[320], id[48];
    if (cl == NULL || c == NULL)
        return;
    pp = conns_find(cl, c->id);
    if (pp == NULL)
        return;
    e = *pp;
    *pp = e->next;
    cl->conns_n--;
    snprintf(id, sizeof(id), "%s", e->cid);
    if (e->fp[0] != '\0')
        cluster_release_user(cl, e->fp, id);
    free(e->filters);
    free(e);
    conn_key(id, key, sizeof(key));
    {
        const char *argv[] = {"DEL", key};
        if (redis_conn_command(cl->cmd, 0, NULL, NULL, 2, argv, NULL) != RC_OK &&
            cl->dead_n < CL_DEAD_MAX) {
            if (cl->dead == NULL)
                cl->dead = xcalloc(CL_DEAD_MAX, sizeof *cl->dead);
            snprintf(cl->dead[cl->dead_n++], sizeof cl->dead[0], "%s", id);
        }
    }
}

void cluster_set_draining(cluster *cl)
{
    if (cl == NULL)
        return;
    cl->draining = 1;
    if (redis_conn_ready(cl->cmd))
        cl_write_instance(cl);
}

static void cl_registry_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    cluster *cl = container_of(w, cluster, registry_timer);
    (void)loop;
    (void)revents;
    if (redis_conn_ready(cl->cmd))
        cl_write_instance(cl);
}

/* ---- agents -------------------------------------------------------------------------------------- */

static void cl_agents_reply(void *ud, int status, const redisReply *r)
{
    cluster *cl = ud;
    if (status != RC_OK || cl->closing || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *v = r->element[i + 1];
        if (v->type == REDIS_REPLY_STRING)
            hub_remote_agent(cl->hub, v->str, v->len);
    }
}

static void cl_load_agents(cluster *cl)
{
    const char *argv[] = {"HGETALL", CL_AGENTS};
    (void)redis_conn_command(cl->cmd, 0, cl_agents_reply, cl, 2, argv, NULL);
}

void cluster_put_agent(cluster *cl, const char *project_id, const char *agent_id, const char *json,
                       size_t len)
{
    if (cl == NULL || !redis_conn_ready(cl->cmd))
        return;
    char field[160]; /* ids are at most 63 chars and never contain '/' */
    snprintf(field, sizeof field, "%s/%s", project_id, agent_id);
    const char *argv[] = {"HSET", CL_AGENTS, field, json};
    size_t lens[] = {4, strlen(CL_AGENTS), strlen(field), len};
    cl_cmd(cl, 4, argv, lens);
}

void cluster_trim_agent(cluster *cl, const char *project_id, const char *agent_id,
                        uint64_t max_age_ms)
{
    if (cl == NULL || !redis_conn_ready(cl->cmd))
        return;
    char field[160], age[24];
    snprintf(field, sizeof field, "%s/%s", project_id, agent_id);
    snprintf(age, sizeof age, "%llu", (unsigned long long)max_age_ms);
    const char *args[] = {CL_AGENTS, field, age};
    cl_req *r = req_new(cl, REQ_OTHER, NULL);
    req_args(r, SCRIPT_TRIM, 1, 3, args, NULL);
    if (req_send(r) != 0)
        req_free(r);
}

/* ---- catch-up and self-check ----------------------------------------------------------------------- */

static void cl_catchup(cluster *cl);

/* "<seq>-0" → seq */
static uint64_t id_seq(const redisReply *id)
{
    return id->type == REDIS_REPLY_STRING ? strtoull(id->str, NULL, 10) : 0;
}

/* Finds field name in a stream entry's flat field list. */
static const redisReply *entry_field(const redisReply *fields, const char *name)
{
    if (fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    return NULL;
}

static int page_valid(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER &&
           r->element[2]->type == REDIS_REPLY_INTEGER && r->element[3]->type == REDIS_REPLY_ARRAY;
}

static int cl_send_page(cluster *cl, cl_req *r, uint64_t from)
{
    char id[32], count[16];
    const char *args[] = {CL_STREAM, CL_SEQ, CL_EPOCH, id, count};
    snprintf(id, sizeof(id), "%llu-0", (unsigned long long)from);
    snprintf(count, sizeof(count), "%d", CL_PAGE);
    for (int i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    free(r->argvlen);
    r->retried = 0;
    req_args(r, SCRIPT_PAGE, 3, 5, args, NULL);
    cl->replay_reads++;
    return req_send(r);
}

static void cl_catchup_done(cluster *cl)
{
    cl->catching_up = 0;
    if (cl->catchup_again || cl->pending_max > cl->seen) {
        cl->catchup_again = 0;
        cl_catchup(cl);
        return;
    }
    if (!cl->caught_up)
        log_info("cluster caught up", "\"epoch\":\"%s\",\"seq\":%llu", cl->epoch,
                 (unsigned long long)cl->seen);
    cl->caught_up = 1;
}

static void cl_note_known(cluster *cl, const char *epoch, uint64_t seq)
{
    if (strcmp(cl->known_epoch, epoch) != 0) {
        snprintf(cl->known_epoch, sizeof(cl->known_epoch), "%s", epoch);
        cl->known_seq = seq;
    } else if (seq > cl->known_seq) {
        cl->known_seq = seq;
    }
}

static void catchup_page(cl_req *r, int status, const redisReply *reply)
{
    cluster *cl = r->cl;
    const redisReply *entries;
    const char *epoch;
    uint64_t seq, first;
    size_t i;
    if (status != RC_OK || !page_valid(reply) || cl->closing) {
        req_free(r);
        cl->catching_up = 0;
        cl->catchup_again = 1; /* retried when the connection is back */
        return;
    }
    epoch = reply->element[0]->str;
    seq = (uint64_t)reply->element[1]->integer;
    first = (uint64_t)reply->element[2]->integer;
    entries = reply->element[3];
    cl_note_known(cl, epoch, seq);
    if (r->first_page) {
        r->first_page = 0;
        /* A dropped message is covered by this read if the counter already includes it; one
         * that arrived before this read was sent and is still ahead of the counter belongs to
         * lost data (or another epoch): forget it rather than catch up forever. */
        if (strcmp(cl->pending_epoch, epoch) != 0 || cl->pending_max <= seq ||
            cl->pending_round < cl->catchup_round)
            cl->pending_max = 0;
        if (!cl->synced) {
            /* First sync: history before this instance joined is not delivered (snapshots come
             * from ws:agents). */
            snprintf(cl->epoch, sizeof(cl->epoch), "%s", epoch);
            cl->seen = seq;
            cl->synced = 1;
            req_free(r);
            cl_catchup_done(cl);
            return;
        }
        if (strcmp(epoch, cl->epoch) != 0) {
            log_write(cl->epoch[0] != '\0' ? LOG_WARN : LOG_INFO, "replay epoch changed",
                      "\"old\":\"%s\",\"new\":\"%s\",\"seq\":%llu", cl->epoch, epoch,
                      (unsigned long long)seq);
            snprintf(cl->epoch, sizeof(cl->epoch), "%s", epoch);
            cl->seen = 0;
        }
        if (seq < cl->seen) {
            log_warn("replay counter went backwards", "\"epoch\":\"%s\",\"seen\":%llu,\"seq\":%llu",
                     cl->epoch, (unsigned long long)cl->seen, (unsigned long long)seq);
            cl->seen = seq;
        }
        if (seq > cl->seen && (first == 0 || first > cl->seen + 1)) {
            /* Events this instance missed are no longer in the stream: resynchronise state. */
            cl->truncated_catchups++;
            log_warn("cluster catch-up truncated",
                     "\"epoch\":\"%s\",\"seen\":%llu,\"first\":%llu,\"seq\":%llu", cl->epoch,
                     (unsigned long long)cl->seen, (unsigned long long)first,
                     (unsigned long long)seq);
            cl->seen = seq;
            cl_load_agents(cl);
            req_free(r);
            cl_catchup_done(cl);
            return;
        }
    } else if (strcmp(epoch, cl->epoch) != 0) {
        req_free(r);
        cl->catching_up = 0;
        cl->catchup_again = 1;
        cl_catchup(cl);
        return;
    }
    for (i = 0; i < entries->elements; i++) {
        const redisReply *en = entries->element[i], *e, *o, *y;
        uint64_t s;
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2)
            continue;
        s = id_seq(en->element[0]);
        if (s <= cl->seen)
            continue;
        e = entry_field(en->element[1], "e");
        o = entry_field(en->element[1], "o");
        y = entry_field(en->element[1], "y");
        cl->seen = s;
        if (e == NULL || o == NULL)
            continue;
        if (strcmp(o->str, cl->instance) != 0)
            cl->remote_events++;
        hub_remote_event(cl->hub, o->str, y != NULL ? (uint32_t)strtoul(y->str, NULL, 10) : 0,
                         e->str, e->len);
        if (cl->closing)
            break;
    }
    if (entries->elements == CL_PAGE && cl_send_page(cl, r, cl->seen + 1) == 0)
        return;
    req_free(r);
    cl_catchup_done(cl);
}

static void cl_catchup(cluster *cl)
{
    cl_req *r;
    if (cl->closing)
        return;
    if (cl->catching_up) {
        cl->catchup_again = 1;
        return;
    }
    if (!redis_conn_ready(cl->cmd) || !cl->subscribed) {
        cl->catchup_again = 1;
        return;
    }
    r = req_new(cl, REQ_CATCHUP, NULL);
    r->first_page = 1;
    cl->catchup_round++;
    cl->catching_up = 1;
    cl->catchup_again = 0;
    if (cl_send_page(cl, r, cl->seen + 1) != 0) {
        req_free(r);
        cl->catching_up = 0;
        cl->catchup_again = 1;
    }
}

static void cl_divergence(cluster *cl, const char *why, uint64_t expected)
{
    cl->divergences++;
    cl->resyncs++;
    log_warn("cluster divergence detected",
             "\"reason\":\"%s\",\"epoch\":\"%s\",\"seen\":%llu,\"expected\":%llu", why, cl->epoch,
             (unsigned long long)cl->seen, (unsigned long long)expected);
}

static void cl_check_reply(void *ud, int status, const redisReply *r)
{
    cluster *cl = ud;
    uint64_t seq;
    cl->check_inflight = 0;
    if (status != RC_OK || cl->closing || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return;
    if (!cl->synced || cl->catching_up || !cl->subscribed)
        return;
    if (strcmp(r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "", cl->epoch) !=
        0) {
        cl_divergence(cl, "epoch changed", 0);
        cl->caught_up = 0;
        cl_catchup(cl);
        return;
    }
    seq = r->element[0]->type == REDIS_REPLY_STRING ? strtoull(r->element[0]->str, NULL, 10) : 0;
    if (cl->check_prev > cl->seen) {
        /* Published at least one interval ago and still not received: the subscription is
         * broken (or lagging badly).  Re-subscribe; the confirmation starts the catch-up. */
        cl_divergence(cl, "pubsub behind stream", cl->check_prev);
        cl->caught_up = 0;
        cl->check_prev = 0;
        redis_conn_reset(cl->sub, "divergence");
        return;
    }
    cl->check_prev = seq;
}

static void cl_check_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    cluster *cl = container_of(w, cluster, check_timer);
    const char *argv[] = {"MGET", CL_SEQ, CL_EPOCH};
    (void)loop;
    (void)revents;
    if (cl->check_inflight || !redis_conn_ready(cl->cmd))
        return;
    if (cl->catchup_again && !cl->catching_up) {
        cl_catchup(cl);
        return;
    }
    if (redis_conn_command(cl->cmd, 0, cl_check_reply, cl, 3, argv, NULL) == RC_OK)
        cl->check_inflight = 1;
}

/* ---- subscriber ------------------------------------------------------------------------------------ */

/* Splits "<origin>\n<type>\n<seq>\n<epoch>\n<json>". */
static void cl_note_pending(cluster *cl, const char *epoch, uint64_t seq)
{
    if (cl->pending_max == 0 || strcmp(cl->pending_epoch, epoch) != 0 || seq > cl->pending_max) {
        cl->pending_max = seq;
        snprintf(cl->pending_epoch, sizeof(cl->pending_epoch), "%s", epoch);
        cl->pending_round = cl->catchup_round;
    }
}

static void cl_message(cluster *cl, const char *p, size_t len)
{
    const char *end = p + len, *f[4];
    size_t flen[4];
    char origin[256], epoch[CL_EPOCH_MAX + 1], num[24];
    uint32_t type;
    uint64_t seq;
    for (int i = 0; i < 4; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return;
        f[i] = p;
        flen[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (flen[0] == 0 || flen[0] >= sizeof(origin) || flen[1] >= sizeof(num) ||
        flen[2] >= sizeof(num) || flen[3] >= sizeof(epoch))
        return;
    memcpy(origin, f[0], flen[0]);
    origin[flen[0]] = '\0';
    memcpy(num, f[1], flen[1]);
    num[flen[1]] = '\0';
    type = (uint32_t)strtoul(num, NULL, 10);
    memcpy(num, f[2], flen[2]);
    num[flen[2]] = '\0';
    seq = strtoull(num, NULL, 10);
    memcpy(epoch, f[3], flen[3]);
    epoch[flen[3]] = '\0';
    if (seq == 0) { /* not persisted: deliver as it comes */
        if (strcmp(origin, cl->instance) != 0)
            cl->remote_events++;
        hub_remote_event(cl->hub, origin, type, p, (size_t)(end - p));
        return;
    }
    cl_note_known(cl, epoch, seq);
    if (cl->catching_up || !cl->synced) {
        cl_note_pending(cl, epoch, seq);
        if (!cl->catching_up)
            cl_catchup(cl);
        return;
    }
    if (strcmp(epoch, cl->epoch) != 0) {
        cl_note_pending(cl, epoch, seq);
        cl_catchup(cl); /* the catch-up adopts the new epoch and reads it from its start */
        return;
    }
    if (seq <= cl->seen)
        return; /* already delivered from the stream */
    if (seq != cl->seen + 1) {
        cl_divergence(cl, "seq gap", seq);
        cl_note_pending(cl, epoch, seq);
        cl_catchup(cl);
        return;
    }
    cl->seen = seq;
    if (strcmp(origin, cl->instance) != 0)
        cl->remote_events++;
    hub_remote_event(cl->hub, origin, type, p, (size_t)(end - p));
}

static void cl_sub_msg(void *ud, int kind, const char *payload, size_t len)
{
    cluster *cl = ud;
    if (cl->closing)
        return;
    if (kind == 0) {
        cl->subscribed = 1;
        cl_set_available(cl);
        cl_catchup(cl); /* whatever was published while unsubscribed */
        return;
    }
    cl_message(cl, payload, len);
}

static void cl_sub_event(void *ud, redis_conn_event ev)
{
    cluster *cl = ud;
    if (cl->closing)
        return;
    if (ev == RC_EV_READY) {
        if (redis_conn_subscribe(cl->sub, CL_CHANNEL, cl_sub_msg, cl) != RC_OK)
            redis_conn_reset(cl->sub, "subscribe failed");
    } else if (ev == RC_EV_DOWN) {
        cl->subscribed = 0;
        cl->caught_up = 0;
        cl_set_available(cl);
    } else if (ev == RC_EV_FAILED && cl->sentinel != NULL) {
        redis_sentinel_refresh(cl->sentinel);
    }
}

static void cl_cmd_event(void *ud, redis_conn_event ev)
{
    cluster *cl = ud;
    if (cl->closing)
        return;
    if (ev == RC_EV_READY) {
        for (int i = 0; i < SCRIPT_COUNT; i++) {
            const char *argv[] = {"SCRIPT", "LOAD", cl_scripts[i]};
            cl_cmd(cl, 3, argv, NULL);
        }
        /* Re-write the registry (after an outage it may have expired or been lost), and drop
         * the entries of connections that closed meanwhile. */
        cl_write_instance(cl);
        for (size_t i = 0; i < cl->dead_n; i++) {
            char key[320];
            conn_key(cl->dead[i], key, sizeof(key));
            const char *argv[] = {"DEL", key};
            cl_cmd(cl, 2, argv, NULL);
        }
        cl->dead_n = 0;
        for (size_t i = 0; i < cl->conns_cap; i++)
            for (cl_entry *e = cl->conns[i]; e != NULL; e = e->next) {
                cl_write_conn(cl, e);
                if (e->fp[0] != '\0')
                    cl_write_lease(cl, e);
            }
        cl_load_agents(cl);
        cl_set_available(cl);
        if (cl->subscribed)
            cl_catchup(cl);
    } else if (ev == RC_EV_DOWN) {
        cl->caught_up = 0;
        cl_set_available(cl);
    } else if (ev == RC_EV_FAILED && cl->sentinel != NULL) {
        redis_sentinel_refresh(cl->sentinel);
    }
}

static void cl_master(void *ud, const char *host, int port)
{
    cluster *cl = ud;
    log_info("redis master", "\"host\":\"%s\",\"port\":%d", host, port);
    redis_conn_set_addr(cl->cmd, host, port);
    redis_conn_set_addr(cl->sub, host, port);
}

/* ---- persist, publish, replay ---------------------------------------------------------------------- */

/* Redis refused an event for a project this instance did not announce (the announcement was
 * lost with Redis's data, or the hub let through what --projects forbids): counted, logged, and
 * the announcement written again. */
static void cl_refused(cluster *cl, const char *what)
{
    g_metrics.tenancy_refusals[TENANCY_ORIGIN_PROJECT]++;
    log_warn("event refused by the cluster",
             "\"instance\":\"%s\",\"event\":\"%s\",\"reason\":\"project not announced by "
             "this instance\"",
             cl->instance, what);
    if (redis_conn_ready(cl->cmd))
        cl_write_instance(cl);
}

static void persist_done(cl_req *r, int status, const redisReply *reply)
{
    cluster *cl = r->cl;
    if (status == RC_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[1]->type == REDIS_REPLY_INTEGER && reply->element[1]->integer == 0) {
        cl_refused(cl, "persisted");
        if (!r->cancelled)
            r->persist_cb(r->ud, CLUSTER_REFUSED, NULL, 0, 0, NULL);
        req_free(r);
        return;
    }
    if (status == RC_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_INTEGER &&
        reply->element[2]->type == REDIS_REPLY_STRING) {
        uint64_t seq = (uint64_t)reply->element[1]->integer;
        cl->persisted++;
        cl_note_known(cl, reply->element[2]->str, seq);
        if (!r->cancelled)
            r->persist_cb(r->ud, 0, reply->element[0]->str, reply->element[0]->len, seq,
                          reply->element[2]->str);
    } else {
        cl->persist_failures++;
        if (!r->cancelled)
            r->persist_cb(r->ud, status != RC_OK ? status : -1, NULL, 0, 0, NULL);
    }
    req_free(r);
}

int cluster_persist(cluster *cl, const char *agent_id, const char *project_id, uint32_t type,
                    const char *json_prefix, size_t len, cluster_persist_cb cb, void *ud)
{
    unsigned char rnd[8];
    char cand[17], known[24], ty[16], win[24], max[24];
    cl_req *r;
    (void)agent_id;
    if (cl == NULL || cb == NULL || !redis_conn_ready(cl->cmd) || cl->closing)
        return -1;
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(cand, sizeof(cand), rnd, sizeof(rnd));
    snprintf(known, sizeof(known), "%llu", (unsigned long long)cl->known_seq);
    snprintf(ty, sizeof(ty), "%u", (unsigned)type);
    snprintf(win, sizeof(win), "%ld", cl->replay_window_s * 1000);
    snprintf(max, sizeof(max), "%ld", cl->replay_max);
    {
        const char *args[] = {CL_STREAM,   CL_SEQ,       CL_EPOCH, CL_PROJECTS, cand, known,
                              cl->known_epoch, json_prefix, cl->instance, ty, win, max,
                              CL_CHANNEL,  project_id,   cl->announced};
        size_t lens[15];
        for (int i = 0; i < 15; i++)
            lens[i] = i == 7 ? len : strlen(args[i]);
        r = req_new(cl, REQ_PERSIST, ud);
        r->persist_cb = cb;
        req_args(r, SCRIPT_PERSIST, 4, 15, args, lens);
    }
    if (req_send(r) != 0) {
        req_free(r);
        return -1;
    }
    return 0;
}

static void publish_done(cl_req *r, int status, const redisReply *reply)
{
    if (status == RC_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        cl_refused(r->cl, "published");
    req_free(r);
}

void cluster_publish(cluster *cl, uint32_t type, const char *project_id, const char *json,
                     size_t len)
{
    buf b;
    if (cl == NULL)
        return;
    if (!redis_conn_ready(cl->cmd) || redis_conn_pending(cl->cmd) > CL_MAX_PUBLISH_PENDING) {
        cl->dropped_publishes++;
        return;
    }
    buf_init(&b);
    buf_printf(&b, "%s\n%u\n0\n\n", cl->instance, (unsigned)type);
    buf_append(&b, json, len);
    if (project_id == NULL) {
        const char *argv[] = {"PUBLISH", CL_CHANNEL, b.data};
        size_t lens[] = {7, strlen(CL_CHANNEL), b.len};
        if (redis_conn_command(cl->cmd, 0, NULL, NULL, 3, argv, lens) != RC_OK)
            cl->dropped_publishes++;
    } else {
        const char *args[] = {CL_PROJECTS, cl->instance, project_id, CL_CHANNEL, b.data,
                              cl->announced};
        size_t lens[] = {strlen(CL_PROJECTS), strlen(cl->instance), strlen(project_id),
                         strlen(CL_CHANNEL), b.len, strlen(cl->announced)};
        cl_req *r = req_new(cl, REQ_PUBLISH, NULL);
        req_args(r, SCRIPT_PUBLISH, 1, 6, args, lens);
        if (req_send(r) != 0) {
            req_free(r);
            cl->dropped_publishes++;
        }
    }
    buf_free(&b);
}

static void replay_finish(cl_req *r, int status, uint64_t last, const char *epoch)
{
    if (!r->cancelled)
        r->on_done(r->ud, status, last, epoch);
    req_free(r);
}

static void replay_page(cl_req *r, int status, const redisReply *reply)
{
    cluster *cl = r->cl;
    const redisReply *entries;
    const char *epoch;
    uint64_t seq, first;
    if (status != RC_OK || !page_valid(reply)) {
        replay_finish(r, -1, 0, r->epoch);
        return;
    }
    epoch = reply->element[0]->str;
    seq = (uint64_t)reply->element[1]->integer;
    first = (uint64_t)reply->element[2]->integer;
    entries = reply->element[3];
    if (r->first_page) {
        r->first_page = 0;
        r->last = seq;
        if (epoch[0] == '\0') { /* nothing was ever persisted */
            replay_finish(r, r->epoch[0] != '\0' ? 1 : 0, 0, "");
            return;
        }
        if ((r->epoch[0] != '\0' && strcmp(r->epoch, epoch) != 0) || r->after > seq ||
            (seq > r->after && (first == 0 || first > r->after + 1))) {
            replay_finish(r, 1, seq, epoch);
            return;
        }
        snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
    } else if (strcmp(r->epoch, epoch) != 0) {
        replay_finish(r, 1, seq, epoch); /* reset while reading */
        return;
    }
    int pause = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *en = entries->element[i], *e;
        uint64_t s;
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2)
            continue;
        s = id_seq(en->element[0]);
        e = entry_field(en->element[1], "e");
        if (s <= r->after || e == NULL)
            continue;
        if (s != r->after + 1) {
            /* trimmed between pages */
            replay_finish(r, 1, seq, epoch);
            return;
        }
        r->after = s;
        if (!r->cancelled && r->on_event(r->ud, e->str, e->len, s) != 0)
            pause = 1;
    }
    if (seq > r->last)
        r->last = seq;
    if (entries->elements == CL_PAGE && !r->cancelled) {
        if (pause) {
            r->paused = 1; /* cluster_replay_resume sends the next page */
            return;
        }
        if (cl_send_page(cl, r, r->after + 1) == 0)
            return;
    }
    replay_finish(r, 0, r->last > r->after ? r->last : r->after, r->epoch);
}

int cluster_replay(cluster *cl, uint64_t after_seq, const char *epoch, cluster_replay_event_cb on_event,
                   cluster_replay_done_cb on_done, void *ud)
{
    cl_req *r;
    if (cl == NULL || on_event == NULL || on_done == NULL || !redis_conn_ready(cl->cmd) ||
        cl->closing)
        return -1;
    r = req_new(cl, REQ_REPLAY, ud);
    r->on_event = on_event;
    r->on_done = on_done;
    r->after = after_seq;
    r->first_page = 1;
    if (epoch != NULL)
        snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
    cl->replays++;
    if (cl_send_page(cl, r, after_seq + 1) != 0) {
        req_free(r);
        return -1;
    }
    return 0;
}

void cluster_replay_cancel(cluster *cl, void *ud)
{
    if (cl == NULL)
        return;
    for (cl_req *r = cl->reqs, *next; r != NULL; r = next) {
        next = r->next;
        if (r->kind != REQ_REPLAY || r->ud != ud)
            continue;
        if (r->paused)
            req_free(r); /* nothing in flight will come back for it */
        else
            r->cancelled = 1;
    }
}

void cluster_replay_resume(cluster *cl, void *ud)
{
    if (cl == NULL)
        return;
    for (cl_req *r = cl->reqs; r != NULL; r = r->next) {
        if (r->kind != REQ_REPLAY || r->ud != ud || !r->paused)
            continue;
        r->paused = 0;
        if (cl_send_page(cl, r, r->after + 1) != 0)
            replay_finish(r, -1, 0, r->epoch);
        return;
    }
}

/* ---- admission ----------------------------------------------------------------------------------- */

static void admit_done(cl_req *r, int status, const redisReply *reply)
{
    int retry = -1, reason = -1;
    if (status == RC_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
        retry = (int)reply->element[0]->integer;
        reason = (int)reply->element[1]->integer;
    }
    if (!r->cancelled)
        r->admit_cb(r->ud, retry, reason);
    req_free(r);
}

int cluster_admit(cluster *cl, const char *ip, const char *user_fp, const char *conn_id,
                  long per_ip_per_min, long per_user, cluster_admit_cb cb, void *ud)
{
    char ipkey[128], ukey[128], pip[24], pu[24], member[320], lease[24], attempt[320];
    cl_req *r;
    if (cl == NULL || cb == NULL || ip == NULL || conn_id == NULL || !redis_conn_ready(cl->cmd) ||
        cl->closing)
        return -1;
    snprintf(ipkey, sizeof(ipkey), "ws:limits:{ip:%s}", ip);
    snprintf(pip, sizeof(pip), "%ld", per_ip_per_min);
    snprintf(pu, sizeof(pu), "%ld", per_user);
    lease_member(cl, conn_id, member, sizeof(member));
    snprintf(lease, sizeof(lease), "%ld", cl->lease_ms);
    snprintf(attempt, sizeof(attempt), "%s:%llu", cl->instance,
             (unsigned long long)++cl->attempt_counter);
    r = req_new(cl, REQ_ADMIT, ud);
    r->admit_cb = cb;
    if (user_fp != NULL && user_fp[0] != '\0') {
        snprintf(ukey, sizeof(ukey), "ws:limits:{user:%s}", user_fp);
        const char *args[] = {ipkey, ukey, pip, pu, member, lease, attempt};
        req_args(r, SCRIPT_ADMIT, 2, 7, args, NULL);
    } else {
        const char *args[] = {ipkey, pip, pu, member, lease, attempt};
        req_args(r, SCRIPT_ADMIT, 1, 6, args, NULL);
    }
    if (req_send(r) != 0) {
        req_free(r);
        return -1;
    }
    return 0;
}

void cluster_admit_cancel(cluster *cl, void *ud)
{
    if (cl == NULL)
        return;
    for (cl_req *r = cl->reqs; r != NULL; r = r->next)
        if (r->kind == REQ_ADMIT && r->ud == ud)
            r->cancelled = 1;
}

void cluster_release_user(cluster *cl, const char *user_fp, const char *conn_id)
{
    char ukey[128], member[320];
    if (cl == NULL || user_fp == NULL || conn_id == NULL || !redis_conn_ready(cl->cmd))
        return;
    snprintf(ukey, sizeof(ukey), "ws:limits:{user:%s}", user_fp);
    lease_member(cl, conn_id, member, sizeof(member));
    const char *argv[] = {"ZREM", ukey, member};
    cl_cmd(cl, 3, argv, NULL);
}

static void req_dispatch(cl_req *r, int status, const redisReply *reply)
{
    switch (r->kind) {
    case REQ_PERSIST:
        persist_done(r, status, reply);
        break;
    case REQ_REPLAY:
        replay_page(r, status, reply);
        break;
    case REQ_CATCHUP:
        catchup_page(r, status, reply);
        break;
    case REQ_ADMIT:
        admit_done(r, status, reply);
        break;
    case REQ_PUBLISH:
        publish_done(r, status, reply);
        break;
    case REQ_OTHER:
        req_free(r);
        break;
    }
}

/* ---- lifecycle --------------------------------------------------------------------------------------- */

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), md);
    sodium_bin2hex(out, 41, md, sizeof(md));
}

cluster *cluster_new(struct ev_loop *loop, const config *cfg, struct hub *h, char *errbuf,
                     size_t errlen)
{
    cluster *cl;
    redis_conn_cfg rcfg;
    const char *id;
    cl = xcalloc(1, sizeof(*cl));
    if (redis_url_parse(cfg->redis, &cl->url, errbuf, errlen) != 0) {
        free(cl);
        return NULL;
    }
    cl->loop = loop;
    cl->hub = h;
    id = cfg->instance_id != NULL && cfg->instance_id[0] != '\0' ? cfg->instance_id
         : cfg->hostname[0] != '\0'                             ? cfg->hostname
                                                                : "ringside";
    snprintf(cl->instance, sizeof(cl->instance), "%s", id);
    if (cfg->all_projects) {
        strcpy(cl->announced, "*");
    } else {
        size_t o = 0;
        cl->announced[o++] = ',';
        for (unsigned i = 0; i < cfg->n_projects; i++)
            o += (size_t)snprintf(cl->announced + o, sizeof(cl->announced) - o, "%s,",
                                  cfg->project_set[i]);
    }
    cl->replay_window_s = cfg->replay_window > 0 ? cfg->replay_window : 300;
    cl->replay_max = cfg->replay_max > 0 ? cfg->replay_max : 100000;
    cl->lease_ms = ((cfg->heartbeat_interval > 0 ? cfg->heartbeat_interval : 30) *
                        ((cfg->heartbeat_misses > 0 ? cfg->heartbeat_misses : 3) + 1) +
                    30) *
                   1000;
    cl->started_ms = now_ms();
    for (int i = 0; i < SCRIPT_COUNT; i++)
        sha1_hex(cl_scripts[i], cl->sha[i]);

    redis_conn_cfg_defaults(&rcfg);
    rcfg.password = cl->url.password;
    rcfg.db = cl->url.db;
    rcfg.require_master = cl->url.sentinel;
    rcfg.name = "cmd";
    cl->cmd = redis_conn_new(loop, &rcfg, cl_cmd_event, cl);
    rcfg.name = "sub";
    cl->sub = redis_conn_new(loop, &rcfg, cl_sub_event, cl);
    ev_timer_init(&cl->registry_timer, cl_registry_tick, CL_REGISTRY_PERIOD, CL_REGISTRY_PERIOD);
    ev_timer_start(loop, &cl->registry_timer);
    ev_timer_init(&cl->check_timer, cl_check_tick, CL_CHECK_PERIOD, CL_CHECK_PERIOD);
    ev_timer_start(loop, &cl->check_timer);
    if (cl->url.sentinel) {
        cl->sentinel = redis_sentinel_new(loop, &cl->url, cl_master, cl);
    } else {
        redis_conn_set_addr(cl->cmd, cl->url.addr.host, cl->url.addr.port);
        redis_conn_set_addr(cl->sub, cl->url.addr.host, cl->url.addr.port);
    }
    log_info("cluster mode", "\"instance\":\"%s\",\"sentinel\":%s", cl->instance,
             cl->url.sentinel ? "true" : "false");
    return cl;
}

/* Removes this instance's registry entries with a blocking connection bounded by short timeouts
 * (hiredis' synchronous API has them; the loop is not running any more at this point). */
static void cl_cleanup_sync(cluster *cl)
{
    struct timeval tv = {0, 300000};
    redisContext *c;
    unsigned n = 0;
    char key[320];
    if (!redis_conn_ready(cl->cmd))
        return;
    c = redisConnectWithTimeout(redis_conn_host(cl->cmd), redis_conn_port(cl->cmd), tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return;
    }
    redisSetTimeout(c, tv);
    if (cl->url.password[0] != '\0') {
        redisAppendCommand(c, "AUTH %s", cl->url.password);
        n++;
    }
    if (cl->url.db != 0) {
        redisAppendCommand(c, "SELECT %d", cl->url.db);
        n++;
    }
    snprintf(key, sizeof(key), "ws:instances:{%s}:state", cl->instance);
    redisAppendCommand(c, "DEL %s", key);
    n++;
    redisAppendCommand(c, "HDEL %s %s", CL_PROJECTS, cl->instance);
    n++;
    for (size_t i = 0; i < cl->conns_cap; i++)
        for (cl_entry *e = cl->conns[i]; e != NULL; e = e->next) {
            conn_key(e->cid, key, sizeof(key));
            redisAppendCommand(c, "DEL %s", key);
            n++;
            if (e->fp[0] != '\0') {
                char ukey[128];
                snprintf(ukey, sizeof(ukey), "ws:limits:{user:%s}", e->fp);
                redisAppendCommand(c, "ZREM %s %s:%s", ukey, cl->instance, e->cid);
                n++;
            }
        }
    while (n-- > 0) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK)
            break;
        freeReplyObject(reply);
    }
    redisFree(c);
}

void cluster_free(cluster *cl)
{
    if (cl == NULL)
        return;
    cl->draining = 1;
    cl_cleanup_sync(cl);
    cl->closing = 1;
    ev_timer_stop(cl->loop, &cl->registry_timer);
    ev_timer_stop(cl->loop, &cl->check_timer);
    redis_sentinel_free(cl->sentinel);
    /* Pending requests get their callbacks (with an error) while the connections are freed. */
    redis_conn_free(cl->sub);
    redis_conn_free(cl->cmd);
    while (cl->reqs != NULL) /* requests not in flight (none expected) */
        req_free(cl->reqs);
    for (size_t i = 0; i < cl->conns_cap; i++) {
        cl_entry *e = cl->conns[i];
        while (e != NULL) {
            cl_entry *next = e->next;
            free(e->filters);
            free(e);
            e = next;
        }
    }
    free(cl->conns);
    sodium_memzero(cl->url.password, sizeof(cl->url.password));
    free(cl);
}

int cluster_available(const cluster *cl)
{
    return cl != NULL && cl->available;
}

struct redis_conn *cluster_command_conn(cluster *cl)
{
    return cl != NULL && cl->available ? cl->cmd : NULL;
}

int cluster_ready(const cluster *cl)
{
    return cl != NULL && cl->available && cl->caught_up && !cl->catching_up;
}

cluster_circuit cluster_circuit_state(const cluster *cl)
{
    if (cl == NULL)
        return CLUSTER_OPEN;
    switch (redis_conn_circuit_state(cl->cmd)) {
    case RC_CLOSED:
        return CLUSTER_CLOSED;
    case RC_OPEN:
        return CLUSTER_OPEN;
    default:
        return CLUSTER_HALF_OPEN;
    }
}

void cluster_render_metrics(buf *b, void *arg)
{
    cluster *cl = arg;
    const redis_conn *conns[2];
    const char *names[2] = {"cmd", "sub"};
    if (cl == NULL)
        return;
    conns[0] = cl->cmd;
    conns[1] = cl->sub;
    buf_puts(b, "# HELP ringside_redis_circuit_state Redis circuit breaker: 0 closed, 1 open, 2 "
                "half-open.\n# TYPE ringside_redis_circuit_state gauge\n");
    for (int i = 0; i < 2; i++)
        buf_printf(b, "ringside_redis_circuit_state{conn=\"%s\"} %d\n", names[i],
                   (int)redis_conn_circuit_state(conns[i]));
    buf_puts(b, "# HELP ringside_redis_commands_total Redis commands sent.\n"
                "# TYPE ringside_redis_commands_total counter\n");
    for (int i = 0; i < 2; i++)
        buf_printf(b, "ringside_redis_commands_total{conn=\"%s\"} %llu\n", names[i],
                   (unsigned long long)redis_conn_get_stats(conns[i])->commands);
    buf_puts(b, "# HELP ringside_redis_failures_total Redis connection-level failures.\n"
                "# TYPE ringside_redis_failures_total counter\n");
    for (int i = 0; i < 2; i++)
        buf_printf(b, "ringside_redis_failures_total{conn=\"%s\"} %llu\n", names[i],
                   (unsigned long long)redis_conn_get_stats(conns[i])->failures);
    buf_puts(b, "# HELP ringside_redis_reconnects_total Redis reconnections.\n"
                "# TYPE ringside_redis_reconnects_total counter\n");
    for (int i = 0; i < 2; i++)
        buf_printf(b, "ringside_redis_reconnects_total{conn=\"%s\"} %llu\n", names[i],
                   (unsigned long long)redis_conn_get_stats(conns[i])->reconnects);
    buf_printf(b,
               "# HELP ringside_redis_pending_commands Redis commands in flight.\n"
               "# TYPE ringside_redis_pending_commands gauge\n"
               "ringside_redis_pending_commands %u\n"
               "# HELP ringside_redis_dropped_publishes_total Non-persisted events not published "
               "(Redis unavailable or backlogged).\n"
               "# TYPE ringside_redis_dropped_publishes_total counter\n"
               "ringside_redis_dropped_publishes_total %llu\n"
               "# HELP ringside_cluster_remote_events_total Events from other instances delivered "
               "to the hub.\n"
               "# TYPE ringside_cluster_remote_events_total counter\n"
               "ringside_cluster_remote_events_total %llu\n"
               "# HELP ringside_cluster_persisted_total Events persisted to the replay stream.\n"
               "# TYPE ringside_cluster_persisted_total counter\n"
               "ringside_cluster_persisted_total %llu\n"
               "# HELP ringside_cluster_persist_failures_total Persist calls that failed.\n"
               "# TYPE ringside_cluster_persist_failures_total counter\n"
               "ringside_cluster_persist_failures_total %llu\n"
               "# HELP ringside_cluster_replays_total Client replays started.\n"
               "# TYPE ringside_cluster_replays_total counter\n"
               "ringside_cluster_replays_total %llu\n"
               "# HELP ringside_cluster_replay_reads_total Stream pages read (replays and "
               "catch-ups).\n"
               "# TYPE ringside_cluster_replay_reads_total counter\n"
               "ringside_cluster_replay_reads_total %llu\n"
               "# HELP ringside_cluster_resyncs_total Subscription divergences repaired from the "
               "stream.\n"
               "# TYPE ringside_cluster_resyncs_total counter\n"
               "ringside_cluster_resyncs_total %llu\n"
               "# HELP ringside_cluster_truncated_catchups_total Catch-ups that found events gone "
               "from the stream.\n"
               "# TYPE ringside_cluster_truncated_catchups_total counter\n"
               "ringside_cluster_truncated_catchups_total %llu\n"
               "# HELP ringside_cluster_caught_up 1 when the subscription is complete up to the "
               "stream.\n"
               "# TYPE ringside_cluster_caught_up gauge\n"
               "ringside_cluster_caught_up %d\n"
               "# HELP ringside_cluster_registered_connections Connections this instance keeps in "
               "the registry.\n"
               "# TYPE ringside_cluster_registered_connections gauge\n"
               "ringside_cluster_registered_connections %zu\n",
               redis_conn_pending(cl->cmd), (unsigned long long)cl->dropped_publishes,
               (unsigned long long)cl->remote_events, (unsigned long long)cl->persisted,
               (unsigned long long)cl->persist_failures, (unsigned long long)cl->replays,
               (unsigned long long)cl->replay_reads, (unsigned long long)cl->resyncs,
               (unsigned long long)cl->truncated_catchups, cluster_ready(cl), cl->conns_n);
    if (cl->sentinel != NULL)
        buf_printf(b,
                   "# HELP ringside_redis_sentinel_failovers_total Sentinel failovers followed.\n"
                   "# TYPE ringside_redis_sentinel_failovers_total counter\n"
                   "ringside_redis_sentinel_failovers_total %llu\n",
                   (unsigned long long)redis_sentinel_failovers(cl->sentinel));
}
