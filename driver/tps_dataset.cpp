/*
 * tps_dataset.cpp: TPSDataset and TPSRasterBand.
 *
 * Pixels are computed, never stored. Two read paths:
 *  - RasterIO at full resolution into a Float32/Float64 buffer (what
 *    gdal_translate, ReadAsArray and most clients do) evaluates straight
 *    into the caller's buffer, all requested bands in one engine call, so
 *    the distances to the points are computed once per pixel;
 *  - anything else (resampled reads, integer buffers) goes through GDAL's
 *    block cache, and a block read fills that block of every band at once
 *    for the same reason.
 * Downsampled reads go to the virtual overviews (factor 2, 4, 8, ...): the
 * spline evaluated directly at the coarser pixel centres, by the same two
 * paths, so that a zoomed-out read costs about the pixels it returns.
 */
#include "tps_dataset.h"

#include "tps_errors.h"
#include "tps_memory.h"
#include "tps_model_file.h"
#include "tps_points.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "cpl_vsi.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>

namespace
{

constexpr const char *MD_DOMAIN = "TPS";

/* Row chunks of a big window: at most this many pixels and point-pixel
 * pairs per engine call, so that the progress bar moves and a user
 * interrupt is seen within a few seconds. */
constexpr double CHUNK_MAX_PIXELS = 4194304.0;
constexpr double CHUNK_MAX_PAIRS = 1e9;
/* The GPU evaluates ~1e11-1e12 pairs/s and overlaps its own transfers
 * within a call: fewer, larger calls. */
constexpr double CHUNK_MAX_PIXELS_GPU = 67108864.0;
constexpr double CHUNK_MAX_PAIRS_GPU = 2e11;
/* With a mask, a chunk evaluates only the rectangle around its kept
 * pixels: smaller chunks follow the mask's shape more closely (a hull's
 * slanted edge, a hole between point clusters), at the cost of more engine
 * calls; at these sizes a call's fixed cost stays under ~1% of its work. */
constexpr double CHUNK_MAX_PIXELS_MASKED = 262144.0;
constexpr double CHUNK_MAX_PIXELS_MASKED_GPU = 4194304.0;

// Point-pixel pairs per pixel: every point for a global model; for a local
// one the points of the few patches blended over each pixel (cells hold
// n / patches points, patches overlap ~2x: the engine's own estimate).
double PairsPerPixel(const tps_model_info &sInfo)
{
    const double dfPoints = std::max<double>(1.0, static_cast<double>(sInfo.n_points));
    if (sInfo.mode == TPS_MODE_LOCAL && sInfo.n_patches > 0)
        return std::min(dfPoints, 4.5 * dfPoints / static_cast<double>(sInfo.n_patches));
    return dfPoints;
}

/* With a progress function, a window is evaluated in chunks of about this
 * many point-pixel pairs (a fraction of a second on a 2-core machine; the
 * GPU's ~1e12 pairs/s get larger ones), and progress is reported after
 * each. A work size, not a time: how often the bar moves per row of work is
 * the same on any machine, and the first report comes after one chunk, long
 * before the end of a big read. TPS_PROGRESS_CHUNK_PAIRS overrides both. */
constexpr double PROGRESS_CHUNK_PAIRS = 2.5e8;
constexpr double PROGRESS_CHUNK_PAIRS_GPU = 1e11;

/* Overview levels stop before the larger side falls below this. */
constexpr int TPS_OVERVIEW_MIN_SIDE = 256;

const char *SizeString(size_t n)
{
    return CPLSPrintf("%llu", static_cast<unsigned long long>(n));
}

/* GDAL's Open has no progress callback: a long solve says how far it is in
 * CPLDebug lines (seen with --debug on), at most one every
 * TPS_PROGRESS_INTERVAL seconds (default 1; 0: every whole percent, which
 * the tests use), the first after that long: a quick solve prints none. */
struct SolveProgress
{
    const char *pszName = "";
    double dfInterval = 1.0;
    std::chrono::steady_clock::time_point oLast{};
};

void SolveProgressCallback(void *pUserData, const char *pszStage, double dfFraction)
{
    auto *psProgress = static_cast<SolveProgress *>(pUserData);
    const auto oNow = std::chrono::steady_clock::now();
    if (std::chrono::duration<double>(oNow - psProgress->oLast).count() < psProgress->dfInterval)
        return;
    psProgress->oLast = oNow;
    // Whole percents as the engine counts them (tps.h): 28.999... is 29.
    CPLDebug("TPS", "%s: solving: %s %d%%", psProgress->pszName, pszStage,
             static_cast<int>(std::floor(100.0 * dfFraction + 1e-9)));
}

double GetProgressChunkPairs(const std::string &osName, bool bGPU)
{
    const double dfDefault = bGPU ? PROGRESS_CHUNK_PAIRS_GPU : PROGRESS_CHUNK_PAIRS;
    const char *pszValue = CPLGetConfigOption("TPS_PROGRESS_CHUNK_PAIRS", nullptr);
    if (pszValue == nullptr)
        return dfDefault;
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(pszValue, &pszEnd);
    if (pszEnd == pszValue || *pszEnd != '\0' || !(dfValue >= 1) || !std::isfinite(dfValue))
    {
        // Only how often progress is reported depends on it: warn, go on.
        CPLError(CE_Warning, CPLE_IllegalArg,
                 "%s: TPS_PROGRESS_CHUNK_PAIRS: expected a number of point-pixel pairs >= 1, "
                 "got '%s'; using %g",
                 osName.c_str(), TPSShown(pszValue).c_str(), dfDefault);
        return dfDefault;
    }
    return dfValue;
}

double GetProgressInterval(const std::string &osName)
{
    const char *pszValue = CPLGetConfigOption("TPS_PROGRESS_INTERVAL", nullptr);
    if (pszValue == nullptr)
        return 1.0;
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(pszValue, &pszEnd);
    if (pszEnd == pszValue || *pszEnd != '\0' || !(dfValue >= 0) || !std::isfinite(dfValue))
    {
        // Only debug output depends on it: say so, and keep the default.
        CPLError(CE_Warning, CPLE_IllegalArg,
                 "%s: TPS_PROGRESS_INTERVAL: expected a number of seconds >= 0, got '%s'; "
                 "using 1",
                 osName.c_str(), TPSShown(pszValue).c_str());
        return 1.0;
    }
    return dfValue;
}

tps_device ToEngineDevice(TPSDeviceRequest eDevice)
{
    switch (eDevice)
    {
    case TPSDeviceRequest::CPU:
        return TPS_DEVICE_CPU;
    case TPSDeviceRequest::GPU:
        return TPS_DEVICE_GPU;
    case TPSDeviceRequest::AUTO:
        break;
    }
    return TPS_DEVICE_AUTO;
}

tps_quantity ToEngineQuantity(TPSQuantity eQuantity)
{
    switch (eQuantity)
    {
    case TPSQuantity::DZDX:
        return TPS_QUANTITY_DZDX;
    case TPSQuantity::DZDY:
        return TPS_QUANTITY_DZDY;
    case TPSQuantity::SLOPE:
        return TPS_QUANTITY_SLOPE;
    case TPSQuantity::ASPECT:
        return TPS_QUANTITY_ASPECT;
    case TPSQuantity::LAPLACIAN:
        return TPS_QUANTITY_LAPLACIAN;
    case TPSQuantity::VALUE:
        break;
    }
    return TPS_QUANTITY_VALUE;
}

} // namespace

