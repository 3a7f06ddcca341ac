/*
 * conn.h — one client connection: the HTTP request phase, then a WebSocket (wslay) with a bounded,
 * prioritised send queue (REQUIREMENTS B7, B8, B12).
 *
 * Lifetime: created on accept, closed with conn_close() (which only marks and stops watchers),
 * freed by the server's ev_check watcher at the end of the loop iteration (STYLE 4).
 */
#ifndef RINGSIDE_CONN_H
#define RINGSIDE_CONN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include <wslay/wslay.h>

#include "auth.h"
#include "encode.h"
#include "filter.h"
#include "metrics.h"
#include "msg.h"

struct server;

typedef enum conn_state {
    CONN_HTTP,     /* reading the request head */
    CONN_RESPONSE, /* writing a plain HTTP response, then close */
    CONN_WS,       /* WebSocket open */
    CONN_CLOSING,  /* close frame queued; flushing */
    CONN_DEAD      /* waiting to be freed */
} conn_state;

typedef enum conn_endpoint { EP_NONE, EP_EVENTS, EP_TERMINAL } conn_endpoint;

/* What a validated upgrade needs to finish (kept while a cluster-wide admission check runs). */
typedef struct upgrade {
    conn_endpoint ep;
    int resume;           /* last_sequence_id was given (0 is a valid position) */
    uint64_t resume_seq;
    char epoch[64];
    char agent[64];
    char project[64];
    char task[64];
    uint64_t run;         /* terminal: run selector (the run's start in ns), 0 for none */
    char accept[32];
    char ext[160];
} upgrade;

