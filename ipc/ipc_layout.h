/*
 * ipc_layout.h — the byte layout of a Ringside ring file and of the pod doorbell (an ABI).
 *
 * Shared between the writer (agent SDK) and the reader (sidecar).  Fixed-width types only, no
 * pointers; every offset is pinned by a _Static_assert.  docs/ring.md describes the protocol and
 * the memory-ordering argument for each atomic.  Layout changes follow the versioning rules there:
 * a new field goes in reserved space and bumps IPC_LAYOUT_MINOR; anything else bumps the major.
 *
 * File = header (4 KiB) followed by page-aligned regions found through the region table:
 *   PRODUCER  producer control: log tail and counters (agent writes)
 *   CONSUMER  consumer hints (sidecar writes; the agent never reads them)
 *   LOG       status and task-lifecycle event log: fixed slots with per-slot commit word (MPSC)
 *   STATUS    latest-status snapshot (seqcount latch)
 *   TASKS     per-task slots (seqcount latch): state, progress
 *   TERM_CTL  per terminal ring: tail, tail_intent, owner latch
 *   TERM_DATA terminal byte rings (SPSC per ring, overwrite-oldest, 4 KiB chunks)
 */
#ifndef RINGSIDE_IPC_LAYOUT_H
#define RINGSIDE_IPC_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
#error "ringside rings need lock-free 32- and 64-bit atomics"
#endif

#define IPC_MAGIC "RNGSIDE1" /* 8 bytes, no NUL stored */
#define IPC_LAYOUT_MAJOR 1u
#define IPC_LAYOUT_MINOR 0u
#define IPC_PAGE 4096u
#define IPC_HEADER_SIZE 4096u
#define IPC_BLOCK 128u /* one shared scalar group per block (2 cache lines: adjacent-line prefetch) */

/* Header state word (written with release; READY last at creation, CLOSED at rs_close). */
#define IPC_STATE_INIT 0u
#define IPC_STATE_READY 1u
#define IPC_STATE_CLOSED 2u

/* Required feature bits (header.required_features): a reader refuses a ring with a bit it does
 * not know (IPC_EVERSION), so a changed record format never reaches an older reader.
 * IPC_FEAT_HASH4: the log record check is ipc_hash4 (four independent lanes), not ipc_hash. */
#define IPC_FEAT_HASH4 (UINT64_C(1) << 0)
#define IPC_FEAT_KNOWN IPC_FEAT_HASH4

/* Region types. */
enum {
    IPC_REGION_PRODUCER = 1,
    IPC_REGION_CONSUMER = 2,
    IPC_REGION_LOG = 3,
    IPC_REGION_STATUS = 4,
    IPC_REGION_TASKS = 5,
    IPC_REGION_TERM_CTL = 6,
    IPC_REGION_TERM_DATA = 7
};
#define IPC_REGION_MAX 8

/* Geometry limits the reader accepts (and the writer enforces). */
#define IPC_LOG_SLOTS_MIN 8u
#define IPC_LOG_SLOTS_MAX 65536u
#define IPC_TASKS_MAX 1024u
#define IPC_TERM_RINGS_MAX 256u
#define IPC_TERM_BYTES_MIN 8192u
#define IPC_TERM_BYTES_MAX (64u << 20)
#define IPC_FILE_MAX ((uint64_t)1 << 31)

/* Defaults. */
#define IPC_LOG_SLOTS_DEFAULT 512u
#define IPC_TASKS_DEFAULT 64u
#define IPC_TERM_RINGS_DEFAULT 4u
#define IPC_TERM_BYTES_DEFAULT (1u << 20)

typedef struct ipc_region {
    uint32_t type;      /* IPC_REGION_* */
    uint32_t elem_size; /* stride in bytes, multiple of 64, >= the struct of this version */
    uint32_t count;     /* number of elements */
    uint32_t flags;     /* 0 */
    uint64_t offset;    /* from file start; page aligned */
    uint64_t length;    /* elem_size * count rounded up to a page */
} ipc_region;
_Static_assert(sizeof(ipc_region) == 32, "ipc_region");

