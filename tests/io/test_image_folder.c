/* tests/io/test_image_folder.c - clg_image_folder_read (src/io/image_folder.c): a generated
 * folder of crosses and squares (PNGs written here with zlib, so the encoder is not the
 * decoder under test; JPEGs with libturbojpeg when the build has it): labels by sorted folder
 * name, every value, gray/RGB conversion both ways, resizing, the seeded stratified holdout,
 * corrupt, truncated and mislabelled files (the message names the file; fail or skip), and a
 * tiny model trained on the folder through the public API to high held-out accuracy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "clgrad.h"
#include "ref.h"

#ifdef CLG_TEST_JPEG
#include <turbojpeg.h>
#endif

enum { S = 8, PER_CLASS = 24 };
static char root[64];

/* ---- a minimal PNG writer: 8-bit gray (c 1), RGB (c 3) or RGBA (c 4), filter 0 ---- */
static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
    p[3] = (unsigned char)v;
}

static void chunk(FILE *f, const char *type, const unsigned char *data, uint32_t len) {
    unsigned char head[8];
    put32(head, len);
    memcpy(head + 4, type, 4);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (len) crc = crc32(crc, data, len);
    unsigned char tail[4];
    put32(tail, (uint32_t)crc);
    assert_int_equal(fwrite(head, 1, 8, f), 8);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fwrite(tail, 1, 4, f), 4);
}

/* px: (h, w, c) interleaved. */
static void write_png(const char *path, const uint8_t *px, int w, int h, int c) {
    const size_t row = (size_t)w * (size_t)c, raw_len = (row + 1) * (size_t)h;
    unsigned char *raw = malloc(raw_len);
    assert_non_null(raw);
    for (int y = 0; y < h; y++) {
        raw[(row + 1) * (size_t)y] = 0;
        memcpy(raw + (row + 1) * (size_t)y + 1, px + row * (size_t)y, row);
    }
    uLongf zlen = compressBound((uLong)raw_len);
    unsigned char *z = malloc(zlen);
    assert_non_null(z);
    assert_int_equal(compress(z, &zlen, raw, (uLong)raw_len), Z_OK);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_int_equal(fwrite(sig, 1, 8, f), 8);
    unsigned char ihdr[13];
    put32(ihdr, (uint32_t)w), put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8, ihdr[9] = c == 1 ? 0 : c == 3 ? 2 : 6, ihdr[10] = ihdr[11] = ihdr[12] = 0;
    chunk(f, "IHDR", ihdr, 13);
    chunk(f, "IDAT", z, (uint32_t)zlen);
    chunk(f, "IEND", NULL, 0);
    assert_int_equal(fclose(f), 0);
    free(raw);
    free(z);
}

/* Image k of a class as gray values: a cross (class 0) or a hollow square (class 1), placed
 * by k, on a background that varies with k. */
static void shape(int cls, int k, uint8_t *g) {
    const uint8_t bg = (uint8_t)(10 + k % 7 * 5), fg = (uint8_t)(200 + k % 5 * 10);
    memset(g, bg, S * S);
    const int a = 1 + k % 3, b = 1 + (k / 3) % 3, size = 4; /* top-left corner of a 4x4 box */
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            const bool on = cls == 0 ? (x == 1 || y == 1) /* a plus in the box */
                                     : (x == 0 || y == 0 || x == size - 1 || y == size - 1);
            if (on) g[(b + y) * S + a + x] = fg;
        }
}

static void path_of(char *buf, size_t len, const char *cls, int k, const char *ext) {
    snprintf(buf, len, "%s/%s/img%03d.%s", root, cls, k, ext);
}

static int make_root(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/clgrad-imgfolder-XXXXXX");
    if (!mkdtemp(root)) return -1;
    char p[256];
    /* Written out of order on purpose: labels come from sorted names, not creation order. */
    const char *dirs[] = {"square", "cross", "cross/more", ".hidden"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", root, dirs[i]);
        if (mkdir(p, 0755) != 0) return -1;
    }
    uint8_t g[S * S], rgb[S * S * 3];
    for (int k = 0; k < PER_CLASS; k++) {
        shape(0, k, g);
        /* Crosses: gray PNGs, the last few in a nested folder. */
        if (k >= PER_CLASS - 3)
            snprintf(p, sizeof p, "%s/cross/more/img%03d.png", root, k);
        else
            path_of(p, sizeof p, "cross", k, "png");
        write_png(p, g, S, S, 1);
        /* Squares: RGB with R = G = B (luma gives the value back exactly). */
        shape(1, k, g);
        for (int i = 0; i < S * S; i++)
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g[i];
        path_of(p, sizeof p, "square", k, k % 2 ? "PNG" : "png");
        write_png(p, rgb, S, S, 3);
    }
    /* Ignored: not an image name, a hidden folder, a loose file at the root. */
    snprintf(p, sizeof p, "%s/cross/notes.txt", root);
    FILE *f = fopen(p, "w");
    fputs("not an image\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/.hidden/x.png", root);
    write_png(p, g, S, S, 1);
    snprintf(p, sizeof p, "%s/README", root);
    f = fopen(p, "w");
    fclose(f);
    return 0;
}

