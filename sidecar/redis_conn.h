/*
 * redis_conn.h — one asynchronous Redis connection on a libev loop (hiredis 0.14.1 async + the
 * libev adapter), with the deadlines, reconnects and circuit breaker hiredis does not have
 * (REQUIREMENTS C5).  Also: redis:// and redis-sentinel:// URL parsing, and a Sentinel follower.
 *
 * Deadlines (h2o lib/common/redis.c does the same): one timer covers connect + handshake (AUTH,
 * SELECT, ROLE in Sentinel mode, PING); every command has its own deadline.  A missed deadline
 * fails the whole connection (replies are ordered, one cannot be skipped): every pending command
 * gets RC_ETIMEOUT / RC_ELOST, then the connection is re-made after a backoff.
 *
 * Circuit breaker: each connection-level failure (connect refused, handshake or command deadline,
 * I/O error, a READONLY/LOADING/MASTERDOWN reply) counts; a successful reply resets the count.
 * After `breaker_threshold` consecutive failures the circuit opens: the connection is not used and
 * is retried (the half-open probe) after an exponential backoff; a probe that completes its
 * handshake closes the circuit.  Commands are accepted only while ready (connected, handshake
 * done); otherwise the call fails at once and no callback runs.
 *
 * Callback contract (STYLE 3): redis_conn_command() returns 0 and the callback runs exactly once
 * (reply, error, deadline, lost connection or redis_conn_free), or returns < 0 and it never runs.
 * A reply is borrowed: valid only during the callback.  Never call redis_conn_free() from inside
 * one of this module's callbacks.  Loop thread only.
 */
#ifndef RINGSIDE_REDIS_CONN_H
#define RINGSIDE_REDIS_CONN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

struct redisReply;

#define REDIS_CONN_ERRORS(X)                                                                       \
    X(RC_OK, 0, "ok")                                                                              \
    X(RC_EDOWN, -1, "redis connection not ready")                                                  \
    X(RC_ETIMEOUT, -2, "redis command deadline missed")                                            \
    X(RC_ELOST, -3, "redis connection lost")                                                       \
    X(RC_EFULL, -4, "too many redis commands pending")                                             \
    X(RC_EINVAL, -5, "invalid argument")                                                           \
    X(RC_ECLOSED, -6, "redis connection closed")

typedef enum redis_conn_err {
#define RC_ENUM_(name, value, text) name = value,
    REDIS_CONN_ERRORS(RC_ENUM_)
#undef RC_ENUM_
} redis_conn_err;

/* Static text for an RC_* code. */
const char *redis_conn_strerror(int err);

/* ---- URLs -------------------------------------------------------------------------------------- */

#define REDIS_URL_HOST_MAX 255
#define REDIS_URL_MAX_SENTINELS 8

typedef struct redis_addr {
    char host[REDIS_URL_HOST_MAX + 1]; /* name or address, without IPv6 brackets */
    int port;
} redis_addr;

typedef struct redis_url {
    int sentinel;                                  /* 1: redis-sentinel:// */
    redis_addr addr;                               /* redis:// */
    redis_addr sentinels[REDIS_URL_MAX_SENTINELS]; /* redis-sentinel:// */
    unsigned n_sentinels;
    char master[128]; /* redis-sentinel:// master name */
    int db;           /* SELECT db (0: none) */
    char password[256]; /* AUTH password ("" : none); wipe when done */
} redis_url;

/* Parses redis://[[user]:password@]host[:port][/db] (port 6379) or
 * redis-sentinel://[[user]:password@]h1[:p1],h2[:p2]/master[/db] (port 26379).  Hosts may be
 * [v6] literals.  The password is for the data nodes, not the sentinels.  Returns 0, or -1 with
 * one line in err. */
int redis_url_parse(const char *s, redis_url *out, char *err, size_t errlen);

/* ---- connections --------------------------------------------------------------------------------- */

typedef struct redis_conn redis_conn;

typedef struct redis_conn_cfg {
    const char *name;        /* for logs and metrics ("cmd", "sub", "sentinel"); not copied */
    const char *password;    /* AUTH after connecting (NULL or "": none); copied */
    int db;                  /* SELECT (0: none) */
    int require_master;      /* check ROLE is master (Sentinel mode) */
    double connect_timeout;  /* s, connect + handshake */
    double command_timeout;  /* s, default command deadline */
    double backoff_min;      /* s, first reconnect delay */
    double backoff_max;      /* s, cap of the exponential backoff */
    int breaker_threshold;   /* consecutive failures that open the circuit */
    unsigned max_pending;    /* commands in flight above which redis_conn_command fails RC_EFULL */
} redis_conn_cfg;

