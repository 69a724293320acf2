/*
 * tps_config_values.cpp: one element's or option's text into a value of
 * the TPSConfig, for both forms (<Size> and SIZE share ParseSize). Strict:
 * a typo in a number or a size of 0 is reported with the file name, the
 * element (or option) and the offending text.
 */
#include "tps_config_parser.h"

#include "tps_errors.h"
#include "tps_grid.h"

#include "cpl_conv.h"
#include "cpl_multiproc.h"
#include "cpl_string.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace
{

/* At most this many pixels in one block: 128 MB of Float64. */
constexpr double MAX_BLOCK_PIXELS = 16777216.0;

constexpr int MAX_THREADS = 1024;

} // namespace

const TPSChoices TPS_DATA_TYPE_CHOICES = {{"Float32", GDT_Float32}, {"Float64", GDT_Float64}};
const TPSChoices TPS_DEVICE_CHOICES = {{"AUTO", static_cast<int>(TPSDeviceRequest::AUTO)},
                                       {"CPU", static_cast<int>(TPSDeviceRequest::CPU)},
                                       {"GPU", static_cast<int>(TPSDeviceRequest::GPU)}};
const TPSChoices TPS_PRECISION_CHOICES = {
    {"DOUBLE", TPS_PRECISION_DOUBLE}, {"MIXED", TPS_PRECISION_MIXED}, {"AUTO", TPS_PRECISION_AUTO}};
const TPSChoices TPS_MODE_CHOICES = {{"AUTO", static_cast<int>(TPSModeRequest::AUTO)},
                                     {"GLOBAL", static_cast<int>(TPSModeRequest::GLOBAL)},
                                     {"LOCAL", static_cast<int>(TPSModeRequest::LOCAL)}};
const TPSChoices TPS_SOLVER_CHOICES = {
    {"AUTO", static_cast<int>(TPSSolverRequest::AUTO)},
    {"DIRECT", static_cast<int>(TPSSolverRequest::DIRECT)},
    {"ITERATIVE", static_cast<int>(TPSSolverRequest::ITERATIVE)}};
const TPSChoices TPS_MODEL_CACHE_CHOICES = {
    {"YES", static_cast<int>(TPSModelCacheMode::YES)},
    {"NO", static_cast<int>(TPSModelCacheMode::NO)},
    {"READ_ONLY", static_cast<int>(TPSModelCacheMode::READ_ONLY)}};

const char *TPSChoiceName(const TPSChoices &asChoices, int nValue)
{
    for (const TPSChoice &oChoice : asChoices)
    {
        if (oChoice.nValue == nValue)
            return oChoice.pszName;
    }
    return "";
}

bool TPSConfigParser::ParseChoice(const std::string &osLabel, const std::string &osText,
                                  const TPSChoices &asChoices, int *pnValue)
{
    std::string osNames;
    for (size_t i = 0; i < asChoices.size(); i++)
    {
        if (EQUAL(osText.c_str(), asChoices[i].pszName))
        {
            *pnValue = asChoices[i].nValue;
            return true;
        }
        osNames += std::string(i == 0 ? "" : i + 1 == asChoices.size() ? " or " : ", ") +
                   asChoices[i].pszName;
    }
    return Fail(CPLE_IllegalArg, osLabel, "expected %s, got '%s'", osNames.c_str(),
                TPSShown(osText).c_str());
}

std::string TPSConfigParser::Trim(const std::string &s)
{
    const char *pszWS = " \t\r\n";
    const size_t nStart = s.find_first_not_of(pszWS);
    if (nStart == std::string::npos)
        return std::string();
    const size_t nEnd = s.find_last_not_of(pszWS);
    return s.substr(nStart, nEnd - nStart + 1);
}

