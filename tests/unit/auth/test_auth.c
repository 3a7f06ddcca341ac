/*
 * test_auth.c — unit tests of sidecar/auth.c: every rejection path of auth_verify(), success for
 * HS256/RS256/ES256, authorization lookups, key loading and reload, fingerprints, minting.
 *
 * Keys are generated at test time with libcrypto into a private temporary directory that the group
 * teardown removes.  Hand-made tokens (odd headers, odd claims) are built and HMAC-signed here with
 * libsodium so that every claim path is reachable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "auth.h"

#define NOW ((int64_t)1800000000) /* a fixed clock: 2027-01-15 */

static char tmpdir[64];
static char path_hs[128], path_hs2[128], path_short[128], path_pemhs[128];
static char path_rs_priv[128], path_rs_pub[128], path_rs2_priv[128], path_rs2_pub[128];
static char path_es_priv[128], path_es_pub[128], path_es2_priv[128], path_rs1024_pub[128];
static char path_both_pub[128], path_reload[128];
static const char hs_secret[] = "0123456789abcdef0123456789abcdef-secret-A";
static const char hs_secret2[] = "fedcba9876543210fedcba9876543210-secret-B";

/* ---------------------------------------------------------------------------------------------- */
/* Fixtures */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 65537);
    size_t n;
    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, 65536, f);
    fclose(f);
    if (len != NULL)
        *len = n;
    return buf;
}

static void write_key_pair(EVP_PKEY *pkey, const char *priv, const char *pub)
{
    FILE *f;
    if (priv != NULL) {
        f = fopen(priv, "w");
        assert_non_null(f);
        assert_int_equal(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
        fclose(f);
    }
    f = fopen(pub, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, pkey), 1);
    fclose(f);
}

static void mkpath(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", tmpdir, name);
}

static int group_setup(void **state)
{
    EVP_PKEY *k;
    char both[16384];
    char *a, *b;
    size_t la, lb;

    (void)state;
    if (sodium_init() < 0)
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ringside-auth-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    mkpath(path_hs, "hs.key");
    mkpath(path_hs2, "hs2.key");
    mkpath(path_short, "short.key");
    mkpath(path_pemhs, "pem-as-hs.key");
    mkpath(path_rs_priv, "rs.pem");
    mkpath(path_rs_pub, "rs.pub");
    mkpath(path_rs2_priv, "rs2.pem");
    mkpath(path_rs2_pub, "rs2.pub");
    mkpath(path_es_priv, "es.pem");
    mkpath(path_es_pub, "es.pub");
    mkpath(path_es2_priv, "es2.pem");
    mkpath(path_rs1024_pub, "rs1024.pub");
    mkpath(path_both_pub, "both.pub");
    mkpath(path_reload, "reload.key");

    /* HS secrets: with a trailing newline, as `echo` or a Kubernetes Secret would write them. */
    {
        char line[128];
        snprintf(line, sizeof line, "%s\n", hs_secret);
        write_file(path_hs, line, strlen(line));
        snprintf(line, sizeof line, "%s\r\n", hs_secret2);
        write_file(path_hs2, line, strlen(line));
    }
    write_file(path_short, "too-short-secret\n", 17);

    k = EVP_RSA_gen(2048);
    assert_non_null(k);
    write_key_pair(k, path_rs_priv, path_rs_pub);
    EVP_PKEY_free(k);
    k = EVP_RSA_gen(2048);
    assert_non_null(k);
    write_key_pair(k, path_rs2_priv, path_rs2_pub);
    EVP_PKEY_free(k);
    k = EVP_RSA_gen(1024);
    assert_non_null(k);
    write_key_pair(k, NULL, path_rs1024_pub);
    EVP_PKEY_free(k);
    k = EVP_EC_gen("P-256");
    assert_non_null(k);
    write_key_pair(k, path_es_priv, path_es_pub);
    EVP_PKEY_free(k);
    k = EVP_EC_gen("P-256");
    assert_non_null(k);
    {
        char pub2[128];
        mkpath(pub2, "es2.pub");
        write_key_pair(k, path_es2_priv, pub2);
    }
    EVP_PKEY_free(k);

    /* A PEM used as an HS secret (the configuration side of key confusion). */
    a = read_all(path_rs_pub, &la);
    write_file(path_pemhs, a, la);
    /* Two public keys in one file (rotation overlap). */
    b = read_all(path_rs2_pub, &lb);
    assert_true(la + lb < sizeof both);
    memcpy(both, a, la);
    memcpy(both + la, b, lb);
    write_file(path_both_pub, both, la + lb);
    free(a);
    free(b);
    return 0;
}

static int group_teardown(void **state)
{
    const char *names[] = {"hs.key",  "hs2.key", "short.key",  "pem-as-hs.key", "rs.pem",
                           "rs.pub",  "rs2.pem", "rs2.pub",    "es.pem",        "es.pub",
                           "es2.pem", "es2.pub", "rs1024.pub", "both.pub",      "reload.key"};
    char p[128];
    (void)state;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        mkpath(p, names[i]);
        unlink(p);
    }
    return rmdir(tmpdir);
}

/* ---------------------------------------------------------------------------------------------- */
/* Token helpers */

static char *b64url(const void *data, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    assert_non_null(out);
    sodium_bin2base64(out, cap, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* header.payload.HMAC-SHA256(key) built from raw JSON text; key NULL: empty signature. */
static char *hs_token_key(const char *header, const char *payload, const void *key, size_t keylen)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + 64;
    char *tok = malloc(n);
    assert_non_null(tok);
    snprintf(tok, n, "%s.%s", h, p);
    if (key != NULL) {
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;
        char *s;
        crypto_auth_hmacsha256_init(&st, key, keylen);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)tok, strlen(tok));
        crypto_auth_hmacsha256_final(&st, mac);
        s = b64url(mac, sizeof mac);
        tok = realloc(tok, strlen(tok) + strlen(s) + 2);
        assert_non_null(tok);
        strcat(tok, ".");
        strcat(tok, s);
        free(s);
    } else {
        strcat(tok, ".");
    }
    free(h);
    free(p);
    return tok;
}

static char *hs_token(const char *header, const char *payload)
{
    return hs_token_key(header, payload, hs_secret, strlen(hs_secret));
}

#define HS_HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* A payload with the standard valid claims plus `extra` (a JSON members fragment or ""). */
static char *payload_with(const char *extra)
{
    static char buf[16384];
    snprintf(buf, sizeof buf, "{\"sub\":\"alice\",\"exp\":%lld,\"projects\":[\"p1\"]%s%s}",
             (long long)(NOW + 600), extra[0] ? "," : "", extra);
    return buf;
}

