/*
 * token_cmd.c — `ringside token`.  Contract in token_cmd.h.
 */
#include "token_cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define TOKEN_TTL_DEFAULT 3600L

static const char token_usage[] =
    "usage: ringside token --jwt-key FILE --sub USER --projects p1,p2|'*'\n"
    "                      [--agents a1,a2|'*'] [--ttl SECONDS] [--jwt-alg HS256|RS256|ES256]\n"
    "                      [--iss ISSUER] [--aud AUDIENCE]\n"
    "\n"
    "Prints a signed JWT for development, the demo and tests.\n"
    "  --jwt-key FILE   HS256: the shared secret file (>= 32 bytes, as given to the sidecar);\n"
    "                   RS256/ES256: the PEM private key (the sidecar gets the public key)\n"
    "  --sub USER       the user (claim sub)\n"
    "  --projects LIST  comma-separated project ids, or '*' for every project\n"
    "  --agents LIST    comma-separated agent ids, or '*' (default: every agent of the projects)\n"
    "  --ttl SECONDS    lifetime, 1..31536000 (default 3600)\n"
    "  --jwt-alg ALG    HS256 (default), RS256 or ES256\n"
    "  --iss ISSUER     claim iss (also --jwt-issuer)\n"
    "  --aud AUDIENCE   claim aud (also --jwt-audience)\n"
    "Environment: RINGSIDE_JWT_KEY, RINGSIDE_JWT_ALG, RINGSIDE_JWT_ISSUER, RINGSIDE_JWT_AUDIENCE\n"
    "give defaults for the matching options.\n";

static int usage_error(const char *msg, const char *arg)
{
    if (arg != NULL)
        fprintf(stderr, "ringside token: %s: %s (see ringside token --help)\n", msg, arg);
    else
        fprintf(stderr, "ringside token: %s (see ringside token --help)\n", msg);
    return 2;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : dflt;
}

int token_cmd_main(int argc, char **argv)
{
    const char *key = env_or("RINGSIDE_JWT_KEY", NULL);
    const char *alg = env_or("RINGSIDE_JWT_ALG", "HS256");
    const char *iss = env_or("RINGSIDE_JWT_ISSUER", NULL);
    const char *aud = env_or("RINGSIDE_JWT_AUDIENCE", NULL);
    const char *sub = NULL, *projects = NULL, *agents = NULL, *ttl_str = NULL;
    long ttl = TOKEN_TTL_DEFAULT;
    char err[256] = "";
    char *token = NULL;
    int rc;

    /* Bounded by argc: every iteration consumes one or two arguments. */
    for (int i = 1; i < argc; i++) {
        static const struct {
            const char *name;
            int slot;
        } opts[] = {{"--jwt-key", 0},    {"--sub", 1},         {"--projects", 2}, {"--agents", 3},
                    {"--ttl", 4},        {"--jwt-alg", 5},     {"--iss", 6},      {"--aud", 7},
                    {"--jwt-issuer", 6}, {"--jwt-audience", 7}};
        const char **slots[] = {&key, &sub, &projects, &agents, &ttl_str, &alg, &iss, &aud};
        const char *arg = argv[i], *val = NULL;
        size_t k, n = sizeof opts / sizeof opts[0];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(token_usage, stdout);
            return 0;
        }
        for (k = 0; k < n; k++) {
            size_t l = strlen(opts[k].name);
            if (strncmp(arg, opts[k].name, l) == 0 && (arg[l] == '\0' || arg[l] == '=')) {
                if (arg[l] == '=') {
                    val = arg + l + 1;
                } else {
                    if (i + 1 >= argc)
                        return usage_error("option needs a value", arg);
                    val = argv[++i];
                }
                *slots[opts[k].slot] = val;
                break;
            }
        }
        if (k == n)
            return usage_error("unknown argument", arg);
    }
    if (key == NULL)
        return usage_error("--jwt-key FILE is required", NULL);
    if (sub == NULL)
        return usage_error("--sub USER is required", NULL);
    if (projects == NULL)
        return usage_error("--projects LIST is required (ids, or '*')", NULL);
    if (ttl_str != NULL) {
        char *end;
        errno = 0;
        ttl = strtol(ttl_str, &end, 10);
        if (errno != 0 || end == ttl_str || *end != '\0' || ttl < 1 || ttl > 31536000L)
            return usage_error("--ttl must be 1..31536000 seconds", ttl_str);
    }
    rc = auth_mint(alg, key, sub, projects, agents, ttl, iss, aud, &token, err, sizeof err);
    if (rc != AUTH_OK) {
        fprintf(stderr, "ringside token: %s\n", err[0] ? err : auth_strerror(rc));
        return rc == AUTH_EINVAL ? 2 : 1;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? 0 : 1;
}