bool TPSConfigParser::SplitNumbers(const std::string &osText,
                                   std::vector<std::string> &aosTokens)
{
    aosTokens.clear();
    std::string osCur;
    bool bCommaPending = false; // a comma since the last token
    bool bInToken = false;
    for (char c : osText)
    {
        if (c == ',' || std::isspace(static_cast<unsigned char>(c)))
        {
            if (bInToken)
            {
                aosTokens.push_back(osCur);
                osCur.clear();
                bInToken = false;
            }
            if (c == ',')
            {
                if (bCommaPending || aosTokens.empty())
                    return false;
                bCommaPending = true;
            }
        }
        else
        {
            osCur += c;
            bInToken = true;
            bCommaPending = false;
        }
    }
    if (bInToken)
        aosTokens.push_back(osCur);
    return !bCommaPending;
}

bool TPSConfigParser::ParseDouble(const std::string &osToken, double *pdfValue)
{
    if (osToken.empty())
        return false;
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(osToken.c_str(), &pszEnd);
    if (pszEnd == osToken.c_str() || *pszEnd != '\0')
        return false;
    *pdfValue = dfValue;
    return true;
}

bool TPSConfigParser::ParseFinite(const std::string &osToken, double *pdfValue)
{
    return ParseDouble(osToken, pdfValue) && std::isfinite(*pdfValue);
}

bool TPSConfigParser::ParsePositiveInt(const std::string &osToken, int nMax, int *pnValue,
                                       bool *pbTooLarge)
{
    size_t i = 0;
    if (i < osToken.size() && osToken[i] == '+')
        i++;
    if (i == osToken.size())
        return false;
    double dfValue = 0;
    for (; i < osToken.size(); i++)
    {
        if (!std::isdigit(static_cast<unsigned char>(osToken[i])))
            return false;
        dfValue = dfValue * 10 + (osToken[i] - '0');
    }
    if (dfValue < 1)
        return false;
    if (dfValue > nMax)
    {
        *pbTooLarge = true;
        return false;
    }
    *pnValue = static_cast<int>(dfValue);
    return true;
}

bool TPSConfigParser::ParseSmoothingValue(const std::string &osLabel, const std::string &osText,
                                          double *pdfValue, bool *pbGCV)
{
    if (EQUAL(osText.c_str(), "GCV"))
    {
        *pdfValue = 0.0;
        *pbGCV = true;
        return true;
    }
    double dfValue = 0;
    if (!ParseFinite(osText, &dfValue) || dfValue < 0)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected a finite number >= 0 or GCV, got '%s'", TPSShown(osText).c_str());
    *pdfValue = dfValue;
    *pbGCV = false;
    return true;
}

bool TPSConfigParser::ParseGeoTransform(const std::string &osLabel, const std::string &osText)
{
    std::vector<std::string> aosTokens;
    double adf[6] = {0, 0, 0, 0, 0, 0};
    bool bOK = SplitNumbers(osText, aosTokens) && aosTokens.size() == 6;
    for (size_t i = 0; bOK && i < 6; i++)
        bOK = ParseFinite(aosTokens[i], &adf[i]);
    if (!bOK)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected six finite numbers 'x0, dx, rx, y0, ry, dy', got '%s'",
                    TPSShown(osText).c_str());
    const double dfDet = adf[1] * adf[5] - adf[2] * adf[4];
    if (!(dfDet != 0) || !std::isfinite(dfDet))
        return Fail(CPLE_IllegalArg, osLabel,
                    "the pixel axes are degenerate (dx*dy - rx*ry = 0), got '%s'",
                    TPSShown(osText).c_str());
    std::copy(adf, adf + 6, m_oConfig.adfGeoTransform);
    m_oConfig.bHasGeoTransform = true;
    return true;
}

bool TPSConfigParser::ParseExtent(const std::string &osLabel, const std::string &osText)
{
    std::vector<std::string> aosTokens;
    double adf[4] = {0, 0, 0, 0};
    bool bOK = SplitNumbers(osText, aosTokens) && aosTokens.size() == 4;
    for (size_t i = 0; bOK && i < 4; i++)
        bOK = ParseFinite(aosTokens[i], &adf[i]);
    if (!bOK)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected four finite numbers 'minx miny maxx maxy', got '%s'",
                    TPSShown(osText).c_str());
    if (!(adf[0] < adf[2]) || !(adf[1] < adf[3]) || !std::isfinite(adf[2] - adf[0]) ||
        !std::isfinite(adf[3] - adf[1]))
        return Fail(CPLE_IllegalArg, osLabel, "expected minx < maxx and miny < maxy, got '%s'",
                    TPSShown(osText).c_str());
    std::copy(adf, adf + 4, m_oConfig.adfExtent);
    m_oConfig.bHasExtent = true;
    return true;
}

