/* local.cu: a LOCAL model on the GPU: the device copy of its patches, the
 * candidate patches of each tile of pixels, and the value kernel. */
#include "fault.cuh"
#include "local.cuh"
#include "log_table.cuh"
#include "staging.cuh"

#include <algorithm>
#include <math.h>
#include <math_constants.h>
#include <new>

using namespace tps_gpu;

namespace {

template <int NB>
__global__ void __launch_bounds__(THREADS) evaluate_local(LocalArgs a, GridArgs g, OutArgs o)
{
    __shared__ double s_u[TILE], s_v[TILE], s_w[NB][TILE];
    __shared__ double2 s_log[LOG_TABLE_SIZE];
    for (int k = threadIdx.x; k < LOG_TABLE_SIZE; k += THREADS)
        s_log[k] = a.log_table[k];
    const int col = blockIdx.x * LOCAL_TW + int(threadIdx.x) % LOCAL_TW;
    const int row_base = blockIdx.y * LOCAL_TH + int(threadIdx.x) / LOCAL_TW * PIX;
    double pu[PIX], pv[PIX], qu[PIX], qv[PIX], acc[NB][PIX], wsum[PIX];
    local_pixels(a, g, col, row_base, pu, pv, qu, qv);
    for (int p = 0; p < PIX; ++p) {
        wsum[p] = 0.0;
        for (int b = 0; b < NB; ++b)
            acc[b][p] = 0.0;
    }
    const size_t tile = size_t(a.tile_row0 + int(blockIdx.y)) * size_t(a.tiles_x) + blockIdx.x;
    for (unsigned e = a.tile_start[tile]; e < a.tile_start[tile + 1]; ++e) {
        const LocalPatch pt = a.patches[a.tile_patch[e]];
        double wk[PIX], lu[PIX], lv[PIX];
        int any = 0;
        for (int p = 0; p < PIX; ++p) {
            wk[p] = tps_bump((qu[p] - pt.cx) / pt.hx) * tps_bump((qv[p] - pt.cy) / pt.hy);
            any |= wk[p] > 0.0;
            lu[p] = (pu[p] - pt.pcx) / pt.ps;
            lv[p] = (pv[p] - pt.pcy) / pt.ps;
        }
        if (!__syncthreads_or(any))
            continue;
        double sum[NB][PIX];
        for (int b = 0; b < NB; ++b)
            for (int p = 0; p < PIX; ++p)
                sum[b][p] = 0.0;
        for (unsigned long long t0 = 0; t0 < pt.n; t0 += TILE) {
            __syncthreads();
            for (int k = threadIdx.x; k < TILE; k += THREADS) {
                const bool in = t0 + k < pt.n;
                const double2 q = in ? a.uv[pt.offset + t0 + k] : make_double2(0.0, 0.0);
                s_u[k] = q.x;
                s_v[k] = q.y;
                for (int b = 0; b < NB; ++b)
                    s_w[b][k] = in ? a.w[size_t(a.first_band + b) * a.w_stride + pt.offset + t0 + k]
                                   : 0.0;
            }
            __syncthreads();
            const int count = pt.n - t0 < TILE ? int(pt.n - t0) : TILE;
            for (int k = 0; k < count; ++k) {
                const double su = s_u[k], sv = s_v[k];
                for (int p = 0; p < PIX; ++p) {
                    const double dx = lu[p] - su, dy = lv[p] - sv;
                    const double r2 = fma(dx, dx, fma(dy, dy, 1e-300));
                    const double phi = r2 * table_log(r2, s_log);
                    for (int b = 0; b < NB; ++b)
                        sum[b][p] = fma(s_w[b][k], phi, sum[b][p]);
                }
            }
        }
        for (int p = 0; p < PIX; ++p) {
            if (!(wk[p] > 0.0))
                continue;
            for (int b = 0; b < NB; ++b) {
                const double *af =
                    a.affine + (size_t(a.tile_patch[e]) * a.n_model_bands + a.first_band + b) * 3;
                acc[b][p] += wk[p] * (sum[b][p] + af[0] + af[1] * lu[p] + af[2] * lv[p]);
            }
            wsum[p] += wk[p];
        }
    }
    if (col >= g.ncols)
        return;
    for (int p = 0; p < PIX; ++p) {
        if (row_base + p >= a.rows)
            break;
        const size_t index = size_t(row_base + p) * size_t(g.ncols) + size_t(col);
        for (int b = 0; b < NB; ++b) {
            /* wsum > 0 inside the box by construction; NaN only for NaN targets. */
            const double value = wsum[p] > 0.0 ? acc[b][p] / wsum[p] : CUDART_NAN;
            if (o.is_double[b])
                store<double>(o.plane[b], index, value);
            else
                store<float>(o.plane[b], index, value);
        }
    }
}

cudaError_t launch_values(const LocalArgs &c, const GridArgs &g, const OutArgs &o, int nb,
                          dim3 blocks, cudaStream_t stream)
{
    switch (nb) {
    case 1: evaluate_local<1><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
    case 2: evaluate_local<2><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
    case 3: evaluate_local<3><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
    default: evaluate_local<4><<<blocks, THREADS, 0, stream>>>(c, g, o); break;
    }
    return cudaGetLastError();
}

} // namespace

