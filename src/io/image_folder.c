/* src/io/image_folder.c - torchvision's ImageFolder for clgrad (include/clgrad/image_folder.h):
 * class subfolders of PNG (libpng's simplified API) and JPEG (libturbojpeg) files, decoded once
 * into one (N, C, H, W) uint8 buffer plus labels; a seeded, stratified holdout. Each decoder is
 * optional at build time (meson feature `images`: CLG_HAVE_PNG, CLG_HAVE_TURBOJPEG).
 * Tests: tests/io/test_image_folder.c.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "clgrad/image_folder.h"
#include "io/io.h"

#ifdef CLG_HAVE_PNG
#include <png.h>
#endif
#ifdef CLG_HAVE_TURBOJPEG
#include <turbojpeg.h>
#endif

#define IF_WHAT "image folder"
/* One encoded file and one decoded image at most this big: a 100-byte PNG claiming
 * 60000 x 60000 pixels is refused before anything is allocated for it. */
#define IF_MAX_FILE ((uint64_t)256 << 20)
#define IF_MAX_PIXELS ((uint64_t)64 << 20)
#define IF_MAX_DEPTH 16
#define IF_MAX_CLASSES 256

clg_image_folder_params clg_image_folder_default_params(void) {
    clg_image_folder_params p;
    memset(&p, 0, sizeof p);
    p.max_bytes = (uint64_t)4 << 30;
    return p;
}

bool clg_image_folder_supports(const char *format) {
    if (!format) return false;
#ifdef CLG_HAVE_PNG
    if (strcmp(format, "png") == 0) return true;
#endif
#ifdef CLG_HAVE_TURBOJPEG
    if (strcmp(format, "jpeg") == 0) return true;
#endif
    return false;
}

/* ---- a growable list of strings ---- */
typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static bool strlist_push(strlist *l, char *s) {
    if (!s) return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return false;
        }
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = s;
    return true;
}

static void strlist_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s/%s", dir, name);
    return s;
}

/* The sorted names in dir, without "." and hidden entries. */
static clg_status list_dir(const char *dir, strlist *names, char *err, size_t err_len) {
    DIR *d = opendir(dir);
    if (!d) {
        clg__fmt(err, err_len, IF_WHAT ": cannot open folder %s: %s", dir, strerror(errno));
        return CLG_IO_ERROR;
    }
    struct dirent *e;
    clg_status st = CLG_OK;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!strlist_push(names, clg__strdup(e->d_name))) {
            st = CLG_OUT_OF_HOST_MEMORY;
            clg__fmt(err, err_len, IF_WHAT ": out of memory listing %s", dir);
            break;
        }
    }
    closedir(d);
    if (st == CLG_OK && names->n) qsort(names->v, names->n, sizeof *names->v, cmp_str);
    return st;
}

static bool is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

static bool has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    static const char *const exts[] = {".png", ".jpg", ".jpeg"};
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        const char *x = exts[i];
        size_t k = 0;
        for (; dot[k] && x[k]; k++)
            if ((dot[k] | 0x20) != x[k] && dot[k] != x[k]) break;
        if (!dot[k] && !x[k]) return true;
    }
    return false;
}

/* Appends the image files under dir (recursively, sorted as os.walk + sorted would list the
 * files of one folder: a folder's files, then its subfolders') with label to files/labels. */
