/* se_tile.h: the standard error of a tile of grid cells in low rank
 * (docs/design.md, "The standard error", "Tiles in low rank").
 *
 * Over a tile of TPS_SE_TILE x TPS_SE_TILE cells the kernel column k(x) of
 * a cell is, to rounding, B m(x): the points near the tile (within one tile
 * width of it, in the grid's index space) keep their kernel values exactly
 * (B's unit columns), the far ones' kernel, smooth over the tile, is
 * interpolated on a Chebyshev grid of nodes and compressed to the skeleton
 * nodes of a column-pivoted QR (an interpolative decomposition:
 * K(far, x) ~= K(far, skeleton) X l(x)). Then with C = L^-1 Q2^T B and
 * D = L^-1 M21, and [C D] = U Rc (thin QR),
 *     |L^-1 y|^2 = |C m - D h|^2 = |Rc [m; -h]|^2,   q1 = (Q1^T B) m,
 * so a tile costs one product of L^-1 with ~100 columns instead of one per
 * cell, and a cell a small triangular product. A few guard cells per tile
 * are computed exactly alongside (extra columns of the same product); a
 * tile whose guards disagree is computed exactly instead.
 *
 * The plan of a tile depends only on the factorisation, the grid's
 * geometry and the tile's absolute position, and a cell's value only on
 * the plan and the cell's row of the tile: never on the window, chunk or
 * thread. The GPU's tiles (gpu_se_tiles.c, gpu/se_tiles.cu) reuse the
 * frame (near points, guards), the nodes and the guard test, with every
 * node's column (no compression) and no QR. */
#ifndef TPS_SE_TILE_H
#define TPS_SE_TILE_H

#include "variance.h"

/* Cells per side of a tile; TPS_SE_TILE^2 is a multiple of TPS_SE_BLOCK
 * (an exact tile is computed in blocks of TPS_SE_BLOCK / TPS_SE_TILE rows). */
#define TPS_SE_TILE 64
/* Chebyshev nodes per side, and the compression's relative tolerance
 * (bench/se_lowrank_probe.py sized both). */
#define TPS_SE_TILE_NODES 12
#define TPS_SE_TILE_TOL 1e-12
/* At most this many columns of B (near points + skeleton nodes): a tile
 * with more is computed exactly. */
#define TPS_SE_TILE_MAX_COLS 1024
/* Guard cells per tile: its four corners and the cells of up to two of
 * its points. */
#define TPS_SE_TILE_GUARDS 6
/* A guard passes when |low rank - exact| <= REL |exact| + FLOOR x (the
 * sum of the exact formula's terms' magnitudes: its rounding). */
#define TPS_SE_TILE_GUARD_REL 1e-5
#define TPS_SE_TILE_GUARD_FLOOR 1e-13

typedef enum tps_se_tile_kind {
    TPS_SE_TILE_LOWRANK = 0, /* the plan holds */
    TPS_SE_TILE_DENSE = 1,   /* too many near points (or too few points) to pay */
    TPS_SE_TILE_GUARD = 2    /* a guard cell disagreed, or LAPACK failed */
} tps_se_tile_kind;

/* A tile's plan, in the scratch of tps_se_tile_bytes. */
typedef struct tps_se_tile {
    const tps_se_factor *f;
    const tps_window *w;
    size_t c0, r0;              /* the tile's first absolute column and row */
    size_t n_near, rank, cols;  /* cols = n_near + rank (B's columns) */
    int *near;                  /* the near points */
    double *x;                  /* rank x Q^2: the far kernel's interpolation */
    double *wm;                 /* n x (cols + m + guards), leading dimension n:
                                 * rows 0..m-1 of columns 0..cols-1 Q1^T B, rows
                                 * m.. of columns 0..cols+m-1 [C D]'s QR, Rc on top */
    double *lag;                /* Q x TPS_SE_TILE: l_a(i) at lag[i Q + a] */
    double *scratch;            /* the per-row arithmetic's */
    size_t n_guards;
    double guard_worst;         /* the guards' worst |difference| / allowed */
} tps_se_tile;

/* Scratch of one tile's plan and rows. */
size_t tps_se_tile_bytes(const tps_se_factor *f);

/* Whether tiles pay for factor f on window w's grid: by flop count, the
 * plan of a tile at the points' mean density against TPS_SE_TILE^2 exact
 * cells: 2 they pay, 1 they would not, 0 they cannot be used (a
 * degenerate grid, too few points or too many near a tile). Depends on f
 * and the grid's geometry only. *flops_cell: the estimated flops (multiply-
 * adds) a cell in tiles. */
