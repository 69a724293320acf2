/*
 * tps_driver.cpp: the GDAL "TPS" driver: registration, Identify, Open.
 *
 * A plugin not listed in GDAL's drivers.ini registers before the built-in
 * drivers, so Identify runs for every file any GDAL program opens: it
 * looks only at the name and the header bytes GDAL has already read.
 */
#include "tps_config.h"
#include "tps_dataset.h"
#include "tps_grid.h"
#include "tps_source_policy.h"

#include "cpl_port.h"
#include "cpl_string.h"
#include "gdal_priv.h"

#include <cctype>
#include <cstring>
#include <string>

extern "C" __attribute__((visibility("default"))) void GDALRegister_TPS();

namespace
{

constexpr const char ROOT_TAG[] = "<TPSDataset";
constexpr int ROOT_TAG_LEN = sizeof(ROOT_TAG) - 1;

/* True if pszText (of nLen bytes) starts, after a UTF-8 BOM, blanks and an
 * optional <?xml ...?> declaration, with the <TPSDataset element. */
bool StartsWithRootTag(const char *pszText, int nLen)
{
    int i = 0;
    if (nLen >= 3 && memcmp(pszText, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    auto SkipBlanks = [&]() {
        while (i < nLen && std::isspace(static_cast<unsigned char>(pszText[i])))
            i++;
    };
    SkipBlanks();
    if (nLen - i >= 5 && memcmp(pszText + i, "<?xml", 5) == 0)
    {
        for (i += 5; i + 1 < nLen && !(pszText[i] == '?' && pszText[i + 1] == '>'); i++)
        {
        }
        if (i + 1 >= nLen)
            return false;
        i += 2;
        SkipBlanks();
    }
    if (nLen - i < ROOT_TAG_LEN || memcmp(pszText + i, ROOT_TAG, ROOT_TAG_LEN) != 0)
        return false;
    // "<TPSDatasetX" is another element.
    if (nLen - i == ROOT_TAG_LEN)
        return true;
    const char chNext = pszText[i + ROOT_TAG_LEN];
    return chNext == '>' || chNext == '/' || std::isspace(static_cast<unsigned char>(chNext));
}

bool HasTPSExtension(const char *pszFilename)
{
    const char *pszDot = strrchr(pszFilename, '.');
    if (pszDot == nullptr || strchr(pszDot, '/') != nullptr || strchr(pszDot, '\\') != nullptr)
        return false;
    return EQUAL(pszDot + 1, "tps");
}

/* The caller named this driver among the drivers it allows (gdalinfo -if
 * TPS, OpenEx's allowed drivers). */
bool CallerAskedForTPS(const GDALOpenInfo *poOpenInfo)
{
    const char *const *papszAllowed = poOpenInfo->papszAllowedDrivers;
    return papszAllowed != nullptr && CSLFindString(papszAllowed, "TPS") >= 0;
}

/* What the driver claims (docs/security.md, "Identification"):
 *  - the strings an application passes on purpose: "TPS:<source>" and XML
 *    text starting with <TPSDataset (as VRT takes <VRTDataset>);
 *  - files named *.tps (any case);
 *  - a file of another name whose content starts with <TPSDataset only
 *    when the caller asked for this driver: a service that accepts, say,
 *    .xml or .tif uploads by their extension must not have them read
 *    points from elsewhere. */
int TPSDriverIdentify(GDALOpenInfo *poOpenInfo)
{
    const char *pszFilename = poOpenInfo->pszFilename;
    if (STARTS_WITH_CI(pszFilename, "TPS:"))
        return TRUE;
    // XML text given as the file name, as VRT allows.
    if (STARTS_WITH(pszFilename, ROOT_TAG))
        return TRUE;
    if (poOpenInfo->bIsDirectory)
        return FALSE;
    if (HasTPSExtension(pszFilename))
        return TRUE;
    return CallerAskedForTPS(poOpenInfo) && poOpenInfo->nHeaderBytes > 0 &&
           StartsWithRootTag(reinterpret_cast<const char *>(poOpenInfo->pabyHeader),
                             poOpenInfo->nHeaderBytes);
}

GDALDataset *TPSDriverOpen(GDALOpenInfo *poOpenInfo)
{
    if (!TPSDriverIdentify(poOpenInfo))
        return nullptr;
    if (poOpenInfo->eAccess == GA_Update)
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "%s: the TPS driver is read-only: open without update access",
                 STARTS_WITH(poOpenInfo->pszFilename, ROOT_TAG) ? "inline <TPSDataset>"
                                                                : poOpenInfo->pszFilename);
        return nullptr;
    }
    TPSConfig oConfig;
    if (!TPSParseConfig(poOpenInfo->pszFilename, poOpenInfo->papszOpenOptions, &oConfig))
        return nullptr;
    // Before anything touches the source (the model cache's key stats it).
    if (!TPSApplySourcePolicy(&oConfig) || !TPSApplyCovariatePolicy(&oConfig))
        return nullptr;
    std::unique_ptr<TPSDataset> poDS = TPSDataset::Open(std::move(oConfig));
    if (!poDS)
        return nullptr;
    poDS->SetDescription(poOpenInfo->pszFilename);
    return poDS.release();
}

/* One <Option> of a string-select: its values from the parser's table, its
 * default the configuration's own (tps_config.h). */
std::string SelectOption(const char *pszName, const TPSChoices &asChoices, int nDefault,
                         const char *pszDescription)
{
    std::string os = CPLSPrintf("  <Option name='%s' type='string-select' default='%s' "
                                "description='%s'>",
                                pszName, TPSChoiceName(asChoices, nDefault), pszDescription);
    for (const TPSChoice &oChoice : asChoices)
        os += CPLSPrintf("<Value>%s</Value>", oChoice.pszName);
    return os + "</Option>";
}

/* The open options GDAL lists (gdalinfo --format TPS). Every default and
 * limit comes from where it is stated: the engine's constants (tps.h), the
 * driver's limits and a default-constructed TPSConfig (tps_config.h), as
 * KEA builds its list with CPLSPrintf. */
std::string OpenOptionList()
{
    const TPSConfig oDefault;
    const auto YesNo = [](bool b) { return b ? "YES" : "NO"; };
    std::string os = "<OpenOptionList>";
    os += "  <Option name='FIELD' type='string' description='Attribute to interpolate; "
          "comma-separated for several bands. Required with TPS:; for a .tps file it replaces "
          "the Band list'/>"
          "  <Option name='LAYER' type='string' description='Layer of the point source "
          "(default: the first)'/>"
          "  <Option name='XFIELD' type='string' description='Attribute holding the X "
          "coordinate (default: the point geometry)'/>"
          "  <Option name='YFIELD' type='string' description='Attribute holding the Y "
          "coordinate (with XFIELD)'/>"
          "  <Option name='SRS' type='string' description='CRS of the points, e.g. EPSG:28992 "
          "(assigns or overrides the layer CRS); also the output CRS unless the .tps file "
          "gives one'/>"
          "  <Option name='EXTENT' type='string' description='Output extent: "
          "minx,miny,maxx,maxy (default: the bounding box of the points)'/>"
          "  <Option name='RESOLUTION' type='string' description='Pixel size: xres[,yres]'/>";
    os += CPLSPrintf("  <Option name='SIZE' type='string' description='Raster size: "
                     "columns,rows (default: %d pixels on the long side). EXTENT, RESOLUTION "
                     "and SIZE replace the grid of a .tps file'/>",
                     TPS_DEFAULT_LONG_SIDE);
    os += CPLSPrintf("  <Option name='SMOOTHING' type='string' default='%g' "
                     "description='Smoothing lambda &gt;= 0 (0: exact interpolation) or GCV "
                     "(chosen by generalised cross-validation; a LOCAL model chooses one "
                     "lambda over its patches), one value or one per band, comma-separated'/>",
                     oDefault.dfSmoothing);
    os += SelectOption("DATA_TYPE", TPS_DATA_TYPE_CHOICES, oDefault.eDataType,
                       "Data type of the bands");
    os += "  <Option name='NUM_THREADS' type='string' description='Evaluation threads: a "
          "number or ALL_CPUS (default: GDAL_NUM_THREADS, else all CPUs)'/>";
    os += SelectOption("DEVICE", TPS_DEVICE_CHOICES, static_cast<int>(oDefault.eDevice),
                       "Evaluation backend");
    os += SelectOption("PRECISION", TPS_PRECISION_CHOICES, oDefault.ePrecision,
                       "GPU arithmetic: DOUBLE (FP64, within 1e-9 of the value range of the "
                       "CPU path), MIXED (FP32 near points, FP64 expansions of the far ones: "
                       "faster; within TOLERANCE, guaranteed: a block that cannot be is "
                       "recomputed in DOUBLE) or AUTO (the fastest that meets TOLERANCE)");
    os += CPLSPrintf("  <Option name='TOLERANCE' type='float' default='%g' "
                     "description='PRECISION=MIXED or AUTO: the largest error allowed, relative "
                     "to each band&apos;s data range'/>",
                     oDefault.dfTolerance);
    os += SelectOption("MODE", TPS_MODE_CHOICES, static_cast<int>(oDefault.eMode),
                       CPLSPrintf("GLOBAL: one dense spline; LOCAL: blended patches (millions "
                                  "of points); AUTO: GLOBAL up to %d points (%d with a GPU, "
                                  "%d with a GCV band, %d with CROSS_VALIDATION) when it fits "
                                  "TPS_MAX_MEMORY",
                                  TPS_AUTO_GLOBAL_MAX_POINTS, TPS_AUTO_GLOBAL_MAX_POINTS_GPU,
                                  TPS_AUTO_GLOBAL_MAX_POINTS_GCV, TPS_AUTO_GLOBAL_MAX_POINTS));
    os += SelectOption("SOLVER", TPS_SOLVER_CHOICES, static_cast<int>(oDefault.eSolver),
                       CPLSPrintf("Global models: DIRECT (dense factorisation), ITERATIVE "
                                  "(preconditioned GMRES with fast products: O(N) memory, "
                                  "10^5-10^6 points) or AUTO: DIRECT up to %d points (%d when "
                                  "a GPU can solve) when it fits TPS_MAX_MEMORY",
                                  TPS_AUTO_DIRECT_MAX_POINTS, TPS_AUTO_GLOBAL_MAX_POINTS_GPU));
    os += CPLSPrintf("  <Option name='SOLVER_TOLERANCE' type='float' default='%g' min='1e-14' "
                     "max='1e-06' description='ITERATIVE: the relative residual of the "
                     "spline&apos;s system to reach'/>",
                     oDefault.dfSolverTolerance);
    os += CPLSPrintf("  <Option name='PATCH_POINTS' type='int' default='%d' min='%d' max='%d' "
                     "description='LOCAL: most points per quadtree cell (GCV without it and "
                     "OVERLAP: sized from its lambda)'/>",
                     oDefault.nPatchPoints, TPS_MIN_PATCH_POINTS, TPS_MAX_PATCH_POINTS);
    os += CPLSPrintf("  <Option name='OVERLAP' type='float' default='%g' "
                     "description='LOCAL: patch enlargement factor, in (1, %g] (as PATCH_POINTS "
                     "for GCV)'/>",
                     oDefault.dfOverlap, TPS_MAX_OVERLAP);
    os += "  <Option name='MAX_DISTANCE' type='float' description='Pixels farther than this "
          "from every point (output CRS units) are NoData'/>";
    os += CPLSPrintf("  <Option name='CONVEX_HULL' type='boolean' default='%s' "
                     "description='Pixels outside the convex hull of the points are NoData'/>",
                     YesNo(oDefault.bConvexHull));
    os += CPLSPrintf("  <Option name='COVARIATES' type='string' description='Linear "
                     "covariates of the fixed part (a partial spline, as R fields::Tps(Z=)): "
                     "field:raster[,field:raster], at most %d; the raster gives the values at "
                     "every pixel (bilinear), the field at the points (empty: sampled from the "
                     "raster)'/>",
                     TPS_MAX_COVARIATES);
    os += "  <Option name='WEIGHT_FIELD' type='string' description='Attribute holding each "
          "point&apos;s weight (finite, &gt; 0; e.g. 1 / measurement variance) in the "
          "smoothing term'/>";
    os += CPLSPrintf("  <Option name='CROSS_VALIDATION' type='boolean' default='%s' "
                     "description='Leave-one-out RMSE and MAE in the TPS metadata for bands of "
                     "a fixed smoothing too (GCV bands always have them): one extra O(N^3) "
                     "(LOCAL: per patch, blended)'/>",
                     YesNo(oDefault.bCrossValidation));
    os += SelectOption("MODEL_CACHE", TPS_MODEL_CACHE_CHOICES,
                       static_cast<int>(oDefault.eModelCache),
                       "Keep the solved model in &lt;name&gt;.tps.model and reuse it while it "
                       "matches the points and settings: YES, NO, or READ_ONLY (reuse, never "
                       "write). Default: the TPS_MODEL_CACHE configuration option, else YES");
    return os + "</OpenOptionList>";
}

/* The names <Quantity> takes, from the engine's table, comma-separated:
 * clients (the QGIS algorithm) offer exactly these. */
std::string QuantityList()
{
    std::string os;
    for (size_t i = 0; i < tps_quantity_count(); ++i)
        os += (i ? "," : "") + std::string(tps_quantity_info(static_cast<tps_quantity>(i))->name);
    return os;
}

} // namespace