static clg_status walk(const char *dir, int depth, int label, strlist *files, uint8_t **labels,
                       size_t *lab_cap, char *err, size_t err_len) {
    if (depth > IF_MAX_DEPTH) {
        clg__fmt(err, err_len, IF_WHAT ": %s: folders nested deeper than %d (a symlink loop?)", dir,
                 IF_MAX_DEPTH);
        return CLG_BAD_FORMAT;
    }
    strlist names = {0}, subdirs = {0};
    clg_status st = list_dir(dir, &names, err, err_len);
    for (size_t i = 0; i < names.n && st == CLG_OK; i++) {
        char *path = join(dir, names.v[i]);
        if (!path) {
            st = CLG_OUT_OF_HOST_MEMORY;
        } else if (is_dir(path)) {
            if (!strlist_push(&subdirs, path)) st = CLG_OUT_OF_HOST_MEMORY;
        } else if (has_image_ext(names.v[i])) {
            if (files->n == *lab_cap) {
                size_t cap = *lab_cap ? *lab_cap * 2 : 64;
                uint8_t *grown = realloc(*labels, cap);
                if (!grown) {
                    free(path);
                    st = CLG_OUT_OF_HOST_MEMORY;
                    break;
                }
                *labels = grown, *lab_cap = cap;
            }
            if (!strlist_push(files, path))
                st = CLG_OUT_OF_HOST_MEMORY;
            else
                (*labels)[files->n - 1] = (uint8_t)label;
        } else {
            free(path);
        }
        if (st == CLG_OUT_OF_HOST_MEMORY) clg__fmt(err, err_len, IF_WHAT ": out of memory listing %s", dir);
    }
    for (size_t i = 0; i < subdirs.n && st == CLG_OK; i++)
        st = walk(subdirs.v[i], depth + 1, label, files, labels, lab_cap, err, err_len);
    strlist_free(&names);
    strlist_free(&subdirs);
    return st;
}

/* ---- decoding: one file into 8-bit gray (1) or RGB (3) pixels ---- */
typedef struct decoded {
    uint8_t *px; /* (h, w, c), interleaved */
    size_t cap;
    int w, h, c;
} decoded;

static bool ensure(decoded *d, uint64_t bytes) {
    if (bytes <= d->cap) return true;
    uint8_t *p = realloc(d->px, (size_t)bytes);
    if (!p) return false;
    d->px = p, d->cap = (size_t)bytes;
    return true;
}

static clg_status size_ok(const char *path, const char *fmt, uint64_t w, uint64_t h, char *err,
                          size_t err_len) {
    if (w == 0 || h == 0 || w * h > IF_MAX_PIXELS) {
        clg__fmt(err, err_len, IF_WHAT ": %s: %s of %llu x %llu pixels (at most %llu pixels)", path, fmt,
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)IF_MAX_PIXELS);
        return CLG_BAD_FORMAT;
    }
    return CLG_OK;
}

static clg_status decode_png(const char *path, const unsigned char *buf, size_t len, decoded *d, char *err,
                             size_t err_len) {
#ifdef CLG_HAVE_PNG
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, buf, len)) {
        clg__fmt(err, err_len, IF_WHAT ": %s: corrupt PNG: %s", path, im.message);
        png_image_free(&im);
        return CLG_BAD_FORMAT;
    }
    clg_status st = size_ok(path, "a PNG", im.width, im.height, err, err_len);
    if (st != CLG_OK) {
        png_image_free(&im);
        return st;
    }
    const bool color = (im.format & PNG_FORMAT_FLAG_COLOR) != 0;
    /* With alpha kept (then dropped below) the colours are not composited onto black. */
    im.format = color ? PNG_FORMAT_RGBA : PNG_FORMAT_GA;
    const uint64_t bytes = (uint64_t)im.width * im.height * (color ? 4 : 2);
    if (!ensure(d, bytes)) {
        png_image_free(&im);
        clg__fmt(err, err_len, IF_WHAT ": %s: out of memory decoding", path);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    if (!png_image_finish_read(&im, NULL, d->px, 0, NULL)) {
        clg__fmt(err, err_len, IF_WHAT ": %s: corrupt or truncated PNG: %s", path, im.message);
        png_image_free(&im);
        return CLG_BAD_FORMAT;
    }
    d->w = (int)im.width, d->h = (int)im.height, d->c = color ? 3 : 1;
    const size_t pixels = (size_t)im.width * im.height, in_c = color ? 4 : 2;
    for (size_t i = 0; i < pixels; i++) /* drop alpha in place (forward: never overtakes) */
        for (int k = 0; k < d->c; k++)
            d->px[i * (size_t)d->c + (size_t)k] = d->px[i * in_c + (size_t)k];
    png_image_free(&im);
    return CLG_OK;
#else
    (void)buf, (void)len, (void)d;
    clg__fmt(err, err_len, IF_WHAT ": %s: this build reads no PNG (built without libpng)", path);
    return CLG_UNSUPPORTED;
#endif
}