/* Defaults: 1 s connect, 1 s command, backoff 0.1 → 2 s, threshold 5, 100000 pending. */
void redis_conn_cfg_defaults(redis_conn_cfg *cfg);

typedef enum redis_conn_event {
    RC_EV_READY = 1,  /* handshake done: commands accepted */
    RC_EV_DOWN = 2,   /* a ready connection was lost (pending commands already failed) */
    RC_EV_FAILED = 3  /* a connection attempt failed (for address rotation, e.g. Sentinel) */
} redis_conn_event;

typedef enum redis_conn_circuit { RC_CLOSED = 0, RC_OPEN = 1, RC_HALF_OPEN = 2 } redis_conn_circuit;

/* on_event runs on the transitions above; it may call redis_conn_command/_subscribe/_set_addr/
 * _reset but not redis_conn_free. */
typedef void (*redis_conn_event_cb)(void *ud, redis_conn_event ev);
/* status RC_OK with a reply (which may be an error reply), or an RC_E* code with reply NULL. */
typedef void (*redis_conn_reply_cb)(void *ud, int status, const struct redisReply *reply);
/* kind 0: subscription confirmed (payload NULL); 1: a message. */
typedef void (*redis_conn_msg_cb)(void *ud, int kind, const char *payload, size_t len);

typedef struct redis_conn_stats {
    uint64_t commands;   /* commands sent */
    uint64_t failures;   /* connection-level failures */
    uint64_t timeouts;   /* deadlines missed (connect or command) */
    uint64_t reconnects; /* connections made ready after the first */
    uint64_t opens;      /* times the circuit opened */
} redis_conn_stats;

/* Creates a connection object; it connects once an address is set.  cfg is copied. */
redis_conn *redis_conn_new(struct ev_loop *loop, const redis_conn_cfg *cfg,
                           redis_conn_event_cb on_event, void *ud);
/* Drops the connection (pending commands fail RC_ECLOSED) and frees.  NULL is a no-op. */
void redis_conn_free(redis_conn *rc);

/* Sets the server address (copied).  When it differs from the current one the connection is
 * dropped (not counted as a failure) and re-made at once; otherwise nothing happens. */
void redis_conn_set_addr(redis_conn *rc, const char *host, int port);
/* Drops the connection and reconnects at once (e.g. to re-subscribe); no failure counted. */
void redis_conn_reset(redis_conn *rc, const char *why);

/* Sends a command (argv copied by hiredis).  timeout <= 0: the configured deadline.  cb may be
 * NULL (fire and forget: errors are only counted).  Returns RC_OK, RC_EDOWN (not ready),
 * RC_EFULL or RC_EINVAL. */
int redis_conn_command(redis_conn *rc, double timeout, redis_conn_reply_cb cb, void *ud, int argc,
                       const char **argv, const size_t *argvlen);

/* Subscribes to one channel (one subscription per connection; afterwards only this connection's
 * messages flow).  The confirmation must arrive within the command deadline.  cb runs for the
 * confirmation and every message until the connection drops (then subscribe again on READY). */
int redis_conn_subscribe(redis_conn *rc, const char *channel, redis_conn_msg_cb cb, void *ud);

int redis_conn_ready(const redis_conn *rc);
redis_conn_circuit redis_conn_circuit_state(const redis_conn *rc);
const char *redis_conn_circuit_name(redis_conn_circuit c);
unsigned redis_conn_pending(const redis_conn *rc);
const redis_conn_stats *redis_conn_get_stats(const redis_conn *rc);
/* The address of the current or last connection (borrowed, valid until the next set_addr). */
const char *redis_conn_host(const redis_conn *rc);
int redis_conn_port(const redis_conn *rc);

/* ---- Sentinel ------------------------------------------------------------------------------------ */

typedef struct redis_sentinel redis_sentinel;
/* The master's address as the sentinels say: at start, after every reconnect to a sentinel, on
 * +switch-master and after redis_sentinel_refresh().  host valid during the call. */
typedef void (*redis_sentinel_cb)(void *ud, const char *host, int port);

/* Follows the master named in u (copied) through its sentinels, one connection at a time,
 * rotating to the next sentinel on failure.  Returns NULL if u is not a Sentinel URL. */
redis_sentinel *redis_sentinel_new(struct ev_loop *loop, const redis_url *u, redis_sentinel_cb cb,
                                   void *ud);
void redis_sentinel_free(redis_sentinel *s);
/* Asks again (reconnecting to the next sentinel): call when the master looks wrong.  Rate
 * limited to once per second. */
void redis_sentinel_refresh(redis_sentinel *s);
/* Number of +switch-master messages followed. */
uint64_t redis_sentinel_failovers(const redis_sentinel *s);

#endif
