/*
 * tps_config_parse.cpp: the .tps XML and the TPS: open options into a
 * TPSConfig: the structure (which elements, which options, what overrides
 * what); each value's text is read by tps_config_values.cpp.
 *
 * Strict on purpose: a typo in a number or a size of 0 is reported with
 * the file name, the element (or option) and the offending text, instead
 * of silently producing a raster the user did not ask for. Unknown
 * elements only warn, so that files written for a newer driver still open.
 *
 * Open options apply to both forms. For a .tps file an open option
 * overrides the corresponding element; the grid options (EXTENT,
 * RESOLUTION, SIZE) replace the file's whole grid (GeoTransform, Extent,
 * Resolution, Size) as soon as one of them is given, because mixing, say,
 * a file's GeoTransform with a RESOLUTION option has no obvious meaning.
 * FIELD replaces the file's <Band> list; SMOOTHING overrides every band's
 * smoothing, per-band ones included.
 */
#include "tps_config_parser.h"

#include "tps_errors.h"
#include "tps_grid.h"
#include "tps_paths.h"

#include "cpl_conv.h"
#include "cpl_error.h"
#include "cpl_minixml.h"
#include "cpl_multiproc.h"
#include "cpl_string.h"
#include "cpl_vsi.h"
#include "gdal_version.h"

#include <algorithm>
#include <climits>
#include <cstdarg>
#include <memory>
#include <set>

namespace
{

/* A .tps file is a few hundred bytes; anything this big is not one. */
constexpr int MAX_TPS_FILE_BYTES = 16 * 1024 * 1024;

std::string GetDirName(const char *pszPath)
{
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    return CPLGetPathSafe(pszPath);
#else
    return CPLGetPath(pszPath);
#endif
}

/* Concatenated text children, trimmed. */
std::string NodeText(const CPLXMLNode *psNode)
{
    std::string osText;
    for (const CPLXMLNode *psChild = psNode->psChild; psChild; psChild = psChild->psNext)
    {
        if (psChild->eType == CXT_Text && psChild->pszValue)
            osText += psChild->pszValue;
    }
    return TPSConfigParser::Trim(osText);
}

} // namespace

bool TPSConfigParser::Fail(CPLErrorNum nNum, const std::string &osLabel, const char *pszFmt, ...)
{
    va_list args;
    va_start(args, pszFmt);
    const std::string osMsg = CPLString().vPrintf(pszFmt, args);
    va_end(args);
    const std::string osFull =
        m_oConfig.osName + ": " + (osLabel.empty() ? std::string() : osLabel + ": ") + osMsg;
    CPLError(CE_Failure, nNum, "%s", TPSSanitize(osFull).c_str());
    return false;
}

void TPSConfigParser::Warn(const char *pszFmt, ...)
{
    va_list args;
    va_start(args, pszFmt);
    const std::string osMsg = CPLString().vPrintf(pszFmt, args);
    va_end(args);
    CPLError(CE_Warning, CPLE_AppDefined, "%s",
             TPSSanitize(m_oConfig.osName + ": " + osMsg).c_str());
}

std::string TPSConfigParser::ResolveSource(const std::string &osSource) const
{
    return TPSResolvePath(m_oConfig.osBaseDir, osSource);
}

bool TPSConfigParser::ParsePoints(const CPLXMLNode *psPoints)
{
    std::set<std::string> oSeen;
    for (const CPLXMLNode *psChild = psPoints->psChild; psChild; psChild = psChild->psNext)
    {
        if (psChild->eType != CXT_Element)
            continue;
        const std::string osElt = psChild->pszValue;
        const std::string osLabel = "<Points><" + osElt + ">";
        const std::string osText = NodeText(psChild);
        std::string *posTarget = nullptr;
        if (osElt == "Source")
            posTarget = &m_oConfig.osSource;
        else if (osElt == "Layer")
            posTarget = &m_oConfig.osLayer;
        else if (osElt == "XField")
            posTarget = &m_oConfig.osXField;
        else if (osElt == "YField")
            posTarget = &m_oConfig.osYField;
        else if (osElt == "SRS")
            posTarget = &m_oConfig.osPointsSRS;
        else if (osElt == "Where")
            posTarget = &m_oConfig.osWhere;
        else if (osElt == "WeightField")
            posTarget = &m_oConfig.osWeightField;
        else
        {
            Warn("ignoring unknown element <%s> in <Points>", TPSShown(osElt).c_str());
            continue;
        }
        if (!oSeen.insert(osElt).second)
            return Fail(CPLE_AppDefined, osLabel, "given more than once");
        if (osText.empty())
            return Fail(CPLE_IllegalArg, osLabel, "empty");
        *posTarget = osText;
    }
    if (m_oConfig.osSource.empty())
        return Fail(CPLE_AppDefined, "<Points>", "missing <Source>");
    m_oConfig.osSource = ResolveSource(m_oConfig.osSource);
    return true;
}

