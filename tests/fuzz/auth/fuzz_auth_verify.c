/*
 * fuzz_auth_verify.c — libFuzzer harness for token parsing and claim handling (sidecar/auth.c).
 *
 * Input: one mode byte, then data.
 *   mode 0..3: data is a raw token verified against HS256, RS256, ES256, and HS256 with issuer,
 *              audience and leeway configured (exercises size, structure, base64url, header JSON,
 *              alg pinning, signature paths);
 *   mode 4:    data is "HEADER_JSON\nPAYLOAD_JSON"; the harness signs it with the HS256 key, so the
 *              claim checks (exp, nbf, iss, aud, sub, projects, agents) are reached with arbitrary
 *              JSON.
 * On success the identity's invariants are asserted (abort on violation): a valid user, lists
 * sorted, unique, within limits, of valid ids, and every listed project/agent allowed.
 *
 * Without RINGSIDE_FUZZ_LIBFUZZER, main() replays every file of the directories (or files) given
 * on the command line: the seed corpus runs as a plain ctest.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "auth.h"

#define FUZZ_NOW ((int64_t)1800000000)
/* The seed tokens (make_seeds.py) are signed with this secret. */
static const char fuzz_hs_secret[] = "ringside-fuzz-secret-0123456789abcdef";

static auth_config *cfg_hs, *cfg_rs, *cfg_es, *cfg_strict;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what)
{
    fprintf(stderr, "fuzz_auth_verify: %s\n", what);
    abort();
}

static void write_pub(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || PEM_write_PUBKEY(f, k) != 1)
        die("cannot write a public key");
    fclose(f);
    EVP_PKEY_free(k);
}

static auth_config *make_cfg(const char *alg, const char *path, const char *iss, const char *aud,
                             int leeway)
{
    auth_config *cfg = NULL;
    char err[256];
    if (auth_config_new(&cfg, alg, path, iss, aud, leeway, err, sizeof err) != AUTH_OK)
        die(err);
    return cfg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[] = "/tmp/ringside-fuzz-auth-XXXXXX";
    char hs[64], rs[64], es[64];
    FILE *f;

    (void)argc;
    (void)argv;
    if (sodium_init() < 0 || mkdtemp(dir) == NULL)
        die("setup");
    snprintf(hs, sizeof hs, "%s/hs", dir);
    snprintf(rs, sizeof rs, "%s/rs", dir);
    snprintf(es, sizeof es, "%s/es", dir);
    f = fopen(hs, "w");
    if (f == NULL)
        die("cannot write the HS key");
    fputs(fuzz_hs_secret, f);
    fclose(f);
    write_pub(EVP_RSA_gen(2048), rs);
    write_pub(EVP_EC_gen("P-256"), es);
    cfg_hs = make_cfg("HS256", hs, NULL, NULL, 0);
    cfg_rs = make_cfg("RS256", rs, NULL, NULL, 0);
    cfg_es = make_cfg("ES256", es, NULL, NULL, 0);
    cfg_strict = make_cfg("HS256", hs, "https://idp.example", "ringside", 30);
    unlink(hs);
    unlink(rs);
    unlink(es);
    rmdir(dir);
    return 0;
}

static int sorted_valid(char (*list)[AUTH_ID_MAX + 1], size_t n)
{
    if (n > AUTH_LIST_MAX || (n > 0) != (list != NULL))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!auth_valid_id(list[i]))
            return 0;
        if (i > 0 && strcmp(list[i - 1], list[i]) >= 0)
            return 0;
    }
    return 1;
}

static void check_identity(const auth_identity *id)
{
    if (id->user[0] == '\0' || strlen(id->user_fp) != AUTH_FP_HEX)
        die("identity without user");
    if (!sorted_valid(id->projects, id->n_projects) || !sorted_valid(id->agents, id->n_agents))
        die("identity lists not sorted, unique and valid");
    if (id->all_projects && id->n_projects != 0)
        die("wildcard and list of projects");
    for (size_t i = 0; i < id->n_projects; i++) {
        if (!auth_allows_project(id, id->projects[i]))
            die("listed project not allowed");
        for (size_t j = 0; j < id->n_agents; j++)
            if (!auth_allows_agent(id, id->projects[i], id->agents[j]))
                die("listed agent not allowed");
    }
    if (!id->all_projects && auth_allows_project(id, "\x01not-an-id"))
        die("invalid project allowed");
}

