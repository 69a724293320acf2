/*
 * tps_config.h: everything a TPS data set is made of, read from a `.tps`
 * file (or inline XML) or from the `TPS:<ogr source>` form, plus open
 * options, into one plain struct.
 *
 * No OGR here, and of the engine only its quantity table (tps.h: what a
 * <Quantity> may name), on purpose: this is the part that reads untrusted
 * text, and it should stay small enough to fuzz on its own.
 */
#ifndef TPS_CONFIG_H
#define TPS_CONFIG_H

#include "tps.h"

#include "cpl_port.h"
#include "gdal.h"

#include <string>
#include <vector>

struct TPSBandConfig
{
    std::string osField;        /* attribute to interpolate; empty if bGeometryZ */
    bool bGeometryZ = false;    /* <GeometryZ/>: the point's Z */
    bool bHasSmoothing = false; /* <Smoothing> given in this <Band> */
    double dfSmoothing = 0.0;   /* effective lambda once parsing is done */
    bool bSmoothingGCV = false; /* <Smoothing>GCV</Smoothing>: lambda chosen by GCV */
    std::string osDescription;  /* default: the field name, or "Z" (+ " slope", ...) */
    /* <Quantity>: a row of the engine's quantity table (tps_quantity_info). */
    tps_quantity eQuantity = TPS_QUANTITY_VALUE;
    /* The surface this band shows: its index in TPSConfig::aoModelBands. */
    size_t nModelBand = 0;
};

/* <Covariate> (COVARIATES): a linear covariate of the spline's fixed part
 * (the engine's tps_fit_options.covariates): its values at the points from
 * a field, or sampled from the raster when no field is given; its values
 * at every pixel from the raster, resampled onto the output grid
 * (tps_covariates.h). */
struct TPSCovariateConfig
{
    std::string osField;  /* empty: sampled from the raster at the points */
    std::string osRaster; /* resolved (relative to the .tps file's folder) */
    int nBand = 1;        /* <Band> of the raster, 1-based */
    /* Set by TPSApplyCovariatePolicy (tps_source_policy.h): the raster
     * drivers that may read it (empty: any), the folder its files must be
     * in ("": anywhere). */
    std::vector<std::string> aosDrivers{};
    std::string osFolder{};
    /* Its name in messages and metadata: the field, else "raster:band". */
    std::string Name() const;
};

/* MODEL_CACHE: whether the solved model is kept in <name>.tps.model. */
enum class TPSModelCacheMode
{
    YES,      /* read it when valid, write it after a solve */
    NO,       /* neither */
    READ_ONLY /* read it when valid, never write */
};

/* <Mode> / MODE: the engine's tps_mode (docs/design.md, "Local mode"). */
enum class TPSModeRequest
{
    AUTO,   /* GLOBAL while the dense system is small and fits TPS_MAX_MEMORY */
    GLOBAL, /* one dense spline over all points */
    LOCAL   /* a partition of unity over overlapping patches */
};

/* <Solver> / SOLVER: the engine's tps_solver (docs/design.md, "The
 * iterative solve"); global models only. */
enum class TPSSolverRequest
{
    AUTO,     /* DIRECT while the dense system is small and fits, else ITERATIVE */
    DIRECT,   /* the dense factorisation */
    ITERATIVE /* preconditioned GMRES with fast products: O(N) memory */
};

enum class TPSDeviceRequest
{
    AUTO,
    CPU,
    GPU
};

/* The words of an enumerated element or option (DATA_TYPE, DEVICE, ...),
 * one table each: what the parser accepts (any case) and lists in its
 * messages, and what the open-option list offers (tps_driver.cpp). */
struct TPSChoice
{
    const char *pszName;
    int nValue; /* the enum's (or bool's) value */
};
using TPSChoices = std::vector<TPSChoice>;
extern const TPSChoices TPS_DATA_TYPE_CHOICES;   /* GDALDataType */
extern const TPSChoices TPS_DEVICE_CHOICES;      /* TPSDeviceRequest */
extern const TPSChoices TPS_PRECISION_CHOICES;   /* tps_precision */
extern const TPSChoices TPS_MODE_CHOICES;        /* TPSModeRequest */
extern const TPSChoices TPS_SOLVER_CHOICES;      /* TPSSolverRequest */
extern const TPSChoices TPS_MODEL_CACHE_CHOICES; /* TPSModelCacheMode */
/* The name of nValue in asChoices ("" if none). */
const char *TPSChoiceName(const TPSChoices &asChoices, int nValue);

/* Limits of the configuration that are the driver's, not the engine's
 * (whose own, e.g. TPS_MIN_PATCH_POINTS, are in tps.h). */
/* <PatchPoints> at most: above this a patch's dense system (3.2 GB)
 * defeats the point of patches. */
constexpr int TPS_MAX_PATCH_POINTS = 20000;
/* TPS_MAX_BANDS and TPS_MAX_SOLVES by default: far more than a user asks
 * for (a few fields, their derivatives), far less than what a hostile file
 * can: each band is a block in every read, each distinct solve an O(N^3)
 * factorisation (20,000 of them took hours). */
constexpr int TPS_DEFAULT_MAX_BANDS = 256;
constexpr int TPS_DEFAULT_MAX_SOLVES = 16;

struct TPSConfig
{
    /* What messages start with: the file name as given, the "TPS:..."
     * string, or "inline <TPSDataset>" for XML passed as the file name. */
    std::string osName;
    /* Folder that relative paths in the XML resolve against ("" = cwd). */
    std::string osBaseDir;
    /* The .tps file as given; "" for the TPS: and inline XML forms, which
     * have no file to keep a solved model next to. */
    std::string osTPSFile;

