/* test_ipc_ring.c — the ring writer and reader together: every record kind, wrap-around, each
 * overflow policy, liveness, doorbell, stuck-slot skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "ipc_layout.h"
#include "ipc_test_util.h"
#include "ipc_writer.h"

typedef struct fx {
    char dir[PATH_MAX];
    char path[PATH_MAX];
    ipc_writer *w;
    ipc_reader *r;
    tu_events *c;
} fx;

static int fx_open(fx *f, uint32_t slots, uint32_t rings, uint32_t ring_bytes)
{
    ipc_writer_config cfg = {.dir = f->dir,
                             .agent_id = "agent-1",
                             .project_id = "proj:a",
                             .owner = "alice@example",
                             .log_slots = slots,
                             .term_rings = rings,
                             .term_ring_bytes = ring_bytes};
    int rc = ipc_writer_open(&cfg, &f->w);
    if (rc != IPC_OK)
        return rc;
    if (!tu_find_ring(f->dir, 0, f->path))
        return -100;
    return ipc_reader_open(f->path, &f->r);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    tu_mkdir(f->dir);
    f->c = tu_events_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ipc_reader_free(f->r);
    ipc_writer_close(f->w);
    tu_rmdir(f->dir);
    tu_events_free(f->c);
    free(f);
    return 0;
}

static void test_open_identity(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 0, 0), IPC_OK);
    const ipc_identity *id = ipc_reader_identity(f->r);
    assert_string_equal(id->agent_id, "agent-1");
    assert_string_equal(id->project_id, "proj:a");
    assert_string_equal(id->owner, "alice@example");
    assert_int_equal(id->pid, getpid());
    assert_true(id->start_ns > 0);
    assert_non_null(strstr(f->path, "/agent-1."));
    assert_string_equal(ipc_reader_path(f->r), f->path);
    assert_string_equal(ipc_writer_path(f->w), f->path);
    assert_int_equal(ipc_reader_pending(f->r), 0);
    ipc_event ev;
    assert_int_equal(ipc_reader_latest_status(f->r, &ev), IPC_ENOTREADY);
    assert_int_equal(ipc_reader_alive(f->r), 1);
    assert_int_equal(ipc_reader_closed_cleanly(f->r), 0);
    /* no temporary file left behind */
    char other[PATH_MAX];
    assert_false(tu_find_ring(f->dir, 1, other));
}

static void test_missing_dir(void **state)
{
    (void)state;
    ipc_writer *w = NULL;
    ipc_writer_config cfg = {.dir = "/nonexistent/ringside", .agent_id = "a", .project_id = "p"};
    assert_int_equal(ipc_writer_open(&cfg, &w), IPC_ESYS);
    assert_null(w);
    cfg.dir = "/tmp";
    cfg.agent_id = "bad id";
    assert_int_equal(ipc_writer_open(&cfg, &w), IPC_EINVAL);
    cfg.agent_id = "a";
    cfg.log_slots = 12; /* not a power of two */
    assert_int_equal(ipc_writer_open(&cfg, &w), IPC_EINVAL);
}

static void test_status_roundtrip(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 0, 0), IPC_OK);
    assert_int_equal(ipc_writer_status(f->w, 1, "working hard", 12), IPC_OK);
    assert_int_equal(ipc_writer_status(f->w, 2, NULL, 0), IPC_OK);
    assert_int_equal(ipc_writer_status(f->w, 0, "\xff\xfe ok", 5), IPC_OK);
    assert_int_equal(ipc_reader_pending(f->r), 1);
    assert_int_equal(tu_drain(f->r, f->c), 3);
    assert_int_equal(f->c->n, 3);
    assert_int_equal(f->c->ev[0].type, IPC_EV_STATUS);
    assert_int_equal(f->c->ev[0].status, 1);
    assert_int_equal(f->c->ev[0].status_seq, 1);
    assert_string_equal(f->c->ev[0].detail, "working hard");
    assert_true(f->c->ev[0].ts_ns > 1600000000000000000ull);
    assert_int_equal(f->c->ev[1].status, 2);
    assert_string_equal(f->c->ev[1].detail, "");
    assert_string_equal(f->c->ev[2].detail, "?? ok"); /* invalid UTF-8 sanitised */
    ipc_event ev;
    assert_int_equal(ipc_reader_latest_status(f->r, &ev), IPC_OK);
    assert_int_equal(ev.status, 0);
    assert_int_equal(ev.status_seq, 3);
    assert_int_equal(ipc_reader_pending(f->r), 0);
    ipc_reader_stats st;
    ipc_reader_get_stats(f->r, &st);
    assert_int_equal(st.records_read, 3);
}

