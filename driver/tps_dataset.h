/*
 * tps_dataset.h: the raster a solved thin plate spline model describes.
 * Its bands are tps_band.h's; its methods are written in tps_dataset.cpp
 * (open, overviews, metadata, dataset reads), tps_solve.cpp (the model)
 * and tps_evaluate_window.cpp (the evaluation of a window).
 *
 * TPSDataset holds a shared, immutable model (see tps_model_cache.h) and
 * its own tps_context: a GDAL data set is used by one thread at a time,
 * and threads that read in parallel open their own handles, which then
 * share the model but not the context.
 */
#ifndef TPS_DATASET_H
#define TPS_DATASET_H

#include "tps.h"
#include "tps_config.h"
#include "tps_covariates.h"
#include "tps_mask.h"
#include "tps_model_cache.h"

#include "gdal_priv.h"
#include "gdal_version.h"
#include "ogr_spatialref.h"

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

/* The band map argument of GDALDataset::IRasterIO is BANDMAP_TYPE in
 * newer GDALs (int * unless GDAL_BANDMAP_TYPE_CONST_SAFE), int * in 3.6. */
#ifdef BANDMAP_TYPE
#define TPS_BANDMAP_TYPE BANDMAP_TYPE
#else
#define TPS_BANDMAP_TYPE int *
#endif

class TPSRasterBand;
class TPSMaskBand;

class TPSDataset final : public GDALDataset
{
    friend class TPSRasterBand;
    friend class TPSMaskBand;

  public:
    TPSDataset();
    ~TPSDataset() override;

    /* Loads the points (or finds the cached model), solves, sets up the
     * grid and the bands. On failure: one CE_Failure, nullptr. */
    static std::unique_ptr<TPSDataset> Open(TPSConfig &&oConfig);

#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 12, 0)
    CPLErr GetGeoTransform(GDALGeoTransform &oGT) const override;
#else
    CPLErr GetGeoTransform(double *padfGT) override;
#endif
    const OGRSpatialReference *GetSpatialRef() const override;
    char **GetFileList() override;
    /* DEVICE_UPLOADS and PIXELS_EVALUATED in the TPS domain change as
     * reads happen. */
    char **GetMetadata(const char *pszDomain = "") override;
    const char *GetMetadataItem(const char *pszName, const char *pszDomain = "") override;

  protected:
    CPLErr IRasterIO(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize, void *pData,
                     int nBufXSize, int nBufYSize, GDALDataType eBufType, int nBandCount,
                     TPS_BANDMAP_TYPE panBandMap, GSpacing nPixelSpace, GSpacing nLineSpace,
                     GSpacing nBandSpace, GDALRasterIOExtraArg *psExtraArg) override;

  private:
    /* The domain of the data set's and bands' own metadata. */
    static constexpr const char *MD_DOMAIN = "TPS";

    struct ContextDeleter
    {
        void operator()(tps_context *psCtx) const
        {
            tps_context_destroy(psCtx);
        }
    };

    TPSConfig m_oConfig{};
    std::shared_ptr<TPSSharedModel> m_poModel{};
    std::unique_ptr<tps_context, ContextDeleter> m_poContext{};
    tps_eval_options m_sEvalOptions{};
    double m_adfGeoTransform[6] = {0, 1, 0, 0, 0, 1};
    size_t m_nMemoryBudget = 0; /* TPS_MAX_MEMORY (tps_memory.h); 0: no limit */
    bool m_bDeviceAuto = true; /* DEVICE=AUTO: a failing GPU falls back to the CPU */

    /* Virtual overviews. An overview level is a TPSDataset of its own (so
     * that GDAL's dataset-level overview reads find it through the band's
     * GetDataset()) with a coarser geotransform over the same extent; it
     * has no context, options or counter of its own: it evaluates with
     * its parent's (Root()). Declared after the context: destroyed first. */
    TPSDataset *m_poParent = nullptr;
    std::vector<std::unique_ptr<TPSDataset>> m_apoOverviews{};
    /* Pixels evaluated through this handle, its overviews included (root only). */
    uint64_t m_nPixelsEvaluated = 0;
    /* What PRECISION=MIXED (or AUTO) did on the GPU, summed over the
     * handle's evaluations (root only; tps_eval_stats, the MIXED_*
     * metadata): blocks, of them recomputed in DOUBLE, failed self-checks,
     * and the largest error bound delivered, relative to the band's range. */
    uint64_t m_nMixedBlocks = 0, m_nMixedFallbackBlocks = 0, m_nMixedCheckFailures = 0;
    double m_dfMixedMaxErrorEstimate = 0;

