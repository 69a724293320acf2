/*
 * tps_band.cpp: TPSRasterBand (one quantity of one field's surface: its
 * reads go to the dataset's EvaluateWindow, several bands at once) and
 * TPSMaskBand (where <MaxDistance> and <ConvexHull> keep pixels).
 */
#include "tps_band.h"

#include "tps_covariate_stencil.h"
#include "tps_dataset.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

/************************************************************************/
/*                            TPSRasterBand                             */
/************************************************************************/

TPSRasterBand::TPSRasterBand(TPSDataset *poDSIn, int nBandIn)
{
    poDS = poDSIn;
    nBand = nBandIn;
    eAccess = GA_ReadOnly;
    eDataType = poDSIn->m_oConfig.eDataType;
    nRasterXSize = poDSIn->nRasterXSize;
    nRasterYSize = poDSIn->nRasterYSize;
    nBlockXSize = std::min(poDSIn->m_oConfig.nBlockXSize, nRasterXSize);
    nBlockYSize = std::min(poDSIn->m_oConfig.nBlockYSize, nRasterYSize);
}

const char *TPSRasterBand::GetUnitType()
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    return tps_quantity_info(poTPSDS->m_oConfig.aoBands[nBand - 1].eQuantity)->unit;
}

double TPSRasterBand::GetNoDataValue(int *pbSuccess)
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    const bool bHasNoData = poTPSDS->HasNoData();
    if (pbSuccess)
        *pbSuccess = bHasNoData;
    return bHasNoData ? poTPSDS->NoDataValue() : 0.0;
}

int TPSRasterBand::GetMaskFlags()
{
    if (static_cast<TPSDataset *>(poDS)->m_poMaskBand)
        return GMF_PER_DATASET;
    return GDALRasterBand::GetMaskFlags();
}

GDALRasterBand *TPSRasterBand::GetMaskBand()
{
    if (TPSMaskBand *poMask = static_cast<TPSDataset *>(poDS)->m_poMaskBand.get())
        return poMask;
    return GDALRasterBand::GetMaskBand();
}

int TPSRasterBand::GetOverviewCount()
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    return poTPSDS->m_poParent ? 0 : static_cast<int>(poTPSDS->m_apoOverviews.size());
}

GDALRasterBand *TPSRasterBand::GetOverview(int iOverview)
{
    if (iOverview < 0 || iOverview >= GetOverviewCount())
        return nullptr;
    return static_cast<TPSDataset *>(poDS)->m_apoOverviews[iOverview]->GetRasterBand(nBand);
}

CPLErr TPSRasterBand::IReadBlock(int nBlockXOff, int nBlockYOff, void *pImage)
{
    return static_cast<TPSDataset *>(poDS)->ReadBlockAllBands(this, nBlockXOff, nBlockYOff, pImage);
}

CPLErr TPSRasterBand::IRasterIO(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize,
                                void *pData, int nBufXSize, int nBufYSize, GDALDataType eBufType,
                                GSpacing nPixelSpace, GSpacing nLineSpace,
                                GDALRasterIOExtraArg *psExtraArg)
{
    auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    if (eRWFlag == GF_Write)
    {
        CPLError(CE_Failure, CPLE_NoWriteAccess, "%s: the TPS driver is read-only",
                 poTPSDS->m_oConfig.osName.c_str());
        return CE_Failure;
    }
    if (!TPSDataset::IsFastPath(eRWFlag, nXOff, nYOff, nXSize, nYSize, nBufXSize, nBufYSize,
                                eBufType, psExtraArg))
        return GDALRasterBand::IRasterIO(eRWFlag, nXOff, nYOff, nXSize, nYSize, pData, nBufXSize,
                                         nBufYSize, eBufType, nPixelSpace, nLineSpace, psExtraArg);
    std::vector<tps_output> aoOutputs{
        poTPSDS->BandOutput(nBand, pData, eBufType, nPixelSpace, nLineSpace)};
    return poTPSDS->EvaluateWindow(nXOff, nYOff, nXSize, nYSize, aoOutputs, eBufType, psExtraArg);
}

/************************************************************************/
/*                             TPSMaskBand                              */
/************************************************************************/

TPSMaskBand::TPSMaskBand(TPSDataset *poDSIn)
{
    poDS = poDSIn;
    nBand = 0;
    eAccess = GA_ReadOnly;
    eDataType = GDT_Byte;
    nRasterXSize = poDSIn->nRasterXSize;
    nRasterYSize = poDSIn->nRasterYSize;
    nBlockXSize = std::min(poDSIn->m_oConfig.nBlockXSize, nRasterXSize);
    nBlockYSize = std::min(poDSIn->m_oConfig.nBlockYSize, nRasterYSize);
}