bool TPSConfigParser::ParseBand(const CPLXMLNode *psBand, int iBand)
{
    TPSBandConfig oBand;
    const std::string osBandLabel = CPLSPrintf("<Band> #%d", iBand + 1);
    std::set<std::string> oSeen;
    for (const CPLXMLNode *psChild = psBand->psChild; psChild; psChild = psChild->psNext)
    {
        if (psChild->eType != CXT_Element)
            continue;
        const std::string osElt = psChild->pszValue;
        const std::string osLabel = osBandLabel + ": <" + osElt + ">";
        if (osElt != "Field" && osElt != "GeometryZ" && osElt != "Smoothing" &&
            osElt != "Description" && osElt != "Quantity")
        {
            Warn("ignoring unknown element <%s> in %s", TPSShown(osElt).c_str(),
                 osBandLabel.c_str());
            continue;
        }
        if (!oSeen.insert(osElt).second)
            return Fail(CPLE_AppDefined, osLabel, "given more than once");
        const std::string osText = NodeText(psChild);
        if (osElt == "Field")
        {
            if (osText.empty())
                return Fail(CPLE_IllegalArg, osLabel, "empty");
            oBand.osField = osText;
        }
        else if (osElt == "GeometryZ")
            oBand.bGeometryZ = true;
        else if (osElt == "Smoothing")
        {
            if (!ParseSmoothingValue(osLabel, osText, &oBand.dfSmoothing, &oBand.bSmoothingGCV))
                return false;
            oBand.bHasSmoothing = true;
        }
        else if (osElt == "Quantity")
        {
            if (!ParseQuantity(osLabel, osText, &oBand.eQuantity))
                return false;
        }
        else
            oBand.osDescription = osText;
    }
    if (oBand.bGeometryZ == !oBand.osField.empty())
        return Fail(CPLE_AppDefined, osBandLabel,
                    "expected exactly one of <Field> or <GeometryZ/>");
    m_oConfig.aoBands.push_back(oBand);
    return true;
}

std::string TPSCovariateConfig::Name() const
{
    if (!osField.empty())
        return osField;
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    const std::string osFile = CPLGetFilenameSafe(osRaster.c_str());
#else
    const std::string osFile = CPLGetFilename(osRaster.c_str());
#endif
    return nBand == 1 ? osFile : osFile + CPLSPrintf(":%d", nBand);
}

bool TPSConfigParser::ParseCovariate(const CPLXMLNode *psCovariate, int iCovariate)
{
    const std::string osCovLabel = CPLSPrintf("<Covariate> #%d", iCovariate + 1);
    if (iCovariate >= TPS_MAX_COVARIATES)
        return Fail(CPLE_NotSupported, osCovLabel, "at most %d covariates", TPS_MAX_COVARIATES);
    TPSCovariateConfig oCov;
    std::set<std::string> oSeen;
    for (const CPLXMLNode *psChild = psCovariate->psChild; psChild; psChild = psChild->psNext)
    {
        if (psChild->eType != CXT_Element)
            continue;
        const std::string osElt = psChild->pszValue;
        const std::string osLabel = osCovLabel + ": <" + osElt + ">";
        if (osElt != "Field" && osElt != "Raster" && osElt != "Band")
        {
            Warn("ignoring unknown element <%s> in %s", TPSShown(osElt).c_str(),
                 osCovLabel.c_str());
            continue;
        }
        if (!oSeen.insert(osElt).second)
            return Fail(CPLE_AppDefined, osLabel, "given more than once");
        const std::string osText = NodeText(psChild);
        if (osText.empty())
            return Fail(CPLE_IllegalArg, osLabel, "empty");
        if (osElt == "Field")
            oCov.osField = osText;
        else if (osElt == "Raster")
            oCov.osRaster = ResolveSource(osText);
        else
        {
            bool bTooLarge = false;
            if (!ParsePositiveInt(osText, 65535, &oCov.nBand, &bTooLarge))
                return Fail(CPLE_IllegalArg, osLabel, "expected a band number >= 1, got '%s'",
                            TPSShown(osText).c_str());
        }
    }
    if (oCov.osRaster.empty())
        return Fail(CPLE_AppDefined, osCovLabel,
                    "missing <Raster>: a covariate needs its values at every pixel");
    m_oConfig.aoCovariates.push_back(oCov);
    return true;
}

