/*
 * auth.c — JWT verification, claim checks, fingerprints and minting.  Contracts are in auth.h.
 *
 * libjwt 1.10.2 is used for what it does correctly (RS/ES signature verification, encoding), never
 * to decide anything: the token is parsed and checked here first (size, characters, structure,
 * header alg == pinned alg, JSON without duplicate keys), HS256 is verified here in constant time,
 * and every claim is validated here.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

/* One verification key: the HS secret, or one public key re-serialised as a clean SPKI PEM. */
struct auth_key {
    unsigned char *bytes;
    size_t len;
};

struct auth_config {
    auth_alg alg;
    char *key_path;
    char *issuer;   /* NULL: not checked */
    char *audience; /* NULL: tokens must carry no aud */
    int leeway;
    int require_exp;
    struct auth_key keys[AUTH_PEM_KEYS_MAX];
    size_t n_keys;
};

/* ------------------------------------------------------------------------------------------ */
/* Errors */

const char *auth_strerror(int err)
{
    switch (err) {
#define AUTH__STR(name, value, text)                                                               \
    case value:                                                                                    \
        return text;
        AUTH_ERRNO_MAP(AUTH__STR)
#undef AUTH__STR
    default:
        return "unknown error";
    }
}

const char *auth_public_message(int err)
{
    switch (err) {
    case AUTH_OK:
        return "Authenticated.";
    case AUTH_ENOTOKEN:
        return "Sign in required: connect with ?token=<JWT> or an 'Authorization: Bearer <JWT>' "
               "header.";
    case AUTH_EEXPIRED:
        return "Your session expired. Sign in again to get a new token.";
    case AUTH_ETOO_LARGE:
        return "Your token is too large (limit 8 KiB). Ask your administrator for a smaller token.";
    case AUTH_ENOT_YET_VALID:
    case AUTH_EMALFORMED:
    case AUTH_EBAD_ALG:
    case AUTH_EBAD_SIGNATURE:
    case AUTH_EBAD_ISSUER:
    case AUTH_EBAD_AUDIENCE:
    case AUTH_EBAD_CLAIMS:
        return "Your token is not valid for this service. Sign in again; if this persists, ask "
               "your administrator.";
    default:
        return "Authentication is temporarily unavailable. Try again shortly.";
    }
}

const char *auth_public_reason(int err)
{
    switch (err) {
    case AUTH_OK:
        return "ok";
    case AUTH_ENOTOKEN:
        return "token_missing";
    case AUTH_EEXPIRED:
        return "token_expired";
    case AUTH_ETOO_LARGE:
        return "token_too_large";
    case AUTH_ENOT_YET_VALID:
    case AUTH_EMALFORMED:
    case AUTH_EBAD_ALG:
    case AUTH_EBAD_SIGNATURE:
    case AUTH_EBAD_ISSUER:
    case AUTH_EBAD_AUDIENCE:
    case AUTH_EBAD_CLAIMS:
        return "token_invalid";
    default:
        return "server_error";
    }
}

#if defined(__GNUC__)
#define AUTH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define AUTH_PRINTF(f, a)
#endif
static void set_err(char *buf, size_t len, const char *fmt, ...) AUTH_PRINTF(3, 4);

static void set_err(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (buf == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static int alg_parse(const char *s, auth_alg *out)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "HS256") == 0)
        *out = AUTH_ALG_HS256;
    else if (strcmp(s, "RS256") == 0)
        *out = AUTH_ALG_RS256;
    else if (strcmp(s, "ES256") == 0)
        *out = AUTH_ALG_ES256;
    else
        return -1;
    return 0;
}

static const char *alg_name(auth_alg alg)
{
    switch (alg) {
    case AUTH_ALG_HS256:
        return "HS256";
    case AUTH_ALG_RS256:
        return "RS256";
    case AUTH_ALG_ES256:
        return "ES256";
    }
    return "?";
}

static jwt_alg_t alg_jwt(auth_alg alg)
{
    switch (alg) {
    case AUTH_ALG_HS256:
        return JWT_ALG_HS256;
    case AUTH_ALG_RS256:
        return JWT_ALG_RS256;
    case AUTH_ALG_ES256:
        return JWT_ALG_ES256;
    }
    return JWT_ALG_INVAL;
}

static char *dup_opt(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return NULL;
    return strdup(s);
}

static void wipe_free(void *p, size_t len)
{
    if (p == NULL)
        return;
    sodium_memzero(p, len);
    free(p);
}

