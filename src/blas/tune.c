/* src/blas/tune.c - the per-device GEMM tuning file: CLBlast kernel parameters (applied
 * through src/blas/clblast.c), packed tile shapes and path decisions per size class with the
 * times by path name that made them, kept as JSON in the cache folder under a name keyed by
 * device name and driver version. Written by tools/clgrad-tune and, for choices measured in a
 * run, at clg_context_free; read on a context's first GEMM. Tests: tests/blas/test_gemm_choice.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "blas/paths.h"

/* 2: "times" by path name (format 1 had fixed clblast_s/packed_s fields). */
#define TUNE_FORMAT 2
/* A tuning file is a few kB; anything huge is not ours. */
#define TUNE_MAX_BYTES ((size_t)1 << 20)

static bool tuning_off(void) {
    const char *env = getenv("CLGRAD_GEMM_TUNING");
    return env && !strcasecmp(env, "off");
}

bool clg_blas_tune_file(clg_context *ctx, char *buf, size_t len) {
    if (!ctx || !ctx->cache_dir) return false;
    uint64_t h = CLG_FNV1A_START;
    h = clg__fnv1a(h, ctx->info.name, strlen(ctx->info.name) + 1);
    h = clg__fnv1a(h, ctx->info.driver_version, strlen(ctx->info.driver_version) + 1);
    snprintf(buf, len, "%s/gemm-tune-%016llx.json", ctx->cache_dir, (unsigned long long)h);
    return true;
}

/* ---------------------------------------------------------------- reading */
static int json_int(const cJSON *obj, const char *key, int lo, int hi, bool *ok) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    /* written so that NaN fails too: converting it to int is undefined */
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi)) {
        *ok = false;
        return lo;
    }
    return (int)j->valuedouble;
}

static bool parse_dtype(const cJSON *j, clg_dtype *dt) {
    if (!cJSON_IsString(j)) return false;
    if (!strcmp(j->valuestring, "f32"))
        *dt = CLG_F32;
    else if (!strcmp(j->valuestring, "f64"))
        *dt = CLG_F64;
    else
        return false;
    return true;
}