extern "C" void tps_gpu_local_destroy(tps_gpu_local *m)
{
    if (!m)
        return;
    cudaFree(m->patches);
    cudaFree(m->uv);
    cudaFree(m->w);
    cudaFree(m->affine);
    cudaFree(m->log_table);
    delete m;
}

extern "C" tps_gpu_local *tps_gpu_local_create(size_t n_patches, const tps_gpu_patch *patches,
                                              size_t n_bands, const tps_gpu_lookup *lookup,
                                              size_t max_bytes, tps_error *err)
{
    if (tps_gpu_probe(err) != 0)
        return nullptr;
    size_t entries = 0;
    for (size_t p = 0; p < n_patches; ++p)
        entries += patches[p].n;
    const size_t need = n_patches * (sizeof(LocalPatch) + n_bands * 3 * sizeof(double)) +
                        entries * (sizeof(double2) + n_bands * sizeof(double)) + sizeof(LogTable);
    if (max_bytes && need > max_bytes) {
        unavailable(err,
                 "the local model's device copy needs %zu bytes of GPU memory, more than the "
                 "%zu allowed", need, max_bytes);
        return nullptr;
    }
    tps_gpu_local *m = new (std::nothrow) tps_gpu_local();
    if (!m) {
        unavailable(err, "out of host memory");
        return nullptr;
    }
    cudaError_t e = tps_gpu_fault_upload() ? cudaErrorMemoryAllocation : cudaSetDevice(0);
    try {
        m->n_patches = n_patches;
        m->n_entries = entries;
        m->n_bands = n_bands;
        m->lookup = *lookup;
        const size_t cells = lookup->gx * lookup->gy;
        m->cell_start.assign(lookup->cell_start, lookup->cell_start + cells + 1);
        m->cell_patch.assign(lookup->cell_patch, lookup->cell_patch + lookup->cell_start[cells]);
        m->lookup.cell_start = m->cell_start.data();
        m->lookup.cell_patch = m->cell_patch.data();
        m->support.resize(4 * n_patches);
        std::vector<LocalPatch> lp(n_patches);
        std::vector<double2> uv(entries ? entries : 1);
        std::vector<double> w(n_bands * (entries ? entries : 1)), affine(n_patches * n_bands * 3);
        size_t off = 0;
        for (size_t p = 0; p < n_patches; ++p) {
            const tps_gpu_patch &pt = patches[p];
            lp[p] = LocalPatch{pt.cx, pt.cy, pt.hx, pt.hy, pt.pcx, pt.pcy, pt.ps, off, pt.n};
            const double sup[4] = {pt.cx, pt.cy, pt.hx, pt.hy};
            std::copy(sup, sup + 4, m->support.begin() + 4 * p);
            for (size_t k = 0; k < pt.n; ++k) {
                uv[off + k] = make_double2(pt.u[k], pt.v[k]);
                for (size_t b = 0; b < n_bands; ++b)
                    w[b * entries + off + k] = pt.hw[b][k];
            }
            for (size_t b = 0; b < n_bands; ++b)
                std::copy(pt.affine[b], pt.affine[b] + 3, affine.begin() + (p * n_bands + b) * 3);
            off += pt.n;
        }
        const LogTable log_table = make_log_table();
        if (e == cudaSuccess &&
            ((e = cudaMalloc(&m->patches, lp.size() * sizeof(LocalPatch))) != cudaSuccess ||
             (e = cudaMalloc(&m->uv, uv.size() * sizeof(double2))) != cudaSuccess ||
             (e = cudaMalloc(&m->w, w.size() * sizeof(double))) != cudaSuccess ||
             (e = cudaMalloc(&m->affine, affine.size() * sizeof(double))) != cudaSuccess ||
             (e = cudaMalloc(&m->log_table, sizeof(LogTable))) != cudaSuccess ||
             (e = cudaMemcpy(m->patches, lp.data(), lp.size() * sizeof(LocalPatch),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->uv, uv.data(), uv.size() * sizeof(double2),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->w, w.data(), w.size() * sizeof(double),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->affine, affine.data(), affine.size() * sizeof(double),
                             cudaMemcpyHostToDevice)) != cudaSuccess ||
             (e = cudaMemcpy(m->log_table, log_table.entry, sizeof(LogTable),
                             cudaMemcpyHostToDevice)) != cudaSuccess))
            ;
    } catch (const std::bad_alloc &) {
        unavailable(err, "out of host memory for the local model's device copy");
        tps_gpu_local_destroy(m);
        return nullptr;
    }
    if (e != cudaSuccess) {
        fail(err, "cannot upload the local model to the GPU", e);
        cudaGetLastError();
        tps_gpu_local_destroy(m);
        return nullptr;
    }
    return m;
}

