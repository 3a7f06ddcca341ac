/*
 * tools_args.c — pure argument parsing for ringside-pub and ringside-run (see tools_args.h).
 */
#include "tools_args.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOOLS_ID_MAX 63

static const char *const status_names[] = {"idle",   "working",   "stuck",
                                           "failed", "completed", "cancelled"};

static const char PUB_USAGE[] =
    "usage: ringside-pub [--shm-dir D] [--agent A] [--project P] [--owner U] [--strict] COMMAND ...\n"
    "       ringside-pub [options] --stdin     (commands from stdin, one a line, into one ring)\n"
    "\n"
    "Publishes one event of agent A (project P) to the Ringside sidecar of this pod.\n"
    "\n"
    "commands:\n"
    "  status STATUS [DETAIL]            STATUS: idle working stuck failed completed cancelled\n"
    "  task-start TASK [TITLE]           announce a task\n"
    "  progress TASK STEP TOTAL [MSG]    report progress (TOTAL 0 = unknown)\n"
    "  term TASK [--stderr]              copy stdin (binary-safe) to the task's terminal until EOF\n"
    "  task-end TASK completed|failed|cancelled [EXIT_CODE]\n"
    "\n"
    "options (each also from the environment; flags win):\n"
    "  --shm-dir D   ring directory          RINGSIDE_SHM_DIR (default /dev/shm/ringside)\n"
    "  --agent A     agent id                RINGSIDE_AGENT\n"
    "  --project P   project id              RINGSIDE_PROJECT\n"
    "  --owner U     user owning the agent   RINGSIDE_OWNER\n"
    "  --strict      fail (exit 1) when the ring directory does not exist; by default a warning\n"
    "                is printed and the event is dropped with exit status 0 (no sidecar)\n"
    "  --stdin       long-lived: read commands from stdin, one a line, as words (\"double\n"
    "                quotes\" with \\n \\r \\t \\e \\xHH \\\\ \\\" escapes, or 'single quotes'), e.g.\n"
    "                  status working \"reading the repo\"\n"
    "                  term TASK [--stderr] \"\\e[32mok\\e[0m\\r\\n\"   (TEXT, not stdin, in this mode)\n"
    "                Blank lines and lines starting with # are skipped; a bad line is reported\n"
    "                with its number and skipped.  Lines longer than 65536 bytes are rejected.\n"
    "  -h, --help    this text;  --version   the SDK version\n"
    "\n"
    "Ids: 1-63 characters from [A-Za-z0-9._:@-].  Use -- before arguments that start with '-'.\n"
    "Exit status: 0 ok (also when no ring directory exists, unless --strict), 1 runtime error,\n"
    "2 usage error.  With --stdin: 2 if any line had a usage error, else 1 if any failed.\n";

static const char RUN_USAGE[] =
    "usage: ringside-run --agent A --project P --task T [--shm-dir D] [--owner U] [--title S]\n"
    "                    -- CMD [ARGS...]\n"
    "\n"
    "Runs CMD under a pseudo-terminal as task T of agent A, copies its output byte-exact to this\n"
    "terminal and to the sidecar, forwards stdin, SIGINT/SIGTERM/SIGHUP and window size changes,\n"
    "and reports the task's end with CMD's exit status.\n"
    "\n"
    "options (--shm-dir, --agent, --project, --owner also from RINGSIDE_SHM_DIR, RINGSIDE_AGENT,\n"
    "RINGSIDE_PROJECT, RINGSIDE_OWNER; flags win):\n"
    "  --task T      task id (required)\n"
    "  --title S     task title (default: the command line)\n"
    "  -h, --help    this text;  --version   the SDK version\n"
    "\n"
    "If the ring directory is missing CMD still runs (one warning on stderr).\n"
    "Exit status: CMD's exit status (128+N if killed by signal N); 2 usage error; 1 when CMD\n"
    "cannot be started (127 if not found).\n";

const char *pub_usage(void)
{
    return PUB_USAGE;
}

const char *run_usage(void)
{
    return RUN_USAGE;
}

int tools_id_valid(const char *s)
{
    size_t n = 0;
    if (s == NULL)
        return 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= TOOLS_ID_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return n > 0;
}

