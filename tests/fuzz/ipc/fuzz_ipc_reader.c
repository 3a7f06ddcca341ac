/*
 * fuzz_ipc_reader.c — the ring reader over hostile ring files, structure-aware.
 *
 * Every input is turned into a ring file of one fixed geometry (the one the real writer makes for
 * fz_writer()): 8 log slots, 2 task slots, 2 terminal rings of 8 KiB.  Input byte 0:
 *   bits 0-1  kind: 0, 1  REGIONS: a valid header (the writer's) + the rest of the input laid over
 *                          the shared regions in a fixed order (producer words, log slots, status
 *                          latch, task latches, terminal ring control, terminal data); bytes the
 *                          input does not cover come from the base image.  Mutations land on the
 *                          words the reader parses, not on padding, so coverage goes deep.
 *                          Kind 1 also truncates the file after the second poll (to a length
 *                          taken from the input): the SIGBUS guard.
 *                   2      HEADER: the input is the 4 KiB header; the regions are the base image's.
 *                   3      RAW: the input is the whole file.
 *   bits 2-6  poll budget (1..32 events per poll).
 *   bit 7     live: after the first poll the producer's drop and progress counters move (as a
 *             live agent's would), so the reader reports the loss, delivers the snapshot and
 *             reconciles the task slots.
 * The reader must never crash, hang, read out of bounds, deliver more than its budget or hand out
 * an invalid string.  The seed corpus is made by the real writer: fuzz_ipc_seeds DIR (this file
 * built with FZ_SEEDS) snapshots rings mid-stream — statuses, overflow, tasks, progress, terminal
 * output that laps, rings reused by a new owner, a reader that consumed part of a lap, a claim never
 * committed — and adds deterministic mutations of them.
 * Built as a libFuzzer target with -DRINGSIDE_FUZZ=ON (clang); otherwise linked with
 * tests/fuzz/replay_main.c, which feeds every seed once.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc_layout.h"
#include "ipc_reader.h"
#include "ipc_writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_SLOTS 8u
#define FZ_TASKS 2u
#define FZ_RINGS 2u
#define FZ_RING_BYTES 8192u

enum { SEG_PROD, SEG_LOG, SEG_STATUS, SEG_TASKS, SEG_CTL, SEG_DATA, SEG_N };
typedef struct fz_seg {
    size_t off, len;
} fz_seg;

static char work_dir[PATH_MAX];
static char work_file[PATH_MAX + 16];
static uint8_t *base_img; /* a valid ring image of the fixed geometry */
static size_t img_size;
static fz_seg seg[SEG_N];
static size_t body_len; /* sum of the segment lengths */

static void fz_cleanup(void)
{
    unlink(work_file);
    rmdir(work_dir);
}

static void fz_dir(void)
{
    if (work_dir[0] != '\0')
        return;
    snprintf(work_dir, sizeof work_dir, "/dev/shm/rs-fuzz-XXXXXX");
    if (mkdtemp(work_dir) == NULL) {
        snprintf(work_dir, sizeof work_dir, "/tmp/rs-fuzz-XXXXXX");
        if (mkdtemp(work_dir) == NULL)
            abort();
    }
    snprintf(work_file, sizeof work_file, "%s/x.ring", work_dir);
    atexit(fz_cleanup);
}

static ipc_writer *fz_writer(const char *agent)
{
    ipc_writer_config cfg = {.dir = work_dir, .agent_id = agent, .project_id = "p", .owner = "o",
                             .log_slots = FZ_SLOTS, .max_tasks = FZ_TASKS,
                             .term_rings = FZ_RINGS, .term_ring_bytes = FZ_RING_BYTES};
    ipc_writer *w;
    if (ipc_writer_open(&cfg, &w) != IPC_OK)
        abort();
    return w;
}

static uint8_t *fz_read_file(const char *path, size_t *n)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd == -1 || fstat(fd, &st) == -1)
        abort();
    uint8_t *b = malloc((size_t)st.st_size);
    if (b == NULL || pread(fd, b, (size_t)st.st_size, 0) != (ssize_t)st.st_size)
        abort();
    close(fd);
    *n = (size_t)st.st_size;
    return b;
}

