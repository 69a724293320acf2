/*
 * tps_points.cpp: the points of a TPS data set, read through OGR.
 *
 * Coordinates come from the point geometry (Point, or each point of a
 * MultiPoint) or from two attribute columns. Values come from numeric
 * fields, or from text fields parsed strictly: CSV files read without a
 * .csvt give every column as text, and a silent atof() would turn "1,5"
 * or a stray letter into a plausible-looking 1 or 0. Missing values
 * (null, empty, NA, NaN) are passed on as NaN; the engine leaves them out
 * of that band's solve and counts them.
 *
 * Every OGR/OSR call runs under a TPSErrorCapture: their own messages are
 * folded into the one failure this file reports.
 */
#include "tps_points.h"

#include "tps_errors.h"
#include "tps_paths.h"
#include "tps_srs.h"
#include "tps_source_policy.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "gdal_priv.h"
#include "gdal_version.h"
#include "ogr_feature.h"
#include "ogr_geometry.h"
#include "ogrsf_frmts.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

namespace
{

constexpr double NaN = std::numeric_limits<double>::quiet_NaN();

/* TPS_MAX_POINTS by default: the local mode's documented range ends at
 * 10^7 points, and 10^7 points of a few bands are a few hundred MB. */
constexpr size_t DEFAULT_MAX_POINTS = 10000000;
/* The arrays grow by at least this many points at a time. */
constexpr size_t MIN_GROWTH = 1024;

/* Names in a message: all of them if few, else the first ones and a count. */
std::string JoinNames(const std::vector<std::string> &aosNames)
{
    constexpr size_t MAX_LISTED = 20;
    std::string osList;
    for (size_t i = 0; i < aosNames.size() && i < MAX_LISTED; i++)
    {
        if (i)
            osList += ", ";
        osList += aosNames[i];
    }
    if (aosNames.size() > MAX_LISTED)
        osList += CPLSPrintf(", ... (%d in all)", static_cast<int>(aosNames.size()));
    return osList.empty() ? std::string("(none)") : osList;
}

struct GDALDatasetCloser
{
    void operator()(GDALDataset *poDS) const
    {
        GDALClose(GDALDataset::ToHandle(poDS));
    }
};

enum class ValueStatus
{
    OK,
    MISSING,
    NOT_A_NUMBER
};

/* One numeric column: how to read it and what to say when it goes wrong. */
struct Column
{
    std::string osName{};
    int iField = -1;
    OGRFieldType eType = OFTString;
};

class PointLoader
{
  public:
    PointLoader(const TPSConfig &oConfig, TPSPoints &oPoints)
        : m_oConfig(oConfig), m_oPoints(oPoints)
    {
    }

    /* The bounds of Load(): at most nMaxPoints points, their arrays charged
     * to *poCharge against nBudget (see TPSLoadPoints). */
    void SetLimits(size_t nMaxPoints, TPSMemoryCharge *poCharge, size_t nBudget)
    {
        m_nMaxPoints = nMaxPoints;
        m_poCharge = poCharge;
        m_nBudget = nBudget;
    }

    /* Returns false with m_osError set. */
    bool Load();
    /* Opens the source and its layer and sets up the CRSs as Load() does,
     * reads no feature; fills *paosFiles with GDAL's list of the source's
     * files. Returns false with m_osError set. */
    bool Describe(std::vector<std::string> *paosFiles);

    std::string m_osError{};
    CPLErrorNum m_nErrorNum = CPLE_AppDefined;

  private:
    const TPSConfig &m_oConfig;
    TPSPoints &m_oPoints;
    std::unique_ptr<GDALDataset, GDALDatasetCloser> m_poDS{};
    OGRLayer *m_poLayer = nullptr;
    Column m_oXColumn{}, m_oYColumn{};
    std::vector<Column> m_aoBandColumns{}; /* iField -1 for <GeometryZ/> */
    Column m_oWeightColumn{};              /* iField -1: no <WeightField> */
    std::vector<Column> m_aoCovColumns{};  /* per <Covariate>; iField -1: no <Field> */
    double m_dfWeight = 1.0;               /* the current feature's weight */
    bool m_bNeedZ = false;
    size_t m_nMaxPoints = SIZE_MAX;
    TPSMemoryCharge *m_poCharge = nullptr;
    size_t m_nBudget = 0;
    size_t m_nCapacity = 0; /* points the arrays have room for (charged) */

