/* staging.cuh: the request loop shared by global and local models (gpu/staging.cu
 * has its pooled buffers). */
#ifndef TPS_GPU_STAGING_CUH
#define TPS_GPU_STAGING_CUH

#include "common.cuh"
#include "fault.cuh"

#include <stdint.h>
#include <string.h>

namespace tps_gpu {

/* Bytes of results per chunk: a chunk's transfer and host copy overlap the
 * next chunk's kernel. */
constexpr size_t CHUNK_BYTES = size_t(16) << 20;

/* Per-request resources, pooled: two slots (stream, device chunk, pinned
 * chunk) so that one chunk's transfer and copy-out overlap the next
 * chunk's kernel. A request takes a workspace, so concurrent requests from
 * several threads each have their own streams: no lock around launches. */
struct Workspace {
    cudaStream_t stream[2] = {nullptr, nullptr};
    void *device[2] = {nullptr, nullptr};
    void *pinned[2] = {nullptr, nullptr};
    GuardCounters *counters = nullptr; /* MIXED's, one set per request */
    size_t capacity = 0;
    Workspace *next = nullptr;
};

Workspace *acquire_workspace(size_t bytes, tps_error *err);
void release_workspace(Workspace *ws);
void destroy_workspace(Workspace *ws);
size_t type_size(tps_type type);

/* One chunk of rows: where its planes are, for the copy out. */
struct Chunk {
    size_t row0 = 0, rows = 0;
    bool pending = false;
};

/* Rows [row0, row0 + rows) from a pinned chunk into the caller's buffers. */
void copy_out(const Workspace *ws, int slot, const Chunk &c, size_t ncols, size_t n_outputs,
              const tps_output *outputs);

/* The request loop shared by global and local models: the window is cut
 * into chunks of rows (a multiple of row_align); while chunk i+1 computes on
 * one stream, chunk i's results are copied to pinned memory on the other
 * and then into the caller's buffers. launch_group(g, o, bands, nb, rows,
 * stream) fills o.affine and launches the kernel for nb (up to `group`)
 * outputs of consecutive bands; their planes lie one after another in the
 * chunk's device buffer, the first MAX_NB of them also in o.plane.
 * counters (MIXED): the kernels add to the workspace's counters (o.counters),
 * zeroed before the first launch; their sums are copied here at the end. */
template <typename LaunchGroup>
tps_status evaluate_chunks(const tps_window *grid, size_t n_outputs, const tps_output *outputs,
                    size_t max_bytes, size_t row_align, size_t group, LaunchGroup launch_group,
                    tps_error *err, GuardCounters *counters = nullptr)
{
    if (n_outputs == 0 || grid->ncols == 0 || grid->nrows == 0)
        return TPS_OK;
    if (grid->ncols > size_t(INT32_MAX) / 2) {
        unavailable(err, "window too wide for the GPU path (%zu columns)", grid->ncols);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    cudaError_t e = cudaSetDevice(0);
    if (e != cudaSuccess)
        return fail(err, "cannot select the GPU", e);

    size_t bytes_per_row = 0;
    for (size_t k = 0; k < n_outputs; ++k)
        bytes_per_row += grid->ncols * type_size(outputs[k].type);
    size_t chunk_rows = CHUNK_BYTES / bytes_per_row;
    if (chunk_rows < 1)
        chunk_rows = 1;
    if (chunk_rows > grid->nrows)
        chunk_rows = grid->nrows;
    if (chunk_rows > 65535) /* gridDim.y */
        chunk_rows = 65535;
    if (chunk_rows > row_align)
        chunk_rows -= chunk_rows % row_align;
    /* Two device chunks (the pinned host ones are host memory). */
    if (max_bytes && 2 * bytes_per_row > max_bytes) {
        unavailable(err,
                 "the transfer buffers need %zu bytes of GPU memory, more than the %zu allowed",
                 2 * bytes_per_row, max_bytes);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    if (max_bytes && 2 * chunk_rows * bytes_per_row > max_bytes)
        chunk_rows = max_bytes / (2 * bytes_per_row);
    if (chunk_rows > row_align)
        chunk_rows -= chunk_rows % row_align;
    /* Chunks start on multiples of row_align (the local kernel's tile rows). */
    if (chunk_rows < row_align && chunk_rows < grid->nrows) {
        chunk_rows = row_align < grid->nrows ? row_align : grid->nrows;
        if (max_bytes && 2 * chunk_rows * bytes_per_row > max_bytes) {
            unavailable(err,
                     "the transfer buffers need %zu bytes of GPU memory, more than the %zu "
                     "allowed", 2 * chunk_rows * bytes_per_row, max_bytes);
            return TPS_ERR_DEVICE_UNAVAILABLE;
        }
    }
    Workspace *ws = acquire_workspace(chunk_rows * bytes_per_row, err);
    if (!ws)
        return TPS_ERR_DEVICE_UNAVAILABLE;
    if (counters) {
        /* Zeroed on one stream and waited for: both streams' kernels add. */
        if ((e = cudaMemsetAsync(ws->counters, 0, sizeof *ws->counters, ws->stream[0])) !=
                cudaSuccess ||
            (e = cudaStreamSynchronize(ws->stream[0])) != cudaSuccess) {
            fail(err, "cannot reset the GPU counters", e);
            destroy_workspace(ws);
            return TPS_ERR_DEVICE_UNAVAILABLE;
        }
    }

    GridArgs g;
    g.w = *grid;
    g.ncols = int(grid->ncols);

    Chunk chunks[2];
    tps_status status = TPS_OK;
    size_t slot_index = 0;
    for (size_t row0 = 0; row0 < grid->nrows && status == 0; row0 += chunk_rows, ++slot_index) {
        const int s = int(slot_index % 2);
        if (chunks[s].pending) {
            if ((e = cudaStreamSynchronize(ws->stream[s])) != cudaSuccess) {
                status = fail(err, "GPU evaluation failed", e);
                break;
            }
            copy_out(ws, s, chunks[s], grid->ncols, n_outputs, outputs);
            chunks[s].pending = false;
        }
        const size_t rows = grid->nrows - row0 < chunk_rows ? grid->nrows - row0 : chunk_rows;
        g.row0 = int(row0);
        /* Planes of this chunk, one after another, in the caller's band order. */
        char *plane = static_cast<char *>(ws->device[s]);
        for (size_t k0 = 0; k0 < n_outputs && status == 0;) {
            /* Group consecutive model bands, up to MAX_NB, in one pass. */
            int bands[MAX_NB];
            int nb = 0;
            OutArgs o;
            memset(&o, 0, sizeof o);
            o.counters = ws->counters;
            while (k0 + nb < n_outputs && size_t(nb) < group &&
                   (nb == 0 || outputs[k0 + nb].band == outputs[k0].band + size_t(nb))) {
                const tps_output &out = outputs[k0 + nb];
                if (nb < MAX_NB) {
                    bands[nb] = int(out.band);
                    o.plane[nb] = plane;
                    o.is_double[nb] = out.type == TPS_FLOAT64;
                }
                plane += rows * grid->ncols * type_size(out.type);
                ++nb;
            }
            e = tps_gpu_fault_launch(ws->stream[s]);
            if (e == cudaSuccess)
                e = launch_group(g, o, bands, nb, int(rows), ws->stream[s]);
            if (e != cudaSuccess)
                status = fail(err, "cannot launch the GPU kernel", e);
            k0 += size_t(nb);
        }
        if (status != 0)
            break;
        const size_t chunk_bytes = size_t(plane - static_cast<char *>(ws->device[s]));
        e = cudaMemcpyAsync(ws->pinned[s], ws->device[s], chunk_bytes, cudaMemcpyDeviceToHost,
                            ws->stream[s]);
        if (e != cudaSuccess) {
            status = fail(err, "cannot copy GPU results", e);
            break;
        }
        chunks[s].row0 = row0;
        chunks[s].rows = rows;
        chunks[s].pending = true;
    }
    /* Drain in order: the older chunk first. */
    for (size_t k = 0; k < 2; ++k) {
        const int s = int((slot_index + k) % 2);
        if (!chunks[s].pending)
            continue;
        e = cudaStreamSynchronize(ws->stream[s]);
        if (e != cudaSuccess && status == 0)
            status = fail(err, "GPU evaluation failed", e);
        if (status == 0)
            copy_out(ws, s, chunks[s], grid->ncols, n_outputs, outputs);
    }
    if (status == 0 && counters &&
        (e = cudaMemcpy(counters, ws->counters, sizeof *counters, cudaMemcpyDeviceToHost)) !=
            cudaSuccess)
        status = fail(err, "cannot copy the GPU counters", e);
    if (status != 0) {
        /* A sticky error (an illegal address) poisons the context: keep
         * nothing of it around; the engine reports or falls back. */
        cudaGetLastError();
        destroy_workspace(ws);
        return TPS_ERR_DEVICE_UNAVAILABLE;
    }
    release_workspace(ws);
    return TPS_OK;
}

} // namespace tps_gpu

#endif