static clg_status decode_jpeg(const char *path, const unsigned char *buf, size_t len, decoded *d, char *err,
                              size_t err_len) {
#ifdef CLG_HAVE_TURBOJPEG
    if (len > (size_t)ULONG_MAX) len = (size_t)ULONG_MAX;
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        clg__fmt(err, err_len, IF_WHAT ": %s: cannot start the JPEG decoder: %s", path, tjGetErrorStr2(NULL));
        return CLG_OUT_OF_HOST_MEMORY;
    }
    int w = 0, h = 0, subsamp = 0, cs = 0;
    clg_status st = CLG_OK;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &subsamp, &cs) != 0) {
        clg__fmt(err, err_len, IF_WHAT ": %s: corrupt JPEG: %s", path, tjGetErrorStr2(tj));
        st = CLG_BAD_FORMAT;
    } else if ((st = size_ok(path, "a JPEG", (uint64_t)(w > 0 ? w : 0), (uint64_t)(h > 0 ? h : 0), err,
                             err_len)) == CLG_OK) {
        const bool gray = cs == TJCS_GRAY;
        const int c = gray ? 1 : 3;
        if (!ensure(d, (uint64_t)w * (uint64_t)h * (uint64_t)c)) {
            clg__fmt(err, err_len, IF_WHAT ": %s: out of memory decoding", path);
            st = CLG_OUT_OF_HOST_MEMORY;
        } else if (tjDecompress2(tj, buf, (unsigned long)len, d->px, w, 0, h, gray ? TJPF_GRAY : TJPF_RGB,
                                 TJFLAG_ACCURATEDCT) != 0) {
            /* A warning (a truncated file: "Premature end of JPEG file") counts as corrupt too. */
            clg__fmt(err, err_len, IF_WHAT ": %s: corrupt or truncated JPEG: %s", path, tjGetErrorStr2(tj));
            st = CLG_BAD_FORMAT;
        } else {
            d->w = w, d->h = h, d->c = c;
        }
    }
    tjDestroy(tj);
    return st;
#else
    (void)buf, (void)len, (void)d;
    clg__fmt(err, err_len, IF_WHAT ": %s: this build reads no JPEG (built without libturbojpeg)", path);
    return CLG_UNSUPPORTED;
#endif
}

/* Reads and decodes path, checking that its content is what its name says. */
static clg_status decode_file(const char *path, unsigned char **buf, size_t *buf_cap, decoded *d, char *err,
                              size_t err_len) {
    io_file f;
    clg_status st = io__open_regular(path, IF_WHAT, &f, err, err_len);
    if (st != CLG_OK) return st;
    if (f.size > IF_MAX_FILE) {
        io__close(&f);
        clg__fmt(err, err_len, IF_WHAT ": %s: %llu bytes, more than an image file may have (%llu)", path,
                 (unsigned long long)f.size, (unsigned long long)IF_MAX_FILE);
        return CLG_BAD_FORMAT;
    }
    const size_t len = (size_t)f.size;
    if (len + 1 > *buf_cap) {
        unsigned char *grown = realloc(*buf, len + 1);
        if (!grown) {
            io__close(&f);
            clg__fmt(err, err_len, IF_WHAT ": %s: out of memory reading", path);
            return CLG_OUT_OF_HOST_MEMORY;
        }
        *buf = grown, *buf_cap = len + 1;
    }
    st = io__read_at(&f, 0, *buf, len, IF_WHAT, path, err, err_len);
    io__close(&f);
    if (st != CLG_OK) return st;
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const bool is_png = len >= 8 && memcmp(*buf, png_sig, 8) == 0;
    const bool is_jpeg = len >= 3 && (*buf)[0] == 0xff && (*buf)[1] == 0xd8 && (*buf)[2] == 0xff;
    const char *dot = strrchr(path, '.');
    const bool named_png = dot && (dot[1] | 0x20) == 'p';
    if (!is_png && !is_jpeg) {
        clg__fmt(err, err_len, IF_WHAT ": %s: neither PNG nor JPEG data (%zu bytes)", path, len);
        return CLG_BAD_FORMAT;
    }
    if (is_png != named_png) {
        clg__fmt(err, err_len, IF_WHAT ": %s: mislabelled: %s data under a %s name", path,
                 is_png ? "PNG" : "JPEG", named_png ? "PNG" : "JPEG");
        return CLG_BAD_FORMAT;
    }
    return is_png ? decode_png(path, *buf, len, d, err, err_len)
                  : decode_jpeg(path, *buf, len, d, err, err_len);
}

