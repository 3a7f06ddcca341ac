#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub.h"
#include "ipc_reader.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define POLL_BUDGET 256          /* events per ring per drain round (bounded work, A3) */
#define LIVENESS_PERIOD_S 0.25   /* flock probe period: death seen within 1 s (A4) */
#define RESCAN_PERIOD_S 2.0      /* directory rescan, in case inotify missed something */
#define DOORBELL_TIMEOUT_MS 100  /* safety net for lost wakes; also samples progress slots */
#define FINAL_DRAIN_ROUNDS 64    /* a dead agent's ring is drained at most this many rounds */
#define MAX_QUARANTINED 1024
#define RESCAN_MAX 65536         /* ring files considered per rescan */

typedef struct ring {
    ipc_reader *r;
    ipc_identity id;
    char path[PATH_MAX];
    dev_t dev;
    ino_t ino;
    uint64_t serial; /* opaque number for metrics labels (no agent id or pid by default) */
    watch *w;
    struct ring *next;
} ring;

typedef struct bad_file {
    dev_t dev;
    ino_t ino;
} bad_file;

struct watch {
    struct ev_loop *loop;
    const config *cfg;
    struct hub *hub;
    ring *rings;
    size_t n_rings;
    uint64_t rings_seen; /* serial of the last ring attached */
    int ifd;
    ev_io inotify_io;
    ev_timer rescan_timer;
    ev_timer liveness_timer;
    ev_async wake;
    ev_idle more; /* rings had more than one budget of events: continue next iteration */
    ipc_doorbell *db;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int armed;
    uint32_t armed_seq;
    int stop;
    bad_file bad[MAX_QUARANTINED];
    size_t n_bad;
    uint64_t retry_logged_mono; /* last "ring open failed: retrying" line */
    uint64_t retry_suppressed;  /* such failures not logged since */
    uint64_t limit_logged_mono; /* last "--max-rings reached" line */
};

/* ---- ring lifecycle ---------------------------------------------------------------------------- */

static void on_event(void *ud, const ipc_event *ev)
{
    ring *rg = ud;
    hub_ring_event(rg->w->hub, &rg->id, ev);
}

static ring *ring_alloc(watch *w)
{
    ring *rg = xcalloc(1, sizeof *rg);
    rg->w = w;
    rg->serial = ++w->rings_seen;
    return rg;
}

static int is_bad(const watch *w, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < w->n_bad; i++) {
        if (w->bad[i].dev == dev && w->bad[i].ino == ino)
            return 1;
    }
    return 0;
}

static void mark_bad(watch *w, dev_t dev, ino_t ino)
{
    if (w->n_bad == MAX_QUARANTINED) {
        memmove(w->bad, w->bad + 1, sizeof w->bad[0] * (MAX_QUARANTINED - 1));
        w->n_bad--;
    }
    w->bad[w->n_bad].dev = dev;
    w->bad[w->n_bad].ino = ino;
    w->n_bad++;
}

static void ring_remove(watch *w, ring *rg, int unlink_file)
{
    for (ring **pp = &w->rings; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == rg) {
            *pp = rg->next;
            break;
        }
    }
    w->n_rings--;
    g_metrics.rings_active = w->n_rings;
    if (unlink_file && unlink(rg->path) == -1 && errno != ENOENT)
        log_warn("could not remove ring file", "\"path\":\"%s\",\"errno\":%d", rg->path, errno);
    ipc_reader_free(rg->r);
    free(rg);
}

static void quarantine(watch *w, ring *rg, int err)
{
    g_metrics.rings_quarantined++;
    log_error("ring quarantined", "\"agent\":\"%s\",\"path\":\"%s\",\"error\":\"%s\"", rg->id.agent_id,
              rg->path, ipc_strerror(err));
    mark_bad(w, rg->dev, rg->ino);
    hub_ring_detached(w->hub, &rg->id, 0);
    ring_remove(w, rg, 0);
}

/* Drains one ring by up to `rounds` budgets.  Returns 1 if events remain, 0 if drained, -1 if the
 * ring was quarantined (rg is freed). */