    bool Fail(CPLErrorNum nNum, const std::string &osMsg)
    {
        m_nErrorNum = nNum;
        m_osError = osMsg;
        return false;
    }
    std::string Where() const;
    std::string Source() const
    {
        return TPSSourceForMessage(m_oConfig.osSource);
    }
    bool Charge(size_t nBytes, const char *pszWhat);
    bool Room(size_t nMore);
    bool OpenSource(TPSErrorCapture &oCapture);
    bool OpenLayer(TPSErrorCapture &oCapture);
    bool FindColumn(const std::string &osName, const char *pszRole, Column &oColumn);
    ValueStatus ReadValue(const OGRFeature &oFeature, const Column &oColumn, double *pdfValue,
                          std::string &osText) const;
    bool BadValue(const OGRFeature &oFeature, const Column &oColumn, const std::string &osText);
    bool ReadWeight(const OGRFeature &oFeature);
    /* The feature's <Covariate> field values into m_adfCov (NaN: missing,
     * the point is dropped by the engine); a value that is not a number is
     * an error. PushCovariates appends them for one more point. */
    bool ReadCovariates(const OGRFeature &oFeature);
    void PushCovariates();
    std::vector<double> m_adfCov{};
    bool ReadFeatures(TPSErrorCapture &oCapture);
    bool AddGeometryPoints(const OGRFeature &oFeature, const std::vector<double> &adfValues);
    bool AddPoint(const OGRFeature &oFeature, const OGRPoint &oPoint,
                  const std::vector<double> &adfValues);
    bool SetUpSRS(OGRSpatialReference &oPointsSRS, bool &bHasPointsSRS);
    bool Reproject(TPSErrorCapture &oCapture, const OGRSpatialReference &oPointsSRS);
};

/* "layer 'meuse' of 'data/meuse.csv'", the usual context of a message. */
std::string PointLoader::Where() const
{
    return CPLSPrintf("layer '%s' of '%s'", m_oPoints.osLayerName.c_str(), Source().c_str());
}

/* Grows the charge to nBytes, or fails saying what did not fit. */
bool PointLoader::Charge(size_t nBytes, const char *pszWhat)
{
    if (m_poCharge == nullptr || m_poCharge->Resize(nBytes, m_nBudget))
        return true;
    const size_t nOthers = TPSMemoryInUse() - m_poCharge->Bytes();
    return Fail(CPLE_OutOfMemory,
                CPLSPrintf("%s of %s need %llu bytes, more than TPS_MAX_MEMORY (%llu bytes, "
                           "%llu of them held by other TPS data sets of this process) leaves; "
                           "raise it with --config TPS_MAX_MEMORY <bytes>",
                           pszWhat, Where().c_str(), static_cast<unsigned long long>(nBytes),
                           static_cast<unsigned long long>(m_nBudget),
                           static_cast<unsigned long long>(nOthers)));
}

/* Room in the arrays for nMore points: TPS_MAX_POINTS is checked, and more
 * room charged to the budget, before anything is allocated. */
bool PointLoader::Room(size_t nMore)
{
    const size_t nHave = m_oPoints.adfX.size();
    if (nMore > m_nMaxPoints || nHave > m_nMaxPoints - nMore)
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("%s gives more than %llu points (reading stopped there): "
                               "TPS_MAX_POINTS=%llu caps the points of a source; raise it to "
                               "read more",
                               Where().c_str(), static_cast<unsigned long long>(m_nMaxPoints),
                               static_cast<unsigned long long>(m_nMaxPoints)));
    if (nHave + nMore <= m_nCapacity)
        return true;
    const size_t nCapacity = std::min(
        m_nMaxPoints, std::max(nHave + nMore, std::max(MIN_GROWTH, 2 * m_nCapacity)));
    size_t nArrays = 2 + m_oPoints.aadfValues.size() + (m_oWeightColumn.iField >= 0);
    for (const Column &oCov : m_aoCovColumns)
        nArrays += oCov.iField >= 0;
    if (nCapacity > SIZE_MAX / sizeof(double) / nArrays ||
        !Charge(nCapacity * sizeof(double) * nArrays, "the points read"))
        return m_osError.empty() ? Fail(CPLE_OutOfMemory, "too many points") : false;
    try
    {
        m_oPoints.adfX.reserve(nCapacity);
        m_oPoints.adfY.reserve(nCapacity);
        if (m_oWeightColumn.iField >= 0)
            m_oPoints.adfWeights.reserve(nCapacity);
        for (auto &adfValues : m_oPoints.aadfValues)
            adfValues.reserve(nCapacity);
        for (size_t k = 0; k < m_aoCovColumns.size(); k++)
            if (m_aoCovColumns[k].iField >= 0)
                m_oPoints.aadfCovariates[k].reserve(nCapacity);
    }
    catch (const std::bad_alloc &)
    {
        return Fail(CPLE_OutOfMemory, CPLSPrintf("out of memory reading %s", Where().c_str()));
    }
    m_nCapacity = nCapacity;
    return true;
}