static auth_config *cfg_new(const char *alg, const char *key, const char *iss, const char *aud,
                            int leeway)
{
    auth_config *cfg = NULL;
    char err[256] = "";
    int rc = auth_config_new(&cfg, alg, key, iss, aud, leeway, err, sizeof err);
    if (rc != AUTH_OK)
        fail_msg("auth_config_new(%s, %s): %s: %s", alg, key, auth_strerror(rc), err);
    return cfg;
}

static int verify_str(const auth_config *cfg, const char *tok, int64_t now)
{
    auth_identity id;
    int rc = auth_verify(cfg, tok, strlen(tok), now, &id);
    if (rc != AUTH_OK) {
        /* A failed verification leaves the identity zeroed. */
        assert_int_equal(id.user[0], 0);
        assert_null(id.projects);
        assert_int_equal(id.all_projects, 0);
    }
    auth_identity_clear(&id);
    return rc;
}

/* Verifies a hand-made HS256 token with the given header and payload against the HS config. */
static int verify_hs(const char *header, const char *payload)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *tok = hs_token(header, payload);
    int rc = verify_str(cfg, tok, NOW);
    free(tok);
    auth_config_free(cfg);
    return rc;
}

static char *mint(const char *alg, const char *key, const char *sub, const char *projects,
                  const char *agents, int64_t now, long ttl, const char *iss, const char *aud)
{
    char *tok = NULL;
    char err[256] = "";
    int rc =
        auth_mint_at(alg, key, sub, projects, agents, now, ttl, iss, aud, &tok, err, sizeof err);
    if (rc != AUTH_OK)
        fail_msg("auth_mint_at(%s, %s): %s: %s", alg, key, auth_strerror(rc), err);
    return tok;
}

/* ---------------------------------------------------------------------------------------------- */
/* Success paths */

static void check_identity_alice(const auth_identity *id)
{
    assert_string_equal(id->user, "alice");
    assert_int_equal(strlen(id->user_fp), AUTH_FP_HEX);
    assert_int_equal(id->all_projects, 0);
    assert_int_equal(id->n_projects, 2);
    assert_string_equal(id->projects[0], "p1");
    assert_string_equal(id->projects[1], "p2");
    assert_int_equal(id->exp, NOW + 3600);
    assert_int_equal(id->iat, NOW);
}

static void verify_minted(const char *alg, const char *priv, const char *pub)
{
    auth_config *cfg = cfg_new(alg, pub, "https://idp.example", "ringside", 5);
    char *tok =
        mint(alg, priv, "alice", "p2,p1,p2", "a1", NOW, 3600, "https://idp.example", "ringside");
    auth_identity id;

    assert_int_equal(auth_config_alg(cfg), strcmp(alg, "HS256") == 0   ? AUTH_ALG_HS256
                                           : strcmp(alg, "RS256") == 0 ? AUTH_ALG_RS256
                                                                       : AUTH_ALG_ES256);
    assert_int_equal(auth_verify(cfg, tok, strlen(tok), NOW, &id), AUTH_OK);
    check_identity_alice(&id);
    assert_int_equal(id.all_agents, 0);
    assert_int_equal(id.n_agents, 1);
    assert_int_equal(auth_identity_ttl(&id, NOW + 100), 3505); /* exp + leeway 5 */
    auth_identity_clear(&id);
    assert_null(id.projects);
    auth_identity_clear(&id); /* idempotent */
    free(tok);
    auth_config_free(cfg);
}

static void test_hs256_ok(void **state)
{
    (void)state;
    verify_minted("HS256", path_hs, path_hs);
}

static void test_rs256_ok(void **state)
{
    (void)state;
    verify_minted("RS256", path_rs_priv, path_rs_pub);
}

static void test_es256_ok(void **state)
{
    (void)state;
    verify_minted("ES256", path_es_priv, path_es_pub);
}

static void test_hs256_handmade_ok(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *tok = hs_token("{\"alg\":\"HS256\"}", "{\"sub\":\"system:serviceaccount:ns:sa\","
                                                "\"exp\":1.8e9,\"nbf\":1799999999.5,"
                                                "\"projects\":\"*\",\"agents\":\"*\"}");
    auth_identity id;
    (void)state;
    assert_int_equal(auth_verify(cfg, tok, strlen(tok), NOW - 1, &id), AUTH_OK);
    assert_string_equal(id.user, "system:serviceaccount:ns:sa");
    assert_int_equal(id.all_projects, 1);
    assert_int_equal(id.all_agents, 1);
    assert_int_equal(id.exp, 1800000000);
    assert_true(auth_allows_agent(&id, "any-project", "any-agent"));
    auth_identity_clear(&id);
    free(tok);
    auth_config_free(cfg);
}