int auth_valid_id(const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    for (n = 0; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= AUTH_ID_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return n > 0;
}

static int valid_user(const char *s)
{
    size_t n;

    for (n = 0; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= AUTH_USER_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._:@+/=~|-", c) != NULL))
            return 0;
    }
    return n > 0;
}

/*
 * Reads the whole regular file at path (at most AUTH_KEY_FILE_MAX bytes) into a malloc'd,
 * NUL-terminated buffer.  Returns AUTH_OK, AUTH_EKEY or AUTH_ENOMEM; the caller wipes and frees.
 */
static int read_key_file(const char *path, unsigned char **out, size_t *out_len, char *errbuf,
                         size_t errlen)
{
    struct stat st;
    unsigned char *buf;
    size_t got = 0;
    int fd;

    *out = NULL;
    *out_len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        set_err(errbuf, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return AUTH_EKEY;
    }
    if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
        set_err(errbuf, errlen, "key file %s is not a regular file", path);
        close(fd);
        return AUTH_EKEY;
    }
    if (st.st_size <= 0 || st.st_size > AUTH_KEY_FILE_MAX) {
        set_err(errbuf, errlen, "key file %s is empty or larger than %d bytes", path,
                AUTH_KEY_FILE_MAX);
        close(fd);
        return AUTH_EKEY;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return AUTH_ENOMEM;
    }
    /* Bounded: at most st_size + 1 successful reads of >= 1 byte; EINTR retried a bounded time. */
    for (int tries = 0; got < (size_t)st.st_size && tries < 1000; tries++) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            set_err(errbuf, errlen, "cannot read key file %s: %s", path, strerror(errno));
            close(fd);
            wipe_free(buf, (size_t)st.st_size + 1);
            return AUTH_EKEY;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got == 0) {
        set_err(errbuf, errlen, "key file %s is empty", path);
        wipe_free(buf, (size_t)st.st_size + 1);
        return AUTH_EKEY;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return AUTH_OK;
}

static void keys_wipe(struct auth_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wipe_free(keys[i].bytes, keys[i].len);
        keys[i].bytes = NULL;
        keys[i].len = 0;
    }
}

/* Loads an HS secret: the raw file bytes minus one trailing "\n" or "\r\n". */
static int load_hs_key(const char *path, struct auth_key *key, char *errbuf, size_t errlen)
{
    unsigned char *buf;
    size_t len, cap;
    int rc = read_key_file(path, &buf, &len, errbuf, errlen);

    if (rc != AUTH_OK)
        return rc;
    cap = len + 1;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len >= 10 && memmem(buf, len, "-----BEGIN", 10) != NULL) {
        set_err(errbuf, errlen,
                "key file %s looks like a PEM key, but HS256 needs a shared secret "
                "(use --jwt-alg RS256 or ES256 for public keys)",
                path);
        wipe_free(buf, cap);
        return AUTH_EKEY;
    }
    if (len < AUTH_HS_KEY_MIN) {
        set_err(errbuf, errlen,
                "HS256 secret in %s is %zu bytes; at least %d are required "
                "(e.g. openssl rand -base64 48 > FILE)",
                path, len, AUTH_HS_KEY_MIN);
        wipe_free(buf, cap);
        return AUTH_EKEY;
    }
    key->bytes = malloc(len);
    if (key->bytes == NULL) {
        wipe_free(buf, cap);
        return AUTH_ENOMEM;
    }
    memcpy(key->bytes, buf, len);
    key->len = len;
    wipe_free(buf, cap);
    return AUTH_OK;
}

/* Checks that pkey suits alg: RSA >= 2048 bits for RS256, EC P-256 for ES256. */
static int check_pkey(EVP_PKEY *pkey, auth_alg alg, const char *path, int idx, char *errbuf,
                      size_t errlen)
{
    if (alg == AUTH_ALG_RS256) {
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
            set_err(errbuf, errlen, "key %d in %s is not an RSA key (RS256 needs RSA)", idx, path);
            return AUTH_EKEY;
        }
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            set_err(errbuf, errlen, "RSA key %d in %s has %d bits; at least 2048 are required", idx,
                    path, EVP_PKEY_get_bits(pkey));
            return AUTH_EKEY;
        }
        return AUTH_OK;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) {
        set_err(errbuf, errlen, "key %d in %s is not an EC key (ES256 needs P-256)", idx, path);
        return AUTH_EKEY;
    }
    {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &glen) != 1 ||
            (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
            set_err(errbuf, errlen, "EC key %d in %s is not on curve P-256 (ES256)", idx, path);
            return AUTH_EKEY;
        }
    }
    return AUTH_OK;
}

/* Re-serialises pkey as an SPKI PEM into key. */
static int pkey_to_key(EVP_PKEY *pkey, struct auth_key *key)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data;
    long n;

    if (mem == NULL)
        return AUTH_ENOMEM;
    if (PEM_write_bio_PUBKEY(mem, pkey) != 1) {
        BIO_free(mem);
        return AUTH_EKEY;
    }
    n = BIO_get_mem_data(mem, &data);
    if (n <= 0) {
        BIO_free(mem);
        return AUTH_EKEY;
    }
    key->bytes = malloc((size_t)n);
    if (key->bytes == NULL) {
        BIO_free(mem);
        return AUTH_ENOMEM;
    }
    memcpy(key->bytes, data, (size_t)n);
    key->len = (size_t)n;
    BIO_free(mem);
    return AUTH_OK;
}

/*
 * Loads 1..AUTH_PEM_KEYS_MAX public keys from a PEM file: "PUBLIC KEY", "RSA PUBLIC KEY" or
 * "CERTIFICATE" blocks.  A private key block is refused with a hint.
 */
