/*
 * tools_common.c — opening an SDK handle with helpful errors (see tools_common.h).
 */
#include "tools_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tools_env_from_process(tools_env *env)
{
    env->shm_dir = getenv("RINGSIDE_SHM_DIR");
    env->agent = getenv("RINGSIDE_AGENT");
    env->project = getenv("RINGSIDE_PROJECT");
    env->owner = getenv("RINGSIDE_OWNER");
}

/* Explains why the shm dir is unusable, in one line with a remedy. */
static void explain_shm(const char *dir, int open_errno, char *msg, size_t msglen)
{
    struct stat st;
    if (stat(dir, &st) == -1) {
        if (errno == ENOENT)
            snprintf(msg, msglen,
                     "shm dir %s does not exist: start the sidecar first or pass --shm-dir", dir);
        else
            snprintf(msg, msglen, "shm dir %s is not accessible (%s): fix its permissions or "
                                  "pass --shm-dir",
                     dir, strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(msg, msglen, "shm dir %s is not a directory: pass --shm-dir with the sidecar's "
                              "ring directory",
                 dir);
        return;
    }
    if (access(dir, W_OK | X_OK) == -1) {
        snprintf(msg, msglen,
                 "shm dir %s is not writable by uid %u: run as the sidecar's user or make the "
                 "directory group-writable",
                 dir, (unsigned)geteuid());
        return;
    }
    snprintf(msg, msglen, "cannot create a ring in %s (%s): check free space in the shm mount", dir,
             open_errno != 0 ? strerror(open_errno) : "unknown reason");
}

int tools_open(const tools_common *c, const tools_sizing *sz, rs_agent **out, char *msg,
               size_t msglen)
{
    rs_options o;
    int rc;
    rs_options_init(&o);
    o.shm_dir = c->shm_dir;
    o.agent_id = c->agent;
    o.project_id = c->project;
    o.owner = c->owner;
    if (sz != NULL) {
        o.term_rings = sz->term_rings;
        o.log_slots = sz->log_slots;
        o.max_tasks = sz->max_tasks;
    }
    errno = 0;
    rc = rs_open(&o, out);
    if (rc == RS_EINVAL && sz != NULL) {
        o.term_rings = 0;
        o.log_slots = 0;
        o.max_tasks = 0;
        errno = 0;
        rc = rs_open(&o, out);
    }
    if (rc == RS_OK)
        return RS_OK;
    if (rc == RS_ESHM || rc == RS_ESYS)
        explain_shm(c->shm_dir, errno, msg, msglen);
    else
        snprintf(msg, msglen, "cannot open a ring for agent %s in %s: %s", c->agent, c->shm_dir,
                 rs_strerror(rc));
    return rc;
}

int tools_shm_dir_missing(const char *dir)
{
    struct stat st;
    return stat(dir, &st) == -1 && errno == ENOENT;
}

int tools_ensure_task(rs_agent *agent, const char *task_id, const char *title)
{
    int rc = rs_task_start(agent, task_id, title);
    /* RS_EFULL: the start record was dropped (and counted) but the task is open locally. */
    return rc == RS_EEXIST || rc == RS_EFULL ? RS_OK : rc;
}

void tools_fputs_escaped(const char *s, FILE *f)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
}
