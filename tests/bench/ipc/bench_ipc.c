/*
 * bench_ipc.c — ring benchmarks, each against a baseline measured in the same run:
 *   1. status publish latency (ns, median / p99.9) with the reader awake (no syscall);
 *   2. status records/s, one producer thread -> reader thread, vs ck_ring SPSC with the same
 *      record size (408 B) and vs a pipe;
 *   3. terminal bytes/s through a ring (4 KiB writes) vs memcpy of the same sizes;
 *   4. publish -> sleeping reader wake latency vs a bare futex wake-to-run;
 *   5. reader CPU with 100 idle agents, as the sidecar runs them: every ring polled at each
 *      doorbell round (wait with a 100 ms timeout), liveness (flock probe) every 250 ms.
 * usage: bench_ipc [seconds_per_test [rounds]]   (defaults 0.5 and 5; the ctest smoke entry
 *        uses 0.1 and 1), or bench_ipc SECONDS lat|rate|term  (one figure, for profiling).
 * Each comparison runs `rounds` times, the ringside measurement and its baseline back to back in
 * every round (so both see the same machine load); the table reports the median of the rounds
 * for each figure and the median of the per-round ratios.
 */
#include <ck_ring.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../unit/ipc/ipc_test_util.h"
#include "ipc_internal.h"
#include "ipc_layout.h"
#include "ipc_writer.h"

static double secs = 1.0;
static unsigned rate_slots = 65536; /* log slots and ck_ring entries in the records/s runs */
static char dir[PATH_MAX];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static ipc_writer *open_writer(const char *agent, uint32_t slots, uint32_t rings, uint32_t rbytes)
{
    ipc_writer_config cfg = {.dir = dir, .agent_id = agent, .project_id = "bench",
                             .log_slots = slots, .term_rings = rings, .term_ring_bytes = rbytes};
    ipc_writer *w;
    if (ipc_writer_open(&cfg, &w) != IPC_OK) {
        perror("writer");
        exit(2);
    }
    return w;
}

/* ---- reader thread -------------------------------------------------------------------------- */
typedef struct rd_ctx {
    ipc_reader *r;
    ipc_doorbell *db; /* set: the reader sleeps on the doorbell when a poll finds nothing */
    _Atomic int stop;
    uint64_t events, bytes; /* reader thread only; read after pthread_join (like ck's consumer) */
} rd_ctx;

static void count_cb(void *ud, const ipc_event *ev)
{
    rd_ctx *c = ud;
    c->events++;
    if (ev->type == IPC_EV_TERM) /* lost bytes (gaps) are not throughput */
        c->bytes += ev->len;
}

static int reader_spin; /* BENCH_SPIN: the reader never yields (diagnostic) */

/* The reader loop of the throughput runs.  With a doorbell it behaves like the sidecar: drain
 * while there is work, then arm, re-check, and sleep until a producer rings (or 10 ms pass);
 * without one it yields the CPU after an empty poll (or spins with BENCH_SPIN). */
static void *reader_main(void *arg)
{
    rd_ctx *c = arg;
    while (!atomic_load(&c->stop)) {
        if (ipc_reader_poll(c->r, 1024, count_cb, c) != 0 || reader_spin)
            continue;
        if (c->db == NULL) {
            sched_yield();
            continue;
        }
        uint32_t s = ipc_doorbell_arm(c->db);
        if (!ipc_reader_pending(c->r))
            ipc_doorbell_wait(c->db, s, 10);
        ipc_doorbell_disarm(c->db);
    }
    return NULL;
}

static ipc_reader *open_reader_for(ipc_writer *w)
{
    ipc_reader *r;
    if (ipc_reader_open(ipc_writer_path(w), &r) != IPC_OK)
        exit(2);
    return r;
}

/* ---- 1. publish latency ------------------------------------------------------------------- */
static uint64_t lat_wakeups; /* futex wakes the writer made during the latency runs */

