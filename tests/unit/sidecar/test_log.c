/* log_write: every %s argument is escaped, so no string from a ring or a client can forge a JSON
 * field or a log line (issue 17); the other conversions print as printf would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs one log_info with stderr sent to a temporary file; returns the line parsed as JSON. */
static json_t *capture(void (*emit)(void))
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) == 2);
    emit();
    fflush(stderr);
    assert_true(dup2(saved, 2) == 2);
    close(saved);
    rewind(tmp);
    char line[8192];
    assert_non_null(fgets(line, sizeof line, tmp));
    char extra[16];
    assert_null(fgets(extra, sizeof extra, tmp)); /* exactly one line */
    fclose(tmp);
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    if (j == NULL)
        fail_msg("not JSON: %s (%s)", line, err.text);
    return j;
}

static const char forged[] = "evil\",\"level\":\"error\",\"msg\":\"forged\"}\n{\"x\":\"\\\x01\x7f";

static void emit_forged(void)
{
    log_info("ring rejected", "\"path\":\"%s\",\"n\":%llu,\"short\":\"%.*s\",\"d\":%d,\"f\":%.2f",
             forged, 42ull, 4, forged, -7, 1.5);
}

static void test_strings_escaped(void **state)
{
    (void)state;
    json_t *j = capture(emit_forged);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "ring rejected");
    assert_string_equal(json_string_value(json_object_get(j, "path")), forged);
    assert_string_equal(json_string_value(json_object_get(j, "short")), "evil");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 42);
    assert_int_equal(json_integer_value(json_object_get(j, "d")), -7);
    assert_true(json_real_value(json_object_get(j, "f")) == 1.5);
    json_decref(j);
}

static void emit_conversions(void)
{
    log_info("conv", "\"z\":%zu,\"l\":%ld,\"u\":%u,\"x\":\"%04x\",\"pct\":\"100%%\",\"b\":%s",
             (size_t)7, -3L, 9u, 0xabu, "true");
}

static void test_other_conversions(void **state)
{
    (void)state;
    json_t *j = capture(emit_conversions);
    assert_int_equal(json_integer_value(json_object_get(j, "z")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "l")), -3);
    assert_int_equal(json_integer_value(json_object_get(j, "u")), 9);
    assert_string_equal(json_string_value(json_object_get(j, "x")), "00ab");
    assert_string_equal(json_string_value(json_object_get(j, "pct")), "100%");
    assert_true(json_is_true(json_object_get(j, "b")));
    json_decref(j);
}

static void emit_long(void)
{
    static char big[10000];
    memset(big, '"', sizeof big - 1);
    log_info("long", "\"v\":\"%s\",\"after\":1", big);
}

static void test_truncated_line_still_json(void **state)
{
    (void)state;
    json_t *j = capture(emit_long);
    assert_non_null(json_object_get(j, "v"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_escaped),
        cmocka_unit_test(test_other_conversions),
        cmocka_unit_test(test_truncated_line_still_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
