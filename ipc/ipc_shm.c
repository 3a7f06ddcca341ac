/*
 * ipc_shm.c — the only file that calls mmap(); the SIGBUS guard; shared-memory copies, hash,
 * seqcount latch, clocks.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ipc_internal.h"

void *ipc_map_file(int fd, size_t len, int rw)
{
    int prot = PROT_READ | (rw ? PROT_WRITE : 0);
    void *p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void ipc_unmap(void *p, size_t len)
{
    if (p != NULL)
        munmap(p, len);
}

/* ---- SIGBUS guard ---------------------------------------------------------------------------- */

_Thread_local sigjmp_buf ipc_guard_jb;
_Thread_local volatile sig_atomic_t ipc_guard_active;

static struct sigaction guard_prev;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

/* ---- rescued mappings ---------------------------------------------------------------------- */

/* Lock-free table read by the signal handler: a slot is claimed by a CAS of base from 0. */
static struct rescue_slot {
    _Atomic uintptr_t base;
    _Atomic size_t len;
    _Atomic int faulted;
} rescue[IPC_RESCUE_MAX];

int ipc_rescue_add(void *p, size_t len)
{
    if (p == NULL || len == 0)
        return -1;
    ipc_guard_ensure();
    for (int i = 0; i < IPC_RESCUE_MAX; i++) {
        uintptr_t expect = 0;
        /* len is stored before base is published below (release via the CAS's seq_cst) */
        if (atomic_load_explicit(&rescue[i].base, memory_order_relaxed) != 0)
            continue;
        atomic_store_explicit(&rescue[i].len, len, memory_order_relaxed);
        atomic_store_explicit(&rescue[i].faulted, 0, memory_order_relaxed);
        if (atomic_compare_exchange_strong(&rescue[i].base, &expect, (uintptr_t)p))
            return i;
    }
    return -1;
}

void ipc_rescue_remove(int slot)
{
    if (slot >= 0 && slot < IPC_RESCUE_MAX)
        atomic_store(&rescue[slot].base, (uintptr_t)0);
}

int ipc_rescue_faulted(int slot)
{
    return slot >= 0 && slot < IPC_RESCUE_MAX &&
           atomic_load_explicit(&rescue[slot].faulted, memory_order_relaxed);
}

/* Replaces the rescued mapping holding addr with zero pages; 1 if addr was in one.  mmap is a
 * plain system call here (not on POSIX's async-signal-safe list, but it takes no user-space lock
 * in glibc, which is what matters). */
static int rescue_fault(uintptr_t addr)
{
    for (int i = 0; i < IPC_RESCUE_MAX; i++) {
        uintptr_t base = atomic_load(&rescue[i].base);
        size_t len = atomic_load(&rescue[i].len);
        if (base == 0 || addr < base || addr - base >= len)
            continue;
        void *p = mmap((void *)base, len, PROT_READ | PROT_WRITE,
                       MAP_FIXED | MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 0;
        atomic_store(&rescue[i].faulted, 1);
        return 1;
    }
    return 0;
}

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
    if (si != NULL && rescue_fault((uintptr_t)si->si_addr))
        return; /* the faulting access is retried on the zero pages */
    if (ipc_guard_active) {
        ipc_guard_active = 0;
        siglongjmp(ipc_guard_jb, 1);
    }
    /* Not ours: hand over to the previous disposition. */
    if (guard_prev.sa_flags & SA_SIGINFO) {
        if (guard_prev.sa_sigaction != NULL) {
            guard_prev.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
        guard_prev.sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void guard_setup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = guard_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK; /* NODEFER: sigsetjmp(…, 0) is enough */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &guard_prev);
}

void ipc_guard_install(void)
{
    pthread_once(&guard_once, guard_setup);
}

static pthread_mutex_t guard_mu = PTHREAD_MUTEX_INITIALIZER;

void ipc_guard_ensure(void)
{
    pthread_once(&guard_once, guard_setup);
    pthread_mutex_lock(&guard_mu);
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) == 0 &&
        (!(cur.sa_flags & SA_SIGINFO) || cur.sa_sigaction != guard_handler)) {
        /* Someone replaced our handler since: chain to theirs, install ours again. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = guard_handler;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, &guard_prev);
    }
    pthread_mutex_unlock(&guard_mu);
}

/* ---- copies, hash, latch ---------------------------------------------------------------------- */

void ipc_shm_read(void *dst, const void *shm_src, size_t n)
{
#ifdef IPC_TSAN
    unsigned char *d = dst;
    const unsigned char *s = shm_src;
    for (size_t i = 0; i < n; i++)
        d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
#else
    memcpy(dst, shm_src, n);
#endif
}

void ipc_shm_write(void *shm_dst, const void *src, size_t n)
{
#ifdef IPC_TSAN
    unsigned char *d = shm_dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        __atomic_store_n(&d[i], s[i], __ATOMIC_RELAXED);
#else
    memcpy(shm_dst, src, n);
#endif
}

uint32_t ipc_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ n;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w;
        h *= UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 32;
    }
    h ^= h >> 29;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 32;
    return (uint32_t)h;
}

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64u - r));
}

