/*
 * tps_covariate_stencil.h: the derivatives of a covariate resampled onto
 * an output grid, for the derivative bands of a model with covariates
 * (docs/format.md, "Covariates"). The covariate c is what the value band
 * uses: the raster resampled at the grid's pixel centres. Its derivatives
 * are differences of those resampled values on the grid's own lattice,
 * one pixel apart along each grid axis:
 *   - central differences (c[i+1] - c[i-1]) / 2 and c[i+1] - 2 c[i] +
 *     c[i-1] per pixel step, the mixed derivative their product over the
 *     3 x 3 pixels around;
 *   - where a neighbour's centre lies outside the raster (the raster ends
 *     at the grid's edge, say), the second-order one-sided differences
 *     (-3 c[i] + 4 c[i+1] - c[i+2]) / 2 and c[i] - 2 c[i+1] + c[i+2]
 *     (backward likewise), as numpy.gradient(edge_order=2): exact for a
 *     quadratic, like the central ones; none possible: NaN;
 *   - a NoData (NaN) value anywhere in the stencil used gives NaN.
 * The derivatives per pixel step go to the CRS's x and y through the
 * inverse of the geotransform's Jacobian, so rotated and sheared grids
 * are handled exactly.
 */
#ifndef TPS_COVARIATE_STENCIL_H
#define TPS_COVARIATE_STENCIL_H

/* Pixels read beyond a window on each side: a one-sided stencil reaches
 * two pixels. */
constexpr int TPS_STENCIL_MARGIN = 2;

/* The derivative planes (bit d for TPS_COV_D* d, tps.h) that quantities
 * of these needs (TPS_NEEDS_*) read, as tps_eval_options documents it:
 * 0 when they read none. */
unsigned TPSCovariatePlanesRead(unsigned nNeeds);

/* padfCells: the covariate at the pixel centres of the window nXSize x
 * nYSize enlarged by TPS_STENCIL_MARGIN pixels on each side, row by row
 * (NaN where NoData or outside the raster); pabyInside: 1 where that
 * centre lies inside the raster. adfGT: the grid's geotransform (only its
 * linear part is used; it must be invertible). padfOut receives
 * TPS_COV_DERIVATIVES (tps.h) planes of nXSize x nYSize, row by row:
 * dc/dx, dc/dy, d2c/dx2, d2c/dxdy, d2c/dy2 in the covariate's unit per
 * unit (squared unit) of the CRS. */
void TPSCovariateStencil(const double adfGT[6], int nXSize, int nYSize,
                         const double *padfCells, const unsigned char *pabyInside,
                         double *padfOut);

#endif /* TPS_COVARIATE_STENCIL_H */
