#include "ws.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cluster.h"
#include "cmsg.h"
#include "hub.h"
#include "log.h"
#include "server.h"
#include "utf8.h"
#include "util.h"

/* Named limits (every one of them a reason in the logs when hit). */
#define QUEUE_HARD_FACTOR 4        /* critical messages may exceed --send-queue up to 4× */
#define SLOW_CLIENT_GRACE_NS (10ull * 1000000000ull) /* behind this long with drops → 4008 */
#define QUEUE_TTL_NS (5ull * 1000000000ull) /* non-critical messages older than this are dropped */
#define CLOSE_GRACE_S 5.0          /* wait this long for the peer's close frame */
#define MAX_BAD_MESSAGES 20        /* invalid client messages before close 1008 */
#define SUBSCRIBE_RATE 10.0        /* subscribe messages per second (B3) */
#define WSLAY_QUEUE_READ_LIMIT (64u * 1024u) /* reading pauses while this much waits in wslay */
#define OUTBOX_MAX ARRAY_LEN(((conn *)0)->ob) /* data frames per writev */
#define WRITE_BATCHES 16 /* writevs per pump before other connections get their turn */
#define READ_BUDGET (64u * 1024u) /* bytes read per wslay_event_recv before others get a turn */


static void close_now(conn *c, uint16_t code, close_reason why, const char *text);

/* ---- wslay callbacks ------------------------------------------------------------------------ */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    (void)flags;
    conn *c = user_data;
    if (c->pre != NULL) {
        size_t n = c->pre_len - c->pre_off;
        if (n > len)
            n = len;
        memcpy(data, c->pre + c->pre_off, n);
        c->pre_off += n;
        if (c->pre_off == c->pre_len) {
            free(c->pre);
            c->pre = NULL;
        }
        c->bytes_in += n;
        return (ssize_t)n;
    }
    if (c->in_blocked || c->read_budget == 0) {
        /* Over the inbound budget: never read again.  Read budget of this pump used up: the
         * connection is pumped again after the others had their turn (a client sending at line
         * rate would otherwise keep wslay_event_recv reading forever). */
        if (!c->in_blocked)
            conn_mark_dirty(c);
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > c->read_budget)
        len = c->read_budget;
    if (wslay_event_get_queued_msg_length(ctx) > WSLAY_QUEUE_READ_LIMIT) {
        /* Replies (pongs) pile up faster than the peer takes them: read on once they went. */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    for (;;) {
        ssize_t n = recv(c->fd, data, len, 0);
        if (n > 0) {
            c->read_budget -= (size_t)n;
            c->bytes_in += (uint64_t)n;
            g_metrics.bytes_received += (uint64_t)n;
            return n;
        }
        if (n == 0) {
            c->io_failed = 1;
            if (!c->why_set) { /* a close we started keeps its own reason */
                c->why_set = 1;
                c->why = wslay_event_get_close_received(ctx) ? CLOSE_CLIENT : CLOSE_EOF;
                c->closed_by = "client";
            }
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->readable = 0; /* until libev says otherwise: no recv per write (see conn_pump) */
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        } else {
            c->io_failed = 1;
            if (!c->why_set) {
                c->why_set = 1;
                c->why = CLOSE_IO_ERROR;
            }
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        }
        return -1;
    }
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    conn *c = user_data;
    int f = MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0);
    for (;;) {
        ssize_t n = send(c->fd, data, len, f);
        if (n >= 0) {
            c->send_blocked = (size_t)n < len; /* a frame is half-written until the rest goes */
            c->bytes_out += (uint64_t)n;
            g_metrics.bytes_sent += (uint64_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->send_blocked = 1;
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        } else {
            c->io_failed = 1;
            if (!c->why_set) {
                c->why_set = 1;
                c->why = CLOSE_IO_ERROR;
            }
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        }
        return -1;
    }
}

static void send_error(conn *c, const char *code, const char *text)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"type\":\"error\"");
    json_kstr(&b, "error", code);
    json_kstr(&b, "message", text);
    buf_puts(&b, "}");
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    buf_free(&b);
}

static void bad_message(conn *c, const char *code, const char *text)
{
    c->bad_messages++;
    if (c->bad_messages > MAX_BAD_MESSAGES) {
        conn_close_ws(c, 1008, CLOSE_POLICY, "too many invalid messages");
        return;
    }
    send_error(c, code, text);
}

/* {"type":"subscribe",…}: replaces the connection's filters (at most SUBSCRIBE_RATE a second). */
static void handle_subscribe(conn *c, cmsg *m)
{
    uint64_t now = util_mono_ns();
    c->sub_tokens += (double)(now - c->sub_tokens_mono) / 1e9 * SUBSCRIBE_RATE;
    if (c->sub_tokens > SUBSCRIBE_RATE)
        c->sub_tokens = SUBSCRIBE_RATE;
    c->sub_tokens_mono = now;
    if (c->sub_tokens < 1.0) {
        bad_message(c, "rate_limited", "at most 10 subscribe messages per second");
        return;
    }
    c->sub_tokens -= 1.0;
    if (c->has_ident && !c->ident.all_projects) {
        for (unsigned i = 0; i < m->filt.projects.n; i++) {
            if (!auth_allows_project(&c->ident, m->filt.projects.ids[i])) {
                char err[160];
                snprintf(err, sizeof err, "project_ids: you may not see project '%s'",
                         m->filt.projects.ids[i]);
                bad_message(c, "forbidden", err);
                return;
            }
        }
    }
    filter_free(&c->filt);
    c->filt = m->filt; /* moved */
    memset(&m->filt, 0, sizeof m->filt);
    hub_send_subscribed(c->srv->hub, c);
}

