/*
 * tps_model_file.cpp: see tps_model_file.h.
 *
 * The model file is read and written through tps_safe_file.h (POSIX calls
 * on local paths, VSI in /vsimem/): a .tps in /vsimem/ keeps its model in
 * /vsimem/, one in an archive or on a network keeps none (a model there
 * would come with whoever made the archive: docs/security.md). The source
 * files are hashed through VSI. The engine owns the bytes (tps_model_save,
 * tps_model_load); this file owns where they live and what they must match.
 */
#include "tps_model_file.h"

#include "tps_model_store.h"
#include "tps_paths.h"
#include "tps_points.h"
#include "tps_safe_file.h"
#include "tps_sha256.h"
#include "tps_source_policy.h"

#include "cpl_conv.h"
#include "cpl_error.h"
#include "cpl_multiproc.h"
#include "cpl_string.h"
#include "cpl_vsi.h"
#include "cpl_vsi_error.h"
#include "gdal_priv.h"
#include "ogr_srs_api.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

namespace
{

/* Bump when what the hash covers changes: files written by an older
 * driver then read as stale and are rewritten. */
constexpr const char MODEL_FILE_FORMAT[] = "gdal-tps model file 1";
/* Bump when what names a configuration's file changes. */
constexpr const char MODEL_STORE_NAMING[] = "1";
/* Source files are hashed in blocks of this size (see ContentDigest). */
constexpr size_t DIGEST_BLOCK = 1024 * 1024;

std::string MTimeString(const VSIStatBufL &sStat)
{
#if defined(__linux__)
    // Nanoseconds too: a rewrite within the same second is still a change.
    return CPLSPrintf("%lld.%09ld", static_cast<long long>(sStat.st_mtime),
                      static_cast<long>(sStat.st_mtim.tv_nsec));
#else
    return CPLSPrintf("%lld", static_cast<long long>(sStat.st_mtime));
#endif
}

/* SHA-256 of the file's content, streamed: the SHA-256 of the
 * concatenated SHA-256s of its 1 MiB blocks (a file of any size is read
 * once, in bounded memory). False when it cannot be read to the end. */
bool ContentDigest(const std::string &osFile, std::string *posDigest)
{
    VSILFILE *fp = VSIFOpenL(osFile.c_str(), "rb");
    if (fp == nullptr)
        return false;
    std::vector<GByte> abyBlock(DIGEST_BLOCK);
    std::string osBlockDigests;
    GByte abyDigest[32];
    bool bOK = true;
    while (true)
    {
        const size_t nRead = VSIFReadL(abyBlock.data(), 1, abyBlock.size(), fp);
        if (nRead > 0)
        {
            CPL_SHA256(abyBlock.data(), nRead, abyDigest);
            osBlockDigests.append(reinterpret_cast<const char *>(abyDigest), sizeof abyDigest);
        }
        if (nRead < abyBlock.size())
        {
            bOK = VSIFEofL(fp) != 0;
            break;
        }
    }
    VSIFCloseL(fp);
    if (!bOK)
        return false;
    CPL_SHA256(osBlockDigests.data(), osBlockDigests.size(), abyDigest);
    posDigest->assign(reinterpret_cast<const char *>(abyDigest), sizeof abyDigest);
    return true;
}

bool IsRegularFile(const std::string &osFile, VSIStatBufL *psStat)
{
    return VSIStatL(osFile.c_str(), psStat) == 0 && VSI_ISREG(psStat->st_mode);
}

std::string WithExtension(const std::string &osFile, const char *pszExt)
{
#if GDAL_VERSION_NUM >= GDAL_COMPUTE_VERSION(3, 11, 0)
    return CPLResetExtensionSafe(osFile.c_str(), pszExt);
#else
    return CPLResetExtension(osFile.c_str(), pszExt);
#endif
}

/* The files whose bytes make the points: the ones GDAL lists for the
 * source (a shapefile's .shp, .shx, .dbf, .prj, .cpg; every file of a
 * folder source), plus those GDAL reads without listing them (a CSV's .csvt
 * and .prj, a GeoPackage's -wal). Sorted, so that the order of a driver's
 * list does not matter. Also the output CRS, which a model read from the
 * file takes from here: set up by the points loader's own code, it is the
 * very CRS a solve would give. */
bool DescribeSource(const TPSConfig &c, TPSModelFile *psFile, std::vector<std::string> *paosFiles,
                    std::string *posWhyNot)
{
    const std::string &osSource = c.osSource;
    if (TPSIsConnectionString(osSource.c_str()))
    {
        *posWhyNot = "the point source is not a file";
        return false;
    }
    TPSSourceInfo oInfo;
    if (!TPSDescribeSource(c, &oInfo, posWhyNot))
        return false;
    psFile->bHasSRS = oInfo.bHasOutputSRS;
    psFile->oSRS = oInfo.oOutputSRS;
    std::vector<std::string> aosCandidates{osSource, osSource + "-wal",
                                           WithExtension(osSource, "csvt"),
                                           WithExtension(osSource, "prj")};
    aosCandidates.insert(aosCandidates.end(), oInfo.aosFiles.begin(), oInfo.aosFiles.end());
    // A covariate sampled from its raster at the points: the raster's
    // content is the model's too.
    for (const TPSCovariateConfig &oCov : c.aoCovariates)
        if (oCov.osField.empty())
            aosCandidates.push_back(oCov.osRaster);
    paosFiles->clear();
    for (const std::string &osFile : aosCandidates)
    {
        VSIStatBufL sStat;
        // Never a model file of this .tps, nor its lock or temporary files
        // (a folder source holding the .tps): writing one would change the
        // hash it is written under.
        const std::string osOwnPrefix = c.osTPSFile + ".model";
        if (osFile.compare(0, osOwnPrefix.size(), osOwnPrefix) == 0 ||
            !IsRegularFile(osFile, &sStat))
            continue;
        paosFiles->push_back(osFile);
    }
    std::sort(paosFiles->begin(), paosFiles->end());
    paosFiles->erase(std::unique(paosFiles->begin(), paosFiles->end()), paosFiles->end());
    if (paosFiles->empty())
    {
        *posWhyNot = "the point source has no file whose content can be checked";
        return false;
    }
    return true;
}

/* osPath made absolute (against the current directory) and cleaned of
 * "." and ".." components, lexically. */
std::string AbsoluteClean(const std::string &osPath)
{
    std::string osAbs = osPath;
    if (CPLIsFilenameRelative(osPath.c_str()))
    {
        if (char *pszCwd = CPLGetCurrentDir())
        {
            osAbs = std::string(pszCwd) + "/" + osPath;
            CPLFree(pszCwd);
        }
    }
    std::vector<std::string> aosParts;
    const CPLStringList aosTokens(CSLTokenizeString2(osAbs.c_str(), "/", 0));
    for (int i = 0; i < aosTokens.size(); i++)
    {
        const std::string osPart = aosTokens[i];
        if (osPart == ".")
            continue;
        if (osPart == ".." && !aosParts.empty() && aosParts.back() != "..")
            aosParts.pop_back();
        else
            aosParts.push_back(osPart);
    }
    std::string osClean = osAbs.compare(0, 1, "/") == 0 ? "/" : "";
    for (size_t i = 0; i < aosParts.size(); i++)
        osClean += (i ? "/" : "") + aosParts[i];
    return osClean;
}

/* A name for the hash that does not depend on how the .tps file was named
 * (m.tps, ./m.tps, /data/m.tps) nor on where its folder is: relative to
 * the .tps file's folder when inside it, so that a folder copied (with its
 * times) to another machine keeps its model. */
std::string NameForHash(const TPSConfig &c, const std::string &osFile)
{
    const std::string osBase = AbsoluteClean(c.osBaseDir.empty() ? "." : c.osBaseDir) + "/";
    const std::string osAbs = AbsoluteClean(osFile);
    if (osAbs.compare(0, osBase.size(), osBase) == 0)
        return osAbs.substr(osBase.size());
    return osAbs;
}

/* A name next to osPath no other process or call uses; "" without a
 * random device (created with O_EXCL anyway: a guessed name can only make
 * the write fail, never write elsewhere). */
std::string TemporaryPath(const std::string &osPath)
{
    static std::atomic<unsigned> nCounter{0};
    std::string osRandom;
    if (!TPSRandomHex(&osRandom))
        return std::string();
    return osPath + CPLSPrintf(".tmp.%lld.%s.%u", static_cast<long long>(CPLGetPID()),
                               osRandom.c_str(), nCounter++);
}

/* The last VSI error, or errno's text: why a write failed. */
std::string LastIOError()
{
    const char *pszMsg = VSIGetLastErrorMsg();
    if (pszMsg && pszMsg[0])
        return pszMsg;
    return errno ? VSIStrerror(errno) : "unknown error";
}

} // namespace

