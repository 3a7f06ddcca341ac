/*
 * ipc_reader.c — the sidecar's side of a ring file.  Everything in the mapping is hostile input:
 * each shared scalar is loaded once into a local, every record is copied privately before it is
 * validated, every position delta is bounded, the work per poll is bounded, and a SIGBUS from a
 * truncated file quarantines the ring.  docs/ring.md has the protocol and ordering argument.
 */
#include "ipc_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc_internal.h"

#define RD_SKIP_NS_DEFAULT 1000000000ull    /* claimed-but-uncommitted slot: skip after 1 s */
#define RD_RECLAIM_NS_DEFAULT 5000000000ull /* leaked SKIPPED slot: reclaim 5 s after a skip */

struct rd_ring {
    uint64_t cursor;    /* next ring position to read */
    uint64_t last_tail; /* tails are monotonic */
    uint64_t limit;     /* this poll's tail snapshot */
    uint32_t owner;     /* cached owner generation, 0 = none */
    uint8_t stream;
    uint8_t task_len;
    char task_id[IPC_ID_MAX + 1];
    uint64_t next_data; /* next expected data_pos of the cached owner */
};

struct rd_task {
    uint64_t latch;     /* latch word at the last progress scan: unchanged means nothing new */
    uint64_t gen;
    uint64_t progress_seq;
    /* Lifecycle delivered for this slot (from the log, or reconciled after a loss). */
    uint32_t known_gen;
    uint8_t known_state; /* 0 nothing, 1 start delivered, 2 end delivered */
    char task_id[IPC_ID_MAX + 1];
};

struct ipc_reader {
    int fd;
    uint8_t *base;
    size_t size;
    char path[PATH_MAX];
    ipc_identity id;

    /* Geometry: validated at open, then never re-read. */
    ipc_producer *prod;
    ipc_consumer *cons;
    uint8_t *log;
    uint32_t nslots, slot_stride;
    ipc_status_slot *status;
    uint8_t *tslots;
    uint32_t ntasks, task_stride;
    uint8_t *tctl;
    uint32_t ctl_stride;
    uint8_t *tdata;
    uint32_t nrings, ring_bytes;

    uint8_t nonce[16]; /* the header's nonce at open: a different one means the file was replaced */
    int hash4;         /* IPC_FEAT_HASH4: log records are checked with ipc_hash4 */

    uint64_t head;
    uint64_t tail_seen;  /* log tail at its last load */
    uint32_t idle_polls; /* caught-up polls (every 8th reloads the tail) */
    uint32_t polls;
    uint64_t stuck_since;  /* CLOCK_MONOTONIC ns when the head slot was first seen uncommitted */
    uint64_t last_skip_ns; /* last time we skipped a slot */
    uint64_t seen_dropped;
    uint64_t seen_progress;
    uint64_t last_status_seq;
    uint64_t skip_ns, reclaim_ns;
    int dead;
    int quarantined;

    int snapshot_pending; /* after a loss: deliver the latest status once it is safe */
    int reconcile_active; /* after a loss: synthesise lost task starts/ends from the slots */
    uint32_t reconcile_next;

    int end_active; /* a TASK_END record is being delivered (terminal bytes first) */
    int end_phase;
    ipc_log_rec end_rec;

    struct rd_ring *rings;
    struct rd_task *tasks;
    ipc_reader_stats st;

    /* Per-poll context. */
    ipc_event_cb cb;
    void *ud;
    unsigned budget;
    unsigned work;
    int delivered;

    ipc_log_rec rec;
    ipc_event ev;
    uint8_t chunk[IPC_TERM_CHUNK];
    uint8_t out[IPC_TERM_CHUNK_MAX];
};

const char *ipc_strerror(int err)
{
    switch (err) {
#define IPC_STR_(name, value, text)                                                                \
    case value:                                                                                    \
        return text;
        IPC_ERRNO_MAP(IPC_STR_)
#undef IPC_STR_
    default:
        return "unknown error";
    }
}

/* ---- helpers ------------------------------------------------------------------------------------ */

static ipc_log_slot *slot_at(const ipc_reader *r, uint64_t ticket)
{
    return (ipc_log_slot *)(void *)(r->log + (size_t)(ticket & (r->nslots - 1u)) * r->slot_stride);
}

static ipc_task_slot *task_at(const ipc_reader *r, uint32_t i)
{
    return (ipc_task_slot *)(void *)(r->tslots + (size_t)i * r->task_stride);
}

static ipc_term_ctl *ctl_at(const ipc_reader *r, uint32_t i)
{
    return (ipc_term_ctl *)(void *)(r->tctl + (size_t)i * r->ctl_stride);
}

/* Copies at most max bytes of src (stopping at NUL) into dst as valid UTF-8: invalid sequences
 * become '?'.  dst has room for max + 1. */
static void utf8_sanitize(char *dst, const char *src, size_t len, size_t max)
{
    if (len > max)
        len = max;
    size_t o = 0;
    for (size_t i = 0; i < len && src[i] != '\0';) {
        unsigned char c = (unsigned char)src[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                              : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = n != 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char)src[i + k] & 0xc0) == 0x80;
        if (ok && n > 1) {
            uint32_t cp = c & (0x7fu >> n);
            for (size_t k = 1; k < n; k++)
                cp = (cp << 6) | ((unsigned char)src[i + k] & 0x3fu);
            if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
                cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                ok = 0;
        }
        if (!ok) {
            dst[o++] = '?';
            i++;
            continue;
        }
        memcpy(dst + o, src + i, n);
        o += n;
        i += n;
    }
    dst[o] = '\0';
}

/* Copies a task id of len bytes if valid; returns 1, else 0. */
static int id_copy(char dst[IPC_ID_MAX + 1], const char *src, size_t len)
{
    if (!ipc_id_valid(src, len))
        return 0;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 1;
}

/* Resets the event: every scalar zero, strings empty (not the 320 string bytes: whoever fills a
 * string terminates it — ev_task(), utf8_sanitize(), snprintf()). */
