/*
 * ringside-loadgen — a WebSocket load client for Ringside benchmarks.
 *
 * Deliberately independent of the sidecar's code: its own minimal RFC 6455 client (HTTP upgrade
 * with a random key and a checked Sec-WebSocket-Accept, masked client frames, server frames parsed
 * including fragmentation and interleaved control frames, pings answered with pongs, application
 * heartbeats answered with {"type":"pong"}), over non-blocking sockets and epoll, on one or two
 * threads.
 *
 * It opens --conns connections at --connect-rate per second, measures each connection's time from
 * connect() to the 101 response, counts server messages per "type", scans "ts_ns" out of every
 * event and records publish→receipt latency (CLOCK_REALTIME on the same host) in a log-bucketed
 * histogram, counts binary (terminal) bytes and optionally checks them against the publisher's byte
 * pattern, and prints one JSON object on stdout at the end.  Progress lines go to stderr; the line
 * "READY ..." marks the end of the connect phase, so a script can start publishers then.
 *
 * The run is bounded: the connect phase by --connect-timeout, the measurement by --duration (from
 * READY), and it ends earlier once every connection has received --expect events or
 * --expect-bytes binary bytes, or once the server has closed every connection.
 */
#include "lg_hist.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_THREADS 2
#define LG_MAX_SRC 64
#define LG_RBUF_INIT 2048u
#define LG_MAX_HTTP_HEAD 8192u
#define LG_EVENTS_PER_WAIT 512
#define LG_READS_PER_EVENT 8

/* Message types we count by name; anything else counts as "other". */
#define LG_TYPES(X)                                                                                \
    X(SNAPSHOT, "snapshot")                                                                        \
    X(AGENT_STATUS, "agent_status")                                                                \
    X(PROGRESS, "progress")                                                                        \
    X(TASK_STARTED, "task_started")                                                                \
    X(TASK_ENDED, "task_ended")                                                                    \
    X(HEARTBEAT, "heartbeat")                                                                      \
    X(DROPPED, "dropped")                                                                          \
    X(GAP, "gap")                                                                                  \
    X(REPLAY_TRUNCATED, "replay_truncated")                                                        \
    X(SHUTDOWN, "shutdown")                                                                        \
    X(ERROR, "error")                                                                              \
    X(SUBSCRIBED, "subscribed")                                                                    \
    X(TERMINAL, "terminal")                                                                        \
    X(OTHER, "other")

typedef enum lg_type {
#define LG_ENUM_(name, text) LG_T_##name,
    LG_TYPES(LG_ENUM_)
#undef LG_ENUM_
        LG_T_COUNT
} lg_type;

static const char *const lg_type_names[LG_T_COUNT] = {
#define LG_NAME_(name, text) text,
    LG_TYPES(LG_NAME_)
#undef LG_NAME_
};

typedef enum lg_state { LG_ST_IDLE, LG_ST_CONNECTING, LG_ST_HANDSHAKE, LG_ST_OPEN, LG_ST_DONE } lg_state;

typedef struct lg_conn {
    int fd;
    lg_state st;
    uint32_t idx;
    uint64_t t_start_ns;   /* monotonic, at connect() */
    char accept[29];       /* expected Sec-WebSocket-Accept */
    char key[25];          /* our Sec-WebSocket-Key */
    uint8_t *rbuf;         /* received, unparsed bytes */
    size_t rlen, rcap;
    uint8_t *wbuf;         /* bytes not yet written */
    size_t wlen, wcap;
    uint8_t *msg;          /* a fragmented text message being assembled */
    size_t mlen, mcap;
    uint8_t msg_op;        /* opcode of the fragmented message, 0 when none */
    bool want_out;         /* EPOLLOUT armed */
    bool close_sent;
    uint64_t events;       /* counted events received */
    uint64_t bin_bytes;    /* binary payload bytes received */
    uint64_t stream_pos;   /* bin_bytes + gap bytes the server declared: the pattern offset */
} lg_conn;

/* Plain counters, summed field by field when threads are merged (so: only uint64_t here). */
typedef struct lg_counters {
    uint64_t types[LG_T_COUNT];
    uint64_t connected, connect_failed, handshake_failed, http_status[6]; /* [k] = kxx */
    uint64_t closed_by_server, reset, protocol_errors;
    uint64_t close_codes[5]; /* 1000, 1001, 1008, 4008, other */
    uint64_t pings, pongs_rx, pongs_tx, app_pongs_tx;
    uint64_t bytes_rx, text_msgs, bin_msgs, bin_bytes, frames, fragmented_msgs;
    uint64_t dropped_count, gap_count, gap_bytes;
    uint64_t pattern_errors, ts_missing, ts_future;
} lg_counters;

typedef struct lg_stats {
    lg_hist lat;           /* publish→receipt, ns */
    lg_hist conn_time;     /* connect()→101, ns */
    lg_counters c;
    uint64_t first_event_ns, last_event_ns; /* realtime */
    uint64_t first_bin_ns, last_bin_ns;     /* monotonic */
    uint64_t first_connect_ns, last_connect_ns; /* monotonic */
} lg_stats;

typedef struct lg_worker {
    int id;
    int ep;
    int cpu;                 /* -1: not pinned */
    lg_conn *conns;          /* this worker's connections */
    size_t nconns;
    size_t next_open;
    size_t pending;          /* connects/handshakes in flight */
    uint64_t t0_ns;          /* monotonic start of the connect phase */
    lg_stats st;
    _Atomic uint64_t events; /* mirror of the sum of conns[].events for the main thread */
    _Atomic uint64_t bin_bytes;
    _Atomic uint64_t gap_bytes; /* declared terminal gap bytes, for the --expect-bytes stop */
    _Atomic size_t resolved; /* connections that are open or failed */
    _Atomic size_t open_now;
    uint64_t rng;
    pthread_t th;
} lg_worker;

