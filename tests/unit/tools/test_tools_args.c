/*
 * test_tools_args.c — ringside-pub / ringside-run argument parsing (tools_args.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tools_args.h"

#define ARGC(v) ((int)(sizeof(v) / sizeof((v)[0])))

static char err[512];
static const tools_env no_env = {NULL, NULL, NULL, NULL};

static tools_parse_result pub(int argc, const char **argv, const tools_env *env, pub_args *out)
{
    return pub_args_parse(argc, (char *const *)argv, env, out, err, sizeof err);
}

static tools_parse_result run(int argc, const char **argv, const tools_env *env, run_args *out)
{
    return run_args_parse(argc, (char *const *)argv, env, out, err, sizeof err);
}

static void test_id_valid(void **state)
{
    (void)state;
    char long_ok[64], too_long[65];
    memset(long_ok, 'a', 63);
    long_ok[63] = '\0';
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    assert_true(tools_id_valid("agent-1"));
    assert_true(tools_id_valid("a.b_c:d@e-F9"));
    assert_true(tools_id_valid(long_ok));
    assert_false(tools_id_valid(too_long));
    assert_false(tools_id_valid(""));
    assert_false(tools_id_valid(NULL));
    assert_false(tools_id_valid("a b"));
    assert_false(tools_id_valid("a/b"));
    assert_false(tools_id_valid("\xc3\xa9"));
}

static void test_numbers(void **state)
{
    (void)state;
    uint32_t u = 7;
    int i = 7;
    assert_int_equal(tools_parse_u32("0", &u), 0);
    assert_int_equal(u, 0);
    assert_int_equal(tools_parse_u32("4294967295", &u), 0);
    assert_int_equal(u, UINT32_MAX);
    assert_int_equal(tools_parse_u32("4294967296", &u), -1);
    assert_int_equal(tools_parse_u32("-1", &u), -1);
    assert_int_equal(tools_parse_u32("1x", &u), -1);
    assert_int_equal(tools_parse_u32(" 1", &u), -1);
    assert_int_equal(tools_parse_u32("", &u), -1);
    assert_int_equal(tools_parse_int("-3", -10, 10, &i), 0);
    assert_int_equal(i, -3);
    assert_int_equal(tools_parse_int("11", -10, 10, &i), -1);
    assert_int_equal(tools_parse_int("-", -10, 10, &i), -1);
    assert_int_equal(tools_parse_int("2147483647", INT32_MIN, INT32_MAX, &i), 0);
    assert_int_equal(tools_parse_int("-2147483648", INT32_MIN, INT32_MAX, &i), 0);
    assert_int_equal(i, INT32_MIN);
    assert_int_equal(tools_parse_int("2147483648", INT32_MIN, INT32_MAX, &i), -1);
    assert_int_equal(tools_parse_int("99999999999999999999", INT32_MIN, INT32_MAX, &i), -1);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_int_equal(tools_status_from_name("idle"), 0);
    assert_int_equal(tools_status_from_name("working"), 1);
    assert_int_equal(tools_status_from_name("stuck"), 2);
    assert_int_equal(tools_status_from_name("failed"), 3);
    assert_int_equal(tools_status_from_name("completed"), 4);
    assert_int_equal(tools_status_from_name("cancelled"), 5);
    assert_int_equal(tools_status_from_name("Working"), -1);
    assert_int_equal(tools_status_from_name(NULL), -1);
}

static void test_pub_status_flags(void **state)
{
    (void)state;
    pub_args a;
    const char *argv[] = {"ringside-pub", "--shm-dir", "/tmp/x", "--agent=a1", "--project", "p1",
                    "status",       "working",   "doing things"};
    assert_int_equal(pub(ARGC(argv), argv, &no_env, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_STATUS);
    assert_int_equal(a.status, 1);
    assert_string_equal(a.text, "doing things");
    assert_string_equal(a.common.shm_dir, "/tmp/x");
    assert_string_equal(a.common.agent, "a1");
    assert_string_equal(a.common.project, "p1");
    assert_null(a.common.owner);
}

static void test_pub_env_and_flags_win(void **state)
{
    (void)state;
    pub_args a;
    tools_env env = {"/envdir", "env-agent", "env-proj", "alice"};
    const char *argv1[] = {"ringside-pub", "status", "idle"};
    assert_int_equal(pub(ARGC(argv1), argv1, &env, &a), TOOLS_PARSE_OK);
    assert_string_equal(a.common.shm_dir, "/envdir");
    assert_string_equal(a.common.agent, "env-agent");
    assert_string_equal(a.common.project, "env-proj");
    assert_string_equal(a.common.owner, "alice");
    assert_null(a.text);

    const char *argv2[] = {"ringside-pub", "--agent", "flag-agent", "--owner", "bob", "status", "idle"};
    assert_int_equal(pub(ARGC(argv2), argv2, &env, &a), TOOLS_PARSE_OK);
    assert_string_equal(a.common.agent, "flag-agent");
    assert_string_equal(a.common.owner, "bob");

    /* Empty env values count as unset; the shm dir has a default. */
    tools_env empty = {"", "a", "p", ""};
    assert_int_equal(pub(ARGC(argv1), argv1, &empty, &a), TOOLS_PARSE_OK);
    assert_string_equal(a.common.shm_dir, TOOLS_DEFAULT_SHM_DIR);
    assert_null(a.common.owner);
}

