#include "redis_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int rt_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd == -1)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

redisContext *rt_sync(int port)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL)
        return NULL;
    if (c->err) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

redisReply *rt_cmd(int port, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;
    redisContext *c = rt_sync(port);
    if (c == NULL)
        return NULL;
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int wait_ping(int port, double timeout)
{
    double end = mono() + timeout;
    while (mono() < end) {
        redisReply *r = rt_cmd(port, "PING");
        if (r != NULL) {
            int ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            freeReplyObject(r);
            if (ok)
                return 0;
        }
        usleep(20000);
    }
    return -1;
}

static pid_t spawn(char *const argv[], const char *logpath)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd != -1) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setpgid(0, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int rt_redis_start(rt_redis *r, const char *const *extra)
{
    char port[16], logpath[300];
    const char *argv[48];
    int n = 0;
    if (r->dir[0] == '\0') {
        snprintf(r->dir, sizeof(r->dir), "/tmp/rs-redis-XXXXXX");
        if (mkdtemp(r->dir) == NULL)
            return -1;
    }
    if (r->port == 0)
        r->port = rt_free_port();
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(logpath, sizeof(logpath), "%s/redis.log", r->dir);
    argv[n++] = "/usr/bin/redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 46; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* A restart on the same port can race a client's ephemeral port or a socket still closing:
     * when the server exits at once (bind failed), try again for up to 10 s. */
    double end = mono() + 10.0;
    for (;;) {
        r->pid = spawn((char *const *)argv, logpath);
        if (r->pid <= 0)
            return -1;
        int rc = -1;
        while (mono() < end) {
            if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
                r->pid = 0;
                break; /* exited: retry below */
            }
            if (wait_ping(r->port, 0.2) == 0) {
                rc = 0;
                break;
            }
        }
        if (rc == 0)
            return 0;
        if (r->pid > 0 || mono() >= end) {
            rt_redis_kill(r);
            return -1;
        }
        usleep(100000);
    }
}

int rt_sentinel_start(rt_redis *r, int master_port)
{
    char conf[300], logpath[300];
    FILE *f;
    const char *argv[3];
    snprintf(r->dir, sizeof(r->dir), "/tmp/rs-sentinel-XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        return -1;
    r->port = rt_free_port();
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", r->dir);
    snprintf(logpath, sizeof(logpath), "%s/sentinel.log", r->dir);
    f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\n"
            "sentinel monitor mymaster 127.0.0.1 %d 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 4000\n"
            "sentinel parallel-syncs mymaster 1\n",
            r->port, r->dir, master_port);
    fclose(f);
    argv[0] = "/usr/bin/redis-sentinel";
    argv[1] = conf;
    argv[2] = NULL;
    r->pid = spawn((char *const *)argv, logpath);
    if (r->pid <= 0)
        return -1;
    return wait_ping(r->port, 5.0);
}

void rt_redis_kill(rt_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGCONT);
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

void rt_redis_stop(rt_redis *r)
{
    rt_redis_kill(r);
    if (r->dir[0] != '\0') {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
        if (system(cmd) != 0) {
            /* best effort */
        }
        r->dir[0] = '\0';
    }
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

int rt_run_until(struct ev_loop *loop, int (*pred)(void *), void *arg, double timeout)
{
    double end = mono() + timeout;
    ev_timer t;
    int ok;
    ev_timer_init(&t, tick, 0.01, 0.01);
    ev_timer_start(loop, &t);
    while (!(ok = pred(arg)) && mono() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return ok;
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

void rt_run_for(struct ev_loop *loop, double seconds)
{
    (void)rt_run_until(loop, never, NULL, seconds);
}
