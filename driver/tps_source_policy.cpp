/*
 * tps_source_policy.cpp: see tps_source_policy.h.
 *
 * LOCAL is an allow-list, not a list of what to refuse: GDAL gains network
 * file systems, database drivers and drivers that follow references from
 * one release to the next, and anything this file does not know is
 * refused. A source is taken apart into what is underneath it: "CSV:" and
 * the archive prefixes wrap a path, which must itself be local; a local
 * path is then resolved with realpath (the longest part that exists, for a
 * file that does not: a refusal must not depend on whether a file outside
 * the folder exists).
 */
#include "tps_source_policy.h"

#include "tps_errors.h"
#include "tps_paths.h"

#include "cpl_conv.h"
#include "cpl_error.h"
#include "cpl_string.h"
#include "cpl_vsi.h"

#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace
{

constexpr const char OPTION[] = "TPS_ALLOWED_SOURCES";

/* The drivers LOCAL lets read a source: formats whose reader opens only
 * the file (or folder) it is given and its fixed companions. Not here on
 * purpose: OGR VRT and WFS (they name other sources, network and databases
 * included), GML and GMLAS (schema downloads), LIBKML (network links),
 * SQLite (virtual tables over other files), MapInfo (seamless tables name
 * other tables). */
const char *const apszLocalDrivers[] = {
    "CSV",        "ESRI Shapefile", "GPKG",        "GeoJSON", "GeoJSONSeq", "ESRIJSON",
    "TopoJSON",   "FlatGeobuf",     "OpenFileGDB", "KML",     "GPX",        "Parquet",
    "Arrow",      "XLSX",           "ODS"};

/* The raster drivers LOCAL lets read a covariate raster: formats that read
 * the file they are given and its fixed companions (overviews, .aux.xml,
 * world files). Not VRT (it names other data sets, network ones included),
 * nor any network or database driver. */
const char *const apszLocalRasterDrivers[] = {"GTiff", "COG",     "GPKG",     "HFA",
                                              "ENVI",  "EHdr",    "AAIGrid",  "XYZ",
                                              "PNG",   "JPEG",    "SRTMHGT",  "USGSDEM",
                                              "BT",    "GS7BG",   "GSAG",     "GSBG"};

/* Virtual file systems over another path, which must be local in turn. */
const char *const apszArchivePrefixes[] = {"/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/",
                                           "/vsirar/"};

struct Item
{
    enum Kind
    {
        SIBLING_OR_CHILD,
        LOCAL,
        ALL,
        PREFIX
    } eKind;
    std::string osPrefix;
};

std::vector<Item> ParsePolicy(const std::string &osValue)
{
    std::vector<Item> aoItems;
    const CPLStringList aosTokens(CSLTokenizeString2(osValue.c_str(), ", \t", 0));
    for (int i = 0; i < aosTokens.size(); i++)
    {
        const char *pszToken = aosTokens[i];
        if (EQUAL(pszToken, "SIBLING_OR_CHILD"))
            aoItems.push_back({Item::SIBLING_OR_CHILD, std::string()});
        else if (EQUAL(pszToken, "LOCAL"))
            aoItems.push_back({Item::LOCAL, std::string()});
        else if (EQUAL(pszToken, "ALL"))
            aoItems.push_back({Item::ALL, std::string()});
        else
            aoItems.push_back({Item::PREFIX, pszToken});
    }
    if (aoItems.empty())
        aoItems.push_back({Item::LOCAL, std::string()});
    return aoItems;
}

/* What a source is once its wrappers are taken off. */
struct Underlying
{
    bool bLocal = false;
    std::string osPath{}; /* a plain path, or a /vsimem/ one */
    std::string osWhy{};  /* why not local */
};

Underlying Unwrap(const std::string &osSource, int nDepth = 0)
{
    Underlying oOut;
    if (nDepth > 8)
    {
        oOut.osWhy = "virtual file systems nested too deeply";
        return oOut;
    }
    if (osSource.empty())
    {
        oOut.osWhy = "an empty name";
        return oOut;
    }
    // The CSV driver's own prefix, on a file name.
    if (STARTS_WITH_CI(osSource.c_str(), "CSV:"))
        return Unwrap(osSource.substr(4), nDepth + 1);
    if (STARTS_WITH(osSource.c_str(), "/vsi"))
    {
        if (STARTS_WITH(osSource.c_str(), "/vsimem/"))
        {
            oOut.bLocal = true;
            oOut.osPath = osSource;
            return oOut;
        }
        for (const char *pszPrefix : apszArchivePrefixes)
        {
            if (!STARTS_WITH(osSource.c_str(), pszPrefix))
                continue;
            std::string osInner = osSource.substr(strlen(pszPrefix));
            // "/vsizip/{/a/b.zip}/c.csv": the archive in braces.
            if (!osInner.empty() && osInner[0] == '{')
            {
                const size_t nClose = osInner.find('}');
                if (nClose == std::string::npos)
                {
                    oOut.osWhy = "an archive name without its closing brace";
                    return oOut;
                }
                osInner = osInner.substr(1, nClose - 1) + osInner.substr(nClose + 1);
            }
            return Unwrap(osInner, nDepth + 1);
        }
        if (STARTS_WITH(osSource.c_str(), "/vsisubfile/"))
        {
            const size_t nComma = osSource.find(',');
            if (nComma == std::string::npos)
            {
                oOut.osWhy = "a /vsisubfile/ name without its file";
                return oOut;
            }
            return Unwrap(osSource.substr(nComma + 1), nDepth + 1);
        }
        const size_t nEnd = osSource.find_first_of("/?", 4);
        oOut.osWhy = "a file on " +
                     osSource.substr(0, nEnd == std::string::npos ? osSource.size() : nEnd + 1) +
                     ", which is not a local file system";
        return oOut;
    }
    if (TPSIsConnectionString(osSource.c_str()))
    {
        oOut.osWhy = "a database, service or network connection (" +
                     osSource.substr(0, osSource.find(':') + 1) + ")";
        return oOut;
    }
    oOut.bLocal = true;
    oOut.osPath = osSource;
    return oOut;
}

/* "/a/./b/../c" -> "/a/c" without looking at the file system; ".." never
 * climbs above the root (nor above "/vsimem"). */
std::string LexicalClean(const std::string &osPath)
{
    const bool bAbsolute = !osPath.empty() && osPath[0] == '/';
    std::vector<std::string> aosParts;
    const CPLStringList aosTokens(CSLTokenizeString2(osPath.c_str(), "/", 0));
    const bool bVSIMem = STARTS_WITH(osPath.c_str(), "/vsimem/");
    for (int i = 0; i < aosTokens.size(); i++)
    {
        const std::string osPart = aosTokens[i];
        if (osPart == ".")
            continue;
        if (osPart == "..")
        {
            if (!aosParts.empty() && aosParts.back() != ".." &&
                !(bVSIMem && aosParts.size() == 1))
                aosParts.pop_back();
            else if (!bAbsolute)
                aosParts.push_back(osPart);
            continue;
        }
        aosParts.push_back(osPart);
    }
    std::string osOut = bAbsolute ? "/" : "";
    for (size_t i = 0; i < aosParts.size(); i++)
        osOut += (i ? "/" : "") + aosParts[i];
    return osOut;
}

std::string RealPath(const std::string &osPath)
{
    char szReal[PATH_MAX];
    if (realpath(osPath.c_str(), szReal) == nullptr)
        return std::string();
    return szReal;
}

/* Where a local path (Unwrap's osPath) really is: /vsimem/ paths cleaned
 * lexically; a plain path made absolute and resolved by realpath, symbolic
 * links and ".." as the system follows them. Of a path that does not
 * exist, the longest existing part is resolved and the rest appended
 * (a ".." in the rest cannot be resolved: ""). "" when it cannot be
 * placed. */
std::string Canonical(const std::string &osPath)
{
    if (STARTS_WITH(osPath.c_str(), "/vsimem/"))
        return LexicalClean(osPath);
    std::string osAbs = osPath;
    if (CPLIsFilenameRelative(osPath.c_str()))
    {
        char *pszCwd = CPLGetCurrentDir();
        if (pszCwd == nullptr)
            return std::string();
        osAbs = std::string(pszCwd) + "/" + osPath;
        CPLFree(pszCwd);
    }
    std::string osReal = RealPath(osAbs);
    if (!osReal.empty())
        return osReal;
    std::string osRest;
    std::string osHead = osAbs;
    while (true)
    {
        while (osHead.size() > 1 && osHead.back() == '/')
            osHead.pop_back();
        const size_t nSlash = osHead.rfind('/');
        if (nSlash == std::string::npos || osHead.size() <= 1)
            return std::string();
        const std::string osLast = osHead.substr(nSlash + 1);
        if (osLast == "..")
            return std::string();
        if (osLast != "." && !osLast.empty())
            osRest = osRest.empty() ? osLast : osLast + "/" + osRest;
        osHead = nSlash == 0 ? "/" : osHead.substr(0, nSlash);
        osReal = RealPath(osHead);
        if (!osReal.empty())
            return (osReal == "/" ? "" : osReal) + "/" + osRest;
    }
}

/* osInner is osFolder or below it (both Canonical). */
bool IsInside(const std::string &osInner, const std::string &osFolder)
{
    if (osInner.empty() || osFolder.empty())
        return false;
    if (osInner == osFolder)
        return true;
    const std::string osBase = osFolder.back() == '/' ? osFolder : osFolder + "/";
    return osInner.compare(0, osBase.size(), osBase) == 0;
}

/* The .tps file's folder, Canonical; "" when there is none. */
std::string TPSFolder(const TPSConfig &c)
{
    if (c.osTPSFile.empty())
        return std::string();
    const Underlying oFolder = Unwrap(c.osBaseDir.empty() ? "." : c.osBaseDir);
    if (!oFolder.bLocal)
        return std::string();
    return Canonical(oFolder.osPath);
}

/* A prefix item matches the source as written (connection strings, any
 * case) or where it really is (paths, at a folder boundary). */
bool PrefixMatches(const std::string &osPrefix, const std::string &osSource)
{
    if (TPSIsConnectionString(osSource.c_str()))
        return STARTS_WITH_CI(osSource.c_str(), osPrefix.c_str());
    std::string osWhere;
    if (STARTS_WITH(osSource.c_str(), "/vsi"))
    {
        // As written ("http://" keeps its "//"), but a "." or ".." part
        // (which a URL's server may resolve past the prefix) matches none.
        const CPLStringList aosParts(CSLTokenizeString2(osSource.c_str(), "/", 0));
        for (int i = 0; i < aosParts.size(); i++)
        {
            if (strcmp(aosParts[i], ".") == 0 || strcmp(aosParts[i], "..") == 0)
                return false;
        }
        osWhere = osSource;
    }
    else
        osWhere = Canonical(osSource);
    if (osWhere.compare(0, osPrefix.size(), osPrefix) != 0)
        return false;
    return osPrefix.back() == '/' || osWhere.size() == osPrefix.size() ||
           osWhere[osPrefix.size()] == '/';
}

/* A local path that exists must be a file or a folder: a FIFO would block
 * the open forever, a device never end. */
bool IsFileOrFolder(const std::string &osPath, std::string *posWhy)
{
    VSIStatBufL sStat;
    if (VSIStatL(osPath.c_str(), &sStat) != 0)
        return true; // the open says "no such file"
    if (VSI_ISREG(sStat.st_mode) || VSI_ISDIR(sStat.st_mode))
        return true;
    *posWhy = "not a regular file or folder";
    return false;
}

} // namespace

