/*
 * tps_covariates.cpp: see tps_covariates.h.
 */
#include "tps_covariates.h"

#include "tps_covariate_stencil.h"
#include "tps_errors.h"
#include "tps_paths.h"
#include "tps_source_policy.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "cpl_vsi.h"

#include "tps.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace
{

constexpr double NaN = std::numeric_limits<double>::quiet_NaN();

/* A window of cells is read whole when it holds at most this many cells
 * (32 MB of doubles), and never more than this many per pixel it serves:
 * beyond, the cells a pixel needs are read one pixel at a time (a block
 * of a small raster over a huge DEM would otherwise read the DEM). */
constexpr double MAX_WINDOW_CELLS = 4194304.0;
constexpr double MAX_CELLS_PER_PIXEL = 16.0;

/* Edge pixel centres checked per side by Covers: enough to follow a
 * reprojected raster's curved edge, bounded for huge grids. */
constexpr int MAX_EDGE_SAMPLES = 1024;

} // namespace

TPSCovariates::~TPSCovariates()
{
    for (Raster &r : m_aoRasters)
    {
        r.poCT.reset();
        if (r.poDS)
            GDALClose(r.poDS);
    }
}

std::unique_ptr<TPSCovariates> TPSCovariates::Open(const TPSConfig &c,
                                                   const OGRSpatialReference *poOutputSRS,
                                                   std::string *posError)
{
    auto poCov = std::unique_ptr<TPSCovariates>(new TPSCovariates());
    for (size_t k = 0; k < c.aoCovariates.size(); k++)
    {
        const TPSCovariateConfig &oCfg = c.aoCovariates[k];
        const std::string osShown = TPSShown(TPSSourceForMessage(oCfg.osRaster));
        const std::string osWho =
            CPLSPrintf("covariate '%s' (raster '%s')", oCfg.Name().c_str(), osShown.c_str());
        poCov->m_aoRasters.emplace_back();
        Raster &r = poCov->m_aoRasters.back();
        r.osName = oCfg.Name();
        CPLStringList aosDrivers;
        for (const std::string &osDriver : oCfg.aosDrivers)
            aosDrivers.AddString(osDriver.c_str());
        {
            TPSErrorCapture oCapture(true);
            r.poDS = GDALDataset::Open(oCfg.osRaster.c_str(), GDAL_OF_RASTER | GDAL_OF_READONLY,
                                       aosDrivers.empty() ? nullptr : aosDrivers.List());
            if (r.poDS == nullptr)
            {
                VSIStatBufL sStat;
                GDALDriverH hDriver =
                    aosDrivers.empty()
                        ? nullptr
                        : GDALIdentifyDriverEx(oCfg.osRaster.c_str(), GDAL_OF_RASTER, nullptr,
                                               nullptr);
                const char *pszDriver = hDriver ? GDALGetDriverShortName(hDriver) : nullptr;
                if (VSIStatL(oCfg.osRaster.c_str(), &sStat) != 0 &&
                    !TPSIsConnectionString(oCfg.osRaster.c_str()))
                    *posError = "cannot open the " + osWho + ": no such file";
                else if (pszDriver && aosDrivers.FindString(pszDriver) < 0)
                    *posError = std::string("cannot open the ") + osWho + ": it is for GDAL's " +
                                pszDriver + " driver, which TPS_ALLOWED_SOURCES=" +
                                CPLGetConfigOption("TPS_ALLOWED_SOURCES", "LOCAL") +
                                " does not let read a covariate (it may read other files or "
                                "the network): set TPS_ALLOWED_SOURCES=ALL to read it";
                else
                    *posError = "cannot open the " + osWho + " as a raster" +
                                TPSSourceText(oCapture.LastFailure());
                return nullptr;
            }
        }
        std::vector<std::string> aosFiles;
        {
            const CPLStringList aosList(r.poDS->GetFileList());
            for (int i = 0; i < aosList.size(); i++)
                aosFiles.emplace_back(aosList[i]);
        }
        std::string osWhy;
        if (!TPSCovariateFilesInFolder(oCfg, aosFiles, &osWhy))
        {
            *posError = "the " + osWho + " is refused: " + osWhy;
            return nullptr;
        }
        if (oCfg.nBand > r.poDS->GetRasterCount())
        {
            *posError = CPLSPrintf("the %s has %d band(s); <Band> asks for band %d",
                                   osWho.c_str(), r.poDS->GetRasterCount(), oCfg.nBand);
            return nullptr;
        }
        r.poBand = r.poDS->GetRasterBand(oCfg.nBand);
        double adfGT[6];
        if (r.poDS->GetGeoTransform(adfGT) != CE_None ||
            !GDALInvGeoTransform(adfGT, r.adfInvGT))
        {
            *posError = "the " + osWho + " has no (invertible) geotransform: a covariate "
                                         "raster must be georeferenced";
            return nullptr;
        }
        int bHasNoData = FALSE;
        r.dfNoData = r.poBand->GetNoDataValue(&bHasNoData);
        r.bHasNoData = bHasNoData != FALSE;
        const OGRSpatialReference *poRasterSRS = r.poDS->GetSpatialRef();
        if (poOutputSRS && poRasterSRS && !poRasterSRS->IsEmpty() &&
            !poRasterSRS->IsSame(poOutputSRS))
        {
            OGRSpatialReference oFrom(*poOutputSRS), oTo(*poRasterSRS);
            oFrom.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
            oTo.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
            TPSErrorCapture oCapture;
            r.poCT.reset(OGRCreateCoordinateTransformation(&oFrom, &oTo));
            if (!r.poCT)
            {
                *posError = std::string("cannot transform the output CRS (") +
                            poOutputSRS->GetName() + ") to the CRS of the " + osWho + " (" +
                            poRasterSRS->GetName() + ")" + oCapture.Suffix();
                return nullptr;
            }
            CPLDebug("TPS", "%s: covariate '%s' is transformed from %s to the output CRS %s",
                     c.osName.c_str(), r.osName.c_str(), poRasterSRS->GetName(),
                     poOutputSRS->GetName());
        }
    }
    return poCov;
}

