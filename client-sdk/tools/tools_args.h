/*
 * tools_args.h — command-line parsing of ringside-pub and ringside-run, as pure functions.
 *
 * Parsing takes argv and the relevant environment values explicitly (no getenv, no getopt global
 * state, no allocation, no output), so it is testable in isolation.  Results point into argv and
 * env; they are valid as long as those are.
 *
 * Exit-code convention of both tools (DESIGN "ringside-pub"): 0 ok, 1 runtime error, 2 usage error.
 */
#ifndef RINGSIDE_TOOLS_ARGS_H
#define RINGSIDE_TOOLS_ARGS_H

#include <stddef.h>
#include <stdint.h>

#define TOOLS_EXIT_OK 0
#define TOOLS_EXIT_RUNTIME 1
#define TOOLS_EXIT_USAGE 2

/* Default shm dir when neither a flag nor RINGSIDE_SHM_DIR names one (same as the SDK's). */
#define TOOLS_DEFAULT_SHM_DIR "/dev/shm/ringside"

/* Results of a parse. */
#define TOOLS_PARSE_MAP(X)                                                                         \
    X(TOOLS_PARSE_OK, 0, "ok")                                                                     \
    X(TOOLS_PARSE_HELP, 1, "help requested")                                                       \
    X(TOOLS_PARSE_VERSION, 2, "version requested")                                                 \
    X(TOOLS_PARSE_USAGE, -1, "usage error")

typedef enum tools_parse_result {
#define TOOLS_ENUM_(name, value, text) name = value,
    TOOLS_PARSE_MAP(TOOLS_ENUM_)
#undef TOOLS_ENUM_
} tools_parse_result;

/* Environment values the tools honour; NULL (or "") when unset.  Flags win over these. */
typedef struct tools_env {
    const char *shm_dir; /* RINGSIDE_SHM_DIR */
    const char *agent;   /* RINGSIDE_AGENT */
    const char *project; /* RINGSIDE_PROJECT */
    const char *owner;   /* RINGSIDE_OWNER */
} tools_env;

/* Identity and location shared by both tools, resolved from flags, then env, then defaults. */
typedef struct tools_common {
    const char *shm_dir; /* never NULL after a successful parse */
    const char *agent;   /* required; validated id */
    const char *project; /* required; validated id */
    const char *owner;   /* NULL when none; validated id otherwise */
} tools_common;

typedef enum pub_command {
    PUB_CMD_NONE = 0,
    PUB_CMD_STATUS,
    PUB_CMD_TASK_START,
    PUB_CMD_PROGRESS,
    PUB_CMD_TERM,
    PUB_CMD_TASK_END,
    PUB_CMD_STDIN /* --stdin: commands from stdin, one a line (pub_line.h) */
} pub_command;

typedef struct pub_args {
    tools_common common;
    pub_command cmd;
    const char *task;   /* every command but status */
    int status;         /* rs_status value: STATUS for status, the outcome for task-end */
    const char *text;   /* status DETAIL, task TITLE or progress MESSAGE; NULL when absent */
    uint32_t step;      /* progress */
    uint32_t total;     /* progress */
    int stream;         /* term: 1 stdout (default), 2 stderr (--stderr) */
    int exit_code;      /* task-end */
    int strict;         /* --strict: a missing ring directory is an error (default: a warning) */
    const char *data;   /* --stdin term: the TEXT to write (binary; data_len bytes) */
    size_t data_len;
} pub_args;

typedef struct run_args {
    tools_common common;
    const char *task;  /* required */
    const char *title; /* NULL: the command line is used */
    char *const *cmd;  /* argv of the command, NULL-terminated (points into argv) */
    int cmd_argc;      /* >= 1 after a successful parse */
} run_args;

/* Returns 1 when s is a valid SDK id: 1..63 bytes from [A-Za-z0-9._:@-], else 0. */
int tools_id_valid(const char *s);

/* Parses a decimal unsigned 32-bit number (no sign, no spaces, no trailing garbage).
 * Returns 0 and stores *out, or -1. */
int tools_parse_u32(const char *s, uint32_t *out);

/* Parses a decimal int in [min, max] (optional leading '-').  Returns 0 and stores *out, or -1. */
int tools_parse_int(const char *s, long min, long max, int *out);

/* Parses ringside-pub's argv (argv[0] is the program name).  On TOOLS_PARSE_USAGE writes a one-line
 * message (without program name or newline) saying what is wrong and what to do into err
 * (errlen > 0), and *out is unspecified.  TOOLS_PARSE_HELP / TOOLS_PARSE_VERSION leave *out
 * unspecified.  Status and outcome names are parsed without the SDK (same names as
 * rs_status_name). */
tools_parse_result pub_args_parse(int argc, char *const *argv, const tools_env *env, pub_args *out,
                                  char *err, size_t errlen);

/* Parses one command given as positional words pos[0..npos) (pos[0] the command name, as in
 * argv after the options); sets out->cmd and the command's fields, not out->common.  Same error
 * conventions as pub_args_parse. */
tools_parse_result pub_command_parse(const char *const *pos, int npos, int want_stderr,
                                     pub_args *out, char *err, size_t errlen);

/* Parses ringside-run's argv: options, then "--" (optional if CMD does not start with '-'), then
 * CMD ARGS….  Same conventions as pub_args_parse. */
tools_parse_result run_args_parse(int argc, char *const *argv, const tools_env *env, run_args *out,
                                  char *err, size_t errlen);

/* Maps a status name ("idle", "working", "stuck", "failed", "completed", "cancelled") to its
 * rs_status value; returns -1 for anything else. */
int tools_status_from_name(const char *name);

/* Builds a task title from a command line: the words joined by single spaces, truncated to at
 * most cap-1 bytes on a UTF-8 boundary (and NUL-terminated; cap > 0). Returns the length. */
size_t tools_join_title(char *const *words, int n, char *buf, size_t cap);

/* Usage texts (static). */
const char *pub_usage(void);
const char *run_usage(void);

#endif /* RINGSIDE_TOOLS_ARGS_H */