static int ring_drain(watch *w, ring *rg, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        int n = ipc_reader_poll(rg->r, POLL_BUDGET, on_event, rg);
        if (n < 0) {
            quarantine(w, rg, n);
            return -1;
        }
        if (n < POLL_BUDGET)
            return 0;
    }
    return 1;
}

static int drain_all(watch *w);

/* 1 if ipc_reader_open failed for want of a resource (fds, memory), not because of the file. */
static int ring_open_transient(int rc, int err)
{
    if (rc == IPC_ENOMEM)
        return 1;
    return rc == IPC_ESYS &&
           (err == EMFILE || err == ENFILE || err == ENOMEM || err == EAGAIN || err == EINTR);
}

static void try_open(watch *w, const char *name)
{
    size_t len = strlen(name);
    if (name[0] == '.' || len < 6 || strcmp(name + len - 5, ".ring") != 0)
        return;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", w->cfg->shm_dir, name) >= (int)sizeof path)
        return;
    struct stat st;
    if (lstat(path, &st) == -1 || !S_ISREG(st.st_mode))
        return;
    for (ring *rg = w->rings; rg != NULL; rg = rg->next) {
        if (rg->dev == st.st_dev && rg->ino == st.st_ino)
            return;
    }
    if (is_bad(w, st.st_dev, st.st_ino))
        return;
    if (w->n_rings >= (size_t)w->cfg->max_rings) {
        /* Not an error of the ring: it attaches on a later scan, once another ring has ended. */
        g_metrics.rings_over_limit++;
        uint64_t now = util_mono_ns();
        if (now - w->limit_logged_mono >= 1000000000ull) {
            log_warn("ring not read: --max-rings reached", "\"path\":\"%s\",\"max_rings\":%ld",
                     path, w->cfg->max_rings);
            w->limit_logged_mono = now;
        }
        return;
    }
    ipc_reader *r = NULL;
    int rc = ipc_reader_open(path, &r);
    if (rc == IPC_ENOTREADY)
        return; /* the SDK is still initialising it; the rescan comes back */
    if (ring_open_transient(rc, errno)) {
        /* Out of fds or memory says nothing about the ring: the next rescan retries it. */
        g_metrics.rings_open_retried++;
        uint64_t now = util_mono_ns();
        if (now - w->retry_logged_mono >= 1000000000ull) {
            log_warn("ring open failed: retrying on the next scan",
                     "\"path\":\"%s\",\"error\":\"%s\",\"retry_in_s\":%.0f,\"suppressed\":%llu",
                     path, rc == IPC_ENOMEM ? "out of memory" : strerror(errno), RESCAN_PERIOD_S,
                     (unsigned long long)w->retry_suppressed);
            w->retry_logged_mono = now;
            w->retry_suppressed = 0;
        } else {
            w->retry_suppressed++;
        }
        return;
    }
    if (rc != IPC_OK) {
        g_metrics.rings_rejected++;
        mark_bad(w, st.st_dev, st.st_ino);
        log_error("ring rejected", "\"path\":\"%s\",\"error\":\"%s\"", path, ipc_strerror(rc));
        return;
    }
    const ipc_identity *ident = ipc_reader_identity(r);
    if (!config_project_allowed(w->cfg, ident->project_id)) {
        /* This pod may not publish for that project (--projects): nothing of the ring is read,
         * and it is not looked at again (D2). */
        g_metrics.tenancy_refusals[TENANCY_RING_PROJECT]++;
        mark_bad(w, st.st_dev, st.st_ino);
        log_warn("ring refused", "\"agent\":\"%s\",\"project\":\"%s\",\"pid\":%d,\"path\":\"%s\","
                 "\"reason\":\"project not in --projects\"",
                 ident->agent_id, ident->project_id, (int)ident->pid, path);
        ipc_reader_free(r);
        return;
    }
    ring *rg = ring_alloc(w);
    rg->r = r;
    rg->id = *ident;
    snprintf(rg->path, sizeof rg->path, "%s", path);
    rg->dev = st.st_dev;
    rg->ino = st.st_ino;
    /* Appended: rings are drained oldest first, so the events of an agent's successive
     * processes (one ringside-pub call after another) keep their order. */
    ring **pp = &w->rings;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = rg;
    w->n_rings++;
    g_metrics.rings_active = w->n_rings;
    log_info("agent ring attached", "\"agent\":\"%s\",\"project\":\"%s\",\"pid\":%d,\"path\":\"%s\"",
             rg->id.agent_id, rg->id.project_id, (int)rg->id.pid, path);
    hub_ring_attached(w->hub, &rg->id);
    /* Drained with every ring attached before it, oldest first: draining only the new ring
     * here would put its events ahead of an older ring's pending ones (an agent's next process
     * ahead of the last events of its previous one, seen as reordered `ringside-pub` calls). */
    if (drain_all(w))
        ev_idle_start(w->loop, &w->more);
}