static void test_log_wraparound(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 8, 0, 0), IPC_OK);
    /* many laps over 8 slots, in bursts of 5 */
    uint64_t seq = 0;
    for (int lap = 0; lap < 50; lap++) {
        for (int i = 0; i < 5; i++)
            assert_int_equal(ipc_writer_status(f->w, (uint8_t)(i % 6), "x", 1), IPC_OK);
        f->c->n = 0;
        assert_int_equal(tu_drain(f->r, f->c), 5);
        for (int i = 0; i < 5; i++) {
            assert_int_equal(f->c->ev[i].status_seq, ++seq);
            assert_int_equal(f->c->ev[i].status, i % 6);
        }
    }
}

static void test_log_overflow(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 8, 0, 0), IPC_OK);
    int ok = 0, full = 0;
    for (int i = 0; i < 20; i++) {
        int rc = ipc_writer_status(f->w, (uint8_t)(i % 6), NULL, 0);
        if (rc == IPC_OK)
            ok++;
        else if (rc == IPC_EFULL)
            full++;
    }
    assert_int_equal(ok, 8);
    assert_int_equal(full, 12);
    ipc_writer_stats ws;
    ipc_writer_get_stats(f->w, &ws);
    assert_int_equal(ws.events_dropped, 12);
    assert_int_equal(tu_drain(f->r, f->c), 10);
    for (int i = 0; i < 8; i++)
        assert_int_equal(f->c->ev[i].status_seq, (uint64_t)i + 1);
    assert_int_equal(f->c->ev[8].type, IPC_EV_LOST);
    assert_int_equal(f->c->ev[8].lost, 12);
    assert_int_equal(f->c->ev[9].type, IPC_EV_STATUS); /* latest state after the loss */
    assert_int_equal(f->c->ev[9].status_seq, 20);
    assert_int_equal(f->c->ev[9].status, 19 % 6);
    /* the log works again */
    assert_int_equal(ipc_writer_status(f->w, 4, "done", 4), IPC_OK);
    f->c->n = 0;
    assert_int_equal(tu_drain(f->r, f->c), 1);
    assert_int_equal(f->c->ev[0].status_seq, 21);
}

static void test_task_lifecycle_and_order(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 0, 0), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "t1", 2, "build it", 8), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "t1", 2, NULL, 0), IPC_EEXIST);
    assert_int_equal(ipc_writer_progress(f->w, "t1", 2, 3, 10, "compiling", 9), IPC_OK);
    assert_int_equal(ipc_writer_progress(f->w, "t1", 2, 4, 10, "linking", 7), IPC_OK);
    assert_int_equal(ipc_writer_progress(f->w, "zz", 2, 4, 10, NULL, 0), IPC_ENOTASK);
    const char out[] = "\033[31mred\033[0m\n";
    assert_int_equal(ipc_writer_write(f->w, "t1", 2, 1, out, sizeof out - 1), IPC_OK);
    assert_int_equal(ipc_writer_write(f->w, "t1", 2, 2, "err", 3), IPC_OK);
    assert_int_equal(ipc_writer_write(f->w, "t1", 2, 3, "err", 3), IPC_EINVAL);
    assert_int_equal(ipc_writer_task_end(f->w, "t1", 2, 4, 3), IPC_OK);
    assert_int_equal(ipc_writer_task_end(f->w, "t1", 2, 4, 3), IPC_ENOTASK);
    assert_int_equal(ipc_writer_write(f->w, "t1", 2, 1, "late", 4), IPC_ENOTASK);

    tu_drain(f->r, f->c);
    /* START, (terminal bytes), END: bytes of the task come before its end. */
    assert_true(f->c->n >= 4);
    assert_int_equal(f->c->ev[0].type, IPC_EV_TASK_START);
    assert_string_equal(f->c->ev[0].task_id, "t1");
    assert_string_equal(f->c->ev[0].detail, "build it");
    int end = -1, out_seen = 0, err_seen = 0;
    for (int i = 1; i < f->c->n; i++) {
        if (f->c->ev[i].type == IPC_EV_TASK_END)
            end = i;
        if (f->c->ev[i].type == IPC_EV_TERM) {
            assert_int_equal(end, -1);
            assert_string_equal(f->c->ev[i].task_id, "t1");
            if (f->c->ev[i].stream == 1)
                out_seen = 1;
            else
                err_seen = 1;
        }
    }
    assert_true(out_seen && err_seen);
    assert_int_equal(end, f->c->n - 1);
    assert_int_equal(f->c->ev[end].status, 4);
    assert_int_equal(f->c->ev[end].exit_code, 3);
    assert_int_equal(f->c->gap, 0);
    assert_int_equal(f->c->term_len, sizeof out - 1 + 3);
    assert_memory_equal(f->c->term, out, sizeof out - 1); /* stdout ring is drained first */
}