static int remove_root(void **state) {
    (void)state;
    ref_rm_rf(root);
    return 0;
}

static bool have_png(void) {
    if (clg_image_folder_supports("png")) return true;
    print_message("built without libpng: skipped\n");
    return false;
}

/* The image the set says path holds: its class and k from the file name. */
static void expected_of(const char *path, int *cls, int *k) {
    *cls = strstr(path, "/square/") ? 1 : 0;
    const char *name = strrchr(path, '/');
    *k = atoi(name + 4);
}

static void test_read(void **state) {
    (void)state;
    if (!have_png()) { /* a build without libpng names the file it cannot read */
        clg_image_folder f;
        char err[512] = "";
        assert_int_equal(clg_image_folder_read(root, NULL, &f, NULL, err, sizeof err), CLG_UNSUPPORTED);
        assert_non_null(strstr(err, "/cross/img000.png: this build reads no PNG"));
        return;
    }
    clg_image_folder f;
    char err[512] = "";
    clg_image_folder_params p = clg_image_folder_default_params();
    clg_status st = clg_image_folder_read(root, &p, &f, NULL, err, sizeof err);
    assert_int_equal(st, CLG_OK);
    assert_int_equal(f.classes, 2);
    assert_string_equal(f.class_names[0], "cross");
    assert_string_equal(f.class_names[1], "square");
    assert_int_equal(f.set.n, 2 * PER_CLASS);
    assert_int_equal(f.set.c, 1); /* the first image (cross/img000.png) is gray */
    assert_int_equal(f.set.h, S);
    assert_int_equal(f.set.w, S);
    assert_int_equal(f.skipped, 0);
    uint8_t g[S * S];
    for (int i = 0; i < f.set.n; i++) {
        int cls, k;
        expected_of(f.paths[i], &cls, &k);
        assert_int_equal(f.set.labels[i], cls);
        shape(cls, k, g);
        assert_memory_equal(f.set.images + (size_t)i * S * S, g, S * S);
    }
    /* Sorted walk: a folder's files, then its subfolders'. */
    assert_non_null(strstr(f.paths[0], "/cross/img000.png"));
    assert_non_null(strstr(f.paths[PER_CLASS - 3], "/cross/more/img021.png"));
    assert_non_null(strstr(f.paths[PER_CLASS], "/square/img000.png"));
    clg_image_folder_free(&f);
    clg_image_folder_free(&f); /* twice: zeroed */

    /* Three channels: gray replicated. */
    p.channels = 3;
    assert_int_equal(clg_image_folder_read(root, &p, &f, NULL, err, sizeof err), CLG_OK);
    assert_int_equal(f.set.c, 3);
    for (int i = 0; i < f.set.n; i++) {
        int cls, k;
        expected_of(f.paths[i], &cls, &k);
        shape(cls, k, g);
        for (int c = 0; c < 3; c++)
            assert_memory_equal(f.set.images + ((size_t)i * 3 + (size_t)c) * S * S, g, S * S);
    }
    clg_image_folder_free(&f);
}