static ipc_event *ev_new(ipc_reader *r, ipc_event_type type)
{
    ipc_event *ev = &r->ev;
    ev->type = type;
    ev->ts_ns = 0;
    ev->status_seq = 0;
    ev->status = 0;
    ev->stream = 0;
    ev->exit_code = 0;
    ev->current_step = ev->total_steps = 0;
    ev->lost = 0;
    ev->task_id[0] = '\0';
    ev->detail[0] = '\0';
    ev->bytes = NULL;
    ev->len = 0;
    return ev;
}

/* Copies a task id of len (<= IPC_ID_MAX, validated) bytes and terminates it. */
static void ev_task(ipc_event *ev, const char *id, size_t len)
{
    memcpy(ev->task_id, id, len);
    ev->task_id[len] = '\0';
}

/* Delivers r->ev if budget is left: returns 1, else 0 (nothing delivered). */
static int emit(ipc_reader *r)
{
    if (r->budget == 0)
        return 0;
    r->budget--;
    r->delivered++;
    ipc_guard_active = 0; /* a SIGBUS inside the callback is not ours */
    r->cb(r->ud, &r->ev);
    ipc_guard_active = 1;
    return 1;
}

static int emit_lost(ipc_reader *r, uint64_t n)
{
    ipc_event *ev = ev_new(r, IPC_EV_LOST);
    ev->lost = n;
    return emit(r);
}

/* ---- terminal rings ----------------------------------------------------------------------------- */

/* Emits the pending terminal bytes: *one when they are one record's data, still in the private
 * chunk copy (no second copy), else r->out (coalesced records). */
static int term_flush(ipc_reader *r, struct rd_ring *g, uint32_t *out_len, uint64_t ts,
                      const uint8_t **one)
{
    if (*out_len == 0)
        return 1;
    ipc_event *ev = ev_new(r, IPC_EV_TERM);
    ev->ts_ns = ts;
    ev->stream = g->stream;
    memcpy(ev->task_id, g->task_id, sizeof ev->task_id);
    ev->bytes = *one != NULL ? *one : r->out;
    ev->len = *out_len;
    if (!emit(r))
        return 0;
    r->st.term_bytes_read += *out_len;
    *out_len = 0;
    *one = NULL;
    return 1;
}

/* Drains ring ri up to min(limit, tail).  Returns 1 when the limit is reached, 0 when the budget
 * ran out (resume next poll), IPC_ECORRUPT for a ring that must be quarantined. */
static int term_drain(ipc_reader *r, uint32_t ri, uint64_t limit)
{
    struct rd_ring *g = &r->rings[ri];
    ipc_term_ctl *c = ctl_at(r, ri);
    const uint64_t cap = r->ring_bytes;
    const uint8_t *data = r->tdata + (size_t)ri * cap;
    /* acquire: pairs with the producer's release store of tail: records below it are complete. */
    uint64_t t = atomic_load_explicit(&c->tail, memory_order_acquire);
    if ((t & 7u) != 0 || t < g->last_tail)
        return IPC_ECORRUPT;
    g->last_tail = t;
    if (limit > t)
        limit = t;

    while (g->cursor < limit) {
        if (r->budget == 0 || r->work == 0)
            return 0;
        r->work--;
        uint64_t cpos = g->cursor;
        if (limit - cpos > cap) {
            /* Lapped: resume at the oldest whole chunk still in the ring (a producer that has
             * stopped leaves all of it readable).  If the producer is still overwriting it, the
             * copy comes back torn and we jump close to the producer instead (below). */
            g->cursor = ((limit - cap) + IPC_TERM_CHUNK - 1) & ~(uint64_t)(IPC_TERM_CHUNK - 1);
            continue;
        }
        uint64_t chunk_end = (cpos & ~(uint64_t)(IPC_TERM_CHUNK - 1)) + IPC_TERM_CHUNK;
        if (chunk_end - cpos < IPC_TERM_MIN_REC) {
            g->cursor = chunk_end;
            continue;
        }
        uint64_t seg_end = chunk_end < limit ? chunk_end : limit;
        size_t n = (size_t)(seg_end - cpos);
        ipc_shm_read(r->chunk, data + (cpos & (cap - 1)), n);
        /* acquire fence, then the intent: pairs with the producer's release fence between its
         * intent store and its byte stores.  If any byte we copied was overwritten, we see an
         * intent that covers it. */
        atomic_thread_fence(memory_order_acquire);
        uint64_t intent = atomic_load_explicit(&c->tail_intent, memory_order_relaxed);
        if (intent < t)
            intent = t;
        if (intent - cpos > cap) {
            /* Overwritten while we copied: the producer outruns us.  Resume an eighth of a ring
             * behind its intent, not at the oldest surviving byte (the next one it overwrites:
             * under a sustained overrun every copy from there came back torn and the reader
             * delivered almost nothing).  Resuming d bytes behind, the producer laps us again
             * only after (cap - d) / (v_producer - v_reader); the skipped bytes are counted
             * exactly through data_pos, and the newest bytes are the ones a viewer wants. */
            uint64_t safe = (intent - cap / 8) & ~(uint64_t)(IPC_TERM_CHUNK - 1);
            g->cursor = safe > chunk_end ? safe : chunk_end;
            continue;
        }

        /* Parse only the private copy. */
        size_t off = 0;
        uint32_t out_len = 0;
        uint64_t out_ts = 0;
        const uint8_t *one = NULL; /* the pending bytes are this one record's data in r->chunk */
        uint64_t consumed = cpos;           /* everything before it has been delivered */
        uint64_t next_at_consumed = g->next_data;
        int stop = 0, bad = 0;
        while (off < n) {
            uint64_t rpos = cpos + off;
            if (chunk_end - rpos < IPC_TERM_MIN_REC) {
                off = (size_t)(chunk_end - cpos);
                break;
            }
            if (n - off < IPC_TERM_HDR) {
                bad = 1;
                break;
            }
            ipc_term_rec h;
            memcpy(&h, r->chunk + off, sizeof h);
            if (h.type != IPC_TERM_DATA || h.pos != rpos || (h.len & 7u) != 0 ||
                h.len < IPC_TERM_MIN_REC || h.len > chunk_end - rpos || h.len > n - off ||
                h.data_len == 0 || ((IPC_TERM_HDR + h.data_len + 7u) & ~7u) != h.len ||
                (h.stream != 1 && h.stream != 2)) {
                bad = 1;
                break;
            }
            if (h.owner != g->owner) {
                if (!term_flush(r, g, &out_len, out_ts, &one)) {
                    stop = 1;
                    break;
                }
                consumed = rpos;
                next_at_consumed = g->next_data;
                ipc_term_owner o;
                if (h.owner != 0 &&
                    ipc_latch_read(&c->owner_latch, &c->owner[0], &c->owner[1], &o, sizeof o) == 0 &&
                    o.gen == h.owner && o.stream == h.stream && o.task_len <= IPC_ID_MAX &&
                    id_copy(g->task_id, o.task_id, o.task_len)) {
                    g->owner = h.owner;
                    g->stream = o.stream;
                    g->task_len = o.task_len;
                    g->next_data = 0;
                    next_at_consumed = 0;
                } else {
                    /* bytes of an owner whose identity is gone (ring reassigned since) */
                    r->st.term_bytes_lost += h.data_len;
                    off += h.len;
                    consumed = rpos + h.len;
                    continue;
                }
            }
            if (h.stream != g->stream) {
                bad = 1;
                break;
            }
            if (h.data_pos < g->next_data) { /* duplicate or stale: never deliver twice */
                r->st.corrupt++;
                off += h.len;
                continue;
            }
            if (h.data_pos > g->next_data || out_len + h.data_len > IPC_TERM_CHUNK_MAX) {
                if (!term_flush(r, g, &out_len, out_ts, &one)) {
                    stop = 1;
                    break;
                }
                consumed = rpos;
                next_at_consumed = g->next_data;
            }
            if (h.data_pos > g->next_data) {
                ipc_event *ev = ev_new(r, IPC_EV_TERM_GAP);
                ev->stream = g->stream;
                memcpy(ev->task_id, g->task_id, sizeof ev->task_id);
                ev->lost = h.data_pos - g->next_data;
                ev->ts_ns = h.ts_ns;
                if (!emit(r)) {
                    stop = 1;
                    break;
                }
                r->st.term_bytes_lost += ev->lost;
                g->next_data = next_at_consumed = h.data_pos;
            }
            const uint8_t *src = r->chunk + off + IPC_TERM_HDR;
            if (out_len == 0) {
                out_ts = h.ts_ns;
                one = src; /* not copied unless a second record joins it */
            } else {
                if (one != NULL) {
                    memcpy(r->out, one, out_len);
                    one = NULL;
                }
                memcpy(r->out + out_len, src, h.data_len);
            }
            out_len += h.data_len;
            g->next_data = h.data_pos + h.data_len;
            off += h.len;
        }
        if (!stop && !term_flush(r, g, &out_len, out_ts, &one))
            stop = 1;
        if (stop) {
            g->cursor = consumed;
            g->next_data = next_at_consumed;
            return 0;
        }
        if (bad) {
            r->st.corrupt++;
            g->cursor = chunk_end; /* resync at the next chunk */
        } else {
            g->cursor = cpos + off;
        }
    }
    return 1;
}