typedef struct lg_config {
    char host[256];
    char port[16];
    char path[1024];
    char origin[256];
    size_t conns;
    double duration_s;
    double connect_rate;     /* connections/s overall; 0 = as fast as --max-pending allows */
    double connect_timeout_s;
    size_t max_pending;
    uint64_t expect;         /* events per connection; 0 = unknown */
    uint64_t expect_bytes;   /* binary bytes per connection; 0 = unknown */
    int threads;
    int cpus[LG_MAX_THREADS];
    int ncpus;
    int nsrc;
    struct sockaddr_in src[LG_MAX_SRC];
    bool verify_pattern;
    size_t max_frame;
    size_t path_mod;
    bool quiet;
    struct sockaddr_storage dst;
    socklen_t dst_len;
} lg_config;

static lg_config cfg;
static atomic_bool lg_stop;

/* ---------------------------------------------------------------- time, random, base64 */

static uint64_t lg_now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t lg_rand(uint64_t *s)
{
    /* xorshift64*: masks need to be unpredictable to intermediaries, not cryptographic here. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void lg_base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ---------------------------------------------------------------- buffers */

static int lg_reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : LG_RBUF_INIT;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* ---------------------------------------------------------------- connection lifecycle */

static void lg_conn_finish(lg_worker *w, lg_conn *c, bool was_open)
{
    if (c->fd != -1) {
        epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->st == LG_ST_CONNECTING || c->st == LG_ST_HANDSHAKE) {
        w->pending--;
        atomic_fetch_add_explicit(&w->resolved, 1, memory_order_relaxed);
    }
    if (was_open) /* release: a main thread that sees the count drop also sees its counters */
        atomic_fetch_sub_explicit(&w->open_now, 1, memory_order_release);
    c->st = LG_ST_DONE;
    free(c->rbuf);
    free(c->wbuf);
    free(c->msg);
    c->rbuf = c->wbuf = c->msg = NULL;
    c->rlen = c->rcap = c->wlen = c->wcap = c->mlen = c->mcap = 0;
}

static void lg_fail(lg_worker *w, lg_conn *c)
{
    bool was_open = c->st == LG_ST_OPEN;
    lg_conn_finish(w, c, was_open);
}

static void lg_set_out(lg_worker *w, lg_conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Writes queued bytes; returns 0, or -1 when the connection failed (and was finished). */
static int lg_flush(lg_worker *w, lg_conn *c)
{
    size_t off = 0;
    while (off < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + off, c->wlen - off);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            w->st.c.reset++;
            lg_fail(w, c);
            return -1;
        }
        off += (size_t)n;
    }
    memmove(c->wbuf, c->wbuf + off, c->wlen - off);
    c->wlen -= off;
    lg_set_out(w, c, c->wlen > 0);
    return 0;
}

/* Queues one masked client frame (FIN set) and tries to write it. */
static int lg_send_frame(lg_worker *w, lg_conn *c, uint8_t op, const void *payload, size_t len)
{
    if (lg_reserve(&c->wbuf, &c->wcap, c->wlen + len + 14) != 0)
        return -1;
    uint8_t *p = c->wbuf + c->wlen;
    size_t h = 0;
    p[h++] = (uint8_t)(0x80u | op);
    if (len < 126) {
        p[h++] = (uint8_t)(0x80u | len);
    } else if (len <= 0xffff) {
        p[h++] = 0x80u | 126u;
        p[h++] = (uint8_t)(len >> 8);
        p[h++] = (uint8_t)len;
    } else {
        p[h++] = 0x80u | 127u;
        for (int i = 7; i >= 0; i--)
            p[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint32_t m = (uint32_t)lg_rand(&w->rng);
    uint8_t mask[4] = {(uint8_t)m, (uint8_t)(m >> 8), (uint8_t)(m >> 16), (uint8_t)(m >> 24)};
    memcpy(p + h, mask, 4);
    h += 4;
    const uint8_t *src = payload;
    for (size_t i = 0; i < len; i++)
        p[h + i] = src[i] ^ mask[i & 3];
    c->wlen += h + len;
    return lg_flush(w, c);
}

static void lg_close_frame(lg_worker *w, lg_conn *c, uint16_t code)
{
    if (c->close_sent)
        return;
    c->close_sent = true;
    uint8_t b[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    (void)lg_send_frame(w, c, 0x8, b, 2);
}

static void lg_build_path(const lg_conn *c, char *out, size_t cap)
{
    const char *mark = strstr(cfg.path, "{i}");
    if (mark == NULL) {
        snprintf(out, cap, "%s", cfg.path);
        return;
    }
    size_t mod = cfg.path_mod ? cfg.path_mod : cfg.conns;
    snprintf(out, cap, "%.*s%zu%s", (int)(mark - cfg.path), cfg.path, (size_t)c->idx % mod,
             mark + 3);
}

static void lg_start_connect(lg_worker *w, lg_conn *c)
{
    c->t_start_ns = lg_now_ns(CLOCK_MONOTONIC);
    if (w->st.first_connect_ns == 0)
        w->st.first_connect_ns = c->t_start_ns;
    w->pending++;
    c->st = LG_ST_CONNECTING;
    c->fd = socket(cfg.dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd == -1)
        goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (cfg.nsrc > 0) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        const struct sockaddr_in *sa = &cfg.src[c->idx % (uint32_t)cfg.nsrc];
        if (bind(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) == -1)
            goto fail;
    }
    if (connect(c->fd, (const struct sockaddr *)&cfg.dst, cfg.dst_len) == -1 &&
        errno != EINPROGRESS)
        goto fail;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1)
        goto fail;
    c->want_out = true;
    return;
fail:
    if (!cfg.quiet && w->st.c.connect_failed == 0)
        fprintf(stderr, "loadgen: connect #%u: %s\n", c->idx, strerror(errno));
    w->st.c.connect_failed++;
    lg_fail(w, c);
}

static int lg_send_request(lg_worker *w, lg_conn *c)
{
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = lg_rand(&w->rng);
        memcpy(raw + i, &r, 8);
    }
    lg_base64(raw, 16, c->key);
    char cat[64];
    snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    uint8_t dig[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, strlen(cat), dig);
    lg_base64(dig, sizeof(dig), c->accept);

    char path[1100];
    lg_build_path(c, path, sizeof(path));
    char req[2048];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, cfg.host, cfg.port, c->key, cfg.origin[0] ? "Origin: " : "",
                     cfg.origin, cfg.origin[0] ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req) || lg_reserve(&c->wbuf, &c->wcap, (size_t)n) != 0)
        return -1;
    memcpy(c->wbuf, req, (size_t)n);
    c->wlen = (size_t)n;
    c->st = LG_ST_HANDSHAKE;
    return lg_flush(w, c);
}