static void fz_init(void)
{
    if (base_img != NULL)
        return;
    fz_dir();
    ipc_writer *w = fz_writer("fz");
    (void)ipc_writer_status(w, 2, "base", 4);
    (void)ipc_writer_task_start(w, "t1", 2, "title", 5);
    (void)ipc_writer_write(w, "t1", 2, 1, "hello\n", 6);
    (void)ipc_writer_progress(w, "t1", 2, 1, 3, "one", 3);
    base_img = fz_read_file(ipc_writer_path(w), &img_size);
    unlink(ipc_writer_path(w));
    ipc_writer_close(w);
    const ipc_header *h = (const ipc_header *)(const void *)base_img;
    /* only the bytes the reader parses; padding and the consumer region are left out */
    seg[SEG_PROD] = (fz_seg){h->regions[0].offset, offsetof(ipc_producer, pad1)};
    seg[SEG_LOG] = (fz_seg){h->regions[2].offset, (size_t)FZ_SLOTS * sizeof(ipc_log_slot)};
    seg[SEG_STATUS] = (fz_seg){h->regions[3].offset, offsetof(ipc_status_slot, pad1)};
    seg[SEG_TASKS] = (fz_seg){h->regions[4].offset, (size_t)FZ_TASKS * sizeof(ipc_task_slot)};
    seg[SEG_CTL] = (fz_seg){h->regions[5].offset, (size_t)FZ_RINGS * sizeof(ipc_term_ctl)};
    seg[SEG_DATA] = (fz_seg){h->regions[6].offset, (size_t)FZ_RINGS * FZ_RING_BYTES};
    body_len = 0;
    for (int i = 0; i < SEG_N; i++)
        body_len += seg[i].len;
}

/* Lays body (n bytes, at most body_len used) over the segments of img. */
static void body_apply(uint8_t *img, const uint8_t *body, size_t n)
{
    for (int i = 0; i < SEG_N && n > 0; i++) {
        size_t k = n < seg[i].len ? n : seg[i].len;
        memcpy(img + seg[i].off, body, k);
        body += k;
        n -= k;
    }
}

#ifdef FZ_SEEDS
/* The inverse: extracts the body of a ring image of the fixed geometry. */
static void body_extract(const uint8_t *img, uint8_t *body)
{
    for (int i = 0; i < SEG_N; i++) {
        memcpy(body, img + seg[i].off, seg[i].len);
        body += seg[i].len;
    }
}
#endif

static void on_event(void *ud, const ipc_event *ev)
{
    size_t *n = ud;
    (*n)++;
    size_t a = strnlen(ev->task_id, sizeof ev->task_id), b = strnlen(ev->detail, sizeof ev->detail);
    if (a == sizeof ev->task_id || b == sizeof ev->detail)
        abort(); /* unterminated string handed out */
    if (ev->type < IPC_EV_STATUS || ev->type > IPC_EV_LOST)
        abort();
    volatile size_t sum = a + b;
    if (ev->type == IPC_EV_TERM) {
        if (ev->len == 0 || ev->len > IPC_TERM_CHUNK_MAX || ev->bytes == NULL)
            abort();
        for (uint32_t i = 0; i < ev->len; i++)
            sum += ev->bytes[i];
    }
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_init();
    if (size < 1)
        return 0;
    unsigned kind = data[0] & 3u, budget = 1u + ((data[0] >> 2) & 31u), live = data[0] >> 7;
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    uint8_t *img;
    size_t isz;
    if (kind == 3) {
        isz = n;
        img = malloc(n ? n : 1);
        if (img == NULL)
            abort();
        if (n)
            memcpy(img, in, n);
    } else {
        isz = img_size;
        img = malloc(isz);
        if (img == NULL)
            abort();
        memcpy(img, base_img, isz);
        if (kind == 2)
            memcpy(img, in, n < IPC_HEADER_SIZE ? n : IPC_HEADER_SIZE);
        else
            body_apply(img, in, n);
    }
    int fd = open(work_file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd == -1 || write(fd, img, isz) != (ssize_t)isz)
        abort();
    close(fd);
    free(img);

    ipc_reader *r;
    int orc = ipc_reader_open(work_file, &r);
    size_t total = 0;
    int last = orc;
    if (orc == IPC_OK) {
        ipc_reader_set_timeouts(r, 0, 0);
        const ipc_identity *id = ipc_reader_identity(r);
        if (strlen(id->agent_id) > IPC_ID_MAX)
            abort();
        (void)ipc_reader_alive(r); /* no lock held: the agent is dead, claims are skipped */
        for (int round = 0; round < 64; round++) {
            size_t got = 0;
            int k = ipc_reader_poll(r, budget, on_event, &got);
            if (k > (int)budget || (k >= 0 && (size_t)k != got))
                abort(); /* more events than allowed, or a miscount */
            total += got;
            last = k;
            if (round == 0 && live && kind != 3) {
                /* a live agent dropped records and updated progress since */
                int wfd = open(work_file, O_RDWR);
                uint64_t v[2];
                size_t at = seg[SEG_PROD].off + offsetof(ipc_producer, events_dropped);
                if (wfd == -1 || pread(wfd, v, sizeof v, (off_t)at) != (ssize_t)sizeof v)
                    abort();
                v[0] += 1u + (size > 1 ? data[size - 1] % 7u : 0u);
                v[1] += 1u;
                if (pwrite(wfd, v, sizeof v, (off_t)at) != (ssize_t)sizeof v)
                    abort();
                close(wfd);
            }
            if (round == 1 && kind == 1) { /* truncated under the reader */
                uint32_t cut = 0;
                if (size >= 5)
                    memcpy(&cut, data + size - 4, 4);
                if (truncate(work_file, (off_t)(cut % img_size)) != 0)
                    abort();
            }
            (void)ipc_reader_pending(r);
            if (k < 0 || (k == 0 && !(live && round == 0)))
                break;
        }
        ipc_event ev;
        if (ipc_reader_latest_status(r, &ev) == IPC_OK &&
            strnlen(ev.detail, sizeof ev.detail) == sizeof ev.detail)
            abort();
        (void)ipc_reader_closed_cleanly(r);
        ipc_reader_stats st;
        ipc_reader_get_stats(r, &st);
        ipc_reader_free(r);
    }
    if (getenv("FZ_VERBOSE") != NULL) /* replay diagnostics: open code, events, last poll */
        fprintf(stderr, "fz: kind %u budget %u open %d events %zu last %d\n", kind, budget, orc,
                total, last);
    unlink(work_file);
    return 0;
}

