/*
 * tps_memory.h: TPS_MAX_MEMORY, one memory budget for all the TPS data
 * sets of a process.
 *
 * A cap per open is no cap for a server: ten hostile files opened at once
 * (or kept open) would each get it. So the budget is the process's: what
 * its open data sets hold (their shared models) and what its opens in
 * progress have read (the points, counted while they are read, and the
 * engine's copies of them) are charged against it, and each solve may use
 * what is left when it starts. Two solves that start together may each
 * see the same part left (their working memory is not charged, only
 * bounded): docs/security.md says so.
 */
#ifndef TPS_MEMORY_H
#define TPS_MEMORY_H

#include <cstddef>
#include <string>

/* A size from a configuration option: "4000000000", "512MB", "4GB", "50%"
 * (of the usable RAM), "0" (no limit); nDefault when unset. False after one
 * CE_Failure naming osName and the option when it is not a size. */
bool TPSMemoryOption(const std::string &osName, const char *pszOption, size_t nDefault,
                     size_t *pnBytes);

/* TPS_MAX_MEMORY (default: half the usable RAM; 0: no limit). */
bool TPSMemoryBudget(const std::string &osName, size_t *pnBytes);

/* Bytes charged now, by every data set and open of the process. */
size_t TPSMemoryInUse();

/* Bytes of nBudget (0: no limit, then SIZE_MAX) not charged now. */
size_t TPSMemoryLeft(size_t nBudget);

/* One charge against the budget, released when destroyed. */
class TPSMemoryCharge
{
  public:
    TPSMemoryCharge() = default;
    ~TPSMemoryCharge();
    TPSMemoryCharge(const TPSMemoryCharge &) = delete;
    TPSMemoryCharge &operator=(const TPSMemoryCharge &) = delete;

    /* Makes the charge nBytes. Growing it fails (and changes nothing) when
     * the process's charges would then pass nBudget (0: no limit);
     * shrinking always succeeds. */
    bool Resize(size_t nBytes, size_t nBudget);
    size_t Bytes() const
    {
        return m_nBytes;
    }

  private:
    size_t m_nBytes = 0;
};

#endif /* TPS_MEMORY_H */