static void bench_publish_latency(double *median, double *p999)
{
    ipc_doorbell *db; /* present, as in a pod: the writer maps it at open (no doorbell lookups) */
    if (ipc_doorbell_open(dir, &db) != IPC_OK)
        exit(2);
    ipc_writer *w = open_writer("lat", 65536, UINT32_MAX, 0);
    rd_ctx c = {.r = open_reader_for(w)};
    pthread_t th;
    pthread_create(&th, NULL, reader_main, &c);
    enum { N = 200000 };
    static uint64_t t[N];
    /* timer overhead */
    uint64_t ov[1000];
    for (int i = 0; i < 1000; i++) {
        uint64_t a = now_ns();
        ov[i] = now_ns() - a;
    }
    qsort(ov, 1000, sizeof ov[0], cmp_u64);
    int n = 0;
    uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
    while (n < N && now_ns() < end) {
        uint64_t a = now_ns();
        (void)ipc_writer_status(w, (uint8_t)(n % 6), "working on it", 13);
        t[n++] = now_ns() - a;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_u64);
    *median = (double)t[n / 2] - (double)ov[500];
    *p999 = (double)t[(size_t)((double)n * 0.999)] - (double)ov[500];
    atomic_store(&c.stop, 1);
    pthread_join(th, NULL);
    ipc_writer_stats ws;
    ipc_writer_get_stats(w, &ws);
    lat_wakeups += ws.wakeups;
    ipc_reader_free(c.r);
    unlink(ipc_writer_path(w));
    ipc_writer_close(w);
    ipc_doorbell_free(db);
}

/* ---- 2. records/s ------------------------------------------------------------------------- */
static double bench_status_rate(void)
{
    ipc_doorbell *db;
    if (ipc_doorbell_open(dir, &db) != IPC_OK)
        exit(2);
    ipc_writer *w = open_writer("rate", rate_slots, UINT32_MAX, 0);
    rd_ctx c = {.r = open_reader_for(w), .db = db};
    pthread_t th;
    pthread_create(&th, NULL, reader_main, &c);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    long n = 0;
    while ((n & 255) != 0 || now_ns() < end) {
        (void)ipc_writer_status(w, (uint8_t)(n % 6), "working on it", 13);
        n++;
    }
    uint64_t t1 = now_ns();
    atomic_store(&c.stop, 1);
    ipc_doorbell_ring(db);
    pthread_join(th, NULL);
    if (getenv("BENCH_VERBOSE") != NULL) {
        ipc_writer_stats ws;
        ipc_writer_get_stats(w, &ws);
        ipc_reader_stats rs;
        ipc_reader_get_stats(c.r, &rs);
        fprintf(stderr, "rate: published %llu dropped %llu delivered %llu lost %llu\n",
                (unsigned long long)ws.events_published, (unsigned long long)ws.events_dropped,
                (unsigned long long)rs.records_read, (unsigned long long)rs.records_lost);
    }
    /* delivered = records received (drops when the reader falls behind are not counted) */
    double rate = (double)c.events / ((double)(t1 - t0) / 1e9);
    ipc_reader_free(c.r);
    ipc_writer_close(w);
    ipc_doorbell_free(db);
    return rate;
}

typedef struct rec408 {
    unsigned char b[408];
} rec408;
CK_RING_PROTOTYPE(rec408, rec408)
typedef struct rec168 {
    unsigned char b[168];
} rec168;
CK_RING_PROTOTYPE(rec168, rec168)

static struct ck_ring ckr;
static rec408 *ckbuf;
static _Atomic int ck_stop;
static _Atomic uint64_t ck_got;

static void *ck_consumer(void *arg)
{
    (void)arg;
    rec408 x;
    uint64_t got = 0;
    while (!atomic_load_explicit(&ck_stop, memory_order_relaxed) || ck_ring_size(&ckr) > 0) {
        if (ck_ring_dequeue_spsc_rec408(&ckr, ckbuf, &x))
            got++;
    }
    atomic_store(&ck_got, got);
    return NULL;
}

static struct ck_ring ckr2;
static rec168 *ckbuf2;
static void *ck_consumer168(void *arg)
{
    (void)arg;
    rec168 x;
    uint64_t got = 0;
    while (!atomic_load_explicit(&ck_stop, memory_order_relaxed) || ck_ring_size(&ckr2) > 0) {
        if (ck_ring_dequeue_spsc_rec168(&ckr2, ckbuf2, &x))
            got++;
    }
    atomic_store(&ck_got, got);
    return NULL;
}

