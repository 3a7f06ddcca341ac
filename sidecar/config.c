#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

enum kind { KIND_STR, KIND_INT, KIND_BOOL };

typedef struct option_def {
    const char *name;
    enum kind kind;
    const char *def;
    long min, max;
    const char *help;
    size_t offset;
} option_def;

#define CONFIG_DEF_(field, name, kind, def, min, max, help)                                        \
    {name, KIND_##kind, def, min, max, help, offsetof(config, field)},
static const option_def options[] = {CONFIG_OPTIONS(CONFIG_DEF_)};
#undef CONFIG_DEF_
#define N_OPTIONS (sizeof options / sizeof options[0])

static void env_name(char *out, size_t outlen, const char *name)
{
    size_t o = (size_t)snprintf(out, outlen, "RINGSIDE_");
    for (size_t i = 0; name[i] != '\0' && o + 1 < outlen; i++)
        out[o++] = name[i] == '-' ? '_' : (char)toupper((unsigned char)name[i]);
    out[o] = '\0';
}

static int set_value(config *cfg, const option_def *o, const char *value, const char *source,
                     char *errbuf, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    switch (o->kind) {
    case KIND_STR:
        *(const char **)(void *)field = value;
        return 0;
    case KIND_BOOL: {
        int v;
        if (value == NULL || strcmp(value, "1") == 0 || strcmp(value, "true") == 0 ||
            strcmp(value, "yes") == 0 || strcmp(value, "on") == 0) {
            v = 1;
        } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 ||
                   strcmp(value, "no") == 0 || strcmp(value, "off") == 0 || value[0] == '\0') {
            v = 0;
        } else {
            snprintf(errbuf, errlen, "%s --%s: '%s' is not a boolean (use true or false)", source,
                     o->name, value);
            return -1;
        }
        *(int *)(void *)field = v;
        return 0;
    }
    case KIND_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            snprintf(errbuf, errlen, "%s --%s: '%s' is not an integer", source, o->name, value);
            return -1;
        }
        if (v < o->min || v > o->max) {
            snprintf(errbuf, errlen, "%s --%s: %ld is out of range [%ld, %ld]", source, o->name, v,
                     o->min, o->max);
            return -1;
        }
        *(long *)(void *)field = v;
        return 0;
    }
    }
    return -1;
}

static const option_def *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    }
    return NULL;
}

/* --projects: '*' or a comma-separated list of ids.  Embedded mode defaults to every project (one
 * pod, one trust domain); with --redis the binding must be explicit. */
