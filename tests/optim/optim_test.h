/* tests/optim/optim_test.h - what the optim tests share: reading a fixture file of
 * tests/fixtures (optim.safetensors from make_optim_fixtures.py, small_cnn.safetensors from
 * make_fixtures.py) and copying an F64 entry out of it. Header only.
 */
#ifndef CLGRAD_TESTS_OPTIM_TEST_H
#define CLGRAD_TESTS_OPTIM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

static inline void optim_fixture_read_file(clg_st_file *f, const char *file) {
    const char *dir = getenv("CLGRAD_FIXTURES");
    char path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", file);
    memset(f, 0, sizeof *f);
    clg_status st = clg_st_read(path, f, err, sizeof err);
    if (st != CLG_OK) fail_msg("cannot read %s: %s: %s", path, clg_status_name(st), err);
}

static inline void optim_fixture_read(clg_st_file *f) { optim_fixture_read_file(f, "optim.safetensors"); }

/* A malloc'd copy of entry name (the data may be unaligned in the file); its entry in *e. */
static inline double *optim_fixture_f64(const clg_st_file *f, const char *name, const clg_st_entry **e) {
    for (size_t i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) {
            if (f->entries[i].dtype != CLG_F64) fail_msg("fixture %s is not F64", name);
            double *v = malloc(f->entries[i].bytes);
            assert_non_null(v);
            memcpy(v, f->entries[i].data, f->entries[i].bytes);
            if (e) *e = &f->entries[i];
            return v;
        }
    fail_msg("the fixture has no tensor %s", name);
    return NULL;
}

#endif
