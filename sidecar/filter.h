/*
 * filter.h — what a connection subscribed to (REQUIREMENTS B3): agent ids, project ids, event types.
 *
 * Parsing is pure and bounded: at most FILTER_MAX_IDS ids per list, each 1..63 bytes of
 * [A-Za-z0-9._:@-]; event types from the fixed set.  An empty list means "all".
 */
#ifndef RINGSIDE_FILTER_H
#define RINGSIDE_FILTER_H

#include <stddef.h>
#include <stdint.h>

#define FILTER_MAX_IDS 50
#define FILTER_ID_MAX 63

/* Event types a client can filter on (bit values). */
#define FILTER_EV_STATUS 0x1u       /* agent_status */
#define FILTER_EV_PROGRESS 0x2u     /* progress */
#define FILTER_EV_TASK_STARTED 0x4u /* task_started */
#define FILTER_EV_TASK_ENDED 0x8u   /* task_ended */
#define FILTER_EV_ALL 0xfu

/* A list of ids, heap-allocated to its exact length (an unfiltered connection costs nothing). */
typedef struct filter_list {
    unsigned n;
    char (*ids)[FILTER_ID_MAX + 1]; /* n entries; NULL when n == 0 */
} filter_list;

typedef struct filter {
    filter_list agents;
    filter_list projects;
    uint32_t types; /* FILTER_EV_* mask; FILTER_EV_ALL when not given */
} filter;

/* 1 if s (length len) is a valid id. */
int filter_id_valid(const char *s, size_t len);

/* Parses a comma-separated list into *out (allocated; release with filter_list_free, also on
 * error).  Returns 0, or -1 with a message in err (static text plus the offending value). */
int filter_parse_ids(const char *csv, filter_list *out, const char *what, char *err, size_t errlen);

/* Parses comma-separated event type names into a mask. */
int filter_parse_types(const char *csv, uint32_t *out, char *err, size_t errlen);

/* Appends one valid id to l (at most FILTER_MAX_IDS; returns -1 beyond). */
int filter_list_add(filter_list *l, const char *id, size_t len);

/* Frees the ids of l and empties it.  Idempotent. */
void filter_list_free(filter_list *l);

/* Frees both lists of f. */
void filter_free(filter *f);

/* 1 if an event of type (FILTER_EV_*) from agent/project passes the filter. */
int filter_match(const filter *f, uint32_t type, const char *agent_id, const char *project_id);

/* Name of one FILTER_EV_* bit. */
const char *filter_type_name(uint32_t bit);

#endif
