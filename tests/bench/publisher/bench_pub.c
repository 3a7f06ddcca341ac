/*
 * ringside-bench-pub — publishes at a fixed rate for the benchmarks.
 *
 * Two back ends, same schedule:
 *  - SDK (default; built when libringside is): N agent handles (rs_open each), publishing agent
 *    status changes (alternating working/idle, so each one is a transition), task progress, or
 *    terminal bytes through rs_* — the path Ringside's users take.
 *  - HTTP (--http URL): the same events as Ringside's wire JSON ("ts_ns" set at send time, or with
 *    --ts-due at the time the event was due),
 *    POSTed over one keep-alive connection, for peers that publish by HTTP (nginx+nchan).
 *
 * The schedule is absolute: event k of the run is due at t0 + k / (agents × rate), so a slow
 * moment is caught up rather than lost and the achieved rate is reported.  Terminal bytes follow
 * the pattern byte k of a stream = k % 251, which `ringside-loadgen --verify-pattern` checks.
 * The run is bounded by --count (per agent) or --duration.  One JSON object on stdout at the end.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef RS_BENCH_HAVE_SDK
#include "ringside.h"
#endif

#define BP_MAX_AGENTS 4096
#define BP_MAX_CHUNK (1u << 20)

typedef enum bp_mode { BP_STATUS, BP_PROGRESS, BP_TERMINAL } bp_mode;

typedef struct bp_config {
    bp_mode mode;
    unsigned agents;
    double rate;        /* events per second per agent (status, progress) */
    double bytes_rate;  /* bytes per second per stream (terminal); 0 = as fast as possible */
    uint64_t count;     /* events (or chunks) per agent; 0 = from duration */
    uint64_t total_bytes; /* terminal bytes per stream; 0 = from duration */
    double duration_s;
    size_t chunk;
    const char *shm_dir;
    const char *project;
    const char *agent_fmt; /* "{i}" replaced by the agent index */
    const char *task_fmt;
    const char *http_url;
    uint32_t term_ring_bytes;
    bool ts_due; /* HTTP: ts_ns = the event's scheduled time, not its send time */
    int cpu;
    bool end_task;
    bool go_on_stdin; /* after opening handles and starting tasks, print OPEN, wait for a line */
} bp_config;

static bp_config cfg;

static uint64_t bp_now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bp_fmt_index(const char *fmt, unsigned i, char *out, size_t cap)
{
    const char *mark = strstr(fmt, "{i}");
    if (mark == NULL)
        snprintf(out, cap, "%s", fmt);
    else
        snprintf(out, cap, "%.*s%u%s", (int)(mark - fmt), fmt, i, mark + 3);
}

/* ---------------------------------------------------------------- HTTP back end */

typedef struct bp_http {
    int fd;
    char host[256];
    char port[16];
    char path[512];
    char rbuf[8192];
    size_t rlen;
} bp_http;

static int bp_http_connect(bp_http *h, const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *p = url + 7;
    const char *slash = strchr(p, '/');
    const char *hp_end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(hp_end - p));
    const char *h_end = colon ? colon : hp_end;
    snprintf(h->host, sizeof(h->host), "%.*s", (int)(h_end - p), p);
    if (colon)
        snprintf(h->port, sizeof(h->port), "%.*s", (int)(hp_end - colon - 1), colon + 1);
    else
        snprintf(h->port, sizeof(h->port), "80");
    snprintf(h->path, sizeof(h->path), "%s", slash ? slash : "/");
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(h->host, h->port, &hints, &ai) != 0)
        return -1;
    h->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = h->fd == -1 ? -1 : connect(h->fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc == -1)
        return -1;
    setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    h->rlen = 0;
    return 0;
}