/* ---- event log ------------------------------------------------------------------------------------ */

/* Delivers the pending TASK_END: first the task's terminal bytes up to its recorded end, then a gap
 * for bytes the reader could not get, then the end.  1 done, 0 budget out, IPC_ECORRUPT. */
static int end_process(ipc_reader *r)
{
    ipc_log_rec *x = &r->end_rec;
    while (r->end_phase < 2) {
        unsigned s = (unsigned)r->end_phase;
        uint64_t delivered = 0;
        uint16_t ri = x->term_ring[s];
        if (ri < r->nrings) {
            int k = term_drain(r, ri, x->term_end[s]);
            if (k <= 0)
                return k;
            if (r->rings[ri].owner == x->term_owner[s] && x->term_owner[s] != 0)
                delivered = r->rings[ri].next_data;
        }
        if (x->term_written[s] > delivered) {
            ipc_event *ev = ev_new(r, IPC_EV_TERM_GAP);
            ev->stream = (uint8_t)(s + 1);
            ev_task(ev, x->task_id, x->task_len);
            ev->lost = x->term_written[s] - delivered;
            ev->ts_ns = x->ts_ns;
            if (!emit(r))
                return 0;
            r->st.term_bytes_lost += ev->lost;
            if (ri < r->nrings && r->rings[ri].owner == x->term_owner[s])
                r->rings[ri].next_data = x->term_written[s];
        }
        r->end_phase++;
    }
    if (r->end_phase == 2) {
        /* The task's last progress, if the progress scan has not delivered it yet: it must come
         * before the end (the scan skips tasks that are no longer running). */
        if (x->task_slot < r->ntasks) {
            ipc_task_slot *s = task_at(r, x->task_slot);
            struct rd_task *k = &r->tasks[x->task_slot];
            ipc_task_copy c;
            if (ipc_latch_read(&s->latch, &s->copy[0], &s->copy[1], &c, sizeof c) == 0 &&
                c.gen == x->task_gen && c.progress_seq != 0 &&
                !(c.gen == k->gen && c.progress_seq == k->progress_seq) &&
                c.task_len <= IPC_ID_MAX && c.msg_len <= IPC_TEXT_MAX) {
                ipc_event *pev = ev_new(r, IPC_EV_PROGRESS);
                if (id_copy(pev->task_id, c.task_id, c.task_len)) {
                    pev->ts_ns = c.ts_ns;
                    pev->current_step = c.current_step;
                    pev->total_steps = c.total_steps;
                    if (pev->total_steps != 0 && pev->current_step > pev->total_steps)
                        pev->current_step = pev->total_steps;
                    utf8_sanitize(pev->detail, c.msg, c.msg_len, IPC_TEXT_MAX);
                    if (!emit(r))
                        return 0;
                    r->st.progress_updates++;
                }
                k->gen = c.gen;
                k->progress_seq = c.progress_seq;
            }
        }
        r->end_phase = 3;
    }
    ipc_event *ev = ev_new(r, IPC_EV_TASK_END);
    ev->ts_ns = x->ts_ns;
    ev->status = x->status;
    ev->exit_code = x->exit_code;
    ev_task(ev, x->task_id, x->task_len);
    if (!emit(r))
        return 0;
    r->end_active = 0;
    r->st.records_read++;
    struct rd_task *k = &r->tasks[x->task_slot];
    k->known_gen = x->task_gen;
    k->known_state = 2;
    memcpy(k->task_id, ev->task_id, sizeof k->task_id);
    return 1;
}

