/*
 * tps_grid.h: the raster's geometry: where the grid of a TPS data set lies
 * (geotransform) and how many pixels it has, from the configuration and
 * the points' bounding box; the limits on its size.
 */
#ifndef TPS_DRIVER_GRID_H
#define TPS_DRIVER_GRID_H

#include "tps_config.h"

/* The largest raster side accepted (2^24): beyond that a request is almost
 * certainly a mistake (a 1e9 x 1e9 float grid is 4 exabytes). */
constexpr int TPS_MAX_RASTER_SIDE = 16777216;

/* Without <Size> or <Resolution>: this many pixels on the long side. */
constexpr int TPS_DEFAULT_LONG_SIDE = 512;

/* The geotransform and size of the raster. With an explicit grid the
 * bounding box is not used; otherwise it is the points' bounding box in the
 * output CRS. On failure emits one CE_Failure and returns false. */
bool TPSResolveGrid(const TPSConfig &oConfig, double dfMinX, double dfMinY, double dfMaxX,
                    double dfMaxY, double adfGT[6], int *pnXSize, int *pnYSize);

/* Overview levels stop before the larger side falls below this. */
constexpr int TPS_OVERVIEW_MIN_SIDE = 256;

/* The overview of factor nFactor (2, 4, 8, ...) of a raster of
 * nXSize x nYSize pixels with geotransform adfGT: ceil(size / factor)
 * pixels, as GDAL sizes overviews, over the same origin and extent. False
 * when its larger side would fall below TPS_OVERVIEW_MIN_SIDE (no such
 * level). */
bool TPSOverviewGrid(const double adfGT[6], int nXSize, int nYSize, int nFactor,
                     double adfOvGT[6], int *pnOvXSize, int *pnOvYSize);

#endif /* TPS_DRIVER_GRID_H */