static int cand_cmp(const void *a, const void *b)
{
    const struct timespec *x = a, *y = b; /* each candidate starts with its ctime */
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? -1 : 1;
    return x->tv_nsec < y->tv_nsec ? -1 : x->tv_nsec > y->tv_nsec;
}

static void rescan(watch *w)
{
    DIR *d = opendir(w->cfg->shm_dir);
    if (d == NULL) {
        log_error("cannot read shm dir", "\"path\":\"%s\",\"errno\":%d", w->cfg->shm_dir, errno);
        return;
    }
    /* Attach in the order the rings appeared (rename into place sets ctime), not readdir's. */
    struct cand {
        struct timespec t;
        char name[NAME_MAX + 1];
    } *c = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < RESCAN_MAX) {
        size_t len = strlen(de->d_name);
        struct stat st;
        if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".ring") != 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            c = xrealloc(c, cap * sizeof *c);
        }
        c[n].t = st.st_ctim;
        snprintf(c[n].name, sizeof c[n].name, "%s", de->d_name);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(c, n, sizeof *c, cand_cmp);
    for (size_t i = 0; i < n; i++)
        try_open(w, c[i].name);
    free(c);
}

/* ---- draining and the doorbell --------------------------------------------------------------- */

static int drain_all(watch *w)
{
    int more = 0;
    for (ring *rg = w->rings, *next; rg != NULL; rg = next) {
        next = rg->next;
        if (ring_drain(w, rg, 1) > 0)
            more = 1;
    }
    return more;
}

static int any_pending(watch *w)
{
    for (ring *rg = w->rings; rg != NULL; rg = rg->next) {
        if (ipc_reader_pending(rg->r))
            return 1;
    }
    return 0;
}

/* Tells the wake thread to sleep on the doorbell, unless a ring got work meanwhile. */
static void arm_and_sleep(watch *w)
{
    if (w->db == NULL)
        return;
    for (int i = 0; i < 4; i++) {
        uint32_t seq = ipc_doorbell_arm(w->db);
        if (!any_pending(w)) {
            pthread_mutex_lock(&w->mu);
            w->armed = 1;
            w->armed_seq = seq;
            pthread_cond_signal(&w->cv);
            pthread_mutex_unlock(&w->mu);
            return;
        }
        ipc_doorbell_disarm(w->db);
        if (drain_all(w)) {
            ev_idle_start(w->loop, &w->more);
            return;
        }
    }
    ev_idle_start(w->loop, &w->more);
}

static void wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    watch *w = container_of(a, watch, wake);
    if (w->db != NULL)
        ipc_doorbell_disarm(w->db);
    if (drain_all(w))
        ev_idle_start(w->loop, &w->more);
    else
        arm_and_sleep(w);
}

static void more_cb(struct ev_loop *loop, ev_idle *i, int revents)
{
    (void)revents;
    watch *w = container_of(i, watch, more);
    if (!drain_all(w)) {
        ev_idle_stop(loop, i);
        arm_and_sleep(w);
    }
}