#ifdef FZ_SEEDS
/* ---- seed corpus from the real writer --------------------------------------------------------- */

static const char *out_dir;
static int seeds;
static uint8_t *body_buf;
static uint8_t *snaps[16];
static int nsnaps;

static void put(const char *name, uint8_t mode, const uint8_t *p, size_t n)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%03d-%s", out_dir, seeds++, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&mode, 1, 1, f) != 1 || (n && fwrite(p, 1, n, f) != n) || fclose(f))
        abort();
}

/* Snapshot of a live ring: REGIONS seeds with a large and a tiny budget. */
static void snap(ipc_writer *w, const char *name)
{
    size_t n;
    uint8_t *img = fz_read_file(ipc_writer_path(w), &n);
    if (n != img_size)
        abort();
    body_extract(img, body_buf);
    put(name, (uint8_t)(31u << 2), body_buf, body_len);
    char v[96];
    snprintf(v, sizeof v, "%s-b1", name);
    put(v, 0, body_buf, body_len);
    snprintf(v, sizeof v, "%s-live", name); /* counters move after the first poll */
    put(v, (uint8_t)(0x80u | (7u << 2)), body_buf, body_len);
    snprintf(v, sizeof v, "%s-trunc", name); /* truncated after the second poll */
    put(v, (uint8_t)(0x80u | (1u << 2) | 1u), body_buf, body_len);
    if (nsnaps < 16) {
        snaps[nsnaps] = malloc(body_len);
        if (snaps[nsnaps] == NULL)
            abort();
        memcpy(snaps[nsnaps++], body_buf, body_len);
    }
    free(img);
}

static void close_w(ipc_writer *w)
{
    unlink(ipc_writer_path(w));
    ipc_writer_close(w);
}