/* The header: immutable after READY, except state. */
typedef struct ipc_header {
    uint8_t magic[8];           /* IPC_MAGIC */
    uint16_t major;             /* IPC_LAYOUT_MAJOR: a reader refuses another major */
    uint16_t minor;             /* IPC_LAYOUT_MINOR: a reader accepts any minor */
    uint32_t header_size;       /* IPC_HEADER_SIZE */
    uint64_t file_size;         /* == st_size */
    uint32_t page_size;         /* IPC_PAGE */
    uint32_t region_count;      /* <= IPC_REGION_MAX */
    uint64_t required_features; /* unknown bit set: refuse */
    uint64_t optional_features; /* unknown bits ignored */
    uint8_t nonce[16];          /* random; also in the file name */
    int32_t pid;                /* diagnostic: pid in the agent's namespace */
    uint32_t sdk_version;       /* major << 16 | minor << 8 | patch */
    uint64_t start_ns;          /* CLOCK_REALTIME at open */
    char agent_id[64];          /* NUL-padded, 1..63 bytes of [A-Za-z0-9._:@-] */
    char project_id[64];        /* same */
    char owner[64];             /* same, or empty */
    uint32_t term_chunk;        /* IPC_TERM_CHUNK */
    uint8_t reserved0[236];
    ipc_region regions[IPC_REGION_MAX];
    uint8_t reserved1[1280];
    _Atomic uint32_t state; /* IPC_STATE_*: READY stored (release) last at creation */
    uint8_t reserved2[2044];
} ipc_header;
_Static_assert(offsetof(ipc_header, major) == 8, "hdr");
_Static_assert(offsetof(ipc_header, header_size) == 12, "hdr");
_Static_assert(offsetof(ipc_header, file_size) == 16, "hdr");
_Static_assert(offsetof(ipc_header, page_size) == 24, "hdr");
_Static_assert(offsetof(ipc_header, region_count) == 28, "hdr");
_Static_assert(offsetof(ipc_header, required_features) == 32, "hdr");
_Static_assert(offsetof(ipc_header, nonce) == 48, "hdr");
_Static_assert(offsetof(ipc_header, pid) == 64, "hdr");
_Static_assert(offsetof(ipc_header, start_ns) == 72, "hdr");
_Static_assert(offsetof(ipc_header, agent_id) == 80, "hdr");
_Static_assert(offsetof(ipc_header, project_id) == 144, "hdr");
_Static_assert(offsetof(ipc_header, owner) == 208, "hdr");
_Static_assert(offsetof(ipc_header, term_chunk) == 272, "hdr");
_Static_assert(offsetof(ipc_header, regions) == 512, "hdr");
_Static_assert(offsetof(ipc_header, state) == 2048, "hdr");
_Static_assert(sizeof(ipc_header) == IPC_HEADER_SIZE, "hdr");

/* PRODUCER region (one element). */
typedef struct ipc_producer {
    _Atomic uint64_t log_tail; /* next ticket to claim; CAS by agent threads */
    uint8_t pad0[IPC_BLOCK - 8];
    /* Counters (fetch_add relaxed by agent threads; events_dropped and progress_updates also
     * release: the reader's acquire load of them orders its later slot reads). */
    _Atomic uint64_t events_published; /* not maintained (stays 0): a locked add per record on
                                        * this line cost the reader a cache miss per poll; the
                                        * count is log_tail - log_skipped */
    _Atomic uint64_t events_dropped; /* log full or claim contention: newest dropped */
    _Atomic uint64_t progress_updates;
    _Atomic uint64_t term_bytes_written;
    _Atomic uint64_t term_bytes_dropped; /* no terminal ring available, or write larger than ring */
    _Atomic uint64_t wakeups;
    _Atomic uint64_t log_skipped; /* the agent found its claimed slot skipped by the reader */
    uint8_t pad1[IPC_BLOCK - 56];
    uint8_t reserved[IPC_PAGE - 2 * IPC_BLOCK];
} ipc_producer;
_Static_assert(offsetof(ipc_producer, events_published) == 128, "prod");
_Static_assert(offsetof(ipc_producer, events_dropped) == 136, "prod");
_Static_assert(offsetof(ipc_producer, progress_updates) == 144, "prod");
_Static_assert(offsetof(ipc_producer, log_skipped) == 176, "prod");
_Static_assert(sizeof(ipc_producer) == IPC_PAGE, "prod");

