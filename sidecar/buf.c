#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "util.h"

void buf_init(buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_free(buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_reset(buf *b)
{
    b->len = 0;
}

void buf_reserve(buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_puts(buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void json_key(buf *b, const char *key)
{
    if (b->len > 0 && b->data[b->len - 1] != '{' && b->data[b->len - 1] != '[')
        buf_append(b, ",", 1);
    buf_append(b, "\"", 1);
    buf_puts(b, key);
    buf_append(b, "\":", 2);
}

void json_str(buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    buf_reserve(b, len + 2);
    buf_append(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            buf_append(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            buf_append(b, e, 6);
            i++;
        } else if (c < 0x80) {
            buf_append(b, &p[i], 1);
            i++;
        } else {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                buf_append(b, "\xef\xbf\xbd", 3);
                i++;
            } else {
                buf_append(b, p + i, n);
                i += n;
            }
        }
    }
    buf_append(b, "\"", 1);
}

void json_kstr(buf *b, const char *key, const char *s)
{
    json_key(b, key);
    json_str(b, s, strlen(s));
}

void json_ku64(buf *b, const char *key, uint64_t v)
{
    json_key(b, key);
    buf_printf(b, "%llu", (unsigned long long)v);
}

void json_ki64(buf *b, const char *key, int64_t v)
{
    json_key(b, key);
    buf_printf(b, "%lld", (long long)v);
}

void json_kdbl(buf *b, const char *key, double v, int decimals)
{
    json_key(b, key);
    buf_printf(b, "%.*f", decimals, v);
}

void json_knull(buf *b, const char *key)
{
    json_key(b, key);
    buf_puts(b, "null");
}

void json_kbool(buf *b, const char *key, int v)
{
    json_key(b, key);
    buf_puts(b, v ? "true" : "false");
}