/* Validates the private copy r->rec of ticket h and delivers it. */
static int rec_handle(ipc_reader *r, uint64_t h)
{
    ipc_log_rec *x = &r->rec;
    int ok = x->ticket == h && x->detail_len <= IPC_TEXT_MAX;
    if (ok) {
        uint32_t check = x->check;
        x->check = 0;
        size_t used = ipc_log_rec_used(x->detail_len);
        ok = (r->hash4 ? ipc_hash4(x, used) : ipc_hash(x, used)) == check;
    }
    int task_ok = x->task_len <= IPC_ID_MAX && ipc_id_valid(x->task_id, x->task_len);
    if (ok) {
        switch (x->type) {
        case IPC_REC_STATUS:
            ok = x->status < 6;
            break;
        case IPC_REC_TASK_START:
            ok = task_ok && x->task_slot < r->ntasks;
            break;
        case IPC_REC_TASK_END:
            ok = task_ok && x->task_slot < r->ntasks &&
                 (x->status == 3 || x->status == 4 || x->status == 5);
            break;
        default:
            ok = 0;
        }
    }
    if (!ok) {
        r->st.corrupt++;
        r->st.records_lost++;
        emit_lost(r, 1);
        return 1;
    }
    ipc_event *ev;
    switch (x->type) {
    case IPC_REC_STATUS:
        if (x->status_seq <= r->last_status_seq) /* superseded by a snapshot already delivered */
            return 1;
        ev = ev_new(r, IPC_EV_STATUS);
        ev->ts_ns = x->ts_ns;
        ev->status_seq = x->status_seq;
        ev->status = x->status;
        utf8_sanitize(ev->detail, x->detail, x->detail_len, IPC_TEXT_MAX);
        emit(r);
        r->last_status_seq = x->status_seq;
        r->st.records_read++;
        return 1;
    case IPC_REC_TASK_START: {
        struct rd_task *k = &r->tasks[x->task_slot];
        r->st.records_read++;
        if (k->known_gen == x->task_gen && k->known_state != 0)
            return 1; /* already delivered by a reconciliation */
        ev = ev_new(r, IPC_EV_TASK_START);
        ev->ts_ns = x->ts_ns;
        ev_task(ev, x->task_id, x->task_len);
        utf8_sanitize(ev->detail, x->detail, x->detail_len, IPC_TEXT_MAX);
        emit(r);
        k->known_gen = x->task_gen;
        k->known_state = 1;
        memcpy(k->task_id, ev->task_id, sizeof k->task_id);
        return 1;
    }
    default: /* TASK_END */
        if (r->tasks[x->task_slot].known_gen == x->task_gen &&
            r->tasks[x->task_slot].known_state == 2) {
            r->st.records_read++;
            return 1; /* already delivered by a reconciliation */
        }
        r->end_rec = *x;
        r->end_active = 1;
        r->end_phase = 0;
        return end_process(r);
    }
}

/* 1 caught up, 0 stopped (budget, or the head slot is still being written), IPC_ECORRUPT. */
static int log_drain(ipc_reader *r)
{
    const uint64_t n = r->nslots;
    for (;;) {
        if (r->end_active) {
            int k = end_process(r);
            if (k <= 0)
                return k;
        }
        if (r->budget == 0 || r->work == 0)
            return 0;
        r->work--;
        uint64_t h = r->head;
        ipc_log_slot *sl = slot_at(r, h);
        /* acquire: pairs with the producer's release CAS to DONE(h). */
        uint64_t s = atomic_load_explicit(&sl->seq, memory_order_acquire);
        if (s == IPC_SEQ(h, IPC_SLOT_DONE)) {
            /* Copy the fixed part, then only the detail bytes it declares (bounded): the check
             * covers ipc_log_rec_used() bytes, nothing after them is read. */
            ipc_shm_read(&r->rec, &sl->rec, offsetof(ipc_log_rec, detail));
            uint16_t dl = r->rec.detail_len;
            if (dl <= IPC_TEXT_MAX)
                ipc_shm_read(r->rec.detail, sl->rec.detail,
                             ipc_log_rec_used(dl) - offsetof(ipc_log_rec, detail));
            atomic_thread_fence(memory_order_acquire);
            uint64_t s2 = atomic_load_explicit(&sl->seq, memory_order_relaxed);
            /* release: our copy of the record happens before the next lap's producer writes.
             * A plain store, not a CAS: no honest party changes a DONE(h) word but us (the
             * producer's CASes expect FREE or SKIPPED of their own ticket), and what a hostile
             * agent writes here only affects its own ring. */
            atomic_store_explicit(&sl->seq, IPC_SEQ(h + n, IPC_SLOT_FREE), memory_order_release);
            r->head = h + 1;
            r->stuck_since = 0;
            /* the next record's lines, while this one is validated and delivered */
            const ipc_log_slot *nx = slot_at(r, h + 1);
            ipc_prefetch_r(nx);
            ipc_prefetch_r((const char *)nx + 64);
            ipc_prefetch_r((const char *)nx + 128);
            if (s2 != s) {
                r->st.corrupt++;
                r->st.records_lost++;
                emit_lost(r, 1);
                continue;
            }
            int k = rec_handle(r, h);
            if (k <= 0)
                return k;
            continue;
        }
        /* Caught up as far as the last tail load knows: the producer's tail line is not read on
         * every idle poll (each read costs the next claim a cache-line transfer).  It is read on
         * every 8th idle poll, to find claims that are not committed (skipped skip_ns after they
         * are first seen), and at once when the agent is dead. */
        if (s == IPC_SEQ(h, IPC_SLOT_FREE) && !r->dead && (int64_t)(r->tail_seen - h) <= 0 &&
            (++r->idle_polls & 7u) != 0)
            return 1;
        uint64_t tail = atomic_load_explicit(&r->prod->log_tail, memory_order_acquire);
        r->tail_seen = tail;
        if (h >= n && s == IPC_SEQ(h - n, IPC_SLOT_SKIPPED)) {
            /* Skipped on the previous lap and never handed on: its producer is gone. */
            uint64_t now = ipc_now_mono_ns();
            if (!r->dead && now - r->last_skip_ns >= r->reclaim_ns) {
                uint64_t expect = s;
                atomic_compare_exchange_strong_explicit(&sl->seq, &expect,
                                                        IPC_SEQ(h, IPC_SLOT_FREE),
                                                        memory_order_release, memory_order_relaxed);
                continue;
            }
            return 1;
        }
        if (s == IPC_SEQ(h, IPC_SLOT_FREE) && (int64_t)(tail - h) <= 0)
            return 1; /* caught up */
        if (s == IPC_SEQ(h, IPC_SLOT_BUSY) || s == IPC_SEQ(h, IPC_SLOT_FREE)) {
            /* Claimed, not committed yet. */
            uint64_t now = ipc_now_mono_ns();
            if (r->stuck_since == 0)
                r->stuck_since = now;
            if (r->dead || now - r->stuck_since >= r->skip_ns) {
                uint64_t expect = s;
                if (atomic_compare_exchange_strong_explicit(
                        &sl->seq, &expect, IPC_SEQ(h, IPC_SLOT_SKIPPED), memory_order_acq_rel,
                        memory_order_relaxed)) {
                    r->head = h + 1;
                    r->stuck_since = 0;
                    r->last_skip_ns = now;
                    r->st.records_lost++;
                    emit_lost(r, 1);
                }
                continue;
            }
            return 0;
        }
        return IPC_ECORRUPT; /* a slot word no honest producer writes */
    }
}

