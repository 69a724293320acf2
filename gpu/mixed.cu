/*
 * mixed.cu: PRECISION=MIXED on the GPU (docs/design.md, "PRECISION=MIXED").
 * core/mixed.h holds the arithmetic, shared with the CPU emulation of this
 * kernel (core/mixed_emulate.c), which mirrors it step for step: change one,
 * change both.
 *
 * A block of 128 threads evaluates 32 x 16 pixels aligned to the grid's
 * absolute indices, so that a pixel's value never depends on the window or
 * chunk it is read in; a thread owns 4 adjacent pixels of a row.
 *  1. The box of the block's pixels and, group by group over the threads,
 *     the block's error bound per band (tps_mixed_group_bound), summed.
 *  2. If every band's bound is within tolerance x its range: per tile, the
 *     sum of a far tile as a multipole expansion (FP64), else per group of
 *     it, a far group's likewise and a near group's point by point in FP32
 *     from shared memory. Then the self-check: one pixel recomputed in FP64
 *     by the whole block must agree within the bound.
 *  3. Otherwise, or if the self-check disagrees, the block's pixels in
 *     DOUBLE (gpu/fp64_sum.cuh: DOUBLE's own bytes).
 *  4. The pixels inside the chunk are written; the request's counters
 *     (blocks, fallbacks, failed self-checks, the largest bound delivered)
 *     are added to.
 */
#include "fp64_sum.cuh"
#include "global.cuh"
#include "log_table.cuh"
#include "mixed.h"

#include <string.h>