static int load_pem_keys(auth_alg alg, const char *path, struct auth_key *keys, size_t *n_keys,
                         char *errbuf, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    BIO *bio;
    int rc = read_key_file(path, &buf, &len, errbuf, errlen);
    size_t n = 0;

    *n_keys = 0;
    if (rc != AUTH_OK)
        return rc;
    bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL) {
        wipe_free(buf, len + 1);
        return AUTH_ENOMEM;
    }
    /* Bounded by the file size: every iteration consumes one PEM block. */
    for (;;) {
        char *name = NULL, *header = NULL;
        unsigned char *data = NULL;
        const unsigned char *p;
        long dlen = 0;
        EVP_PKEY *pkey = NULL;
        X509 *cert = NULL;

        if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1)
            break;
        p = data;
        if (strcmp(name, "PUBLIC KEY") == 0) {
            pkey = d2i_PUBKEY(NULL, &p, dlen);
        } else if (strcmp(name, "RSA PUBLIC KEY") == 0) {
            pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, dlen);
        } else if (strcmp(name, "CERTIFICATE") == 0) {
            cert = d2i_X509(NULL, &p, dlen);
            if (cert != NULL)
                pkey = X509_get_pubkey(cert);
        } else if (strstr(name, "PRIVATE KEY") != NULL) {
            set_err(errbuf, errlen,
                    "%s holds a private key; give the sidecar the public key only "
                    "(openssl pkey -in KEY -pubout -out PUB)",
                    path);
            rc = AUTH_EKEY;
        } else if (strstr(name, "PARAMETERS") != NULL) {
            /* "EC PARAMETERS" blocks precede keys written by openssl ecparam: skip. */
        } else {
            set_err(errbuf, errlen, "%s: unsupported PEM block '%s' (expected PUBLIC KEY)", path,
                    name);
            rc = AUTH_EKEY;
        }
        if (rc == AUTH_OK && pkey == NULL && strstr(name, "PARAMETERS") == NULL) {
            set_err(errbuf, errlen, "%s: PEM block %zu does not hold a readable key", path, n + 1);
            rc = AUTH_EKEY;
        }
        if (rc == AUTH_OK && pkey != NULL && n >= AUTH_PEM_KEYS_MAX) {
            set_err(errbuf, errlen, "%s holds more than %d keys", path, AUTH_PEM_KEYS_MAX);
            rc = AUTH_EKEY;
        }
        if (rc == AUTH_OK && pkey != NULL)
            rc = check_pkey(pkey, alg, path, (int)n + 1, errbuf, errlen);
        if (rc == AUTH_OK && pkey != NULL) {
            rc = pkey_to_key(pkey, &keys[n]);
            if (rc == AUTH_OK)
                n++;
        }
        EVP_PKEY_free(pkey);
        X509_free(cert);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        if (rc != AUTH_OK)
            break;
    }
    BIO_free(bio);
    ERR_clear_error();
    wipe_free(buf, len + 1);
    if (rc == AUTH_OK && n == 0) {
        set_err(errbuf, errlen, "%s holds no PEM public key (expected -----BEGIN PUBLIC KEY-----)",
                path);
        rc = AUTH_EKEY;
    }
    if (rc != AUTH_OK) {
        keys_wipe(keys, n);
        return rc;
    }
    *n_keys = n;
    return AUTH_OK;
}

static int load_keys(auth_alg alg, const char *path, struct auth_key *keys, size_t *n_keys,
                     char *errbuf, size_t errlen)
{
    if (alg == AUTH_ALG_HS256) {
        int rc = load_hs_key(path, &keys[0], errbuf, errlen);
        *n_keys = rc == AUTH_OK ? 1 : 0;
        return rc;
    }
    return load_pem_keys(alg, path, keys, n_keys, errbuf, errlen);
}

/* ------------------------------------------------------------------------------------------ */
/* Configuration */

int auth_config_new(auth_config **out, const char *alg, const char *key_path, const char *issuer,
                    const char *audience, int leeway_s, char *errbuf, size_t errlen)
{
    auth_config *cfg;
    auth_alg a;
    int rc;

    if (out == NULL)
        return AUTH_EINVAL;
    *out = NULL;
    if (sodium_init() < 0) {
        set_err(errbuf, errlen, "libsodium failed to initialise");
        return AUTH_ENOMEM;
    }
    if (alg_parse(alg, &a) != 0) {
        set_err(errbuf, errlen, "unsupported JWT algorithm '%s' (use HS256, RS256 or ES256)",
                alg ? alg : "(null)");
        return AUTH_EINVAL;
    }
    if (key_path == NULL || key_path[0] == '\0') {
        set_err(errbuf, errlen, "no JWT key file given");
        return AUTH_EINVAL;
    }
    if (leeway_s < 0 || leeway_s > AUTH_LEEWAY_MAX) {
        set_err(errbuf, errlen, "JWT leeway %d s out of range 0..%d", leeway_s, AUTH_LEEWAY_MAX);
        return AUTH_EINVAL;
    }
    cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL)
        return AUTH_ENOMEM;
    cfg->alg = a;
    cfg->leeway = leeway_s;
    cfg->require_exp = 1;
    cfg->key_path = strdup(key_path);
    cfg->issuer = dup_opt(issuer);
    cfg->audience = dup_opt(audience);
    if (cfg->key_path == NULL || (issuer && issuer[0] && cfg->issuer == NULL) ||
        (audience && audience[0] && cfg->audience == NULL)) {
        auth_config_free(cfg);
        return AUTH_ENOMEM;
    }
    rc = load_keys(a, key_path, cfg->keys, &cfg->n_keys, errbuf, errlen);
    if (rc != AUTH_OK) {
        auth_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return AUTH_OK;
}

