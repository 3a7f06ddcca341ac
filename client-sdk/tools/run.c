/*
 * ringside-run — run a command under a pseudo-terminal as a Ringside task.
 * Contract: DESIGN "ringside-run"; usage: ringside-run --help.
 *
 * - CMD runs in a new session on a pty (openpty, login_tty), so colours and progress bars behave as in a
 *   terminal.  Everything CMD writes to the pty is copied, byte for byte as a terminal receives it
 *   (the pty's default output processing turns "\n" into "\r\n"), to our stdout and to the task's
 *   terminal stream in the ring.
 * - Our stdin is forwarded to CMD.  When stdin is a terminal it is put in raw mode for the run
 *   (restored on exit) and its termios and window size are copied to the pty; SIGWINCH updates the
 *   pty's size.  When stdin is not a terminal the pty does not echo, and EOF on stdin is passed on
 *   as the pty's EOF character.
 * - SIGINT, SIGTERM and SIGHUP are forwarded to the pty's foreground process group (SIGTERM and
 *   SIGHUP also to CMD itself).
 * - The agent's status is set to working at start; the task starts with the given title (default:
 *   the command line); the task ends with CMD's exit status: completed if 0; cancelled if CMD was
 *   killed by SIGINT/SIGTERM, or failed after we forwarded one of them; failed otherwise.  The
 *   agent's status is then set to that outcome.  We exit with CMD's status (128+N for signal N).
 * - The sidecar's absence never blocks CMD: if the ring cannot be opened, CMD runs anyway and one
 *   warning goes to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <utmp.h>

#include "ringside.h"
#include "tools_args.h"
#include "tools_common.h"

#define RUN_BUF 65536u
#define RUN_DRAIN_IDLE_MS 100    /* after CMD exits: stop when the pty stays quiet this long */
#define RUN_DRAIN_MAX_MS 2000    /* … or after this long (a grandchild may hold the pty open) */
#define RUN_DEFAULT_ROWS 24
#define RUN_DEFAULT_COLS 80

static const char *prog = "ringside-run";
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    /* Non-blocking pipe: if it is full a wake-up is already pending. */
    ssize_t r = write(sig_pipe[1], &b, 1);
    (void)r;
    errno = saved;
}

typedef struct run_state {
    rs_agent *agent; /* NULL when publishing is off (no ring) */
    const char *task;
    int publish_ok;  /* task started in the ring */
    int master;      /* pty master, -1 once closed */
    pid_t child;
    int child_done;
    int child_status;
    int cancel_forwarded; /* we forwarded SIGINT or SIGTERM */
    int stdin_tty;
    int stdin_open;
    int stdout_ok;
    int last_in_newline; /* last byte forwarded to CMD was '\n' (for EOF in canonical mode) */
    unsigned char inbuf[RUN_BUF];
    size_t in_len, in_off;
} run_state;