/* COVARIATES=field:raster[,field:raster]: the field before the first ':'
 * (empty: sampled from the raster at the points), band 1; it replaces the
 * file's <Covariate> list. */
bool TPSConfigParser::ParseCovariatesOption(const char *pszValue)
{
    m_oConfig.aoCovariates.clear();
    const CPLStringList aosItems(CSLTokenizeString2(pszValue, ",", CSLT_ALLOWEMPTYTOKENS));
    for (int i = 0; i < aosItems.size(); i++)
    {
        const std::string osItem = Trim(aosItems[i]);
        const size_t nColon = osItem.find(':');
        if (osItem.empty() || nColon == std::string::npos ||
            Trim(osItem.substr(nColon + 1)).empty())
            return Fail(CPLE_IllegalArg, "COVARIATES",
                        "expected field:raster[,field:raster] (an empty field samples the "
                        "raster at the points), got '%s'",
                        TPSShown(pszValue).c_str());
        if (i >= TPS_MAX_COVARIATES)
            return Fail(CPLE_NotSupported, "COVARIATES", "at most %d covariates",
                        TPS_MAX_COVARIATES);
        TPSCovariateConfig oCov;
        oCov.osField = Trim(osItem.substr(0, nColon));
        oCov.osRaster = ResolveSource(Trim(osItem.substr(nColon + 1)));
        m_oConfig.aoCovariates.push_back(oCov);
    }
    return true;
}

bool TPSConfigParser::ConfigCount(const char *pszOption, int nDefault, int *pnValue)
{
    const char *pszValue = CPLGetConfigOption(pszOption, nullptr);
    *pnValue = nDefault;
    if (pszValue == nullptr)
        return true;
    bool bTooLarge = false;
    if (!ParsePositiveInt(Trim(pszValue), INT_MAX, pnValue, &bTooLarge))
        return Fail(CPLE_IllegalArg, pszOption, "expected a whole number >= 1, got '%s'",
                    TPSShown(pszValue).c_str());
    return true;
}

/* TPS_MAX_BANDS, checked while the bands are counted: a file of 20,000
 * <Band> elements is refused at the first one too many. */
bool TPSConfigParser::TooManyBands(size_t nBands)
{
    int nMax = TPS_DEFAULT_MAX_BANDS;
    if (!ConfigCount("TPS_MAX_BANDS", TPS_DEFAULT_MAX_BANDS, &nMax))
        return true;
    if (nBands <= static_cast<size_t>(nMax))
        return false;
    Fail(CPLE_NotSupported, "", "more than %d bands: TPS_MAX_BANDS=%d caps the bands of a data "
         "set (each is computed in every read); raise it to open this file", nMax, nMax);
    return true;
}

