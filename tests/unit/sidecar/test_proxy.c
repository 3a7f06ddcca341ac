/* proxy.c: --trusted-proxies parsing and the client address from Forwarded / X-Forwarded-For. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "http.h"
#include "proxy.h"

static void test_parse(void **state)
{
    (void)state;
    proxy_list l;
    char err[160];
    assert_int_equal(proxy_list_parse(NULL, &l, err, sizeof err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(proxy_list_parse("10.0.0.0/8, fd00::/8,192.0.2.7", &l, err, sizeof err), 0);
    assert_int_equal(l.n, 3);
    assert_true(proxy_list_contains(&l, "10.1.2.3"));
    assert_true(proxy_list_contains(&l, "::ffff:10.9.9.9")); /* IPv4-mapped peer */
    assert_true(proxy_list_contains(&l, "fd12::1"));
    assert_true(proxy_list_contains(&l, "192.0.2.7"));
    assert_false(proxy_list_contains(&l, "192.0.2.8"));
    assert_false(proxy_list_contains(&l, "11.0.0.1"));
    assert_false(proxy_list_contains(&l, "garbage"));
    static const char *const bad[] = {"10.0.0.0/33", "fd00::/129", "10.0.0.0/", "nope",
                                      "10.0.0.0/8x", "1.2.3.4/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(proxy_list_parse(bad[i], &l, err, sizeof err), -1);
        assert_non_null(strstr(err, "--trusted-proxies"));
    }
}

/* Parses head (a full request head) and returns proxy_client_ip's result with out filled. */
static int client_of(const char *trusted, const char *peer, const char *head, char out[64])
{
    proxy_list l;
    char err[160];
    assert_int_equal(proxy_list_parse(trusted, &l, err, sizeof err), 0);
    http_request req;
    assert_true(http_parse_request(head, strlen(head), &req) > 0);
    return proxy_client_ip(&l, peer, &req, out, 64);
}

static void test_client_ip(void **state)
{
    (void)state;
    char ip[64];
    const char *t = "127.0.0.1/32,10.0.0.0/8";
    /* untrusted peer: headers ignored */
    assert_int_equal(client_of(t, "192.0.2.1",
                               "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n", ip), 0);
    assert_string_equal(ip, "192.0.2.1");
    /* right-most untrusted hop, across repeated fields */
    assert_int_equal(client_of(t, "127.0.0.1",
                               "GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6, 2.2.2.2\r\n"
                               "X-Forwarded-For: 10.1.1.1\r\n\r\n",
                               ip),
                     1);
    assert_string_equal(ip, "2.2.2.2");
    /* all hops trusted: the left-most */
    assert_int_equal(client_of(t, "127.0.0.1",
                               "GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.9, 10.1.1.1\r\n\r\n", ip),
                     1);
    assert_string_equal(ip, "10.0.0.9");
    /* Forwarded wins; quoted IPv6 with port; IPv4 with port */
    assert_int_equal(client_of(t, "127.0.0.1",
                               "GET / HTTP/1.1\r\nX-Forwarded-For: 3.3.3.3\r\nForwarded: "
                               "for=\"[2001:db8::7]:4711\";proto=https, For=10.0.0.2:80\r\n\r\n",
                               ip),
                     1);
    assert_string_equal(ip, "2001:db8::7");
    /* unknown client: the peer stands for it */
    assert_int_equal(
        client_of(t, "127.0.0.1", "GET / HTTP/1.1\r\nForwarded: for=unknown\r\n\r\n", ip), 0);
    assert_string_equal(ip, "127.0.0.1");
    /* malformed */
    assert_int_equal(
        client_of(t, "127.0.0.1", "GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3\r\n\r\n", ip), -1);
    assert_int_equal(
        client_of(t, "127.0.0.1", "GET / HTTP/1.1\r\nForwarded: by=1.2.3.4\r\n\r\n", ip), -1);
    /* no header from a trusted peer */
    assert_int_equal(client_of(t, "127.0.0.1", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ip), 0);
    assert_string_equal(ip, "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_client_ip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
