/*
 * server.h — the listener, the HTTP request phase and routing (REQUIREMENTS B1, B9, B11, B12).
 */
#ifndef RINGSIDE_SERVER_H
#define RINGSIDE_SERVER_H

#include <ev.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "proxy.h"

struct hub;
struct watch;

typedef struct server {
    struct ev_loop *loop;
    const config *cfg;
    struct hub *hub;
    struct watch *watch;
    struct auth_config *auth; /* NULL with --no-auth */
    struct ratelimit *rl;     /* --conn-rate per IP, --user-conns per user */
    struct ratelimit *anon_rl; /* --anon-conn-rate per client IP: no or a failed token */
    struct ratelimit *http_rl; /* --http-conns-per-ip: connections in the HTTP phase per peer */
    uint64_t n_http;           /* connections in the HTTP phase (--max-http-conns) */
    conn *http_head, *http_tail; /* those connections, newest first (the tail is evicted) */
    long fd_limit;             /* accepted fds at or above this are shed (RLIMIT_NOFILE - reserve) */
    proxy_list proxies;        /* --trusted-proxies */
    struct cluster *cl;       /* NULL in embedded mode */
    ev_timer sweep_timer;
    uint64_t sweeps;
    unsigned freed_since_trim; /* hibernations since the last malloc_trim */
    int lfd;
    int spare_fd; /* reserved fd released to shed connections on EMFILE */
    ev_io accept_io;
    ev_timer accept_retry;
    ev_check reaper; /* pumps dirty connections, frees dead ones */
    ev_idle kick;
    ev_timer drain_timer;
    conn *conns;    /* every open connection */
    conn *dead;     /* closed, freed by the reaper */
    conn *dirty;    /* to pump before the loop sleeps again */
    uint64_t next_id;
    uint64_t n_conns;
    uint64_t n_ws;
    int draining;
    uint64_t drain_started_mono;
    void (*on_drained)(struct server *srv); /* called once when draining finished */
} server;

/* Binds and listens on cfg->listen.  Returns 0, or -1 with one line in errbuf naming the cause and
 * what to do (e.g. the port is in use). */
int server_start(server *srv, struct ev_loop *loop, const config *cfg, struct hub *h,
                 struct watch *wt, char *errbuf, size_t errlen);

/* Logs the bound address and port ("listening"; tests read the port from it). */
void server_log_listening(const server *srv);

/* Begins the drain (B11): /readyz → 503, new upgrades → 503, clients told to reconnect and closed
 * with 1001, staggered over the drain window; on_drained runs when all are gone or at the timeout. */
void server_drain(server *srv);

/* Closes every connection and the listener, frees everything. */
void server_stop(server *srv);

/* Used by conn.c: queue a connection for freeing at the end of this loop iteration. */
void server_retire(server *srv, conn *c);

/* Used by conn.c when a WebSocket connection ends, for the drain bookkeeping. */
void server_ws_closed(server *srv);

/* Readiness: 1 when serving (not draining). */
int server_ready(const server *srv);

#endif
