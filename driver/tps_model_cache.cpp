/*
 * tps_model_cache.cpp: see tps_model_cache.h.
 *
 * One slot per key: it keeps the solve counter alive after the model is
 * gone. Slots of models no handle holds are swept once there are more than
 * MAX_IDLE_SLOTS of them, so that a long-running process that opens many
 * different .tps files (a tile server, a fuzzer: seen growing by a few
 * hundred bytes per file) stays bounded; such a model's SOLVES restarts
 * from 0 if it is opened again after the sweep. The global mutex only
 * guards the map; each slot has its own mutex, held during the solve, so
 * that a second opener of the same key waits for the first one's model
 * while opens of other keys go on.
 */
#include "tps_model_cache.h"

#include "tps_paths.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "cpl_vsi.h"
#include "gdal_version.h"

#include <map>
#include <mutex>
#include <vector>

namespace
{

constexpr size_t MAX_IDLE_SLOTS = 4096;

struct Slot
{
    std::mutex oSolveMutex{};
    std::weak_ptr<TPSSharedModel> poModel{};
    int nSolves = 0;
};

struct Cache
{
    std::mutex oMutex{};
    std::map<std::string, std::shared_ptr<Slot>> oSlots{};
};

Cache &GetCache()
{
    // Never destroyed: a data set closed from an atexit handler after
    // static destruction must still find a valid cache.
    static Cache *poCache = new Cache();
    return *poCache;
}

std::string AbsoluteSource(const std::string &osSource)
{
    if (TPSIsConnectionString(osSource.c_str()) || !CPLIsFilenameRelative(osSource.c_str()))
        return osSource;
    char *pszCwd = CPLGetCurrentDir();
    if (pszCwd == nullptr)
        return osSource;
    std::string osAbs = TPSResolvePath(pszCwd, osSource);
    CPLFree(pszCwd);
    return osAbs;
}

/* A covariate raster's name in the key as the model file names the source
 * (tps_model_file.cpp): relative to the .tps file's folder when inside it,
 * so that a folder moved elsewhere keeps its model file. */
std::string RasterForKey(const TPSConfig &c, const std::string &osRaster)
{
    const std::string osBase = AbsoluteSource(c.osBaseDir.empty() ? "." : c.osBaseDir) + "/";
    const std::string osAbs = AbsoluteSource(osRaster);
    if (osAbs.compare(0, osBase.size(), osBase) == 0)
        return osAbs.substr(osBase.size());
    return osAbs;
}

void AddPart(std::string &osKey, const char *pszName, const std::string &osValue)
{
    TPSModelKeyAppend(osKey, pszName, osValue);
}

} // namespace

void TPSModelKeyAppend(std::string &osKey, const char *pszName, const std::string &osValue)
{
    osKey += pszName;
    osKey += CPLSPrintf("=%llu:", static_cast<unsigned long long>(osValue.size()));
    osKey += osValue;
    osKey += '\n';
}

std::string TPSModelConfigKey(const TPSConfig &c)
{
    std::string osKey;
    AddPart(osKey, "layer", c.osLayer);
    AddPart(osKey, "xfield", c.osXField);
    AddPart(osKey, "yfield", c.osYField);
    AddPart(osKey, "where", c.osWhere);
    AddPart(osKey, "points_srs", c.osPointsSRS);
    AddPart(osKey, "output_srs", c.osOutputSRS);
    // The surfaces, not the raster bands: a derivative band of a field
    // already present adds no surface and leaves the key as it was.
    for (const auto &oBand : c.aoModelBands)
    {
        AddPart(osKey, "band",
                oBand.bGeometryZ ? std::string("<GeometryZ/>") : "field:" + oBand.osField);
        AddPart(osKey, "smoothing",
                oBand.bSmoothingGCV ? std::string("GCV")
                                    : std::string(CPLSPrintf("%.17g", oBand.dfSmoothing)));
    }
    // The mode and its parameters change the surface: a model solved under
    // one must never serve another (in this process or from a model file).
    AddPart(osKey, "mode",
            c.eMode == TPSModeRequest::GLOBAL  ? "GLOBAL"
            : c.eMode == TPSModeRequest::LOCAL ? "LOCAL"
                                               : "AUTO");
    AddPart(osKey, "patch_points", CPLSPrintf("%d", c.nPatchPoints));
    AddPart(osKey, "overlap", CPLSPrintf("%.17g", c.dfOverlap));
    // A GCV band with neither given: a LOCAL model's patches are sized from
    // its lambda, another model than the same numbers given (not GLOBAL's).
    bool bAnyGCV = false;
    for (const auto &oBand : c.aoModelBands)
        bAnyGCV |= oBand.bSmoothingGCV;
    if (bAnyGCV && !c.bPatchSizeGiven && c.eMode != TPSModeRequest::GLOBAL)
        AddPart(osKey, "patch_size", "from_lambda");
    // Only when set, so that the keys (and model files) of the models
    // without them stay what they were.
    if (!c.osWeightField.empty())
        AddPart(osKey, "weight_field", c.osWeightField);
    // Covariates: a field's values are the source's; one sampled from its
    // raster depends on the raster (TPSModelCacheKey stats it, the model
    // file hashes it).
    for (const TPSCovariateConfig &oCov : c.aoCovariates)
        AddPart(osKey, "covariate",
                oCov.osField.empty()
                    ? std::string("raster:") + RasterForKey(c, oCov.osRaster) +
                          CPLSPrintf(":band:%d", oCov.nBand)
                    : "field:" + oCov.osField);
    if (c.bCrossValidation)
        AddPart(osKey, "cross_validation", "YES");
    if (c.eSolver != TPSSolverRequest::AUTO)
        AddPart(osKey, "solver", TPSChoiceName(TPS_SOLVER_CHOICES, static_cast<int>(c.eSolver)));
    if (c.dfSolverTolerance != TPS_DEFAULT_SOLVER_TOLERANCE)
        AddPart(osKey, "solver_tolerance", CPLSPrintf("%.17g", c.dfSolverTolerance));
    return osKey;
}

