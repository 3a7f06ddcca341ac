/*
 * agent.c — an example agent written in C against libringside (ringside.h).
 *
 * Each cycle it: sets status "working", starts a task, reports progress step by step while writing
 * coloured terminal output (stdout and stderr streams), sometimes gets "stuck" for a moment, ends
 * the task (every fourth one fails) and goes back to "idle".  SIGINT/SIGTERM end the current task
 * as cancelled and close the handle cleanly.
 *
 * Build:  cc agent.c $(pkg-config --cflags --libs ringside) -o agent
 * Run:    ./agent --agent builder --project demo --loop 3
 */
/* Standalone builds (cc -std=c11 …) need POSIX for sigaction and nanosleep; the Ringside build
 * sets _GNU_SOURCE itself. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ringside.h>

#define STEPS 8u

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct agent_opts {
    const char *agent, *project, *owner, *shm_dir;
    unsigned long loops; /* 0 = until a signal */
    unsigned long delay_ms;
} agent_opts;

static void usage(FILE *f)
{
    fputs("usage: ringside-example-agent [--agent A] [--project P] [--owner U] [--shm-dir D]\n"
          "                              [--loop N] [--delay-ms MS]\n"
          "  --loop N       run N task cycles (default 1; 0 = until SIGINT/SIGTERM)\n"
          "  --delay-ms MS  pause between progress steps (default 300)\n"
          "Defaults: agent c-agent, project demo, shm dir $RINGSIDE_SHM_DIR or /dev/shm/ringside.\n",
          f);
}

static int parse_ulong(const char *s, unsigned long *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno == 0 && *end == '\0' ? 0 : -1;
}

static int parse_opts(int argc, char **argv, agent_opts *o)
{
    o->agent = "c-agent";
    o->project = "demo";
    o->owner = NULL;
    o->shm_dir = NULL; /* the SDK falls back to $RINGSIDE_SHM_DIR, then /dev/shm/ringside */
    o->loops = 1;
    o->delay_ms = 300;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (v == NULL)
            ok = 0;
        else if (strcmp(a, "--agent") == 0)
            o->agent = v;
        else if (strcmp(a, "--project") == 0)
            o->project = v;
        else if (strcmp(a, "--owner") == 0)
            o->owner = v;
        else if (strcmp(a, "--shm-dir") == 0)
            o->shm_dir = v;
        else if (strcmp(a, "--loop") == 0)
            ok = parse_ulong(v, &o->loops) == 0;
        else if (strcmp(a, "--delay-ms") == 0)
            ok = parse_ulong(v, &o->delay_ms) == 0 && o->delay_ms <= 60000;
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "ringside-example-agent: bad option '%s%s%s' (see --help)\n", a,
                    v != NULL ? " " : "", v != NULL ? v : "");
            return -1;
        }
    }
    return 0;
}

