/*
 * fuzz_ipc_reader.c — the ring reader over hostile ring files.
 *
 * Input byte 0 selects the mode:
 *   even: the rest is a list of 5-byte patches {u32 offset, u8 value} applied to a valid ring
 *         image (built once with the real writer: statuses, a task with progress and terminal
 *         output, a log that wrapped) — reaches deep into record validation;
 *   odd:  the rest is the whole file image — exercises header and geometry validation.
 * The reader must never crash, hang, read out of bounds or report more than it was allowed.
 * Built with -DRINGSIDE_FUZZ=ON (clang) as a libFuzzer target; otherwise main() replays the files
 * or directories given on the command line.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc_reader.h"
#include "ipc_writer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *tmpl;
static size_t tmpl_size;
static char work_dir[PATH_MAX];
static char work_file[PATH_MAX + 16];

static void build_template(void)
{
    snprintf(work_dir, sizeof work_dir, "/dev/shm/rs-fuzz-XXXXXX");
    if (mkdtemp(work_dir) == NULL)
        abort();
    ipc_writer_config cfg = {.dir = work_dir, .agent_id = "fz", .project_id = "p", .owner = "o",
                             .log_slots = 8, .max_tasks = 4, .term_rings = 2,
                             .term_ring_bytes = 8192};
    ipc_writer *w;
    if (ipc_writer_open(&cfg, &w) != IPC_OK)
        abort();
    for (int i = 0; i < 11; i++)
        (void)ipc_writer_status(w, (uint8_t)(i % 6), "detail \xc3\xa9", 9);
    (void)ipc_writer_task_start(w, "t1", 2, "title", 5);
    char buf[700];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)('a' + i % 26);
    for (int i = 0; i < 15; i++)
        (void)ipc_writer_write(w, "t1", 2, (uint8_t)(1 + i % 2), buf, sizeof buf - (size_t)i * 31);
    (void)ipc_writer_progress(w, "t1", 2, 3, 9, "msg", 3);
    (void)ipc_writer_task_start(w, "t2", 2, NULL, 0);
    (void)ipc_writer_write(w, "t2", 2, 1, "x", 1);
    (void)ipc_writer_task_end(w, "t1", 2, 4, 7);
    int fd = open(ipc_writer_path(w), O_RDONLY);
    struct stat st;
    if (fd == -1 || fstat(fd, &st) == -1)
        abort();
    tmpl_size = (size_t)st.st_size;
    tmpl = malloc(tmpl_size);
    if (tmpl == NULL || pread(fd, tmpl, tmpl_size, 0) != (ssize_t)tmpl_size)
        abort();
    close(fd);
    unlink(ipc_writer_path(w));
    ipc_writer_close(w);
    snprintf(work_file, sizeof work_file, "%s/x.ring", work_dir);
}

static void on_event(void *ud, const ipc_event *ev)
{
    size_t *n = ud;
    (*n)++;
    /* touch everything the reader hands out */
    volatile size_t sum = strlen(ev->task_id) + strlen(ev->detail);
    if (ev->type == IPC_EV_TERM) {
        if (ev->len > IPC_TERM_CHUNK_MAX)
            abort();
        for (uint32_t i = 0; i < ev->len; i++)
            sum += ev->bytes[i];
    }
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (tmpl == NULL)
        build_template();
    if (size < 1)
        return 0;
    uint8_t *img;
    size_t img_size;
    if ((data[0] & 1u) == 0) {
        img = malloc(tmpl_size);
        memcpy(img, tmpl, tmpl_size);
        img_size = tmpl_size;
        for (size_t i = 1; i + 5 <= size; i += 5) {
            uint32_t off;
            memcpy(&off, data + i, 4);
            img[off % img_size] = data[i + 4];
        }
    } else {
        img_size = size - 1;
        img = malloc(img_size ? img_size : 1);
        memcpy(img, data + 1, img_size);
    }
    int fd = open(work_file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd == -1 || write(fd, img, img_size) != (ssize_t)img_size)
        abort();
    close(fd);
    free(img);

    ipc_reader *r;
    if (ipc_reader_open(work_file, &r) == IPC_OK) {
        ipc_reader_set_timeouts(r, 0, 0);
        const ipc_identity *id = ipc_reader_identity(r);
        if (strlen(id->agent_id) > IPC_ID_MAX)
            abort();
        (void)ipc_reader_alive(r);
        for (int round = 0; round < 8; round++) {
            size_t n = 0;
            int k = ipc_reader_poll(r, 32, on_event, &n);
            if (k > 32 || (k >= 0 && (size_t)k != n))
                abort(); /* more events than allowed, or a miscount */
            (void)ipc_reader_pending(r);
            if (k <= 0)
                break;
        }
        ipc_event ev;
        (void)ipc_reader_latest_status(r, &ev);
        (void)ipc_reader_closed_cleanly(r);
        ipc_reader_stats st;
        ipc_reader_get_stats(r, &st);
        ipc_reader_free(r);
    }
    unlink(work_file);
    return 0;
}

#ifndef RINGSIDE_LIBFUZZER
static int run_file(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (f == NULL)
        return -1;
    static uint8_t buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            while (d != NULL && (e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                char p[PATH_MAX];
                snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
                if (run_file(p) == 0)
                    runs++;
            }
            if (d != NULL)
                closedir(d);
        } else if (run_file(argv[i]) == 0) {
            runs++;
        }
    }
    /* plus a deterministic batch of random patch sets */
    uint32_t seed = 12345;
    uint8_t in[1 + 5 * 8];
    for (int k = 0; k < 3000; k++) {
        for (size_t i = 0; i < sizeof in; i++) {
            seed = seed * 1664525u + 1013904223u;
            in[i] = (uint8_t)(seed >> 24);
        }
        in[0] = 0;
        LLVMFuzzerTestOneInput(in, 1 + 5 * (size_t)(1 + k % 8));
        runs++;
    }
    printf("fuzz_ipc_reader: %d inputs replayed\n", runs);
    rmdir(work_dir);
    free(tmpl);
    return 0;
}
#endif