static int bp_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* POSTs body to path and waits for the whole response; returns the HTTP status or -1. */
static int bp_http_post(bp_http *h, const char *path, const char *ctype, const void *body,
                        size_t len)
{
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      path, h->host, h->port, ctype, len);
    if (hl < 0 || (size_t)hl >= sizeof(head) || bp_write_all(h->fd, head, (size_t)hl) != 0 ||
        bp_write_all(h->fd, body, len) != 0)
        return -1;
    for (int guard = 0; guard < 1000; guard++) {
        char *end = memmem(h->rbuf, h->rlen, "\r\n\r\n", 4);
        if (end != NULL) {
            size_t head_len = (size_t)(end - h->rbuf) + 4;
            int status = 0;
            if (sscanf(h->rbuf, "HTTP/1.%*d %d", &status) != 1)
                return -1;
            size_t clen = 0;
            for (char *l = h->rbuf; l < end; l = strstr(l, "\r\n") + 2) {
                if (strncasecmp(l, "Content-Length:", 15) == 0)
                    clen = strtoul(l + 15, NULL, 10);
                if (strstr(l, "\r\n") == NULL)
                    break;
            }
            if (head_len + clen <= h->rlen) {
                memmove(h->rbuf, h->rbuf + head_len + clen, h->rlen - head_len - clen);
                h->rlen -= head_len + clen;
                return status;
            }
        }
        if (h->rlen == sizeof(h->rbuf))
            return -1;
        ssize_t n = read(h->fd, h->rbuf + h->rlen, sizeof(h->rbuf) - h->rlen);
        if (n <= 0)
            return -1;
        h->rlen += (size_t)n;
    }
    return -1;
}

/* ---------------------------------------------------------------- main */

static void bp_usage(FILE *f)
{
    fprintf(f,
            "usage: ringside-bench-pub [options]\n"
            "  --mode status|progress|terminal   (default status)\n"
            "  --agents N            agent handles / streams (default 1)\n"
            "  --rate R              events per second per agent (default 100)\n"
            "  --count N             events per agent (default: rate x duration)\n"
            "  --duration S          (default 5)\n"
            "  --bytes-per-s B       terminal bytes per second per stream (0 = unpaced)\n"
            "  --total-bytes N       terminal bytes per stream (default: rate x duration)\n"
            "  --chunk BYTES         terminal write size (default 4096)\n"
            "  --term-ring-bytes N   SDK terminal ring size (power of two)\n"
            "  --shm-dir DIR  --project P  --agent FMT (default bench-a{i})  --task FMT\n"
            "                        (default bench-t{i})  --no-end (leave tasks open)\n"
            "  --http URL            publish by HTTP POST instead of the SDK ({i} in the path\n"
            "                        is the agent index)\n"
            "  --go-on-stdin         set up (handles, tasks), print OPEN on stderr, then wait for\n"
            "                        one line on stdin before publishing (terminal benchmarks)\n"
            "  --ts-due              HTTP back end: stamp ts_ns with the time the event was due\n"
            "                        on the schedule, so a server that holds the publisher back\n"
            "                        (slow POST responses) is charged for the wait\n"
            "  --cpu C               pin to CPU C\n");
}

