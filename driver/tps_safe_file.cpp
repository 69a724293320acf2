/*
 * tps_safe_file.cpp: see tps_safe_file.h.
 */
#include "tps_safe_file.h"

#include "cpl_conv.h"
#include "cpl_string.h"
#include "cpl_vsi_error.h"
#include "gdal_version.h"

#include <cerrno>
#include <cstring>
#include <random>

#if defined(__unix__) || defined(__APPLE__)
#define TPS_HAVE_POSIX_FILES 1
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

namespace
{

bool IsVSIMem(const std::string &osPath)
{
    return STARTS_WITH(osPath.c_str(), "/vsimem/");
}

std::string FolderOf(const std::string &osPath)
{
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    std::string osDir = CPLGetPathSafe(osPath.c_str());
#else
    std::string osDir = CPLGetPath(osPath.c_str());
#endif
    return osDir.empty() ? "." : osDir;
}

std::string VSIError()
{
    const char *pszMsg = VSIGetLastErrorMsg();
    if (pszMsg && pszMsg[0])
        return pszMsg;
    return errno ? VSIStrerror(errno) : "unknown error";
}

} // namespace

bool TPSSafeFileSystem(const std::string &osPath)
{
#ifdef TPS_HAVE_POSIX_FILES
    return IsVSIMem(osPath) || !STARTS_WITH(osPath.c_str(), "/vsi");
#else
    return IsVSIMem(osPath);
#endif
}

TPSSafeFile::~TPSSafeFile()
{
    if (m_fpVSI)
        VSIFCloseL(m_fpVSI);
    if (m_fp)
        fclose(m_fp);
}

