/* progress.c: progress of a long solve, reported on the solving thread
 * (internal.h says how it is threaded through). */
#include "internal.h"

#include <math.h>
#include <stdio.h>

static _Thread_local tps_progress_state *current;

tps_progress_state *tps_progress_begin(tps_progress_state *state, const tps_fit_options *options)
{
    tps_progress_state *previous = current;
    state->fn = options ? options->progress : NULL;
    state->user = options ? options->progress_data : NULL;
    state->stage[0] = '\0';
    state->next_percent = 0;
    current = state;
    return previous;
}

void tps_progress_end(tps_progress_state *previous)
{
    current = previous;
}

void tps_progress_stage(const char *fmt, ...)
{
    tps_progress_state *st = current;
    if (!st || !st->fn)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->stage, sizeof st->stage, fmt, ap);
    va_end(ap);
    st->next_percent = 0;
    tps_progress(0.0);
}

void tps_progress(double fraction)
{
    tps_progress_state *st = current;
    if (!st || !st->fn || !(fraction >= 0.0))
        return;
    if (fraction > 1.0)
        fraction = 1.0;
    /* Whole percents, with a margin for fractions such as 29/100 that
     * multiply back to 28.999...: each report is a new percent. */
    const int percent = (int)floor(fraction * 100.0 + 1e-9);
    if (percent < st->next_percent)
        return;
    st->next_percent = percent + 1;
    st->fn(st->user, st->stage, fraction);
}