static int bp_parse(int argc, char **argv)
{
    cfg.mode = BP_STATUS;
    cfg.agents = 1;
    cfg.rate = 100;
    cfg.duration_s = 5;
    cfg.chunk = 4096;
    cfg.project = "bench";
    cfg.agent_fmt = "bench-a{i}";
    cfg.task_fmt = "bench-t{i}";
    cfg.cpu = -1;
    cfg.end_task = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define BP_ARG(name) (strcmp(a, name) == 0 && v != NULL && (i++, 1))
        if (strcmp(a, "--help") == 0) {
            bp_usage(stdout);
            exit(0);
        } else if (strcmp(a, "--ts-due") == 0) {
            cfg.ts_due = true;
        } else if (strcmp(a, "--no-end") == 0) {
            cfg.end_task = false;
        } else if (strcmp(a, "--go-on-stdin") == 0) {
            cfg.go_on_stdin = true;
        } else if (BP_ARG("--mode")) {
            if (strcmp(v, "status") == 0)
                cfg.mode = BP_STATUS;
            else if (strcmp(v, "progress") == 0)
                cfg.mode = BP_PROGRESS;
            else if (strcmp(v, "terminal") == 0)
                cfg.mode = BP_TERMINAL;
            else
                return -1;
        } else if (BP_ARG("--agents")) {
            cfg.agents = (unsigned)strtoul(v, NULL, 10);
        } else if (BP_ARG("--rate")) {
            cfg.rate = strtod(v, NULL);
        } else if (BP_ARG("--count")) {
            cfg.count = strtoull(v, NULL, 10);
        } else if (BP_ARG("--duration")) {
            cfg.duration_s = strtod(v, NULL);
        } else if (BP_ARG("--bytes-per-s")) {
            cfg.bytes_rate = strtod(v, NULL);
        } else if (BP_ARG("--total-bytes")) {
            cfg.total_bytes = strtoull(v, NULL, 10);
        } else if (BP_ARG("--chunk")) {
            cfg.chunk = strtoul(v, NULL, 10);
        } else if (BP_ARG("--term-ring-bytes")) {
            cfg.term_ring_bytes = (uint32_t)strtoul(v, NULL, 10);
        } else if (BP_ARG("--shm-dir")) {
            cfg.shm_dir = v;
        } else if (BP_ARG("--project")) {
            cfg.project = v;
        } else if (BP_ARG("--agent")) {
            cfg.agent_fmt = v;
        } else if (BP_ARG("--task")) {
            cfg.task_fmt = v;
        } else if (BP_ARG("--http")) {
            cfg.http_url = v;
        } else if (BP_ARG("--cpu")) {
            cfg.cpu = atoi(v);
        } else {
            fprintf(stderr, "bench-pub: unknown or incomplete option %s\n", a);
            bp_usage(stderr);
            return -1;
        }
#undef BP_ARG
    }
    if (cfg.agents == 0 || cfg.agents > BP_MAX_AGENTS || cfg.rate <= 0 || cfg.chunk == 0 ||
        cfg.chunk > BP_MAX_CHUNK || cfg.duration_s <= 0) {
        fprintf(stderr, "bench-pub: invalid option value\n");
        return -1;
    }
    if (cfg.mode == BP_TERMINAL) {
        if (cfg.total_bytes == 0)
            cfg.total_bytes = cfg.bytes_rate > 0 ? (uint64_t)(cfg.bytes_rate * cfg.duration_s)
                                                 : (uint64_t)64 << 20;
        cfg.count = (cfg.total_bytes + cfg.chunk - 1) / cfg.chunk;
        cfg.rate = cfg.bytes_rate > 0 ? cfg.bytes_rate / (double)cfg.chunk : 0;
    } else if (cfg.count == 0) {
        cfg.count = (uint64_t)(cfg.rate * cfg.duration_s);
    }
#ifndef RS_BENCH_HAVE_SDK
    if (cfg.http_url == NULL) {
        fprintf(stderr, "bench-pub: built without libringside; only --http is available\n");
        return -1;
    }
#endif
    return 0;
}

int main(int argc, char **argv)
{
    if (bp_parse(argc, argv) != 0)
        return 2;
    if (cfg.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cfg.cpu, &set);
        sched_setaffinity(0, sizeof(set), &set);
    }
    static char ids[BP_MAX_AGENTS][64], tasks[BP_MAX_AGENTS][64];
    static uint64_t term_off[BP_MAX_AGENTS];
    for (unsigned i = 0; i < cfg.agents; i++) {
        bp_fmt_index(cfg.agent_fmt, i, ids[i], sizeof(ids[i]));
        bp_fmt_index(cfg.task_fmt, i, tasks[i], sizeof(tasks[i]));
    }
    /* Pattern source: chunk bytes starting at any offset k % 251 are pattern + k % 251. */
    uint8_t *pattern = malloc(cfg.chunk + 251);
    if (pattern == NULL)
        return 1;
    for (size_t k = 0; k < cfg.chunk + 251; k++)
        pattern[k] = (uint8_t)(k % 251);

    bp_http http = {.fd = -1};
    char path[600];
#ifdef RS_BENCH_HAVE_SDK
    static rs_agent *ag[BP_MAX_AGENTS];
