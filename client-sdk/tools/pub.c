/*
 * ringside-pub — publish one agent event (status, task start/end, progress, terminal output from
 * stdin) from a shell.  Contract: DESIGN "ringside-pub"; usage: ringside-pub --help.
 *
 * Each invocation is its own process and therefore writes its own ring file, which it closes
 * cleanly before exiting.  progress, term and task-end first start the task in this ring (ignoring
 * "already started"): the sidecar tracks tasks by (agent_id, task_id) across the rings of an agent,
 * so a task started by an earlier invocation continues here.
 *
 * --stdin keeps one ring open and publishes the commands read from stdin, one a line
 * (pub_line.h), so a shell agent pays for one process and one ring, not one per event.
 * Without a ring directory (no sidecar) nothing is published, a warning is printed and the exit
 * status is 0, unless --strict: a `set -e` script must not die because the sidecar is absent.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pub_line.h"
#include "ringside.h"
#include "tools_args.h"
#include "tools_common.h"

#define PUB_TERM_BUF 65536u
/* One invocation publishes at most three event-log records (status, or task start + progress or
 * end), so its ring is kept small: few log slots, and no terminal ring except for term. */
#define PUB_LOG_SLOTS 16u

static const char *prog = "ringside-pub";

/* RS_EFULL is not a failure: the record was dropped and counted, the latest state is kept. */
static int ok(int rc)
{
    return rc == RS_OK || rc == RS_EFULL;
}

/* where: "" for a command line, "line N: " in --stdin mode. */
static int fail(const char *where, int rc, const char *what)
{
    fprintf(stderr, "%s: %s%s failed: %s\n", prog, where, what, rs_strerror(rc));
    return TOOLS_EXIT_RUNTIME;
}

/* Copies stdin to the task's terminal until EOF.  Returns an exit code. */
static int pump_stdin(rs_agent *agent, const pub_args *a)
{
    static unsigned char buf[PUB_TERM_BUF];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0)
            return TOOLS_EXIT_OK;
        if (n == -1) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: reading stdin failed: %s\n", prog, strerror(errno));
            return TOOLS_EXIT_RUNTIME;
        }
        int rc = rs_write(agent, a->task, (rs_stream)a->stream, buf, (size_t)n);
        if (!ok(rc))
            return fail("", rc, "term");
    }
}

/* Reads stdin to EOF and discards it (term without a sidecar: the writer must not get EPIPE). */
static void drain_stdin(void)
{
    static unsigned char buf[PUB_TERM_BUF];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0 || (n == -1 && errno != EINTR))
            return;
    }
}

/* Publishes one parsed command; where prefixes error messages.  Returns an exit code. */
static int run(rs_agent *agent, const pub_args *a, const char *where)
{
    int rc = RS_OK;
    switch (a->cmd) {
    case PUB_CMD_STATUS:
        rc = rs_set_status(agent, (rs_status)a->status, a->text);
        return ok(rc) ? TOOLS_EXIT_OK : fail(where, rc, "status");
    case PUB_CMD_TASK_START:
        rc = tools_ensure_task(agent, a->task, a->text);
        return rc == RS_OK ? TOOLS_EXIT_OK : fail(where, rc, "task-start");
    case PUB_CMD_PROGRESS:
        rc = tools_ensure_task(agent, a->task, NULL);
        if (rc == RS_OK)
            rc = rs_progress(agent, a->task, a->step, a->total, a->text);
        return ok(rc) ? TOOLS_EXIT_OK : fail(where, rc, "progress");
    case PUB_CMD_TERM:
        rc = tools_ensure_task(agent, a->task, NULL);
        if (!ok(rc))
            return fail(where, rc, "term");
        if (a->data == NULL)
            return pump_stdin(agent, a);
        if (a->data_len > 0)
            rc = rs_write(agent, a->task, (rs_stream)a->stream, a->data, a->data_len);
        return ok(rc) ? TOOLS_EXIT_OK : fail(where, rc, "term");
    case PUB_CMD_TASK_END:
        rc = tools_ensure_task(agent, a->task, NULL);
        if (rc == RS_OK)
            rc = rs_task_end(agent, a->task, (rs_status)a->status, a->exit_code);
        return ok(rc) ? TOOLS_EXIT_OK : fail(where, rc, "task-end");
    case PUB_CMD_NONE:
    case PUB_CMD_STDIN:
        break;
    }
    return TOOLS_EXIT_USAGE;
}

/* Reads one line (up to and including '\n') into buf, NUL-terminated, and its length into *len.
 * Returns 0, 1 when it does not fit in cap - 1 bytes (the rest of the line is consumed), or -1
 * at EOF with nothing read.  Unlike fgets() it knows the length of a line holding NUL bytes. */
