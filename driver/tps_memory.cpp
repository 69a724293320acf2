/*
 * tps_memory.cpp: see tps_memory.h.
 */
#include "tps_memory.h"

#include "tps_errors.h"

#include "cpl_conv.h"
#include "cpl_error.h"
#include "cpl_string.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

namespace
{

std::atomic<size_t> &Charged()
{
    // Never destroyed: a data set closed after static destruction still
    // releases its charge.
    static auto *poCharged = new std::atomic<size_t>(0);
    return *poCharged;
}

} // namespace

bool TPSMemoryOption(const std::string &osName, const char *pszOption, size_t nDefault,
                     size_t *pnBytes)
{
    const GIntBig nRAM = CPLGetUsablePhysicalRAM();
    const char *pszValue = CPLGetConfigOption(pszOption, nullptr);
    if (pszValue == nullptr)
    {
        *pnBytes = nDefault;
        return true;
    }
    char *pszEnd = nullptr;
    const double dfValue = CPLStrtod(pszValue, &pszEnd);
    const std::string osSuffix = CPLString(pszEnd ? pszEnd : "").Trim();
    double dfUnit = 0;
    if (osSuffix.empty() || EQUAL(osSuffix.c_str(), "B"))
        dfUnit = 1;
    else if (EQUAL(osSuffix.c_str(), "K") || EQUAL(osSuffix.c_str(), "KB"))
        dfUnit = 1024.0;
    else if (EQUAL(osSuffix.c_str(), "M") || EQUAL(osSuffix.c_str(), "MB"))
        dfUnit = 1024.0 * 1024;
    else if (EQUAL(osSuffix.c_str(), "G") || EQUAL(osSuffix.c_str(), "GB"))
        dfUnit = 1024.0 * 1024 * 1024;
    else if (EQUAL(osSuffix.c_str(), "T") || EQUAL(osSuffix.c_str(), "TB"))
        dfUnit = 1024.0 * 1024 * 1024 * 1024;
    else if (osSuffix == "%" && nRAM > 0)
        dfUnit = static_cast<double>(nRAM) / 100;
    const double dfBytes = dfValue * dfUnit;
    if (pszEnd == pszValue || dfUnit == 0 || !std::isfinite(dfBytes) || dfBytes < 0 ||
        dfBytes >= static_cast<double>(std::numeric_limits<size_t>::max()))
    {
        CPLError(CE_Failure, CPLE_IllegalArg,
                 "%s: %s: expected a number of bytes such as 4000000000, 512MB, "
                 "4GB or 50%% (of the RAM; 0: no limit), got '%s'",
                 osName.c_str(), pszOption, TPSShown(pszValue).c_str());
        return false;
    }
    *pnBytes = static_cast<size_t>(dfBytes);
    return true;
}

bool TPSMemoryBudget(const std::string &osName, size_t *pnBytes)
{
    const GIntBig nRAM = CPLGetUsablePhysicalRAM();
    return TPSMemoryOption(osName, "TPS_MAX_MEMORY", nRAM > 0 ? static_cast<size_t>(nRAM / 2) : 0,
                           pnBytes);
}

size_t TPSMemoryInUse()
{
    return Charged().load();
}

size_t TPSMemoryLeft(size_t nBudget)
{
    if (nBudget == 0)
        return SIZE_MAX;
    const size_t nUsed = Charged().load();
    return nUsed >= nBudget ? 0 : nBudget - nUsed;
}

bool TPSMemoryCharge::Resize(size_t nBytes, size_t nBudget)
{
    auto &oCharged = Charged();
    if (nBytes <= m_nBytes)
    {
        oCharged -= m_nBytes - nBytes;
        m_nBytes = nBytes;
        return true;
    }
    const size_t nMore = nBytes - m_nBytes;
    size_t nNow = oCharged.load();
    do
    {
        if (nBudget != 0 && (nNow > nBudget || nMore > nBudget - nNow))
            return false;
    } while (!oCharged.compare_exchange_weak(nNow, nNow + nMore));
    m_nBytes = nBytes;
    return true;
}

TPSMemoryCharge::~TPSMemoryCharge()
{
    Resize(0, 0);
}