/************************************************************************/
/*                             TPSDataset                               */
/************************************************************************/

TPSDataset::TPSDataset() = default;

TPSDataset::~TPSDataset()
{
    // Flush while the object is whole: ~GDALDataset, which deletes the
    // bands, runs after the model and the context are gone.
    FlushCache(true);
    m_poMaskBand.reset();
    m_apoOverviews.clear();
}

void TPSDataset::CreateOverviews()
{
    for (GIntBig nFactor = 2;; nFactor *= 2)
    {
        // ceil(size / factor), as GDAL sizes overviews.
        const int nOvXSize = static_cast<int>((nRasterXSize + nFactor - 1) / nFactor);
        const int nOvYSize = static_cast<int>((nRasterYSize + nFactor - 1) / nFactor);
        if (std::max(nOvXSize, nOvYSize) < TPS_OVERVIEW_MIN_SIDE)
            break;
        auto poOvr = std::make_unique<TPSDataset>();
        poOvr->m_poParent = this;
        poOvr->m_oConfig = m_oConfig;
        poOvr->m_poModel = m_poModel;
        poOvr->nRasterXSize = nOvXSize;
        poOvr->nRasterYSize = nOvYSize;
        poOvr->eAccess = GA_ReadOnly;
        // Same origin and extent: the pixel is the extent over the
        // overview's size (not exactly nFactor times the pixel when the
        // size does not divide).
        const double dfXScale = static_cast<double>(nRasterXSize) / nOvXSize;
        const double dfYScale = static_cast<double>(nRasterYSize) / nOvYSize;
        const double *gt = m_adfGeoTransform;
        const double adfOvGT[6] = {gt[0], gt[1] * dfXScale, gt[2] * dfYScale,
                                   gt[3], gt[4] * dfXScale, gt[5] * dfYScale};
        std::copy(adfOvGT, adfOvGT + 6, poOvr->m_adfGeoTransform);
        for (int i = 0; i < nBands; i++)
            poOvr->SetBand(i + 1, new TPSRasterBand(poOvr.get(), i + 1));
        poOvr->m_poMask = m_poMask;
        if (m_poMask)
            poOvr->m_poMaskBand = std::make_unique<TPSMaskBand>(poOvr.get());
        m_apoOverviews.push_back(std::move(poOvr));
    }
}

void TPSDataset::LogCallback(void *pUserData, tps_log_level eLevel, const char *pszMessage)
{
    const auto *poDS = static_cast<const TPSDataset *>(pUserData);
    const char *pszName = poDS ? poDS->m_oConfig.osName.c_str() : "TPS";
    if (eLevel == TPS_LOG_WARNING)
        CPLError(CE_Warning, CPLE_AppDefined, "%s: %s", pszName, pszMessage);
    else
        CPLDebug("TPS", "%s: %s", pszName, pszMessage);
}

bool TPSDataset::ReportEngineError(const char *pszWhat) const
{
    const tps_status eStatus = tps_context_errno(m_poContext.get());
    const char *pszMsg = tps_context_errmsg(m_poContext.get());
    if (pszMsg == nullptr || pszMsg[0] == '\0')
        pszMsg = tps_status_string(eStatus);
    std::string osMsg = m_oConfig.osName + ": " + pszWhat + ": " + pszMsg;
    if (eStatus == TPS_ERR_MEMORY_LIMIT)
        osMsg += CPLSPrintf("; TPS_MAX_MEMORY (%llu bytes) is the budget of all the TPS data "
                            "sets of this process, of which %llu bytes are in use: raise it "
                            "with --config TPS_MAX_MEMORY <bytes> (or the TPS_MAX_MEMORY "
                            "environment variable)",
                            static_cast<unsigned long long>(m_nMemoryBudget),
                            static_cast<unsigned long long>(TPSMemoryInUse()));
    CPLError(CE_Failure, eStatus == TPS_ERR_OUT_OF_MEMORY ? CPLE_OutOfMemory : CPLE_AppDefined,
             "%s", TPSSanitize(osMsg).c_str());
    return false;
}