/* The same with 168 B records: the bytes a status with a 13-byte detail occupies in a slot. */
static double bench_ck168_rate(void)
{
    unsigned size = rate_slots;
    ckbuf2 = calloc(size, sizeof *ckbuf2);
    ck_ring_init(&ckr2, size);
    pthread_t th;
    atomic_store(&ck_stop, 0);
    pthread_create(&th, NULL, ck_consumer168, NULL);
    rec168 x;
    memset(&x, 7, sizeof x);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    long n = 0;
    while ((n & 255) != 0 || now_ns() < end) {
        x.b[0] = (unsigned char)n;
        while (!ck_ring_enqueue_spsc_rec168(&ckr2, ckbuf2, &x))
            ;
        n++;
    }
    atomic_store(&ck_stop, 1);
    pthread_join(th, NULL);
    uint64_t t1 = now_ns();
    free(ckbuf2);
    return (double)atomic_load(&ck_got) / ((double)(t1 - t0) / 1e9);
}

static double bench_ck_rate(void)
{
    unsigned size = rate_slots;
    ckbuf = calloc(size, sizeof *ckbuf);
    ck_ring_init(&ckr, size);
    pthread_t th;
    atomic_store(&ck_stop, 0);
    pthread_create(&th, NULL, ck_consumer, NULL);
    rec408 x;
    memset(&x, 7, sizeof x);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    long n = 0;
    while ((n & 255) != 0 || now_ns() < end) {
        /* same work as a publish: build the record (the ring copies it) */
        x.b[0] = (unsigned char)n;
        while (!ck_ring_enqueue_spsc_rec408(&ckr, ckbuf, &x))
            ;
        n++;
    }
    atomic_store(&ck_stop, 1);
    pthread_join(th, NULL);
    uint64_t t1 = now_ns();
    free(ckbuf);
    return (double)atomic_load(&ck_got) / ((double)(t1 - t0) / 1e9);
}

static int pipe_fd[2];
static void *pipe_consumer(void *arg)
{
    uint64_t *got = arg;
    static unsigned char buf[408 * 64];
    for (;;) {
        ssize_t k = read(pipe_fd[0], buf, sizeof buf);
        if (k <= 0)
            break;
        *got += (uint64_t)k;
    }
    return NULL;
}

static double bench_pipe_rate(void)
{
    if (pipe(pipe_fd) != 0)
        exit(2);
    uint64_t got = 0;
    pthread_t th;
    pthread_create(&th, NULL, pipe_consumer, &got);
    unsigned char rec[408];
    memset(rec, 1, sizeof rec);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    long n = 0;
    while ((n & 255) != 0 || now_ns() < end) {
        if (write(pipe_fd[1], rec, sizeof rec) != (ssize_t)sizeof rec)
            exit(2);
        n++;
    }
    close(pipe_fd[1]);
    pthread_join(th, NULL);
    uint64_t t1 = now_ns();
    close(pipe_fd[0]);
    return (double)(got / sizeof rec) / ((double)(t1 - t0) / 1e9);
}

/* ---- 3. terminal bandwidth ---------------------------------------------------------------- */
static double bench_term_rate(double *accepted)
{
    ipc_doorbell *db;
    if (ipc_doorbell_open(dir, &db) != IPC_OK)
        exit(2);
    ipc_writer *w = open_writer("term", 0, 1, 4u << 20);
    (void)ipc_writer_task_start(w, "t", 1, NULL, 0);
    rd_ctx c = {.r = open_reader_for(w), .db = db};
    pthread_t th;
    pthread_create(&th, NULL, reader_main, &c);
    static unsigned char buf[4096];
    memset(buf, 'x', sizeof buf);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    long n = 0;
    while ((n & 63) != 0 || now_ns() < end) {
        (void)ipc_writer_write(w, "t", 1, 1, buf, sizeof buf);
        n++;
    }
    uint64_t t1 = now_ns();
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    atomic_store(&c.stop, 1);
    ipc_doorbell_ring(db);
    pthread_join(th, NULL);
    double dt = (double)(t1 - t0) / 1e9;
    if (getenv("BENCH_VERBOSE") != NULL) {
        ipc_reader_stats rs;
        ipc_reader_get_stats(c.r, &rs);
        fprintf(stderr, "term: written %.0f MB read %.0f MB lost %.0f MB corrupt %llu events %llu\n",
                (double)n * sizeof buf / 1e6, (double)rs.term_bytes_read / 1e6,
                (double)rs.term_bytes_lost / 1e6, (unsigned long long)rs.corrupt,
                (unsigned long long)c.events);
    }
    *accepted = (double)n * sizeof buf / dt;
    double rate = (double)c.bytes / dt;
    ipc_reader_free(c.r);
    ipc_writer_close(w);
    ipc_doorbell_free(db);
    return rate;
}

