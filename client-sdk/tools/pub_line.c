/*
 * pub_line.c — the line protocol of `ringside-pub --stdin` (see pub_line.h).
 */
#include "pub_line.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escape after a backslash at *r (inside double quotes) into *w.  Returns 0 and
 * advances both, or -1. */
static int unescape(const char **r, char **w, char *err, size_t errlen)
{
    const char *p = *r;
    int hi, lo;
    switch (*p) {
    case 'n': **w = '\n'; break;
    case 'r': **w = '\r'; break;
    case 't': **w = '\t'; break;
    case 'e': **w = '\033'; break;
    case '\\': **w = '\\'; break;
    case '"': **w = '"'; break;
    case 'x':
        hi = hexval(p[1]);
        lo = hi < 0 ? -1 : hexval(p[2]);
        if (lo < 0) {
            seterr(err, errlen, "\\x needs two hex digits (e.g. \\x1b)");
            return -1;
        }
        **w = (char)(hi * 16 + lo);
        p += 2;
        break;
    case '\0':
        seterr(err, errlen, "unterminated double quote");
        return -1;
    default:
        seterr(err, errlen, "unknown escape \\%c: use \\n \\r \\t \\e \\\\ \\\" or \\xHH", *p);
        return -1;
    }
    *r = p + 1;
    (*w)++;
    return 0;
}

int pub_line_split(char *line, const char **words, size_t *lens, int *quoted, int max, char *err,
                   size_t errlen)
{
    size_t n = strlen(line);
    const char *r = line;
    char *w = line;
    int count = 0;

    if (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    for (;;) {
        while (*r == ' ' || *r == '\t')
            r++;
        if (*r == '\0')
            return count;
        if (count == 0 && *r == '#')
            return 0;
        if (count == max) {
            seterr(err, errlen, "too many words (at most %d)", max);
            return -1;
        }
        char *start = w;
        quoted[count] = 0;
        while (*r != '\0' && *r != ' ' && *r != '\t') {
            if (*r == '"') {
                quoted[count] = 1;
                r++;
                while (*r != '"') {
                    if (*r == '\0') {
                        seterr(err, errlen, "unterminated double quote");
                        return -1;
                    }
                    if (*r == '\\') {
                        r++;
                        if (unescape(&r, &w, err, errlen) != 0)
                            return -1;
                    } else {
                        *w++ = *r++;
                    }
                }
                r++;
            } else if (*r == '\'') {
                quoted[count] = 1;
                r++;
                while (*r != '\'') {
                    if (*r == '\0') {
                        seterr(err, errlen, "unterminated single quote");
                        return -1;
                    }
                    *w++ = *r++;
                }
                r++;
            } else {
                *w++ = *r++;
            }
        }
        /* w <= r: the terminator overwrites a consumed byte (or the final NUL). */
        int at_end = *r == '\0';
        lens[count] = (size_t)(w - start);
        *w = '\0';
        words[count++] = start;
        if (at_end)
            return count;
        r++;
        w++;
    }
}

tools_parse_result pub_line_parse(char *line, const tools_common *common, pub_args *out, char *err,
                                  size_t errlen)
{
    const char *words[PUB_LINE_WORDS];
    size_t lens[PUB_LINE_WORDS];
    int quoted[PUB_LINE_WORDS];
    const char *pos[PUB_LINE_WORDS];
    size_t poslen[PUB_LINE_WORDS];
    int npos = 0, want_stderr = 0, dashdash = 0;

    memset(out, 0, sizeof *out);
    out->common = *common;
    out->stream = 1;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (strlen(line) > PUB_LINE_MAX + 2) {
        seterr(err, errlen, "line longer than %u bytes", PUB_LINE_MAX);
        return TOOLS_PARSE_USAGE;
    }
    int n = pub_line_split(line, words, lens, quoted, PUB_LINE_WORDS, err, errlen);
    if (n < 0)
        return TOOLS_PARSE_USAGE;
    if (n == 0)
        return TOOLS_PARSE_OK;
    for (int i = 0; i < n; i++) {
        const char *a = words[i];
        if (!dashdash && !quoted[i] && a[0] == '-' && a[1] != '\0' &&
            !(a[1] >= '0' && a[1] <= '9')) {
            if (strcmp(a, "--") == 0) {
                dashdash = 1;
            } else if (strcmp(a, "--stderr") == 0) {
                want_stderr = 1;
            } else {
                seterr(err, errlen, "unknown option '%.80s' (only --stderr, for term)", a);
                return TOOLS_PARSE_USAGE;
            }
            continue;
        }
        poslen[npos] = lens[i];
        pos[npos++] = a;
    }
    if (npos > 0 && strcmp(pos[0], "term") == 0) {
        if (npos != 3) {
            seterr(err, errlen, "%s: expected term TASK [--stderr] TEXT",
                   npos < 3 ? "missing argument" : "too many arguments");
            return TOOLS_PARSE_USAGE;
        }
        out->data = pos[2];
        out->data_len = poslen[2];
        npos = 2;
    }
    for (int i = 0; i < npos; i++) {
        if (strlen(pos[i]) != poslen[i]) {
            seterr(err, errlen, "word %d contains a NUL byte (only term TEXT may)", i + 1);
            return TOOLS_PARSE_USAGE;
        }
    }
    return pub_command_parse(pos, npos, want_stderr, out, err, errlen);
}
