/*
 * tps_paths.h: where the points' source is: a connection string or a
 * path, resolved against the .tps file's folder.
 */
#ifndef TPS_PATHS_H
#define TPS_PATHS_H

#include <string>

/* True when pszSource is a connection string or URL ("PG:dbname=x",
 * "WFS:http://...", "https://...") rather than a path. */
bool TPSIsConnectionString(const char *pszSource);

/* pszSource resolved against osBaseDir when it is a relative path (as is
 * otherwise). ".." is collapsed lexically inside /vsi file systems, which
 * do not understand it themselves. */
std::string TPSResolvePath(const std::string &osBaseDir, const std::string &osSource);

#endif /* TPS_PATHS_H */