#endif
    if (cfg.http_url != NULL) {
        if (bp_http_connect(&http, cfg.http_url) != 0) {
            fprintf(stderr, "bench-pub: cannot connect to %s: %s\n", cfg.http_url, strerror(errno));
            return 1;
        }
    } else {
#ifdef RS_BENCH_HAVE_SDK
        for (unsigned i = 0; i < cfg.agents; i++) {
            rs_options o;
            rs_options_init(&o);
            o.shm_dir = cfg.shm_dir;
            o.agent_id = ids[i];
            o.project_id = cfg.project;
            o.term_ring_bytes = cfg.term_ring_bytes;
            int rc = rs_open(&o, &ag[i]);
            if (rc != RS_OK) {
                fprintf(stderr, "bench-pub: rs_open %s: %s\n", ids[i], rs_strerror(rc));
                return 1;
            }
            if (cfg.mode != BP_STATUS) {
                rc = rs_task_start(ag[i], tasks[i], "benchmark");
                if (rc != RS_OK) {
                    fprintf(stderr, "bench-pub: rs_task_start: %s\n", rs_strerror(rc));
                    return 1;
                }
            }
        }
#endif
    }

    if (cfg.go_on_stdin) {
        fprintf(stderr, "OPEN\n");
        fflush(stderr);
        char line[64];
        if (fgets(line, sizeof(line), stdin) == NULL) {
            fprintf(stderr, "bench-pub: stdin closed before go\n");
            return 1;
        }
    }
    uint64_t total = cfg.count * cfg.agents;
    double total_rate = cfg.rate * cfg.agents; /* 0: unpaced */
    uint64_t published = 0, errors = 0, full = 0, bytes = 0, http_reconnects = 0;
    int last_err = 0;
    uint64_t t0 = bp_now_ns(CLOCK_MONOTONIC);
    uint64_t rt0 = bp_now_ns(CLOCK_REALTIME);
    uint64_t max_behind_ns = 0;
    char body[1024];
    for (uint64_t k = 0; k < total; k++) {
        uint64_t due = 0;
        if (total_rate > 0) {
            due = t0 + (uint64_t)((double)k * 1e9 / total_rate);
            uint64_t now = bp_now_ns(CLOCK_MONOTONIC);
            if (due > now + 20000) {
                struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            } else if (now > due && now - due > max_behind_ns) {
                max_behind_ns = now - due;
            }
        }
        unsigned i = (unsigned)(k % cfg.agents);
        uint64_t n = k / cfg.agents; /* this agent's event number */
        int rc = 0;
        if (cfg.http_url != NULL) {
            uint64_t ts = bp_now_ns(CLOCK_REALTIME);
            if (cfg.ts_due && due != 0)
                ts = rt0 + (due - t0);
            int bl = 0;
            const void *payload = body;
            const char *ctype = "application/json";
            if (cfg.mode == BP_STATUS) {
                bl = snprintf(body, sizeof(body),
                              "{\"type\":\"agent_status\",\"agent_id\":\"%s\",\"project_id\":\"%s\","
                              "\"old_status\":\"%s\",\"new_status\":\"%s\",\"detail\":\"n%llu\","
                              "\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"ts_ns\":%llu,"
                              "\"seq\":%llu,\"epoch\":\"e1\"}",
                              ids[i], cfg.project, n % 2 ? "working" : "idle",
                              n % 2 ? "idle" : "working", (unsigned long long)n,
                              (unsigned long long)ts, (unsigned long long)k);
            } else if (cfg.mode == BP_PROGRESS) {
                bl = snprintf(body, sizeof(body),
                              "{\"type\":\"progress\",\"agent_id\":\"%s\",\"project_id\":\"%s\","
                              "\"task_id\":\"%s\",\"current_step\":%llu,\"total_steps\":%llu,"
                              "\"progress_percent\":%.1f,\"message\":\"step\",\"eta_seconds\":null,"
                              "\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"ts_ns\":%llu}",
                              ids[i], cfg.project, tasks[i], (unsigned long long)n + 1,
                              (unsigned long long)cfg.count,
                              100.0 * (double)(n + 1) / (double)cfg.count,
                              (unsigned long long)ts);
            } else {
                size_t len = cfg.chunk;
                if (term_off[i] + len > cfg.total_bytes)
                    len = (size_t)(cfg.total_bytes - term_off[i]);
                payload = pattern + term_off[i] % 251;
                bl = (int)len;
                ctype = "application/octet-stream";
            }
            bp_fmt_index(http.path, i, path, sizeof(path));
            int st = bp_http_post(&http, path, ctype, payload, (size_t)bl);
            if (st == -1) { /* the server closed the keep-alive connection: reconnect once */
                close(http.fd);
                http_reconnects++;
                if (bp_http_connect(&http, cfg.http_url) == 0)
                    st = bp_http_post(&http, path, ctype, payload, (size_t)bl);
            }
            if (st < 200 || st >= 300) {
                rc = st == -1 ? -1 : -st;
                if (errors < 3)
                    fprintf(stderr, "bench-pub: POST %s: %s %d\n", path, st == -1 ? "failed" : "HTTP", st);
                if (st == -1) {
                    fprintf(stderr, "bench-pub: HTTP connection failed after %llu posts\n",
                            (unsigned long long)published);
                    errors++;
                    break;
                }
            } else if (cfg.mode == BP_TERMINAL) {
                term_off[i] += (uint64_t)bl;
                bytes += (uint64_t)bl;
            }
        } else {
#ifdef RS_BENCH_HAVE_SDK
            if (cfg.mode == BP_STATUS) {
                char detail[32];
                snprintf(detail, sizeof(detail), "n%llu", (unsigned long long)n);
                rc = rs_set_status(ag[i], n % 2 ? RS_STATUS_IDLE : RS_STATUS_WORKING, detail);
            } else if (cfg.mode == BP_PROGRESS) {
                rc = rs_progress(ag[i], tasks[i], (uint32_t)(n + 1), (uint32_t)cfg.count, "step");
            } else {
                size_t len = cfg.chunk;
                if (term_off[i] + len > cfg.total_bytes)
                    len = (size_t)(cfg.total_bytes - term_off[i]);
                rc = rs_write(ag[i], tasks[i], RS_STDOUT, pattern + term_off[i] % 251, len);
                if (rc == RS_OK) {
                    term_off[i] += len;
                    bytes += len;
                }
            }
            if (rc == RS_EFULL)
                full++;
#endif
        }
        if (rc == 0)
            published++;
        else {
            errors++;
            last_err = rc;
        }
    }
    uint64_t t1 = bp_now_ns(CLOCK_MONOTONIC);
    uint64_t term_dropped = 0;