/* The token may sit inside a larger buffer: only len bytes are read. */
static void test_verify_uses_len(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *tok = hs_token(HS_HDR, payload_with(""));
    size_t n = strlen(tok);
    char *padded = malloc(n + 8);
    auth_identity id;
    (void)state;
    memcpy(padded, tok, n);
    memcpy(padded + n, "garbage!", 8);
    assert_int_equal(auth_verify(cfg, padded, n, NOW, &id), AUTH_OK);
    auth_identity_clear(&id);
    assert_int_not_equal(auth_verify(cfg, padded, n + 1, NOW, &id), AUTH_OK);
    free(padded);
    free(tok);
    auth_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Signature and algorithm */

static void test_bad_signature(void **state)
{
    auth_config *hs = cfg_new("HS256", path_hs, NULL, NULL, 0);
    auth_config *rs = cfg_new("RS256", path_rs_pub, NULL, NULL, 0);
    auth_config *es = cfg_new("ES256", path_es_pub, NULL, NULL, 0);
    char *tok;
    size_t n;
    (void)state;

    /* Signed with another secret. */
    tok = hs_token_key(HS_HDR, payload_with(""), hs_secret2, strlen(hs_secret2));
    assert_int_equal(verify_str(hs, tok, NOW), AUTH_EBAD_SIGNATURE);
    free(tok);
    /* One signature character changed (keeping canonical base64url: flip within 'A'/'B'). */
    tok = hs_token(HS_HDR, payload_with(""));
    n = strlen(tok);
    tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(verify_str(hs, tok, NOW), AUTH_EBAD_SIGNATURE);
    free(tok);
    /* Payload changed after signing (privilege escalation attempt). */
    {
        char *good = hs_token(HS_HDR, payload_with(""));
        char *evil = hs_token(HS_HDR, "{\"sub\":\"alice\",\"exp\":1900000000,\"projects\":\"*\"}");
        char *gsig = strrchr(good, '.');
        char *esig = strrchr(evil, '.');
        assert_int_equal(strlen(gsig), strlen(esig));
        memcpy(esig, gsig, strlen(gsig));
        assert_int_equal(verify_str(hs, evil, NOW), AUTH_EBAD_SIGNATURE);
        free(good);
        free(evil);
    }
    /* A truncated HMAC (31 bytes). */
    {
        unsigned char mac[31] = {0};
        char *h = b64url(HS_HDR, strlen(HS_HDR));
        char *p = b64url(payload_with(""), strlen(payload_with("")));
        char *s = b64url(mac, sizeof mac);
        char t[4096];
        snprintf(t, sizeof t, "%s.%s.%s", h, p, s);
        assert_int_equal(verify_str(hs, t, NOW), AUTH_EBAD_SIGNATURE);
        free(h);
        free(p);
        free(s);
    }
    /* RS256 and ES256 tokens signed by other keys. */
    tok = mint("RS256", path_rs2_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    assert_int_equal(verify_str(rs, tok, NOW), AUTH_EBAD_SIGNATURE);
    free(tok);
    tok = mint("ES256", path_es2_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    assert_int_equal(verify_str(es, tok, NOW), AUTH_EBAD_SIGNATURE);
    free(tok);
    /* An ES256 signature of the wrong size. */
    tok = mint("ES256", path_es_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    assert_int_equal(verify_str(es, tok, NOW), AUTH_OK);
    n = strlen(tok);
    tok[n - 4] = '\0';
    assert_int_not_equal(verify_str(es, tok, NOW), AUTH_OK);
    free(tok);

    auth_config_free(hs);
    auth_config_free(rs);
    auth_config_free(es);
}

static void test_wrong_alg(void **state)
{
    auth_config *hs = cfg_new("HS256", path_hs, NULL, NULL, 0);
    auth_config *rs = cfg_new("RS256", path_rs_pub, NULL, NULL, 0);
    auth_config *es = cfg_new("ES256", path_es_pub, NULL, NULL, 0);
    char *tok;
    (void)state;

    /* A valid HS256 token offered to an RS256 sidecar. */
    tok = hs_token(HS_HDR, payload_with(""));
    assert_int_equal(verify_str(rs, tok, NOW), AUTH_EBAD_ALG);
    assert_int_equal(verify_str(es, tok, NOW), AUTH_EBAD_ALG);
    free(tok);
    /* Key confusion: HS256 "signed" with the RS256 public key PEM as the HMAC secret. */
    {
        size_t len;
        char *pem = read_all(path_rs_pub, &len);
        tok = hs_token_key(HS_HDR, payload_with(""), pem, len);
        assert_int_equal(verify_str(rs, tok, NOW), AUTH_EBAD_ALG);
        free(tok);
        free(pem);
    }
    /* RS/ES tokens offered to other pinned algorithms. */
    tok = mint("RS256", path_rs_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    assert_int_equal(verify_str(hs, tok, NOW), AUTH_EBAD_ALG);
    assert_int_equal(verify_str(es, tok, NOW), AUTH_EBAD_ALG);
    free(tok);
    tok = mint("ES256", path_es_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    assert_int_equal(verify_str(rs, tok, NOW), AUTH_EBAD_ALG);
    free(tok);
    /* Other spellings and algorithms libjwt knows. */
    assert_int_equal(verify_hs("{\"alg\":\"HS384\"}", payload_with("")), AUTH_EBAD_ALG);
    assert_int_equal(verify_hs("{\"alg\":\"hs256\"}", payload_with("")), AUTH_EBAD_ALG);
    assert_int_equal(verify_hs("{\"alg\":\"HS256 \"}", payload_with("")), AUTH_EBAD_ALG);
    assert_int_equal(verify_hs("{\"alg\":\"HS256\\u0000\"}", payload_with("")),
                     AUTH_EMALFORMED); /* jansson refuses \u0000 */
    assert_int_equal(verify_hs("{\"typ\":\"JWT\"}", payload_with("")), AUTH_EMALFORMED);
    assert_int_equal(verify_hs("{\"alg\":256}", payload_with("")), AUTH_EMALFORMED);
    auth_config_free(hs);
    auth_config_free(rs);
    auth_config_free(es);
}

static void test_alg_none(void **state)
{
    auth_config *hs = cfg_new("HS256", path_hs, NULL, NULL, 0);
    auth_config *rs = cfg_new("RS256", path_rs_pub, NULL, NULL, 0);
    const char *hdrs[] = {"{\"alg\":\"none\"}", "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}",
                          "{\"alg\":\"none\",\"typ\":\"JWT\"}"};
    (void)state;
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        char *unsigned_tok = hs_token_key(hdrs[i], payload_with(""), NULL, 0);
        char *signed_tok = hs_token(hdrs[i], payload_with(""));
        assert_int_equal(verify_str(hs, unsigned_tok, NOW), AUTH_EBAD_ALG);
        assert_int_equal(verify_str(rs, unsigned_tok, NOW), AUTH_EBAD_ALG);
        assert_int_equal(verify_str(hs, signed_tok, NOW), AUTH_EBAD_ALG);
        free(unsigned_tok);
        free(signed_tok);
    }
    /* The right alg with an empty signature. */
    {
        char *tok = hs_token_key(HS_HDR, payload_with(""), NULL, 0);
        assert_int_equal(verify_str(hs, tok, NOW), AUTH_EMALFORMED);
        free(tok);
    }
    auth_config_free(hs);
    auth_config_free(rs);
}

static void test_header_typ_crit(void **state)
{
    (void)state;
    assert_int_equal(verify_hs("{\"alg\":\"HS256\",\"typ\":\"jwt\"}", payload_with("")), AUTH_OK);
    assert_int_equal(verify_hs("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", payload_with("")),
                     AUTH_EMALFORMED);
    assert_int_equal(verify_hs("{\"alg\":\"HS256\",\"typ\":1}", payload_with("")), AUTH_EMALFORMED);
    assert_int_equal(verify_hs("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload_with("")),
                     AUTH_EMALFORMED);
    assert_int_equal(verify_hs("{\"alg\":\"HS256\",\"alg\":\"none\"}", payload_with("")),
                     AUTH_EMALFORMED); /* duplicate keys */
    /* Key-locating headers are ignored: the key is always the configured one. */
    assert_int_equal(
        verify_hs("{\"alg\":\"HS256\",\"kid\":\"x\",\"jku\":\"https://evil\"}", payload_with("")),
        AUTH_OK);
}

/* ---------------------------------------------------------------------------------------------- */
/* Time claims */

static void test_expired_and_leeway(void **state)
{
    auth_config *strict = cfg_new("HS256", path_hs, NULL, NULL, 0);
    auth_config *lenient = cfg_new("HS256", path_hs, NULL, NULL, 30);
    char p[256];
    char *tok;
    (void)state;

    snprintf(p, sizeof p, "{\"sub\":\"a\",\"projects\":[],\"exp\":%lld}", (long long)NOW);
    tok = hs_token(HS_HDR, p);
    assert_int_equal(verify_str(strict, tok, NOW - 1), AUTH_OK);
    assert_int_equal(verify_str(strict, tok, NOW), AUTH_EEXPIRED); /* on exp: expired */
    assert_int_equal(verify_str(strict, tok, NOW + 1000), AUTH_EEXPIRED);
    assert_int_equal(verify_str(lenient, tok, NOW + 29), AUTH_OK);
    assert_int_equal(verify_str(lenient, tok, NOW + 30), AUTH_EEXPIRED);
    {
        /* Expiry of a live connection honours the leeway too (no accept-then-4001). */
        auth_identity id;
        assert_int_equal(auth_verify(lenient, tok, strlen(tok), NOW + 29, &id), AUTH_OK);
        assert_int_equal(auth_identity_ttl(&id, NOW + 29), 1);
        assert_true(auth_identity_ttl(&id, NOW + 30) < 0);
        auth_identity_clear(&id);
    }
    free(tok);
    /* Huge and negative values do not overflow. */
    tok = hs_token(HS_HDR, "{\"sub\":\"a\",\"projects\":[],\"exp\":9223372036854775807}");
    assert_int_equal(verify_str(lenient, tok, NOW), AUTH_OK);
    {
        auth_identity id;
        assert_int_equal(auth_verify(lenient, tok, strlen(tok), NOW, &id), AUTH_OK);
        assert_true(auth_identity_ttl(&id, NOW) > INT64_MAX / 4); /* no overflow */
        auth_identity_clear(&id);
    }
    free(tok);
    tok = hs_token(HS_HDR, "{\"sub\":\"a\",\"projects\":[],\"exp\":-9223372036854775807}");
    assert_int_equal(verify_str(lenient, tok, NOW), AUTH_EEXPIRED);
    free(tok);
    tok = hs_token(HS_HDR, "{\"sub\":\"a\",\"projects\":[],\"exp\":1e300}");
    assert_int_equal(verify_str(lenient, tok, NOW), AUTH_OK);
    free(tok);
    auth_config_free(strict);
    auth_config_free(lenient);
}

static void test_not_yet_valid(void **state)
{
    auth_config *strict = cfg_new("HS256", path_hs, NULL, NULL, 0);
    auth_config *lenient = cfg_new("HS256", path_hs, NULL, NULL, 30);
    char p[256];
    char *tok;
    (void)state;

    snprintf(p, sizeof p, "{\"sub\":\"a\",\"projects\":[],\"exp\":%lld,\"nbf\":%lld}",
             (long long)(NOW + 3600), (long long)(NOW + 10));
    tok = hs_token(HS_HDR, p);
    assert_int_equal(verify_str(strict, tok, NOW), AUTH_ENOT_YET_VALID);
    assert_int_equal(verify_str(strict, tok, NOW + 10), AUTH_OK);
    assert_int_equal(verify_str(lenient, tok, NOW), AUTH_OK);
    assert_int_equal(verify_str(lenient, tok, NOW - 20), AUTH_OK);
    assert_int_equal(verify_str(lenient, tok, NOW - 21), AUTH_ENOT_YET_VALID);
    free(tok);
    auth_config_free(strict);
    auth_config_free(lenient);
}

static void test_exp_required_and_types(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *tok;
    auth_identity id;
    (void)state;

    tok = hs_token(HS_HDR, "{\"sub\":\"a\",\"projects\":[\"p\"]}");
    assert_int_equal(verify_str(cfg, tok, NOW), AUTH_EBAD_CLAIMS);
    auth_config_set_require_exp(cfg, 0);
    assert_int_equal(auth_verify(cfg, tok, strlen(tok), NOW, &id), AUTH_OK);
    assert_int_equal(id.exp, 0);
    assert_true(auth_identity_ttl(&id, NOW) == INT64_MAX);
    auth_identity_clear(&id);
    free(tok);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":\"a\",\"projects\":[],\"exp\":\"1900000000\"}"),
                     AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"nbf\":null")), AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"iat\":true")), AUTH_EBAD_CLAIMS);
    auth_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Issuer and audience */

static void test_issuer(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, "https://idp.example", NULL, 0);
    const struct {
        const char *extra;
        int rc;
    } cases[] = {
        {"\"iss\":\"https://idp.example\"", AUTH_OK},
        {"\"iss\":\"https://idp.example/\"", AUTH_EBAD_ISSUER},
        {"\"iss\":\"https://evil.example\"", AUTH_EBAD_ISSUER},
        {"\"iss\":[\"https://idp.example\"]", AUTH_EBAD_ISSUER},
        {"\"iss\":\"https://idp.example\\u0000x\"", AUTH_EMALFORMED},
        {"", AUTH_EBAD_ISSUER},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = hs_token(HS_HDR, payload_with(cases[i].extra));
        assert_int_equal(verify_str(cfg, tok, NOW), cases[i].rc);
        free(tok);
    }
    auth_config_free(cfg);
    /* Not configured: iss is ignored. */
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"iss\":\"anyone\"")), AUTH_OK);
}