bool PointLoader::OpenSource(TPSErrorCapture &oCapture)
{
    const char *pszSource = m_oConfig.osSource.c_str();
    // TPS_ALLOWED_SOURCES (tps_source_policy.h): the drivers that may read it.
    CPLStringList aosDrivers;
    for (const std::string &osDriver : m_oConfig.aosSourceDrivers)
        aosDrivers.AddString(osDriver.c_str());
    m_poDS.reset(GDALDataset::Open(pszSource, GDAL_OF_VECTOR | GDAL_OF_READONLY,
                                   aosDrivers.empty() ? nullptr : aosDrivers.List()));
    if (m_poDS)
    {
        // ... and the folder its files must be in (SIBLING_OR_CHILD): a
        // shapefile's .dbf may be a link to elsewhere.
        std::vector<std::string> aosFiles;
        if (!m_oConfig.osSourceFolder.empty())
        {
            const CPLStringList aosList(m_poDS->GetFileList());
            for (int i = 0; i < aosList.size(); i++)
                aosFiles.emplace_back(aosList[i]);
            // Read by the CSV driver without being listed.
            for (const char *pszExt : {"csvt", "prj"})
            {
                VSIStatBufL sStat;
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
                const std::string osCompanion =
                    CPLResetExtensionSafe(m_oConfig.osSource.c_str(), pszExt);
#else
                const std::string osCompanion =
                    CPLResetExtension(m_oConfig.osSource.c_str(), pszExt);
#endif
                if (VSIStatL(osCompanion.c_str(), &sStat) == 0)
                    aosFiles.push_back(osCompanion);
            }
        }
        std::string osWhy;
        if (!TPSSourceFilesInFolder(m_oConfig, aosFiles, &osWhy))
        {
            m_poDS.reset();
            return Fail(CPLE_NotSupported,
                        CPLSPrintf("the point source '%s' is refused: %s", Source().c_str(),
                                   osWhy.c_str()));
        }
        return true;
    }
    VSIStatBufL sStat;
    if (!TPSIsConnectionString(pszSource) && VSIStatL(pszSource, &sStat) != 0)
        return Fail(CPLE_OpenFailed, CPLSPrintf("cannot open the point source '%s': no such file",
                                                Source().c_str()));
    if (!aosDrivers.empty())
    {
        // A driver outside the list would have read it: say which, and what
        // allows it, rather than "not a vector data set".
        GDALDriverH hDriver = GDALIdentifyDriverEx(pszSource, GDAL_OF_VECTOR, nullptr, nullptr);
        const char *pszDriver = hDriver ? GDALGetDriverShortName(hDriver) : nullptr;
        if (pszDriver && aosDrivers.FindString(pszDriver) < 0)
            return Fail(
                CPLE_NotSupported,
                CPLSPrintf("the point source '%s' is for GDAL's %s driver, which "
                           "TPS_ALLOWED_SOURCES=%s does not let read a source (it may read "
                           "other files, databases or the network): set TPS_ALLOWED_SOURCES=ALL, "
                           "or add a prefix of the source to the list, to read it",
                           Source().c_str(), pszDriver,
                           CPLGetConfigOption("TPS_ALLOWED_SOURCES", "LOCAL")));
    }
    return Fail(CPLE_OpenFailed,
                CPLSPrintf("cannot open the point source '%s' as a vector data set%s",
                           Source().c_str(), TPSSourceText(oCapture.LastFailure()).c_str()));
}

bool PointLoader::OpenLayer(TPSErrorCapture &oCapture)
{
    if (m_oConfig.osLayer.empty())
    {
        if (m_poDS->GetLayerCount() == 0)
            return Fail(CPLE_OpenFailed,
                        CPLSPrintf("the point source '%s' has no layers", Source().c_str()));
        m_poLayer = m_poDS->GetLayer(0);
    }
    else
        m_poLayer = m_poDS->GetLayerByName(m_oConfig.osLayer.c_str());
    if (m_poLayer == nullptr)
    {
        std::vector<std::string> aosLayers;
        for (int i = 0; i < m_poDS->GetLayerCount(); i++)
        {
            if (OGRLayer *poLayer = m_poDS->GetLayer(i))
                aosLayers.push_back(poLayer->GetName());
        }
        return Fail(CPLE_OpenFailed,
                    CPLSPrintf("no layer '%s' in '%s'; layers: %s", m_oConfig.osLayer.c_str(),
                               Source().c_str(), JoinNames(aosLayers).c_str()));
    }
    m_oPoints.osLayerName = m_poLayer->GetName();
    if (!m_oConfig.osWhere.empty() &&
        m_poLayer->SetAttributeFilter(m_oConfig.osWhere.c_str()) != OGRERR_NONE)
    {
        // A database evaluates the filter against its rows: its message may
        // quote a value ("invalid input syntax for type integer: ...").
        return Fail(CPLE_IllegalArg,
                    CPLSPrintf("<Where>: invalid attribute filter '%s' on %s%s",
                               TPSShown(m_oConfig.osWhere).c_str(), Where().c_str(),
                               TPSSourceText(oCapture.LastFailure()).c_str()));
    }
    return true;
}

