#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "cluster.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"
#include "watch.h"
#include "web.h"
#include "ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RETRY_AFTER_S 5
#define HTTP_IN_INITIAL 1024 /* first size of a request-head buffer */
#define HTTP_SLOT_TOTAL 1    /* conn.holds_http_slot bits */
#define HTTP_SLOT_PER_IP 2
#define SHED_LOG_INTERVAL_NS 1000000000ull /* at most one "connection shed" line per reason per s */

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- listener ------------------------------------------------------------------------------ */

static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec)
        return -1;
    size_t hlen = (size_t)(colon - spec);
    if (hlen >= sizeof host)
        return -1;
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535 || end == colon + 1)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -1;
        *len = sizeof *a;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -1;
    *len = sizeof *a;
    return 0;
}

/* Connection records come from slabs of CONN_SLAB, reused through a free list: they sit together
 * in memory, so the pages that wslay's buffers leave when idle connections hibernate are whole
 * free pages malloc_trim can return (interleaved with records, they were not: ~2 KiB more per
 * idle connection).  Slabs are kept for the life of the process (bounded by the peak number of
 * connections). */
#define CONN_SLAB 64

static conn *conn_free_list;

static conn *conn_alloc(void)
{
    if (conn_free_list == NULL) {
        conn *slab = xcalloc(CONN_SLAB, sizeof *slab);
        for (size_t i = 0; i < CONN_SLAB; i++) {
            slab[i].next = conn_free_list;
            conn_free_list = &slab[i];
        }
    }
    conn *c = conn_free_list;
    conn_free_list = c->next;
    memset(c, 0, sizeof *c);
    return c;
}

static void conn_release(conn *c)
{
    c->next = conn_free_list;
    conn_free_list = c;
}

static void conn_free(conn *c)
{
    ws_conn_deinit(c);
    filter_free(&c->filt);
    free(c->up);
    auth_identity_clear(&c->ident);
    free(c->in);
    free(c->out);
    conn_release(c);
}

void conn_mark_dirty(conn *c)
{
    if (c->dirty || c->state == CONN_DEAD)
        return;
    c->dirty = 1;
    c->dirty_next = c->srv->dirty;
    c->srv->dirty = c;
}

/* End of every loop iteration: pump connections that got messages, then free closed ones. */
static void reaper_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    server *srv = container_of(w, server, reaper);
    for (int round = 0; round < 64 && srv->dirty != NULL; round++) {
        conn *list = srv->dirty;
        srv->dirty = NULL;
        while (list != NULL) {
            conn *c = list;
            list = c->dirty_next;
            c->dirty = 0;
            c->dirty_next = NULL;
            if (c->state == CONN_WS || c->state == CONN_CLOSING)
                conn_pump(c);
        }
    }
    /* Leftovers (a pump that keeps producing) are pumped on the next iteration; drop dead ones so
     * nothing on the dirty list is freed below. */
    conn **pp = &srv->dirty;
    while (*pp != NULL) {
        if ((*pp)->state == CONN_DEAD) {
            (*pp)->dirty = 0;
            *pp = (*pp)->dirty_next;
        } else {
            pp = &(*pp)->dirty_next;
        }
    }
    if (srv->dirty != NULL)
        ev_idle_start(loop, &srv->kick);
    else
        ev_idle_stop(loop, &srv->kick);
    while (srv->dead != NULL) {
        conn *c = srv->dead;
        srv->dead = c->next;
        conn_free(c);
    }
}

/* Keeps the loop from blocking while connections are still dirty; the reaper does the work. */
static void kick_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* The connection leaves the HTTP phase (upgraded or gone): its --max-http-conns and
 * --http-conns-per-ip slots are given back. */
static void http_phase_end(conn *c)
{
    server *srv = c->srv;
    if (c->holds_http_slot & HTTP_SLOT_TOTAL) {
        srv->n_http--;
        if (c->http_prev != NULL)
            c->http_prev->http_next = c->http_next;
        else
            srv->http_head = c->http_next;
        if (c->http_next != NULL)
            c->http_next->http_prev = c->http_prev;
        else
            srv->http_tail = c->http_prev;
        c->http_next = c->http_prev = NULL;
    }
    if (c->holds_http_slot & HTTP_SLOT_PER_IP)
        ratelimit_user_release(srv->http_rl, c->peer);
    c->holds_http_slot = 0;
}

void server_retire(server *srv, conn *c)
{
    if (c->state == CONN_DEAD)
        return;
    c->state = CONN_DEAD;
    ev_io_stop(srv->loop, &c->io);
    ev_timer_stop(srv->loop, &c->timer);
    hub_unsubscribe(srv->hub, c);
    if (c->admitting && srv->cl != NULL) {
        cluster_admit_cancel(srv->cl, c);
        c->admitting = 0;
    }
    if (c->holds_user_slot) {
        ratelimit_user_release(srv->rl, c->user);
        c->holds_user_slot = 0;
    }
    http_phase_end(c);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    /* unlink from the live list */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = srv->dead;
    srv->dead = c;
    srv->n_conns--;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents);

#define IDLE_HIBERNATE_NS (1000000000ull) /* idle this long: free the wslay buffers */

/* Every half second: free the WebSocket buffers of connections idle for 1 s (an idle dashboard then
 * costs about 1.5 KiB here), and every minute forget idle rate-limit entries. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    server *srv = container_of(w, server, sweep_timer);
    uint64_t now = util_mono_ns();
    unsigned freed = 0;
    for (conn *c = srv->conns; c != NULL; c = c->next) {
        if (c->state == CONN_WS && c->ws != NULL && now - c->active_mono > IDLE_HIBERNATE_NS)
            freed += (unsigned)ws_conn_hibernate(c);
    }
    /* Freed buffers sit in the middle of the heap: hand their pages back to the kernel once
     * enough of them have accumulated (heartbeats are jittered, so they trickle in). */
    srv->freed_since_trim += freed;
    if (srv->freed_since_trim >= 64) {
        malloc_trim(0);
        srv->freed_since_trim = 0;
    }
    if (++srv->sweeps % 120 == 0) { /* every minute */
        ratelimit_sweep(srv->rl, now);
        ratelimit_sweep(srv->anon_rl, now);
    }
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    server *srv = container_of(w, server, accept_retry);
    ev_timer_stop(loop, w);
    ev_io_start(loop, &srv->accept_io);
}