std::shared_ptr<TPSSharedModel> TPSDataset::Solve()
{
    // The points, and the engine's copies of them below, are charged to the
    // process's budget (tps_memory.h) until they are freed, on return.
    TPSMemoryCharge oCharge;
    TPSPoints oPoints;
    if (!TPSLoadPoints(m_oConfig, &oPoints, &oCharge, m_nMemoryBudget))
        return nullptr;

    // TPS_MAX_SOLVES again, before the work: the engine factorises bands of
    // one smoothing together only when they miss the same points, so each
    // pattern of missing values is another solve (an upper bound: merging
    // coincident points can only make patterns equal).
    const size_t nModelBands = m_oConfig.aoModelBands.size();
    {
        std::set<std::tuple<double, uint64_t, size_t>> oGroups;
        size_t nGCV = 0;
        for (size_t b = 0; b < nModelBands; b++)
        {
            if (m_oConfig.aoModelBands[b].bSmoothingGCV)
            {
                nGCV++;
                continue;
            }
            uint64_t nHash = 0xcbf29ce484222325ULL;
            size_t nMissing = 0;
            const std::vector<double> &adfValues = oPoints.aadfValues[b];
            for (size_t i = 0; i < adfValues.size(); i++)
            {
                if (std::isfinite(adfValues[i]))
                    continue;
                nMissing++;
                nHash = (nHash ^ i) * 0x100000001b3ULL;
            }
            oGroups.emplace(m_oConfig.aoModelBands[b].dfSmoothing, nHash, nMissing);
        }
        if (oGroups.size() + nGCV > static_cast<size_t>(m_oConfig.nMaxSolves))
        {
            CPLError(CE_Failure, CPLE_NotSupported,
                     "%s: %llu distinct solves (bands of one smoothing share one only when "
                     "they miss values at the same points): TPS_MAX_SOLVES=%d caps them; "
                     "raise it to open this file",
                     m_oConfig.osName.c_str(),
                     static_cast<unsigned long long>(oGroups.size() + nGCV),
                     m_oConfig.nMaxSolves);
            return nullptr;
        }
    }

    // The surfaces only: bands of other quantities of a field share its own.
    std::vector<const double *> apdfValues(nModelBands);
    std::vector<double> adfSmoothing(nModelBands);
    std::vector<int> anSmoothingGCV(nModelBands);
    for (size_t b = 0; b < nModelBands; b++)
    {
        apdfValues[b] = oPoints.aadfValues[b].data();
        adfSmoothing[b] = m_oConfig.aoModelBands[b].dfSmoothing;
        anSmoothingGCV[b] = m_oConfig.aoModelBands[b].bSmoothingGCV ? 1 : 0;
    }
    // tps_model_create copies the points and values (merged, scaled) and
    // keeps a weight per point and surface: charged before it starts; its
    // dense or local systems may then use what the budget has left.
    const size_t nPoints = oPoints.adfX.size();
    const size_t nCopies = sizeof(double) * nPoints * (2 * nModelBands + 8);
    if (!oCharge.Resize(oCharge.Bytes() + nCopies, m_nMemoryBudget))
    {
        CPLError(CE_Failure, CPLE_OutOfMemory,
                 "%s: the solve's copies of %llu points need %llu bytes more, beyond "
                 "TPS_MAX_MEMORY (%llu bytes for all the TPS data sets of this process, %llu in "
                 "use): raise it with --config TPS_MAX_MEMORY <bytes>",
                 m_oConfig.osName.c_str(), static_cast<unsigned long long>(nPoints),
                 static_cast<unsigned long long>(nCopies),
                 static_cast<unsigned long long>(m_nMemoryBudget),
                 static_cast<unsigned long long>(TPSMemoryInUse()));
        return nullptr;
    }
    tps_fit_options sFitOptions;
    tps_fit_options_init(&sFitOptions);
    // 0 is "no limit" to the engine: a budget used up is one byte.
    sFitOptions.max_memory =
        m_nMemoryBudget ? std::max<size_t>(1, TPSMemoryLeft(m_nMemoryBudget)) : 0;
    sFitOptions.gpu_max_memory = m_sEvalOptions.gpu_max_memory;
    sFitOptions.num_threads = m_oConfig.nNumThreads;
    sFitOptions.device = ToEngineDevice(m_oConfig.eDevice);
    sFitOptions.mode = m_oConfig.eMode == TPSModeRequest::GLOBAL  ? TPS_MODE_GLOBAL
                       : m_oConfig.eMode == TPSModeRequest::LOCAL ? TPS_MODE_LOCAL
                                                                  : TPS_MODE_AUTO;
    sFitOptions.patch_points = static_cast<size_t>(m_oConfig.nPatchPoints);
    sFitOptions.overlap = m_oConfig.dfOverlap;
    sFitOptions.smoothing_gcv = anSmoothingGCV.data();
    sFitOptions.weights = oPoints.adfWeights.empty() ? nullptr : oPoints.adfWeights.data();
    sFitOptions.cross_validation = m_oConfig.bCrossValidation ? 1 : 0;
    SolveProgress sProgress;
    sProgress.pszName = m_oConfig.osName.c_str();
    sProgress.dfInterval = GetProgressInterval(m_oConfig.osName);
    sFitOptions.progress = SolveProgressCallback;
    sFitOptions.progress_data = &sProgress;

    auto poModel = std::make_shared<TPSSharedModel>();
    const auto oStart = std::chrono::steady_clock::now();
    sProgress.oLast = oStart;
    poModel->psModel = tps_model_create(m_poContext.get(), oPoints.adfX.size(), oPoints.adfX.data(),
                                        oPoints.adfY.data(), nModelBands, apdfValues.data(),
                                        adfSmoothing.data(), &sFitOptions);
    if (poModel->psModel == nullptr)
    {
        ReportEngineError("cannot solve the spline");
        return nullptr;
    }
    const double dfSeconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - oStart).count();

    if (tps_model_get_info(m_poContext.get(), poModel->psModel, &poModel->sInfo) != TPS_OK)
    {
        ReportEngineError("cannot query the model");
        return nullptr;
    }
    poModel->asBandInfo.resize(nModelBands);
    for (size_t b = 0; b < nModelBands; b++)
    {
        if (tps_model_get_band_info(m_poContext.get(), poModel->psModel, b,
                                    &poModel->asBandInfo[b]) != TPS_OK)
        {
            ReportEngineError("cannot query the model");
            return nullptr;
        }
    }
    poModel->bHasSRS = oPoints.bHasOutputSRS;
    poModel->oSRS = oPoints.oOutputSRS;
    // Held while any handle holds the model; already allocated, so charged
    // whatever the budget says (the checks above came first).
    poModel->oCharge.Resize(TPSModelBytes(poModel->sInfo), 0);

    CPLDebug("TPS",
             "%s: solved %llu bands over %llu distinct points (%llu given, %llu dropped, %llu "
             "merged) with %llu factorisations in %.3f s",
             m_oConfig.osName.c_str(), static_cast<unsigned long long>(nModelBands),
             static_cast<unsigned long long>(poModel->sInfo.n_points),
             static_cast<unsigned long long>(poModel->sInfo.n_input),
             static_cast<unsigned long long>(poModel->sInfo.n_dropped),
             static_cast<unsigned long long>(poModel->sInfo.n_merged),
             static_cast<unsigned long long>(poModel->sInfo.n_factorisations), dfSeconds);
    return poModel;
}

std::shared_ptr<TPSSharedModel> TPSDataset::LoadOrSolve()
{
    const char *pszName = m_oConfig.osName.c_str();
    TPSModelFile oFile;
    std::string osWhy;
    const bool bKeep = TPSModelFilePrepare(m_oConfig, &oFile, &osWhy);
    oFile.nMemoryBudget = m_nMemoryBudget;
    if (!bKeep)
    {
        if (!osWhy.empty())
            CPLDebug("TPS", "%s: the solved model is not kept in a file: %s", pszName,
                     osWhy.c_str());
        return Solve();
    }
    if (auto poModel = TPSModelFileRead(oFile, m_poContext.get(), &osWhy))
    {
        CPLDebug("TPS", "%s: reused the solved model from %s", pszName, oFile.osPath.c_str());
        return poModel;
    }
    CPLDebug("TPS", "%s: solving: %s", pszName, osWhy.c_str());
    auto poModel = Solve();
    if (poModel && oFile.bWrite)
    {
        if (TPSModelFileWrite(oFile, *poModel, m_poContext.get(), &osWhy))
            CPLDebug("TPS", "%s: wrote the solved model to %s", pszName, oFile.osPath.c_str());
        else
            CPLDebug("TPS", "%s: the solved model is not kept: %s", pszName, osWhy.c_str());
    }
    return poModel;
}

