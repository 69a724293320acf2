/*
 * tps_safe_file.h: reading and writing the files the driver keeps next to
 * a .tps (the solved model), in folders other people may write too.
 *
 * Plain paths go through POSIX calls, which can refuse a symbolic link
 * (O_NOFOLLOW) and an existing file (O_EXCL) and say who owns a file;
 * /vsimem/ paths (the tests', the fuzzer's) through GDAL's VSI, which has
 * no links and no owners. Other /vsi file systems are not used at all: a
 * model inside an archive or on a network comes with whoever made it.
 */
#ifndef TPS_SAFE_FILE_H
#define TPS_SAFE_FILE_H

#include "cpl_vsi.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

/* Whether files are kept at osPath at all: a plain path or /vsimem/. */
bool TPSSafeFileSystem(const std::string &osPath);

class TPSSafeFile
{
  public:
    ~TPSSafeFile();
    TPSSafeFile(const TPSSafeFile &) = delete;
    TPSSafeFile &operator=(const TPSSafeFile &) = delete;

    /* osPath for reading when it is a regular file (not a symbolic link,
     * also not one put there meanwhile), owned by the owner of osOwnerOf
     * (the .tps beside it) and writable by nobody else: the trust a model
     * file gets is the .tps file's. nullptr with the reason in *posWhy. */
    static std::unique_ptr<TPSSafeFile> OpenTrusted(const std::string &osPath,
                                                    const std::string &osOwnerOf,
                                                    std::string *posWhy);

    /* A new file at osPath (O_CREAT|O_EXCL|O_NOFOLLOW: never an existing
     * file or link) of mode nMode, narrowed by the umask. nullptr with the
     * reason in *posWhy. */
    static std::unique_ptr<TPSSafeFile> CreateNew(const std::string &osPath, unsigned nMode,
                                                  std::string *posWhy);

    size_t Read(void *pBuffer, size_t nBytes);
    bool Write(const void *pBuffer, size_t nBytes);
    bool Seek(uint64_t nOffset);
    /* The size of the file (by fstat / VSI), 0 if unknown. */
    uint64_t Size();
    /* Closes (flushing: a full disk may only show here); false with the
     * reason in *posWhy. */
    bool Close(std::string *posWhy);

  private:
    TPSSafeFile() = default;
    VSILFILE *m_fpVSI = nullptr;
    FILE *m_fp = nullptr;
};

/* Whether this process may create files in the folder of osPath: never in
 * a folder that every user may write without the sticky bit (anyone could
 * swap the file), nor in one owned by another user. True for /vsimem/.
 * False with the reason in *posWhy. */
bool TPSFolderAllowsWrites(const std::string &osPath, std::string *posWhy);

/* The mode of a file made from aosFiles (paths of local files or
 * /vsimem/, others ignored): read and write for its owner; read for the
 * group, or for others, only when every one of aosFiles allows it; never
 * written by the group or others. */
unsigned TPSDerivedFileMode(const std::vector<std::string> &aosFiles);

/* 64 random bits as hex from the system's random device; false when it
 * has none (a name guessed from a clock is a name others can guess). */
bool TPSRandomHex(std::string *posHex);

#endif /* TPS_SAFE_FILE_H */
