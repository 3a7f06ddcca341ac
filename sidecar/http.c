#include "http.h"

#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the end of the line starting at p (CRLF or bare LF).  Returns the index of the '\n' or -1. */
static long find_lf(const char *buf, size_t start, size_t len)
{
    const char *p = memchr(buf + start, '\n', len - start);
    return p ? (long)(p - buf) : -1;
}

int http_parse_request(const char *buf, size_t len, http_request *req)
{
    memset(req, 0, sizeof *req);
    size_t i = 0;
    /* Tolerate leading empty lines (RFC 9112 2.2). */
    while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
        i++;
    long lf = find_lf(buf, i, len);
    if (lf < 0)
        return HTTP_PARTIAL;
    size_t eol = (size_t)lf;
    if (eol > i && buf[eol - 1] == '\r')
        eol--;
    /* method SP target SP HTTP/1.x */
    size_t m = i;
    while (m < eol && is_tchar((unsigned char)buf[m]))
        m++;
    if (m == i || m >= eol || buf[m] != ' ')
        return HTTP_EBAD;
    req->method = buf + i;
    req->method_len = m - i;
    size_t t = m + 1;
    size_t te = t;
    while (te < eol && buf[te] != ' ') {
        unsigned char c = (unsigned char)buf[te];
        if (c <= 0x20 || c == 0x7f)
            return HTTP_EBAD;
        te++;
    }
    if (te == t || te >= eol)
        return HTTP_EBAD;
    req->target = buf + t;
    req->target_len = te - t;
    const char *q = memchr(req->target, '?', req->target_len);
    req->path = req->target;
    req->path_len = q ? (size_t)(q - req->target) : req->target_len;
    if (q != NULL) {
        req->query = q + 1;
        req->query_len = req->target_len - req->path_len - 1;
    }
    size_t v = te + 1;
    if (eol - v != 8 || memcmp(buf + v, "HTTP/1.", 7) != 0)
        return HTTP_EVERSION;
    if (buf[v + 7] != '0' && buf[v + 7] != '1')
        return HTTP_EVERSION;
    req->minor_version = buf[v + 7] - '0';
    i = (size_t)lf + 1;
    for (;;) {
        lf = find_lf(buf, i, len);
        if (lf < 0)
            return HTTP_PARTIAL;
        eol = (size_t)lf;
        if (eol > i && buf[eol - 1] == '\r')
            eol--;
        if (eol == i)
            return (int)(lf + 1); /* empty line: end of head */
        if (buf[i] == ' ' || buf[i] == '\t')
            return HTTP_EBAD; /* obsolete line folding is rejected */
        size_t n = i;
        while (n < eol && is_tchar((unsigned char)buf[n]))
            n++;
        if (n == i || n >= eol || buf[n] != ':')
            return HTTP_EBAD;
        if (req->n_headers == HTTP_MAX_HEADERS)
            return HTTP_ETOO_MANY;
        http_header *h = &req->headers[req->n_headers++];
        h->name = buf + i;
        h->name_len = n - i;
        size_t vs = n + 1, ve = eol;
        while (vs < ve && (buf[vs] == ' ' || buf[vs] == '\t'))
            vs++;
        while (ve > vs && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'))
            ve--;
        for (size_t k = vs; k < ve; k++) {
            unsigned char c = (unsigned char)buf[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return HTTP_EBAD;
        }
        h->value = buf + vs;
        h->value_len = ve - vs;
        i = (size_t)lf + 1;
    }
}

const http_header *http_find_header(const http_request *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->n_headers; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == len && strncasecmp(h->name, name, len) == 0)
            return h;
    }
    return NULL;
}

size_t http_count_header(const http_request *req, const char *name)
{
    size_t len = strlen(name), n = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == len && strncasecmp(h->name, name, len) == 0)
            n++;
    }
    return n;
}

int http_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t s = i;
        while (i < len && value[i] != ',' && value[i] != ';')
            i++;
        size_t e = i;
        while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
            e--;
        if (e - s == tlen && strncasecmp(value + s, token, tlen) == 0)
            return 1;
        while (i < len && value[i] != ',')
            i++;
    }
    return 0;
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

int http_query_get(const char *query, size_t query_len, const char *key, char *out, size_t outlen)
{
    if (query == NULL || outlen == 0)
        return -1;
    size_t klen = strlen(key);
    size_t i = 0;
    while (i <= query_len) {
        size_t s = i;
        while (i < query_len && query[i] != '&')
            i++;
        size_t e = i; /* [s, e) is one key=value pair */
        const char *eq = memchr(query + s, '=', e - s);
        size_t kend = eq ? (size_t)(eq - query) : e;
        if (kend - s == klen && memcmp(query + s, key, klen) == 0) {
            size_t o = 0;
            for (size_t k = eq ? kend + 1 : e; k < e; k++) {
                char c = query[k];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (k + 2 >= e)
                        return -2;
                    int hi = hexval(query[k + 1]), lo = hexval(query[k + 2]);
                    if (hi < 0 || lo < 0)
                        return -2;
                    c = (char)(hi * 16 + lo);
                    k += 2;
                    if (c == '\0')
                        return -2;
                }
                if (o + 1 >= outlen)
                    return -2;
                out[o++] = c;
            }
            out[o] = '\0';
            return (int)o;
        }
        i = e + 1;
    }
    return -1;
}
