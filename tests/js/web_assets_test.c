/*
 * web_assets_test.c — the embedded dashboard table: lookups, content types, exact bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web_assets.h"

/* Reads a source file fully; the caller frees. Fails the test when the file is missing. */
static unsigned char *read_file(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", WEB_SRC_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void check_same(const char *url, const char *file, const char *ctype_prefix)
{
    const web_asset *a = web_asset_find(url);
    assert_non_null(a);
    assert_true(strncmp(a->content_type, ctype_prefix, strlen(ctype_prefix)) == 0);
    size_t len = 0;
    unsigned char *want = read_file(file, &len);
    assert_int_equal(a->len, len);
    assert_memory_equal(a->data, want, len);
    assert_int_equal(a->data[a->len], 0);
    free(want);
}

static void test_every_source_file_is_embedded(void **state)
{
    (void)state;
    check_same("/index.html", "index.html", "text/html");
    check_same("/ringside.js", "ringside.js", "text/javascript");
    check_same("/app.js", "app.js", "text/javascript");
    check_same("/ansi.js", "ansi.js", "text/javascript");
    check_same("/style.css", "style.css", "text/css");
}

static void test_root_query_and_misses(void **state)
{
    (void)state;
    const web_asset *idx = web_asset_find("/index.html");
    assert_ptr_equal(web_asset_find("/"), idx);
    assert_ptr_equal(web_asset_find("/?token=abc"), idx);
    assert_ptr_equal(web_asset_find("/ringside.js?v=1#x"), web_asset_find("/ringside.js"));
    assert_null(web_asset_find(NULL));
    assert_null(web_asset_find(""));
    assert_null(web_asset_find("index.html"));
    assert_null(web_asset_find("/nope.js"));
    assert_null(web_asset_find("/index.htm"));
    assert_null(web_asset_find("/index.html/"));
    assert_null(web_asset_find("/../index.html"));
}

static void test_vendor_xterm_matches_build(void **state)
{
    (void)state;
    const web_asset *js = web_asset_find("/vendor/xterm.js");
    const web_asset *css = web_asset_find("/vendor/xterm.css");
    if (WEB_HAVE_XTERM) {
        assert_non_null(js);
        assert_non_null(css);
        assert_true(js->len > 10000);
        assert_non_null(strstr((const char *)js->data, "Terminal"));
    } else {
        assert_null(js);
        assert_null(css);
    }
    const web_asset *all = NULL;
    size_t n = web_asset_all(&all);
    assert_true(n >= 4);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(web_asset_find(all[i].path), &all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_source_file_is_embedded),
        cmocka_unit_test(test_root_query_and_misses),
        cmocka_unit_test(test_vendor_xterm_matches_build),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
