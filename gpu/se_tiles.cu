/* se_tiles.cu: the standard error in tiles of low rank on the device
 * (gpu_backend.h, tps_gpu_se_tile_group; the plan is core/se_tile.h's, the
 * host's part core/gpu_se_tiles.c). All FP64, all matrices column-major.
 *
 * Once per factorisation (tps_gpu_se_tiles_prepare):
 *   Z = [Q1^T; L^-1 Q2^T] (n x n): column p is what a near point's unit
 *   column of B becomes; D = [0; L^-1 M21] (n x m).
 * Per group of S = GROUP^2 tiles (slot s: a tile, or zero columns):
 *   1. Y (n x S RW): per slot its far points' kernel at its Q^2 nodes (near
 *      rows 0) and its guards' kernel columns (RW = Q^2 + G columns);
 *   2. Y <- Q^T Y = Y - (T V^T)^T (V^T Y), two DGEMMs; the guards' columns
 *      y = q2 - M21 h below row m;
 *   3. P = L^-1 Y[m:, :] by DGEMMs over row blocks of L^-1 (its lower
 *      triangle, the rest zero), the same shapes for every group;
 *   4. the guards' exact variances from Y's top rows (q1) and P;
 *   5. per active tile: W = [Z(:, near) | [Y top; P] of its far columns |
 *      D] (n x cols, cols = near + Q^2 + m); its guards' vectors [m; -h] and
 *      their low-rank variance (one DGEMM of n x G); per chunk of CH cells
 *      their vectors (cols x CH) and W times them (one DGEMM, n x CH): rows
 *      0..m-1 are q1, the others L^-1 y; the variance h^T M11 h - 2 q1^T h -
 *      |L^-1 y|^2, the sum of squares by a fixed reduction (no Gram matrix:
 *      its cancellation would cost the accuracy at data points).
 * A cell's bytes depend only on its tile: every DGEMM has a shape fixed by
 * the tile (or by the group's constant width) and a column in a place fixed
 * by its slot. */
#include "se.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

using namespace tps_gpu;

namespace {

constexpr int T = TPS_GPU_SE_TILE;
constexpr int Q = TPS_GPU_SE_NODES;
constexpr int Q2 = Q * Q;
constexpr int G = TPS_GPU_SE_GUARDS;
constexpr int GR = TPS_GPU_SE_GROUP;
constexpr int S = GR * GR;              /* slots of a group */
constexpr int RW = Q2 + G;              /* a slot's right-hand sides */
constexpr int YC = S * RW;              /* a group's */
constexpr int SIDE = GR * T;            /* cells per side of a group */
constexpr int CH = TPS_GPU_SE_CHUNK;    /* cells per product */
constexpr int MAXC = TPS_GPU_SE_MAX_COLS + SE_MAX_M; /* a tile's columns, at most */
constexpr int TBS = 1024;               /* rows of L^-1 per DGEMM of step 3 */
constexpr int RED = 128;                /* threads of a reduction */
static_assert((T * T) % CH == 0 && CH % T == 0, "a chunk is whole rows of a tile");

/* sum of x[r]^2, r0 <= r < r1, over the block (blockDim.x == RED, every
 * thread calls it): a fixed order, so the same bytes every time. */
__device__ double block_sum_squares(const double *x, int r0, int r1)
{
    __shared__ double part[RED];
    double s = 0.0;
    for (int r = r0 + int(threadIdx.x); r < r1; r += RED)
        s += x[r] * x[r];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int k = RED / 2; k > 0; k >>= 1) {
        if (int(threadIdx.x) < k)
            part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
    return part[0];
}

/* h^T M11 h (M11 full, m x m) */
__device__ double hmh_of(const double *h, const double *m11, int m)
{
    double s = 0.0;
    for (int a = 0; a < m; ++a)
        for (int b = 0; b < m; ++b)
            s += h[a] * m11[b * m + a] * h[b];
    return s;
}

/* Z's chunk: y[:, k] = e_(c0 + k), k < cols */
__global__ void unit_columns(double *y, int n, int c0, int cols)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n)
        return;
    for (int k = blockIdx.y; k < cols; k += gridDim.y)
        y[size_t(k) * n + r] = r == c0 + k ? 1.0 : 0.0;
}