int tps_se_tiles_pay(const tps_se_factor *f, const tps_window *w, double *flops_cell);

/* The factorisation's zq (variance.h) under the model's se_lock, made once
 * where it fits in TPS_SE_TILE_ZQ_MAX_BYTES (else, or out of memory, the
 * tiles compute their near points' columns themselves): the near points'
 * columns of L^-1 Q2^T B, gathered instead of multiplied. N^3 flops,
 * deterministic (column blocks, single-threaded BLAS). */
#define TPS_SE_TILE_ZQ_MAX_BYTES ((size_t)4 << 30)
void tps_se_tiles_prepare(const tps_model *md, const tps_se_factor *f, int num_threads);

/* A tile's near points and guard targets: the first step of its plan,
 * shared with the GPU's tiles (gpu_se_tiles.c). */
typedef struct tps_se_tile_frame {
    size_t n_near;                     /* near points, in the caller's near[] */
    size_t n_guards;
    double gs[TPS_SE_TILE_GUARDS];     /* the guards' index coordinates in the tile */
    double gt[TPS_SE_TILE_GUARDS];
    int gp[TPS_SE_TILE_GUARDS];        /* -1 (a corner cell) or the point */
    double gu[TPS_SE_TILE_GUARDS];     /* their coordinates (scaled) */
    double gv[TPS_SE_TILE_GUARDS];
    double gh[TPS_SE_TILE_GUARDS * TPS_MAX_FIXED]; /* their h = R^-T t, m each */
} tps_se_tile_frame;

/* The frame of the tile at (c0, r0): near[] (TPS_SE_TILE_MAX_COLS ints),
 * is_near (f->n flags), col (f->n doubles of scratch). TPS_SE_TILE_DENSE
 * where tiles cannot be used there (too many near points, too few points,
 * a degenerate grid), else TPS_SE_TILE_LOWRANK. */
tps_se_tile_kind tps_se_tile_frame_make(const tps_se_factor *f, const tps_window *w, size_t c0,
                                        size_t r0, int *near, unsigned char *is_near,
                                        double *col, tps_se_tile_frame *fr);
/* The coordinates of the tile's Chebyshev nodes, node a + Q b at index
 * coordinates (c0 + node a, r0 + node b), Q = TPS_SE_TILE_NODES. */
void tps_se_tile_nodes(const tps_window *w, size_t c0, size_t r0, double *nu, double *nv);
/* The interpolation weights l_a(s), a < TPS_SE_TILE_NODES, at index
 * coordinate s of a tile (0 .. TPS_SE_TILE - 1). */
void tps_se_tile_weights(double s, double *l);
/* Whether a guard passes: |lowrank - exact| <= TPS_SE_TILE_GUARD_REL
 * |exact| + TPS_SE_TILE_GUARD_FLOOR scale; *ratio: the difference over
 * what is allowed (INFINITY for NaN). */
int tps_se_tile_guard_pass(double lowrank, double exact, double scale, double *ratio);

/* The test hook's mode (tps_testing_se_tiles, cpu_se.c), and where a tiled
 * request, CPU or GPU, records its tiles' counts
 * (tps_testing_se_tile_counts). */
int tps_se_tiles_mode(void);
void tps_se_tile_counts_record(const size_t counts[5]);

/* Makes the plan of the tile whose first absolute column and row are
 * (c0, r0) in `work` (tps_se_tile_bytes) and checks its guards. */
tps_se_tile_kind tps_se_tile_plan(const tps_se_factor *f, const tps_window *w, size_t c0,
                                  size_t r0, void *work, tps_se_tile *t);

/* k(x, x) - v^T S^-1 v (as tps_se_block) for the TPS_SE_TILE cells of the
 * tile's row j (0 <= j < TPS_SE_TILE), their covariates zs[k * stride + i]
 * (scaled; NaN gives NaN), into out[0 .. TPS_SE_TILE). */
void tps_se_tile_row(const tps_se_tile *t, size_t j, const double *zs, size_t stride,
                     double *out);

/* A GPU request's standard errors of output o in tiles (gpu_se_tiles.c),
 * where they pay as on the CPU (tps_se_tiles_pay; the test hook's modes
 * too): f the band's factorisation, dev its device copy, rho its process
 * variance. *done = 0 where tiles are not used (they do not pay, or they
 * do not fit on the device): the caller computes the exact blocks. */
struct tps_gpu_se;
tps_status tps_gpu_se_tiles_output(tps_context *ctx, const tps_eval_job *job,
                                   const tps_output *o, const tps_se_factor *f,
                                   struct tps_gpu_se *dev, double rho, int *done);

#endif
