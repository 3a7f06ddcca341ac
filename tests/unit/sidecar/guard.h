/* guard.h — places test input so that it ends exactly at a PROT_NONE page: a parser that reads
 * one byte past (buf, len) faults instead of passing by luck (picohttpparser's trick). */
#ifndef RINGSIDE_TEST_GUARD_H
#define RINGSIDE_TEST_GUARD_H

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct guard_buf {
    unsigned char *map;
    size_t map_len;
    char *data;
} guard_buf;

static inline char *guard_place(guard_buf *g, const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    g->map_len = (pages + 1) * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *guard_page = g->map + pages * page;
    mprotect(guard_page, page, PROT_NONE);
    g->data = (char *)guard_page - len;
    memcpy(g->data, src, len);
    return g->data;
}

static inline void guard_release(guard_buf *g)
{
    munmap(g->map, g->map_len);
}

#endif