/* D's input: y[:, c] = [0; M21[:, c]], c < m (M21 from F's lower rows:
 * f[r 2m + m + c] = M(r, c) for r >= m) */
__global__ void m21_columns(double *y, int n, int m, const double *f)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n)
        return;
    for (int c = 0; c < m; ++c)
        y[size_t(c) * n + r] = r < m ? 0.0 : f[size_t(r) * 2 * m + m + c];
}

/* 1. Y[p, s RW + a]: the far block (a < Q2) and the guards' columns */
__global__ void fill_far(double *y, int n, const double *pu, const double *pv,
                         const tps_gpu_se_tile *rec)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    const int c = blockIdx.y;
    if (p >= n)
        return;
    const int s = c / RW, a = c % RW;
    const tps_gpu_se_tile &t = rec[s];
    double value = 0.0;
    if (t.active) {
        if (a < Q2)
            value = se_phi(pu[p] - t.nu[a], pv[p] - t.nv[a]);
        else if (a - Q2 < t.n_guards)
            value = se_phi(pu[p] - t.gu[a - Q2], pv[p] - t.gv[a - Q2]);
    }
    y[size_t(c) * n + p] = value;
}

/* 1. the near points' rows of each slot's far block: 0 */
__global__ void zero_near(double *y, int n, const int *near, const tps_gpu_se_tile *rec)
{
    const int s = blockIdx.y;
    const tps_gpu_se_tile &t = rec[s];
    if (!t.active)
        return;
    const int count = t.n_near * Q2;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < count; k += gridDim.x * blockDim.x) {
        const int a = k % Q2, q = k / Q2;
        y[size_t(s * RW + a) * n + near[t.near_at + q]] = 0.0;
    }
}

/* 2. the guards' columns below row m: y = q2 - M21 h */
__global__ void guard_fixed(double *y, int n, int m, const double *f, const tps_gpu_se_tile *rec)
{
    const int r = m + blockIdx.x * blockDim.x + threadIdx.x;
    const int s = blockIdx.y / G, g = blockIdx.y % G;
    const tps_gpu_se_tile &t = rec[s];
    if (r >= n || !t.active || g >= t.n_guards)
        return;
    const double *h = t.gh + g * SE_MAX_M;
    double acc = 0.0;
    for (int c = 0; c < m; ++c)
        acc += f[size_t(r) * 2 * m + m + c] * h[c];
    y[size_t(s * RW + Q2 + g) * n + r] -= acc;
}

/* 4. the guards' exact variances and their terms' scale */
__global__ void guard_exact(double *guards, const double *y, const double *p, int n, int m,
                            const double *m11, const tps_gpu_se_tile *rec)
{
    const int s = blockIdx.x / G, g = blockIdx.x % G;
    const tps_gpu_se_tile &t = rec[s];
    if (!t.active || g >= t.n_guards) /* the same for the whole block */
        return;
    const size_t col = size_t(s * RW + Q2 + g) * n;
    const double sq = block_sum_squares(p + col, m, n);
    if (threadIdx.x == 0) {
        const double *h = t.gh + g * SE_MAX_M;
        double q1h = 0.0;
        for (int a = 0; a < m; ++a)
            q1h += y[col + a] * h[a];
        const double hmh = hmh_of(h, m11, m);
        guards[(s * G + g) * 3 + 1] = hmh - 2.0 * q1h - sq;
        guards[(s * G + g) * 3 + 2] = fabs(hmh) + 2.0 * fabs(q1h) + sq;
    }
}

/* 5. slot s's W (n x cols): Z's near columns, its far columns (Y's top m
 * rows, P below), D */
