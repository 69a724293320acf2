/*
 * tps_dataset.cpp: TPSDataset: the raster a solved model describes (its
 * model, grid, overviews, mask and metadata) and its dataset-level reads.
 *
 * Pixels are computed, never stored. Two read paths:
 *  - RasterIO at full resolution into a Float32/Float64 buffer (what
 *    gdal_translate, ReadAsArray and most clients do) evaluates straight
 *    into the caller's buffer, all requested bands in one engine call, so
 *    the distances to the points are computed once per pixel;
 *  - anything else (resampled reads, integer buffers) goes through GDAL's
 *    block cache, and a block read fills that block of every band at once
 *    for the same reason.
 * Both end in EvaluateWindow (tps_evaluate_window.cpp). Downsampled reads
 * go to the virtual overviews (factor 2, 4, 8, ...): the spline evaluated
 * directly at the coarser pixel centres, by the same two paths, so that a
 * zoomed-out read costs about the pixels it returns. The model comes from
 * tps_solve.cpp, the bands are tps_band.cpp's.
 */
#include "tps_dataset.h"

#include "tps_band.h"
#include "tps_errors.h"
#include "tps_grid.h"
#include "tps_memory.h"
#include "tps_model_file.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "cpl_vsi.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstring>

namespace
{

const char *SizeString(size_t n)
{
    return CPLSPrintf("%llu", static_cast<unsigned long long>(n));
}

} // namespace

tps_device TPSDataset::ToEngineDevice(TPSDeviceRequest eDevice)
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
    for (int nFactor = 2;; nFactor *= 2)
    {
        double adfOvGT[6];
        int nOvXSize = 0, nOvYSize = 0;
        if (!TPSOverviewGrid(m_adfGeoTransform, nRasterXSize, nRasterYSize, nFactor, adfOvGT,
                             &nOvXSize, &nOvYSize))
            break;
        auto poOvr = std::make_unique<TPSDataset>();
        poOvr->m_poParent = this;
        poOvr->m_oConfig = m_oConfig;
        poOvr->m_poModel = m_poModel;
        poOvr->nRasterXSize = nOvXSize;
        poOvr->nRasterYSize = nOvYSize;
        poOvr->eAccess = GA_ReadOnly;
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
    poDS->m_sEvalOptions.precision = c.ePrecision;
    poDS->m_sEvalOptions.tolerance = c.dfTolerance;
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
        sInfo.pairs_per_pixel * poDS->nRasterXSize * static_cast<double>(poDS->nRasterYSize);
    poDS->m_bDeviceAuto = c.eDevice == TPSDeviceRequest::AUTO;
    // A local model with covariates evaluates on the CPU only (the engine's
    // GPU path declines it: docs/format.md).
    const bool bCPUOnly = sInfo.mode == TPS_MODE_LOCAL && sInfo.n_covariates > 0;
    if (bCPUOnly && c.eDevice == TPSDeviceRequest::GPU)
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "%s: DEVICE=GPU: a local model with covariates is evaluated on the CPU only; "
                 "use DEVICE=AUTO or CPU, or MODE=GLOBAL",
                 pszName);
        return nullptr;
    }
    poDS->m_sEvalOptions.device =
        bCPUOnly ? TPS_DEVICE_CPU : tps_device_choose(poDS->m_sEvalOptions.device, dfPairs);
    if (poDS->m_sEvalOptions.device == TPS_DEVICE_GPU)
        CPLDebug("TPS", "%s: evaluating on the GPU: %s%s", pszName, tps_gpu_description(),
                 sInfo.mode == TPS_MODE_LOCAL ? " (a local model: FP64 whatever PRECISION)" : "");
    else if (poDS->m_bDeviceAuto &&
             tps_device_check(poDS->m_poContext.get(), TPS_DEVICE_GPU) != TPS_OK)
        CPLDebug("TPS", "%s: evaluating on the CPU: %s", pszName,
                 tps_context_errmsg(poDS->m_poContext.get()));
    else
        CPLDebug("TPS", "%s: evaluating on the CPU (%s)", pszName,
                 bCPUOnly               ? "a local model with covariates"
                 : poDS->m_bDeviceAuto ? "too little work for the GPU to win"
                                       : "DEVICE=CPU");

    if (!c.aoCovariates.empty() && !poDS->OpenCovariates())
        return nullptr;
    if (!poDS->ChargeStandardErrors())
        return nullptr;
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

