/*
 * ringside.c — libringside: the rs_* API (ringside.h) on top of the ipc ring writer.
 *
 * Validation happens here, before anything touches the ring; the writer re-checks.  Handles are
 * kept in a process-wide list so the pthread_atfork child handler can disarm them: a fork child
 * must neither keep the parent's flock alive nor write into the parent's ring (its in-process
 * locks are not shared with the parent), so in the child every call returns RS_ECLOSED and
 * rs_close() only releases memory.
 */
#include "ringside.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ipc_layout.h"
#include "ipc_writer.h"

struct rs_agent {
    ipc_writer *w;
    _Atomic int forked; /* set in a fork child: the handle is dead there */
    rs_agent *next;     /* registry (under reg_mu) */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static rs_agent *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
    pthread_mutex_lock(&reg_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&reg_mu);
}

static void atfork_child(void)
{
    for (rs_agent *a = reg_head; a != NULL; a = a->next) {
        atomic_store(&a->forked, 1);
        ipc_writer_abandon(a->w);
    }
    pthread_mutex_unlock(&reg_mu);
}

static void reg_init(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void reg_add(rs_agent *a)
{
    pthread_mutex_lock(&reg_mu);
    a->next = reg_head;
    reg_head = a;
    pthread_mutex_unlock(&reg_mu);
}

static void reg_remove(rs_agent *a)
{
    pthread_mutex_lock(&reg_mu);
    for (rs_agent **p = &reg_head; *p != NULL; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mu);
}

/* ---- small helpers --------------------------------------------------------------------------- */

static int map_err(int ipc)
{
    switch (ipc) {
    case IPC_OK:
        return RS_OK;
    case IPC_EINVAL:
        return RS_EINVAL;
    case IPC_ENOMEM:
        return RS_ENOMEM;
    case IPC_EFULL:
        return RS_EFULL;
    case IPC_ENOTASK:
        return RS_ENOTASK;
    case IPC_EEXIST:
        return RS_EEXIST;
    case IPC_ETASKS:
        return RS_ETASKS;
    default:
        return RS_ESYS;
    }
}

/* Length of a valid id, or 0. */
static size_t id_len(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strnlen(s, RS_ID_MAX + 1);
    if (n == 0 || n > RS_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return n;
}

/* Length of text truncated at RS_TEXT_MAX bytes without splitting a UTF-8 sequence. */
static size_t text_len(const char *s)
{
    if (s == NULL)
        return 0;
    size_t n = strnlen(s, RS_TEXT_MAX + 1);
    if (n <= RS_TEXT_MAX)
        return n;
    n = RS_TEXT_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xc0u) == 0x80u) /* s[n]: first byte cut off */
        n--;
    return n;
}

static int usable(const rs_agent *a)
{
    if (a == NULL)
        return RS_EINVAL;
    if (atomic_load_explicit(&a->forked, memory_order_relaxed))
        return RS_ECLOSED;
    return RS_OK;
}

/* ---- API ------------------------------------------------------------------------------------- */

void rs_options_init(rs_options *opts)
{
    if (opts == NULL)
        return;
    memset(opts, 0, sizeof *opts);
    opts->size = sizeof *opts;
}