std::unique_ptr<TPSDataset> TPSDataset::Open(TPSConfig &&oConfig)
{
    auto poDS = std::make_unique<TPSDataset>();
    poDS->m_oConfig = std::move(oConfig);
    const TPSConfig &c = poDS->m_oConfig;
    const char *pszName = c.osName.c_str();

    poDS->m_poContext.reset(tps_context_create());
    if (!poDS->m_poContext)
    {
        CPLError(CE_Failure, CPLE_OutOfMemory, "%s: cannot create an engine context", pszName);
        return nullptr;
    }
    tps_context_set_log(poDS->m_poContext.get(), LogCallback, poDS.get());

    tps_eval_options_init(&poDS->m_sEvalOptions);
    poDS->m_sEvalOptions.num_threads = c.nNumThreads;
    poDS->m_sEvalOptions.device = ToEngineDevice(c.eDevice);
    poDS->m_sEvalOptions.precision =
        c.bMixedPrecision ? TPS_PRECISION_MIXED : TPS_PRECISION_DOUBLE;
    // Before the solve: an unusable device should not cost a solve to find out.
    if (c.eDevice == TPSDeviceRequest::GPU &&
        tps_device_check(poDS->m_poContext.get(), TPS_DEVICE_GPU) != TPS_OK)
    {
        const char *pszMsg = tps_context_errmsg(poDS->m_poContext.get());
        CPLError(CE_Failure, CPLE_NotSupported, "%s: DEVICE=GPU: %s", pszName,
                 pszMsg && pszMsg[0] ? pszMsg : "the GPU cannot be used");
        return nullptr;
    }
    // TPS_MAX_MEMORY is the budget of the process's TPS data sets (default:
    // half the RAM; tps_memory.h); TPS_GPU_MAX_MEMORY what the GPU paths
    // may allocate (default: no cap beyond the device's free memory).
    if (!TPSMemoryBudget(c.osName, &poDS->m_nMemoryBudget) ||
        !TPSMemoryOption(c.osName, "TPS_GPU_MAX_MEMORY", 0, &poDS->m_sEvalOptions.gpu_max_memory))
        return nullptr;

    int nSolves = 0;
    TPSDataset *poRaw = poDS.get();
    poDS->m_poModel = TPSModelCacheGet(
        TPSModelCacheKey(c), [poRaw]() { return poRaw->LoadOrSolve(); }, &nSolves);
    if (!poDS->m_poModel)
        return nullptr;

    const tps_model_info &sInfo = poDS->m_poModel->sInfo;
    if (!TPSResolveGrid(c, sInfo.min_x, sInfo.min_y, sInfo.max_x, sInfo.max_y,
                        poDS->m_adfGeoTransform, &poDS->nRasterXSize, &poDS->nRasterYSize))
        return nullptr;

    // One device for the whole dataset, chosen from the size of the whole
    // raster, so that DEVICE says what evaluates every block.
    const double dfPairs =
        PairsPerPixel(sInfo) * poDS->nRasterXSize * static_cast<double>(poDS->nRasterYSize);
    poDS->m_bDeviceAuto = c.eDevice == TPSDeviceRequest::AUTO;
    poDS->m_sEvalOptions.device = tps_device_choose(poDS->m_sEvalOptions.device, dfPairs);
    if (poDS->m_sEvalOptions.device == TPS_DEVICE_GPU)
        CPLDebug("TPS", "%s: evaluating on the GPU: %s%s", pszName, tps_gpu_description(),
                 sInfo.mode == TPS_MODE_LOCAL ? " (a local model: FP64 whatever PRECISION)" : "");
    else if (poDS->m_bDeviceAuto &&
             tps_device_check(poDS->m_poContext.get(), TPS_DEVICE_GPU) != TPS_OK)
        CPLDebug("TPS", "%s: evaluating on the CPU: %s", pszName,
                 tps_context_errmsg(poDS->m_poContext.get()));
    else
        CPLDebug("TPS", "%s: evaluating on the CPU (%s)", pszName,
                 poDS->m_bDeviceAuto ? "too little work for the GPU to win" : "DEVICE=CPU");

    for (int i = 0; i < static_cast<int>(c.aoBands.size()); i++)
        poDS->SetBand(i + 1, new TPSRasterBand(poDS.get(), i + 1));
    if ((c.dfMaxDistance > 0 || c.bConvexHull) && !poDS->BuildMask())
        return nullptr;
    poDS->CreateOverviews();
    poDS->BuildMetadata(nSolves);
    return poDS;
}

bool TPSDataset::BuildMask()
{
    const size_t n = m_poModel->sInfo.n_points;
    std::vector<double> adfX, adfY;
    try
    {
        adfX.resize(n);
        adfY.resize(n);
    }
    catch (const std::bad_alloc &)
    {
        CPLError(CE_Failure, CPLE_OutOfMemory, "%s: out of memory building the mask",
                 m_oConfig.osName.c_str());
        return false;
    }
    if (tps_model_get_points(m_poContext.get(), m_poModel->psModel, adfX.data(), adfY.data()) !=
        TPS_OK)
        return ReportEngineError("cannot read the model's points");
    const auto oStart = std::chrono::steady_clock::now();
    m_poMask = TPSMask::Build(adfX.data(), adfY.data(), n, m_oConfig.dfMaxDistance,
                              m_oConfig.bConvexHull);
    if (!m_poMask)
    {
        CPLError(CE_Failure, CPLE_OutOfMemory, "%s: out of memory building the mask",
                 m_oConfig.osName.c_str());
        return false;
    }
    CPLDebug("TPS", "%s: mask (MaxDistance %.17g, convex hull %s of %llu vertices) built in %.3f s",
             m_oConfig.osName.c_str(), m_oConfig.dfMaxDistance,
             m_oConfig.bConvexHull ? "on" : "off",
             static_cast<unsigned long long>(m_poMask->HullSize()),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - oStart).count());
    m_poMaskBand = std::make_unique<TPSMaskBand>(this);
    return true;
}