bool TPSDataset::OpenCovariates()
{
    std::string osError;
    std::unique_ptr<TPSCovariates> poCov = TPSCovariates::Open(
        m_oConfig, m_poModel->bHasSRS ? &m_poModel->oSRS : nullptr, &osError);
    if (!poCov || !poCov->Covers(m_adfGeoTransform, nRasterXSize, nRasterYSize, &osError))
    {
        CPLError(CE_Failure, CPLE_AppDefined, "%s",
                 TPSSanitize(m_oConfig.osName + ": " + osError).c_str());
        return false;
    }
    m_poCovariates = std::move(poCov);
    return true;
}

bool TPSDataset::ChargeStandardErrors()
{
    // A band of standard errors makes its surface's factorisation (8 n^2
    // bytes, and 8 n^2 more for the CPU's tiles in low rank, which keep
    // [Q1^T; L^-1 Q2^T] with it: core/se_tile.h; a local model's patches
    // 8 sum n_p (n_p + covariates)) on its first read: the budget is asked
    // for now, before any work, and the model keeps it.
    std::vector<bool> abSE(m_oConfig.aoModelBands.size(), false);
    for (const TPSBandConfig &oBand : m_oConfig.aoBands)
        if (tps_quantity_info(oBand.eQuantity)->needs & TPS_NEEDS_VARIANCE)
            abSE[oBand.nModelBand] = true;
    const tps_model_info &sInfo = m_poModel->sInfo;
    double dfBytes = 0;
    for (size_t b = 0; b < abSE.size(); b++)
    {
        if (!abSE[b])
            continue;
        if (sInfo.mode == TPS_MODE_LOCAL)
        {
            // with covariates, each patch's projections of them too
            const double dfPatch = sInfo.pairs_per_pixel / 2; /* the mean patch's points */
            dfBytes += 8.0 * static_cast<double>(sInfo.n_patches) * dfPatch *
                       (dfPatch + static_cast<double>(sInfo.n_covariates));
        }
        else
        {
            const double n = static_cast<double>(m_poModel->asBandInfo[b].n_points);
            dfBytes += 16.0 * n * n;
        }
    }
    if (dfBytes == 0)
        return true;
    std::lock_guard<std::mutex> oLock(m_poModel->oSEMutex);
    const size_t nBytes = static_cast<size_t>(std::min(dfBytes, 1e19));
    if (nBytes <= m_poModel->nSEBytes)
        return true;
    if (!m_poModel->oCharge.Resize(m_poModel->oCharge.Bytes() + nBytes - m_poModel->nSEBytes,
                                   m_nMemoryBudget))
    {
        CPLError(CE_Failure, CPLE_OutOfMemory,
                 "%s: the standard error needs %llu bytes for its factorisations, beyond "
                 "TPS_MAX_MEMORY (%llu bytes for all the TPS data sets of this process, %llu "
                 "in use): raise it with --config TPS_MAX_MEMORY <bytes>",
                 m_oConfig.osName.c_str(), static_cast<unsigned long long>(nBytes),
                 static_cast<unsigned long long>(m_nMemoryBudget),
                 static_cast<unsigned long long>(TPSMemoryInUse()));
        return false;
    }
    m_poModel->nSEBytes = nBytes;
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

    // How the global model's bands were solved; ITERATIONS and
    // RELATIVE_RESIDUAL when any was iterative (DIRECT bands: 0 and NaN).
    const auto SolverName = [](tps_solver e)
    { return e == TPS_SOLVER_ITERATIVE ? "ITERATIVE" : "DIRECT"; };
    bool bAnyIterative = false;
    for (const tps_band_info &sBI : asBI)
        bAnyIterative = bAnyIterative || sBI.solver == TPS_SOLVER_ITERATIVE;
    SetMetadataItem("SOLVER",
                    PerBand([&](size_t b) { return std::string(SolverName(asBI[b].solver)); })
                        .c_str(),
                    MD_DOMAIN);
    if (bAnyIterative)
    {
        SetMetadataItem("ITERATIONS",
                        PerBand([&](size_t b)
                                { return std::string(CPLSPrintf("%d", asBI[b].iterations)); })
                            .c_str(),
                        MD_DOMAIN);
        SetMetadataItem("RELATIVE_RESIDUAL",
                        PerBand([&](size_t b) {
                            return std::string(CPLSPrintf("%.17g", asBI[b].relative_residual));
                        }).c_str(),
                        MD_DOMAIN);
    }

    SetMetadataItem("POINT_COUNT", SizeString(sInfo.n_points), MD_DOMAIN);
    SetMetadataItem("INPUT_POINTS", SizeString(sInfo.n_input), MD_DOMAIN);
    SetMetadataItem("SMOOTHING", osSmoothing.c_str(), MD_DOMAIN);
    if (!c.osWeightField.empty())
        SetMetadataItem("WEIGHT_FIELD", c.osWeightField.c_str(), MD_DOMAIN);
    if (!c.aoCovariates.empty())
    {
        std::string osNames;
        for (size_t k = 0; k < c.aoCovariates.size(); k++)
            osNames += (k ? "," : "") + c.aoCovariates[k].Name();
        SetMetadataItem("COVARIATES", osNames.c_str(), MD_DOMAIN);
        SetMetadataItem("COVARIATES_DROPPED_POINTS", SizeString(sInfo.n_dropped_covariate),
                        MD_DOMAIN);
    }
    SetMetadataItem("SOLVE_SECONDS", CPLSPrintf("%.6f", sInfo.solve_seconds), MD_DOMAIN);
    SetMetadataItem("SOLVE_DEVICE", tps_device_name(sInfo.solve_device), MD_DOMAIN);
    SetMetadataItem("MODE", sInfo.mode == TPS_MODE_LOCAL ? "LOCAL" : "GLOBAL", MD_DOMAIN);
    SetMetadataItem("PATCHES", SizeString(sInfo.n_patches), MD_DOMAIN);
    // The partition's settings (a LOCAL GCV's may be its own choice); a
    // model file of an older driver does not say.
    if (sInfo.mode == TPS_MODE_LOCAL && sInfo.patch_points > 0)
    {
        SetMetadataItem("PATCH_POINTS", SizeString(sInfo.patch_points), MD_DOMAIN);
        SetMetadataItem("OVERLAP", CPLSPrintf("%.17g", sInfo.overlap), MD_DOMAIN);
    }
    SetMetadataItem("FACTORISATIONS", SizeString(sInfo.n_factorisations), MD_DOMAIN);
    SetMetadataItem("MAX_ABS_RESIDUAL", CPLSPrintf("%.17g", dfMaxResidual), MD_DOMAIN);
    SetMetadataItem("DEVICE", tps_device_name(m_sEvalOptions.device), MD_DOMAIN);
    if (m_sEvalOptions.device == TPS_DEVICE_GPU)
    {
        SetMetadataItem("GPU", tps_gpu_description(), MD_DOMAIN);
        SetMetadataItem("PRECISION", TPSChoiceName(TPS_PRECISION_CHOICES, m_sEvalOptions.precision),
                        MD_DOMAIN);
        if (m_sEvalOptions.precision != TPS_PRECISION_DOUBLE)
            SetMetadataItem("TOLERANCE", CPLSPrintf("%g", m_sEvalOptions.tolerance), MD_DOMAIN);
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
        const tps_quantity_desc *psQuantity = tps_quantity_info(oBand.eQuantity);
        poBand->SetMetadataItem("QUANTITY", psQuantity->name, MD_DOMAIN);
        poBand->SetMetadataItem("QUANTITY_DESCRIPTION", psQuantity->description, MD_DOMAIN);
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
        poBand->SetMetadataItem("SOLVER", SolverName(sBand.solver), MD_DOMAIN);
        if (sBand.solver == TPS_SOLVER_ITERATIVE)
        {
            poBand->SetMetadataItem("ITERATIONS", CPLSPrintf("%d", sBand.iterations), MD_DOMAIN);
            poBand->SetMetadataItem("RELATIVE_RESIDUAL",
                                    CPLSPrintf("%.17g", sBand.relative_residual), MD_DOMAIN);
        }
        if (!c.aoCovariates.empty())
        {
            std::vector<double> adfCoef(c.aoCovariates.size(), 0.0);
            std::string osCoef;
            if (tps_model_get_covariate_coefficients(m_poContext.get(), m_poModel->psModel,
                                                     oBand.nModelBand,
                                                     adfCoef.data()) == TPS_OK)
                for (size_t k = 0; k < adfCoef.size(); k++)
                    osCoef += (k ? "," : "") + std::string(CPLSPrintf("%.17g", adfCoef[k]));
            poBand->SetMetadataItem("COVARIATE_COEFFICIENTS", osCoef.c_str(), MD_DOMAIN);
        }
        // The standard error's variances (fields' best.model), a global model's.
        if (std::isfinite(sBand.sigma2))
        {
            poBand->SetMetadataItem("SIGMA2", CPLSPrintf("%.17g", sBand.sigma2), MD_DOMAIN);
            poBand->SetMetadataItem("TAU2", CPLSPrintf("%.17g", sBand.tau2), MD_DOMAIN);
        }
        poBand->SetMetadataItem("POINT_COUNT", SizeString(sBand.n_points), MD_DOMAIN);
        poBand->SetMetadataItem("MISSING_VALUES", SizeString(sBand.n_missing), MD_DOMAIN);
        poBand->SetMetadataItem("MAX_ABS_RESIDUAL", CPLSPrintf("%.17g", sBand.max_abs_residual),
                                MD_DOMAIN);
    }
}