namespace {

/* Each LOCAL_TW x LOCAL_TH tile's candidate patches (a superset of those
 * whose support meets the tile's pixels, clamped into the box), sorted:
 * tile_start (tiles + 1 entries) and tile_patch, CSR. */
void list_tile_patches(const tps_gpu_local *m, const tps_window *grid, size_t tiles_x,
                       size_t tiles_y, std::vector<unsigned> &tile_start,
                       std::vector<unsigned> &tile_patch)
{
    const tps_gpu_lookup &lk = m->lookup;
    tile_start.assign(tiles_x * tiles_y + 1, 0);
    tile_patch.clear();
    std::vector<unsigned> cand;
    for (size_t ty = 0; ty < tiles_y; ++ty)
        for (size_t tx = 0; tx < tiles_x; ++tx) {
            const double c0 = double(grid->first_col + tx * LOCAL_TW);
            const double c1 = double(grid->first_col + std::min(grid->ncols, (tx + 1) * LOCAL_TW) - 1);
            const double r0 = double(grid->first_row + ty * LOCAL_TH);
            const double r1 = double(grid->first_row + std::min(grid->nrows, (ty + 1) * LOCAL_TH) - 1);
            double u0 = INFINITY, u1 = -INFINITY, v0 = INFINITY, v1 = -INFINITY;
            const double cs[2] = {c0, c1}, rs[2] = {r0, r1};
            for (double c : cs)
                for (double r : rs) {
                    double u, v;
                    tps_cell_centre(grid, c, r, &u, &v);
                    u = tps_clamp(u, lk.bu0, lk.bu1);
                    v = tps_clamp(v, lk.bv0, lk.bv1);
                    u0 = std::min(u0, u);
                    u1 = std::max(u1, u);
                    v0 = std::min(v0, v);
                    v1 = std::max(v1, v);
                }
            cand.clear();
            if (u0 <= u1 && v0 <= v1) {
                const size_t i0 = tps_lookup_cell(u0, lk.bu0, lk.gdu, lk.gx);
                const size_t i1 = tps_lookup_cell(u1, lk.bu0, lk.gdu, lk.gx);
                const size_t j0 = tps_lookup_cell(v0, lk.bv0, lk.gdv, lk.gy);
                const size_t j1 = tps_lookup_cell(v1, lk.bv0, lk.gdv, lk.gy);
                for (size_t j = j0; j <= j1; ++j)
                    for (size_t i = i0; i <= i1; ++i) {
                        const size_t c = j * lk.gx + i;
                        for (size_t k = lk.cell_start[c]; k < lk.cell_start[c + 1]; ++k) {
                            const size_t p = lk.cell_patch[k];
                            const double *sp = &m->support[4 * p];
                            /* The support against the tile's box. */
                            if (sp[0] + sp[2] > u0 && sp[0] - sp[2] < u1 && sp[1] + sp[3] > v0 &&
                                sp[1] - sp[3] < v1)
                                cand.push_back(unsigned(p));
                        }
                    }
                std::sort(cand.begin(), cand.end());
                cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
            }
            tile_patch.insert(tile_patch.end(), cand.begin(), cand.end());
            tile_start[ty * tiles_x + tx + 1] = unsigned(tile_patch.size());
        }
}

} // namespace

