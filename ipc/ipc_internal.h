/*
 * ipc_internal.h — helpers shared by the ring writer, reader and doorbell (not installed).
 */
#ifndef RINGSIDE_IPC_INTERNAL_H
#define RINGSIDE_IPC_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc_layout.h"

#if defined(__SANITIZE_THREAD__)
#define IPC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IPC_TSAN 1
#endif
#endif

/* Copies to or from shared memory.  Payload bytes of a record may be overwritten by the other side
 * while they are copied (an overwritten terminal chunk, a zombie producer): the copy is then
 * validated privately.  Under ThreadSanitizer the copies are relaxed atomic byte accesses, so the
 * deliberate, validated races are not reported while every other race still is. */
void ipc_shm_read(void *dst, const void *shm_src, size_t n);
void ipc_shm_write(void *shm_dst, const void *src, size_t n);

/* A hint that the line at p will be written soon (no effect on correctness; a no-op for a
 * compiler without the builtin). */
#if defined(__GNUC__)
#define ipc_prefetch_w(p) __builtin_prefetch((p), 1, 3)
#define ipc_prefetch_r(p) __builtin_prefetch((p), 0, 3)
#else
#define ipc_prefetch_w(p) ((void)(p))
#define ipc_prefetch_r(p) ((void)(p))
#endif

/* 32-bit hash of n bytes (n a multiple of 8): catches zombie and torn writes, not an adversary. */
uint32_t ipc_hash(const void *p, size_t n);
/* The same contract, four independent multiply lanes (about 3x shorter dependency chain); the
 * check of rings with IPC_FEAT_HASH4. */
uint32_t ipc_hash4(const void *p, size_t n);

/* Seqcount latch: the single writer (serialised by its caller) publishes n bytes into copy0 and
 * copy1; readers never block it.  ipc_latch_read copies a consistent value into dst and returns
 * 0, or -1 when the writer kept it changing for all attempts (try again later). */
void ipc_latch_write(_Atomic uint64_t *latch, void *copy0, void *copy1, const void *src, size_t n);
int ipc_latch_read(_Atomic uint64_t *latch, const void *copy0, const void *copy1, void *dst,
                   size_t n);

/* 1 if s[0..len) is a valid id: 1..63 bytes of [A-Za-z0-9._:@-]. */
int ipc_id_valid(const char *s, size_t len);

/* CLOCK_REALTIME and CLOCK_MONOTONIC in ns. */
uint64_t ipc_now_realtime_ns(void);
uint64_t ipc_now_mono_ns(void);

/* The one place that maps files (ipc_shm.c).  ipc_map_file maps len bytes of fd shared, writable
 * if rw; returns NULL on failure (errno set). */
void *ipc_map_file(int fd, size_t len, int rw);
void ipc_unmap(void *p, size_t len);

/* SIGBUS guard for reads of a mapping that may be truncated under the reader.  Usage:
 *   ipc_guard_install();
 *   if (sigsetjmp(ipc_guard_jb, 0) != 0) { ... the mapping faulted ... }
 *   ipc_guard_active = 1;  ... reads ...  ipc_guard_leave();
 * ipc_guard_install() installs a process-wide SIGBUS handler once (SA_NODEFER, so no signal mask
 * needs restoring); a SIGBUS outside a guarded section goes to the previous disposition. */
#include <setjmp.h>
#include <signal.h>
extern _Thread_local sigjmp_buf ipc_guard_jb;
extern _Thread_local volatile sig_atomic_t ipc_guard_active;
void ipc_guard_install(void);
/* Like ipc_guard_install(), and also installs the handler again (chaining to the current one) if
 * something replaced it since: one sigaction() query, called by ipc_reader_open(). */
void ipc_guard_ensure(void);
static inline void ipc_guard_leave(void)
{
    ipc_guard_active = 0;
}

/* Rescued mappings (the writer's side, in the agent's process, issue 17).  Another process of the
 * pod may truncate a ring or the doorbell that the SDK has mapped; a store there would raise
 * SIGBUS and kill the agent.  A mapping registered here is instead replaced, by the SIGBUS handler,
 * with anonymous zero memory at the same address (mmap MAP_FIXED), and the faulting instruction
 * retried: the agent goes on, its writes to that mapping are lost (counted by the caller through
 * ipc_rescue_faulted).  No sigsetjmp on the fast path, no lock held across a fault.
 * ipc_rescue_add returns a slot (>= 0) or -1 when all IPC_RESCUE_MAX slots are taken (the mapping
 * is then unprotected); ipc_rescue_remove(-1) is a no-op.  Installs the SIGBUS handler. */
#define IPC_RESCUE_MAX 256
int ipc_rescue_add(void *p, size_t len);
void ipc_rescue_remove(int slot);
/* 1 once the mapping of slot was replaced (it faulted), else 0. */
int ipc_rescue_faulted(int slot);

#endif /* RINGSIDE_IPC_INTERNAL_H */
