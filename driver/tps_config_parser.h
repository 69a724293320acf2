/*
 * tps_config_parser.h: the parser of a TPS data set's configuration
 * (tps_config.h), shared by the two files it is written in:
 * tps_config_parse.cpp walks the .tps XML, the TPS: string and the open
 * options; tps_config_values.cpp turns one element's or option's text into
 * a value. Internal to those two files.
 */
#ifndef TPS_CONFIG_PARSER_H
#define TPS_CONFIG_PARSER_H

#include "tps_config.h"

#include "cpl_error.h"
#include "cpl_minixml.h"
#include "cpl_port.h"

#include <string>
#include <vector>

/* The one class that knows the names: walks the XML and the options and
 * reports failures as "<name>: <label>: <problem>". */
class TPSConfigParser
{
  public:
    explicit TPSConfigParser(TPSConfig &oConfig) : m_oConfig(oConfig)
    {
    }

    bool Parse(const char *pszFilename, CSLConstList papszOpenOptions);

    /* Text helpers (tps_config_values.cpp). */
    static std::string Trim(const std::string &s);
    /* "178440, 40, 0" and "178440 40 0" both give three tokens; "1,,2" and
     * a trailing comma are errors (an empty token). */
    static bool SplitNumbers(const std::string &osText, std::vector<std::string> &aosTokens);
    static bool ParseDouble(const std::string &osToken, double *pdfValue);
    static bool ParseFinite(const std::string &osToken, double *pdfValue);
    /* A decimal integer 1 .. nMax ("+" allowed, nothing else). */
    static bool ParsePositiveInt(const std::string &osToken, int nMax, int *pnValue,
                                 bool *pbTooLarge);
    /* "columns rows": two integers in 1..TPS_MAX_RASTER_SIDE. */
    static bool ParseIntPair(const std::string &osText, int an[2], bool *pbTooLarge);

  private:
    TPSConfig &m_oConfig;

    bool Fail(CPLErrorNum nNum, const std::string &osLabel, const char *pszFmt, ...)
        CPL_PRINT_FUNC_FORMAT(4, 5);
    void Warn(const char *pszFmt, ...) CPL_PRINT_FUNC_FORMAT(2, 3);

    /* tps_config_parse.cpp: the structure. */
    bool ParseXMLText(const std::string &osText);
    bool ParseRoot(const CPLXMLNode *psRoot);
    bool ParsePoints(const CPLXMLNode *psPoints);
    bool ParseBand(const CPLXMLNode *psBand, int iBand);
    bool ParseCovariate(const CPLXMLNode *psCovariate, int iCovariate);
    bool ParseCovariatesOption(const char *pszValue);
    bool ApplyOpenOptions(CSLConstList papszOpenOptions, bool bConnectionForm);
    bool Validate(bool bConnectionForm);
    /* A count from a configuration option (1 .. 2^31-1; nDefault when
     * unset) into *pnValue; false after one CE_Failure. */
    bool ConfigCount(const char *pszOption, int nDefault, int *pnValue);
    bool TooManyBands(size_t nBands);
    std::string ResolveSource(const std::string &osSource) const;

    /* tps_config_values.cpp: value parsers, shared by elements and
     * options: osLabel is "<Size>" or "SIZE". */
    bool ParseQuantity(const std::string &osLabel, const std::string &osText,
                       tps_quantity *peQuantity);
    /* One of asChoices' names (any case) into *pnValue. */
    bool ParseChoice(const std::string &osLabel, const std::string &osText,
                     const TPSChoices &asChoices, int *pnValue);
    bool ParseSmoothingValue(const std::string &osLabel, const std::string &osText,
                             double *pdfValue, bool *pbGCV);
    bool ParseGeoTransform(const std::string &osLabel, const std::string &osText);
    bool ParseExtent(const std::string &osLabel, const std::string &osText);
    bool ParseResolution(const std::string &osLabel, const std::string &osText);
    bool ParseSize(const std::string &osLabel, const std::string &osText);
    bool ParseBlockSize(const std::string &osLabel, const std::string &osText);
    bool ParseDataType(const std::string &osLabel, const std::string &osText);
    bool ParseNoData(const std::string &osLabel, const std::string &osText);
    bool ParseNumThreads(const std::string &osLabel, const std::string &osText,
                         bool bFromConfigOption);
    bool ParseDevice(const std::string &osLabel, const std::string &osText);
    bool ParsePrecision(const std::string &osLabel, const std::string &osText);
    bool ParseTolerance(const std::string &osLabel, const std::string &osText);
    bool ParseModelCache(const std::string &osLabel, const std::string &osText);
    bool ParseCrossValidation(const std::string &osLabel, const std::string &osText);
    bool ParseMode(const std::string &osLabel, const std::string &osText);
    bool ParseSolver(const std::string &osLabel, const std::string &osText);
    bool ParseSolverTolerance(const std::string &osLabel, const std::string &osText);
    bool ParsePatchPoints(const std::string &osLabel, const std::string &osText);
    bool ParseOverlap(const std::string &osLabel, const std::string &osText);
    bool ParseMaxDistance(const std::string &osLabel, const std::string &osText);
    bool ParseConvexHull(const std::string &osLabel, const std::string &osText);
};

#endif /* TPS_CONFIG_PARSER_H */