static double bench_memcpy_rate(void)
{
    size_t cap = 4u << 20;
    unsigned char *ring = malloc(cap), *out = malloc(4096);
    static unsigned char buf[4096];
    memset(buf, 'x', sizeof buf);
    memset(ring, 0, cap);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    long n = 0;
    size_t p = 0;
    while ((n & 63) != 0 || now_ns() < end) {
        memcpy(ring + p, buf, sizeof buf); /* in ... */
        memcpy(out, ring + p, sizeof buf); /* ... and out, like a ring round trip */
        p = (p + sizeof buf) & (cap - 1);
        n++;
    }
    uint64_t t1 = now_ns();
    volatile unsigned char sink = out[17];
    (void)sink;
    free(ring);
    free(out);
    return (double)n * sizeof buf / ((double)(t1 - t0) / 1e9);
}

/* ---- 4. wake latency ---------------------------------------------------------------------- */
typedef struct wake_ctx {
    ipc_reader *r;
    ipc_doorbell *db;
    _Atomic uint64_t t_pub;
    _Atomic int stop, armed;
    uint64_t lat[4096];
    int n;
} wake_ctx;

static void noop_cb(void *ud, const ipc_event *ev)
{
    (void)ud;
    (void)ev;
}

static void *wake_reader(void *arg)
{
    wake_ctx *c = arg;
    while (!atomic_load(&c->stop)) {
        while (ipc_reader_poll(c->r, 64, noop_cb, NULL) > 0)
            ;
        uint32_t s = ipc_doorbell_arm(c->db);
        if (ipc_reader_pending(c->r)) {
            ipc_doorbell_disarm(c->db);
            continue;
        }
        atomic_store(&c->armed, 1);
        int woke = ipc_doorbell_wait(c->db, s, 200);
        uint64_t t = now_ns();
        ipc_doorbell_disarm(c->db);
        atomic_store(&c->armed, 0);
        uint64_t tp = atomic_exchange(&c->t_pub, 0);
        if (woke && tp && c->n < 4096)
            c->lat[c->n++] = t - tp;
    }
    return NULL;
}

static double bench_wake(int samples)
{
    ipc_doorbell *db;
    if (ipc_doorbell_open(dir, &db) != IPC_OK)
        exit(2);
    ipc_writer *w = open_writer("wake", 0, UINT32_MAX, 0); /* maps the doorbell at open */
    wake_ctx *c = calloc(1, sizeof *c);
    c->r = open_reader_for(w);
    c->db = db;
    pthread_t th;
    pthread_create(&th, NULL, wake_reader, c);
    struct timespec gap = {0, 2000000};
    for (int i = 0; i < samples; i++) {
        for (int k = 0; k < 1000 && !atomic_load(&c->armed); k++)
            nanosleep(&(struct timespec){0, 100000}, NULL);
        nanosleep(&gap, NULL); /* let it fall asleep in the kernel */
        atomic_store(&c->t_pub, now_ns());
        (void)ipc_writer_status(w, 1, NULL, 0);
    }
    nanosleep(&gap, NULL);
    atomic_store(&c->stop, 1);
    ipc_doorbell_ring(db);
    pthread_join(th, NULL);
    qsort(c->lat, (size_t)c->n, sizeof c->lat[0], cmp_u64);
    double med = c->n ? (double)c->lat[c->n / 2] : 0;
    ipc_reader_free(c->r);
    ipc_writer_close(w);
    ipc_doorbell_free(db);
    free(c);
    return med;
}

