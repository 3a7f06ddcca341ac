/*
 * ipc_writer.c — the agent's side of a ring file.  See ipc_writer.h for the contract and
 * docs/ring.md for the protocol and its memory-ordering argument.
 */
#include "ipc_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ipc_internal.h"

#define WR_NO_RING (-1)   /* stream has no ring yet */
#define WR_RING_NONE (-2) /* no ring was free at the first write: bytes counted as dropped */

struct wr_task {
    int in_use;         /* running (private truth; the slot's latched copy mirrors it) */
    ipc_task_copy cur;  /* private copy of the value latched into the shared slot */
    int32_t ring[2];    /* ring index per stream, WR_NO_RING or WR_RING_NONE */
    uint64_t unringed[2]; /* data bytes written while the stream had no ring */
};

struct wr_ring {
    pthread_mutex_t mu; /* serialises writers of this ring (agent threads only) */
    uint64_t tail;      /* private copy of the published tail */
    uint32_t gen;       /* current owner generation; bumped on every assignment */
    uint64_t data_pos;  /* data bytes written by the current owner */
};

struct ipc_writer {
    int fd;
    uint8_t *base;
    size_t size;
    ipc_header *hdr;
    ipc_producer *prod;
    ipc_log_slot *log;
    uint32_t nslots;
    ipc_status_slot *status;
    ipc_task_slot *tslots;
    uint32_t ntasks;
    ipc_term_ctl *tctl;
    uint8_t *tdata;
    uint32_t nrings;
    uint32_t ring_bytes;

    pthread_mutex_t status_mu; /* status_seq order == log order == snapshot order */
    uint64_t status_seq;
    pthread_mutex_t tasks_mu; /* tasks[], free ring queue; taken before a ring's mu */
    struct wr_task *tasks;
    uint32_t task_cursor;
    struct wr_ring *rings;
    uint32_t *freeq; /* FIFO of free rings: the least recently released is reused first */
    uint32_t freeq_head, freeq_count;

    _Atomic(ipc_doorbell_shm *) db;
    _Atomic int db_rescue;         /* ipc_rescue slot of db, -1 while unknown */
    _Atomic int db_lost;           /* doorbells dropped after a fault (each leaks its 4 KiB) */
    _Atomic int64_t db_next_check; /* CLOCK_MONOTONIC_COARSE seconds */
    int ring_rescue;               /* ipc_rescue slot of the ring mapping */

    char dir[PATH_MAX];
    char path[PATH_MAX];
};

static int is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

static size_t page_round(size_t n)
{
    return (n + IPC_PAGE - 1) & ~(size_t)(IPC_PAGE - 1);
}

/* ---- doorbell (producer side) ----------------------------------------------------------------- */

static ipc_doorbell_shm *wr_doorbell_find(ipc_writer *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    int64_t now = (int64_t)ts.tv_sec;
    int64_t next = atomic_load_explicit(&w->db_next_check, memory_order_relaxed);
    if (now < next)
        return NULL;
    if (!atomic_compare_exchange_strong_explicit(&w->db_next_check, &next, now + 1,
                                                 memory_order_relaxed, memory_order_relaxed))
        return NULL;

    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", w->dir, IPC_DOORBELL_NAME) >= (int)sizeof p)
        return NULL;
    int fd = open(p, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1)
        return NULL;
    struct stat st;
    ipc_doorbell_shm *db = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= (off_t)IPC_PAGE)
        db = ipc_map_file(fd, IPC_PAGE, 1);
    close(fd);
    if (db == NULL)
        return NULL;
    /* Any process of the pod may truncate the doorbell: a fault turns it into zero pages. */
    int slot = ipc_rescue_add(db, IPC_PAGE);
    uint8_t magic[8];
    ipc_shm_read(magic, db->magic, 8);
    if (memcmp(magic, IPC_DOORBELL_MAGIC, 8) != 0) {
        ipc_rescue_remove(slot);
        ipc_unmap(db, IPC_PAGE);
        return NULL;
    }
    ipc_doorbell_shm *expect = NULL;
    if (!atomic_compare_exchange_strong_explicit(&w->db, &expect, db, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        ipc_rescue_remove(slot);
        ipc_unmap(db, IPC_PAGE);
        return expect;
    }
    atomic_store_explicit(&w->db_rescue, slot, memory_order_release);
    return db;
}

#define WR_DOORBELL_LOST_MAX 8 /* after this many faulted doorbells, no more wake-ups */

/* The doorbell faulted (truncated under us) and is zero pages now: forget it and look for the
 * sidecar's doorbell again from the next second.  Its mapping is left in place (another thread
 * may be using it; zero pages cannot fault), so each loss leaks 4 KiB, hence the cap. */