static void expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = container_of(w, conn, expiry_timer);
    conn_close_ws(c, 4001, CLOSE_TOKEN_EXPIRED, "token expired: refresh it and reconnect");
}

/* Arms the token-expiry close (D1) for the connection's identity. */
static void arm_expiry(conn *c)
{
    ev_timer_stop(c->srv->loop, &c->expiry_timer);
    if (!c->has_ident)
        return;
    int64_t ttl = auth_identity_ttl(&c->ident, (int64_t)time(NULL));
    if (ttl == INT64_MAX)
        return;
    ev_timer_set(&c->expiry_timer, ttl > 0 ? (double)ttl : 0.001, 0.);
    ev_timer_start(c->srv->loop, &c->expiry_timer);
}

/* {"type":"auth","token":…}: refreshes the token of a live connection.  The new token must name
 * the same user; permissions are recomputed from it and the expiry timer re-armed. */
static void handle_auth(conn *c, const cmsg *m)
{
    if (c->srv->auth == NULL) {
        bad_message(c, "unsupported", "authentication is disabled on this server");
        return;
    }
    auth_identity id;
    memset(&id, 0, sizeof id);
    int rc = auth_verify(c->srv->auth, m->token, m->token_len, (int64_t)time(NULL), &id);
    if (rc == AUTH_OK && strcmp(id.user, c->ident.user) != 0)
        rc = AUTH_EBAD_CLAIMS;
    if (rc != AUTH_OK) {
        char fp[AUTH_FP_HEX + 1];
        auth_fingerprint(m->token, m->token_len, fp);
        g_metrics.auth_failures++;
        log_info("auth failure", "\"event\":\"auth_refresh_failure\",\"conn\":%llu,\"ip\":\"%s\","
                 "\"user\":\"%s\",\"reason\":\"%s\",\"token_fp\":\"%s\"",
                 (unsigned long long)c->id, c->ip, c->user, auth_strerror(rc), fp);
        auth_identity_clear(&id);
        bad_message(c, auth_public_reason(rc), auth_public_message(rc));
        return;
    }
    auth_identity_clear(&c->ident);
    c->ident = id;
    arm_expiry(c);
    hub_rights_changed(c->srv->hub, c); /* narrowed rights apply to open streams at once */
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"type\":\"authenticated\"");
    json_kstr(&b, "user", c->ident.user);
    buf_printf(&b, ",\"exp\":%lld}", (long long)c->ident.exp);
    conn_send_text(c, b.data, b.len, MSG_CONTROL, 1);
    buf_free(&b);
}

static void handle_text(conn *c, const uint8_t *data, size_t len)
{
    cmsg m;
    const char *code;
    char err[160];
    if (cmsg_decode(data, len, c->endpoint == EP_EVENTS ? CMSG_EP_EVENTS : CMSG_EP_TERMINAL, &m,
                    &code, err, sizeof err) != 0) {
        bad_message(c, code, err);
        return;
    }
    switch (m.type) {
    case CMSG_PONG:
        c->missed_heartbeats = 0;
        if (c->srv->cl != NULL)
            cluster_conn_heartbeat(c->srv->cl, c);
        break;
    case CMSG_SUBSCRIBE:
        handle_subscribe(c, &m);
        break;
    case CMSG_PAUSE:
        c->paused = 1;
        break;
    case CMSG_RESUME:
        c->paused = 0;
        c->term_behind = 1;
        hub_conn_drained(c->srv->hub, c);
        break;
    case CMSG_AUTH:
        handle_auth(c, &m);
        break;
    }
    cmsg_clear(&m);
}

/* The inbound budget (issue 17): data messages per second and their (inflated) bytes per second,
 * token buckets holding one second's worth (the byte bucket at least one --max-message).  Returns
 * the bytes a message may inflate to now (0: the message budget is spent). */
static size_t inbound_allowance(conn *c)
{
    const config *cfg = c->srv->cfg;
    uint64_t now = util_mono_ns();
    double dt = (double)(now - c->in_mono) / 1e9;
    c->in_mono = now;
    double msg_cap = (double)cfg->client_msg_rate;
    double byte_cap = (double)(cfg->client_byte_rate > cfg->max_message ? cfg->client_byte_rate
                                                                        : cfg->max_message);
    c->in_msg_tokens += dt * (double)cfg->client_msg_rate;
    if (c->in_msg_tokens > msg_cap)
        c->in_msg_tokens = msg_cap;
    c->in_byte_tokens += dt * (double)cfg->client_byte_rate;
    if (c->in_byte_tokens > byte_cap)
        c->in_byte_tokens = byte_cap;
    if (cfg->client_msg_rate > 0 && c->in_msg_tokens < 1.0)
        return 0;
    if (cfg->client_byte_rate == 0)
        return (size_t)cfg->max_message;
    double b = c->in_byte_tokens;
    return b >= (double)cfg->max_message ? (size_t)cfg->max_message : b > 0 ? (size_t)b : 0;
}

static void inbound_charge(conn *c, size_t bytes)
{
    if (c->srv->cfg->client_msg_rate > 0)
        c->in_msg_tokens -= 1.0;
    if (c->srv->cfg->client_byte_rate > 0)
        c->in_byte_tokens -= (double)bytes;
}

/* Over budget: nothing more is read from this client (its flood stays in the kernel and costs
 * no CPU here), the close frame goes out at once, and the TCP connection is closed right after it
 * (RFC 6455 7.1.1 lets the server close first); see conn_pump. */