static void noop(void *ud, const ipc_event *ev)
{
    (void)ud;
    (void)ev;
}

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_ipc_seeds DIR\n");
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0755);
    fz_init();
    body_buf = malloc(body_len);
    char big[20000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i % 61 == 60 ? '\n' : 'a' + (char)(i % 26));

    /* statuses; then overflow (nothing reads: 8 slots, 11 records) */
    ipc_writer *w = fz_writer("s");
    (void)ipc_writer_status(w, 1, "one", 3);
    snap(w, "status-1");
    for (int i = 0; i < 10; i++)
        (void)ipc_writer_status(w, (uint8_t)(i % 6), "d\xc3\xa9tail", 7);
    snap(w, "status-overflow");
    close_w(w);

    /* task lifecycle with progress and both streams */
    w = fz_writer("t");
    (void)ipc_writer_task_start(w, "t1", 2, "title", 5);
    (void)ipc_writer_progress(w, "t1", 2, 1, 4, "first", 5);
    snap(w, "task-start-progress");
    (void)ipc_writer_write(w, "t1", 2, 1, big, 1000);
    (void)ipc_writer_write(w, "t1", 2, 2, big + 7, 300);
    (void)ipc_writer_write(w, "t1", 2, 1, big, 5000);
    snap(w, "task-term");
    (void)ipc_writer_task_end(w, "t1", 2, 4, 0);
    snap(w, "task-end");
    close_w(w);

    /* terminal output that laps its 8 KiB ring; an oversized write */
    w = fz_writer("lap");
    (void)ipc_writer_task_start(w, "t", 1, NULL, 0);
    for (int i = 0; i < 7; i++)
        (void)ipc_writer_write(w, "t", 1, 1, big + i, 2100);
    snap(w, "term-lapped");
    (void)ipc_writer_write(w, "t", 1, 1, big, sizeof big);
    snap(w, "term-oversized");
    close_w(w);

    /* rings reused by new owners; a third task finds no slot; one finds no ring */
    w = fz_writer("reuse");
    (void)ipc_writer_task_start(w, "a", 1, NULL, 0);
    (void)ipc_writer_write(w, "a", 1, 1, big, 3000);
    (void)ipc_writer_write(w, "a", 1, 2, big, 100);
    (void)ipc_writer_task_end(w, "a", 1, 5, 2);
    (void)ipc_writer_task_start(w, "b", 1, "b", 1);
    (void)ipc_writer_write(w, "b", 1, 1, big, 2000);
    (void)ipc_writer_task_start(w, "c", 1, NULL, 0);
    (void)ipc_writer_write(w, "c", 1, 2, big, 200);
    (void)ipc_writer_write(w, "c", 1, 1, big, 200);
    (void)ipc_writer_progress(w, "c", 1, 9, 3, "over", 4);
    snap(w, "rings-reused");
    close_w(w);

    /* a reader that consumed part of a lap: FREE(t+N) words mid-ring; then more */
    w = fz_writer("mid");
    ipc_reader *r;
    if (ipc_reader_open(ipc_writer_path(w), &r) != IPC_OK)
        abort();
    (void)ipc_writer_task_start(w, "m", 1, NULL, 0);
    for (int i = 0; i < 6; i++)
        (void)ipc_writer_status(w, 1, "x", 1);
    (void)ipc_writer_write(w, "m", 1, 1, big, 6000);
    (void)ipc_reader_poll(r, 5, noop, NULL);
    for (int i = 0; i < 4; i++)
        (void)ipc_writer_status(w, 3, "y", 1);
    (void)ipc_writer_write(w, "m", 1, 1, big, 5000);
    snap(w, "mid-lap");
    (void)ipc_reader_poll(r, 64, noop, NULL);
    (void)ipc_writer_task_end(w, "m", 1, 3, 1);
    snap(w, "mid-lap-end");
    ipc_reader_free(r);
    close_w(w);

    /* a claim never committed (a producer killed between claim and commit) */
    w = fz_writer("stuck");
    (void)ipc_writer_status(w, 1, "a", 1);
    {
        size_t n;
        uint8_t *img = fz_read_file(ipc_writer_path(w), &n);
        ipc_producer *p = (ipc_producer *)(void *)(img + seg[SEG_PROD].off);
        atomic_fetch_add(&p->log_tail, 1);
        body_extract(img, body_buf);
        put("stuck-claim", (uint8_t)(31u << 2), body_buf, body_len);
        free(img);
    }
    close_w(w);

    /* header and raw images of the base ring */
    put("header", 2, base_img, IPC_HEADER_SIZE);
    put("raw", 3, base_img, img_size);
    put("raw-short", 3, base_img, IPC_HEADER_SIZE + 100);
    put("empty", 3, NULL, 0);

    /* deterministic mutations of the snapshots: 1..8 words of what the reader parses */
    int valid = seeds;
    for (int k = 0; k < 300; k++) {
        memcpy(body_buf, snaps[rnd() % (uint32_t)nsnaps], body_len);
        int nw = 1 + (int)(rnd() % 8u);
        for (int i = 0; i < nw; i++) {
            size_t at = (rnd() % (uint32_t)(body_len / 8)) * 8;
            uint64_t v;
            switch (rnd() % 4u) {
            case 0: v = 0; break;
            case 1: v = ~UINT64_C(0); break;
            case 2: v = rnd() % 64u; break;
            default: v = ((uint64_t)rnd() << 32) ^ rnd(); break;
            }
            memcpy(body_buf + at, &v, 8);
        }
        put("mut", (uint8_t)(rnd() % 256u & ~3u), body_buf, body_len);
        uint8_t hdr[IPC_HEADER_SIZE];
        memcpy(hdr, base_img, sizeof hdr);
        size_t at = (rnd() % (IPC_HEADER_SIZE / 4u)) * 4u;
        uint32_t v = rnd() % 3u == 0 ? 0 : rnd();
        memcpy(hdr + at, &v, 4);
        put("mut-header", 2, hdr, sizeof hdr);
    }
    printf("fuzz_ipc_seeds: %d seeds (%d from the writer) in %s, body %zu bytes\n", seeds, valid,
           out_dir, body_len);
    free(body_buf);
    for (int i = 0; i < nsnaps; i++)
        free(snaps[i]);
    rmdir(work_dir);
    return 0;
}
#endif
