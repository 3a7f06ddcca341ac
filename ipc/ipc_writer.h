/*
 * ipc_writer.h — the agent's side of a ring file (used by libringside; REQUIREMENTS A1, A2, A6).
 *
 * One writer per agent handle.  Every function is thread-safe except ipc_writer_close() and
 * ipc_writer_abandon(), which must not race with other calls.  No function allocates, blocks on
 * the reader or makes a syscall on its fast path (the doorbell's FUTEX_WAKE happens only when the
 * reader sleeps; a missing doorbell is looked for at most once per second).
 * In-process locks: task bookkeeping and each terminal ring are serialised between agent threads
 * (held for a bounded copy, never across a syscall); the event log itself is lock-free.
 * Errors are negative IPC_E* codes (ipc_reader.h).  Lengths are validated by the caller
 * (ids 1..63 bytes of the id charset, texts <= 255 bytes); the writer re-checks and rejects.
 */
#ifndef RINGSIDE_IPC_WRITER_H
#define RINGSIDE_IPC_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "ipc_reader.h"

typedef struct ipc_writer ipc_writer;

typedef struct ipc_writer_config {
    const char *dir;        /* existing directory; not created */
    const char *agent_id;   /* valid id */
    const char *project_id; /* valid id */
    const char *owner;      /* valid id or NULL */
    uint32_t log_slots;     /* power of two in [8, 65536]; 0: 512 */
    uint32_t max_tasks;     /* [1, 1024]; 0: 64 */
    uint32_t term_rings;    /* [0, 256] terminal rings in the pool; 0: 4.  UINT32_MAX: none */
    uint32_t term_ring_bytes; /* power of two in [8 KiB, 64 MiB]; 0: 1 MiB */
} ipc_writer_config;

typedef struct ipc_writer_stats {
    uint64_t events_published, events_dropped, progress_updates;
    uint64_t term_bytes_written, term_bytes_dropped, wakeups;
    int ring_lost;           /* the ring file was truncated under us: writes go nowhere since */
    uint32_t doorbells_lost; /* doorbell mappings dropped after being truncated under us */
} ipc_writer_stats;

/* Creates dir/.tmp.<pid>.<nonce>, pre-allocates it (fallocate), initialises it, takes flock
 * LOCK_EX for the writer's life, marks it READY and renames it to
 * dir/<agent_id>.<pid>.<nonce>.ring.  Returns IPC_OK, IPC_EINVAL, IPC_ENOMEM or IPC_ESYS
 * (errno set: ENOENT/ENOTDIR for a missing directory, EACCES, ENOSPC when the volume is full). */
int ipc_writer_open(const ipc_writer_config *cfg, ipc_writer **out);

/* Appends a status transition and updates the snapshot.  IPC_EFULL: the log record was dropped
 * (counted) but the snapshot holds the new status. */
int ipc_writer_status(ipc_writer *w, uint8_t status, const char *detail, size_t detail_len);

/* Starts a task: IPC_EEXIST, IPC_ETASKS, or IPC_EFULL (task started, log record dropped). */
int ipc_writer_task_start(ipc_writer *w, const char *task, size_t task_len, const char *title,
                          size_t title_len);

/* Latest-value progress of a started task; IPC_ENOTASK. */
int ipc_writer_progress(ipc_writer *w, const char *task, size_t task_len, uint32_t current,
                        uint32_t total, const char *msg, size_t msg_len);

/* Terminal bytes of a started task (stream 1 or 2); IPC_ENOTASK.  Never fails for lack of space:
 * the oldest bytes are overwritten (the reader counts them) or, without a free ring, the bytes are
 * counted as dropped and reported at the task's end. */
int ipc_writer_write(ipc_writer *w, const char *task, size_t task_len, uint8_t stream,
                     const void *buf, size_t len);

/* Ends a started task; IPC_ENOTASK; IPC_EFULL (ended, log record dropped). */
int ipc_writer_task_end(ipc_writer *w, const char *task, size_t task_len, uint8_t outcome,
                        int32_t exit_code);

void ipc_writer_get_stats(const ipc_writer *w, ipc_writer_stats *out);

/* Path of the ring file (borrowed, valid until close). */
const char *ipc_writer_path(const ipc_writer *w);

/* Marks the ring CLOSED (clean end), rings the doorbell, unmaps, closes the file (releasing the
 * lock) and frees.  NULL is a no-op. */
void ipc_writer_close(ipc_writer *w);

/* For a fork child: closes the child's copy of the file descriptor (so the child never keeps the
 * parent's lock alive).  Touches no lock and no shared memory; async-signal-safe.  Afterwards only
 * ipc_writer_free_abandoned() may be called. */
void ipc_writer_abandon(ipc_writer *w);

/* Frees an abandoned writer in the fork child: unmaps and frees without touching its locks. */
void ipc_writer_free_abandoned(ipc_writer *w);

#endif /* RINGSIDE_IPC_WRITER_H */