static void inbound_exceeded(conn *c, const char *what)
{
    char text[96];
    snprintf(text, sizeof text, "inbound %s budget exceeded", what);
    c->in_blocked = 1;
    if (c->state == CONN_WS)
        close_now(c, 1008, CLOSE_INBOUND_RATE, text);
}

static void on_msg_recv_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                           void *user_data)
{
    (void)ctx;
    conn *c = user_data;
    c->missed_heartbeats = 0; /* any traffic proves the peer is alive */
    const uint8_t *data = arg->msg;
    size_t len = arg->msg_length;
    uint8_t *plain = NULL;
    int is_data = arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME;
    if (is_data && (c->state != CONN_WS || c->close_after_flush != 0))
        return; /* closing: nothing more is processed */
    size_t allowance = is_data ? inbound_allowance(c) : 0;
    if (is_data && allowance == 0) {
        inbound_exceeded(c, c->in_msg_tokens < 1.0 ? "message" : "byte");
        return;
    }
    if (is_data && !(arg->rsv & WSLAY_RSV1_BIT) && len > allowance) {
        inbound_exceeded(c, "byte");
        return;
    }
    if ((arg->rsv & WSLAY_RSV1_BIT) && is_data) {
        /* Inflating stops at what the budget allows: its CPU is bounded by the byte budget. */
        int rc = encode_inflate(&c->inf, &c->pmd, data, len, allowance, &plain, &len);
        if (rc == -2 && allowance < (size_t)c->srv->cfg->max_message) {
            inbound_exceeded(c, "byte");
            return;
        }
        if (rc == -2) {
            conn_close_ws(c, 1009, CLOSE_TOO_BIG, "inflated message too big");
            return;
        }
        if (rc != 0) {
            conn_close_ws(c, 1007, CLOSE_PROTOCOL, "corrupt compressed message");
            return;
        }
        data = plain;
    }
    if (is_data)
        inbound_charge(c, len);
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
        if (!utf8_valid(data, len)) {
            conn_close_ws(c, 1007, CLOSE_BAD_UTF8, "invalid UTF-8 in text message");
            break;
        }
        handle_text(c, data, len);
        break;
    case WSLAY_BINARY_FRAME:
        conn_close_ws(c, 1003, CLOSE_POLICY, "binary messages are not accepted");
        break;
    case WSLAY_CONNECTION_CLOSE:
        if (!c->why_set) { /* the client started the close */
            c->why_set = 1;
            c->closed_by = "client";
            c->why = CLOSE_CLIENT;
            c->close_code = arg->status_code;
            c->state = CONN_CLOSING;
        }
        break;
    default:
        break; /* ping answered by wslay; pong counted above */
    }
    free(plain);
}

/* Frames of any kind count too, not only whole data messages: empty continuation frames, pings
 * and pongs each cost a read and a parse (a ping also a reply), so a flood of them would stall
 * the loop while no message budget moved.  A dashboard sends a message as one frame and a pong
 * now and then; --client-msg-rate x 4 + 32 frames a second leaves room for fragmenting clients.
 * Returns 0 when the frame budget is spent. */
#define FRAMES_PER_MESSAGE 4
#define FRAME_RATE_MIN 32
static int inbound_frame_allowed(conn *c)
{
    const config *cfg = c->srv->cfg;
    if (cfg->client_msg_rate <= 0)
        return 1;
    double rate = (double)cfg->client_msg_rate * FRAMES_PER_MESSAGE + FRAME_RATE_MIN;
    uint64_t now = util_mono_ns();
    c->in_frame_tokens += (double)(now - c->in_frame_mono) / 1e9 * rate;
    c->in_frame_mono = now;
    if (c->in_frame_tokens > rate)
        c->in_frame_tokens = rate;
    if (c->in_frame_tokens < 1.0)
        return 0;
    c->in_frame_tokens -= 1.0;
    return 1;
}

/* RFC 6455 5.5.1: a close payload is empty or at least a 2-byte code; wslay reads a 1-byte one as
 * "no code", so it is caught here. */
static void on_frame_start_cb(wslay_event_context_ptr ctx,
                              const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data)
{
    conn *c = user_data;
    /* Bytes this frame occupies on the wire (client frames are masked): when every byte read
     * belongs to a frame that ended, wslay holds no partial input (see hibernatable). */
    uint64_t pl = arg->payload_length;
    c->frame_bytes += 2 + 4 + (pl > 65535 ? 8 : pl > 125 ? 2 : 0) + pl;
    c->frame_open = 1;
    if (arg->opcode < 0x8)
        c->in_fragment = !arg->fin;
    if (!c->in_blocked && arg->opcode != WSLAY_CONNECTION_CLOSE && !inbound_frame_allowed(c)) {
        inbound_exceeded(c, "frame");
        return;
    }
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1 && !c->why_set) {
        c->why_set = 1;
        c->why = CLOSE_PROTOCOL;
        c->closed_by = "server";
        c->close_code = WSLAY_CODE_PROTOCOL_ERROR;
        snprintf(c->close_text, sizeof c->close_text, "%s", "close payload of 1 byte");
        wslay_event_queue_close(ctx, WSLAY_CODE_PROTOCOL_ERROR, NULL, 0);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void rate_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = container_of(w, conn, rate_timer);
    conn_pump(c);
}

static void on_frame_end_cb(wslay_event_context_ptr ctx, void *user_data)
{
    (void)ctx;
    conn *c = user_data;
    c->frame_open = 0;
}

