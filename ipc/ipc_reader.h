/*
 * ipc_reader.h — the sidecar's side of an agent ring file (REQUIREMENTS A1–A5).
 *
 * Everything in the ring is untrusted: the reader copies, then validates; a malformed, truncated
 * or hostile ring makes ipc_reader_poll() return IPC_ECORRUPT (the caller quarantines the ring),
 * never crashes or hangs the caller.  No libev, no allocation after ipc_reader_open().
 * One reader per ring, used from one thread.
 */
#ifndef RINGSIDE_IPC_READER_H
#define RINGSIDE_IPC_READER_H

#include <stddef.h>
#include <stdint.h>

#define IPC_ID_MAX 63
#define IPC_TEXT_MAX 255

#define IPC_ERRNO_MAP(X)                                                                           \
    X(IPC_OK, 0, "success")                                                                        \
    X(IPC_EINVAL, -1, "invalid argument")                                                          \
    X(IPC_ENOMEM, -2, "out of memory")                                                             \
    X(IPC_ESYS, -3, "system call failed")                                                          \
    X(IPC_ENOTREADY, -4, "ring not initialised yet")                                               \
    X(IPC_EMAGIC, -5, "not a ringside ring (bad magic)")                                           \
    X(IPC_EVERSION, -6, "unsupported ring layout version")                                         \
    X(IPC_EGEOMETRY, -7, "ring header sizes or regions invalid")                                   \
    X(IPC_ECORRUPT, -8, "ring content corrupt or truncated")                                    \
    X(IPC_EFULL, -9, "event log full: record dropped and counted")                                 \
    X(IPC_ENOTASK, -10, "unknown task")                                                            \
    X(IPC_EEXIST, -11, "task already started")                                                     \
    X(IPC_ETASKS, -12, "too many open tasks")

typedef enum ipc_error {
#define IPC_ENUM_(name, value, text) name = value,
    IPC_ERRNO_MAP(IPC_ENUM_)
#undef IPC_ENUM_
} ipc_error;

/* Returns a static description of an IPC_E* code. */
const char *ipc_strerror(int err);

/* Identity of the agent that owns a ring, copied out of the header and validated
 * (NUL-terminated, id charset checked). */
typedef struct ipc_identity {
    char agent_id[IPC_ID_MAX + 1];
    char project_id[IPC_ID_MAX + 1];
    char owner[IPC_ID_MAX + 1]; /* "" when none */
    int32_t pid;                /* diagnostic only: pid in the agent's namespace */
    uint64_t start_ns;          /* CLOCK_REALTIME at rs_open() */
} ipc_identity;

typedef enum ipc_event_type {
    IPC_EV_STATUS = 1,     /* status: new status + detail */
    IPC_EV_TASK_START = 2, /* task_id, detail = title */
    IPC_EV_TASK_END = 3,   /* task_id, status = outcome, exit_code */
    IPC_EV_PROGRESS = 4,   /* task_id, current_step, total_steps, detail = message (latest only) */
    IPC_EV_TERM = 5,       /* task_id, stream, bytes/len (a private copy; len <= IPC_TERM_CHUNK_MAX) */
    IPC_EV_TERM_GAP = 6,   /* task_id, stream, lost = terminal bytes lost before the next IPC_EV_TERM */
    IPC_EV_LOST = 7        /* lost = event-log records dropped or skipped; latest state follows */
} ipc_event_type;

#define IPC_TERM_CHUNK_MAX 4096

/* One event, as handed to the poll callback.  All pointers are private to the reader and valid
 * only during the callback.  Strings are NUL-terminated and validated. */
typedef struct ipc_event {
    ipc_event_type type;
    uint64_t ts_ns;      /* publish time, CLOCK_REALTIME ns, as stamped by the SDK */
    uint64_t status_seq; /* count of status transitions of this agent so far (IPC_EV_STATUS) */
    uint8_t status;      /* rs_status value: new status, or task outcome */
    uint8_t stream;      /* 1 stdout, 2 stderr (IPC_EV_TERM, IPC_EV_TERM_GAP) */
    int32_t exit_code;   /* IPC_EV_TASK_END */
    uint32_t current_step, total_steps; /* IPC_EV_PROGRESS */
    uint64_t lost;       /* IPC_EV_TERM_GAP: bytes; IPC_EV_LOST: records */
    char task_id[IPC_ID_MAX + 1];
    char detail[IPC_TEXT_MAX + 1]; /* status detail, task title or progress message */
    const uint8_t *bytes;          /* IPC_EV_TERM */
    uint32_t len;
} ipc_event;

typedef void (*ipc_event_cb)(void *ud, const ipc_event *ev);

/* Counters of one reader (for /metrics). */
typedef struct ipc_reader_stats {
    uint64_t records_read;     /* event-log records delivered */
    uint64_t records_lost;     /* event-log records the producer dropped or the reader skipped */
    uint64_t term_bytes_read;
    uint64_t term_bytes_lost;  /* overwritten before read, or dropped by the producer */
    uint64_t progress_updates; /* progress changes delivered */
    uint64_t corrupt;          /* records or slots rejected by validation */
    uint32_t log_fill_pct;     /* event-log fill at the last poll, 0..100 */
} ipc_reader_stats;