namespace tps_gpu {

namespace {

constexpr int BC = TPS_MIXED_BLOCK_COLS, BR = TPS_MIXED_BLOCK_ROWS;
constexpr int TPR = BC / PIX; /* threads per row of the block */
constexpr int GROUPS = TPS_MIXED_TILE_GROUPS;
/* The plans of the first PLANNED tiles (N <= 131,072) are kept from the
 * bound's pass in shared memory (order of the tile and of each group, the
 * groups' scales); later tiles are planned again, tile by tile. */
constexpr int PLANNED = 512;
static_assert(TPS_MIXED_THREADS == THREADS && TPS_MIXED_PIX == PIX && BR * TPR == THREADS,
              "mixed.h's block geometry is the kernel's");

struct MixedArgs {
    const float2 *q;
    const float *w, *wlo;
    const double *tile, *group, *tile_coef, *group_coef, *group_near;
    size_t n_pad, n_tiles, n_bands;
    int band0;
    /* the FP64 copy: the self-check and the fallback */
    const double2 *uv;
    const double *w64;
    size_t n, n_pad64;
    const double2 *log_table;
    double tol[MAX_NB], inv_range[MAX_NB], abs_h[MAX_NB];
    double budget; /* for truncation: tps_mixed_trunc_budget */
    unsigned long long force_every;
    long long bx0, by0; /* the launch's first block, in the grid's block indices */
    int rows;           /* rows of this chunk */
};

__device__ __forceinline__ double warp_sum(double x)
{
    for (int k = 16; k > 0; k >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, k);
    return x;
}

__device__ __forceinline__ double warp_min(double x)
{
    for (int k = 16; k > 0; k >>= 1)
        x = fmin(x, __shfl_xor_sync(0xffffffffu, x, k));
    return x;
}

/* A far cluster's sum (its coefficients from band0 on) at the thread's
 * pixels, two at a time (each pixel's arithmetic is its own: the same as
 * four at a time, in fewer registers). */
template <int NB>
__device__ __forceinline__ void far_sums(const double *geo, const double *coef, int p,
                                         const double2 *s_log, const double pu[PIX],
                                         const double pv[PIX], double acc[NB][PIX])
{
    constexpr int H = 2;
#pragma unroll
    for (int k0 = 0; k0 < PIX; k0 += H) {
        double zr[H], zi[H], r2[H], lnr2[H], er[H], ei[H], out[NB][H];
        for (int k = 0; k < H; ++k) {
            zr[k] = pu[k0 + k] - geo[0];
            zi[k] = pv[k0 + k] - geo[1];
            r2[k] = fma(zr[k], zr[k], zi[k] * zi[k]);
            const double inv = 1.0 / r2[k];
            lnr2[k] = table_log(r2[k], s_log);
            er[k] = zr[k] * inv;
            ei[k] = -zi[k] * inv;
            for (int b = 0; b < NB; ++b)
                out[b][k] = acc[b][k0 + k];
        }
        for (int b = 0; b < NB; ++b)
            tps_mixed_m2p(coef + b * TPS_MIXED_COEF, p, H, zr, zi, r2, lnr2, er, ei, out[b]);
        for (int k = 0; k < H; ++k)
            for (int b = 0; b < NB; ++b)
                acc[b][k0 + k] = out[b][k];
    }
}

/* A near group's sum at the thread's pixels: its points in shared memory
 * from slot i0, scale 2^j, moments mo (band0 on, 4 per band). */
template <int NB, bool SAME_V>
__device__ __forceinline__ void near_sums(const double *geo, const double *mo, int j, int i0,
                                          const float2 *s_q, const float (*s_w)[TPS_MIXED_TILE],
                                          const float (*s_wl)[TPS_MIXED_TILE],
                                          const double pu[PIX], const double pv[PIX],
                                          double acc[NB][PIX])
{
    const float a = __int_as_float((127 + j) << 23);              /* 2^j */
    const double ad = __longlong_as_double((1023LL + j) << 52);   /* the same, exactly */
    float x[PIX], y[PIX], part[NB][PIX], comp[NB][PIX];
    for (int k = 0; k < PIX; ++k) {
        x[k] = float((pu[k] - geo[0]) * ad);
        y[k] = float((pv[k] - geo[1]) * ad);
        for (int b = 0; b < NB; ++b)
            part[b][k] = comp[b][k] = 0.0f;
    }
#pragma unroll 4
    for (int i = i0; i < i0 + TPS_MIXED_GROUP; ++i) {
        const float2 q = s_q[i];
        const float dy0 = tps_mixed_dy2(a, q.y, y[0]);
        for (int k = 0; k < PIX; ++k) {
            const float dy2 = SAME_V ? dy0 : tps_mixed_dy2(a, q.y, y[k]);
            const float phi = tps_mixed_phi(a, q.x, x[k], dy2);
            for (int b = 0; b < NB; ++b)
                tps_mixed_kahan(s_w[b][i], s_wl[b][i], phi, &part[b][k], &comp[b][k]);
        }
    }
    for (int b = 0; b < NB; ++b)
        for (int k = 0; k < PIX; ++k)
            acc[b][k] += tps_mixed_near_finish(part[b][k], comp[b][k], j, x[k], y[k], mo + 4 * b);
}

/* Four blocks of 128 threads per SM (128 registers) for one or two bands,
 * as the kernel before it had; three (170) for more, which would spill. */
template <int NB, bool SAME_V>
__global__ void __launch_bounds__(THREADS, NB <= 2 ? 4 : 3)
    evaluate_mixed(MixedArgs a, GridArgs g, OutArgs o)
{
    __shared__ float2 s_q[TPS_MIXED_TILE];
    __shared__ float s_w[NB][TPS_MIXED_TILE], s_wl[NB][TPS_MIXED_TILE];
    __shared__ double s_u[TILE], s_v[TILE], s_w64[NB][TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    __shared__ double s_red[THREADS / 32][4];
    __shared__ double s_val[NB];
    __shared__ int s_plan[2 * (GROUPS + 1)];
    __shared__ signed char s_p[PLANNED * (GROUPS + 1)], s_j[PLANNED * GROUPS];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long bx = a.bx0 + blockIdx.x, by = a.by0 + blockIdx.y;
    const long long row = by * BR + tid / TPR;
    long long col[PIX];
    double pu[PIX], pv[PIX];
    for (int k = 0; k < PIX; ++k) {
        col[k] = bx * BC + (tid % TPR) * PIX + k;
        tps_cell_centre(&g.w, double(col[k]), double(row), &pu[k], &pv[k]);
    }
    for (int k = tid; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = a.log_table[k];

    /* 1. The box of the block's pixels, and its error bound. */
    {
        double m[4] = {pu[0], -pu[0], pv[0], -pv[0]};
        for (int k = 1; k < PIX; ++k) {
            m[0] = fmin(m[0], pu[k]);
            m[1] = fmin(m[1], -pu[k]);
            m[2] = fmin(m[2], pv[k]);
            m[3] = fmin(m[3], -pv[k]);
        }
        for (int c = 0; c < 4; ++c) {
            m[c] = warp_min(m[c]);
            if (lane == 0)
                s_red[warp][c] = m[c];
        }
    }
    __syncthreads();
    double box[4];
    for (int c = 0; c < 4; ++c) {
        double v = s_red[0][c];
        for (int w = 1; w < THREADS / 32; ++w)
            v = fmin(v, s_red[w][c]);
        box[c] = c & 1 ? -v : v;
    }
    double bound[NB];
    {
        double part[NB];
        for (int b = 0; b < NB; ++b)
            part[b] = 0.0;
        /* group by group over the threads: the near groups' bounds are the
         * costly part, and a thread per tile would leave a few threads with
         * all of them */
        const size_t tc = a.n_bands * TPS_MIXED_COEF;
        for (size_t gx = tid; gx < a.n_tiles * GROUPS; gx += THREADS) {
            const size_t t = gx / GROUPS;
            const int gi = int(gx % GROUPS);
            int tp, gp = 0, gj = 0;
            tps_mixed_group_bound(box, a.tile + 4 * t, a.tile_coef + t * tc, gi,
                                  a.group + 4 * t * GROUPS, a.group_coef + t * GROUPS * tc,
                                  a.n_bands, a.band0, NB, a.budget, part, &tp, &gp, &gj);
            if (t < PLANNED) {
                if (gi == 0)
                    s_p[t * (GROUPS + 1) + GROUPS] = (signed char)tp;
                s_p[t * (GROUPS + 1) + gi] = (signed char)gp;
                s_j[t * GROUPS + gi] = (signed char)gj;
            }
        }
        __syncthreads(); /* s_red is read above */
        for (int b = 0; b < NB; ++b) {
            part[b] = warp_sum(part[b]);
            if (lane == 0)
                s_red[warp][b] = part[b];
        }
        __syncthreads();
        for (int b = 0; b < NB; ++b) {
            bound[b] = s_red[0][b];
            for (int w = 1; w < THREADS / 32; ++w)
                bound[b] += s_red[w][b];
        }
    }
    bool fail = a.force_every && (unsigned long long)(bx + by) % a.force_every == 0;
    for (int b = 0; b < NB; ++b)
        fail |= !(bound[b] <= a.tol[b]);
    bool violation = false;
    double acc[NB][PIX];

    /* 2. MIXED: far clusters as expansions, near groups in FP32. */
    if (!fail) {
        for (int b = 0; b < NB; ++b)
            for (int k = 0; k < PIX; ++k)
                acc[b][k] = 0.0;
        const size_t tc = a.n_bands * TPS_MIXED_COEF;
        for (size_t t = 0; t < a.n_tiles; ++t) {
            /* The tile's plan: from the bound's pass, or made again here. */
            const bool planned = t < PLANNED;
            int tp;
            if (planned) {
                tp = s_p[t * (GROUPS + 1) + GROUPS];
            } else {
                __syncthreads(); /* s_plan is read below */
                if (tid <= GROUPS) {
                    const double *geo =
                        tid < GROUPS ? a.group + 4 * (t * GROUPS + tid) : a.tile + 4 * t;
                    int p, j;
                    double rmin, rmax;
                    tps_mixed_plan(box, geo, a.budget, &p, &j, &rmin, &rmax);
                    s_plan[2 * tid] = p;
                    s_plan[2 * tid + 1] = j;
                }
                __syncthreads();
                tp = s_plan[2 * GROUPS];
            }
            if (tp < 0)
                continue;
            if (tp == 0) { /* near: its points into shared memory */
                __syncthreads(); /* the previous tile's are used */
                const size_t base = t * TPS_MIXED_TILE;
                for (int k = tid; k < TPS_MIXED_TILE; k += THREADS) {
                    s_q[k] = a.q[base + k];
                    for (int b = 0; b < NB; ++b) {
                        s_w[b][k] = a.w[(a.band0 + b) * a.n_pad + base + k];
                        s_wl[b][k] = a.wlo[(a.band0 + b) * a.n_pad + base + k];
                    }
                }
                __syncthreads();
            }
            /* The far tile itself (gi = -1), or its groups. */
            for (int gi = tp > 0 ? -1 : 0; gi < (tp > 0 ? 0 : GROUPS); ++gi) {
                const size_t gx = t * GROUPS + size_t(gi < 0 ? 0 : gi);
                const double *geo = gi < 0 ? a.tile + 4 * t : a.group + 4 * gx;
                const double *coef = (gi < 0 ? a.tile_coef + t * tc : a.group_coef + gx * tc) +
                                     a.band0 * TPS_MIXED_COEF;
                const int p = gi < 0 ? tp : planned ? s_p[t * (GROUPS + 1) + gi] : s_plan[2 * gi];
                if (p > 0) {
                    far_sums<NB>(geo, coef, p, s_log, pu, pv, acc);
                } else if (p == 0) {
                    const int j = planned ? s_j[t * GROUPS + gi] : s_plan[2 * gi + 1];
                    near_sums<NB, SAME_V>(geo, a.group_near + 4 * (gx * a.n_bands + a.band0), j,
                                          gi * TPS_MIXED_GROUP, s_q, s_w, s_wl, pu, pv, acc);
                }
            }
        }
        /* The self-check: one pixel in FP64, the points split over the threads. */
        int sr, sc;
        tps_mixed_sample((unsigned long long)bx, (unsigned long long)by, &sr, &sc);
        double spu, spv;
        tps_cell_centre(&g.w, double(bx * BC + sc), double(by * BR + sr), &spu, &spv);
        double part[NB];
        for (int b = 0; b < NB; ++b)
            part[b] = 0.0;
        for (size_t i = tid; i < a.n; i += THREADS) {
            const double2 p = a.uv[i];
            const double dx = spu - p.x, dy = spv - p.y;
            const double r2 = fma(dx, dx, fma(dy, dy, 1e-300));
            const double phi = r2 * table_log(r2, s_log);
            for (int b = 0; b < NB; ++b)
                part[b] = fma(a.w64[(a.band0 + b) * a.n_pad64 + i], phi, part[b]);
        }
        __syncthreads(); /* s_red is read above */
        for (int b = 0; b < NB; ++b) {
            part[b] = warp_sum(part[b]);
            if (lane == 0)
                s_red[warp][b] = part[b];
        }
        if (tid == sr * TPR + sc / PIX)
            for (int b = 0; b < NB; ++b)
                s_val[b] = acc[b][sc % PIX];
        __syncthreads();
        for (int b = 0; b < NB; ++b) {
            double ref = s_red[0][b];
            for (int w = 1; w < THREADS / 32; ++w)
                ref += s_red[w][b];
            const double slack = tps_mixed_check_slack(a.abs_h[b], spu, spv);
            violation |= !(fabs(s_val[b] - ref) <= bound[b] + slack);
        }
        fail = violation;
    }

    /* 3. DOUBLE where MIXED cannot promise the tolerance. */
    if (fail)
        fp64_sums<NB, SAME_V>(a.uv, a.w64 + a.band0 * a.n_pad64, a.n_pad64, a.n_pad64, s_log, s_u,
                              s_v, s_w64, pu, pv, acc);

    /* 4. The chunk's pixels, and the counters. */
    const long long r = row - (long long)(g.w.first_row + size_t(g.row0));
    for (int k = 0; k < PIX; ++k) {
        const long long c = col[k] - (long long)g.w.first_col;
        if (c < 0 || c >= g.ncols || r < 0 || r >= a.rows)
            continue;
        const size_t index = size_t(r) * size_t(g.ncols) + size_t(c);
        for (int b = 0; b < NB; ++b) {
            const double value = pixel_value(acc[b][k], o.affine[b], pu[k], pv[k]);
            if (o.is_double[b])
                store<double>(o.plane[b], index, value);
            else
                store<float>(o.plane[b], index, value);
        }
    }
    if (tid == 0 && o.counters) {
        atomicAdd(&o.counters->blocks, 1ULL);
        if (fail)
            atomicAdd(&o.counters->fallback, 1ULL);
        if (violation)
            atomicAdd(&o.counters->violations, 1ULL);
        if (!fail) {
            double rel = 0.0;
            for (int b = 0; b < NB; ++b)
                rel = fmax(rel, bound[b] * a.inv_range[b]);
            atomicMax(&o.counters->max_rel_bits, (unsigned long long)__double_as_longlong(rel));
        }
    }
}

template <int NB>
cudaError_t launch_nb(const MixedArgs &a, const GridArgs &g, const OutArgs &o, dim3 grid,
                      cudaStream_t stream)
{
    if (g.w.cv == 0.0)
        evaluate_mixed<NB, true><<<grid, THREADS, 0, stream>>>(a, g, o);
    else
        evaluate_mixed<NB, false><<<grid, THREADS, 0, stream>>>(a, g, o);
    return cudaGetLastError();
}

} // namespace

cudaError_t launch_mixed(const tps_gpu_model *m, const MixedGuard &guard, const int *bands, int nb,
                         const GridArgs &g, const OutArgs &o, int rows, cudaStream_t stream)
{
    const MixedModel &x = m->mixed;
    MixedArgs a;
    memset(&a, 0, sizeof a);
    a.q = x.q;
    a.w = x.w;
    a.wlo = x.wlo;
    a.tile = x.tile;
    a.group = x.group;
    a.tile_coef = x.tile_coef;
    a.group_coef = x.group_coef;
    a.group_near = x.group_near;
    a.n_pad = x.n_pad;
    a.n_tiles = x.n_tiles;
    a.n_bands = m->n_bands;
    a.band0 = bands[0];
    a.uv = m->uv;
    a.w64 = m->w;
    a.n = m->n;
    a.n_pad64 = m->n_pad;
    a.log_table = m->log_table;
    for (int b = 0; b < nb && b < MAX_NB; ++b) {
        const double range = x.range[bands[0] + b];
        a.tol[b] = guard.tolerance * range;
        a.inv_range[b] = range > 0.0 ? 1.0 / range : 0.0;
        a.abs_h[b] = x.abs_h[bands[0] + b];
    }
    a.budget = tps_mixed_trunc_budget(guard.tolerance, x.range, x.abs_h, m->n_bands);
    a.force_every = guard.force_every;
    /* The blocks over the chunk, on the grid's 32 x 16 lattice. */
    const long long c0 = (long long)g.w.first_col, r0 = (long long)(g.w.first_row + size_t(g.row0));
    a.bx0 = c0 / BC;
    a.by0 = r0 / BR;
    a.rows = rows;
    const dim3 grid(unsigned((c0 + g.ncols - 1) / BC - a.bx0 + 1),
                    unsigned((r0 + rows - 1) / BR - a.by0 + 1));
    switch (nb) {
    case 1: return launch_nb<1>(a, g, o, grid, stream);
    case 2: return launch_nb<2>(a, g, o, grid, stream);
    case 3: return launch_nb<3>(a, g, o, grid, stream);
    default: return launch_nb<4>(a, g, o, grid, stream);
    }
}

} // namespace tps_gpu