/* Creates c's wslay context (at the upgrade, and when a hibernating connection wakes). */
static int ws_context_new(conn *c)
{
    static const struct wslay_event_callbacks cbs = {
        recv_cb, send_cb, NULL, on_frame_start_cb, NULL, on_frame_end_cb, on_msg_recv_cb};
    if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0)
        return -1;
    wslay_event_config_set_max_recv_msg_length(c->ws, (uint64_t)c->srv->cfg->max_message);
    if (c->pmd.enabled)
        wslay_event_config_set_allowed_rsv_bits(c->ws, WSLAY_RSV1_BIT);
    return 0;
}

/* 1 when c holds nothing but its socket: no frame half-read or half-written, no fragmented
 * message open, nothing queued here or in wslay, no close under way.  Its wslay context (about
 * 9 KiB of buffers) can then be freed and made anew on the next byte in or out. */
static int hibernatable(const conn *c)
{
    return c->state == CONN_WS && c->ws != NULL && c->close_after_flush == 0 &&
           !c->shutdown_pending && c->q_len == 0 && c->ob_n == 0 && !c->send_blocked &&
           !c->frame_open && !c->in_fragment && c->frame_bytes == c->bytes_in && c->pre == NULL &&
           !c->replaying && wslay_event_get_queued_msg_count(c->ws) == 0 &&
           !wslay_event_want_write(c->ws) && wslay_event_want_read(c->ws);
}

int ws_conn_hibernate(conn *c)
{
    if (!hibernatable(c))
        return 0;
    wslay_event_context_free(c->ws);
    c->ws = NULL;
    g_metrics.hibernations++;
    if (!ev_is_active(&c->io) || c->io.events != EV_READ) {
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_READ);
        ev_io_start(c->srv->loop, &c->io);
    }
    return 1;
}

/* Gives a hibernating connection its wslay context back.  Returns 0, or -1 (out of memory: the
 * connection is aborted). */
static int wake(conn *c)
{
    if (c->ws != NULL || c->state == CONN_DEAD)
        return 0;
    if (ws_context_new(c) != 0) {
        conn_abort(c, CLOSE_IO_ERROR, "out of memory");
        return -1;
    }
    return 0;
}

int ws_conn_init(conn *c)
{
    if (ws_context_new(c) != 0)
        return -1;
    const config *cfg = c->srv->cfg;
    c->frame_bytes = c->bytes_in;
    c->active_mono = util_mono_ns();
    c->readable = 1;
    c->q_cap = ARRAY_LEN(c->q_inline);
    c->q = c->q_inline; /* no allocation of its own: see conn_alloc in server.c */
    c->state = CONN_WS;
    c->tokens = cfg->conn_msg_rate > 0 ? (double)cfg->conn_msg_rate : 0;
    c->tokens_mono = c->sub_tokens_mono = util_mono_ns();
    c->sub_tokens = SUBSCRIBE_RATE;
    c->in_mono = c->in_frame_mono = util_mono_ns();
    c->in_frame_tokens = (double)cfg->client_msg_rate * FRAMES_PER_MESSAGE + FRAME_RATE_MIN;
    c->in_msg_tokens = (double)cfg->client_msg_rate;
    c->in_byte_tokens = (double)(cfg->client_byte_rate > cfg->max_message ? cfg->client_byte_rate
                                                                          : cfg->max_message);
    c->counted_open = 1;
    g_metrics.clients++;
    g_metrics.connections_total++;
    ev_timer_init(&c->rate_timer, rate_timer_cb, 0.01, 0.);
    ev_timer_init(&c->expiry_timer, expiry_cb, 1., 0.);
    arm_expiry(c);
    ev_timer_stop(c->srv->loop, &c->timer);
    /* The first heartbeat comes after a random 50–100 % of the interval, so connections opened
     * together (a reconnect wave) do not all wake for their heartbeats at the same instant. */
    double hb = (double)cfg->heartbeat_interval;
    double first = hb * (0.5 + 0.5 * (double)randombytes_uniform(1000) / 1000.0);
    ev_timer_set(&c->timer, first, hb);
    ev_timer_start(c->srv->loop, &c->timer);
    log_info("client connected",
             "\"event\":\"connect\",\"conn\":%llu,\"conn_id\":\"%s\",\"ip\":\"%s\",\"user\":\"%s\","
             "\"endpoint\":\"%s\",\"task\":\"%s\"",
             (unsigned long long)c->id, c->cid, c->ip, c->user,
             c->endpoint == EP_EVENTS ? "events" : "terminal", c->task_id);
    return 0;
}

void ws_conn_deinit(conn *c)
{
    if (c->ws != NULL) {
        wslay_event_context_free(c->ws);
        c->ws = NULL;
    }
    for (size_t i = 0; i < c->q_len; i++)
        msg_unref(c->q[(c->q_head + i) % c->q_cap]);
    if (c->q != c->q_inline)
        free(c->q);
    c->q = NULL;
    c->q_len = 0;
    for (size_t i = 0; i < c->ob_n; i++)
        msg_unref(c->ob[i]);
    c->ob_n = c->ob_off = 0;
    free(c->pre);
    c->pre = NULL;
    encode_inflater_free(c->inf);
    c->inf = NULL;
}

static void log_close(conn *c)
{
    double dur = (double)(util_mono_ns() - c->opened_mono) / 1e9;
    log_info("client disconnected",
             "\"event\":\"disconnect\",\"conn\":%llu,\"conn_id\":\"%s\",\"ip\":\"%s\",\"user\":\"%s\",\"endpoint\":\"%s\",\"reason\":\"%s\","
             "\"code\":%u,\"detail\":\"%s\",\"closed_by\":\"%s\",\"duration_s\":%.3f,"
             "\"bytes_in\":%llu,\"bytes_out\":%llu,\"messages_out\":%llu,\"dropped\":%llu",
             (unsigned long long)c->id, c->cid, c->ip, c->user,
             c->endpoint == EP_EVENTS ? "events" : "terminal", metrics_close_reason_name(c->why),
             c->close_code, c->close_text, c->closed_by, dur, (unsigned long long)c->bytes_in,
             (unsigned long long)c->bytes_out, (unsigned long long)c->msgs_out,
             (unsigned long long)c->drops_total);
}

