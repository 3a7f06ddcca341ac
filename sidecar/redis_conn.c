#include "redis_conn.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sodium.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include <hiredis/adapters/libev.h>
#pragma GCC diagnostic pop

#include "log.h"
#include "util.h"

const char *redis_conn_strerror(int err)
{
    switch (err) {
#define RC_STR_(name, value, text)                                                                 \
    case value:                                                                                    \
        return text;
        REDIS_CONN_ERRORS(RC_STR_)
#undef RC_STR_
    default:
        return "unknown redis_conn error";
    }
}

/* ---- URLs -------------------------------------------------------------------------------------- */

/* Parses "host[:port]" or "[v6]:port" from s (length len) into a. */
static int url_addr(const char *s, size_t len, int defport, redis_addr *a)
{
    const char *host = s, *colon = NULL;
    size_t hlen;
    if (len == 0)
        return -1;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL)
            return -1;
        host = s + 1;
        hlen = (size_t)(rb - host);
        if ((size_t)(rb + 1 - s) < len) {
            if (rb[1] != ':')
                return -1;
            colon = rb + 1;
        }
    } else {
        colon = memchr(s, ':', len);
        hlen = colon != NULL ? (size_t)(colon - s) : len;
    }
    if (hlen == 0 || hlen > REDIS_URL_HOST_MAX)
        return -1;
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    a->port = defport;
    if (colon != NULL) {
        const char *p = colon + 1, *end = s + len;
        long port = 0;
        if (p == end)
            return -1;
        for (; p < end; p++) {
            if (!isdigit((unsigned char)*p))
                return -1;
            port = port * 10 + (*p - '0');
            if (port > 65535)
                return -1;
        }
        if (port == 0)
            return -1;
        a->port = (int)port;
    }
    return 0;
}

static int url_db(const char *s, int *db)
{
    long v = 0;
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (*s - '0');
        if (v > 10000)
            return -1;
    }
    *db = (int)v;
    return 0;
}

int redis_url_parse(const char *s, redis_url *out, char *err, size_t errlen)
{
    const char *p, *at, *slash;
    memset(out, 0, sizeof(*out));
    if (s == NULL) {
        snprintf(err, errlen, "--redis: missing URL");
        return -1;
    }
    if (strncmp(s, "redis://", 8) == 0) {
        p = s + 8;
    } else if (strncmp(s, "redis-sentinel://", 17) == 0) {
        p = s + 17;
        out->sentinel = 1;
    } else {
        snprintf(err, errlen, "--redis: URL must start with redis:// or redis-sentinel://");
        return -1;
    }
    slash = strchr(p, '/');
    at = strchr(p, '@');
    if (at != NULL && (slash == NULL || at < slash)) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon != NULL ? colon + 1 : p; /* "user:pw@" or "pw@" */
        size_t pwlen = (size_t)(at - pw);
        if (pwlen >= sizeof(out->password)) {
            snprintf(err, errlen, "--redis: password too long");
            return -1;
        }
        memcpy(out->password, pw, pwlen);
        out->password[pwlen] = '\0';
        p = at + 1;
        slash = strchr(p, '/');
    }
    if (!out->sentinel) {
        size_t hlen = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (url_addr(p, hlen, 6379, &out->addr) != 0) {
            snprintf(err, errlen, "--redis: bad host:port in '%.*s'", (int)hlen, p);
            goto fail;
        }
        if (slash != NULL && url_db(slash + 1, &out->db) != 0) {
            snprintf(err, errlen, "--redis: bad database number '%s'", slash + 1);
            goto fail;
        }
        return 0;
    }
    if (slash == NULL || slash[1] == '\0') {
        snprintf(err, errlen, "--redis: redis-sentinel:// needs /master-name");
        goto fail;
    }
    {
        const char *h = p;
        while (h < slash) {
            const char *comma = memchr(h, ',', (size_t)(slash - h));
            const char *end = comma != NULL ? comma : slash;
            if (out->n_sentinels == REDIS_URL_MAX_SENTINELS) {
                snprintf(err, errlen, "--redis: more than %d sentinels", REDIS_URL_MAX_SENTINELS);
                goto fail;
            }
            if (url_addr(h, (size_t)(end - h), 26379, &out->sentinels[out->n_sentinels]) != 0) {
                snprintf(err, errlen, "--redis: bad sentinel address '%.*s'", (int)(end - h), h);
                goto fail;
            }
            out->n_sentinels++;
            h = comma != NULL ? comma + 1 : slash;
        }
    }
    {
        const char *name = slash + 1;
        const char *s2 = strchr(name, '/');
        size_t nlen = s2 != NULL ? (size_t)(s2 - name) : strlen(name);
        if (nlen == 0 || nlen >= sizeof(out->master)) {
            snprintf(err, errlen, "--redis: bad master name");
            goto fail;
        }
        memcpy(out->master, name, nlen);
        out->master[nlen] = '\0';
        if (s2 != NULL && url_db(s2 + 1, &out->db) != 0) {
            snprintf(err, errlen, "--redis: bad database number '%s'", s2 + 1);
            goto fail;
        }
    }
    if (out->n_sentinels == 0) {
        snprintf(err, errlen, "--redis: no sentinel address");
        goto fail;
    }
    return 0;