static int status_snapshot(ipc_reader *r, ipc_event *ev)
{
    ipc_status_copy c;
    if (ipc_latch_read(&r->status->latch, &r->status->copy[0], &r->status->copy[1], &c, sizeof c) != 0)
        return IPC_ENOTREADY;
    if (c.status_seq == 0)
        return IPC_ENOTREADY;
    if (c.status >= 6 || c.detail_len > IPC_TEXT_MAX) {
        r->st.corrupt++;
        return IPC_ECORRUPT;
    }
    memset(ev, 0, sizeof *ev);
    ev->type = IPC_EV_STATUS;
    ev->ts_ns = c.ts_ns;
    ev->status_seq = c.status_seq;
    ev->status = c.status;
    utf8_sanitize(ev->detail, c.detail, c.detail_len, IPC_TEXT_MAX);
    return IPC_OK;
}

/* After the log is drained: report records the producer dropped, then the latest status.
 * The snapshot is delivered only if, after reading it, the log tail still equals our head.  Why
 * that is enough: the writer assigns status_seq, writes the snapshot latch and appends to the log
 * under one mutex, so the log append of every record older than the snapshot value V returned
 * (claim included) before V's latch write; our latch read acquires that write, so our tail load
 * sees every such claim.  tail == head therefore means every record older than V was delivered
 * or dropped, and skipping V's own record later (as superseded) loses nothing. */
static void lost_check(ipc_reader *r)
{
    uint64_t d = atomic_load_explicit(&r->prod->events_dropped, memory_order_acquire);
    if (d != r->seen_dropped && r->budget >= 1) {
        if (d > r->seen_dropped) {
            emit_lost(r, d - r->seen_dropped);
            r->st.records_lost += d - r->seen_dropped;
        }
        r->seen_dropped = d;
        r->reconcile_active = 1;
        r->reconcile_next = 0;
        r->snapshot_pending = 1;
    }
    if (r->snapshot_pending && r->budget >= 1) {
        ipc_event ev;
        int rc = status_snapshot(r, &ev);
        uint64_t tail = atomic_load_explicit(&r->prod->log_tail, memory_order_acquire);
        if ((int64_t)(tail - r->head) > 0)
            return; /* records committed since the catch-up come first; retry next poll */
        r->snapshot_pending = 0;
        if (rc == IPC_OK && ev.status_seq > r->last_status_seq) {
            r->ev = ev;
            emit(r);
            r->last_status_seq = ev.status_seq;
        }
    }
}

/* After a loss, task starts and ends may be among the dropped records: compare every task slot
 * with what was delivered and synthesise the missing events (terminal bytes before an end).
 * Resumable: stops when the budget runs short.  Returns 1 done, 0 later, IPC_ECORRUPT. */