void conn_abort(conn *c, close_reason why, const char *text)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->counted_open) {
        if (!c->why_set) {
            c->why_set = 1;
            c->why = why;
        }
        if (c->close_text[0] == '\0')
            snprintf(c->close_text, sizeof c->close_text, "%s", text);
        g_metrics.clients--;
        g_metrics.disconnections[c->why]++;
        log_close(c);
        c->counted_open = 0;
        ev_timer_stop(c->srv->loop, &c->rate_timer);
        ev_timer_stop(c->srv->loop, &c->expiry_timer);
        if (c->srv->cl != NULL)
            cluster_conn_close(c->srv->cl, c);
        server_ws_closed(c->srv);
    } else if (log_enabled(LOG_DEBUG)) {
        log_debug("connection closed", "\"conn\":%llu,\"ip\":\"%s\",\"detail\":\"%s\"",
                  (unsigned long long)c->id, c->ip, text);
    }
    server_retire(c->srv, c);
}

/* Queues the close frame now (wslay sends control frames ahead of queued data). */
static void close_now(conn *c, uint16_t code, close_reason why, const char *text)
{
    if (wake(c) != 0)
        return;
    /* Unsent data frames are dropped, except one already half-written: it is finished first and
     * the close frame follows it (conn_pump), within the close grace. */
    size_t keep = c->ob_off > 0 ? 1 : 0;
    for (size_t i = keep; i < c->ob_n; i++)
        msg_unref(c->ob[i]);
    c->ob_n = keep;
    c->state = CONN_CLOSING;
    c->why_set = 1;
    c->why = why;
    c->closed_by = "server";
    c->close_code = code;
    c->close_after_flush = 0;
    snprintf(c->close_text, sizeof c->close_text, "%s", text);
    if (keep == 0)
        wslay_event_queue_close(c->ws, code, (const uint8_t *)text, strlen(text));
    else
        c->close_pending = 1;
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, CLOSE_GRACE_S, 0.);
    ev_timer_start(c->srv->loop, &c->timer);
    conn_mark_dirty(c);
}

void conn_close_ws(conn *c, uint16_t code, close_reason why, const char *text)
{
    if (c->state != CONN_WS || c->close_after_flush != 0)
        return;
    if (why == CLOSE_SLOW) {
        close_now(c, code, why, text); /* what is queued is what it cannot take */
        return;
    }
    /* Everything queued before the close (a task's end, a shutdown notice, error replies) goes
     * out first; the close follows once the queue is empty, within CLOSE_GRACE_S. */
    c->close_after_flush = code;
    c->close_after_why = why;
    snprintf(c->close_text, sizeof c->close_text, "%s", text);
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, CLOSE_GRACE_S, 0.);
    ev_timer_start(c->srv->loop, &c->timer);
    conn_mark_dirty(c);
}

void ws_conn_schedule_shutdown(conn *c, double after_s)
{
    c->shutdown_pending = 1;
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, after_s, 0.);
    ev_timer_start(c->srv->loop, &c->timer);
}

void ws_conn_timer(conn *c)
{
    const config *cfg = c->srv->cfg;
    if (c->state == CONN_CLOSING) {
        conn_abort(c, c->why, "close handshake timed out");
        return;
    }
    if (c->close_after_flush != 0) {
        /* the client did not take its last messages in time */
        char text[sizeof c->close_text];
        snprintf(text, sizeof text, "%s", c->close_text);
        close_now(c, c->close_after_flush, c->close_after_why, text);
        return;
    }
    if (c->shutdown_pending) {
        c->shutdown_pending = 0;
        char json[96];
        /* Each client gets its own jittered delay so reconnects spread over the other pods. */
        unsigned delay = 250 + randombytes_uniform(2750);
        int n = snprintf(json, sizeof json, "{\"type\":\"shutdown\",\"reconnect_after_ms\":%u}", delay);
        conn_send_text(c, json, (size_t)n, MSG_CONTROL, 1);
        conn_close_ws(c, 1001, CLOSE_DRAIN, "server shutting down");
        return;
    }
    if (c->missed_heartbeats >= cfg->heartbeat_misses) {
        conn_close_ws(c, 1008, CLOSE_HEARTBEAT, "heartbeat timeout");
        return;
    }
    c->missed_heartbeats++;
    char ts[40];
    util_rfc3339(ts, sizeof ts, util_now_ns());
    char json[96];
    int n = snprintf(json, sizeof json, "{\"type\":\"heartbeat\",\"timestamp\":\"%s\"}", ts);
    if (wake(c) != 0)
        return;
    struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)"rs", 2};
    wslay_event_queue_msg(c->ws, &ping);
    conn_send_text(c, json, (size_t)n, MSG_CONTROL, 1);
    ev_timer_again(c->srv->loop, &c->timer);
}

/* ---- the send queue ------------------------------------------------------------------------- */

