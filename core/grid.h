/* grid.h: a window of a regular grid in a model's scaled coordinates, and
 * the formula that puts a cell's centre there. Every path uses this one
 * formula: the CPU backends, the GPU kernels and the GPU's per-tile patch
 * lists. A cell's coordinates depend only on its absolute indices, in one
 * order of operations and without fused multiply-adds (nvcc would fuse
 * them), so any window, chunk, thread or device gives the same bytes. */
#ifndef TPS_GRID_H
#define TPS_GRID_H

#include "hd.h"

#include <stddef.h>

/* Cell (c, r) of the window, c < ncols and r < nrows, is the grid's cell
 * (i, j) = (first_col + c, first_row + r), at
 *   u = (u0 + j ru) + i cu,  v = (v0 + j rv) + i cv. */
typedef struct tps_window {
    double u0, v0;         /* the centre of grid cell (0, 0) */
    double cu, cv;         /* one column on */
    double ru, rv;         /* one row on */
    size_t first_col, first_row;
    size_t ncols, nrows;
} tps_window;

/* The centre of the grid's cell (i, j) (absolute indices, as doubles). */
TPS_HD void tps_cell_centre(const tps_window *w, double i, double j, double *u, double *v)
{
#ifdef __CUDA_ARCH__
    *u = __dadd_rn(__dadd_rn(w->u0, __dmul_rn(j, w->ru)), __dmul_rn(i, w->cu));
    *v = __dadd_rn(__dadd_rn(w->v0, __dmul_rn(j, w->rv)), __dmul_rn(i, w->cv));
#else
    /* The engine is compiled with -ffp-contract=off (core/CMakeLists.txt). */
    *u = (w->u0 + j * w->ru) + i * w->cu;
    *v = (w->v0 + j * w->rv) + i * w->cv;
#endif
}

#endif