bool PointLoader::FindColumn(const std::string &osName, const char *pszRole, Column &oColumn)
{
    OGRFeatureDefn *poDefn = m_poLayer->GetLayerDefn();
    oColumn.osName = osName;
    oColumn.iField = poDefn->GetFieldIndex(osName.c_str());
    if (oColumn.iField < 0)
    {
        std::vector<std::string> aosFields;
        for (int i = 0; i < poDefn->GetFieldCount(); i++)
            aosFields.push_back(poDefn->GetFieldDefn(i)->GetNameRef());
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("%s: no field '%s' in %s; fields: %s", pszRole, osName.c_str(),
                               Where().c_str(), JoinNames(aosFields).c_str()));
    }
    oColumn.eType = poDefn->GetFieldDefn(oColumn.iField)->GetType();
    if (oColumn.eType != OFTInteger && oColumn.eType != OFTInteger64 && oColumn.eType != OFTReal &&
        oColumn.eType != OFTString)
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("%s: field '%s' of %s has type %s; expected a number (or text "
                               "holding numbers)",
                               pszRole, osName.c_str(), Where().c_str(),
                               OGRFieldDefn::GetFieldTypeName(oColumn.eType)));
    return true;
}

ValueStatus PointLoader::ReadValue(const OGRFeature &oFeature, const Column &oColumn,
                                   double *pdfValue, std::string &osText) const
{
    *pdfValue = NaN;
    if (!oFeature.IsFieldSetAndNotNull(oColumn.iField))
        return ValueStatus::MISSING;
    if (oColumn.eType != OFTString)
    {
        *pdfValue = oFeature.GetFieldAsDouble(oColumn.iField);
        return std::isfinite(*pdfValue) ? ValueStatus::OK : ValueStatus::MISSING;
    }
    osText = oFeature.GetFieldAsString(oColumn.iField);
    const std::string osTrimmed = CPLString(osText).Trim();
    if (osTrimmed.empty() || EQUAL(osTrimmed.c_str(), "NA") || EQUAL(osTrimmed.c_str(), "NaN"))
        return ValueStatus::MISSING;
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(osTrimmed.c_str(), &pszEnd);
    if (pszEnd == osTrimmed.c_str() || *pszEnd != '\0')
        return ValueStatus::NOT_A_NUMBER;
    *pdfValue = dfValue;
    return std::isfinite(dfValue) ? ValueStatus::OK : ValueStatus::MISSING;
}

bool PointLoader::BadValue(const OGRFeature &oFeature, const Column &oColumn,
                           const std::string &osText)
{
    // The value itself only with debug output on: it is data (tps_errors.h).
    return Fail(CPLE_AppDefined,
                CPLSPrintf("%s, field '%s', feature " CPL_FRMT_GIB ": the value is not a number%s",
                           Where().c_str(), oColumn.osName.c_str(), oFeature.GetFID(),
                           TPSSourceText("'" + osText + "'").c_str()));
}

bool PointLoader::ReadCovariates(const OGRFeature &oFeature)
{
    std::string osText;
    for (size_t k = 0; k < m_aoCovColumns.size(); k++)
    {
        if (m_aoCovColumns[k].iField < 0)
            continue;
        if (ReadValue(oFeature, m_aoCovColumns[k], &m_adfCov[k], osText) ==
            ValueStatus::NOT_A_NUMBER)
            return BadValue(oFeature, m_aoCovColumns[k], osText);
    }
    return true;
}

void PointLoader::PushCovariates()
{
    for (size_t k = 0; k < m_aoCovColumns.size(); k++)
        if (m_aoCovColumns[k].iField >= 0)
            m_oPoints.aadfCovariates[k].push_back(m_adfCov[k]);
}

/* The feature's <WeightField> value into m_dfWeight. A weight is the
 * point's share of the fit: a missing, non-numeric, non-finite, zero or
 * negative one is an error, never a guess. */