fail:
    sodium_memzero(out->password, sizeof(out->password));
    return -1;
}

/* ---- connections --------------------------------------------------------------------------------- */

typedef enum rc_phase {
    RC_IDLE,       /* no address yet, or waiting for the reconnect timer */
    RC_CONNECTING, /* connect + handshake in progress */
    RC_READY
} rc_phase;

struct redis_conn {
    struct ev_loop *loop;
    redis_conn_cfg cfg;
    char *password;
    redis_conn_event_cb on_event;
    void *ud;
    char host[REDIS_URL_HOST_MAX + 1];
    int port;
    redisAsyncContext *ac;
    rc_phase phase;
    uint64_t gen;       /* connection generation: stale internal replies are ignored */
    int failures;       /* consecutive */
    redis_conn_circuit circuit;
    int ever_ready;
    int freeing;
    unsigned pending;
    /* Timed commands in the order sent (Redis answers in order).  Only the oldest one's deadline
     * runs, from when the reply before it came: a long pipeline that Redis works through steadily
     * (10,000 registry writes after an outage) is not failed for its length, while a stalled
     * Redis still fails the connection within one --redis command timeout. */
    struct rc_cmd *tq_head, *tq_tail;
    ev_timer hs_timer;    /* connect + handshake deadline; subscription confirmation */
    ev_timer retry_timer; /* reconnect after backoff (or at once) */
    redis_conn_msg_cb sub_cb;
    void *sub_ud;
    int sub_confirmed;
    redis_conn_stats stats;
};

typedef struct rc_cmd {
    ev_timer timer;
    struct rc_cmd *tq_next; /* timed queue (redis_conn.tq_head) */
    int tq_linked;
    double timeout;
    redis_conn *rc;
    redis_conn_reply_cb cb;
    void *ud;
    uint64_t gen;
    int internal; /* handshake command: ignored once its connection is gone */
    int timed;
    int expired; /* its deadline failed the connection */
} rc_cmd;

void redis_conn_cfg_defaults(redis_conn_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "redis";
    cfg->connect_timeout = 1.0;
    cfg->command_timeout = 1.0;
    cfg->backoff_min = 0.1;
    cfg->backoff_max = 2.0;
    cfg->breaker_threshold = 5;
    cfg->max_pending = 100000;
}

const char *redis_conn_circuit_name(redis_conn_circuit c)
{
    return c == RC_CLOSED ? "closed" : c == RC_OPEN ? "open" : "half_open";
}

static void rc_emit(redis_conn *rc, redis_conn_event ev)
{
    if (rc->on_event != NULL)
        rc->on_event(rc->ud, ev);
}

static void rc_schedule(redis_conn *rc, double delay)
{
    ev_timer_stop(rc->loop, &rc->retry_timer);
    ev_timer_set(&rc->retry_timer, delay, 0.);
    ev_timer_start(rc->loop, &rc->retry_timer);
}