/* Out of file descriptors: release the spare, accept and close one pending connection so the client
 * is not left hanging, then pause accepting briefly instead of spinning (libuv's trick). */
static void shed_on_emfile(server *srv)
{
    g_metrics.rejections[REJ_EMFILE]++;
    if (srv->spare_fd >= 0) {
        close(srv->spare_fd);
        srv->spare_fd = -1;
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n"
                                       "Content-Length: 0\r\nConnection: close\r\n\r\n";
            ssize_t n = send(fd, resp, sizeof resp - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)n;
            close(fd);
        }
        srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    log_warn("out of file descriptors: shedding connections", "\"retry_in_ms\":%d", 100);
    ev_io_stop(srv->loop, &srv->accept_io);
    ev_timer_set(&srv->accept_retry, 0.1, 0.);
    ev_timer_start(srv->loop, &srv->accept_retry);
}

/* Refuses a connection at accept (before any buffer is allocated): one static response, written
 * without blocking, then close.  Counted, and logged at most once a second per reason with the
 * number of refusals since the last line (a flood must not become a log flood). */
static void shed_at_accept(server *srv, int fd, const char *peer, reject_reason why)
{
    static uint64_t last_log[REJECT_REASON_COUNT];
    static uint64_t suppressed[REJECT_REASON_COUNT];
    static const char b503[] = "{\"error\":\"busy\",\"message\":\"too many connections are "
                               "pending or open: retry later\"}\n";
    static const char b429[] = "{\"error\":\"http_conns_per_ip\",\"message\":\"too many of your "
                               "connections are still sending their request\"}\n";
    int total = why != REJ_HTTP_PER_IP;
    char resp[512];
    int len = snprintf(resp, sizeof resp,
                       "HTTP/1.1 %s\r\nRetry-After: 5\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       total ? "503 Service Unavailable" : "429 Too Many Requests",
                       total ? sizeof b503 - 1 : sizeof b429 - 1, total ? b503 : b429);
    ssize_t n = send(fd, resp, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    close(fd);
    g_metrics.rejections[why]++;
    uint64_t now = util_mono_ns();
    if (now - last_log[why] >= SHED_LOG_INTERVAL_NS) {
        log_warn("connection shed", "\"ip\":\"%s\",\"reason\":\"%s\",\"suppressed\":%llu,"
                 "\"http_conns\":%llu",
                 peer, metrics_reject_reason_name(why), (unsigned long long)suppressed[why],
                 (unsigned long long)srv->n_http);
        last_log[why] = now;
        suppressed[why] = 0;
    } else {
        suppressed[why]++;
    }
}

/* --max-http-conns reached: closes the connection that has been in the HTTP phase longest.
 * Counted as http_conns and logged like a shed (at most once a second). */
static void evict_oldest_http(server *srv)
{
    static uint64_t last_log, suppressed;
    conn *old = srv->http_tail;
    g_metrics.rejections[REJ_HTTP_TOTAL]++;
    uint64_t now = util_mono_ns();
    if (now - last_log >= SHED_LOG_INTERVAL_NS) {
        log_warn("connection shed", "\"ip\":\"%s\",\"reason\":\"http_conns\",\"evicted\":true,"
                 "\"age_ms\":%llu,\"suppressed\":%llu,\"http_conns\":%llu",
                 old->ip, (unsigned long long)((now - old->opened_mono) / 1000000ull),
                 (unsigned long long)suppressed, (unsigned long long)srv->n_http);
        last_log = now;
        suppressed = 0;
    } else {
        suppressed++;
    }
    conn_abort(old, CLOSE_EOF, "evicted: --max-http-conns");
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    server *srv = container_of(w, server, accept_io);
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(srv->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE)
                shed_on_emfile(srv);
            else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                     errno != ECONNABORTED)
                log_warn("accept failed", "\"errno\":%d", errno);
            return;
        }
        char peer[64];
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, peer, sizeof peer);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, peer, sizeof peer);
        }
        /* Descriptors are allocated lowest first, so fd tells how many are open: the last
         * --fd-reserve of them are kept for rings, Redis and the spare. */
        if (fd >= srv->fd_limit) {
            shed_at_accept(srv, fd, peer, REJ_FD_RESERVE);
            continue;
        }
        /* Slowloris: connections still sending their request are capped in total and per peer
         * (a trusted proxy carries many clients: only the total applies to it). */
        int per_ip = !proxy_list_contains(&srv->proxies, peer);
        if (per_ip && ratelimit_user_acquire(srv->http_rl, peer) != 0) {
            shed_at_accept(srv, fd, peer, REJ_HTTP_PER_IP);
            continue;
        }
        if (srv->n_http >= (uint64_t)srv->cfg->max_http_conns && srv->http_tail != NULL) {
            /* Full: the oldest pending request makes room (not the new one), so a probe or a
             * real client that sends its request at once is served even while half-sent
             * requests from many addresses fill the table. */
            evict_oldest_http(srv);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = conn_alloc();
        snprintf(c->peer, sizeof c->peer, "%s", peer);
        snprintf(c->ip, sizeof c->ip, "%s", peer);
        c->holds_http_slot = HTTP_SLOT_TOTAL | (per_ip ? HTTP_SLOT_PER_IP : 0);
        srv->n_http++;
        c->http_prev = NULL;
        c->http_next = srv->http_head;
        if (srv->http_head != NULL)
            srv->http_head->http_prev = c;
        srv->http_head = c;
        if (srv->http_tail == NULL)
            srv->http_tail = c;
        c->fd = fd;
        c->srv = srv;
        c->id = ++srv->next_id;
        unsigned char rnd[16];
        randombytes_buf(rnd, sizeof rnd);
        sodium_bin2hex(c->cid, sizeof c->cid, rnd, sizeof rnd);
        c->state = CONN_HTTP;
        c->opened_mono = util_mono_ns();
        c->closed_by = "server";
        c->next = srv->conns;
        if (srv->conns != NULL)
            srv->conns->prev = c;
        srv->conns = c;
        srv->n_conns++;
        ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->timer, conn_timer_cb, (double)srv->cfg->handshake_timeout, 0.);
        ev_timer_start(loop, &c->timer);
    }
}