bool PointLoader::ReadWeight(const OGRFeature &oFeature)
{
    std::string osText;
    const ValueStatus eStatus = ReadValue(oFeature, m_oWeightColumn, &m_dfWeight, osText);
    if (eStatus == ValueStatus::NOT_A_NUMBER)
        return BadValue(oFeature, m_oWeightColumn, osText);
    if (eStatus == ValueStatus::MISSING || !(m_dfWeight > 0.0))
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("<WeightField>: %s, field '%s', feature " CPL_FRMT_GIB ": the "
                               "weight %s; every point needs a finite weight > 0",
                               Where().c_str(), m_oWeightColumn.osName.c_str(), oFeature.GetFID(),
                               eStatus == ValueStatus::MISSING
                                   ? "is missing (null, empty, NA or not finite)"
                                   : CPLSPrintf("is zero or negative%s",
                                                TPSSourceText(CPLSPrintf("%.17g", m_dfWeight))
                                                    .c_str())));
    return true;
}

bool PointLoader::AddPoint(const OGRFeature &oFeature, const OGRPoint &oPoint,
                           const std::vector<double> &adfValues)
{
    double dfX = NaN, dfY = NaN, dfZ = NaN;
    if (!oPoint.IsEmpty())
    {
        dfX = oPoint.getX();
        dfY = oPoint.getY();
        if (m_bNeedZ)
        {
            if (!oPoint.Is3D())
                return Fail(CPLE_AppDefined,
                            CPLSPrintf("<GeometryZ/>: feature " CPL_FRMT_GIB " of %s has no Z "
                                       "coordinate",
                                       oFeature.GetFID(), Where().c_str()));
            dfZ = oPoint.getZ();
        }
    }
    if (!Room(1))
        return false;
    m_oPoints.adfX.push_back(dfX);
    m_oPoints.adfY.push_back(dfY);
    if (m_oWeightColumn.iField >= 0)
        m_oPoints.adfWeights.push_back(m_dfWeight);
    for (size_t b = 0; b < adfValues.size(); b++)
        m_oPoints.aadfValues[b].push_back(m_aoBandColumns[b].iField < 0 ? dfZ : adfValues[b]);
    PushCovariates();
    return true;
}

bool PointLoader::AddGeometryPoints(const OGRFeature &oFeature,
                                    const std::vector<double> &adfValues)
{
    const OGRGeometry *poGeom = oFeature.GetGeometryRef();
    if (poGeom == nullptr)
    {
        // No location: passed with NaN coordinates, dropped (and counted) later.
        OGRPoint oEmpty;
        return AddPoint(oFeature, oEmpty, adfValues);
    }
    switch (wkbFlatten(poGeom->getGeometryType()))
    {
    case wkbPoint:
        return AddPoint(oFeature, *poGeom->toPoint(), adfValues);
    case wkbMultiPoint:
        for (const OGRPoint *poPoint : *poGeom->toMultiPoint())
        {
            if (!AddPoint(oFeature, *poPoint, adfValues))
                return false;
        }
        return true;
    default:
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("feature " CPL_FRMT_GIB " of %s has a %s geometry; only "
                               "Point and MultiPoint can be used (or give XField/YField)",
                               oFeature.GetFID(), Where().c_str(),
                               OGRGeometryTypeToName(poGeom->getGeometryType())));
    }
}

