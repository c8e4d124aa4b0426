/* src/blas/tune.c - the per-device GEMM tuning file: CLBlast kernel parameters (applied
 * through CLBlastOverrideParameters), packed tile shapes and path decisions per size class,
 * kept as JSON in the cache folder under a name keyed by device name and driver version.
 * Written by tools/clgrad-tune, read at every context creation (clg__blas_init in gemm.c).
 * The one file besides gemm.c that includes <clblast_c.h>. Tests: tests/unit/test_gemm_packed.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <clblast_c.h>

#include "blas/packed.h"
#include "blas/tune.h"
#include "core/disk_cache.h"

#define TUNE_FORMAT 1

bool clg__tune_path(clg_context *ctx, char *buf, size_t len) {
    if (!ctx->cache_dir) return false;
    uint64_t h = CLG_FNV1A_START;
    h = clg__fnv1a(h, ctx->info.name, strlen(ctx->info.name) + 1);
    h = clg__fnv1a(h, ctx->info.driver_version, strlen(ctx->info.driver_version) + 1);
    snprintf(buf, len, "%s/gemm-tune-%016llx.json", ctx->cache_dir, (unsigned long long)h);
    return true;
}

clg_status clg__clblast_override(clg_context *ctx, const clg_tune_kernel *tk) {
    const char *names[CLG_TUNE_MAX_PARAMS];
    for (size_t i = 0; i < tk->n; i++)
        names[i] = tk->names[i];
    const CLBlastPrecision prec = tk->dt == CLG_F64 ? CLBlastPrecisionDouble : CLBlastPrecisionSingle;
    CLBlastStatusCode s = CLBlastOverrideParameters(ctx->device, tk->kernel, prec, tk->n, names, tk->values);
    if (s == CLBlastSuccess) return CLG_OK;
    return clg__fail(ctx, CLG_BLAS_ERROR, "CLBlastOverrideParameters(%s, %s): status %d", tk->kernel,
                     clg_dtype_name(tk->dt), (int)s);
}

/* ---------------------------------------------------------------- reading */
static const char *path_name(clg_gemm_path p) {
    return p == CLG_GEMM_PACKED ? "packed" : p == CLG_GEMM_CLBLAST ? "clblast" : "auto";
}

static int json_int(const cJSON *obj, const char *key, int lo, int hi, bool *ok) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(j) || j->valuedouble < lo || j->valuedouble > hi) {
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
static bool tune_parse(const char *text, const clg_device_info *info, clg_tune_data *d) {
    memset(d, 0, sizeof *d);
    cJSON *root = cJSON_Parse(text);
    if (!root) return false;
    bool ok = cJSON_IsObject(root);
    ok = ok && json_int(root, "format", 0, 1000, &ok) == TUNE_FORMAT;
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
                !cJSON_IsNumber(p) || p->valuedouble < 0 || p->valuedouble > 1e9) {
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
        ch->path = !strcmp(path->valuestring, "packed")    ? CLG_GEMM_PACKED
                   : !strcmp(path->valuestring, "clblast") ? CLG_GEMM_CLBLAST
                                                           : CLG_GEMM_AUTO;
        ok = ok && ch->path != CLG_GEMM_AUTO;
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(e, "clblast_s");
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(e, "packed_s");
        ch->t_clblast = cJSON_IsNumber(tc) ? tc->valuedouble : 0;
        ch->t_packed = cJSON_IsNumber(tp) ? tp->valuedouble : 0;
    }
    cJSON_Delete(root);
    return ok;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    /* a tuning file is a few kB; anything huge is not ours */
    if (len >= 0 && len < (1 << 20) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1))) {
        if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
            free(buf);
            buf = NULL;
        } else {
            buf[len] = '\0';
        }
    }
    fclose(f);
    return buf;
}