static double rc_backoff(const redis_conn *rc)
{
    double d = rc->cfg.backoff_min;
    int i;
    for (i = 1; i < rc->failures && d < rc->cfg.backoff_max; i++)
        d *= 2;
    if (d > rc->cfg.backoff_max)
        d = rc->cfg.backoff_max;
    /* ±20 % jitter so that instances do not reconnect in lock step. */
    return d * (0.8 + 0.4 * (double)randombytes_uniform(1000) / 1000.0);
}

/* Starts the deadline of the oldest timed command, if it is not running. */
static void tq_arm(redis_conn *rc)
{
    rc_cmd *head = rc->tq_head;
    if (head != NULL && !ev_is_active(&head->timer)) {
        /* from now, not from the loop's cached time: replies handled late in a long iteration
         * would otherwise start their successor's deadline in the past */
        ev_now_update(rc->loop);
        ev_timer_set(&head->timer, head->timeout, 0.);
        ev_timer_start(rc->loop, &head->timer);
    }
}

static void tq_unlink(redis_conn *rc, rc_cmd *cmd)
{
    if (!cmd->tq_linked)
        return;
    ev_timer_stop(rc->loop, &cmd->timer);
    rc_cmd **pp = &rc->tq_head, *prev = NULL;
    while (*pp != NULL && *pp != cmd) {
        prev = *pp;
        pp = &(*pp)->tq_next;
    }
    if (*pp == cmd) {
        *pp = cmd->tq_next;
        if (rc->tq_tail == cmd)
            rc->tq_tail = prev;
    }
    cmd->tq_next = NULL;
    cmd->tq_linked = 0;
}

/* The connection is going: no deadline of its commands may fire any more. */
static void tq_clear(redis_conn *rc)
{
    while (rc->tq_head != NULL)
        tq_unlink(rc, rc->tq_head);
}