/* Finds header `name` (case-insensitive) in an HTTP head; returns its trimmed value length and
 * sets *val, or returns 0. */
static size_t lg_header(const char *head, const char *name, const char **val)
{
    size_t nl = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p != NULL && p[2] != '\r') {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            return 0;
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = end;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *val = v;
            return (size_t)(e - v);
        }
        p = end;
    }
    return 0;
}

/* ---------------------------------------------------------------- message handling */

static lg_type lg_classify(const uint8_t *m, size_t len)
{
    const uint8_t *p = memmem(m, len, "\"type\"", 6);
    if (p == NULL)
        return LG_T_OTHER;
    const uint8_t *end = m + len;
    p += 6;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    if (p >= end || *p != '"')
        return LG_T_OTHER;
    p++;
    const uint8_t *q = memchr(p, '"', (size_t)(end - p));
    if (q == NULL)
        return LG_T_OTHER;
    size_t n = (size_t)(q - p);
    for (int t = 0; t < LG_T_OTHER; t++)
        if (strlen(lg_type_names[t]) == n && memcmp(lg_type_names[t], p, n) == 0)
            return (lg_type)t;
    return LG_T_OTHER;
}

/* Scans the unsigned integer after "key": in m; returns 0 when absent. */
static uint64_t lg_scan_u64(const uint8_t *m, size_t len, const char *key, size_t klen)
{
    const uint8_t *p = memmem(m, len, key, klen);
    if (p == NULL)
        return 0;
    const uint8_t *end = m + len;
    p += klen;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

/* Handles one complete text message; returns -1 when the connection was finished. */
static int lg_on_text(lg_worker *w, lg_conn *c, const uint8_t *m, size_t len)
{
    lg_stats *s = &w->st;
    s->c.text_msgs++;
    lg_type t = lg_classify(m, len);
    s->c.types[t]++;
    switch (t) {
    case LG_T_AGENT_STATUS:
    case LG_T_PROGRESS:
    case LG_T_TASK_STARTED:
    case LG_T_TASK_ENDED: {
        uint64_t now = lg_now_ns(CLOCK_REALTIME);
        uint64_t ts = lg_scan_u64(m, len, "\"ts_ns\"", 7);
        if (ts == 0)
            s->c.ts_missing++;
        else if (ts > now)
            s->c.ts_future++, lg_hist_record(&s->lat, 0);
        else
            lg_hist_record(&s->lat, now - ts);
        if (s->first_event_ns == 0)
            s->first_event_ns = now;
        s->last_event_ns = now;
        c->events++;
        atomic_fetch_add_explicit(&w->events, 1, memory_order_relaxed);
        break;
    }
    case LG_T_HEARTBEAT:
        if (lg_send_frame(w, c, 0x1, "{\"type\":\"pong\"}", 15) != 0)
            return -1;
        s->c.app_pongs_tx++;
        break;
    case LG_T_DROPPED:
        s->c.dropped_count += lg_scan_u64(m, len, "\"count\"", 7);
        break;
    case LG_T_GAP: {
        uint64_t gb = lg_scan_u64(m, len, "\"bytes\"", 7);
        s->c.gap_count += lg_scan_u64(m, len, "\"count\"", 7);
        s->c.gap_bytes += gb;
        /* Declared loss: the stream continues gb bytes further on (the pattern resynchronises). */
        c->stream_pos += gb;
        atomic_fetch_add_explicit(&w->gap_bytes, gb, memory_order_relaxed);
        break;
    }
    default:
        break;
    }
    return c->st == LG_ST_DONE ? -1 : 0;
}

static void lg_on_binary(lg_worker *w, lg_conn *c, const uint8_t *p, size_t len)
{
    lg_stats *s = &w->st;
    if (cfg.verify_pattern) {
        uint64_t off = c->stream_pos;
        for (size_t i = 0; i < len; i++)
            if (p[i] != (uint8_t)((off + i) % 251u))
                s->c.pattern_errors++; /* undeclared loss or reordering shifts every later byte */
    }
    c->stream_pos += len;
    c->bin_bytes += len;
    s->c.bin_bytes += len;
    uint64_t now = lg_now_ns(CLOCK_MONOTONIC);
    if (s->first_bin_ns == 0)
        s->first_bin_ns = now;
    s->last_bin_ns = now;
    atomic_fetch_add_explicit(&w->bin_bytes, len, memory_order_relaxed);
}

/* Handles one complete frame; returns -1 when the connection was finished. */
static int lg_on_frame(lg_worker *w, lg_conn *c, bool fin, uint8_t op, const uint8_t *p, size_t len)
{
    lg_stats *s = &w->st;
    s->c.frames++;
    switch (op) {
    case 0x1:
    case 0x2:
        if (c->msg_op != 0)
            goto proto;
        if (op == 0x2) {
            lg_on_binary(w, c, p, len);
            if (fin)
                s->c.bin_msgs++;
            else
                c->msg_op = op;
        } else if (fin) {
            return lg_on_text(w, c, p, len);
        } else {
            c->msg_op = op;
            c->mlen = 0;
            if (lg_reserve(&c->msg, &c->mcap, len) != 0)
                goto proto;
            memcpy(c->msg, p, len);
            c->mlen = len;
        }
        return 0;
    case 0x0:
        if (c->msg_op == 0)
            goto proto;
        if (c->msg_op == 0x2) {
            lg_on_binary(w, c, p, len);
            if (fin) {
                s->c.bin_msgs++;
                s->c.fragmented_msgs++;
                c->msg_op = 0;
            }
            return 0;
        }
        if (c->mlen + len > cfg.max_frame || lg_reserve(&c->msg, &c->mcap, c->mlen + len) != 0)
            goto proto;
        memcpy(c->msg + c->mlen, p, len);
        c->mlen += len;
        if (fin) {
            s->c.fragmented_msgs++;
            c->msg_op = 0;
            size_t ml = c->mlen;
            c->mlen = 0;
            return lg_on_text(w, c, c->msg, ml);
        }
        return 0;
    case 0x8: {
        if (!fin || len > 125)
            goto proto;
        uint16_t code = len >= 2 ? (uint16_t)(p[0] << 8 | p[1]) : 1005;
        int k = code == 1000 ? 0 : code == 1001 ? 1 : code == 1008 ? 2 : code == 4008 ? 3 : 4;
        s->c.close_codes[k]++;
        s->c.closed_by_server++;
        if (!cfg.quiet && s->c.closed_by_server <= 3)
            fprintf(stderr, "loadgen: conn #%u closed by server with %u\n", c->idx, code);
        lg_close_frame(w, c, code == 1005 ? 1000 : code);
        lg_fail(w, c);
        return -1;
    }
    case 0x9:
        if (!fin || len > 125)
            goto proto;
        s->c.pings++;
        if (lg_send_frame(w, c, 0xA, p, len) != 0)
            return -1;
        s->c.pongs_tx++;
        return 0;
    case 0xA:
        if (!fin || len > 125)
            goto proto;
        s->c.pongs_rx++;
        return 0;
    default:
        goto proto;
    }
proto:
    s->c.protocol_errors++;
    if (!cfg.quiet && s->c.protocol_errors <= 3)
        fprintf(stderr, "loadgen: conn #%u: protocol error (opcode %u)\n", c->idx, op);
    lg_close_frame(w, c, 1002);
    lg_fail(w, c);
    return -1;
}

/* Parses every complete frame in c->rbuf; returns -1 when the connection was finished. */
static int lg_parse_frames(lg_worker *w, lg_conn *c)
{
    size_t off = 0;
    while (c->st == LG_ST_OPEN && c->rlen - off >= 2) {
        const uint8_t *b = c->rbuf + off;
        size_t avail = c->rlen - off;
        bool fin = (b[0] & 0x80u) != 0;
        uint8_t op = b[0] & 0x0fu;
        uint64_t len = b[1] & 0x7fu;
        size_t hdr = 2;
        if ((b[0] & 0x70u) != 0 || (b[1] & 0x80u) != 0) { /* no extensions; servers never mask */
            w->st.c.protocol_errors++;
            lg_close_frame(w, c, 1002);
            lg_fail(w, c);
            return -1;
        }
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)b[2] << 8 | b[3];
            hdr = 4;
        } else if (len == 127) {
            if (avail < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[2 + i];
            hdr = 10;
        }
        if (len > cfg.max_frame) {
            w->st.c.protocol_errors++;
            lg_close_frame(w, c, 1009);
            lg_fail(w, c);
            return -1;
        }
        if (avail < hdr + len) {
            if (lg_reserve(&c->rbuf, &c->rcap, hdr + (size_t)len) != 0) { /* after compaction */
                lg_fail(w, c);
                return -1;
            }
            break;
        }
        if (lg_on_frame(w, c, fin, op, b + hdr, (size_t)len) != 0)
            return -1;
        off += hdr + (size_t)len;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return 0;
}

static int lg_on_handshake(lg_worker *w, lg_conn *c)
{
    uint8_t *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->rlen >= LG_MAX_HTTP_HEAD)
            goto bad;
        return 0;
    }
    size_t head_len = (size_t)(end - c->rbuf) + 4;
    char head[LG_MAX_HTTP_HEAD + 1];
    if (head_len > LG_MAX_HTTP_HEAD)
        goto bad;
    memcpy(head, c->rbuf, head_len);
    head[head_len] = '\0';
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
        goto bad;
    if (status != 101) {
        if (status >= 100 && status < 600)
            w->st.c.http_status[status / 100]++;
        if (!cfg.quiet && w->st.c.handshake_failed == 0)
            fprintf(stderr, "loadgen: conn #%u: HTTP %d\n", c->idx, status);
        goto bad;
    }
    const char *v = NULL;
    size_t vl = lg_header(head, "Sec-WebSocket-Accept", &v);
    if (vl != 28 || memcmp(v, c->accept, 28) != 0) {
        if (!cfg.quiet && w->st.c.handshake_failed == 0)
            fprintf(stderr, "loadgen: conn #%u: bad Sec-WebSocket-Accept\n", c->idx);
        goto bad;
    }
    w->st.c.http_status[1]++;
    uint64_t now = lg_now_ns(CLOCK_MONOTONIC);
    lg_hist_record(&w->st.conn_time, now - c->t_start_ns);
    w->st.last_connect_ns = now;
    w->st.c.connected++;
    w->pending--;
    atomic_fetch_add_explicit(&w->resolved, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->open_now, 1, memory_order_relaxed);
    c->st = LG_ST_OPEN;
    memmove(c->rbuf, c->rbuf + head_len, c->rlen - head_len);
    c->rlen -= head_len;
    return lg_parse_frames(w, c);
