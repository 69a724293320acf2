/*
 * tps_paths.cpp: where the points' source is: a connection string or a
 * path, resolved against the .tps file's folder.
 */
#include "tps_paths.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "gdal_version.h"

#include <cctype>
#include <cstring>
#include <vector>

namespace
{

std::string ProjectRelative(const std::string &osDir, const std::string &osFile)
{
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    return CPLProjectRelativeFilenameSafe(osDir.c_str(), osFile.c_str());
#else
    return CPLProjectRelativeFilename(osDir.c_str(), osFile.c_str());
#endif
}

} // namespace

bool TPSIsConnectionString(const char *pszSource)
{
    // A scheme of two or more characters before a colon ("C:" is a Windows
    // drive, hence two).
    const char *pszColon = strchr(pszSource, ':');
    if (pszColon == nullptr || pszColon - pszSource < 2 || STARTS_WITH(pszSource, "/vsi"))
        return false;
    for (const char *p = pszSource; p < pszColon; p++)
    {
        if (!std::isalnum(static_cast<unsigned char>(*p)) && *p != '_' && *p != '-' && *p != '+')
            return false;
    }
    return true;
}

std::string TPSResolvePath(const std::string &osBaseDir, const std::string &osSource)
{
    if (osBaseDir.empty() || TPSIsConnectionString(osSource.c_str()) ||
        !CPLIsFilenameRelative(osSource.c_str()))
        return osSource;
    const std::string osPath = ProjectRelative(osBaseDir, osSource);
    if (!STARTS_WITH(osPath.c_str(), "/vsi"))
        return osPath; // the OS resolves ".." (and symbolic links) itself
    std::vector<std::string> aosParts;
    size_t nStart = 0;
    while (nStart <= osPath.size())
    {
        size_t nEnd = osPath.find('/', nStart);
        if (nEnd == std::string::npos)
            nEnd = osPath.size();
        const std::string osPart = osPath.substr(nStart, nEnd - nStart);
        // Keep "", "vsimem": never climb above the file system's prefix.
        // Empty parts stay: "/vsicurl/https://host" needs its "//".
        if (osPart == ".." && aosParts.size() > 2 && aosParts.back() != ".." &&
            !aosParts.back().empty())
            aosParts.pop_back();
        else if (osPart != ".")
            aosParts.push_back(osPart);
        nStart = nEnd + 1;
    }
    std::string osOut;
    for (size_t i = 0; i < aosParts.size(); i++)
        osOut += (i ? "/" : "") + aosParts[i];
    return osOut;
}