static void *bell_thread(void *arg)
{
    watch *w = arg;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        while (!w->armed && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop)
            break;
        uint32_t seq = w->armed_seq;
        w->armed = 0;
        pthread_mutex_unlock(&w->mu);
        ipc_doorbell_wait(w->db, seq, DOORBELL_TIMEOUT_MS);
        ev_async_send(w->loop, &w->wake);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- timers and inotify ---------------------------------------------------------------------- */

static void liveness_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    watch *w = container_of(t, watch, liveness_timer);
    for (ring *rg = w->rings, *next; rg != NULL; rg = next) {
        next = rg->next;
        int alive = ipc_reader_alive(rg->r);
        if (alive != 0)
            continue;
        /* Last words: drain what the agent committed before it went. */
        int left = ring_drain(w, rg, FINAL_DRAIN_ROUNDS);
        if (left < 0)
            continue;
        int clean = ipc_reader_closed_cleanly(rg->r);
        log_write(clean ? LOG_DEBUG : LOG_WARN, "agent ring detached",
                  "\"agent\":\"%s\",\"pid\":%d,\"clean\":%s,\"undrained\":%s", rg->id.agent_id,
                  (int)rg->id.pid, clean ? "true" : "false", left ? "true" : "false");
        hub_ring_detached(w->hub, &rg->id, clean);
        ring_remove(w, rg, 1);
    }
}

static void rescan_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    rescan(container_of(t, watch, rescan_timer));
}

static void inotify_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    watch *w = container_of(io, watch, inotify_io);
    char evbuf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(w->ifd, evbuf, sizeof evbuf);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(evbuf + off);
            if (ev->mask & IN_Q_OVERFLOW)
                rescan(w);
            else if (ev->len > 0)
                try_open(w, ev->name);
            off += (ssize_t)(sizeof *ev + ev->len);
        }
    }
}

/* ---- setup ----------------------------------------------------------------------------------- */

static int prepare_dir(const config *cfg, char *errbuf, size_t errlen)
{
    struct stat st;
    if (stat(cfg->shm_dir, &st) == -1) {
        if (errno == ENOENT && strcmp(cfg->shm_dir, "/dev/shm/ringside") == 0 &&
            mkdir(cfg->shm_dir, 0770) == 0) {
            return 0;
        }
        snprintf(errbuf, errlen,
                 "--shm-dir %s: %s: create it (mkdir -p %s) or point --shm-dir at the shared "
                 "memory volume",
                 cfg->shm_dir, strerror(errno), cfg->shm_dir);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "--shm-dir %s: not a directory", cfg->shm_dir);
        return -1;
    }
    if (access(cfg->shm_dir, R_OK | W_OK | X_OK) != 0) {
        snprintf(errbuf, errlen,
                 "--shm-dir %s: not readable and writable by this user (uid %d): fix its "
                 "permissions or run as its owner",
                 cfg->shm_dir, (int)getuid());
        return -1;
    }
    return 0;
}

watch *watch_start(struct ev_loop *loop, const config *cfg, struct hub *h, char *errbuf,
                   size_t errlen)
{
    if (prepare_dir(cfg, errbuf, errlen) != 0)
        return NULL;
    watch *w = xcalloc(1, sizeof *w);
    w->loop = loop;
    w->cfg = cfg;
    w->hub = h;
    w->ifd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    /* The doorbell's name is the sidecar's: something else there (planted by another process of
     * the pod in the shared volume, which outlives restarts) would stop every start. */
    if (ipc_doorbell_open(cfg->shm_dir, &w->db) != IPC_OK &&
        ipc_doorbell_remove_foreign(cfg->shm_dir) == 0) {
        log_warn("doorbell replaced: something other than a file had its name",
                 "\"path\":\"%s\"", cfg->shm_dir);
        (void)ipc_doorbell_open(cfg->shm_dir, &w->db);
    }
    if (w->db == NULL) {
        snprintf(errbuf, errlen, "--shm-dir %s: cannot create the doorbell file: %s", cfg->shm_dir,
                 strerror(errno));
        free(w);
        return NULL;
    }
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->ifd >= 0 &&
        inotify_add_watch(w->ifd, cfg->shm_dir, IN_MOVED_TO | IN_CREATE | IN_CLOSE_WRITE) == -1) {
        log_warn("inotify unavailable: relying on rescans", "\"errno\":%d", errno);
        close(w->ifd);
        w->ifd = -1;
    }
    if (w->ifd >= 0) {
        ev_io_init(&w->inotify_io, inotify_cb, w->ifd, EV_READ);
        ev_io_start(loop, &w->inotify_io);
    }
    ev_timer_init(&w->rescan_timer, rescan_cb, RESCAN_PERIOD_S, RESCAN_PERIOD_S);
    ev_timer_start(loop, &w->rescan_timer);
    ev_timer_init(&w->liveness_timer, liveness_cb, LIVENESS_PERIOD_S, LIVENESS_PERIOD_S);
    ev_timer_start(loop, &w->liveness_timer);
    ev_async_init(&w->wake, wake_cb);
    ev_async_start(loop, &w->wake);
    ev_idle_init(&w->more, more_cb);
    if (pthread_create(&w->thread, NULL, bell_thread, w) != 0) {
        snprintf(errbuf, errlen, "cannot start the wake-up thread: %s", strerror(errno));
        watch_stop(w);
        return NULL;
    }
    w->thread_started = 1;
    rescan(w);
    arm_and_sleep(w);
    log_info("watching shm dir", "\"path\":\"%s\",\"rings\":%zu", cfg->shm_dir, w->n_rings);
    return w;
}

