/*
 * ringside.h — the agent SDK of Ringside (libringside).
 *
 * An agent process opens one handle and publishes agent status, task lifecycle, task progress and
 * terminal output into a shared-memory ring file that the Ringside sidecar of the same pod reads.
 *
 * Guarantees, for every function below unless it says otherwise:
 *  - Never blocks on the sidecar, never aborts, never allocates after rs_open().  A slow, stopped
 *    or missing sidecar costs the agent nothing: when space runs out the event is counted and the
 *    call returns RS_EFULL (status and task state stay readable through a snapshot slot; progress
 *    keeps only its latest value; terminal bytes are dropped and the loss is counted).
 *  - Thread-safe: any number of threads may publish through one handle at once.  rs_close() must not
 *    race with other calls on the same handle.
 *  - fork(): in the child every call on a handle opened before the fork returns RS_ECLOSED (the
 *    child holds no lock on the parent's ring); rs_close() there only frees memory.  Open a new
 *    handle in the child to publish from it.
 *  - Errors are negative RS_E* codes; rs_strerror() names them.  Invalid arguments (NULL, ids that
 *    are empty, too long or contain characters outside [A-Za-z0-9._:@-], unknown enum values) are
 *    rejected with RS_EINVAL and change nothing.
 *  - Strings passed in are copied; nothing passed in is retained after the call returns.
 *
 * ABI: opaque handle, options struct with a size field, additive changes only (a changed signature
 * gets a new name); the soname is libringside.so.RS_VERSION_MAJOR.
 */
#ifndef RINGSIDE_H
#define RINGSIDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RS_API __attribute__((visibility("default")))
#define RS_WUR __attribute__((warn_unused_result))
#else
#define RS_API
#define RS_WUR
#endif

#define RS_VERSION_MAJOR 0
#define RS_VERSION_MINOR 1
#define RS_VERSION_PATCH 0

/* Limits (bytes, excluding the terminating NUL). */
#define RS_ID_MAX 63      /* agent_id, project_id, owner, task_id */
#define RS_TEXT_MAX 255   /* status detail, progress message, task title */
#define RS_WRITE_MAX (1u << 20) /* largest single rs_write(); larger writes return RS_EINVAL */

/* Error codes: 0 is success, every failure is negative. */
#define RS_ERRNO_MAP(X)                                                                            \
    X(RS_OK, 0, "success")                                                                         \
    X(RS_EINVAL, -1, "invalid argument")                                                           \
    X(RS_ENOMEM, -2, "out of memory")                                                              \
    X(RS_ESHM, -3, "shared-memory directory unusable (missing, not writable, or full)")           \
    X(RS_EFULL, -4, "ring full: event dropped and counted")                                        \
    X(RS_ECLOSED, -5, "handle closed")                                                             \
    X(RS_ETASKS, -6, "too many open tasks")                                                        \
    X(RS_ENOTASK, -7, "unknown task (not started, or already ended)")                              \
    X(RS_EEXIST, -8, "task already started")                                                       \
    X(RS_ESYS, -9, "system call failed (see errno)")

typedef enum rs_error {
#define RS_ENUM_(name, value, text) name = value,
    RS_ERRNO_MAP(RS_ENUM_)
#undef RS_ENUM_
} rs_error;

/* Agent status (REQUIREMENTS A6).  Values are part of the ring ABI. */
typedef enum rs_status {
    RS_STATUS_IDLE = 0,
    RS_STATUS_WORKING = 1,
    RS_STATUS_STUCK = 2,
    RS_STATUS_FAILED = 3,
    RS_STATUS_COMPLETED = 4,
    RS_STATUS_CANCELLED = 5
} rs_status;
#define RS_STATUS_COUNT 6

/* Terminal streams. */
typedef enum rs_stream { RS_STDOUT = 1, RS_STDERR = 2 } rs_stream;

/* Options for rs_open().  Initialise with rs_options_init(), then set fields. */
typedef struct rs_options {
    size_t size;            /* sizeof(rs_options) as compiled by the caller; set by rs_options_init */
    const char *shm_dir;    /* NULL: $RINGSIDE_SHM_DIR, else /dev/shm/ringside */
    const char *agent_id;   /* required */
    const char *project_id; /* required */
    const char *owner;      /* optional user that owns the agent; NULL for none */
    uint32_t term_ring_bytes; /* bytes per terminal ring; 0: default (1 MiB); power of two */
    uint32_t max_tasks;       /* concurrently open tasks; 0: default (64); at most 1024 */
    /* Added in 0.1 (read only when size covers them): */
    uint32_t term_rings; /* terminal rings shared by the open tasks' streams (one per task stream
                            while in use); 0: default (4); RS_TERM_RINGS_NONE: no terminal output
                            (bytes counted as dropped); at most 256 */
    uint32_t log_slots;  /* event-log slots; 0: default (512); power of two in [8, 65536] */
} rs_options;
#define RS_TERM_RINGS_NONE 0xffffffffu

