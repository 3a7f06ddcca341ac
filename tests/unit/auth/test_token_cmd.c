/*
 * test_token_cmd.c — `ringside token` (sidecar/token_cmd.c): output, exit codes, one-line errors.
 * stdout and stderr are redirected to temporary files around each call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "token_cmd.h"

static char tmpdir[64];
static char key_path[128], out_path[128], err_path[128];
static char out_text[16384], err_text[4096];

static int group_setup(void **state)
{
    FILE *f;
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ringside-token-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(key_path, sizeof key_path, "%s/hs.key", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/out", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/err", tmpdir);
    f = fopen(key_path, "w");
    if (f == NULL)
        return -1;
    fputs("a-development-secret-of-more-than-32-bytes\n", f);
    fclose(f);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(key_path);
    unlink(out_path);
    unlink(err_path);
    return rmdir(tmpdir);
}

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;
    assert_non_null(f);
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs token_cmd_main with argv (NULL-terminated, argv[0] = "token"), capturing its output. */
static int run(const char *const *args)
{
    char *argv[32];
    int argc = 0, rc, saved_out, saved_err;
    FILE *o, *e;

    while (args[argc] != NULL) {
        assert_true(argc < 31);
        argv[argc] = (char *)(uintptr_t)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    saved_out = dup(1);
    saved_err = dup(2);
    o = fopen(out_path, "w");
    e = fopen(err_path, "w");
    assert_non_null(o);
    assert_non_null(e);
    dup2(fileno(o), 1);
    dup2(fileno(e), 2);
    rc = token_cmd_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    fclose(o);
    fclose(e);
    slurp(out_path, out_text, sizeof out_text);
    slurp(err_path, err_text, sizeof err_text);
    return rc;
}

static void assert_one_line_error(void)
{
    size_t n = strlen(err_text);
    assert_true(n > 0);
    assert_int_equal(err_text[n - 1], '\n');
    assert_ptr_equal(strchr(err_text, '\n'), err_text + n - 1);
    assert_non_null(strstr(err_text, "ringside token: "));
    assert_string_equal(out_text, "");
}

static void test_mints_valid_token(void **state)
{
    const char *args[] = {"token",      "--jwt-key", key_path,   "--sub",    "alice",
                          "--projects", "p1,p2",     "--agents", "a1",       "--ttl=120",
                          "--iss",      "idp",       "--aud",    "ringside", NULL};
    auth_config *cfg = NULL;
    auth_identity id;
    char err[256];
    size_t n;
    (void)state;

    assert_int_equal(run(args), 0);
    assert_string_equal(err_text, "");
    n = strlen(out_text);
    assert_true(n > 20);
    assert_int_equal(out_text[n - 1], '\n');
    out_text[n - 1] = '\0';
    assert_int_equal(
        auth_config_new(&cfg, "HS256", key_path, "idp", "ringside", 0, err, sizeof err), AUTH_OK);
    assert_int_equal(auth_verify(cfg, out_text, n - 1, (int64_t)time(NULL), &id), AUTH_OK);
    assert_string_equal(id.user, "alice");
    assert_true(auth_allows_agent(&id, "p2", "a1"));
    assert_false(auth_allows_agent(&id, "p2", "a2"));
    assert_true(id.exp - (int64_t)time(NULL) <= 120);
    assert_true(id.exp - (int64_t)time(NULL) >= 100);
    auth_identity_clear(&id);
    auth_config_free(cfg);
}

static void test_env_defaults_and_wildcard(void **state)
{
    const char *args[] = {"token", "--sub", "op", "--projects", "*", NULL};
    auth_config *cfg = NULL;
    auth_identity id;
    char err[256];
    (void)state;

    assert_int_equal(setenv("RINGSIDE_JWT_KEY", key_path, 1), 0);
    assert_int_equal(run(args), 0);
    unsetenv("RINGSIDE_JWT_KEY");
    out_text[strcspn(out_text, "\n")] = '\0';
    assert_int_equal(auth_config_new(&cfg, "HS256", key_path, NULL, NULL, 0, err, sizeof err),
                     AUTH_OK);
    assert_int_equal(auth_verify(cfg, out_text, strlen(out_text), (int64_t)time(NULL), &id),
                     AUTH_OK);
    assert_true(id.all_projects);
    assert_true(id.exp - (int64_t)time(NULL) > 3500); /* default ttl 3600 */
    auth_identity_clear(&id);
    auth_config_free(cfg);
}

static void test_help(void **state)
{
    const char *args[] = {"token", "--help", NULL};
    (void)state;
    assert_int_equal(run(args), 0);
    assert_non_null(strstr(out_text, "usage: ringside token"));
    assert_non_null(strstr(out_text, "--projects"));
}

static void test_usage_errors(void **state)
{
    const char *missing_key[] = {"token", "--sub", "a", "--projects", "p", NULL};
    const char *missing_sub[] = {"token", "--jwt-key", key_path, "--projects", "p", NULL};
    const char *missing_proj[] = {"token", "--jwt-key", key_path, "--sub", "a", NULL};
    const char *unknown[] = {"token",      "--jwt-key", key_path,       "--sub", "a",
                             "--projects", "p",         "--frobnicate", NULL};
    const char *no_value[] = {"token", "--jwt-key", key_path, "--sub", NULL};
    const char *bad_ttl[] = {"token",      "--jwt-key", key_path, "--sub", "a",
                             "--projects", "p",         "--ttl",  "10s",   NULL};
    const char *zero_ttl[] = {"token",      "--jwt-key", key_path, "--sub", "a",
                              "--projects", "p",         "--ttl",  "0",     NULL};
    const char *bad_id[] = {"token", "--jwt-key",  key_path, "--sub",
                            "a",     "--projects", "p q",    NULL};
    const char *bad_alg[] = {"token",      "--jwt-key", key_path,    "--sub", "a",
                             "--projects", "p",         "--jwt-alg", "none",  NULL};
    const char *const *cases[] = {missing_key, missing_sub, missing_proj, unknown, no_value,
                                  bad_ttl,     zero_ttl,    bad_id,       bad_alg};
    (void)state;
    unsetenv("RINGSIDE_JWT_KEY");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(run(cases[i]), 2);
        assert_one_line_error();
    }
}

static void test_runtime_errors(void **state)
{
    char missing[160];
    const char *args[] = {"token", "--jwt-key", missing, "--sub", "a", "--projects", "p", NULL};
    (void)state;
    snprintf(missing, sizeof missing, "%s/nope", tmpdir);
    assert_int_equal(run(args), 1);
    assert_one_line_error();
    assert_non_null(strstr(err_text, "nope"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mints_valid_token),
        cmocka_unit_test(test_env_defaults_and_wildcard),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_runtime_errors),
    };
    return cmocka_run_group_tests_name("token_cmd", tests, group_setup, group_teardown);
}
