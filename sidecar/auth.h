/*
 * auth.h — JWT authentication and claim-based authorization for the sidecar (REQUIREMENTS
 * D1, D2, D4).
 *
 * A pure library: no event loop, no global mutable state except the fingerprint key (set once),
 * no I/O except reading the key file in auth_config_new()/auth_config_reload() and in auth_mint().
 * The caller supplies the clock (`now`, Unix seconds) so every check is testable.
 *
 * Verification (auth_verify) never trusts the token to choose how it is verified:
 *  - the algorithm is pinned by configuration (HS256, RS256 or ES256); a header naming any other
 *    algorithm, `none`, or a `crit` header is rejected before any key is used, which closes the
 *    HS/RS key-confusion hole of libjwt 1.10.2 (it verifies with whatever algorithm the
 *    header names);
 *  - the token's characters, size and structure are checked strictly (base64url without padding,
 *    exactly three parts, JSON objects without duplicate keys) before libjwt sees it;
 *  - HS256 signatures are checked in constant time with libsodium before libjwt re-verifies them
 *    (libjwt 1.10.2 compares HMACs with strcmp); RS256/ES256 signatures are checked by libjwt;
 *  - libjwt validates no claim: exp, nbf, iss, aud, sub, projects and agents are checked here.
 *
 * Threading: an auth_config may be used by one thread at a time (the sidecar's loop thread);
 * auth_verify() does not modify it.  auth_fingerprint() is thread-safe.
 *
 * Errors are negative AUTH_E* codes; auth_strerror() names them for logs and
 * auth_public_message()/auth_public_reason() give what a client may be told.  Error buffers receive
 * one line naming the problem, never key material or token contents.
 */
#ifndef RINGSIDE_AUTH_H
#define RINGSIDE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define AUTH_WUR __attribute__((warn_unused_result))
#else
#define AUTH_WUR
#endif

/* Limits. */
#define AUTH_TOKEN_MAX 8192     /* bytes; larger tokens are rejected with AUTH_ETOO_LARGE */
#define AUTH_ID_MAX 63          /* project and agent ids (as the SDK's RS_ID_MAX) */
#define AUTH_USER_MAX 127       /* `sub` */
#define AUTH_LIST_MAX 256       /* entries in `projects` or `agents` */
#define AUTH_LEEWAY_MAX 300     /* seconds; auth_config_new() rejects a larger leeway */
#define AUTH_HS_KEY_MIN 32      /* bytes of an HS256 secret */
#define AUTH_KEY_FILE_MAX 65536 /* bytes of a key file */
#define AUTH_PEM_KEYS_MAX 4     /* public keys accepted from one PEM file (key rotation overlap) */
#define AUTH_FP_HEX 32          /* hex characters of a fingerprint (16-byte keyed BLAKE2b) */

/* Error codes: 0 is success, every failure is negative.  X(name, value, description). */
#define AUTH_ERRNO_MAP(X)                                                                          \
    X(AUTH_OK, 0, "success")                                                                       \
    X(AUTH_EINVAL, -1, "invalid argument")                                                         \
    X(AUTH_ENOMEM, -2, "out of memory")                                                            \
    X(AUTH_EKEY, -3, "key unusable (unreadable, wrong type or too short)")                         \
    X(AUTH_ENOTOKEN, -4, "no token")                                                               \
    X(AUTH_ETOO_LARGE, -5, "token too large")                                                      \
    X(AUTH_EMALFORMED, -6, "token malformed (structure, base64url or JSON)")                       \
    X(AUTH_EBAD_ALG, -7, "token algorithm is not the configured one")                              \
    X(AUTH_EBAD_SIGNATURE, -8, "token signature invalid")                                          \
    X(AUTH_EEXPIRED, -9, "token expired")                                                          \
    X(AUTH_ENOT_YET_VALID, -10, "token not yet valid (nbf)")                                       \
    X(AUTH_EBAD_ISSUER, -11, "token issuer not accepted")                                          \
    X(AUTH_EBAD_AUDIENCE, -12, "token audience not accepted")                                      \
    X(AUTH_EBAD_CLAIMS, -13, "token claims missing or malformed (sub, projects, agents, exp)")     \
    X(AUTH_ESIGN, -14, "signing failed")

enum auth_err {
#define AUTH__ENUM(name, value, text) name = value,
    AUTH_ERRNO_MAP(AUTH__ENUM)
#undef AUTH__ENUM
};

/* Supported algorithms (pinned by configuration). */
typedef enum auth_alg { AUTH_ALG_HS256 = 1, AUTH_ALG_RS256 = 2, AUTH_ALG_ES256 = 3 } auth_alg;

