/*
 * tps_model_lock.h: one solve among processes that open the same .tps at
 * the same time, before its model file exists.
 *
 * The first of them creates "<name>.tps.model.lock" (O_CREAT|O_EXCL),
 * solves, writes the model file and removes the lock; the others wait,
 * polling the model file, and read it as soon as a valid one appears.
 * The lock only saves work: the model file is written atomically and
 * checked by its hash, so a lock that fails in any way (broken, timed out,
 * not creatable) costs a second solve, never a wrong surface, and a wait
 * is always bounded.
 *
 * The lock file holds the holder's host name, pid space (boot and pid
 * namespace), pid, start time and the model's hash; the holder refreshes
 * its modification time every TPS_MODEL_LOCK_STALE/5 seconds while it
 * solves. A waiter breaks a lock whose holder is gone: a pid that no longer
 * exists in this host's pid space, or a
 * modification time this waiter has seen unchanged for
 * TPS_MODEL_LOCK_STALE seconds (default 30; a holder on another machine).
 * It waits TPS_MODEL_LOCK_TIMEOUT seconds at most (default 60), then
 * solves without the lock. A lock for another configuration of the same
 * .tps (another hash) is not waited for.
 *
 * Anyone who can write the folder can put a file there: a lock that is
 * not what this code writes (a symbolic link, not a regular file, owned by
 * another user, content that does not parse) is never waited for; the
 * caller then solves and writes no model file (bDoNotWrite). Locks are
 * created with O_NOFOLLOW and mode 0600.
 *
 * Only for real file system paths on POSIX systems: VSI has no exclusive
 * create, so /vsi* paths (and other systems) are not coordinated.
 */
#ifndef TPS_MODEL_LOCK_H
#define TPS_MODEL_LOCK_H

#include <functional>
#include <memory>
#include <string>

/* A lock this process holds: removed (when still its own) by the destructor. */
class TPSModelLock;

struct TPSModelLockOutcome
{
    /* Held: this process solves, writes the model, then drops this. */
    std::shared_ptr<TPSModelLock> poLock{};
    /* fnTryRead succeeded: another process's model was read. */
    bool bModelRead = false;
    /* Why this process solves without the lock ("" when it holds it or
     * read the model), for the caller's debug line. */
    std::string osWhyUnlocked{};
    /* The lock was not one this process can trust (a symbolic link,
     * something else than a file, another user's, unparsable): it was not
     * waited for, and the caller must not write the model file either. */
    bool bDoNotWrite = false;
};

/* For osModelPath (the model file) whose valid model is not there yet:
 * takes the lock, or waits for its holder and calls fnTryRead(false)
 * every ~150 ms, breaking a stale lock or giving up after the timeout.
 * fnTryRead returns true once it has read a valid model; with false it may
 * skip a file it has already tried, unchanged; it is called with true once
 * the lock is taken (a holder may have finished just before). osModelHash
 * (hex) names the model wanted. Debug lines ("TPS") say what happened. */
TPSModelLockOutcome TPSModelLockAcquireOrWait(const std::string &osModelPath,
                                              const std::string &osModelHash,
                                              const std::function<bool(bool)> &fnTryRead);

#endif /* TPS_MODEL_LOCK_H */
