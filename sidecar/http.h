/*
 * http.h — HTTP/1.1 request-head parser and query-string helpers (pure functions over (buf, len)).
 *
 * No allocation; outputs point into the input.  Never reads past buf + len (tested against a
 * guard page) and is fuzzed (tests/fuzz/http).
 */
#ifndef RINGSIDE_HTTP_H
#define RINGSIDE_HTTP_H

#include <stddef.h>

#define HTTP_MAX_HEADERS 64

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing whitespace trimmed */
    size_t value_len;
} http_header;

typedef struct http_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target, e.g. "/ws/events?x=1" */
    size_t target_len;
    const char *path; /* target up to '?' */
    size_t path_len;
    const char *query; /* after '?', or NULL */
    size_t query_len;
    int minor_version; /* 0 or 1 (HTTP/1.x) */
    http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
} http_request;

enum {
    HTTP_PARTIAL = 0,        /* need more bytes */
    HTTP_EBAD = -1,          /* malformed request */
    HTTP_ETOO_MANY = -2,     /* more than HTTP_MAX_HEADERS headers */
    HTTP_EVERSION = -3       /* not HTTP/1.x */
};

/* Parses one request head from buf.  Returns the number of bytes of the head (including the final
 * CRLFCRLF) on success, HTTP_PARTIAL if the head is incomplete, or a negative HTTP_E* code. */
int http_parse_request(const char *buf, size_t len, http_request *req);

/* Case-insensitive header lookup; returns the first match or NULL. */
const http_header *http_find_header(const http_request *req, const char *name);

/* Number of header fields named name (case-insensitive): a server that relies on a field's value
 * refuses a request that repeats it (RFC 6455 11.3, RFC 7230 5.4). */
size_t http_count_header(const http_request *req, const char *name);

/* 1 if the comma-separated header value contains token (case-insensitive), else 0. */
int http_has_token(const char *value, size_t len, const char *token);

/* Finds key in an application/x-www-form-urlencoded query and percent-decodes its value into out
 * (size outlen).  Returns the decoded length, -1 if absent, -2 if malformed or too long. */
int http_query_get(const char *query, size_t query_len, const char *key, char *out, size_t outlen);

#endif