/* Detaches and frees the hiredis context (pending callbacks run with NULL), if any. */
static void rc_drop(redis_conn *rc)
{
    redisAsyncContext *ac = rc->ac;
    int was_ready = rc->phase == RC_READY;
    ev_timer_stop(rc->loop, &rc->hs_timer);
    tq_clear(rc);
    rc->phase = RC_IDLE;
    rc->sub_cb = NULL;
    rc->sub_confirmed = 0;
    rc->gen++;
    if (ac != NULL) {
        rc->ac = NULL;
        ac->data = NULL;
        if (ac->c.fd >= 0) {
            /* Reset, not close: commands still in the socket's send queue (their deadline passed
             * and their callbacks already failed) must not reach Redis when a partition heals,
             * or a persisted event the hub delivered locally as stale would be stored again. */
            struct linger lg = {1, 0};
            setsockopt(ac->c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        redisAsyncFree(ac); /* deferred by hiredis when inside one of its callbacks */
    }
    if (was_ready)
        rc_emit(rc, RC_EV_DOWN);
}

/* A connection-level failure: count, maybe open the circuit, drop, schedule the next attempt. */
static void rc_fail(redis_conn *rc, const char *why)
{
    int was_ready = rc->phase == RC_READY;
    char esc[256];
    rc->failures++;
    rc->stats.failures++;
    snprintf(esc, sizeof esc, "%s", why); /* log_write escapes it */
    if (rc->circuit == RC_HALF_OPEN ||
        (rc->circuit == RC_CLOSED && rc->failures >= rc->cfg.breaker_threshold)) {
        if (rc->circuit == RC_CLOSED) {
            rc->stats.opens++;
            log_warn("redis circuit open",
                     "\"conn\":\"%s\",\"host\":\"%s\",\"port\":%d,\"failures\":%d,\"error\":\"%s\"",
                     rc->cfg.name, rc->host, rc->port, rc->failures, esc);
        }
        rc->circuit = RC_OPEN;
    } else if (was_ready || rc->failures == 1) {
        log_warn("redis connection failed",
                 "\"conn\":\"%s\",\"host\":\"%s\",\"port\":%d,\"failures\":%d,\"error\":\"%s\"",
                 rc->cfg.name, rc->host, rc->port, rc->failures, esc);
    }
    rc_drop(rc);
    if (rc->host[0] != '\0')
        rc_schedule(rc, rc_backoff(rc));
    rc_emit(rc, RC_EV_FAILED);
}

static void rc_success(redis_conn *rc)
{
    rc->failures = 0;
}

static void rc_ready(redis_conn *rc)
{
    ev_timer_stop(rc->loop, &rc->hs_timer);
    rc->phase = RC_READY;
    if (rc->circuit != RC_CLOSED) {
        log_info("redis circuit closed", "\"conn\":\"%s\",\"host\":\"%s\",\"port\":%d",
                 rc->cfg.name, rc->host, rc->port);
        rc->circuit = RC_CLOSED;
        rc->failures = 0;
    }
    if (rc->ever_ready) {
        rc->stats.reconnects++;
        log_info("redis reconnected", "\"conn\":\"%s\",\"host\":\"%s\",\"port\":%d", rc->cfg.name,
                 rc->host, rc->port);
    }
    rc->ever_ready = 1;
    rc_emit(rc, RC_EV_READY);
}

static int rc_is_unavailable_error(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR &&
           (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "LOADING", 7) == 0 ||
            strncmp(r->str, "MASTERDOWN", 10) == 0);
}

static void rc_cmd_hcb(redisAsyncContext *ac, void *r, void *privdata)
{
    rc_cmd *cmd = privdata;
    redis_conn *rc = cmd->rc;
    const redisReply *reply = r;
    (void)ac;
    if (cmd->timed) {
        tq_unlink(rc, cmd);
        if (rc->ac != NULL)
            tq_arm(rc); /* the next one's turn starts now */
    }
    rc->pending--;
    if (cmd->internal && cmd->gen != rc->gen) {
        free(cmd);
        return;
    }
    if (reply == NULL) {
        if (cmd->cb != NULL)
            cmd->cb(cmd->ud, cmd->expired ? RC_ETIMEOUT : rc->freeing ? RC_ECLOSED : RC_ELOST,
                    NULL);
        free(cmd);
        return;
    }
    if (rc_is_unavailable_error(reply)) {
        int current = cmd->gen == rc->gen;
        if (cmd->cb != NULL)
            cmd->cb(cmd->ud, RC_ELOST, NULL);
        free(cmd);
        if (current)
            rc_fail(rc, reply->str);
        return;
    }
    rc_success(rc);
    if (cmd->cb != NULL)
        cmd->cb(cmd->ud, RC_OK, reply);
    free(cmd);
}

static void rc_cmd_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    rc_cmd *cmd = container_of(w, rc_cmd, timer);
    redis_conn *rc = cmd->rc;
    (void)loop;
    (void)revents;
    rc->stats.timeouts++;
    cmd->expired = 1;
    /* Frees the context: this command's callback runs (with NULL) and frees cmd. */
    rc_fail(rc, "command deadline missed");
}

static int rc_send(redis_conn *rc, int internal, double timeout, redis_conn_reply_cb cb, void *ud,
                   int argc, const char **argv, const size_t *argvlen)
{
    rc_cmd *cmd;
    if (rc->ac == NULL)
        return RC_EDOWN;
    cmd = xcalloc(1, sizeof(*cmd));
    cmd->rc = rc;
    cmd->cb = cb;
    cmd->ud = ud;
    cmd->gen = rc->gen;
    cmd->internal = internal;
    if (redisAsyncCommandArgv(rc->ac, rc_cmd_hcb, cmd, argc, argv, argvlen) != REDIS_OK) {
        free(cmd);
        return RC_EDOWN;
    }
    rc->pending++;
    rc->stats.commands++;
    if (timeout > 0) {
        cmd->timed = 1;
        cmd->timeout = timeout;
        ev_timer_init(&cmd->timer, rc_cmd_timeout, timeout, 0.);
        cmd->tq_linked = 1;
        if (rc->tq_tail != NULL)
            rc->tq_tail->tq_next = cmd;
        else
            rc->tq_head = cmd;
        rc->tq_tail = cmd;
        tq_arm(rc);
    }
    return RC_OK;
}

int redis_conn_command(redis_conn *rc, double timeout, redis_conn_reply_cb cb, void *ud, int argc,
                       const char **argv, const size_t *argvlen)
{
    if (rc == NULL || argc <= 0 || argv == NULL)
        return RC_EINVAL;
    if (rc->phase != RC_READY)
        return RC_EDOWN;
    if (rc->pending >= rc->cfg.max_pending)
        return RC_EFULL;
    return rc_send(rc, 0, timeout > 0 ? timeout : rc->cfg.command_timeout, cb, ud, argc, argv,
                   argvlen);
}

