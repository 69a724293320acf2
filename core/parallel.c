/* parallel.c: a fork-join parallel loop on plain pthreads.
 *
 * Why not OpenMP: GNU libgomp's thread pool does not survive fork() well,
 * and Dask/multiprocessing workers fork the process that loaded GDAL.
 * Threads here live for one call; at the block sizes GDAL asks for, their
 * start-up (tens of microseconds) is noise next to the evaluation. */
#include "internal.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int blas_holds, blas_saved_threads;

void tps_blas_single_begin(void)
{
    pthread_mutex_lock(&blas_lock);
    if (blas_holds++ == 0) {
        blas_saved_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&blas_lock);
}

void tps_blas_single_end(void)
{
    pthread_mutex_lock(&blas_lock);
    if (--blas_holds == 0)
        openblas_set_num_threads(blas_saved_threads);
    pthread_mutex_unlock(&blas_lock);
}

typedef struct loop_state {
    atomic_size_t next;
    size_t n_items;
    tps_parallel_body body;
    void *user;
} loop_state;

typedef struct worker_arg {
    loop_state *loop;
    int thread;
} worker_arg;

static void run_items(loop_state *loop, int thread)
{
    for (;;) {
        size_t item = atomic_fetch_add(&loop->next, 1);
        if (item >= loop->n_items)
            return;
        loop->body(item, thread, loop->user);
    }
}

static void *worker_main(void *p)
{
    worker_arg *arg = p;
    run_items(arg->loop, arg->thread);
    return NULL;
}

int tps_parallel_for(size_t n_items, int n_threads, tps_parallel_body body, void *user)
{
    loop_state loop;
    atomic_init(&loop.next, 0);
    loop.n_items = n_items;
    loop.body = body;
    loop.user = user;
    if (n_threads < 1)
        n_threads = 1;
    if ((size_t)n_threads > n_items)
        n_threads = n_items > 0 ? (int)n_items : 1;

    pthread_t *tids = NULL;
    worker_arg *args = NULL;
    int started = 0;
    if (n_threads > 1) {
        tids = malloc(sizeof *tids * (size_t)(n_threads - 1));
        args = malloc(sizeof *args * (size_t)(n_threads - 1));
        if (tids && args) {
            for (int t = 0; t < n_threads - 1; ++t) {
                args[t].loop = &loop;
                args[t].thread = t + 1;
                /* A failed start only means fewer threads: the shared
                 * counter hands their items to the threads that did start. */
                if (pthread_create(&tids[started], NULL, worker_main, &args[t]) != 0)
                    break;
                ++started;
            }
        }
    }
    run_items(&loop, 0);
    for (int t = 0; t < started; ++t)
        pthread_join(tids[t], NULL);
    free(tids);
    free(args);
    return 0;
}