namespace
{

/* The policy's verdict on one source (points or a covariate raster): true
 * with the drivers that may read it and the folder its files must be in,
 * or false with the first refusing item's reason. */
struct Verdict
{
    std::vector<std::string> aosDrivers{};
    std::string osFolder{};
    std::string osWhy{};
    bool bLocalRefused = false; /* a local file that only SIBLING_OR_CHILD refused */
};

bool Decide(const TPSConfig &c, const std::string &osSource, const char *const *papszDrivers,
            size_t nDrivers, const std::string &osValue, Verdict *poVerdict)
{
    const std::vector<Item> aoItems = ParsePolicy(osValue);
    const Underlying oUnder = Unwrap(osSource);
    for (const Item &oItem : aoItems)
    {
        std::string osItemWhy;
        switch (oItem.eKind)
        {
        case Item::ALL:
            return true;
        case Item::PREFIX:
            if (PrefixMatches(oItem.osPrefix, osSource))
                return true;
            osItemWhy = "none of the listed prefixes matches";
            break;
        case Item::LOCAL:
            if (oUnder.bLocal && IsFileOrFolder(oUnder.osPath, &osItemWhy))
            {
                poVerdict->aosDrivers.assign(papszDrivers, papszDrivers + nDrivers);
                return true;
            }
            if (osItemWhy.empty())
                osItemWhy = oUnder.osWhy;
            break;
        case Item::SIBLING_OR_CHILD:
        {
            const std::string osFolder = TPSFolder(c);
            if (c.osTPSFile.empty())
                osItemWhy = "the TPS: form and inline XML have no .tps folder to keep to";
            else if (!oUnder.bLocal)
                osItemWhy = oUnder.osWhy;
            else if (osFolder.empty() || !IsInside(Canonical(oUnder.osPath), osFolder))
            {
                osItemWhy = "not in the .tps file's folder or below, '..' and symbolic links "
                            "resolved";
                poVerdict->bLocalRefused = true;
            }
            else if (IsFileOrFolder(oUnder.osPath, &osItemWhy))
            {
                poVerdict->aosDrivers.assign(papszDrivers, papszDrivers + nDrivers);
                poVerdict->osFolder = osFolder;
                return true;
            }
            break;
        }
        }
        if (poVerdict->osWhy.empty())
            poVerdict->osWhy = osItemWhy;
    }
    return false;
}

/* The refusal's one CE_Failure: the label, the option, why, what allows it,
 * and the source last (GDAL hides "password=..." up to the next blank
 * itself, and would take a closing quote with it). */
void Refuse(const TPSConfig &c, const std::string &osLabel, const std::string &osSource,
            const std::string &osValue, const Verdict &oVerdict)
{
    std::string osAdvice;
    if (oVerdict.bLocalRefused && Unwrap(osSource).bLocal)
        osAdvice = std::string("set ") + OPTION + "=LOCAL to read any local file";
    else
        osAdvice = std::string("set ") + OPTION +
                   "=ALL, or add a prefix of it to the list (e.g. " + OPTION +
                   "=LOCAL,PG:), to read it";
    CPLError(CE_Failure, CPLE_NotSupported, "%s",
             TPSSanitize(c.osName + ": " + osLabel + " refused by " + OPTION + "=" + osValue +
                         ": " + oVerdict.osWhy + "; " + osAdvice + ": " +
                         TPSShown(TPSSourceForMessage(osSource)))
                 .c_str());
}

} // namespace