static void test_audience(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, "ringside", 0);
    const struct {
        const char *extra;
        int rc;
    } cases[] = {
        {"\"aud\":\"ringside\"", AUTH_OK},
        {"\"aud\":[\"other\",\"ringside\"]", AUTH_OK},
        {"\"aud\":\"other\"", AUTH_EBAD_AUDIENCE},
        {"\"aud\":[\"other\"]", AUTH_EBAD_AUDIENCE},
        {"\"aud\":[]", AUTH_EBAD_AUDIENCE},
        {"\"aud\":7", AUTH_EBAD_AUDIENCE},
        {"", AUTH_EBAD_AUDIENCE},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = hs_token(HS_HDR, payload_with(cases[i].extra));
        assert_int_equal(verify_str(cfg, tok, NOW), cases[i].rc);
        free(tok);
    }
    auth_config_free(cfg);
    /* Not configured: a token meant for another audience is refused (RFC 7519 4.1.3). */
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"aud\":\"billing\"")), AUTH_EBAD_AUDIENCE);
}

/* ---------------------------------------------------------------------------------------------- */
/* Structure and size */

static void test_malformed(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *good = hs_token(HS_HDR, payload_with(""));
    char buf[4096];
    const char *bad[] = {
        "abc",           "a.b",
        "a.b.c.d",       "..",
        ".e30.c2ln",     "e30..c2ln",
        "e30.e30.c!ln",  "eyJhbGciOiJIUzI1NiJ9.e30=.c2ln", /* padding */
        "e30.e30.c2ln ", "Bearer e30.e30.c2ln",
        "e30.e30.c2l", /* non-canonical trailing bits */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(verify_str(cfg, bad[i], NOW), AUTH_EMALFORMED);
    /* A NUL inside the token. */
    {
        auth_identity id;
        snprintf(buf, sizeof buf, "%s", good);
        buf[5] = '\0';
        assert_int_equal(auth_verify(cfg, buf, strlen(good), NOW, &id), AUTH_EMALFORMED);
    }
    /* Header or payload not JSON, not an object, or with duplicate keys. */
    assert_int_equal(verify_hs("not json", payload_with("")), AUTH_EMALFORMED);
    assert_int_equal(verify_hs("[\"HS256\"]", payload_with("")), AUTH_EMALFORMED);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":\"a\""), AUTH_EMALFORMED);
    assert_int_equal(verify_hs(HS_HDR, "\"just a string\""), AUTH_EMALFORMED);
    assert_int_equal(verify_hs(HS_HDR, "[]"), AUTH_EMALFORMED);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"sub\":\"root\"")), AUTH_EMALFORMED);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"projects\":\"*\"")), AUTH_EMALFORMED);
    /* Missing token. */
    {
        auth_identity id;
        assert_int_equal(auth_verify(cfg, NULL, 0, NOW, &id), AUTH_ENOTOKEN);
        assert_int_equal(auth_verify(cfg, "", 0, NOW, &id), AUTH_ENOTOKEN);
        assert_int_equal(auth_verify(NULL, good, strlen(good), NOW, &id), AUTH_EINVAL);
        assert_int_equal(auth_verify(cfg, good, strlen(good), NOW, NULL), AUTH_EINVAL);
    }
    free(good);
    auth_config_free(cfg);
}