typedef struct auth_config auth_config; /* opaque */

/*
 * Who a verified token names and what it may see.  Filled by auth_verify(); release with
 * auth_identity_clear().  The struct may be moved by value (a shallow copy transfers ownership of
 * the lists; clear only one of the copies).  A zero-initialised identity allows nothing and may be
 * cleared.
 */
typedef struct auth_identity {
    char user[AUTH_USER_MAX + 1];      /* `sub`: 1..127 chars of [A-Za-z0-9._:@+/=~|-] */
    char user_fp[AUTH_FP_HEX + 1];     /* auth_fingerprint() of user: for Redis keys and limits */
    int all_projects;                  /* 1: `projects` was "*" (operators) */
    char (*projects)[AUTH_ID_MAX + 1]; /* sorted, unique; NULL when n_projects == 0 */
    size_t n_projects; /* <= AUTH_LIST_MAX; 0 with all_projects == 0 allows nothing */
    int all_agents;    /* 1: `agents` absent or "*": every agent of allowed projects */
    char (*agents)[AUTH_ID_MAX + 1]; /* sorted, unique; NULL when n_agents == 0 */
    size_t n_agents;                 /* <= AUTH_LIST_MAX */
    int64_t exp; /* `exp` (Unix seconds); 0 = none (only if allowed by config) */
    int64_t iat; /* `iat`, 0 when absent */
    int leeway;  /* the verifier's leeway (s): the identity lapses at exp + leeway */
} auth_identity;

/*
 * Creates a verifier.  alg: "HS256", "RS256" or "ES256" (exact spelling), pinned for every token.
 * key_path: for HS256 a file whose raw bytes are the secret (one trailing "\n" or "\r\n" stripped;
 * at least AUTH_HS_KEY_MIN bytes; a PEM file is refused); for RS256/ES256 a PEM file with one to
 * AUTH_PEM_KEYS_MAX public keys ("BEGIN PUBLIC KEY" or "BEGIN CERTIFICATE"; RSA >= 2048 bits for
 * RS256, P-256 for ES256) — a token verifies if any of them verifies it, which lets keys rotate
 * with overlap.  Private keys are refused (the sidecar needs only the public key).
 * issuer, audience: if non-NULL and non-empty, tokens must carry exactly this `iss` and an `aud`
 * equal to (or, for an array, containing) this audience.  leeway_s: 0..AUTH_LEEWAY_MAX seconds
 * allowed on exp/nbf for clock skew.  Tokens must carry `exp` (see auth_config_set_require_exp).
 * All strings are copied.  On success *out owns a config to release with auth_config_free().
 * Returns AUTH_OK, AUTH_EINVAL (bad alg, leeway or arguments), AUTH_EKEY, or AUTH_ENOMEM; errbuf
 * (may be NULL) receives one line naming the problem.
 */
AUTH_WUR int auth_config_new(auth_config **out, const char *alg, const char *key_path,
                             const char *issuer, const char *audience, int leeway_s, char *errbuf,
                             size_t errlen);

/*
 * Re-reads the key file (for SIGHUP).  On success the new key replaces the old one for every later
 * auth_verify(); identities already verified are unaffected (connections are not dropped).  On
 * failure the old key stays in use, and the error is returned as by auth_config_new().
 */
AUTH_WUR int auth_config_reload(auth_config *cfg, char *errbuf, size_t errlen);

/* Whether tokens without `exp` are refused (default 1).  Setting 0 is for development only. */
void auth_config_set_require_exp(auth_config *cfg, int require);

/* The pinned algorithm of cfg (not NULL). */
auth_alg auth_config_alg(const auth_config *cfg);

/* Wipes the key material and frees cfg.  NULL is a no-op. */
void auth_config_free(auth_config *cfg);

/*
 * Verifies the len bytes at token (no NUL needed; a NUL inside is malformed) at time now (Unix
 * seconds): size (<= AUTH_TOKEN_MAX), structure, header alg equal to the pinned one, signature,
 * exp/nbf with leeway, iss/aud if configured, `sub` present and well-formed, `projects` a list of
 * ids or "*", `agents` absent, "*" or a list of ids (ids: 1..AUTH_ID_MAX chars of [A-Za-z0-9._:@-],
 * at most AUTH_LIST_MAX per list).  A leading "Bearer " is not stripped: pass the token alone.
 * Returns AUTH_OK and fills *id (previous contents are overwritten, not freed; the caller clears
 * it), or a negative AUTH_E* code and leaves *id zeroed.  Never logs.
 */
AUTH_WUR int auth_verify(const auth_config *cfg, const char *token, size_t len, int64_t now,
                         auth_identity *id);

