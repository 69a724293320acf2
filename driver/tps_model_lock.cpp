/*
 * tps_model_lock.cpp: see tps_model_lock.h.
 *
 * POSIX calls, not VSI: VSI has no exclusive create. Every step that can
 * race with another process is either atomic (open with O_EXCL, rename,
 * link) or only able to cost a second solve:
 *  - a stale lock is broken by renaming it aside (only one breaker can
 *    win) and checking that what was renamed is the lock judged stale (same
 *    inode and content); if a fresh lock was taken by mistake it is linked
 *    back (link does not overwrite);
 *  - the holder removes the lock only while the path still names its own
 *    file (same inode as its descriptor).
 */
#include "tps_model_lock.h"

#include "cpl_conv.h"
#include "cpl_error.h"
#include "cpl_string.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#define TPS_HAVE_MODEL_LOCK 1
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#endif

#ifdef TPS_HAVE_MODEL_LOCK

namespace
{

using Clock = std::chrono::steady_clock;

constexpr const char LOCK_SUFFIX[] = ".lock";
constexpr const char LOCK_MAGIC[] = "gdal-tps model lock 1";
/* Short: a waiter that gives up solves too (more work, never a wrong
 * surface), while a lock that keeps a server's opens waiting is a way to
 * stall it. Raise it above the longest solve where cold opens come
 * together on purpose. */
constexpr double DEFAULT_TIMEOUT_S = 60.0;
/* A lock this process finds empty is being written by its holder (the
 * record follows its exclusive create at once): looked at this many more
 * times, POLL_S apart, before it counts as unparsable. */
constexpr int EMPTY_LOCK_RETRIES = 3;
constexpr double DEFAULT_STALE_S = 30.0;
/* How often a waiter looks at the model file and the lock. */
constexpr double POLL_S = 0.15;

double SecondsSince(Clock::time_point t)
{
    return std::chrono::duration<double>(Clock::now() - t).count();
}

/* A number of seconds from a configuration option; a bad value is warned
 * about (it is the user's setting) and replaced by the default. */
double ConfigSeconds(const char *pszOption, double dfDefault)
{
    const char *pszValue = CPLGetConfigOption(pszOption, nullptr);
    if (pszValue == nullptr || pszValue[0] == '\0')
        return dfDefault;
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(pszValue, &pszEnd);
    while (pszEnd && (*pszEnd == ' ' || *pszEnd == '\t'))
        pszEnd++;
    if (pszEnd == pszValue || *pszEnd != '\0' || !std::isfinite(dfValue) || dfValue < 0)
    {
        CPLError(CE_Warning, CPLE_IllegalArg,
                 "%s=%s is not a number of seconds (0 or more): using %g", pszOption, pszValue,
                 dfDefault);
        return dfDefault;
    }
    return dfValue;
}

std::string HostName()
{
    char szHost[256] = {};
    if (gethostname(szHost, sizeof szHost - 1) != 0)
        return "unknown";
    return szHost;
}

/* Where a pid means one process: the boot and the pid namespace. Two
 * containers may share a host name but not their pids; a pid from before
 * a reboot means nothing. "" where unknown (then the host name alone). */
std::string PidSpace()
{
#if defined(__linux__)
    std::string osSpace;
    if (FILE *fp = fopen("/proc/sys/kernel/random/boot_id", "r"))
    {
        char szBoot[64] = {};
        if (fgets(szBoot, sizeof szBoot, fp))
            osSpace = CPLString(szBoot).Trim();
        fclose(fp);
    }
    char szNs[64] = {};
    const ssize_t n = readlink("/proc/self/ns/pid", szNs, sizeof szNs - 1);
    if (osSpace.empty() || n <= 0)
        return std::string();
    return osSpace + "/" + std::string(szNs, static_cast<size_t>(n));
#else
    return std::string();
#endif
}

/* What a lock file says, and which file it was. */
struct LockState
{
    std::string osContent{};
    bool bParsed = false;
    std::string osHost{};
    std::string osPidSpace{};
    long long nPid = 0;
    std::string osModel{};
    dev_t nDev = 0;
    ino_t nIno = 0;
    uid_t nUid = 0;
    std::string osMTime{}; /* with nanoseconds, as the heartbeat moves it */
};

std::string MTimeOf(const struct stat &sStat)
{
#if defined(__linux__)
    return CPLSPrintf("%lld.%09ld", static_cast<long long>(sStat.st_mtim.tv_sec),
                      static_cast<long>(sStat.st_mtim.tv_nsec));
#else
    return CPLSPrintf("%lld", static_cast<long long>(sStat.st_mtime));
#endif
}

enum class LockRead
{
    GONE,     /* no lock any more */
    READ,     /* *psState filled (bParsed says whether the content made sense) */
    NOT_FILE, /* something else in the lock's place: never waited for */
    SYMLINK   /* a symbolic link in the lock's place: never waited for */
};

LockRead ReadLock(const std::string &osLock, LockState *psState)
{
    *psState = LockState();
    struct stat sStat;
    if (lstat(osLock.c_str(), &sStat) != 0)
        return LockRead::GONE;
    if (S_ISLNK(sStat.st_mode))
        return LockRead::SYMLINK;
    if (!S_ISREG(sStat.st_mode))
        return LockRead::NOT_FILE;
    // O_NOFOLLOW: a link put there since the lstat is not followed.
    const int fd = open(osLock.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0)
    {
        if (errno == ELOOP)
            return LockRead::SYMLINK;
        if (errno == ENOENT)
            return LockRead::GONE;
        // Unreadable (another user's): judged by what stat says.
    }
    else if (fstat(fd, &sStat) != 0 || !S_ISREG(sStat.st_mode))
    {
        close(fd);
        return LockRead::NOT_FILE;
    }
    psState->nDev = sStat.st_dev;
    psState->nIno = sStat.st_ino;
    psState->nUid = sStat.st_uid;
    psState->osMTime = MTimeOf(sStat);
    if (fd < 0)
        return LockRead::READ;
    char szBuf[1024];
    const ssize_t nRead = read(fd, szBuf, sizeof szBuf - 1);
    close(fd);
    if (nRead <= 0)
        return LockRead::READ; /* being written, or damaged: time alone */
    psState->osContent.assign(szBuf, static_cast<size_t>(nRead));
    const CPLStringList aosLines(CSLTokenizeString2(psState->osContent.c_str(), "\n", 0));
    if (aosLines.size() < 1 || strcmp(aosLines[0], LOCK_MAGIC) != 0)
        return LockRead::READ;
    const char *pszHost = aosLines.FetchNameValue("host");
    const char *pszPid = aosLines.FetchNameValue("pid");
    const char *pszModel = aosLines.FetchNameValue("model");
    if (pszHost && pszPid && pszModel)
    {
        psState->osHost = pszHost;
        const char *pszSpace = aosLines.FetchNameValue("pidspace");
        psState->osPidSpace = pszSpace ? pszSpace : "";
        psState->nPid = std::atoll(pszPid);
        psState->osModel = pszModel;
        psState->bParsed = psState->nPid > 0;
    }
    return LockRead::READ;
}

/* A process of this host: alive unless the system says there is none. */
bool ProcessAlive(long long nPid)
{
    if (nPid == static_cast<long long>(getpid()))
        return true;
    return kill(static_cast<pid_t>(nPid), 0) == 0 || errno != ESRCH;
}

std::string AsideName(const std::string &osLock)
{
    unsigned long long nRandom = 0;
    try
    {
        std::random_device oDevice;
        nRandom = (static_cast<unsigned long long>(oDevice()) << 32) ^ oDevice();
    }
    catch (const std::exception &)
    {
        nRandom = static_cast<unsigned long long>(Clock::now().time_since_epoch().count());
    }
    return osLock + CPLSPrintf(".stale.%lld.%llx", static_cast<long long>(getpid()), nRandom);
}

enum class BreakResult
{
    BROKEN,
    GONE,  /* broken or released by someone else meanwhile */
    FAILED /* cannot rename it (permissions): errno says why */
};

/* Removes the lock judged stale (oStale). */
BreakResult BreakLock(const std::string &osLock, const LockState &oStale)
{
    const std::string osAside = AsideName(osLock);
    if (rename(osLock.c_str(), osAside.c_str()) != 0)
        return errno == ENOENT ? BreakResult::GONE : BreakResult::FAILED;
    LockState oTaken;
    if (ReadLock(osAside, &oTaken) == LockRead::READ &&
        (oTaken.nDev != oStale.nDev || oTaken.nIno != oStale.nIno ||
         oTaken.osContent != oStale.osContent))
    {
        // Another waiter broke it first and took a new lock, which we just
        // renamed aside: give it back (link never replaces a file).
        if (link(osAside.c_str(), osLock.c_str()) != 0)
            CPLDebug("TPS", "%s: could not restore a live lock (%s): two solves may run",
                     osLock.c_str(), strerror(errno));
    }
    unlink(osAside.c_str());
    return BreakResult::BROKEN;
}

} // namespace