static void test_pub_missing_identity(void **state)
{
    (void)state;
    pub_args a;
    const char *argv[] = {"ringside-pub", "status", "idle"};
    assert_int_equal(pub(ARGC(argv), argv, &no_env, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "--agent"));
    assert_non_null(strstr(err, "RINGSIDE_AGENT"));
    tools_env only_agent = {NULL, "a", NULL, NULL};
    assert_int_equal(pub(ARGC(argv), argv, &only_agent, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "RINGSIDE_PROJECT"));
    const char *bad[] = {"ringside-pub", "--agent", "a b", "--project", "p", "status", "idle"};
    assert_int_equal(pub(ARGC(bad), bad, &no_env, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "agent id"));
    const char *bad_owner[] = {"ringside-pub", "--agent", "a", "--project", "p", "--owner", "x/y",
                         "status",       "idle"};
    assert_int_equal(pub(ARGC(bad_owner), bad_owner, &no_env, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "owner"));
    const char *noval[] = {"ringside-pub", "status", "idle", "--agent"};
    assert_int_equal(pub(ARGC(noval), noval, &no_env, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "needs a value"));
}

static const tools_env ap = {NULL, "a", "p", NULL};

static void test_pub_commands(void **state)
{
    (void)state;
    pub_args a;
    const char *ts[] = {"ringside-pub", "task-start", "t1", "Build it"};
    assert_int_equal(pub(ARGC(ts), ts, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_TASK_START);
    assert_string_equal(a.task, "t1");
    assert_string_equal(a.text, "Build it");

    const char *pr[] = {"ringside-pub", "progress", "t1", "3", "10", "compiling"};
    assert_int_equal(pub(ARGC(pr), pr, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_PROGRESS);
    assert_int_equal(a.step, 3);
    assert_int_equal(a.total, 10);
    assert_string_equal(a.text, "compiling");

    const char *pr0[] = {"ringside-pub", "progress", "t1", "30", "0"};
    assert_int_equal(pub(ARGC(pr0), pr0, &ap, &a), TOOLS_PARSE_OK);
    assert_null(a.text);

    const char *te[] = {"ringside-pub", "term", "t1"};
    assert_int_equal(pub(ARGC(te), te, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_TERM);
    assert_int_equal(a.stream, 1);
    const char *te2[] = {"ringside-pub", "term", "t1", "--stderr"};
    assert_int_equal(pub(ARGC(te2), te2, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.stream, 2);

    const char *en[] = {"ringside-pub", "task-end", "t1", "failed", "-2"};
    assert_int_equal(pub(ARGC(en), en, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_TASK_END);
    assert_int_equal(a.status, 3);
    assert_int_equal(a.exit_code, -2); /* a leading '-' number is an argument, not an option */
    const char *en2[] = {"ringside-pub", "task-end", "t1", "completed"};
    assert_int_equal(pub(ARGC(en2), en2, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.status, 4);
    assert_int_equal(a.exit_code, 0);

    /* "--" lets text start with '-'. */
    const char *dd[] = {"ringside-pub", "status", "stuck", "--", "--waiting for input"};
    assert_int_equal(pub(ARGC(dd), dd, &ap, &a), TOOLS_PARSE_OK);
    assert_int_equal(a.status, 2);
    assert_string_equal(a.text, "--waiting for input");
}

static void test_pub_usage_errors(void **state)
{
    (void)state;
    pub_args a;
    const char *none[] = {"ringside-pub"};
    assert_int_equal(pub(ARGC(none), none, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "no command"));
    const char *unk[] = {"ringside-pub", "frobnicate"};
    assert_int_equal(pub(ARGC(unk), unk, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "unknown command 'frobnicate'"));
    const char *st[] = {"ringside-pub", "status", "busy"};
    assert_int_equal(pub(ARGC(st), st, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "unknown status 'busy'"));
    const char *few[] = {"ringside-pub", "progress", "t1", "3"};
    assert_int_equal(pub(ARGC(few), few, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "missing argument"));
    const char *many[] = {"ringside-pub", "term", "t1", "extra"};
    assert_int_equal(pub(ARGC(many), many, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "too many"));
    const char *way_many[] = {"ringside-pub", "status", "idle", "a", "b", "c", "d", "e", "f"};
    assert_int_equal(pub(ARGC(way_many), way_many, &ap, &a), TOOLS_PARSE_USAGE);
    const char *nan[] = {"ringside-pub", "progress", "t1", "three", "10"};
    assert_int_equal(pub(ARGC(nan), nan, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "STEP"));
    const char *nant[] = {"ringside-pub", "progress", "t1", "3", "ten"};
    assert_int_equal(pub(ARGC(nant), nant, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "TOTAL"));
    const char *over[] = {"ringside-pub", "progress", "t1", "11", "10"};
    assert_int_equal(pub(ARGC(over), over, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "exceeds"));
    const char *out[] = {"ringside-pub", "task-end", "t1", "working"};
    assert_int_equal(pub(ARGC(out), out, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "outcome"));
    const char *code[] = {"ringside-pub", "task-end", "t1", "failed", "x"};
    assert_int_equal(pub(ARGC(code), code, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "EXIT_CODE"));
    const char *task[] = {"ringside-pub", "task-start", "bad task"};
    assert_int_equal(pub(ARGC(task), task, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "task id"));
    const char *se[] = {"ringside-pub", "status", "idle", "--stderr"};
    assert_int_equal(pub(ARGC(se), se, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "--stderr"));
    const char *uo[] = {"ringside-pub", "--bogus", "status", "idle"};
    assert_int_equal(pub(ARGC(uo), uo, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "unknown option '--bogus'"));
    /* Every message is one line. */
    assert_null(strchr(err, '\n'));
}

static void test_pub_help_version(void **state)
{
    (void)state;
    pub_args a;
    const char *h[] = {"ringside-pub", "--help"};
    assert_int_equal(pub(ARGC(h), h, &no_env, &a), TOOLS_PARSE_HELP);
    const char *h2[] = {"ringside-pub", "status", "-h"};
    assert_int_equal(pub(ARGC(h2), h2, &no_env, &a), TOOLS_PARSE_HELP);
    const char *v[] = {"ringside-pub", "--version"};
    assert_int_equal(pub(ARGC(v), v, &no_env, &a), TOOLS_PARSE_VERSION);
    assert_non_null(strstr(pub_usage(), "task-end TASK"));
    assert_non_null(strstr(run_usage(), "--task T"));
}

static void test_run_basic(void **state)
{
    (void)state;
    run_args a;
    const char *argv[] = {"ringside-run", "--agent", "a", "--project", "p", "--task", "t",
                    "--title",      "Make",    "--", "sh",       "-c", "exit 3", NULL};
    /* Like a real argv, the array ends with NULL (not counted in argc). */
    assert_int_equal(run(ARGC(argv) - 1, argv, &no_env, &a), TOOLS_PARSE_OK);
    assert_string_equal(a.task, "t");
    assert_string_equal(a.title, "Make");
    assert_int_equal(a.cmd_argc, 3);
    assert_string_equal(a.cmd[0], "sh");
    assert_string_equal(a.cmd[1], "-c");
    assert_string_equal(a.cmd[2], "exit 3");
    assert_null(a.cmd[3]);
    assert_string_equal(a.common.shm_dir, TOOLS_DEFAULT_SHM_DIR);

    /* Without "--" the first non-option word starts the command; its options are its own. */
    const char *argv2[] = {"ringside-run", "--task=t", "make", "-j2", "--agent", "x"};
    assert_int_equal(run(ARGC(argv2), argv2, &ap, &a), TOOLS_PARSE_OK);
    assert_string_equal(a.common.agent, "a");
    assert_int_equal(a.cmd_argc, 4);
    assert_string_equal(a.cmd[1], "-j2");
    assert_null(a.title);
}

static void test_run_errors(void **state)
{
    (void)state;
    run_args a;
    const char *nocmd[] = {"ringside-run", "--task", "t", "--"};
    assert_int_equal(run(ARGC(nocmd), nocmd, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "no command"));
    const char *notask[] = {"ringside-run", "--", "true"};
    assert_int_equal(run(ARGC(notask), notask, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "--task"));
    const char *badtask[] = {"ringside-run", "--task", "a/b", "true"};
    assert_int_equal(run(ARGC(badtask), badtask, &ap, &a), TOOLS_PARSE_USAGE);
    const char *noagent[] = {"ringside-run", "--task", "t", "true"};
    assert_int_equal(run(ARGC(noagent), noagent, &no_env, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "RINGSIDE_AGENT"));
    const char *unk[] = {"ringside-run", "--task", "t", "--frob", "true"};
    assert_int_equal(run(ARGC(unk), unk, &ap, &a), TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "--frob"));
    const char *noval[] = {"ringside-run", "--task"};
    assert_int_equal(run(ARGC(noval), noval, &ap, &a), TOOLS_PARSE_USAGE);
    const char *help[] = {"ringside-run", "--help", "--", "true"};
    assert_int_equal(run(ARGC(help), help, &ap, &a), TOOLS_PARSE_HELP);
}

static void test_join_title(void **state)
{
    (void)state;
    char buf[16];
    const char *w[] = {"make", "-j2", "all"};
    assert_int_equal(tools_join_title((char *const *)w, 3, buf, sizeof buf), 12);
    assert_string_equal(buf, "make -j2 all");
    const char *longw[] = {"abcdefghijklmnopqrstuvwxyz"};
    assert_int_equal(tools_join_title((char *const *)longw, 1, buf, sizeof buf), 15);
    assert_string_equal(buf, "abcdefghijklmno");
    /* A 2-byte character cut after its lead byte is dropped whole. */
    const char *utf[] = {"abcdefghijklmn\xc3\xa9"};
    assert_int_equal(tools_join_title((char *const *)utf, 1, buf, sizeof buf), 14);
    assert_string_equal(buf, "abcdefghijklmn");
    const char *utf2[] = {"abcdefghijklm\xc3\xa9z"};
    assert_int_equal(tools_join_title((char *const *)utf2, 1, buf, sizeof buf), 15);
    assert_string_equal(buf, "abcdefghijklm\xc3\xa9");
    const char *utf3[] = {"abcdefghijklm\xe2\x82\xac"};
    assert_int_equal(tools_join_title((char *const *)utf3, 1, buf, sizeof buf), 13);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_valid),          cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_status_names),      cmocka_unit_test(test_pub_status_flags),
        cmocka_unit_test(test_pub_env_and_flags_win), cmocka_unit_test(test_pub_missing_identity),
        cmocka_unit_test(test_pub_commands),      cmocka_unit_test(test_pub_usage_errors),
        cmocka_unit_test(test_pub_help_version),  cmocka_unit_test(test_run_basic),
        cmocka_unit_test(test_run_errors),        cmocka_unit_test(test_join_title),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
