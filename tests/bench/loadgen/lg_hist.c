/* lg_hist.c — see lg_hist.h. */
#include "lg_hist.h"

#include <string.h>

void lg_hist_init(lg_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

unsigned lg_hist_index(uint64_t v)
{
    if (v < 2u * LG_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - LG_HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) - LG_HIST_SUB; /* 0 .. SUB-1 */
    return 2u * LG_HIST_SUB + (shift - 1u) * LG_HIST_SUB + sub;
}

uint64_t lg_hist_bucket_high(unsigned idx)
{
    if (idx < 2u * LG_HIST_SUB)
        return idx;
    unsigned rel = idx - 2u * LG_HIST_SUB;
    unsigned shift = rel / LG_HIST_SUB + 1u;
    uint64_t sub = rel % LG_HIST_SUB + LG_HIST_SUB;
    return ((sub + 1u) << shift) - 1u;
}

void lg_hist_record(lg_hist *h, uint64_t v)
{
    h->counts[lg_hist_index(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (v < h->min)
        h->min = v;
}

void lg_hist_merge(lg_hist *dst, const lg_hist *src)
{
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->n += src->n;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
    if (src->min < dst->min)
        dst->min = src->min;
}

uint64_t lg_hist_quantile(const lg_hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->n)
        rank = h->n;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t hi = lg_hist_bucket_high(i);
            return hi > h->max ? h->max : hi;
        }
    }
    return h->max;
}