/* CONSUMER region (one element): hints written by the sidecar, never read by the agent. */
typedef struct ipc_consumer {
    _Atomic uint64_t log_head; /* diagnostic */
    uint8_t pad0[IPC_BLOCK - 8];
    uint8_t reserved[IPC_PAGE - IPC_BLOCK];
} ipc_consumer;
_Static_assert(sizeof(ipc_consumer) == IPC_PAGE, "cons");

/* ---- Event log ------------------------------------------------------------------------------
 * Slot word seq = ticket << 2 | state.  FREE(t): slot may be claimed by ticket t.  Slot i starts as
 * FREE(i).  Transitions: producer FREE(t)->BUSY(t)->DONE(t); reader DONE(t)->FREE(t+N);
 * reader BUSY(t)|FREE(t)->SKIPPED(t) after a timeout or agent death; the producer that finds its
 * slot SKIPPED(t) moves it to FREE(t+N); the reader reclaims a leaked SKIPPED(t) at lap t+N. */
#define IPC_SLOT_FREE 0u
#define IPC_SLOT_BUSY 1u
#define IPC_SLOT_DONE 2u
#define IPC_SLOT_SKIPPED 3u
#define IPC_SEQ(ticket, state) (((uint64_t)(ticket) << 2) | (uint64_t)(state))

/* Log record types (also ipc_event_type values). */
#define IPC_REC_STATUS 1u
#define IPC_REC_TASK_START 2u
#define IPC_REC_TASK_END 3u

#define IPC_NO_RING 0xffffu

/* Record payload, built on the producer's stack, then copied into the slot after the claim. */
typedef struct ipc_log_rec {
    uint64_t ticket;          /* == the slot's ticket (stale-lap detection) */
    uint64_t ts_ns;           /* CLOCK_REALTIME at publish */
    uint64_t status_seq;      /* STATUS: transition number (1, 2, ...) */
    uint64_t term_end[2];     /* TASK_END: ring position after the task's last record, per stream */
    uint64_t term_written[2]; /* TASK_END: data bytes written by the task, per stream */
    uint32_t term_owner[2];   /* TASK_END: ring owner generation per stream */
    uint16_t term_ring[2];    /* TASK_END: ring index per stream, IPC_NO_RING for none */
    uint8_t type;             /* IPC_REC_* */
    uint8_t status;           /* STATUS: rs_status; TASK_END: outcome */
    uint8_t task_len;         /* TASK_*: 1..63 */
    uint8_t reserved0;
    int32_t exit_code;   /* TASK_END */
    uint16_t detail_len; /* 0..255: status detail or task title */
    uint16_t task_slot;  /* TASK_*: index of the task's slot in TASKS */
    uint32_t check;      /* ipc_hash4 (IPC_FEAT_HASH4, else ipc_hash) of the record with check = 0,
                          * over ipc_log_rec_used() bytes */
    uint32_t task_gen;   /* TASK_*: low 32 bits of the slot's gen for this task */
    char task_id[64];
    char detail[256];
} ipc_log_rec;
_Static_assert(offsetof(ipc_log_rec, ts_ns) == 8, "rec");
_Static_assert(offsetof(ipc_log_rec, term_end) == 24, "rec");
_Static_assert(offsetof(ipc_log_rec, term_written) == 40, "rec");
_Static_assert(offsetof(ipc_log_rec, term_owner) == 56, "rec");
_Static_assert(offsetof(ipc_log_rec, term_ring) == 64, "rec");
_Static_assert(offsetof(ipc_log_rec, type) == 68, "rec");
_Static_assert(offsetof(ipc_log_rec, exit_code) == 72, "rec");
_Static_assert(offsetof(ipc_log_rec, detail_len) == 76, "rec");
_Static_assert(offsetof(ipc_log_rec, check) == 80, "rec");
_Static_assert(offsetof(ipc_log_rec, task_id) == 88, "rec");
_Static_assert(offsetof(ipc_log_rec, detail) == 152, "rec");
_Static_assert(sizeof(ipc_log_rec) == 408, "rec");