bad:
    w->st.c.handshake_failed++;
    lg_fail(w, c);
    return -1;
}

static void lg_on_readable(lg_worker *w, lg_conn *c)
{
    for (int i = 0; i < LG_READS_PER_EVENT && c->st != LG_ST_DONE; i++) {
        if (c->rcap - c->rlen < 1024 &&
            lg_reserve(&c->rbuf, &c->rcap, c->rcap ? c->rcap * 2 : LG_RBUF_INIT) != 0) {
            lg_fail(w, c);
            return;
        }
        size_t space = c->rcap - c->rlen;
        ssize_t n = read(c->fd, c->rbuf + c->rlen, space);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            w->st.c.reset++;
            lg_fail(w, c);
            return;
        }
        if (n == 0) {
            if (c->st == LG_ST_HANDSHAKE)
                w->st.c.handshake_failed++;
            else if (c->st == LG_ST_OPEN && !c->close_sent)
                w->st.c.reset++; /* EOF without a close frame */
            lg_fail(w, c);
            return;
        }
        w->st.c.bytes_rx += (size_t)n;
        c->rlen += (size_t)n;
        int rc = c->st == LG_ST_HANDSHAKE ? lg_on_handshake(w, c) : lg_parse_frames(w, c);
        if (rc != 0)
            return;
        if ((size_t)n < space) /* short read: the socket is drained */
            return;
    }
}

