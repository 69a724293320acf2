/* eval.h: what the layers of evaluation share (docs/design.md, "Layers").
 *
 *   evaluate.c          the dispatcher: checks a request, splits its outputs
 *                       into values and other quantities, estimates its cost,
 *                       picks a backend, falls back from the GPU to the CPU
 *   cpu_global.c        backends, one tps_backend each: a global model on the
 *   cpu_local.c (+ cpu_local_deriv.c)   CPU, a local model on the CPU,
 *   gpu_eval.c          either on the GPU (gpu/ through gpu_backend.h)
 *   targets.c, output.c, quantity.c, spline_sums.c, scratch.c, cpu_kernel.c,
 *   eval_kernel.c       helpers the backends share, below them all
 *
 * Calls go down this list only (scripts/check_layers.py checks it). */
#ifndef TPS_EVAL_H
#define TPS_EVAL_H

#include "grid.h"
#include "internal.h"
#include "sums.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the SIMD value kernel (eval_kernel.c, compiled once per ISA) ---- */
/* Pixels are handled in tiles of this many; callers pad target arrays to a
 * multiple of it. */
#define TPS_KERNEL_TILE 32
/* Points are visited in blocks of this many so that a block's coordinates
 * and weights stay in the L1/L2 cache while all tiles of a row pass over it. */
#define TPS_KERNEL_POINT_BLOCK 2048

typedef struct tps_kernel_job {
    size_t n_src;               /* source points */
    const double *su, *sv;      /* their scaled coordinates */
    size_t n_bands;
    const double *const *w;     /* n_bands arrays of n_src half-weights */
    size_t m;                   /* target points, a multiple of TPS_KERNEL_TILE */
    const double *pu, *pv;      /* their scaled coordinates */
    int same_v;                 /* all targets have v == pv[0] (a north-up grid row) */
    double *acc;                /* out: acc[b * m + k] = sum_i w[b][i] r^2 log r^2 */
} tps_kernel_job;

typedef void (*tps_kernel_fn)(const tps_kernel_job *job);
void tps_kernel_generic(const tps_kernel_job *job);
void tps_kernel_avx2(const tps_kernel_job *job);
void tps_kernel_avx512(const tps_kernel_job *job);
/* The kernel for an instruction set (cpu_kernel.c); NULL when this
 * processor cannot run it. */
tps_kernel_fn tps_kernel_for(tps_cpu_kernel kernel);

/* ---- targets (targets.c) ---- */
/* Targets per work item of the CPU backends: long enough to amortise a
 * chunk's set-up, short enough to balance threads on narrow windows. A
 * multiple of the kernel tile. */
#define TPS_CHUNK 1024

/* Where an evaluation's targets are: a window of a grid, or scattered
 * points, both in the model's scaled coordinates. */
typedef struct tps_targets {
    int is_grid;
    tps_window w;                 /* is_grid */
    const double *pts_u, *pts_v;  /* else: n_pts points */
    size_t n_pts;
} tps_targets;

/* The grid's window in md's scaled coordinates. */
tps_window tps_window_of(const tps_model *md, const tps_grid *grid);
/* Targets, and work items of up to TPS_CHUNK of them (a grid row is cut
 * into ceil(ncols / TPS_CHUNK) items). */
double tps_targets_count(const tps_targets *t);
size_t tps_targets_items(const tps_targets *t);
/* The targets of work item `item`: fills pu, pv and returns how many, with
 * *row and *col0 saying where they go. A grid cell's coordinates come
 * from its absolute indices (grid.h), so a cell gets the same coordinates
 * whatever window or chunk it is in. */
size_t tps_targets_chunk(const tps_targets *t, size_t item, double *pu, double *pv, size_t *row,
                         size_t *col0);

/* ---- outputs (output.c) ---- */
/* Writes `value` at window cell (row, col) of output o, in o's type. */
void tps_output_store(const tps_output *o, size_t row, size_t col, double value);
/* Outputs of one model band share their sums: first[k] is the first of
 * outputs[0 .. n) of output k's band, and needs[first[k]] the union of the
 * needs of that band's quantities (needs[k] is 0 for the others; needs may
 * be NULL). */
void tps_outputs_group(const tps_output *outputs, size_t n, size_t *first, unsigned *needs);
/* The outputs of in[0 .. n) that need the variance (variance nonzero) or
 * do not (0), copied into out in order (out NULL: only counted); returns
 * how many. */
size_t tps_outputs_select(const tps_output *in, size_t n, int variance, tps_output *out);

/* ---- quantities (quantity.c) ---- */
/* The sums quantity q needs (TPS_NEEDS_*); 0 for an unknown one. */
unsigned tps_quantity_needs(tps_quantity q);
/* Quantity q at a pixel from its sums d (scaled units, affine part in) and
 * the model's scale (the chain rule back to the caller's units), plus the
 * covariates' term cov of its derivatives in the caller's units
 * (tps_covariates_derivs; NULL for none). */