int server_start(server *srv, struct ev_loop *loop, const config *cfg, struct hub *h,
                 struct watch *wt, char *errbuf, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    if (proxy_list_parse(cfg->trusted_proxies, &srv->proxies, errbuf, errlen) != 0)
        return -1;
    srv->loop = loop;
    srv->cfg = cfg;
    srv->hub = h;
    srv->watch = wt;
    srv->lfd = -1;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (parse_listen(cfg->listen, &ss, &sl) != 0) {
        snprintf(errbuf, errlen,
                 "--listen: '%s' is not HOST:PORT (e.g. 0.0.0.0:8765, 127.0.0.1:0, [::1]:8765)",
                 cfg->listen);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(errbuf, errlen, "--listen %s: socket: %s", cfg->listen, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) == -1) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            snprintf(errbuf, errlen,
                     "--listen %s: address already in use: stop the other process or choose "
                     "another port",
                     cfg->listen);
        else
            snprintf(errbuf, errlen, "--listen %s: bind: %s", cfg->listen, strerror(e));
        return -1;
    }
    if (listen(fd, 4096) == -1) {
        snprintf(errbuf, errlen, "--listen %s: listen: %s", cfg->listen, strerror(errno));
        close(fd);
        return -1;
    }
    srv->lfd = fd;
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev_io_init(&srv->accept_io, accept_cb, fd, EV_READ);
    ev_io_start(loop, &srv->accept_io);
    ev_timer_init(&srv->accept_retry, accept_retry_cb, 0.1, 0.);
    ev_check_init(&srv->reaper, reaper_cb);
    ev_check_start(loop, &srv->reaper);
    ev_idle_init(&srv->kick, kick_cb);
    srv->rl = ratelimit_new(cfg->conn_rate, cfg->user_conns);
    srv->anon_rl = ratelimit_new(cfg->anon_conn_rate, 0);
    struct rlimit nofile;
    srv->fd_limit = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                        ? (long)nofile.rlim_cur - cfg->fd_reserve
                        : LONG_MAX;
    if (srv->fd_limit < 16)
        srv->fd_limit = 16; /* a tiny limit: still serve a few clients */
    srv->http_rl = ratelimit_new(0, cfg->http_conns_per_ip);
    ev_timer_init(&srv->sweep_timer, sweep_cb, 0.5, 0.5);
    ev_timer_start(loop, &srv->sweep_timer);

    return 0;
}

void server_log_listening(const server *srv)
{
    int fd = srv->lfd;
    struct sockaddr_storage bound;
    socklen_t bl = sizeof bound;
    char addr[80] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&bound, &bl) == 0) {
        if (bound.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&bound;
            inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof addr);
            port = ntohs(a->sin6_port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&bound;
            inet_ntop(AF_INET, &a->sin_addr, addr, sizeof addr);
            port = ntohs(a->sin_port);
        }
    }
    log_info("listening", "\"address\":\"%s\",\"port\":%d", addr, port);
}

/* ---- plain HTTP responses ------------------------------------------------------------------ */

/* Answers with body (HEAD: the same headers, no body). */
static void respond(conn *c, int status, const char *reason, const char *ctype, const char *extra,
                    const void *body, size_t len)
{
    size_t content_len = len;
    if (c->is_head)
        len = 0;
    buf b;
    buf_init(&b);
    buf_printf(&b,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%sConnection: "
               "close\r\n\r\n",
               status, reason, ctype, content_len, extra ? extra : "");
    if (len > 0)
        buf_append(&b, body, len);
    free(c->out);
    c->out = b.data;
    c->out_len = b.len;
    c->out_off = 0;
    c->state = CONN_RESPONSE;
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, 10., 0.); /* a client that never reads its response is dropped */
    ev_timer_start(c->srv->loop, &c->timer);
}

/* Responds with {"error":code,"message":text}. */
static void respond_error(conn *c, int status, const char *reason, reject_reason why,
                          const char *code, const char *text, const char *extra)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    json_kstr(&b, "error", code);
    json_kstr(&b, "message", text);
    buf_puts(&b, "}\n");
    g_metrics.rejections[why]++;
    log_write(why == REJ_NOT_FOUND ? LOG_DEBUG : LOG_INFO, "request refused",
              "\"conn\":%llu,\"ip\":\"%s\",\"status\":%d,\"reason\":\"%s\",\"error\":\"%s\","
              "\"detail\":\"%s\"",
              (unsigned long long)c->id, c->ip, status, metrics_reject_reason_name(why), code, text);
    respond(c, status, reason, "application/json", extra, b.data, b.len);
    buf_free(&b);
}

static void serve_metrics(conn *c)
{
    buf b;
    buf_init(&b);
    metrics_render(&b, hub_render_metrics, c->srv->hub);
    watch_render_metrics(&b, c->srv->watch);
    if (c->srv->cl != NULL)
        cluster_render_metrics(&b, c->srv->cl);
    respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL, b.data, b.len);
    buf_free(&b);
}

