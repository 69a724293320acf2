/*
 * tps_grid.cpp: the raster's geometry: its geotransform and size from the
 * .tps grid elements (or the open options) and the points' bounding box,
 * and its virtual overviews'.
 */
#include "tps_grid.h"

#include "cpl_error.h"

#include <algorithm>
#include <cmath>

bool TPSResolveGrid(const TPSConfig &c, double dfMinX, double dfMinY, double dfMaxX, double dfMaxY,
                    double adfGT[6], int *pnXSize, int *pnYSize)
{
    if (c.bHasGeoTransform)
    {
        std::copy(c.adfGeoTransform, c.adfGeoTransform + 6, adfGT);
        *pnXSize = c.nXSize;
        *pnYSize = c.nYSize;
        return true;
    }
    const bool bOpt = c.bGridFromOptions;
    if (c.bHasExtent)
    {
        dfMinX = c.adfExtent[0];
        dfMinY = c.adfExtent[1];
        dfMaxX = c.adfExtent[2];
        dfMaxY = c.adfExtent[3];
    }
    const double dfWidth = dfMaxX - dfMinX;
    const double dfHeight = dfMaxY - dfMinY;
    if (!std::isfinite(dfWidth) || !std::isfinite(dfHeight) || dfWidth < 0 || dfHeight < 0)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "%s: cannot derive a grid: the points have no finite bounding box",
                 c.osName.c_str());
        return false;
    }

    int nXSize = 0, nYSize = 0;
    double dfResX = 0, dfResY = 0;
    if (c.bHasResolution)
    {
        // Enough pixels of the given size to cover the extent (a ratio within
        // 1e-9 of an integer counts as that integer: 3080 / 40 is 77, not 78).
        double adfCount[2] = {dfWidth / c.adfResolution[0], dfHeight / c.adfResolution[1]};
        for (double &dfCount : adfCount)
        {
            const double dfRounded = std::round(dfCount);
            dfCount = std::fabs(dfCount - dfRounded) <= 1e-9 * std::max(1.0, dfCount)
                          ? dfRounded
                          : std::ceil(dfCount);
            dfCount = std::max(1.0, dfCount);
        }
        if (!(adfCount[0] <= TPS_MAX_RASTER_SIDE) || !(adfCount[1] <= TPS_MAX_RASTER_SIDE))
        {
            CPLError(CE_Failure, CPLE_IllegalArg,
                     "%s: %s: the grid would be %.0f x %.0f pixels; each side must be between "
                     "1 and %d",
                     c.osName.c_str(), bOpt ? "RESOLUTION" : "<Resolution>", adfCount[0],
                     adfCount[1], TPS_MAX_RASTER_SIDE);
            return false;
        }
        nXSize = static_cast<int>(adfCount[0]);
        nYSize = static_cast<int>(adfCount[1]);
        dfResX = c.adfResolution[0];
        dfResY = c.adfResolution[1];
    }
    else
    {
        if (!(dfWidth > 0) || !(dfHeight > 0))
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "%s: cannot derive a grid from the points: their bounding box has zero "
                     "width or height; give %s",
                     c.osName.c_str(), bOpt ? "EXTENT" : "<Extent> or <GeoTransform>");
            return false;
        }
        if (c.bHasSize)
        {
            nXSize = c.nXSize;
            nYSize = c.nYSize;
        }
        else
        {
            // TPS_DEFAULT_LONG_SIDE pixels on the long side, the short side in
            // proportion: pixels are then nearly square and the extent is
            // exactly the box.
            if (dfWidth >= dfHeight)
            {
                nXSize = TPS_DEFAULT_LONG_SIDE;
                nYSize = static_cast<int>(
                    std::max(1.0, std::round(TPS_DEFAULT_LONG_SIDE * dfHeight / dfWidth)));
            }
            else
            {
                nYSize = TPS_DEFAULT_LONG_SIDE;
                nXSize = static_cast<int>(
                    std::max(1.0, std::round(TPS_DEFAULT_LONG_SIDE * dfWidth / dfHeight)));
            }
        }
        dfResX = dfWidth / nXSize;
        dfResY = dfHeight / nYSize;
    }
    adfGT[0] = dfMinX;
    adfGT[1] = dfResX;
    adfGT[2] = 0;
    adfGT[3] = dfMaxY;
    adfGT[4] = 0;
    adfGT[5] = -dfResY;
    *pnXSize = nXSize;
    *pnYSize = nYSize;
    return true;
}

bool TPSOverviewGrid(const double adfGT[6], int nXSize, int nYSize, int nFactor,
                     double adfOvGT[6], int *pnOvXSize, int *pnOvYSize)
{
    const GIntBig nF = nFactor;
    const int nOvXSize = static_cast<int>((nXSize + nF - 1) / nF);
    const int nOvYSize = static_cast<int>((nYSize + nF - 1) / nF);
    if (std::max(nOvXSize, nOvYSize) < TPS_OVERVIEW_MIN_SIDE)
        return false;
    // Same origin and extent: the pixel is the extent over the overview's
    // size (not exactly nFactor times the pixel when the size does not
    // divide).
    const double dfXScale = static_cast<double>(nXSize) / nOvXSize;
    const double dfYScale = static_cast<double>(nYSize) / nOvYSize;
    const double adf[6] = {adfGT[0], adfGT[1] * dfXScale, adfGT[2] * dfYScale,
                           adfGT[3], adfGT[4] * dfXScale, adfGT[5] * dfYScale};
    std::copy(adf, adf + 6, adfOvGT);
    *pnOvXSize = nOvXSize;
    *pnOvYSize = nOvYSize;
    return true;
}
