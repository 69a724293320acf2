/*
 * tps_source_policy.h: which point sources a data set may read, by the
 * configuration option TPS_ALLOWED_SOURCES (docs/security.md).
 *
 * A .tps file is data that other people write: a file that names
 * /vsicurl/http://intranet/..., PG:host=... or ~/.ssh/... as its points
 * makes whoever opens it fetch that source, with their own network
 * position, credentials and permissions, and hand back a raster of it.
 * The option says what a source may be:
 *   SIBLING_OR_CHILD  a file in the .tps file's folder or below (symbolic
 *                     links and ".." resolved with realpath), read by a
 *                     driver of LOCAL's list; not the TPS: form or inline
 *                     XML, which have no folder;
 *   LOCAL (default)   a local file or folder, /vsimem/, or an archive of
 *                     one (/vsizip/, /vsitar/, /vsigzip/, /vsi7z/,
 *                     /vsirar/, /vsisubfile/), read by a driver that reads
 *                     only the files it is given (CSV, Shapefile, GPKG,
 *                     GeoJSON, FlatGeobuf, ...): no network file system, no
 *                     database or service connection, no driver that
 *                     follows references (OGR VRT, WFS, GML, SQLite);
 *   ALL               anything GDAL can open;
 *   or a list (commas or spaces) of these words and of prefixes: a source
 *   is allowed when one item allows it; a prefix ("PG:",
 *   "/vsicurl/https://data.example.com/", "/srv/points/") allows the
 *   sources that start with it (a path prefix at a folder boundary, after
 *   realpath), read by any driver, as ALL does.
 * The check runs before anything touches the source (the in-process model
 * cache stats it): a refused source is never opened, stat'ed or fetched.
 */
#ifndef TPS_SOURCE_POLICY_H
#define TPS_SOURCE_POLICY_H

#include "tps_config.h"

#include <string>
#include <vector>

/* Checks oConfig.osSource against TPS_ALLOWED_SOURCES and records in
 * *poConfig what the loader must still enforce once the source is open
 * (aosSourceDrivers, osSourceFolder). A refusal emits one CE_Failure that
 * names the setting that would allow the source, and returns false. */
bool TPSApplySourcePolicy(TPSConfig *poConfig);

/* The same for each covariate raster (tps_config.h's TPSCovariateConfig:
 * aosDrivers, osFolder), with raster drivers in LOCAL's list (GeoTIFF,
 * GeoPackage, HFA, ENVI, ...; not VRT, which names other data sets): a
 * covariate raster is read like a source. A refusal emits one CE_Failure
 * naming the <Covariate> and returns false. */
bool TPSApplyCovariatePolicy(TPSConfig *poConfig);

/* After a covariate raster is open: as TPSSourceFilesInFolder, for its
 * files and oCov.osFolder. */
bool TPSCovariateFilesInFolder(const TPSCovariateConfig &oCov,
                               const std::vector<std::string> &aosFiles, std::string *posWhy);

/* After the source is open: false, with the reason in *posWhy, when one of
 * aosFiles (the files GDAL lists for it and those it reads unlisted)
 * resolves outside oConfig.osSourceFolder; true when there is no folder to
 * keep to. */
bool TPSSourceFilesInFolder(const TPSConfig &oConfig, const std::vector<std::string> &aosFiles,
                            std::string *posWhy);

/* The local file (or /vsimem/ path) under osPath once "CSV:" and the
 * archive prefixes (/vsizip/ ...) are taken off; "" when it is not local
 * (a connection string, a network file system). */
std::string TPSLocalPathOf(const std::string &osPath);

/* The source as a message may show it: in connection strings and URLs,
 * the values of password, token, key and similar parameters, user
 * information ("user:secret@") and query strings are replaced by "***".
 * Plain paths are returned as they are. */
std::string TPSSourceForMessage(const std::string &osSource);

#endif /* TPS_SOURCE_POLICY_H */