bool TPSConfigParser::ParseResolution(const std::string &osLabel, const std::string &osText)
{
    std::vector<std::string> aosTokens;
    double adf[2] = {0, 0};
    bool bOK = SplitNumbers(osText, aosTokens) && (aosTokens.size() == 1 || aosTokens.size() == 2);
    for (size_t i = 0; bOK && i < aosTokens.size(); i++)
        bOK = ParseFinite(aosTokens[i], &adf[i]) && adf[i] > 0;
    if (!bOK)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected one or two positive numbers 'xres [yres]', got '%s'",
                    TPSShown(osText).c_str());
    if (aosTokens.size() == 1)
        adf[1] = adf[0];
    m_oConfig.adfResolution[0] = adf[0];
    m_oConfig.adfResolution[1] = adf[1];
    m_oConfig.bHasResolution = true;
    return true;
}

bool TPSConfigParser::ParseIntPair(const std::string &osText, int an[2], bool *pbTooLarge)
{
    std::vector<std::string> aosTokens;
    bool bOK = SplitNumbers(osText, aosTokens) && aosTokens.size() == 2;
    for (size_t i = 0; bOK && i < 2; i++)
        bOK = ParsePositiveInt(aosTokens[i], TPS_MAX_RASTER_SIDE, &an[i], pbTooLarge);
    return bOK;
}

bool TPSConfigParser::ParseSize(const std::string &osLabel, const std::string &osText)
{
    int an[2] = {0, 0};
    bool bTooLarge = false;
    const bool bOK = ParseIntPair(osText, an, &bTooLarge);
    if (bTooLarge)
        return Fail(CPLE_IllegalArg, osLabel, "each side must be between 1 and %d pixels, got '%s'",
                    TPS_MAX_RASTER_SIDE, TPSShown(osText).c_str());
    if (!bOK)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected two positive integers 'columns rows', got '%s'",
                    TPSShown(osText).c_str());
    m_oConfig.nXSize = an[0];
    m_oConfig.nYSize = an[1];
    m_oConfig.bHasSize = true;
    return true;
}

bool TPSConfigParser::ParseBlockSize(const std::string &osLabel, const std::string &osText)
{
    int an[2] = {0, 0};
    bool bTooLarge = false;
    if (!ParseIntPair(osText, an, &bTooLarge) ||
        static_cast<double>(an[0]) * an[1] > MAX_BLOCK_PIXELS)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected two positive integers 'columns rows' with at most %.0f pixels "
                    "in all, got '%s'",
                    MAX_BLOCK_PIXELS, TPSShown(osText).c_str());
    m_oConfig.nBlockXSize = an[0];
    m_oConfig.nBlockYSize = an[1];
    m_oConfig.bHasBlockSize = true;
    return true;
}

bool TPSConfigParser::ParseDataType(const std::string &osLabel, const std::string &osText)
{
    int nValue = 0;
    if (!ParseChoice(osLabel, osText, TPS_DATA_TYPE_CHOICES, &nValue))
        return false;
    m_oConfig.eDataType = static_cast<GDALDataType>(nValue);
    return true;
}

bool TPSConfigParser::ParseNoData(const std::string &osLabel, const std::string &osText)
{
    double dfValue = 0;
    // NaN is a common nodata value for float rasters; infinities are not.
    if (!ParseDouble(osText, &dfValue) || std::isinf(dfValue))
        return Fail(CPLE_IllegalArg, osLabel, "expected a number, got '%s'",
                    TPSShown(osText).c_str());
    m_oConfig.dfNoData = dfValue;
    m_oConfig.bHasNoData = true;
    return true;
}

