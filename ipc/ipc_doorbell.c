/*
 * ipc_doorbell.c — the pod-wide doorbell, reader side (the producer side is in ipc_writer.c).
 * The file is created by the sidecar and never truncated or unlinked (agents keep it mapped); a
 * restarted sidecar reuses it.  Agents can write it, so every access is SIGBUS-guarded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ipc_internal.h"
#include "ipc_reader.h"

struct ipc_doorbell {
    ipc_doorbell_shm *shm;
    int broken; /* the mapping faulted: waits degrade to plain timeouts */
};

int ipc_doorbell_remove_foreign(const char *dir)
{
    char p[PATH_MAX];
    struct stat st;
    if (dir == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (snprintf(p, sizeof p, "%s/%s", dir, IPC_DOORBELL_NAME) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (lstat(p, &st) == -1)
        return -1;
    if (S_ISREG(st.st_mode)) {
        errno = EEXIST;
        return -1;
    }
    return S_ISDIR(st.st_mode) ? rmdir(p) : unlink(p);
}

int ipc_doorbell_open(const char *dir, ipc_doorbell **out)
{
    if (dir == NULL || out == NULL)
        return IPC_EINVAL;
    *out = NULL;
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, IPC_DOORBELL_NAME) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return IPC_ESYS;
    }
    int fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0660);
    if (fd == -1)
        return IPC_ESYS;
    /* Agents in other containers (other uids) ring it: they share the group (fsGroup), as for the
     * rings; nobody else may write (or truncate) it. */
    (void)fchmod(fd, 0660);
    struct stat st;
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        int e = errno;
        close(fd);
        errno = S_ISREG(st.st_mode) ? e : EINVAL;
        return IPC_ESYS;
    }
    if (st.st_size < (off_t)IPC_PAGE && ftruncate(fd, IPC_PAGE) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return IPC_ESYS;
    }
    ipc_doorbell_shm *shm = ipc_map_file(fd, IPC_PAGE, 1);
    int e = errno;
    close(fd);
    if (shm == NULL) {
        errno = e;
        return IPC_ESYS;
    }
    ipc_doorbell *db = calloc(1, sizeof *db);
    if (db == NULL) {
        ipc_unmap(shm, IPC_PAGE);
        return IPC_ENOMEM;
    }
    db->shm = shm;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        ipc_unmap(shm, IPC_PAGE);
        free(db);
        errno = EFAULT;
        return IPC_ESYS;
    }
    ipc_guard_active = 1;
    if (memcmp(shm->magic, IPC_DOORBELL_MAGIC, 8) != 0) {
        shm->version = 1;
        atomic_store_explicit(&shm->sleeping, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        memcpy(shm->magic, IPC_DOORBELL_MAGIC, 8);
    }
    ipc_guard_leave();
    *out = db;
    return IPC_OK;
}

uint32_t ipc_doorbell_arm(ipc_doorbell *db)
{
    if (db == NULL || db->broken)
        return 0;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        db->broken = 1;
        return 0;
    }
    ipc_guard_active = 1;
    /* acquire: pairs with the producer's release increment. */
    uint32_t s = atomic_load_explicit(&db->shm->seq, memory_order_acquire);
    atomic_store_explicit(&db->shm->sleeping, 1, memory_order_relaxed);
    /* Dekker: the sleeping store is globally visible before the caller re-checks the rings. */
    atomic_thread_fence(memory_order_seq_cst);
    ipc_guard_leave();
    return s;
}

void ipc_doorbell_disarm(ipc_doorbell *db)
{
    if (db == NULL || db->broken)
        return;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        db->broken = 1;
        return;
    }
    ipc_guard_active = 1;
    atomic_store_explicit(&db->shm->sleeping, 0, memory_order_relaxed);
    ipc_guard_leave();
}

int ipc_doorbell_wait(ipc_doorbell *db, uint32_t seq, int timeout_ms)
{
    if (timeout_ms < 0)
        timeout_ms = 0;
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    if (db == NULL || db->broken) {
        nanosleep(&ts, NULL);
        return 0;
    }
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        db->broken = 1;
        return 0;
    }
    ipc_guard_active = 1;
    /* The kernel compares seq atomically with going to sleep: a ring after the arm wakes us or
     * makes the wait return at once (EAGAIN). */
    syscall(SYS_futex, &db->shm->seq, FUTEX_WAIT, seq, &ts, NULL, 0);
    uint32_t now = atomic_load_explicit(&db->shm->seq, memory_order_acquire);
    ipc_guard_leave();
    return now != seq;
}

void ipc_doorbell_ring(ipc_doorbell *db)
{
    if (db == NULL || db->broken)
        return;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        db->broken = 1;
        return;
    }
    ipc_guard_active = 1;
    atomic_fetch_add_explicit(&db->shm->seq, 1, memory_order_release);
    syscall(SYS_futex, &db->shm->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    ipc_guard_leave();
}

void ipc_doorbell_free(ipc_doorbell *db)
{
    if (db == NULL)
        return;
    ipc_unmap(db->shm, IPC_PAGE);
    free(db);
}