int auth_config_reload(auth_config *cfg, char *errbuf, size_t errlen)
{
    struct auth_key fresh[AUTH_PEM_KEYS_MAX];
    size_t n = 0;
    int rc;

    if (cfg == NULL)
        return AUTH_EINVAL;
    memset(fresh, 0, sizeof fresh);
    rc = load_keys(cfg->alg, cfg->key_path, fresh, &n, errbuf, errlen);
    if (rc != AUTH_OK)
        return rc; /* the old keys stay */
    keys_wipe(cfg->keys, cfg->n_keys);
    memcpy(cfg->keys, fresh, sizeof fresh);
    cfg->n_keys = n;
    return AUTH_OK;
}

void auth_config_set_require_exp(auth_config *cfg, int require)
{
    if (cfg != NULL)
        cfg->require_exp = require != 0;
}

auth_alg auth_config_alg(const auth_config *cfg)
{
    return cfg->alg;
}

void auth_config_free(auth_config *cfg)
{
    if (cfg == NULL)
        return;
    keys_wipe(cfg->keys, cfg->n_keys);
    free(cfg->key_path);
    free(cfg->issuer);
    free(cfg->audience);
    sodium_memzero(cfg, sizeof *cfg);
    free(cfg);
}

/* ------------------------------------------------------------------------------------------ */
/* Verification */

static int is_b64url(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Strict base64url (no padding, canonical trailing bits) decode of s[0..n) into out (cap bytes).
 * Returns the decoded length or -1. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t bin_len = 0;
    const char *end = NULL;

    if (n == 0)
        return -1;
    if (sodium_base642bin(out, cap, s, n, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != s + n)
        return -1;
    return (long)bin_len;
}

/* Decodes one base64url JSON object part (no duplicate keys, no NUL).  NULL on any error. */
static json_t *decode_json_part(const char *s, size_t n)
{
    unsigned char buf[AUTH_TOKEN_MAX];
    long len = b64url_decode(s, n, buf, sizeof buf);
    json_t *obj;
    json_error_t jerr;

    if (len <= 0)
        return NULL;
    obj = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
    if (obj != NULL && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

/* A NumericDate claim: absent (returns 0, *present = 0), a JSON number (returns 0), or malformed
 * (-1).  Values are clamped to +/-2^62 so later arithmetic cannot overflow. */
static int numeric_date(json_t *claims, const char *name, int64_t *out, int *present)
{
    const int64_t lim = (int64_t)1 << 62;
    json_t *v = json_object_get(claims, name);

    *present = 0;
    *out = 0;
    if (v == NULL)
        return 0;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *out = i > lim ? lim : i < -lim ? -lim : (int64_t)i;
    } else if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d == d))
            return -1;
        *out = d >= 4.6e18 ? lim : d <= -4.6e18 ? -lim : (int64_t)d;
    } else {
        return -1;
    }
    *present = 1;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/*
 * Parses a list claim: "*" (sets *all) or an array of valid ids, sorted and de-duplicated into a
 * malloc'd array.  Returns AUTH_OK, AUTH_EBAD_CLAIMS or AUTH_ENOMEM.
 */
static int parse_list(json_t *v, int *all, char (**list)[AUTH_ID_MAX + 1], size_t *n_out)
{
    char(*arr)[AUTH_ID_MAX + 1];
    size_t n, i, w;

    *all = 0;
    *list = NULL;
    *n_out = 0;
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "*") != 0 || json_string_length(v) != 1)
            return AUTH_EBAD_CLAIMS;
        *all = 1;
        return AUTH_OK;
    }
    if (!json_is_array(v))
        return AUTH_EBAD_CLAIMS;
    n = json_array_size(v);
    if (n > AUTH_LIST_MAX)
        return AUTH_EBAD_CLAIMS;
    if (n == 0)
        return AUTH_OK;
    arr = calloc(n, sizeof *arr);
    if (arr == NULL)
        return AUTH_ENOMEM;
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        const char *s = json_string_value(e);
        if (s == NULL || strlen(s) != json_string_length(e) || !auth_valid_id(s)) {
            free(arr);
            return AUTH_EBAD_CLAIMS;
        }
        memcpy(arr[i], s, strlen(s) + 1);
    }
    qsort(arr, n, sizeof *arr, cmp_id);
    for (i = 1, w = 1; i < n; i++) {
        if (strcmp(arr[i], arr[w - 1]) != 0) {
            if (w != i)
                memcpy(arr[w], arr[i], sizeof *arr);
            w++;
        }
    }
    *list = arr;
    *n_out = w;
    return AUTH_OK;
}