bool TPSConfigParser::ParseRoot(const CPLXMLNode *psRoot)
{
    std::set<std::string> oSeen;
    bool bHasPoints = false;
    int nBands = 0, nCovariates = 0;
    for (const CPLXMLNode *psChild = psRoot->psChild; psChild; psChild = psChild->psNext)
    {
        if (psChild->eType != CXT_Element)
            continue;
        const std::string osElt = psChild->pszValue;
        const std::string osLabel = "<" + osElt + ">";
        if (osElt == "Band")
        {
            if (TooManyBands(static_cast<size_t>(nBands) + 1))
                return false;
            if (!ParseBand(psChild, nBands++))
                return false;
            continue;
        }
        if (osElt == "Covariate")
        {
            if (!ParseCovariate(psChild, nCovariates++))
                return false;
            continue;
        }
        static const char *const apszKnown[] = {
            "Points",     "SRS",       "GeoTransform", "Size",        "Extent",
            "Resolution", "Smoothing", "DataType",     "NoDataValue", "BlockSize",
            "Mode",       "PatchPoints", "Overlap",
            "MaxDistance", "ConvexHull", "CrossValidation", "Solver", "SolverTolerance"};
        bool bKnown = false;
        for (const char *pszKnown : apszKnown)
            bKnown = bKnown || osElt == pszKnown;
        if (!bKnown)
        {
            Warn("ignoring unknown element <%s> in <TPSDataset>", TPSShown(osElt).c_str());
            continue;
        }
        if (!oSeen.insert(osElt).second)
            return Fail(CPLE_AppDefined, osLabel, "given more than once");
        if (osElt == "Points")
        {
            if (!ParsePoints(psChild))
                return false;
            bHasPoints = true;
            continue;
        }
        const std::string osText = NodeText(psChild);
        if (osText.empty())
            return Fail(CPLE_IllegalArg, osLabel, "empty");
        bool bOK = true;
        if (osElt == "SRS")
            m_oConfig.osOutputSRS = osText;
        else if (osElt == "GeoTransform")
            bOK = ParseGeoTransform(osLabel, osText);
        else if (osElt == "Size")
            bOK = ParseSize(osLabel, osText);
        else if (osElt == "Extent")
            bOK = ParseExtent(osLabel, osText);
        else if (osElt == "Resolution")
            bOK = ParseResolution(osLabel, osText);
        else if (osElt == "Smoothing")
            bOK = ParseSmoothingValue(osLabel, osText, &m_oConfig.dfSmoothing,
                                      &m_oConfig.bSmoothingGCV);
        else if (osElt == "DataType")
            bOK = ParseDataType(osLabel, osText);
        else if (osElt == "NoDataValue")
            bOK = ParseNoData(osLabel, osText);
        else if (osElt == "BlockSize")
            bOK = ParseBlockSize(osLabel, osText);
        else if (osElt == "Mode")
            bOK = ParseMode(osLabel, osText);
        else if (osElt == "PatchPoints")
            bOK = ParsePatchPoints(osLabel, osText);
        else if (osElt == "Overlap")
            bOK = ParseOverlap(osLabel, osText);
        else if (osElt == "MaxDistance")
            bOK = ParseMaxDistance(osLabel, osText);
        else if (osElt == "ConvexHull")
            bOK = ParseConvexHull(osLabel, osText);
        else if (osElt == "CrossValidation")
            bOK = ParseCrossValidation(osLabel, osText);
        else if (osElt == "Solver")
            bOK = ParseSolver(osLabel, osText);
        else if (osElt == "SolverTolerance")
            bOK = ParseSolverTolerance(osLabel, osText);
        if (!bOK)
            return false;
    }
    if (!bHasPoints)
        return Fail(CPLE_AppDefined, "", "missing <Points>");
    return true;
}

bool TPSConfigParser::ParseXMLText(const std::string &osText)
{
    CPLXMLNode *psTree = nullptr;
    std::string osParseError;
    {
        // CPLParseXMLString reports its own error: fold it into ours.
        TPSErrorCapture oCapture;
        psTree = CPLParseXMLString(osText.c_str());
        osParseError = oCapture.LastFailure();
    }
    std::unique_ptr<CPLXMLNode, decltype(&CPLDestroyXMLNode)> poTree(psTree, CPLDestroyXMLNode);
    if (!poTree || !osParseError.empty())
        return Fail(CPLE_OpenFailed, "", "malformed XML%s%s", osParseError.empty() ? "" : ": ",
                    osParseError.c_str());
    const CPLXMLNode *psRoot = CPLGetXMLNode(poTree.get(), "=TPSDataset");
    if (psRoot == nullptr)
    {
        const CPLXMLNode *psFirst = poTree.get();
        while (psFirst && psFirst->eType != CXT_Element)
            psFirst = psFirst->psNext;
        while (psFirst && psFirst->pszValue && psFirst->pszValue[0] == '?')
            psFirst = psFirst->psNext; // <?xml ...?>
        return Fail(CPLE_OpenFailed, "", "missing root element <TPSDataset>%s%s%s",
                    psFirst ? " (found <" : "", psFirst ? psFirst->pszValue : "",
                    psFirst ? ">)" : "");
    }
    return ParseRoot(psRoot);
}

