/*
 * tps_evaluate_window.cpp: the read path's end: a window of some bands
 * evaluated by the engine straight into the caller's buffers, in row
 * chunks (progress, interrupts), only where the mask keeps pixels, with
 * the GPU falling back to the CPU under DEVICE=AUTO, NoData where masked
 * and Float32 rounding for Float32 rasters read as Float64.
 */
#include "tps_dataset.h"

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

} // namespace

tps_quantity TPSDataset::ToEngineQuantity(TPSQuantity eQuantity)
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
