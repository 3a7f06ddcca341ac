#include "log.h"

#include <stdarg.h>
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
        va_list ap;
        va_start(ap, fields);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fields, ap);
        va_end(ap);
        if (m > 0)
            n += m;
        if ((size_t)n >= sizeof line - 2)
            n = (int)sizeof line - 3;
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