/* ---- into the set: channels, then size ---- */
static uint8_t luma(const uint8_t *rgb) { /* PIL's convert("L"), bit for bit */
    return (uint8_t)((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
}

/* The decoded (h, w, c_in) pixels as plane ch of the wanted c channels, at (src_x, src_y). */
static uint8_t px_at(const decoded *d, int x, int y, int ch, int c) {
    const uint8_t *p = d->px + ((size_t)y * (size_t)d->w + (size_t)x) * (size_t)d->c;
    if (d->c == c) return p[ch];
    return c == 1 ? luma(p) : p[0]; /* 3 wanted from 1 */
}

/* Writes d as (c, h, w) into dst, resizing bilinearly when the sizes differ. */
static void place(const decoded *d, int c, int h, int w, uint8_t *dst) {
    if (d->h == h && d->w == w) {
        for (int ch = 0; ch < c; ch++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    dst[((size_t)ch * (size_t)h + (size_t)y) * (size_t)w + (size_t)x] = px_at(d, x, y, ch, c);
        return;
    }
    const double sy = (double)d->h / h, sx = (double)d->w / w;
    for (int y = 0; y < h; y++) {
        double fy = (y + 0.5) * sy - 0.5;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < d->h ? y0 + 1 : y0;
        const double ay = fy - y0;
        for (int x = 0; x < w; x++) {
            double fx = (x + 0.5) * sx - 0.5;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < d->w ? x0 + 1 : x0;
            const double ax = fx - x0;
            for (int ch = 0; ch < c; ch++) {
                const double v =
                    (1 - ay) * ((1 - ax) * px_at(d, x0, y0, ch, c) + ax * px_at(d, x1, y0, ch, c)) +
                    ay * ((1 - ax) * px_at(d, x0, y1, ch, c) + ax * px_at(d, x1, y1, ch, c));
                dst[((size_t)ch * (size_t)h + (size_t)y) * (size_t)w + (size_t)x] = (uint8_t)lrint(v);
            }
        }
    }
}

void clg_image_folder_free(clg_image_folder *f) {
    if (!f) return;
    for (int i = 0; f->class_names && i < f->classes; i++)
        free(f->class_names[i]);
    free(f->class_names);
    for (int i = 0; f->paths && i < f->set.n; i++)
        free(f->paths[i]);
    free(f->paths);
    free((void *)f->set.images);
    free((void *)f->set.labels);
    memset(f, 0, sizeof *f);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static clg_status copy_names(clg_image_folder *dst, const strlist *classes) {
    dst->class_names = calloc(classes->n, sizeof *dst->class_names);
    if (!dst->class_names) return CLG_OUT_OF_HOST_MEMORY;
    dst->classes = (int)classes->n;
    for (size_t i = 0; i < classes->n; i++)
        if (!(dst->class_names[i] = clg__strdup(classes->v[i]))) return CLG_OUT_OF_HOST_MEMORY;
    return CLG_OK;
}

/* Moves the images with hold[i] set from all (which keeps the rest, in order) into out. */
static clg_status split(clg_image_folder *all, const bool *hold, clg_image_folder *out) {
    const clg_image_set s = all->set;
    const size_t img = (size_t)s.c * (size_t)s.h * (size_t)s.w;
    int k = 0;
    for (int i = 0; i < s.n; i++)
        k += hold[i];
    uint8_t *im = malloc(k ? (size_t)k * img : 1), *lab = malloc(k ? (size_t)k : 1);
    char **paths = calloc(k ? (size_t)k : 1, sizeof *paths);
    if (!im || !lab || !paths) {
        free(im), free(lab), free(paths);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    uint8_t *keep = (uint8_t *)s.images, *keep_lab = (uint8_t *)s.labels;
    int a = 0, b = 0;
    for (int i = 0; i < s.n; i++) {
        if (hold[i]) {
            memcpy(im + (size_t)b * img, s.images + (size_t)i * img, img);
            lab[b] = s.labels[i];
            paths[b++] = all->paths[i];
        } else {
            memmove(keep + (size_t)a * img, s.images + (size_t)i * img, img);
            keep_lab[a] = s.labels[i];
            all->paths[a++] = all->paths[i];
        }
    }
    all->set.n = a;
    out->set = (clg_image_set){im, lab, b, s.c, s.h, s.w};
    out->paths = paths;
    return CLG_OK;
}

/* Marks round(share * size) images of each class, drawn by a seeded shuffle per class. */
static clg_status pick_holdout(const clg_image_folder *all, double share, uint64_t seed, bool *hold) {
    const int n = all->set.n;
    int *idx = malloc((n ? (size_t)n : 1) * sizeof *idx);
    if (!idx) return CLG_OUT_OF_HOST_MEMORY;
    uint64_t s = seed ^ 0x696d616765666f6cull; /* "imagefol" */
    for (int c = 0; c < all->classes; c++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (all->set.labels[i] == c) idx[m++] = i;
        for (int i = m - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(splitmix64(&s) % (uint64_t)(i + 1)), t = idx[i];
            idx[i] = idx[j], idx[j] = t;
        }
        const int take = (int)lrint(share * m);
        for (int i = 0; i < take; i++)
            hold[idx[i]] = true;
    }
    free(idx);
    return CLG_OK;
}

static void warn(const clg_image_folder_params *p, const char *msg) {
    if (p->log) p->log(p->log_user, CLG_LOG_WARN, msg);
}

clg_status clg_image_folder_read(const char *root, const clg_image_folder_params *params,
                                 clg_image_folder *out, clg_image_folder *held_out, char *err,
                                 size_t err_len) {
    clg_image_folder_params p = params ? *params : clg_image_folder_default_params();
    if (out) memset(out, 0, sizeof *out);
    if (held_out) memset(held_out, 0, sizeof *held_out);
    if (!root || !out || !(p.holdout >= 0 && p.holdout < 1) || (p.holdout > 0 && !held_out) ||
        (p.channels != 0 && p.channels != 1 && p.channels != 3) || p.height < 0 || p.width < 0 ||
        (p.height > 0) != (p.width > 0) || (uint64_t)p.height * (uint64_t)p.width > IF_MAX_PIXELS) {
        clg__fmt(err, err_len,
                 IF_WHAT
                 ": invalid arguments (root and out non-NULL, holdout in [0, 1) with held_out, channels 0, 1 "
                 "or 3, height and width both 0 or both > 0)");
        return CLG_INVALID_ARGUMENT;
    }
    strlist classes = {0}, files = {0};
    uint8_t *labels = NULL, *images = NULL;
    size_t lab_cap = 0, buf_cap = 0;
    unsigned char *buf = NULL;
    decoded d = {0};
    bool *hold = NULL;
    char msg[1024];
    clg_status st = list_dir(root, &classes, err, err_len);
    /* Only folders are classes. */
    size_t nc = 0;
    for (size_t i = 0; i < classes.n && st == CLG_OK; i++) {
        char *path = join(root, classes.v[i]);
        if (!path)
            st = CLG_OUT_OF_HOST_MEMORY;
        else if (is_dir(path))
            classes.v[nc++] = classes.v[i];
        else
            free(classes.v[i]);
        free(path);
    }
    if (st == CLG_OK) classes.n = nc;
    if (st == CLG_OK && nc == 0) {
        clg__fmt(err, err_len, IF_WHAT ": %s has no class folders", root);
        st = CLG_BAD_FORMAT;
    } else if (st == CLG_OK && nc > IF_MAX_CLASSES) {
        clg__fmt(err, err_len, IF_WHAT ": %s has %zu class folders; labels are uint8, at most %d", root, nc,
                 IF_MAX_CLASSES);
        st = CLG_BAD_FORMAT;
    }
    for (size_t c = 0; c < nc && st == CLG_OK; c++) {
        char *dir = join(root, classes.v[c]);
        const size_t before = files.n;
        st = dir ? walk(dir, 0, (int)c, &files, &labels, &lab_cap, err, err_len) : CLG_OUT_OF_HOST_MEMORY;
        if (st == CLG_OK && files.n == before) {
            clg__fmt(err, err_len, IF_WHAT ": class folder %s holds no .png, .jpg or .jpeg file", dir);
            st = CLG_BAD_FORMAT;
        }
        free(dir);
    }
    if (st == CLG_OK && files.n > (size_t)INT32_MAX) {
        clg__fmt(err, err_len, IF_WHAT ": %s: more than %d images", root, INT32_MAX);
        st = CLG_BAD_FORMAT;
    }
    /* Decode, keeping the good ones packed at the front. */
    int c = p.channels, h = p.height, w = p.width;
    size_t img = 0, kept = 0, cap = 0;
    for (size_t i = 0; i < files.n && st == CLG_OK; i++) {
        clg_status fs = decode_file(files.v[i], &buf, &buf_cap, &d, msg, sizeof msg);
        if (fs == CLG_OK && kept == 0 && cap == 0) { /* the first good image fixes what is unset */
            if (!c) c = d.c;
            if (!h) h = d.h, w = d.w;
            img = (size_t)c * (size_t)h * (size_t)w;
        }
        if (fs == CLG_OK && !p.height && (d.h != h || d.w != w)) {
            clg__fmt(msg, sizeof msg,
                     IF_WHAT ": %s: %d x %d pixels, not %d x %d as %s (set height and width to resize)",
                     files.v[i], d.w, d.h, w, h, kept ? files.v[0] : "the first image");
            fs = CLG_BAD_FORMAT;
        }
        if (fs == CLG_OUT_OF_HOST_MEMORY || (fs != CLG_OK && !p.skip_bad)) {
            clg__fmt(err, err_len, "%s", msg);
            st = fs;
            break;
        }
        if (fs != CLG_OK) {
            warn(&p, msg);
            out->skipped++;
            free(files.v[i]);
            files.v[i] = NULL;
            continue;
        }
        if (kept == cap) {
            size_t ncap = cap ? cap * 2 : 64, bytes;
            if (ncap > files.n) ncap = files.n;
            if (!clg__mul_size(ncap, img, &bytes) || bytes > p.max_bytes) {
                uint64_t need = (uint64_t)files.n * img;
                clg__fmt(err, err_len,
                         IF_WHAT
                         ": %s: %zu images of %d x %d x %d need %llu bytes, more than max_bytes (%llu)",
                         root, files.n, c, h, w, (unsigned long long)need, (unsigned long long)p.max_bytes);
                st = CLG_OUT_OF_HOST_MEMORY;
                break;
            }
            uint8_t *grown = realloc(images, bytes);
            if (!grown) {
                clg__fmt(err, err_len, IF_WHAT ": out of memory for %zu images of %zu bytes", ncap, img);
                st = CLG_OUT_OF_HOST_MEMORY;
                break;
            }
            images = grown, cap = ncap;
        }
        place(&d, c, h, w, images + kept * img);
        labels[kept] = labels[i];
        files.v[kept] = files.v[i];
        if (kept != i) files.v[i] = NULL;
        kept++;
    }
    if (st == CLG_OK && kept == 0) {
        clg__fmt(err, err_len, IF_WHAT ": %s: no image could be read (%d skipped)", root, out->skipped);
        st = CLG_BAD_FORMAT;
    }
    if (st == CLG_OK) {
        for (size_t i = kept; i < files.n; i++)
            free(files.v[i]);
        files.n = kept;
        out->set = (clg_image_set){images, labels, (int)kept, c, h, w};
        out->paths = files.v;
        images = NULL, labels = NULL, files.v = NULL, files.n = 0;
        st = copy_names(out, &classes);
        if (st == CLG_OK && p.holdout > 0) {
            hold = calloc(kept, sizeof *hold);
            st = hold ? pick_holdout(out, p.holdout, p.seed, hold) : CLG_OUT_OF_HOST_MEMORY;
            if (st == CLG_OK) st = split(out, hold, held_out);
            if (st == CLG_OK) st = copy_names(held_out, &classes);
        }
        if (st != CLG_OK) clg__fmt(err, err_len, IF_WHAT ": out of memory");
    }
    if (st != CLG_OK) {
        clg_image_folder_free(out);
        if (held_out) clg_image_folder_free(held_out);
    }
    free(hold);
    free(images);
    free(labels);
    strlist_free(&files);
    strlist_free(&classes);
    free(buf);
    free(d.px);
    return st;
}