uint32_t ipc_hash4(const void *p, size_t n)
{
    const unsigned char *b = p;
    const uint64_t m = UINT64_C(0xff51afd7ed558ccd);
    uint64_t h0 = UINT64_C(0x9e3779b97f4a7c15) ^ n, h1 = UINT64_C(0xc2b2ae3d27d4eb4f);
    uint64_t h2 = UINT64_C(0x165667b19e3779f9), h3 = UINT64_C(0x27d4eb2f165667c5);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w0, w1, w2, w3; /* four 8-byte loads (one 32-byte copy goes through the stack) */
        memcpy(&w0, b + i, 8);
        memcpy(&w1, b + i + 8, 8);
        memcpy(&w2, b + i + 16, 8);
        memcpy(&w3, b + i + 24, 8);
        /* (h ^ w) * m with m odd is a bijection of h for a given w, so any one changed word
         * changes its lane's final state; the high bits are folded down once at the end. */
        h0 = (h0 ^ w0) * m;
        h1 = (h1 ^ w1) * m;
        h2 = (h2 ^ w2) * m;
        h3 = (h3 ^ w3) * m;
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h1 = (h1 ^ w) * m;
    }
    h0 ^= h0 >> 32;
    h1 ^= h1 >> 32;
    h2 ^= h2 >> 32;
    h3 ^= h3 >> 32;
    uint64_t h = h0 ^ rotl64(h1, 17) ^ rotl64(h2, 31) ^ rotl64(h3, 47);
    h ^= h >> 29;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 32;
    return (uint32_t)h;
}

void ipc_latch_write(_Atomic uint64_t *latch, void *copy0, void *copy1, const void *src, size_t n)
{
    uint64_t s = atomic_load_explicit(latch, memory_order_relaxed);
    if (s & 1u) /* a previous writer died mid-update, or a fresh odd start: realign to even */
        s++;
    /* Odd: readers use copy[1].  The release store orders our earlier copy[1] writes before it;
     * the release fence orders the store before the copy[0] writes that follow. */
    atomic_store_explicit(latch, s + 1, memory_order_release);
    atomic_thread_fence(memory_order_release);
    ipc_shm_write(copy0, src, n);
    /* Even: readers use copy[0], now complete. */
    atomic_store_explicit(latch, s + 2, memory_order_release);
    atomic_thread_fence(memory_order_release);
    ipc_shm_write(copy1, src, n);
}

int ipc_latch_read(_Atomic uint64_t *latch, const void *copy0, const void *copy1, void *dst,
                   size_t n)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t s1 = atomic_load_explicit(latch, memory_order_acquire);
        ipc_shm_read(dst, (s1 & 1u) ? copy1 : copy0, n);
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(latch, memory_order_relaxed);
        if (s1 == s2)
            return 0;
    }
    return -1;
}

int ipc_id_valid(const char *s, size_t len)
{
    if (len < 1 || len > 63)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

uint64_t ipc_now_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ipc_now_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