/* Parses the JSON text into d; false (d partly filled) when anything is off. */
static bool tune_parse(const char *text, const clg_device_info *info, clg_tune_data *d, int *format) {
    memset(d, 0, sizeof *d);
    *format = 0;
    cJSON *root = cJSON_Parse(text);
    if (!root) return false;
    bool ok = cJSON_IsObject(root);
    if (ok) *format = json_int(root, "format", 0, 1000, &ok);
    ok = ok && *format == TUNE_FORMAT;
    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(root, "device");
    const cJSON *drv = cJSON_GetObjectItemCaseSensitive(root, "driver");
    /* the file name is a hash: a collision must not apply another device's parameters */
    ok = ok && cJSON_IsString(dev) && cJSON_IsString(drv) && !strcmp(dev->valuestring, info->name) &&
         !strcmp(drv->valuestring, info->driver_version);

    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "clblast"), *e;
    if (ok && arr && !cJSON_IsArray(arr)) ok = false;
    const cJSON *kernels = ok ? arr : NULL;
    cJSON_ArrayForEach(e, kernels) {
        if (d->n_clblast == CLG_TUNE_MAX_KERNELS) {
            ok = false;
            break;
        }
        clg_tune_kernel *tk = &d->clblast[d->n_clblast++];
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "kernel");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(e, "params"), *p;
        if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof tk->kernel ||
            !cJSON_IsObject(params) || !parse_dtype(cJSON_GetObjectItemCaseSensitive(e, "dtype"), &tk->dt)) {
            ok = false;
            break;
        }
        strcpy(tk->kernel, name->valuestring);
        cJSON_ArrayForEach(p, params) {
            if (tk->n == CLG_TUNE_MAX_PARAMS || !p->string || strlen(p->string) >= sizeof tk->names[0] ||
                !cJSON_IsNumber(p) || !(p->valuedouble >= 0 && p->valuedouble <= 1e9)) {
                ok = false;
                break;
            }
            strcpy(tk->names[tk->n], p->string);
            tk->values[tk->n++] = (size_t)p->valuedouble;
        }
    }

    const cJSON *packed = cJSON_GetObjectItemCaseSensitive(root, "packed");
    for (int t = 0; ok && packed && t < 2; t++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(packed, t ? "f64" : "f32");
        if (!c) continue;
        d->packed[t] = (clg_packed_config){json_int(c, "vw", 1, 16, &ok), json_int(c, "mr", 1, 16, &ok),
                                           json_int(c, "nr", 1, 64, &ok)};
    }

    arr = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (ok && arr && !cJSON_IsArray(arr)) ok = false;
    const cJSON *choices = ok ? arr : NULL;
    cJSON_ArrayForEach(e, choices) {
        if (d->n_choices == CLG_TUNE_MAX_CHOICES) break; /* more than we keep: the rest probe */
        clg_tune_choice *ch = &d->choices[d->n_choices++];
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(e, "path");
        ok = ok && parse_dtype(cJSON_GetObjectItemCaseSensitive(e, "dtype"), &ch->cls.dt) &&
             cJSON_IsString(path);
        if (!ok) break;
        ch->cls.ta = json_int(e, "ta", 0, 1, &ok);
        ch->cls.tb = json_int(e, "tb", 0, 1, &ok);
        ch->cls.lm = (unsigned char)json_int(e, "lm", 0, 63, &ok);
        ch->cls.ln = (unsigned char)json_int(e, "ln", 0, 63, &ok);
        ch->cls.lk = (unsigned char)json_int(e, "lk", 0, 63, &ok);
        /* a path this build does not have (a file from a newer one) is refused */
        ok = ok && clg__gemm_path_index(path->valuestring) >= 0;
        if (!ok) break;
        snprintf(ch->path, sizeof ch->path, "%s", path->valuestring);
        const cJSON *times = cJSON_GetObjectItemCaseSensitive(e, "times"), *t;
        if (times && !cJSON_IsObject(times)) ok = false;
        const cJSON *timed = ok ? times : NULL;
        cJSON_ArrayForEach(t, timed) {
            if (ch->n_times == CLG_BLAS_MAX_PATHS || !t->string || strlen(t->string) >= sizeof ch->path ||
                !cJSON_IsNumber(t)) {
                ok = false;
                break;
            }
            snprintf(ch->times[ch->n_times].path, sizeof ch->times[0].path, "%s", t->string);
            ch->times[ch->n_times++].seconds = t->valuedouble;
        }
    }
    cJSON_Delete(root);
    return ok;
}

clg_status clg_blas_tune_read(clg_context *ctx, clg_tune_data *d) {
    if (!ctx || !d) return CLG_INVALID_ARGUMENT;
    char path[4096], err[512];
    if (!clg_blas_tune_file(ctx, path, sizeof path))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: the cache folder is off");
    unsigned char *text = NULL;
    size_t len = 0;
    clg_status st = clg__read_file(path, TUNE_MAX_BYTES, "gemm tuning", &text, &len, err, sizeof err);
    if (st != CLG_OK) return clg__fail(ctx, st, "%s", err);
    int format = 0;
    const bool ok = tune_parse((const char *)text, &ctx->info, d, &format);
    free(text);
    if (ok) return CLG_OK;
    if (format != 0 && format != TUNE_FORMAT)
        return clg__fail(ctx, CLG_BAD_FORMAT, "gemm tuning: %s: format %d, this library reads format %d "
                         "(run clgrad-tune again)", path, format, TUNE_FORMAT);
    return clg__fail(ctx, CLG_BAD_FORMAT, "gemm tuning: %s: malformed or for another device", path);
}