/* Best-effort publishing: a failure is reported once per call on stderr and otherwise ignored. */
static void soft(int rc, const char *what)
{
    if (rc != RS_OK && rc != RS_EFULL)
        fprintf(stderr, "%s: warning: %s: %s\n", prog, what, rs_strerror(rc));
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void write_stdout(run_state *s, const unsigned char *p, size_t n)
{
    while (s->stdout_ok && n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {STDOUT_FILENO, POLLOUT, 0};
                (void)poll(&pfd, 1, 100);
                continue;
            }
            s->stdout_ok = 0; /* e.g. EPIPE: keep streaming to the ring */
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void publish_output(run_state *s, const unsigned char *p, size_t n)
{
    if (s->publish_ok) {
        int rc = rs_write(s->agent, s->task, RS_STDOUT, p, n);
        if (rc != RS_OK && rc != RS_EFULL) {
            fprintf(stderr, "%s: warning: publishing terminal output failed (%s); CMD continues\n",
                    prog, rs_strerror(rc));
            s->publish_ok = 0;
        }
    }
}

/* Reads what the pty has; returns 1 if something was read, 0 if nothing, -1 at EOF/EIO. */
static int pump_master(run_state *s)
{
    static unsigned char buf[RUN_BUF];
    ssize_t n = read(s->master, buf, sizeof buf);
    if (n > 0) {
        write_stdout(s, buf, (size_t)n);
        publish_output(s, buf, (size_t)n);
        return 1;
    }
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
        return 0;
    return -1; /* 0 or EIO: every slave descriptor is closed */
}

static void copy_winsize(run_state *s)
{
    struct winsize ws;
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0)
        (void)ioctl(s->master, TIOCSWINSZ, &ws);
}

static void forward_signal(run_state *s, int sig)
{
    pid_t fg;
    if (s->child_done)
        return;
    if (sig == SIGINT || sig == SIGTERM)
        s->cancel_forwarded = 1;
    fg = s->master >= 0 ? tcgetpgrp(s->master) : -1;
    if (fg > 0)
        (void)kill(-fg, sig);
    if (fg != s->child && (fg <= 0 || sig != SIGINT))
        (void)kill(s->child, sig);
}

static void reap(run_state *s)
{
    int st;
    pid_t r;
    if (s->child_done)
        return;
    do {
        r = waitpid(s->child, &st, WNOHANG);
    } while (r == -1 && errno == EINTR);
    if (r == s->child) {
        s->child_done = 1;
        s->child_status = st;
    }
}

static void handle_signals(run_state *s)
{
    unsigned char b[64];
    ssize_t n;
    while ((n = read(sig_pipe[0], b, sizeof b)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            int sig = b[i];
            if (sig == SIGCHLD)
                reap(s);
            else if (sig == SIGWINCH)
                copy_winsize(s);
            else
                forward_signal(s, sig);
        }
    }
}

/* Passes EOF on our stdin to CMD: the pty's EOF character, twice after a partial line. */
static void send_eof(run_state *s)
{
    struct termios t;
    if (s->master < 0 || tcgetattr(s->master, &t) == -1 || !(t.c_lflag & ICANON))
        return;
    unsigned char eof[2] = {t.c_cc[VEOF], t.c_cc[VEOF]};
    ssize_t w = write(s->master, eof, s->last_in_newline ? 1u : 2u);
    (void)w;
}

static void pump_stdin(run_state *s)
{
    ssize_t n = read(STDIN_FILENO, s->inbuf, sizeof s->inbuf);
    if (n > 0) {
        s->in_len = (size_t)n;
        s->in_off = 0;
        return;
    }
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
        return;
    s->stdin_open = 0;
    if (!s->stdin_tty)
        send_eof(s);
}

static void flush_input(run_state *s)
{
    while (s->in_off < s->in_len) {
        ssize_t w = write(s->master, s->inbuf + s->in_off, s->in_len - s->in_off);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                s->in_off = s->in_len; /* pty gone: drop input */
            return;
        }
        s->in_off += (size_t)w;
        s->last_in_newline = s->inbuf[s->in_off - 1] == '\n';
    }
    s->in_len = s->in_off = 0;
}

/* The I/O loop: runs until CMD has exited and its output is drained. */
static void loop(run_state *s)
{
    uint64_t drain_start = 0;
    for (;;) {
        struct pollfd pfd[3];
        nfds_t n = 0;
        int i_master = -1, i_stdin = -1, timeout = -1;
        pfd[n++] = (struct pollfd){sig_pipe[0], POLLIN, 0};
        if (s->master >= 0) {
            i_master = (int)n;
            pfd[n++] = (struct pollfd){s->master,
                                       (short)(POLLIN | (s->in_len > s->in_off ? POLLOUT : 0)), 0};
        }
        if (s->stdin_open && s->in_len == 0 && s->master >= 0 && !s->child_done) {
            i_stdin = (int)n;
            pfd[n++] = (struct pollfd){STDIN_FILENO, POLLIN, 0};
        }
        if (s->child_done) {
            uint64_t now = now_ms();
            if (drain_start == 0)
                drain_start = now;
            if (s->master < 0 || now - drain_start >= RUN_DRAIN_MAX_MS)
                return;
            timeout = RUN_DRAIN_IDLE_MS;
        }
        int r = poll(pfd, n, timeout);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: poll failed: %s\n", prog, strerror(errno));
            return;
        }
        if (r == 0) {
            if (s->child_done)
                return; /* the pty stayed quiet after CMD exited */
            continue;
        }
        if (pfd[0].revents & POLLIN)
            handle_signals(s);
        if (i_master >= 0 && pfd[i_master].revents != 0 && s->master >= 0) {
            if (pfd[i_master].revents & POLLOUT)
                flush_input(s);
            if (pfd[i_master].revents & (POLLIN | POLLHUP | POLLERR)) {
                /* Read a bounded number of chunks, then look at signals and stdin again. */
                int got = 0;
                for (int k = 0; k < 16; k++) {
                    got = pump_master(s);
                    if (got <= 0)
                        break;
                }
                if (got < 0) {
                    close(s->master);
                    s->master = -1;
                }
            }
        }
        if (i_stdin >= 0 && pfd[i_stdin].revents != 0) {
            pump_stdin(s);
            if (s->in_len > 0 && s->master >= 0)
                flush_input(s);
        }
        if (s->master < 0 && !s->child_done) {
            /* CMD closed the terminal but runs on: wait for it (SIGCHLD wakes us). */
            reap(s);
        }
    }
}