/* Checks the signature of the token's first two parts (signed_len bytes) against sig. */
static int check_signature(const auth_config *cfg, const char *token, size_t signed_len,
                           const char *sig, size_t sig_len)
{
    unsigned char sigbin[1024];
    long n = b64url_decode(sig, sig_len, sigbin, sizeof sigbin);
    jwt_t *jwt = NULL;
    int ok = 0;

    if (n <= 0)
        return AUTH_EMALFORMED;
    if (cfg->alg == AUTH_ALG_HS256) {
        /* Constant-time pre-check: libjwt 1.10.2 compares HMACs with strcmp, so a forged token
         * must never reach it. */
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state st;
        if (n != crypto_auth_hmacsha256_BYTES)
            return AUTH_EBAD_SIGNATURE;
        crypto_auth_hmacsha256_init(&st, cfg->keys[0].bytes, cfg->keys[0].len);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, signed_len);
        crypto_auth_hmacsha256_final(&st, mac);
        sodium_memzero(&st, sizeof st);
        if (sodium_memcmp(mac, sigbin, sizeof mac) != 0)
            return AUTH_EBAD_SIGNATURE;
    } else if (cfg->alg == AUTH_ALG_ES256 && n != 64) {
        return AUTH_EBAD_SIGNATURE; /* JWS ES256 is R||S, 64 bytes */
    }
    /* libjwt verifies (again, for HS256) with the pinned key; the header's alg was already checked
     * to equal the pinned one, so its choice of algorithm is ours. */
    for (size_t k = 0; k < cfg->n_keys && !ok; k++) {
        int rc = jwt_decode(&jwt, token, cfg->keys[k].bytes, (int)cfg->keys[k].len);
        if (rc == ENOMEM)
            return AUTH_ENOMEM;
        if (rc == 0 && jwt != NULL) {
            ok = jwt_get_alg(jwt) == alg_jwt(cfg->alg);
            jwt_free(jwt);
            jwt = NULL;
        }
    }
    ERR_clear_error();
    return ok ? AUTH_OK : AUTH_EBAD_SIGNATURE;
}

static int check_audience(const auth_config *cfg, json_t *aud)
{
    if (aud == NULL)
        return cfg->audience == NULL ? AUTH_OK : AUTH_EBAD_AUDIENCE;
    /* RFC 7519 4.1.3: a token with an aud we do not identify with must be rejected. */
    if (cfg->audience == NULL)
        return AUTH_EBAD_AUDIENCE;
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), cfg->audience) == 0 ? AUTH_OK : AUTH_EBAD_AUDIENCE;
    if (json_is_array(aud)) {
        size_t i;
        json_t *e;
        json_array_foreach(aud, i, e)
        {
            if (json_is_string(e) && strcmp(json_string_value(e), cfg->audience) == 0)
                return AUTH_OK;
        }
    }
    return AUTH_EBAD_AUDIENCE;
}

/* Validates the claims and fills id.  Returns AUTH_OK or an AUTH_E* code. */
static int check_claims(const auth_config *cfg, json_t *claims, int64_t now, auth_identity *id)
{
    int64_t exp, nbf, iat;
    int has_exp, has_nbf, has_iat, rc;
    json_t *v;
    const char *sub;

    if (numeric_date(claims, "exp", &exp, &has_exp) != 0 ||
        numeric_date(claims, "nbf", &nbf, &has_nbf) != 0 ||
        numeric_date(claims, "iat", &iat, &has_iat) != 0)
        return AUTH_EBAD_CLAIMS;
    if (!has_exp && cfg->require_exp)
        return AUTH_EBAD_CLAIMS;
    if (now > ((int64_t)1 << 61) || now < -((int64_t)1 << 61))
        return AUTH_EINVAL;
    /* RFC 7519: reject on or after exp; reject before nbf; both with leeway for clock skew. */
    if (has_exp && now >= exp + cfg->leeway)
        return AUTH_EEXPIRED;
    if (has_nbf && now + cfg->leeway < nbf)
        return AUTH_ENOT_YET_VALID;
    if (cfg->issuer != NULL) {
        v = json_object_get(claims, "iss");
        if (!json_is_string(v) || strcmp(json_string_value(v), cfg->issuer) != 0 ||
            strlen(cfg->issuer) != json_string_length(v))
            return AUTH_EBAD_ISSUER;
    }
    rc = check_audience(cfg, json_object_get(claims, "aud"));
    if (rc != AUTH_OK)
        return rc;
    v = json_object_get(claims, "sub");
    sub = json_string_value(v);
    if (sub == NULL || strlen(sub) != json_string_length(v) || !valid_user(sub))
        return AUTH_EBAD_CLAIMS;
    v = json_object_get(claims, "projects");
    if (v == NULL)
        return AUTH_EBAD_CLAIMS;
    rc = parse_list(v, &id->all_projects, &id->projects, &id->n_projects);
    if (rc != AUTH_OK)
        return rc;
    v = json_object_get(claims, "agents");
    if (v == NULL) {
        id->all_agents = 1;
    } else {
        rc = parse_list(v, &id->all_agents, &id->agents, &id->n_agents);
        if (rc != AUTH_OK)
            return rc;
    }
    memcpy(id->user, sub, strlen(sub) + 1);
    auth_fingerprint(id->user, strlen(id->user), id->user_fp);
    id->exp = has_exp ? exp : 0;
    id->leeway = cfg->leeway;
    id->iat = has_iat ? iat : 0;
    return AUTH_OK;
}

