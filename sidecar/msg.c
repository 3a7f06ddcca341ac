#include "msg.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

msg *msg_new(const void *data, size_t len, uint8_t opcode, msg_kind kind, int critical)
{
    msg *m = xmalloc(sizeof *m + len + 1);
    m->refs = 1;
    m->opcode = opcode;
    m->critical = (uint8_t)(critical != 0);
    m->kind = (uint8_t)kind;
    m->coalesce_key = 0;
    m->ts_ns = 0;
    m->seq = 0;
    m->compressed = 0;
    m->mp = NULL;
    m->z = NULL;
    m->len = len;
    if (len > 0)
        memcpy(m->data, data, len);
    m->data[len] = '\0';
    return m;
}

void msg_unref(msg *m)
{
    if (m != NULL && --m->refs == 0) {
        msg_unref(m->mp);
        msg_unref(m->z);
        free(m);
    }
}
