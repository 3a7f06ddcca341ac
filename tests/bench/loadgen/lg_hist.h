/*
 * lg_hist.h — a log-bucketed latency histogram in the manner of HdrHistogram.
 *
 * Values (nanoseconds, or any unsigned 64-bit unit) below 64 get one bucket each; above, every power
 * of two is split into 32 linear sub-buckets, so a reported quantile is within 1/32 (~3 %) of the
 * true value.  Fixed size, no allocation, mergeable by adding counts.  Not thread-safe: one
 * histogram per thread, merged at the end.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

#define LG_HIST_SUB_BITS 5
#define LG_HIST_SUB (1u << LG_HIST_SUB_BITS)
#define LG_HIST_BUCKETS (2u * LG_HIST_SUB + (64u - LG_HIST_SUB_BITS - 1u) * LG_HIST_SUB)

typedef struct lg_hist {
    uint64_t counts[LG_HIST_BUCKETS];
    uint64_t n;   /* values recorded */
    uint64_t max; /* exact largest value */
    uint64_t min; /* exact smallest value (UINT64_MAX when n == 0) */
    double sum;   /* for the mean */
} lg_hist;

/* Resets *h to empty. */
void lg_hist_init(lg_hist *h);

/* Records one value. */
void lg_hist_record(lg_hist *h, uint64_t v);

/* Adds every count of *src into *dst. */
void lg_hist_merge(lg_hist *dst, const lg_hist *src);

/* Returns the highest value equivalent to the bucket holding quantile q (0 < q <= 1), clamped to
 * the exact max; 0 for an empty histogram. */
uint64_t lg_hist_quantile(const lg_hist *h, double q);

/* Maps a value to its bucket index and a bucket index to the highest value it holds (exported
 * for the self-test). */
unsigned lg_hist_index(uint64_t v);
uint64_t lg_hist_bucket_high(unsigned idx);

#endif /* LG_HIST_H */
