/*
 * tps_errors.h: keeping to "one clear CE_Failure per failed Open".
 *
 * GDAL and OGR calls made on the way (opening the point source, reading
 * the .tps file, parsing a CRS) report their own errors. Passed through,
 * a user would see two or three messages for one problem, none of which
 * names the .tps file. TPSErrorCapture swallows the failures of the calls
 * it scopes, keeps the last message so that the caller can fold it into
 * its own, and re-emits warnings unchanged when it goes away.
 */
#ifndef TPS_ERRORS_H
#define TPS_ERRORS_H

#include "cpl_error.h"

#include <string>
#include <utility>
#include <vector>

class TPSErrorCapture
{
  public:
    /* bSourceData: the calls read the point source, so GDAL's messages may
     * quote its content (a value, an HTTP reply): its warnings are then
     * re-emitted as one warning that counts them, their text only with
     * TPS debug output on (TPSDebugEnabled), as TPSSourceText does. */
    explicit TPSErrorCapture(bool bSourceData = false);
    ~TPSErrorCapture();
    TPSErrorCapture(const TPSErrorCapture &) = delete;
    TPSErrorCapture &operator=(const TPSErrorCapture &) = delete;

    /* The last failure message seen, "" if none. */
    const std::string &LastFailure() const
    {
        return m_osLastFailure;
    }
    /* Forget the failures seen so far. */
    void ClearLastFailure()
    {
        m_osLastFailure.clear();
    }
    /* ": <last failure>" or "", to append to a message. */
    std::string Suffix() const;

    /* Stop capturing now (re-emits the warnings collected so far). */
    void Release();

  private:
    static void CPL_STDCALL Handler(CPLErr eErr, CPLErrorNum nNum, const char *pszMsg);

    bool m_bActive = false;
    bool m_bSourceData = false;
    std::string m_osLastFailure{};
    std::vector<std::pair<CPLErrorNum, std::string>> m_aoWarnings{};
};

/* Text from a file as it should appear in a message: at most about 80
 * bytes ("..." after), so that a 10 MB element does not become a 10 MB
 * message. */
std::string TPSShown(const std::string &osText);

/* Whether GDAL prints the driver's debug lines: CPL_DEBUG=ON (YES, TRUE,
 * 1) or a value naming TPS. */
bool TPSDebugEnabled();

/* Text that comes from the point source (a field value, a coordinate,
 * GDAL's message about the source's content) for an error message: error
 * messages travel where the data may not (a server's error reply, a shared
 * log), so the text is shown only with debug output on (TPSDebugEnabled):
 * then pszPrefix + the text (TPSShown), else a note saying how to see it;
 * "" for an empty text. */
std::string TPSSourceText(const std::string &osText, const char *pszPrefix = ": ");

/* A message safe to hand to any error handler: text that is not valid
 * UTF-8 (bytes quoted from a damaged file) is forced to ASCII, as Python's
 * bindings, for one, fail on invalid UTF-8. */
std::string TPSSanitize(const std::string &osMessage);

#endif /* TPS_ERRORS_H */