std::vector<std::string> TPSCovariates::Files() const
{
    std::vector<std::string> aosFiles;
    for (const Raster &r : m_aoRasters)
    {
        const CPLStringList aosList(r.poDS->GetFileList());
        for (int i = 0; i < aosList.size(); i++)
            aosFiles.emplace_back(aosList[i]);
    }
    return aosFiles;
}

void TPSCovariates::ToPixels(size_t k, size_t n, double *padfX, double *padfY)
{
    Raster &r = m_aoRasters[k];
    if (r.poCT && n > 0)
    {
        std::vector<int> abSuccess(n, FALSE);
        constexpr size_t CHUNK = 1 << 20; /* Transform() counts in int before GDAL 3.9 */
        for (size_t i = 0; i < n; i += CHUNK)
        {
            const int nChunk = static_cast<int>(std::min(CHUNK, n - i));
            r.poCT->Transform(nChunk, padfX + i, padfY + i, nullptr, abSuccess.data() + i);
        }
        for (size_t i = 0; i < n; i++)
            if (!abSuccess[i])
                padfX[i] = padfY[i] = NaN;
    }
    for (size_t i = 0; i < n; i++)
    {
        const double x = padfX[i], y = padfY[i];
        padfX[i] = r.adfInvGT[0] + x * r.adfInvGT[1] + y * r.adfInvGT[2];
        padfY[i] = r.adfInvGT[3] + x * r.adfInvGT[4] + y * r.adfInvGT[5];
    }
}