void TPSDataset::BuildMetadata(int nSolves)
{
    const TPSConfig &c = m_oConfig;
    const tps_model_info &sInfo = m_poModel->sInfo;

    // SMOOTHING is the lambda each band was solved with (GCV: the chosen
    // one); like the GCV statistics, one value when all bands agree, else
    // one per band, comma-separated.
    const auto PerBand = [&](const std::function<std::string(size_t)> &fn)
    {
        std::string osAll, osFirst = fn(c.aoBands[0].nModelBand);
        bool bSame = true;
        for (size_t b = 0; b < c.aoBands.size(); b++)
        {
            const std::string os = fn(c.aoBands[b].nModelBand);
            osAll += (b ? "," : "") + os;
            bSame = bSame && os == osFirst;
        }
        return bSame ? osFirst : osAll;
    };
    const auto &asBI = m_poModel->asBandInfo;
    double dfMaxResidual = 0;
    bool bAllGCV = true, bAllLOO = true;
    for (const tps_band_info &sBI : asBI)
    {
        dfMaxResidual = std::max(dfMaxResidual, sBI.max_abs_residual);
        bAllGCV = bAllGCV && sBI.smoothing_gcv;
        bAllLOO = bAllLOO && std::isfinite(sBI.loo_rmse);
    }
    const std::string osSmoothing =
        PerBand([&](size_t b) { return std::string(CPLSPrintf("%.17g", asBI[b].smoothing)); });
    SetMetadataItem("SMOOTHING_METHOD",
                    PerBand([&](size_t b)
                            { return std::string(asBI[b].smoothing_gcv ? "GCV" : "FIXED"); })
                        .c_str(),
                    MD_DOMAIN);
    if (bAllGCV)
    {
        SetMetadataItem("GCV_SCORE",
                        PerBand([&](size_t b)
                                { return std::string(CPLSPrintf("%.17g", asBI[b].gcv_score)); })
                            .c_str(),
                        MD_DOMAIN);
        SetMetadataItem("EFFECTIVE_DF",
                        PerBand([&](size_t b) {
                            return std::string(CPLSPrintf("%.17g", asBI[b].effective_df));
                        }).c_str(),
                        MD_DOMAIN);
    }
    // Leave-one-out: GCV bands, and fixed-lambda ones with CROSS_VALIDATION.
    if (bAllLOO)
    {
        SetMetadataItem("LOO_RMSE",
                        PerBand([&](size_t b)
                                { return std::string(CPLSPrintf("%.17g", asBI[b].loo_rmse)); })
                            .c_str(),
                        MD_DOMAIN);
        SetMetadataItem("LOO_MAE",
                        PerBand([&](size_t b)
                                { return std::string(CPLSPrintf("%.17g", asBI[b].loo_mae)); })
                            .c_str(),
                        MD_DOMAIN);
    }

    SetMetadataItem("POINT_COUNT", SizeString(sInfo.n_points), MD_DOMAIN);
    SetMetadataItem("INPUT_POINTS", SizeString(sInfo.n_input), MD_DOMAIN);
    SetMetadataItem("SMOOTHING", osSmoothing.c_str(), MD_DOMAIN);
    if (!c.osWeightField.empty())
        SetMetadataItem("WEIGHT_FIELD", c.osWeightField.c_str(), MD_DOMAIN);
    SetMetadataItem("SOLVE_SECONDS", CPLSPrintf("%.6f", sInfo.solve_seconds), MD_DOMAIN);
    SetMetadataItem("SOLVE_DEVICE", tps_device_name(sInfo.solve_device), MD_DOMAIN);
    SetMetadataItem("MODE", sInfo.mode == TPS_MODE_LOCAL ? "LOCAL" : "GLOBAL", MD_DOMAIN);
    SetMetadataItem("PATCHES", SizeString(sInfo.n_patches), MD_DOMAIN);
    SetMetadataItem("FACTORISATIONS", SizeString(sInfo.n_factorisations), MD_DOMAIN);
    SetMetadataItem("MAX_ABS_RESIDUAL", CPLSPrintf("%.17g", dfMaxResidual), MD_DOMAIN);
    SetMetadataItem("DEVICE", tps_device_name(m_sEvalOptions.device), MD_DOMAIN);
    if (m_sEvalOptions.device == TPS_DEVICE_GPU)
    {
        SetMetadataItem("GPU", tps_gpu_description(), MD_DOMAIN);
        SetMetadataItem("PRECISION",
                        m_sEvalOptions.precision == TPS_PRECISION_MIXED ? "MIXED" : "DOUBLE",
                        MD_DOMAIN);
    }
    SetMetadataItem("CPU_KERNEL", tps_cpu_description(), MD_DOMAIN);
    SetMetadataItem("NUM_THREADS", CPLSPrintf("%d", m_sEvalOptions.num_threads), MD_DOMAIN);
    SetMetadataItem("SOLVES", CPLSPrintf("%d", nSolves), MD_DOMAIN);
    SetMetadataItem("MODEL_SOURCE", m_poModel->bFromFile ? "FILE" : "SOLVED", MD_DOMAIN);
    const std::string osModelFile = TPSModelFilePath(c);
    if (!osModelFile.empty())
        SetMetadataItem("MODEL_FILE", osModelFile.c_str(), MD_DOMAIN);

    for (int i = 0; i < nBands; i++)
    {
        const TPSBandConfig &oBand = c.aoBands[i];
        const tps_band_info &sBand = m_poModel->asBandInfo[oBand.nModelBand];
        GDALRasterBand *poBand = papoBands[i];
        poBand->SetDescription(oBand.osDescription.c_str());
        poBand->SetMetadataItem("FIELD", oBand.bGeometryZ ? "<GeometryZ/>" : oBand.osField.c_str(),
                                MD_DOMAIN);
        poBand->SetMetadataItem("QUANTITY", TPSQuantityName(oBand.eQuantity), MD_DOMAIN);
        poBand->SetMetadataItem("SMOOTHING", CPLSPrintf("%.17g", sBand.smoothing), MD_DOMAIN);
        poBand->SetMetadataItem("SMOOTHING_METHOD", sBand.smoothing_gcv ? "GCV" : "FIXED",
                                MD_DOMAIN);
        if (sBand.smoothing_gcv)
        {
            poBand->SetMetadataItem("GCV_SCORE", CPLSPrintf("%.17g", sBand.gcv_score), MD_DOMAIN);
            poBand->SetMetadataItem("EFFECTIVE_DF", CPLSPrintf("%.17g", sBand.effective_df),
                                    MD_DOMAIN);
        }
        if (std::isfinite(sBand.loo_rmse))
        {
            poBand->SetMetadataItem("LOO_RMSE", CPLSPrintf("%.17g", sBand.loo_rmse), MD_DOMAIN);
            poBand->SetMetadataItem("LOO_MAE", CPLSPrintf("%.17g", sBand.loo_mae), MD_DOMAIN);
        }
        poBand->SetMetadataItem("POINT_COUNT", SizeString(sBand.n_points), MD_DOMAIN);
        poBand->SetMetadataItem("MISSING_VALUES", SizeString(sBand.n_missing), MD_DOMAIN);
        poBand->SetMetadataItem("MAX_ABS_RESIDUAL", CPLSPrintf("%.17g", sBand.max_abs_residual),
                                MD_DOMAIN);
    }
}

void TPSDataset::RefreshDynamicMetadata(const char *pszDomain)
{
    if (pszDomain != nullptr && EQUAL(pszDomain, MD_DOMAIN))
    {
        tps_model_info sInfo;
        if (tps_model_get_info(nullptr, m_poModel->psModel, &sInfo) == TPS_OK)
            SetMetadataItem("DEVICE_UPLOADS", SizeString(sInfo.device_uploads), MD_DOMAIN);
        SetMetadataItem("PIXELS_EVALUATED",
                        CPLSPrintf("%llu",
                                   static_cast<unsigned long long>(Root().m_nPixelsEvaluated)),
                        MD_DOMAIN);
    }
}

char **TPSDataset::GetMetadata(const char *pszDomain)
{
    RefreshDynamicMetadata(pszDomain);
    return GDALDataset::GetMetadata(pszDomain);
}

const char *TPSDataset::GetMetadataItem(const char *pszName, const char *pszDomain)
{
    RefreshDynamicMetadata(pszDomain);
    return GDALDataset::GetMetadataItem(pszName, pszDomain);
}

#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 12, 0)
CPLErr TPSDataset::GetGeoTransform(GDALGeoTransform &oGT) const
{
    oGT = GDALGeoTransform(m_adfGeoTransform);
    return CE_None;
}
#else
CPLErr TPSDataset::GetGeoTransform(double *padfGT)
{
    std::copy(m_adfGeoTransform, m_adfGeoTransform + 6, padfGT);
    return CE_None;
}
#endif

const OGRSpatialReference *TPSDataset::GetSpatialRef() const
{
    return m_poModel && m_poModel->bHasSRS && !m_poModel->oSRS.IsEmpty() ? &m_poModel->oSRS
                                                                         : nullptr;
}

char **TPSDataset::GetFileList()
{
    char **papszFiles = GDALDataset::GetFileList();
    // The points are part of the data set: gdalinfo shows them, and
    // tools that copy "all the files" should take them too.
    VSIStatBufL sStat;
    const char *pszSource = m_oConfig.osSource.c_str();
    if (VSIStatL(pszSource, &sStat) == 0 && !VSI_ISDIR(sStat.st_mode) &&
        CSLFindString(papszFiles, pszSource) < 0)
        papszFiles = CSLAddString(papszFiles, pszSource);
    // So is the solved model kept next to the .tps file.
    const std::string osModelFile = TPSModelFilePath(m_oConfig);
    if (!osModelFile.empty() && VSIStatL(osModelFile.c_str(), &sStat) == 0 &&
        VSI_ISREG(sStat.st_mode))
        papszFiles = CSLAddString(papszFiles, osModelFile.c_str());
    return papszFiles;
}

bool TPSDataset::IsFastPath(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize,
                            int nBufXSize, int nBufYSize, GDALDataType eBufType,
                            const GDALRasterIOExtraArg *psExtraArg)
{
    if (eRWFlag != GF_Read || nBufXSize != nXSize || nBufYSize != nYSize ||
        (eBufType != GDT_Float32 && eBufType != GDT_Float64))
        return false;
    // A sub-pixel window (gdal_translate -srcwin with fractions) is GDAL's
    // business: its resampling defines what the caller gets.
    if (psExtraArg && psExtraArg->bFloatingPointWindowValidity &&
        (psExtraArg->dfXOff != nXOff || psExtraArg->dfYOff != nYOff ||
         psExtraArg->dfXSize != nXSize || psExtraArg->dfYSize != nYSize))
        return false;
    return true;
}