static void test_progress_latest_only(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 0, 0), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "p", 1, NULL, 0), IPC_OK);
    tu_drain(f->r, f->c);
    f->c->n = 0;
    for (uint32_t i = 1; i <= 1000; i++)
        assert_int_equal(ipc_writer_progress(f->w, "p", 1, i, 1000, "m", 1), IPC_OK);
    assert_int_equal(tu_drain(f->r, f->c), 1);
    assert_int_equal(f->c->ev[0].type, IPC_EV_PROGRESS);
    assert_int_equal(f->c->ev[0].current_step, 1000);
    assert_int_equal(f->c->ev[0].total_steps, 1000);
    assert_string_equal(f->c->ev[0].detail, "m");
    assert_int_equal(tu_drain(f->r, f->c), 0);
}

/* Terminal ring: write far more than it holds without reading: the newest bytes survive and
 * delivered + gap == written exactly. */
static void test_term_overwrite_oldest(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 1, 16384), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "t", 1, NULL, 0), IPC_OK);
    static unsigned char buf[200000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 7 + i / 251);
    size_t off = 0, step = 1;
    while (off < sizeof buf) {
        size_t n = step < sizeof buf - off ? step : sizeof buf - off;
        assert_int_equal(ipc_writer_write(f->w, "t", 1, 1, buf + off, n), IPC_OK);
        off += n;
        step = step * 3 % 5000 + 1;
    }
    assert_int_equal(ipc_writer_task_end(f->w, "t", 1, 4, 0), IPC_OK);
    tu_drain(f->r, f->c);
    assert_int_equal(f->c->gap + f->c->term_len, sizeof buf);
    assert_true(f->c->term_len > 8000);
    assert_memory_equal(f->c->term, buf + sizeof buf - f->c->term_len, f->c->term_len);
    assert_int_equal(f->c->ev[f->c->n - 1].type, IPC_EV_TASK_END);
    ipc_reader_stats st;
    ipc_reader_get_stats(f->r, &st);
    assert_int_equal(st.term_bytes_lost, f->c->gap);
    assert_int_equal(st.term_bytes_read, f->c->term_len);
}

/* Terminal ring with the reader keeping up: every byte arrives, chunks <= 4096, across many
 * wraps of a small ring. */
static void test_term_wrap_complete(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 1, 8192), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "t", 1, NULL, 0), IPC_OK);
    static unsigned char buf[300000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i ^ (i >> 9));
    size_t off = 0, step = 1;
    while (off < sizeof buf) {
        size_t n = step < sizeof buf - off ? step : sizeof buf - off;
        assert_int_equal(ipc_writer_write(f->w, "t", 1, 2, buf + off, n), IPC_OK);
        off += n;
        step = step * 5 % 3000 + 1;
        if (f->c->n > TU_MAX_EVENTS - 200)
            f->c->n = 0;
        assert_true(tu_drain(f->r, f->c) >= 0);
    }
    assert_int_equal(f->c->gap, 0);
    assert_int_equal(f->c->term_len, sizeof buf);
    assert_memory_equal(f->c->term, buf, sizeof buf);
    for (int i = 0; i < f->c->n; i++)
        if (f->c->ev[i].type == IPC_EV_TERM)
            assert_true(f->c->ev[i].len <= IPC_TERM_CHUNK_MAX && f->c->ev[i].stream == 2);
}

/* No free terminal ring: bytes are counted and reported as a gap before the task end. */
static void test_term_no_ring(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 1, 8192), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "a", 1, NULL, 0), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "b", 1, NULL, 0), IPC_OK);
    assert_int_equal(ipc_writer_write(f->w, "a", 1, 1, "hello", 5), IPC_OK);
    assert_int_equal(ipc_writer_write(f->w, "b", 1, 1, "world!", 6), IPC_OK); /* no ring left */
    assert_int_equal(ipc_writer_task_end(f->w, "b", 1, 3, 1), IPC_OK);
    assert_int_equal(ipc_writer_task_end(f->w, "a", 1, 4, 0), IPC_OK);
    ipc_writer_stats ws;
    ipc_writer_get_stats(f->w, &ws);
    assert_int_equal(ws.term_bytes_dropped, 6);
    tu_drain(f->r, f->c);
    assert_int_equal(f->c->gap, 6);
    assert_int_equal(f->c->term_len, 5);
    int saw_gap_b = 0;
    for (int i = 0; i < f->c->n; i++) {
        if (f->c->ev[i].type == IPC_EV_TERM_GAP) {
            assert_string_equal(f->c->ev[i].task_id, "b");
            assert_int_equal(f->c->ev[i + 1].type, IPC_EV_TASK_END);
            saw_gap_b = 1;
        }
    }
    assert_true(saw_gap_b);
    /* the ring is reused by the next task */
    assert_int_equal(ipc_writer_task_start(f->w, "c", 1, NULL, 0), IPC_OK);
    assert_int_equal(ipc_writer_write(f->w, "c", 1, 1, "again", 5), IPC_OK);
    f->c->n = 0;
    f->c->term_len = 0;
    tu_drain(f->r, f->c);
    assert_int_equal(f->c->term_len, 5);
    assert_memory_equal(f->c->term, "again", 5);
}