void GDALRegister_TPS()
{
    // The C++ ABI changes with each GDAL minor release.
    if (!GDAL_CHECK_VERSION("TPS"))
        return;
    if (GDALGetDriverByName("TPS") != nullptr)
        return;

    auto *poDriver = new GDALDriver();
    poDriver->SetDescription("TPS");
    poDriver->SetMetadataItem(GDAL_DCAP_RASTER, "YES");
    poDriver->SetMetadataItem(GDAL_DCAP_VIRTUALIO, "YES");
    poDriver->SetMetadataItem(GDAL_DMD_LONGNAME, "Thin plate spline surface from points");
    poDriver->SetMetadataItem(GDAL_DMD_EXTENSIONS, "tps");
    poDriver->SetMetadataItem(GDAL_DMD_HELPTOPIC, "docs/format.md");
    poDriver->SetMetadataItem(GDAL_DMD_CONNECTION_PREFIX, "TPS:");
    poDriver->SetMetadataItem(GDAL_DMD_OPENOPTIONLIST, OpenOptionList().c_str());
    poDriver->SetMetadataItem("TPS_QUANTITIES", QuantityList().c_str());
    poDriver->pfnIdentify = TPSDriverIdentify;
    poDriver->pfnOpen = TPSDriverOpen;
    GetGDALDriverManager()->RegisterDriver(poDriver);
}