static void q_push(conn *c, msg *m)
{
    if (c->q_len == c->q_cap) {
        size_t ncap = c->q_cap * 2;
        msg **nq = xcalloc(ncap, sizeof *nq);
        for (size_t i = 0; i < c->q_len; i++)
            nq[i] = c->q[(c->q_head + i) % c->q_cap];
        if (c->q != c->q_inline)
            free(c->q);
        c->q = nq;
        c->q_cap = ncap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_len) % c->q_cap] = msg_ref(m);
    c->q_len++;
    if (m->kind != MSG_SNAPSHOT) /* the snapshot does not count toward the drop policy */
        c->q_bytes += m->len;
}

static msg *q_pop(conn *c)
{
    msg *m = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    if (m->kind != MSG_SNAPSHOT)
        c->q_bytes -= m->len;
    return m;
}

static void count_drop(conn *c, const msg *m)
{
    g_metrics.dropped[m->kind]++;
    c->drops_unreported++;
    c->drops_total++;
    if (c->behind_since_mono == 0)
        c->behind_since_mono = util_mono_ns();
    if (m->kind == MSG_TERMINAL)
        c->term_behind = 1;
}

void conn_send(conn *c, msg *m)
{
    if (c->state != CONN_WS)
        return;
    const config *cfg = c->srv->cfg;
    size_t soft = (size_t)cfg->send_queue;
    size_t soft_bytes = (size_t)cfg->send_queue_bytes;
    /* Progress is coalesced first: a newer value of the same task replaces the queued one. */
    if (m->coalesce_key != 0) {
        for (size_t i = 0; i < c->q_len; i++) {
            msg **slot = &c->q[(c->q_head + i) % c->q_cap];
            if ((*slot)->coalesce_key == m->coalesce_key) {
                c->q_bytes -= (*slot)->len;
                msg_unref(*slot);
                *slot = msg_ref(m);
                c->q_bytes += m->len;
                g_metrics.coalesced++;
                return;
            }
        }
    }
    /* A terminal is a byte stream: only --send-queue-bytes bounds it (100 chunks of 4 KiB would
     * be 20 ms at 200 MB/s); event streams are bounded by both. */
    int over = (c->endpoint == EP_EVENTS && c->q_len >= soft) || c->q_bytes + m->len > soft_bytes;
    if (m->kind == MSG_SNAPSHOT) {
        /* The snapshot is never a sign of a slow client (issue 17: one larger than twice
         * --send-queue-bytes closed every new dashboard with 4008): it is always queued, and
         * bounded by the hub's caps on agents and tasks instead. */
        q_push(c, m);
    } else if (over && !m->critical) {
        count_drop(c, m);
    } else if ((c->endpoint == EP_EVENTS && c->q_len >= soft * QUEUE_HARD_FACTOR) ||
               c->q_bytes + m->len > soft_bytes * 2) {
        count_drop(c, m);
        conn_close_ws(c, 4008, CLOSE_SLOW, "client cannot keep up (critical queue full)");
        return;
    } else {
        q_push(c, m);
    }
    if (c->behind_since_mono != 0 &&
        util_mono_ns() - c->behind_since_mono > SLOW_CLIENT_GRACE_NS) {
        conn_close_ws(c, 4008, CLOSE_SLOW, "client cannot keep up");
        return;
    }
    conn_mark_dirty(c);
}

void conn_send_text(conn *c, const char *json, size_t len, msg_kind kind, int critical)
{
    msg *m = msg_new(json, len, WSLAY_TEXT_FRAME, kind, critical);
    conn_send(c, m);
    msg_unref(m);
}

/* Takes the next message to send off the queue, or returns NULL when nothing may go now.  Applies
 * the queue TTL of progress, the outbound rate with its critical bypass, the "dropped" notice and
 * the terminal catch-up (hub_conn_drained), in that order.  The caller owns the result. */
static msg *next_message(conn *c)
{
    const config *cfg = c->srv->cfg;
    for (int guard = 0; guard < 4096; guard++) {
        if (c->q_len == 0) {
            c->behind_since_mono = 0;
            if (c->drops_unreported > 0) {
                char json[64];
                int n = snprintf(json, sizeof json, "{\"type\":\"dropped\",\"count\":%llu}",
                                 (unsigned long long)c->drops_unreported);
                c->drops_unreported = 0;
                return msg_new(json, (size_t)n, WSLAY_TEXT_FRAME, MSG_CONTROL, 1);
            }
            if (c->close_after_flush != 0)
                return NULL;
            if (c->term_behind || c->endpoint == EP_TERMINAL || c->replaying)
                hub_conn_drained(c->srv->hub, c); /* terminal catch-up, paced resume */
            if (c->q_len == 0)
                return NULL;
            continue;
        }
        msg *m = c->q[c->q_head];
        if (!m->critical) {
            if (m->ts_ns != 0 && m->kind == MSG_PROGRESS && util_now_ns() > m->ts_ns + QUEUE_TTL_NS) {
                count_drop(c, m);
                msg_unref(q_pop(c));
                continue;
            }
            /* The message rate (B9) is for event streams; a terminal is a byte stream that must
             * carry at least 1 MB/s (B6), bounded by its queue and scrollback instead. */
            if (cfg->conn_msg_rate > 0 && c->endpoint == EP_EVENTS) {
                uint64_t now = util_mono_ns();
                double rate = (double)cfg->conn_msg_rate;
                c->tokens += (double)(now - c->tokens_mono) / 1e9 * rate;
                if (c->tokens > rate)
                    c->tokens = rate;
                c->tokens_mono = now;
                if (c->tokens < 1.0) {
                    /* B9: critical messages bypass the rate limit, even queued behind progress:
                     * the first one moves to the head (progress has no order to keep with it). */
                    size_t k;
                    for (k = 1; k < c->q_len; k++) {
                        if (c->q[(c->q_head + k) % c->q_cap]->critical)
                            break;
                    }
                    if (k < c->q_len) {
                        msg *crit = c->q[(c->q_head + k) % c->q_cap];
                        for (size_t j = k; j > 0; j--)
                            c->q[(c->q_head + j) % c->q_cap] = c->q[(c->q_head + j - 1) % c->q_cap];
                        c->q[c->q_head] = crit;
                        continue;
                    }
                    if (!ev_is_active(&c->rate_timer)) {
                        ev_timer_set(&c->rate_timer, (1.0 - c->tokens) / rate, 0.);
                        ev_timer_start(c->srv->loop, &c->rate_timer);
                    }
                    return NULL;
                }
                c->tokens -= 1.0;
            }
        }
        return q_pop(c);
    }
    return NULL;
}

