/* error.h: the engine's one error carrier, a status and its message. A
 * tps_context carries one (and the caller's log function). Where a context
 * is too heavy or not the caller's, a bare tps_error travels instead: a job
 * of a batch of solves, a patch solved on a worker thread, every call across
 * the GPU boundary (core/gpu_backend.h). C11 and C++ (gpu/). */
#ifndef TPS_ERROR_H
#define TPS_ERROR_H

#include "tps.h"

#include <stdarg.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tps_error {
    tps_status code;   /* TPS_OK: no error */
    char message[1024];
} tps_error;

/* Sets *e (e may be NULL: then only the status comes back) and returns
 * `code`, so that `return tps_error_set(e, ...);` reports and fails. */
static inline tps_status tps_error_setv(tps_error *e, tps_status code, const char *fmt,
                                        va_list ap)
{
    if (e) {
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        e->code = code;
    }
    return code;
}

static inline tps_status tps_error_set(tps_error *e, tps_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline tps_status tps_error_set(tps_error *e, tps_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tps_error_setv(e, code, fmt, ap);
    va_end(ap);
    return code;
}

static inline void tps_error_clear(tps_error *e)
{
    if (e) {
        e->code = TPS_OK;
        e->message[0] = '\0';
    }
}

#ifdef __cplusplus
}
#endif

#endif
