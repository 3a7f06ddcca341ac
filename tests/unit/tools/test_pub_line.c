/*
 * test_pub_line.c — `ringside-pub --stdin`'s line protocol (pub_line.h) and the --stdin /
 * --strict flags (tools_args.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pub_line.h"
#include "tools_args.h"

#define ARGC(v) ((int)(sizeof(v) / sizeof((v)[0])))

static char err[512];
static const tools_common ident = {"/shm", "agent-1", "proj", NULL};

static tools_parse_result line(const char *text, pub_args *out)
{
    static char buf[PUB_LINE_MAX + 8];
    snprintf(buf, sizeof buf, "%s", text);
    return pub_line_parse(buf, &ident, out, err, sizeof err);
}

static void test_split_words_and_quotes(void **state)
{
    (void)state;
    char buf[] = "  a \"b c\"\t'd \\n'  e\"f\\x41\"g \"\\e[1m\\r\\n\\\\\\\"\"\r\n";
    const char *w[8];
    size_t len[8];
    int q[8];
    int n = pub_line_split(buf, w, len, q, 8, err, sizeof err);
    assert_int_equal(n, 5);
    assert_string_equal(w[0], "a");
    assert_int_equal(q[0], 0);
    assert_string_equal(w[1], "b c");
    assert_int_equal(q[1], 1);
    assert_string_equal(w[2], "d \\n"); /* single quotes: literal */
    assert_string_equal(w[3], "efAg");
    assert_string_equal(w[4], "\033[1m\r\n\\\"");
    assert_int_equal(len[4], 8);
}

static void test_split_nul_escape_and_blank(void **state)
{
    (void)state;
    char buf[] = "x \"a\\x00b\"";
    const char *w[4];
    size_t len[4];
    int q[4];
    assert_int_equal(pub_line_split(buf, w, len, q, 4, err, sizeof err), 2);
    assert_int_equal(len[1], 3);
    assert_memory_equal(w[1], "a\0b", 3);
    char blank[] = "   \n";
    assert_int_equal(pub_line_split(blank, w, len, q, 4, err, sizeof err), 0);
    char comment[] = "  # status idle";
    assert_int_equal(pub_line_split(comment, w, len, q, 4, err, sizeof err), 0);
    char hash_word[] = "status '#1'";
    assert_int_equal(pub_line_split(hash_word, w, len, q, 4, err, sizeof err), 2);
}

static void test_split_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"a \"open", "unterminated double quote"},
        {"a 'open", "unterminated single quote"},
        {"a \"\\q\"", "unknown escape \\q"},
        {"a \"\\x4\"", "two hex digits"},
        {"a \"\\", "unterminated double quote"},
        {"1 2 3 4 5", "too many words"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        const char *w[4];
        size_t len[4];
        int q[4];
        snprintf(buf, sizeof buf, "%s", cases[i].text);
        assert_int_equal(pub_line_split(buf, w, len, q, 4, err, sizeof err), -1);
        assert_non_null(strstr(err, cases[i].msg));
    }
}

static void test_line_commands(void **state)
{
    (void)state;
    pub_args a;
    assert_int_equal(line("status working \"reading the repo\"\n", &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_STATUS);
    assert_int_equal(a.status, 1);
    assert_string_equal(a.text, "reading the repo");
    assert_string_equal(a.common.agent, "agent-1");
    assert_int_equal(line("progress t1 3 10 compiling", &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_PROGRESS);
    assert_int_equal(a.step, 3);
    assert_int_equal(a.total, 10);
    assert_int_equal(line("term t1 --stderr \"\\e[31mx\\x00\\r\\n\"", &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_TERM);
    assert_int_equal(a.stream, 2);
    assert_int_equal(a.data_len, 9);
    assert_memory_equal(a.data, "\033[31mx\0\r\n", 9);
    assert_int_equal(line("task-end t1 failed -3", &a), TOOLS_PARSE_OK);
    assert_int_equal(a.exit_code, -3);
    /* a quoted word is never an option */
    assert_int_equal(line("status stuck \"-5 C\"", &a), TOOLS_PARSE_OK);
    assert_string_equal(a.text, "-5 C");
    assert_int_equal(line("status stuck -- -5", &a), TOOLS_PARSE_OK);
    assert_string_equal(a.text, "-5");
    assert_int_equal(line("# nothing", &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_NONE);
    assert_int_equal(line("", &a), TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_NONE);
}

static void test_line_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"bogus", "unknown command 'bogus'"},
        {"status busy", "unknown status 'busy'"},
        {"term t1", "expected term TASK [--stderr] TEXT"},
        {"term t1 a b", "too many arguments"},
        {"status idle --agent x", "unknown option '--agent'"},
        {"status working \"a\\x00b\"", "NUL byte"},
        {"progress t1 5 3", "exceeds TOTAL"},
        {"task-start \"bad id\"", "task id 'bad id' is invalid"},
        {"status --stderr idle", "--stderr only applies to the term command"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pub_args a;
        assert_int_equal(line(cases[i].text, &a), TOOLS_PARSE_USAGE);
        if (strstr(err, cases[i].msg) == NULL)
            fail_msg("%s: got '%s', want '%s'", cases[i].text, err, cases[i].msg);
    }
}

static void test_flags_stdin_and_strict(void **state)
{
    (void)state;
    static const tools_env env = {NULL, "a", "p", NULL};
    pub_args a;
    const char *v1[] = {"ringside-pub", "--stdin", "--strict"};
    assert_int_equal(pub_args_parse(ARGC(v1), (char *const *)v1, &env, &a, err, sizeof err),
                     TOOLS_PARSE_OK);
    assert_int_equal(a.cmd, PUB_CMD_STDIN);
    assert_int_equal(a.strict, 1);
    const char *v2[] = {"ringside-pub", "status", "idle"};
    assert_int_equal(pub_args_parse(ARGC(v2), (char *const *)v2, &env, &a, err, sizeof err),
                     TOOLS_PARSE_OK);
    assert_int_equal(a.strict, 0);
    assert_null(a.data);
    const char *v3[] = {"ringside-pub", "--stdin", "status", "idle"};
    assert_int_equal(pub_args_parse(ARGC(v3), (char *const *)v3, &env, &a, err, sizeof err),
                     TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "--stdin takes no command"));
    const char *v4[] = {"ringside-pub", "--stdin"};
    static const tools_env none = {NULL, NULL, NULL, NULL};
    assert_int_equal(pub_args_parse(ARGC(v4), (char *const *)v4, &none, &a, err, sizeof err),
                     TOOLS_PARSE_USAGE);
    assert_non_null(strstr(err, "RINGSIDE_AGENT"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_words_and_quotes), cmocka_unit_test(test_split_nul_escape_and_blank),
        cmocka_unit_test(test_split_errors),           cmocka_unit_test(test_line_commands),
        cmocka_unit_test(test_line_errors),            cmocka_unit_test(test_flags_stdin_and_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
