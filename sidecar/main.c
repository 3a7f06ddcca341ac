/*
 * main.c — `ringside`: the sidecar daemon (`ringside [serve] [options]`) and its subcommands
 * (`ringside token …`).  Wires config, logging, the hub, the ring watcher and the server onto one
 * libev loop, and turns SIGTERM/SIGINT into the drain of REQUIREMENTS B11.
 */
#include <ev.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "auth.h"
#include "cluster.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "server.h"
#include "watch.h"
#include "token_cmd.h"

typedef struct daemon_state {
    struct ev_loop *loop;
    server srv;
    ev_signal sigterm, sigint, sighup;
    int exit_code;
} daemon_state;

static daemon_state g_daemon;

static void on_drained(server *srv)
{
    (void)srv;
    log_info("drain complete", NULL);
    ev_break(g_daemon.loop, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (g_daemon.srv.draining) {
        log_warn("second signal: exiting now", "\"signal\":%d", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    log_info("signal received: draining", "\"signal\":%d", w->signum);
    if (g_daemon.srv.cl != NULL)
        cluster_set_draining(g_daemon.srv.cl);
    g_daemon.srv.on_drained = on_drained;
    server_drain(&g_daemon.srv);
}

/* SIGHUP: re-reads the JWT key; on failure the old key stays in use. */
static void sighup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    if (g_daemon.srv.auth == NULL)
        return;
    char err[256] = "";
    if (auth_config_reload(g_daemon.srv.auth, err, sizeof err) != AUTH_OK)
        log_error("JWT key reload failed: keeping the old key", "\"error\":\"%s\"", err);
    else
        log_info("JWT key reloaded", NULL);
}

/* Raises RLIMIT_NOFILE to the hard limit so --max-connections can be reached. */
static void raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t before = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = before;
    log_info("file descriptor limit", "\"soft\":%llu,\"hard\":%llu,\"was\":%llu",
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
             (unsigned long long)before);
    if ((long long)rl.rlim_cur < (long long)want + 64)
        log_warn("file descriptor limit below --max-connections",
                 "\"limit\":%llu,\"max_connections\":%ld", (unsigned long long)rl.rlim_cur, want);
}

/* --fingerprint-key: the file's bytes (one trailing newline ignored, at least 32) are hashed into
 * the fingerprint key, so every instance given the same file computes the same fingerprints. */
static int load_fingerprint_key(const char *path, char *err, size_t errlen)
{
    unsigned char raw[1025], key[32];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "--fingerprint-key: cannot open '%s'", path);
        return -1;
    }
    size_t n = fread(raw, 1, sizeof raw, f);
    int bad = ferror(f);
    fclose(f);
    if (n > 0 && raw[n - 1] == '\n')
        n--;
    int rc = 0;
    if (bad || n < 32 || n > 1024) {
        snprintf(err, errlen, "--fingerprint-key: '%s' must hold 32 to 1024 bytes (e.g. openssl rand "
                 "-base64 48)", path);
        rc = -1;
    } else {
        crypto_generichash(key, sizeof key, raw, n, (const unsigned char *)"ringside-fp", 11);
        if (auth_fingerprint_set_key(key, sizeof key) != AUTH_OK) {
            snprintf(err, errlen, "--fingerprint-key: the key could not be set");
            rc = -1;
        }
    }
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(key, sizeof key);
    return rc;
}

static int serve(int argc, char **argv)
{
    config cfg;
    char err[512];
    int rc = config_load(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "ringside: %s\n", err);
        return 2;
    }
    log_level lvl = LOG_INFO;
    log_level_parse(cfg.log_level, &lvl);
    log_set_level(lvl);
    if (sodium_init() < 0) {
        fprintf(stderr, "ringside: libsodium failed to initialise\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    /* Everything that can fail on bad input happens before the first log line, so a failed start
     * prints exactly one line saying what is wrong and what to do. */
    if (cfg.fingerprint_key != NULL && load_fingerprint_key(cfg.fingerprint_key, err, sizeof err) != 0) {
        fprintf(stderr, "ringside: %s\n", err);
        return 1;
    }
    auth_config *auth = NULL;
    if (!cfg.no_auth && auth_config_new(&auth, cfg.jwt_alg, cfg.jwt_key, cfg.jwt_issuer,
                                        cfg.jwt_audience, (int)cfg.jwt_leeway, err,
                                        sizeof err) != AUTH_OK) {
        fprintf(stderr, "ringside: --jwt-key: %s\n", err);
        return 1;
    }
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    g_daemon.loop = loop;
    hub *h = hub_new(loop, &cfg);
    if (server_start(&g_daemon.srv, loop, &cfg, h, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "ringside: %s\n", err);
        hub_free(h);
        auth_config_free(auth);
        return 1;
    }
    cluster *cl = NULL;
    if (cfg.redis != NULL) {
        cl = cluster_new(loop, &cfg, h, err, sizeof err);
        if (cl == NULL) {
            fprintf(stderr, "ringside: %s\n", err);
            server_stop(&g_daemon.srv);
            hub_free(h);
            auth_config_free(auth);
            return 1;
        }
        hub_set_cluster(h, cl);
        g_daemon.srv.cl = cl;
    }
    watch *w = watch_start(loop, &cfg, h, err, sizeof err);
    if (w == NULL) {
        fprintf(stderr, "ringside: %s\n", err);
        server_stop(&g_daemon.srv);
        cluster_free(cl);
        hub_free(h);
        auth_config_free(auth);
        return 1;
    }
    g_daemon.srv.watch = w;
    g_daemon.srv.auth = auth;

    if (cfg.no_auth)
        log_warn("authentication disabled (--no-auth): for local development only", NULL);
    raise_nofile(cfg.max_connections);
    server_log_listening(&g_daemon.srv);
    ev_signal_init(&g_daemon.sigterm, signal_cb, SIGTERM);
    ev_signal_start(loop, &g_daemon.sigterm);
    ev_signal_init(&g_daemon.sigint, signal_cb, SIGINT);
    ev_signal_start(loop, &g_daemon.sigint);
    ev_signal_init(&g_daemon.sighup, sighup_cb, SIGHUP);
    ev_signal_start(loop, &g_daemon.sighup);
    if (cfg.history_tail > cfg.scrollback)
        log_warn("--history-tail above --scrollback: an ended task keeps at most --scrollback bytes",
                 "\"history_tail\":%ld,\"scrollback\":%ld", (long)cfg.history_tail,
                 (long)cfg.scrollback);
    if (cfg.redis != NULL && cfg.all_projects)
        log_warn("--projects '*': this pod's agents may publish for every project of the cluster",
                 "\"reason\":\"explicit opt-in\"");
    log_info("ringside started", "\"version\":\"%s\",\"instance\":\"%s\",\"mode\":\"%s\"",
             RINGSIDE_VERSION, cfg.instance_id, cl != NULL ? "redis" : "embedded");

    ev_run(loop, 0);

    server_stop(&g_daemon.srv);
    watch_stop(w);
    cluster_free(cl); /* removes this instance's state from Redis (B11) */
    hub_set_cluster(h, NULL);
    hub_free(h);
    ev_signal_stop(loop, &g_daemon.sigterm);
    ev_signal_stop(loop, &g_daemon.sigint);
    ev_signal_stop(loop, &g_daemon.sighup);
    auth_config_free(auth);
    ev_loop_destroy(loop);
    log_info("ringside stopped", NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "token") == 0) {
        return token_cmd_main(argc - 1, argv + 1);
    }
    return serve(argc, argv);
}