/* ---- WebSocket upgrade --------------------------------------------------------------------- */

/* 1 if key is the base64 of 16 bytes (RFC 6455 4.2.1). */
static int ws_key_valid(const char *key, size_t len)
{
    if (len != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++) {
        char ch = key[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return 0;
    }
    return 1;
}

static void ws_accept_key(const char *key, size_t len, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char in[24 + sizeof WS_GUID];
    memcpy(in, key, len);
    memcpy(in + len, WS_GUID, sizeof WS_GUID - 1);
    EVP_Digest(in, len + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

/* Origin policy (D3): no Origin header (non-browser) passes; with --allowed-origins the origin must
 * be listed; without it, the origin's host must equal the Host header. */
static int origin_allowed(const server *srv, const http_request *req)
{
    const http_header *o = http_find_header(req, "Origin");
    if (o == NULL)
        return 1;
    if (srv->cfg->allowed_origins != NULL) {
        const char *list = srv->cfg->allowed_origins;
        while (*list != '\0') {
            const char *e = strchr(list, ',');
            size_t l = e ? (size_t)(e - list) : strlen(list);
            if ((l == o->value_len && strncasecmp(list, o->value, l) == 0) ||
                (l == 1 && list[0] == '*'))
                return 1;
            if (e == NULL)
                break;
            list = e + 1;
        }
        return 0;
    }
    const http_header *host = http_find_header(req, "Host");
    if (host == NULL)
        return 0;
    const char *p = memchr(o->value, ':', o->value_len);
    if (p == NULL || (size_t)(p - o->value) + 3 > o->value_len || p[1] != '/' || p[2] != '/')
        return 0;
    const char *h = p + 3;
    size_t hl = o->value_len - (size_t)(h - o->value);
    return hl == host->value_len && strncasecmp(h, host->value, hl) == 0;
}

/* Reads filters from the query into c->filt; on error responds 400 and returns -1. */
static int read_filters(conn *c, const http_request *req)
{
    char val[FILTER_MAX_IDS * (FILTER_ID_MAX + 1) + 64];
    char err[160];
    c->filt.types = FILTER_EV_ALL;
    static const char *const keys[] = {"agent_ids", "project_ids"};
    filter_list *lists[] = {&c->filt.agents, &c->filt.projects};
    for (int i = 0; i < 2; i++) {
        int n = http_query_get(req->query, req->query_len, keys[i], val, sizeof val);
        if (n == -2) {
            snprintf(err, sizeof err, "%s: malformed or longer than %d ids", keys[i],
                     FILTER_MAX_IDS);
            respond_error(c, 400, "Bad Request", REJ_FILTER, "bad_filter", err, NULL);
            return -1;
        }
        if (n >= 0 && filter_parse_ids(val, lists[i], keys[i], err, sizeof err) != 0) {
            respond_error(c, 400, "Bad Request", REJ_FILTER, "bad_filter", err, NULL);
            return -1;
        }
    }
    int n = http_query_get(req->query, req->query_len, "event_types", val, sizeof val);
    if (n == -2 || (n >= 0 && filter_parse_types(val, &c->filt.types, err, sizeof err) != 0)) {
        if (n == -2)
            snprintf(err, sizeof err, "event_types: malformed");
        respond_error(c, 400, "Bad Request", REJ_FILTER, "bad_filter", err, NULL);
        return -1;
    }
    n = http_query_get(req->query, req->query_len, "encoding", val, sizeof val);
    if (n >= 0) {
        if (strcmp(val, "json") == 0) {
            c->is_messagepack = 0;
        } else if (strcmp(val, "messagepack") == 0 || strcmp(val, "msgpack") == 0) {
            c->is_messagepack = 1;
        } else {
            respond_error(c, 400, "Bad Request", REJ_FILTER, "bad_encoding",
                          "encoding: use json or messagepack", NULL);
            return -1;
        }
    }
    return 0;
}

/* Counts one attempt of c's client in bucket rl; when over, answers 429 with Retry-After and
 * returns 1. */
static int conn_rate_refused(conn *c, ratelimit *rl, reject_reason why)
{
    int wait = ratelimit_ip_admit(rl, c->ip, util_mono_ns());
    if (wait <= 0)
        return 0;
    char retry[64];
    snprintf(retry, sizeof retry, "Retry-After: %d\r\n", wait);
    respond_error(c, 429, "Too Many Requests", why, "rate_limited",
                  why == REJ_ANON_RATE
                      ? "too many connection attempts without a valid token from your address "
                        "(--anon-conn-rate): retry after Retry-After seconds"
                      : "too many new connections from your address: retry after Retry-After "
                        "seconds",
                  retry);
    return 1;
}

/* Verifies the token from ?token= or "Authorization: Bearer" (D1).  On failure answers 401 and
 * audit-logs the reason with the token's keyed fingerprint (never the token); returns -1. */
static int authenticate(conn *c, const http_request *req)
{
    static char tokbuf[AUTH_TOKEN_MAX + 2];
    const char *tok = NULL;
    size_t tok_len = 0;
    int n = http_query_get(req->query, req->query_len, "token", tokbuf, sizeof tokbuf);
    int rc;
    if (n > 0) {
        tok = tokbuf;
        tok_len = (size_t)n;
        rc = AUTH_OK;
    } else if (n == -2) {
        rc = AUTH_ETOO_LARGE;
    } else {
        const http_header *h = http_find_header(req, "Authorization");
        rc = h != NULL ? auth_bearer_token(h->value, h->value_len, &tok, &tok_len) : AUTH_ENOTOKEN;
    }
    if (rc == AUTH_OK)
        rc = auth_verify(c->srv->auth, tok, tok_len, (int64_t)time(NULL), &c->ident);
    if (rc != AUTH_OK) {
        char fp[AUTH_FP_HEX + 1] = "";
        if (tok != NULL)
            auth_fingerprint(tok, tok_len, fp);
        g_metrics.auth_failures++;
        log_info("auth failure", "\"event\":\"auth_failure\",\"conn\":%llu,\"ip\":\"%s\","
                 "\"reason\":\"%s\",\"token_fp\":\"%s\"",
                 (unsigned long long)c->id, c->ip, auth_strerror(rc), fp);
        if (conn_rate_refused(c, c->srv->anon_rl, REJ_ANON_RATE))
            return -1;
        respond_error(c, 401, "Unauthorized", REJ_AUTH, auth_public_reason(rc),
                      auth_public_message(rc), NULL);
        return -1;
    }
    c->has_ident = 1;
    snprintf(c->user, sizeof c->user, "%s", c->ident.user);
    return 0;
}

/* Sends the 101 and subscribes the connection (the second half of handle_upgrade). */
static void finish_upgrade(conn *c)
{
    server *srv = c->srv;
    upgrade *up = c->up;
    buf b;
    buf_init(&b);
    buf_printf(&b,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
               "Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
               up->accept, up->ext);
    free(c->out);
    c->out = b.data;
    c->out_len = b.len;
    c->out_off = 0;
    c->endpoint = up->ep;
    if (ws_conn_init(c) != 0) {
        conn_abort(c, CLOSE_IO_ERROR, "out of memory");
        return;
    }
    http_phase_end(c);
    srv->n_ws++;
    if (srv->cl != NULL)
        cluster_conn_open(srv->cl, c);
    if (up->ep == EP_EVENTS) {
        hub_subscribe_events(srv->hub, c, up->resume, up->resume_seq, up->epoch);
    } else {
        snprintf(c->task_id, sizeof c->task_id, "%s", up->task);
        /* Unknown and forbidden are one answer: no existence oracle across projects (D2). */
        int r = hub_subscribe_terminal(srv->hub, c, up->task, up->agent, up->project,
                                       up->run);
        if (r == -3)
            conn_close_ws(c, 4010, CLOSE_OUTPUT_EXPIRED, "task ended; its output is no longer kept");
        else if (r != 0)
            conn_close_ws(c, 4004, CLOSE_UNKNOWN_TASK, "unknown task");
    }
    free(c->up);
    c->up = NULL;
    conn_mark_dirty(c);
}

static void admit_done(void *ud, int retry_after_s, int reason)
{
    conn *c = ud;
    c->admitting = 0;
    if (c->state != CONN_HTTP)
        return;
    ev_io_start(c->srv->loop, &c->io);
    if (retry_after_s < 0) {
        /* Redis failed after taking the request: the local limits already passed. */
        finish_upgrade(c);
        return;
    }
    if (retry_after_s != 0) {
        char retry[64];
        snprintf(retry, sizeof retry, "Retry-After: %d\r\n", retry_after_s);
        if (reason == 0)
            respond_error(c, 429, "Too Many Requests", REJ_CONN_RATE, "rate_limited",
                          "too many new connections from your address: retry after Retry-After "
                          "seconds",
                          retry);
        else
            respond_error(c, 429, "Too Many Requests", REJ_USER_CONNS, "too_many_connections",
                          "you have too many open connections (--user-conns): close a dashboard "
                          "tab and retry",
                          retry);
        /* outside the read path: nothing else will notice the response is ready */
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_WRITE);
        ev_io_start(c->srv->loop, &c->io);
        return;
    }
    finish_upgrade(c);
}

/* Header fields whose value the handshake relies on: each may appear at most once (RFC 6455 11.3.1,
 * 11.3.5; RFC 7230 3.2.2 — a repeated field could make two parts of the server, or a proxy and the
 * server, act on different values). */
static const char *const single_fields[] = {"Upgrade", "Connection", "Sec-WebSocket-Key",
                                            "Sec-WebSocket-Version", "Origin", "Authorization"};

/* RFC 6455 4.2.1 / 4.1: an HTTP/1.1 (or higher) request whose relied-on fields are not repeated.
 * On failure answers 400 and returns -1. */
static int handshake_well_formed(conn *c, const http_request *req)
{
    if (req->minor_version < 1) {
        respond_error(c, 400, "Bad Request", REJ_BAD_REQUEST, "http_version",
                      "a WebSocket handshake must be an HTTP/1.1 request", NULL);
        return -1;
    }
    for (size_t i = 0; i < ARRAY_LEN(single_fields); i++) {
        if (http_count_header(req, single_fields[i]) > 1) {
            char text[96];
            snprintf(text, sizeof text, "header field %s appears more than once", single_fields[i]);
            respond_error(c, 400, "Bad Request", REJ_BAD_REQUEST, "duplicate_header", text, NULL);
            return -1;
        }
    }
    return 0;
}

static void handle_upgrade(conn *c, const http_request *req, conn_endpoint ep, const char *task_id)
{
    server *srv = c->srv;
    char retry[64];
    if (handshake_well_formed(c, req) != 0)
        return;
    snprintf(retry, sizeof retry, "Retry-After: %d\r\n", RETRY_AFTER_S);
    if (srv->draining) {
        respond_error(c, 503, "Service Unavailable", REJ_DRAINING, "draining",
                      "this instance is shutting down: reconnect (to another instance)", retry);
        return;
    }
    if (srv->n_ws >= (uint64_t)srv->cfg->max_connections) {
        respond_error(c, 503, "Service Unavailable", REJ_CAPACITY, "capacity",
                      "this instance is at --max-connections: retry later", retry);
        return;
    }
    /* Admission (B9, issue 17): with authentication, attempts without a valid token (and refused
     * origins) count in their own per-IP bucket, --anon-conn-rate, so that anonymous traffic
     * behind a shared address cannot lock authenticated users out; --conn-rate then counts the
     * authenticated attempts only.  Without authentication every attempt counts in --conn-rate. */
    if (srv->auth == NULL && conn_rate_refused(c, srv->rl, REJ_CONN_RATE))
        return;
    if (!origin_allowed(srv, req)) {
        if (srv->auth != NULL && conn_rate_refused(c, srv->anon_rl, REJ_ANON_RATE))
            return;
        respond_error(c, 403, "Forbidden", REJ_ORIGIN, "origin_not_allowed",
                      "this page's origin is not allowed: add it to --allowed-origins", NULL);
        return;
    }
    if (srv->auth != NULL) {
        if (authenticate(c, req) != 0)
            return;
        if (conn_rate_refused(c, srv->rl, REJ_CONN_RATE))
            return;
    }
    if (read_filters(c, req) != 0)
        return;
    if (c->has_ident && !c->ident.all_projects) {
        /* D2: a filter naming a project outside the token's rights is refused, not narrowed. */
        for (unsigned i = 0; i < c->filt.projects.n; i++) {
            if (!auth_allows_project(&c->ident, c->filt.projects.ids[i])) {
                char text[160];
                snprintf(text, sizeof text, "project_ids: you may not see project '%s'",
                         c->filt.projects.ids[i]);
                respond_error(c, 403, "Forbidden", REJ_FORBIDDEN, "forbidden", text, NULL);
                return;
            }
        }
    }
    if (c->has_ident) {
        if (ratelimit_user_acquire(srv->rl, c->user) != 0) {
            snprintf(retry, sizeof retry, "Retry-After: %d\r\n", RETRY_AFTER_S);
            respond_error(c, 429, "Too Many Requests", REJ_USER_CONNS, "too_many_connections",
                          "you have too many open connections (--user-conns): close a dashboard "
                          "tab and retry",
                          retry);
            return;
        }
        c->holds_user_slot = 1;
    }
    /* The WebSocket checks come after origin, token, filters and limits, so that a browser that cannot
     * see a refused handshake's status can learn it from a plain GET to the same URL (the
     * answer is then 426 only when everything else would have passed). */
    const http_header *upg = http_find_header(req, "Upgrade");
    const http_header *cn = http_find_header(req, "Connection");
    if (upg == NULL || !http_has_token(upg->value, upg->value_len, "websocket") || cn == NULL ||
        !http_has_token(cn->value, cn->value_len, "upgrade")) {
        respond_error(c, 426, "Upgrade Required", REJ_BAD_REQUEST, "upgrade_required",
                      "this endpoint speaks WebSocket only", "Upgrade: websocket\r\n");
        return;
    }
    const http_header *ver = http_find_header(req, "Sec-WebSocket-Version");
    if (ver == NULL || ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0) {
        respond_error(c, 426, "Upgrade Required", REJ_VERSION, "bad_version",
                      "only WebSocket version 13 is supported", "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    const http_header *key = http_find_header(req, "Sec-WebSocket-Key");
    if (key == NULL || !ws_key_valid(key->value, key->value_len)) {
        respond_error(c, 400, "Bad Request", REJ_BAD_REQUEST, "bad_key",
                      "Sec-WebSocket-Key must be the base64 of 16 bytes", NULL);
        return;
    }
    upgrade *up = xcalloc(1, sizeof *up);
    c->up = up;
    up->ep = ep;
    char val[64];
    if (http_query_get(req->query, req->query_len, "last_sequence_id", val, sizeof val) > 0) {
        char *end;
        up->resume = 1;
        up->resume_seq = strtoull(val, &end, 10);
        if (*end != '\0' || val[0] < '0' || val[0] > '9') {
            respond_error(c, 400, "Bad Request", REJ_FILTER, "bad_resume",
                          "last_sequence_id must be a non-negative integer", NULL);
            return;
        }
        if (http_query_get(req->query, req->query_len, "epoch", up->epoch, sizeof up->epoch) < 0)
            up->epoch[0] = '\0';
    }
    if (ep == EP_TERMINAL) {
        snprintf(up->task, sizeof up->task, "%s", task_id);
        if (http_query_get(req->query, req->query_len, "agent_id", up->agent, sizeof up->agent) < 0)
            up->agent[0] = '\0';
        if (http_query_get(req->query, req->query_len, "project_id", up->project,
                           sizeof up->project) < 0)
            up->project[0] = '\0';
        int rn = http_query_get(req->query, req->query_len, "run", val, sizeof val);
        if (rn != -1) {
            char *end = val;
            if (rn > 0)
                up->run = strtoull(val, &end, 10);
            if (rn <= 0 || *end != '\0' || val[0] < '0' || val[0] > '9' || up->run == 0) {
                respond_error(c, 400, "Bad Request", REJ_FILTER, "bad_run",
                              "run must be the positive integer a task's \"run\" field gives",
                              NULL);
                return;
            }
        }
    }
    ws_accept_key(key->value, key->value_len, up->accept);
    const http_header *offer = http_find_header(req, "Sec-WebSocket-Extensions");
    if (offer != NULL) {
        char resp[128];
        if (encode_negotiate_deflate(offer->value, offer->value_len, &c->pmd, resp, sizeof resp))
            snprintf(up->ext, sizeof up->ext, "Sec-WebSocket-Extensions: %s\r\n", resp);
    }
    /* With Redis the limits are cluster-wide (B9): the upgrade waits for the verdict.  When Redis
     * is unavailable the local limits above are all there is. */
    if (srv->cl != NULL &&
        cluster_admit(srv->cl, c->ip, c->has_ident ? c->ident.user_fp : NULL, c->cid,
                      srv->cfg->conn_rate, srv->cfg->user_conns, admit_done, c) == 0) {
        c->admitting = 1;
        ev_io_stop(srv->loop, &c->io);
        return;
    }
    finish_upgrade(c);
}

/* 1 if v is a valid Host field value: uri-host [":" port] (RFC 7230 5.4, RFC 3986 3.2.2), empty
 * allowed. */
static int host_valid(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~%!$&'()*+,;=:[]", ch) != NULL) || ch == '\0')
            return 0;
    }
    return 1;
}

static void route(conn *c, const http_request *req)
{
    server *srv = c->srv;
    char path[256];
    if (req->path_len >= sizeof path) {
        respond_error(c, 404, "Not Found", REJ_NOT_FOUND, "not_found", "no such path", NULL);
        return;
    }
    memcpy(path, req->path, req->path_len);
    path[req->path_len] = '\0';
    /* RFC 7230 5.4: 400 for an HTTP/1.1 request without Host, and for any request with more
     * than one Host or an invalid one. */
    size_t n_host = http_count_header(req, "Host");
    const http_header *host = http_find_header(req, "Host");
    if (n_host > 1 || (n_host == 0 && req->minor_version >= 1) ||
        (host != NULL && !host_valid(host->value, host->value_len))) {
        respond_error(c, 400, "Bad Request", REJ_BAD_REQUEST, "bad_host",
                      n_host > 1    ? "more than one Host header field"
                      : n_host == 0 ? "an HTTP/1.1 request needs a Host header field"
                                    : "invalid Host header field",
                      NULL);
        return;
    }
    if (proxy_client_ip(&srv->proxies, c->peer, req, c->ip, sizeof c->ip) < 0) {
        respond_error(c, 400, "Bad Request", REJ_BAD_FORWARDED, "bad_forwarded",
                      "malformed Forwarded or X-Forwarded-For from a trusted proxy", NULL);
        return;
    }
    int is_get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    int is_head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    c->is_head = is_head;

    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/livez") == 0) {
        if (!is_get && !is_head)
            goto method;
        static const char ok[] = "{\"status\":\"ok\"}\n";
        respond(c, 200, "OK", "application/json", NULL, ok, sizeof ok - 1);
        return;
    }
    if (strcmp(path, "/readyz") == 0) {
        if (!is_get && !is_head)
            goto method;
        if (server_ready(srv)) {
            static const char ok[] = "{\"status\":\"ready\"}\n";
            respond(c, 200, "OK", "application/json", NULL, ok, sizeof ok - 1);
        } else {
            static const char no[] = "{\"status\":\"draining\"}\n";
            static const char catching[] = "{\"status\":\"catching_up\"}\n";
            const char *body = srv->draining ? no : catching;
            respond(c, 503, "Service Unavailable", "application/json", "Retry-After: 5\r\n", body,
                    strlen(body));
        }
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        if (!is_get && !is_head)
            goto method;
        serve_metrics(c);
        return;
    }
    if (strcmp(path, "/ws/events") == 0) {
        if (!is_get)
            goto method;
        handle_upgrade(c, req, EP_EVENTS, NULL);
        return;
    }
    if (strncmp(path, "/ws/terminal/", 13) == 0) {
        if (!is_get)
            goto method;
        const char *task = path + 13;
        if (!filter_id_valid(task, strlen(task))) {
            respond_error(c, 400, "Bad Request", REJ_BAD_REQUEST, "bad_task_id",
                          "task id must be 1-63 chars of A-Z a-z 0-9 . _ : @ -", NULL);
            return;
        }
        handle_upgrade(c, req, EP_TERMINAL, task);
        return;
    }
    const web_file *wf = web_find(path, srv->cfg->dashboard);
    if (wf != NULL) {
        if (!is_get && !is_head)
            goto method;
        respond(c, 200, "OK", wf->content_type, NULL, wf->data, wf->len);
        return;
    }
    respond_error(c, 404, "Not Found", REJ_NOT_FOUND, "not_found", "no such path", NULL);
    return;
method:
    respond_error(c, 405, "Method Not Allowed", REJ_METHOD, "method_not_allowed",
                  "use GET for this path", "Allow: GET\r\n");
}

/* ---- HTTP phase I/O ------------------------------------------------------------------------ */

static void http_read(conn *c)
{
    server *srv = c->srv;
    size_t max = (size_t)srv->cfg->max_header;
    for (;;) {
        if (c->in_len == max) {
            respond_error(c, 431, "Request Header Fields Too Large", REJ_HEADER_TOO_LARGE,
                          "header_too_large", "request head exceeds --max-header", NULL);
            return;
        }
        if (c->in_len == c->in_cap) {
            /* Start small (a browser's handshake is under 1 KiB) and grow up to --max-header. */
            c->in_cap = c->in_cap ? c->in_cap * 2 : HTTP_IN_INITIAL;
            if (c->in_cap > max)
                c->in_cap = max;
            c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0) {
            conn_abort(c, CLOSE_EOF, "closed before sending a request");
            return;
        }
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            conn_abort(c, CLOSE_IO_ERROR, "read error before request");
            return;
        }
        c->in_len += (size_t)n;
        g_metrics.bytes_received += (uint64_t)n;
        http_request req;
        int r = http_parse_request(c->in, c->in_len, &req);
        if (r == HTTP_PARTIAL)
            continue;
        if (r == HTTP_ETOO_MANY) {
            respond_error(c, 431, "Request Header Fields Too Large", REJ_HEADER_TOO_LARGE,
                          "too_many_headers", "too many header fields", NULL);
            return;
        }
        if (r < 0) {
            respond_error(c, r == HTTP_EVERSION ? 505 : 400,
                          r == HTTP_EVERSION ? "HTTP Version Not Supported" : "Bad Request",
                          REJ_BAD_REQUEST, "bad_request", "malformed HTTP request", NULL);
            return;
        }
        ev_timer_stop(srv->loop, &c->timer);
        if ((size_t)r < c->in_len) {
            /* Frames sent right behind the handshake belong to wslay. */
            c->pre_len = c->in_len - (size_t)r;
            c->pre = xmalloc(c->pre_len);
            memcpy(c->pre, c->in + r, c->pre_len);
            c->pre_off = 0;
        }
        route(c, &req);
        if (c->admitting) {
            /* the handshake deadline still applies while the cluster decides */
            ev_timer_set(&c->timer, (double)srv->cfg->handshake_timeout, 0.);
            ev_timer_start(srv->loop, &c->timer);
        }
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = 0;
        return;
    }
}

/* Writes c->out.  Returns 1 when everything was written, 0 if it must wait, -1 on error. */
int server_flush_out(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            if (errno == EINTR)
                continue;
            return -1;
        }
        c->out_off += (size_t)n;
        g_metrics.bytes_sent += (uint64_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    return 1;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    conn *c = container_of(w, conn, io);
    if (c->state == CONN_HTTP && (revents & EV_READ))
        http_read(c);
    if (c->state == CONN_RESPONSE) {
        int r = server_flush_out(c);
        if (r != 0) {
            if (r == 1)
                shutdown(c->fd, SHUT_WR);
            conn_abort(c, r == 1 ? CLOSE_CLIENT : CLOSE_IO_ERROR, "response sent");
            return;
        }
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_WRITE);
        ev_io_start(c->srv->loop, &c->io);
        return;
    }
    if (c->state == CONN_WS || c->state == CONN_CLOSING) {
        if (revents & EV_READ)
            c->readable = 1;
        conn_pump(c);
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = container_of(w, conn, timer);
    if (c->state == CONN_HTTP) {
        g_metrics.rejections[REJ_HANDSHAKE_TIMEOUT]++;
        log_info("request refused", "\"conn\":%llu,\"ip\":\"%s\",\"reason\":\"handshake_timeout\"",
                 (unsigned long long)c->id, c->ip);
        conn_abort(c, CLOSE_EOF, "handshake timeout");
        return;
    }
    if (c->state == CONN_RESPONSE) {
        conn_abort(c, CLOSE_IO_ERROR, "response not read in time");
        return;
    }
    ws_conn_timer(c);
}

void server_ws_closed(server *srv)
{
    if (srv->n_ws > 0)
        srv->n_ws--;
    if (srv->draining && srv->n_ws == 0 && srv->on_drained != NULL) {
        void (*cb)(server *) = srv->on_drained;
        srv->on_drained = NULL;
        cb(srv);
    }
}

int server_ready(const server *srv)
{
    /* With Redis: not ready while the cluster stream is being caught up after a gap (issue 7's
     * self-check).  A Redis outage alone does not make the pod unready: local delivery goes on. */
    if (srv->cl != NULL && cluster_available(srv->cl) && !cluster_ready(srv->cl))
        return 0;
    return !srv->draining;
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    server *srv = container_of(w, server, drain_timer);
    log_warn("drain timeout: closing remaining connections", "\"remaining\":%llu",
             (unsigned long long)srv->n_ws);
    for (conn *c = srv->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->endpoint != EP_NONE && c->state != CONN_DEAD)
            conn_abort(c, CLOSE_DRAIN, "drain timeout");
    }
    if (srv->on_drained != NULL) {
        void (*cb)(server *) = srv->on_drained;
        srv->on_drained = NULL;
        cb(srv);
    }
}