void watch_stop(watch *w)
{
    if (w == NULL)
        return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        ipc_doorbell_ring(w->db);
        pthread_join(w->thread, NULL);
    }
    ev_io_stop(w->loop, &w->inotify_io);
    ev_timer_stop(w->loop, &w->rescan_timer);
    ev_timer_stop(w->loop, &w->liveness_timer);
    ev_async_stop(w->loop, &w->wake);
    ev_idle_stop(w->loop, &w->more);
    if (w->ifd >= 0)
        close(w->ifd);
    while (w->rings != NULL) {
        ring *rg = w->rings;
        w->rings = rg->next;
        ipc_reader_free(rg->r);
        free(rg);
    }
    ipc_doorbell_free(w->db);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

/* One per-ring series: its name, help, type, and how to read the value from the stats. */
typedef struct ring_series {
    const char *name, *help, *type;
    double (*value)(const ipc_reader_stats *st);
} ring_series;

static double rs_records(const ipc_reader_stats *st)
{
    return (double)st->records_read;
}
static double rs_lost(const ipc_reader_stats *st)
{
    return (double)st->records_lost;
}
static double rs_term_lost(const ipc_reader_stats *st)
{
    return (double)st->term_bytes_lost;
}
static double rs_fill(const ipc_reader_stats *st)
{
    return st->log_fill_pct / 100.0;
}

void watch_render_metrics(buf *b, void *ud)
{
    static const ring_series series[] = {
        {"ringside_ring_records_total", "Event-log records read, per agent ring.", "counter",
         rs_records},
        {"ringside_ring_records_lost_total", "Event-log records lost, per agent ring.", "counter",
         rs_lost},
        {"ringside_ring_term_bytes_lost_total", "Terminal bytes lost, per agent ring.", "counter",
         rs_term_lost},
        {"ringside_ring_fill_ratio", "Event-log fill of each agent ring (0..1).", "gauge", rs_fill},
    };
    watch *w = ud;
    for (size_t i = 0; i < ARRAY_LEN(series); i++) {
        buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", series[i].name, series[i].help,
                   series[i].name, series[i].type);
        for (ring *rg = w->rings; rg != NULL; rg = rg->next) {
            ipc_reader_stats st;
            ipc_reader_get_stats(rg->r, &st);
            /* Agent ids and pids only when the operator asks (--metrics-detail): /metrics is
             * often readable more widely than the dashboards (D5). */
            if (w->cfg->metrics_detail)
                buf_printf(b, "%s{project=\"%s\",agent=\"%s\",pid=\"%d\"} %.15g\n",
                           series[i].name, rg->id.project_id, rg->id.agent_id, (int)rg->id.pid,
                           series[i].value(&st));
            else
                buf_printf(b, "%s{project=\"%s\",ring=\"%llu\"} %.15g\n", series[i].name,
                           rg->id.project_id, (unsigned long long)rg->serial,
                           series[i].value(&st));
        }
    }
}
