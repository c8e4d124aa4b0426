/* src/core/disk_cache.c - the on-disk tier of the program cache: one file per compiled
 * program binary, named by a hash of everything that could change the binary. A file is
 * trusted only when its header, length and checksum all match; writes go to a temp file
 * that is renamed, so concurrent processes can share the folder. Tests: tests/core/test_program_cache.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/disk_cache.h"

#define MAGIC "CLGBIN02"

clg_status clg__cache_dir_resolve(const char *param, char **out) {
    *out = NULL;
    if (param && !strcmp(param, "off")) return CLG_OK;
    char buf[4096];
    if (param) {
        snprintf(buf, sizeof buf, "%s", param);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg) snprintf(buf, sizeof buf, "%s/clgrad", xdg);
        else if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/clgrad", home);
        else return CLG_OK; /* nowhere to cache: the disk tier stays off */
    }
    *out = clg__strdup(buf);
    return *out ? CLG_OK : CLG_OUT_OF_HOST_MEMORY;
}

static void file_path(const char *dir, uint64_t key, char *buf, size_t len) {
    snprintf(buf, len, "%s/%016llx.bin", dir, (unsigned long long)key);
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

clg_status clg__disk_cache_parse(const unsigned char *data, size_t size, uint64_t key,
                                 const unsigned char **payload, size_t *payload_len) {
    if (size < 32 || memcmp(data, MAGIC, 8) != 0) return CLG_BAD_FORMAT;
    if (get_u64(data + 8) != key) return CLG_BAD_FORMAT;
    uint64_t len = get_u64(data + 16);
    if (len == 0 || len != size - 32) return CLG_BAD_FORMAT;
    if (clg__fnv1a(CLG_FNV1A_START, data + 32, (size_t)len) != get_u64(data + 24))
        return CLG_BAD_FORMAT;
    *payload = data + 32;
    *payload_len = (size_t)len;
    return CLG_OK;
}

clg_status clg__disk_cache_load(const char *dir, uint64_t key, unsigned char **binary, size_t *len) {
    *binary = NULL;
    char path[4200];
    file_path(dir, key, path, sizeof path);
    unsigned char *data;
    size_t size;
    /* A missing file is CLG_IO_ERROR (a miss), one past 1 GiB or unreadable is not trusted. */
    clg_status st = clg__read_file(path, (size_t)1 << 30, "program cache", &data, &size, NULL, 0);
    if (st != CLG_OK) return st;
    const unsigned char *payload;
    size_t plen;
    st = clg__disk_cache_parse(data, size, key, &payload, &plen);
    if (st == CLG_OK) {
        memmove(data, payload, plen);
        *binary = data;
        *len = plen;
        data = NULL;
    }
    free(data);
    return st;
}

clg_status clg__disk_cache_store(const char *dir, uint64_t key, const unsigned char *binary, size_t len) {
    if (!clg__mkdirs(dir)) return CLG_IO_ERROR;
    char path[4200], tmp[4300];
    file_path(dir, key, path, sizeof path);
    clg__remove_stale_temps(path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    unsigned char header[32];
    memcpy(header, MAGIC, 8);
    put_u64(header + 8, key);
    put_u64(header + 16, len);
    put_u64(header + 24, clg__fnv1a(CLG_FNV1A_START, binary, len));
    FILE *f = fopen(tmp, "wb");
    if (!f) return CLG_IO_ERROR;
    bool ok = fwrite(header, 1, 32, f) == 32 && fwrite(binary, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return CLG_IO_ERROR;
    }
    return CLG_OK;
}