static _Atomic uint32_t fx_word;
static _Atomic uint64_t fx_t;
static _Atomic int fx_waiting, fx_stop;
static uint64_t fx_lat[4096];
static int fx_n;

static void *futex_waiter(void *arg)
{
    (void)arg;
    while (!atomic_load(&fx_stop)) {
        uint32_t v = atomic_load(&fx_word);
        atomic_store(&fx_waiting, 1);
        struct timespec to = {0, 200000000};
        syscall(SYS_futex, &fx_word, FUTEX_WAIT, v, &to, NULL, 0);
        uint64_t t = now_ns();
        atomic_store(&fx_waiting, 0);
        uint64_t tp = atomic_exchange(&fx_t, 0);
        if (tp && fx_n < 4096)
            fx_lat[fx_n++] = t - tp;
    }
    return NULL;
}

static double bench_futex(int samples)
{
    fx_n = 0; /* fresh state per round */
    atomic_store(&fx_stop, 0);
    atomic_store(&fx_waiting, 0);
    atomic_store(&fx_t, 0);
    pthread_t th;
    pthread_create(&th, NULL, futex_waiter, NULL);
    struct timespec gap = {0, 2000000};
    for (int i = 0; i < samples; i++) {
        for (int k = 0; k < 1000 && !atomic_load(&fx_waiting); k++)
            nanosleep(&(struct timespec){0, 100000}, NULL);
        nanosleep(&gap, NULL);
        atomic_store(&fx_t, now_ns());
        atomic_fetch_add(&fx_word, 1);
        syscall(SYS_futex, &fx_word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
    nanosleep(&gap, NULL);
    atomic_store(&fx_stop, 1);
    atomic_fetch_add(&fx_word, 1);
    syscall(SYS_futex, &fx_word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    pthread_join(th, NULL);
    qsort(fx_lat, (size_t)fx_n, sizeof fx_lat[0], cmp_u64);
    return fx_n ? (double)fx_lat[fx_n / 2] : 0;
}

/* ---- 5. idle CPU ------------------------------------------------------------------------- */
static double bench_idle(int agents)
{
    ipc_doorbell *db;
    if (ipc_doorbell_open(dir, &db) != IPC_OK)
        exit(2);
    ipc_writer **w = calloc((size_t)agents, sizeof *w);
    ipc_reader **r = calloc((size_t)agents, sizeof *r);
    for (int i = 0; i < agents; i++) {
        char id[16];
        snprintf(id, sizeof id, "idle%d", i);
        ipc_writer_config cfg = {.dir = dir, .agent_id = id, .project_id = "b", .log_slots = 8,
                                 .max_tasks = 1, .term_rings = UINT32_MAX};
        if (ipc_writer_open(&cfg, &w[i]) != IPC_OK || ipc_reader_open(ipc_writer_path(w[i]), &r[i]) != IPC_OK)
            exit(2);
    }
    struct rusage a, b;
    getrusage(RUSAGE_THREAD, &a);
    /* at least 2 s (getrusage granularity), except in the smoke run */
    double dur = secs < 0.3 || secs >= 2.0 ? secs : 2.0;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(dur * 1e9), next_probe = 0;
    while (now_ns() < end) {
        for (int i = 0; i < agents; i++)
            while (ipc_reader_poll(r[i], 64, noop_cb, NULL) > 0)
                ;
        uint32_t s = ipc_doorbell_arm(db);
        int p = 0;
        for (int i = 0; i < agents && !p; i++)
            p = ipc_reader_pending(r[i]);
        if (!p)
            ipc_doorbell_wait(db, s, 100);
        ipc_doorbell_disarm(db);
        uint64_t t = now_ns();
        if (t >= next_probe) { /* liveness probe, as the sidecar does (LIVENESS_PERIOD_S 0.25) */
            for (int i = 0; i < agents; i++)
                (void)ipc_reader_alive(r[i]);
            next_probe = t + 250000000u;
        }
    }
    getrusage(RUSAGE_THREAD, &b);
    uint64_t t1 = now_ns();
    double cpu = (double)(b.ru_utime.tv_sec - a.ru_utime.tv_sec + b.ru_stime.tv_sec - a.ru_stime.tv_sec) +
                 (double)(b.ru_utime.tv_usec - a.ru_utime.tv_usec + b.ru_stime.tv_usec - a.ru_stime.tv_usec) / 1e6;
    for (int i = 0; i < agents; i++) {
        ipc_reader_free(r[i]);
        unlink(ipc_writer_path(w[i]));
        ipc_writer_close(w[i]);
    }
    free(w);
    free(r);
    ipc_doorbell_free(db);
    return 100.0 * cpu / ((double)(t1 - t0) / 1e9);
}

/* ---- 6. parts of a publish, for the notes: the clock it must read, the record check, a lock --- */
static void bench_parts(double *clk, double *h4, double *h1, double *mu)
{
    enum { N = 200000 };
    volatile uint64_t sink = 0;
    uint64_t t0 = now_ns();
    for (int i = 0; i < N; i++)
        sink += ipc_now_realtime_ns();
    uint64_t t1 = now_ns();
    *clk = (double)(t1 - t0) / N;
    unsigned char rec[168];
    memset(rec, 3, sizeof rec);
    t0 = now_ns();
    for (int i = 0; i < N; i++) {
        rec[0] = (unsigned char)i;
        sink += ipc_hash4(rec, sizeof rec);
    }
    t1 = now_ns();
    *h4 = (double)(t1 - t0) / N;
    t0 = now_ns();
    for (int i = 0; i < N; i++) {
        rec[0] = (unsigned char)i;
        sink += ipc_hash(rec, sizeof rec);
    }
    t1 = now_ns();
    *h1 = (double)(t1 - t0) / N;
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    t0 = now_ns();
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&m);
        sink += (uint64_t)i;
        pthread_mutex_unlock(&m);
    }
    t1 = now_ns();
    *mu = (double)(t1 - t0) / N;
    (void)sink;
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAXR 32

int main(int argc, char **argv)
{
    secs = 0.5;
    int rounds = 5;
    reader_spin = getenv("BENCH_SPIN") != NULL;
    if (getenv("BENCH_SLOTS") != NULL) /* power of two, 8..65536 */
        rate_slots = (unsigned)atoi(getenv("BENCH_SLOTS"));
    if (argc > 1)
        secs = atof(argv[1]);
    if (secs <= 0)
        secs = 0.5;
    tu_mkdir(dir);
    double med, p999;
    if (argc > 2 && strcmp(argv[2], "lat") == 0) { /* profiling hook: publish latency only */
        bench_publish_latency(&med, &p999);
        printf("publish median %.0f ns p99.9 %.0f ns\n", med, p999);
        tu_rmdir(dir);
        return 0;
    }
    if (argc > 2 && strcmp(argv[2], "term") == 0) { /* profiling hook: terminal bytes only */
        double acc, tr = bench_term_rate(&acc), mc = bench_memcpy_rate();
        printf("term delivered %.2f GB/s accepted %.2f GB/s memcpy %.2f GB/s (%.0f %%)\n", tr / 1e9,
               acc / 1e9, mc / 1e9, 100 * tr / mc);
        tu_rmdir(dir);
        return 0;
    }
    if (argc > 2 && strcmp(argv[2], "rate") == 0) { /* profiling hook: records/s only */
        double st = bench_status_rate(), ck = bench_ck_rate();
        printf("records/s %.2f M ck_ring %.2f M (%.0f %%)\n", st / 1e6, ck / 1e6, 100 * st / ck);
        tu_rmdir(dir);
        return 0;
    }
    if (argc > 2)
        rounds = atoi(argv[2]);
    if (rounds < 1 || rounds > MAXR)
        rounds = 5;
    int wake_samples = secs < 0.3 ? 20 : 100;
    double lm[MAXR], lp[MAXR], st[MAXR], ck[MAXR], ck2[MAXR], pp[MAXR], rck[MAXR], rck2[MAXR],
        rpp[MAXR], tr[MAXR], acc[MAXR], mc[MAXR], rtr[MAXR], wk[MAXR], fx[MAXR], rwk[MAXR],
        idle[MAXR], pc[MAXR], ph4[MAXR], ph1[MAXR], pmu[MAXR];
    for (int k = 0; k < rounds; k++) {
        bench_publish_latency(&lm[k], &lp[k]);
        bench_parts(&pc[k], &ph4[k], &ph1[k], &pmu[k]);
        st[k] = bench_status_rate();
        ck[k] = bench_ck_rate();
        ck2[k] = bench_ck168_rate();
        pp[k] = bench_pipe_rate();
        rck[k] = st[k] / ck[k];
        rck2[k] = st[k] / ck2[k];
        rpp[k] = st[k] / pp[k];
        tr[k] = bench_term_rate(&acc[k]);
        mc[k] = bench_memcpy_rate();
        rtr[k] = tr[k] / mc[k];
        wk[k] = bench_wake(wake_samples);
        fx[k] = bench_futex(wake_samples);
        rwk[k] = fx[k] > 0 ? wk[k] / fx[k] : 0;
        idle[k] = bench_idle(100);
        fprintf(stderr, "round %d: publish %.0f/%.0f ns, rec/s %.2fM ck %.2fM pipe %.2fM, term %.2f "
                        "memcpy %.2f GB/s, wake %.1f futex %.1f us, idle %.3f%%\n",
                k + 1, lm[k], lp[k], st[k] / 1e6, ck[k] / 1e6, pp[k] / 1e6, tr[k] / 1e9,
                mc[k] / 1e9, wk[k] / 1e3, fx[k] / 1e3, idle[k]);
    }
    int n = rounds;
    printf("rounds: %d x %.2f s per measurement; medians over rounds; ratio = median of "
           "per-round ratios\n\n",
           n, secs);
    printf("| metric | ringside | baseline | ratio | goal |\n|---|---|---|---|---|\n");
    printf("| status publish, median (ns) | %.0f | — | — | <= 50 |\n", median(lm, n));
    printf("| status publish, p99.9 (ns) | %.0f | — | — | <= 1000 |\n", median(lp, n));
    printf("| futex wakes by the publisher while the reader is awake | %llu | — | — | 0 |\n",
           (unsigned long long)lat_wakeups);
    printf("| parts of a publish (ns): CLOCK_REALTIME read / record check hash4 168 B (old hash) "
           "/ uncontended mutex lock+unlock | %.1f / %.1f (%.1f) / %.1f | — | — | — |\n",
           median(pc, n), median(ph4, n), median(ph1, n), median(pmu, n));
    printf("| status records/s, 1 producer thread | %.2f M | ck_ring SPSC 408 B: %.2f M | %.0f %% | "
           ">= 50 %% |\n",
           median(st, n) / 1e6, median(ck, n) / 1e6, 100 * median(rck, n));
    printf("| (same, vs ck_ring SPSC 168 B = bytes used by the record) | %.2f M | ck_ring 168 B: "
           "%.2f M | %.0f %% | — |\n",
           median(st, n) / 1e6, median(ck2, n) / 1e6, 100 * median(rck2, n));
    printf("| status records/s vs pipe (408 B writes) | %.2f M | pipe: %.2f M | %.1f x | >= 20 x |\n",
           median(st, n) / 1e6, median(pp, n) / 1e6, median(rpp, n));
    printf("| terminal bytes/s delivered (4 KiB writes) | %.2f GB/s (accepted %.2f GB/s) | memcpy "
           "in+out: %.2f GB/s | %.0f %% | >= 30 %% |\n",
           median(tr, n) / 1e9, median(acc, n) / 1e9, median(mc, n) / 1e9, 100 * median(rtr, n));
    printf("| publish -> sleeping reader wake, median (us) | %.1f | bare futex wake: %.1f | %.2f x "
           "| <= 1.5 x |\n",
           median(wk, n) / 1e3, median(fx, n) / 1e3, median(rwk, n));
    printf("| reader CPU, 100 idle agents (%% of a core) | %.3f | — | — | <= 0.5 |\n",
           median(idle, n));
    tu_rmdir(dir);
    return 0;
}