clg_status clg__tune_read(clg_context *ctx, clg_tune_data *d) {
    char path[4096];
    if (!clg__tune_path(ctx, path, sizeof path))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: the cache folder is off");
    char *text = read_text(path);
    if (!text) return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: %s: %s", path, strerror(errno));
    const bool ok = tune_parse(text, &ctx->info, d);
    free(text);
    return ok ? CLG_OK
              : clg__fail(ctx, CLG_BAD_FORMAT, "gemm tuning: %s: malformed or for another device", path);
}

clg_status clg__tune_apply(clg_context *ctx, const clg_tune_data *d) {
    clg_status st = CLG_OK;
    for (size_t i = 0; st == CLG_OK && i < d->n_clblast; i++)
        st = clg__clblast_override(ctx, &d->clblast[i]);
    for (int t = 0; st == CLG_OK && t < 2; t++)
        if (d->packed[t].vw) st = clg__packed_set_config(ctx, t ? CLG_F64 : CLG_F32, d->packed[t]);
    for (size_t i = 0; st == CLG_OK && i < d->n_choices; i++)
        st = clg__gemm_record(ctx, d->choices[i].cls, d->choices[i].path);
    if (st == CLG_OK) clg__gemm_state(ctx)->tuned = true;
    return st;
}

clg_status clg__tune_load(clg_context *ctx) {
    const char *env = getenv("CLGRAD_GEMM_TUNING");
    if (env && !strcasecmp(env, "off")) return CLG_OK;
    char path[4096];
    if (!clg__tune_path(ctx, path, sizeof path) || access(path, F_OK) != 0) return CLG_OK; /* nothing saved */
    clg_tune_data *d = malloc(sizeof *d);
    if (!d) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm tuning: out of host memory");
    clg_status st = clg__tune_read(ctx, d);
    if (st == CLG_OK) st = clg__tune_apply(ctx, d);
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
static bool mkdirs(const char *dir) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return false;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST;
}

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
        cJSON_AddStringToObject(e, "path", path_name(ch->path));
        cJSON_AddNumberToObject(e, "clblast_s", ch->t_clblast);
        cJSON_AddNumberToObject(e, "packed_s", ch->t_packed);
        cJSON_AddItemToArray(arr, e);
    }
    return root;
}

clg_status clg__tune_write(clg_context *ctx, const clg_tune_data *d, char *written, size_t written_len) {
    char path[4096], tmp[4200];
    if (!clg__tune_path(ctx, path, sizeof path))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: the cache folder is off (CLGRAD_CACHE_DIR=off)");
    if (!mkdirs(ctx->cache_dir))
        return clg__fail(ctx, CLG_IO_ERROR, "gemm tuning: mkdir %s: %s", ctx->cache_dir, strerror(errno));
    cJSON *root = tune_to_json(ctx, d);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm tuning: out of host memory");
    /* temp file + rename: a reader never sees half a file */
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
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

static bool same_cls(clg_gemm_class a, clg_gemm_class b) {
    return a.dt == b.dt && a.ta == b.ta && a.tb == b.tb && a.lm == b.lm && a.ln == b.ln && a.lk == b.lk;
}

clg_status clg__tune_save_choice(clg_context *ctx, const clg_tune_choice *choice) {
    const char *env = getenv("CLGRAD_GEMM_TUNING");
    char path[4096];
    if ((env && !strcasecmp(env, "off")) || !clg__tune_path(ctx, path, sizeof path)) return CLG_OK;
    clg_tune_data *d = malloc(sizeof *d);
    if (!d) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm tuning: out of host memory");
    /* keep what is there (a file that does not parse is replaced) */
    if (access(path, F_OK) != 0 || clg__tune_read(ctx, d) != CLG_OK) memset(d, 0, sizeof *d);
    size_t i = 0;
    while (i < d->n_choices && !same_cls(d->choices[i].cls, choice->cls))
        i++;
    clg_status st = CLG_OK;
    if (i < CLG_TUNE_MAX_CHOICES) {
        d->choices[i] = *choice;
        if (i == d->n_choices) d->n_choices++;
        st = clg__tune_write(ctx, d, NULL, 0);
    }
    free(d);
    return st;
}