static void test_oversized(void **state)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *big = malloc(AUTH_TOKEN_MAX + 2);
    char extra[AUTH_TOKEN_MAX];
    char *tok;
    (void)state;
    memset(big, 'A', AUTH_TOKEN_MAX + 1);
    big[AUTH_TOKEN_MAX + 1] = '\0';
    assert_int_equal(verify_str(cfg, big, NOW), AUTH_ETOO_LARGE);
    big[AUTH_TOKEN_MAX] = '\0';
    assert_int_equal(verify_str(cfg, big, NOW), AUTH_EMALFORMED); /* at the limit: parsed */
    free(big);
    /* A validly signed token just over the limit. */
    memset(extra, 0, sizeof extra);
    strcpy(extra, "\"pad\":\"");
    memset(extra + 7, 'x', 6200);
    strcat(extra, "\"");
    tok = hs_token(HS_HDR, payload_with(extra));
    assert_true(strlen(tok) > AUTH_TOKEN_MAX);
    assert_int_equal(verify_str(cfg, tok, NOW), AUTH_ETOO_LARGE);
    free(tok);
    auth_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------- */
/* Identity claims */

static void test_sub(void **state)
{
    char long_sub[200];
    char p[512];
    (void)state;
    assert_int_equal(verify_hs(HS_HDR, "{\"exp\":1900000000,\"projects\":[]}"), AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":\"\",\"exp\":1900000000,\"projects\":[]}"),
                     AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":42,\"exp\":1900000000,\"projects\":[]}"),
                     AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":\"a b\",\"exp\":1900000000,\"projects\":[]}"),
                     AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":\"a\\\"b\",\"exp\":1900000000,\"projects\":[]}"),
                     AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, "{\"sub\":\"a\\nb\",\"exp\":1900000000,\"projects\":[]}"),
                     AUTH_EBAD_CLAIMS);
    assert_int_equal(
        verify_hs(HS_HDR, "{\"sub\":\"\\u00e9t\\u00e9\",\"exp\":1900000000,\"projects\":[]}"),
        AUTH_EBAD_CLAIMS);
    memset(long_sub, 'u', sizeof long_sub);
    long_sub[AUTH_USER_MAX] = '\0';
    snprintf(p, sizeof p, "{\"sub\":\"%s\",\"exp\":1900000000,\"projects\":[]}", long_sub);
    assert_int_equal(verify_hs(HS_HDR, p), AUTH_OK);
    long_sub[AUTH_USER_MAX] = 'u';
    long_sub[AUTH_USER_MAX + 1] = '\0';
    snprintf(p, sizeof p, "{\"sub\":\"%s\",\"exp\":1900000000,\"projects\":[]}", long_sub);
    assert_int_equal(verify_hs(HS_HDR, p), AUTH_EBAD_CLAIMS);
    assert_int_equal(
        verify_hs(HS_HDR, "{\"sub\":\"alice@example.com\",\"exp\":1900000000,\"projects\":[]}"),
        AUTH_OK);
}

static void test_projects_claim(void **state)
{
    char id64[80], p[256];
    const char *bad[] = {
        "{\"sub\":\"a\",\"exp\":1900000000}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":null}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":\"all\"}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":\"**\"}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":\"p1\"}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":7}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":{\"p1\":true}}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"p1\",3]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[[\"p1\"]]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"*\"]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"\"]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"bad id\"]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"p/1\"]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"p1\\u0000\"]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"../etc\"]}",
        "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"p*\"]}",
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = verify_hs(HS_HDR, bad[i]);
        if (rc != AUTH_EBAD_CLAIMS && rc != AUTH_EMALFORMED)
            fail_msg("case %zu (%s): %s", i, bad[i], auth_strerror(rc));
    }
    memset(id64, 'p', sizeof id64);
    id64[AUTH_ID_MAX] = '\0';
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"%s\"]}", id64);
    assert_int_equal(verify_hs(HS_HDR, p), AUTH_OK);
    id64[AUTH_ID_MAX] = 'p';
    id64[AUTH_ID_MAX + 1] = '\0';
    snprintf(p, sizeof p, "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"%s\"]}", id64);
    assert_int_equal(verify_hs(HS_HDR, p), AUTH_EBAD_CLAIMS);
    /* Too many entries. */
    {
        static char big[8192];
        size_t off =
            (size_t)snprintf(big, sizeof big, "{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[");
        for (int i = 0; i <= AUTH_LIST_MAX; i++)
            off += (size_t)snprintf(big + off, sizeof big - off, "%s\"%x\"", i ? "," : "", i);
        snprintf(big + off, sizeof big - off, "]}");
        assert_int_equal(verify_hs(HS_HDR, big), AUTH_EBAD_CLAIMS);
    }
    /* Agents claim. */
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"agents\":\"a1\"")), AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"agents\":[\"a 1\"]")), AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"agents\":null")), AUTH_EBAD_CLAIMS);
    assert_int_equal(verify_hs(HS_HDR, payload_with("\"agents\":[]")), AUTH_OK);
}

/* ---------------------------------------------------------------------------------------------- */
/* Authorization */

static void verify_payload(const char *payload, auth_identity *id)
{
    auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
    char *tok = hs_token(HS_HDR, payload);
    assert_int_equal(auth_verify(cfg, tok, strlen(tok), NOW, id), AUTH_OK);
    free(tok);
    auth_config_free(cfg);
}