static void verify_one(const auth_config *cfg, const char *tok, size_t len)
{
    auth_identity id;
    int rc = auth_verify(cfg, tok, len, FUZZ_NOW, &id);
#ifndef RINGSIDE_FUZZ_LIBFUZZER
    if (getenv("FUZZ_AUTH_VERBOSE") != NULL)
        fprintf(stderr, "  -> %s\n", auth_strerror(rc));
#endif
    if (rc == AUTH_OK) {
        auth_identity copy;
        check_identity(&id);
        if (auth_identity_copy(&copy, &id) == AUTH_OK) {
            check_identity(&copy);
            auth_identity_clear(&copy);
        }
    } else if (rc > 0 || auth_strerror(rc)[0] == 'u') {
        die("unknown error code");
    } else if (id.user[0] != '\0' || id.projects != NULL || id.agents != NULL) {
        die("identity not cleared on failure");
    }
    auth_identity_clear(&id);
}

/* Builds base64url(header).base64url(payload).HMAC and verifies it. */
static void sign_and_verify(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen, plen, cap, off;
    char *tok;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];

    if (nl == NULL || size > AUTH_TOKEN_MAX)
        return;
    hlen = (size_t)(nl - data);
    plen = size - hlen - 1;
    cap = sodium_base64_ENCODED_LEN(hlen, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
          sodium_base64_ENCODED_LEN(plen, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
          sodium_base64_ENCODED_LEN(sizeof mac, sodium_base64_VARIANT_URLSAFE_NO_PADDING) + 4;
    tok = malloc(cap);
    if (tok == NULL)
        return;
    sodium_bin2base64(tok, cap, data, hlen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off = strlen(tok);
    tok[off++] = '.';
    sodium_bin2base64(tok + off, cap - off, nl + 1, plen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off += strlen(tok + off);
    {
        crypto_auth_hmacsha256_state st; /* the one-shot API takes a 32-byte key only */
        crypto_auth_hmacsha256_init(&st, (const unsigned char *)fuzz_hs_secret,
                                    strlen(fuzz_hs_secret));
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)tok, off);
        crypto_auth_hmacsha256_final(&st, mac);
    }
    tok[off++] = '.';
    sodium_bin2base64(tok + off, cap - off, mac, sizeof mac,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    off += strlen(tok + off);
    verify_one(cfg_hs, tok, off);
    verify_one(cfg_strict, tok, off);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 5) {
    case 0:
        verify_one(cfg_hs, (const char *)data + 1, size - 1);
        break;
    case 1:
        verify_one(cfg_rs, (const char *)data + 1, size - 1);
        break;
    case 2:
        verify_one(cfg_es, (const char *)data + 1, size - 1);
        break;
    case 3:
        verify_one(cfg_strict, (const char *)data + 1, size - 1);
        break;
    default:
        sign_and_verify(data + 1, size - 1);
        break;
    }
    return 0;
}

#ifndef RINGSIDE_FUZZ_LIBFUZZER
/* Replays one file; returns 0, or -1 if unreadable. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    size_t n;

    if (f == NULL)
        return -1;
    buf = malloc(1 << 20);
    if (buf == NULL) {
        fclose(f);
        return -1;
    }
    n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    size_t count = 0;

    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        if (d == NULL) {
            if (replay_file(argv[i]) != 0) {
                fprintf(stderr, "cannot read %s\n", argv[i]);
                return 1;
            }
            count++;
            continue;
        }
        /* Bounded by the directory's entries and a hard cap. */
        while ((e = readdir(d)) != NULL && count < 100000) {
            char path[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            if (getenv("FUZZ_AUTH_VERBOSE") != NULL)
                fprintf(stderr, "%s\n", e->d_name);
            if (replay_file(path) != 0) {
                fprintf(stderr, "cannot read %s\n", path);
                closedir(d);
                return 1;
            }
            count++;
        }
        closedir(d);
    }
    auth_config_free(cfg_hs);
    auth_config_free(cfg_rs);
    auth_config_free(cfg_es);
    auth_config_free(cfg_strict);
    printf("fuzz_auth_verify: replayed %zu inputs\n", count);
    return count > 0 ? 0 : 1;
}
#endif