class TPSModelLock
{
  public:
    TPSModelLock(std::string osPath, int fd, double dfHeartbeatS)
        : m_osPath(std::move(osPath)), m_fd(fd)
    {
        // Keeps the lock's time moving while this process solves, so that
        // waiters on other machines (which cannot see this pid) tell a
        // long solve from a dead holder.
        const auto oPeriod = std::chrono::duration<double>(std::max(dfHeartbeatS, 0.05));
        try
        {
            m_oHeartbeat = std::thread(
                [this, oPeriod]()
                {
                    std::unique_lock<std::mutex> oLock(m_oMutex);
                    while (!m_oStop.wait_for(oLock, oPeriod, [this] { return m_bStop; }))
                        futimens(m_fd, nullptr);
                });
        }
        catch (const std::exception &e)
        {
            // Without it waiters may break the lock of a long solve: a
            // second solve, nothing worse.
            CPLDebug("TPS", "%s: no heartbeat thread: %s", m_osPath.c_str(), e.what());
        }
    }

    ~TPSModelLock()
    {
        {
            std::lock_guard<std::mutex> oLock(m_oMutex);
            m_bStop = true;
        }
        m_oStop.notify_all();
        if (m_oHeartbeat.joinable())
            m_oHeartbeat.join();
        struct stat sMine, sNow;
        if (fstat(m_fd, &sMine) == 0 && lstat(m_osPath.c_str(), &sNow) == 0 &&
            sMine.st_dev == sNow.st_dev && sMine.st_ino == sNow.st_ino)
            unlink(m_osPath.c_str());
        close(m_fd);
    }