int tools_parse_u32(const char *s, uint32_t *out)
{
    unsigned long long v = 0;
    if (s == NULL || *s == '\0')
        return -1;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10u + (unsigned)(*p - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int tools_parse_int(const char *s, long min, long max, int *out)
{
    int neg = 0;
    long long v = 0;
    if (s == NULL)
        return -1;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > (long long)INT_MAX + 1)
            return -1;
    }
    if (neg)
        v = -v;
    if (v < min || v > max || v < INT_MIN || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

int tools_status_from_name(const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (strcmp(name, status_names[i]) == 0)
            return (int)i;
    return -1;
}

size_t tools_join_title(char *const *words, int n, char *buf, size_t cap)
{
    size_t len = 0;
    int full = 0;
    for (int i = 0; i < n && !full; i++) {
        const char *w = words[i];
        if (i > 0) {
            if (len + 1 >= cap)
                break;
            buf[len++] = ' ';
        }
        for (; *w != '\0'; w++) {
            if (len + 1 >= cap) {
                full = 1;
                break;
            }
            buf[len++] = *w;
        }
    }
    /* Do not end inside a multi-byte UTF-8 sequence: drop a trailing incomplete one. */
    if (full && len > 0) {
        size_t i = len;
        size_t back = 0;
        while (i > 0 && back < 4 && ((unsigned char)buf[i - 1] & 0xC0u) == 0x80u) {
            i--;
            back++;
        }
        if (i > 0 && ((unsigned char)buf[i - 1] & 0x80u) != 0) {
            unsigned char lead = (unsigned char)buf[i - 1];
            size_t need = (lead & 0xE0u) == 0xC0u   ? 2
                          : (lead & 0xF0u) == 0xE0u ? 3
                          : (lead & 0xF8u) == 0xF0u ? 4
                                                    : 1;
            if (back + 1 < need)
                len = i - 1;
        }
    }
    buf[len] = '\0';
    return len;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void seterr(char *err, size_t errlen, const char *fmt, ...);

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *nonempty(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}

/* Matches "--name" (value in the next word) or "--name=value".  Returns 1 and stores *val (NULL
 * when the next word is missing) and advances *i past what it consumed; 0 when argv[*i] is not
 * this option. */
static int match_opt(int argc, char *const *argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 < argc) {
        (*i)++;
        *val = argv[*i];
    } else {
        *val = NULL;
    }
    return 1;
}

enum { OPT_NONE = 0, OPT_TAKEN, OPT_HELP, OPT_VERSION, OPT_ERROR };

/* Tries the options common to both tools at argv[*i]. */
static int common_opt(int argc, char *const *argv, int *i, tools_common *c, char *err,
                      size_t errlen)
{
    static const char *const names[] = {"--shm-dir", "--agent", "--project", "--owner"};
    const char **slots[] = {&c->shm_dir, &c->agent, &c->project, &c->owner};
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
        return OPT_HELP;
    if (strcmp(a, "--version") == 0)
        return OPT_VERSION;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const char *val;
        if (match_opt(argc, argv, i, names[k], &val)) {
            if (val == NULL || *val == '\0') {
                seterr(err, errlen, "option %s needs a value (see --help)", names[k]);
                return OPT_ERROR;
            }
            *slots[k] = val;
            return OPT_TAKEN;
        }
    }
    return OPT_NONE;
}

/* Applies env fallbacks and defaults, then validates ids. */
static int common_finish(tools_common *c, const tools_env *env, char *err, size_t errlen)
{
    tools_env none = {NULL, NULL, NULL, NULL};
    if (env == NULL)
        env = &none;
    if (c->shm_dir == NULL)
        c->shm_dir = nonempty(env->shm_dir);
    if (c->shm_dir == NULL)
        c->shm_dir = TOOLS_DEFAULT_SHM_DIR;
    if (c->agent == NULL)
        c->agent = nonempty(env->agent);
    if (c->project == NULL)
        c->project = nonempty(env->project);
    if (c->owner == NULL)
        c->owner = nonempty(env->owner);
    if (c->agent == NULL) {
        seterr(err, errlen, "no agent id: pass --agent A or set RINGSIDE_AGENT");
        return -1;
    }
    if (c->project == NULL) {
        seterr(err, errlen, "no project id: pass --project P or set RINGSIDE_PROJECT");
        return -1;
    }
    if (!tools_id_valid(c->agent)) {
        seterr(err, errlen, "agent id '%.80s' is invalid: use 1-63 characters from [A-Za-z0-9._:@-]",
               c->agent);
        return -1;
    }
    if (!tools_id_valid(c->project)) {
        seterr(err, errlen,
               "project id '%.80s' is invalid: use 1-63 characters from [A-Za-z0-9._:@-]",
               c->project);
        return -1;
    }
    if (c->owner != NULL && !tools_id_valid(c->owner)) {
        seterr(err, errlen, "owner '%.80s' is invalid: use 1-63 characters from [A-Za-z0-9._:@-]",
               c->owner);
        return -1;
    }
    return 0;
}

static const struct {
    const char *name;
    pub_command cmd;
    int min_args, max_args; /* positional arguments after the command word */
    const char *synopsis;
} pub_commands[] = {
    {"status", PUB_CMD_STATUS, 1, 2, "status STATUS [DETAIL]"},
    {"task-start", PUB_CMD_TASK_START, 1, 2, "task-start TASK [TITLE]"},
    {"progress", PUB_CMD_PROGRESS, 3, 4, "progress TASK STEP TOTAL [MESSAGE]"},
    {"term", PUB_CMD_TERM, 1, 1, "term TASK [--stderr]"},
    {"task-end", PUB_CMD_TASK_END, 2, 3, "task-end TASK completed|failed|cancelled [EXIT_CODE]"},
};

#define PUB_MAX_POS 5

static int check_task(const char *task, char *err, size_t errlen)
{
    if (!tools_id_valid(task)) {
        seterr(err, errlen, "task id '%.80s' is invalid: use 1-63 characters from [A-Za-z0-9._:@-]",
               task);
        return -1;
    }
    return 0;
}

/* Text (DETAIL, TITLE, MESSAGE, --title) of any length is accepted: the SDK truncates it at
 * RS_TEXT_MAX bytes on a UTF-8 boundary, as docs/sdk.md says. */

tools_parse_result pub_command_parse(const char *const *pos, int npos, int want_stderr,
                                     pub_args *out, char *err, size_t errlen)
{
    size_t k;
    if (npos == 0) {
        seterr(err, errlen,
               "no command: use status, task-start, progress, term or task-end (see --help)");
        return TOOLS_PARSE_USAGE;
    }
    for (k = 0; k < sizeof pub_commands / sizeof pub_commands[0]; k++)
        if (strcmp(pos[0], pub_commands[k].name) == 0)
            break;
    if (k == sizeof pub_commands / sizeof pub_commands[0]) {
        seterr(err, errlen,
               "unknown command '%.80s': use status, task-start, progress, term or task-end",
               pos[0]);
        return TOOLS_PARSE_USAGE;
    }
    out->cmd = pub_commands[k].cmd;
    if (npos - 1 < pub_commands[k].min_args || npos - 1 > pub_commands[k].max_args) {
        seterr(err, errlen, "%s: expected %s", npos - 1 < pub_commands[k].min_args
                                                   ? "missing argument"
                                                   : "too many arguments",
               pub_commands[k].synopsis);
        return TOOLS_PARSE_USAGE;
    }
    if (want_stderr && out->cmd != PUB_CMD_TERM) {
        seterr(err, errlen, "--stderr only applies to the term command");
        return TOOLS_PARSE_USAGE;
    }

    switch (out->cmd) {
    case PUB_CMD_STATUS:
        out->status = tools_status_from_name(pos[1]);
        if (out->status < 0) {
            seterr(err, errlen,
                   "unknown status '%.80s': use idle, working, stuck, failed, completed or "
                   "cancelled",
                   pos[1]);
            return TOOLS_PARSE_USAGE;
        }
        out->text = npos > 2 ? pos[2] : NULL;
        break;
    case PUB_CMD_TASK_START:
        out->task = pos[1];
        out->text = npos > 2 ? pos[2] : NULL;
        if (check_task(out->task, err, errlen) != 0)
            return TOOLS_PARSE_USAGE;
        break;
    case PUB_CMD_PROGRESS:
        out->task = pos[1];
        if (check_task(out->task, err, errlen) != 0)
            return TOOLS_PARSE_USAGE;
        if (tools_parse_u32(pos[2], &out->step) != 0) {
            seterr(err, errlen, "STEP '%.80s' is not a number: use 0..4294967295", pos[2]);
            return TOOLS_PARSE_USAGE;
        }
        if (tools_parse_u32(pos[3], &out->total) != 0) {
            seterr(err, errlen, "TOTAL '%.80s' is not a number: use 0..4294967295 (0 = unknown)",
                   pos[3]);
            return TOOLS_PARSE_USAGE;
        }
        if (out->total != 0 && out->step > out->total) {
            seterr(err, errlen, "STEP %u exceeds TOTAL %u: use TOTAL 0 when the total is unknown",
                   (unsigned)out->step, (unsigned)out->total);
            return TOOLS_PARSE_USAGE;
        }
        out->text = npos > 4 ? pos[4] : NULL;
        break;
    case PUB_CMD_TERM:
        out->task = pos[1];
        out->stream = want_stderr ? 2 : 1;
        if (check_task(out->task, err, errlen) != 0)
            return TOOLS_PARSE_USAGE;
        break;
    case PUB_CMD_TASK_END:
        out->task = pos[1];
        if (check_task(out->task, err, errlen) != 0)
            return TOOLS_PARSE_USAGE;
        out->status = tools_status_from_name(pos[2]);
        if (out->status != 3 && out->status != 4 && out->status != 5) {
            seterr(err, errlen, "unknown outcome '%.80s': use completed, failed or cancelled",
                   pos[2]);
            return TOOLS_PARSE_USAGE;
        }
        if (npos > 3 && tools_parse_int(pos[3], INT_MIN, INT_MAX, &out->exit_code) != 0) {
            seterr(err, errlen, "EXIT_CODE '%.80s' is not an integer", pos[3]);
            return TOOLS_PARSE_USAGE;
        }
        break;
    case PUB_CMD_NONE:
    case PUB_CMD_STDIN:
        break;
    }

    return TOOLS_PARSE_OK;
}

tools_parse_result pub_args_parse(int argc, char *const *argv, const tools_env *env, pub_args *out,
                                  char *err, size_t errlen)
{
    const char *pos[PUB_MAX_POS + 1];
    int npos = 0;
    int dashdash = 0;
    int want_stderr = 0;

    memset(out, 0, sizeof *out);
    out->stream = 1;
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* "-" alone and negative numbers (an EXIT_CODE) are arguments, not options. */
        if (!dashdash && a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9')) {
            if (strcmp(a, "--") == 0) {
                dashdash = 1;
                continue;
            }
            int r = common_opt(argc, argv, &i, &out->common, err, errlen);
            if (r == OPT_HELP)
                return TOOLS_PARSE_HELP;
            if (r == OPT_VERSION)
                return TOOLS_PARSE_VERSION;
            if (r == OPT_ERROR)
                return TOOLS_PARSE_USAGE;
            if (r == OPT_TAKEN)
                continue;
            if (strcmp(a, "--stderr") == 0) {
                want_stderr = 1;
                continue;
            }
            if (strcmp(a, "--strict") == 0) {
                out->strict = 1;
                continue;
            }
            if (strcmp(a, "--stdin") == 0) {
                out->cmd = PUB_CMD_STDIN;
                continue;
            }
            seterr(err, errlen, "unknown option '%.80s' (see --help)", a);
            return TOOLS_PARSE_USAGE;
        }
        if (npos > PUB_MAX_POS) {
            seterr(err, errlen, "too many arguments at '%.80s' (see --help)", a);
            return TOOLS_PARSE_USAGE;
        }
        pos[npos++] = a;
    }

    if (out->cmd == PUB_CMD_STDIN) {
        if (npos != 0 || want_stderr) {
            seterr(err, errlen, "--stdin takes no command: write commands to stdin, one a line "
                                "(see --help)");
            return TOOLS_PARSE_USAGE;
        }
    } else if (pub_command_parse(pos, npos, want_stderr, out, err, errlen) != TOOLS_PARSE_OK) {
        return TOOLS_PARSE_USAGE;
    }

    if (common_finish(&out->common, env, err, errlen) != 0)
        return TOOLS_PARSE_USAGE;
    return TOOLS_PARSE_OK;
}