__global__ void assemble(double *w, int n, int m, const double *z, const double *y,
                         const double *p, const double *d, const int *near,
                         const tps_gpu_se_tile *rec, int s)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    const int c = blockIdx.y;
    if (r >= n)
        return;
    const tps_gpu_se_tile &t = rec[s];
    const int nn = t.n_near;
    double value;
    if (c < nn) {
        value = z[size_t(near[t.near_at + c]) * n + r];
    } else if (c < nn + Q2) {
        const size_t at = size_t(s * RW + c - nn) * n + r;
        value = r < m ? y[at] : p[at];
    } else {
        value = d[size_t(c - nn - Q2) * n + r];
    }
    w[size_t(c) * n + r] = value;
}

/* 5. slot s's guards' vectors [m; -h] (cols x G, zero for absent guards) */
__global__ void guard_vectors(double *mg, int m, const double *pu, const double *pv,
                              const int *near, const tps_gpu_se_tile *rec, int s)
{
    const int g = blockIdx.x;
    const tps_gpu_se_tile &t = rec[s];
    const int nn = t.n_near, cols = nn + Q2 + m;
    const double *ls = t.gl + g * 2 * Q, *lt = ls + Q;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        double value = 0.0;
        if (g < t.n_guards) {
            if (c < nn) {
                const int q = near[t.near_at + c];
                value = se_phi(pu[q] - t.gu[g], pv[q] - t.gv[g]);
            } else if (c < nn + Q2) {
                const int a = (c - nn) % Q, b = (c - nn) / Q;
                value = ls[a] * lt[b];
            } else {
                value = -t.gh[g * SE_MAX_M + c - nn - Q2];
            }
        }
        mg[size_t(g) * cols + c] = value;
    }
}

/* 5. the guards' low-rank variances from W [m; -h] (n x G) */
__global__ void guard_lowrank(double *guards, const double *out, int n, int m,
                              const double *m11, const tps_gpu_se_tile *rec, int s)
{
    const int g = blockIdx.x;
    const tps_gpu_se_tile &t = rec[s];
    if (g >= t.n_guards)
        return;
    const double *col = out + size_t(g) * n;
    const double sq = block_sum_squares(col, m, n);
    if (threadIdx.x == 0) {
        const double *h = t.gh + g * SE_MAX_M;
        double q1h = 0.0;
        for (int a = 0; a < m; ++a)
            q1h += col[a] * h[a];
        guards[(s * G + g) * 3] = hmh_of(h, m11, m) - 2.0 * q1h - sq;
    }
}

/* 5. the vectors [m; -h] (cols x CH) of chunk `chunk` of slot s's cells:
 * cell q at tile column q % T, row chunk CH / T + q / T */
__global__ void cell_vectors(double *mv, int m, const double *pu, const double *pv,
                             const int *near, const tps_gpu_se_tile *rec, int s, tps_window w,
                             const double *lag, const double *r, const double *zs, int chunk)
{
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= CH)
        return;
    const tps_gpu_se_tile &t = rec[s];
    const int nn = t.n_near, cols = nn + Q2 + m;
    const int i = q % T, j = chunk * (CH / T) + q / T;
    double u, v;
    tps_cell_centre(&w, double(t.c0 + size_t(i)), double(t.r0 + size_t(j)), &u, &v);
    double *col = mv + size_t(q) * cols;
    for (int c = 0; c < nn; ++c) {
        const int p = near[t.near_at + c];
        col[c] = se_phi(pu[p] - u, pv[p] - v);
    }
    const double *li = lag + i * Q, *lj = lag + j * Q;
    for (int b = 0; b < Q; ++b)
        for (int a = 0; a < Q; ++a)
            col[nn + a + Q * b] = li[a] * lj[b];
    /* h = R^-T t, t = [1 u v c..] (a NaN covariate as 0: the cell is NaN
     * at the end); R upper, r[k m + l] = R(l, k) */
    const int gx = (s % GR) * T + i, gy = (s / GR) * T + j;
    double tt[SE_MAX_M], h[SE_MAX_M];
    tt[0] = 1.0;
    tt[1] = u;
    tt[2] = v;
    for (int k = 3; k < m; ++k) {
        const double z = zs[size_t(k - 3) * SIDE * SIDE + size_t(gy) * SIDE + gx];
        tt[k] = isnan(z) ? 0.0 : z;
    }
    for (int k = 0; k < m; ++k) {
        double acc = tt[k];
        for (int l = 0; l < k; ++l)
            acc -= h[l] * r[k * m + l];
        h[k] = acc / r[k * m + k];
        col[nn + Q2 + k] = -h[k];
    }
}

