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
#include "tps_srs.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "gdal_priv.h"
#include "ogr_feature.h"
#include "ogr_geometry.h"
#include "ogrsf_frmts.h"

#include <cmath>
#include <limits>
#include <memory>

namespace
{

constexpr double NaN = std::numeric_limits<double>::quiet_NaN();

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
    double m_dfWeight = 1.0;               /* the current feature's weight */
    bool m_bNeedZ = false;

    bool Fail(CPLErrorNum nNum, const std::string &osMsg)
    {
        m_nErrorNum = nNum;
        m_osError = osMsg;
        return false;
    }
    std::string Where() const;
    bool OpenSource(TPSErrorCapture &oCapture);
    bool OpenLayer(TPSErrorCapture &oCapture);
    bool FindColumn(const std::string &osName, const char *pszRole, Column &oColumn);
    ValueStatus ReadValue(const OGRFeature &oFeature, const Column &oColumn, double *pdfValue,
                          std::string &osText) const;
    bool BadValue(const OGRFeature &oFeature, const Column &oColumn, const std::string &osText);
    bool ReadWeight(const OGRFeature &oFeature);
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
    return CPLSPrintf("layer '%s' of '%s'", m_oPoints.osLayerName.c_str(),
                      m_oConfig.osSource.c_str());
}

bool PointLoader::OpenSource(TPSErrorCapture &oCapture)
{
    const char *pszSource = m_oConfig.osSource.c_str();
    m_poDS.reset(GDALDataset::Open(pszSource, GDAL_OF_VECTOR | GDAL_OF_READONLY));
    if (m_poDS)
        return true;
    VSIStatBufL sStat;
    if (!TPSIsConnectionString(pszSource) && VSIStatL(pszSource, &sStat) != 0)
        return Fail(CPLE_OpenFailed,
                    CPLSPrintf("cannot open the point source '%s': no such file", pszSource));
    return Fail(CPLE_OpenFailed,
                CPLSPrintf("cannot open the point source '%s' as a vector data set%s", pszSource,
                           oCapture.Suffix().c_str()));
}

bool PointLoader::OpenLayer(TPSErrorCapture &oCapture)
{
    if (m_oConfig.osLayer.empty())
    {
        if (m_poDS->GetLayerCount() == 0)
            return Fail(CPLE_OpenFailed, CPLSPrintf("the point source '%s' has no layers",
                                                    m_oConfig.osSource.c_str()));
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
                               m_oConfig.osSource.c_str(), JoinNames(aosLayers).c_str()));
    }
    m_oPoints.osLayerName = m_poLayer->GetName();
    if (!m_oConfig.osWhere.empty() &&
        m_poLayer->SetAttributeFilter(m_oConfig.osWhere.c_str()) != OGRERR_NONE)
    {
        return Fail(CPLE_IllegalArg, CPLSPrintf("<Where>: invalid attribute filter '%s' on %s%s",
                                                m_oConfig.osWhere.c_str(), Where().c_str(),
                                                oCapture.Suffix().c_str()));
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
    return Fail(CPLE_AppDefined,
                CPLSPrintf("%s, field '%s', feature " CPL_FRMT_GIB ": '%s' is not a number",
                           Where().c_str(), oColumn.osName.c_str(), oFeature.GetFID(),
                           TPSShown(osText).c_str()));
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
                                   : CPLSPrintf("is %.17g", m_dfWeight)));
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
    m_oPoints.adfX.push_back(dfX);
    m_oPoints.adfY.push_back(dfY);
    if (m_oWeightColumn.iField >= 0)
        m_oPoints.adfWeights.push_back(m_dfWeight);
    for (size_t b = 0; b < adfValues.size(); b++)
        m_oPoints.aadfValues[b].push_back(m_aoBandColumns[b].iField < 0 ? dfZ : adfValues[b]);
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
            m_oPoints.adfX.push_back(adfXY[0]);
            m_oPoints.adfY.push_back(adfXY[1]);
            if (m_oWeightColumn.iField >= 0)
                m_oPoints.adfWeights.push_back(m_dfWeight);
            for (size_t b = 0; b < nBands; b++)
                m_oPoints.aadfValues[b].push_back(adfValues[b]);
        }
        else if (!AddGeometryPoints(*poFeature, adfValues))
            return false;
    }
    // GetNextFeature() returns NULL on a read error too: tell them apart.
    if (!oCapture.LastFailure().empty())
        return Fail(CPLE_AppDefined, CPLSPrintf("error while reading %s%s", Where().c_str(),
                                                oCapture.Suffix().c_str()));
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
    // Only points with a location go to PROJ: NaN in, failure out.
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
                    CPLSPrintf("%llu of %llu points could not be transformed from %s to %s "
                               "(the first: %.17g %.17g)%s",
                               static_cast<unsigned long long>(nFailed),
                               static_cast<unsigned long long>(adfX.size()), oPointsSRS.GetName(),
                               m_oPoints.oOutputSRS.GetName(), m_oPoints.adfX[iPoint],
                               m_oPoints.adfY[iPoint], oCapture.Suffix().c_str()));
    }
    return true;
}

bool PointLoader::Load()
{
    TPSErrorCapture oCapture;
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
    TPSErrorCapture oCapture;
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

bool TPSLoadPoints(const TPSConfig &oConfig, TPSPoints *psPoints)
{
    TPSPoints oPoints;
    PointLoader oLoader(oConfig, oPoints);
    if (!oLoader.Load()) // its TPSErrorCapture is gone once Load() returns
    {
        CPLError(CE_Failure, oLoader.m_nErrorNum, "%s",
                 TPSSanitize(oConfig.osName + ": " + oLoader.m_osError).c_str());
        return false;
    }
    *psPoints = std::move(oPoints);
    return true;
}