int TPSMaskBand::GetOverviewCount()
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    return poTPSDS->m_poParent ? 0 : static_cast<int>(poTPSDS->m_apoOverviews.size());
}

GDALRasterBand *TPSMaskBand::GetOverview(int iOverview)
{
    if (iOverview < 0 || iOverview >= GetOverviewCount())
        return nullptr;
    return static_cast<TPSDataset *>(poDS)->m_apoOverviews[iOverview]->m_poMaskBand.get();
}

CPLErr TPSMaskBand::IReadBlock(int nBlockXOff, int nBlockYOff, void *pImage)
{
    const auto *poTPSDS = static_cast<TPSDataset *>(poDS);
    const int nXOff = nBlockXOff * nBlockXSize;
    const int nYOff = nBlockYOff * nBlockYSize;
    const int nXValid = std::min(nBlockXSize, nRasterXSize - nXOff);
    const int nYValid = std::min(nBlockYSize, nRasterYSize - nYOff);
    tps_grid sGrid;
    tps_grid_from_geotransform(&sGrid, poTPSDS->m_adfGeoTransform, static_cast<size_t>(nXOff),
                               static_cast<size_t>(nYOff), static_cast<size_t>(nXValid),
                               static_cast<size_t>(nYValid));
    std::vector<unsigned char> abyValid(static_cast<size_t>(nXValid) * nYValid);
    poTPSDS->m_poMask->Compute(sGrid, abyValid.data(),
                               poTPSDS->m_poParent ? poTPSDS->m_poParent->m_sEvalOptions.num_threads
                                                   : poTPSDS->m_sEvalOptions.num_threads);
    // A pixel where a covariate has no value has none either.
    const TPSDataset *poRoot = poTPSDS->m_poParent ? poTPSDS->m_poParent : poTPSDS;
    if (poRoot->m_poCovariates)
    {
        std::vector<double> adfCov;
        std::string osError;
        if (!poRoot->m_poCovariates->Read(poTPSDS->m_adfGeoTransform, nXOff, nYOff, nXValid,
                                          nYValid, &adfCov, &osError))
        {
            CPLError(CE_Failure, CPLE_AppDefined, "%s: %s",
                     poTPSDS->m_oConfig.osName.c_str(), osError.c_str());
            return CE_Failure;
        }
        for (size_t p = 0; p < adfCov.size(); p++)
            if (std::isnan(adfCov[p]))
                abyValid[p % abyValid.size()] = 0;
        // The mask is the data set's, for every band: a pixel where a
        // derivative band has no covariate derivative (a NoData cell in
        // its stencil, no difference that fits) has none either.
        unsigned nNeeds = 0;
        for (const TPSBandConfig &oBand : poTPSDS->m_oConfig.aoBands)
            nNeeds |= tps_quantity_info(oBand.eQuantity)->needs;
        const unsigned nRead = TPSCovariatePlanesRead(nNeeds);
        if (nRead)
        {
            if (!poRoot->m_poCovariates->ReadDerivatives(poTPSDS->m_adfGeoTransform, nXOff, nYOff,
                                                         nXValid, nYValid, &adfCov, &osError))
            {
                CPLError(CE_Failure, CPLE_AppDefined, "%s: %s",
                         poTPSDS->m_oConfig.osName.c_str(), osError.c_str());
                return CE_Failure;
            }
            const size_t nPixels = abyValid.size();
            for (size_t p = 0; p < adfCov.size(); p++)
                if ((nRead >> (p / nPixels % TPS_COV_DERIVATIVES) & 1u) && std::isnan(adfCov[p]))
                    abyValid[p % nPixels] = 0;
        }
    }
    // Beyond the raster (a partial last block): zeros, as in the bands.
    GByte *pabyImage = static_cast<GByte *>(pImage);
    memset(pabyImage, 0, static_cast<size_t>(nBlockXSize) * nBlockYSize);
    for (int j = 0; j < nYValid; j++)
        for (int i = 0; i < nXValid; i++)
            pabyImage[static_cast<size_t>(j) * nBlockXSize + i] =
                abyValid[static_cast<size_t>(j) * nXValid + i] ? 255 : 0;
    return CE_None;
}