static void install_handlers(void)
{
    struct sigaction sa;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGCHLD};
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        (void)sigaction(sigs[i], &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    (void)sigaction(SIGPIPE, &sa, NULL);
}

static void restore_child_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGCHLD, SIGPIPE};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        (void)sigaction(sigs[i], &sa, NULL);
}

static void exec_child(const run_args *a)
{
    restore_child_signals();
    if (getenv("TERM") == NULL)
        (void)setenv("TERM", "xterm-256color", 0);
    execvp(a->cmd[0], a->cmd);
    int e = errno;
    fprintf(stderr, "%s: cannot run %s: %s\n", prog, a->cmd[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* Creates the pty and starts CMD on it (openpty + fork + login_tty, so that the terminal is fully
 * configured before CMD or our input can touch it).  Returns the child's pid or -1 (errno set). */
static pid_t spawn(const run_args *a, run_state *s, const struct termios *tio,
                   const struct winsize *ws)
{
    int master, slave;
    pid_t pid;
    if (openpty(&master, &slave, NULL, tio, ws) == -1)
        return -1;
    if (tio == NULL) {
        /* Input comes from a pipe or file: do not echo it into CMD's output. */
        struct termios t;
        if (tcgetattr(slave, &t) == 0) {
            t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
            (void)tcsetattr(slave, TCSANOW, &t);
        }
    }
    pid = fork();
    if (pid == -1) {
        int e = errno;
        close(master);
        close(slave);
        errno = e;
        return -1;
    }
    if (pid == 0) {
        close(master);
        if (login_tty(slave) == -1)
            _exit(126);
        exec_child(a);
    }
    close(slave);
    s->master = master;
    return pid;
}

int main(int argc, char **argv)
{
    static run_state s;
    tools_env env;
    run_args a;
    char msg[512];
    char title[RS_TEXT_MAX + 1];
    struct termios orig, tio;
    struct winsize ws;
    int have_orig = 0, rc, code;
    /* One task with one terminal stream (a pty merges stdout and stderr). */
    const tools_sizing sizing = {.term_rings = 1u, .log_slots = 0u, .max_tasks = 1u};

    tools_env_from_process(&env);
    switch (run_args_parse(argc, argv, &env, &a, msg, sizeof msg)) {
    case TOOLS_PARSE_HELP:
        fputs(run_usage(), stdout);
        return TOOLS_EXIT_OK;
    case TOOLS_PARSE_VERSION:
        printf("ringside-run (libringside %s)\n", rs_version());
        return TOOLS_EXIT_OK;
    case TOOLS_PARSE_USAGE:
        fprintf(stderr, "%s: %s\n", prog, msg);
        return TOOLS_EXIT_USAGE;
    case TOOLS_PARSE_OK:
        break;
    }

    /* A closed standard descriptor would be reused by the pty: point it at /dev/null instead. */
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) == -1 && open("/dev/null", O_RDWR) != fd) {
            fprintf(stderr, "%s: cannot open /dev/null: %s\n", prog, strerror(errno));
            return TOOLS_EXIT_RUNTIME;
        }

    s.task = a.task;
    s.master = -1;
    s.stdout_ok = 1;
    s.last_in_newline = 1;
    s.stdin_open = 1;
    s.stdin_tty = isatty(STDIN_FILENO);

    /* Publishing is best effort: CMD runs whatever happens to the ring. */
    rc = tools_open(&a.common, &sizing, &s.agent, msg, sizeof msg);
    if (rc != RS_OK) {
        fprintf(stderr, "%s: warning: %s; running the command without publishing\n", prog, msg);
        s.agent = NULL;
    } else {
        if (a.title != NULL)
            tools_join_title((char *const *)&a.title, 1, title, sizeof title);
        else
            tools_join_title(a.cmd, a.cmd_argc, title, sizeof title);
        soft(rs_set_status(s.agent, RS_STATUS_WORKING, title), "setting status");
        rc = tools_ensure_task(s.agent, a.task, title);
        if (rc == RS_OK)
            s.publish_ok = 1;
        else
            fprintf(stderr, "%s: warning: cannot start task %s (%s); running without publishing\n",
                    prog, a.task, rs_strerror(rc));
    }

    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
        fprintf(stderr, "%s: cannot create a pipe: %s\n", prog, strerror(errno));
        return TOOLS_EXIT_RUNTIME;
    }
    install_handlers();

    if (s.stdin_tty && tcgetattr(STDIN_FILENO, &orig) == 0) {
        have_orig = 1;
        tio = orig;
    }
    if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == -1 && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == -1) {
        memset(&ws, 0, sizeof ws);
        ws.ws_row = RUN_DEFAULT_ROWS;
        ws.ws_col = RUN_DEFAULT_COLS;
    }

    fflush(NULL);
    s.child = spawn(&a, &s, have_orig ? &tio : NULL, &ws);
    if (s.child == -1) {
        fprintf(stderr, "%s: cannot create a pseudo-terminal: %s\n", prog, strerror(errno));
        code = TOOLS_EXIT_RUNTIME;
        if (s.publish_ok)
            soft(rs_task_end(s.agent, a.task, RS_STATUS_FAILED, code), "ending the task");
        if (s.agent != NULL) {
            soft(rs_set_status(s.agent, RS_STATUS_FAILED, "cannot create a pseudo-terminal"),
                 "setting status");
            (void)rs_close(s.agent);
        }
        return code;
    }
    (void)fcntl(s.master, F_SETFL, fcntl(s.master, F_GETFL) | O_NONBLOCK);
    (void)fcntl(s.master, F_SETFD, FD_CLOEXEC);
    if (have_orig) {
        struct termios raw = orig;
        cfmakeraw(&raw);
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }

    loop(&s);
    if (!s.child_done) {
        /* The loop ended early (poll failure): wait for CMD anyway. */
        int st;
        while (waitpid(s.child, &st, 0) == -1 && errno == EINTR)
            ;
        s.child_done = 1;
        s.child_status = st;
    }
    if (have_orig)
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &orig);
    if (s.master >= 0)
        close(s.master);

    rs_status outcome;
    if (WIFSIGNALED(s.child_status)) {
        int sig = WTERMSIG(s.child_status);
        code = 128 + sig;
        outcome = sig == SIGINT || sig == SIGTERM ? RS_STATUS_CANCELLED : RS_STATUS_FAILED;
    } else {
        code = WEXITSTATUS(s.child_status);
        outcome = code == 0                ? RS_STATUS_COMPLETED
                  : s.cancel_forwarded ? RS_STATUS_CANCELLED
                                       : RS_STATUS_FAILED;
    }
    if (s.agent != NULL) {
        char detail[RS_TEXT_MAX + 1];
        if (s.publish_ok) {
            soft(rs_task_end(s.agent, a.task, outcome, code), "reporting the task's end");
        }
        snprintf(detail, sizeof detail, "task %s exited with status %d", a.task, code);
        soft(rs_set_status(s.agent, outcome, detail), "setting status");
        (void)rs_close(s.agent);
    }
    return code;
}