bool TPSModelFilePrepare(const TPSConfig &c, TPSModelFile *psFile, std::string *posWhyNot)
{
    posWhyNot->clear();
    if (c.eModelCache == TPSModelCacheMode::NO)
        return false;
    if (c.osTPSFile.empty())
    {
        *posWhyNot = "no .tps file to keep the solved model next to";
        return false;
    }
    psFile->osPath = TPSModelFilePath(c);
    psFile->osTPSFile = c.osTPSFile;
    if (!TPSSafeFileSystem(psFile->osPath))
    {
        *posWhyNot = "model files are kept only on local file systems and in /vsimem/, not "
                     "inside archives or on networks (docs/security.md)";
        return false;
    }
    psFile->bWrite = c.eModelCache == TPSModelCacheMode::YES;
    psFile->osOwnerOf = c.osTPSFile;
    psFile->nMemoryBudget = 0;
    std::string osWhyNoWrite;
    if (psFile->bWrite && !TPSFolderAllowsWrites(psFile->osPath, &osWhyNoWrite))
    {
        CPLDebug("TPS", "%s: the solved model will not be written: %s", c.osName.c_str(),
                 osWhyNoWrite.c_str());
        psFile->bWrite = false;
    }
    VSIStatBufL sStat;
    if (!psFile->bWrite && VSIStatL(psFile->osPath.c_str(), &sStat) != 0)
    {
        // Nothing to read and nothing to write: spare the hashing.
        *posWhyNot = "MODEL_CACHE=READ_ONLY and no model file " + psFile->osPath;
        return false;
    }
    std::vector<std::string> aosFiles;
    if (!DescribeSource(c, psFile, &aosFiles, posWhyNot))
        return false;

    int nProjMajor = 0, nProjMinor = 0, nProjPatch = 0;
    OSRGetPROJVersion(&nProjMajor, &nProjMinor, &nProjPatch);
    std::string osKey;
    TPSModelKeyAppend(osKey, "format", MODEL_FILE_FORMAT);
    // The code that turns the source into a model: a new engine, GDAL (its
    // readers) or PROJ (its transformations) may give other numbers.
    TPSModelKeyAppend(osKey, "engine",
                      CPLSPrintf("%d.%d.%d", TPS_VERSION_MAJOR, TPS_VERSION_MINOR,
                                 TPS_VERSION_PATCH));
    TPSModelKeyAppend(osKey, "gdal", GDALVersionInfo("RELEASE_NAME"));
    TPSModelKeyAppend(osKey, "proj", CPLSPrintf("%d.%d.%d", nProjMajor, nProjMinor, nProjPatch));
    TPSModelKeyAppend(osKey, "source", NameForHash(c, c.osSource));
    psFile->aoStamps.clear();
    for (const std::string &osFile : aosFiles)
    {
        VSIStatBufL sStat;
        std::string osDigest;
        if (!IsRegularFile(osFile, &sStat) || !ContentDigest(osFile, &osDigest))
        {
            *posWhyNot = "cannot read " + osFile + " to hash it";
            return false;
        }
        TPSModelFile::Stamp oStamp{osFile, static_cast<GUIntBig>(sStat.st_size),
                                   MTimeString(sStat)};
        TPSModelKeyAppend(osKey, "file", NameForHash(c, osFile));
        TPSModelKeyAppend(osKey, "size", CPLSPrintf(CPL_FRMT_GUIB, oStamp.nSize));
        TPSModelKeyAppend(osKey, "mtime", oStamp.osMTime);
        TPSModelKeyAppend(osKey, "sha256", osDigest);
        psFile->aoStamps.push_back(std::move(oStamp));
    }
    osKey += TPSModelConfigKey(c);
    psFile->nBands = c.aoModelBands.size();
    // Readable by no one the .tps or a source file keeps out.
    std::vector<std::string> aosModeFrom{TPSLocalPathOf(c.osTPSFile)};
    for (const TPSModelFile::Stamp &oStamp : psFile->aoStamps)
        aosModeFrom.push_back(TPSLocalPathOf(oStamp.osFile));
    psFile->nMode = TPSDerivedFileMode(aosModeFrom);
    CPL_SHA256(osKey.data(), osKey.size(), psFile->abyHash);
    return true;
}

