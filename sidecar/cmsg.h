/*
 * cmsg.h — decoding of the messages a client sends (docs/protocol.md "Client messages").
 *
 * One function turns a text message into a typed request or a clear refusal: JSON object, a known
 * "type" for the endpoint, no field the type does not define (issue 17: unknown fields are refused,
 * not ignored), every field well-formed and bounded.  Fuzzed with inflate in front
 * (tests/fuzz/sidecar/fuzz_cmsg.c).  Loop thread only; allocates (jansson, the filter lists).
 */
#ifndef RINGSIDE_CMSG_H
#define RINGSIDE_CMSG_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h"

typedef enum cmsg_type { CMSG_PONG, CMSG_SUBSCRIBE, CMSG_AUTH, CMSG_PAUSE, CMSG_RESUME } cmsg_type;

typedef enum cmsg_endpoint { CMSG_EP_EVENTS, CMSG_EP_TERMINAL } cmsg_endpoint;

typedef struct cmsg {
    cmsg_type type;
    filter filt;  /* CMSG_SUBSCRIBE: the requested filters (types = FILTER_EV_ALL when absent) */
    char *token;  /* CMSG_AUTH: a NUL-terminated copy, at most AUTH_TOKEN_MAX bytes */
    size_t token_len;
} cmsg;

/* The largest message a well-behaved client sends: a subscribe naming FILTER_MAX_IDS agents and
 * projects of FILTER_ID_MAX bytes and every event type (about 7 KiB), or an auth message with a
 * token of AUTH_TOKEN_MAX bytes (about 8.2 KiB); --max-message defaults to twice that, rounded. */
#define CMSG_LARGEST_LEGITIMATE 8300

/* Decodes the text message data (len bytes, valid UTF-8) received on an endpoint.  Returns 0 with
 * *out filled (the caller releases it with cmsg_clear), or -1 with *code set to a static error
 * code ("bad_json", "bad_message", "unknown_type", "unknown_field", "bad_filter") and a sentence
 * for the client in err (size errlen).  Nothing is left to free on failure. */
int cmsg_decode(const uint8_t *data, size_t len, cmsg_endpoint ep, cmsg *out, const char **code,
                char *err, size_t errlen);

/* Frees what cmsg_decode allocated in m; safe on a zeroed cmsg and twice. */
void cmsg_clear(cmsg *m);

#endif
