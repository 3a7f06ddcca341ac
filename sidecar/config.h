/*
 * config.h — the daemon's options (REQUIREMENTS F1, DESIGN "The daemon").
 *
 * Every option is a flag `--name` and an environment variable RINGSIDE_NAME (upper case, '-' → '_');
 * flags win over the environment.  CONFIG_OPTIONS is the one table: help text, .env.example and
 * parsing are all generated from it.
 */
#ifndef RINGSIDE_CONFIG_H
#define RINGSIDE_CONFIG_H

#include <stdio.h>

#define CONFIG_PROJECTS_MAX 64   /* projects one pod may be bound to */
#define CONFIG_PROJECT_ID_MAX 63 /* same bound as every other id */

/* X(field, name, kind, default, min, max, help)
 * kind: STR (string, default may be NULL), INT (integer within [min, max]), BOOL (flag, no value). */
#define CONFIG_OPTIONS(X)                                                                          \
    X(listen, "listen", STR, "0.0.0.0:8765", 0, 0, "HTTP/WebSocket address (host:port, [v6]:port)") \
    X(shm_dir, "shm-dir", STR, "/dev/shm/ringside", 0, 0, "directory where agents' rings live")    \
    X(redis, "redis", STR, NULL, 0, 0,                                                             \
      "redis://host:port[/db] or redis-sentinel://h1:p1,h2:p2/master (unset: embedded mode)")      \
    X(instance_id, "instance-id", STR, NULL, 0, 0, "this instance's name in Redis (default: hostname)") \
    X(projects, "projects", STR, NULL, 0, 0,                                                       \
      "comma-separated projects this pod's agents may publish for; '*' any (unset: any in "       \
      "embedded mode; required with --redis)")                                                     \
    X(jwt_key, "jwt-key", STR, NULL, 0, 0, "JWT key file: HS secret, or PEM public key")           \
    X(jwt_alg, "jwt-alg", STR, "HS256", 0, 0, "pinned JWT algorithm: HS256, RS256 or ES256")       \
    X(jwt_issuer, "jwt-issuer", STR, NULL, 0, 0, "required JWT iss claim (unset: not checked)")    \
    X(jwt_audience, "jwt-audience", STR, NULL, 0, 0, "required JWT aud claim (unset: not checked)") \
    X(fingerprint_key, "fingerprint-key", STR, NULL, 0, 0,                                         \
      "file (>= 32 bytes, the same on every instance) keying token and user fingerprints, so "     \
      "per-user limits hold cluster-wide (required with --redis unless --no-auth)")                \
    X(jwt_leeway, "jwt-leeway", INT, "30", 0, 300, "seconds of clock skew allowed for exp/nbf")   \
    X(no_auth, "no-auth", BOOL, NULL, 0, 0, "disable authentication (local development only)")     \
    X(allowed_origins, "allowed-origins", STR, NULL, 0, 0,                                         \
      "comma-separated allowed browser origins (unset: same host only)")                           \
    X(dashboard, "dashboard", BOOL, NULL, 0, 0, "serve the dashboard at /")                        \
    X(metrics_detail, "metrics-detail", BOOL, NULL, 0, 0,                                          \
      "label per-ring metrics with agent id and pid (default: project and an opaque ring number)") \
    X(log_level, "log-level", STR, "info", 0, 0, "debug, info, warn or error (debug logs every connection)") \
    X(heartbeat_interval, "heartbeat-interval", INT, "30", 1, 3600, "seconds between server heartbeats") \
    X(heartbeat_misses, "heartbeat-misses", INT, "3", 1, 100,                                      \
      "missed heartbeats before the connection is closed")                                         \
    X(drain_timeout, "drain-timeout", INT, "30", 0, 3600, "seconds to wait for clients on SIGTERM") \
    X(replay_window, "replay-window", INT, "300", 1, 86400, "seconds of persisted events kept for replay") \
    X(replay_max, "replay-max", INT, "100000", 16, 10000000, "most persisted events kept for replay") \
    X(max_message, "max-message", INT, "16384", 128, 67108864,                                     \
      "largest client message in bytes, after inflating (close 1009 above)")                      \
    X(client_msg_rate, "client-msg-rate", INT, "20", 0, 1000000,                                   \
      "messages per second a client may send (close 1008 above; 0: unlimited)")                   \
    X(client_byte_rate, "client-byte-rate", INT, "65536", 0, 1073741824,                           \
      "message bytes per second (inflated) a client may send (close 1008 above; 0: unlimited)")   \
    X(send_queue, "send-queue", INT, "100", 4, 1000000,                                            \
      "messages queued per connection before non-critical drops")                                  \
    X(send_queue_bytes, "send-queue-bytes", INT, "4194304", 4096, 1073741824,                      \
      "bytes queued per connection before non-critical drops")                                     \
    X(conn_msg_rate, "conn-msg-rate", INT, "100", 0, 10000000,                                     \
      "messages per second sent to one connection (0: unlimited; excess queued up to 5 s)")        \
    X(global_msg_rate, "global-msg-rate", INT, "10000", 0, 100000000,                              \
      "events per second accepted into the hub from all sources (0: unlimited)")                   \
    X(agent_status_rate, "agent-status-rate", INT, "50", 0, 1000000,                               \
      "status events per second one agent may publish; over it the latest waits, coalesced (0: unlimited)") \
    X(conn_rate, "conn-rate", INT, "10", 0, 100000000, "new connections per minute per IP (429 above; 0: unlimited)") \
    X(max_connections, "max-connections", INT, "20000", 1, 1000000,                                \
      "connections per instance (503 with Retry-After above)")                                     \
    X(user_conns, "user-conns", INT, "5", 0, 100000000, "concurrent connections per user (429 above; 0: unlimited)") \
    X(anon_conn_rate, "anon-conn-rate", INT, "30", 0, 100000000,                                    \
      "connection attempts per minute per client IP without a valid token (429 above; 0: unlimited)") \
    X(trusted_proxies, "trusted-proxies", STR, NULL, 0, 0,                                         \
      "CIDRs of reverse proxies whose Forwarded/X-Forwarded-For names the client (unset: none)")   \
    X(http_conns_per_ip, "http-conns-per-ip", INT, "16", 1, 1000000,                               \
      "connections per client IP still sending their HTTP request (trusted proxies exempt)")      \
    X(max_http_conns, "max-http-conns", INT, "512", 1, 1000000,                                    \
      "connections in total still sending their HTTP request (the oldest is closed above)")        \
    X(fd_reserve, "fd-reserve", INT, "64", 0, 1000000,                                             \
      "file descriptors kept for rings and Redis: clients get 503 above the fd limit minus this")  \
    X(handshake_timeout, "handshake-timeout", INT, "10", 1, 300,                                   \
      "seconds a client may take to send its HTTP request")                                        \
    X(max_header, "max-header", INT, "8192", 1024, 65536, "largest HTTP request head in bytes (431 above)") \
    X(max_rings, "max-rings", INT, "16384", 1, 1000000,                                            \
      "agent rings read at once (more wait in the directory until one ends)")                      \
    X(max_tasks_per_agent, "max-tasks-per-agent", INT, "64", 1, 100000,                            \
      "running tasks kept per agent (events of more are dropped)")                                 \
    X(task_idle_timeout, "task-idle-timeout", INT, "3600", 0, 31536000,                            \
      "seconds without an event after which a running task is ended (0: never)")                 \
    X(task_close_grace, "task-close-grace", INT, "300", 0, 86400,                                  \
      "seconds after an agent's last process closed cleanly before its running tasks end (0: never)") \
    X(scrollback, "scrollback", INT, "65536", 0, 16777216,                                         \
      "bytes of terminal output kept per task for late joiners")                                   \
    X(progress_interval, "progress-interval", INT, "100", 1, 10000,                                \
      "milliseconds over which progress updates of one task are coalesced")                        \
    X(history_tasks, "history-tasks", INT, "20", 0, 1000,                                          \
      "ended tasks per agent kept in the snapshot (0: none)")                                      \
    X(history_tail, "history-tail", INT, "65536", 0, 1048576,                                      \
      "bytes of an ended task's output kept for viewers (its tail)")                               \
    X(history_bytes, "history-bytes", INT, "33554432", 0, 1073741824,                              \
      "bytes of ended tasks' output kept in all (least recently used dropped first)")              \
    X(history_window, "history-window", INT, "3600", 1, 604800,                                    \
      "seconds an ended task's output stays viewable; agents gone this long leave the snapshot")