static int reconcile(ipc_reader *r)
{
    while (r->reconcile_active && r->reconcile_next < r->ntasks) {
        if (r->budget < 3 || r->work == 0)
            return 0;
        r->work--;
        uint32_t i = r->reconcile_next;
        ipc_task_slot *s = task_at(r, i);
        struct rd_task *k = &r->tasks[i];
        ipc_task_copy c;
        if (ipc_latch_read(&s->latch, &s->copy[0], &s->copy[1], &c, sizeof c) != 0 || c.gen == 0 ||
            (c.state != IPC_TASK_RUNNING && c.state != IPC_TASK_ENDED)) {
            r->reconcile_next++;
            continue;
        }
        char id[IPC_ID_MAX + 1];
        if (c.task_len > IPC_ID_MAX || !id_copy(id, c.task_id, c.task_len)) {
            r->st.corrupt++;
            r->reconcile_next++;
            continue;
        }
        uint32_t g = (uint32_t)c.gen;
        ipc_event *ev;
        if (k->known_gen != g) {
            if (k->known_state == 1) { /* an earlier task in this slot ended unseen */
                ev = ev_new(r, IPC_EV_TASK_END);
                ev->status = 3;
                memcpy(ev->task_id, k->task_id, sizeof ev->task_id);
                snprintf(ev->detail, sizeof ev->detail, "task end lost");
                emit(r);
            }
            ev = ev_new(r, IPC_EV_TASK_START);
            ev->ts_ns = c.start_ns;
            memcpy(ev->task_id, id, sizeof id);
            emit(r);
            k->known_gen = g;
            k->known_state = 1;
            memcpy(k->task_id, id, sizeof id);
        }
        if (c.state == IPC_TASK_ENDED && k->known_state == 1) {
            for (uint32_t ri = 0; ri < r->nrings; ri++) {
                int d = term_drain(r, ri, UINT64_MAX);
                if (d <= 0)
                    return d;
            }
            if (r->budget == 0)
                return 0;
            if (c.outcome != 3 && c.outcome != 4 && c.outcome != 5)
                c.outcome = 3;
            ev = ev_new(r, IPC_EV_TASK_END);
            ev->ts_ns = c.ts_ns;
            ev->status = c.outcome;
            ev->exit_code = c.exit_code;
            memcpy(ev->task_id, id, sizeof id);
            emit(r);
            k->known_state = 2;
        }
        r->reconcile_next++;
    }
    r->reconcile_active = 0;
    return 1;
}

static void progress_scan(ipc_reader *r)
{
    uint64_t pu = atomic_load_explicit(&r->prod->progress_updates, memory_order_acquire);
    if (pu == r->seen_progress)
        return;
    int complete = 1;
    for (uint32_t i = 0; i < r->ntasks; i++) {
        ipc_task_slot *s = task_at(r, i);
        struct rd_task *k = &r->tasks[i];
        uint64_t latch = atomic_load_explicit(&s->latch, memory_order_acquire);
        if (latch == k->latch)
            continue;
        if (r->budget == 0 || r->work == 0) {
            complete = 0;
            break;
        }
        r->work--;
        ipc_task_copy c;
        if (ipc_latch_read(&s->latch, &s->copy[0], &s->copy[1], &c, sizeof c) != 0) {
            complete = 0;
            continue;
        }
        k->latch = latch;
        if (c.gen == k->gen && c.progress_seq == k->progress_seq)
            continue;
        k->gen = c.gen;
        k->progress_seq = c.progress_seq;
        if (c.state != IPC_TASK_RUNNING || c.progress_seq == 0)
            continue;
        ipc_event *ev = ev_new(r, IPC_EV_PROGRESS);
        if (c.task_len > IPC_ID_MAX || !id_copy(ev->task_id, c.task_id, c.task_len) ||
            c.msg_len > IPC_TEXT_MAX) {
            r->st.corrupt++;
            continue;
        }
        ev->ts_ns = c.ts_ns;
        ev->current_step = c.current_step;
        ev->total_steps = c.total_steps;
        if (ev->total_steps != 0 && ev->current_step > ev->total_steps)
            ev->current_step = ev->total_steps;
        utf8_sanitize(ev->detail, c.msg, c.msg_len, IPC_TEXT_MAX);
        emit(r);
        r->st.progress_updates++;
    }
    if (complete)
        r->seen_progress = pu;
}

int ipc_reader_poll(ipc_reader *r, unsigned max_events, ipc_event_cb cb, void *ud)
{
    if (r == NULL || cb == NULL)
        return IPC_EINVAL;
    if (r->quarantined)
        return IPC_ECORRUPT;
    r->cb = cb;
    r->ud = ud;
    r->budget = max_events;
    r->work = max_events * 4u + 64u;
    r->delivered = 0;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        r->quarantined = 1;
        r->st.corrupt++;
        return IPC_ECORRUPT;
    }
    ipc_guard_active = 1;
    /* A file rewritten in place (same inode, another ring's bytes) is refused: 16 bytes. */
    uint8_t nonce[16];
    ipc_shm_read(nonce, ((const ipc_header *)(const void *)r->base)->nonce, sizeof nonce);
    if (memcmp(nonce, r->nonce, sizeof nonce) != 0) {
        ipc_guard_leave();
        r->quarantined = 1;
        r->st.corrupt++;
        return IPC_ECORRUPT;
    }
    /* Terminal tails first: bytes below them were written after every log record committed so
     * far that they depend on (task start), so draining the log next keeps start before bytes. */
    for (uint32_t i = 0; i < r->nrings; i++)
        r->rings[i].limit = atomic_load_explicit(&ctl_at(r, i)->tail, memory_order_acquire);
    int rc = log_drain(r);
    if (rc == 1) {
        lost_check(r);
        rc = reconcile(r);
        if (rc == 0)
            rc = 1; /* resumes next poll; the rest may proceed */
        progress_scan(r);
        for (uint32_t i = 0; i < r->nrings && rc >= 0; i++)
            rc = term_drain(r, i, r->rings[i].limit);
    }
    if ((++r->polls & 15u) == 0 || rc < 0) { /* metrics: every 16th poll (see log_drain) */
        r->tail_seen = atomic_load_explicit(&r->prod->log_tail, memory_order_relaxed);
        atomic_store_explicit(&r->cons->log_head, r->head, memory_order_relaxed); /* diagnostic */
        uint64_t fill = r->tail_seen - r->head;
        r->st.log_fill_pct = (int64_t)fill < 0      ? 0u
                             : fill > r->nslots ? 100u
                                                : (uint32_t)(fill * 100u / r->nslots);
    }
    ipc_guard_leave();
    if (rc < 0) {
        r->quarantined = 1;
        r->st.corrupt++;
        return IPC_ECORRUPT;
    }
    return r->delivered;
}