static int parse_projects(config *cfg, char *errbuf, size_t errlen)
{
    const char *v = cfg->projects;
    if (v == NULL) {
        if (cfg->redis != NULL) {
            snprintf(errbuf, errlen,
                     "--projects is required with --redis: name the projects this pod's agents "
                     "publish for (--projects p1,p2), or '*' to trust them with every project");
            return -1;
        }
        cfg->all_projects = 1;
        return 0;
    }
    if (strcmp(v, "*") == 0) {
        cfg->all_projects = 1;
        return 0;
    }
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        int valid = len > 0 && len <= CONFIG_PROJECT_ID_MAX;
        for (size_t i = 0; valid && i < len; i++) {
            char c = p[i];
            valid = isalnum((unsigned char)c) || c == '.' || c == '_' || c == ':' || c == '@' ||
                    c == '-';
        }
        if (!valid && v[0] == '\0') {
            snprintf(errbuf, errlen,
                     "--projects is empty: name the projects this pod's agents publish for (in "
                     "Kubernetes: the pod's ringside.io/projects annotation)");
            return -1;
        }
        if (!valid) {
            snprintf(errbuf, errlen,
                     "--projects: '%.*s' is not a project id (1-63 chars of A-Z a-z 0-9 . _ : @ -; "
                     "or '*' alone)",
                     (int)(len > 64 ? 64 : len), p);
            return -1;
        }
        if (cfg->n_projects == CONFIG_PROJECTS_MAX) {
            snprintf(errbuf, errlen, "--projects: at most %d projects", CONFIG_PROJECTS_MAX);
            return -1;
        }
        memcpy(cfg->project_set[cfg->n_projects], p, len);
        cfg->project_set[cfg->n_projects++][len] = '\0';
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

int config_project_allowed(const config *cfg, const char *project)
{
    if (cfg->all_projects)
        return 1;
    for (unsigned i = 0; i < cfg->n_projects; i++) {
        if (strcmp(cfg->project_set[i], project) == 0)
            return 1;
    }
    return 0;
}

static int validate(config *cfg, char *errbuf, size_t errlen)
{
    log_level lvl;
    if (log_level_parse(cfg->log_level, &lvl) != 0) {
        snprintf(errbuf, errlen, "--log-level: '%s' is not one of debug, info, warn, error",
                 cfg->log_level);
        return -1;
    }
    if (strcmp(cfg->jwt_alg, "HS256") != 0 && strcmp(cfg->jwt_alg, "RS256") != 0 &&
        strcmp(cfg->jwt_alg, "ES256") != 0) {
        snprintf(errbuf, errlen, "--jwt-alg: '%s' is not one of HS256, RS256, ES256", cfg->jwt_alg);
        return -1;
    }
    if (!cfg->no_auth && cfg->jwt_key == NULL) {
        snprintf(errbuf, errlen,
                 "no --jwt-key given: pass --jwt-key FILE, or --no-auth for local development");
        return -1;
    }
    if (cfg->shm_dir[0] == '\0') {
        snprintf(errbuf, errlen, "--shm-dir: must not be empty");
        return -1;
    }
    if (cfg->redis != NULL && strncmp(cfg->redis, "redis://", 8) != 0 &&
        strncmp(cfg->redis, "redis-sentinel://", 17) != 0) {
        snprintf(errbuf, errlen,
                 "--redis: '%s' must start with redis:// or redis-sentinel://", cfg->redis);
        return -1;
    }
    if (parse_projects(cfg, errbuf, errlen) != 0)
        return -1;
    if (cfg->redis != NULL && !cfg->no_auth && cfg->fingerprint_key == NULL) {
        snprintf(errbuf, errlen,
                 "--fingerprint-key is required with --redis: give every instance the same key file "
                 "(>= 32 random bytes) so per-user limits hold across the cluster");
        return -1;
    }
    if (cfg->instance_id == NULL) {
        if (gethostname(cfg->hostname, sizeof cfg->hostname - 1) != 0)
            strcpy(cfg->hostname, "ringside");
        cfg->hostname[sizeof cfg->hostname - 1] = '\0';
        cfg->instance_id = cfg->hostname;
    }
    return 0;
}

int config_load(config *cfg, int argc, char **argv, FILE *out, char *errbuf, size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].def != NULL &&
            set_value(cfg, &options[i], options[i].def, "default", errbuf, errlen) != 0)
            return -1;
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[128];
        env_name(env, sizeof env, options[i].name);
        const char *v = getenv(env);
        if (v != NULL) {
            char src[160];
            snprintf(src, sizeof src, "environment %s for", env);
            if (set_value(cfg, &options[i], v, src, errbuf, errlen) != 0)
                return -1;
        }
    }
    int i = 1;
    if (i < argc && strcmp(argv[i], "serve") == 0)
        i++;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            config_print_help(out);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            fprintf(out, "ringside %s\n", RINGSIDE_VERSION);
            return 1;
        }
        if (strcmp(arg, "--env-example") == 0) {
            config_print_env_example(out);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(errbuf, errlen, "unexpected argument '%s' (see ringside --help)", arg);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const option_def *o = find_option(name, nlen);
        if (o == NULL) {
            snprintf(errbuf, errlen, "unknown option '%.*s' (see ringside --help)", (int)nlen + 2,
                     arg);
            return -1;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (o->kind == KIND_BOOL) {
            value = NULL;
        } else {
            if (i + 1 >= argc) {
                snprintf(errbuf, errlen, "option --%s needs a value", o->name);
                return -1;
            }
            value = argv[++i];
        }
        if (set_value(cfg, o, value, "option", errbuf, errlen) != 0)
            return -1;
    }
    return validate(cfg, errbuf, errlen);
}

void config_print_help(FILE *out)
{
    fprintf(out, "Usage: ringside [serve] [options]\n"
                 "       ringside token --jwt-key FILE --sub USER --projects p1,p2|'*' [--ttl SECONDS]\n"
                 "\n"
                 "Ringside sidecar: reads agents' shared-memory rings and serves them to dashboards\n"
                 "over WebSocket (/ws/events, /ws/terminal/{task_id}, /healthz, /readyz, /metrics).\n"
                 "\nOptions (each also as environment variable RINGSIDE_<NAME>; flags win):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_def *o = &options[i];
        char env[128];
        env_name(env, sizeof env, o->name);
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name,
                 o->kind == KIND_BOOL ? "" : (o->kind == KIND_INT ? " N" : " VALUE"));
        fprintf(out, "  %-26s %s\n  %-26s [env %s%s%s]\n", left, o->help, "", env,
                o->def ? ", default " : "", o->def ? o->def : "");
    }
    fprintf(out, "  %-26s %s\n  %-26s %s\n  %-26s %s\n", "--help", "print this help and exit",
            "--version", "print the version and exit", "--env-example",
            "print a .env.example with every variable and exit");
}

void config_print_env_example(FILE *out)
{
    fprintf(out, "# Ringside sidecar configuration (generated by `ringside --env-example`).\n"
                 "# Every variable is optional; the value shown is the default.\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_def *o = &options[i];
        char env[128];
        env_name(env, sizeof env, o->name);
        fprintf(out, "\n# %s\n", o->help);
        if (o->kind == KIND_BOOL)
            fprintf(out, "# %s=false\n", env);
        else
            fprintf(out, "# %s=%s\n", env, o->def ? o->def : "");
    }
}