bool TPSApplyCovariatePolicy(TPSConfig *poConfig)
{
    const std::string osValue = CPLString(CPLGetConfigOption(OPTION, "LOCAL")).Trim();
    for (size_t k = 0; k < poConfig->aoCovariates.size(); k++)
    {
        TPSCovariateConfig &oCov = poConfig->aoCovariates[k];
        Verdict oVerdict;
        if (!Decide(*poConfig, oCov.osRaster, apszLocalRasterDrivers,
                    std::size(apszLocalRasterDrivers), osValue, &oVerdict))
        {
            Refuse(*poConfig, CPLSPrintf("<Covariate> #%d: <Raster>", static_cast<int>(k) + 1),
                   oCov.osRaster, osValue, oVerdict);
            return false;
        }
        oCov.aosDrivers = oVerdict.aosDrivers;
        oCov.osFolder = oVerdict.osFolder;
    }
    return true;
}

bool TPSCovariateFilesInFolder(const TPSCovariateConfig &oCov,
                               const std::vector<std::string> &aosFiles, std::string *posWhy)
{
    if (oCov.osFolder.empty())
        return true;
    for (const std::string &osFile : aosFiles)
    {
        const Underlying oUnder = Unwrap(osFile);
        if (!oUnder.bLocal || !IsInside(Canonical(oUnder.osPath), oCov.osFolder))
        {
            *posWhy = "its file '" + TPSShown(osFile) +
                      "' is not in the .tps file's folder or below (after resolving '..' and "
                      "symbolic links), which " +
                      OPTION + "=SIBLING_OR_CHILD requires";
            return false;
        }
    }
    return true;
}

