/*
 * tps_solve.cpp: where a TPSDataset's model comes from: the model file kept
 * next to the .tps when it is valid, else the points loaded
 * (tps_points.h) and solved by the engine, within TPS_MAX_SOLVES and the
 * process's memory budget, with progress in debug lines.
 */
#include "tps_dataset.h"

#include "tps_covariates.h"
#include "tps_errors.h"
#include "tps_memory.h"
#include "tps_model_file.h"
#include "tps_points.h"

#include "cpl_conv.h"
#include "cpl_string.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <tuple>

namespace
{

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

} // namespace

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

    // Covariates: a field's values came with the points; a raster's are
    // sampled at them (in the output CRS, after any reprojection).
    const size_t nCov = m_oConfig.aoCovariates.size();
    const size_t nPoints = oPoints.adfX.size();
    std::vector<std::vector<double>> aadfCov = std::move(oPoints.aadfCovariates);
    aadfCov.resize(nCov);
    std::vector<const double *> apdfCov(nCov);
    std::vector<std::string> aosCovNames(nCov);
    std::vector<const char *> apszCovNames(nCov);
    if (!oCharge.Resize(oCharge.Bytes() + sizeof(double) * nPoints * nCov, m_nMemoryBudget))
    {
        CPLError(CE_Failure, CPLE_OutOfMemory,
                 "%s: the covariates of %llu points go beyond TPS_MAX_MEMORY (%llu bytes): "
                 "raise it with --config TPS_MAX_MEMORY <bytes>",
                 m_oConfig.osName.c_str(), static_cast<unsigned long long>(nPoints),
                 static_cast<unsigned long long>(m_nMemoryBudget));
        return nullptr;
    }
    std::unique_ptr<TPSCovariates> poRasters;
    for (size_t k = 0; k < nCov; k++)
    {
        const TPSCovariateConfig &oCov = m_oConfig.aoCovariates[k];
        aosCovNames[k] = oCov.Name();
        if (!oCov.osField.empty())
            continue;
        std::string osError;
        if (!poRasters)
        {
            poRasters = TPSCovariates::Open(
                m_oConfig, oPoints.bHasOutputSRS ? &oPoints.oOutputSRS : nullptr, &osError);
            if (!poRasters)
            {
                CPLError(CE_Failure, CPLE_OpenFailed, "%s",
                         TPSSanitize(m_oConfig.osName + ": " + osError).c_str());
                return nullptr;
            }
        }
        aadfCov[k].assign(nPoints, 0.0);
        size_t nOutside = 0;
        if (!poRasters->Sample(k, nPoints, oPoints.adfX.data(), oPoints.adfY.data(),
                               aadfCov[k].data(), &nOutside, &osError))
        {
            // The point by its place in the source; its coordinates are data.
            const std::string osWhere = nOutside < nPoints
                                            ? std::string(CPLSPrintf(
                                                  "point %llu of the %llu read ",
                                                  static_cast<unsigned long long>(nOutside + 1),
                                                  static_cast<unsigned long long>(nPoints)))
                                            : std::string("a point ");
            CPLError(CE_Failure, CPLE_AppDefined, "%s",
                     TPSSanitize(m_oConfig.osName + ": <Covariate> without <Field>: " + osWhere +
                                 osError + " (its values at the points are sampled there)" +
                                 (nOutside < nPoints
                                      ? TPSSourceText(CPLSPrintf("%.17g %.17g in the output CRS",
                                                                 oPoints.adfX[nOutside],
                                                                 oPoints.adfY[nOutside]),
                                                      "; at ")
                                      : std::string()))
                         .c_str());
            return nullptr;
        }
    }
    for (size_t k = 0; k < nCov; k++)
    {
        apdfCov[k] = aadfCov[k].data();
        apszCovNames[k] = aosCovNames[k].c_str();
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
    const size_t nCopies = sizeof(double) * nPoints * (2 * nModelBands + 8 + 2 * nCov);
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
    // Neither given: 0 and 0, the defaults, and a LOCAL GCV sizes its
    // patches from its lambda.
    sFitOptions.patch_points =
        m_oConfig.bPatchSizeGiven ? static_cast<size_t>(m_oConfig.nPatchPoints) : 0;
    sFitOptions.overlap = m_oConfig.bPatchSizeGiven ? m_oConfig.dfOverlap : 0.0;
    sFitOptions.smoothing_gcv = anSmoothingGCV.data();
    sFitOptions.weights = oPoints.adfWeights.empty() ? nullptr : oPoints.adfWeights.data();
    sFitOptions.cross_validation = m_oConfig.bCrossValidation ? 1 : 0;
    sFitOptions.solver = m_oConfig.eSolver == TPSSolverRequest::DIRECT      ? TPS_SOLVER_DIRECT
                         : m_oConfig.eSolver == TPSSolverRequest::ITERATIVE ? TPS_SOLVER_ITERATIVE
                                                                             : TPS_SOLVER_AUTO;
    sFitOptions.solver_tolerance = m_oConfig.dfSolverTolerance;
    sFitOptions.n_covariates = nCov;
    sFitOptions.covariates = nCov ? apdfCov.data() : nullptr;
    sFitOptions.covariate_names = nCov ? apszCovNames.data() : nullptr;
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
