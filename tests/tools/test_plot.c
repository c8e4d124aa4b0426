/* tests/tools/test_plot.c - the training-curve module tools/plot.c: the metrics CSV as
 * clgrad-train --metrics writes it (columns by name, empty = NaN, bad rows named by file and
 * line), per-step losses spread over their epoch, and charts read back: a PNG of the asked
 * size with each run's colour on it, an SVG document, refusals. The CLI: test_plot.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cairo.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plot.h"

static char dir[64];

static void path_in(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", dir, name); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* clgrad-train's header and row format (tools/clgrad-train.c, write_metrics). */
static const char *HEADER = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,images_per_s,seconds\n";

static void test_read_metrics(void **state) {
    (void)state;
    char p[128], s[128], err[512];
    path_in(p, sizeof p, "run.csv");
    path_in(s, sizeof s, "run.steps.csv");
    char text[1024];
    snprintf(text, sizeof text,
             "%s1,0.900000,0.700000,0.800000,0.720000,1000.0,1.500\n"
             "2,0.500000,0.820000,,0.840000,1010.0,1.400\n\n",
             HEADER);
    write_text(p, text);
    write_text(s, "epoch,loss\n1,1.0\n1,0.8\n1,0.7\n1,0.6\n2,0.5\n2,0.4\n");
    plot_run run;
    assert_int_equal(plot_read_metrics(p, s, "a", &run, err, sizeof err), 0);
    assert_string_equal(run.label, "a");
    assert_int_equal(run.n_epochs, 2);
    assert_true(run.epochs[0].epoch == 1 && run.epochs[1].epoch == 2);
    assert_true(fabs(run.epochs[0].train_loss - 0.9) < 1e-12);
    assert_true(fabs(run.epochs[1].train_accuracy - 0.82) < 1e-12);
    assert_true(isnan(run.epochs[1].test_loss)); /* empty field */
    assert_true(fabs(run.epochs[1].test_accuracy - 0.84) < 1e-12);
    /* 4 steps over (0, 1], 2 over (1, 2]. */
    assert_int_equal(run.n_steps, 6);
    const double want_x[6] = {0.25, 0.5, 0.75, 1.0, 1.5, 2.0};
    for (int i = 0; i < 6; i++)
        assert_true(fabs(run.step_x[i] - want_x[i]) < 1e-12);
    assert_true(fabs(run.step_loss[5] - 0.4) < 1e-12);
    plot_run_free(&run);

    /* Columns by name, in any order; others ignored; a missing steps file is no error. */
    write_text(p, "seconds,test_accuracy,epoch\n3.0,0.5,1\n");
    assert_int_equal(plot_read_metrics(p, "/nonexistent.steps.csv", "b", &run, err, sizeof err), 0);
    assert_true(isnan(run.epochs[0].train_loss) && run.epochs[0].test_accuracy == 0.5);
    assert_int_equal(run.n_steps, 0);
    plot_run_free(&run);

    /* Bad files: named, with the line. */
    snprintf(text, sizeof text, "%s1,0.9,0.7,0.8,0.72,1000.0,1.5\n2,0.5,oops,0.4,0.8,1.0,1.0\n", HEADER);
    write_text(p, text);
    assert_int_equal(plot_read_metrics(p, NULL, "c", &run, err, sizeof err), -1);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "run.csv:3: train_accuracy is 'oops'"));
    snprintf(text, sizeof text, "%s1,0.9,0.7\n", HEADER);
    write_text(p, text);
    assert_int_equal(plot_read_metrics(p, NULL, "c", &run, err, sizeof err), -1);
    assert_non_null(strstr(err, "run.csv:2: 3 fields, the header has 7"));
    write_text(p, "step,loss\n1,2\n");
    assert_int_equal(plot_read_metrics(p, NULL, "c", &run, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a clgrad-train --metrics file"));
    assert_int_equal(plot_read_metrics("/nonexistent/x.csv", NULL, "c", &run, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/x.csv"));
    assert_null(run.epochs);
}

/* Two runs: falling loss, rising accuracy, noisy per-step losses. */
static void make_runs(plot_run runs[2]) {
    memset(runs, 0, 2 * sizeof *runs);
    for (int r = 0; r < 2; r++) {
        runs[r].label = strdup(r ? "adam lr 1e-3" : "sgd lr 0.05");
        for (int e = 1; e <= 6; e++) {
            const double k = r ? 1.3 : 1.0;
            plot_epoch row = {e, 1.2 / (e * k), 1 - 0.3 / (e * k), 1.1 / (e * k) + 0.05, 1 - 0.32 / (e * k)};
            assert_int_equal(plot_run_add_epoch(&runs[r], row), 0);
            for (int s = 0; s < 50; s++) {
                const double x = e - 1 + (s + 1) / 50.0;
                assert_int_equal(
                    plot_run_add_step(&runs[r], x, 1.3 / (x * k + 0.2) * (1 + 0.3 * sin(s * 2.1 + r))), 0);
            }
        }
    }
}

/* Pixels of the PNG within tol of rgb. */
static int count_colour(cairo_surface_t *img, const double rgb[3], int tol) {
    const int w = cairo_image_surface_get_width(img), h = cairo_image_surface_get_height(img);
    const int stride = cairo_image_surface_get_stride(img);
    const unsigned char *d = cairo_image_surface_get_data(img);
    int n = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint32_t v;
            memcpy(&v, d + (size_t)y * (size_t)stride + 4 * (size_t)x, 4);
            const int r = (int)(v >> 16 & 255), g = (int)(v >> 8 & 255), b = (int)(v & 255);
            n += abs(r - (int)lrint(rgb[0] * 255)) <= tol && abs(g - (int)lrint(rgb[1] * 255)) <= tol &&
                 abs(b - (int)lrint(rgb[2] * 255)) <= tol;
        }
    return n;
}

static void test_png(void **state) {
    (void)state;
    plot_run runs[2];
    make_runs(runs);
    char p[128], err[512];
    path_in(p, sizeof p, "curves.png");
    plot_options o = plot_default_options();
    o.width = 900, o.height = 400, o.title = "clgrad test";
    assert_int_equal(plot_write(p, runs, 2, &o, err, sizeof err), 0);
    cairo_surface_t *img = cairo_image_surface_create_from_png(p);
    assert_int_equal(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
    assert_int_equal(cairo_image_surface_get_width(img), 900);
    assert_int_equal(cairo_image_surface_get_height(img), 400);
    cairo_surface_flush(img);
    /* The two runs' colours (tab10 blue and orange) are drawn; the background is white. */
    const double blue[3] = {0.122, 0.467, 0.706}, orange[3] = {1.000, 0.498, 0.055}, white[3] = {1, 1, 1};
    const int nb = count_colour(img, blue, 12), no = count_colour(img, orange, 12),
              nw = count_colour(img, white, 0);
    print_message("900 x 400 PNG: %d blue, %d orange, %d white pixels\n", nb, no, nw);
    assert_true(nb > 500 && no > 500);
    assert_true(nw > 900 * 400 / 2);
    cairo_surface_destroy(img);
    char tmp[140];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    assert_int_equal(access(tmp, F_OK), -1); /* renamed into place */
    for (int r = 0; r < 2; r++)
        plot_run_free(&runs[r]);
}

static void test_svg(void **state) {
    (void)state;
    plot_run runs[2];
    make_runs(runs);
    char p[128], err[512];
    path_in(p, sizeof p, "curves.SVG");
    assert_int_equal(plot_write(p, runs, 2, NULL, err, sizeof err), 0);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_true(n > 1000);
    assert_true(strncmp(buf, "<?xml", 5) == 0);
    assert_non_null(strstr(buf, "<svg"));
    assert_non_null(strstr(buf, "width=\"1200"));
    assert_non_null(strstr(buf, "</svg>"));
    for (int r = 0; r < 2; r++)
        plot_run_free(&runs[r]);
}

/* One epoch, no steps, NaN holes, no runs at all: still a chart. Bad names and sizes refused. */
static void test_edges(void **state) {
    (void)state;
    char p[128], err[512];
    path_in(p, sizeof p, "edge.png");
    plot_run run = {0};
    run.label = strdup("one");
    assert_int_equal(plot_run_add_epoch(&run, (plot_epoch){1, 0.5, NAN, INFINITY, 0.9}), 0);
    assert_int_equal(plot_write(p, &run, 1, NULL, err, sizeof err), 0);
    assert_int_equal(plot_write(p, NULL, 0, NULL, err, sizeof err), 0);
    path_in(p, sizeof p, "edge.jpg");
    assert_int_equal(plot_write(p, &run, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "must end in .png, .svg or .pdf"));
    assert_int_equal(plot_check_path(p, err, sizeof err), -1);
    assert_non_null(strstr(err, "edge.jpg: the name must end in .png, .svg or .pdf"));
    assert_int_equal(plot_check_path("a.PNG", err, sizeof err), 0);
    assert_int_equal(plot_check_path("a.svg", err, sizeof err), 0);
    assert_int_equal(plot_check_path("a.pdf", err, sizeof err), 0);
    assert_int_equal(plot_check_path(".png.tmp", err, sizeof err), -1);
    plot_options o = plot_default_options();
    o.width = 10;
    path_in(p, sizeof p, "edge.png");
    assert_int_equal(plot_write(p, &run, 1, &o, err, sizeof err), -1);
    assert_int_equal(plot_write("/nonexistent/dir/x.png", &run, 1, NULL, err, sizeof err), -1);
    print_message("%s\n", err);
    assert_non_null(strstr(err, "/nonexistent/dir/x.png"));
    plot_run_free(&run);
}

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/clgrad-plot-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    const char *names[] = {"run.csv", "run.steps.csv", "curves.png", "curves.SVG", "edge.png"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        path_in(p, sizeof p, names[i]);
        remove(p);
    }
    return rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_metrics),
        cmocka_unit_test(test_png),
        cmocka_unit_test(test_svg),
        cmocka_unit_test(test_edges),
    };
    return cmocka_run_group_tests_name("plot", tests, setup, teardown);
}
