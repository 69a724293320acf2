/* context.c: the context that carries the last error (error.h), and message
 * plumbing. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

tps_context *tps_context_create(void)
{
    return calloc(1, sizeof(tps_context));
}

tps_context *tps_context_destroy(tps_context *ctx)
{
    free(ctx);
    return NULL;
}

void tps_context_set_log(tps_context *ctx, tps_log_fn fn, void *user_data)
{
    if (!ctx)
        return;
    ctx->log_fn = fn;
    ctx->log_user = user_data;
}

tps_status tps_context_errno(const tps_context *ctx)
{
    return ctx ? ctx->err.code : TPS_ERR_INVALID_ARGUMENT;
}

const char *tps_context_errmsg(const tps_context *ctx)
{
    return ctx ? ctx->err.message : "no context";
}

const char *tps_status_string(tps_status status)
{
    switch (status) {
    case TPS_OK: return "success";
    case TPS_ERR_INVALID_ARGUMENT: return "invalid argument";
    case TPS_ERR_TOO_FEW_POINTS: return "too few points";
    case TPS_ERR_COLLINEAR: return "collinear points";
    case TPS_ERR_SINGULAR: return "singular system";
    case TPS_ERR_MEMORY_LIMIT: return "memory limit exceeded";
    case TPS_ERR_OUT_OF_MEMORY: return "out of memory";
    case TPS_ERR_DEVICE_UNAVAILABLE: return "device unavailable";
    case TPS_ERR_INTERNAL: return "internal error";
    case TPS_ERR_BAD_MODEL_DATA: return "invalid saved model";
    case TPS_ERR_MODEL_MISMATCH: return "saved model of other inputs";
    }
    return "unknown status";
}

tps_status tps_set_error(tps_context *ctx, tps_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tps_error_setv(tps_ctx_error(ctx), status, fmt, ap);
    va_end(ap);
    return status;
}

tps_status tps_raise(tps_context *ctx, const tps_error *err)
{
    return tps_set_error(ctx, err->code, "%s", err->message);
}

void tps_clear_error(tps_context *ctx)
{
    tps_error_clear(tps_ctx_error(ctx));
}

void tps_log(tps_context *ctx, tps_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->log_fn)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctx->log_fn(ctx->log_user, level, line);
}

double tps_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
