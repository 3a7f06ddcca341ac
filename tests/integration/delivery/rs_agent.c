/*
 * rs_agent — a scriptable test agent for the delivery integration tests: one long-lived process
 * (one ring) that executes commands read from stdin, one per line, through the public SDK and
 * answers each with "ok RC\n" on stdout (RC: the rs_* return code of the last call made).
 *
 * Usage: rs_agent --shm-dir D --agent A --project P [--owner U] [--term-ring-bytes N]
 *                 [--log-slots N]
 * Commands (ids and words are single tokens; TEXT is the rest of the line, may be empty):
 *   status STATUS TEXT              rs_set_status
 *   start TASK TEXT                 rs_task_start
 *   progress TASK STEP TOTAL TEXT   rs_progress
 *   burst TASK N TOTAL USEC         N progress updates 1..N of TOTAL, spread over USEC µs
 *   statusburst N [PAD]             N status events alternating working/idle, detail "b<i>"
 *                                   followed by " " and PAD 'x' characters when PAD > 0
 *   end TASK OUTCOME CODE           rs_task_end (OUTCOME: completed failed cancelled)
 *   write TASK N                    then exactly N raw bytes follow: rs_write in chunks ≤ 4096
 *   fill TASK N CHUNK               writes N bytes of a counting pattern in CHUNK-byte writes
 *   stats                           prints "stats PUBLISHED DROPPED TERM_WRITTEN TERM_DROPPED"
 *   close                           rs_close, answers, exits 0
 *   die                             exits at once without rs_close (like a crash)
 * Exit status: 0 after close or EOF (handle closed), 2 on usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ringside.h"

#define LINE_MAX_ 4096

static void usage(void)
{
    fputs("usage: rs_agent --shm-dir D --agent A --project P [--owner U] [--term-ring-bytes N] "
          "[--log-slots N]\n",
          stderr);
    exit(2);
}

static void reply(int rc)
{
    printf("ok %d\n", rc);
    fflush(stdout);
}

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Splits off the next space-separated token of *p (NULL if none). */
static char *tok(char **p)
{
    char *s = *p;
    while (*s == ' ')
        s++;
    if (*s == '\0')
        return NULL;
    char *e = strchr(s, ' ');
    if (e != NULL) {
        *e = '\0';
        *p = e + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

static unsigned long num(const char *s)
{
    return s == NULL ? 0 : strtoul(s, NULL, 10);
}

static int do_write(rs_agent *a, const char *task, unsigned long n)
{
    static char chunk[4096];
    int rc = 0;
    while (n > 0) {
        size_t k = n > sizeof chunk ? sizeof chunk : (size_t)n;
        if (fread(chunk, 1, k, stdin) != k)
            return -100;
        int r = rs_write(a, task, RS_STDOUT, chunk, k);
        if (r != 0)
            rc = r;
        n -= k;
    }
    return rc;
}

int main(int argc, char **argv)
{
    rs_options o;
    rs_options_init(&o);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--shm-dir") == 0)
            o.shm_dir = argv[++i];
        else if (strcmp(argv[i], "--agent") == 0)
            o.agent_id = argv[++i];
        else if (strcmp(argv[i], "--project") == 0)
            o.project_id = argv[++i];
        else if (strcmp(argv[i], "--owner") == 0)
            o.owner = argv[++i];
        else if (strcmp(argv[i], "--term-ring-bytes") == 0)
            o.term_ring_bytes = (uint32_t)num(argv[++i]);
        else if (strcmp(argv[i], "--log-slots") == 0)
            o.log_slots = (uint32_t)num(argv[++i]);
        else
            usage();
    }
    if (o.agent_id == NULL || o.project_id == NULL)
        usage();
    rs_agent *a = NULL;
    int rc = rs_open(&o, &a);
    if (rc != 0) {
        fprintf(stderr, "rs_open: %s\n", rs_strerror(rc));
        return 1;
    }
    reply(0);
    char line[LINE_MAX_];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *p = line;
        char *cmd = tok(&p);
        if (cmd == NULL)
            continue;
        rc = 0;
        if (strcmp(cmd, "status") == 0) {
            rs_status st;
            const char *name = tok(&p);
            rc = rs_status_parse(name != NULL ? name : "", &st);
            if (rc == 0)
                rc = rs_set_status(a, st, p);
        } else if (strcmp(cmd, "start") == 0) {
            const char *task = tok(&p);
            rc = rs_task_start(a, task != NULL ? task : "", p);
        } else if (strcmp(cmd, "progress") == 0) {
            const char *task = tok(&p);
            unsigned long step = num(tok(&p));
            unsigned long total = num(tok(&p));
            rc = rs_progress(a, task != NULL ? task : "", (uint32_t)step, (uint32_t)total, p);
        } else if (strcmp(cmd, "burst") == 0) {
            const char *task = tok(&p);
            unsigned long n = num(tok(&p));
            unsigned long total = num(tok(&p));
            unsigned long usec = num(tok(&p));
            long gap_ns = n > 0 ? (long)(usec * 1000ul / n) : 0;
            for (unsigned long i = 1; i <= n && rc == 0; i++) {
                char msgtext[32];
                snprintf(msgtext, sizeof msgtext, "step %lu", i);
                rc = rs_progress(a, task != NULL ? task : "", (uint32_t)i, (uint32_t)total,
                                 msgtext);
                if (gap_ns > 0)
                    sleep_ns(gap_ns);
            }
        } else if (strcmp(cmd, "statusburst") == 0) {
            unsigned long n = num(tok(&p));
            unsigned long pad = num(tok(&p));
            char padding[RS_TEXT_MAX + 1];
            if (pad > RS_TEXT_MAX - 12)
                pad = RS_TEXT_MAX - 12;
            memset(padding, 'x', pad);
            padding[pad] = '\0';
            for (unsigned long i = 0; i < n; i++) {
                char detail[RS_TEXT_MAX + 1];
                snprintf(detail, sizeof detail, pad > 0 ? "b%lu %s" : "b%lu", i, padding);
                int r = rs_set_status(a, i % 2 ? RS_STATUS_IDLE : RS_STATUS_WORKING, detail);
                if (r != 0)
                    rc = r;
            }
        } else if (strcmp(cmd, "end") == 0) {
            const char *task = tok(&p);
            rs_status st;
            const char *name = tok(&p);
            rc = rs_status_parse(name != NULL ? name : "", &st);
            int code = (int)strtol(p, NULL, 10);
            if (rc == 0)
                rc = rs_task_end(a, task != NULL ? task : "", st, code);
        } else if (strcmp(cmd, "write") == 0) {
            const char *task = tok(&p);
            char tid[RS_ID_MAX + 1];
            snprintf(tid, sizeof tid, "%s", task != NULL ? task : "");
            rc = do_write(a, tid, num(tok(&p)));
        } else if (strcmp(cmd, "fill") == 0) {
            const char *task = tok(&p);
            unsigned long n = num(tok(&p));
            unsigned long chunk = num(tok(&p));
            static unsigned char pat[65536];
            if (chunk == 0 || chunk > sizeof pat)
                chunk = 4096;
            for (size_t i = 0; i < sizeof pat; i++)
                pat[i] = (unsigned char)('a' + i % 26);
            while (n > 0) {
                size_t k = n > chunk ? chunk : n;
                int r = rs_write(a, task != NULL ? task : "", RS_STDOUT, pat, k);
                if (r != 0)
                    rc = r;
                n -= k;
            }
        } else if (strcmp(cmd, "stats") == 0) {
            rs_stats s;
            memset(&s, 0, sizeof s);
            s.size = sizeof s;
            rc = rs_stats_get(a, &s);
            printf("stats %llu %llu %llu %llu\n", (unsigned long long)s.events_published,
                   (unsigned long long)s.events_dropped, (unsigned long long)s.term_bytes_written,
                   (unsigned long long)s.term_bytes_dropped);
        } else if (strcmp(cmd, "close") == 0) {
            rc = rs_close(a);
            reply(rc);
            return 0;
        } else if (strcmp(cmd, "die") == 0) {
            _exit(0);
        } else {
            rc = -99;
        }
        reply(rc);
    }
    rs_close(a);
    return 0;
}
