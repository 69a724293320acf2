/*
 * tps_model_cache.h: one solved model per process for the same inputs.
 *
 * A solve is O(N^3); opening a data set should not be. QGIS opens one
 * handle per render thread, GDAL utilities reopen files: all handles of
 * the same .tps content over the same, unchanged point source share one
 * immutable tps_model (the engine allows concurrent evaluation of one
 * model, each thread with its own context).
 *
 * The cache holds weak references only: the model is freed when the last
 * data set using it closes. A per-key count of solves survives that, for
 * the SOLVES metadata item (and for tests proving that two opens solved
 * once).
 */
#ifndef TPS_MODEL_CACHE_H
#define TPS_MODEL_CACHE_H

#include "tps.h"
#include "tps_config.h"
#include "tps_memory.h"

#include "ogr_spatialref.h"

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

/* A solved model and what was learnt while building it that a second
 * handle needs without reading the points again. */
struct TPSSharedModel
{
    tps_model *psModel = nullptr;
    tps_model_info sInfo{};
    std::vector<tps_band_info> asBandInfo{};
    bool bHasSRS = false;
    OGRSpatialReference oSRS{}; /* the output CRS */
    bool bFromFile = false;     /* read from <name>.tps.model, not solved */
    /* Its memory, charged to the process's TPS_MAX_MEMORY while it lives. */
    TPSMemoryCharge oCharge{};
    /* Of which the standard error's factorisations (TPSDataset::
     * ChargeStandardErrors; any handle may add its bands'). */
    std::mutex oSEMutex{};
    size_t nSEBytes = 0;

    TPSSharedModel() = default;
    TPSSharedModel(const TPSSharedModel &) = delete;
    TPSSharedModel &operator=(const TPSSharedModel &) = delete;
    ~TPSSharedModel()
    {
        tps_model_destroy(psModel);
    }
};

/* About the bytes a model of this shape holds, for TPS_MAX_MEMORY: a
 * global model keeps its points and a weight per point and surface; a
 * local one, each patch's copies of its points and weights (patches
 * overlap: ~3 copies of each point at the default overlap). */
inline size_t TPSModelBytes(const tps_model_info &sInfo)
{
    const size_t nPerPoint = sizeof(double) * (2 + sInfo.n_bands);
    if (sInfo.mode == TPS_MODE_LOCAL)
        return 3 * sInfo.n_points * nPerPoint + sInfo.n_patches * (64 + 24 * sInfo.n_bands);
    return sInfo.n_points * nPerPoint + 112 * sInfo.n_bands;
}

/* The inputs of the solve as one string: the absolute point source path,
 * its size and modification time when it is a file, layer, fields,
 * filter, CRSs, per-band field and smoothing. Two configs with the same
 * key give the same model. */
std::string TPSModelCacheKey(const TPSConfig &oConfig);

/* The part of the key that comes from the configuration alone (layer,
 * fields, filter, CRSs, per-band field and smoothing): shared with the
 * hash of the model file (tps_model_file.h). */
std::string TPSModelConfigKey(const TPSConfig &oConfig);

/* Appends "name=<length>:<value>\n" to osKey: with the length, no value
 * can fake another field. */
void TPSModelKeyAppend(std::string &osKey, const char *pszName, const std::string &osValue);

/* The model for osKey: the cached one if some open data set still holds
 * it, else the result of fnSolve() (called without the cache's global
 * lock; concurrent callers for the same key wait for it instead of
 * solving again). A nullptr from fnSolve (a failure, already reported) is
 * returned as is and not cached. *pnSolves receives the number of
 * successful solves for this key so far in this process (a model fnSolve
 * read from its model file, bFromFile, is not a solve). */
std::shared_ptr<TPSSharedModel> TPSModelCacheGet(
    const std::string &osKey, const std::function<std::shared_ptr<TPSSharedModel>()> &fnSolve,
    int *pnSolves);

#endif /* TPS_MODEL_CACHE_H */