double tps_quantity_eval(tps_quantity q, const tps_derivs *d, double scale,
                         const tps_derivs *cov);

/* ---- the sums of a spline (spline_sums.c) ---- */
/* The sums `needs` asks for (sums.h) of the spline of n points (u, v) with
 * half-weights h (no affine part) at m targets (pu, pv): out[0 .. m). */
void tps_spline_sums(size_t n, const double *u, const double *v, const double *h, unsigned needs,
                     size_t m, const double *pu, const double *pv, tps_derivs *out);

/* ---- per-thread scratch (scratch.c) ---- */
typedef struct tps_scratch {
    char *base;
    size_t stride; /* bytes per thread, whole cache lines */
} tps_scratch;
/* `bytes` of zeroed memory for each of `threads` threads. */
tps_status tps_scratch_alloc(tps_context *ctx, tps_scratch *s, int threads, size_t bytes);
void *tps_scratch_at(const tps_scratch *s, int thread);
void tps_scratch_free(tps_scratch *s);
/* Threads worth starting for n_items work items: `requested` (<= 0: one),
 * at most n_items, and one when the work is too small to pay for them. */
int tps_threads_for(int requested, size_t n_items, int worth_threads);

/* ---- the backends ---- */
/* One request as the dispatcher hands it to a backend. Values (quantity
 * VALUE: the SIMD kernel's path) and the other quantities come apart:
 *   values: n_values outputs (grid) or arrays (points) of model bands
 *           bands[0 .. n_values);
 *   quantities: n_quantities grid outputs, none of them VALUE. */
typedef struct tps_eval_job {
    const tps_model *model;
    tps_targets t;
    size_t n_values;
    const size_t *bands;
    const tps_output *values; /* grid targets */
    double *const *values_out; /* point targets */
    size_t n_quantities;
    const tps_output *quantities;
    const tps_plane *cov;      /* the model's covariates at the targets, or NULL */
    const tps_plane *cov_deriv; /* their derivatives (tps_eval_options.covariate_derivatives),
                                 * or NULL: given whenever a derivative quantity is asked of a
                                 * model with covariates */
    int num_threads;
    tps_kernel_fn kernel;      /* the CPU's value kernel */
    tps_precision precision;   /* the GPU's: DOUBLE or MIXED (AUTO is resolved) */
    double tolerance;          /* MIXED's, relative to each band's range (> 0) */
    tps_eval_stats *stats;     /* NULL, or what MIXED did (zeroed by the dispatcher) */
    size_t gpu_max_bytes;
} tps_eval_job;

typedef tps_status (*tps_backend_fn)(tps_context *ctx, const tps_eval_job *job);
typedef struct tps_backend {
    const char *name;
    tps_backend_fn values;
    tps_backend_fn quantities;
} tps_backend;

extern const tps_backend tps_backend_cpu_global; /* cpu_global.c */
extern const tps_backend tps_backend_cpu_local;  /* cpu_local.c */
extern const tps_backend tps_backend_gpu;        /* gpu_eval.c: grids only */
/* A local model's quantities on the CPU (cpu_local_deriv.c). */
tps_status tps_cpu_local_quantities(tps_context *ctx, const tps_eval_job *job);
/* The outputs of job->quantities that need the variance (the standard
 * error) on the CPU, grids only: a global model's in cpu_se.c, a local
 * one's in cpu_local_se.c. The backends' `quantities` leave those outputs
 * to them (tps_quantities_split). */
tps_status tps_cpu_standard_errors(tps_context *ctx, const tps_eval_job *job);
tps_status tps_cpu_local_standard_errors(tps_context *ctx, const tps_eval_job *job);
/* ... on the GPU (gpu_se.c). */
tps_status tps_gpu_standard_errors(tps_context *ctx, const tps_eval_job *job);
/* The CPU backends' pass over the n_items work items of job's quantities
 * (output.c): the outputs grouped by band (tps_outputs_group), then
 * chunk(item, thread, pass) for every item on `threads` threads, each with
 * `scratch_bytes` of zeroed scratch (tps_scratch_at(&pass->scratch,
 * thread)). */
typedef struct tps_quantity_pass {
    const tps_eval_job *job;
    size_t *first;       /* tps_outputs_group: the sums of output first[b] serve output b */
    unsigned *needs;
    tps_scratch scratch; /* per thread */
} tps_quantity_pass;
tps_status tps_quantity_pass_run(tps_context *ctx, const tps_eval_job *job, size_t n_items,
                                 int threads, size_t scratch_bytes, tps_parallel_body chunk);
/* A backend's `quantities` (output.c): `sums` on the job's outputs that
 * do not need the variance, then, when it succeeded, `standard_errors` on
 * the job (which takes the outputs that do). */
tps_status tps_quantities_split(tps_context *ctx, const tps_eval_job *job, tps_backend_fn sums,
                                tps_backend_fn standard_errors);

#ifdef __cplusplus
}
#endif

#endif