/* RGB to gray is PIL's "L" (ITU-R 601-2 luma, rounded); alpha is dropped, not composited. */
static void test_color(void **state) {
    (void)state;
    if (!have_png()) return;
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s-color", root);
    snprintf(p, sizeof p, "%s/a", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    const uint8_t rgba[2 * 4] = {255, 0, 0, 0, 10, 200, 30, 128}; /* 2 x 1 pixels */
    snprintf(p, sizeof p, "%s/a/x.png", dir);
    write_png(p, rgba, 2, 1, 4);
    clg_image_folder f;
    char err[512] = "";
    clg_image_folder_params prm = clg_image_folder_default_params();
    assert_int_equal(clg_image_folder_read(dir, &prm, &f, NULL, err, sizeof err), CLG_OK);
    assert_int_equal(f.set.c, 3);
    const uint8_t want_rgb[6] = {255, 10, 0, 200, 0, 30}; /* planes R, G, B */
    assert_memory_equal(f.set.images, want_rgb, 6);
    clg_image_folder_free(&f);
    prm.channels = 1;
    assert_int_equal(clg_image_folder_read(dir, &prm, &f, NULL, err, sizeof err), CLG_OK);
    assert_int_equal(f.set.c, 1);
    assert_int_equal(f.set.images[0], (255 * 19595 + 0x8000) >> 16);                          /* 76 */
    assert_int_equal(f.set.images[1], (10 * 19595 + 200 * 38470 + 30 * 7471 + 0x8000) >> 16); /* 124 */
    clg_image_folder_free(&f);
    ref_rm_rf(dir);
}

/* Other sizes: a bad file unless height and width are set, then bilinear as torch's
 * interpolate(align_corners=False). */
static void test_sizes(void **state) {
    (void)state;
    if (!have_png()) return;
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s-sizes", root);
    snprintf(p, sizeof p, "%s/a", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    const uint8_t two[4] = {0, 100, 200, 40}; /* 2 x 2 */
    snprintf(p, sizeof p, "%s/a/0.png", dir);
    write_png(p, two, 2, 2, 1);
    uint8_t four[16];
    for (int i = 0; i < 16; i++)
        four[i] = (uint8_t)(i * 10);
    snprintf(p, sizeof p, "%s/a/1.png", dir);
    write_png(p, four, 4, 4, 1);
    clg_image_folder f;
    char err[512] = "";
    clg_image_folder_params prm = clg_image_folder_default_params();
    assert_int_equal(clg_image_folder_read(dir, &prm, &f, NULL, err, sizeof err), CLG_BAD_FORMAT);
    print_message("size mismatch: %s\n", err);
    assert_non_null(strstr(err, "/a/1.png"));
    assert_non_null(strstr(err, "4 x 4 pixels, not 2 x 2"));
    assert_int_equal(f.set.n, 0);
    prm.height = prm.width = 4;
    assert_int_equal(clg_image_folder_read(dir, &prm, &f, NULL, err, sizeof err), CLG_OK);
    assert_int_equal(f.set.n, 2);
    assert_memory_equal(f.set.images + 16, four, 16); /* same size: as is */
    /* 2 -> 4: source positions -0.25 (clamped to 0), 0.25, 0.75, 1.25 (x1 clamped). */
    const double pos[4] = {0, 0.25, 0.75, 1.0};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            const double ay = pos[y], ax = pos[x];
            const double v =
                (1 - ay) * ((1 - ax) * two[0] + ax * two[1]) + ay * ((1 - ax) * two[2] + ax * two[3]);
            assert_int_equal(f.set.images[y * 4 + x], (int)lrint(v));
        }
    clg_image_folder_free(&f);
    ref_rm_rf(dir);
}

static void test_holdout(void **state) {
    (void)state;
    if (!have_png()) return;
    clg_image_folder tr, te, tr2, te2;
    char err[512] = "";
    clg_image_folder_params p = clg_image_folder_default_params();
    p.holdout = 0.25, p.seed = 7;
    assert_int_equal(clg_image_folder_read(root, &p, &tr, &te, err, sizeof err), CLG_OK);
    assert_int_equal(te.set.n, 2 * PER_CLASS / 4);
    assert_int_equal(tr.set.n, 2 * PER_CLASS - te.set.n);
    assert_int_equal(te.classes, 2);
    assert_string_equal(te.class_names[1], "square");
    int per[2] = {0, 0};
    for (int i = 0; i < te.set.n; i++)
        per[te.set.labels[i]]++;
    assert_int_equal(per[0], PER_CLASS / 4); /* stratified */
    assert_int_equal(per[1], PER_CLASS / 4);
    /* Each image is where its path says, in exactly one of the two. */
    uint8_t g[S * S];
    const clg_image_folder *both[2] = {&tr, &te};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < both[s]->set.n; i++) {
            int cls, k;
            expected_of(both[s]->paths[i], &cls, &k);
            assert_int_equal(both[s]->set.labels[i], cls);
            shape(cls, k, g);
            assert_memory_equal(both[s]->set.images + (size_t)i * S * S, g, S * S);
            for (int j = 0; j < both[1 - s]->set.n; j++)
                assert_string_not_equal(both[s]->paths[i], both[1 - s]->paths[j]);
        }
    /* The same seed draws the same split; another seed another one. */
    assert_int_equal(clg_image_folder_read(root, &p, &tr2, &te2, err, sizeof err), CLG_OK);
    for (int i = 0; i < te.set.n; i++)
        assert_string_equal(te.paths[i], te2.paths[i]);
    clg_image_folder_free(&tr2);
    clg_image_folder_free(&te2);
    p.seed = 8;
    assert_int_equal(clg_image_folder_read(root, &p, &tr2, &te2, err, sizeof err), CLG_OK);
    int same = 0;
    for (int i = 0; i < te.set.n; i++)
        same += strcmp(te.paths[i], te2.paths[i]) == 0;
    assert_true(same < te.set.n);
    clg_image_folder_free(&tr2);
    clg_image_folder_free(&te2);
    clg_image_folder_free(&tr);
    clg_image_folder_free(&te);
    /* holdout needs somewhere to go, and must be below 1. */
    assert_int_equal(clg_image_folder_read(root, &p, &tr, NULL, err, sizeof err), CLG_INVALID_ARGUMENT);
    p.holdout = 1;
    assert_int_equal(clg_image_folder_read(root, &p, &tr, &te, err, sizeof err), CLG_INVALID_ARGUMENT);
}

