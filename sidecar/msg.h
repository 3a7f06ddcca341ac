/*
 * msg.h — an outbound WebSocket message, serialised once and shared by reference count among all
 * connections that receive it (DESIGN "no allocation per message per subscriber").
 */
#ifndef RINGSIDE_MSG_H
#define RINGSIDE_MSG_H

#include <stddef.h>
#include <stdint.h>

/* What a message is, for metrics, coalescing and drop policy (REQUIREMENTS B8). */
typedef enum msg_kind {
    MSG_SNAPSHOT = 0,
    MSG_STATUS,
    MSG_TASK,
    MSG_PROGRESS,
    MSG_TERMINAL,
    MSG_CONTROL, /* heartbeat, dropped, gap, subscribed, error, shutdown … */
    MSG_KIND_COUNT
} msg_kind;

#define MSG_KIND_NAMES {"snapshot", "agent_status", "task", "progress", "terminal", "control"}

typedef struct msg {
    uint32_t refs;
    uint8_t opcode;        /* 1 text, 2 binary (WebSocket opcodes) */
    uint8_t critical;      /* never dropped for a slow client (status, task state, failures) */
    uint8_t kind;          /* msg_kind */
    uint64_t coalesce_key; /* progress: same key replaces an older queued message; 0: none */
    uint64_t ts_ns;        /* publish time of the event, 0 if none (latency metric) */
    uint64_t seq;          /* persisted events: sequence number, else 0 */
    uint8_t compressed;    /* payload is permessage-deflate data: send with RSV1 */
    struct msg *mp;        /* cached MessagePack form (encode.c), owned */
    struct msg *z;         /* cached compressed form (encode.c), owned */
    size_t len;
    unsigned char data[];
} msg;

/* Allocates a message holding a copy of data, with one reference owned by the caller. */
msg *msg_new(const void *data, size_t len, uint8_t opcode, msg_kind kind, int critical);
static inline msg *msg_ref(msg *m)
{
    m->refs++;
    return m;
}
/* Drops one reference; frees at zero.  msg_unref(NULL) is a no-op. */
void msg_unref(msg *m);

#endif