bool TPSApplySourcePolicy(TPSConfig *poConfig)
{
    TPSConfig &c = *poConfig;
    c.aosSourceDrivers.clear();
    c.osSourceFolder.clear();
    const std::string osValue = CPLString(CPLGetConfigOption(OPTION, "LOCAL")).Trim();
    Verdict oVerdict;
    if (Decide(c, c.osSource, apszLocalDrivers, std::size(apszLocalDrivers), osValue, &oVerdict))
    {
        c.aosSourceDrivers = oVerdict.aosDrivers;
        c.osSourceFolder = oVerdict.osFolder;
        return true;
    }
    Refuse(c,
           c.osTPSFile.empty() && c.osName.compare(0, 4, "TPS:") == 0 ? "the source"
                                                                      : "<Points><Source>",
           c.osSource, osValue, oVerdict);
    return false;
}

bool TPSSourceFilesInFolder(const TPSConfig &c, const std::vector<std::string> &aosFiles,
                            std::string *posWhy)
{
    if (c.osSourceFolder.empty())
        return true;
    for (const std::string &osFile : aosFiles)
    {
        const Underlying oUnder = Unwrap(osFile);
        if (!oUnder.bLocal || !IsInside(Canonical(oUnder.osPath), c.osSourceFolder))
        {
            *posWhy = "its file '" + TPSShown(osFile) +
                      "' is not in the .tps file's folder or below (after resolving '..' and "
                      "symbolic links), which " +
                      OPTION + "=SIBLING_OR_CHILD requires";
            return false;
        }
    }
    return true;
}

