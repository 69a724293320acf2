/* output.c: the caller's strided buffers, which outputs share sums, how a
 * backend's quantities split between its sums and the standard errors,
 * and the CPU backends' pass over their quantities. */
#include "eval.h"

#include <stdlib.h>
#include <string.h>

void tps_output_store(const tps_output *o, size_t row, size_t col, double value)
{
    char *dst =
        (char *)o->data + (ptrdiff_t)row * o->line_stride + (ptrdiff_t)col * o->pixel_stride;
    if (o->type == TPS_FLOAT32) {
        const float f = (float)value;
        memcpy(dst, &f, sizeof f);
    } else {
        memcpy(dst, &value, sizeof value);
    }
}

size_t tps_outputs_select(const tps_output *in, size_t n, int variance, tps_output *out)
{
    size_t k = 0;
    for (size_t b = 0; b < n; ++b)
        if (!(tps_quantity_needs(in[b].quantity) & TPS_NEEDS_VARIANCE) == !variance) {
            if (out)
                out[k] = in[b];
            ++k;
        }
    return k;
}

void tps_outputs_group(const tps_output *outputs, size_t n, size_t *first, unsigned *needs)
{
    for (size_t b = 0; b < n; ++b) {
        first[b] = b;
        for (size_t j = 0; j < b; ++j)
            if (outputs[j].band == outputs[b].band) {
                first[b] = j;
                break;
            }
        if (needs) {
            needs[b] = 0;
            needs[first[b]] |= tps_quantity_needs(outputs[b].quantity);
        }
    }
}

tps_status tps_quantities_split(tps_context *ctx, const tps_eval_job *job, tps_backend_fn sums,
                                tps_backend_fn standard_errors)
{
    if (job->n_quantities == 0)
        return TPS_OK;
    tps_output *others = malloc(sizeof(tps_output) * job->n_quantities);
    if (!others)
        return tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY, "out of memory");
    tps_eval_job sub = *job;
    sub.quantities = others;
    sub.n_quantities = tps_outputs_select(job->quantities, job->n_quantities, 0, others);
    tps_status st = sums(ctx, &sub);
    free(others);
    return st == TPS_OK ? standard_errors(ctx, job) : st;
}

tps_status tps_quantity_pass_run(tps_context *ctx, const tps_eval_job *job, size_t n_items,
                                 int threads, size_t scratch_bytes, tps_parallel_body chunk)
{
    tps_quantity_pass pass = {job, NULL, NULL, {NULL, 0}};
    pass.first = malloc(sizeof(size_t) * job->n_quantities);
    pass.needs = malloc(sizeof(unsigned) * job->n_quantities);
    tps_status st = pass.first && pass.needs
                        ? tps_scratch_alloc(ctx, &pass.scratch, threads, scratch_bytes)
                        : tps_set_error(ctx, TPS_ERR_OUT_OF_MEMORY,
                                        "out of memory for derivative evaluation buffers");
    if (st == TPS_OK) {
        tps_outputs_group(job->quantities, job->n_quantities, pass.first, pass.needs);
        tps_parallel_for(n_items, threads, chunk, &pass);
    }
    tps_scratch_free(&pass.scratch);
    free(pass.first);
    free(pass.needs);
    return st;
}