CPLErr TPSDataset::EvaluateWindow(int nXOff, int nYOff, int nXSize, int nYSize,
                                  std::vector<tps_output> &aoOutputs, GDALDataType eBufType,
                                  GDALRasterIOExtraArg *psExtraArg)
{
    if (aoOutputs.empty() || nXSize <= 0 || nYSize <= 0)
        return CE_None;
    // An overview evaluates with the full-resolution data set's context
    // and options, over its own geotransform.
    TPSDataset &oRoot = Root();
    tps_context *psCtx = oRoot.m_poContext.get();
    tps_eval_options &sEvalOptions = oRoot.m_sEvalOptions;
    const double dfPoints = PairsPerPixel(m_poModel->sInfo);
    const bool bGPU = sEvalOptions.device == TPS_DEVICE_GPU;
    const double dfMaxPixels =
        m_poMask ? (bGPU ? CHUNK_MAX_PIXELS_MASKED_GPU : CHUNK_MAX_PIXELS_MASKED)
                 : (bGPU ? CHUNK_MAX_PIXELS_GPU : CHUNK_MAX_PIXELS);
    const double dfMaxPairs = bGPU ? CHUNK_MAX_PAIRS_GPU : CHUNK_MAX_PAIRS;
    const double dfRows = std::min(dfMaxPixels / nXSize, dfMaxPairs / (dfPoints * nXSize));
    const int nMaxChunkRows = static_cast<int>(std::max(1.0, std::min<double>(nYSize, dfRows)));
    // A Float32 raster read into a Float64 buffer must give the Float32
    // values, as it would through the block cache: round after evaluating.
    const bool bRoundToFloat32 = eBufType == GDT_Float64 && m_oConfig.eDataType == GDT_Float32;
    GDALProgressFunc pfnProgress = psExtraArg ? psExtraArg->pfnProgress : nullptr;
    void *pProgressData = psExtraArg ? psExtraArg->pProgressData : nullptr;
    // With a progress function, chunks of PROGRESS_CHUNK_PAIRS pairs (whole
    // rows, at least one): the bar moves after each, by the same steps on
    // any machine. Chunking never changes the values (tps.h: a cell
    // depends only on its indices).
    int nChunkRows = nMaxChunkRows;
    if (pfnProgress)
    {
        const double dfChunkRows =
            std::floor(GetProgressChunkPairs(m_oConfig.osName, bGPU) / (dfPoints * nXSize));
        nChunkRows = static_cast<int>(std::max(1.0, std::min<double>(nMaxChunkRows, dfChunkRows)));
    }

    std::vector<tps_output> aoChunk(aoOutputs);
    std::vector<unsigned char> abyValid;
    for (int iRow = 0, nRows = 0; iRow < nYSize; iRow += nRows)
    {
        nRows = std::min(nChunkRows, nYSize - iRow);
        // With a mask, only the smallest rectangle of the chunk that holds
        // every kept pixel is evaluated (nothing when none is kept); the
        // masked pixels become NoData below. A pixel's value does not
        // depend on the window around it, so this changes no byte.
        int nEvalX0 = 0, nEvalY0 = 0, nEvalXSize = nXSize, nEvalYSize = nRows;
        if (m_poMask)
        {
            tps_grid sChunkGrid;
            tps_grid_from_geotransform(&sChunkGrid, m_adfGeoTransform, static_cast<size_t>(nXOff),
                                       static_cast<size_t>(nYOff + iRow),
                                       static_cast<size_t>(nXSize), static_cast<size_t>(nRows));
            abyValid.resize(static_cast<size_t>(nXSize) * nRows);
            if (m_poMask->Compute(sChunkGrid, abyValid.data(), sEvalOptions.num_threads) == 0)
                nEvalXSize = nEvalYSize = 0;
            else
            {
                int nMinX = nXSize, nMaxX = -1, nMinY = nRows, nMaxY = -1;
                for (int j = 0; j < nRows; j++)
                {
                    const unsigned char *pabyRow =
                        abyValid.data() + static_cast<size_t>(j) * nXSize;
                    const unsigned char *pabyEnd = pabyRow + nXSize;
                    const unsigned char *pabyFirst = std::find(pabyRow, pabyEnd, 1);
                    if (pabyFirst == pabyEnd)
                        continue;
                    const unsigned char *pabyLast =
                        std::find(std::make_reverse_iterator(pabyEnd),
                                  std::make_reverse_iterator(pabyFirst), 1)
                            .base() -
                        1;
                    nMinX = std::min(nMinX, static_cast<int>(pabyFirst - pabyRow));
                    nMaxX = std::max(nMaxX, static_cast<int>(pabyLast - pabyRow));
                    nMinY = std::min(nMinY, j);
                    nMaxY = j;
                }
                nEvalX0 = nMinX;
                nEvalY0 = nMinY;
                nEvalXSize = nMaxX - nMinX + 1;
                nEvalYSize = nMaxY - nMinY + 1;
            }
        }
        if (nEvalXSize > 0 && nEvalYSize > 0)
        {
            for (size_t i = 0; i < aoOutputs.size(); i++)
                aoChunk[i].data =
                    static_cast<GByte *>(aoOutputs[i].data) +
                    static_cast<ptrdiff_t>(iRow + nEvalY0) * aoOutputs[i].line_stride +
                    static_cast<ptrdiff_t>(nEvalX0) * aoOutputs[i].pixel_stride;
            tps_grid sGrid;
            tps_grid_from_geotransform(&sGrid, m_adfGeoTransform,
                                       static_cast<size_t>(nXOff + nEvalX0),
                                       static_cast<size_t>(nYOff + iRow + nEvalY0),
                                       static_cast<size_t>(nEvalXSize),
                                       static_cast<size_t>(nEvalYSize));
            tps_status eStatus = tps_evaluate_grid(psCtx, m_poModel->psModel, &sGrid,
                                                   aoChunk.size(), aoChunk.data(), &sEvalOptions);
            if (eStatus != TPS_OK && oRoot.m_bDeviceAuto && sEvalOptions.device == TPS_DEVICE_GPU)
            {
                // DEVICE=AUTO chose the GPU and the GPU failed (out of memory,
                // gone): this handle goes on on the CPU, and says so.
                CPLDebug("TPS", "%s: GPU evaluation failed, going on on the CPU: %s",
                         m_oConfig.osName.c_str(), tps_context_errmsg(psCtx));
                sEvalOptions.device = TPS_DEVICE_CPU;
                oRoot.SetMetadataItem("DEVICE", "CPU", MD_DOMAIN);
                eStatus = tps_evaluate_grid(psCtx, m_poModel->psModel, &sGrid, aoChunk.size(),
                                            aoChunk.data(), &sEvalOptions);
            }
            if (eStatus != TPS_OK)
            {
                oRoot.ReportEngineError("evaluation failed");
                return CE_Failure;
            }
            oRoot.m_nPixelsEvaluated +=
                static_cast<uint64_t>(nEvalXSize) * static_cast<uint64_t>(nEvalYSize);
        }
        if (m_poMask)
        {
            const double dfNoData = NoDataValue();
            const float fNoData = static_cast<float>(dfNoData);
            for (const tps_output &oOut : aoOutputs)
            {
                for (int j = 0; j < nRows; j++)
                {
                    GByte *pabyLine = static_cast<GByte *>(oOut.data) +
                                      static_cast<ptrdiff_t>(iRow + j) * oOut.line_stride;
                    const unsigned char *pabyRowValid =
                        abyValid.data() + static_cast<size_t>(j) * nXSize;
                    for (int k = 0; k < nXSize; k++)
                    {
                        if (pabyRowValid[k])
                            continue;
                        GByte *pabyPixel = pabyLine + static_cast<ptrdiff_t>(k) * oOut.pixel_stride;
                        if (oOut.type == TPS_FLOAT32)
                            memcpy(pabyPixel, &fNoData, sizeof(fNoData));
                        else
                            memcpy(pabyPixel, &dfNoData, sizeof(dfNoData));
                    }
                }
            }
        }
        if (bRoundToFloat32)
        {
            for (const tps_output &oOut : aoOutputs)
            {
                for (int j = 0; j < nRows; j++)
                {
                    GByte *pabyLine = static_cast<GByte *>(oOut.data) +
                                      static_cast<ptrdiff_t>(iRow + j) * oOut.line_stride;
                    for (int k = 0; k < nXSize; k++)
                    {
                        double *pdf = reinterpret_cast<double *>(pabyLine + k * oOut.pixel_stride);
                        *pdf = static_cast<double>(static_cast<float>(*pdf));
                    }
                }
            }
        }
        if (pfnProgress &&
            !pfnProgress(static_cast<double>(iRow + nRows) / nYSize, "", pProgressData))
        {
            CPLError(CE_Failure, CPLE_UserInterrupt, "User terminated");
            return CE_Failure;
        }
    }
    return CE_None;
}