    /* <Points> */
    std::string osSource;           /* resolved (relative to the .tps file's folder) */
    std::string osLayer;            /* empty: the first layer */
    std::string osXField, osYField; /* both empty: coordinates from the geometry */
    std::string osPointsSRS;        /* empty: the layer's CRS */
    std::string osPointsSRSLabel = "<Points><SRS>"; /* or "SRS" (open option) */
    std::string osWhere;                            /* OGR attribute filter, may be empty */
    /* <WeightField> (WEIGHT_FIELD): per-point weights in the smoothing term;
     * empty: none. */
    std::string osWeightField;

    /* Output CRS; empty: the points' CRS. */
    std::string osOutputSRS;

    /* Grid. Placement: GeoTransform, Extent, or (neither) the points'
     * bounding box. Density: Size, Resolution, or (neither)
     * TPS_DEFAULT_LONG_SIDE pixels on the long side (tps_grid.h). GeoTransform always comes with Size. */
    bool bHasGeoTransform = false;
    double adfGeoTransform[6] = {0, 1, 0, 0, 0, 1};
    bool bHasExtent = false;
    double adfExtent[4] = {0, 0, 0, 0}; /* minx miny maxx maxy */
    bool bHasResolution = false;
    double adfResolution[2] = {0, 0}; /* x y, both > 0 */
    bool bHasSize = false;
    int nXSize = 0, nYSize = 0;
    /* The grid came from EXTENT/RESOLUTION/SIZE: messages name those. */
    bool bGridFromOptions = false;

    double dfSmoothing = 0.0; /* default lambda for bands without their own */
    bool bSmoothingGCV = false; /* ... or GCV (automatic) */
    GDALDataType eDataType = GDT_Float32;
    bool bHasNoData = false;
    double dfNoData = 0.0;
    /* <Mode>, <PatchPoints>, <Overlap> (open options MODE, PATCH_POINTS,
     * OVERLAP): they change the surface, so the model keys include them. */
    TPSModeRequest eMode = TPSModeRequest::AUTO;
    int nPatchPoints = TPS_DEFAULT_PATCH_POINTS;
    double dfOverlap = TPS_DEFAULT_OVERLAP;
    /* Either given: a LOCAL GCV keeps them; neither: it sizes its patches
     * from its lambda (the engine gets 0 and 0). */
    bool bPatchSizeGiven = false;
    /* <CrossValidation> / CROSS_VALIDATION: leave-one-out statistics for
     * bands of a fixed lambda too (an extra ~2/3 N^3; GCV bands always). */
    bool bCrossValidation = false;
    /* <Solver>, <SolverTolerance> (SOLVER, SOLVER_TOLERANCE): how a global
     * model's system is solved, and the iterative solve's relative
     * residual; part of the model keys when not their defaults. */
    TPSSolverRequest eSolver = TPSSolverRequest::AUTO;
    double dfSolverTolerance = TPS_DEFAULT_SOLVER_TOLERANCE;
    bool bHasBlockSize = false;
    int nBlockXSize = 256, nBlockYSize = 256; /* clamped to the raster later */
    /* <MaxDistance>, <ConvexHull> (open options MAX_DISTANCE, CONVEX_HULL):
     * pixels farther than this from every point (output CRS units; 0: no
     * such mask), or outside the points' convex hull, are NoData. Not part
     * of the model: applied to its values (tps_mask.h). */
    double dfMaxDistance = 0.0;
    bool bConvexHull = false;

    std::vector<TPSBandConfig> aoBands;
    /* <Covariate> elements (COVARIATES), in order: at most TPS_MAX_COVARIATES. */
    std::vector<TPSCovariateConfig> aoCovariates;
    /* The distinct surfaces the raster bands show, in order of first use:
     * one per (field or <GeometryZ/>, smoothing). Bands of several
     * quantities of one field share it: one solve, one set of weights.
     * What is loaded, solved, keyed and kept in the model file. (Their
     * eQuantity is VALUE and nModelBand their own index.) */
    std::vector<TPSBandConfig> aoModelBands;
    /* TPS_MAX_SOLVES: the most O(N^3) solves an open may do. */
    int nMaxSolves = TPS_DEFAULT_MAX_SOLVES;

    /* Set by TPSApplySourcePolicy (tps_source_policy.h), for the loader:
     * the only GDAL drivers that may read the source (empty: any), and the
     * folder every file of the source must resolve into ("": anywhere). */
    std::vector<std::string> aosSourceDrivers{};
    std::string osSourceFolder{};

    /* Open options that are not about the model. */
    int nNumThreads = 1;
    TPSDeviceRequest eDevice = TPSDeviceRequest::AUTO;
    tps_precision ePrecision = TPS_PRECISION_DOUBLE; /* PRECISION (GPU only) */
    double dfTolerance = TPS_DEFAULT_TOLERANCE;     /* TOLERANCE: MIXED's, x band range */
    TPSModelCacheMode eModelCache = TPSModelCacheMode::YES;
};

/* Fills *psConfig from pszFilename (a .tps path, "TPS:<source>", or XML
 * text starting with <TPSDataset) and the open options. On failure emits
 * exactly one CE_Failure whose message starts with the name, and returns
 * false. Warnings (unknown elements) may be emitted on success. */
bool TPSParseConfig(const char *pszFilename, CSLConstList papszOpenOptions, TPSConfig *psConfig);

/* The O(N^3) solves the model bands need at least: one per distinct fixed
 * smoothing (bands of one share a factorisation), one per GCV band.
 * Missing values may split a smoothing into more (the engine factorises
 * bands together only when they miss the same points). */
size_t TPSDistinctSolves(const TPSConfig &oConfig);

#endif /* TPS_CONFIG_H */