static void wr_doorbell_drop(ipc_writer *w, ipc_doorbell_shm *db)
{
    ipc_doorbell_shm *expect = db;
    if (!atomic_compare_exchange_strong_explicit(&w->db, &expect, NULL, memory_order_acq_rel,
                                                 memory_order_acquire))
        return;
    ipc_rescue_remove(atomic_exchange_explicit(&w->db_rescue, -1, memory_order_acq_rel));
    if (atomic_fetch_add_explicit(&w->db_lost, 1, memory_order_relaxed) + 1 >= WR_DOORBELL_LOST_MAX)
        atomic_store_explicit(&w->db_next_check, INT64_MAX, memory_order_relaxed);
}

/* Called after a commit.  Dekker with the reader's arm: our commit, then the load of sleeping,
 * with nothing between them reordered; the reader stores sleeping, a full fence, then re-checks
 * the rings.  At least one side sees the other's store.  The exchange makes one producer the
 * waker per sleep.
 * sc_commit: the commit was a seq_cst read-modify-write (the log's DONE CAS, the drop and
 * progress counters).  Then a seq_cst load of sleeping needs no fence (C11 7.17.3p9/p10: either the
 * reader's fence precedes our load in the total order S, and the load sees sleeping = 1, or our
 * commit precedes the fence, and the reader's re-check sees the commit); on x86-64 the RMW is
 * a locked instruction and the load a plain mov, so the mfence is saved.  Otherwise (terminal
 * tail: a release store) a seq_cst fence orders the commit before the load. */
static void wr_notify(ipc_writer *w, int sc_commit)
{
    ipc_doorbell_shm *db = atomic_load_explicit(&w->db, memory_order_acquire);
    if (db == NULL) {
        db = wr_doorbell_find(w);
        if (db == NULL)
            return;
    }
    if (!sc_commit)
        atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&db->sleeping, memory_order_seq_cst) == 0) {
        /* A truncated doorbell reads as zero pages (sleeping == 0): check the rare case here,
         * off the path that wakes. */
        if (ipc_rescue_faulted(atomic_load_explicit(&w->db_rescue, memory_order_relaxed)))
            wr_doorbell_drop(w, db);
        return;
    }
    if (atomic_exchange_explicit(&db->sleeping, 0, memory_order_acq_rel) == 0)
        return;
    atomic_fetch_add_explicit(&db->seq, 1, memory_order_release);
    syscall(SYS_futex, &db->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    atomic_fetch_add_explicit(&w->prod->wakeups, 1, memory_order_relaxed);
}

/* ---- event log -------------------------------------------------------------------------------- */

/* Claims a slot, copies rec in, commits.  rec is complete (except ticket and check) before the
 * claim, so nothing between claim and commit can fault or block. */