/* Handshake replies: AUTH, SELECT, ROLE answer errors by failing; PING completes. */
static void rc_hs_reply(void *ud, int status, const redisReply *r)
{
    redis_conn *rc = ud;
    char why[160];
    if (status != RC_OK)
        return; /* the connection is already being handled */
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "handshake: %s", r->str);
        rc_fail(rc, why);
        return;
    }
    if (r->type == REDIS_REPLY_ARRAY) { /* ROLE */
        if (r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING ||
            strcmp(r->element[0]->str, "master") != 0)
            rc_fail(rc, "handshake: server is not a master");
        return;
    }
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0 &&
        rc->phase == RC_CONNECTING)
        rc_ready(rc);
}

static void rc_on_connect(const redisAsyncContext *ac, int status)
{
    redis_conn *rc = ac->data;
    if (rc == NULL || rc->ac != ac)
        return;
    if (status != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
        /* hiredis frees the context after this callback: forget it first. */
        rc->ac = NULL;
        rc_fail(rc, why);
    }
}

static void rc_on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_conn *rc = ac->data;
    char why[160];
    if (rc == NULL || rc->ac != ac)
        return;
    rc->ac = NULL;
    snprintf(why, sizeof(why), "disconnected: %s",
             status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
    rc_fail(rc, why);
}

static void rc_hs_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    redis_conn *rc = container_of(w, redis_conn, hs_timer);
    (void)loop;
    (void)revents;
    rc->stats.timeouts++;
    rc_fail(rc, rc->phase == RC_READY ? "subscribe deadline missed" : "connect deadline missed");
}

static void rc_connect(redis_conn *rc)
{
    redisAsyncContext *ac;
    if (rc->host[0] == '\0' || rc->ac != NULL)
        return;
    if (rc->circuit == RC_OPEN)
        rc->circuit = RC_HALF_OPEN;
    rc->gen++;
    ac = redisAsyncConnect(rc->host, rc->port);
    if (ac == NULL) {
        rc_fail(rc, "connect: out of memory");
        return;
    }
    if (ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", ac->errstr);
        redisAsyncFree(ac);
        rc_fail(rc, why);
        return;
    }
    ac->data = rc;
    if (redisLibevAttach(rc->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        rc_fail(rc, "connect: attach failed");
        return;
    }
    redisAsyncSetConnectCallback(ac, rc_on_connect);
    redisAsyncSetDisconnectCallback(ac, rc_on_disconnect);
    (void)redisEnableKeepAlive(&ac->c);
    rc->ac = ac;
    rc->phase = RC_CONNECTING;
    ev_timer_set(&rc->hs_timer, rc->cfg.connect_timeout, 0.);
    ev_timer_start(rc->loop, &rc->hs_timer);
    /* The handshake is pipelined behind the connect; PING's reply makes the connection ready. */
    if (rc->password != NULL) {
        const char *argv[] = {"AUTH", rc->password};
        (void)rc_send(rc, 1, 0, rc_hs_reply, rc, 2, argv, NULL);
    }
    if (rc->cfg.db != 0) {
        char db[16];
        const char *argv[] = {"SELECT", db};
        snprintf(db, sizeof(db), "%d", rc->cfg.db);
        (void)rc_send(rc, 1, 0, rc_hs_reply, rc, 2, argv, NULL);
    }
    if (rc->cfg.require_master) {
        const char *argv[] = {"ROLE"};
        (void)rc_send(rc, 1, 0, rc_hs_reply, rc, 1, argv, NULL);
    }
    {
        const char *argv[] = {"PING"};
        (void)rc_send(rc, 1, 0, rc_hs_reply, rc, 1, argv, NULL);
    }
}

static void rc_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    redis_conn *rc = container_of(w, redis_conn, retry_timer);
    (void)loop;
    (void)revents;
    rc_connect(rc);
}

