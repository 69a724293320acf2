/*
 * tps_points.h: the scattered points of a TPS data set, read with OGR and
 * brought into the output CRS, ready for tps_model_create.
 */
#ifndef TPS_POINTS_H
#define TPS_POINTS_H

#include "tps_config.h"
#include "tps_memory.h"

#include "ogr_spatialref.h"

#include <cstddef>
#include <string>
#include <vector>

struct TPSPoints
{
    /* One entry per point (a MultiPoint gives several), in the output CRS.
     * A NaN coordinate marks a point without usable location (null
     * geometry, empty coordinate field): the engine drops those. */
    std::vector<double> adfX{}, adfY{};
    /* aadfValues[band][point], per model band (TPSConfig::aoModelBands);
     * NaN where the value is missing. */
    std::vector<std::vector<double>> aadfValues{};
    /* With <WeightField>: each point's weight (finite, > 0); else empty. */
    std::vector<double> adfWeights{};
    /* aadfCovariates[k][point] for each <Covariate> (TPSConfig::aoCovariates)
     * with a <Field>; empty for those sampled from their raster later. NaN
     * where the value is missing (the engine drops the point). */
    std::vector<std::vector<double>> aadfCovariates{};

    size_t nFeatures = 0;            /* features read after the attribute filter */
    size_t nNonFiniteXY = 0;         /* points passed with a non-finite coordinate */
    std::vector<size_t> anMissing{}; /* per band: missing values seen */

    bool bHasOutputSRS = false; /* false: the CRS is unknown */
    OGRSpatialReference oOutputSRS{};
    std::string osLayerName{};
};

/* Reads the points oConfig describes. On failure emits exactly one
 * CE_Failure starting with oConfig.osName and returns false.
 * Bounded while reading, before the work: at most TPS_MAX_POINTS points
 * (default 10,000,000), and the arrays they fill are charged to *poCharge
 * as they grow, which fails the load when the process's charges would pass
 * nBudget (TPS_MAX_MEMORY; 0: no limit). The charge stays with the caller,
 * to be released when the points are freed. */
bool TPSLoadPoints(const TPSConfig &oConfig, TPSPoints *psPoints, TPSMemoryCharge *poCharge,
                   size_t nBudget);

/* TPS_MAX_POINTS: the most points a source may give (default 10^7). False
 * after one CE_Failure naming osName when the option is not a count. */
bool TPSMaxPoints(const std::string &osName, size_t *pnMaxPoints);

/* What a solved model kept in a file needs from the source without its
 * points: the output CRS, set up by the same code as TPSLoadPoints's
 * (identical to a solve's), and the files GDAL lists for the source. */
struct TPSSourceInfo
{
    bool bHasOutputSRS = false;
    OGRSpatialReference oOutputSRS{};
    std::vector<std::string> aosFiles{};
};

/* Opens the source and its layer, reads no feature. Emits nothing: on
 * failure returns false with the reason in *posWhyNot. */
bool TPSDescribeSource(const TPSConfig &oConfig, TPSSourceInfo *psInfo, std::string *posWhyNot);

#endif /* TPS_POINTS_H */