bool PointLoader::ReadFeatures(TPSErrorCapture &oCapture)
{
    const size_t nBands = m_oConfig.aoModelBands.size();
    m_oPoints.aadfValues.assign(nBands, std::vector<double>());
    m_oPoints.anMissing.assign(nBands, 0);
    const bool bFromFields = !m_oConfig.osXField.empty();
    std::vector<double> adfValues(nBands, NaN);
    std::string osText;

    oCapture.ClearLastFailure();
    m_poLayer->ResetReading();
    while (true)
    {
        OGRFeatureUniquePtr poFeature(m_poLayer->GetNextFeature());
        if (!poFeature)
            break;
        m_oPoints.nFeatures++;
        for (size_t b = 0; b < nBands; b++)
        {
            const Column &oColumn = m_aoBandColumns[b];
            if (oColumn.iField < 0)
                continue; // <GeometryZ/>: set per point
            const ValueStatus eStatus = ReadValue(*poFeature, oColumn, &adfValues[b], osText);
            if (eStatus == ValueStatus::NOT_A_NUMBER)
                return BadValue(*poFeature, oColumn, osText);
            if (eStatus == ValueStatus::MISSING)
                m_oPoints.anMissing[b]++;
        }
        if (m_oWeightColumn.iField >= 0 && !ReadWeight(*poFeature))
            return false;
        if (!ReadCovariates(*poFeature))
            return false;
        if (bFromFields)
        {
            double adfXY[2] = {NaN, NaN};
            const Column *apoColumns[2] = {&m_oXColumn, &m_oYColumn};
            for (int i = 0; i < 2; i++)
            {
                if (ReadValue(*poFeature, *apoColumns[i], &adfXY[i], osText) ==
                    ValueStatus::NOT_A_NUMBER)
                    return BadValue(*poFeature, *apoColumns[i], osText);
            }
            if (!Room(1))
                return false;
            m_oPoints.adfX.push_back(adfXY[0]);
            m_oPoints.adfY.push_back(adfXY[1]);
            if (m_oWeightColumn.iField >= 0)
                m_oPoints.adfWeights.push_back(m_dfWeight);
            for (size_t b = 0; b < nBands; b++)
                m_oPoints.aadfValues[b].push_back(adfValues[b]);
            PushCovariates();
        }
        else if (!AddGeometryPoints(*poFeature, adfValues))
            return false;
    }
    // GetNextFeature() returns NULL on a read error too: tell them apart.
    if (!oCapture.LastFailure().empty())
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("error while reading %s%s", Where().c_str(),
                               TPSSourceText(oCapture.LastFailure()).c_str()));
    if (m_oPoints.adfX.empty())
    {
        if (m_oConfig.osWhere.empty())
            return Fail(CPLE_AppDefined,
                        CPLSPrintf("no points: %s has no features", Where().c_str()));
        return Fail(CPLE_AppDefined, CPLSPrintf("no points: no feature of %s matches <Where> '%s'",
                                                Where().c_str(), m_oConfig.osWhere.c_str()));
    }
    // Said here rather than left to the engine's "too few points": the
    // user needs to know which column, or that no point has a location.
    size_t nLocated = 0;
    for (size_t i = 0; i < m_oPoints.adfX.size(); i++)
        nLocated += std::isfinite(m_oPoints.adfX[i]) && std::isfinite(m_oPoints.adfY[i]);
    if (nLocated == 0)
        return Fail(
            CPLE_AppDefined,
            CPLSPrintf("no points: none of the %llu features of %s has a location (%s)",
                       static_cast<unsigned long long>(m_oPoints.nFeatures), Where().c_str(),
                       bFromFields ? "empty or NA coordinate fields" : "null or empty geometries"));
    for (size_t b = 0; b < nBands; b++)
    {
        if (m_aoBandColumns[b].iField >= 0 && m_oPoints.anMissing[b] == m_oPoints.nFeatures)
            return Fail(CPLE_AppDefined,
                        CPLSPrintf("no points: field '%s' of %s has no value (all %llu are "
                                   "null, empty, NA or NaN)",
                                   m_aoBandColumns[b].osName.c_str(), Where().c_str(),
                                   static_cast<unsigned long long>(m_oPoints.nFeatures)));
    }
    return true;
}

bool PointLoader::SetUpSRS(OGRSpatialReference &oPointsSRS, bool &bHasPointsSRS)
{
    // Taken whole or refused (tps_srs.h): "EPSG:28992x" is an error.
    std::string osProblem;
    bHasPointsSRS = false;
    if (!m_oConfig.osPointsSRS.empty())
    {
        if (!TPSParseSRS(m_oConfig.osPointsSRS, &oPointsSRS, &osProblem))
            return Fail(CPLE_IllegalArg, m_oConfig.osPointsSRSLabel + ": " + osProblem);
        bHasPointsSRS = true;
    }
    else if (const OGRSpatialReference *poLayerSRS = m_poLayer->GetSpatialRef())
    {
        oPointsSRS = *poLayerSRS;
        bHasPointsSRS = true;
    }
    oPointsSRS.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);

    auto &oOutputSRS = m_oPoints.oOutputSRS;
    if (!m_oConfig.osOutputSRS.empty())
    {
        if (!TPSParseSRS(m_oConfig.osOutputSRS, &oOutputSRS, &osProblem))
            return Fail(CPLE_IllegalArg, "<SRS>: " + osProblem);
        m_oPoints.bHasOutputSRS = true;
    }
    else if (bHasPointsSRS)
    {
        oOutputSRS = oPointsSRS;
        m_oPoints.bHasOutputSRS = true;
    }
    oOutputSRS.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
    return true;
}

