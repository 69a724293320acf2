/*
 * tps_covariates.h: the covariate rasters of a TPS data set (<Covariate>,
 * COVARIATES; tps_config.h), each opened once (after TPS_ALLOWED_SOURCES,
 * tps_source_policy.h) and read by one rule, bilinear interpolation
 * between the raster's cell centres at a location given in the output
 * CRS (transformed through PROJ when the raster's CRS differs):
 *   - at the points, when no <Field> gives their values (Sample);
 *   - at the pixel centres of a window of an output grid, as the bands are
 *     read: only the part of the raster under the window is read (Read);
 *     for derivative bands, with a margin, the differences of those values
 *     on the grid's lattice (ReadDerivatives, tps_covariate_stencil.h).
 * Within half a cell of the raster's edge the edge cells' values are
 * used; a location outside the raster is outside; a NoData cell that a
 * location's interpolation needs (nonzero weight) makes its value NaN,
 * which the engine turns into a NaN output and the driver into NoData.
 */
#ifndef TPS_COVARIATES_H
#define TPS_COVARIATES_H

#include "tps_config.h"

#include "gdal_priv.h"
#include "ogr_spatialref.h"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

class TPSCovariates
{
  public:
    /* Opens every covariate raster of oConfig. poOutputSRS: the output
     * CRS (nullptr: unknown; the rasters are then taken to be in it). On
     * failure: nullptr, the reason in *posError (naming the covariate). */
    static std::unique_ptr<TPSCovariates> Open(const TPSConfig &oConfig,
                                               const OGRSpatialReference *poOutputSRS,
                                               std::string *posError);
    ~TPSCovariates();

    size_t Count() const
    {
        return m_aoRasters.size();
    }
    /* Covariate k at n locations of the output CRS into padfOut (NaN where
     * NoData is needed). False when a location lies outside the raster or
     * cannot be transformed: *pnOutside receives its index. */
    bool Sample(size_t k, size_t n, const double *padfX, const double *padfY, double *padfOut,
                size_t *pnOutside, std::string *posError);
    /* True when every raster covers the grid of geotransform adfGT and
     * nXSize x nYSize pixels (the centres along its edges lie inside each
     * raster); else false with the reason. */
    bool Covers(const double adfGT[6], int nXSize, int nYSize, std::string *posError);
    /* Every covariate at the pixel centres of the window [nX, nX+nXSize) x
     * [nY, nY+nYSize) of the grid adfGT: *padfPlanes receives Count()
     * planes of nXSize x nYSize doubles, row by row. */
    bool Read(const double adfGT[6], int nX, int nY, int nXSize, int nYSize,
              std::vector<double> *padfPlanes, std::string *posError);
    /* The derivatives of every covariate as Read gives it, on the grid's
     * lattice (tps_covariate_stencil.h: the window is read with a margin
     * of TPS_STENCIL_MARGIN pixels): *padfPlanes receives Count() x
     * TPS_COV_DERIVATIVES planes of nXSize x nYSize doubles in the order
     * of tps_eval_options.covariate_derivatives. */
    bool ReadDerivatives(const double adfGT[6], int nX, int nY, int nXSize, int nYSize,
                         std::vector<double> *padfPlanes, std::string *posError);
    /* The rasters' files (GetFileList), for the data set's own list and
     * the model's key. */
    std::vector<std::string> Files() const;

  private:
    struct Raster
    {
        std::string osName;
        GDALDataset *poDS = nullptr;
        GDALRasterBand *poBand = nullptr;
        double adfInvGT[6] = {0, 1, 0, 0, 0, 1}; /* georeferenced -> pixel, line */
        bool bHasNoData = false;
        double dfNoData = 0;
        std::unique_ptr<OGRCoordinateTransformation> poCT{}; /* output -> raster CRS */
    };
    std::vector<Raster> m_aoRasters{};
    std::mutex m_oMutex{}; /* GDAL data sets serve one thread at a time */

    /* Read without the lock; pabyInside (may be null) receives 1 where a
     * pixel centre lies inside the raster, per covariate. */
    bool ReadLocked(const double adfGT[6], int nX, int nY, int nXSize, int nYSize,
                    std::vector<double> *padfPlanes, std::vector<unsigned char> *pabyInside,
                    std::string *posError);
    /* Pixel/line coordinates in raster k of n locations (output CRS), in
     * place; false where a transformation failed (NaN there). */
    void ToPixels(size_t k, size_t n, double *padfX, double *padfY);
    /* Bilinear values at n pixel/line locations (all inside the raster)
     * from the window of cells [nX0, nX0+nW) x [nY0, nY0+nH) in padfCells,
     * or read cell by cell when padfCells is null. */
    bool Interpolate(size_t k, size_t n, const double *padfPX, const double *padfPY,
                     const double *padfCells, int nX0, int nY0, int nW, int nH,
                     double *padfOut, std::string *posError);
};

#endif /* TPS_COVARIATES_H */
