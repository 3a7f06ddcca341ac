#include "cmsg.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "util.h"

/* The fields each message type defines ("type" included). */
static const char *const pong_fields[] = {"type", NULL};
static const char *const subscribe_fields[] = {"type", "agent_ids", "project_ids", "event_types",
                                               NULL};
static const char *const auth_fields[] = {"type", "token", NULL};

static const struct {
    const char *name;
    cmsg_type type;
    int events, terminal; /* endpoints where it is defined */
    const char *const *fields;
} types[] = {
    {"pong", CMSG_PONG, 1, 1, pong_fields},
    {"subscribe", CMSG_SUBSCRIBE, 1, 0, subscribe_fields},
    {"auth", CMSG_AUTH, 1, 1, auth_fields},
    {"pause", CMSG_PAUSE, 0, 1, pong_fields},
    {"resume", CMSG_RESUME, 0, 1, pong_fields},
};

/* Reads a JSON array of ids into a filter list.  Returns 0 or -1 with err set. */
static int read_id_array(json_t *arr, filter_list *out, const char *what, char *err, size_t errlen)
{
    if (arr == NULL || json_is_null(arr))
        return 0;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "%s must be an array of ids", what);
        return -1;
    }
    if (json_array_size(arr) > FILTER_MAX_IDS) {
        snprintf(err, errlen, "%s: more than %d ids", what, FILTER_MAX_IDS);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(v);
        if (s == NULL || !filter_id_valid(s, json_string_length(v))) {
            snprintf(err, errlen, "%s[%zu] is not a valid id", what, i);
            return -1;
        }
        filter_list_add(out, s, strlen(s));
    }
    return 0;
}

static int read_types(json_t *arr, uint32_t *mask_out, char *err, size_t errlen)
{
    *mask_out = FILTER_EV_ALL;
    if (arr == NULL || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > FILTER_MAX_IDS) {
        snprintf(err, errlen, "event_types must be an array of type names");
        return -1;
    }
    uint32_t mask = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        uint32_t bit;
        const char *s = json_string_value(v);
        if (s == NULL) {
            snprintf(err, errlen, "event_types entries must be strings");
            return -1;
        }
        if (strchr(s, ',') != NULL || filter_parse_types(s, &bit, err, errlen) != 0) {
            if (strchr(s, ',') != NULL)
                snprintf(err, errlen, "event_types[%zu] is not a type name", i);
            return -1;
        }
        mask |= bit;
    }
    if (mask != 0)
        *mask_out = mask;
    return 0;
}

static int fail(const char **code, const char *c)
{
    *code = c;
    return -1;
}

int cmsg_decode(const uint8_t *data, size_t len, cmsg_endpoint ep, cmsg *out, const char **code,
                char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        snprintf(err, errlen, "messages must be JSON objects with a \"type\"");
        return fail(code, "bad_json");
    }
    int rc = -1;
    const char *type = json_string_value(json_object_get(root, "type"));
    size_t k;
    if (type == NULL) {
        snprintf(err, errlen, "missing \"type\"");
        *code = "bad_message";
        goto out;
    }
    for (k = 0; k < ARRAY_LEN(types); k++) {
        if (strcmp(type, types[k].name) == 0 &&
            (ep == CMSG_EP_EVENTS ? types[k].events : types[k].terminal))
            break;
    }
    if (k == ARRAY_LEN(types)) {
        snprintf(err, errlen, "unknown message type on this endpoint (see docs/protocol.md)");
        *code = "unknown_type";
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        const char *const *f = types[k].fields;
        while (*f != NULL && strcmp(*f, key) != 0)
            f++;
        if (*f == NULL) {
            char shown[40];
            size_t kl = strlen(key);
            snprintf(shown, sizeof shown, "%.*s%s", (int)(kl > 32 ? 32 : kl), key,
                     kl > 32 ? "…" : "");
            snprintf(err, errlen, "\"%s\" messages have no field \"%s\"", types[k].name, shown);
            *code = "unknown_field";
            goto out;
        }
    }
    out->type = types[k].type;
    switch (out->type) {
    case CMSG_SUBSCRIBE:
        if (read_id_array(json_object_get(root, "agent_ids"), &out->filt.agents, "agent_ids", err,
                          errlen) != 0 ||
            read_id_array(json_object_get(root, "project_ids"), &out->filt.projects,
                          "project_ids", err, errlen) != 0 ||
            read_types(json_object_get(root, "event_types"), &out->filt.types, err, errlen) != 0) {
            *code = "bad_filter";
            cmsg_clear(out);
            goto out;
        }
        break;
    case CMSG_AUTH: {
        json_t *t = json_object_get(root, "token");
        const char *tok = json_string_value(t);
        size_t tl = tok != NULL ? json_string_length(t) : 0;
        if (tok == NULL || tl == 0 || tl > AUTH_TOKEN_MAX || strlen(tok) != tl) {
            snprintf(err, errlen, "auth needs a \"token\" string of 1..%d bytes", AUTH_TOKEN_MAX);
            *code = "bad_message";
            goto out;
        }
        out->token = xmalloc(tl + 1);
        memcpy(out->token, tok, tl + 1);
        out->token_len = tl;
        break;
    }
    default:
        break;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void cmsg_clear(cmsg *m)
{
    filter_free(&m->filt);
    if (m->token != NULL) {
        sodium_memzero(m->token, m->token_len); /* a credential */
        free(m->token);
    }
    m->token = NULL;
    m->token_len = 0;
}
