/*
 * tps_evaluate_window.cpp: the read path's end: a window of some bands
 * evaluated by the engine straight into the caller's buffers. Each step is
 * a function of its own: the chunk sizing (rows per engine call), the
 * mask's box (only the kept pixels' rectangle is evaluated), the engine
 * call with the GPU falling back to the CPU under DEVICE=AUTO, NoData where
 * masked, Float32 rounding, progress. Chunking and boxes never change a
 * byte: a pixel's value depends only on its indices (tps.h).
 */
#include "tps_dataset.h"

#include "tps_covariate_stencil.h"
#include "tps_errors.h"

#include "cpl_conv.h"
#include "cpl_string.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace
{

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
/* With covariates, a chunk's covariate planes (and for derivative bands
 * their padded read and five derivative planes each) stay within this many
 * doubles (256 MiB), whatever the number of covariates. */
constexpr double CHUNK_MAX_COVARIATE_DOUBLES = 33554432.0;

/* With a progress function, a window is evaluated in chunks of about this
 * many point-pixel pairs (a fraction of a second on a 2-core machine; the
 * GPU's ~1e12 pairs/s get larger ones), and progress is reported after
 * each. A work size, not a time: how often the bar moves per row of work is
 * the same on any machine, and the first report comes after one chunk, long
 * before the end of a big read. TPS_PROGRESS_CHUNK_PAIRS overrides both. */
constexpr double PROGRESS_CHUNK_PAIRS = 2.5e8;
constexpr double PROGRESS_CHUNK_PAIRS_GPU = 1e11;

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

/* A rectangle of raster pixels: columns [nX, nX + nXSize), rows [nY, nY + nYSize). */
struct PixelRect
{
    int nX = 0, nY = 0, nXSize = 0, nYSize = 0;

    bool Empty() const
    {
        return nXSize <= 0 || nYSize <= 0;
    }
};

/* Rows per engine call for a window nXSize wide and nYSize high, a pixel
 * costing dfPairsPerPixel point-pixel pairs (the engine's own estimate,
 * tps_model_info.pairs_per_pixel): at most CHUNK_MAX_* pixels and pairs; with a progress function, chunks of
 * dfProgressPairs pairs (> 0; whole rows, at least one), so that the bar
 * moves after each by the same steps on any machine. */
int ChunkRows(int nXSize, int nYSize, double dfPairsPerPixel, bool bGPU, bool bMasked,
              double dfProgressPairs)
{
    const double dfMaxPixels =
        bMasked ? (bGPU ? CHUNK_MAX_PIXELS_MASKED_GPU : CHUNK_MAX_PIXELS_MASKED)
                : (bGPU ? CHUNK_MAX_PIXELS_GPU : CHUNK_MAX_PIXELS);
    const double dfMaxPairs = bGPU ? CHUNK_MAX_PAIRS_GPU : CHUNK_MAX_PAIRS;
    const double dfRows =
        std::min(dfMaxPixels / nXSize, dfMaxPairs / (dfPairsPerPixel * nXSize));
    const int nMaxRows = static_cast<int>(std::max(1.0, std::min<double>(nYSize, dfRows)));
    if (dfProgressPairs <= 0)
        return nMaxRows;
    const double dfProgressRows = std::floor(dfProgressPairs / (dfPairsPerPixel * nXSize));
    return static_cast<int>(std::max(1.0, std::min<double>(nMaxRows, dfProgressRows)));
}

/* The smallest rectangle of oChunk that holds every pixel pabyValid (one
 * byte per pixel of oChunk, row by row) keeps; empty when none is kept. */
PixelRect KeptRect(const PixelRect &oChunk, const unsigned char *pabyValid)
{
    int nMinX = oChunk.nXSize, nMaxX = -1, nMinY = oChunk.nYSize, nMaxY = -1;
    for (int j = 0; j < oChunk.nYSize; j++)
    {
        const unsigned char *pabyRow = pabyValid + static_cast<size_t>(j) * oChunk.nXSize;
        const unsigned char *pabyEnd = pabyRow + oChunk.nXSize;
        const unsigned char *pabyFirst = std::find(pabyRow, pabyEnd, 1);
        if (pabyFirst == pabyEnd)
            continue;
        const unsigned char *pabyLast =
            std::find(std::make_reverse_iterator(pabyEnd), std::make_reverse_iterator(pabyFirst),
                      1)
                .base() -
            1;
        nMinX = std::min(nMinX, static_cast<int>(pabyFirst - pabyRow));
        nMaxX = std::max(nMaxX, static_cast<int>(pabyLast - pabyRow));
        nMinY = std::min(nMinY, j);
        nMaxY = j;
    }
    if (nMaxY < 0)
        return PixelRect{};
    return PixelRect{oChunk.nX + nMinX, oChunk.nY + nMinY, nMaxX - nMinX + 1, nMaxY - nMinY + 1};
}

/* The outputs moved from the window's first pixel (nXOff, nYOff) to the
 * rectangle's. */
std::vector<tps_output> OutputsAt(const std::vector<tps_output> &aoOutputs, int nXOff, int nYOff,
                                  const PixelRect &oRect)
{
    std::vector<tps_output> aoAt(aoOutputs);
    for (tps_output &oOut : aoAt)
        oOut.data = static_cast<GByte *>(oOut.data) +
                    static_cast<ptrdiff_t>(oRect.nY - nYOff) * oOut.line_stride +
                    static_cast<ptrdiff_t>(oRect.nX - nXOff) * oOut.pixel_stride;
    return aoAt;
}

/* dfNoData into every pixel of the outputs (at oChunk's first pixel) that
 * pabyValid does not keep. */
void WriteNoData(const std::vector<tps_output> &aoOutputs, const PixelRect &oChunk,
                 const unsigned char *pabyValid, double dfNoData)
{
    const float fNoData = static_cast<float>(dfNoData);
    for (const tps_output &oOut : aoOutputs)
    {
        for (int j = 0; j < oChunk.nYSize; j++)
        {
            GByte *pabyLine = static_cast<GByte *>(oOut.data) + j * oOut.line_stride;
            const unsigned char *pabyRowValid = pabyValid + static_cast<size_t>(j) * oChunk.nXSize;
            for (int k = 0; k < oChunk.nXSize; k++)
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

/* A Float32 raster read into a Float64 buffer gives the Float32 values, as
 * it would through the block cache: the Float64 outputs (at oChunk's first
 * pixel) rounded. */
void RoundToFloat32(const std::vector<tps_output> &aoOutputs, const PixelRect &oChunk)
{
    for (const tps_output &oOut : aoOutputs)
    {
        for (int j = 0; j < oChunk.nYSize; j++)
        {
            GByte *pabyLine = static_cast<GByte *>(oOut.data) + j * oOut.line_stride;
            for (int k = 0; k < oChunk.nXSize; k++)
            {
                double *pdf = reinterpret_cast<double *>(pabyLine + k * oOut.pixel_stride);
                *pdf = static_cast<double>(static_cast<float>(*pdf));
            }
        }
    }
}

/* NaN outputs (no covariate there, or no derivative of it) to dfNoData,
 * in each output's type. */
void ReplaceNaN(const std::vector<tps_output> &aoOutputs, int nXSize, int nYSize, double dfNoData)
{
    const float fNoData = static_cast<float>(dfNoData);
    for (const tps_output &oOut : aoOutputs)
        for (int j = 0; j < nYSize; j++)
        {
            GByte *pabyLine = static_cast<GByte *>(oOut.data) +
                              static_cast<ptrdiff_t>(j) * oOut.line_stride;
            for (int i = 0; i < nXSize; i++)
            {
                GByte *pabyPixel = pabyLine + static_cast<ptrdiff_t>(i) * oOut.pixel_stride;
                if (oOut.type == TPS_FLOAT32)
                {
                    float f;
                    memcpy(&f, pabyPixel, sizeof f);
                    if (std::isnan(f))
                        memcpy(pabyPixel, &fNoData, sizeof fNoData);
                }
                else
                {
                    double d;
                    memcpy(&d, pabyPixel, sizeof d);
                    if (std::isnan(d))
                        memcpy(pabyPixel, &dfNoData, sizeof dfNoData);
                }
            }
        }
}

} // namespace


tps_output TPSDataset::BandOutput(int nBand, void *pData, GDALDataType eType,
                                  GSpacing nPixelSpace, GSpacing nLineSpace) const
{
    const TPSBandConfig &oBand = m_oConfig.aoBands[nBand - 1];
    tps_output sOut{};
    sOut.band = oBand.nModelBand;
    sOut.quantity = oBand.eQuantity;
    sOut.data = pData;
    sOut.type = eType == GDT_Float32 ? TPS_FLOAT32 : TPS_FLOAT64;
    sOut.pixel_stride = static_cast<ptrdiff_t>(nPixelSpace);
    sOut.line_stride = static_cast<ptrdiff_t>(nLineSpace);
    return sOut;
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

CPLErr TPSDataset::EvaluateRect(int nX, int nY, int nXSize, int nYSize,
                                std::vector<tps_output> &aoOutputs)
{
    // An overview evaluates with the full-resolution data set's context
    // and options, over its own geotransform.
    TPSDataset &oRoot = Root();
    tps_context *psCtx = oRoot.m_poContext.get();
    tps_eval_options &sEvalOptions = oRoot.m_sEvalOptions;
    tps_grid sGrid;
    tps_grid_from_geotransform(&sGrid, m_adfGeoTransform, static_cast<size_t>(nX),
                               static_cast<size_t>(nY), static_cast<size_t>(nXSize),
                               static_cast<size_t>(nYSize));
    tps_eval_stats sStats{};
    tps_eval_options sOptions = sEvalOptions;
    sOptions.stats = &sStats;
    // The covariates at this rectangle's pixel centres, resampled from
    // their rasters now: only what is read is read.
    std::vector<double> adfCov, adfCovDeriv;
    std::vector<tps_plane> aoPlanes, aoDerivPlanes;
    TPSCovariates *poCov = oRoot.m_poCovariates.get();
    if (poCov)
    {
        std::string osError;
        if (!poCov->Read(m_adfGeoTransform, nX, nY, nXSize, nYSize, &adfCov, &osError))
        {
            CPLError(CE_Failure, CPLE_AppDefined, "%s",
                     TPSSanitize(m_oConfig.osName + ": " + osError).c_str());
            return CE_Failure;
        }
        const size_t nPixels = static_cast<size_t>(nXSize) * static_cast<size_t>(nYSize);
        for (size_t k = 0; k < poCov->Count(); k++)
            aoPlanes.push_back({adfCov.data() + k * nPixels, TPS_FLOAT64, sizeof(double),
                                static_cast<ptrdiff_t>(sizeof(double)) * nXSize});
        sOptions.covariates = aoPlanes.data();
        // Derivative bands: the covariates' derivatives at the same pixels,
        // differences on this grid's lattice (tps_covariate_stencil.h).
        if (std::any_of(aoOutputs.begin(), aoOutputs.end(), [](const tps_output &o)
                        { return TPSCovariatePlanesRead(tps_quantity_info(o.quantity)->needs); }))
        {
            if (!poCov->ReadDerivatives(m_adfGeoTransform, nX, nY, nXSize, nYSize, &adfCovDeriv,
                                        &osError))
            {
                CPLError(CE_Failure, CPLE_AppDefined, "%s",
                         TPSSanitize(m_oConfig.osName + ": " + osError).c_str());
                return CE_Failure;
            }
            for (size_t q = 0; q < poCov->Count() * TPS_COV_DERIVATIVES; q++)
                aoDerivPlanes.push_back({adfCovDeriv.data() + q * nPixels, TPS_FLOAT64,
                                         sizeof(double),
                                         static_cast<ptrdiff_t>(sizeof(double)) * nXSize});
            sOptions.covariate_derivatives = aoDerivPlanes.data();
        }
    }
    tps_status eStatus = tps_evaluate_grid(psCtx, m_poModel->psModel, &sGrid, aoOutputs.size(),
                                           aoOutputs.data(), &sOptions);
    if (eStatus != TPS_OK && oRoot.m_bDeviceAuto && sEvalOptions.device == TPS_DEVICE_GPU)
    {
        // DEVICE=AUTO chose the GPU and the GPU failed (out of memory,
        // gone): this handle goes on on the CPU, and says so.
        CPLDebug("TPS", "%s: GPU evaluation failed, going on on the CPU: %s",
                 m_oConfig.osName.c_str(), tps_context_errmsg(psCtx));
        sEvalOptions.device = TPS_DEVICE_CPU;
        sOptions.device = TPS_DEVICE_CPU;
        oRoot.SetMetadataItem("DEVICE", "CPU", MD_DOMAIN);
        eStatus = tps_evaluate_grid(psCtx, m_poModel->psModel, &sGrid, aoOutputs.size(),
                                    aoOutputs.data(), &sOptions);
    }
    if (eStatus != TPS_OK)
    {
        oRoot.ReportEngineError("evaluation failed");
        return CE_Failure;
    }
    oRoot.m_nPixelsEvaluated += static_cast<uint64_t>(nXSize) * static_cast<uint64_t>(nYSize);
    oRoot.AddMixedStats(sStats);
    // A pixel without a covariate (or without its derivatives, for a
    // derivative band) is NaN: <NoDataValue> when there is one.
    if (poCov && m_oConfig.bHasNoData && !std::isnan(m_oConfig.dfNoData))
        ReplaceNaN(aoOutputs, nXSize, nYSize, m_oConfig.dfNoData);
    return CE_None;
}

CPLErr TPSDataset::EvaluateWindow(int nXOff, int nYOff, int nXSize, int nYSize,
                                  std::vector<tps_output> &aoOutputs, GDALDataType eBufType,
                                  GDALRasterIOExtraArg *psExtraArg)
{
    if (aoOutputs.empty() || nXSize <= 0 || nYSize <= 0)
        return CE_None;
    const tps_eval_options &sEvalOptions = Root().m_sEvalOptions;
    const bool bGPU = sEvalOptions.device == TPS_DEVICE_GPU;
    GDALProgressFunc pfnProgress = psExtraArg ? psExtraArg->pfnProgress : nullptr;
    void *pProgressData = psExtraArg ? psExtraArg->pProgressData : nullptr;
    const int nChunkRows =
        ChunkRows(nXSize, nYSize, m_poModel->sInfo.pairs_per_pixel, bGPU, m_poMask != nullptr,
                  pfnProgress ? GetProgressChunkPairs(m_oConfig.osName, bGPU) : 0.0);
    const bool bRoundToFloat32 = eBufType == GDT_Float64 && m_oConfig.eDataType == GDT_Float32;
    int nRows = nChunkRows;
    if (const TPSCovariates *poCov = Root().m_poCovariates.get())
    {
        // Per pixel: the pixel centres (2), and per covariate its value, or
        // with derivative bands its padded read, value and 5 derivatives.
        const bool bDerivatives =
            std::any_of(aoOutputs.begin(), aoOutputs.end(), [](const tps_output &o)
                        { return TPSCovariatePlanesRead(tps_quantity_info(o.quantity)->needs); });
        const double dfPerPixel =
            2.0 + static_cast<double>(poCov->Count()) * (bDerivatives ? 7.0 : 1.0);
        const double dfRows = std::floor(CHUNK_MAX_COVARIATE_DOUBLES / (dfPerPixel * nXSize));
        nRows = static_cast<int>(std::max(1.0, std::min<double>(nChunkRows, dfRows)));
    }

    std::vector<unsigned char> abyValid;
    for (int iRow = 0; iRow < nYSize; iRow += nRows)
    {
        const PixelRect oChunk{nXOff, nYOff + iRow, nXSize, std::min(nRows, nYSize - iRow)};
        const std::vector<tps_output> aoChunk = OutputsAt(aoOutputs, nXOff, nYOff, oChunk);
        // With a mask, only the smallest rectangle of the chunk that holds
        // every kept pixel is evaluated (nothing when none is kept); the
        // masked pixels become NoData.
        PixelRect oEval = oChunk;
        if (m_poMask)
        {
            tps_grid sChunkGrid;
            tps_grid_from_geotransform(&sChunkGrid, m_adfGeoTransform,
                                       static_cast<size_t>(oChunk.nX),
                                       static_cast<size_t>(oChunk.nY),
                                       static_cast<size_t>(oChunk.nXSize),
                                       static_cast<size_t>(oChunk.nYSize));
            abyValid.resize(static_cast<size_t>(oChunk.nXSize) * oChunk.nYSize);
            oEval = m_poMask->Compute(sChunkGrid, abyValid.data(), sEvalOptions.num_threads) == 0
                        ? PixelRect{}
                        : KeptRect(oChunk, abyValid.data());
        }
        if (!oEval.Empty())
        {
            std::vector<tps_output> aoEval = OutputsAt(aoOutputs, nXOff, nYOff, oEval);
            if (EvaluateRect(oEval.nX, oEval.nY, oEval.nXSize, oEval.nYSize, aoEval) != CE_None)
                return CE_Failure;
        }
        if (m_poMask)
            WriteNoData(aoChunk, oChunk, abyValid.data(), NoDataValue());
        if (bRoundToFloat32)
            RoundToFloat32(aoChunk, oChunk);
        if (pfnProgress && !pfnProgress(static_cast<double>(iRow + oChunk.nYSize) / nYSize, "",
                                        pProgressData))
        {
            CPLError(CE_Failure, CPLE_UserInterrupt, "User terminated");
            return CE_Failure;
        }
    }
    return CE_None;
}