int ipc_reader_pending(const ipc_reader *r)
{
    if (r == NULL || r->quarantined)
        return 0;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0)
        return 1; /* let poll find the fault */
    ipc_guard_active = 1;
    int p = r->end_active || r->reconcile_active;
    if (!p && r->snapshot_pending)
        p = atomic_load_explicit(&r->prod->log_tail, memory_order_acquire) == r->head;
    uint64_t h = r->head;
    if (!p && atomic_load_explicit(&slot_at(r, h)->seq, memory_order_acquire) ==
                  IPC_SEQ(h, IPC_SLOT_DONE))
        p = 1;
    if (!p && atomic_load_explicit(&r->prod->events_dropped, memory_order_acquire) !=
                  r->seen_dropped)
        p = 1;
    if (!p && atomic_load_explicit(&r->prod->progress_updates, memory_order_acquire) !=
                  r->seen_progress)
        p = 1;
    for (uint32_t i = 0; !p && i < r->nrings; i++)
        if (atomic_load_explicit(&ctl_at(r, i)->tail, memory_order_acquire) > r->rings[i].cursor)
            p = 1;
    ipc_guard_leave();
    return p;
}

int ipc_reader_alive(ipc_reader *r)
{
    if (r == NULL)
        return IPC_EINVAL;
    if (r->dead)
        return 0;
    if (flock(r->fd, LOCK_SH | LOCK_NB) == 0) {
        flock(r->fd, LOCK_UN);
        r->dead = 1;
        return 0;
    }
    if (errno == EWOULDBLOCK)
        return 1;
    return IPC_ESYS;
}

int ipc_reader_closed_cleanly(const ipc_reader *r)
{
    if (r == NULL || r->quarantined)
        return 0;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0)
        return 0;
    ipc_guard_active = 1;
    ipc_header *h = (ipc_header *)(void *)r->base;
    uint32_t st = atomic_load_explicit(&h->state, memory_order_acquire);
    ipc_guard_leave();
    return st == IPC_STATE_CLOSED;
}

int ipc_reader_latest_status(ipc_reader *r, ipc_event *ev)
{
    if (r == NULL || ev == NULL)
        return IPC_EINVAL;
    if (r->quarantined)
        return IPC_ECORRUPT;
    ipc_guard_install();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        r->quarantined = 1;
        return IPC_ECORRUPT;
    }
    ipc_guard_active = 1;
    int rc = status_snapshot(r, ev);
    ipc_guard_leave();
    return rc;
}

void ipc_reader_get_stats(const ipc_reader *r, ipc_reader_stats *out)
{
    if (r != NULL && out != NULL)
        *out = r->st;
}

const ipc_identity *ipc_reader_identity(const ipc_reader *r)
{
    return r == NULL ? NULL : &r->id;
}

const char *ipc_reader_path(const ipc_reader *r)
{
    return r == NULL ? NULL : r->path;
}

void ipc_reader_set_timeouts(ipc_reader *r, uint32_t skip_ms, uint32_t reclaim_ms)
{
    if (r == NULL)
        return;
    r->skip_ns = (uint64_t)skip_ms * 1000000u;
    r->reclaim_ns = (uint64_t)reclaim_ms * 1000000u;
}

void ipc_reader_free(ipc_reader *r)
{
    if (r == NULL)
        return;
    ipc_unmap(r->base, r->size);
    if (r->fd != -1)
        close(r->fd);
    free(r->rings);
    free(r->tasks);
    free(r);
}

/* ---- open ----------------------------------------------------------------------------------------- */

static int hdr_id(char dst[IPC_ID_MAX + 1], const char src[64], int optional)
{
    size_t len = strnlen(src, 64);
    if (len == 64)
        return 0;
    if (len == 0 && optional) {
        dst[0] = '\0';
        return 1;
    }
    return id_copy(dst, src, len);
}

/* Validates the private header copy h against the file size; fills the geometry of r. */
static int geometry(ipc_reader *r, const ipc_header *h, uint64_t fsize)
{
    if (h->header_size < IPC_HEADER_SIZE || h->header_size % IPC_PAGE != 0 ||
        h->file_size != fsize || h->page_size != IPC_PAGE || h->region_count > IPC_REGION_MAX ||
        h->term_chunk != IPC_TERM_CHUNK || h->header_size > fsize)
        return IPC_EGEOMETRY;
    const ipc_region *found[8] = {0};
    static const uint32_t min_elem[8] = {
        0, sizeof(ipc_producer), sizeof(ipc_consumer), sizeof(ipc_log_slot),
        sizeof(ipc_status_slot), sizeof(ipc_task_slot), sizeof(ipc_term_ctl), IPC_TERM_BYTES_MIN};
    for (uint32_t i = 0; i < h->region_count; i++) {
        const ipc_region *g = &h->regions[i];
        if (g->type < IPC_REGION_PRODUCER || g->type > IPC_REGION_TERM_DATA)
            continue; /* unknown region of a newer minor: ignored */
        if (found[g->type] != NULL)
            return IPC_EGEOMETRY;
        if (g->offset % IPC_PAGE != 0 || g->offset < h->header_size || g->offset > fsize ||
            g->length > fsize - g->offset || g->elem_size < min_elem[g->type] ||
            g->elem_size % 64u != 0 || (uint64_t)g->elem_size * g->count > g->length)
            return IPC_EGEOMETRY;
        for (uint32_t j = 1; j < 8; j++) { /* no overlap with another region */
            const ipc_region *o = found[j];
            if (o != NULL && g->length != 0 && o->length != 0 && g->offset < o->offset + o->length &&
                o->offset < g->offset + g->length)
                return IPC_EGEOMETRY;
        }
        found[g->type] = g;
    }
    for (uint32_t t = IPC_REGION_PRODUCER; t <= IPC_REGION_TERM_DATA; t++)
        if (found[t] == NULL)
            return IPC_EGEOMETRY;
    const ipc_region *lg = found[IPC_REGION_LOG], *tk = found[IPC_REGION_TASKS];
    const ipc_region *tc = found[IPC_REGION_TERM_CTL], *td = found[IPC_REGION_TERM_DATA];
    if (found[IPC_REGION_PRODUCER]->count != 1 || found[IPC_REGION_CONSUMER]->count != 1 ||
        found[IPC_REGION_STATUS]->count != 1)
        return IPC_EGEOMETRY;
    if (lg->count < IPC_LOG_SLOTS_MIN || lg->count > IPC_LOG_SLOTS_MAX ||
        (lg->count & (lg->count - 1)) != 0)
        return IPC_EGEOMETRY;
    if (tk->count > IPC_TASKS_MAX || tc->count != td->count || td->count > IPC_TERM_RINGS_MAX)
        return IPC_EGEOMETRY;
    if (td->count > 0 && (td->elem_size > IPC_TERM_BYTES_MAX ||
                          (td->elem_size & (td->elem_size - 1)) != 0 ||
                          td->elem_size % IPC_TERM_CHUNK != 0))
        return IPC_EGEOMETRY;
    r->prod = (ipc_producer *)(void *)(r->base + found[IPC_REGION_PRODUCER]->offset);
    r->cons = (ipc_consumer *)(void *)(r->base + found[IPC_REGION_CONSUMER]->offset);
    r->status = (ipc_status_slot *)(void *)(r->base + found[IPC_REGION_STATUS]->offset);
    r->log = r->base + lg->offset;
    r->nslots = lg->count;
    r->slot_stride = lg->elem_size;
    r->tslots = r->base + tk->offset;
    r->ntasks = tk->count;
    r->task_stride = tk->elem_size;
    r->tctl = r->base + tc->offset;
    r->ctl_stride = tc->elem_size;
    r->tdata = r->base + td->offset;
    r->nrings = td->count;
    r->ring_bytes = td->elem_size;
    return IPC_OK;
}

