/*
 * tps_srs.h: a CRS given as text (<SRS>, <Points><SRS>, -oo SRS=), taken
 * whole or refused.
 *
 * OGRSpatialReference::SetFromUserInput alone is not enough. For "EPSG:"
 * and "EPSGA:" GDAL 3.6 reads the code with atoi(), so "EPSG:28992x" gives
 * EPSG:28992 and "EPSG:2899x" gives EPSG:2899 (Mississippi East, US feet)
 * without a word; it drops a coordinate epoch ("EPSG:9000@2025.0"). It
 * also ignores whatever follows a WKT's closing bracket, and PROJ ignores
 * bare words in a PROJ string. TPSParseSRS checks the syntax of these forms
 * before it hands the text to GDAL; the other forms (URNs, OGC URLs, other
 * authorities, PROJJSON) go to PROJ's own parsers, which take a string
 * whole. docs/format.md lists the forms.
 */
#ifndef TPS_SRS_H
#define TPS_SRS_H

#include "ogr_spatialref.h"

#include <string>

/* Parses osText (already trimmed) into *poSRS, with network and file
 * access off. Returns false with *posProblem set to
 * "cannot interpret '<text>' as a CRS: <why>" (GDAL's own message where
 * GDAL refused the text), and no CPLError of its own. */
bool TPSParseSRS(const std::string &osText, OGRSpatialReference *poSRS, std::string *posProblem);

#endif /* TPS_SRS_H */