typedef struct rs_agent rs_agent;

/* Counters of one handle, for diagnostics.  Set size = sizeof(rs_stats) before the call. */
typedef struct rs_stats {
    size_t size;
    uint64_t events_published;   /* status and task events written to the event log */
    uint64_t events_dropped;     /* event-log records dropped (log full); latest state kept */
    uint64_t progress_updates;   /* progress slot updates */
    uint64_t term_bytes_written; /* terminal bytes accepted */
    uint64_t term_bytes_dropped; /* terminal bytes the SDK could not place (no free terminal ring,
                                    or the part of one write beyond half a ring); bytes overwritten
                                    before the sidecar read them are counted by the sidecar */
    uint64_t wakeups;            /* futex wake-ups of a sleeping sidecar */
} rs_stats;

/* Fills *opts with defaults and sets opts->size. */
RS_API void rs_options_init(rs_options *opts);

/* Opens an agent handle: creates and pre-allocates this process's ring file under the shm dir.
 * On success stores a handle the caller frees with rs_close() and returns RS_OK.
 * Errors: RS_EINVAL (bad options), RS_ESHM (directory missing/unwritable/full), RS_ENOMEM. */
RS_API RS_WUR int rs_open(const rs_options *opts, rs_agent **out);

/* Sets the agent's status, with optional detail text (NULL for none; longer text is truncated at
 * RS_TEXT_MAX bytes on a UTF-8 boundary).  The latest status is always readable by the sidecar even
 * when the event log is full (then RS_EFULL is returned and the transition is counted). */
RS_API RS_WUR int rs_set_status(rs_agent *agent, rs_status status, const char *detail);

/* Starts task task_id with an optional title.  Errors: RS_EEXIST, RS_ETASKS, RS_EFULL. */
RS_API RS_WUR int rs_task_start(rs_agent *agent, const char *task_id, const char *title);

/* Reports progress of a started task.  Only the latest value per task is kept; never RS_EFULL.
 * current_step may exceed total_steps only if total_steps is 0 (unknown). */
RS_API RS_WUR int rs_progress(rs_agent *agent, const char *task_id, uint32_t current_step,
                              uint32_t total_steps, const char *message);

/* Writes terminal output of a started task.  Bytes are binary-safe (ANSI sequences preserved).
 * When the sidecar falls behind the oldest unread bytes are overwritten and counted as lost;
 * the call itself always succeeds for a valid task (returns RS_OK). */
RS_API RS_WUR int rs_write(rs_agent *agent, const char *task_id, rs_stream stream, const void *buf,
                           size_t len);

/* Ends a started task with an outcome (RS_STATUS_COMPLETED, RS_STATUS_FAILED or
 * RS_STATUS_CANCELLED) and the exit status of what it ran (0 when not applicable). */
RS_API RS_WUR int rs_task_end(rs_agent *agent, const char *task_id, rs_status outcome,
                              int exit_code);

/* Copies the handle's counters into *stats (stats->size must be set). */
RS_API int rs_stats_get(const rs_agent *agent, rs_stats *stats);

/* Closes the handle cleanly: marks the ring as ended cleanly (the sidecar then does not report the
 * agent as failed), releases the ring and frees the handle.  rs_close(NULL) is a no-op. */
RS_API int rs_close(rs_agent *agent);

/* Returns a static, human-readable description of an RS_E* code. */
RS_API const char *rs_strerror(int err);

/* Returns the lower-case name of a status ("idle", "working", …) or NULL if out of range. */
RS_API const char *rs_status_name(rs_status status);

/* Parses a status name; returns RS_OK or RS_EINVAL. */
RS_API RS_WUR int rs_status_parse(const char *name, rs_status *out);

/* Returns the library version as "MAJOR.MINOR.PATCH". */
RS_API const char *rs_version(void);

#ifdef __cplusplus
}
#endif
#endif /* RINGSIDE_H */
