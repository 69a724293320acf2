/*
 * tps_errors.cpp: see tps_errors.h.
 */
#include "tps_errors.h"

#include "cpl_conv.h"
#include "cpl_string.h"

TPSErrorCapture::TPSErrorCapture()
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