int auth_verify(const auth_config *cfg, const char *token, size_t len, int64_t now,
                auth_identity *id)
{
    char buf[AUTH_TOKEN_MAX + 1];
    size_t dots[2], ndots = 0, i;
    json_t *header = NULL, *claims = NULL, *v;
    const char *s;
    int rc;

    if (id == NULL)
        return AUTH_EINVAL;
    memset(id, 0, sizeof *id);
    if (cfg == NULL)
        return AUTH_EINVAL;
    if (token == NULL || len == 0)
        return AUTH_ENOTOKEN;
    if (len > AUTH_TOKEN_MAX)
        return AUTH_ETOO_LARGE;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c == '.') {
            if (ndots == 2)
                return AUTH_EMALFORMED;
            dots[ndots++] = i;
        } else if (!is_b64url(c)) {
            return AUTH_EMALFORMED;
        }
    }
    /* An empty signature part is left to the alg check: "alg":"none" is reported as such. */
    if (ndots != 2 || dots[0] == 0 || dots[1] == dots[0] + 1)
        return AUTH_EMALFORMED;
    memcpy(buf, token, len);
    buf[len] = '\0';

    header = decode_json_part(buf, dots[0]);
    if (header == NULL)
        return AUTH_EMALFORMED;
    v = json_object_get(header, "alg");
    s = json_string_value(v);
    if (s == NULL) {
        rc = AUTH_EMALFORMED;
        goto done;
    }
    if (strcmp(s, alg_name(cfg->alg)) != 0 || json_string_length(v) != strlen(s)) {
        rc = AUTH_EBAD_ALG; /* includes "none" and every HS/RS/ES confusion */
        goto done;
    }
    v = json_object_get(header, "typ");
    if (v != NULL && (!json_is_string(v) || strcasecmp(json_string_value(v), "JWT") != 0)) {
        rc = AUTH_EMALFORMED;
        goto done;
    }
    /* RFC 7515 4.1.11: extensions we do not understand must be rejected. */
    if (json_object_get(header, "crit") != NULL) {
        rc = AUTH_EMALFORMED;
        goto done;
    }
    claims = decode_json_part(buf + dots[0] + 1, dots[1] - dots[0] - 1);
    if (claims == NULL) {
        rc = AUTH_EMALFORMED;
        goto done;
    }
    rc = check_signature(cfg, buf, dots[1], buf + dots[1] + 1, len - dots[1] - 1);
    if (rc != AUTH_OK)
        goto done;
    rc = check_claims(cfg, claims, now, id);

done:
    json_decref(header);
    json_decref(claims);
    sodium_memzero(buf, sizeof buf);
    if (rc != AUTH_OK)
        auth_identity_clear(id);
    return rc;
}