bool PointLoader::Reproject(TPSErrorCapture &oCapture, const OGRSpatialReference &oPointsSRS)
{
    std::unique_ptr<OGRCoordinateTransformation> poCT(
        OGRCreateCoordinateTransformation(&oPointsSRS, &m_oPoints.oOutputSRS));
    if (!poCT)
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("cannot transform the points from %s to %s%s", oPointsSRS.GetName(),
                               m_oPoints.oOutputSRS.GetName(), oCapture.Suffix().c_str()));
    // Only points with a location go to PROJ: NaN in, failure out. Their
    // copies (x, y, index, success flag) are charged first.
    const size_t nPoints = m_oPoints.adfX.size();
    if (!Charge(m_poCharge ? m_poCharge->Bytes() + nPoints * 28 : 0,
                "the points read and their copies for the CRS transformation"))
        return false;
    std::vector<double> adfX, adfY;
    std::vector<size_t> anIndex;
    for (size_t i = 0; i < m_oPoints.adfX.size(); i++)
    {
        if (std::isfinite(m_oPoints.adfX[i]) && std::isfinite(m_oPoints.adfY[i]))
        {
            adfX.push_back(m_oPoints.adfX[i]);
            adfY.push_back(m_oPoints.adfY[i]);
            anIndex.push_back(i);
        }
    }
    std::vector<int> abSuccess(adfX.size(), FALSE);
    constexpr size_t CHUNK = 1 << 20; // Transform() counts in int before GDAL 3.9
    for (size_t i = 0; i < adfX.size(); i += CHUNK)
    {
        const int n = static_cast<int>(std::min(CHUNK, adfX.size() - i));
        poCT->Transform(n, &adfX[i], &adfY[i], nullptr, &abSuccess[i]);
    }
    size_t nFailed = 0;
    size_t iFirstFailed = 0;
    for (size_t i = 0; i < adfX.size(); i++)
    {
        if (!abSuccess[i] || !std::isfinite(adfX[i]) || !std::isfinite(adfY[i]))
        {
            if (nFailed++ == 0)
                iFirstFailed = i;
            continue;
        }
        m_oPoints.adfX[anIndex[i]] = adfX[i];
        m_oPoints.adfY[anIndex[i]] = adfY[i];
    }
    if (nFailed)
    {
        const size_t iPoint = anIndex[iFirstFailed];
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("%llu of %llu points could not be transformed from %s to %s%s",
                               static_cast<unsigned long long>(nFailed),
                               static_cast<unsigned long long>(adfX.size()), oPointsSRS.GetName(),
                               m_oPoints.oOutputSRS.GetName(),
                               TPSSourceText(CPLSPrintf("the first: %.17g %.17g; %s",
                                                        m_oPoints.adfX[iPoint],
                                                        m_oPoints.adfY[iPoint],
                                                        oCapture.LastFailure().c_str()))
                                   .c_str()));
    }
    return true;
}

bool PointLoader::Load()
{
    TPSErrorCapture oCapture(true);
    if (!OpenSource(oCapture) || !OpenLayer(oCapture))
        return false;
    if (!m_oConfig.osXField.empty() && (!FindColumn(m_oConfig.osXField, "XField", m_oXColumn) ||
                                        !FindColumn(m_oConfig.osYField, "YField", m_oYColumn)))
        return false;
    for (const auto &oBand : m_oConfig.aoModelBands)
    {
        Column oColumn;
        if (oBand.bGeometryZ)
            m_bNeedZ = true;
        else if (!FindColumn(oBand.osField, "Field", oColumn))
            return false;
        m_aoBandColumns.push_back(oColumn);
    }
    if (!m_oConfig.osWeightField.empty() &&
        !FindColumn(m_oConfig.osWeightField, "WeightField", m_oWeightColumn))
        return false;
    m_aoCovColumns.assign(m_oConfig.aoCovariates.size(), Column());
    m_adfCov.assign(m_oConfig.aoCovariates.size(), NaN);
    m_oPoints.aadfCovariates.assign(m_oConfig.aoCovariates.size(), std::vector<double>());
    for (size_t k = 0; k < m_oConfig.aoCovariates.size(); k++)
        if (!m_oConfig.aoCovariates[k].osField.empty() &&
            !FindColumn(m_oConfig.aoCovariates[k].osField, "<Covariate><Field>",
                        m_aoCovColumns[k]))
            return false;
    if (m_oConfig.osXField.empty() && m_poLayer->GetGeomType() == wkbNone)
        return Fail(CPLE_AppDefined,
                    CPLSPrintf("%s has no geometry: give <XField>/<YField> (open options "
                               "XFIELD/YFIELD) to read the coordinates from attribute columns",
                               Where().c_str()));
    OGRSpatialReference oPointsSRS;
    bool bHasPointsSRS = false;
    if (!SetUpSRS(oPointsSRS, bHasPointsSRS) || !ReadFeatures(oCapture))
        return false;

    if (bHasPointsSRS && m_oPoints.bHasOutputSRS && !oPointsSRS.IsSame(&m_oPoints.oOutputSRS))
    {
        if (!Reproject(oCapture, oPointsSRS))
            return false;
        CPLDebug("TPS", "%s: points transformed from %s to %s", m_oConfig.osName.c_str(),
                 oPointsSRS.GetName(), m_oPoints.oOutputSRS.GetName());
    }
    else if (!bHasPointsSRS && m_oPoints.bHasOutputSRS)
        CPLDebug("TPS", "%s: %s has no CRS; assuming it is the output CRS %s",
                 m_oConfig.osName.c_str(), Where().c_str(), m_oPoints.oOutputSRS.GetName());

    for (size_t i = 0; i < m_oPoints.adfX.size(); i++)
    {
        if (!std::isfinite(m_oPoints.adfX[i]) || !std::isfinite(m_oPoints.adfY[i]))
            m_oPoints.nNonFiniteXY++;
    }
    std::string osMissing;
    for (size_t b = 0; b < m_oPoints.anMissing.size(); b++)
        osMissing += CPLSPrintf("%s%llu", b ? "," : "",
                                static_cast<unsigned long long>(m_oPoints.anMissing[b]));
    CPLDebug("TPS",
             "%s: %llu features of %s give %llu points; %llu without a finite location; "
             "missing values per band: %s",
             m_oConfig.osName.c_str(), static_cast<unsigned long long>(m_oPoints.nFeatures),
             Where().c_str(), static_cast<unsigned long long>(m_oPoints.adfX.size()),
             static_cast<unsigned long long>(m_oPoints.nNonFiniteXY), osMissing.c_str());
    return true;
}

} // namespace

