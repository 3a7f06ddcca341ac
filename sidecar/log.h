/*
 * log.h — structured JSON-lines logging to stderr (REQUIREMENTS F3).
 *
 * Every line is one JSON object: {"ts":"…","level":"info","msg":"…", fields…}.  Fields are given as
 * a printf-like list of JSON members without braces, e.g.
 *     log_info("client connected", "\"conn\":%llu,\"ip\":\"%s\"", id, ip);
 * Every %s argument is escaped as JSON string content by log_write itself (so a ring file name or
 * a client's text cannot forge a field or a line): put it between \"…\" and pass it raw, never
 * pre-escaped.  Supported conversions: d i u x X o c f e g p s, with flags, width, precision
 * (also *) and the length modifiers h l ll z j.
 */
#ifndef RINGSIDE_LOG_H
#define RINGSIDE_LOG_H

#include <stddef.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level;

/* Parses "debug"|"info"|"warn"|"error"; returns 0 or -1. */
int log_level_parse(const char *s, log_level *out);
void log_set_level(log_level level);
int log_enabled(log_level level);

/* Writes one line if level is enabled.  fields may be NULL. */
void log_write(log_level level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

/* Escapes up to len bytes of s as JSON string content (no quotes) into out (size outlen, always
 * NUL-terminated, truncated if needed; invalid UTF-8 bytes become \u00XX).  Returns out. */
char *log_esc(char *out, size_t outlen, const char *s, size_t len);

#endif