bool TPSConfigParser::ApplyOpenOptions(CSLConstList papszOpenOptions, bool bConnectionForm)
{
    auto Fetch = [papszOpenOptions](const char *pszKey) -> const char * {
        return CSLFetchNameValue(papszOpenOptions, pszKey);
    };
    // String options: an empty value is a mistake, not "unset".
    struct StringOption
    {
        const char *pszKey;
        std::string *posTarget;
    };
    const StringOption asStrings[] = {{"LAYER", &m_oConfig.osLayer},
                                      {"XFIELD", &m_oConfig.osXField},
                                      {"YFIELD", &m_oConfig.osYField},
                                      {"SRS", &m_oConfig.osPointsSRS},
                                      {"WEIGHT_FIELD", &m_oConfig.osWeightField}};
    for (const auto &oOpt : asStrings)
    {
        const char *pszValue = Fetch(oOpt.pszKey);
        if (pszValue == nullptr)
            continue;
        const std::string osValue = Trim(pszValue);
        if (osValue.empty())
            return Fail(CPLE_IllegalArg, oOpt.pszKey, "empty value");
        *oOpt.posTarget = osValue;
        if (oOpt.posTarget == &m_oConfig.osPointsSRS)
            m_oConfig.osPointsSRSLabel = "SRS";
    }

    if (const char *pszFields = Fetch("FIELD"))
    {
        m_oConfig.aoBands.clear();
        const CPLStringList aosFields(CSLTokenizeString2(pszFields, ",", CSLT_ALLOWEMPTYTOKENS));
        for (int i = 0; i < aosFields.size(); i++)
        {
            const std::string osField = Trim(aosFields[i]);
            if (osField.empty())
                return Fail(CPLE_IllegalArg, "FIELD",
                            "expected a comma-separated list of attribute names, got '%s'",
                            TPSShown(pszFields).c_str());
            if (TooManyBands(m_oConfig.aoBands.size() + 1))
                return false;
            TPSBandConfig oBand;
            oBand.osField = osField;
            m_oConfig.aoBands.push_back(oBand);
        }
        if (m_oConfig.aoBands.empty())
            return Fail(CPLE_IllegalArg, "FIELD", "empty value");
    }
    else if (bConnectionForm)
        return Fail(CPLE_AppDefined, "FIELD",
                    "missing: give -oo FIELD=<attribute> (comma-separated for several bands)");

    const char *pszExtent = Fetch("EXTENT");
    const char *pszResolution = Fetch("RESOLUTION");
    const char *pszSize = Fetch("SIZE");
    if (pszExtent || pszResolution || pszSize)
    {
        m_oConfig.bHasGeoTransform = false;
        m_oConfig.bHasExtent = false;
        m_oConfig.bHasResolution = false;
        m_oConfig.bHasSize = false;
        m_oConfig.bGridFromOptions = true;
        if (pszExtent && !ParseExtent("EXTENT", Trim(pszExtent)))
            return false;
        if (pszResolution && !ParseResolution("RESOLUTION", Trim(pszResolution)))
            return false;
        if (pszSize && !ParseSize("SIZE", Trim(pszSize)))
            return false;
    }

    if (const char *pszSmoothing = Fetch("SMOOTHING"))
    {
        const CPLStringList aosValues(CSLTokenizeString2(pszSmoothing, ",", CSLT_ALLOWEMPTYTOKENS));
        const size_t nBands = m_oConfig.aoBands.size();
        if (aosValues.size() == 1)
        {
            if (!ParseSmoothingValue("SMOOTHING", Trim(aosValues[0]), &m_oConfig.dfSmoothing,
                                     &m_oConfig.bSmoothingGCV))
                return false;
            for (auto &oBand : m_oConfig.aoBands)
                oBand.bHasSmoothing = false;
        }
        else if (static_cast<size_t>(aosValues.size()) == nBands)
        {
            for (size_t i = 0; i < nBands; i++)
            {
                if (!ParseSmoothingValue("SMOOTHING", Trim(aosValues[static_cast<int>(i)]),
                                         &m_oConfig.aoBands[i].dfSmoothing,
                                         &m_oConfig.aoBands[i].bSmoothingGCV))
                    return false;
                m_oConfig.aoBands[i].bHasSmoothing = true;
            }
        }
        else
            return Fail(CPLE_IllegalArg, "SMOOTHING",
                        "expected one value or one per band (%d), got '%s'",
                        static_cast<int>(nBands), TPSShown(pszSmoothing).c_str());
    }

    if (const char *pszType = Fetch("DATA_TYPE"))
    {
        if (!ParseDataType("DATA_TYPE", Trim(pszType)))
            return false;
    }
    if (const char *pszDevice = Fetch("DEVICE"))
    {
        if (!ParseDevice("DEVICE", Trim(pszDevice)))
            return false;
    }
    if (const char *pszPrecision = Fetch("PRECISION"))
    {
        if (!ParsePrecision("PRECISION", Trim(pszPrecision)))
            return false;
    }
    if (const char *pszTolerance = Fetch("TOLERANCE"))
    {
        if (!ParseTolerance("TOLERANCE", Trim(pszTolerance)))
            return false;
    }
    if (const char *pszMode = Fetch("MODE"))
    {
        if (!ParseMode("MODE", Trim(pszMode)))
            return false;
    }
    if (const char *pszSolver = Fetch("SOLVER"))
    {
        if (!ParseSolver("SOLVER", Trim(pszSolver)))
            return false;
    }
    if (const char *pszTolerance = Fetch("SOLVER_TOLERANCE"))
    {
        if (!ParseSolverTolerance("SOLVER_TOLERANCE", Trim(pszTolerance)))
            return false;
    }
    if (const char *pszPatch = Fetch("PATCH_POINTS"))
    {
        if (!ParsePatchPoints("PATCH_POINTS", Trim(pszPatch)))
            return false;
    }
    if (const char *pszOverlap = Fetch("OVERLAP"))
    {
        if (!ParseOverlap("OVERLAP", Trim(pszOverlap)))
            return false;
    }
    if (const char *pszMaxDistance = Fetch("MAX_DISTANCE"))
    {
        if (!ParseMaxDistance("MAX_DISTANCE", Trim(pszMaxDistance)))
            return false;
    }
    if (const char *pszHull = Fetch("CONVEX_HULL"))
    {
        if (!ParseConvexHull("CONVEX_HULL", Trim(pszHull)))
            return false;
    }
    if (const char *pszCV = Fetch("CROSS_VALIDATION"))
    {
        if (!ParseCrossValidation("CROSS_VALIDATION", Trim(pszCV)))
            return false;
    }
    if (const char *pszCovariates = Fetch("COVARIATES"))
    {
        if (!ParseCovariatesOption(pszCovariates))
            return false;
    }
    // The configuration option sets the default for tools that cannot pass
    // open options (QGIS layers, VRTs); the open option wins.
    if (const char *pszCache = Fetch("MODEL_CACHE"))
    {
        if (!ParseModelCache("MODEL_CACHE", Trim(pszCache)))
            return false;
    }
    else if (const char *pszCacheConfig = CPLGetConfigOption("TPS_MODEL_CACHE", nullptr))
    {
        if (!ParseModelCache("TPS_MODEL_CACHE", Trim(pszCacheConfig)))
            return false;
    }
    if (const char *pszThreads = Fetch("NUM_THREADS"))
        return ParseNumThreads("NUM_THREADS", Trim(pszThreads), false);
    if (const char *pszThreads = CPLGetConfigOption("GDAL_NUM_THREADS", nullptr))
        return ParseNumThreads("GDAL_NUM_THREADS", Trim(pszThreads), true);
    m_oConfig.nNumThreads = std::max(1, CPLGetNumCPUs());
    return true;
}

