/*
 * util.h — small helpers shared by the sidecar: clocks, time formatting, allocation that aborts on
 * OOM (the one wrapper, STYLE 7), container_of.
 */
#ifndef RINGSIDE_UTIL_H
#define RINGSIDE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* CLOCK_REALTIME in ns. */
uint64_t util_now_ns(void);
/* CLOCK_MONOTONIC in ns. */
uint64_t util_mono_ns(void);
/* Formats ns since the epoch as RFC 3339 UTC with milliseconds ("2026-11-22T18:20:01.123Z"). */
void util_rfc3339(char *out, size_t outlen, uint64_t ns);
/* Formats v in decimal into out and returns out (for JSON strings: a u64 a browser's number
 * would round, such as a task run's start in ns). */
const char *util_u64str(char *out, size_t outlen, uint64_t v);

/* malloc/calloc/realloc/strdup that abort with a log line on OOM: the sidecar's only OOM policy. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
