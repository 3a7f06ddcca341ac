#include "filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct {
    const char *name;
    uint32_t bit;
} type_names[] = {{"agent_status", FILTER_EV_STATUS},
                  {"progress", FILTER_EV_PROGRESS},
                  {"task_started", FILTER_EV_TASK_STARTED},
                  {"task_ended", FILTER_EV_TASK_ENDED}};

int filter_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > FILTER_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

int filter_list_add(filter_list *l, const char *id, size_t len)
{
    if (l->n == FILTER_MAX_IDS || len > FILTER_ID_MAX)
        return -1;
    l->ids = xrealloc(l->ids, (l->n + 1) * sizeof *l->ids);
    memcpy(l->ids[l->n], id, len);
    l->ids[l->n][len] = '\0';
    l->n++;
    return 0;
}

void filter_list_free(filter_list *l)
{
    free(l->ids);
    l->ids = NULL;
    l->n = 0;
}

void filter_free(filter *f)
{
    filter_list_free(&f->agents);
    filter_list_free(&f->projects);
}

int filter_parse_ids(const char *csv, filter_list *out, const char *what, char *err, size_t errlen)
{
    filter_list_free(out);
    const char *p = csv;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!filter_id_valid(p, len)) {
            snprintf(err, errlen, "%s: '%.*s' is not a valid id (1-63 chars of A-Z a-z 0-9 . _ : @ -)",
                     what, (int)(len > 64 ? 64 : len), p);
            return -1;
        }
        if (out->n == FILTER_MAX_IDS) {
            snprintf(err, errlen, "%s: more than %d ids", what, FILTER_MAX_IDS);
            return -1;
        }
        filter_list_add(out, p, len);
        if (e == NULL)
            break;
        p = e + 1;
        if (*p == '\0') {
            snprintf(err, errlen, "%s: empty id after ','", what);
            return -1;
        }
    }
    return 0;
}

int filter_parse_types(const char *csv, uint32_t *out, char *err, size_t errlen)
{
    uint32_t mask = 0;
    const char *p = csv;
    while (*p != '\0') {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        uint32_t bit = 0;
        for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
            if (strlen(type_names[i].name) == len && memcmp(type_names[i].name, p, len) == 0)
                bit = type_names[i].bit;
        }
        if (bit == 0) {
            snprintf(err, errlen,
                     "event_types: '%.*s' is not one of agent_status, progress, task_started, "
                     "task_ended",
                     (int)(len > 64 ? 64 : len), p);
            return -1;
        }
        mask |= bit;
        if (e == NULL)
            break;
        p = e + 1;
        if (*p == '\0') {
            snprintf(err, errlen, "event_types: empty type after ','");
            return -1;
        }
    }
    *out = mask ? mask : FILTER_EV_ALL;
    return 0;
}

static int list_has(const filter_list *l, const char *id)
{
    if (l->n == 0)
        return 1;
    for (unsigned i = 0; i < l->n; i++) {
        if (strcmp(l->ids[i], id) == 0)
            return 1;
    }
    return 0;
}

int filter_match(const filter *f, uint32_t type, const char *agent_id, const char *project_id)
{
    return (f->types & type) != 0 && list_has(&f->agents, agent_id) &&
           list_has(&f->projects, project_id);
}

const char *filter_type_name(uint32_t bit)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (type_names[i].bit == bit)
            return type_names[i].name;
    }
    return "unknown";
}