redis_conn *redis_conn_new(struct ev_loop *loop, const redis_conn_cfg *cfg,
                           redis_conn_event_cb on_event, void *ud)
{
    redis_conn *rc = xcalloc(1, sizeof(*rc));
    rc->loop = loop;
    rc->cfg = *cfg;
    if (cfg->password != NULL && cfg->password[0] != '\0')
        rc->password = xstrdup(cfg->password);
    rc->cfg.password = NULL;
    rc->on_event = on_event;
    rc->ud = ud;
    ev_timer_init(&rc->hs_timer, rc_hs_timeout, 1., 0.);
    ev_timer_init(&rc->retry_timer, rc_retry, 0., 0.);
    return rc;
}

void redis_conn_free(redis_conn *rc)
{
    if (rc == NULL)
        return;
    rc->on_event = NULL;
    rc->freeing = 1;
    ev_timer_stop(rc->loop, &rc->retry_timer);
    ev_timer_stop(rc->loop, &rc->hs_timer);
    rc->phase = RC_IDLE;
    rc->gen++;
    if (rc->ac != NULL) {
        redisAsyncContext *ac = rc->ac;
        rc->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* pending callbacks run now with RC_ECLOSED */
    }
    if (rc->password != NULL) {
        sodium_memzero(rc->password, strlen(rc->password));
        free(rc->password);
    }
    free(rc);
}

void redis_conn_set_addr(redis_conn *rc, const char *host, int port)
{
    if (host == NULL || strlen(host) > REDIS_URL_HOST_MAX)
        return;
    if (strcmp(host, rc->host) == 0 && port == rc->port)
        return;
    snprintf(rc->host, sizeof(rc->host), "%s", host);
    rc->port = port;
    rc_drop(rc);
    rc_schedule(rc, 0.);
}

void redis_conn_reset(redis_conn *rc, const char *why)
{
    log_info("redis connection reset", "\"conn\":\"%s\",\"reason\":\"%s\"", rc->cfg.name, why);
    rc_drop(rc);
    if (rc->host[0] != '\0')
        rc_schedule(rc, 0.);
}

static void rc_sub_hcb(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_conn *rc = privdata;
    const redisReply *reply = r;
    (void)ac;
    if (reply == NULL || rc->ac != ac || rc->sub_cb == NULL)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        ev_timer_stop(rc->loop, &rc->hs_timer);
        rc->sub_confirmed = 1;
        rc_success(rc);
        rc->sub_cb(rc->sub_ud, 0, NULL, 0);
    } else if (strcmp(reply->element[0]->str, "message") == 0 &&
               reply->element[2]->type == REDIS_REPLY_STRING) {
        rc->sub_cb(rc->sub_ud, 1, reply->element[2]->str, reply->element[2]->len);
    }
}

int redis_conn_subscribe(redis_conn *rc, const char *channel, redis_conn_msg_cb cb, void *ud)
{
    if (rc->phase != RC_READY || rc->ac == NULL)
        return RC_EDOWN;
    if (rc->sub_cb != NULL || cb == NULL)
        return RC_EINVAL;
    if (redisAsyncCommand(rc->ac, rc_sub_hcb, rc, "SUBSCRIBE %s", channel) != REDIS_OK)
        return RC_EDOWN;
    rc->stats.commands++;
    rc->sub_cb = cb;
    rc->sub_ud = ud;
    ev_timer_set(&rc->hs_timer, rc->cfg.command_timeout, 0.);
    ev_timer_start(rc->loop, &rc->hs_timer);
    return RC_OK;
}

int redis_conn_ready(const redis_conn *rc)
{
    return rc != NULL && rc->phase == RC_READY;
}

redis_conn_circuit redis_conn_circuit_state(const redis_conn *rc)
{
    return rc->circuit;
}

unsigned redis_conn_pending(const redis_conn *rc)
{
    return rc->pending;
}

const redis_conn_stats *redis_conn_get_stats(const redis_conn *rc)
{
    return &rc->stats;
}

const char *redis_conn_host(const redis_conn *rc)
{
    return rc->host;
}

int redis_conn_port(const redis_conn *rc)
{
    return rc->port;
}

/* ---- Sentinel ------------------------------------------------------------------------------------ */