typedef struct ipc_reader ipc_reader;

/* Opens and maps the ring file at path (O_NOFOLLOW, regular file, size checked), validates the
 * header and copies its geometry privately.  On success stores a reader the caller frees with
 * ipc_reader_free() and returns IPC_OK.  IPC_ENOTREADY means the SDK has not finished initialising
 * it (try again later); IPC_EMAGIC, IPC_EVERSION, IPC_EGEOMETRY reject the file for good.
 * Installs the process-wide SIGBUS guard handler, again if something replaced it since the last
 * open (it chains to the replaced handler for faults outside ring reads). */
int ipc_reader_open(const char *path, ipc_reader **out);

/* Borrowed; valid until ipc_reader_free(). */
const ipc_identity *ipc_reader_identity(const ipc_reader *r);

/* Delivers up to max_events pending events in publish order per kind (event log in order; progress
 * as latest values; terminal bytes in order per task stream), calling cb for each.
 * Returns the number delivered (0 = nothing pending), or IPC_ECORRUPT when the ring must be
 * quarantined (events delivered before the fault were valid).  Survives SIGBUS from a truncated
 * file (returns IPC_ECORRUPT). */
int ipc_reader_poll(ipc_reader *r, unsigned max_events, ipc_event_cb cb, void *ud);

/* Returns 1 when something is pending that poll would deliver, else 0.  Cheap (a few loads). */
int ipc_reader_pending(const ipc_reader *r);

/* Liveness probe (flock LOCK_SH|LOCK_NB): 1 while the agent process holds its ring, 0 once it is
 * gone (crashed or closed), negative IPC_E* on error. */
int ipc_reader_alive(ipc_reader *r);

/* 1 when the agent called rs_close() (clean end), else 0. */
int ipc_reader_closed_cleanly(const ipc_reader *r);

/* Latest status from the snapshot slot, readable however full the log is.  Returns IPC_OK and
 * fills *ev as an IPC_EV_STATUS event, or IPC_ENOTREADY if no status was ever set. */
int ipc_reader_latest_status(ipc_reader *r, ipc_event *ev);

void ipc_reader_get_stats(const ipc_reader *r, ipc_reader_stats *out);

/* Path of the ring file (borrowed). */
const char *ipc_reader_path(const ipc_reader *r);

/* Test and tuning hook: a slot claimed but not committed is skipped (counted lost) after skip_ms
 * (default 1000) while the agent lives, at once when it is dead; a slot skipped and never handed
 * on is reclaimed reclaim_ms (default 5000) after the last skip. */
void ipc_reader_set_timeouts(ipc_reader *r, uint32_t skip_ms, uint32_t reclaim_ms);

/* Unmaps and frees.  Does not unlink the file.  ipc_reader_free(NULL) is a no-op. */
void ipc_reader_free(ipc_reader *r);

/* ---- Pod-wide doorbell (wake-up without busy polling, A5) ---------------------------------- */

/* The doorbell is a small file ("doorbell") in the shm dir, created by the sidecar and mapped by
 * agents.  Protocol (Dekker): the reader arms (snapshot seq, set sleeping, full fence), re-checks
 * every ring with ipc_reader_pending(), then waits; a producer that commits and then sees sleeping
 * set clears it (exchange: one winner), bumps seq and FUTEX_WAKEs. */
typedef struct ipc_doorbell ipc_doorbell;

/* Creates (or reuses) dir/doorbell and maps it.  Returns IPC_OK or IPC_ESYS (errno set). */
int ipc_doorbell_open(const char *dir, ipc_doorbell **out);

/* Removes dir/doorbell when it is not a regular file (a symlink, FIFO, socket, device or empty
 * directory someone else put there; never followed).  Returns 0 if something was removed, else -1
 * (errno set). */
int ipc_doorbell_remove_foreign(const char *dir);
/* Sets the sleeping flag with a full fence; returns the seq value to pass to ipc_doorbell_wait. */
uint32_t ipc_doorbell_arm(ipc_doorbell *db);
/* Clears the sleeping flag (after a wait, or when the re-check found work). */
void ipc_doorbell_disarm(ipc_doorbell *db);
/* Waits until seq differs from the armed value or timeout_ms passes.  Returns 1 if woken by a
 * producer, 0 on timeout or spurious wake. Safe to call from a thread other than the poll thread. */
int ipc_doorbell_wait(ipc_doorbell *db, uint32_t seq, int timeout_ms);
/* Wakes any waiter (used by the sidecar itself at shutdown). */
void ipc_doorbell_ring(ipc_doorbell *db);
void ipc_doorbell_free(ipc_doorbell *db);

#endif /* RINGSIDE_IPC_READER_H */