static void lg_on_event(lg_worker *w, lg_conn *c, uint32_t events)
{
    if (c->st == LG_ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            if (!cfg.quiet && w->st.c.connect_failed == 0)
                fprintf(stderr, "loadgen: connect #%u: %s\n", c->idx, strerror(err));
            w->st.c.connect_failed++;
            lg_fail(w, c);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        if (lg_send_request(w, c) != 0)
            return;
        return;
    }
    if (events & EPOLLOUT) {
        if (lg_flush(w, c) != 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        lg_on_readable(w, c);
}

/* ---------------------------------------------------------------- worker */

static void *lg_worker_main(void *arg)
{
    lg_worker *w = arg;
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    double rate = cfg.connect_rate / cfg.threads;
    size_t max_pending = cfg.max_pending / (size_t)cfg.threads + 1;
    struct epoll_event evs[LG_EVENTS_PER_WAIT];
    while (!atomic_load_explicit(&lg_stop, memory_order_relaxed)) {
        uint64_t now = lg_now_ns(CLOCK_MONOTONIC);
        int timeout = 20;
        if (w->next_open < w->nconns) {
            size_t due = w->nconns;
            if (rate > 0) {
                double el = (double)(now - w->t0_ns) / 1e9;
                due = (size_t)(el * rate) + 1;
                if (due > w->nconns)
                    due = w->nconns;
                timeout = 1;
            }
            while (w->next_open < due && w->pending < max_pending)
                lg_start_connect(w, &w->conns[w->next_open++]);
            if (w->pending >= max_pending)
                timeout = 20;
        }
        int n = epoll_wait(w->ep, evs, LG_EVENTS_PER_WAIT, timeout);
        for (int i = 0; i < n; i++)
            lg_on_event(w, evs[i].data.ptr, evs[i].events);
    }
    for (size_t i = 0; i < w->nconns; i++) {
        lg_conn *c = &w->conns[i];
        if (c->st == LG_ST_OPEN)
            lg_close_frame(w, c, 1000);
        if (c->st != LG_ST_DONE && c->st != LG_ST_IDLE)
            lg_conn_finish(w, c, c->st == LG_ST_OPEN);
    }
    return NULL;
}

/* ---------------------------------------------------------------- setup and report */

static void lg_usage(FILE *f)
{
    fprintf(f,
            "usage: ringside-loadgen [options]\n"
            "  --url ws://HOST:PORT/PATH   server (default ws://127.0.0.1:8765/ws/events)\n"
            "  --path PATH                 overrides the URL's path; \"{i}\" becomes conn index\n"
            "                              modulo --path-mod (default --conns)\n"
            "  --path-mod N\n"
            "  --conns N                   connections (default 100)\n"
            "  --duration S                seconds after READY before stopping (default 10)\n"
            "  --connect-rate R            new connections per second, 0 = unlimited (default 0)\n"
            "  --max-pending N             connects/handshakes in flight (default 512)\n"
            "  --connect-timeout S         bound on the connect phase (default 30)\n"
            "  --expect N                  events each connection should get; stop early when all did\n"
            "  --expect-bytes N            binary bytes each connection should get (terminal;\n"
            "                              bytes a gap message declares lost count as accounted)\n"
            "  --verify-pattern            binary byte k of a connection's stream must equal\n"
            "                              k %% 251 (k counts declared gap bytes too)\n"
            "  --threads 1|2               (default 1)\n"
            "  --cpu C[,C]                 pin thread(s) to CPU(s)\n"
            "  --src-addrs N               bind to 127.0.0.1..N as source (default: auto)\n"
            "  --origin O                  send an Origin header\n"
            "  --max-frame BYTES           largest accepted frame/message (default 16 MiB)\n"
            "  --quiet\n");
}

static int lg_parse_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "ws://", 5) != 0) {
        fprintf(stderr, "loadgen: --url must start with ws://\n");
        return -1;
    }
    p += 5;
    const char *slash = strchr(p, '/');
    const char *hp_end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(hp_end - p));
    const char *h_end = colon ? colon : hp_end;
    if (h_end == p || (size_t)(h_end - p) >= sizeof(cfg.host))
        return -1;
    memcpy(cfg.host, p, (size_t)(h_end - p));
    cfg.host[h_end - p] = '\0';
    if (colon) {
        size_t pl = (size_t)(hp_end - colon - 1);
        if (pl == 0 || pl >= sizeof(cfg.port))
            return -1;
        memcpy(cfg.port, colon + 1, pl);
        cfg.port[pl] = '\0';
    } else {
        snprintf(cfg.port, sizeof(cfg.port), "80");
    }
    snprintf(cfg.path, sizeof(cfg.path), "%s", slash ? slash : "/");
    return 0;
}