void TPSDataset::AddMixedStats(const tps_eval_stats &sStats)
{
    if (sStats.mixed_blocks == 0)
        return;
    if (sStats.fallback_blocks)
        CPLDebug("TPS", "%s: MIXED: %zu of %zu blocks of 32 x 16 pixels recomputed in DOUBLE",
                 m_oConfig.osName.c_str(), sStats.fallback_blocks, sStats.mixed_blocks);
    if (sStats.check_failures && m_nMixedCheckFailures == 0)
        CPLError(CE_Warning, CPLE_AppDefined,
                 "%s: MIXED: a block's self-check found an error above its bound (the GPU's "
                 "arithmetic is not what the bound assumes); such blocks are recomputed in "
                 "DOUBLE, and MIXED_CHECK_FAILURES counts them",
                 m_oConfig.osName.c_str());
    m_nMixedBlocks += sStats.mixed_blocks;
    m_nMixedFallbackBlocks += sStats.fallback_blocks;
    m_nMixedCheckFailures += sStats.check_failures;
    m_dfMixedMaxErrorEstimate = std::max(m_dfMixedMaxErrorEstimate, sStats.max_error_estimate);
}

void TPSDataset::RefreshDynamicMetadata(const char *pszDomain)
{
    if (pszDomain != nullptr && EQUAL(pszDomain, MD_DOMAIN))
    {
        tps_model_info sInfo;
        if (tps_model_get_info(nullptr, m_poModel->psModel, &sInfo) == TPS_OK)
            SetMetadataItem("DEVICE_UPLOADS", SizeString(sInfo.device_uploads), MD_DOMAIN);
        const TPSDataset &oRoot = Root();
        SetMetadataItem("PIXELS_EVALUATED",
                        CPLSPrintf("%llu", static_cast<unsigned long long>(oRoot.m_nPixelsEvaluated)),
                        MD_DOMAIN);
        if (oRoot.m_sEvalOptions.device == TPS_DEVICE_GPU &&
            oRoot.m_sEvalOptions.precision != TPS_PRECISION_DOUBLE)
        {
            SetMetadataItem("MIXED_BLOCKS",
                            CPLSPrintf("%llu", static_cast<unsigned long long>(oRoot.m_nMixedBlocks)),
                            MD_DOMAIN);
            SetMetadataItem(
                "MIXED_FALLBACK_BLOCKS",
                CPLSPrintf("%llu", static_cast<unsigned long long>(oRoot.m_nMixedFallbackBlocks)),
                MD_DOMAIN);
            SetMetadataItem(
                "MIXED_CHECK_FAILURES",
                CPLSPrintf("%llu", static_cast<unsigned long long>(oRoot.m_nMixedCheckFailures)),
                MD_DOMAIN);
            SetMetadataItem("MIXED_MAX_ERROR_ESTIMATE",
                            CPLSPrintf("%.3g", oRoot.m_dfMixedMaxErrorEstimate), MD_DOMAIN);
        }
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
    // So are the covariate rasters.
    if (m_poCovariates)
        for (const std::string &osFile : m_poCovariates->Files())
            if (CSLFindString(papszFiles, osFile.c_str()) < 0)
                papszFiles = CSLAddString(papszFiles, osFile.c_str());
    // So is the solved model kept next to the .tps file.
    const std::string osModelFile = TPSModelFilePath(m_oConfig);
    if (!osModelFile.empty() && VSIStatL(osModelFile.c_str(), &sStat) == 0 &&
        VSI_ISREG(sStat.st_mode))
        papszFiles = CSLAddString(papszFiles, osModelFile.c_str());
    return papszFiles;
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
        aoOutputs[i] = BandOutput(panBandMap[i], static_cast<GByte *>(pData) + i * nBandSpace,
                                  eBufType, nPixelSpace, nLineSpace);
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
        aoOutputs.push_back(BandOutput(iBand, pBlockData, eType, nDTSize,
                                       static_cast<GSpacing>(nBlockXSize) * nDTSize));
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