static int read_line(char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    int c = EOF;
    while (n + 1 < cap && (c = getc(stdin)) != EOF) {
        buf[n++] = (char)c;
        if (c == '\n')
            break;
    }
    buf[n] = '\0';
    *len = n;
    if (n == 0 && c == EOF)
        return -1;
    if (n + 1 == cap && c != '\n') {
        do
            c = getc(stdin);
        while (c != EOF && c != '\n');
        return 1;
    }
    return 0;
}

/* Reports a bad line: its number and the message (quoted input escaped). */
static void bad_line(const char *where, const char *msg)
{
    fprintf(stderr, "%s: %s", prog, where);
    tools_fputs_escaped(msg, stderr);
    fputc('\n', stderr);
}

/* --stdin: publishes every line's command into one ring until EOF.  agent NULL (no sidecar):
 * lines are still checked, nothing is published.  A bad line is reported and skipped.
 * Returns 2 if any line had a usage error, else 1 if any failed, else 0. */
static int run_stdin(rs_agent *agent, const pub_args *a)
{
    static char line[PUB_LINE_MAX + 3]; /* the line, "\r\n" and NUL */
    unsigned long lineno = 0;
    int usage = 0, runtime = 0;
    char msg[512], where[48];

    size_t n;
    int got;

    while ((got = read_line(line, sizeof line, &n)) >= 0) {
        pub_args la;
        lineno++;
        snprintf(where, sizeof where, "line %lu: ", lineno);
        if (got == 1) {
            fprintf(stderr, "%s: %sline longer than %u bytes: skipped\n", prog, where,
                    PUB_LINE_MAX);
            usage = 1;
            continue;
        }
        if (memchr(line, '\0', n) != NULL) {
            bad_line(where, "the line contains a NUL byte: write \\x00 inside double quotes");
            usage = 1;
            continue;
        }
        if (pub_line_parse(line, &a->common, &la, msg, sizeof msg) != TOOLS_PARSE_OK) {
            bad_line(where, msg);
            usage = 1;
            continue;
        }
        if (la.cmd == PUB_CMD_NONE || agent == NULL)
            continue;
        if (run(agent, &la, where) != TOOLS_EXIT_OK)
            runtime = 1;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "%s: reading stdin failed: %s\n", prog, strerror(errno));
        runtime = 1;
    }
    return usage ? TOOLS_EXIT_USAGE : runtime ? TOOLS_EXIT_RUNTIME : TOOLS_EXIT_OK;
}

int main(int argc, char **argv)
{
    tools_env env;
    pub_args a;
    char msg[512];
    rs_agent *agent = NULL;
    tools_sizing sizing;
    int code, rc;

    tools_env_from_process(&env);
    switch (pub_args_parse(argc, argv, &env, &a, msg, sizeof msg)) {
    case TOOLS_PARSE_HELP:
        fputs(pub_usage(), stdout);
        return TOOLS_EXIT_OK;
    case TOOLS_PARSE_VERSION:
        printf("ringside-pub (libringside %s)\n", rs_version());
        return TOOLS_EXIT_OK;
    case TOOLS_PARSE_USAGE:
        bad_line("", msg);
        return TOOLS_EXIT_USAGE;
    case TOOLS_PARSE_OK:
        break;
    }

    sizing.log_slots = PUB_LOG_SLOTS;
    sizing.max_tasks = 1;
    sizing.term_rings = a.cmd == PUB_CMD_TERM ? 1u : RS_TERM_RINGS_NONE;
    /* --stdin: one ring for many events and tasks: the SDK's default sizing. */
    rc = tools_open(&a.common, a.cmd == PUB_CMD_STDIN ? NULL : &sizing, &agent, msg, sizeof msg);
    if (rc != RS_OK) {
        if (a.strict || !tools_shm_dir_missing(a.common.shm_dir)) {
            fprintf(stderr, "%s: %s\n", prog, msg);
            return TOOLS_EXIT_RUNTIME;
        }
        fprintf(stderr, "%s: warning: %s (nothing published; --strict makes this an error)\n",
                prog, msg);
        if (a.cmd == PUB_CMD_TERM)
            drain_stdin();
        return a.cmd == PUB_CMD_STDIN ? run_stdin(NULL, &a) : TOOLS_EXIT_OK;
    }
    code = a.cmd == PUB_CMD_STDIN ? run_stdin(agent, &a) : run(agent, &a, "");
    rc = rs_close(agent);
    if (rc != RS_OK && code == TOOLS_EXIT_OK)
        code = fail("", rc, "closing the ring");
    return code;
}