bool TPSConfigParser::Validate(bool bConnectionForm)
{
    auto &c = m_oConfig;
    const bool bOpt = c.bGridFromOptions;
    if (c.osXField.empty() != c.osYField.empty())
        return Fail(CPLE_AppDefined, bConnectionForm ? "XFIELD/YFIELD" : "<XField>/<YField>",
                    "give both or neither");
    if (c.aoBands.empty())
        return Fail(CPLE_AppDefined, "", "no <Band>: give at least one <Band> with a <Field>");
    c.aoModelBands.clear();
    for (size_t i = 0; i < c.aoBands.size(); i++)
    {
        auto &oBand = c.aoBands[i];
        if (oBand.bGeometryZ && !c.osXField.empty())
            return Fail(CPLE_AppDefined, CPLSPrintf("<Band> #%d", static_cast<int>(i) + 1),
                        "<GeometryZ/> needs coordinates from the geometry; remove "
                        "<XField>/<YField>");
        if (!oBand.bHasSmoothing)
        {
            oBand.dfSmoothing = c.dfSmoothing;
            oBand.bSmoothingGCV = c.bSmoothingGCV;
        }
        if (oBand.osDescription.empty())
        {
            oBand.osDescription = oBand.bGeometryZ ? "Z" : oBand.osField;
            if (oBand.eQuantity != TPS_QUANTITY_VALUE)
                oBand.osDescription += std::string(" ") +
                                       tps_quantity_info(oBand.eQuantity)->name;
        }
        // The surface: one per field and smoothing, whatever the quantities.
        const auto SameSurface = [&oBand](const TPSBandConfig &o)
        {
            return o.bGeometryZ == oBand.bGeometryZ && o.osField == oBand.osField &&
                   o.bSmoothingGCV == oBand.bSmoothingGCV &&
                   (o.bSmoothingGCV || o.dfSmoothing == oBand.dfSmoothing);
        };
        const auto oFound = std::find_if(c.aoModelBands.begin(), c.aoModelBands.end(), SameSurface);
        oBand.nModelBand = static_cast<size_t>(oFound - c.aoModelBands.begin());
        if (oFound == c.aoModelBands.end())
        {
            TPSBandConfig oSurface = oBand;
            oSurface.eQuantity = TPS_QUANTITY_VALUE;
            oSurface.nModelBand = oBand.nModelBand;
            oSurface.osDescription.clear();
            c.aoModelBands.push_back(oSurface);
        }
    }
    // TPS_MAX_SOLVES, before any point is read: bands of one smoothing
    // share one factorisation, each other fixed smoothing and each GCV band
    // (one eigendecomposition each) is another O(N^3). (Missing values can
    // split a smoothing further: checked again once the points are read.)
    int nMaxSolves = TPS_DEFAULT_MAX_SOLVES;
    if (!ConfigCount("TPS_MAX_SOLVES", TPS_DEFAULT_MAX_SOLVES, &nMaxSolves))
        return false;
    c.nMaxSolves = nMaxSolves;
    const size_t nSolves = TPSDistinctSolves(c);
    if (nSolves > static_cast<size_t>(nMaxSolves))
        return Fail(CPLE_NotSupported, "",
                    "%llu distinct solves (one per distinct smoothing, one per GCV band): "
                    "TPS_MAX_SOLVES=%d caps them; give bands the same smoothing (they then "
                    "share one), or raise it",
                    static_cast<unsigned long long>(nSolves), nMaxSolves);
    // Covariates: the engine's limits, said before any point is read.
    if (!c.aoCovariates.empty())
    {
        const char *pszLabel = bConnectionForm ? "COVARIATES" : "<Covariate>";
        for (size_t k = 0; k < c.aoCovariates.size(); k++)
            for (size_t j = 0; j < k; j++)
                if (c.aoCovariates[j].osField == c.aoCovariates[k].osField &&
                    c.aoCovariates[j].osRaster == c.aoCovariates[k].osRaster &&
                    c.aoCovariates[j].nBand == c.aoCovariates[k].nBand)
                    return Fail(CPLE_AppDefined, pszLabel, "covariate '%s' given twice",
                                c.aoCovariates[k].Name().c_str());
    }
    // SOLVER=ITERATIVE knows only the affine part [1 x y] and forms no dense
    // factorisation: covariates and the standard error need SOLVER=DIRECT
    // (docs/format.md). AUTO with a standard-error band means DIRECT, so
    // that AUTO never makes (or finds in its model file) a model without
    // one; covariates make the engine's AUTO DIRECT by themselves.
    const char *pszSolver = bConnectionForm ? "SOLVER=ITERATIVE" : "SOLVER=ITERATIVE (<Solver>)";
    if (c.eSolver == TPSSolverRequest::ITERATIVE && !c.aoCovariates.empty())
        return Fail(CPLE_NotSupported, bConnectionForm ? "COVARIATES" : "<Covariate>",
                    "covariates need SOLVER=DIRECT (or AUTO), not %s: the iterative solver's "
                    "preconditioner and fast products know only the affine part [1 x y]",
                    pszSolver);
    for (size_t i = 0; i < c.aoBands.size(); i++)
    {
        if (!(tps_quantity_info(c.aoBands[i].eQuantity)->needs & TPS_NEEDS_VARIANCE))
            continue;
        if (c.eSolver == TPSSolverRequest::ITERATIVE)
            return Fail(CPLE_NotSupported,
                        CPLSPrintf("<Band> #%d: <Quantity>", static_cast<int>(i) + 1),
                        "%s needs SOLVER=DIRECT (or AUTO), not %s: it is computed from the dense "
                        "factorisation of the spline's system, which the iterative solver does "
                        "not form",
                        tps_quantity_info(c.aoBands[i].eQuantity)->name, pszSolver);
        c.eSolver = TPSSolverRequest::DIRECT;
    }
    if (c.bHasGeoTransform && !c.bHasSize)
        return Fail(CPLE_AppDefined, "<GeoTransform>", "needs <Size>");
    if (c.bHasGeoTransform && (c.bHasExtent || c.bHasResolution))
        return Fail(CPLE_AppDefined, "<GeoTransform>",
                    "give either <GeoTransform> and <Size>, or <Extent> with <Resolution> or "
                    "<Size>, not both");
    if (c.bHasResolution && c.bHasSize)
        return Fail(CPLE_AppDefined, bOpt ? "RESOLUTION/SIZE" : "<Resolution>/<Size>",
                    "give one or the other, not both");
    // A grid that does not depend on the points is checked now, before
    // reading points and solving (an extent over a tiny resolution).
    if (c.bHasGeoTransform || c.bHasExtent)
    {
        double adfGT[6];
        int nXSize = 0, nYSize = 0;
        return TPSResolveGrid(c, 0, 0, 0, 0, adfGT, &nXSize, &nYSize);
    }
    return true;
}

