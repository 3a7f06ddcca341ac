/*
 * test_history.c — sidecar/history.c: the last N ended tasks per agent, output tails copied from a
 * ring buffer (wrap-around included), bounded per task and in total with least-recently-used
 * eviction, window expiry, forgetting an agent, the snapshot's JSON and the metrics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "history.h"
#include "util.h"

static config cfg;

static history *make(long tasks, long tail, long bytes, long window)
{
    memset(&cfg, 0, sizeof cfg);
    cfg.history_tasks = tasks;
    cfg.history_tail = tail;
    cfg.history_bytes = bytes;
    cfg.history_window = window;
    return history_new(&cfg);
}

static history_task meta(const char *id, const char *outcome, uint64_t ended_ns)
{
    history_task t;
    memset(&t, 0, sizeof t);
    snprintf(t.task_id, sizeof t.task_id, "%s", id);
    snprintf(t.title, sizeof t.title, "title of %s", id);
    t.outcome = outcome;
    t.exit_code = 3;
    t.started_ns = ended_ns - 1500000000ull;
    t.ended_ns = ended_ns;
    t.output_bytes = 0;
    return t;
}

/* Records a task whose whole output is `out` (as a linear "ring" of exactly its size). */
static void add(history *hs, const char *agent, const char *id, const char *out, uint64_t ended)
{
    history_task t = meta(id, "failed", ended);
    size_t n = strlen(out);
    t.output_bytes = n;
    history_record(hs, "p1", agent, &t, (const unsigned char *)out, n, 0, n);
}

static json_t *render(history *hs, const char *agent)
{
    buf b;
    buf_init(&b);
    buf_puts(&b, "{\"x\":0");
    history_render(hs, &b, "p1", agent);
    buf_puts(&b, "}");
    json_error_t err;
    json_t *o = json_loadb(b.data, b.len, 0, &err);
    buf_free(&b);
    assert_non_null(o);
    return o;
}

static void test_newest_first_and_count_bounded(void **state)
{
    (void)state;
    history *hs = make(3, 100, 1000, 60);
    add(hs, "a1", "t1", "one", 10000000000ull);
    add(hs, "a1", "t2", "two", 11000000000ull);
    add(hs, "a1", "t3", "three", 12000000000ull);
    add(hs, "a1", "t4", "four", 13000000000ull);
    add(hs, "a1", "t4", "four", 13000000000ull); /* the same end twice: kept once */
    json_t *o = render(hs, "a1");
    json_t *h = json_object_get(o, "history");
    assert_int_equal(json_array_size(h), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 0), "task_id")), "t4");
    assert_string_equal(json_string_value(json_object_get(json_array_get(h, 2), "task_id")), "t2");
    json_t *first = json_array_get(h, 0);
    assert_string_equal(json_string_value(json_object_get(first, "state")), "failed");
    assert_int_equal(json_integer_value(json_object_get(first, "exit_code")), 3);
    assert_true(json_real_value(json_object_get(first, "duration_seconds")) == 1.5);
    assert_int_equal(json_integer_value(json_object_get(first, "output_bytes")), 4);
    assert_true(json_is_true(json_object_get(first, "output_retained")));
    json_decref(o);
    assert_null(history_find(hs, "p1", "a1", "t1"));
    o = render(hs, "nobody");
    assert_int_equal(json_array_size(json_object_get(o, "history")), 0);
    json_decref(o);
    history_free(hs);
}

static void test_tail_from_a_wrapped_ring(void **state)
{
    (void)state;
    history *hs = make(5, 6, 1000, 60);
    /* A ring of 8 holding absolute positions [12, 20): bytes "MNOPQRST", wrapped at 16. */
    const unsigned char ring[8] = {'Q', 'R', 'S', 'T', 'M', 'N', 'O', 'P'};
    history_task t = meta("t1", "completed", 5000000000ull);
    t.output_bytes = 20;
    history_record(hs, "p1", "a1", &t, ring, sizeof ring, 12, 20);
    history_task *r = history_find(hs, "p1", "a1", "t1");
    assert_non_null(r);
    assert_int_equal(r->tail_len, 6); /* --history-tail */
    assert_memory_equal(r->tail, "OPQRST", 6);
    /* No ring (a remote task or no output): the record is kept, with no bytes. */
    history_task remote = meta("t2", "failed", 6000000000ull);
    remote.tail_state = HISTORY_TAIL_REMOTE;
    history_record(hs, "p1", "a1", &remote, NULL, 0, 0, 0);
    r = history_find(hs, "p1", "a1", "t2");
    assert_int_equal(r->tail_state, HISTORY_TAIL_REMOTE);
    assert_null(r->tail);
    history_free(hs);
}