/* A choice's times by table index (0 for a path the file has no time for). */
static void times_by_index(const clg_tune_choice *ch, double *seconds) {
    for (size_t i = 0; i < CLG_BLAS_MAX_PATHS; i++)
        seconds[i] = 0;
    for (size_t t = 0; t < ch->n_times && t < CLG_BLAS_MAX_PATHS; t++) {
        const int idx = clg__gemm_path_index(ch->times[t].path);
        if (idx >= 0) seconds[idx] = ch->times[t].seconds;
    }
}

clg_status clg_blas_tune_apply(clg_context *ctx, const clg_tune_data *d) {
    if (!ctx || !d) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    for (size_t i = 0; st == CLG_OK && i < d->n_clblast; i++)
        st = clg_blas_clblast_override(ctx, &d->clblast[i]);
    for (int t = 0; st == CLG_OK && t < 2; t++)
        if (d->packed[t].vw) st = clg_blas_packed_set_config(ctx, t ? CLG_F64 : CLG_F32, d->packed[t]);
    for (size_t i = 0; st == CLG_OK && i < d->n_choices; i++) {
        const int idx = clg__gemm_path_index(d->choices[i].path);
        if (idx < 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm tuning: no path \"%s\"", d->choices[i].path);
        double seconds[CLG_BLAS_MAX_PATHS];
        times_by_index(&d->choices[i], seconds);
        st = clg__gemm_record(ctx, s, d->choices[i].cls, idx, false, seconds);
    }
    if (st == CLG_OK) s->tuned = true;
    return st;
}

clg_status clg__tune_load(clg_context *ctx) {
    if (tuning_off()) return CLG_OK;
    char path[4096];
    if (!clg_blas_tune_file(ctx, path, sizeof path) || access(path, F_OK) != 0) return CLG_OK; /* nothing saved */
    clg_tune_data *d = malloc(sizeof *d);
    if (!d) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm tuning: out of host memory");
    clg_status st = clg_blas_tune_read(ctx, d);
    if (st == CLG_OK) st = clg_blas_tune_apply(ctx, d);
    free(d);
    if (st == CLG_OUT_OF_HOST_MEMORY) return st;
    if (st != CLG_OK) {
        /* A bad tuning file must not stop the library: it runs untuned and says why. */
        clg__log(ctx, CLG_LOG_WARN, "clgrad: ignoring GEMM tuning: %s", ctx->errmsg);
        ctx->errmsg[0] = '\0';
        return CLG_OK;
    }
    clg__log(ctx, CLG_LOG_INFO, "clgrad: GEMM tuning applied from %s", path);
    return CLG_OK;
}