namespace tps_gpu {

tps_status local_run(tps_gpu_local *m, const tps_window *grid, size_t n_outputs,
              const tps_output *outputs, LocalLaunch launch, size_t group, unsigned needs,
              size_t max_bytes, tps_error *err)
{
    if (n_outputs == 0 || grid->ncols == 0 || grid->nrows == 0)
        return TPS_OK;
    if (grid->ncols > size_t(INT32_MAX) / 2 || grid->nrows > size_t(INT32_MAX) / 2) {
        unavailable(err, "window too large for the GPU path (%zu x %zu)", grid->ncols,
                 grid->nrows);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    const size_t tiles_x = (grid->ncols + LOCAL_TW - 1) / LOCAL_TW;
    const size_t tiles_y = (grid->nrows + LOCAL_TH - 1) / LOCAL_TH;
    std::vector<unsigned> tile_start, tile_patch;
    try {
        list_tile_patches(m, grid, tiles_x, tiles_y, tile_start, tile_patch);
    } catch (const std::bad_alloc &) {
        unavailable(err, "out of host memory for the patch lists");
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    if (tile_patch.size() >= size_t(UINT32_MAX)) {
        unavailable(err, "window too large for the GPU path's patch lists");
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    const size_t list_bytes = (tile_start.size() + tile_patch.size() + 1) * sizeof(unsigned);
    if (max_bytes && list_bytes >= max_bytes) {
        unavailable(err, "the patch lists need %zu bytes of GPU memory, more than the %zu "
                 "allowed", list_bytes, max_bytes);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    cudaError_t e = cudaSetDevice(0);
    unsigned *d_lists = nullptr;
    if (e == cudaSuccess)
        e = cudaMalloc(&d_lists, list_bytes);
    if (e == cudaSuccess)
        e = cudaMemcpy(d_lists, tile_start.data(), tile_start.size() * sizeof(unsigned),
                       cudaMemcpyHostToDevice);
    if (e == cudaSuccess && !tile_patch.empty())
        e = cudaMemcpy(d_lists + tile_start.size(), tile_patch.data(),
                       tile_patch.size() * sizeof(unsigned), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        fail(err, "cannot upload the patch lists", e);
        cudaFree(d_lists);
        cudaGetLastError();
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    LocalArgs a;
    a.patches = m->patches;
    a.uv = m->uv;
    a.w = m->w;
    a.w_stride = m->n_entries;
    a.affine = m->affine;
    a.n_model_bands = int(m->n_bands);
    a.first_band = 0;
    a.tile_start = d_lists;
    a.tile_patch = d_lists + tile_start.size();
    a.tiles_x = int(tiles_x);
    a.bu0 = m->lookup.bu0;
    a.bv0 = m->lookup.bv0;
    a.bu1 = m->lookup.bu1;
    a.bv1 = m->lookup.bv1;
    a.log_table = m->log_table;
    a.needs = needs;
    auto launch_group = [&a, launch](const GridArgs &g, OutArgs &o, const int *bands, int nb,
                                     int rows, cudaStream_t stream) {
        LocalArgs c = a;
        c.first_band = bands[0];
        c.rows = rows;
        c.tile_row0 = g.row0 / LOCAL_TH; /* chunks start on tile rows */
        const dim3 blocks((g.ncols + LOCAL_TW - 1) / LOCAL_TW, (rows + LOCAL_TH - 1) / LOCAL_TH);
        return launch(c, g, o, nb, blocks, stream);
    };
    const tps_status status = evaluate_chunks(grid, n_outputs, outputs,
                                       max_bytes ? max_bytes - list_bytes : 0, LOCAL_TH, group,
                                       launch_group, err);
    cudaFree(d_lists);
    return status;
}

} // namespace tps_gpu

extern "C" tps_status tps_gpu_local_evaluate_grid(tps_gpu_local *m, const tps_window *grid,
                                                  size_t n_outputs, const tps_output *outputs,
                                                  size_t max_bytes, tps_error *err)
{
    return local_run(m, grid, n_outputs, outputs, launch_values, MAX_NB, 0, max_bytes, err);
}