/*
 * Finds the token in an Authorization header value of len bytes ("Bearer <token>": the scheme is
 * case-insensitive, followed by one or more spaces; trailing spaces and tabs are ignored).
 * On success *tok points into value (borrowed) and *tok_len is its length; returns AUTH_OK.
 * Returns AUTH_ENOTOKEN when the scheme is not Bearer or the token is empty.  Pure; no allocation.
 */
AUTH_WUR int auth_bearer_token(const char *value, size_t len, const char **tok, size_t *tok_len);

/* Frees the lists of id and zeroes it.  NULL is a no-op. */
void auth_identity_clear(auth_identity *id);

/* Makes dst an independent copy of src (dst's previous contents are not freed).
 * Returns AUTH_OK or AUTH_ENOMEM (dst zeroed). */
AUTH_WUR int auth_identity_copy(auth_identity *dst, const auth_identity *src);

/* 1 if id may see project (NUL-terminated), else 0.  NULL arguments give 0.  O(log n). */
int auth_allows_project(const auth_identity *id, const char *project);

/* 1 if id may see agent in project: the project is allowed and `agents` is absent/"*" or lists
 * agent; else 0.  NULL arguments give 0.  O(log n). */
int auth_allows_agent(const auth_identity *id, const char *project, const char *agent);

/* Seconds until id lapses at time now — exp plus the leeway it was verified with, the same instant
 * auth_verify would start refusing it (negative: already lapsed); INT64_MAX if it has no exp. */
int64_t auth_identity_ttl(const auth_identity *id, int64_t now);

/* A static description of err for logs ("unknown error" for unknown codes). */
const char *auth_strerror(int err);

/* A static, actionable message a client may be shown for err (e.g. in the 401 body): what to do,
 * never a detail that helps an attacker.  Every verification failure except expiry, missing token
 * and size maps to one generic "invalid token" message. */
const char *auth_public_message(int err);

/* A static machine-readable reason for err for the client: "token_missing", "token_expired",
 * "token_too_large", "token_invalid" or "server_error". */
const char *auth_public_reason(int err);

/*
 * Sets the fingerprint key (16..64 bytes, copied) so fingerprints agree across sidecar instances
 * (e.g. for Redis keys shared by the cluster).  Without it, a random per-process key is used on
 * first use.  Call before any auth_fingerprint(), once.  Returns AUTH_OK or AUTH_EINVAL.
 */
AUTH_WUR int auth_fingerprint_set_key(const void *key, size_t len);

/*
 * Writes to out the keyed hash (BLAKE2b-128 via libsodium crypto_generichash) of len bytes at data
 * as AUTH_FP_HEX lowercase hex characters and a NUL.  For logs and Redis: tokens and user ids are
 * never stored or logged in clear.  Never fails (aborts only if libsodium cannot initialise).
 */
void auth_fingerprint(const void *data, size_t len, char out[AUTH_FP_HEX + 1]);

/*
 * Mints a token (for `ringside token`, development and tests).  alg: "HS256" (key_path holds the
 * secret, as for auth_config_new), "RS256" or "ES256" (key_path holds a PEM private key).
 * sub: the user; projects_csv: "p1,p2" or "*"; agents_csv: NULL (all agents), "*" or "a1,a2";
 * ttl_s: 1..31536000 seconds from now (time(NULL)); issuer/audience: NULL or empty to omit.
 * Claims: sub, projects, [agents], iat, nbf (= iat), exp, [iss], [aud].
 * On success *out_token is a NUL-terminated string the caller frees with free().
 * Returns AUTH_OK, AUTH_EINVAL (a bad id, ttl or alg; errbuf says which), AUTH_EKEY, AUTH_ESIGN or
 * AUTH_ENOMEM.
 */
AUTH_WUR int auth_mint(const char *alg, const char *key_path, const char *sub,
                       const char *projects_csv, const char *agents_csv, long ttl_s,
                       const char *issuer, const char *audience, char **out_token, char *errbuf,
                       size_t errlen);

/* As auth_mint() with an explicit issue time (Unix seconds) instead of time(NULL); for tests. */
AUTH_WUR int auth_mint_at(const char *alg, const char *key_path, const char *sub,
                          const char *projects_csv, const char *agents_csv, int64_t now, long ttl_s,
                          const char *issuer, const char *audience, char **out_token, char *errbuf,
                          size_t errlen);

/* 1 if s is a valid project/agent id (1..AUTH_ID_MAX chars of [A-Za-z0-9._:@-]), else 0. */
int auth_valid_id(const char *s);

#endif /* RINGSIDE_AUTH_H */
