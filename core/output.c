/* output.c: the caller's strided buffers, and which outputs share sums. */
#include "eval.h"

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

size_t tps_outputs_without_variance(const tps_output *in, size_t n, tps_output *out)
{
    size_t k = 0;
    for (size_t b = 0; b < n; ++b)
        if (!(tps_quantity_needs(in[b].quantity) & TPS_NEEDS_VARIANCE))
            out[k++] = in[b];
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
        needs[b] = 0;
        needs[first[b]] |= tps_quantity_needs(outputs[b].quantity);
    }
}