bool PointLoader::Describe(std::vector<std::string> *paosFiles)
{
    TPSErrorCapture oCapture(true);
    OGRSpatialReference oPointsSRS;
    bool bHasPointsSRS = false;
    if (!OpenSource(oCapture) || !OpenLayer(oCapture) ||
        !SetUpSRS(oPointsSRS, bHasPointsSRS))
        return false;
    const CPLStringList aosList(m_poDS->GetFileList());
    for (int i = 0; i < aosList.size(); i++)
        paosFiles->emplace_back(aosList[i]);
    return true;
}

bool TPSDescribeSource(const TPSConfig &oConfig, TPSSourceInfo *psInfo, std::string *posWhyNot)
{
    // Quietly, warnings included: the solve that may follow reports them.
    CPLErrorStateBackuper oErrorState;
    CPLErrorHandlerPusher oQuiet(CPLQuietErrorHandler);
    TPSPoints oPoints;
    PointLoader oLoader(oConfig, oPoints);
    psInfo->aosFiles.clear();
    if (!oLoader.Describe(&psInfo->aosFiles))
    {
        *posWhyNot = oLoader.m_osError;
        return false;
    }
    psInfo->bHasOutputSRS = oPoints.bHasOutputSRS;
    psInfo->oOutputSRS = oPoints.oOutputSRS;
    return true;
}

bool TPSMaxPoints(const std::string &osName, size_t *pnMaxPoints)
{
    const char *pszValue = CPLGetConfigOption("TPS_MAX_POINTS", nullptr);
    *pnMaxPoints = DEFAULT_MAX_POINTS;
    if (pszValue == nullptr)
        return true;
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(pszValue, &pszEnd);
    if (pszEnd == pszValue || *pszEnd != '\0' || !(dfValue >= 3) || dfValue > 1e15 ||
        dfValue != std::floor(dfValue))
    {
        CPLError(CE_Failure, CPLE_IllegalArg,
                 "%s: TPS_MAX_POINTS: expected a whole number of points >= 3, got '%s'",
                 osName.c_str(), TPSShown(pszValue).c_str());
        return false;
    }
    *pnMaxPoints = static_cast<size_t>(dfValue);
    return true;
}

bool TPSLoadPoints(const TPSConfig &oConfig, TPSPoints *psPoints, TPSMemoryCharge *poCharge,
                   size_t nBudget)
{
    size_t nMaxPoints = 0;
    if (!TPSMaxPoints(oConfig.osName, &nMaxPoints))
        return false;
    TPSPoints oPoints;
    PointLoader oLoader(oConfig, oPoints);
    oLoader.SetLimits(nMaxPoints, poCharge, nBudget);
    if (!oLoader.Load()) // its TPSErrorCapture is gone once Load() returns
    {
        CPLError(CE_Failure, oLoader.m_nErrorNum, "%s",
                 TPSSanitize(oConfig.osName + ": " + oLoader.m_osError).c_str());
        return false;
    }
    *psPoints = std::move(oPoints);
    return true;
}