struct redis_sentinel {
    struct ev_loop *loop;
    redis_url url;
    unsigned current; /* index of the sentinel in use */
    redis_conn *rc;
    redis_sentinel_cb cb;
    void *ud;
    uint64_t failovers;
    ev_tstamp last_refresh;
};

static void sn_use_current(redis_sentinel *s)
{
    const redis_addr *a = &s->url.sentinels[s->current % s->url.n_sentinels];
    redis_conn_set_addr(s->rc, a->host, a->port);
}

static void sn_message(void *ud, int kind, const char *payload, size_t len);

static void sn_master_reply(void *ud, int status, const redisReply *r)
{
    redis_sentinel *s = ud;
    long port;
    if (status != RC_OK)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        log_warn("sentinel does not know the master", "\"master\":\"%s\",\"sentinel\":\"%s:%d\"",
                 s->url.master, redis_conn_host(s->rc), redis_conn_port(s->rc));
    } else {
        port = strtol(r->element[1]->str, NULL, 10);
        if (port > 0 && port <= 65535)
            s->cb(s->ud, r->element[0]->str, (int)port);
    }
    /* Subscribe only after the answer: hiredis 0.14 treats a subscribed context's replies as
     * messages once no regular callback is pending. */
    (void)redis_conn_subscribe(s->rc, "+switch-master", sn_message, s);
}

static void sn_message(void *ud, int kind, const char *payload, size_t len)
{
    redis_sentinel *s = ud;
    char msg[512], name[128], oldip[256], newip[256];
    int oldport, newport;
    if (kind != 1 || len >= sizeof(msg))
        return;
    memcpy(msg, payload, len);
    msg[len] = '\0';
    /* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */
    if (sscanf(msg, "%127s %255s %d %255s %d", name, oldip, &oldport, newip, &newport) != 5)
        return;
    if (strcmp(name, s->url.master) != 0 || newport <= 0 || newport > 65535)
        return;
    s->failovers++;
    log_warn("redis failover followed", "\"master\":\"%s\",\"from\":\"%s:%d\",\"to\":\"%s:%d\"",
             s->url.master, oldip, oldport, newip, newport);
    s->cb(s->ud, newip, newport);
}

static void sn_event(void *ud, redis_conn_event ev)
{
    redis_sentinel *s = ud;
    if (ev == RC_EV_READY) {
        const char *argv[] = {"SENTINEL", "get-master-addr-by-name", s->url.master};
        (void)redis_conn_command(s->rc, 0, sn_master_reply, s, 3, argv, NULL);
    } else if (ev == RC_EV_FAILED && s->url.n_sentinels > 1) {
        s->current = (s->current + 1) % s->url.n_sentinels;
        sn_use_current(s);
    }
}

redis_sentinel *redis_sentinel_new(struct ev_loop *loop, const redis_url *u, redis_sentinel_cb cb,
                                   void *ud)
{
    redis_sentinel *s;
    redis_conn_cfg cfg;
    if (u == NULL || !u->sentinel || u->n_sentinels == 0)
        return NULL;
    s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->url = *u;
    sodium_memzero(s->url.password, sizeof(s->url.password));
    s->cb = cb;
    s->ud = ud;
    redis_conn_cfg_defaults(&cfg);
    cfg.name = "sentinel";
    cfg.breaker_threshold = 1000000; /* a sentinel is only an address book: never "open" */
    s->rc = redis_conn_new(loop, &cfg, sn_event, s);
    sn_use_current(s);
    return s;
}

void redis_sentinel_free(redis_sentinel *s)
{
    if (s == NULL)
        return;
    redis_conn_free(s->rc);
    free(s);
}

void redis_sentinel_refresh(redis_sentinel *s)
{
    ev_tstamp now = ev_now(s->loop);
    if (s->last_refresh != 0 && now - s->last_refresh < 1.0)
        return;
    s->last_refresh = now;
    if (s->url.n_sentinels > 1 && !redis_conn_ready(s->rc)) {
        s->current = (s->current + 1) % s->url.n_sentinels;
        sn_use_current(s);
    } else {
        redis_conn_reset(s->rc, "master refresh");
    }
}

uint64_t redis_sentinel_failovers(const redis_sentinel *s)
{
    return s->failovers;
}
