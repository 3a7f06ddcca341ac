#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util.h"

static log_level min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s, log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(log_level level)
{
    min_level = level;
}

int log_enabled(log_level level)
{
    return level >= min_level;
}

/* Appends the printf conversion spec (without %s) of one argument taken from ap to out.  spec is a
 * piece of log_write's literal format, whose types the compiler checked (format attribute): the
 * non-literal format here is safe. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static int fmt_one(char *out, size_t outlen, const char *spec, char conv, const char *len_mod,
                   int star_w, int w, int star_p, int p, va_list *ap)
{
#define FMT_ONE(T)                                                                                 \
    do {                                                                                           \
        T v_ = va_arg(*ap, T);                                                                     \
        if (star_w && star_p)                                                                      \
            return snprintf(out, outlen, spec, w, p, v_);                                          \
        if (star_w)                                                                                \
            return snprintf(out, outlen, spec, w, v_);                                             \
        if (star_p)                                                                                \
            return snprintf(out, outlen, spec, p, v_);                                             \
        return snprintf(out, outlen, spec, v_);                                                    \
    } while (0)
    int is_signed = conv == 'd' || conv == 'i';
    int is_int = is_signed || strchr("uxXoc", conv) != NULL;
    if (is_int) {
        if (strcmp(len_mod, "ll") == 0) {
            if (is_signed)
                FMT_ONE(long long);
            FMT_ONE(unsigned long long);
        }
        if (strcmp(len_mod, "l") == 0) {
            if (is_signed)
                FMT_ONE(long);
            FMT_ONE(unsigned long);
        }
        if (strcmp(len_mod, "z") == 0) {
            if (is_signed)
                FMT_ONE(ssize_t);
            FMT_ONE(size_t);
        }
        if (strcmp(len_mod, "j") == 0) {
            if (is_signed)
                FMT_ONE(intmax_t);
            FMT_ONE(uintmax_t);
        }
        if (is_signed || conv == 'c')
            FMT_ONE(int);
        FMT_ONE(unsigned);
    }
    if (strchr("fFeEgGaA", conv) != NULL)
        FMT_ONE(double);
    if (conv == 'p')
        FMT_ONE(void *);
#undef FMT_ONE
    return -1;
}
#pragma GCC diagnostic pop

/*
 * vsnprintf for log fields in which every %s argument is escaped as JSON string content (log
 * forging, issue 17: ring file names, agent ids, client text all reach log lines through %s).  The
 * other conversions are passed to snprintf one at a time.  A precision on %s bounds the bytes read
 * from the argument, as in printf; each escaped string is cut to str_cap bytes.  Returns the length
 * written, or -1 when the result did not fit in outlen (a cut line would not be JSON).
 */
static long format_fields(char *out, size_t outlen, const char *fmt, va_list ap, size_t str_cap)
{
    va_list aq;
    va_copy(aq, ap);
    size_t o = 0;
    const char *f = fmt;
    while (*f != '\0' && o + 1 < outlen) {
        if (*f != '%') {
            out[o++] = *f++;
            continue;
        }
        const char *start = f++;
        if (*f == '%') {
            out[o++] = '%';
            f++;
            continue;
        }
        while (*f != '\0' && strchr("-+ #0", *f) != NULL)
            f++;
        int star_w = 0, star_p = 0, w = 0, p = -1;
        if (*f == '*') {
            star_w = 1;
            w = va_arg(aq, int);
            f++;
        } else {
            while (*f >= '0' && *f <= '9')
                f++;
        }
        if (*f == '.') {
            f++;
            if (*f == '*') {
                star_p = 1;
                p = va_arg(aq, int);
                f++;
            } else {
                p = 0;
                while (*f >= '0' && *f <= '9')
                    p = p * 10 + (*f++ - '0');
            }
        }
        char len_mod[3] = "";
        size_t ll = 0;
        while (*f != '\0' && strchr("hlzjt", *f) != NULL && ll < 2)
            len_mod[ll++] = *f++;
        len_mod[ll] = '\0';
        char conv = *f;
        if (conv == '\0')
            break;
        f++;
        if (conv == 's') {
            const char *sv = va_arg(aq, const char *);
            if (sv == NULL)
                sv = "(null)";
            size_t sl = p >= 0 ? strnlen(sv, (size_t)p) : strlen(sv);
            size_t room = outlen - o < str_cap + 1 ? outlen - o : str_cap + 1;
            log_esc(out + o, room, sv, sl);
            o += strlen(out + o);
            continue;
        }
        char spec[32];
        size_t sl = (size_t)(f - start);
        if (sl >= sizeof spec)
            break;
        memcpy(spec, start, sl);
        spec[sl] = '\0';
        int n = fmt_one(out + o, outlen - o, spec, conv, len_mod, star_w, w, star_p, p, &aq);
        if (n < 0 || (size_t)n >= outlen - o)
            break;
        o += (size_t)n;
    }
    va_end(aq);
    out[o] = '\0';
    return *f == '\0' ? (long)o : -1;
}

void log_write(log_level level, const char *msg, const char *fields, ...)
{
    if (level < min_level)
        return;
    char line[4096];
    char ts[40];
    char emsg[512];
    util_rfc3339(ts, sizeof ts, util_now_ns());
    int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"", ts,
                     level_names[level], log_esc(emsg, sizeof emsg, msg, strlen(msg)));
    if (n < 0 || (size_t)n >= sizeof line)
        n = (int)sizeof line - 1;
    if (fields != NULL && fields[0] != '\0' && (size_t)n + 2 < sizeof line) {
        line[n++] = ',';
        /* Too long: strings are cut shorter until the line fits (every line stays JSON). */
        static const size_t caps[] = {1024, 160, 24};
        long m = -1;
        for (size_t i = 0; i < sizeof caps / sizeof caps[0] && m < 0; i++) {
            va_list ap;
            va_start(ap, fields);
            m = format_fields(line + n, sizeof line - (size_t)n - 2, fields, ap, caps[i]);
            va_end(ap);
        }
        if (m < 0) {
            static const char cut[] = "\"log_truncated\":true";
            memcpy(line + n, cut, sizeof cut - 1);
            m = (long)sizeof cut - 1;
        }
        n += (int)m;
    }
    line[n++] = '}';
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

char *log_esc(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0;
    if (outlen == 0)
        return out;
    for (size_t i = 0; i < len && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        const char *rep = NULL;
        size_t rlen = 1;
        if (c == '"') {
            rep = "\\\"";
        } else if (c == '\\') {
            rep = "\\\\";
        } else if (c < 0x20 || c >= 0x7f) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            rep = tmp;
        }
        if (rep != NULL)
            rlen = strlen(rep);
        if (o + rlen + 1 > outlen)
            break;
        if (rep != NULL) {
            memcpy(out + o, rep, rlen);
        } else {
            out[o] = (char)c;
        }
        o += rlen;
    }
    out[o] = '\0';
    return out;
}
