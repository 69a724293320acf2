/*
 * tps_errors.cpp: see tps_errors.h.
 */
#include "tps_errors.h"

#include "cpl_conv.h"
#include "cpl_string.h"

TPSErrorCapture::TPSErrorCapture(bool bSourceData) : m_bSourceData(bSourceData)
{
    CPLPushErrorHandlerEx(Handler, this);
    // Debug lines are not errors: let them reach whoever listens (CPL_DEBUG).
    CPLSetCurrentErrorHandlerCatchDebug(FALSE);
    m_bActive = true;
}

TPSErrorCapture::~TPSErrorCapture()
{
    Release();
}

void TPSErrorCapture::Release()
{
    if (!m_bActive)
        return;
    CPLPopErrorHandler();
    m_bActive = false;
    if (m_bSourceData && !m_aoWarnings.empty() && !TPSDebugEnabled())
    {
        CPLError(CE_Warning, m_aoWarnings.front().first,
                 "%d warning%s from GDAL while reading the point source (shown with "
                 "CPL_DEBUG=TPS: they may quote its content)",
                 static_cast<int>(m_aoWarnings.size()), m_aoWarnings.size() > 1 ? "s" : "");
        m_aoWarnings.clear();
    }
    for (const auto &oWarning : m_aoWarnings)
        CPLError(CE_Warning, oWarning.first, "%s", oWarning.second.c_str());
    m_aoWarnings.clear();
}

std::string TPSErrorCapture::Suffix() const
{
    return m_osLastFailure.empty() ? std::string() : ": " + m_osLastFailure;
}

void CPL_STDCALL TPSErrorCapture::Handler(CPLErr eErr, CPLErrorNum nNum, const char *pszMsg)
{
    auto *poThis = static_cast<TPSErrorCapture *>(CPLGetErrorHandlerUserData());
    if (poThis == nullptr)
        return;
    if (eErr == CE_Warning)
        poThis->m_aoWarnings.emplace_back(nNum, pszMsg ? pszMsg : "");
    else if (eErr == CE_Failure || eErr == CE_Fatal)
        poThis->m_osLastFailure = pszMsg ? pszMsg : "";
}

bool TPSDebugEnabled()
{
    const char *pszDebug = CPLGetConfigOption("CPL_DEBUG", nullptr);
    if (pszDebug == nullptr)
        return false;
    if (EQUAL(pszDebug, "ON") || EQUAL(pszDebug, "YES") || EQUAL(pszDebug, "TRUE") ||
        EQUAL(pszDebug, "1"))
        return true;
    // GDAL prints the categories a value names (CPL_DEBUG=TPS).
    return CPLString(pszDebug).ifind("TPS") != std::string::npos;
}

std::string TPSSourceText(const std::string &osText, const char *pszPrefix)
{
    if (osText.empty())
        return std::string();
    if (TPSDebugEnabled())
        return pszPrefix + TPSShown(osText);
    return " (details from the source are shown with CPL_DEBUG=TPS)";
}

std::string TPSShown(const std::string &osText)
{
    constexpr size_t MAX_SHOWN = 80;
    if (osText.size() <= MAX_SHOWN)
        return osText;
    return osText.substr(0, MAX_SHOWN) + "...";
}

std::string TPSSanitize(const std::string &osMessage)
{
    if (CPLIsUTF8(osMessage.c_str(), -1))
        return osMessage;
    char *pszASCII = CPLForceToASCII(osMessage.c_str(), -1, '?');
    std::string osOut(pszASCII);
    CPLFree(pszASCII);
    return osOut;
}