/* The wire form of m for c (borrowed, cached on m: each variant is computed once per broadcast). */
static msg *wire_form(const conn *c, msg *m)
{
    msg *out = m;
    if (c->is_messagepack && out->kind != MSG_TERMINAL)
        out = encode_msgpack(out);
    if (c->pmd.enabled) {
        msg *z = encode_deflate(out);
        if (z != NULL)
            out = z;
    }
    return out;
}

/* Header of an unmasked server frame carrying all of m (FIN set; RSV1 for permessage-deflate). */
static size_t frame_header(uint8_t h[10], const msg *m)
{
    h[0] = (uint8_t)(0x80u | (m->compressed ? 0x40u : 0u) | (m->opcode & 0x0fu));
    if (m->len < 126) {
        h[1] = (uint8_t)m->len;
        return 2;
    }
    if (m->len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(m->len >> 8);
        h[3] = (uint8_t)m->len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (uint8_t)((uint64_t)m->len >> (56 - 8 * i));
    return 10;
}

/* A message fully handed to the kernel: count it and its publish→send latency. */
static void sent_one(conn *c, msg *m)
{
    g_metrics.sent[m->kind]++;
    c->msgs_out++;
    if (m->ts_ns != 0) {
        uint64_t now = util_now_ns();
        if (now > m->ts_ns)
            metrics_observe_latency(now - m->ts_ns);
    }
}

/*
 * Writes data messages with one writev per batch: the serialised bytes of each message are shared
 * by every subscriber, so each frame is a 2–10 byte header built here plus a pointer to the shared
 * payload — no copy, and one system call for everything queued (the batch grows with the load).
 * wslay keeps parsing input and writing control frames (pong, ping, close); the two never
 * interleave within a frame (conn_pump alternates only at frame boundaries).
 * Returns 0 when nothing more can go now, 1 when the socket is full (wait for EV_WRITE), -1 on a
 * write error.
 */
static int write_data(conn *c)
{
    if (wslay_event_get_close_sent(c->ws))
        return 0; /* RFC 6455 5.5.1: no data after our close frame */
    for (int batch = 0; batch < WRITE_BATCHES; batch++) {
        while (c->state == CONN_WS && c->ob_n < OUTBOX_MAX) {
            msg *m = next_message(c);
            if (m == NULL)
                break;
            c->ob[c->ob_n++] = msg_ref(wire_form(c, m));
            msg_unref(m);
        }
        if (c->ob_n == 0)
            return 0;
        struct iovec iov[2 * OUTBOX_MAX];
        uint8_t hdr[OUTBOX_MAX][10];
        int n = 0;
        size_t total = 0, skip = c->ob_off;
        for (size_t i = 0; i < c->ob_n; i++) {
            msg *m = c->ob[i];
            size_t hl = frame_header(hdr[i], m);
            const uint8_t *parts[2] = {hdr[i], m->data};
            size_t lens[2] = {hl, m->len};
            for (int k = 0; k < 2; k++) {
                if (skip >= lens[k]) {
                    skip -= lens[k];
                    continue;
                }
                iov[n].iov_base = (void *)(uintptr_t)(parts[k] + skip);
                iov[n].iov_len = lens[k] - skip;
                total += lens[k] - skip;
                skip = 0;
                n++;
            }
        }
        ssize_t wr = writev(c->fd, iov, n);
        if (wr == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->send_blocked = 1;
                return 1;
            }
            c->io_failed = 1;
            if (!c->why_set) {
                c->why_set = 1;
                c->why = CLOSE_IO_ERROR;
            }
            return -1;
        }
        c->bytes_out += (uint64_t)wr;
        g_metrics.bytes_sent += (uint64_t)wr;
        /* Retire the frames written completely; keep the offset into a partial one. */
        size_t left = (size_t)wr + c->ob_off, done = 0;
        while (done < c->ob_n) {
            uint8_t h[10];
            size_t flen = frame_header(h, c->ob[done]) + c->ob[done]->len;
            if (left < flen)
                break;
            left -= flen;
            sent_one(c, c->ob[done]);
            msg_unref(c->ob[done]);
            done++;
        }
        memmove(c->ob, c->ob + done, (c->ob_n - done) * sizeof *c->ob);
        c->ob_n -= done;
        c->ob_off = left;
        if ((size_t)wr < total) {
            c->send_blocked = 1;
            return 1;
        }
        c->send_blocked = 0;
    }
    conn_mark_dirty(c); /* a long queue: continue after the other connections had their turn */
    return 0;
}

/* Once a close frame has gone out, nothing else may (RFC 6455 5.5.1): whoever queued it (wslay on a
 * protocol error, us, or the peer's close being echoed), the connection is CLOSING from here on, so
 * conn_send queues nothing more and write_data stops. */
