/* src/core/disk_cache.h - the on-disk tier of the program cache (disk_cache.c), used by
 * program_cache.c; the parser is separate so tests and the fuzzer can feed it bytes.
 */
#ifndef CLGRAD_DISK_CACHE_H
#define CLGRAD_DISK_CACHE_H

#include "core/core.h"

/* param: "off" -> *out NULL; NULL -> XDG/HOME default. */
clg_status clg__cache_dir_resolve(const char *param, char **out);
/* Checks a cache file's bytes (magic, key, length, checksum); payload points into data. */
clg_status clg__disk_cache_parse(const unsigned char *data, size_t size, uint64_t key,
                                 const unsigned char **payload, size_t *payload_len);
/* *binary is malloc'd on success. CLG_IO_ERROR: no file; CLG_BAD_FORMAT: not trusted. */
clg_status clg__disk_cache_load(const char *dir, uint64_t key, unsigned char **binary, size_t *len);
clg_status clg__disk_cache_store(const char *dir, uint64_t key, const unsigned char *binary, size_t len);

#endif