static void lg_raise_nofile(size_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_max < need) {
        struct rlimit r2 = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &r2) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        fprintf(stderr, "loadgen: RLIMIT_NOFILE %llu < %zu needed; connections will fail\n",
                (unsigned long long)rl.rlim_cur, need);
}

static double lg_us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void lg_print_hist(const char *name, const lg_hist *h, bool last)
{
    printf("  \"%s\": {\"count\": %llu, \"mean\": %.1f, \"min\": %.1f, \"p50\": %.1f, \"p90\": %.1f, "
           "\"p95\": %.1f, \"p99\": %.1f, \"p99_9\": %.1f, \"max\": %.1f}%s\n",
           name, (unsigned long long)h->n, h->n ? lg_us((uint64_t)(h->sum / (double)h->n)) : 0.0,
           h->n ? lg_us(h->min) : 0.0, lg_us(lg_hist_quantile(h, 0.5)),
           lg_us(lg_hist_quantile(h, 0.9)), lg_us(lg_hist_quantile(h, 0.95)),
           lg_us(lg_hist_quantile(h, 0.99)), lg_us(lg_hist_quantile(h, 0.999)), lg_us(h->max),
           last ? "" : ",");
}

static int lg_parse_args(int argc, char **argv)
{
    snprintf(cfg.host, sizeof(cfg.host), "127.0.0.1");
    snprintf(cfg.port, sizeof(cfg.port), "8765");
    snprintf(cfg.path, sizeof(cfg.path), "/ws/events");
    cfg.conns = 100;
    cfg.duration_s = 10;
    cfg.connect_timeout_s = 30;
    cfg.max_pending = 512;
    cfg.threads = 1;
    cfg.nsrc = -1;
    cfg.max_frame = 16u << 20;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define LG_ARG(name) (strcmp(a, name) == 0 && v != NULL && (i++, 1))
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            lg_usage(stdout);
            exit(0);
        } else if (strcmp(a, "--verify-pattern") == 0) {
            cfg.verify_pattern = true;
        } else if (strcmp(a, "--quiet") == 0) {
            cfg.quiet = true;
        } else if (LG_ARG("--url")) {
            if (lg_parse_url(v) != 0) {
                fprintf(stderr, "loadgen: bad --url %s\n", v);
                return -1;
            }
        } else if (LG_ARG("--path")) {
            path = v;
        } else if (LG_ARG("--path-mod")) {
            cfg.path_mod = strtoul(v, NULL, 10);
        } else if (LG_ARG("--conns")) {
            cfg.conns = strtoul(v, NULL, 10);
        } else if (LG_ARG("--duration")) {
            cfg.duration_s = strtod(v, NULL);
        } else if (LG_ARG("--connect-rate")) {
            cfg.connect_rate = strtod(v, NULL);
        } else if (LG_ARG("--max-pending")) {
            cfg.max_pending = strtoul(v, NULL, 10);
        } else if (LG_ARG("--connect-timeout")) {
            cfg.connect_timeout_s = strtod(v, NULL);
        } else if (LG_ARG("--expect")) {
            cfg.expect = strtoull(v, NULL, 10);
        } else if (LG_ARG("--expect-bytes")) {
            cfg.expect_bytes = strtoull(v, NULL, 10);
        } else if (LG_ARG("--threads")) {
            cfg.threads = atoi(v);
        } else if (LG_ARG("--cpu")) {
            char *end = NULL;
            cfg.ncpus = 0;
            for (const char *p = v; *p && cfg.ncpus < LG_MAX_THREADS; p = end + (*end == ',')) {
                cfg.cpus[cfg.ncpus++] = (int)strtol(p, &end, 10);
                if (end == p)
                    return -1;
            }
        } else if (LG_ARG("--src-addrs")) {
            cfg.nsrc = atoi(v);
        } else if (LG_ARG("--origin")) {
            snprintf(cfg.origin, sizeof(cfg.origin), "%s", v);
        } else if (LG_ARG("--max-frame")) {
            cfg.max_frame = strtoul(v, NULL, 10);
        } else {
            fprintf(stderr, "loadgen: unknown or incomplete option %s\n", a);
            lg_usage(stderr);
            return -1;
        }
