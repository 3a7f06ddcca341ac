/*
 * ring_dump — test helper: reads every ring file in a directory with the sidecar's reader
 * (ipc/ipc_reader.h) and prints what it holds as JSON lines, for the tools' integration tests.
 *
 * Usage: ring_dump DIR
 * For each file (in name order) that ipc_reader_open() accepts, prints one "ring" line (identity,
 * clean close, liveness, latest status) and then one line per event until the ring is drained.
 * Files the reader rejects are reported as {"skipped": name, "error": ...}.  Terminal bytes are
 * hex-encoded.  Exit status: 0 ok, 1 on a corrupt ring or a usage error.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc_reader.h"

#define DUMP_MAX_FILES 1024
#define DUMP_MAX_POLLS 100000

static void put_str(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static const char *type_name(ipc_event_type t)
{
    switch (t) {
    case IPC_EV_STATUS:
        return "status";
    case IPC_EV_TASK_START:
        return "task_start";
    case IPC_EV_TASK_END:
        return "task_end";
    case IPC_EV_PROGRESS:
        return "progress";
    case IPC_EV_TERM:
        return "term";
    case IPC_EV_TERM_GAP:
        return "term_gap";
    case IPC_EV_LOST:
        return "lost";
    }
    return "unknown";
}

static void on_event(void *ud, const ipc_event *ev)
{
    const char *ring = ud;
    printf("{\"ring\":");
    put_str(ring);
    printf(",\"type\":\"%s\",\"ts_ns\":%llu", type_name(ev->type), (unsigned long long)ev->ts_ns);
    switch (ev->type) {
    case IPC_EV_STATUS:
        printf(",\"status\":%u,\"status_seq\":%llu,\"detail\":", ev->status,
               (unsigned long long)ev->status_seq);
        put_str(ev->detail);
        break;
    case IPC_EV_TASK_START:
        printf(",\"task\":");
        put_str(ev->task_id);
        printf(",\"title\":");
        put_str(ev->detail);
        break;
    case IPC_EV_TASK_END:
        printf(",\"task\":");
        put_str(ev->task_id);
        printf(",\"outcome\":%u,\"exit_code\":%d", ev->status, (int)ev->exit_code);
        break;
    case IPC_EV_PROGRESS:
        printf(",\"task\":");
        put_str(ev->task_id);
        printf(",\"step\":%u,\"total\":%u,\"message\":", ev->current_step, ev->total_steps);
        put_str(ev->detail);
        break;
    case IPC_EV_TERM:
        printf(",\"task\":");
        put_str(ev->task_id);
        printf(",\"stream\":%u,\"hex\":\"", ev->stream);
        for (uint32_t i = 0; i < ev->len; i++)
            printf("%02x", ev->bytes[i]);
        putchar('"');
        break;
    case IPC_EV_TERM_GAP:
        printf(",\"task\":");
        put_str(ev->task_id);
        printf(",\"stream\":%u,\"lost\":%llu", ev->stream, (unsigned long long)ev->lost);
        break;
    case IPC_EV_LOST:
        printf(",\"lost\":%llu", (unsigned long long)ev->lost);
        break;
    }
    printf("}\n");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    char *names[DUMP_MAX_FILES];
    size_t n = 0;
    int code = 0;
    struct dirent *de;
    DIR *d;

    if (argc != 2) {
        fprintf(stderr, "usage: ring_dump DIR\n");
        return 1;
    }
    d = opendir(argv[1]);
    if (d == NULL) {
        perror(argv[1]);
        return 1;
    }
    while ((de = readdir(d)) != NULL && n < DUMP_MAX_FILES) {
        if (de->d_name[0] == '.')
            continue;
        names[n] = strdup(de->d_name);
        if (names[n] != NULL)
            n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);

    for (size_t i = 0; i < n; i++) {
        char path[4096];
        ipc_reader *r = NULL;
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        int rc = ipc_reader_open(path, &r);
        if (rc != IPC_OK) {
            printf("{\"skipped\":");
            put_str(names[i]);
            printf(",\"error\":");
            put_str(ipc_strerror(rc));
            printf("}\n");
            free(names[i]);
            continue;
        }
        const ipc_identity *id = ipc_reader_identity(r);
        ipc_event st;
        printf("{\"ring\":");
        put_str(names[i]);
        printf(",\"type\":\"ring\",\"agent\":");
        put_str(id->agent_id);
        printf(",\"project\":");
        put_str(id->project_id);
        printf(",\"owner\":");
        put_str(id->owner);
        printf(",\"pid\":%d,\"closed_cleanly\":%d,\"alive\":%d", (int)id->pid,
               ipc_reader_closed_cleanly(r), ipc_reader_alive(r));
        if (ipc_reader_latest_status(r, &st) == IPC_OK)
            printf(",\"latest_status\":%u", st.status);
        printf("}\n");
        for (int k = 0; k < DUMP_MAX_POLLS; k++) {
            rc = ipc_reader_poll(r, 256, on_event, names[i]);
            if (rc <= 0)
                break;
        }
        if (rc < 0) {
            printf("{\"ring\":");
            put_str(names[i]);
            printf(",\"type\":\"corrupt\",\"error\":");
            put_str(ipc_strerror(rc));
            printf("}\n");
            code = 1;
        }
        ipc_reader_free(r);
        free(names[i]);
    }
    return code;
}