bool TPSConfigParser::Parse(const char *pszFilename, CSLConstList papszOpenOptions)
{
    bool bConnectionForm = false;
    if (STARTS_WITH_CI(pszFilename, "TPS:"))
    {
        bConnectionForm = true;
        m_oConfig.osName = pszFilename;
        const std::string osSource = Trim(pszFilename + 4);
        if (osSource.empty())
            return Fail(CPLE_OpenFailed, "", "empty source; expected TPS:<vector data set>");
        m_oConfig.osSource = osSource; // relative to the current directory, as given
    }
    else if (STARTS_WITH(pszFilename, "<TPSDataset"))
    {
        // XML text given as the file name; relative paths are relative to
        // the current directory.
        m_oConfig.osName = "inline <TPSDataset>";
        if (!ParseXMLText(pszFilename))
            return false;
    }
    else
    {
        m_oConfig.osName = pszFilename;
        m_oConfig.osTPSFile = pszFilename;
        m_oConfig.osBaseDir = GetDirName(pszFilename);
        VSIStatBufL sStat;
        if (VSIStatL(pszFilename, &sStat) != 0)
            return Fail(CPLE_OpenFailed, "", "no such file");
        if (VSI_ISDIR(sStat.st_mode))
            return Fail(CPLE_OpenFailed, "", "is a directory, not a .tps file");
        if (sStat.st_size > MAX_TPS_FILE_BYTES)
            return Fail(CPLE_OpenFailed, "", "too large for a .tps file (%llu bytes)",
                        static_cast<unsigned long long>(sStat.st_size));
        GByte *pabyText = nullptr;
        std::string osReadError;
        bool bRead = false;
        {
            TPSErrorCapture oCapture;
            bRead =
                VSIIngestFile(nullptr, pszFilename, &pabyText, nullptr, MAX_TPS_FILE_BYTES) != 0;
            osReadError = oCapture.LastFailure();
        }
        if (!bRead)
        {
            CPLFree(pabyText);
            return Fail(CPLE_OpenFailed, "", "cannot read the file%s%s",
                        osReadError.empty() ? "" : ": ", osReadError.c_str());
        }
        std::string osText(reinterpret_cast<const char *>(pabyText));
        CPLFree(pabyText);
        if (Trim(osText).empty())
            return Fail(CPLE_OpenFailed, "", "empty file: expected a <TPSDataset> XML document");
        // A UTF-8 byte order mark is not XML: CPLParseXMLString would choke.
        if (osText.compare(0, 3, "\xEF\xBB\xBF") == 0)
            osText.erase(0, 3);
        if (!ParseXMLText(osText))
            return false;
    }
    if (!ApplyOpenOptions(papszOpenOptions, bConnectionForm))
        return false;
    return Validate(bConnectionForm);
}

bool TPSParseConfig(const char *pszFilename, CSLConstList papszOpenOptions, TPSConfig *psConfig)
{
    TPSConfig oConfig;
    TPSConfigParser oParser(oConfig);
    if (!oParser.Parse(pszFilename, papszOpenOptions))
        return false;
    *psConfig = std::move(oConfig);
    return true;
}
size_t TPSDistinctSolves(const TPSConfig &c)
{
    std::set<double> oFixed;
    size_t nGCV = 0;
    for (const auto &oBand : c.aoModelBands)
    {
        if (oBand.bSmoothingGCV)
            nGCV++;
        else
            oFixed.insert(oBand.dfSmoothing);
    }
    return oFixed.size() + nGCV;
}