namespace
{

std::shared_ptr<TPSSharedModel> ReadModelFile(const TPSModelFile &oFile, tps_context *psCtx,
                                              std::string *posWhy)
{
    const char *pszPath = oFile.osPath.c_str();
    CPLErrorStateBackuper oErrorState;
    CPLErrorHandlerPusher oQuiet(CPLQuietErrorHandler);
    // Only a regular file (no link) of the .tps file's owner, writable by
    // nobody else (tps_safe_file.h).
    auto poFile = TPSSafeFile::OpenTrusted(oFile.osPath, oFile.osOwnerOf, posWhy);
    if (!poFile)
        return nullptr;
    // The header first: a stale or foreign file, or a model of another
    // band count, is rejected without reading the rest, and the rest is
    // read only up to the size the header announces, whatever the file's
    // size.
    GByte abyHeader[TPS_MODEL_HEADER_BYTES];
    const size_t nHeader = poFile->Read(abyHeader, sizeof abyHeader);
    size_t nTotal = 0, nPoints = 0, nBands = 0;
    if (tps_model_saved_size(psCtx, abyHeader, nHeader, oFile.abyHash, &nTotal) != TPS_OK ||
        tps_model_saved_counts(psCtx, abyHeader, nHeader, &nPoints, &nBands) != TPS_OK)
    {
        *posWhy = tps_context_errno(psCtx) == TPS_ERR_MODEL_MISMATCH
                      ? std::string(pszPath) +
                            " is stale: made from other points, settings or software versions"
                      : std::string(pszPath) + ": " + tps_context_errmsg(psCtx);
        return nullptr;
    }
    if (nBands != oFile.nBands)
    {
        *posWhy = CPLSPrintf("%s: a model of %llu bands, where this data set has %llu", pszPath,
                             static_cast<unsigned long long>(nBands),
                             static_cast<unsigned long long>(oFile.nBands));
        return nullptr;
    }
    const uint64_t nFileSize = poFile->Size();
    if (nFileSize != nTotal)
    {
        *posWhy = CPLSPrintf("%s: %llu bytes where its header says %llu (truncated or damaged)",
                             pszPath, static_cast<unsigned long long>(nFileSize),
                             static_cast<unsigned long long>(nTotal));
        return nullptr;
    }
    // The bytes and the model made of them (about as big) are charged to
    // the process's budget before either is allocated.
    auto poModel = std::make_shared<TPSSharedModel>();
    if (nTotal > SIZE_MAX / 2 || !poModel->oCharge.Resize(2 * nTotal, oFile.nMemoryBudget))
    {
        *posWhy = CPLSPrintf("%s: loading its %llu bytes would pass TPS_MAX_MEMORY (%llu bytes "
                             "for the TPS data sets of this process, %llu in use)",
                             pszPath, static_cast<unsigned long long>(nTotal),
                             static_cast<unsigned long long>(oFile.nMemoryBudget),
                             static_cast<unsigned long long>(TPSMemoryInUse()));
        return nullptr;
    }
    GByte *pabyData = static_cast<GByte *>(VSIMalloc(nTotal));
    if (pabyData == nullptr)
    {
        *posWhy = CPLSPrintf("%s: out of memory for its %llu bytes", pszPath,
                             static_cast<unsigned long long>(nTotal));
        return nullptr;
    }
    const bool bRead = poFile->Seek(0) && poFile->Read(pabyData, nTotal) == nTotal;
    std::string osCloseWhy;
    poFile->Close(&osCloseWhy);
    if (!bRead)
    {
        VSIFree(pabyData);
        *posWhy = std::string("cannot read ") + pszPath + ": " + LastIOError();
        return nullptr;
    }

    poModel->psModel = tps_model_load(psCtx, pabyData, nTotal, oFile.abyHash, nullptr, nullptr);
    VSIFree(pabyData);
    poModel->oCharge.Resize(nTotal, 0);
    if (poModel->psModel == nullptr)
    {
        *posWhy = std::string(pszPath) + ": " + tps_context_errmsg(psCtx);
        return nullptr;
    }
    poModel->bHasSRS = oFile.bHasSRS;
    poModel->oSRS = oFile.oSRS;

    bool bOK = tps_model_get_info(psCtx, poModel->psModel, &poModel->sInfo) == TPS_OK &&
               poModel->sInfo.n_bands == oFile.nBands;
    poModel->asBandInfo.resize(poModel->sInfo.n_bands);
    for (size_t b = 0; bOK && b < poModel->sInfo.n_bands; b++)
        bOK = tps_model_get_band_info(psCtx, poModel->psModel, b, &poModel->asBandInfo[b]) ==
              TPS_OK;
    if (!bOK)
    {
        *posWhy = std::string(pszPath) + ": its band count is not this data set's";
        return nullptr;
    }
    poModel->bFromFile = true;
    return poModel;
}

bool WriteModelFile(const TPSModelFile &oFile, const TPSSharedModel &oModel, tps_context *psCtx,
                    std::string *posWhy)
{
    CPLErrorStateBackuper oErrorState;
    CPLErrorHandlerPusher oQuiet(CPLQuietErrorHandler);
    // The hash describes the files as they were before the solve read
    // them; if one changed since, this model may be of newer points than
    // the hash says (or of a mix): keep nothing rather than a lie.
    for (const TPSModelFile::Stamp &oStamp : oFile.aoStamps)
    {
        VSIStatBufL sStat;
        if (!IsRegularFile(oStamp.osFile, &sStat) ||
            static_cast<GUIntBig>(sStat.st_size) != oStamp.nSize ||
            MTimeString(sStat) != oStamp.osMTime)
        {
            *posWhy = oStamp.osFile + " changed while the points were read";
            return false;
        }
    }

    void *pData = nullptr;
    size_t nSize = 0;
    if (tps_model_save(psCtx, oModel.psModel, oFile.abyHash, nullptr, 0, &pData, &nSize) !=
        TPS_OK)
    {
        *posWhy = tps_context_errmsg(psCtx);
        return false;
    }
    // A temporary file in the same folder (same file system: the rename
    // is atomic), unique per process and call, so that concurrent writers
    // never write into one file and readers see the old file or the new
    // one, never a mix. A crash leaves a .tmp file, never a torn model.
    // Created with O_CREAT|O_EXCL|O_NOFOLLOW (tps_safe_file.h): never an
    // existing file or a link someone put in its place; with the mode the
    // sources and the .tps allow (nMode).
    const std::string osTemp = TemporaryPath(oFile.osPath);
    if (osTemp.empty())
    {
        tps_free(pData);
        *posWhy = "no random device to name a temporary file";
        return false;
    }
    errno = 0;
    auto poFile = TPSSafeFile::CreateNew(osTemp, oFile.nMode, posWhy);
    if (!poFile)
    {
        tps_free(pData);
        return false;
    }
    bool bOK = poFile->Write(pData, nSize);
    tps_free(pData);
    std::string osCloseWhy;
    // Closing flushes: a full disk may only show here.
    bOK = poFile->Close(&osCloseWhy) && bOK;
    if (!bOK)
    {
        *posWhy = "cannot write " + osTemp + ": " + (osCloseWhy.empty() ? LastIOError() : osCloseWhy);
        VSIUnlink(osTemp.c_str());
        return false;
    }
    if (VSIRename(osTemp.c_str(), oFile.osPath.c_str()) != 0)
    {
        *posWhy = "cannot rename " + osTemp + " to " + oFile.osPath + ": " + LastIOError();
        VSIUnlink(osTemp.c_str());
        return false;
    }
    return true;
}

/* What identifies one version of the model file: a waiter reads it again
 * only when this changes (a damaged or foreign file is not read at every
 * poll). */
std::string FileVersion(const std::string &osPath)
{
    VSIStatBufL sStat;
    if (VSIStatL(osPath.c_str(), &sStat) != 0)
        return std::string();
    return CPLSPrintf(CPL_FRMT_GUIB "/%llu/", static_cast<GUIntBig>(sStat.st_size),
                      static_cast<unsigned long long>(sStat.st_ino)) +
           MTimeString(sStat);
}

} // namespace