static void test_small_budget(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 0, 0), IPC_OK);
    assert_int_equal(ipc_writer_task_start(f->w, "t", 1, NULL, 0), IPC_OK);
    for (int i = 0; i < 50; i++)
        assert_int_equal(ipc_writer_write(f->w, "t", 1, 1, "0123456789abcdef", 16), IPC_OK);
    assert_int_equal(ipc_writer_task_end(f->w, "t", 1, 4, 0), IPC_OK);
    int rounds = 0, k;
    while ((k = ipc_reader_poll(f->r, 1, tu_collect, f->c)) > 0) {
        assert_int_equal(k, 1);
        rounds++;
        assert_true(rounds < 100);
    }
    assert_int_equal(k, 0);
    assert_int_equal(f->c->term_len, 800);
    assert_int_equal(f->c->ev[f->c->n - 1].type, IPC_EV_TASK_END);
}

static void test_alive_and_close(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 0, 0, 0), IPC_OK);
    assert_int_equal(ipc_writer_status(f->w, 4, "bye", 3), IPC_OK);
    assert_int_equal(ipc_reader_alive(f->r), 1);
    ipc_writer_close(f->w);
    f->w = NULL;
    assert_int_equal(ipc_reader_alive(f->r), 0);
    assert_int_equal(ipc_reader_closed_cleanly(f->r), 1);
    /* last words are still readable */
    assert_int_equal(tu_drain(f->r, f->c), 1);
    assert_string_equal(f->c->ev[0].detail, "bye");
}

/* A producer that claimed a slot and never committed: skipped after the timeout, counted. */
static void test_stuck_slot_skipped(void **state)
{
    fx *f = *state;
    assert_int_equal(fx_open(f, 8, 0, 0), IPC_OK);
    ipc_reader_set_timeouts(f->r, 50, 100);
    /* emulate a claim that died before marking BUSY: bump the tail behind the writer's back */
    int fd = open(f->path, O_RDWR);
    assert_true(fd >= 0);
    ipc_header h;
    assert_int_equal(pread(fd, &h, sizeof h, 0), sizeof h);
    uint8_t *base = mmap(NULL, (size_t)h.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(base != MAP_FAILED);
    ipc_producer *p = (ipc_producer *)(void *)(base + h.regions[0].offset);
    atomic_fetch_add(&p->log_tail, 1);
    assert_int_equal(ipc_writer_status(f->w, 1, "after", 5), IPC_OK);
    /* blocked, not yet; the reader re-reads the log tail on every 8th idle poll, so the claim
     * is seen (and its skip timer started) within 8 polls */
    for (int i = 0; i < 8; i++)
        assert_int_equal(ipc_reader_poll(f->r, 64, tu_collect, f->c), 0);
    struct timespec ts = {0, 80 * 1000000L};
    nanosleep(&ts, NULL);
    tu_drain(f->r, f->c);
    assert_int_equal(f->c->n, 2);
    assert_int_equal(f->c->ev[0].type, IPC_EV_LOST);
    assert_int_equal(f->c->ev[1].type, IPC_EV_STATUS);
    assert_string_equal(f->c->ev[1].detail, "after");
    /* the skipped slot is handed on (leaked producer: reclaimed by the reader); the log laps on */
    nanosleep(&ts, NULL);
    nanosleep(&ts, NULL);
    for (int lap = 0; lap < 4; lap++) {
        for (int i = 0; i < 6; i++)
            ipc_writer_status(f->w, 2, NULL, 0);
        f->c->n = 0;
        tu_drain(f->r, f->c);
        nanosleep(&ts, NULL);
        nanosleep(&ts, NULL);
    }
    ipc_writer_stats ws;
    ipc_writer_get_stats(f->w, &ws);
    assert_true(ws.events_published >= 20);
    close(fd);
    munmap(base, (size_t)h.file_size);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_identity, setup, teardown),
        cmocka_unit_test(test_missing_dir),
        cmocka_unit_test_setup_teardown(test_status_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_wraparound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_lifecycle_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_latest_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_term_overwrite_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_term_wrap_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_term_no_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alive_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stuck_slot_skipped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