tools_parse_result run_args_parse(int argc, char *const *argv, const tools_env *env, run_args *out,
                                  char *err, size_t errlen)
{
    int i;
    memset(out, 0, sizeof *out);
    if (err != NULL && errlen > 0)
        err[0] = '\0';

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break; /* the command itself */
        int r = common_opt(argc, argv, &i, &out->common, err, errlen);
        if (r == OPT_HELP)
            return TOOLS_PARSE_HELP;
        if (r == OPT_VERSION)
            return TOOLS_PARSE_VERSION;
        if (r == OPT_ERROR)
            return TOOLS_PARSE_USAGE;
        if (r == OPT_TAKEN)
            continue;
        if (match_opt(argc, argv, &i, "--task", &val) ||
            match_opt(argc, argv, &i, "--title", &val)) {
            int is_task = strncmp(a, "--task", 6) == 0 && (a[6] == '\0' || a[6] == '=');
            if (val == NULL || (is_task && *val == '\0')) {
                seterr(err, errlen, "option %s needs a value (see --help)",
                       is_task ? "--task" : "--title");
                return TOOLS_PARSE_USAGE;
            }
            if (is_task)
                out->task = val;
            else
                out->title = val;
            continue;
        }
        seterr(err, errlen, "unknown option '%.80s' (see --help)", a);
        return TOOLS_PARSE_USAGE;
    }
    if (i >= argc) {
        seterr(err, errlen, "no command to run: end the options with -- CMD [ARGS...]");
        return TOOLS_PARSE_USAGE;
    }
    out->cmd = argv + i;
    out->cmd_argc = argc - i;
    if (out->task == NULL) {
        seterr(err, errlen, "no task id: pass --task T");
        return TOOLS_PARSE_USAGE;
    }
    if (check_task(out->task, err, errlen) != 0)
        return TOOLS_PARSE_USAGE;
    if (common_finish(&out->common, env, err, errlen) != 0)
        return TOOLS_PARSE_USAGE;
    return TOOLS_PARSE_OK;
}