std::unique_ptr<TPSSafeFile> TPSSafeFile::OpenTrusted(const std::string &osPath,
                                                      const std::string &osOwnerOf,
                                                      std::string *posWhy)
{
    std::unique_ptr<TPSSafeFile> poFile(new TPSSafeFile());
    if (IsVSIMem(osPath))
    {
        VSIStatBufL sStat;
        if (VSIStatL(osPath.c_str(), &sStat) != 0)
        {
            *posWhy = "no file " + osPath;
            return nullptr;
        }
        if (!VSI_ISREG(sStat.st_mode))
        {
            *posWhy = osPath + " is not a file";
            return nullptr;
        }
        poFile->m_fpVSI = VSIFOpenL(osPath.c_str(), "rb");
        if (poFile->m_fpVSI == nullptr)
        {
            *posWhy = "cannot open " + osPath + ": " + VSIError();
            return nullptr;
        }
        return poFile;
    }
#ifdef TPS_HAVE_POSIX_FILES
    struct stat sLink;
    if (lstat(osPath.c_str(), &sLink) != 0)
    {
        *posWhy = "no file " + osPath;
        return nullptr;
    }
    if (S_ISLNK(sLink.st_mode))
    {
        *posWhy = osPath + " is a symbolic link, not trusted";
        return nullptr;
    }
    const int fd = open(osPath.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
    {
        *posWhy = "cannot open " + osPath + ": " + strerror(errno);
        return nullptr;
    }
    struct stat sFile, sOwner;
    std::string osWhy;
    if (fstat(fd, &sFile) != 0 || !S_ISREG(sFile.st_mode))
        osWhy = osPath + " is not a file";
    else if (stat(osOwnerOf.c_str(), &sOwner) != 0)
        osWhy = "cannot stat " + osOwnerOf + ": " + strerror(errno);
    else if (sFile.st_uid != sOwner.st_uid)
        osWhy = CPLSPrintf("%s is owned by uid %lld, not by the owner of %s (uid %lld): not "
                           "trusted",
                           osPath.c_str(), static_cast<long long>(sFile.st_uid),
                           osOwnerOf.c_str(), static_cast<long long>(sOwner.st_uid));
    else if (sFile.st_mode & (S_IWGRP | S_IWOTH))
        osWhy = osPath + " is writable by other users: not trusted";
    if (!osWhy.empty())
    {
        close(fd);
        *posWhy = osWhy;
        return nullptr;
    }
    poFile->m_fp = fdopen(fd, "rb");
    if (poFile->m_fp == nullptr)
    {
        *posWhy = "cannot open " + osPath + ": " + strerror(errno);
        close(fd);
        return nullptr;
    }
    return poFile;
#else
    (void)osOwnerOf;
    *posWhy = "no model files on this system";
    return nullptr;
#endif
}

std::unique_ptr<TPSSafeFile> TPSSafeFile::CreateNew(const std::string &osPath, unsigned nMode,
                                                    std::string *posWhy)
{
    std::unique_ptr<TPSSafeFile> poFile(new TPSSafeFile());
    if (IsVSIMem(osPath))
    {
        VSIStatBufL sStat;
        if (VSIStatL(osPath.c_str(), &sStat) == 0)
        {
            *posWhy = "cannot create " + osPath + ": it exists";
            return nullptr;
        }
        VSIErrorReset();
        poFile->m_fpVSI = VSIFOpenExL(osPath.c_str(), "wb", TRUE);
        if (poFile->m_fpVSI == nullptr)
        {
            *posWhy = "cannot create " + osPath + ": " + VSIError();
            return nullptr;
        }
        return poFile;
    }
#ifdef TPS_HAVE_POSIX_FILES
    const int fd = open(osPath.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        static_cast<mode_t>(nMode));
    if (fd < 0)
    {
        *posWhy = "cannot create " + osPath + ": " + strerror(errno);
        return nullptr;
    }
    poFile->m_fp = fdopen(fd, "wb");
    if (poFile->m_fp == nullptr)
    {
        *posWhy = "cannot create " + osPath + ": " + strerror(errno);
        close(fd);
        unlink(osPath.c_str());
        return nullptr;
    }
    return poFile;
#else
    (void)nMode;
    *posWhy = "no model files on this system";
    return nullptr;
#endif
}

size_t TPSSafeFile::Read(void *pBuffer, size_t nBytes)
{
    return m_fpVSI ? VSIFReadL(pBuffer, 1, nBytes, m_fpVSI) : fread(pBuffer, 1, nBytes, m_fp);
}

bool TPSSafeFile::Write(const void *pBuffer, size_t nBytes)
{
    return (m_fpVSI ? VSIFWriteL(pBuffer, 1, nBytes, m_fpVSI) : fwrite(pBuffer, 1, nBytes, m_fp)) ==
           nBytes;
}

bool TPSSafeFile::Seek(uint64_t nOffset)
{
    if (m_fpVSI)
        return VSIFSeekL(m_fpVSI, static_cast<vsi_l_offset>(nOffset), SEEK_SET) == 0;
#ifdef TPS_HAVE_POSIX_FILES
    return fseeko(m_fp, static_cast<off_t>(nOffset), SEEK_SET) == 0;
#else
    return false;
#endif
}

uint64_t TPSSafeFile::Size()
{
    if (m_fpVSI)
    {
        const vsi_l_offset nAt = VSIFTellL(m_fpVSI);
        VSIFSeekL(m_fpVSI, 0, SEEK_END);
        const vsi_l_offset nSize = VSIFTellL(m_fpVSI);
        VSIFSeekL(m_fpVSI, nAt, SEEK_SET);
        return nSize;
    }
#ifdef TPS_HAVE_POSIX_FILES
    struct stat sStat;
    if (fstat(fileno(m_fp), &sStat) == 0)
        return static_cast<uint64_t>(sStat.st_size);
#endif
    return 0;
}

bool TPSSafeFile::Close(std::string *posWhy)
{
    errno = 0;
    VSIErrorReset();
    bool bOK = true;
    if (m_fpVSI)
    {
        bOK = VSIFCloseL(m_fpVSI) == 0;
        m_fpVSI = nullptr;
        if (!bOK)
            *posWhy = VSIError();
    }
    if (m_fp)
    {
        bOK = fclose(m_fp) == 0;
        m_fp = nullptr;
        if (!bOK)
            *posWhy = strerror(errno);
    }
    return bOK;
}

bool TPSFolderAllowsWrites(const std::string &osPath, std::string *posWhy)
{
    if (IsVSIMem(osPath))
        return true;
#ifdef TPS_HAVE_POSIX_FILES
    const std::string osFolder = FolderOf(osPath);
    struct stat sStat;
    if (stat(osFolder.c_str(), &sStat) != 0)
    {
        *posWhy = "cannot stat the folder " + osFolder + ": " + strerror(errno);
        return false;
    }
    if ((sStat.st_mode & S_IWOTH) && !(sStat.st_mode & S_ISVTX))
    {
        *posWhy = "the folder " + osFolder +
                  " is writable by every user without the sticky bit: others could replace "
                  "what is written there";
        return false;
    }
    if (sStat.st_uid != geteuid())
    {
        *posWhy = CPLSPrintf("the folder %s is owned by another user (uid %lld)",
                             osFolder.c_str(), static_cast<long long>(sStat.st_uid));
        return false;
    }
    return true;
#else
    *posWhy = "no model files on this system";
    return false;
#endif
}

unsigned TPSDerivedFileMode(const std::vector<std::string> &aosFiles)
{
    unsigned nMode = 0600;
#ifdef TPS_HAVE_POSIX_FILES
    bool bGroup = true, bOther = true;
    for (const std::string &osFile : aosFiles)
    {
        if (osFile.empty() || IsVSIMem(osFile))
            continue;
        struct stat sStat;
        if (stat(osFile.c_str(), &sStat) != 0)
        {
            bGroup = bOther = false; // unknown: the narrowest
            continue;
        }
        bGroup = bGroup && (sStat.st_mode & S_IRGRP);
        bOther = bOther && (sStat.st_mode & S_IROTH);
    }
    nMode |= (bGroup ? 0040u : 0u) | (bOther ? 0004u : 0u);
#else
    (void)aosFiles;
#endif
    return nMode;
}

bool TPSRandomHex(std::string *posHex)
{
    try
    {
        std::random_device oDevice;
        const unsigned long long nRandom =
            (static_cast<unsigned long long>(oDevice()) << 32) ^ oDevice();
        *posHex = CPLSPrintf("%016llx", nRandom);
        return true;
    }
    catch (const std::exception &)
    {
        return false;
    }
}