static void test_allows(void **state)
{
    auth_identity id, copy;
    char long_name[100];
    (void)state;

    verify_payload("{\"sub\":\"a\",\"exp\":1900000000,"
                   "\"projects\":[\"zeta\",\"alpha\",\"mid\",\"alpha\",\"zeta\"]}",
                   &id);
    assert_int_equal(id.n_projects, 3); /* sorted, de-duplicated */
    assert_string_equal(id.projects[0], "alpha");
    assert_string_equal(id.projects[2], "zeta");
    assert_true(auth_allows_project(&id, "alpha"));
    assert_true(auth_allows_project(&id, "mid"));
    assert_true(auth_allows_project(&id, "zeta"));
    assert_false(auth_allows_project(&id, "alph"));
    assert_false(auth_allows_project(&id, "alphaa"));
    assert_false(auth_allows_project(&id, "ZETA"));
    assert_false(auth_allows_project(&id, ""));
    assert_false(auth_allows_project(&id, "*"));
    assert_false(auth_allows_project(&id, NULL));
    assert_false(auth_allows_project(NULL, "alpha"));
    memset(long_name, 'a', sizeof long_name);
    long_name[sizeof long_name - 1] = '\0';
    assert_false(auth_allows_project(&id, long_name));
    /* No agents claim: every agent of an allowed project. */
    assert_true(id.all_agents);
    assert_true(auth_allows_agent(&id, "mid", "anyone"));
    assert_false(auth_allows_agent(&id, "other", "anyone"));
    assert_false(auth_allows_agent(&id, "mid", ""));
    assert_false(auth_allows_agent(&id, "mid", NULL));

    assert_int_equal(auth_identity_copy(&copy, &id), AUTH_OK);
    auth_identity_clear(&id);
    assert_true(auth_allows_project(&copy, "zeta")); /* independent of the original */
    auth_identity_clear(&copy);

    /* Agents listed. */
    verify_payload("{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[\"p1\"],"
                   "\"agents\":[\"bot-2\",\"bot-1\"]}",
                   &id);
    assert_false(id.all_agents);
    assert_true(auth_allows_agent(&id, "p1", "bot-1"));
    assert_true(auth_allows_agent(&id, "p1", "bot-2"));
    assert_false(auth_allows_agent(&id, "p1", "bot-3"));
    assert_false(auth_allows_agent(&id, "p2", "bot-1")); /* agent listed, project not */
    auth_identity_clear(&id);

    /* Wildcard projects with listed agents. */
    verify_payload("{\"sub\":\"op\",\"exp\":1900000000,\"projects\":\"*\",\"agents\":[\"x\"]}",
                   &id);
    assert_true(auth_allows_project(&id, "anything"));
    assert_true(auth_allows_agent(&id, "anything", "x"));
    assert_false(auth_allows_agent(&id, "anything", "y"));
    auth_identity_clear(&id);

    /* Empty list: a valid token that allows nothing. */
    verify_payload("{\"sub\":\"a\",\"exp\":1900000000,\"projects\":[]}", &id);
    assert_false(auth_allows_project(&id, "p1"));
    assert_false(auth_allows_agent(&id, "p1", "a"));
    auth_identity_clear(&id);

    /* A zeroed identity allows nothing. */
    memset(&id, 0, sizeof id);
    assert_false(auth_allows_project(&id, "p1"));
    auth_identity_clear(&id);
}

/* ---------------------------------------------------------------------------------------------- */
/* Keys and configuration */