CPLErr TPSDataset::IRasterIO(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize,
                             void *pData, int nBufXSize, int nBufYSize, GDALDataType eBufType,
                             int nBandCount, TPS_BANDMAP_TYPE panBandMap, GSpacing nPixelSpace,
                             GSpacing nLineSpace, GSpacing nBandSpace,
                             GDALRasterIOExtraArg *psExtraArg)
{
    if (eRWFlag == GF_Write)
    {
        CPLError(CE_Failure, CPLE_NoWriteAccess, "%s: the TPS driver is read-only",
                 m_oConfig.osName.c_str());
        return CE_Failure;
    }
    if (!IsFastPath(eRWFlag, nXOff, nYOff, nXSize, nYSize, nBufXSize, nBufYSize, eBufType,
                    psExtraArg))
        return GDALDataset::IRasterIO(eRWFlag, nXOff, nYOff, nXSize, nYSize, pData, nBufXSize,
                                      nBufYSize, eBufType, nBandCount, panBandMap, nPixelSpace,
                                      nLineSpace, nBandSpace, psExtraArg);
    std::vector<tps_output> aoOutputs(nBandCount);
    for (int i = 0; i < nBandCount; i++)
    {
        const TPSBandConfig &oBand = m_oConfig.aoBands[panBandMap[i] - 1];
        aoOutputs[i].band = oBand.nModelBand;
        aoOutputs[i].quantity = ToEngineQuantity(oBand.eQuantity);
        aoOutputs[i].data = static_cast<GByte *>(pData) + i * nBandSpace;
        aoOutputs[i].type = eBufType == GDT_Float32 ? TPS_FLOAT32 : TPS_FLOAT64;
        aoOutputs[i].pixel_stride = static_cast<ptrdiff_t>(nPixelSpace);
        aoOutputs[i].line_stride = static_cast<ptrdiff_t>(nLineSpace);
    }
    return EvaluateWindow(nXOff, nYOff, nXSize, nYSize, aoOutputs, eBufType, psExtraArg);
}

CPLErr TPSDataset::ReadBlockAllBands(TPSRasterBand *poCaller, int nBlockXOff, int nBlockYOff,
                                     void *pImage)
{
    const int nBlockXSize = poCaller->nBlockXSize;
    const int nBlockYSize = poCaller->nBlockYSize;
    const int nXOff = nBlockXOff * nBlockXSize;
    const int nYOff = nBlockYOff * nBlockYSize;
    const int nXValid = std::min(nBlockXSize, nRasterXSize - nXOff);
    const int nYValid = std::min(nBlockYSize, nRasterYSize - nYOff);
    const GDALDataType eType = m_oConfig.eDataType;
    const int nDTSize = GDALGetDataTypeSizeBytes(eType);
    const size_t nBlockBytes = static_cast<size_t>(nBlockXSize) * nBlockYSize * nDTSize;
    const bool bPartial = nXValid < nBlockXSize || nYValid < nBlockYSize;

    // The other bands' blocks are locked in GDAL's block cache while they
    // are computed, where nothing can evict them: no more of them than fit
    // in a quarter of GDAL_CACHEMAX (a one-pixel read of a 100-band data
    // set of big blocks filled 3.2 GB against a 1.2 GB cache). Bands left
    // out compute their block when they are read.
    const GIntBig nCacheMax = GDALGetCacheMax64();
    const size_t nMaxOtherBlocks =
        nCacheMax > 0 ? static_cast<size_t>(nCacheMax / 4) / std::max<size_t>(1, nBlockBytes) : 0;

    std::vector<tps_output> aoOutputs;
    std::vector<std::pair<GDALRasterBand *, GDALRasterBlock *>> aoLockedBlocks;
    for (int iBand = 1; iBand <= nBands; iBand++)
    {
        void *pBlockData = pImage;
        if (iBand != poCaller->nBand)
        {
            if (aoLockedBlocks.size() >= nMaxOtherBlocks)
                continue;
            GDALRasterBand *poBand = papoBands[iBand - 1];
            // Already cached: nothing to compute for that band.
            if (GDALRasterBlock *poCached = poBand->TryGetLockedBlockRef(nBlockXOff, nBlockYOff))
            {
                poCached->DropLock();
                continue;
            }
            GDALRasterBlock *poBlock = poBand->GetLockedBlockRef(nBlockXOff, nBlockYOff, TRUE);
            if (poBlock == nullptr)
                continue; // no room: that band will compute its block when read
            pBlockData = poBlock->GetDataRef();
            aoLockedBlocks.emplace_back(poBand, poBlock);
        }
        // The part of a last block beyond the raster is never shown but is
        // written to caches and files: make it zeros, not garbage.
        if (bPartial)
            memset(pBlockData, 0, nBlockBytes);
        const TPSBandConfig &oBand = m_oConfig.aoBands[iBand - 1];
        tps_output sOut{};
        sOut.band = oBand.nModelBand;
        sOut.quantity = ToEngineQuantity(oBand.eQuantity);
        sOut.data = pBlockData;
        sOut.type = eType == GDT_Float32 ? TPS_FLOAT32 : TPS_FLOAT64;
        sOut.pixel_stride = nDTSize;
        sOut.line_stride = static_cast<ptrdiff_t>(nBlockXSize) * nDTSize;
        aoOutputs.push_back(sOut);
    }

    const CPLErr eErr = EvaluateWindow(nXOff, nYOff, nXValid, nYValid, aoOutputs, eType, nullptr);
    for (auto &oLocked : aoLockedBlocks)
    {
        oLocked.second->DropLock();
        // A block that was never filled must not stay in the cache.
        if (eErr != CE_None)
            oLocked.first->FlushBlock(nBlockXOff, nBlockYOff, FALSE);
    }
    return eErr;
}