/* 5. chunk `chunk` of slot s's cells: h^T M11 h - 2 q1^T h - |L^-1 y|^2
 * from W [m; -h] (n x CH), into the group's out (row-major, SIDE wide) */
__global__ void cell_finish(double *outg, const double *prod, const double *mv, int n, int m,
                            const double *m11, const double *zs, const tps_gpu_se_tile *rec,
                            int s, int chunk)
{
    const int q = blockIdx.x;
    const tps_gpu_se_tile &t = rec[s];
    const int nn = t.n_near, cols = nn + Q2 + m;
    const double *col = prod + size_t(q) * n;
    const double sq = block_sum_squares(col, m, n);
    if (threadIdx.x != 0)
        return;
    const double *mh = mv + size_t(q) * cols + nn + Q2; /* -h */
    double h[SE_MAX_M], q1h = 0.0;
    for (int a = 0; a < m; ++a) {
        h[a] = -mh[a];
        q1h += col[a] * h[a];
    }
    double value = hmh_of(h, m11, m) - 2.0 * q1h - sq;
    const int i = q % T, j = chunk * (CH / T) + q / T;
    const int gx = (s % GR) * T + i, gy = (s / GR) * T + j;
    for (int k = 3; k < m; ++k)
        if (isnan(zs[size_t(k - 3) * SIDE * SIDE + size_t(gy) * SIDE + gx]))
            value = nan("");
    outg[size_t(gy) * SIDE + gx] = value;
}

} // namespace

namespace tps_gpu {

struct SeTiles {
    double *z = nullptr, *d = nullptr, *y = nullptr, *p = nullptr, *pm = nullptr, *w = nullptr,
           *mv = nullptr, *prod = nullptr, *mg = nullptr, *outg = nullptr, *lag = nullptr,
           *zs = nullptr, *out = nullptr, *guards = nullptr;
    int *near = nullptr;
    tps_gpu_se_tile *rec = nullptr;
    size_t bytes = 0;
};

void se_tiles_free(SeTiles *tl)
{
    if (!tl)
        return;
    double *buffers[] = {tl->z,    tl->d,    tl->y,  tl->p,   tl->pm,  tl->w,     tl->mv,
                         tl->prod, tl->mg,   tl->outg, tl->lag, tl->zs, tl->out, tl->guards};
    for (double *b : buffers)
        cudaFree(b);
    cudaFree(tl->near);
    cudaFree(tl->rec);
    delete tl;
}

} // namespace tps_gpu

namespace {

/* Sizes of the buffers, in elements, for n points and m fixed columns. */
struct Sizes {
    size_t z, d, y, p, pm, w, mv, prod, mg, outg, lag, zs, out, guards, near;
    size_t bytes() const
    {
        return sizeof(double) * (z + d + y + p + pm + w + mv + prod + mg + outg + lag + zs + out +
                                 guards) +
               sizeof(int) * near + sizeof(tps_gpu_se_tile) * S;
    }
};

Sizes sizes_for(size_t n, size_t m)
{
    Sizes k;
    k.z = n * n;
    k.d = n * m;
    k.y = n * YC;
    k.p = n * YC;
    k.pm = m * YC;
    k.w = n * MAXC;
    k.mv = size_t(MAXC) * CH;
    k.prod = n * CH;
    k.mg = size_t(MAXC) * G;
    k.outg = n * G;
    k.lag = size_t(Q) * T;
    k.zs = (m > 3 ? m - 3 : 1) * size_t(SIDE) * SIDE;
    k.out = size_t(SIDE) * SIDE;
    k.guards = size_t(S) * G * 3;
    k.near = size_t(S) * TPS_GPU_SE_MAX_COLS;
    return k;
}

/* The cuBLAS calls of one request: the first failure is kept, the calls
 * after it are skipped. */
struct Blas {
    cublasHandle_t h;
    cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
    void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, double alpha,
              const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc)
    {
        if (status == CUBLAS_STATUS_SUCCESS)
            status = se_blas.dgemm(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc);
    }
};