bool TPSCovariates::Interpolate(size_t k, size_t n, const double *padfPX, const double *padfPY,
                                const double *padfCells, int nX0, int nY0, int nW, int nH,
                                double *padfOut, std::string *posError)
{
    Raster &r = m_aoRasters[k];
    const int nRX = r.poBand->GetXSize(), nRY = r.poBand->GetYSize();
    for (size_t i = 0; i < n; i++)
    {
        // Between cell centres (pixel + 0.5), the edge cells' values
        // within half a cell of the edge.
        const double fx = padfPX[i] - 0.5, fy = padfPY[i] - 0.5;
        if (!(std::isfinite(fx) && std::isfinite(fy)))
        {
            padfOut[i] = NaN;
            continue;
        }
        int ix = static_cast<int>(std::floor(fx)), iy = static_cast<int>(std::floor(fy));
        double wx = fx - ix, wy = fy - iy;
        if (ix < 0)
        {
            ix = 0;
            wx = 0;
        }
        if (ix >= nRX - 1)
        {
            ix = nRX - 1;
            wx = 0;
        }
        if (iy < 0)
        {
            iy = 0;
            wy = 0;
        }
        if (iy >= nRY - 1)
        {
            iy = nRY - 1;
            wy = 0;
        }
        double adfV[4] = {NaN, NaN, NaN, NaN}; /* (ix, iy), (ix+1, iy), (ix, iy+1), (ix+1, iy+1) */
        const int nCX = wx > 0 ? 2 : 1, nCY = wy > 0 ? 2 : 1;
        if (padfCells)
        {
            for (int b = 0; b < nCY; b++)
                for (int a = 0; a < nCX; a++)
                    adfV[2 * b + a] =
                        padfCells[static_cast<size_t>(iy + b - nY0) * nW + (ix + a - nX0)];
        }
        else
        {
            double adfCells[4];
            if (r.poBand->RasterIO(GF_Read, ix, iy, nCX, nCY, adfCells, nCX, nCY, GDT_Float64, 0,
                                   0, nullptr) != CE_None)
            {
                *posError = "cannot read the covariate raster of '" + r.osName + "'";
                return false;
            }
            for (int b = 0; b < nCY; b++)
                for (int a = 0; a < nCX; a++)
                    adfV[2 * b + a] = adfCells[b * nCX + a];
        }
        (void)nH;
        const double adfW[4] = {(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy};
        double dfValue = 0;
        for (int q = 0; q < 4; q++)
        {
            if (adfW[q] == 0)
                continue;
            const double v = adfV[q];
            if (std::isnan(v) || (r.bHasNoData && v == r.dfNoData) || !std::isfinite(v))
            {
                dfValue = NaN;
                break;
            }
            dfValue += adfW[q] * v;
        }
        padfOut[i] = dfValue;
    }
    return true;
}

bool TPSCovariates::Sample(size_t k, size_t n, const double *padfX, const double *padfY,
                           double *padfOut, size_t *pnOutside, std::string *posError)
{
    std::lock_guard<std::mutex> oLock(m_oMutex);
    Raster &r = m_aoRasters[k];
    std::vector<double> adfPX(padfX, padfX + n), adfPY(padfY, padfY + n);
    ToPixels(k, n, adfPX.data(), adfPY.data());
    const double dfRX = r.poBand->GetXSize(), dfRY = r.poBand->GetYSize();
    for (size_t i = 0; i < n; i++)
    {
        // Points without a location are the engine's to drop.
        if (!std::isfinite(padfX[i]) || !std::isfinite(padfY[i]))
        {
            adfPX[i] = adfPY[i] = NaN;
            continue;
        }
        if (!(adfPX[i] >= 0 && adfPX[i] <= dfRX && adfPY[i] >= 0 && adfPY[i] <= dfRY))
        {
            *pnOutside = i;
            *posError = "lies outside the covariate raster of '" + r.osName + "'";
            return false;
        }
    }
    return Interpolate(k, n, adfPX.data(), adfPY.data(), nullptr, 0, 0, 0, 0, padfOut, posError);
}

bool TPSCovariates::Covers(const double adfGT[6], int nXSize, int nYSize, std::string *posError)
{
    std::lock_guard<std::mutex> oLock(m_oMutex);
    // The centres along the grid's four edges, at most MAX_EDGE_SAMPLES a side.
    std::vector<double> adfX, adfY;
    const auto Add = [&](double i, double j)
    {
        adfX.push_back(adfGT[0] + (i + 0.5) * adfGT[1] + (j + 0.5) * adfGT[2]);
        adfY.push_back(adfGT[3] + (i + 0.5) * adfGT[4] + (j + 0.5) * adfGT[5]);
    };
    const int nStepX = std::max(1, nXSize / MAX_EDGE_SAMPLES);
    const int nStepY = std::max(1, nYSize / MAX_EDGE_SAMPLES);
    for (int i = 0; i < nXSize; i += nStepX)
    {
        Add(i, 0);
        Add(i, nYSize - 1);
    }
    for (int j = 0; j < nYSize; j += nStepY)
    {
        Add(0, j);
        Add(nXSize - 1, j);
    }
    Add(nXSize - 1, nYSize - 1);
    for (size_t k = 0; k < m_aoRasters.size(); k++)
    {
        Raster &r = m_aoRasters[k];
        std::vector<double> adfPX(adfX), adfPY(adfY);
        ToPixels(k, adfPX.size(), adfPX.data(), adfPY.data());
        const double dfRX = r.poBand->GetXSize(), dfRY = r.poBand->GetYSize();
        size_t nOutside = 0;
        for (size_t i = 0; i < adfPX.size(); i++)
            nOutside += !(adfPX[i] >= 0 && adfPX[i] <= dfRX && adfPY[i] >= 0 && adfPY[i] <= dfRY);
        if (nOutside)
        {
            *posError = CPLSPrintf("the covariate raster of '%s' does not cover the output grid "
                                   "(%llu of %llu pixel centres checked along its edges lie "
                                   "outside the raster)",
                                   r.osName.c_str(), static_cast<unsigned long long>(nOutside),
                                   static_cast<unsigned long long>(adfPX.size()));
            return false;
        }
    }
    return true;
}

bool TPSCovariates::Read(const double adfGT[6], int nX, int nY, int nXSize, int nYSize,
                         std::vector<double> *padfPlanes, std::string *posError)
{
    std::lock_guard<std::mutex> oLock(m_oMutex);
    return ReadLocked(adfGT, nX, nY, nXSize, nYSize, padfPlanes, nullptr, posError);
}

bool TPSCovariates::ReadDerivatives(const double adfGT[6], int nX, int nY, int nXSize,
                                    int nYSize, std::vector<double> *padfPlanes,
                                    std::string *posError)
{
    constexpr int M = TPS_STENCIL_MARGIN;
    const size_t nPixels = static_cast<size_t>(nXSize) * static_cast<size_t>(nYSize);
    const size_t nPadded = (static_cast<size_t>(nXSize) + 2 * M) * (nYSize + 2 * M);
    std::vector<double> adfCells;
    std::vector<unsigned char> abyInside;
    {
        std::lock_guard<std::mutex> oLock(m_oMutex);
        if (!ReadLocked(adfGT, nX - M, nY - M, nXSize + 2 * M, nYSize + 2 * M, &adfCells,
                        &abyInside, posError))
            return false;
    }
    try
    {
        padfPlanes->assign(nPixels * TPS_COV_DERIVATIVES * m_aoRasters.size(), NaN);
    }
    catch (const std::bad_alloc &)
    {
        *posError = "out of memory for the covariates' derivatives of a window";
        return false;
    }
    for (size_t k = 0; k < m_aoRasters.size(); k++)
        TPSCovariateStencil(adfGT, nXSize, nYSize, adfCells.data() + k * nPadded,
                            abyInside.data() + k * nPadded,
                            padfPlanes->data() + k * TPS_COV_DERIVATIVES * nPixels);
    return true;
}

bool TPSCovariates::ReadLocked(const double adfGT[6], int nX, int nY, int nXSize, int nYSize,
                               std::vector<double> *padfPlanes,
                               std::vector<unsigned char> *pabyInside, std::string *posError)
{
    const size_t nPixels = static_cast<size_t>(nXSize) * static_cast<size_t>(nYSize);
    std::vector<double> adfX(nPixels), adfY(nPixels), adfCells;
    try
    {
        padfPlanes->assign(nPixels * m_aoRasters.size(), NaN);
        if (pabyInside)
            pabyInside->assign(nPixels * m_aoRasters.size(), 0);
    }
    catch (const std::bad_alloc &)
    {
        *posError = "out of memory for the covariates of a window";
        return false;
    }
    for (size_t k = 0; k < m_aoRasters.size(); k++)
    {
        Raster &r = m_aoRasters[k];
        // The pixel centres, as the engine's grid places them (tps.h).
        for (int j = 0; j < nYSize; j++)
            for (int i = 0; i < nXSize; i++)
            {
                const double di = nX + i + 0.5, dj = nY + j + 0.5;
                const size_t p = static_cast<size_t>(j) * nXSize + i;
                adfX[p] = adfGT[0] + di * adfGT[1] + dj * adfGT[2];
                adfY[p] = adfGT[3] + di * adfGT[4] + dj * adfGT[5];
            }
        ToPixels(k, nPixels, adfX.data(), adfY.data());
        const int nRX = r.poBand->GetXSize(), nRY = r.poBand->GetYSize();
        double dfMinX = INFINITY, dfMaxX = -INFINITY, dfMinY = INFINITY, dfMaxY = -INFINITY;
        for (size_t p = 0; p < nPixels; p++)
        {
            // Outside the raster (it covers the grid: a transformation's edge): NaN.
            if (!(adfX[p] >= 0 && adfX[p] <= nRX && adfY[p] >= 0 && adfY[p] <= nRY))
            {
                adfX[p] = adfY[p] = NaN;
                continue;
            }
            if (pabyInside)
                (*pabyInside)[k * nPixels + p] = 1;
            dfMinX = std::min(dfMinX, adfX[p]);
            dfMaxX = std::max(dfMaxX, adfX[p]);
            dfMinY = std::min(dfMinY, adfY[p]);
            dfMaxY = std::max(dfMaxY, adfY[p]);
        }
        double *padfOut = padfPlanes->data() + k * nPixels;
        if (!(dfMinX <= dfMaxX))
            continue; // nothing inside
        // The cells the window needs: a cell more on each side.
        const int nX0 = std::max(0, static_cast<int>(std::floor(dfMinX - 0.5)));
        const int nY0 = std::max(0, static_cast<int>(std::floor(dfMinY - 0.5)));
        const int nX1 = std::min(nRX, static_cast<int>(std::floor(dfMaxX - 0.5)) + 2);
        const int nY1 = std::min(nRY, static_cast<int>(std::floor(dfMaxY - 0.5)) + 2);
        const double dfCells = static_cast<double>(nX1 - nX0) * (nY1 - nY0);
        const bool bWhole = dfCells <= MAX_WINDOW_CELLS &&
                            dfCells <= MAX_CELLS_PER_PIXEL * static_cast<double>(nPixels) + 64;
        if (bWhole)
        {
            try
            {
                adfCells.resize(static_cast<size_t>(dfCells));
            }
            catch (const std::bad_alloc &)
            {
                *posError = "out of memory for the covariates of a window";
                return false;
            }
            if (r.poBand->RasterIO(GF_Read, nX0, nY0, nX1 - nX0, nY1 - nY0, adfCells.data(),
                                   nX1 - nX0, nY1 - nY0, GDT_Float64, 0, 0, nullptr) != CE_None)
            {
                *posError = "cannot read the covariate raster of '" + r.osName + "'";
                return false;
            }
        }
        if (!Interpolate(k, nPixels, adfX.data(), adfY.data(), bWhole ? adfCells.data() : nullptr,
                         nX0, nY0, nX1 - nX0, nY1 - nY0, padfOut, posError))
            return false;
    }
    return true;
}
