/* Self-test of the loadgen histogram: bucket bounds are monotonic and within 1/32 of the value,
 * quantiles of a known distribution land where they must. */
#include "lg_hist.h"

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    static lg_hist h;
    lg_hist_init(&h);
    CHECK(lg_hist_quantile(&h, 0.5) == 0);
    uint64_t prev = 0;
    for (unsigned i = 1; i < LG_HIST_BUCKETS; i++) {
        uint64_t hi = lg_hist_bucket_high(i);
        CHECK(hi > prev);
        prev = hi;
        if (i == LG_HIST_BUCKETS - 1)
            break;
    }
    for (uint64_t v = 1; v < (1ull << 62); v = v * 3 + 1) {
        unsigned idx = lg_hist_index(v);
        CHECK(idx < LG_HIST_BUCKETS);
        uint64_t hi = lg_hist_bucket_high(idx);
        CHECK(hi >= v);
        CHECK((double)(hi - v) <= (double)v / 32.0 + 1.0);
        CHECK(idx == 0 || lg_hist_bucket_high(idx - 1) < v);
    }
    CHECK(lg_hist_index(UINT64_MAX) == LG_HIST_BUCKETS - 1);
    for (uint64_t v = 1; v <= 100000; v++) /* 1 µs .. 100 ms in ns, uniform */
        lg_hist_record(&h, v * 1000);
    uint64_t p50 = lg_hist_quantile(&h, 0.5), p99 = lg_hist_quantile(&h, 0.99);
    CHECK(p50 >= 50000000ull && p50 <= 50000000ull * 33 / 32);
    CHECK(p99 >= 99000000ull && p99 <= 99000000ull * 33 / 32);
    CHECK(lg_hist_quantile(&h, 1.0) == 100000000ull);
    CHECK(h.min == 1000 && h.max == 100000000ull);
    puts("lg_hist selftest ok");
    return 0;
}
