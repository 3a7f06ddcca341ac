/* Tests of the cluster layer against a real redis-server: persist/replay, epochs, truncation,
 * cross-instance fan-out, the subscription self-check, admission limits, the registry and its
 * re-write after an outage.  Two "instances" run on one loop, each with its own test hub. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cluster.h"
#include "conn.h"
#include "redis_fixture.h"

/* ---- the test hub (the cluster's callbacks) ---- */

#define HUB_MAX 2048

struct hub {
    int n;
    char origin[HUB_MAX][32];
    uint32_t type[HUB_MAX];
    uint64_t seq[HUB_MAX];
    int available;
    int state_calls;
    int agents;
};

static uint64_t json_seq(const char *json, size_t len)
{
    char tmp[1024];
    const char *p;
    if (len >= sizeof(tmp))
        len = sizeof(tmp) - 1;
    memcpy(tmp, json, len);
    tmp[len] = '\0';
    p = strstr(tmp, "\"seq\":");
    return p != NULL ? strtoull(p + 6, NULL, 10) : 0;
}

void hub_remote_event(struct hub *h, const char *origin, uint32_t type, const char *json,
                      size_t len)
{
    if (h->n < HUB_MAX) {
        snprintf(h->origin[h->n], sizeof(h->origin[0]), "%s", origin);
        h->type[h->n] = type;
        h->seq[h->n] = json_seq(json, len);
        h->n++;
    }
}

void hub_remote_agent(struct hub *h, const char *json, size_t len)
{
    (void)json;
    (void)len;
    h->agents++;
}

void hub_cluster_state(struct hub *h, int available)
{
    h->available = available;
    h->state_calls++;
}

/* ---- fixture ---- */

typedef struct inst {
    cluster *cl;
    struct hub hub;
    config cfg;
    char url[64];
} inst;

