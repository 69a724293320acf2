/* staging.cu: per-request resources of the request loop (gpu/staging.cuh). */
#include "staging.cuh"

#include <new>
#include <pthread.h>

namespace tps_gpu {

namespace {

pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
Workspace *pool = nullptr;

void free_buffers(Workspace *ws)
{
    for (int s = 0; s < 2; ++s) {
        cudaFree(ws->device[s]);
        cudaFreeHost(ws->pinned[s]);
        ws->device[s] = ws->pinned[s] = nullptr;
    }
    ws->capacity = 0;
}

} // namespace

void destroy_workspace(Workspace *ws)
{
    free_buffers(ws);
    for (int s = 0; s < 2; ++s)
        if (ws->stream[s])
            cudaStreamDestroy(ws->stream[s]);
    cudaFree(ws->counters);
    delete ws;
}

Workspace *acquire_workspace(size_t bytes, tps_error *err)
{
    pthread_mutex_lock(&pool_lock);
    Workspace *ws = pool;
    if (ws)
        pool = ws->next;
    pthread_mutex_unlock(&pool_lock);
    cudaError_t e = cudaSuccess;
    if (!ws) {
        ws = new (std::nothrow) Workspace;
        if (!ws) {
            unavailable(err, "out of host memory");
            return nullptr;
        }
        for (int s = 0; s < 2 && e == cudaSuccess; ++s)
            e = cudaStreamCreateWithFlags(&ws->stream[s], cudaStreamNonBlocking);
        if (e == cudaSuccess)
            e = cudaMalloc(&ws->counters, sizeof *ws->counters);
        if (e != cudaSuccess) {
            fail(err, "cannot create a CUDA stream or counters", e);
            destroy_workspace(ws);
            return nullptr;
        }
    }
    if (ws->capacity < bytes) {
        free_buffers(ws);
        for (int s = 0; s < 2 && e == cudaSuccess; ++s) {
            e = cudaMalloc(&ws->device[s], bytes);
            if (e == cudaSuccess)
                e = cudaHostAlloc(&ws->pinned[s], bytes, cudaHostAllocDefault);
        }
        if (e != cudaSuccess) {
            fail(err, "cannot allocate the transfer buffers", e);
            destroy_workspace(ws);
            return nullptr;
        }
        ws->capacity = bytes;
    }
    return ws;
}

void release_workspace(Workspace *ws)
{
    pthread_mutex_lock(&pool_lock);
    ws->next = pool;
    pool = ws;
    pthread_mutex_unlock(&pool_lock);
}

size_t type_size(tps_type type)
{
    return type == TPS_FLOAT64 ? sizeof(double) : sizeof(float);
}

void copy_out(const Workspace *ws, int slot, const Chunk &c, size_t ncols, size_t n_outputs,
              const tps_output *outputs)
{
    const char *src = static_cast<const char *>(ws->pinned[slot]);
    for (size_t k = 0; k < n_outputs; ++k) {
        const tps_output &o = outputs[k];
        const size_t elem = type_size(o.type);
        for (size_t r = 0; r < c.rows; ++r) {
            char *dst = static_cast<char *>(o.data) + ptrdiff_t(c.row0 + r) * o.line_stride;
            const char *line = src + r * ncols * elem;
            if (o.pixel_stride == ptrdiff_t(elem)) {
                memcpy(dst, line, ncols * elem);
            } else {
                for (size_t i = 0; i < ncols; ++i)
                    memcpy(dst + ptrdiff_t(i) * o.pixel_stride, line + i * elem, elem);
            }
        }
        src += c.rows * ncols * elem;
    }
}

} // namespace tps_gpu
