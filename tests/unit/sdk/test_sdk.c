/* test_sdk.c — every rs_* function of libringside, including its error paths, read back through
 * the real ring reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../ipc/ipc_test_util.h"
#include "ringside.h"

typedef struct fx {
    char dir[PATH_MAX];
    rs_options o;
    rs_agent *a;
    ipc_reader *r;
    tu_events *c;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    tu_mkdir(f->dir);
    rs_options_init(&f->o);
    f->o.shm_dir = f->dir;
    f->o.agent_id = "agent.1";
    f->o.project_id = "proj";
    f->c = tu_events_new();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ipc_reader_free(f->r);
    rs_close(f->a);
    tu_rmdir(f->dir);
    tu_events_free(f->c);
    free(f);
    return 0;
}

static void open_reader(fx *f)
{
    char path[PATH_MAX];
    assert_true(tu_find_ring(f->dir, 0, path));
    assert_int_equal(ipc_reader_open(path, &f->r), IPC_OK);
}

/* rs_open creates the ring 0660 whatever the umask: agent and sidecar may be different uids
 * sharing a group (Kubernetes fsGroup). */
static void test_ring_mode(void **state)
{
    fx *f = *state;
    mode_t old = umask(077);
    int rc = rs_open(&f->o, &f->a);
    umask(old);
    assert_int_equal(rc, RS_OK);
    char path[PATH_MAX];
    assert_true(tu_find_ring(f->dir, 0, path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
}

static void test_strings(void **state)
{
    (void)state;
    assert_string_equal(rs_strerror(RS_OK), "success");
    assert_string_equal(rs_strerror(RS_EFULL), "ring full: event dropped and counted");
    assert_string_equal(rs_strerror(12345), "unknown error");
    assert_string_equal(rs_status_name(RS_STATUS_CANCELLED), "cancelled");
    assert_null(rs_status_name((rs_status)6));
    assert_null(rs_status_name((rs_status)-1));
    rs_status s;
    assert_int_equal(rs_status_parse("stuck", &s), RS_OK);
    assert_int_equal(s, RS_STATUS_STUCK);
    assert_int_equal(rs_status_parse("Stuck", &s), RS_EINVAL);
    assert_int_equal(rs_status_parse(NULL, &s), RS_EINVAL);
    assert_int_equal(rs_status_parse("idle", NULL), RS_EINVAL);
    assert_string_equal(rs_version(), "0.1.0");
    rs_options_init(NULL); /* no crash */
}

static void test_open_errors(void **state)
{
    fx *f = *state;
    rs_agent *a = (rs_agent *)0x1;
    assert_int_equal(rs_open(NULL, &a), RS_EINVAL);
    assert_null(a);
    assert_int_equal(rs_open(&f->o, NULL), RS_EINVAL);
    rs_options o = f->o;
    o.size = 8;
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o = f->o;
    o.agent_id = NULL;
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.agent_id = "";
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.agent_id = "has space";
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.agent_id = "0123456789012345678901234567890123456789012345678901234567890123"; /* 64 */
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.agent_id = "012345678901234567890123456789012345678901234567890123456789012"; /* 63 ok */
    o.project_id = "p/q";
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.project_id = "p";
    o.owner = "";
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.owner = NULL;
    o.term_ring_bytes = 10000;
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.term_ring_bytes = 0;
    o.max_tasks = 5000;
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.max_tasks = 0;
    o.log_slots = 100;
    assert_int_equal(rs_open(&o, &a), RS_EINVAL);
    o.log_slots = 0;
    o.shm_dir = "/nonexistent/ringside";
    assert_int_equal(rs_open(&o, &a), RS_ESHM);
    assert_int_equal(errno, ENOENT);
    assert_null(a);
    /* the long id works */
    o.shm_dir = f->dir;
    assert_int_equal(rs_open(&o, &a), RS_OK);
    assert_int_equal(rs_close(a), RS_OK);
    assert_int_equal(rs_close(NULL), RS_OK);
}

static void test_env_dir(void **state)
{
    fx *f = *state;
    f->o.shm_dir = NULL;
    setenv("RINGSIDE_SHM_DIR", f->dir, 1);
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    unsetenv("RINGSIDE_SHM_DIR");
    open_reader(f);
    assert_string_equal(ipc_reader_identity(f->r)->agent_id, "agent.1");
    assert_string_equal(ipc_reader_identity(f->r)->owner, "");
}

static void test_publish_all_kinds(void **state)
{
    fx *f = *state;
    f->o.owner = "bob";
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    assert_string_equal(ipc_reader_identity(f->r)->owner, "bob");
    assert_int_equal(rs_set_status(f->a, RS_STATUS_WORKING, "on it"), RS_OK);
    assert_int_equal(rs_task_start(f->a, "task-1", "Build"), RS_OK);
    assert_int_equal(rs_progress(f->a, "task-1", 1, 3, "step one"), RS_OK);
    assert_int_equal(rs_write(f->a, "task-1", RS_STDOUT, "out\n", 4), RS_OK);
    assert_int_equal(rs_write(f->a, "task-1", RS_STDOUT, "", 0), RS_OK);
    assert_int_equal(rs_task_end(f->a, "task-1", RS_STATUS_FAILED, 2), RS_OK);
    assert_int_equal(rs_set_status(f->a, RS_STATUS_IDLE, NULL), RS_OK);
    tu_drain(f->r, f->c);
    int types[16] = {0}, n = 0;
    for (int i = 0; i < f->c->n && n < 16; i++)
        types[n++] = f->c->ev[i].type;
    assert_int_equal(types[0], IPC_EV_STATUS);
    assert_int_equal(types[1], IPC_EV_TASK_START);
    /* progress is delivered after the log; the task ended meanwhile so it may be skipped */
    int term = -1, end = -1;
    for (int i = 0; i < n; i++) {
        if (types[i] == IPC_EV_TERM)
            term = i;
        if (types[i] == IPC_EV_TASK_END)
            end = i;
    }
    assert_true(term >= 0 && end > term);
    assert_int_equal(f->c->ev[end].exit_code, 2);
    assert_int_equal(f->c->ev[end].status, RS_STATUS_FAILED);
    assert_memory_equal(f->c->term, "out\n", 4);

    rs_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    assert_int_equal(rs_stats_get(f->a, &st), RS_OK);
    assert_int_equal(st.events_published, 4);
    assert_int_equal(st.events_dropped, 0);
    assert_int_equal(st.progress_updates, 1);
    assert_int_equal(st.term_bytes_written, 4);
    assert_int_equal(st.term_bytes_dropped, 0);
    /* a smaller (older) struct gets only its prefix */
    rs_stats small;
    memset(&small, 0xaa, sizeof small);
    small.size = offsetof(rs_stats, events_dropped);
    assert_int_equal(rs_stats_get(f->a, &small), RS_OK);
    assert_int_equal(small.events_published, 4);
    assert_int_equal(small.events_dropped, 0xaaaaaaaaaaaaaaaaull);
    small.size = 0;
    assert_int_equal(rs_stats_get(f->a, &small), RS_EINVAL);
    assert_int_equal(rs_stats_get(NULL, &st), RS_EINVAL);
    assert_int_equal(rs_stats_get(f->a, NULL), RS_EINVAL);
}

static void test_progress_visible(void **state)
{
    fx *f = *state;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    assert_int_equal(rs_task_start(f->a, "t", NULL), RS_OK);
    assert_int_equal(rs_progress(f->a, "t", 7, 0, NULL), RS_OK); /* total unknown */
    tu_drain(f->r, f->c);
    assert_int_equal(f->c->ev[f->c->n - 1].type, IPC_EV_PROGRESS);
    assert_int_equal(f->c->ev[f->c->n - 1].current_step, 7);
    assert_int_equal(f->c->ev[f->c->n - 1].total_steps, 0);
}

static void test_argument_errors(void **state)
{
    fx *f = *state;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    assert_int_equal(rs_set_status(NULL, RS_STATUS_IDLE, NULL), RS_EINVAL);
    assert_int_equal(rs_set_status(f->a, (rs_status)6, NULL), RS_EINVAL);
    assert_int_equal(rs_set_status(f->a, (rs_status)-1, NULL), RS_EINVAL);
    assert_int_equal(rs_task_start(NULL, "t", NULL), RS_EINVAL);
    assert_int_equal(rs_task_start(f->a, NULL, NULL), RS_EINVAL);
    assert_int_equal(rs_task_start(f->a, "", NULL), RS_EINVAL);
    assert_int_equal(rs_task_start(f->a, "a b", NULL), RS_EINVAL);
    assert_int_equal(rs_task_start(f->a, "t", NULL), RS_OK);
    assert_int_equal(rs_task_start(f->a, "t", NULL), RS_EEXIST);
    assert_int_equal(rs_progress(NULL, "t", 1, 2, NULL), RS_EINVAL);
    assert_int_equal(rs_progress(f->a, "t", 3, 2, NULL), RS_EINVAL);
    assert_int_equal(rs_progress(f->a, "nope", 1, 2, NULL), RS_ENOTASK);
    assert_int_equal(rs_progress(f->a, NULL, 1, 2, NULL), RS_EINVAL);
    assert_int_equal(rs_write(NULL, "t", RS_STDOUT, "x", 1), RS_EINVAL);
    assert_int_equal(rs_write(f->a, "t", (rs_stream)0, "x", 1), RS_EINVAL);
    assert_int_equal(rs_write(f->a, "t", (rs_stream)3, "x", 1), RS_EINVAL);
    assert_int_equal(rs_write(f->a, "t", RS_STDERR, NULL, 1), RS_EINVAL);
    assert_int_equal(rs_write(f->a, "t", RS_STDERR, NULL, 0), RS_OK);
    assert_int_equal(rs_write(f->a, "t", RS_STDERR, "x", RS_WRITE_MAX + 1), RS_EINVAL);
    assert_int_equal(rs_write(f->a, "nope", RS_STDERR, "x", 1), RS_ENOTASK);
    assert_int_equal(rs_task_end(NULL, "t", RS_STATUS_COMPLETED, 0), RS_EINVAL);
    assert_int_equal(rs_task_end(f->a, "t", RS_STATUS_WORKING, 0), RS_EINVAL);
    assert_int_equal(rs_task_end(f->a, "t", RS_STATUS_IDLE, 0), RS_EINVAL);
    assert_int_equal(rs_task_end(f->a, "nope", RS_STATUS_COMPLETED, 0), RS_ENOTASK);
    assert_int_equal(rs_task_end(f->a, "t", RS_STATUS_CANCELLED, -9), RS_OK);
    assert_int_equal(rs_task_end(f->a, "t", RS_STATUS_CANCELLED, -9), RS_ENOTASK);
}

static void test_text_truncation_utf8(void **state)
{
    fx *f = *state;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    char big[600];
    /* 254 ASCII bytes then a 3-byte character straddling the 255 limit */
    memset(big, 'a', 254);
    memcpy(big + 254, "\xe2\x82\xac", 3);
    memset(big + 257, 'b', 100);
    big[357] = '\0';
    assert_int_equal(rs_set_status(f->a, RS_STATUS_STUCK, big), RS_OK);
    tu_drain(f->r, f->c);
    assert_int_equal(strlen(f->c->ev[0].detail), 254); /* cut before the euro sign */
}

static void test_too_many_tasks(void **state)
{
    fx *f = *state;
    f->o.max_tasks = 3;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    assert_int_equal(rs_task_start(f->a, "a", NULL), RS_OK);
    assert_int_equal(rs_task_start(f->a, "b", NULL), RS_OK);
    assert_int_equal(rs_task_start(f->a, "c", NULL), RS_OK);
    assert_int_equal(rs_task_start(f->a, "d", NULL), RS_ETASKS);
    assert_int_equal(rs_task_end(f->a, "b", RS_STATUS_COMPLETED, 0), RS_OK);
    assert_int_equal(rs_task_start(f->a, "d", NULL), RS_OK);
}

static void test_log_full_returns_efull(void **state)
{
    fx *f = *state;
    f->o.log_slots = 8;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    int full = 0;
    for (int i = 0; i < 10; i++)
        if (rs_set_status(f->a, RS_STATUS_WORKING, NULL) == RS_EFULL)
            full++;
    assert_int_equal(full, 2);
    assert_int_equal(rs_task_start(f->a, "t", NULL), RS_EFULL); /* started anyway */
    assert_int_equal(rs_task_start(f->a, "t", NULL), RS_EEXIST);
    rs_stats st = {.size = sizeof st};
    assert_int_equal(rs_stats_get(f->a, &st), RS_OK);
    assert_int_equal(st.events_dropped, 3);
    ipc_event ev;
    assert_int_equal(ipc_reader_latest_status(f->r, &ev), IPC_OK);
    assert_int_equal(ev.status_seq, 10);
}

static void test_no_term_rings(void **state)
{
    fx *f = *state;
    f->o.term_rings = RS_TERM_RINGS_NONE;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    assert_int_equal(rs_task_start(f->a, "t", NULL), RS_OK);
    assert_int_equal(rs_write(f->a, "t", RS_STDOUT, "abc", 3), RS_OK);
    assert_int_equal(rs_task_end(f->a, "t", RS_STATUS_COMPLETED, 0), RS_OK);
    tu_drain(f->r, f->c);
    assert_int_equal(f->c->gap, 3);
}

static void test_close_clean(void **state)
{
    fx *f = *state;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    assert_int_equal(ipc_reader_alive(f->r), 1);
    assert_int_equal(rs_close(f->a), RS_OK);
    f->a = NULL;
    assert_int_equal(ipc_reader_alive(f->r), 0);
    assert_int_equal(ipc_reader_closed_cleanly(f->r), 1);
}

static void test_fork_child(void **state)
{
    fx *f = *state;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    open_reader(f);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int ok = rs_set_status(f->a, RS_STATUS_WORKING, NULL) == RS_ECLOSED &&
                 rs_close(f->a) == RS_OK;
        char b;
        (void)!read(pipefd[0], &b, 1); /* wait until the parent closed its handle */
        _exit(ok ? 0 : 1);
    }
    assert_true(pid > 0);
    assert_int_equal(rs_set_status(f->a, RS_STATUS_WORKING, NULL), RS_OK);
    rs_close(f->a);
    f->a = NULL;
    /* the child is still alive but must not hold the parent's lock */
    assert_int_equal(ipc_reader_alive(f->r), 0);
    (void)!write(pipefd[1], "x", 1);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(pipefd[0]);
    close(pipefd[1]);
}

typedef struct thr {
    rs_agent *a;
    int id;
} thr;

static void *thr_main(void *arg)
{
    thr *t = arg;
    char task[16];
    snprintf(task, sizeof task, "t%d", t->id);
    if (rs_task_start(t->a, task, NULL) != RS_OK)
        return (void *)1;
    for (int i = 0; i < 200; i++) {
        if (rs_write(t->a, task, RS_STDOUT, "0123456789", 10) != RS_OK)
            return (void *)1;
        if (rs_progress(t->a, task, (uint32_t)i, 200, NULL) != RS_OK)
            return (void *)1;
        if (rs_set_status(t->a, RS_STATUS_WORKING, task) != RS_OK)
            return (void *)1;
    }
    return rs_task_end(t->a, task, RS_STATUS_COMPLETED, 0) == RS_OK ? NULL : (void *)1;
}

static void test_threads(void **state)
{
    fx *f = *state;
    f->o.log_slots = 4096;
    assert_int_equal(rs_open(&f->o, &f->a), RS_OK);
    pthread_t th[4];
    thr args[4];
    for (int i = 0; i < 4; i++) {
        args[i].a = f->a;
        args[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    rs_stats st = {.size = sizeof st};
    assert_int_equal(rs_stats_get(f->a, &st), RS_OK);
    assert_int_equal(st.events_published, 4 * 202);
    assert_int_equal(st.term_bytes_written, 4 * 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),
        cmocka_unit_test_setup_teardown(test_ring_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_all_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_visible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argument_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_truncation_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_tasks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_full_returns_efull, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_term_rings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_clean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