int auth_bearer_token(const char *value, size_t len, const char **tok, size_t *tok_len)
{
    size_t i = 6;

    if (tok == NULL || tok_len == NULL)
        return AUTH_EINVAL;
    *tok = NULL;
    *tok_len = 0;
    if (value == NULL || len < 8 || strncasecmp(value, "Bearer", 6) != 0 || value[6] != ' ')
        return AUTH_ENOTOKEN;
    while (i < len && value[i] == ' ')
        i++;
    while (len > i && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (i == len)
        return AUTH_ENOTOKEN;
    *tok = value + i;
    *tok_len = len - i;
    return AUTH_OK;
}

void auth_identity_clear(auth_identity *id)
{
    if (id == NULL)
        return;
    free(id->projects);
    free(id->agents);
    memset(id, 0, sizeof *id);
}

int auth_identity_copy(auth_identity *dst, const auth_identity *src)
{
    if (dst == NULL || src == NULL)
        return AUTH_EINVAL;
    *dst = *src;
    dst->projects = NULL;
    dst->agents = NULL;
    if (src->n_projects > 0) {
        dst->projects = malloc(src->n_projects * sizeof *src->projects);
        if (dst->projects == NULL)
            goto oom;
        memcpy(dst->projects, src->projects, src->n_projects * sizeof *src->projects);
    }
    if (src->n_agents > 0) {
        dst->agents = malloc(src->n_agents * sizeof *src->agents);
        if (dst->agents == NULL)
            goto oom;
        memcpy(dst->agents, src->agents, src->n_agents * sizeof *src->agents);
    }
    return AUTH_OK;
oom:
    auth_identity_clear(dst);
    return AUTH_ENOMEM;
}

static int list_has(char (*list)[AUTH_ID_MAX + 1], size_t n, const char *s)
{
    char key[AUTH_ID_MAX + 1];
    size_t l;

    if (n == 0)
        return 0;
    l = strnlen(s, AUTH_ID_MAX + 1);
    if (l > AUTH_ID_MAX)
        return 0;
    memset(key, 0, sizeof key);
    memcpy(key, s, l);
    return bsearch(key, list, n, sizeof *list, cmp_id) != NULL;
}

int auth_allows_project(const auth_identity *id, const char *project)
{
    if (id == NULL || project == NULL || project[0] == '\0')
        return 0;
    if (id->all_projects)
        return 1;
    return list_has(id->projects, id->n_projects, project);
}

int auth_allows_agent(const auth_identity *id, const char *project, const char *agent)
{
    if (!auth_allows_project(id, project) || agent == NULL || agent[0] == '\0')
        return 0;
    if (id->all_agents)
        return 1;
    return list_has(id->agents, id->n_agents, agent);
}

int64_t auth_identity_ttl(const auth_identity *id, int64_t now)
{
    if (id == NULL)
        return -1;
    if (id->exp == 0)
        return INT64_MAX;
    if (id->exp > INT64_MAX - id->leeway)
        return INT64_MAX;
    int64_t until = id->exp + id->leeway;
    return until > now ? until - now : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Fingerprints */

static pthread_once_t fp_once = PTHREAD_ONCE_INIT;
static unsigned char fp_key[crypto_generichash_KEYBYTES_MAX];
static size_t fp_key_len;
static int fp_key_given;      /* written only before fp_once runs */
static atomic_int fp_started; /* 1 once a fingerprint was computed or the key set */

static void fp_init(void)
{
    if (sodium_init() < 0)
        abort();
    if (!fp_key_given) {
        randombytes_buf(fp_key, crypto_generichash_KEYBYTES);
        fp_key_len = crypto_generichash_KEYBYTES;
    }
}

int auth_fingerprint_set_key(const void *key, size_t len)
{
    if (key == NULL || len < crypto_generichash_KEYBYTES_MIN || len > sizeof fp_key)
        return AUTH_EINVAL;
    if (atomic_exchange(&fp_started, 1) != 0)
        return AUTH_EINVAL; /* too late: fingerprints already use another key */
    memcpy(fp_key, key, len);
    fp_key_len = len;
    fp_key_given = 1;
    pthread_once(&fp_once, fp_init);
    return AUTH_OK;
}

void auth_fingerprint(const void *data, size_t len, char out[AUTH_FP_HEX + 1])
{
    unsigned char h[AUTH_FP_HEX / 2];

    atomic_store(&fp_started, 1);
    pthread_once(&fp_once, fp_init);
    crypto_generichash(h, sizeof h, data, len, fp_key, fp_key_len);
    sodium_bin2hex(out, AUTH_FP_HEX + 1, h, sizeof h);
}

/* ------------------------------------------------------------------------------------------ */
/* Minting */

/* Parses "a,b,c" (or "*") into a JSON value; NULL on a bad id (message in errbuf). */
static json_t *csv_to_json(const char *csv, const char *what, char *errbuf, size_t errlen)
{
    json_t *arr;
    const char *p = csv;
    size_t count = 0;

    if (strcmp(csv, "*") == 0)
        return json_string("*");
    arr = json_array();
    if (arr == NULL)
        return NULL;
    if (csv[0] == '\0')
        return arr; /* an empty list: allows nothing */
    /* Bounded: each iteration consumes at least one character of csv. */
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char id[AUTH_ID_MAX + 1];
        if (n == 0 || n > AUTH_ID_MAX || ++count > AUTH_LIST_MAX) {
            set_err(errbuf, errlen, "bad %s list: empty, too long or too many ids", what);
            json_decref(arr);
            return NULL;
        }
        memcpy(id, p, n);
        id[n] = '\0';
        if (!auth_valid_id(id)) {
            set_err(errbuf, errlen, "bad %s id '%s': use 1..%d of [A-Za-z0-9._:@-]", what, id,
                    AUTH_ID_MAX);
            json_decref(arr);
            return NULL;
        }
        if (json_array_append_new(arr, json_string(id)) != 0) {
            json_decref(arr);
            return NULL;
        }
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return arr;
}

/* Loads a PEM private key file for signing and checks it suits alg. */
static int load_signing_pem(auth_alg alg, const char *path, unsigned char **out, size_t *out_len,
                            char *errbuf, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    BIO *bio;
    EVP_PKEY *pkey;
    int rc = read_key_file(path, &buf, &len, errbuf, errlen);

    if (rc != AUTH_OK)
        return rc;
    bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL) {
        wipe_free(buf, len + 1);
        return AUTH_ENOMEM;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    if (pkey == NULL) {
        set_err(errbuf, errlen, "%s holds no unencrypted PEM private key (%s signing)", path,
                alg_name(alg));
        wipe_free(buf, len + 1);
        return AUTH_EKEY;
    }
    rc = check_pkey(pkey, alg, path, 1, errbuf, errlen);
    EVP_PKEY_free(pkey);
    if (rc != AUTH_OK) {
        wipe_free(buf, len + 1);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return AUTH_OK;
}

int auth_mint_at(const char *alg, const char *key_path, const char *sub, const char *projects_csv,
                 const char *agents_csv, int64_t now, long ttl_s, const char *issuer,
                 const char *audience, char **out_token, char *errbuf, size_t errlen)
{
    struct auth_key key = {NULL, 0};
    size_t key_cap = 0;
    json_t *claims = NULL, *projects = NULL, *agents = NULL;
    char *claims_str = NULL, *tok = NULL;
    jwt_t *jwt = NULL;
    auth_alg a;
    int rc = AUTH_OK;

    if (out_token == NULL)
        return AUTH_EINVAL;
    *out_token = NULL;
    if (sodium_init() < 0)
        return AUTH_ENOMEM;
    if (alg_parse(alg, &a) != 0) {
        set_err(errbuf, errlen, "unsupported JWT algorithm '%s' (use HS256, RS256 or ES256)",
                alg ? alg : "(null)");
        return AUTH_EINVAL;
    }
    if (key_path == NULL || sub == NULL || projects_csv == NULL) {
        set_err(errbuf, errlen, "key file, subject and projects are required");
        return AUTH_EINVAL;
    }
    if (!valid_user(sub)) {
        set_err(errbuf, errlen, "bad subject: use 1..%d of [A-Za-z0-9._:@+/=~|-]", AUTH_USER_MAX);
        return AUTH_EINVAL;
    }
    if (ttl_s < 1 || ttl_s > 31536000L) {
        set_err(errbuf, errlen, "ttl %ld s out of range 1..31536000", ttl_s);
        return AUTH_EINVAL;
    }
    projects = csv_to_json(projects_csv, "project", errbuf, errlen);
    if (projects == NULL)
        return AUTH_EINVAL;
    if (agents_csv != NULL) {
        agents = csv_to_json(agents_csv, "agent", errbuf, errlen);
        if (agents == NULL) {
            json_decref(projects);
            return AUTH_EINVAL;
        }
    }
    claims = json_object();
    if (claims == NULL) {
        json_decref(projects);
        json_decref(agents);
        return AUTH_ENOMEM;
    }
    /* json_object_set_new() consumes the value even when it fails: no leak on any path. */
    rc = json_object_set_new(claims, "projects", projects);
    if (agents != NULL)
        rc |= json_object_set_new(claims, "agents", agents);
    rc |= json_object_set_new(claims, "sub", json_string(sub));
    rc |= json_object_set_new(claims, "iat", json_integer((json_int_t)now));
    rc |= json_object_set_new(claims, "nbf", json_integer((json_int_t)now));
    rc |= json_object_set_new(claims, "exp", json_integer((json_int_t)(now + ttl_s)));
    if (issuer != NULL && issuer[0] != '\0')
        rc |= json_object_set_new(claims, "iss", json_string(issuer));
    if (audience != NULL && audience[0] != '\0')
        rc |= json_object_set_new(claims, "aud", json_string(audience));
    if (rc != 0) {
        rc = AUTH_ENOMEM;
        goto done;
    }
    claims_str = json_dumps(claims, JSON_COMPACT);
    if (claims_str == NULL) {
        rc = AUTH_ENOMEM;
        goto done;
    }
    if (a == AUTH_ALG_HS256) {
        rc = load_hs_key(key_path, &key, errbuf, errlen);
        key_cap = key.len;
    } else {
        rc = load_signing_pem(a, key_path, &key.bytes, &key.len, errbuf, errlen);
        key_cap = key.len + 1;
    }
    if (rc != AUTH_OK)
        goto done;
    if (jwt_new(&jwt) != 0) {
        rc = AUTH_ENOMEM;
        goto done;
    }
    if (jwt_add_grants_json(jwt, claims_str) != 0 ||
        jwt_set_alg(jwt, alg_jwt(a), key.bytes, (int)key.len) != 0) {
        set_err(errbuf, errlen, "cannot prepare the %s token", alg_name(a));
        rc = AUTH_ESIGN;
        goto done;
    }
    tok = jwt_encode_str(jwt);
    if (tok == NULL) {
        set_err(errbuf, errlen, "signing the %s token failed", alg_name(a));
        rc = AUTH_ESIGN;
        goto done;
    }
    *out_token = tok; /* libjwt 1.10.2 allocates it with malloc */
    tok = NULL;

done:
    ERR_clear_error();
    free(tok);
    jwt_free(jwt); /* libjwt wipes its copy of the key */
    wipe_free(key.bytes, key_cap);
    free(claims_str);
    json_decref(claims);
    return rc;
}

int auth_mint(const char *alg, const char *key_path, const char *sub, const char *projects_csv,
              const char *agents_csv, long ttl_s, const char *issuer, const char *audience,
              char **out_token, char *errbuf, size_t errlen)
{
    return auth_mint_at(alg, key_path, sub, projects_csv, agents_csv, (int64_t)time(NULL), ttl_s,
                        issuer, audience, out_token, errbuf, errlen);
}
