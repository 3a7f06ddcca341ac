/* Sentinel failover: a master, a replica and a redis-sentinel (all real, on free loopback ports);
 * two cluster instances with a redis-sentinel:// URL keep exchanging events across a
 * SENTINEL FAILOVER, following +switch-master to the promoted replica. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"
#include "redis_fixture.h"

struct hub {
    int n;
    uint64_t last_seq;
    int available;
};

void hub_remote_event(struct hub *h, const char *origin, uint32_t type, const char *json,
                      size_t len)
{
    char tmp[512];
    const char *p;
    (void)origin;
    (void)type;
    if (len >= sizeof(tmp))
        len = sizeof(tmp) - 1;
    memcpy(tmp, json, len);
    tmp[len] = '\0';
    p = strstr(tmp, "\"seq\":");
    h->last_seq = p != NULL ? strtoull(p + 6, NULL, 10) : 0;
    h->n++;
}
void hub_remote_agent(struct hub *h, const char *json, size_t len)
{
    (void)h;
    (void)json;
    (void)len;
}
void hub_cluster_state(struct hub *h, int available)
{
    h->available = available;
}

typedef struct fx {
    struct ev_loop *loop;
    rt_redis master, replica, sentinel;
    cluster *a, *b;
    struct hub ha, hb;
    config cfg_a, cfg_b;
    char url[128];
    int persisted, failed;
} fx;

static int info_has(int port, const char *section, const char *needle)
{
    redisReply *r = rt_cmd(port, "INFO %s", section);
    int ok = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, needle) != NULL;
    freeReplyObject(r);
    return ok;
}

static int sentinel_knows_replica(int sport)
{
    redisReply *r = rt_cmd(sport, "SENTINEL REPLICAS mymaster");
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1;
    freeReplyObject(r);
    return ok;
}

static void wait_cond(int (*f)(int, const char *, const char *), int port, const char *s,
                      const char *n, double timeout)
{
    for (int i = 0; i < (int)(timeout * 20) && !f(port, s, n); i++)
        usleep(50000);
    assert_true(f(port, s, n));
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    char mport[16];
    const char *rep[] = {"--replicaof", "127.0.0.1", mport, NULL};
    f->loop = ev_loop_new(EVFLAG_AUTO);
    if (rt_redis_start(&f->master, NULL) != 0)
        return -1;
    snprintf(mport, sizeof(mport), "%d", f->master.port);
    if (rt_redis_start(&f->replica, rep) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cluster_free(f->a);
    cluster_free(f->b);
    rt_redis_stop(&f->sentinel);
    rt_redis_stop(&f->replica);
    rt_redis_stop(&f->master);
    assert_int_equal(ev_run(f->loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static int both_ready(void *arg)
{
    fx *f = arg;
    return cluster_ready(f->a) && cluster_ready(f->b);
}

static void on_persist(void *ud, int status, const char *json, size_t len, uint64_t seq,
                       const char *epoch)
{
    fx *f = ud;
    (void)json;
    (void)len;
    (void)seq;
    (void)epoch;
    if (status == 0)
        f->persisted++;
    else
        f->failed++;
}

typedef struct wi {
    int *v, target;
} wi;
static int reached(void *arg)
{
    wi *w = arg;
    return *w->v >= w->target;
}

static int failover_followed(void *arg)
{
    fx *f = arg;
    buf b;
    int ok;
    buf_init(&b);
    cluster_render_metrics(&b, f->a);
    buf_append(&b, "", 1);
    ok = strstr(b.data, "ringside_redis_sentinel_failovers_total 1\n") != NULL;
    buf_free(&b);
    return ok && both_ready(f);
}

static void persist_some(fx *f, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(cluster_persist(f->a, "a", "p", 1, "{\"type\":\"agent_status\"", 22,
                                         on_persist, f),
                         0);
}

static void test_failover_followed(void **state)
{
    fx *f = *state;
    char err[256];
    wi w;
    wait_cond(info_has, f->replica.port, "replication", "master_link_status:up", 10);
    assert_int_equal(rt_sentinel_start(&f->sentinel, f->master.port), 0);
    for (int i = 0; i < 200 && !sentinel_knows_replica(f->sentinel.port); i++)
        usleep(50000);
    assert_true(sentinel_knows_replica(f->sentinel.port));

    snprintf(f->url, sizeof(f->url), "redis-sentinel://127.0.0.1:%d/mymaster", f->sentinel.port);
    f->cfg_a.redis = f->cfg_b.redis = f->url;
    f->cfg_a.instance_id = "A";
    f->cfg_b.instance_id = "B";
    f->cfg_a.all_projects = f->cfg_b.all_projects = 1;
    f->cfg_a.replay_window = f->cfg_b.replay_window = 300;
    f->cfg_a.replay_max = f->cfg_b.replay_max = 10000;
    f->a = cluster_new(f->loop, &f->cfg_a, &f->ha, err, sizeof(err));
    f->b = cluster_new(f->loop, &f->cfg_b, &f->hb, err, sizeof(err));
    assert_non_null(f->a);
    assert_non_null(f->b);
    assert_true(rt_run_until(f->loop, both_ready, f, 10));
    persist_some(f, 5);
    w.v = &f->hb.n;
    w.target = 5;
    assert_true(rt_run_until(f->loop, reached, &w, 5));
    assert_int_equal(f->hb.last_seq, 5);
    /* Replication is asynchronous: a failover before the replica has the 5 events starts the
     * new master empty (a new epoch, as designed).  This test is about following the failover
     * with the data kept, so it waits for the replica to have them (bounded). */
    {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (;;) {
            redisReply *r = rt_cmd(f->replica.port, "XLEN ws:replay:{events}");
            long long n = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
            freeReplyObject(r);
            if (n >= 5)
                break;
            clock_gettime(CLOCK_MONOTONIC, &t);
            assert_true(t.tv_sec - t0.tv_sec < 10);
            rt_run_for(f->loop, 0.02);
        }
    }

    {
        /* The sentinel needs the replica's own INFO before it can promote it (NOGOODSLAVE until
         * then): retry for a bounded time, keeping the loop running. */
        int ok = 0;
        for (int i = 0; i < 60 && !ok; i++) {
            redisReply *r = rt_cmd(f->sentinel.port, "SENTINEL FAILOVER mymaster");
            assert_non_null(r);
            ok = r->type != REDIS_REPLY_ERROR;
            if (!ok && i % 10 == 0)
                fprintf(stderr, "SENTINEL FAILOVER: %s\n", r->str);
            freeReplyObject(r);
            if (!ok)
                rt_run_for(f->loop, 0.25);
        }
        assert_true(ok);
    }
    assert_true(rt_run_until(f->loop, failover_followed, f, 30));
    assert_true(info_has(f->replica.port, "replication", "role:master"));
    /* events flow through the new master; the replicated stream keeps its epoch and seq */
    persist_some(f, 5);
    w.target = 10;
    assert_true(rt_run_until(f->loop, reached, &w, 10));
    assert_int_equal(f->hb.last_seq, 10);
    assert_int_equal(f->failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failover_followed, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
