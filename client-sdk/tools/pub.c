/*
 * ringside-pub — publish one agent event (status, task start/end, progress, terminal output from
 * stdin) from a shell.  Contract: DESIGN "ringside-pub"; usage: ringside-pub --help.
 *
 * Each invocation is its own process and therefore writes its own ring file, which it closes
 * cleanly before exiting.  progress, term and task-end first start the task in this ring (ignoring
 * "already started"): the sidecar tracks tasks by (agent_id, task_id) across the rings of an agent,
 * so a task started by an earlier invocation continues here.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

static int fail(int rc, const char *what)
{
    fprintf(stderr, "%s: %s failed: %s\n", prog, what, rs_strerror(rc));
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
            return fail(rc, "term");
    }
}

static int run(rs_agent *agent, const pub_args *a)
{
    int rc = RS_OK;
    switch (a->cmd) {
    case PUB_CMD_STATUS:
        rc = rs_set_status(agent, (rs_status)a->status, a->text);
        return ok(rc) ? TOOLS_EXIT_OK : fail(rc, "status");
    case PUB_CMD_TASK_START:
        rc = tools_ensure_task(agent, a->task, a->text);
        return rc == RS_OK ? TOOLS_EXIT_OK : fail(rc, "task-start");
    case PUB_CMD_PROGRESS:
        rc = tools_ensure_task(agent, a->task, NULL);
        if (rc == RS_OK)
            rc = rs_progress(agent, a->task, a->step, a->total, a->text);
        return ok(rc) ? TOOLS_EXIT_OK : fail(rc, "progress");
    case PUB_CMD_TERM:
        rc = tools_ensure_task(agent, a->task, NULL);
        if (!ok(rc))
            return fail(rc, "term");
        return pump_stdin(agent, a);
    case PUB_CMD_TASK_END:
        rc = tools_ensure_task(agent, a->task, NULL);
        if (rc == RS_OK)
            rc = rs_task_end(agent, a->task, (rs_status)a->status, a->exit_code);
        return ok(rc) ? TOOLS_EXIT_OK : fail(rc, "task-end");
    case PUB_CMD_NONE:
        break;
    }
    return TOOLS_EXIT_USAGE;
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
        fprintf(stderr, "%s: %s\n", prog, msg);
        return TOOLS_EXIT_USAGE;
    case TOOLS_PARSE_OK:
        break;
    }

    sizing.log_slots = PUB_LOG_SLOTS;
    sizing.max_tasks = 1;
    sizing.term_rings = a.cmd == PUB_CMD_TERM ? 1u : RS_TERM_RINGS_NONE;
    rc = tools_open(&a.common, &sizing, &agent, msg, sizeof msg);
    if (rc != RS_OK) {
        fprintf(stderr, "%s: %s\n", prog, msg);
        return TOOLS_EXIT_RUNTIME;
    }
    code = run(agent, &a);
    rc = rs_close(agent);
    if (rc != RS_OK && code == TOOLS_EXIT_OK)
        code = fail(rc, "closing the ring");
    return code;
}
