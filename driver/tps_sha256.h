/*
 * tps_sha256.h: GDAL's SHA-256, which GDAL exports but Debian's GDAL 3.6
 * does not install the header of. Only the one-shot function is used: its
 * signature has not changed since it appeared, unlike the context struct
 * of the streaming API.
 */
#ifndef TPS_SHA256_H
#define TPS_SHA256_H

#include "cpl_port.h"

#include <cstddef>

#if __has_include("cpl_sha256.h")
#include "cpl_sha256.h"
#else
extern "C" void CPL_SHA256(const void *data, size_t len, GByte hash[32]);
#endif

#endif /* TPS_SHA256_H */