static void expect_config_error(const char *alg, const char *path, int leeway, int rc,
                                const char *needle)
{
    auth_config *cfg = (auth_config *)1;
    char err[256] = "";
    assert_int_equal(auth_config_new(&cfg, alg, path, NULL, NULL, leeway, err, sizeof err), rc);
    assert_null(cfg);
    if (needle != NULL && strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
    assert_null(strstr(err, "secret-A")); /* never the key */
    assert_null(strchr(err, '\n'));
}

static void test_config_errors(void **state)
{
    char missing[160];
    (void)state;
    snprintf(missing, sizeof missing, "%s/missing.key", tmpdir);
    expect_config_error("HS512", path_hs, 0, AUTH_EINVAL, "HS512");
    expect_config_error("none", path_hs, 0, AUTH_EINVAL, "none");
    expect_config_error(NULL, path_hs, 0, AUTH_EINVAL, NULL);
    expect_config_error("HS256", NULL, 0, AUTH_EINVAL, "key");
    expect_config_error("HS256", path_hs, -1, AUTH_EINVAL, "leeway");
    expect_config_error("HS256", path_hs, AUTH_LEEWAY_MAX + 1, AUTH_EINVAL, "leeway");
    expect_config_error("HS256", missing, 0, AUTH_EKEY, "missing.key");
    expect_config_error("HS256", tmpdir, 0, AUTH_EKEY, "regular");
    expect_config_error("HS256", path_short, 0, AUTH_EKEY, "at least 32");
    expect_config_error("HS256", path_pemhs, 0, AUTH_EKEY, "PEM");
    expect_config_error("RS256", path_hs, 0, AUTH_EKEY, "no PEM public key");
    expect_config_error("RS256", path_rs_priv, 0, AUTH_EKEY, "private key");
    expect_config_error("RS256", path_rs1024_pub, 0, AUTH_EKEY, "2048");
    expect_config_error("RS256", path_es_pub, 0, AUTH_EKEY, "RSA");
    expect_config_error("ES256", path_rs_pub, 0, AUTH_EKEY, "EC");
    expect_config_error("ES256", path_es_priv, 0, AUTH_EKEY, "private key");
    assert_int_equal(auth_config_new(NULL, "HS256", path_hs, NULL, NULL, 0, NULL, 0), AUTH_EINVAL);
    auth_config_free(NULL);
}

static void test_pem_multiple_keys(void **state)
{
    auth_config *cfg = cfg_new("RS256", path_both_pub, NULL, NULL, 0);
    char *t1 = mint("RS256", path_rs_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    char *t2 = mint("RS256", path_rs2_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    (void)state;
    assert_int_equal(verify_str(cfg, t1, NOW), AUTH_OK);
    assert_int_equal(verify_str(cfg, t2, NOW), AUTH_OK);
    free(t1);
    free(t2);
    auth_config_free(cfg);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = read_all(from, &len);
    write_file(to, data, len);
    free(data);
}

static void test_reload(void **state)
{
    auth_config *cfg;
    char *ta = mint("HS256", path_hs, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    char *tb = mint("HS256", path_hs2, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    char err[256] = "";
    (void)state;

    copy_file(path_hs, path_reload);
    cfg = cfg_new("HS256", path_reload, NULL, NULL, 0);
    assert_int_equal(verify_str(cfg, ta, NOW), AUTH_OK);
    assert_int_equal(verify_str(cfg, tb, NOW), AUTH_EBAD_SIGNATURE);

    /* Rotation: the new key replaces the old one. */
    copy_file(path_hs2, path_reload);
    assert_int_equal(auth_config_reload(cfg, err, sizeof err), AUTH_OK);
    assert_int_equal(verify_str(cfg, ta, NOW), AUTH_EBAD_SIGNATURE);
    assert_int_equal(verify_str(cfg, tb, NOW), AUTH_OK);

    /* A bad new key (too short, missing, a PEM): the old key stays. */
    copy_file(path_short, path_reload);
    assert_int_equal(auth_config_reload(cfg, err, sizeof err), AUTH_EKEY);
    assert_non_null(strstr(err, "at least 32"));
    assert_int_equal(verify_str(cfg, tb, NOW), AUTH_OK);
    copy_file(path_pemhs, path_reload);
    assert_int_equal(auth_config_reload(cfg, err, sizeof err), AUTH_EKEY);
    assert_int_equal(verify_str(cfg, tb, NOW), AUTH_OK);
    unlink(path_reload);
    assert_int_equal(auth_config_reload(cfg, err, sizeof err), AUTH_EKEY);
    assert_int_equal(verify_str(cfg, tb, NOW), AUTH_OK);
    auth_config_free(cfg);

    /* RS256: rotation to another public key; a private key is refused and the old key kept. */
    copy_file(path_rs_pub, path_reload);
    cfg = cfg_new("RS256", path_reload, NULL, NULL, 0);
    free(ta);
    free(tb);
    ta = mint("RS256", path_rs_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    tb = mint("RS256", path_rs2_priv, "alice", "p1", NULL, NOW, 60, NULL, NULL);
    assert_int_equal(verify_str(cfg, ta, NOW), AUTH_OK);
    copy_file(path_rs2_priv, path_reload);
    assert_int_equal(auth_config_reload(cfg, err, sizeof err), AUTH_EKEY);
    assert_int_equal(verify_str(cfg, ta, NOW), AUTH_OK);
    copy_file(path_rs2_pub, path_reload);
    assert_int_equal(auth_config_reload(cfg, err, sizeof err), AUTH_OK);
    assert_int_equal(verify_str(cfg, ta, NOW), AUTH_EBAD_SIGNATURE);
    assert_int_equal(verify_str(cfg, tb, NOW), AUTH_OK);
    auth_config_free(cfg);
    assert_int_equal(auth_config_reload(NULL, err, sizeof err), AUTH_EINVAL);
    free(ta);
    free(tb);
}

/* ---------------------------------------------------------------------------------------------- */
/* Messages, fingerprints, minting */

static void test_messages(void **state)
{
    const int codes[] = {AUTH_EINVAL,         AUTH_ENOMEM,         AUTH_EKEY,
                         AUTH_ENOTOKEN,       AUTH_ETOO_LARGE,     AUTH_EMALFORMED,
                         AUTH_EBAD_ALG,       AUTH_EBAD_SIGNATURE, AUTH_EEXPIRED,
                         AUTH_ENOT_YET_VALID, AUTH_EBAD_ISSUER,    AUTH_EBAD_AUDIENCE,
                         AUTH_EBAD_CLAIMS,    AUTH_ESIGN};
    (void)state;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_string_not_equal(auth_strerror(codes[i]), "unknown error");
        assert_non_null(auth_public_message(codes[i]));
        assert_non_null(auth_public_reason(codes[i]));
    }
    assert_string_equal(auth_strerror(12345), "unknown error");
    assert_string_equal(auth_public_reason(AUTH_EEXPIRED), "token_expired");
    assert_string_equal(auth_public_reason(AUTH_ENOTOKEN), "token_missing");
    assert_string_equal(auth_public_reason(AUTH_ETOO_LARGE), "token_too_large");
    /* What an attacker probes for is indistinguishable from outside. */
    const int probes[] = {AUTH_EBAD_ALG,    AUTH_EMALFORMED,    AUTH_EBAD_ISSUER,
                          AUTH_EBAD_CLAIMS, AUTH_EBAD_AUDIENCE, AUTH_ENOT_YET_VALID};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        assert_string_equal(auth_public_message(probes[i]),
                            auth_public_message(AUTH_EBAD_SIGNATURE));
        assert_string_equal(auth_public_reason(probes[i]), "token_invalid");
    }
    assert_string_not_equal(auth_public_message(AUTH_EEXPIRED),
                            auth_public_message(AUTH_EBAD_SIGNATURE));
}

static void test_fingerprint(void **state)
{
    char a[AUTH_FP_HEX + 1], b[AUTH_FP_HEX + 1], c[AUTH_FP_HEX + 1];
    const unsigned char key[32] = {1};
    (void)state;
    auth_fingerprint("alice", 5, a);
    auth_fingerprint("alice", 5, b);
    auth_fingerprint("alicf", 5, c);
    assert_int_equal(strlen(a), AUTH_FP_HEX);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    for (size_t i = 0; i < AUTH_FP_HEX; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    /* Too late to set a key once fingerprints were computed; bad sizes refused. */
    assert_int_equal(auth_fingerprint_set_key(key, sizeof key), AUTH_EINVAL);
    assert_int_equal(auth_fingerprint_set_key(key, 8), AUTH_EINVAL);
    assert_int_equal(auth_fingerprint_set_key(NULL, 32), AUTH_EINVAL);
}

static void test_mint_errors(void **state)
{
    char *tok = (char *)1;
    char err[256];
    (void)state;
#define MINT_FAIL(rc, needle, alg, key, sub, projects, agents, ttl)                                \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        assert_int_equal(auth_mint_at(alg, key, sub, projects, agents, NOW, ttl, NULL, NULL, &tok, \
                                      err, sizeof err),                                            \
                         rc);                                                                      \
        assert_null(tok);                                                                          \
        if ((needle) != NULL && strstr(err, (needle) ? (needle) : "") == NULL)                     \
            fail_msg("'%s' lacks '%s'", err, (needle) ? (needle) : "");                            \
    } while (0)
    MINT_FAIL(AUTH_EINVAL, "HS384", "HS384", path_hs, "a", "p", NULL, 60);
    MINT_FAIL(AUTH_EINVAL, "subject", "HS256", path_hs, "a b", "p", NULL, 60);
    MINT_FAIL(AUTH_EINVAL, "project", "HS256", path_hs, "a", "p,,q", NULL, 60);
    MINT_FAIL(AUTH_EINVAL, "project", "HS256", path_hs, "a", "p,bad id", NULL, 60);
    MINT_FAIL(AUTH_EINVAL, "project", "HS256", path_hs, "a", "p,", NULL, 60);
    MINT_FAIL(AUTH_EINVAL, "agent", "HS256", path_hs, "a", "p", "x,*", 60);
    MINT_FAIL(AUTH_EINVAL, "ttl", "HS256", path_hs, "a", "p", NULL, 0);
    MINT_FAIL(AUTH_EINVAL, "ttl", "HS256", path_hs, "a", "p", NULL, 31536001L);
    MINT_FAIL(AUTH_EKEY, "at least 32", "HS256", path_short, "a", "p", NULL, 60);
    MINT_FAIL(AUTH_EKEY, "private key", "RS256", path_rs_pub, "a", "p", NULL, 60);
    MINT_FAIL(AUTH_EKEY, "RSA", "RS256", path_es_priv, "a", "p", NULL, 60);
    MINT_FAIL(AUTH_EINVAL, NULL, "HS256", NULL, "a", "p", NULL, 60);
    assert_int_equal(auth_mint("HS256", path_hs, "a", "p", NULL, 60, NULL, NULL, NULL, NULL, 0),
                     AUTH_EINVAL);
#undef MINT_FAIL
    /* auth_mint() uses the real clock: the token is valid now. */
    {
        auth_config *cfg = cfg_new("HS256", path_hs, NULL, NULL, 0);
        auth_identity id;
        assert_int_equal(
            auth_mint("HS256", path_hs, "bob", "*", "*", 60, "", "", &tok, err, sizeof err),
            AUTH_OK);
        assert_int_equal(auth_verify(cfg, tok, strlen(tok), (int64_t)time(NULL), &id), AUTH_OK);
        assert_true(id.all_projects && id.all_agents);
        assert_true(auth_identity_ttl(&id, (int64_t)time(NULL)) <= 60);
        auth_identity_clear(&id);
        free(tok);
        auth_config_free(cfg);
    }
}

/* Interoperability with an independent implementation (PyJWT): tokens it signs verify here, and
 * tokens minted here verify there (ES256 signatures are JOSE R||S in both).  Skipped when
 * python3-jwt is not installed. */
#ifndef RINGSIDE_PYTHON
#define RINGSIDE_PYTHON "/usr/bin/python3"
#endif
static int python_has_jwt(void)
{
    return system(RINGSIDE_PYTHON " -c 'import jwt, cryptography' >/dev/null 2>&1") == 0;
}

static void test_interop_pyjwt(void **state)
{
    const struct {
        const char *alg, *priv, *pub;
    } cases[] = {{"HS256", path_hs, path_hs},
                 {"RS256", path_rs_priv, path_rs_pub},
                 {"ES256", path_es_priv, path_es_pub}};
    (void)state;
    if (!python_has_jwt())
        skip();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[1024], tok[4096];
        auth_config *cfg = cfg_new(cases[i].alg, cases[i].pub, NULL, "ringside", 0);
        FILE *p;
        char *ours;
        auth_identity id;

        snprintf(cmd, sizeof cmd,
                 RINGSIDE_PYTHON
                 " -c 'import jwt,sys; k=open(sys.argv[2],\"rb\").read(); "
                 "k=k.rstrip(b\"\\n\") if sys.argv[1]==\"HS256\" else k; "
                 "print(jwt.encode({\"sub\":\"py\",\"exp\":%lld,\"aud\":\"ringside\","
                 "\"projects\":[\"p1\"]}, k, algorithm=sys.argv[1]))' %s %s",
                 (long long)(NOW + 60), cases[i].alg, cases[i].priv);
        p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(tok, sizeof tok, p));
        assert_int_equal(pclose(p), 0);
        tok[strcspn(tok, "\n")] = '\0';
        assert_int_equal(auth_verify(cfg, tok, strlen(tok), NOW, &id), AUTH_OK);
        assert_string_equal(id.user, "py");
        auth_identity_clear(&id);
        auth_config_free(cfg);

        ours = mint(cases[i].alg, cases[i].priv, "alice", "p1", NULL, NOW, 60, NULL, "ringside");
        snprintf(cmd, sizeof cmd,
                 RINGSIDE_PYTHON
                 " -c 'import jwt,sys; k=open(sys.argv[3],\"rb\").read(); "
                 "k=k.rstrip(b\"\\n\") if sys.argv[1]==\"HS256\" else k; "
                 "c=jwt.decode(sys.argv[2], k, algorithms=[sys.argv[1]], audience=\"ringside\", "
                 "options={\"verify_exp\":False,\"verify_nbf\":False,\"verify_iat\":False}); "
                 "assert c[\"sub\"]==\"alice\" and c[\"projects\"]==[\"p1\"]' %s %s %s",
                 cases[i].alg, ours, cases[i].pub);
        assert_int_equal(system(cmd), 0);
        free(ours);
    }
}

