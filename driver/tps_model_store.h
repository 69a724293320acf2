/*
 * tps_model_store.h: which files keep the solved models of one .tps, and
 * how many of them stay.
 *
 * One .tps is opened under several configurations (a GCV open and a
 * fixed-lambda one, another field, MODE=LOCAL): each keeps its own model
 * file, "<name>.tps.model.<16 hex digits>", the digits from a SHA-256 of
 * the configuration (tps_model_file.cpp says what goes in), so that
 * alternating between them solves each once. A configuration whose points
 * or software change keeps its name: its file goes stale and is rewritten
 * in place, it does not pile up. Its lock and temporary files are named
 * after it (".lock", ".tmp.*").
 *
 * At most TPS_MODEL_CACHE_MAX_FILES (default 8) such files are kept per
 * .tps: after a write the least recently used beyond that are removed.
 * "Used" is the file's modification time, which a read refreshes where it
 * can (a real file system, MODEL_CACHE=YES); elsewhere it is the time of
 * the write.
 */
#ifndef TPS_MODEL_STORE_H
#define TPS_MODEL_STORE_H

#include <string>

/* "<osTPSFile>.model.<16 hex>" for the configuration described by
 * osConfigKey (any string: only its SHA-256 is used). */
std::string TPSModelStorePath(const std::string &osTPSFile, const std::string &osConfigKey);

/* True when osFile is the model file (not a lock or temporary file) of
 * some configuration of osTPSFile. */
bool TPSModelStoreIsEntry(const std::string &osTPSFile, const std::string &osFile);

/* Marks the model file osPath as just used (its modification time), where
 * the file system allows; never an error. */
void TPSModelStoreTouch(const std::string &osPath);

/* Removes the least recently used model files of osTPSFile beyond the
 * bound, never osKeep (the one just written). Debug lines say what went;
 * never an error (a file that cannot be removed stays). */
void TPSModelStoreTrim(const std::string &osTPSFile, const std::string &osKeep);

#endif /* TPS_MODEL_STORE_H */
