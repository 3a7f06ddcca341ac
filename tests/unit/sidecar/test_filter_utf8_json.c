/* Unit tests for filters (sidecar/filter.c), UTF-8 validation (utf8.c) and the JSON writer (buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "filter.h"
#include "utf8.h"

static void test_filter_ids(void **state)
{
    (void)state;
    filter_list l = {0, NULL};
    char err[200];
    assert_int_equal(filter_parse_ids("a1,b.2,c_3:x@y-z", &l, "agent_ids", err, sizeof err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.ids[2], "c_3:x@y-z");
    assert_int_equal(filter_parse_ids("a1,,b", &l, "agent_ids", err, sizeof err), -1);
    assert_non_null(strstr(err, "agent_ids"));
    assert_int_equal(filter_parse_ids("a1,", &l, "agent_ids", err, sizeof err), -1);
    assert_int_equal(filter_parse_ids("a b", &l, "agent_ids", err, sizeof err), -1);
    assert_int_equal(filter_parse_ids("a/b", &l, "agent_ids", err, sizeof err), -1);
    char long_id[80];
    memset(long_id, 'x', 64);
    long_id[64] = '\0';
    assert_int_equal(filter_parse_ids(long_id, &l, "agent_ids", err, sizeof err), -1);
    long_id[63] = '\0';
    assert_int_equal(filter_parse_ids(long_id, &l, "agent_ids", err, sizeof err), 0);
    char many[51 * 4];
    size_t o = 0;
    for (int i = 0; i < 51; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "%s%02d", i ? "," : "", i);
    assert_int_equal(filter_parse_ids(many, &l, "project_ids", err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 50"));
    many[o - 3] = '\0'; /* 50 ids */
    assert_int_equal(filter_parse_ids(many, &l, "project_ids", err, sizeof err), 0);
    assert_int_equal(l.n, 50);
    filter_list_free(&l);
    assert_null(l.ids);
}

static void test_filter_types_and_match(void **state)
{
    (void)state;
    filter f;
    memset(&f, 0, sizeof f);
    char err[200];
    assert_int_equal(filter_parse_types("agent_status,task_ended", &f.types, err, sizeof err), 0);
    assert_int_equal(f.types, FILTER_EV_STATUS | FILTER_EV_TASK_ENDED);
    assert_int_equal(filter_parse_types("bogus", &f.types, err, sizeof err), -1);
    assert_non_null(strstr(err, "bogus"));
    f.types = FILTER_EV_STATUS;
    assert_true(filter_match(&f, FILTER_EV_STATUS, "a", "p"));
    assert_false(filter_match(&f, FILTER_EV_PROGRESS, "a", "p"));
    assert_int_equal(filter_parse_ids("p1,p2", &f.projects, "project_ids", err, sizeof err), 0);
    assert_true(filter_match(&f, FILTER_EV_STATUS, "a", "p2"));
    assert_false(filter_match(&f, FILTER_EV_STATUS, "a", "p3"));
    filter_free(&f);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(utf8_valid((const uint8_t *)"plain", 5));
    assert_true(utf8_valid((const uint8_t *)"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    assert_false(utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
    assert_false(utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(utf8_valid((const uint8_t *)"\xe2\x82", 2));         /* truncated */
    assert_false(utf8_valid((const uint8_t *)"\x80", 1));
}

static void test_json_writer_escapes(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    json_kstr(&b, "a", "q\"b\\c\n\x01");
    json_key(&b, "raw");
    json_str(&b, "ok\xff\xc3\xa9", 5);
    json_ku64(&b, "n", 18446744073709551615ull);
    json_knull(&b, "z");
    buf_puts(&b, "}");
    assert_string_equal(b.data, "{\"a\":\"q\\\"b\\\\c\\u000a\\u0001\",\"raw\":\"ok\xef\xbf\xbd\xc3\xa9\","
                                "\"n\":18446744073709551615,\"z\":null}");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_ids),
        cmocka_unit_test(test_filter_types_and_match),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_json_writer_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