typedef struct config {
#define CONFIG_FIELD_STR(field) const char *field;
#define CONFIG_FIELD_INT(field) long field;
#define CONFIG_FIELD_BOOL(field) int field;
#define CONFIG_FIELD_(field, name, kind, def, min, max, help) CONFIG_FIELD_##kind(field)
    CONFIG_OPTIONS(CONFIG_FIELD_)
#undef CONFIG_FIELD_
    char hostname[256];
    /* --projects, parsed: the projects rings of this pod may name (D2) */
    int all_projects;
    unsigned n_projects;
    char project_set[CONFIG_PROJECTS_MAX][CONFIG_PROJECT_ID_MAX + 1];
} config;

/* 1 if a ring of this pod may publish for project (--projects). */
int config_project_allowed(const config *cfg, const char *project);

/* Fills cfg from defaults, then RINGSIDE_* environment, then argv (argv[0] is skipped; a leading
 * "serve" is accepted).  On error writes one line naming the option to errbuf and returns -1;
 * returns 1 if --help or --version was handled (printed to out), 0 on success. */
int config_load(config *cfg, int argc, char **argv, FILE *out, char *errbuf, size_t errlen);

/* Prints the help text (every option with its default and env name). */
void config_print_help(FILE *out);

/* Prints a .env.example (every RINGSIDE_* variable with its default, commented). */
void config_print_env_example(FILE *out);

#endif
