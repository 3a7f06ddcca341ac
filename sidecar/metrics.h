/*
 * metrics.h — the sidecar's Prometheus metrics (REQUIREMENTS F2), rendered at /metrics.
 *
 * Plain counters in one global struct, updated from the loop thread only (no atomics needed).
 */
#ifndef RINGSIDE_METRICS_H
#define RINGSIDE_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "msg.h"

/* Reasons a connection ended (label of ws_updates_disconnections_total). */
#define METRICS_CLOSE_REASONS(X)                                                                   \
    X(CLOSE_CLIENT, "client_close")                                                                \
    X(CLOSE_EOF, "eof")                                                                            \
    X(CLOSE_IO_ERROR, "io_error")                                                                  \
    X(CLOSE_PROTOCOL, "protocol_error")                                                            \
    X(CLOSE_TOO_BIG, "message_too_big")                                                            \
    X(CLOSE_BAD_UTF8, "bad_utf8")                                                                  \
    X(CLOSE_POLICY, "policy")                                                                      \
    X(CLOSE_HEARTBEAT, "heartbeat_timeout")                                                        \
    X(CLOSE_SLOW, "slow_consumer")                                                                 \
    X(CLOSE_DRAIN, "drain")                                                                        \
    X(CLOSE_TOKEN_EXPIRED, "token_expired")                                                        \
    X(CLOSE_TASK_ENDED, "task_ended")                                                              \
    X(CLOSE_FORBIDDEN, "forbidden")                                                                \
    X(CLOSE_UNKNOWN_TASK, "unknown_task")                                                          \
    X(CLOSE_OUTPUT_EXPIRED, "output_expired")                                                      \
    X(CLOSE_HISTORY_UNAVAILABLE, "history_unavailable")                                            \
    X(CLOSE_INBOUND_RATE, "inbound_rate")

typedef enum close_reason {
#define METRICS_ENUM_(name, label) name,
    METRICS_CLOSE_REASONS(METRICS_ENUM_)
#undef METRICS_ENUM_
        CLOSE_REASON_COUNT
} close_reason;

/* Reasons an HTTP request was refused (label of ringside_http_rejections_total). */
#define METRICS_REJECT_REASONS(X)                                                                  \
    X(REJ_BAD_REQUEST, "bad_request")                                                              \
    X(REJ_HEADER_TOO_LARGE, "header_too_large")                                                    \
    X(REJ_HANDSHAKE_TIMEOUT, "handshake_timeout")                                                  \
    X(REJ_NOT_FOUND, "not_found")                                                                  \
    X(REJ_METHOD, "method_not_allowed")                                                            \
    X(REJ_VERSION, "bad_websocket_version")                                                        \
    X(REJ_FILTER, "bad_filter")                                                                    \
    X(REJ_AUTH, "unauthorized")                                                                    \
    X(REJ_FORBIDDEN, "forbidden")                                                                  \
    X(REJ_ORIGIN, "origin")                                                                        \
    X(REJ_CONN_RATE, "conn_rate")                                                                  \
    X(REJ_USER_CONNS, "user_conns")                                                                \
    X(REJ_CAPACITY, "capacity")                                                                    \
    X(REJ_DRAINING, "draining")                                                                    \
    X(REJ_EMFILE, "emfile")                                                                        \
    X(REJ_ANON_RATE, "anon_rate")                                                                  \
    X(REJ_HTTP_PER_IP, "http_conns_per_ip")                                                        \
    X(REJ_HTTP_TOTAL, "http_conns")                                                                \
    X(REJ_BAD_FORWARDED, "bad_forwarded")                                                          \
    X(REJ_FD_RESERVE, "fd_reserve")

typedef enum reject_reason {
#define METRICS_ENUM_(name, label) name,
    METRICS_REJECT_REASONS(METRICS_ENUM_)
#undef METRICS_ENUM_
        REJECT_REASON_COUNT
} reject_reason;

/* Why data was kept from a tenant boundary it may not cross (D2, C3). */
typedef enum tenancy_refusal {
    TENANCY_RING_PROJECT,      /* a ring names a project outside --projects */
    TENANCY_ORIGIN_PROJECT,    /* an instance published for a project it did not announce */
    TENANCY_RELAY_NOT_OWNER,   /* terminal bytes not from the instance that owns the agent */
    TENANCY_RIGHTS_REVOKED,    /* a refreshed token no longer allows an open terminal */
    TENANCY_REFUSAL_COUNT
} tenancy_refusal;

#define METRICS_LATENCY_BUCKETS 16

typedef struct metrics {
    uint64_t clients;                         /* gauge: open WebSocket connections */
    uint64_t connections_total;               /* accepted WebSocket connections */
    uint64_t disconnections[CLOSE_REASON_COUNT];
    uint64_t rejections[REJECT_REASON_COUNT];
    uint64_t sent[MSG_KIND_COUNT];            /* messages sent by kind */
    uint64_t dropped[MSG_KIND_COUNT];         /* messages dropped for slow clients, by kind */
    uint64_t coalesced;                       /* progress messages replaced in a queue */
    uint64_t rate_limited;                    /* events refused by --global-msg-rate */
    uint64_t bytes_sent;
    uint64_t bytes_received;
    uint64_t events_in[MSG_KIND_COUNT];       /* events accepted into the hub by kind */
    uint64_t rings_active;                    /* gauge */
    uint64_t rings_rejected;                  /* ring files refused (bad magic/version/geometry) */
    uint64_t rings_open_retried;              /* ring opens failed for want of fds/memory */
    uint64_t rings_over_limit;                /* ring attaches deferred by --max-rings */
    uint64_t tasks_refused;                   /* task events dropped by --max-tasks-per-agent */
    uint64_t tasks_expired_idle;              /* running tasks ended by --task-idle-timeout */
    uint64_t tasks_ended_after_close;         /* running tasks ended by --task-close-grace */
    uint64_t rings_quarantined;               /* rings dropped for corruption */
    uint64_t agent_deaths;                    /* agents that died without closing cleanly */
    uint64_t auth_failures;                   /* tokens refused at the handshake or on refresh */
    uint64_t tenancy_refusals[TENANCY_REFUSAL_COUNT];
    uint64_t agent_status_coalesced;          /* statuses replaced while waiting for the budget */
    uint64_t agent_status_over_budget;        /* times an agent went over --agent-status-rate */
    uint64_t hibernations;                    /* idle connections whose wslay context was freed */
    uint64_t latency_buckets[METRICS_LATENCY_BUCKETS + 1]; /* publish→send, cumulative on render */
    double latency_sum;
    uint64_t latency_count;
} metrics;

extern metrics g_metrics;

/* Records one publish→send latency sample (ns). */
void metrics_observe_latency(uint64_t ns);

const char *metrics_close_reason_name(close_reason r);
const char *metrics_reject_reason_name(reject_reason r);

/* Per-ring gauges are appended by the callback (ring lag/drops per agent), which receives b. */
typedef void (*metrics_extra_fn)(buf *b, void *ud);

/* Renders every metric in Prometheus text format 0.0.4 into b. */
void metrics_render(buf *b, metrics_extra_fn extra, void *ud);

#endif