    TPSModelLock(const TPSModelLock &) = delete;
    TPSModelLock &operator=(const TPSModelLock &) = delete;

  private:
    std::string m_osPath;
    int m_fd;
    std::mutex m_oMutex{};
    std::condition_variable m_oStop{};
    bool m_bStop = false;
    std::thread m_oHeartbeat{};
};

TPSModelLockOutcome TPSModelLockAcquireOrWait(const std::string &osModelPath,
                                              const std::string &osModelHash,
                                              const std::function<bool(bool)> &fnTryRead)
{
    TPSModelLockOutcome oOut;
    if (STARTS_WITH(osModelPath.c_str(), "/vsi"))
    {
        oOut.osWhyUnlocked = "no cross-process lock in a /vsi file system";
        return oOut;
    }
    const std::string osLock = osModelPath + LOCK_SUFFIX;
    const char *pszLock = osLock.c_str();
    const double dfTimeout = ConfigSeconds("TPS_MODEL_LOCK_TIMEOUT", DEFAULT_TIMEOUT_S);
    const double dfStale = ConfigSeconds("TPS_MODEL_LOCK_STALE", DEFAULT_STALE_S);
    const std::string osHost = HostName();
    const std::string osPidSpace = PidSpace();
    const Clock::time_point tStart = Clock::now();

    bool bAnnounced = false;
    int nEmptyReads = 0;
    bool bWaiting = false; /* a holder we waited for is still to be heard of */
    std::string osSeen;           /* the lock as last seen: inode, content, time */
    Clock::time_point tSeenSince; /* since when it has looked like that */
    while (true)
    {
        // Every path through this loop either sleeps towards the timeout
        // or changes the lock; this bounds the rest (locks that keep
        // changing hands).
        if (SecondsSince(tStart) > dfTimeout + dfStale + 1)
        {
            oOut.osWhyUnlocked = "the lock keeps changing hands";
            return oOut;
        }
        // O_EXCL never follows a link; O_NOFOLLOW says so twice. Only this
        // user's processes wait for a lock, so only they need to read it.
        const int fd =
            open(pszLock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
        {
            const std::string osRecord =
                std::string(LOCK_MAGIC) + "\nhost=" + osHost + "\npidspace=" + osPidSpace +
                CPLSPrintf("\npid=%lld\nstarted=%lld\n", static_cast<long long>(getpid()),
                           static_cast<long long>(time(nullptr))) +
                "model=" + osModelHash + "\n";
            if (write(fd, osRecord.data(), osRecord.size()) !=
                static_cast<ssize_t>(osRecord.size()))
            {
                oOut.osWhyUnlocked =
                    std::string("cannot write the lock ") + pszLock + ": " + strerror(errno);
                unlink(pszLock);
                close(fd);
                return oOut;
            }
            auto poLock = std::make_shared<TPSModelLock>(osLock, fd, dfStale / 5);
            // A holder that finished between our first look and now left
            // its model: no need to solve it again. Read whatever the file
            // looks like (on NFS, a stat may still show cached attributes).
            if (fnTryRead(true))
            {
                CPLDebug("TPS", "%s: the model appeared after %.1f s", pszLock,
                         SecondsSince(tStart));
                oOut.bModelRead = true;
                return oOut; /* poLock goes: the lock is removed */
            }
            if (bWaiting)
            {
                // The holder we waited for ended without leaving a model:
                // its solve failed, or gave a model that is not kept (local
                // mode), or its source changed. Solving in turn under the
                // lock would queue every waiter behind the next one.
                CPLDebug("TPS", "%s: the lock holder finished without a model: solving "
                         "without the lock", pszLock);
                oOut.osWhyUnlocked = "the lock holder left no model";
                return oOut; /* poLock goes */
            }
            CPLDebug("TPS", "%s: lock taken by pid %lld on %s", pszLock,
                     static_cast<long long>(getpid()), osHost.c_str());
            oOut.poLock = std::move(poLock);
            return oOut;
        }
        if (errno != EEXIST)
        {
            // A read-only folder, a full disk, permissions: solve as if
            // alone (the model file cannot be written there either, mostly).
            oOut.osWhyUnlocked =
                std::string("cannot create the lock ") + pszLock + ": " + strerror(errno);
            return oOut;
        }

        LockState oState;
        const LockRead eRead = ReadLock(osLock, &oState);
        if (eRead == LockRead::GONE)
            continue; /* released or broken just now: try to take it */
        // A lock this process cannot trust is not waited for, and the model
        // is not written where it lies: something that is not one of our
        // locks is in the folder (docs/security.md).
        std::string osUntrusted;
        if (eRead == LockRead::SYMLINK)
            osUntrusted = "is a symbolic link";
        else if (eRead == LockRead::NOT_FILE)
            osUntrusted = "is not a regular file";
        else if (oState.nUid != geteuid())
            osUntrusted = CPLSPrintf("is owned by another user (uid %lld)",
                                     static_cast<long long>(oState.nUid));
        else if (!oState.bParsed && oState.osContent.empty() && nEmptyReads < EMPTY_LOCK_RETRIES)
        {
            nEmptyReads++;
            std::this_thread::sleep_for(std::chrono::duration<double>(POLL_S));
            continue;
        }
        else if (!oState.bParsed)
            osUntrusted = "cannot be parsed as a gdal-tps lock";
        if (!osUntrusted.empty())
        {
            CPLDebug("TPS", "%s %s: not waited for; solving without writing the model file",
                     pszLock, osUntrusted.c_str());
            oOut.osWhyUnlocked = osLock + " " + osUntrusted;
            oOut.bDoNotWrite = true;
            return oOut;
        }
        if (oState.bParsed && oState.osModel != osModelHash)
        {
            // Its holder solves another configuration of this .tps: its
            // model would not serve us.
            CPLDebug("TPS", "%s: held for another model by pid %lld on %s: solving without it",
                     pszLock, oState.nPid, oState.osHost.c_str());
            oOut.osWhyUnlocked = "the lock is held for another model";
            return oOut;
        }

        std::string osStale;
        if (oState.bParsed && oState.osHost == osHost && oState.osPidSpace == osPidSpace &&
            !ProcessAlive(oState.nPid))
        {
            osStale = CPLSPrintf("its holder, pid %lld on this host, is gone", oState.nPid);
        }
        else
        {
            const std::string osNow = CPLSPrintf("%llu/%llu/%s/",
                                                 static_cast<unsigned long long>(oState.nDev),
                                                 static_cast<unsigned long long>(oState.nIno),
                                                 oState.osMTime.c_str()) +
                                      oState.osContent;
            if (osNow != osSeen)
            {
                osSeen = osNow;
                tSeenSince = Clock::now();
            }
            else if (SecondsSince(tSeenSince) >= dfStale)
            {
                osStale = CPLSPrintf("not refreshed for %.1f s", SecondsSince(tSeenSince));
            }
        }
        if (!osStale.empty())
        {
            const BreakResult eBreak = BreakLock(osLock, oState);
            if (eBreak == BreakResult::FAILED)
            {
                oOut.osWhyUnlocked = CPLSPrintf("cannot break the stale lock %s (%s): %s",
                                                pszLock, osStale.c_str(), strerror(errno));
                CPLDebug("TPS", "%s", oOut.osWhyUnlocked.c_str());
                return oOut;
            }
            if (eBreak == BreakResult::BROKEN)
            {
                CPLDebug("TPS", "%s: stale lock broken (%s)", pszLock, osStale.c_str());
                bWaiting = false; /* its holder will never be heard of */
            }
            osSeen.clear();
            continue;
        }

        const double dfWaited = SecondsSince(tStart);
        if (!bAnnounced)
        {
            CPLDebug("TPS", "%s: waiting for lock holder pid %lld on %s (up to %.1f s)", pszLock,
                     oState.nPid, oState.bParsed ? oState.osHost.c_str() : "unknown host",
                     std::max(0.0, dfTimeout - dfWaited));
            bAnnounced = true;
        }
        if (dfWaited >= dfTimeout)
        {
            CPLDebug("TPS", "%s: lock timeout after %.1f s: solving without the lock", pszLock,
                     dfWaited);
            oOut.osWhyUnlocked = CPLSPrintf("lock timeout after %.1f s", dfWaited);
            return oOut;
        }
        bWaiting = true;
        std::this_thread::sleep_for(
            std::chrono::duration<double>(std::min(POLL_S, dfTimeout - dfWaited)));
        if (fnTryRead(false))
        {
            CPLDebug("TPS", "%s: the model appeared after %.1f s", pszLock, SecondsSince(tStart));
            oOut.bModelRead = true;
            return oOut;
        }
    }
}

#else /* no POSIX: not coordinated */

class TPSModelLock
{
};

TPSModelLockOutcome TPSModelLockAcquireOrWait(const std::string &, const std::string &,
                                              const std::function<bool(bool)> &)
{
    TPSModelLockOutcome oOut;
    oOut.osWhyUnlocked = "no cross-process lock on this system";
    return oOut;
}

#endif