std::shared_ptr<TPSSharedModel> TPSModelFileRead(TPSModelFile &oFile, tps_context *psCtx,
                                                 std::string *posWhy)
{
    std::string osVersion = FileVersion(oFile.osPath);
    auto poModel = ReadModelFile(oFile, psCtx, posWhy);
    if (poModel && oFile.bWrite)
        TPSModelStoreTouch(oFile.osPath); /* used: the last to go (tps_model_store.h) */
    if (poModel || !oFile.bWrite)
        return poModel;

    // No valid model yet: solve it once among the processes opening it now.
    std::string osHex;
    for (GByte byte : oFile.abyHash)
        osHex += CPLSPrintf("%02x", byte);
    std::string osWhyNotNow;
    auto fnTryRead = [&](bool bAlways)
    {
        const std::string osNow = FileVersion(oFile.osPath);
        if (!bAlways && (osNow.empty() || osNow == osVersion))
            return false;
        osVersion = osNow;
        poModel = ReadModelFile(oFile, psCtx, &osWhyNotNow);
        return poModel != nullptr;
    };
    TPSModelLockOutcome oLock = TPSModelLockAcquireOrWait(oFile.osPath, osHex, fnTryRead);
    if (oLock.bModelRead)
        return poModel;
    if (oLock.bDoNotWrite)
        oFile.bWrite = false;
    oFile.poLock = std::move(oLock.poLock);
    if (!osWhyNotNow.empty())
        *posWhy = osWhyNotNow;
    if (!oLock.osWhyUnlocked.empty())
        *posWhy += " (" + oLock.osWhyUnlocked + ")";
    return nullptr;
}

bool TPSModelFileWrite(TPSModelFile &oFile, const TPSSharedModel &oModel, tps_context *psCtx,
                       std::string *posWhy)
{
    const bool bOK = WriteModelFile(oFile, oModel, psCtx, posWhy);
    // After the rename: a waiter sees the model, or (failed) no lock and
    // solves itself.
    oFile.poLock.reset();
    // A new file may be one too many: the least recently used go.
    if (bOK)
        TPSModelStoreTrim(oFile.osTPSFile, oFile.osPath);
    return bOK;
}

std::string TPSModelFilePath(const TPSConfig &c)
{
    if (c.eModelCache == TPSModelCacheMode::NO || c.osTPSFile.empty() ||
        TPSIsConnectionString(c.osSource.c_str()))
        return std::string();
    // One file per configuration (tps_model_store.h): named from what the
    // configuration says, not from the source's content or the software
    // versions, so that a change of those rewrites the file in place.
    std::string osKey;
    TPSModelKeyAppend(osKey, "store", MODEL_STORE_NAMING);
    TPSModelKeyAppend(osKey, "source", NameForHash(c, c.osSource));
    osKey += TPSModelConfigKey(c);
    return TPSModelStorePath(c.osTPSFile, osKey);
}