/* y <- Q^T y (n x cols, leading dimension n): y - (T V^T)^T (V^T y), T V^T
 * the top m rows of F (leading dimension 2m) */
void apply_qt(tps_gpu_se *se, Blas &blas, double *y, int cols, double *pm)
{
    const int n = se->n, m = se->m;
    blas.gemm(CUBLAS_OP_T, CUBLAS_OP_N, m, cols, n, 1.0, se->vr, n, y, n, 0.0, pm, m);
    blas.gemm(CUBLAS_OP_T, CUBLAS_OP_N, n, cols, m, -1.0, se->f, 2 * m, pm, m, 1.0, y, n);
}

/* out[m.., :] = L^-1 y[m.., :] (cols columns; y at leading dimension n, out
 * at ldo), by row blocks of L^-1: rows j0 .. j0 + rows of L^-1 have their
 * nonzeros in columns 0 .. j0 + rows. */
void apply_linv(tps_gpu_se *se, Blas &blas, const double *y, int cols, double *out, int ldo)
{
    const int n = se->n, m = se->m, nm = se->nm;
    for (int j0 = 0; j0 < nm; j0 += TBS) {
        const int rows = nm - j0 < TBS ? nm - j0 : TBS;
        blas.gemm(CUBLAS_OP_N, CUBLAS_OP_N, rows, cols, j0 + rows, 1.0, se->linv + j0, nm, y + m,
                  n, 0.0, out + m + j0, ldo);
    }
}

tps_status blas_error(tps_error *err, const Blas &blas)
{
    return unavailable(err, "cuBLAS DGEMM failed (status %d)", int(blas.status));
}

/* Z and D into tl (its buffers allocated), on se's stream. */
tps_status make_z(tps_gpu_se *se, SeTiles *tl, tps_error *err)
{
    const int n = se->n, m = se->m;
    Blas blas{se->handle};
    const unsigned rows_blocks = unsigned((n + 127) / 128);
    for (int c0 = 0; c0 < n && blas.status == CUBLAS_STATUS_SUCCESS; c0 += YC) {
        const int cols = n - c0 < YC ? n - c0 : YC;
        unit_columns<<<dim3(rows_blocks, unsigned(cols < 65535 ? cols : 65535)), 128, 0,
                       se->stream>>>(tl->y, n, c0, cols);
        apply_qt(se, blas, tl->y, cols, tl->pm);
        /* Q1^T rows as they are, L^-1 Q2^T below */
        cudaError_t e = cudaMemcpy2DAsync(tl->z + size_t(c0) * n, sizeof(double) * n, tl->y,
                                          sizeof(double) * n, sizeof(double) * m, size_t(cols),
                                          cudaMemcpyDeviceToDevice, se->stream);
        if (e != cudaSuccess)
            return fail(err, "the tiles' Z", e);
        apply_linv(se, blas, tl->y, cols, tl->z + size_t(c0) * n, n);
    }
    m21_columns<<<rows_blocks, 128, 0, se->stream>>>(tl->y, n, m, se->f);
    cudaError_t e = cudaMemsetAsync(tl->d, 0, sizeof(double) * size_t(n) * m, se->stream);
    if (e != cudaSuccess)
        return fail(err, "the tiles' D", e);
    apply_linv(se, blas, tl->y, m, tl->d, n);
    if (blas.status != CUBLAS_STATUS_SUCCESS)
        return blas_error(err, blas);
    e = cudaGetLastError();
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(se->stream);
    return e == cudaSuccess ? TPS_OK : fail(err, "the tiles' Z and D", e);
}

} // namespace