void server_drain(server *srv)
{
    if (srv->draining)
        return;
    srv->draining = 1;
    srv->drain_started_mono = util_mono_ns();
    double window = (double)srv->cfg->drain_timeout;
    /* Spread the closes over up to a third of the drain window (at most 10 s), each client with its
     * own jittered reconnect delay, so a rolling deploy does not stampede the other pods. */
    double spread = window / 3.0 > 10.0 ? 10.0 : window / 3.0;
    log_info("draining", "\"connections\":%llu,\"timeout_s\":%ld,\"spread_s\":%.1f",
             (unsigned long long)srv->n_ws, srv->cfg->drain_timeout, spread);
    for (conn *c = srv->conns; c != NULL; c = c->next) {
        if (c->state == CONN_WS) {
            double at = spread > 0 ? spread * (double)randombytes_uniform(10000) / 10000.0 : 0.;
            ws_conn_schedule_shutdown(c, at);
        }
    }
    ev_timer_init(&srv->drain_timer, drain_timeout_cb, window, 0.);
    ev_timer_start(srv->loop, &srv->drain_timer);
    if (srv->n_ws == 0 && srv->on_drained != NULL) {
        void (*cb)(server *) = srv->on_drained;
        srv->on_drained = NULL;
        cb(srv);
    }
}

void server_stop(server *srv)
{
    while (srv->conns != NULL)
        conn_abort(srv->conns, CLOSE_DRAIN, "server stopping");
    reaper_cb(srv->loop, &srv->reaper, 0);
    ev_io_stop(srv->loop, &srv->accept_io);
    ev_timer_stop(srv->loop, &srv->accept_retry);
    ev_timer_stop(srv->loop, &srv->drain_timer);
    ev_check_stop(srv->loop, &srv->reaper);
    ev_idle_stop(srv->loop, &srv->kick);
    ev_timer_stop(srv->loop, &srv->sweep_timer);
    ratelimit_free(srv->rl);
    ratelimit_free(srv->anon_rl);
    ratelimit_free(srv->http_rl);
    srv->rl = srv->anon_rl = srv->http_rl = NULL;
    if (srv->lfd >= 0)
        close(srv->lfd);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    srv->lfd = srv->spare_fd = -1;
}