typedef struct ipc_log_slot {
    _Atomic uint64_t seq; /* IPC_SEQ(ticket, state) */
    uint64_t reserved;
    ipc_log_rec rec;
    uint8_t pad[512 - 16 - sizeof(ipc_log_rec)];
} ipc_log_slot;
_Static_assert(offsetof(ipc_log_slot, rec) == 16, "slot");
_Static_assert(sizeof(ipc_log_slot) == 512, "slot");

/* Bytes of a record covered by the check and copied: everything up to the used detail bytes,
 * rounded up to 8. */
static inline size_t ipc_log_rec_used(uint16_t detail_len)
{
    size_t n = offsetof(ipc_log_rec, detail) + (size_t)detail_len;
    n = (n + 7u) & ~(size_t)7u;
    return n > sizeof(ipc_log_rec) ? sizeof(ipc_log_rec) : n;
}

/* ---- Seqcount latch (status snapshot, task slots, terminal ring owner) ------------------------
 * latch word even: copy[0] is stable; odd: copy[1] is stable (Linux raw_write_seqcount_latch). */

typedef struct ipc_status_copy {
    uint64_t status_seq; /* 0: never set */
    uint64_t ts_ns;
    uint8_t status;
    uint8_t reserved0;
    uint16_t detail_len;
    uint32_t reserved1;
    char detail[256];
    uint8_t pad[8];
} ipc_status_copy;
_Static_assert(sizeof(ipc_status_copy) == 288, "status copy");

typedef struct ipc_status_slot {
    _Atomic uint64_t latch;
    uint8_t pad0[IPC_BLOCK - 8];
    ipc_status_copy copy[2];
    uint8_t pad1[1024 - IPC_BLOCK - 2 * sizeof(ipc_status_copy)];
} ipc_status_slot;
_Static_assert(offsetof(ipc_status_slot, copy) == 128, "status slot");
_Static_assert(sizeof(ipc_status_slot) == 1024, "status slot");

#define IPC_TASK_FREE 0u
#define IPC_TASK_RUNNING 1u
#define IPC_TASK_ENDED 2u

typedef struct ipc_task_copy {
    uint64_t gen;          /* bumps each time the slot is given to a task */
    uint64_t progress_seq; /* bumps on each progress update */
    uint64_t ts_ns;        /* of the last update */
    uint64_t start_ns;     /* task start */
    uint32_t current_step;
    uint32_t total_steps;
    int32_t exit_code; /* ENDED */
    uint8_t state;     /* IPC_TASK_* */
    uint8_t outcome;   /* ENDED: rs_status */
    uint8_t task_len;
    uint8_t reserved0;
    uint16_t msg_len;
    uint8_t reserved1[14];
    char task_id[64];
    char msg[256];
} ipc_task_copy;
_Static_assert(offsetof(ipc_task_copy, current_step) == 32, "task copy");
_Static_assert(offsetof(ipc_task_copy, state) == 44, "task copy");
_Static_assert(offsetof(ipc_task_copy, msg_len) == 48, "task copy");
_Static_assert(offsetof(ipc_task_copy, task_id) == 64, "task copy");
_Static_assert(sizeof(ipc_task_copy) == 384, "task copy");

typedef struct ipc_task_slot {
    _Atomic uint64_t latch;
    uint8_t pad0[IPC_BLOCK - 8];
    ipc_task_copy copy[2];
    uint8_t pad1[1024 - IPC_BLOCK - 2 * sizeof(ipc_task_copy)];
} ipc_task_slot;
_Static_assert(offsetof(ipc_task_slot, copy) == 128, "task slot");
_Static_assert(sizeof(ipc_task_slot) == 1024, "task slot");