    /* <MaxDistance> / <ConvexHull>: the geometry (shared with the
     * overviews) and this level's mask band; both null without masks. */
    std::shared_ptr<const TPSMask> m_poMask{};
    std::unique_ptr<TPSMaskBand> m_poMaskBand{};
    /* <Covariate>: the rasters, resampled onto each level's grid as its
     * windows are evaluated (root only; the levels use Root()'s). A NoData
     * covariate pixel is a NoData output pixel. */
    std::shared_ptr<TPSCovariates> m_poCovariates{};
    /* The bands' NoData: <NoDataValue>, else NaN when a mask or a
     * covariate can leave pixels without a value. */
    bool HasNoData() const
    {
        return m_oConfig.bHasNoData || m_poMask != nullptr || !m_oConfig.aoCovariates.empty();
    }
    double NoDataValue() const
    {
        return m_oConfig.bHasNoData ? m_oConfig.dfNoData
                                    : std::numeric_limits<double>::quiet_NaN();
    }

    TPSDataset &Root()
    {
        return m_poParent ? *m_poParent : *this;
    }
    /* Overview levels of factor 2, 4, 8, ... while the larger side stays
     * >= TPS_OVERVIEW_MIN_SIDE pixels. */
    void CreateOverviews();

    static void LogCallback(void *pUserData, tps_log_level eLevel, const char *pszMessage);

    bool ReportEngineError(const char *pszWhat) const;
    /* The model from <name>.tps.model when it is valid for this data set,
     * else Solve() (and the model file written, with MODEL_CACHE=YES). */
    std::shared_ptr<TPSSharedModel> LoadOrSolve();
    std::shared_ptr<TPSSharedModel> Solve();
    /* m_poMask and m_poMaskBand from the model's points; false after one
     * CE_Failure. */
    bool BuildMask();
    /* m_poCovariates for the grid, which each raster must cover; false
     * after one CE_Failure. */
    bool OpenCovariates();
    /* The standard error's factorisations (made on first use, kept with
     * the model) charged to TPS_MAX_MEMORY now; false after one CE_Failure. */
    bool ChargeStandardErrors();
    void BuildMetadata(int nSolves);
    void RefreshDynamicMetadata(const char *pszDomain);
    /* Adds one evaluation's MIXED stats to the handle's (root) counters. */
    void AddMixedStats(const tps_eval_stats &sStats);

    /* The fast path: evaluates the window [nXOff, nXOff+nXSize) x
     * [nYOff, nYOff+nYSize) at full resolution for the bands listed, each
     * aoOutputs[i].data pointing at the window's first pixel, all of type
     * eBufType (Float32 or Float64). Splits big windows into row chunks
     * and reports progress through psExtraArg (may be null). */
    CPLErr EvaluateWindow(int nXOff, int nYOff, int nXSize, int nYSize,
                          std::vector<tps_output> &aoOutputs, GDALDataType eBufType,
                          GDALRasterIOExtraArg *psExtraArg);
    /* EvaluateWindow's engine call over the pixels [nX, nX+nXSize) x
     * [nY, nY+nYSize) of this level, the outputs at its first pixel; under
     * DEVICE=AUTO a failing GPU gives way to the CPU for good. */
    CPLErr EvaluateRect(int nX, int nY, int nXSize, int nYSize,
                        std::vector<tps_output> &aoOutputs);

    /* A block of every band at once (the distances are computed once);
     * pImage is the caller band's buffer, the other bands' blocks go
     * straight into the block cache. */
    CPLErr ReadBlockAllBands(TPSRasterBand *poCaller, int nBlockXOff, int nBlockYOff, void *pImage);

    static tps_device ToEngineDevice(TPSDeviceRequest eDevice);

    /* Where band nBand (1-based) of a read goes: pData, of eType (Float32
     * or Float64), with these strides. */
    tps_output BandOutput(int nBand, void *pData, GDALDataType eType, GSpacing nPixelSpace,
                          GSpacing nLineSpace) const;

    static bool IsFastPath(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize,
                           int nBufXSize, int nBufYSize, GDALDataType eBufType,
                           const GDALRasterIOExtraArg *psExtraArg);
};

#endif /* TPS_DATASET_H */