std::string TPSModelCacheKey(const TPSConfig &c)
{
    std::string osKey;
    const std::string osSource = AbsoluteSource(c.osSource);
    AddPart(osKey, "source", osSource);
    // The files whose change changes the points: the source and the
    // companions that hold its attributes (a shapefile's values are in the
    // .dbf) or its latest writes (a GeoPackage's -wal).
    std::vector<std::string> aosFiles{osSource, osSource + "-wal"};
    for (const TPSCovariateConfig &oCov : c.aoCovariates)
        if (oCov.osField.empty())
            aosFiles.push_back(AbsoluteSource(oCov.osRaster));
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    if (EQUAL(CPLGetExtensionSafe(osSource.c_str()).c_str(), "shp"))
        aosFiles.push_back(CPLResetExtensionSafe(osSource.c_str(), "dbf"));
#else
    if (EQUAL(CPLGetExtension(osSource.c_str()), "shp"))
        aosFiles.push_back(CPLResetExtension(osSource.c_str(), "dbf"));
#endif
    for (const std::string &osFile : aosFiles)
    {
        VSIStatBufL sStat;
        if (VSIStatL(osFile.c_str(), &sStat) != 0)
            continue;
        AddPart(osKey, "file", osFile);
        AddPart(osKey, "size", CPLSPrintf("%llu", static_cast<unsigned long long>(sStat.st_size)));
#if defined(__linux__)
        // Nanoseconds too: a rewrite within the same second is still a change.
        AddPart(osKey, "mtime",
                CPLSPrintf("%lld.%09ld", static_cast<long long>(sStat.st_mtime),
                           static_cast<long>(sStat.st_mtim.tv_nsec)));
#else
        AddPart(osKey, "mtime", CPLSPrintf("%lld", static_cast<long long>(sStat.st_mtime)));
#endif
    }
    osKey += TPSModelConfigKey(c);
    return osKey;
}

std::shared_ptr<TPSSharedModel> TPSModelCacheGet(
    const std::string &osKey, const std::function<std::shared_ptr<TPSSharedModel>()> &fnSolve,
    int *pnSolves)
{
    Cache &oCache = GetCache();
    std::shared_ptr<Slot> poSlot;
    {
        std::lock_guard<std::mutex> oLock(oCache.oMutex);
        if (oCache.oSlots.size() > MAX_IDLE_SLOTS && oCache.oSlots.count(osKey) == 0)
        {
            for (auto it = oCache.oSlots.begin(); it != oCache.oSlots.end();)
            {
                // Idle: no handle holds its model and no opener holds the slot.
                if (it->second->poModel.expired() && it->second.use_count() == 1)
                    it = oCache.oSlots.erase(it);
                else
                    ++it;
            }
        }
        auto &poEntry = oCache.oSlots[osKey];
        if (!poEntry)
            poEntry = std::make_shared<Slot>();
        poSlot = poEntry;
    }

    std::lock_guard<std::mutex> oSolveLock(poSlot->oSolveMutex);
    std::shared_ptr<TPSSharedModel> poModel = poSlot->poModel.lock();
    if (!poModel)
    {
        poModel = fnSolve();
        if (poModel)
        {
            poSlot->poModel = poModel;
            // A model read from its .tps.model file was not solved here.
            if (!poModel->bFromFile)
                poSlot->nSolves++;
        }
    }
    if (pnSolves)
        *pnSolves = poSlot->nSolves;
    return poModel;
}