extern "C" tps_status tps_gpu_se_tiles_prepare(tps_gpu_se *se, const double *lag,
                                               size_t max_bytes, tps_error *err)
{
    std::lock_guard<std::mutex> guard(se->lock);
    if (se->tiles)
        return TPS_OK;
    const size_t n = size_t(se->n), m = size_t(se->m);
    const Sizes k = sizes_for(n, m);
    /* Within half the free memory and max_bytes, leaving the exact blocks
     * room for a refused tile (TPS_GPU_SE_TILE^2 cells: se.cu's buffers). */
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess)
        return fail(err, "cudaMemGetInfo", e);
    const size_t exact = sizeof(double) * size_t(T) * T * (n + 512 + 2 * m + 2);
    const size_t need = k.bytes() + exact;
    if (need > free_b / 2 || (max_bytes && need + se->bytes > max_bytes))
        return unavailable(err, "the standard error's tiles need %zu bytes of GPU memory", need);
    SeTiles *tl = new (std::nothrow) SeTiles;
    if (!tl)
        return unavailable(err, "out of host memory");
    struct {
        double **at;
        size_t count;
    } parts[] = {{&tl->z, k.z},       {&tl->d, k.d},       {&tl->y, k.y},     {&tl->p, k.p},
                 {&tl->pm, k.pm},     {&tl->w, k.w},       {&tl->mv, k.mv},   {&tl->prod, k.prod},
                 {&tl->mg, k.mg},     {&tl->outg, k.outg}, {&tl->lag, k.lag}, {&tl->zs, k.zs},
                 {&tl->out, k.out},   {&tl->guards, k.guards}};
    for (auto &part : parts)
        if (e == cudaSuccess)
            e = cudaMalloc(part.at, sizeof(double) * part.count);
    if (e == cudaSuccess)
        e = cudaMalloc(&tl->near, sizeof(int) * k.near);
    if (e == cudaSuccess)
        e = cudaMalloc(&tl->rec, sizeof(tps_gpu_se_tile) * S);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(tl->lag, lag, sizeof(double) * k.lag, cudaMemcpyHostToDevice,
                            se->stream);
    tps_status st = e == cudaSuccess ? TPS_OK : fail(err, "the standard error's tiles", e);
    if (st == TPS_OK)
        st = make_z(se, tl, err);
    if (st != TPS_OK) {
        se_tiles_free(tl);
        cudaGetLastError(); /* an allocation's failure is not sticky: clear it */
        return st;
    }
    tl->bytes = k.bytes();
    se->tiles = tl;
    se->bytes += tl->bytes;
    return TPS_OK;
}