#undef LG_ARG
    }
    if (path != NULL)
        snprintf(cfg.path, sizeof(cfg.path), "%s", path);
    if (cfg.conns == 0 || cfg.threads < 1 || cfg.threads > LG_MAX_THREADS || cfg.duration_s < 0 ||
        cfg.max_pending == 0 || cfg.nsrc > LG_MAX_SRC || cfg.max_frame < 126) {
        fprintf(stderr, "loadgen: invalid option value\n");
        return -1;
    }
    if (cfg.nsrc < 0) /* auto: ~20,000 connections per source address */
        cfg.nsrc = cfg.conns > 20000 ? (int)((cfg.conns + 19999) / 20000) : 0;
    for (int i = 0; i < cfg.nsrc; i++) {
        cfg.src[i].sin_family = AF_INET;
        cfg.src[i].sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)i);
    }
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(cfg.host, cfg.port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", cfg.host, cfg.port, gai_strerror(rc));
        return -1;
    }
    memcpy(&cfg.dst, ai->ai_addr, ai->ai_addrlen);
    cfg.dst_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int main(int argc, char **argv)
{
    if (lg_parse_args(argc, argv) != 0)
        return 2;
    lg_raise_nofile(cfg.conns + 256);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    static lg_worker workers[LG_MAX_THREADS];
    lg_conn *all = calloc(cfg.conns, sizeof(*all));
    if (all == NULL)
        return 1;
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = lg_now_ns(CLOCK_REALTIME);
    size_t per = cfg.conns / (size_t)cfg.threads, off = 0;
    uint64_t t0 = lg_now_ns(CLOCK_MONOTONIC);
    for (int t = 0; t < cfg.threads; t++) {
        lg_worker *w = &workers[t];
        w->id = t;
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->cpu = t < cfg.ncpus ? cfg.cpus[t] : (cfg.ncpus > 0 ? cfg.cpus[0] : -1);
        w->conns = all + off;
        w->nconns = t == cfg.threads - 1 ? cfg.conns - off : per;
        w->rng = seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(t + 1));
        w->t0_ns = t0;
        lg_hist_init(&w->st.lat);
        lg_hist_init(&w->st.conn_time);
        for (size_t i = 0; i < w->nconns; i++) {
            w->conns[i].fd = -1;
            w->conns[i].idx = (uint32_t)(off + i);
        }
        off += w->nconns;
    }
    for (int t = 0; t < cfg.threads; t++)
        if (pthread_create(&workers[t].th, NULL, lg_worker_main, &workers[t]) != 0)
            return 1;

    /* Connect phase, then the measurement window; the main thread only watches counters. */
    const struct timespec tick = {0, 2000000};
    uint64_t deadline = t0 + (uint64_t)(cfg.connect_timeout_s * 1e9);
    size_t resolved = 0, open_now = 0;
    for (;;) {
        resolved = open_now = 0;
        for (int t = 0; t < cfg.threads; t++) {
            resolved += atomic_load(&workers[t].resolved);
            open_now += atomic_load(&workers[t].open_now);
        }
        if (resolved >= cfg.conns || lg_now_ns(CLOCK_MONOTONIC) >= deadline)
            break;
        nanosleep(&tick, NULL);
    }
    uint64_t t_ready = lg_now_ns(CLOCK_MONOTONIC);
    fprintf(stderr, "READY open=%zu resolved=%zu of=%zu t_s=%.3f\n", open_now, resolved, cfg.conns,
            (double)(t_ready - t0) / 1e9);
    fflush(stderr);
    deadline = t_ready + (uint64_t)(cfg.duration_s * 1e9);
    bool all_expected = false;
    while (lg_now_ns(CLOCK_MONOTONIC) < deadline) {
        size_t still_open = 0;
        for (int t = 0; t < cfg.threads; t++)
            still_open += atomic_load(&workers[t].open_now);
        /* Every connection closed: nothing more can arrive; one last look at the counters below
         * decides whether everything expected had arrived before the closes. */
        bool last = still_open == 0;
        if (cfg.expect > 0 || cfg.expect_bytes > 0) {
            uint64_t ev = 0, bb = 0;
            for (int t = 0; t < cfg.threads; t++) {
                ev += atomic_load(&workers[t].events);
                bb += atomic_load(&workers[t].bin_bytes) + atomic_load(&workers[t].gap_bytes);
            }
            if (ev >= cfg.expect * open_now && bb >= cfg.expect_bytes * open_now && open_now > 0) {
                all_expected = true;
                break;
            }
        }
        if (last)
            break;
        nanosleep(&tick, NULL);
    }
    uint64_t t_end = lg_now_ns(CLOCK_MONOTONIC);
    size_t open_at_end = 0;
    for (int t = 0; t < cfg.threads; t++)
        open_at_end += atomic_load(&workers[t].open_now);
    atomic_store(&lg_stop, true);
    for (int t = 0; t < cfg.threads; t++)
        pthread_join(workers[t].th, NULL);
    getrusage(RUSAGE_SELF, &ru1);

    /* Merge and report. */
    lg_stats s;
    memset(&s, 0, sizeof(s));
    lg_hist_init(&s.lat);
    lg_hist_init(&s.conn_time);
    for (int t = 0; t < cfg.threads; t++) {
        lg_stats *x = &workers[t].st;
        lg_hist_merge(&s.lat, &x->lat);
        lg_hist_merge(&s.conn_time, &x->conn_time);
        uint64_t a[sizeof(lg_counters) / sizeof(uint64_t)], b[sizeof(a) / sizeof(a[0])];
        memcpy(a, &s.c, sizeof(a));
        memcpy(b, &x->c, sizeof(b));
        for (size_t k = 0; k < sizeof(a) / sizeof(a[0]); k++)
            a[k] += b[k];
        memcpy(&s.c, a, sizeof(a));
#define LG_MIN0(f) if (x->f && (s.f == 0 || x->f < s.f)) s.f = x->f
#define LG_MAX(f) if (x->f > s.f) s.f = x->f
        LG_MIN0(first_event_ns);
        LG_MAX(last_event_ns);
        LG_MIN0(first_bin_ns);
        LG_MAX(last_bin_ns);
        LG_MIN0(first_connect_ns);
        LG_MAX(last_connect_ns);
#undef LG_MIN0
#undef LG_MAX
    }
    uint64_t events = 0;
    for (size_t i = 0; i < cfg.conns; i++)
        events += all[i].events;
    uint64_t conns_full = 0;
    for (size_t i = 0; i < cfg.conns; i++)
        if ((cfg.expect == 0 || all[i].events >= cfg.expect) &&
            (cfg.expect_bytes == 0 || all[i].bin_bytes >= cfg.expect_bytes) &&
            (cfg.expect > 0 || cfg.expect_bytes > 0))
            conns_full++;
    double cpu_user = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
    double cpu_sys = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double wall = (double)(t_end - t0) / 1e9;
    double conn_span = s.last_connect_ns > s.first_connect_ns
                           ? (double)(s.last_connect_ns - s.first_connect_ns) / 1e9
                           : 0.0;
    double ev_span = s.last_event_ns > s.first_event_ns
                         ? (double)(s.last_event_ns - s.first_event_ns) / 1e9
                         : 0.0;
    double bin_span =
        s.last_bin_ns > s.first_bin_ns ? (double)(s.last_bin_ns - s.first_bin_ns) / 1e9 : 0.0;
    uint64_t expected = cfg.expect * s.c.connected;

    printf("{\n  \"tool\": \"ringside-loadgen\",\n");
    printf("  \"target\": \"ws://%s:%s%s\",\n", cfg.host, cfg.port, cfg.path);
    printf("  \"conns\": %zu, \"threads\": %d, \"src_addrs\": %d, \"connect_rate\": %.0f, "
           "\"max_pending\": %zu,\n",
           cfg.conns, cfg.threads, cfg.nsrc, cfg.connect_rate, cfg.max_pending);
    printf("  \"connected\": %llu, \"connect_failed\": %llu, \"handshake_failed\": %llu, "
           "\"http_4xx\": %llu, \"http_5xx\": %llu, \"open_at_end\": %zu,\n",
           (unsigned long long)s.c.connected, (unsigned long long)s.c.connect_failed,
           (unsigned long long)s.c.handshake_failed, (unsigned long long)s.c.http_status[4],
           (unsigned long long)s.c.http_status[5], open_at_end);
    printf("  \"connect_phase_s\": %.4f, \"connect_span_s\": %.4f, \"connects_per_s\": %.0f,\n",
           (double)(t_ready - t0) / 1e9, conn_span,
           conn_span > 0 ? (double)s.c.connected / conn_span : 0.0);
    lg_print_hist("connect_us", &s.conn_time, false);
    printf("  \"closed_by_server\": %llu, \"close_codes\": {\"1000\": %llu, \"1001\": %llu, "
           "\"1008\": %llu, \"4008\": %llu, \"other\": %llu}, \"resets\": %llu, "
           "\"protocol_errors\": %llu,\n",
           (unsigned long long)s.c.closed_by_server, (unsigned long long)s.c.close_codes[0],
           (unsigned long long)s.c.close_codes[1], (unsigned long long)s.c.close_codes[2],
           (unsigned long long)s.c.close_codes[3], (unsigned long long)s.c.close_codes[4],
           (unsigned long long)s.c.reset, (unsigned long long)s.c.protocol_errors);
    printf("  \"messages\": {");
    for (int k = 0; k < LG_T_COUNT; k++)
        printf("\"%s\": %llu, ", lg_type_names[k], (unsigned long long)s.c.types[k]);
    printf("\"binary\": %llu, \"fragmented\": %llu},\n", (unsigned long long)s.c.bin_msgs,
           (unsigned long long)s.c.fragmented_msgs);
    printf("  \"pings\": %llu, \"pongs_sent\": %llu, \"app_pongs_sent\": %llu, \"pongs_rx\": %llu,\n",
           (unsigned long long)s.c.pings, (unsigned long long)s.c.pongs_tx,
           (unsigned long long)s.c.app_pongs_tx, (unsigned long long)s.c.pongs_rx);
    printf("  \"events\": %llu, \"expect_per_conn\": %llu, \"expected\": %llu, "
           "\"delivered_ratio\": %.6f, \"conns_complete\": %llu, \"all_expected\": %s,\n",
           (unsigned long long)events, (unsigned long long)cfg.expect,
           (unsigned long long)expected, expected ? (double)events / (double)expected : 0.0,
           (unsigned long long)conns_full, all_expected ? "true" : "false");
    printf("  \"events_span_s\": %.4f, \"events_per_s\": %.0f, \"ts_missing\": %llu, "
           "\"ts_future\": %llu, \"dropped_notices\": %llu, \"gap_count\": %llu, \"gap_bytes\": %llu,\n",
           ev_span, ev_span > 0 ? (double)events / ev_span : 0.0,
           (unsigned long long)s.c.ts_missing, (unsigned long long)s.c.ts_future,
           (unsigned long long)s.c.dropped_count, (unsigned long long)s.c.gap_count,
           (unsigned long long)s.c.gap_bytes);
    printf("  \"binary_bytes\": %llu, \"expect_bytes_per_conn\": %llu, \"binary_span_s\": %.4f, "
           "\"binary_mb_per_s\": %.2f, \"pattern_checked\": %s, \"pattern_errors\": %llu,\n",
           (unsigned long long)s.c.bin_bytes, (unsigned long long)cfg.expect_bytes, bin_span,
           bin_span > 0 ? (double)s.c.bin_bytes / bin_span / 1e6 : 0.0,
           cfg.verify_pattern ? "true" : "false", (unsigned long long)s.c.pattern_errors);
    printf("  \"bytes_rx\": %llu, \"frames\": %llu, \"text_msgs\": %llu,\n",
           (unsigned long long)s.c.bytes_rx, (unsigned long long)s.c.frames,
           (unsigned long long)s.c.text_msgs);
    printf("  \"wall_s\": %.3f, \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f, \"cpu_util\": %.3f, "
           "\"cpu_us_per_event\": %.3f,\n",
           wall, cpu_user, cpu_sys, wall > 0 ? (cpu_user + cpu_sys) / wall : 0.0,
           events ? (cpu_user + cpu_sys) * 1e6 / (double)events : 0.0);
    lg_print_hist("latency_us", &s.lat, true);
    printf("}\n");
    fflush(stdout);
    for (int t = 0; t < cfg.threads; t++)
        close(workers[t].ep);
    free(all);
    return 0;
}
