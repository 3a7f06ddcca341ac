/*
 * watch.h — finds agents' rings in the shm dir, reads them, and notices agents dying
 * (REQUIREMENTS A1, A3, A4, A5).
 *
 * Discovery: inotify (IN_MOVED_TO, IN_CREATE) plus a periodic rescan.  Wake-up: a helper thread
 * sleeps on the pod-wide futex doorbell and signals the loop with ev_async; the loop drains every
 * ring, then re-arms the doorbell (Dekker: arm, re-check, sleep).  Liveness: flock probe every
 * 250 ms; a dead agent's ring is drained, its end reported to the hub, and the file unlinked.
 */
#ifndef RINGSIDE_WATCH_H
#define RINGSIDE_WATCH_H

#include <ev.h>

#include "buf.h"
#include "config.h"

struct hub;
typedef struct watch watch;

/* Prepares the shm dir (creating the default one if missing), the doorbell, inotify and the wake
 * thread.  Returns a watch, or NULL with one line in errbuf saying what is wrong and what to do. */
watch *watch_start(struct ev_loop *loop, const config *cfg, struct hub *hub, char *errbuf,
                   size_t errlen);

/* Stops the thread and watchers, frees every reader.  Ring files are left in place. */
void watch_stop(watch *w);

/* Appends per-agent ring metrics (Prometheus text). */
void watch_render_metrics(buf *b, void *w);

#endif