typedef struct fx {
    struct ev_loop *loop;
    rt_redis redis;
    inst a, b;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    if (rt_redis_start(&f->redis, NULL) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cluster_free(f->a.cl);
    cluster_free(f->b.cl);
    rt_redis_stop(&f->redis);
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0); /* nothing of ours left */
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void inst_start(fx *f, inst *in, const char *id, long window)
{
    char err[256];
    snprintf(in->url, sizeof(in->url), "redis://127.0.0.1:%d", f->redis.port);
    memset(&in->cfg, 0, sizeof(in->cfg));
    in->cfg.redis = in->url;
    in->cfg.instance_id = id;
    in->cfg.all_projects = 1;
    in->cfg.replay_window = window;
    in->cfg.replay_max = 100000;
    in->cfg.heartbeat_interval = 30;
    in->cfg.heartbeat_misses = 3;
    in->cl = cluster_new(f->loop, &in->cfg, &in->hub, err, sizeof(err));
    assert_non_null(in->cl);
}

static int both_ready(void *arg)
{
    fx *f = arg;
    return cluster_ready(f->a.cl) && (f->b.cl == NULL || cluster_ready(f->b.cl));
}

/* ---- persist helpers ---- */

typedef struct pres {
    int done, fails;
    uint64_t seq[1024];
    char epoch[64];
} pres;

static void on_persist(void *ud, int status, const char *json, size_t len, uint64_t seq,
                       const char *epoch)
{
    pres *p = ud;
    if (status != 0) {
        p->fails++;
        assert_null(json);
    } else {
        assert_true(len > 0 && json[len - 1] == '}');
        assert_int_equal(json_seq(json, len), seq);
        if (p->done < 1024)
            p->seq[p->done] = seq;
        snprintf(p->epoch, sizeof(p->epoch), "%s", epoch);
    }
    p->done++;
}

static int persist_n(fx *f, cluster *cl, pres *p, int n, int *expect_done)
{
    char json[128];
    int sent = 0;
    for (int i = 0; i < n; i++) {
        int len = snprintf(json, sizeof(json), "{\"type\":\"agent_status\",\"agent_id\":\"a%d\"", i);
        if (cluster_persist(cl, "a", "p", 1, json, (size_t)len, on_persist, p) == 0)
            sent++;
    }
    *expect_done = p->done + sent;
    (void)f;
    return sent;
}

typedef struct wait_int {
    int *v;
    int target;
} wait_int;
static int reached(void *arg)
{
    wait_int *w = arg;
    return *w->v >= w->target;
}
static int wait_for(fx *f, int *v, int target, double timeout)
{
    wait_int w = {v, target};
    return rt_run_until(f->loop, reached, &w, timeout);
}

/* ---- replay helpers ---- */

typedef struct rres {
    int events, done, status;
    int pause; /* on_rev asks the replay to pause after each page */
    uint64_t seqs[2048];
    uint64_t last;
    char epoch[64];
} rres;

static int on_rev(void *ud, const char *json, size_t len, uint64_t seq)
{
    rres *r = ud;
    assert_int_equal(json_seq(json, len), seq);
    if (r->events < 2048)
        r->seqs[r->events] = seq;
    r->events++;
    return r->pause;
}
static void on_rdone(void *ud, int status, uint64_t last, const char *epoch)
{
    rres *r = ud;
    r->done++;
    r->status = status;
    r->last = last;
    snprintf(r->epoch, sizeof(r->epoch), "%s", epoch != NULL ? epoch : "");
}
static void replay(fx *f, cluster *cl, uint64_t after, const char *epoch, rres *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(cluster_replay(cl, after, epoch, on_rev, on_rdone, r), 0);
    assert_true(wait_for(f, &r->done, 1, 5));
    assert_int_equal(r->done, 1);
}

/* ---- tests ---- */

static void test_persist_contiguous_and_replay(void **state)
{
    fx *f = *state;
    pres p;
    rres r;
    int target;
    memset(&p, 0, sizeof(p));
    inst_start(f, &f->a, "A", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    assert_int_equal(f->a.hub.available, 1);
    assert_int_equal(persist_n(f, f->a.cl, &p, 20, &target), 20);
    assert_true(wait_for(f, &p.done, target, 5));
    assert_int_equal(p.fails, 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(p.seq[i], (uint64_t)i + 1);
    replay(f, f->a.cl, 0, p.epoch, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.events, 20);
    assert_int_equal(r.last, 20);
    assert_string_equal(r.epoch, p.epoch);
    replay(f, f->a.cl, 15, p.epoch, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.events, 5);
    assert_int_equal(r.seqs[0], 16);
    replay(f, f->a.cl, 20, p.epoch, &r); /* nothing missed */
    assert_int_equal(r.status, 0);
    assert_int_equal(r.events, 0);
    replay(f, f->a.cl, 5, "not-the-epoch", &r);
    assert_int_equal(r.status, 1);
    assert_int_equal(r.events, 0);
    replay(f, f->a.cl, 25, p.epoch, &r); /* a cursor from the future: the stream was reset */
    assert_int_equal(r.status, 1);

    /* more than one page */
    memset(&p, 0, sizeof(p));
    persist_n(f, f->a.cl, &p, 980, &target);
    assert_true(wait_for(f, &p.done, target, 10));
    assert_int_equal(p.fails, 0);
    {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        replay(f, f->a.cl, 0, p.epoch, &r);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "REPLAY-1000 %.1f ms\n",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    }
    assert_int_equal(r.status, 0);
    assert_int_equal(r.events, 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(r.seqs[i], (uint64_t)i + 1);

    /* paced: the consumer pauses the read after each page and resumes it */
    memset(&r, 0, sizeof(r));
    r.pause = 1;
    assert_int_equal(cluster_replay(f->a.cl, 0, p.epoch, on_rev, on_rdone, &r), 0);
    assert_true(wait_for(f, &r.events, 512, 5));
    {
        /* a persist's reply comes after any page read the replay could have sent meanwhile */
        pres q;
        int t2;
        memset(&q, 0, sizeof(q));
        persist_n(f, f->a.cl, &q, 1, &t2);
        assert_true(wait_for(f, &q.done, t2, 5));
    }
    assert_int_equal(r.events, 512); /* paused */
    assert_int_equal(r.done, 0);
    cluster_replay_resume(f->a.cl, &r);
    assert_true(wait_for(f, &r.done, 1, 5)); /* a last, partial page: nothing to pause after */
    assert_int_equal(r.events, 1001);
    assert_int_equal(r.status, 0);
    for (int i = 0; i < 1001; i++)
        assert_int_equal(r.seqs[i], (uint64_t)i + 1);
    /* a paused replay cancelled: freed, no callback */
    memset(&r, 0, sizeof(r));
    r.pause = 1;
    assert_int_equal(cluster_replay(f->a.cl, 0, p.epoch, on_rev, on_rdone, &r), 0);
    assert_true(wait_for(f, &r.events, 512, 5));
    cluster_replay_cancel(f->a.cl, &r);
    cluster_replay_resume(f->a.cl, &r); /* nothing paused any more: a no-op */
    assert_int_equal(r.done, 0);

    /* cancelled: no callback at all */
    memset(&r, 0, sizeof(r));
    assert_int_equal(cluster_replay(f->a.cl, 0, p.epoch, on_rev, on_rdone, &r), 0);
    cluster_replay_cancel(f->a.cl, &r);
    rt_run_for(f->loop, 0.3);
    assert_int_equal(r.done, 0);
    assert_int_equal(r.events, 0);
}

static void test_epoch_changes_on_reset(void **state)
{
    fx *f = *state;
    pres p;
    rres r;
    int target;
    char e1[64];
    redisReply *rep;
    memset(&p, 0, sizeof(p));
    inst_start(f, &f->a, "A", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    persist_n(f, f->a.cl, &p, 3, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    snprintf(e1, sizeof(e1), "%s", p.epoch);

    rep = rt_cmd(f->redis.port, "FLUSHALL");
    assert_non_null(rep);
    freeReplyObject(rep);
    memset(&p, 0, sizeof(p));
    persist_n(f, f->a.cl, &p, 1, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    assert_int_equal(p.seq[0], 1);
    assert_string_not_equal(p.epoch, e1);
    replay(f, f->a.cl, 3, e1, &r);
    assert_int_equal(r.status, 1);

    /* the counter rolled back while the stream survived (e.g. a lagging replica promoted) */
    snprintf(e1, sizeof(e1), "%s", p.epoch);
    persist_n(f, f->a.cl, &p, 4, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    rep = rt_cmd(f->redis.port, "SET ws:replay:{events}:seq 2");
    freeReplyObject(rep);
    memset(&p, 0, sizeof(p));
    persist_n(f, f->a.cl, &p, 1, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    assert_int_equal(p.seq[0], 1);
    assert_string_not_equal(p.epoch, e1);
}

static void test_truncated_replay_and_window(void **state)
{
    fx *f = *state;
    pres p;
    rres r;
    int target;
    redisReply *rep;
    memset(&p, 0, sizeof(p));
    inst_start(f, &f->a, "A", 1); /* 1 s window */
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    persist_n(f, f->a.cl, &p, 10, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    rep = rt_cmd(f->redis.port, "XTRIM ws:replay:{events} MINID 5-0");
    freeReplyObject(rep);
    replay(f, f->a.cl, 2, p.epoch, &r);
    assert_int_equal(r.status, 1);
    assert_int_equal(r.events, 0);
    replay(f, f->a.cl, 4, p.epoch, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.events, 6);
    assert_int_equal(r.seqs[0], 5);
    /* entries older than the window go on the next persist */
    rt_run_for(f->loop, 1.2);
    persist_n(f, f->a.cl, &p, 1, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    rep = rt_cmd(f->redis.port, "XLEN ws:replay:{events}");
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    replay(f, f->a.cl, 4, p.epoch, &r);
    assert_int_equal(r.status, 1);
}

static void test_two_instances_fanout(void **state)
{
    fx *f = *state;
    pres pa, pb;
    int ta, tb;
    memset(&pa, 0, sizeof(pa));
    memset(&pb, 0, sizeof(pb));
    inst_start(f, &f->a, "A", 300);
    inst_start(f, &f->b, "B", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    persist_n(f, f->a.cl, &pa, 50, &ta);
    assert_true(wait_for(f, &f->b.hub.n, 50, 5));
    assert_true(wait_for(f, &f->a.hub.n, 50, 5)); /* own events come back in seq order too */
    for (int i = 0; i < 50; i++) {
        assert_string_equal(f->b.hub.origin[i], "A");
        assert_string_equal(f->a.hub.origin[i], "A");
        assert_int_equal(f->b.hub.seq[i], (uint64_t)i + 1);
        assert_int_equal(f->a.hub.seq[i], (uint64_t)i + 1);
        assert_int_equal(f->b.hub.type[i], 1);
    }
    /* interleaved from both sides: both instances see all of them, in the same seq order */
    persist_n(f, f->b.cl, &pb, 30, &tb);
    persist_n(f, f->a.cl, &pa, 30, &ta);
    assert_true(wait_for(f, &f->a.hub.n, 110, 5));
    assert_true(wait_for(f, &f->b.hub.n, 110, 5));
    for (int i = 0; i < 110; i++) {
        assert_int_equal(f->a.hub.seq[i], (uint64_t)i + 1);
        assert_int_equal(f->b.hub.seq[i], (uint64_t)i + 1);
        assert_string_equal(f->a.hub.origin[i], f->b.hub.origin[i]);
    }
    /* non-persisted (progress) */
    cluster_publish(f->b.cl, 2, "p", "{\"type\":\"progress\"}", 19);
    assert_true(wait_for(f, &f->a.hub.n, 111, 5));
    assert_int_equal(f->a.hub.type[110], 2);
    assert_int_equal(f->a.hub.seq[110], 0);
    assert_string_equal(f->a.hub.origin[110], "B");
}

static int has_resync(void *arg)
{
    fx *f = arg;
    buf b;
    int ok;
    buf_init(&b);
    cluster_render_metrics(&b, f->b.cl);
    buf_append(&b, "", 1);
    ok = strstr(b.data, "ringside_cluster_resyncs_total 0\n") == NULL;
    buf_free(&b);
    return ok && cluster_ready(f->b.cl);
}

static void lost_event(fx *f, const char *origin)
{
    /* An event that reached the stream but whose Pub/Sub message was lost. */
    redisContext *c = rt_sync(f->redis.port);
    redisReply *r = redisCommand(c, "INCR ws:replay:{events}:seq");
    long long seq = r->integer;
    char id[32], json[128];
    freeReplyObject(r);
    snprintf(id, sizeof(id), "%lld-0", seq);
    snprintf(json, sizeof(json), "{\"type\":\"agent_status\",\"seq\":%lld}", seq);
    r = redisCommand(c, "XADD ws:replay:{events} %s e %s t 0 o %s y 1", id, json, origin);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisFree(c);
}

static void test_self_check_repairs_lost_messages(void **state)
{
    fx *f = *state;
    pres pa;
    int ta;
    memset(&pa, 0, sizeof(pa));
    inst_start(f, &f->a, "A", 300);
    inst_start(f, &f->b, "B", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    persist_n(f, f->a.cl, &pa, 3, &ta);
    assert_true(wait_for(f, &f->b.hub.n, 3, 5));

    /* lost with nothing after it: only the periodic check can see it (≤ 2 intervals) */
    lost_event(f, "X");
    assert_true(rt_run_until(f->loop, has_resync, f, 5));
    assert_true(wait_for(f, &f->b.hub.n, 4, 1));
    assert_string_equal(f->b.hub.origin[3], "X");
    assert_int_equal(f->b.hub.seq[3], 4);

    /* lost then followed by a live one: the gap is seen at once and filled in order */
    lost_event(f, "Y");
    persist_n(f, f->a.cl, &pa, 1, &ta);
    assert_true(wait_for(f, &f->b.hub.n, 6, 5));
    assert_string_equal(f->b.hub.origin[4], "Y");
    assert_int_equal(f->b.hub.seq[4], 5);
    assert_string_equal(f->b.hub.origin[5], "A");
    assert_int_equal(f->b.hub.seq[5], 6);
    assert_true(rt_run_until(f->loop, both_ready, f, 3));
}

typedef struct adm {
    int done, retry, reason;
} adm;
static void on_admit(void *ud, int retry, int reason)
{
    adm *a = ud;
    a->done++;
    a->retry = retry;
    a->reason = reason;
}
static adm admit(fx *f, cluster *cl, const char *ip, const char *fp, const char *cid)
{
    adm a = {0, 0, 0};
    assert_int_equal(cluster_admit(cl, ip, fp, cid, 3, 2, on_admit, &a), 0);
    assert_true(wait_for(f, &a.done, 1, 5));
    return a;
}

static void test_admission_across_instances(void **state)
{
    fx *f = *state;
    adm a;
    inst_start(f, &f->a, "A", 300);
    inst_start(f, &f->b, "B", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    const char *fp = "0123456789abcdef0123456789abcdef";
    a = admit(f, f->a.cl, "10.0.0.1", fp, "1");
    assert_int_equal(a.retry, 0);
    a = admit(f, f->b.cl, "10.0.0.1", fp, "1"); /* same conn id, other instance: another lease */
    assert_int_equal(a.retry, 0);
    a = admit(f, f->a.cl, "10.0.0.1", NULL, "3");
    assert_int_equal(a.retry, 0);
    a = admit(f, f->b.cl, "10.0.0.1", NULL, "4"); /* 4th attempt in the minute, per IP 3 */
    assert_true(a.retry >= 1 && a.retry <= 60);
    assert_int_equal(a.reason, 0);
    a = admit(f, f->a.cl, "10.0.0.2", fp, "5"); /* user already holds 2 leases */
    assert_true(a.retry >= 1);
    assert_int_equal(a.reason, 1);
    cluster_release_user(f->a.cl, fp, "1");
    a = admit(f, f->a.cl, "10.0.0.2", fp, "5");
    assert_int_equal(a.retry, 0);
    /* a cancelled admission never calls back */
    a.done = 0;
    assert_int_equal(cluster_admit(f->a.cl, "10.0.0.3", NULL, "6", 3, 2, on_admit, &a), 0);
    cluster_admit_cancel(f->a.cl, &a);
    rt_run_for(f->loop, 0.2);
    assert_int_equal(a.done, 0);
}

static long long hash_ttl(fx *f, const char *key)
{
    redisReply *r = rt_cmd(f->redis.port, "TTL %s", key);
    long long v = r != NULL ? r->integer : -3;
    freeReplyObject(r);
    return v;
}
static int key_exists(fx *f, const char *key)
{
    redisReply *r = rt_cmd(f->redis.port, "EXISTS %s", key);
    int v = r != NULL && r->integer == 1;
    freeReplyObject(r);
    return v;
}
typedef struct kw {
    fx *f;
    const char *key;
    int want;
} kw;
static int key_is(void *arg)
{
    kw *k = arg;
    return key_exists(k->f, k->key) == k->want;
}
static int avail_is(void *arg)
{
    fx *f = arg;
    return f->a.hub.available == 1 && cluster_ready(f->a.cl);
}
static int unavailable(void *arg)
{
    fx *f = arg;
    return f->a.hub.available == 0;
}

static void test_registry_and_outage(void **state)
{
    fx *f = *state;
    conn *c = calloc(1, sizeof(*c));
    redisReply *r;
    kw k = {f, "ws:connections:{cid7}", 1};
    pres p;
    int target;
    inst_start(f, &f->a, "A", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    c->id = 7;
    snprintf(c->cid, sizeof(c->cid), "cid7");
    c->has_ident = 1;
    snprintf(c->ident.user_fp, sizeof(c->ident.user_fp), "%s", "00112233445566778899aabbccddeeff");
    c->filt.types = 0xf;
    cluster_conn_open(f->a.cl, c);
    assert_true(rt_run_until(f->loop, key_is, &k, 5));
    r = rt_cmd(f->redis.port, "HGET ws:connections:{cid7} user_id");
    assert_string_equal(r->str, "00112233445566778899aabbccddeeff");
    freeReplyObject(r);
    r = rt_cmd(f->redis.port, "HGET ws:connections:{cid7} instance_id");
    assert_string_equal(r->str, "A");
    freeReplyObject(r);
    assert_true(hash_ttl(f, "ws:connections:{cid7}") > 86000);
    assert_true(hash_ttl(f, "ws:instances:{A}:state") <= 30);
    assert_true(key_exists(f, "ws:instances:{A}:state"));
    cluster_conn_heartbeat(f->a.cl, c);
    cluster_set_draining(f->a.cl);
    rt_run_for(f->loop, 0.1);
    r = rt_cmd(f->redis.port, "HGET ws:instances:{A}:state state");
    assert_string_equal(r->str, "draining");
    freeReplyObject(r);

    /* kill -9 of Redis: the view becomes incomplete, persist fails fast, nothing crashes */
    rt_redis_kill(&f->redis);
    assert_true(rt_run_until(f->loop, unavailable, f, 5));
    memset(&p, 0, sizeof(p));
    persist_n(f, f->a.cl, &p, 1, &target);
    assert_true(wait_for(f, &p.done, target, 5)); /* 0 sent or one failed callback */
    cluster_publish(f->a.cl, 2, "p", "{}", 2);         /* dropped and counted */
    /* Redis returns (empty): within 5 s the registry is re-written and events flow again */
    assert_int_equal(rt_redis_start(&f->redis, NULL), 0);
    assert_true(rt_run_until(f->loop, avail_is, f, 5));
    assert_true(rt_run_until(f->loop, key_is, &k, 2));
    assert_true(key_exists(f, "ws:instances:{A}:state"));
    memset(&p, 0, sizeof(p));
    persist_n(f, f->a.cl, &p, 1, &target);
    assert_true(wait_for(f, &p.done, target, 5));
    assert_int_equal(p.fails, 0);
    assert_int_equal(p.seq[0], 1);

    cluster_conn_close(f->a.cl, c);
    k.want = 0;
    assert_true(rt_run_until(f->loop, key_is, &k, 5));
    {
        buf b;
        buf_init(&b);
        cluster_render_metrics(&b, f->a.cl);
        buf_append(&b, "", 1);
        assert_non_null(strstr(b.data, "ringside_redis_circuit_state{conn=\"cmd\"} 0"));
        assert_null(strstr(b.data, "ringside_redis_dropped_publishes_total 0\n"));
        buf_free(&b);
    }
    free(c);
}

static int both_unavailable(void *arg)
{
    fx *f = arg;
    return f->a.hub.available == 0 && f->b.hub.available == 0 && !cluster_ready(f->a.cl) &&
           !cluster_ready(f->b.cl);
}

static int both_open(void *arg)
{
    fx *f = arg;
    return cluster_circuit_state(f->a.cl) == CLUSTER_OPEN &&
           cluster_circuit_state(f->b.cl) == CLUSTER_OPEN;
}

static void test_fanout_resumes_after_redis_restart(void **state)
{
    fx *f = *state;
    pres p;
    int target;
    struct timespec t0, t1;
    memset(&p, 0, sizeof(p));
    inst_start(f, &f->a, "A", 300);
    inst_start(f, &f->b, "B", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    persist_n(f, f->a.cl, &p, 10, &target);
    assert_true(wait_for(f, &f->b.hub.n, 10, 5));
    rt_redis_kill(&f->redis);
    assert_true(rt_run_until(f->loop, both_unavailable, f, 5));
    /* Unavailable is decided by whichever connection notices first (often the subscriber);
     * a persist is refused once the command connection's breaker has opened too. */
    assert_true(rt_run_until(f->loop, both_open, f, 5));
    assert_int_equal(cluster_persist(f->a.cl, "a", "p", 1, "{", 1, on_persist, &p), -1);
    assert_int_equal(rt_redis_start(&f->redis, NULL), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "RESUME-AFTER-RESTART %.0f ms\n",
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_int_equal(cluster_circuit_state(f->a.cl), CLUSTER_CLOSED);
    persist_n(f, f->a.cl, &p, 5, &target);
    assert_true(wait_for(f, &f->b.hub.n, 15, 5));
    assert_int_equal(f->b.hub.seq[10], 1); /* the data was lost: a new epoch from seq 1 */
    assert_int_equal(f->b.hub.seq[14], 5);
}

static long long used_memory(fx *f)
{
    redisReply *r = rt_cmd(f->redis.port, "INFO memory");
    const char *p = strstr(r->str, "used_memory:");
    long long v = p != NULL ? atoll(p + 12) : -1;
    freeReplyObject(r);
    return v;
}
static int dbsize_at_least(void *arg)
{
    kw *k = arg;
    redisReply *r = rt_cmd(k->f->redis.port, "DBSIZE");
    int ok = r != NULL && r->integer >= k->want;
    freeReplyObject(r);
    return ok;
}

static void test_registry_memory_10k(void **state)
{
    fx *f = *state;
    conn *c = calloc(1, sizeof(*c));
    long long before, after;
    kw k = {f, NULL, 10000};
    inst_start(f, &f->a, "A", 300);
    assert_true(rt_run_until(f->loop, both_ready, f, 5));
    rt_run_for(f->loop, 0.1);
    before = used_memory(f);
    c->has_ident = 1;
    c->filt.types = 0xf;
    c->filt.projects.n = 1;
    c->filt.projects.ids = calloc(1, sizeof(*c->filt.projects.ids));
    snprintf(c->filt.projects.ids[0], sizeof(c->filt.projects.ids[0]), "proj-1");
    for (uint64_t i = 1; i <= 10000; i++) {
        c->id = i;
        snprintf(c->cid, sizeof(c->cid), "%032llx", (unsigned long long)i);
        snprintf(c->ident.user_fp, sizeof(c->ident.user_fp), "%032llx", (unsigned long long)i);
        cluster_conn_open(f->a.cl, c);
    }
    {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int ok = rt_run_until(f->loop, dbsize_at_least, &k, 30);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        fprintf(stderr, "REGISTRY-WRITE 10000 connections in %.0f ms\n",
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        assert_true(ok);
    }
    rt_run_for(f->loop, 0.2);
    after = used_memory(f);
    fprintf(stderr, "REGISTRY-MEMORY connections=10000 used_memory_delta=%lld bytes (%.1f per "
                    "connection)\n",
            after - before, (double)(after - before) / 10000.0);
    assert_true(after - before < 10 * 1024 * 1024);
    /* a clean shutdown removes this instance's registry */
    cluster_free(f->a.cl);
    f->a.cl = NULL;
    {
        redisReply *r = rt_cmd(f->redis.port, "DBSIZE");
        assert_true(r->integer < 10);
        freeReplyObject(r);
    }
    free(c->filt.projects.ids);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_persist_contiguous_and_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_changes_on_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_replay_and_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_instances_fanout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_check_repairs_lost_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admission_across_instances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_and_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fanout_resumes_after_redis_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_memory_10k, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
