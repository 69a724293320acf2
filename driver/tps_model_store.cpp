/*
 * tps_model_store.cpp: see tps_model_store.h.
 */
#include "tps_model_store.h"

#include "tps_sha256.h"

#include "cpl_conv.h"
#include "cpl_error.h"
#include "cpl_string.h"
#include "cpl_vsi.h"
#include "gdal_version.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#define TPS_HAVE_UTIMENSAT 1
#include <fcntl.h>
#include <sys/stat.h>
#endif

namespace
{

constexpr const char ENTRY_INFIX[] = ".model.";
/* Hex digits of the configuration's SHA-256 in a name: 64 bits. Two
 * configurations that share a name only cost solves (each file is still
 * checked against the full hash, tps_model_file.h). */
constexpr size_t NAME_HEX_DIGITS = 16;
constexpr int DEFAULT_MAX_FILES = 8;

/* TPS_MODEL_CACHE_MAX_FILES: a whole number, 1 or more; a bad value is
 * warned about (it is the user's setting) and the default used. */
int MaxFiles()
{
    const char *pszValue = CPLGetConfigOption("TPS_MODEL_CACHE_MAX_FILES", nullptr);
    if (pszValue == nullptr || pszValue[0] == '\0')
        return DEFAULT_MAX_FILES;
    char *pszEnd = nullptr;
    errno = 0;
    const long nValue = strtol(pszValue, &pszEnd, 10);
    if (pszEnd == pszValue || *pszEnd != '\0' || errno != 0 || nValue < 1 || nValue > 1000000)
    {
        CPLError(CE_Warning, CPLE_IllegalArg,
                 "TPS_MODEL_CACHE_MAX_FILES=%s is not a whole number from 1 to 1000000: "
                 "using %d",
                 pszValue, DEFAULT_MAX_FILES);
        return DEFAULT_MAX_FILES;
    }
    return static_cast<int>(nValue);
}

std::string FolderOf(const std::string &osFile)
{
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    std::string osFolder = CPLGetPathSafe(osFile.c_str());
#else
    std::string osFolder = CPLGetPath(osFile.c_str());
#endif
    return osFolder.empty() ? std::string(".") : osFolder;
}

/* Modification time in nanoseconds where known: the order of use. */
long long UseTime(const VSIStatBufL &sStat)
{
#if defined(__linux__)
    return static_cast<long long>(sStat.st_mtime) * 1000000000LL +
           static_cast<long long>(sStat.st_mtim.tv_nsec);
#else
    return static_cast<long long>(sStat.st_mtime) * 1000000000LL;
#endif
}

} // namespace

std::string TPSModelStorePath(const std::string &osTPSFile, const std::string &osConfigKey)
{
    GByte abyHash[32];
    CPL_SHA256(osConfigKey.data(), osConfigKey.size(), abyHash);
    std::string osPath = osTPSFile + ENTRY_INFIX;
    for (size_t i = 0; i < NAME_HEX_DIGITS / 2; i++)
        osPath += CPLSPrintf("%02x", abyHash[i]);
    return osPath;
}

bool TPSModelStoreIsEntry(const std::string &osTPSFile, const std::string &osFile)
{
    const std::string osPrefix = std::string(CPLGetFilename(osTPSFile.c_str())) + ENTRY_INFIX;
    const std::string osName = CPLGetFilename(osFile.c_str());
    if (osName.size() != osPrefix.size() + NAME_HEX_DIGITS ||
        osName.compare(0, osPrefix.size(), osPrefix) != 0)
        return false;
    return osName.find_first_not_of("0123456789abcdef", osPrefix.size()) == std::string::npos;
}

void TPSModelStoreTouch(const std::string &osPath)
{
#ifdef TPS_HAVE_UTIMENSAT
    // VSI cannot set a file's time: real file systems only. A file this
    // process may read but not change (a shared copy) keeps its time.
    if (!STARTS_WITH(osPath.c_str(), "/vsi") &&
        utimensat(AT_FDCWD, osPath.c_str(), nullptr, 0) != 0)
        CPLDebug("TPS", "%s: cannot mark it used: %s", osPath.c_str(), strerror(errno));
#else
    (void)osPath;
#endif
}

void TPSModelStoreTrim(const std::string &osTPSFile, const std::string &osKeep)
{
    const int nMax = MaxFiles();
    const std::string osFolder = FolderOf(osTPSFile);
    const CPLStringList aosNames(VSIReadDir(osFolder.c_str()));
    std::vector<std::pair<long long, std::string>> aoOthers; /* (use time, path) */
    for (int i = 0; i < aosNames.size(); i++)
    {
        const std::string osPath = osFolder + "/" + aosNames[i];
        if (!TPSModelStoreIsEntry(osTPSFile, osPath) ||
            std::string(CPLGetFilename(osKeep.c_str())) == aosNames[i])
            continue;
        VSIStatBufL sStat;
        if (VSIStatL(osPath.c_str(), &sStat) == 0 && VSI_ISREG(sStat.st_mode))
            aoOthers.emplace_back(UseTime(sStat), osPath);
    }
    // osKeep takes one of the nMax places.
    if (static_cast<long long>(aoOthers.size()) + 1 <= nMax)
        return;
    std::sort(aoOthers.begin(), aoOthers.end());
    const size_t nRemove = aoOthers.size() + 1 - static_cast<size_t>(nMax);
    for (size_t i = 0; i < nRemove; i++)
    {
        const std::string &osPath = aoOthers[i].second;
        if (VSIUnlink(osPath.c_str()) == 0)
            CPLDebug("TPS", "%s: removed, the least recently used of more than %d model files",
                     osPath.c_str(), nMax);
        else
            CPLDebug("TPS", "%s: cannot remove it: %s", osPath.c_str(), VSIStrerror(errno));
    }
}
