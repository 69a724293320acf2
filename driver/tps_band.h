/*
 * tps_band.h: the bands of a TPSDataset (tps_dataset.h): the value or
 * derived quantity of one field's surface, and the mask.
 */
#ifndef TPS_BAND_H
#define TPS_BAND_H

#include "gdal_priv.h"

class TPSDataset;

class TPSRasterBand final : public GDALRasterBand
{
    friend class TPSDataset;

  public:
    TPSRasterBand(TPSDataset *poDS, int nBand);

    double GetNoDataValue(int *pbSuccess = nullptr) override;
    /* The quantity's unit from the engine's table: "degrees" (slope,
     * aspect), else "" (the field's unit is not known). */
    const char *GetUnitType() override;
    /* With a mask: GMF_PER_DATASET and the data set's TPSMaskBand. */
    int GetMaskFlags() override;
    GDALRasterBand *GetMaskBand() override;
    /* The virtual overviews (none on an overview band). */
    int GetOverviewCount() override;
    GDALRasterBand *GetOverview(int iOverview) override;

  protected:
    CPLErr IReadBlock(int nBlockXOff, int nBlockYOff, void *pImage) override;
    CPLErr IRasterIO(GDALRWFlag eRWFlag, int nXOff, int nYOff, int nXSize, int nYSize, void *pData,
                     int nBufXSize, int nBufYSize, GDALDataType eBufType, GSpacing nPixelSpace,
                     GSpacing nLineSpace, GDALRasterIOExtraArg *psExtraArg) override;
};

/* The mask of every band (GMF_PER_DATASET): 255 where a pixel is kept,
 * 0 where <MaxDistance> or <ConvexHull> masks it, computed from the same
 * geometry that writes NoData into the bands, so clients that read masks
 * (integer outputs, QGIS, gdalwarp) agree with the values. */
class TPSMaskBand final : public GDALRasterBand
{
  public:
    explicit TPSMaskBand(TPSDataset *poDS);

    /* The overview levels' mask bands (none on an overview's). */
    int GetOverviewCount() override;
    GDALRasterBand *GetOverview(int iOverview) override;

  protected:
    CPLErr IReadBlock(int nBlockXOff, int nBlockYOff, void *pImage) override;
};

#endif /* TPS_BAND_H */