typedef struct log_sink {
    int count;
    char text[2048];
} log_sink;

static void on_log(void *user, clg_log_level level, const char *msg) {
    log_sink *s = user;
    assert_int_equal(level, CLG_LOG_WARN);
    s->count++;
    size_t used = strlen(s->text);
    snprintf(s->text + used, sizeof s->text - used, "%s\n", msg);
}

/* Corrupt, truncated and mislabelled files: the message names the file; fail or skip. */
static void test_bad_files(void **state) {
    (void)state;
    if (!have_png()) return;
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s-bad", root);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/a", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/b", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    uint8_t g[S * S];
    shape(0, 0, g);
    snprintf(p, sizeof p, "%s/a/0-good.png", dir);
    write_png(p, g, S, S, 1);
    snprintf(p, sizeof p, "%s/b/0-good.png", dir);
    write_png(p, g, S, S, 1);
    /* a/1-truncated.png: the good file cut in the middle of its IDAT. */
    FILE *f = fopen(p, "rb");
    unsigned char bytes[512];
    size_t len = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/a/1-truncated.png", dir);
    f = fopen(p, "wb");
    fwrite(bytes, 1, len - 20, f);
    fclose(f);
    /* a/2-garbage.png: not an image at all. */
    snprintf(p, sizeof p, "%s/a/2-garbage.png", dir);
    f = fopen(p, "wb");
    fputs("hello, I am not a PNG", f);
    fclose(f);
    /* b/3-mislabelled.jpg: PNG data under a JPEG name. */
    snprintf(p, sizeof p, "%s/b/3-mislabelled.jpg", dir);
    f = fopen(p, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    /* b/4-crc.png: one flipped bit in the image data (the CRC no longer matches). */
    bytes[len - 20] ^= 0x10;
    snprintf(p, sizeof p, "%s/b/4-crc.png", dir);
    f = fopen(p, "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);

    /* Failing: the first bad file (sorted order) is named. */
    clg_image_folder out;
    char err[512] = "";
    clg_image_folder_params prm = clg_image_folder_default_params();
    assert_int_equal(clg_image_folder_read(dir, &prm, &out, NULL, err, sizeof err), CLG_BAD_FORMAT);
    print_message("fail mode: %s\n", err);
    assert_non_null(strstr(err, "/a/1-truncated.png"));
    assert_int_equal(out.set.n, 0);
    assert_null(out.paths);

    /* Skipping: every bad file reported through the log, the good ones kept. */
    log_sink sink = {0, ""};
    prm.skip_bad = true, prm.log = on_log, prm.log_user = &sink;
    assert_int_equal(clg_image_folder_read(dir, &prm, &out, NULL, err, sizeof err), CLG_OK);
    print_message("skip mode:\n%s", sink.text);
    assert_int_equal(out.set.n, 2);
    assert_int_equal(out.skipped, 4);
    assert_int_equal(sink.count, 4);
    assert_non_null(strstr(sink.text, "/a/1-truncated.png: corrupt or truncated PNG"));
    assert_non_null(strstr(sink.text, "/a/2-garbage.png: neither PNG nor JPEG"));
    assert_non_null(strstr(sink.text, "/b/3-mislabelled.jpg: mislabelled: PNG data under a JPEG name"));
    assert_non_null(strstr(sink.text, "/b/4-crc.png"));
    assert_int_equal(out.set.labels[0], 0);
    assert_int_equal(out.set.labels[1], 1);
    assert_memory_equal(out.set.images, g, S * S);
    clg_image_folder_free(&out);
    ref_rm_rf(dir);
}

/* Folder shapes that cannot be read. */
static void test_bad_folders(void **state) {
    (void)state;
    char dir[256], p[300], err[512] = "";
    clg_image_folder out;
    assert_int_equal(clg_image_folder_read("/nonexistent/clgrad", NULL, &out, NULL, err, sizeof err),
                     CLG_IO_ERROR);
    assert_non_null(strstr(err, "/nonexistent/clgrad"));
    snprintf(dir, sizeof dir, "%s-empty", root);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(clg_image_folder_read(dir, NULL, &out, NULL, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "no class folders"));
    snprintf(p, sizeof p, "%s/only", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(clg_image_folder_read(dir, NULL, &out, NULL, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "/only holds no .png"));
    assert_int_equal(clg_image_folder_read(NULL, NULL, &out, NULL, err, sizeof err), CLG_INVALID_ARGUMENT);
    clg_image_folder_params prm = clg_image_folder_default_params();
    prm.channels = 2;
    assert_int_equal(clg_image_folder_read(dir, &prm, &out, NULL, err, sizeof err), CLG_INVALID_ARGUMENT);
    ref_rm_rf(dir);
}

#ifdef CLG_TEST_JPEG
/* JPEG files (written by libturbojpeg at quality 100): decoded close to the source; a
 * truncated one is named; gray JPEGs stay one channel. */
static void test_jpeg(void **state) {
    (void)state;
    assert_true(clg_image_folder_supports("jpeg"));
    char dir[256], p[300];
    snprintf(dir, sizeof dir, "%s-jpeg", root);
    assert_int_equal(mkdir(dir, 0755), 0);
    const char *cls[2] = {"cross", "square"};
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    uint8_t g[S * S];
    unsigned char *jpg = NULL;
    unsigned long jlen = 0;
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/%s", dir, cls[c]);
        assert_int_equal(mkdir(p, 0755), 0);
        for (int k = 0; k < 3; k++) {
            shape(c, k, g);
            assert_int_equal(tjCompress2(tj, g, S, 0, S, TJPF_GRAY, &jpg, &jlen, TJSAMP_GRAY, 100, 0), 0);
            snprintf(p, sizeof p, "%s/%s/%d.%s", dir, cls[c], k, k ? "jpg" : "JPEG");
            FILE *f = fopen(p, "wb");
            fwrite(jpg, 1, jlen, f);
            fclose(f);
        }
    }
    clg_image_folder out;
    char err[512] = "";
    assert_int_equal(clg_image_folder_read(dir, NULL, &out, NULL, err, sizeof err), CLG_OK);
    assert_int_equal(out.set.n, 6);
    assert_int_equal(out.set.c, 1);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(out.set.labels[i], i / 3);
        shape(i / 3, i % 3, g);
        double worst = 0;
        for (int j = 0; j < S * S; j++) {
            double e = fabs((double)out.set.images[i * S * S + j] - g[j]);
            if (e > worst) worst = e;
        }
        assert_true(worst <= 8); /* quality 100, sharp edges */
    }
    clg_image_folder_free(&out);
    /* Truncated: the decoder's warning counts as corrupt. */
    snprintf(p, sizeof p, "%s/square/9.jpg", dir);
    FILE *f = fopen(p, "wb");
    fwrite(jpg, 1, jlen - 6, f); /* into the scan: the decoder warns of a premature end */
    fclose(f);
    assert_int_equal(clg_image_folder_read(dir, NULL, &out, NULL, err, sizeof err), CLG_BAD_FORMAT);
    print_message("truncated JPEG: %s\n", err);
    assert_non_null(strstr(err, "/square/9.jpg: corrupt or truncated JPEG"));
    tjFree(jpg);
    tjDestroy(tj);
    ref_rm_rf(dir);
}
#endif

/* A small MLP learns crosses from squares: trained on the folder through the loader (shuffle,
 * crop with padding), judged on the held-out images. */
static void test_train(void **state) {
    clg_context *ctx = *state;
    if (!have_png()) return;
    clg_image_folder tr, te;
    char err[512] = "";
    clg_image_folder_params p = clg_image_folder_default_params();
    p.holdout = 0.25, p.seed = 3;
    assert_int_equal(clg_image_folder_read(root, &p, &tr, &te, err, sizeof err), CLG_OK);

    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    REF_OK(ctx, clg_flatten_module_create(ctx, &m));
    REF_OK(ctx, clg_sequential_add(seq, m));
    REF_OK(ctx, clg_linear_module_create(ctx, "fc1", S * S, 32, true, 11, &m));
    REF_OK(ctx, clg_sequential_add(seq, m));
    REF_OK(ctx, clg_relu_module_create(ctx, &m));
    REF_OK(ctx, clg_sequential_add(seq, m));
    REF_OK(ctx, clg_linear_module_create(ctx, "fc2", 32, 2, true, 12, &m));
    REF_OK(ctx, clg_sequential_add(seq, m));
    clg_tensor *params[8];
    const size_t np = clg_module_parameters(seq, params, 8);
    clg_adam_params ap = clg_adam_default_params();
    ap.lr = 0.01;
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_adam_create(ctx, params, np, ap, &opt));

    clg_loader_params lp = clg_loader_default_params();
    lp.batch_size = 8, lp.seed = 5;
    clg_loader *loader = NULL;
    REF_OK(ctx, clg_loader_create(ctx, &tr.set, &lp, &loader));
    double last = 0;
    for (uint64_t epoch = 0; epoch < 30; epoch++) {
        REF_OK(ctx, clg_loader_seek(loader, epoch, 0));
        double sum = 0;
        int batches = 0;
        for (;;) {
            clg_tensor *x = NULL, *logits = NULL, *loss = NULL;
            const int32_t *y;
            int count;
            REF_OK(ctx, clg_loader_next(loader, &x, &y, &count));
            if (!x) break;
            double v = 0;
            REF_OK(ctx, clg_module_forward(ctx, seq, x, &logits));
            REF_OK(ctx, clg_softmax_cross_entropy(ctx, logits, y, (size_t)count, &loss));
            REF_OK(ctx, clg_backward(ctx, loss));
            REF_OK(ctx, clg_optimizer_step(opt));
            REF_OK(ctx, clg_tensor_item(loss, &v));
            clg_optimizer_zero_grad(opt);
            clg_tensor_free(loss);
            clg_tensor_free(logits);
            clg_tensor_free(x);
            sum += v, batches++;
        }
        last = sum / batches;
    }
    clg_loader_free(loader);

    /* Held-out accuracy, no shuffling, no grad. */
    lp.shuffle = false, lp.batch_size = te.set.n;
    REF_OK(ctx, clg_loader_create(ctx, &te.set, &lp, &loader));
    clg_module_train(seq, false);
    const bool was = clg_set_grad_enabled(ctx, false);
    clg_tensor *x = NULL, *logits = NULL;
    const int32_t *y;
    int count;
    REF_OK(ctx, clg_loader_next(loader, &x, &y, &count));
    REF_OK(ctx, clg_module_forward(ctx, seq, x, &logits));
    float out[2 * PER_CLASS];
    REF_OK(ctx, clg_tensor_to_host(logits, out, sizeof(float) * 2 * (size_t)count));
    int right = 0;
    for (int i = 0; i < count; i++)
        right += (out[2 * i + 1] > out[2 * i]) == (y[i] == 1);
    clg_set_grad_enabled(ctx, was);
    print_message("final train loss %.4f, held-out accuracy %d/%d\n", last, right, count);
    assert_true(right >= count - 1);
    clg_tensor_free(logits);
    clg_tensor_free(x);
    clg_loader_free(loader);
    clg_optimizer_free(opt);
    clg_module_free(seq);
    clg_image_folder_free(&tr);
    clg_image_folder_free(&te);
}

static int setup(void **state) {
    if (make_root(state)) return -1;
    return ref_group_setup(state);
}

static int teardown(void **state) {
    remove_root(state);
    return ref_group_teardown(state);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),    cmocka_unit_test(test_color),     cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_holdout), cmocka_unit_test(test_bad_files), cmocka_unit_test(test_bad_folders),
#ifdef CLG_TEST_JPEG
        cmocka_unit_test(test_jpeg),
#endif
        cmocka_unit_test(test_train),
    };
    return cmocka_run_group_tests_name("image_folder", tests, setup, teardown);
}
