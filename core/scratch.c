/* scratch.c: per-thread working memory of the CPU backends. */
#include "eval.h"

#include <stdlib.h>

tps_status tps_scratch_alloc(tps_context *ctx, tps_scratch *s, int threads, size_t bytes)
{
    /* Whole cache lines per thread: no two threads write one line. */
    s->stride = (bytes + 63) / 64 * 64;
    s->base = calloc(threads < 1 ? 1 : (size_t)threads, s->stride ? s->stride : 64);
    if (!s->base)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory for evaluation buffers");
    return TPS_OK;
}

void *tps_scratch_at(const tps_scratch *s, int thread)
{
    return s->base + s->stride * (size_t)thread;
}

void tps_scratch_free(tps_scratch *s)
{
    free(s->base);
    s->base = NULL;
}

int tps_threads_for(int requested, size_t n_items, int worth_threads)
{
    int threads = requested < 1 || !worth_threads ? 1 : requested;
    if ((size_t)threads > n_items)
        threads = n_items > 0 ? (int)n_items : 1;
    return threads;
}
