/*
 * bench_status.c — the C side of tests/bench/bindings/publish_cost.py: the cost of one
 * rs_set_status() (alternating working/idle, so each is a transition, with a short detail).
 *
 * Usage: bench_status SHM_DIR COUNT REPEAT.  Each repeat opens a ring with room for COUNT events
 * (no reader needed, nothing dropped), publishes them, and closes it.  Prints one JSON object:
 * {"lang":"c","ns_per_event":[...one per repeat...]}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ringside.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_status SHM_DIR COUNT REPEAT\n");
        return 2;
    }
    long count = strtol(argv[2], NULL, 10), repeat = strtol(argv[3], NULL, 10);
    if (count < 1 || count > 60000 || repeat < 1 || repeat > 1000) {
        fprintf(stderr, "bench_status: COUNT must be 1..60000 and REPEAT 1..1000\n");
        return 2;
    }
    printf("{\"lang\":\"c\",\"ns_per_event\":[");
    for (long r = 0; r < repeat; r++) {
        rs_options o;
        rs_agent *a = NULL;
        rs_options_init(&o);
        o.shm_dir = argv[1];
        o.agent_id = "bench-c";
        o.project_id = "bench";
        o.term_rings = RS_TERM_RINGS_NONE;
        o.log_slots = 65536;
        int rc = rs_open(&o, &a);
        if (rc != RS_OK) {
            fprintf(stderr, "bench_status: rs_open: %s\n", rs_strerror(rc));
            return 1;
        }
        double t0 = now_ns();
        for (long i = 0; i < count; i++) {
            rc = rs_set_status(a, (i & 1) ? RS_STATUS_WORKING : RS_STATUS_IDLE, "step detail");
            if (rc != RS_OK) {
                fprintf(stderr, "bench_status: rs_set_status: %s\n", rs_strerror(rc));
                return 1;
            }
        }
        double t1 = now_ns();
        rs_close(a);
        printf("%s%.1f", r ? "," : "", (t1 - t0) / (double)count);
    }
    printf("]}\n");
    return 0;
}