bool TPSConfigParser::ParseNumThreads(const std::string &osLabel, const std::string &osText,
                                      bool bFromConfigOption)
{
    int nThreads = 0;
    bool bTooLarge = false;
    if (EQUAL(osText.c_str(), "ALL_CPUS"))
        nThreads = CPLGetNumCPUs();
    else if (!ParsePositiveInt(osText, MAX_THREADS, &nThreads, &bTooLarge))
    {
        if (bFromConfigOption)
        {
            // The user's global setting, not this data set's: say so and go on.
            Warn("GDAL_NUM_THREADS: expected ALL_CPUS or an integer between 1 and %d, got "
                 "'%s'; using all %d CPUs",
                 MAX_THREADS, TPSShown(osText).c_str(), CPLGetNumCPUs());
            nThreads = CPLGetNumCPUs();
        }
        else
            return Fail(CPLE_IllegalArg, osLabel,
                        "expected ALL_CPUS or an integer between 1 and %d, got '%s'", MAX_THREADS,
                        TPSShown(osText).c_str());
    }
    m_oConfig.nNumThreads = std::max(1, nThreads);
    return true;
}

bool TPSConfigParser::ParseDevice(const std::string &osLabel, const std::string &osText)
{
    int nValue = 0;
    if (!ParseChoice(osLabel, osText, TPS_DEVICE_CHOICES, &nValue))
        return false;
    m_oConfig.eDevice = static_cast<TPSDeviceRequest>(nValue);
    return true;
}

bool TPSConfigParser::ParseMode(const std::string &osLabel, const std::string &osText)
{
    int nValue = 0;
    if (!ParseChoice(osLabel, osText, TPS_MODE_CHOICES, &nValue))
        return false;
    m_oConfig.eMode = static_cast<TPSModeRequest>(nValue);
    return true;
}

bool TPSConfigParser::ParseSolver(const std::string &osLabel, const std::string &osText)
{
    int nValue = 0;
    if (!ParseChoice(osLabel, osText, TPS_SOLVER_CHOICES, &nValue))
        return false;
    m_oConfig.eSolver = static_cast<TPSSolverRequest>(nValue);
    return true;
}

bool TPSConfigParser::ParseSolverTolerance(const std::string &osLabel, const std::string &osText)
{
    double dfValue = 0;
    // The engine's range (tps_fit_options.solver_tolerance).
    if (!ParseFinite(osText, &dfValue) || !(dfValue >= 1e-14) || !(dfValue <= 1e-6))
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected a relative residual from 1e-14 to 1e-6, got '%s'",
                    TPSShown(osText).c_str());
    m_oConfig.dfSolverTolerance = dfValue;
    return true;
}

bool TPSConfigParser::ParsePatchPoints(const std::string &osLabel, const std::string &osText)
{
    double dfValue = 0;
    // Below TPS_MIN_PATCH_POINTS a patch is an almost affine fit.
    if (!ParseFinite(osText, &dfValue) || dfValue != std::floor(dfValue) ||
        dfValue < TPS_MIN_PATCH_POINTS || dfValue > TPS_MAX_PATCH_POINTS)
        return Fail(CPLE_IllegalArg, osLabel, "expected an integer from %d to %d, got '%s'",
                    TPS_MIN_PATCH_POINTS, TPS_MAX_PATCH_POINTS, TPSShown(osText).c_str());
    m_oConfig.nPatchPoints = static_cast<int>(dfValue);
    m_oConfig.bPatchSizeGiven = true;
    return true;
}

bool TPSConfigParser::ParseOverlap(const std::string &osLabel, const std::string &osText)
{
    double dfValue = 0;
    if (!ParseFinite(osText, &dfValue) || !(dfValue > 1.0) || dfValue > TPS_MAX_OVERLAP)
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected a number > 1 and <= %g (the patch enlargement factor), got '%s'",
                    TPS_MAX_OVERLAP, TPSShown(osText).c_str());
    m_oConfig.dfOverlap = dfValue;
    m_oConfig.bPatchSizeGiven = true;
    return true;
}

