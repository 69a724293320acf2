/*
 * tps_srs.cpp: a CRS given as text, taken whole or refused (tps_srs.h).
 */
#include "tps_srs.h"

#include "tps_errors.h"

#include "cpl_string.h"

#include <cctype>
#include <cstring>

namespace
{

bool IsDigit(char c)
{
    return c >= '0' && c <= '9';
}

bool IsSpace(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool StartsWithCI(const std::string &osText, size_t nAt, const char *pszPrefix)
{
    const size_t nLen = strlen(pszPrefix);
    return osText.size() - nAt >= nLen && EQUALN(osText.c_str() + nAt, pszPrefix, nLen);
}

/* "trailing characters 'x' after 'EPSG:28992'" */
std::string Trailing(const std::string &osText, size_t nAt)
{
    return CPLSPrintf("trailing characters '%s' after '%s'",
                      TPSShown(osText.substr(nAt)).c_str(),
                      TPSShown(osText.substr(0, nAt)).c_str());
}

/* Reads an EPSG code (digits, no sign, no leading zero) at *pnAt. */
bool ReadCode(const std::string &osText, size_t *pnAt, const char *pszAfter, std::string *posWhy)
{
    size_t i = *pnAt;
    while (i < osText.size() && IsDigit(osText[i]))
        i++;
    if (i == *pnAt)
    {
        *posWhy = i == osText.size()
                      ? CPLSPrintf("no code after '%s'", pszAfter)
                      : CPLSPrintf("expected an EPSG code (digits) after '%s', got '%s'",
                                   pszAfter, TPSShown(osText.substr(i)).c_str());
        return false;
    }
    if (osText[*pnAt] == '0')
    {
        *posWhy = CPLSPrintf("an EPSG code does not start with 0, got '%s'",
                             TPSShown(osText.substr(*pnAt)).c_str());
        return false;
    }
    *pnAt = i;
    return true;
}

/* "EPSG:<code>" or "EPSG:<code>+[EPSG:]<code>" (horizontal + vertical),
 * EPSGA: alike: GDAL's atoi() takes any prefix of a number, so the whole
 * syntax is checked here. (GDAL 3.6 also drops a coordinate epoch,
 * "EPSG:9000@2025.0": that is trailing characters too.) */
bool CheckEPSGForm(const std::string &osText, size_t nPrefix, std::string *posWhy)
{
    const std::string osPrefix = osText.substr(0, nPrefix);
    size_t i = nPrefix;
    if (!ReadCode(osText, &i, osPrefix.c_str(), posWhy))
        return false;
    if (i < osText.size() && osText[i] == '+')
    {
        i++;
        if (StartsWithCI(osText, i, "EPSG:"))
            i += 5;
        if (!ReadCode(osText, &i, osText.substr(0, i).c_str(), posWhy))
            return false;
    }
    if (i != osText.size())
    {
        *posWhy = Trailing(osText, i);
        return false;
    }
    return true;
}

/* A WKT (WKT1 or WKT2, "[" or "(" brackets, "ESRI::" prefix allowed):
 * nothing but white space may follow the bracket that closes the root. */
bool CheckWKT(const std::string &osText, size_t nOpen, std::string *posWhy)
{
    int nDepth = 0;
    bool bInQuotes = false;
    for (size_t i = nOpen; i < osText.size(); i++)
    {
        const char c = osText[i];
        if (bInQuotes)
        {
            // WKT2 writes a quote inside a string as "".
            if (c == '"')
                bInQuotes = false;
            continue;
        }
        if (c == '"')
            bInQuotes = true;
        else if (c == '[' || c == '(')
            nDepth++;
        else if (c == ']' || c == ')')
        {
            if (--nDepth == 0)
            {
                size_t j = i + 1;
                while (j < osText.size() && IsSpace(osText[j]))
                    j++;
                if (j == osText.size())
                    return true;
                *posWhy = CPLSPrintf("trailing characters '%s' after the WKT's closing bracket",
                                     TPSShown(osText.substr(j)).c_str());
                return false;
            }
        }
    }
    *posWhy = bInQuotes ? "a quoted string in the WKT is not closed"
                        : "the WKT's brackets are not closed";
    return false;
}

/* Where a WKT's first bracket is ("PROJCRS[", "GEOGCS (", "ESRI::PROJCS["),
 * or npos if osText does not start like a WKT. */
size_t WKTOpenBracket(const std::string &osText)
{
    size_t i = StartsWithCI(osText, 0, "ESRI::") ? 6 : 0;
    const size_t nKeyword = i;
    while (i < osText.size() && (isalnum(static_cast<unsigned char>(osText[i])) || osText[i] == '_'))
        i++;
    if (i == nKeyword || !isalpha(static_cast<unsigned char>(osText[nKeyword])))
        return std::string::npos;
    while (i < osText.size() && IsSpace(osText[i]))
        i++;
    return i < osText.size() && (osText[i] == '[' || osText[i] == '(') ? i : std::string::npos;
}

/* A PROJ string: PROJ silently ignores a word that is not "+key[=value]"
 * ("+proj=utm +zone=31 junk"). (It also ignores unknown keys; that cannot
 * be told from here, docs/format.md says so.) */
bool CheckPROJString(const std::string &osText, std::string *posWhy)
{
    const CPLStringList aosTokens(CSLTokenizeString2(osText.c_str(), " \t\r\n", 0));
    for (int i = 0; i < aosTokens.size(); i++)
    {
        const char *pszToken = aosTokens[i];
        if (pszToken[0] != '+' || !(isalpha(static_cast<unsigned char>(pszToken[1])) ||
                                    pszToken[1] == '_'))
        {
            *posWhy = CPLSPrintf("'%s' in a PROJ string is not a +key or +key=value parameter",
                                 TPSShown(pszToken).c_str());
            return false;
        }
    }
    return true;
}

} // namespace

bool TPSParseSRS(const std::string &osText, OGRSpatialReference *poSRS, std::string *posProblem)
{
    const std::string osCannot =
        CPLSPrintf("cannot interpret '%s' as a CRS", TPSShown(osText).c_str());
    auto Refuse = [&](const std::string &osWhy)
    {
        *posProblem = osCannot + ": " + osWhy;
        return false;
    };
    std::string osWhy;
    size_t nPrefix = 0;
    if (StartsWithCI(osText, 0, "EPSG:"))
        nPrefix = 5;
    else if (StartsWithCI(osText, 0, "EPSGA:"))
        nPrefix = 6;
    if (nPrefix && !CheckEPSGForm(osText, nPrefix, &osWhy))
        return Refuse(osWhy);

    // A CRS in a data file must not make GDAL fetch URLs or read other
    // files: the same limits the VRT driver applies.
    std::string osGDALError;
    poSRS->Clear();
    {
        TPSErrorCapture oCapture;
        const OGRErr eErr = poSRS->SetFromUserInput(
            osText.c_str(), OGRSpatialReference::SET_FROM_USER_INPUT_LIMITATIONS_get());
        if (eErr != OGRERR_NONE)
            return Refuse(!oCapture.LastFailure().empty()
                              ? oCapture.LastFailure()
                              : std::string("expected EPSG:<code>, another AUTHORITY:CODE, an "
                                            "OGC URN or URL, WKT, PROJJSON or a PROJ string"));
    }

    // What GDAL took may be only the start of the text.
    if (nPrefix)
    {
        // "EPSG:n" must give EPSG's CRS n itself, nothing GDAL mapped it to.
        const char *pszAuthority = poSRS->GetAuthorityName(nullptr);
        const char *pszCode = poSRS->GetAuthorityCode(nullptr);
        const bool bSimple = osText.find('+') == std::string::npos;
        if (bSimple && (pszAuthority == nullptr || pszCode == nullptr ||
                        !EQUAL(pszAuthority, "EPSG") ||
                        osText.compare(nPrefix, std::string::npos, pszCode) != 0))
            return Refuse(CPLSPrintf("GDAL gave %s:%s", pszAuthority ? pszAuthority : "?",
                                     pszCode ? pszCode : "?"));
    }
    else if (const size_t nOpen = WKTOpenBracket(osText); nOpen != std::string::npos)
    {
        if (!CheckWKT(osText, nOpen, &osWhy))
            return Refuse(osWhy);
    }
    // GDAL's own test for a PROJ string (SetFromUserInput, GDAL 3.6); not
    // PROJJSON, whose text may quote one.
    else if (osText[0] != '{' && (osText.find("+proj") != std::string::npos ||
                                  osText.find("+init") != std::string::npos))
    {
        if (!CheckPROJString(osText, &osWhy))
            return Refuse(osWhy);
    }
    return true;
}