static void test_bearer(void **state)
{
    const char *t;
    size_t n;
    (void)state;
    assert_int_equal(auth_bearer_token("Bearer abc.def.ghi", 18, &t, &n), AUTH_OK);
    assert_int_equal(n, 11);
    assert_memory_equal(t, "abc.def.ghi", 11);
    assert_int_equal(auth_bearer_token("bearer   x.y.z \t", 16, &t, &n), AUTH_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(t, "x.y.z", 5);
    /* Only len bytes are read. */
    assert_int_equal(auth_bearer_token("Bearer x.y.zGARBAGE", 12, &t, &n), AUTH_OK);
    assert_int_equal(n, 5);
    assert_int_equal(auth_bearer_token("Bearer ", 7, &t, &n), AUTH_ENOTOKEN);
    assert_int_equal(auth_bearer_token("Bearer    ", 10, &t, &n), AUTH_ENOTOKEN);
    assert_int_equal(auth_bearer_token("Basic dXNlcjpwYXNz", 18, &t, &n), AUTH_ENOTOKEN);
    assert_int_equal(auth_bearer_token("Bearerx.y.z", 11, &t, &n), AUTH_ENOTOKEN);
    assert_int_equal(auth_bearer_token("Bear", 4, &t, &n), AUTH_ENOTOKEN);
    assert_int_equal(auth_bearer_token(NULL, 0, &t, &n), AUTH_ENOTOKEN);
    assert_null(t);
    assert_int_equal(auth_bearer_token("Bearer x", 8, NULL, &n), AUTH_EINVAL);
}

static void test_valid_id(void **state)
{
    (void)state;
    assert_true(auth_valid_id("a"));
    assert_true(auth_valid_id("Proj_1.x:y@z-w"));
    assert_false(auth_valid_id(""));
    assert_false(auth_valid_id(NULL));
    assert_false(auth_valid_id("a b"));
    assert_false(auth_valid_id("a/b"));
    assert_false(auth_valid_id("*"));
    assert_false(auth_valid_id("\xc3\xa9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hs256_ok),
        cmocka_unit_test(test_rs256_ok),
        cmocka_unit_test(test_es256_ok),
        cmocka_unit_test(test_hs256_handmade_ok),
        cmocka_unit_test(test_verify_uses_len),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_wrong_alg),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_header_typ_crit),
        cmocka_unit_test(test_expired_and_leeway),
        cmocka_unit_test(test_not_yet_valid),
        cmocka_unit_test(test_exp_required_and_types),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_audience),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_projects_claim),
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_pem_multiple_keys),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_mint_errors),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_valid_id),
        cmocka_unit_test(test_interop_pyjwt),
    };
    return cmocka_run_group_tests_name("auth", tests, group_setup, group_teardown);
}
