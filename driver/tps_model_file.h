/*
 * tps_model_file.h: the solved model kept next to the .tps file, so that
 * a solve is done once per set of inputs, not once per process or machine.
 *
 * "<name>.tps.model.<hash>" (one per configuration, tps_model_store.h)
 * holds the engine's saved model (tps_model_save)
 * under a SHA-256 of everything the model depends on: the
 * model's part of the configuration, the point source's files (size,
 * modification time and content) and the versions of the code that reads
 * and solves them. A file whose hash differs, or that is damaged in any
 * way, is not used: the model is solved again (and the file rewritten).
 *
 * Processes that open the .tps at the same time before the file exists
 * solve once: the first takes "<model file>.lock" and solves, the
 * others wait for its model file (tps_model_lock.h). Each configuration
 * has its own file and lock.
 *
 * Nothing here emits a GDAL error: a model file is an optimisation, and
 * every problem with it ends in a solve, with the reason in a debug line
 * (a bad TPS_MODEL_LOCK_* value is warned about).
 */
#ifndef TPS_MODEL_FILE_H
#define TPS_MODEL_FILE_H

#include "tps.h"
#include "tps_config.h"
#include "tps_model_cache.h"
#include "tps_model_lock.h"

#include "cpl_port.h"
#include "ogr_spatialref.h"

#include <memory>
#include <string>
#include <vector>

/* Where the model of one configuration is kept, and what it must match. */
struct TPSModelFile
{
    std::string osPath{};    /* <name>.tps.model.<hash> */
    std::string osTPSFile{}; /* <name>.tps */
    GByte abyHash[32] = {};
    size_t nBands = 0;   /* the bands of the data set: a model must have as many */
    bool bWrite = false; /* MODEL_CACHE=YES: write after a solve */
    /* Trust and writes (docs/security.md): a model file is read only when
     * the owner of this file (the .tps) owns it; it is written with nMode
     * (no wider than the .tps and every source file allow). */
    std::string osOwnerOf{};
    unsigned nMode = 0600;
    /* TPS_MAX_MEMORY (tps_memory.h): a model too big for what the budget
     * leaves is not read. */
    size_t nMemoryBudget = 0;
    /* The output CRS, from the source as a solve sets it up (the file
     * holds numbers only: a CRS written out and read back is not always
     * the same object). */
    bool bHasSRS = false;
    OGRSpatialReference oSRS{};

    /* The size and modification time of each point source file when the
     * hash was made: a source that changes while the solve reads it must
     * not be saved under the old hash. */
    struct Stamp
    {
        std::string osFile;
        GUIntBig nSize;
        std::string osMTime;
    };
    std::vector<Stamp> aoStamps{};

    /* The lock this process holds while it solves this model (taken by
     * TPSModelFileRead): dropped by TPSModelFileWrite, or with this object
     * when the solve fails. */
    std::shared_ptr<TPSModelLock> poLock{};
};

/* The model file of this configuration, "<name>.tps.model.<hash>", for a
 * .tps file whose MODEL_CACHE is not NO, else "". */
std::string TPSModelFilePath(const TPSConfig &oConfig);

/* Fills *psFile for oConfig. False when this configuration keeps no model
 * file, with the reason in *posWhyNot ("" when there is nothing to say,
 * e.g. MODEL_CACHE=NO): the TPS: and inline XML forms (no .tps file), a
 * .tps on a file system other than a local one or /vsimem/ (an archive, a
 * network: its model would come with whoever made it), a source that is
 * not a file (a connection string), a source GDAL cannot open or list (its
 * layer or CRS included). In a folder this process must not write to
 * (TPSFolderAllowsWrites) bWrite is cleared, with a debug line. */
bool TPSModelFilePrepare(const TPSConfig &oConfig, TPSModelFile *psFile, std::string *posWhyNot);

/* The model kept in oFile.osPath when it is there, intact and made with
 * oFile.abyHash; else nullptr, with the reason in *posWhy (no file, made
 * from other inputs, damaged, unreadable). psCtx receives engine errors.
 * With oFile.bWrite, when there is no valid file yet, first coordinates
 * with other processes: waits (bounded) for one that is solving this model
 * and returns its model, or takes the lock (oFile.poLock) so that the
 * others wait for this process's solve and TPSModelFileWrite. */
std::shared_ptr<TPSSharedModel> TPSModelFileRead(TPSModelFile &oFile, tps_context *psCtx,
                                                 std::string *posWhy);

/* Saves oModel to oFile.osPath: written to a temporary file in the same
 * folder, then renamed into place, so that readers and concurrent writers
 * never see a partial file. False with the reason in *posWhy when it
 * cannot (unwritable folder, full disk, the source changed meanwhile).
 * Either way, then releases oFile.poLock. */
bool TPSModelFileWrite(TPSModelFile &oFile, const TPSSharedModel &oModel,
                       tps_context *psCtx, std::string *posWhy);

#endif /* TPS_MODEL_FILE_H */