/************************************************************************/
/*                            TPSRasterBand                             */
/************************************************************************/

TPSRasterBand::TPSRasterBand(TPSDataset *poDSIn, int nBandIn)
{
    poDS = poDSIn;
    nBand = nBandIn;
    eAccess = GA_ReadOnly;
    eDataType = poDSIn->m_oConfig.eDataType;
    nRasterXSize = poDSIn->nRasterXSize;
    nRasterYSize = poDSIn->nRasterYSize;
    nBlockXSize = std::min(poDSIn->m_oConfig.nBlockXSize, nRasterXSize);
    nBlockYSize = std::min(poDSIn->m_oConfig.nBlockYSize, nRasterYSize);
}

const char *TPSRasterBand::GetUnitType()
{
    const TPSQuantity eQuantity =
        static_cast<TPSDataset *>(poDS)->m_oConfig.aoBands[nBand - 1].eQuantity;
    return eQuantity == TPSQuantity::SLOPE || eQuantity == TPSQuantity::ASPECT ? "degrees" : "";
}

double TPSRasterBand::GetNoDataValue(int *pbSuccess)
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    const bool bHasNoData = poTPSDS->HasNoData();
    if (pbSuccess)
        *pbSuccess = bHasNoData;
    return bHasNoData ? poTPSDS->NoDataValue() : 0.0;
}

int TPSRasterBand::GetMaskFlags()
{
    if (static_cast<TPSDataset *>(poDS)->m_poMaskBand)
        return GMF_PER_DATASET;
    return GDALRasterBand::GetMaskFlags();
}

GDALRasterBand *TPSRasterBand::GetMaskBand()
{
    if (TPSMaskBand *poMask = static_cast<TPSDataset *>(poDS)->m_poMaskBand.get())
        return poMask;
    return GDALRasterBand::GetMaskBand();
}

int TPSRasterBand::GetOverviewCount()
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    return poTPSDS->m_poParent ? 0 : static_cast<int>(poTPSDS->m_apoOverviews.size());
}

GDALRasterBand *TPSRasterBand::GetOverview(int iOverview)
{
    if (iOverview < 0 || iOverview >= GetOverviewCount())
        return nullptr;
    return static_cast<TPSDataset *>(poDS)->m_apoOverviews[iOverview]->GetRasterBand(nBand);
}

CPLErr TPSRasterBand::IReadBlock(int nBlockXOff, int nBlockYOff, void *pImage)
{
    return static_cast<TPSDataset *>(poDS)->ReadBlockAllBands(this, nBlockXOff, nBlockYOff, pImage);
}

CPLErr TPSRasterBand::IRasterIO(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize,
                                void *pData, int nBufXSize, int nBufYSize, GDALDataType eBufType,
                                GSpacing nPixelSpace, GSpacing nLineSpace,
                                GDALRasterIOExtraArg *psExtraArg)
{
    auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    if (eRWFlag == GF_Write)
    {
        CPLError(CE_Failure, CPLE_NoWriteAccess, "%s: the TPS driver is read-only",
                 poTPSDS->m_oConfig.osName.c_str());
        return CE_Failure;
    }
    if (!TPSDataset::IsFastPath(eRWFlag, nXOff, nYOff, nXSize, nYSize, nBufXSize, nBufYSize,
                                eBufType, psExtraArg))
        return GDALRasterBand::IRasterIO(eRWFlag, nXOff, nYOff, nXSize, nYSize, pData, nBufXSize,
                                         nBufYSize, eBufType, nPixelSpace, nLineSpace, psExtraArg);
    std::vector<tps_output> aoOutputs(1);
    const TPSBandConfig &oBand = poTPSDS->m_oConfig.aoBands[nBand - 1];
    aoOutputs[0].band = oBand.nModelBand;
    aoOutputs[0].quantity = ToEngineQuantity(oBand.eQuantity);
    aoOutputs[0].data = pData;
    aoOutputs[0].type = eBufType == GDT_Float32 ? TPS_FLOAT32 : TPS_FLOAT64;
    aoOutputs[0].pixel_stride = static_cast<ptrdiff_t>(nPixelSpace);
    aoOutputs[0].line_stride = static_cast<ptrdiff_t>(nLineSpace);
    return poTPSDS->EvaluateWindow(nXOff, nYOff, nXSize, nYSize, aoOutputs, eBufType, psExtraArg);
}

/************************************************************************/
/*                             TPSMaskBand                              */
/************************************************************************/

TPSMaskBand::TPSMaskBand(TPSDataset *poDSIn)
{
    poDS = poDSIn;
    nBand = 0;
    eAccess = GA_ReadOnly;
    eDataType = GDT_Byte;
    nRasterXSize = poDSIn->nRasterXSize;
    nRasterYSize = poDSIn->nRasterYSize;
    nBlockXSize = std::min(poDSIn->m_oConfig.nBlockXSize, nRasterXSize);
    nBlockYSize = std::min(poDSIn->m_oConfig.nBlockYSize, nRasterYSize);
}

int TPSMaskBand::GetOverviewCount()
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    return poTPSDS->m_poParent ? 0 : static_cast<int>(poTPSDS->m_apoOverviews.size());
}

GDALRasterBand *TPSMaskBand::GetOverview(int iOverview)
{
    if (iOverview < 0 || iOverview >= GetOverviewCount())
        return nullptr;
    return static_cast<TPSDataset *>(poDS)->m_apoOverviews[iOverview]->m_poMaskBand.get();
}

CPLErr TPSMaskBand::IReadBlock(int nBlockXOff, int nBlockYOff, void *pImage)
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    const int nXOff = nBlockXOff * nBlockXSize;
    const int nYOff = nBlockYOff * nBlockYSize;
    const int nXValid = std::min(nBlockXSize, nRasterXSize - nXOff);
    const int nYValid = std::min(nBlockYSize, nRasterYSize - nYOff);
    tps_grid sGrid;
    tps_grid_from_geotransform(&sGrid, poTPSDS->m_adfGeoTransform, static_cast<size_t>(nXOff),
                               static_cast<size_t>(nYOff), static_cast<size_t>(nXValid),
                               static_cast<size_t>(nYValid));
    std::vector<unsigned char> abyValid(static_cast<size_t>(nXValid) * nYValid);
    poTPSDS->m_poMask->Compute(sGrid, abyValid.data(),
                               poTPSDS->m_poParent ? poTPSDS->m_poParent->m_sEvalOptions.num_threads
                                                   : poTPSDS->m_sEvalOptions.num_threads);
    // Beyond the raster (a partial last block): zeros, as in the bands.
    GByte *pabyImage = static_cast<GByte *>(pImage);
    memset(pabyImage, 0, static_cast<size_t>(nBlockXSize) * nBlockYSize);
    for (int j = 0; j < nYValid; j++)
        for (int i = 0; i < nXValid; i++)
            pabyImage[static_cast<size_t>(j) * nBlockXSize + i] =
                abyValid[static_cast<size_t>(j) * nXValid + i] ? 255 : 0;
    return CE_None;
}
