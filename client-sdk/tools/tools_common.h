/*
 * tools_common.h — runtime helpers shared by ringside-pub and ringside-run (not the parsing,
 * which is pure and lives in tools_args.h).
 */
#ifndef RINGSIDE_TOOLS_COMMON_H
#define RINGSIDE_TOOLS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ringside.h"
#include "tools_args.h"

/* Fills *env from RINGSIDE_SHM_DIR, RINGSIDE_AGENT, RINGSIDE_PROJECT, RINGSIDE_OWNER. */
void tools_env_from_process(tools_env *env);

/* Ring sizing for tools_open(); 0 everywhere means the SDK's defaults. */
typedef struct tools_sizing {
    uint32_t term_rings; /* rs_options.term_rings (RS_TERM_RINGS_NONE: no terminal output) */
    uint32_t log_slots;  /* rs_options.log_slots */
    uint32_t max_tasks;  /* rs_options.max_tasks */
} tools_sizing;

/* Opens an SDK handle for c with the given sizing (NULL: defaults); if the SDK rejects the sizing
 * the defaults are tried.  Returns an RS_* code; on failure writes a one-line explanation with a
 * remedy into msg (without program name or newline). */
int tools_open(const tools_common *c, const tools_sizing *sz, rs_agent **out, char *msg,
               size_t msglen);

/* Returns 1 when dir does not exist (no sidecar has created it), else 0. */
int tools_shm_dir_missing(const char *dir);

/* Starts task_id in this process's ring unless already started there; RS_EEXIST and RS_EFULL
 * (record dropped, task open locally) count as success.  This is how a task started by another process (another ring) is continued: the
 * sidecar tracks tasks by (agent_id, task_id) across the rings of one agent. */
int tools_ensure_task(rs_agent *agent, const char *task_id, const char *title);

/* Writes s to f with control bytes (below 0x20, and 0x7f) as \xHH, so that an error message
 * quoting a bad input cannot drive the terminal it is shown on. */
void tools_fputs_escaped(const char *s, FILE *f);

#endif /* RINGSIDE_TOOLS_COMMON_H */