static void test_budget_drops_least_recently_used(void **state)
{
    (void)state;
    history *hs = make(10, 4, 8, 60);
    add(hs, "a1", "t1", "aaaa", 1000000000ull);
    add(hs, "a2", "t2", "bbbb", 2000000000ull);
    assert_non_null(history_find(hs, "p1", "a1", "t1")); /* viewed: t2 is now least recently used */
    add(hs, "a1", "t3", "cccc", 3000000000ull);
    assert_int_equal(history_find(hs, "p1", "a2", "t2")->tail_state, HISTORY_TAIL_EXPIRED);
    assert_memory_equal(history_find(hs, "p1", "a1", "t1")->tail, "aaaa", 4);
    assert_memory_equal(history_find(hs, "p1", "a1", "t3")->tail, "cccc", 4);
    json_t *o = render(hs, "a2");
    assert_true(json_is_false(json_object_get(json_array_get(json_object_get(o, "history"), 0),
                                              "output_retained")));
    json_decref(o);
    buf b;
    buf_init(&b);
    history_render_metrics(&b, hs);
    assert_non_null(strstr(b.data, "ringside_history_output_bytes 8\n"));
    assert_non_null(strstr(b.data, "ringside_history_tasks 3\n"));
    assert_non_null(strstr(b.data, "ringside_history_output_dropped_total{reason=\"budget\"} 1\n"));
    buf_free(&b);
    history_free(hs);
}

static void test_window_and_forget(void **state)
{
    (void)state;
    history *hs = make(10, 100, 1000, 2);
    add(hs, "a1", "t1", "xyz", 1000000000ull);
    uint64_t now = util_mono_ns();
    history_expire(hs, now + 1000000000ull); /* 1 s later: within the 2 s window */
    assert_int_equal(history_find(hs, "p1", "a1", "t1")->tail_state, HISTORY_TAIL_HELD);
    history_expire(hs, now + 3000000000ull);
    history_task *r = history_find(hs, "p1", "a1", "t1");
    assert_int_equal(r->tail_state, HISTORY_TAIL_EXPIRED);
    assert_null(r->tail);
    history_forget(hs, "p1", "a1");
    assert_null(history_find(hs, "p1", "a1", "t1"));
    history_forget(hs, "p1", "a1"); /* idempotent */
    history_free(hs);
    history_free(NULL);
}

/* An agent is (project, agent id): the same id in two projects has two histories (D2). */
static void test_same_agent_id_in_two_projects_is_two_histories(void **state)
{
    (void)state;
    history *hs = make(10, 100, 1000, 60);
    history_task t = {.outcome = "failed", .exit_code = 1, .started_ns = 1, .ended_ns = 2};
    snprintf(t.task_id, sizeof t.task_id, "%s", "t1");
    history_record(hs, "p2", "a1", &t, (const unsigned char *)"P2-SECRET", 9, 0, 9);
    assert_null(history_find(hs, "p1", "a1", "t1"));
    buf b;
    buf_init(&b);
    buf_puts(&b, "{");
    history_render(hs, &b, "p1", "a1");
    buf_puts(&b, "}");
    assert_null(strstr(b.data, "t1"));
    history_task *r = history_find(hs, "p2", "a1", "t1");
    assert_non_null(r);
    assert_memory_equal(r->tail, "P2-SECRET", 9);
    history_forget(hs, "p1", "a1"); /* p2's a1 stays */
    assert_non_null(history_find(hs, "p2", "a1", "t1"));
    buf_free(&b);
    history_free(hs);
}

static void test_disabled(void **state)
{
    (void)state;
    history *hs = make(0, 100, 1000, 60);
    add(hs, "a1", "t1", "xyz", 1000000000ull);
    assert_null(history_find(hs, "p1", "a1", "t1"));
    history_free(hs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_newest_first_and_count_bounded),
        cmocka_unit_test(test_same_agent_id_in_two_projects_is_two_histories),
        cmocka_unit_test(test_tail_from_a_wrapped_ring),
        cmocka_unit_test(test_budget_drops_least_recently_used),
        cmocka_unit_test(test_window_and_forget),
        cmocka_unit_test(test_disabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
