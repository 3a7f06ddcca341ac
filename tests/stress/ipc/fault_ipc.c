/*
 * fault_ipc.c — a producer process publishing flat out is kill -9'd at a random instant, many
 * times.  The reader must: never return garbage (every status detail and terminal byte checks
 * against the pattern), never report the ring corrupt, see the death within 1 s, drain the rest
 * within a bounded number of polls (a slot claimed by the dead producer is skipped at once), and
 * never see a clean close.
 *
 * usage: fault_ipc [iterations]      (exit 0 = pass)
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../unit/ipc/ipc_test_util.h"
#include "ipc_writer.h"

static int failures;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        if (failures++ < 10)                                                                       \
            fprintf(stderr, "FAIL: " __VA_ARGS__);                                                 \
    } while (0)

static unsigned char pattern(uint64_t pos)
{
    return (unsigned char)((pos * 29u + (pos >> 10)) & 0xffu);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void child(const char *dir, int wfd, unsigned seed)
{
    ipc_writer_config cfg = {.dir = dir,
                             .agent_id = "fault",
                             .project_id = "p",
                             .log_slots = 32,
                             .term_rings = 2,
                             .term_ring_bytes = 16384};
    ipc_writer *w;
    if (ipc_writer_open(&cfg, &w) != IPC_OK)
        _exit(3);
    const char *p = ipc_writer_path(w);
    if (write(wfd, p, strlen(p) + 1) < 0)
        _exit(4);
    close(wfd);
    if (ipc_writer_task_start(w, "t", 1, "fault", 5) < 0 && 0)
        _exit(5);
    unsigned char buf[5000];
    uint64_t pos = 0;
    for (uint64_t n = 0;; n++) {
        char d[32];
        int dl = snprintf(d, sizeof d, "F:%" PRIu64, n);
        (void)ipc_writer_status(w, (uint8_t)(n % 6), d, (size_t)dl);
        seed = seed * 1103515245u + 12345u;
        size_t len = 1 + (seed >> 8) % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = pattern(pos + i);
        (void)ipc_writer_write(w, "t", 1, 1, buf, len);
        pos += len;
        (void)ipc_writer_progress(w, "t", 1, (uint32_t)n, 0, NULL, 0);
    }
}

typedef struct chk {
    int64_t last_n;
    uint64_t term_pos;
    long events;
} chk;

static void on_event(void *ud, const ipc_event *ev)
{
    chk *c = ud;
    c->events++;
    switch (ev->type) {
    case IPC_EV_STATUS: {
        long long n;
        if (sscanf(ev->detail, "F:%lld", &n) != 1 || n <= c->last_n || ev->status != n % 6)
            FAIL("status '%s' status %d after %lld\n", ev->detail, ev->status,
                 (long long)c->last_n);
        else
            c->last_n = n;
        break;
    }
    case IPC_EV_TERM:
        if (strcmp(ev->task_id, "t") != 0 || ev->len == 0 || ev->len > IPC_TERM_CHUNK_MAX) {
            FAIL("term event\n");
            break;
        }
        for (uint32_t i = 0; i < ev->len; i++) {
            if (ev->bytes[i] != pattern(c->term_pos + i)) {
                FAIL("term byte at %" PRIu64 "\n", c->term_pos + i);
                break;
            }
        }
        c->term_pos += ev->len;
        break;
    case IPC_EV_TERM_GAP:
        c->term_pos += ev->lost;
        break;
    case IPC_EV_PROGRESS:
        if (strcmp(ev->task_id, "t") != 0)
            FAIL("progress task\n");
        break;
    case IPC_EV_TASK_START:
        if (strcmp(ev->task_id, "t") != 0)
            FAIL("start task\n");
        break;
    case IPC_EV_TASK_END:
        FAIL("task end from a killed producer\n");
        break;
    case IPC_EV_LOST:
        break;
    }
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 40;
    char dir[PATH_MAX];
    tu_mkdir(dir);
    srand((unsigned)now_ns());
    uint64_t worst_detect = 0;
    long total_events = 0;
    for (int it = 0; it < iters && failures == 0; it++) {
        int pfd[2];
        if (pipe(pfd) != 0)
            return 2;
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            child(dir, pfd[1], (unsigned)rand());
        }
        close(pfd[1]);
        char path[PATH_MAX];
        ssize_t got = 0;
        while (got < (ssize_t)sizeof path) {
            ssize_t k = read(pfd[0], path + got, sizeof path - (size_t)got);
            if (k <= 0)
                break;
            got += k;
            if (memchr(path, '\0', (size_t)got))
                break;
        }
        close(pfd[0]);
        if (got <= 0 || !memchr(path, '\0', (size_t)got)) {
            FAIL("child did not report its ring\n");
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        ipc_reader *r;
        int rc = ipc_reader_open(path, &r);
        if (rc != IPC_OK) {
            FAIL("reader open %d\n", rc);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        chk c = {.last_n = -1};
        /* read while it runs, for a random 0..20 ms */
        uint64_t until = now_ns() + (uint64_t)(rand() % 20000) * 1000u;
        while (now_ns() < until) {
            if (ipc_reader_poll(r, 128, on_event, &c) < 0) {
                FAIL("poll corrupt while running\n");
                break;
            }
        }
        kill(pid, SIGKILL);
        uint64_t t_kill = now_ns();
        int alive = 1;
        while (alive == 1 && now_ns() - t_kill < 2000000000u) {
            if (ipc_reader_poll(r, 128, on_event, &c) < 0) {
                FAIL("poll corrupt after kill\n");
                break;
            }
            alive = ipc_reader_alive(r);
        }
        uint64_t detect = now_ns() - t_kill;
        if (alive != 0 || detect > 1000000000u)
            FAIL("death not seen within 1 s (alive %d, %" PRIu64 " ns)\n", alive, detect);
        if (detect > worst_detect)
            worst_detect = detect;
        /* drain: bounded */
        int polls = 0, k;
        while ((k = ipc_reader_poll(r, 128, on_event, &c)) > 0 && polls < 100000)
            polls++;
        if (k < 0)
            FAIL("poll corrupt in drain\n");
        if (ipc_reader_pending(r))
            FAIL("still pending after the drain (%d polls)\n", polls);
        if (ipc_reader_closed_cleanly(r))
            FAIL("killed producer looks cleanly closed\n");
        total_events += c.events;
        ipc_reader_free(r);
        waitpid(pid, NULL, 0);
        unlink(path);
    }
    tu_rmdir(dir);
    printf("fault_ipc: %d kills, %ld events checked, worst death detection %.3f ms, %d failures\n",
           iters, total_events, (double)worst_detect / 1e6, failures);
    return failures ? 1 : 0;
}