/* ---- Terminal rings ---------------------------------------------------------------------------
 * Positions are absolute byte offsets (never wrap in practice: 2^64).  A record never straddles a
 * IPC_TERM_CHUNK boundary; when fewer than IPC_TERM_MIN_REC bytes remain in a chunk both sides
 * skip to the next chunk, so every chunk starts with a record header (the resync point). */
#define IPC_TERM_CHUNK 4096u
#define IPC_TERM_HDR 40u
#define IPC_TERM_MIN_REC 48u /* header + at least one data byte, 8-aligned */
#define IPC_TERM_DATA 1u

typedef struct ipc_term_rec {
    uint32_t len;      /* whole record, 8-aligned, == align8(IPC_TERM_HDR + data_len) */
    uint16_t type;     /* IPC_TERM_DATA */
    uint16_t stream;   /* 1 stdout, 2 stderr */
    uint32_t owner;    /* ring owner generation (ipc_term_owner.gen) */
    uint32_t data_len; /* 1 .. IPC_TERM_CHUNK - IPC_TERM_HDR */
    uint64_t pos;      /* absolute ring position of this record */
    uint64_t data_pos; /* data bytes of this (task, stream) written before this record */
    uint64_t ts_ns;
} ipc_term_rec;
_Static_assert(offsetof(ipc_term_rec, owner) == 8, "term rec");
_Static_assert(offsetof(ipc_term_rec, pos) == 16, "term rec");
_Static_assert(offsetof(ipc_term_rec, data_pos) == 24, "term rec");
_Static_assert(sizeof(ipc_term_rec) == IPC_TERM_HDR, "term rec");

typedef struct ipc_term_owner {
    uint32_t gen;     /* 0: never assigned */
    uint8_t stream;   /* 1 stdout, 2 stderr */
    uint8_t task_len; /* 1..63 */
    uint16_t reserved;
    char task_id[64];
    uint8_t pad[24];
} ipc_term_owner;
_Static_assert(sizeof(ipc_term_owner) == 96, "term owner");

typedef struct ipc_term_ctl {
    _Atomic uint64_t tail;        /* end of the last complete record (release, once per write) */
    _Atomic uint64_t tail_intent; /* end of the record being written (before its bytes) */
    uint8_t pad0[IPC_BLOCK - 16];
    _Atomic uint64_t owner_latch;
    uint8_t pad1[56];
    ipc_term_owner owner[2];
    uint8_t pad2[512 - 192 - 2 * sizeof(ipc_term_owner)];
} ipc_term_ctl;
_Static_assert(offsetof(ipc_term_ctl, owner_latch) == 128, "term ctl");
_Static_assert(offsetof(ipc_term_ctl, owner) == 192, "term ctl");
_Static_assert(sizeof(ipc_term_ctl) == 512, "term ctl");

/* ---- Doorbell file (dir/doorbell) -------------------------------------------------------------- */
#define IPC_DOORBELL_MAGIC "RSDBELL1"
#define IPC_DOORBELL_NAME "doorbell"

typedef struct ipc_doorbell_shm {
    uint8_t magic[8]; /* written last by the sidecar at creation */
    uint32_t version; /* 1 */
    uint32_t reserved0;
    uint8_t pad0[IPC_BLOCK - 16];
    _Atomic uint32_t sleeping; /* 1: the reader is about to wait or waiting */
    uint8_t pad1[IPC_BLOCK - 4];
    _Atomic uint32_t seq; /* futex word (shared, not FUTEX_PRIVATE) */
    uint8_t pad2[IPC_BLOCK - 4];
    uint8_t reserved[IPC_PAGE - 3 * IPC_BLOCK];
} ipc_doorbell_shm;
_Static_assert(offsetof(ipc_doorbell_shm, sleeping) == 128, "doorbell");
_Static_assert(offsetof(ipc_doorbell_shm, seq) == 256, "doorbell");
_Static_assert(sizeof(ipc_doorbell_shm) == IPC_PAGE, "doorbell");

#endif /* RINGSIDE_IPC_LAYOUT_H */