#ifdef RS_BENCH_HAVE_SDK
    if (cfg.http_url == NULL) {
        for (unsigned i = 0; i < cfg.agents; i++) {
            if (cfg.mode != BP_STATUS && cfg.end_task &&
                rs_task_end(ag[i], tasks[i], RS_STATUS_COMPLETED, 0) != RS_OK)
                errors++;
            rs_stats st = {.size = sizeof(st)};
            if (rs_stats_get(ag[i], &st) == RS_OK)
                term_dropped += st.term_bytes_dropped;
        }
    }
#endif
    double el = (double)(t1 - t0) / 1e9;
    printf("{\"tool\": \"ringside-bench-pub\", \"backend\": \"%s\", \"mode\": \"%s\", "
           "\"agents\": %u, \"rate_per_agent\": %.1f, \"planned\": %llu, \"published\": %llu, "
           "\"errors\": %llu, \"last_error\": %d, \"ring_full\": %llu, \"elapsed_s\": %.4f, "
           "\"achieved_per_s\": %.1f, \"max_behind_ms\": %.3f, \"bytes\": %llu, "
           "\"mb_per_s\": %.2f, \"term_bytes_dropped\": %llu, \"http_reconnects\": %llu}\n",
           cfg.http_url ? "http" : "sdk",
           cfg.mode == BP_STATUS ? "status" : cfg.mode == BP_PROGRESS ? "progress" : "terminal",
           cfg.agents, cfg.rate, (unsigned long long)total, (unsigned long long)published,
           (unsigned long long)errors, last_err, (unsigned long long)full, el,
           el > 0 ? (double)published / el : 0.0, (double)max_behind_ns / 1e6,
           (unsigned long long)bytes, el > 0 ? (double)bytes / el / 1e6 : 0.0,
           (unsigned long long)term_dropped, (unsigned long long)http_reconnects);
    fflush(stdout);
#ifdef RS_BENCH_HAVE_SDK
    for (unsigned i = 0; i < cfg.agents; i++)
        rs_close(ag[i]);
#endif
    if (http.fd != -1)
        close(http.fd);
    free(pattern);
    return errors == 0 ? 0 : 1;
}