/* ---------------------------------------------------------------- writing */
static cJSON *tune_to_json(const clg_context *ctx, const clg_tune_data *d) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "format", TUNE_FORMAT);
    cJSON_AddStringToObject(root, "device", ctx->info.name);
    cJSON_AddStringToObject(root, "driver", ctx->info.driver_version);
    cJSON_AddStringToObject(root, "platform", ctx->info.platform_version);
    cJSON *arr = cJSON_AddArrayToObject(root, "clblast");
    for (size_t i = 0; arr && i < d->n_clblast; i++) {
        const clg_tune_kernel *tk = &d->clblast[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kernel", tk->kernel);
        cJSON_AddStringToObject(e, "dtype", clg_dtype_name(tk->dt));
        cJSON *params = cJSON_AddObjectToObject(e, "params");
        for (size_t p = 0; params && p < tk->n; p++)
            cJSON_AddNumberToObject(params, tk->names[p], (double)tk->values[p]);
        cJSON_AddItemToArray(arr, e);
    }
    cJSON *packed = cJSON_AddObjectToObject(root, "packed");
    for (int t = 0; packed && t < 2; t++) {
        if (!d->packed[t].vw) continue;
        cJSON *c = cJSON_AddObjectToObject(packed, t ? "f64" : "f32");
        cJSON_AddNumberToObject(c, "vw", d->packed[t].vw);
        cJSON_AddNumberToObject(c, "mr", d->packed[t].mr);
        cJSON_AddNumberToObject(c, "nr", d->packed[t].nr);
    }
    arr = cJSON_AddArrayToObject(root, "choices");
    for (size_t i = 0; arr && i < d->n_choices; i++) {
        const clg_tune_choice *ch = &d->choices[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", clg_dtype_name(ch->cls.dt));
        cJSON_AddNumberToObject(e, "ta", ch->cls.ta);
        cJSON_AddNumberToObject(e, "tb", ch->cls.tb);
        cJSON_AddNumberToObject(e, "lm", ch->cls.lm);
        cJSON_AddNumberToObject(e, "ln", ch->cls.ln);
        cJSON_AddNumberToObject(e, "lk", ch->cls.lk);
        cJSON_AddStringToObject(e, "path", ch->path);
        cJSON *times = cJSON_AddObjectToObject(e, "times");
        for (size_t t = 0; times && t < ch->n_times; t++)
            cJSON_AddNumberToObject(times, ch->times[t].path, ch->times[t].seconds);
        cJSON_AddItemToArray(arr, e);
    }
    return root;
}

clg_status clg_blas_tune_write(clg_context *ctx, const clg_tune_data *d, char *written, size_t written_len) {
    if (!ctx || !d) return CLG_INVALID_ARGUMENT;
    char path[4096], tmp[4200];
    if (!clg_blas_tune_file(ctx, path, sizeof path))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: the cache folder is off (CLGRAD_CACHE_DIR=off)");
    if (!clg__mkdirs(ctx->cache_dir))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: mkdir %s: %s", ctx->cache_dir, strerror(errno));
    cJSON *root = tune_to_json(ctx, d);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm tuning: out of host memory");
    /* temp file + rename: a reader never sees half a file */
    clg__remove_stale_temps(path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        const int err = errno;
        remove(tmp);
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: writing %s: %s", path, strerror(err));
    }
    if (written) snprintf(written, written_len, "%s", path);
    return CLG_OK;
}

/* The measured choices of s into the device's file, keeping what else it holds (a file that
 * does not parse, or of an older format, is replaced). Not when CLGRAD_GEMM_TUNING=off: then
 * the run neither reads nor writes the file. */
clg_status clg__tune_save_measured(clg_context *ctx, clg_gemm_state *s) {
    char path[4096];
    if (tuning_off()) return CLG_OK;
    if (!clg_blas_tune_file(ctx, path, sizeof path))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: the cache folder is off (CLGRAD_CACHE_DIR=off)");
    clg_tune_data *d = malloc(sizeof *d);
    if (!d) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm tuning: out of host memory");
    if (access(path, F_OK) != 0 || clg_blas_tune_read(ctx, d) != CLG_OK) memset(d, 0, sizeof *d);
    for (size_t c = 0; c < s->n_choices; c++) {
        const clg_gemm_choice *m = &s->choices[c];
        if (!m->measured) continue;
        size_t i = 0;
        while (i < d->n_choices && !clg__same_class(d->choices[i].cls, m->cls))
            i++;
        if (i == CLG_TUNE_MAX_CHOICES) continue; /* a full file keeps its entries */
        clg_tune_choice *ch = &d->choices[i];
        memset(ch, 0, sizeof *ch);
        ch->cls = m->cls;
        snprintf(ch->path, sizeof ch->path, "%s", clg__gemm_path_at((size_t)m->path)->name);
        for (size_t p = 0; p < clg__gemm_path_count(); p++) {
            if (!(m->seconds[p] > 0) || m->seconds[p] == INFINITY) continue; /* not timed: no entry */
            snprintf(ch->times[ch->n_times].path, sizeof ch->times[0].path, "%s", clg__gemm_path_at(p)->name);
            ch->times[ch->n_times++].seconds = m->seconds[p];
        }
        if (i == d->n_choices) d->n_choices++;
    }
    clg_status st = clg_blas_tune_write(ctx, d, NULL, 0);
    free(d);
    if (st == CLG_OK) s->measured = false;
    return st;
}