static int log_append(ipc_writer *w, ipc_log_rec *rec)
{
    const uint64_t n = w->nslots, mask = n - 1;
    ipc_log_slot *sl = NULL;
    uint64_t t = 0;
    for (int tries = 0; tries < 64; tries++) {
        t = atomic_load_explicit(&w->prod->log_tail, memory_order_relaxed);
        sl = &w->log[t & mask];
        /* acquire: pairs with the reader's release of FREE(t), so its copy of the previous
         * lap's record happens before our writes into the slot. */
        uint64_t s = atomic_load_explicit(&sl->seq, memory_order_acquire);
        if (s == IPC_SEQ(t, IPC_SLOT_FREE)) {
            if (atomic_compare_exchange_weak_explicit(&w->prod->log_tail, &t, t + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                goto claimed;
            continue;
        }
        if ((int64_t)(s - IPC_SEQ(t, IPC_SLOT_FREE)) < 0) /* previous lap not consumed: full */
            break;
        /* Someone claimed t already; reload the tail. */
    }
    /* seq_cst: also the commit wr_notify orders before its load of sleeping. */
    atomic_fetch_add_explicit(&w->prod->events_dropped, 1, memory_order_seq_cst);
    return IPC_EFULL;

claimed:;
    /* The next claim's slot is the one cold line of a publish (its seq word was last written by
     * the reader a lap ago): ask for it now, with write intent, so the next publish does not
     * stall on the miss. */
    ipc_prefetch_w(&w->log[(t + 1) & mask]);
    ipc_prefetch_w((const char *)&w->log[(t + 1) & mask] + 64);
    ipc_prefetch_w((const char *)&w->log[(t + 1) & mask] + 128);
    /* The slot stays FREE(t) while we copy (the reader treats FREE(t) below the tail like BUSY(t):
     * claimed, not committed).  No FREE->BUSY CAS: a reader that skips the slot meanwhile makes
     * our commit CAS fail, and we hand the slot on only after our copy, so the next lap's
     * producer never writes concurrently with us. */
    size_t used = ipc_log_rec_used(rec->detail_len);
    rec->ticket = t;
    rec->check = 0;
    rec->check = ipc_hash4(rec, used); /* the ring has IPC_FEAT_HASH4 */
    ipc_shm_write(&sl->rec, rec, used);
    uint64_t expect = IPC_SEQ(t, IPC_SLOT_FREE);
    /* release (seq_cst includes it): pairs with the reader's acquire load of DONE(t): the record
     * bytes are visible.  seq_cst: the commit wr_notify orders before its load of sleeping. */
    if (!atomic_compare_exchange_strong_explicit(&sl->seq, &expect, IPC_SEQ(t, IPC_SLOT_DONE),
                                                 memory_order_seq_cst, memory_order_relaxed))
        goto skipped;
    /* events_published is not counted per record (a locked add on the line the reader polls):
     * ipc_writer_get_stats() derives it as log_tail - log_skipped. */
    return IPC_OK;

skipped:
    /* We stalled longer than the reader's skip timeout; hand the slot to the next lap. */
    expect = IPC_SEQ(t, IPC_SLOT_SKIPPED);
    atomic_compare_exchange_strong_explicit(&sl->seq, &expect, IPC_SEQ(t + n, IPC_SLOT_FREE),
                                            memory_order_release, memory_order_relaxed);
    /* seq_cst like every other IPC_EFULL return, so wr_notify's fence-free path holds for any
     * return of log_append (nothing here is a commit the reader waits for, but it stays uniform) */
    atomic_fetch_add_explicit(&w->prod->log_skipped, 1, memory_order_seq_cst);
    return IPC_EFULL;
}

static void rec_init(ipc_log_rec *rec, uint8_t type)
{
    static const ipc_log_rec zero; /* copying zeros compiles to vector stores, memset to rep stos */
    memcpy(rec, &zero, offsetof(ipc_log_rec, detail));
    rec->type = type;
    rec->term_ring[0] = rec->term_ring[1] = IPC_NO_RING;
    rec->ts_ns = ipc_now_realtime_ns();
}

static void rec_set_detail(ipc_log_rec *rec, const char *s, size_t len)
{
    if (len > 255)
        len = 255;
    rec->detail_len = (uint16_t)len;
    /* zero the bytes up to the next 8-byte boundary (they are hashed): one word store before the
     * copy, not a variable-length memset (which compiles to rep stos) */
    size_t end = (len + 7u) & ~(size_t)7u; /* <= 256 == sizeof rec->detail */
    if (end > len) {
        const uint64_t zero = 0;
        memcpy(rec->detail + end - 8u, &zero, 8);
    }
    if (len)
        memcpy(rec->detail, s, len);
}

static void rec_set_task(ipc_log_rec *rec, const char *task, size_t len)
{
    rec->task_len = (uint8_t)len;
    memset(rec->task_id, 0, sizeof rec->task_id);
    memcpy(rec->task_id, task, len);
}

/* ---- public: status ----------------------------------------------------------------------------- */

int ipc_writer_status(ipc_writer *w, uint8_t status, const char *detail, size_t detail_len)
{
    if (w == NULL || (detail == NULL && detail_len != 0) || detail_len > 255)
        return IPC_EINVAL;
    ipc_log_rec rec;
    rec_init(&rec, IPC_REC_STATUS);
    rec.status = status;
    rec_set_detail(&rec, detail, detail_len);

    /* The snapshot's used bytes only (the reader reads detail_len bytes of detail; the bytes
     * after them are never used): 24 + detail rounded to 8, not 288. */
    ipc_status_copy snap;
    memset(&snap, 0, offsetof(ipc_status_copy, detail));
    snap.status = status;
    snap.ts_ns = rec.ts_ns;
    snap.detail_len = rec.detail_len;
    size_t dl8 = ((size_t)rec.detail_len + 7u) & ~(size_t)7u;
    if (dl8 > sizeof snap.detail)
        dl8 = sizeof snap.detail;
    memcpy(snap.detail, rec.detail, dl8); /* rec_set_detail zero-padded it to 8 */

    pthread_mutex_lock(&w->status_mu);
    rec.status_seq = snap.status_seq = ++w->status_seq;
    ipc_latch_write(&w->status->latch, &w->status->copy[0], &w->status->copy[1], &snap,
                    offsetof(ipc_status_copy, detail) + dl8);
    int rc = log_append(w, &rec);
    pthread_mutex_unlock(&w->status_mu);
    wr_notify(w, rc == IPC_OK || rc == IPC_EFULL);
    return rc;
}

/* ---- public: tasks ------------------------------------------------------------------------------ */

static int task_find(const ipc_writer *w, const char *task, size_t len)
{
    for (uint32_t i = 0; i < w->ntasks; i++) {
        const struct wr_task *t = &w->tasks[i];
        if (t->in_use && t->cur.task_len == len && memcmp(t->cur.task_id, task, len) == 0)
            return (int)i;
    }
    return -1;
}

static void task_publish(ipc_writer *w, uint32_t i)
{
    ipc_task_slot *s = &w->tslots[i];
    ipc_latch_write(&s->latch, &s->copy[0], &s->copy[1], &w->tasks[i].cur, sizeof(ipc_task_copy));
}

int ipc_writer_task_start(ipc_writer *w, const char *task, size_t task_len, const char *title,
                          size_t title_len)
{
    if (w == NULL || task == NULL || !ipc_id_valid(task, task_len) ||
        (title == NULL && title_len != 0) || title_len > 255)
        return IPC_EINVAL;
    ipc_log_rec rec;
    rec_init(&rec, IPC_REC_TASK_START);
    rec_set_task(&rec, task, task_len);
    rec_set_detail(&rec, title, title_len);

    pthread_mutex_lock(&w->tasks_mu);
    if (task_find(w, task, task_len) >= 0) {
        pthread_mutex_unlock(&w->tasks_mu);
        return IPC_EEXIST;
    }
    uint32_t slot = UINT32_MAX;
    for (uint32_t k = 0; k < w->ntasks; k++) {
        uint32_t i = (w->task_cursor + k) % w->ntasks;
        if (!w->tasks[i].in_use) {
            slot = i;
            break;
        }
    }
    if (slot == UINT32_MAX) {
        pthread_mutex_unlock(&w->tasks_mu);
        return IPC_ETASKS;
    }
    w->task_cursor = (slot + 1) % w->ntasks;
    struct wr_task *t = &w->tasks[slot];
    uint64_t gen = t->cur.gen + 1;
    memset(t, 0, sizeof *t);
    t->in_use = 1;
    t->ring[0] = t->ring[1] = WR_NO_RING;
    t->cur.gen = gen;
    t->cur.state = IPC_TASK_RUNNING;
    t->cur.start_ns = t->cur.ts_ns = rec.ts_ns;
    t->cur.task_len = (uint8_t)task_len;
    memcpy(t->cur.task_id, task, task_len);
    task_publish(w, slot);
    rec.task_slot = (uint16_t)slot;
    rec.task_gen = (uint32_t)gen;
    int rc = log_append(w, &rec);
    pthread_mutex_unlock(&w->tasks_mu);
    wr_notify(w, 1);
    return rc;
}

int ipc_writer_progress(ipc_writer *w, const char *task, size_t task_len, uint32_t current,
                        uint32_t total, const char *msg, size_t msg_len)
{
    if (w == NULL || task == NULL || !ipc_id_valid(task, task_len) ||
        (msg == NULL && msg_len != 0) || msg_len > 255)
        return IPC_EINVAL;
    uint64_t ts = ipc_now_realtime_ns();
    pthread_mutex_lock(&w->tasks_mu);
    int i = task_find(w, task, task_len);
    if (i < 0) {
        pthread_mutex_unlock(&w->tasks_mu);
        return IPC_ENOTASK;
    }
    ipc_task_copy *c = &w->tasks[i].cur;
    c->current_step = current;
    c->total_steps = total;
    c->progress_seq++;
    c->ts_ns = ts;
    c->msg_len = (uint16_t)msg_len;
    memset(c->msg, 0, sizeof c->msg);
    if (msg_len)
        memcpy(c->msg, msg, msg_len);
    task_publish(w, (uint32_t)i);
    pthread_mutex_unlock(&w->tasks_mu);
    /* release: the reader's acquire load of the counter orders its slot reads after ours;
     * seq_cst: the commit wr_notify orders before its load of sleeping. */
    atomic_fetch_add_explicit(&w->prod->progress_updates, 1, memory_order_seq_cst);
    wr_notify(w, 1);
    return IPC_OK;
}

/* Appends bytes to ring r (its mu held).  Never reads anything the reader writes. */
static void term_put(ipc_writer *w, uint32_t r, uint8_t stream, const uint8_t *buf, size_t len,
                     uint64_t ts)
{
    struct wr_ring *rg = &w->rings[r];
    ipc_term_ctl *c = &w->tctl[r];
    uint8_t *data = w->tdata + (size_t)r * w->ring_bytes;
    const uint64_t mask = w->ring_bytes - 1u;
    /* Only the last ring_bytes/2 of an oversized write can survive anyway: skip the rest and let
     * the data_pos jump report it exactly. */
    const size_t keep = w->ring_bytes / 2;
    if (len > keep) {
        size_t skip = len - keep;
        rg->data_pos += skip;
        buf += skip;
        len -= skip;
        atomic_fetch_add_explicit(&w->prod->term_bytes_dropped, skip, memory_order_relaxed);
    }
    uint64_t p = rg->tail;
    while (len > 0) {
        uint64_t room = IPC_TERM_CHUNK - (p % IPC_TERM_CHUNK);
        if (room < IPC_TERM_MIN_REC) {
            p += room; /* both sides skip a chunk tail too short for a record */
            continue;
        }
        size_t piece = len < room - IPC_TERM_HDR ? len : (size_t)(room - IPC_TERM_HDR);
        uint32_t rl = (uint32_t)((IPC_TERM_HDR + piece + 7u) & ~(size_t)7u);
        /* Intent before bytes (release fence): a reader that copied bytes we overwrite, then
         * fences (acquire) and loads the intent, sees it and discards its copy. */
        atomic_store_explicit(&c->tail_intent, p + rl, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        ipc_term_rec h;
        h.len = rl;
        h.type = IPC_TERM_DATA;
        h.stream = stream;
        h.owner = rg->gen;
        h.data_len = (uint32_t)piece;
        h.pos = p;
        h.data_pos = rg->data_pos;
        h.ts_ns = ts;
        uint8_t *dst = data + (p & mask);
        ipc_shm_write(dst, &h, sizeof h);
        ipc_shm_write(dst + IPC_TERM_HDR, buf, piece);
        p += rl;
        buf += piece;
        len -= piece;
        rg->data_pos += piece;
    }
    rg->tail = p;
    /* release: pairs with the reader's acquire load of tail: records up to p are complete. */
    atomic_store_explicit(&c->tail, p, memory_order_release);
}

int ipc_writer_write(ipc_writer *w, const char *task, size_t task_len, uint8_t stream,
                     const void *buf, size_t len)
{
    if (w == NULL || task == NULL || !ipc_id_valid(task, task_len) || (stream != 1 && stream != 2) ||
        (buf == NULL && len != 0))
        return IPC_EINVAL;
    uint64_t ts = ipc_now_realtime_ns();
    unsigned s = stream - 1u;
    pthread_mutex_lock(&w->tasks_mu);
    int i = task_find(w, task, task_len);
    if (i < 0) {
        pthread_mutex_unlock(&w->tasks_mu);
        return IPC_ENOTASK;
    }
    if (len == 0) {
        pthread_mutex_unlock(&w->tasks_mu);
        return IPC_OK;
    }
    struct wr_task *t = &w->tasks[i];
    if (t->ring[s] == WR_NO_RING) {
        if (w->freeq_count == 0) {
            t->ring[s] = WR_RING_NONE;
        } else {
            uint32_t r = w->freeq[w->freeq_head];
            w->freeq_head = (w->freeq_head + 1) % w->nrings;
            w->freeq_count--;
            struct wr_ring *rg = &w->rings[r];
            pthread_mutex_lock(&rg->mu);
            rg->gen++;
            if (rg->gen == 0)
                rg->gen = 1;
            rg->data_pos = 0;
            ipc_term_owner o;
            memset(&o, 0, sizeof o);
            o.gen = rg->gen;
            o.stream = stream;
            o.task_len = (uint8_t)task_len;
            memcpy(o.task_id, task, task_len);
            ipc_term_ctl *c = &w->tctl[r];
            ipc_latch_write(&c->owner_latch, &c->owner[0], &c->owner[1], &o, sizeof o);
            pthread_mutex_unlock(&rg->mu);
            t->ring[s] = (int32_t)r;
        }
    }
    if (t->ring[s] == WR_RING_NONE) {
        t->unringed[s] += len;
        pthread_mutex_unlock(&w->tasks_mu);
        atomic_fetch_add_explicit(&w->prod->term_bytes_dropped, len, memory_order_relaxed);
        return IPC_OK;
    }
    uint32_t r = (uint32_t)t->ring[s];
    pthread_mutex_lock(&w->rings[r].mu); /* order: tasks_mu, then the ring's mu */
    pthread_mutex_unlock(&w->tasks_mu);
    term_put(w, r, stream, buf, len, ts);
    pthread_mutex_unlock(&w->rings[r].mu);
    atomic_fetch_add_explicit(&w->prod->term_bytes_written, len, memory_order_relaxed);
    wr_notify(w, 0);
    return IPC_OK;
}

int ipc_writer_task_end(ipc_writer *w, const char *task, size_t task_len, uint8_t outcome,
                        int32_t exit_code)
{
    if (w == NULL || task == NULL || !ipc_id_valid(task, task_len))
        return IPC_EINVAL;
    ipc_log_rec rec;
    rec_init(&rec, IPC_REC_TASK_END);
    rec_set_task(&rec, task, task_len);
    rec_set_detail(&rec, NULL, 0);
    rec.status = outcome;
    rec.exit_code = exit_code;

    pthread_mutex_lock(&w->tasks_mu);
    int i = task_find(w, task, task_len);
    if (i < 0) {
        pthread_mutex_unlock(&w->tasks_mu);
        return IPC_ENOTASK;
    }
    struct wr_task *t = &w->tasks[i];
    for (unsigned s = 0; s < 2; s++) {
        if (t->ring[s] >= 0) {
            uint32_t r = (uint32_t)t->ring[s];
            struct wr_ring *rg = &w->rings[r];
            pthread_mutex_lock(&rg->mu); /* waits for a write in flight on this stream */
            rec.term_ring[s] = (uint16_t)r;
            rec.term_owner[s] = rg->gen;
            rec.term_end[s] = rg->tail;
            rec.term_written[s] = rg->data_pos;
            pthread_mutex_unlock(&rg->mu);
            w->freeq[(w->freeq_head + w->freeq_count) % w->nrings] = r;
            w->freeq_count++;
        } else {
            rec.term_written[s] = t->unringed[s];
        }
    }
    t->in_use = 0;
    t->cur.state = IPC_TASK_ENDED;
    t->cur.outcome = outcome;
    t->cur.exit_code = exit_code;
    t->cur.ts_ns = rec.ts_ns;
    task_publish(w, (uint32_t)i);
    rec.task_slot = (uint16_t)i;
    rec.task_gen = (uint32_t)t->cur.gen;
    int rc = log_append(w, &rec);
    pthread_mutex_unlock(&w->tasks_mu);
    wr_notify(w, 1);
    return rc;
}

void ipc_writer_get_stats(const ipc_writer *w, ipc_writer_stats *out)
{
    ipc_producer *p = w->prod;
    uint64_t skipped = atomic_load_explicit(&p->log_skipped, memory_order_relaxed);
    /* every claimed ticket is committed or skipped (claims in flight are momentary) */
    out->events_published = atomic_load_explicit(&p->log_tail, memory_order_relaxed) - skipped;
    out->events_dropped = atomic_load_explicit(&p->events_dropped, memory_order_relaxed) + skipped;
    out->progress_updates = atomic_load_explicit(&p->progress_updates, memory_order_relaxed);
    out->term_bytes_written = atomic_load_explicit(&p->term_bytes_written, memory_order_relaxed);
    out->term_bytes_dropped = atomic_load_explicit(&p->term_bytes_dropped, memory_order_relaxed);
    out->wakeups = atomic_load_explicit(&p->wakeups, memory_order_relaxed);
    out->ring_lost = ipc_rescue_faulted(w->ring_rescue);
    out->doorbells_lost = (uint32_t)atomic_load_explicit(&w->db_lost, memory_order_relaxed);
}

const char *ipc_writer_path(const ipc_writer *w)
{
    return w->path;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static void random_nonce(uint8_t nonce[16])
{
    if (getrandom(nonce, 16, GRND_NONBLOCK) == 16)
        return;
    static _Atomic uint64_t counter;
    uint64_t a = ipc_now_realtime_ns() ^ ((uint64_t)getpid() << 32);
    uint64_t b = ipc_now_mono_ns() + atomic_fetch_add(&counter, 1);
    memcpy(nonce, &a, 8);
    memcpy(nonce + 8, &b, 8);
}

static void set_region(ipc_header *h, uint32_t idx, uint32_t type, uint32_t elem, uint32_t count,
                       size_t *off)
{
    ipc_region *r = &h->regions[idx];
    r->type = type;
    r->elem_size = elem;
    r->count = count;
    r->flags = 0;
    r->offset = *off;
    r->length = page_round((size_t)elem * count);
    *off += (size_t)r->length;
}

static void copy_id(char dst[64], const char *s)
{
    memset(dst, 0, 64);
    if (s != NULL)
        memcpy(dst, s, strlen(s));
}

static void writer_free_mem(ipc_writer *w)
{
    free(w->tasks);
    free(w->rings);
    free(w->freeq);
    free(w);
}

int ipc_writer_open(const ipc_writer_config *cfg, ipc_writer **out)
{
    if (cfg == NULL || out == NULL || cfg->dir == NULL || cfg->agent_id == NULL ||
        cfg->project_id == NULL)
        return IPC_EINVAL;
    *out = NULL;
    if (!ipc_id_valid(cfg->agent_id, strnlen(cfg->agent_id, 64)) ||
        !ipc_id_valid(cfg->project_id, strnlen(cfg->project_id, 64)) ||
        (cfg->owner != NULL && !ipc_id_valid(cfg->owner, strnlen(cfg->owner, 64))))
        return IPC_EINVAL;
    uint32_t nslots = cfg->log_slots ? cfg->log_slots : IPC_LOG_SLOTS_DEFAULT;
    uint32_t ntasks = cfg->max_tasks ? cfg->max_tasks : IPC_TASKS_DEFAULT;
    uint32_t nrings = cfg->term_rings == UINT32_MAX ? 0u
                      : cfg->term_rings ? cfg->term_rings
                                        : IPC_TERM_RINGS_DEFAULT;
    uint32_t rbytes = cfg->term_ring_bytes ? cfg->term_ring_bytes : IPC_TERM_BYTES_DEFAULT;
    if (!is_pow2(nslots) || nslots < IPC_LOG_SLOTS_MIN || nslots > IPC_LOG_SLOTS_MAX ||
        ntasks > IPC_TASKS_MAX || nrings > IPC_TERM_RINGS_MAX || !is_pow2(rbytes) ||
        rbytes < IPC_TERM_BYTES_MIN || rbytes > IPC_TERM_BYTES_MAX)
        return IPC_EINVAL;

    ipc_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return IPC_ENOMEM;
    w->fd = -1;
    w->ring_rescue = -1;
    atomic_init(&w->db_rescue, -1);
    w->tasks = calloc(ntasks, sizeof *w->tasks);
    w->rings = calloc(nrings ? nrings : 1, sizeof *w->rings);
    w->freeq = calloc(nrings ? nrings : 1, sizeof *w->freeq);
    if (w->tasks == NULL || w->rings == NULL || w->freeq == NULL) {
        writer_free_mem(w);
        return IPC_ENOMEM;
    }
    if (strlen(cfg->dir) + 200 >= sizeof w->dir) {
        writer_free_mem(w);
        return IPC_EINVAL;
    }
    strcpy(w->dir, cfg->dir);
    w->nslots = nslots;
    w->ntasks = ntasks;
    w->nrings = nrings;
    w->ring_bytes = rbytes;
    for (uint32_t r = 0; r < nrings; r++)
        w->freeq[r] = r;
    w->freeq_count = nrings;

    /* Geometry. */
    ipc_header proto;
    memset(&proto, 0, sizeof proto);
    size_t off = IPC_HEADER_SIZE;
    set_region(&proto, 0, IPC_REGION_PRODUCER, sizeof(ipc_producer), 1, &off);
    set_region(&proto, 1, IPC_REGION_CONSUMER, sizeof(ipc_consumer), 1, &off);
    set_region(&proto, 2, IPC_REGION_LOG, sizeof(ipc_log_slot), nslots, &off);
    set_region(&proto, 3, IPC_REGION_STATUS, sizeof(ipc_status_slot), 1, &off);
    set_region(&proto, 4, IPC_REGION_TASKS, sizeof(ipc_task_slot), ntasks, &off);
    set_region(&proto, 5, IPC_REGION_TERM_CTL, sizeof(ipc_term_ctl), nrings, &off);
    set_region(&proto, 6, IPC_REGION_TERM_DATA, rbytes, nrings, &off);
    w->size = off;

    uint8_t nonce[16];
    random_nonce(nonce);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", nonce[i]);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.tmp.%d.%s", cfg->dir, (int)getpid(), hex);
    snprintf(w->path, sizeof w->path, "%s/%s.%d.%s.ring", cfg->dir, cfg->agent_id, (int)getpid(),
             hex);

    int err = 0;
    w->fd = open(tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0660);
    if (w->fd == -1) {
        err = errno;
        writer_free_mem(w);
        errno = err;
        return IPC_ESYS;
    }
    /* 0660 whatever the umask: the sidecar may run as another uid sharing the group (fsGroup). */
    if (fchmod(w->fd, 0660) == -1)
        goto fail_sys;
    /* Pre-allocate: a full volume fails here, never as SIGBUS on a later store. */
    int frc = fallocate(w->fd, 0, 0, (off_t)w->size);
    if (frc == -1 && (errno == EOPNOTSUPP || errno == ENOSYS))
        frc = (errno = posix_fallocate(w->fd, 0, (off_t)w->size)) == 0 ? 0 : -1;
    if (frc == -1)
        goto fail_sys;
    w->base = ipc_map_file(w->fd, w->size, 1);
    if (w->base == NULL)
        goto fail_sys;
    /* Another process of the pod (same group) may truncate the ring: our stores then go to zero
     * pages instead of raising SIGBUS in the agent (docs/ring.md "Hostile peers"). */
    w->ring_rescue = ipc_rescue_add(w->base, w->size);

    ipc_header *h = (ipc_header *)(void *)w->base;
    memcpy(h->magic, IPC_MAGIC, 8);
    h->major = IPC_LAYOUT_MAJOR;
    h->minor = IPC_LAYOUT_MINOR;
    h->header_size = IPC_HEADER_SIZE;
    h->file_size = w->size;
    h->page_size = IPC_PAGE;
    h->region_count = 7;
    h->required_features = IPC_FEAT_HASH4;
    memcpy(h->nonce, nonce, 16);
    h->pid = (int32_t)getpid();
    h->sdk_version = (0u << 16) | (1u << 8) | 0u;
    h->start_ns = ipc_now_realtime_ns();
    copy_id(h->agent_id, cfg->agent_id);
    copy_id(h->project_id, cfg->project_id);
    copy_id(h->owner, cfg->owner);
    h->term_chunk = IPC_TERM_CHUNK;
    memcpy(h->regions, proto.regions, sizeof h->regions);

    w->hdr = h;
    w->prod = (ipc_producer *)(void *)(w->base + h->regions[0].offset);
    w->log = (ipc_log_slot *)(void *)(w->base + h->regions[2].offset);
    w->status = (ipc_status_slot *)(void *)(w->base + h->regions[3].offset);
    w->tslots = (ipc_task_slot *)(void *)(w->base + h->regions[4].offset);
    w->tctl = (ipc_term_ctl *)(void *)(w->base + h->regions[5].offset);
    w->tdata = w->base + h->regions[6].offset;
    for (uint32_t i = 0; i < nslots; i++)
        atomic_store_explicit(&w->log[i].seq, IPC_SEQ(i, IPC_SLOT_FREE), memory_order_relaxed);

    if (flock(w->fd, LOCK_EX | LOCK_NB) == -1)
        goto fail_sys;
    /* release: pairs with the reader's acquire load of state: the whole initialisation is
     * visible to a reader that sees READY. */
    atomic_store_explicit(&h->state, IPC_STATE_READY, memory_order_release);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, w->path, RENAME_NOREPLACE) == -1) {
        if (errno != EINVAL && errno != ENOSYS)
            goto fail_sys;
        if (rename(tmp, w->path) == -1)
            goto fail_sys;
    }

    pthread_mutex_init(&w->status_mu, NULL);
    pthread_mutex_init(&w->tasks_mu, NULL);
    for (uint32_t r = 0; r < nrings; r++)
        pthread_mutex_init(&w->rings[r].mu, NULL);
    atomic_init(&w->db, NULL);
    atomic_init(&w->db_rescue, -1);
    atomic_init(&w->db_lost, 0);
    atomic_init(&w->db_next_check, 0);
    (void)wr_doorbell_find(w);
    *out = w;
    return IPC_OK;

fail_sys:
    err = errno;
    ipc_rescue_remove(w->ring_rescue);
    ipc_unmap(w->base, w->size);
    unlink(tmp);
    close(w->fd);
    writer_free_mem(w);
    errno = err;
    return IPC_ESYS;
}

void ipc_writer_close(ipc_writer *w)
{
    if (w == NULL)
        return;
    /* release: a reader that sees the lock gone and then CLOSED sees every record before it. */
    atomic_store_explicit(&w->hdr->state, IPC_STATE_CLOSED, memory_order_release);
    atomic_store_explicit(&w->db_next_check, 0, memory_order_relaxed);
    wr_notify(w, 0);
    ipc_doorbell_shm *db = atomic_load_explicit(&w->db, memory_order_acquire);
    ipc_rescue_remove(atomic_load_explicit(&w->db_rescue, memory_order_acquire));
    ipc_unmap(db, IPC_PAGE);
    ipc_rescue_remove(w->ring_rescue);
    ipc_unmap(w->base, w->size);
    /* Explicit unlock: the lock belongs to the open file description, which a fork child may
     * still share until its atfork handler has closed its copy. */
    flock(w->fd, LOCK_UN);
    close(w->fd); /* the reader sees the agent gone */
    pthread_mutex_destroy(&w->status_mu);
    pthread_mutex_destroy(&w->tasks_mu);
    for (uint32_t r = 0; r < w->nrings; r++)
        pthread_mutex_destroy(&w->rings[r].mu);
    writer_free_mem(w);
}

void ipc_writer_abandon(ipc_writer *w)
{
    if (w != NULL && w->fd != -1) {
        close(w->fd);
        w->fd = -1;
    }
}

void ipc_writer_free_abandoned(ipc_writer *w)
{
    if (w == NULL)
        return;
    ipc_writer_abandon(w);
    ipc_rescue_remove(atomic_load_explicit(&w->db_rescue, memory_order_acquire));
    ipc_unmap(atomic_load_explicit(&w->db, memory_order_acquire), IPC_PAGE);
    ipc_rescue_remove(w->ring_rescue);
    ipc_unmap(w->base, w->size);
    writer_free_mem(w);
}
