/* targets.c: where an evaluation's targets are, chunk by chunk. */
#include "eval.h"

#include <string.h>

void tps_grid_from_geotransform(tps_grid *grid, const double gt[6], size_t x_off, size_t y_off,
                                size_t ncols, size_t nrows)
{
    grid->x0 = gt[0] + 0.5 * gt[1] + 0.5 * gt[2];
    grid->y0 = gt[3] + 0.5 * gt[4] + 0.5 * gt[5];
    grid->col_dx = gt[1];
    grid->col_dy = gt[4];
    grid->row_dx = gt[2];
    grid->row_dy = gt[5];
    grid->first_col = x_off;
    grid->first_row = y_off;
    grid->ncols = ncols;
    grid->nrows = nrows;
}

void tps_grid_cell_centre(const tps_grid *grid, double i, double j, double *x, double *y)
{
    /* grid.h's formula, on the grid's own coordinates (no scaling). */
    const tps_window w = {grid->x0,     grid->y0,        grid->col_dx,    grid->col_dy,
                          grid->row_dx, grid->row_dy,    grid->first_col, grid->first_row,
                          grid->ncols,  grid->nrows};
    tps_cell_centre(&w, i, j, x, y);
}

tps_window tps_window_of(const tps_model *md, const tps_grid *grid)
{
    const double s = md->scale;
    const tps_window w = {(grid->x0 - md->cx) / s, (grid->y0 - md->cy) / s,
                          grid->col_dx / s,         grid->col_dy / s,
                          grid->row_dx / s,         grid->row_dy / s,
                          grid->first_col,          grid->first_row,
                          grid->ncols,              grid->nrows};
    return w;
}

double tps_targets_count(const tps_targets *t)
{
    return t->is_grid ? (double)t->w.ncols * (double)t->w.nrows : (double)t->n_pts;
}

size_t tps_targets_items(const tps_targets *t)
{
    if (t->is_grid)
        return (t->w.ncols + TPS_CHUNK - 1) / TPS_CHUNK * t->w.nrows;
    return (t->n_pts + TPS_CHUNK - 1) / TPS_CHUNK;
}

size_t tps_targets_chunk(const tps_targets *t, size_t item, double *pu, double *pv, size_t *row,
                         size_t *col0)
{
    size_t count;
    if (t->is_grid) {
        const size_t chunks_per_row = (t->w.ncols + TPS_CHUNK - 1) / TPS_CHUNK;
        *row = item / chunks_per_row;
        *col0 = (item % chunks_per_row) * TPS_CHUNK;
        count = t->w.ncols - *col0 < TPS_CHUNK ? t->w.ncols - *col0 : TPS_CHUNK;
        const double j = (double)(t->w.first_row + *row);
        for (size_t k = 0; k < count; ++k)
            tps_cell_centre(&t->w, (double)(t->w.first_col + *col0 + k), j, &pu[k], &pv[k]);
    } else {
        *row = 0;
        *col0 = item * TPS_CHUNK;
        count = t->n_pts - *col0 < TPS_CHUNK ? t->n_pts - *col0 : TPS_CHUNK;
        memcpy(pu, t->pts_u + *col0, count * sizeof(double));
        memcpy(pv, t->pts_v + *col0, count * sizeof(double));
    }
    return count;
}
