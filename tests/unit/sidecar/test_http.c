/* Unit tests for the HTTP request parser (sidecar/http.c), every input behind a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "guard.h"
#include "http.h"

static int parse(const char *s, http_request *req)
{
    guard_buf g;
    size_t len = strlen(s);
    char *p = guard_place(&g, s, len);
    int r = http_parse_request(p, len, req);
    /* pointers into the input must not be used after release: copy what tests need */
    guard_release(&g);
    return r;
}

static void test_full_upgrade_request(void **state)
{
    (void)state;
    const char *s = "GET /ws/events?agent_ids=a1,a2&x=%20y HTTP/1.1\r\n"
                    "Host: 127.0.0.1:8765\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    guard_buf g;
    size_t len = strlen(s);
    char *p = guard_place(&g, s, len);
    http_request req;
    assert_int_equal(http_parse_request(p, len, &req), (int)len);
    assert_int_equal(req.method_len, 3);
    assert_memory_equal(req.method, "GET", 3);
    assert_int_equal(req.path_len, strlen("/ws/events"));
    assert_memory_equal(req.path, "/ws/events", req.path_len);
    assert_int_equal(req.query_len, strlen("agent_ids=a1,a2&x=%20y"));
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.n_headers, 5);
    const http_header *h = http_find_header(&req, "connection");
    assert_non_null(h);
    assert_true(http_has_token(h->value, h->value_len, "upgrade"));
    assert_false(http_has_token(h->value, h->value_len, "close"));
    char out[64];
    assert_int_equal(http_query_get(req.query, req.query_len, "agent_ids", out, sizeof out), 5);
    assert_string_equal(out, "a1,a2");
    assert_int_equal(http_query_get(req.query, req.query_len, "x", out, sizeof out), 2);
    assert_string_equal(out, " y");
    assert_int_equal(http_query_get(req.query, req.query_len, "nope", out, sizeof out), -1);
    guard_release(&g);
}

static void test_every_prefix_is_partial(void **state)
{
    (void)state;
    const char *s = "GET /healthz HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n";
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        guard_buf g;
        char *p = guard_place(&g, s, i);
        http_request req;
        assert_int_equal(http_parse_request(p, i, &req), HTTP_PARTIAL);
        guard_release(&g);
    }
    http_request req;
    assert_int_equal(parse(s, &req), (int)len);
}

static void test_pipelined_returns_first_head(void **state)
{
    (void)state;
    const char *s = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    http_request req;
    assert_int_equal(parse(s, &req), (int)strlen("GET /a HTTP/1.1\r\n\r\n"));
}

static void test_bare_lf_accepted(void **state)
{
    (void)state;
    http_request req;
    assert_int_equal(parse("GET / HTTP/1.0\nHost: a\n\n", &req), 24);
}

static void test_rejections(void **state)
{
    (void)state;
    http_request req;
    assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &req), HTTP_EVERSION);
    assert_int_equal(parse("GET / FTP/1.1\r\n\r\n", &req), HTTP_EVERSION);
    assert_int_equal(parse("GET  / HTTP/1.1\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse(" GET / HTTP/1.1\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse("GET /\x01 HTTP/1.1\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", &req), HTTP_EBAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\n: empty\r\n\r\n", &req), HTTP_EBAD);
}

static void test_too_many_headers(void **state)
{
    (void)state;
    char s[4096];
    size_t o = (size_t)snprintf(s, sizeof s, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
        o += (size_t)snprintf(s + o, sizeof s - o, "H%d: v\r\n", i);
    snprintf(s + o, sizeof s - o, "\r\n");
    http_request req;
    assert_int_equal(parse(s, &req), HTTP_ETOO_MANY);
}

static void test_query_decoding_errors(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(http_query_get("a=%zz", 5, "a", out, sizeof out), -2);
    assert_int_equal(http_query_get("a=%2", 4, "a", out, sizeof out), -2);
    assert_int_equal(http_query_get("a=%00", 5, "a", out, sizeof out), -2);
    assert_int_equal(http_query_get("a=123456789", 11, "a", out, sizeof out), -2);
    assert_int_equal(http_query_get("b=1&a", 5, "a", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_query_get("a=x+y", 5, "a", out, sizeof out), 3);
    assert_string_equal(out, "x y");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_upgrade_request),
        cmocka_unit_test(test_every_prefix_is_partial),
        cmocka_unit_test(test_pipelined_returns_first_head),
        cmocka_unit_test(test_bare_lf_accepted),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_query_decoding_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