std::string TPSLocalPathOf(const std::string &osPath)
{
    const Underlying oUnder = Unwrap(osPath);
    return oUnder.bLocal ? oUnder.osPath : std::string();
}

namespace
{

/* A parameter name whose value is a secret. */
bool IsSecretKey(const std::string &osKey)
{
    const CPLString osLower = CPLString(osKey).tolower();
    static const char *const apszWords[] = {"pass", "pwd", "secret", "token", "key",
                                            "sig",  "auth", "cred", "sas"};
    for (const char *pszWord : apszWords)
    {
        if (osLower.find(pszWord) != std::string::npos)
            return true;
    }
    return false;
}

} // namespace

std::string TPSSourceForMessage(const std::string &osSource)
{
    const bool bURL = osSource.find("://") != std::string::npos;
    if (!TPSIsConnectionString(osSource.c_str()) && !STARTS_WITH(osSource.c_str(), "/vsi") &&
        !bURL)
        return osSource;
    std::string osOut;
    size_t i = 0;
    const size_t n = osSource.size();
    // "scheme:user/secret@service" (OCI, ODBC): the part after '/' hidden.
    const size_t nColon = osSource.find(':');
    const size_t nAt = osSource.find('@');
    if (!bURL && nColon != std::string::npos && nAt != std::string::npos && nAt > nColon)
    {
        const size_t nSlash = osSource.find('/', nColon);
        if (nSlash != std::string::npos && nSlash < nAt &&
            osSource.find_first_of(" =;,", nColon) > nAt)
        {
            osOut = osSource.substr(0, nSlash + 1) + "***";
            i = nAt;
        }
    }
    while (i < n)
    {
        // "://user:secret@host": the user information.
        if (osSource.compare(i, 3, "://") == 0)
        {
            osOut += "://";
            i += 3;
            const size_t nEnd = osSource.find_first_of("/?# ", i);
            const size_t nHostEnd = nEnd == std::string::npos ? n : nEnd;
            const size_t nUserAt = osSource.rfind('@', nHostEnd);
            if (nUserAt != std::string::npos && nUserAt >= i && nUserAt < nHostEnd)
            {
                osOut += "***@";
                i = nUserAt + 1;
            }
            continue;
        }
        // A URL's query: any of its parameters may be a credential.
        if (bURL && osSource[i] == '?')
        {
            const size_t nEnd = osSource.find_first_of(" #", i);
            osOut += "?***";
            i = nEnd == std::string::npos ? n : nEnd;
            continue;
        }
        // "key=value" with a secret key: the value hidden, quotes included.
        if (osSource[i] == '=')
        {
            size_t nKeyStart = osOut.size();
            while (nKeyStart > 0 && (std::isalnum(static_cast<unsigned char>(osOut[nKeyStart - 1])) ||
                                     osOut[nKeyStart - 1] == '_' || osOut[nKeyStart - 1] == '-'))
                nKeyStart--;
            osOut += '=';
            i++;
            if (IsSecretKey(osOut.substr(nKeyStart, osOut.size() - 1 - nKeyStart)))
            {
                size_t nEnd = i;
                if (nEnd < n && (osSource[nEnd] == '\'' || osSource[nEnd] == '"'))
                {
                    const size_t nClose = osSource.find(osSource[nEnd], nEnd + 1);
                    nEnd = nClose == std::string::npos ? n : nClose + 1;
                }
                else
                {
                    while (nEnd < n && !strchr(" \t,;&", osSource[nEnd]))
                        nEnd++;
                }
                osOut += "***";
                i = nEnd;
            }
            continue;
        }
        osOut += osSource[i++];
    }
    return osOut;
}
