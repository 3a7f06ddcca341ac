/* Unit tests for connection admission limits (sidecar/ratelimit.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "ratelimit.h"

#define SEC 1000000000ull

static void test_ip_window(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(10, 0);
    uint64_t t0 = 1000 * SEC;
    for (int i = 0; i < 10; i++)
        assert_int_equal(ratelimit_ip_admit(rl, "10.0.0.1", t0 + (uint64_t)i * SEC), 0);
    int wait = ratelimit_ip_admit(rl, "10.0.0.1", t0 + 10 * SEC);
    assert_true(wait >= 1 && wait <= 60);
    /* another address is independent */
    assert_int_equal(ratelimit_ip_admit(rl, "10.0.0.2", t0 + 10 * SEC), 0);
    /* a full window later the old attempts have slid out */
    assert_int_equal(ratelimit_ip_admit(rl, "10.0.0.1", t0 + 125 * SEC), 0);
    /* the sliding estimate still counts most of the previous window just after it turned */
    ratelimit *r2 = ratelimit_new(10, 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ratelimit_ip_admit(r2, "ip", t0 + 50 * SEC), 0);
    assert_true(ratelimit_ip_admit(r2, "ip", t0 + 61 * SEC) > 0);
    ratelimit_free(r2);
    ratelimit_sweep(rl, t0 + 400 * SEC);
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
}

static void test_unlimited(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(0, 0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ratelimit_ip_admit(rl, "ip", (uint64_t)i), 0);
        assert_int_equal(ratelimit_user_acquire(rl, "u"), 0);
    }
    assert_int_equal(ratelimit_user_count(rl, "u"), 1000);
    ratelimit_free(rl);
}

static void test_user_slots(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(0, 2);
    assert_int_equal(ratelimit_user_acquire(rl, "alice"), 0);
    assert_int_equal(ratelimit_user_acquire(rl, "alice"), 0);
    assert_int_equal(ratelimit_user_acquire(rl, "alice"), -1);
    assert_int_equal(ratelimit_user_acquire(rl, "bob"), 0);
    ratelimit_user_release(rl, "alice");
    assert_int_equal(ratelimit_user_acquire(rl, "alice"), 0);
    ratelimit_user_release(rl, "alice");
    ratelimit_user_release(rl, "alice");
    ratelimit_user_release(rl, "bob");
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_user_release(rl, "nobody"); /* harmless */
    ratelimit_free(rl);
}

static void test_many_keys(void **state)
{
    (void)state;
    ratelimit *rl = ratelimit_new(5, 0);
    char ip[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_int_equal(ratelimit_ip_admit(rl, ip, 5 * SEC), 0);
    }
    assert_int_equal(ratelimit_size(rl), 5000);
    ratelimit_sweep(rl, 500 * SEC);
    assert_int_equal(ratelimit_size(rl), 0);
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_window),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_user_slots),
        cmocka_unit_test(test_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