int rs_open(const rs_options *opts, rs_agent **out)
{
    if (out == NULL)
        return RS_EINVAL;
    *out = NULL;
    if (opts == NULL || opts->size < offsetof(rs_options, max_tasks) + sizeof opts->max_tasks)
        return RS_EINVAL;
    if (id_len(opts->agent_id) == 0 || id_len(opts->project_id) == 0 ||
        (opts->owner != NULL && id_len(opts->owner) == 0))
        return RS_EINVAL;
    uint32_t rb = opts->term_ring_bytes;
    if (rb != 0 && ((rb & (rb - 1)) != 0 || rb < IPC_TERM_BYTES_MIN || rb > IPC_TERM_BYTES_MAX))
        return RS_EINVAL;
    if (opts->max_tasks > IPC_TASKS_MAX)
        return RS_EINVAL;
    uint32_t term_rings = 0, log_slots = 0;
    if (opts->size >= offsetof(rs_options, term_rings) + sizeof opts->term_rings)
        term_rings = opts->term_rings;
    if (opts->size >= offsetof(rs_options, log_slots) + sizeof opts->log_slots)
        log_slots = opts->log_slots;
    if (term_rings > IPC_TERM_RINGS_MAX && term_rings != RS_TERM_RINGS_NONE)
        return RS_EINVAL;
    if (log_slots != 0 && ((log_slots & (log_slots - 1)) != 0 || log_slots < IPC_LOG_SLOTS_MIN ||
                           log_slots > IPC_LOG_SLOTS_MAX))
        return RS_EINVAL;

    const char *dir = opts->shm_dir;
    if (dir == NULL || dir[0] == '\0')
        dir = getenv("RINGSIDE_SHM_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/dev/shm/ringside";

    pthread_once(&reg_once, reg_init);
    rs_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return RS_ENOMEM;
    ipc_writer_config cfg = {
        .dir = dir,
        .agent_id = opts->agent_id,
        .project_id = opts->project_id,
        .owner = opts->owner,
        .log_slots = log_slots,
        .max_tasks = opts->max_tasks,
        .term_rings = term_rings == RS_TERM_RINGS_NONE ? UINT32_MAX : term_rings,
        .term_ring_bytes = rb,
    };
    int rc = ipc_writer_open(&cfg, &a->w);
    if (rc != IPC_OK) {
        int e = errno;
        free(a);
        errno = e;
        if (rc == IPC_ESYS)
            return RS_ESHM; /* missing, unwritable or full directory; errno says which */
        return map_err(rc);
    }
    atomic_init(&a->forked, 0);
    reg_add(a);
    *out = a;
    return RS_OK;
}

int rs_set_status(rs_agent *agent, rs_status status, const char *detail)
{
    int rc = usable(agent);
    if (rc != RS_OK)
        return rc;
    if ((unsigned)status >= RS_STATUS_COUNT)
        return RS_EINVAL;
    return map_err(ipc_writer_status(agent->w, (uint8_t)status, detail, text_len(detail)));
}

int rs_task_start(rs_agent *agent, const char *task_id, const char *title)
{
    int rc = usable(agent);
    if (rc != RS_OK)
        return rc;
    size_t n = id_len(task_id);
    if (n == 0)
        return RS_EINVAL;
    return map_err(ipc_writer_task_start(agent->w, task_id, n, title, text_len(title)));
}

int rs_progress(rs_agent *agent, const char *task_id, uint32_t current_step, uint32_t total_steps,
                const char *message)
{
    int rc = usable(agent);
    if (rc != RS_OK)
        return rc;
    size_t n = id_len(task_id);
    if (n == 0 || (total_steps != 0 && current_step > total_steps))
        return RS_EINVAL;
    return map_err(ipc_writer_progress(agent->w, task_id, n, current_step, total_steps, message,
                                       text_len(message)));
}

int rs_write(rs_agent *agent, const char *task_id, rs_stream stream, const void *buf, size_t len)
{
    int rc = usable(agent);
    if (rc != RS_OK)
        return rc;
    size_t n = id_len(task_id);
    if (n == 0 || (stream != RS_STDOUT && stream != RS_STDERR) || (buf == NULL && len != 0) ||
        len > RS_WRITE_MAX)
        return RS_EINVAL;
    return map_err(ipc_writer_write(agent->w, task_id, n, (uint8_t)stream, buf, len));
}

int rs_task_end(rs_agent *agent, const char *task_id, rs_status outcome, int exit_code)
{
    int rc = usable(agent);
    if (rc != RS_OK)
        return rc;
    size_t n = id_len(task_id);
    if (n == 0 || (outcome != RS_STATUS_COMPLETED && outcome != RS_STATUS_FAILED &&
                   outcome != RS_STATUS_CANCELLED))
        return RS_EINVAL;
    return map_err(ipc_writer_task_end(agent->w, task_id, n, (uint8_t)outcome, (int32_t)exit_code));
}

int rs_stats_get(const rs_agent *agent, rs_stats *stats)
{
    if (agent == NULL || stats == NULL || stats->size < sizeof(size_t))
        return RS_EINVAL;
    if (atomic_load_explicit(&agent->forked, memory_order_relaxed))
        return RS_ECLOSED;
    ipc_writer_stats ws;
    ipc_writer_get_stats(agent->w, &ws);
    rs_stats s;
    s.size = stats->size;
    s.events_published = ws.events_published;
    s.events_dropped = ws.events_dropped;
    s.progress_updates = ws.progress_updates;
    s.term_bytes_written = ws.term_bytes_written;
    s.term_bytes_dropped = ws.term_bytes_dropped;
    s.wakeups = ws.wakeups;
    size_t n = stats->size < sizeof s ? stats->size : sizeof s;
    memcpy(stats, &s, n);
    return RS_OK;
}

int rs_close(rs_agent *agent)
{
    if (agent == NULL)
        return RS_OK;
    reg_remove(agent);
    if (atomic_load_explicit(&agent->forked, memory_order_relaxed))
        ipc_writer_free_abandoned(agent->w);
    else
        ipc_writer_close(agent->w);
    free(agent);
    return RS_OK;
}

const char *rs_strerror(int err)
{
    switch (err) {
#define RS_STR_(name, value, text)                                                                 \
    case value:                                                                                    \
        return text;
        RS_ERRNO_MAP(RS_STR_)
#undef RS_STR_
    default:
        return "unknown error";
    }
}

static const char *const status_names[RS_STATUS_COUNT] = {"idle",   "working",   "stuck",
                                                          "failed", "completed", "cancelled"};

const char *rs_status_name(rs_status status)
{
    if ((unsigned)status >= RS_STATUS_COUNT)
        return NULL;
    return status_names[status];
}

int rs_status_parse(const char *name, rs_status *out)
{
    if (name == NULL || out == NULL)
        return RS_EINVAL;
    for (unsigned i = 0; i < RS_STATUS_COUNT; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (rs_status)i;
            return RS_OK;
        }
    }
    return RS_EINVAL;
}

const char *rs_version(void)
{
#define RS_STR2_(x) #x
#define RS_STR_(x) RS_STR2_(x)
    return RS_STR_(RS_VERSION_MAJOR) "." RS_STR_(RS_VERSION_MINOR) "." RS_STR_(RS_VERSION_PATCH);
}
