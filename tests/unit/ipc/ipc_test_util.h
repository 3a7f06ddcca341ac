/* ipc_test_util.h — helpers for the ring tests: a private shm dir, finding the ring file, and an
 * event collector. */
#ifndef RINGSIDE_IPC_TEST_UTIL_H
#define RINGSIDE_IPC_TEST_UTIL_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc_reader.h"

/* Creates a fresh directory under /dev/shm (tmpfs, as in production). */
static inline void tu_mkdir(char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "/dev/shm/rs-test-XXXXXX");
    if (mkdtemp(out) == NULL) {
        snprintf(out, PATH_MAX, "/tmp/rs-test-XXXXXX");
        if (mkdtemp(out) == NULL)
            abort();
    }
}

/* Removes dir and its files (one level). */
static inline void tu_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char p[PATH_MAX + 512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0')))
            continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Finds the n-th (0-based) *.ring file in dir; returns 1 if found. */
static inline int tu_find_ring(const char *dir, int n, char out[PATH_MAX])
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".ring") == 0 && e->d_name[0] != '.') {
            if (n-- == 0) {
                if (snprintf(out, PATH_MAX, "%.2048s/%.1024s", dir, e->d_name) >= PATH_MAX)
                    break;
                found = 1;
                break;
            }
        }
    }
    closedir(d);
    return found;
}

#define TU_MAX_EVENTS 4096
#define TU_TERM_MAX (4u << 20)

typedef struct tu_events {
    int n;
    ipc_event ev[TU_MAX_EVENTS];
    unsigned char *term; /* concatenated IPC_EV_TERM bytes (TU_TERM_MAX) */
    size_t term_len;
    uint64_t gap;
    uint64_t lost;
} tu_events;

static inline void tu_collect(void *ud, const ipc_event *ev)
{
    tu_events *c = ud;
    if (c->n < TU_MAX_EVENTS) {
        c->ev[c->n] = *ev;
        c->ev[c->n].bytes = NULL;
        c->n++;
    }
    if (ev->type == IPC_EV_TERM && c->term != NULL && c->term_len + ev->len <= TU_TERM_MAX) {
        memcpy(c->term + c->term_len, ev->bytes, ev->len);
        c->term_len += ev->len;
    }
    if (ev->type == IPC_EV_TERM_GAP)
        c->gap += ev->lost;
    if (ev->type == IPC_EV_LOST)
        c->lost += ev->lost;
}

static inline tu_events *tu_events_new(void)
{
    tu_events *c = calloc(1, sizeof *c);
    c->term = malloc(TU_TERM_MAX);
    return c;
}

static inline void tu_events_free(tu_events *c)
{
    if (c) {
        free(c->term);
        free(c);
    }
}

/* Polls until nothing more comes (bounded). */
static inline int tu_drain(ipc_reader *r, tu_events *c)
{
    int total = 0;
    for (int i = 0; i < 100000; i++) {
        int k = ipc_reader_poll(r, 64, tu_collect, c);
        if (k < 0)
            return k;
        if (k == 0)
            break;
        total += k;
    }
    return total;
}

#endif