extern "C" tps_status tps_gpu_se_tile_group(tps_gpu_se *se, const tps_window *w,
                                            const tps_gpu_se_tile *tiles, const int *near,
                                            size_t n_near, const double *zs, double *out,
                                            double *guards, tps_error *err)
{
    std::lock_guard<std::mutex> guard(se->lock);
    SeTiles *tl = se->tiles;
    if (!tl)
        return unavailable(err, "the standard error's tiles are not on the device");
    const int n = se->n, m = se->m;
    if (n_near > size_t(S) * TPS_GPU_SE_MAX_COLS)
        return unavailable(err, "%zu near points in a group of tiles", n_near);
    for (int s = 0; s < S; ++s)
        if (tiles[s].active && (tiles[s].n_near < 0 || tiles[s].n_guards < 0 ||
                                tiles[s].n_guards > G ||
                                tiles[s].n_near + Q2 > TPS_GPU_SE_MAX_COLS ||
                                tiles[s].near_at + size_t(tiles[s].n_near) > n_near))
            return unavailable(err, "a tile's record is out of range");
    const size_t zs_count = size_t(m - 3) * SIDE * SIDE;
    cudaStream_t st = se->stream;
    cudaError_t e = cudaMemcpyAsync(tl->rec, tiles, sizeof(tps_gpu_se_tile) * S,
                                    cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess && n_near)
        e = cudaMemcpyAsync(tl->near, near, sizeof(int) * n_near, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess && zs_count)
        e = cudaMemcpyAsync(tl->zs, zs, sizeof(double) * zs_count, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess) /* all bits set: NaN where no tile wrote */
        e = cudaMemsetAsync(tl->out, 0xff, sizeof(double) * SIDE * SIDE, st);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(tl->guards, 0, sizeof(double) * S * G * 3, st);
    if (e != cudaSuccess)
        return fail(err, "uploading a group of tiles", e);
    Blas blas{se->handle};
    const unsigned rows_blocks = unsigned((n + 127) / 128);
    /* 1-3: the group's right-hand sides, Q^T, the guards' y, L^-1 */
    fill_far<<<dim3(rows_blocks, unsigned(YC)), 128, 0, st>>>(tl->y, n, se->u, se->v, tl->rec);
    zero_near<<<dim3(8, unsigned(S)), 128, 0, st>>>(tl->y, n, tl->near, tl->rec);
    apply_qt(se, blas, tl->y, YC, tl->pm);
    guard_fixed<<<dim3(unsigned((n - m + 127) / 128), unsigned(S * G)), 128, 0, st>>>(
        tl->y, n, m, se->f, tl->rec);
    apply_linv(se, blas, tl->y, YC, tl->p, n);
    /* 4 */
    guard_exact<<<unsigned(S * G), RED, 0, st>>>(tl->guards, tl->y, tl->p, n, m, se->m11,
                                                 tl->rec);
    /* 5: per tile */
    for (int s = 0; s < S && blas.status == CUBLAS_STATUS_SUCCESS; ++s) {
        if (!tiles[s].active)
            continue;
        const int cols = tiles[s].n_near + Q2 + m;
        assemble<<<dim3(rows_blocks, unsigned(cols)), 128, 0, st>>>(
            tl->w, n, m, tl->z, tl->y, tl->p, tl->d, tl->near, tl->rec, s);
        guard_vectors<<<unsigned(G), 128, 0, st>>>(tl->mg, m, se->u, se->v, tl->near, tl->rec,
                                                   s);
        blas.gemm(CUBLAS_OP_N, CUBLAS_OP_N, n, G, cols, 1.0, tl->w, n, tl->mg, cols, 0.0,
                  tl->outg, n);
        guard_lowrank<<<unsigned(G), RED, 0, st>>>(tl->guards, tl->outg, n, m, se->m11, tl->rec,
                                                   s);
        for (int chunk = 0; chunk < T * T / CH; ++chunk) {
            cell_vectors<<<unsigned(CH / 128), 128, 0, st>>>(tl->mv, m, se->u, se->v, tl->near,
                                                             tl->rec, s, *w, tl->lag, se->r,
                                                             tl->zs, chunk);
            blas.gemm(CUBLAS_OP_N, CUBLAS_OP_N, n, CH, cols, 1.0, tl->w, n, tl->mv, cols, 0.0,
                      tl->prod, n);
            cell_finish<<<unsigned(CH), RED, 0, st>>>(tl->out, tl->prod, tl->mv, n, m, se->m11,
                                                      tl->zs, tl->rec, s, chunk);
        }
    }
    if (blas.status != CUBLAS_STATUS_SUCCESS)
        return blas_error(err, blas);
    e = cudaGetLastError();
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(out, tl->out, sizeof(double) * SIDE * SIDE, cudaMemcpyDeviceToHost,
                            st);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(guards, tl->guards, sizeof(double) * S * G * 3,
                            cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(st);
    return e == cudaSuccess ? TPS_OK : fail(err, "the standard error's tiles", e);
}
