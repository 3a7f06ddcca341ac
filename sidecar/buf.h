/*
 * buf.h — a growable byte buffer and a JSON writer on top of it.
 *
 * JSON output is built by appending; the writer escapes strings (control characters, quotes,
 * backslashes, invalid UTF-8 → U+FFFD) so any bytes from a ring become valid JSON text.
 */
#ifndef RINGSIDE_BUF_H
#define RINGSIDE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b);
void buf_reserve(buf *b, size_t extra);
void buf_append(buf *b, const void *data, size_t len);
void buf_puts(buf *b, const char *s);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON helpers.  json_key writes `"key":` preceded by a comma unless it follows '{' or '['. */
void json_key(buf *b, const char *key);
void json_str(buf *b, const char *s, size_t len);  /* a quoted, escaped string value */
void json_kstr(buf *b, const char *key, const char *s);
void json_ku64(buf *b, const char *key, uint64_t v);
void json_ki64(buf *b, const char *key, int64_t v);
void json_kdbl(buf *b, const char *key, double v, int decimals);
void json_knull(buf *b, const char *key);
void json_kbool(buf *b, const char *key, int v);

#endif