/* Sleeps ms milliseconds in short slices so that a stop request is seen quickly. */
static void pause_ms(unsigned long ms)
{
    while (ms > 0 && !stop_requested) {
        unsigned long slice = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

/* Reports a failed SDK call.  RS_EFULL only means the sidecar is behind: not an error here. */
static int check(int rc, const char *what)
{
    if (rc == RS_OK || rc == RS_EFULL)
        return 0;
    fprintf(stderr, "ringside-example-agent: %s: %s\n", what, rs_strerror(rc));
    return -1;
}

/* Writes one formatted line to the task's terminal; "\r\n" because a terminal expects it. */
static int term_line(rs_agent *ag, const char *task, rs_stream stream, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int term_line(rs_agent *ag, const char *task, rs_stream stream, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 3;
    line[len++] = '\r';
    line[len++] = '\n';
    return check(rs_write(ag, task, stream, line, len), "rs_write");
}

static const char *const step_names[STEPS] = {
    "fetching sources", "resolving dependencies", "generating code", "compiling core",
    "compiling plugins", "linking",              "running tests",   "packaging"};

/* One task cycle.  Returns 0, or -1 on an SDK error. */
static int cycle(rs_agent *ag, const agent_opts *o, unsigned long n)
{
    char task[RS_ID_MAX + 1], title[64];
    int fail = n % 4 == 0;
    snprintf(task, sizeof task, "%.40s-%lu", o->agent, n);
    snprintf(title, sizeof title, "Build #%lu", n);

    if (check(rs_set_status(ag, RS_STATUS_WORKING, title), "rs_set_status") != 0 ||
        check(rs_task_start(ag, task, title), "rs_task_start") != 0)
        return -1;
    if (term_line(ag, task, RS_STDOUT, "\033[1;34m==>\033[0m \033[1m%s\033[0m (%s)", title,
                  task) != 0)
        return -1;

    for (unsigned i = 1; i <= STEPS; i++) {
        if (stop_requested) {
            (void)term_line(ag, task, RS_STDERR, "\033[33minterrupted\033[0m");
            if (check(rs_task_end(ag, task, RS_STATUS_CANCELLED, 130), "rs_task_end") != 0)
                return -1;
            return 0;
        }
        if (check(rs_progress(ag, task, i, STEPS, step_names[i - 1]), "rs_progress") != 0)
            return -1;
        if (term_line(ag, task, RS_STDOUT, "\033[32m[%u/%u]\033[0m %s...", i, STEPS,
                      step_names[i - 1]) != 0)
            return -1;
        if (i == 4 && n % 3 == 0)
            (void)term_line(ag, task, RS_STDERR,
                            "\033[33mwarning:\033[0m unused variable 'tmp' in core.c:42");
        if (i == 5 && n % 5 == 0) {
            if (check(rs_set_status(ag, RS_STATUS_STUCK, "waiting for a build slot"),
                      "rs_set_status") != 0)
                return -1;
            pause_ms(o->delay_ms * 3);
            if (check(rs_set_status(ag, RS_STATUS_WORKING, title), "rs_set_status") != 0)
                return -1;
        }
        if (fail && i == 7) {
            (void)term_line(ag, task, RS_STDERR,
                            "\033[1;31merror:\033[0m test_parser failed (expected 3, got 4)");
            if (check(rs_task_end(ag, task, RS_STATUS_FAILED, 1), "rs_task_end") != 0 ||
                check(rs_set_status(ag, RS_STATUS_FAILED, "tests failed"), "rs_set_status") != 0)
                return -1;
            pause_ms(o->delay_ms);
            return 0;
        }
        pause_ms(o->delay_ms);
    }
    if (term_line(ag, task, RS_STDOUT, "\033[1;32mdone\033[0m") != 0 ||
        check(rs_task_end(ag, task, RS_STATUS_COMPLETED, 0), "rs_task_end") != 0 ||
        check(rs_set_status(ag, RS_STATUS_IDLE, "waiting for work"), "rs_set_status") != 0)
        return -1;
    pause_ms(o->delay_ms);
    return 0;
}

int main(int argc, char **argv)
{
    agent_opts o;
    rs_options opts;
    rs_agent *ag = NULL;
    struct sigaction sa;
    int rc, code = 0;

    if (parse_opts(argc, argv, &o) != 0)
        return 2;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rs_options_init(&opts);
    opts.agent_id = o.agent;
    opts.project_id = o.project;
    opts.owner = o.owner;
    opts.shm_dir = o.shm_dir;
    rc = rs_open(&opts, &ag);
    if (rc != RS_OK) {
        fprintf(stderr, "ringside-example-agent: cannot open the ring: %s\n", rs_strerror(rc));
        return 1;
    }
    if (check(rs_set_status(ag, RS_STATUS_IDLE, "starting"), "rs_set_status") != 0)
        code = 1;
    for (unsigned long n = 1; code == 0 && !stop_requested && (o.loops == 0 || n <= o.loops); n++)
        if (cycle(ag, &o, n) != 0)
            code = 1;
    if (stop_requested)
        (void)check(rs_set_status(ag, RS_STATUS_CANCELLED, "stopped by signal"), "rs_set_status");
    rs_close(ag);
    return code;
}