typedef struct conn {
    ev_io io;
    ev_timer timer; /* handshake deadline, then heartbeat */
    int fd;
    struct server *srv;
    conn_state state;
    conn_endpoint endpoint;
    uint64_t id;
    char cid[33]; /* random id (hex) for the registry and logs */
    char ip[64];   /* the client: the TCP peer, or from a trusted proxy's Forwarded header */
    char peer[64]; /* the TCP peer */
    int holds_http_slot; /* counted in --http-conns-per-ip / --max-http-conns until upgraded */
    struct conn *http_next, *http_prev; /* server's HTTP-phase list, newest first */
    upgrade *up;  /* between a validated upgrade request and the 101 */
    int is_head;  /* the request was HEAD: responses carry no body */
    int admitting; /* waiting for the cluster-wide admission verdict */
    char user[128]; /* authenticated user ("" with --no-auth) */
    int has_ident;  /* authenticated: ident limits what the connection may see (D2) */
    int holds_user_slot; /* counted in --user-conns; released when the connection ends */
    auth_identity ident;
    ev_timer expiry_timer; /* token expiry → close 4001 */

    /* HTTP phase */
    char *in;
    size_t in_len, in_cap;
    char *out; /* pending plain bytes (HTTP response or handshake) */
    size_t out_len, out_off;

    /* WebSocket phase */
    wslay_event_context_ptr ws;
    char *pre;            /* bytes received after the handshake head, fed to wslay first */
    size_t pre_len, pre_off;
    msg **q;              /* ring of queued messages, q_cap entries (q_inline until it grows) */
    msg *q_inline[16];
    size_t q_head, q_len, q_cap;
    size_t q_bytes;
    msg *ob[64];          /* outbox: wire forms taken off the queue, written with one writev
                             (inline: a separate allocation per connection fragments the heap) */
    size_t ob_n;          /* messages in the outbox (at most 64) */
    size_t ob_off;        /* bytes of the first outbox frame (header included) already written */
    int readable;         /* libev reported EV_READ and recv has not yet said EAGAIN */
    int close_pending;    /* close frame waits for the half-written outbox frame */
    uint64_t drops_unreported; /* messages dropped since the last "dropped" notice */
    uint64_t drops_total;
    double tokens;        /* outbound rate-limit bucket */
    uint64_t tokens_mono; /* last refill */
    ev_timer rate_timer;  /* wakes the pump when the outbound rate limit refills */
    double sub_tokens;    /* subscribe-message rate limit bucket */
    uint64_t sub_tokens_mono;
    uint64_t behind_since_mono; /* first drop since the queue was last empty, 0 if none */
    unsigned bad_messages;      /* invalid client messages so far (abuse → 1008) */
    double in_msg_tokens;       /* inbound budget: --client-msg-rate bucket */
    double in_byte_tokens;      /* inbound budget: --client-byte-rate bucket (inflated bytes) */
    uint64_t in_mono;           /* last refill of both */
    double in_frame_tokens;     /* inbound budget: frames of any kind (control, fragments) */
    uint64_t in_frame_mono;
    int in_blocked;             /* over the inbound budget: never read again, closed */
    size_t read_budget;         /* bytes recv_cb may still read in this wslay_event_recv call */
    int shutdown_pending;       /* drain: send shutdown + close 1001 when the timer fires */
    uint16_t close_after_flush; /* close with this code once the send queue is empty */
    close_reason close_after_why;
    /* Resume: persisted events reach the client through the replay, paced by its send queue
     * (hub_conn_drained), never all queued at once. */
    int replaying;              /* resume in progress: live persisted events wait for it */
    uint64_t replay_next;       /* embedded: next seq to replay from the hub's buffer */
    uint64_t replay_snap_seq;   /* cluster: seq of the snapshot sent before the replay */
    msg **rq;                   /* cluster: replayed events waiting for room in the queue */
    size_t rq_head, rq_len, rq_cap;
    int replay_fetching;        /* cluster: the stream read is still running (maybe paused) */
    int replay_status;          /* cluster: the read's outcome (cluster_replay_done_cb) */
    msg **held;                 /* cluster: live events held during the replay, in order */
    size_t n_held;
    int held_overflow;          /* too many held: the client gets replay_truncated + snapshot */
    uint64_t term_pos;          /* terminal: next scrollback byte position this client needs */
    int term_behind;            /* terminal: catch up from scrollback when the queue drains */
    int missed_heartbeats;
    int paused;           /* terminal: client asked to pause */
    int is_messagepack;
    deflate_params pmd;   /* permessage-deflate, when negotiated */
    inflater *inf;        /* for compressed client messages, allocated on first use */
    filter filt;
    char task_id[64];     /* terminal endpoint */
    struct conn *next, *prev;         /* server's list of all connections */
    struct conn *sub_next, *sub_prev; /* hub's list of subscribers (events, or one terminal) */
    void *sub_owner;                  /* hub object this conn is subscribed to (terminal task) */

    /* lifecycle, for logs and metrics */
    uint64_t opened_mono;
    uint64_t bytes_in, bytes_out, msgs_out;
    close_reason why;
    int why_set;           /* why/closed_by are decided (first decision wins) */
    int io_failed;         /* the socket reported EOF or an error (vs a protocol failure) */
    int send_blocked;      /* the last write was short: reading pauses until it completes */
    uint64_t frame_bytes;  /* wire bytes of frames whose start wslay reported */
    int frame_open;        /* a frame started and has not ended */
    int in_fragment;       /* a fragmented data message is open */
    uint64_t active_mono;  /* last byte moved, for hibernation */
    uint16_t close_code;
    const char *closed_by; /* "server" or "client" */
    char close_text[96];
    int counted_open;
    int dirty;             /* on the server's list of connections to pump this iteration */
    struct conn *dirty_next;
} conn;

/* 1 if the connection may see events of agent in project (always with --no-auth). */
static inline int conn_may_see(const conn *c, const char *project, const char *agent)
{
    return !c->has_ident || auth_allows_agent(&c->ident, project, agent);
}

/* Queues m for sending (takes a new reference; the caller keeps its own).  Applies the drop
 * policy: non-critical messages are dropped when the queue is over --send-queue messages or
 * --send-queue-bytes bytes (progress is first coalesced by coalesce_key); critical messages are
 * always queued until a hard cap, beyond which the client is closed with 4008. */
void conn_send(conn *c, msg *m);

/* Convenience: serialises nothing, just wraps text into a fresh message and sends it. */
void conn_send_text(conn *c, const char *json, size_t len, msg_kind kind, int critical);

/* Starts the WebSocket close handshake with code and reason (reason logged and sent, ≤ 96 bytes).
 * Safe to call more than once; only the first call counts. */
void conn_close_ws(conn *c, uint16_t code, close_reason why, const char *text);

/* Closes at once (no close frame): marks dead, stops watchers, schedules the free. */
void conn_abort(conn *c, close_reason why, const char *text);

/* Drives the connection: reads, writes, arms watchers (STYLE 9).  Never call it from inside a
 * wslay or hub callback: use conn_mark_dirty() there. */
void conn_pump(conn *c);

/* Schedules conn_pump(c) for the end of this loop iteration (no re-entrancy). */
void conn_mark_dirty(conn *c);

#endif