bool TPSConfigParser::ParseMaxDistance(const std::string &osLabel, const std::string &osText)
{
    double dfValue = 0;
    if (!ParseFinite(osText, &dfValue) || !(dfValue > 0))
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected a finite distance > 0 in the output CRS's units, got '%s'",
                    TPSShown(osText).c_str());
    m_oConfig.dfMaxDistance = dfValue;
    return true;
}

bool TPSConfigParser::ParseConvexHull(const std::string &osLabel, const std::string &osText)
{
    if (EQUAL(osText.c_str(), "TRUE") || EQUAL(osText.c_str(), "YES") || osText == "1")
        m_oConfig.bConvexHull = true;
    else if (EQUAL(osText.c_str(), "FALSE") || EQUAL(osText.c_str(), "NO") || osText == "0")
        m_oConfig.bConvexHull = false;
    else
        return Fail(CPLE_IllegalArg, osLabel, "expected true or false, got '%s'",
                    TPSShown(osText).c_str());
    return true;
}

bool TPSConfigParser::ParsePrecision(const std::string &osLabel, const std::string &osText)
{
    int nValue = 0;
    if (!ParseChoice(osLabel, osText, TPS_PRECISION_CHOICES, &nValue))
        return false;
    m_oConfig.ePrecision = static_cast<tps_precision>(nValue);
    return true;
}

bool TPSConfigParser::ParseTolerance(const std::string &osLabel, const std::string &osText)
{
    double dfValue = 0;
    if (!ParseFinite(osText, &dfValue) || !(dfValue > 0))
        return Fail(CPLE_IllegalArg, osLabel,
                    "expected a number > 0 (MIXED's largest error, relative to each band's data "
                    "range), got '%s'",
                    TPSShown(osText).c_str());
    m_oConfig.dfTolerance = dfValue;
    return true;
}

bool TPSConfigParser::ParseModelCache(const std::string &osLabel, const std::string &osText)
{
    int nValue = 0;
    if (!ParseChoice(osLabel, osText, TPS_MODEL_CACHE_CHOICES, &nValue))
        return false;
    m_oConfig.eModelCache = static_cast<TPSModelCacheMode>(nValue);
    return true;
}

bool TPSConfigParser::ParseCrossValidation(const std::string &osLabel, const std::string &osText)
{
    const char *psz = osText.c_str();
    if (EQUAL(psz, "YES") || EQUAL(psz, "TRUE") || EQUAL(psz, "ON") || EQUAL(psz, "1"))
        m_oConfig.bCrossValidation = true;
    else if (EQUAL(psz, "NO") || EQUAL(psz, "FALSE") || EQUAL(psz, "OFF") || EQUAL(psz, "0"))
        m_oConfig.bCrossValidation = false;
    else
        return Fail(CPLE_IllegalArg, osLabel, "expected YES or NO, got '%s'",
                    TPSShown(osText).c_str());
    return true;
}

bool TPSConfigParser::ParseQuantity(const std::string &osLabel, const std::string &osText,
                                    tps_quantity *peQuantity)
{
    // The names are the engine's quantity table's, as is the list in the
    // message.
    if (tps_quantity_from_name(osText.c_str(), peQuantity) == TPS_OK)
        return true;
    std::string osNames;
    const size_t nQuantities = tps_quantity_count();
    for (size_t i = 0; i < nQuantities; i++)
    {
        const tps_quantity_desc *psDesc = tps_quantity_info(static_cast<tps_quantity>(i));
        if (psDesc == nullptr)
            continue;
        osNames += std::string(osNames.empty() ? "" : i + 1 == nQuantities ? " or " : ", ") +
                   psDesc->name;
    }
    return Fail(CPLE_IllegalArg, osLabel, "expected %s, got '%s'", osNames.c_str(),
                TPSShown(osText).c_str());
}