static void note_close_sent(conn *c)
{
    if (c->ws == NULL || !wslay_event_get_close_sent(c->ws))
        return;
    if (!c->why_set) {
        /* wslay itself closed (1002 protocol error, 1007, 1009 message too big). */
        uint16_t sent = wslay_event_get_status_code_sent(c->ws);
        c->why_set = 1;
        c->closed_by = "server";
        c->close_code = sent;
        c->why = sent == WSLAY_CODE_MESSAGE_TOO_BIG       ? CLOSE_TOO_BIG
                 : sent == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA ? CLOSE_BAD_UTF8
                                                          : CLOSE_PROTOCOL;
    }
    if (c->state == CONN_WS) {
        c->state = CONN_CLOSING;
        c->close_after_flush = 0;
        ev_timer_stop(c->srv->loop, &c->timer);
        ev_timer_set(&c->timer, CLOSE_GRACE_S, 0.);
        ev_timer_start(c->srv->loop, &c->timer);
    }
    for (size_t i = 0; i < c->ob_n; i++) /* never half-written: frames alternate at boundaries */
        msg_unref(c->ob[i]);
    c->ob_n = c->ob_off = 0;
    c->close_pending = 0;
}

void conn_pump(conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    if (c->state != CONN_HTTP && c->state != CONN_RESPONSE && wake(c) != 0)
        return;
    if (c->out != NULL) {
        int r = server_flush_out(c);
        if (r < 0) {
            conn_abort(c, CLOSE_IO_ERROR, "write error during handshake");
            return;
        }
        if (r == 0) {
            ev_io_stop(c->srv->loop, &c->io);
            ev_io_set(&c->io, c->fd, EV_READ | EV_WRITE);
            ev_io_start(c->srv->loop, &c->io);
            return;
        }
    }
    int round;
    for (round = 0; round < 16; round++) {
        uint64_t before_in = c->bytes_in, before_out = c->bytes_out;
        /* While our writes are blocked nothing more is read: a peer that sends (pings, say) but
         * never reads would otherwise grow wslay's reply queue without bound (B12). */
        int may_read = !c->send_blocked && !c->in_blocked && (c->readable || c->pre != NULL);
        c->read_budget = READ_BUDGET;
        if (may_read && wslay_event_want_read(c->ws) && wslay_event_recv(c->ws) != 0) {
            if (!c->io_failed) {
                /* wslay refused a frame (bad length, fragmented control frame, …) and gave up
                 * without a close frame: send 1002 ourselves, between frames. */
                if (!c->send_blocked && c->ob_off == 0 && !wslay_event_get_close_sent(c->ws)) {
                    static const uint8_t close1002[4] = {0x88, 0x02, 0x03, 0xea};
                    ssize_t n = send(c->fd, close1002, sizeof close1002, MSG_NOSIGNAL);
                    (void)n;
                }
                if (!c->why_set) {
                    c->why_set = 1;
                    c->why = CLOSE_PROTOCOL;
                    c->closed_by = "server";
                    c->close_code = WSLAY_CODE_PROTOCOL_ERROR;
                }
                conn_abort(c, CLOSE_PROTOCOL, "protocol error");
                return;
            }
            conn_abort(c, c->why, "connection lost");
            return;
        }
        if (c->state == CONN_DEAD)
            return;
        /* Writes switch between wslay (control frames) and write_data (data frames) only at frame
         * boundaries: a half-written data frame is finished first, and data waits while wslay is
         * mid-frame. */
        if (c->ob_off == 0 && wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
            conn_abort(c, CLOSE_IO_ERROR, "write error");
            return;
        }
        note_close_sent(c);
        if ((c->state == CONN_WS || c->ob_off > 0) &&
            (c->ob_off > 0 || !wslay_event_want_write(c->ws)) && write_data(c) < 0) {
            conn_abort(c, CLOSE_IO_ERROR, "write error");
            return;
        }
        if (c->close_pending && c->ob_n == 0) {
            /* the half-written frame went out: now the close frame */
            c->close_pending = 0;
            wslay_event_queue_close(c->ws, c->close_code, (const uint8_t *)c->close_text,
                                    strlen(c->close_text));
            continue;
        }
        if (c->state == CONN_WS && c->close_after_flush != 0 && c->q_len == 0 && c->ob_n == 0) {
            char text[sizeof c->close_text];
            snprintf(text, sizeof text, "%s", c->close_text);
            close_now(c, c->close_after_flush, c->close_after_why, text);
            continue; /* the next round sends the close frame */
        }
        if (c->bytes_in == before_in && c->bytes_out == before_out)
            break;
        c->active_mono = util_mono_ns();
    }
    if (round == 16)
        conn_mark_dirty(c); /* budget used up with work left: go on in this loop iteration */
    note_close_sent(c);
    if (c->in_blocked && wslay_event_get_close_sent(c->ws)) {
        conn_abort(c, c->why, "closed: inbound budget exceeded");
        return;
    }
    int want_read = wslay_event_want_read(c->ws) && !c->send_blocked && !c->in_blocked;
    int want_write = wslay_event_want_write(c->ws) || c->ob_n > 0 || c->close_pending;
    if (!wslay_event_want_read(c->ws) && !want_write && !c->close_pending) {
        /* Close handshake done. */
        if (c->close_code == 0)
            c->close_code = wslay_event_get_status_code_sent(c->ws);
        conn_abort(c, c->why_set ? c->why : CLOSE_CLIENT, "closed");
        return;
    }
    int events = (want_read ? EV_READ : 0) | (want_write ? EV_WRITE : 0);
    if (!ev_is_active(&c->io) || c->io.events != events) {
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, events);
        ev_io_start(c->srv->loop, &c->io);
    }
}