/* Finds the oldest unconsumed ticket (a restarted reader): walk back from the tail over slots
 * that are not yet handed to the next lap. */
static void head_recover(ipc_reader *r)
{
    const uint64_t n = r->nslots;
    uint64_t t = atomic_load_explicit(&r->prod->log_tail, memory_order_acquire);
    uint64_t h = t;
    for (uint64_t k = 0; k < n && h > 0; k++) {
        uint64_t s = atomic_load_explicit(&slot_at(r, h - 1)->seq, memory_order_acquire);
        if (s == IPC_SEQ(h - 1, IPC_SLOT_DONE) || s == IPC_SEQ(h - 1, IPC_SLOT_BUSY) ||
            s == IPC_SEQ(h - 1, IPC_SLOT_FREE))
            h--;
        else
            break;
    }
    r->head = h;
    r->tail_seen = t;
}

int ipc_reader_open(const char *path, ipc_reader **out)
{
    if (path == NULL || out == NULL || strlen(path) >= PATH_MAX)
        return IPC_EINVAL;
    *out = NULL;
    ipc_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return IPC_ENOMEM;
    strcpy(r->path, path);
    r->skip_ns = RD_SKIP_NS_DEFAULT;
    r->reclaim_ns = RD_RECLAIM_NS_DEFAULT;
    int rc = IPC_ESYS;
    r->fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (r->fd == -1)
        goto fail;
    struct stat st;
    if (fstat(r->fd, &st) == -1)
        goto fail;
    rc = IPC_EGEOMETRY;
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)(IPC_HEADER_SIZE + IPC_PAGE) ||
        (uint64_t)st.st_size > IPC_FILE_MAX)
        goto fail;
    ipc_header h;
    if (pread(r->fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
        goto fail;
    rc = IPC_EMAGIC;
    if (memcmp(h.magic, IPC_MAGIC, 8) != 0)
        goto fail;
    rc = IPC_EVERSION;
    if (h.major != IPC_LAYOUT_MAJOR || (h.required_features & ~IPC_FEAT_KNOWN) != 0)
        goto fail;
    uint32_t state = atomic_load_explicit(&h.state, memory_order_relaxed);
    rc = IPC_ENOTREADY;
    if (state == IPC_STATE_INIT)
        goto fail;
    rc = IPC_ECORRUPT;
    if (state != IPC_STATE_READY && state != IPC_STATE_CLOSED)
        goto fail;
    if (!hdr_id(r->id.agent_id, h.agent_id, 0) || !hdr_id(r->id.project_id, h.project_id, 0) ||
        !hdr_id(r->id.owner, h.owner, 1))
        goto fail;
    memcpy(r->nonce, h.nonce, sizeof r->nonce);
    r->hash4 = (h.required_features & IPC_FEAT_HASH4) != 0;
    r->id.pid = h.pid;
    r->id.start_ns = h.start_ns;
    r->size = (size_t)st.st_size;
    r->base = ipc_map_file(r->fd, r->size, 1);
    rc = IPC_ESYS;
    if (r->base == NULL)
        goto fail;
    rc = geometry(r, &h, (uint64_t)st.st_size);
    if (rc != IPC_OK)
        goto fail;
    rc = IPC_ENOMEM;
    r->rings = calloc(r->nrings ? r->nrings : 1, sizeof *r->rings);
    r->tasks = calloc(r->ntasks ? r->ntasks : 1, sizeof *r->tasks);
    if (r->rings == NULL || r->tasks == NULL)
        goto fail;

    ipc_guard_ensure();
    if (sigsetjmp(ipc_guard_jb, 0) != 0) {
        rc = IPC_ECORRUPT;
        goto fail;
    }
    ipc_guard_active = 1;
    /* acquire: pairs with the writer's release store of READY. */
    (void)atomic_load_explicit(&((ipc_header *)(void *)r->base)->state, memory_order_acquire);
    head_recover(r);
    r->seen_dropped = atomic_load_explicit(&r->prod->events_dropped, memory_order_acquire);
    for (uint32_t i = 0; i < r->nrings; i++) {
        uint64_t t = atomic_load_explicit(&ctl_at(r, i)->tail, memory_order_acquire);
        if ((t & 7u) != 0) {
            ipc_guard_leave();
            rc = IPC_ECORRUPT;
            goto fail;
        }
        r->rings[i].cursor = t > r->ring_bytes
                                 ? ((t - r->ring_bytes) + IPC_TERM_CHUNK - 1) &
                                       ~(uint64_t)(IPC_TERM_CHUNK - 1)
                                 : 0;
        r->rings[i].last_tail = 0;
    }
    ipc_guard_leave();
    *out = r;
    return IPC_OK;

fail:;
    int err = errno;
    ipc_reader_free(r);
    errno = err;
    return rc;
}
