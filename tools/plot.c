/* tools/plot.c - training curves with cairo (declarations in tools/plot.h): the metrics CSV
 * reader and the two-panel chart (loss: per-epoch train and test, smoothed per-step train;
 * accuracy: per-epoch train and test), one colour per run, line style per series.
 * Tests: tests/tools/test_plot.c (API, PNG read back), tests/tools/test_plot.sh (clgrad-plot).
 */
#define _POSIX_C_SOURCE 200809L
#include "plot.h"

#include <cairo.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CAIRO_HAS_SVG_SURFACE
#include <cairo-svg.h>
#endif
#ifdef CAIRO_HAS_PDF_SURFACE
#include <cairo-pdf.h>
#endif

#define PLOT_PI 3.14159265358979323846

plot_options plot_default_options(void) { return (plot_options){1200, 480, 0.9, NULL}; }

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *q = realloc(*p, (size_t)ncap * elem);
    if (!q) return -1;
    *p = q, *cap = ncap;
    return 0;
}

int plot_run_add_epoch(plot_run *run, plot_epoch row) {
    if (grow((void **)&run->epochs, &run->cap_epochs, run->n_epochs + 1, sizeof *run->epochs)) return -1;
    run->epochs[run->n_epochs++] = row;
    return 0;
}

int plot_run_add_step(plot_run *run, double x, double loss) {
    int cap = run->cap_steps;
    if (grow((void **)&run->step_x, &cap, run->n_steps + 1, sizeof *run->step_x)) return -1;
    cap = run->cap_steps;
    if (grow((void **)&run->step_loss, &cap, run->n_steps + 1, sizeof *run->step_loss)) return -1;
    run->cap_steps = cap;
    run->step_x[run->n_steps] = x;
    run->step_loss[run->n_steps++] = loss;
    return 0;
}

void plot_run_free(plot_run *run) {
    if (!run) return;
    free(run->label);
    free(run->epochs);
    free(run->step_x);
    free(run->step_loss);
    memset(run, 0, sizeof *run);
}

/* ---- CSV ---- */
enum { MAX_COLS = 64 };

/* Splits line in place at commas into at most MAX_COLS trimmed fields; the count, or -1. */
static int split_csv(char *line, char **fields) {
    int n = 0;
    line[strcspn(line, "\r\n")] = '\0';
    for (char *s = line;;) {
        if (n == MAX_COLS) return -1;
        char *end = strchr(s, ',');
        if (end) *end = '\0';
        while (isspace((unsigned char)*s))
            s++;
        char *t = s + strlen(s);
        while (t > s && isspace((unsigned char)t[-1]))
            *--t = '\0';
        fields[n++] = s;
        if (!end) break;
        s = end + 1;
    }
    return n;
}

static int parse_value(const char *s, double *v) {
    if (!*s) {
        *v = NAN;
        return 0;
    }
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == '\0' ? 0 : -1;
}

typedef struct csv {
    FILE *f;
    char *line;
    size_t cap;
    int lineno, ncols;
    char *names[MAX_COLS];
    char *header;
} csv;

static int csv_open(csv *c, const char *path, char *err, size_t err_len) {
    memset(c, 0, sizeof *c);
    c->f = fopen(path, "r");
    if (!c->f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (getline(&c->line, &c->cap, c->f) < 0) {
        snprintf(err, err_len, "%s: empty file (no header row)", path);
        return -1;
    }
    c->lineno = 1;
    c->header = strdup(c->line);
    if (!c->header || (c->ncols = split_csv(c->header, c->names)) < 0) {
        snprintf(err, err_len, "%s:1: header of more than %d columns", path, MAX_COLS);
        return -1;
    }
    return 0;
}

static int csv_col(const csv *c, const char *name) {
    for (int i = 0; i < c->ncols; i++)
        if (strcmp(c->names[i], name) == 0) return i;
    return -1;
}

/* The next row's values (NaN where empty): 1, 0 at the end, -1 on a bad row. Blank lines are
 * skipped. */
static int csv_row(csv *c, const char *path, double *v, char *err, size_t err_len) {
    char *fields[MAX_COLS];
    for (;;) {
        if (getline(&c->line, &c->cap, c->f) < 0) return 0;
        c->lineno++;
        if (c->line[strspn(c->line, " \t\r\n")] == '\0') continue;
        int n = split_csv(c->line, fields);
        if (n != c->ncols) {
            snprintf(err, err_len, "%s:%d: %d fields, the header has %d", path, c->lineno,
                     n < 0 ? MAX_COLS : n, c->ncols);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (parse_value(fields[i], &v[i])) {
                snprintf(err, err_len, "%s:%d: %s is '%s', not a number", path, c->lineno, c->names[i],
                         fields[i]);
                return -1;
            }
        return 1;
    }
}

static void csv_close(csv *c) {
    if (c->f) fclose(c->f);
    free(c->line);
    free(c->header);
}

static int read_steps(const char *path, plot_run *run, char *err, size_t err_len) {
    csv c;
    int rc = csv_open(&c, path, err, err_len);
    const int ce = rc ? -1 : csv_col(&c, "epoch"), cl = rc ? -1 : csv_col(&c, "loss");
    if (!rc && (ce < 0 || cl < 0)) {
        snprintf(err, err_len, "%s: the header needs columns epoch and loss (per-step losses)", path);
        rc = -1;
    }
    double v[MAX_COLS];
    plot_run tmp = {0};
    int got;
    while (!rc && (got = csv_row(&c, path, v, err, err_len)) != 0) {
        if (got < 0 || plot_run_add_step(&tmp, v[ce], v[cl])) {
            if (got > 0) snprintf(err, err_len, "%s: out of memory", path);
            rc = -1;
        }
    }
    csv_close(&c);
    /* Spread each epoch's steps over (epoch - 1, epoch]. */
    for (int i = 0; !rc && i < tmp.n_steps;) {
        int j = i;
        while (j < tmp.n_steps && tmp.step_x[j] == tmp.step_x[i])
            j++;
        for (int k = i; k < j; k++)
            if (plot_run_add_step(run, tmp.step_x[i] - 1 + (double)(k - i + 1) / (j - i), tmp.step_loss[k])) {
                snprintf(err, err_len, "%s: out of memory", path);
                rc = -1;
                break;
            }
        i = j;
    }
    plot_run_free(&tmp);
    return rc;
}

int plot_read_metrics(const char *path, const char *steps_path, const char *label, plot_run *run, char *err,
                      size_t err_len) {
    memset(run, 0, sizeof *run);
    csv c;
    if (csv_open(&c, path, err, err_len)) {
        csv_close(&c);
        return -1;
    }
    static const char *const names[5] = {"epoch", "train_loss", "train_accuracy", "test_loss",
                                         "test_accuracy"};
    int col[5], known = 0;
    for (int i = 0; i < 5; i++)
        known += (col[i] = csv_col(&c, names[i])) >= 0 && i > 0;
    int rc = 0;
    if (col[0] < 0 || !known) {
        snprintf(err, err_len,
                 "%s: the header has no epoch column or none of train_loss, train_accuracy, test_loss, "
                 "test_accuracy (not a clgrad-train --metrics file?)",
                 path);
        rc = -1;
    }
    run->label = strdup(label ? label : path);
    if (!run->label) rc = -1;
    double v[MAX_COLS];
    int got;
    while (!rc && (got = csv_row(&c, path, v, err, err_len)) != 0) {
        if (got < 0) {
            rc = -1;
            break;
        }
        double r[5];
        for (int i = 0; i < 5; i++)
            r[i] = col[i] >= 0 ? v[col[i]] : NAN;
        if (plot_run_add_epoch(run, (plot_epoch){r[0], r[1], r[2], r[3], r[4]})) {
            snprintf(err, err_len, "%s: out of memory", path);
            rc = -1;
        }
    }
    csv_close(&c);
    if (!rc && steps_path) {
        FILE *f = fopen(steps_path, "r");
        if (f) {
            fclose(f);
            rc = read_steps(steps_path, run, err, err_len);
        }
    }
    if (rc) plot_run_free(run);
    return rc;
}

/* ---- drawing ---- */
static const double palette[10][3] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173},
                                      {0.839, 0.153, 0.157}, {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294},
                                      {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498}, {0.737, 0.741, 0.133},
                                      {0.090, 0.745, 0.812}};

typedef struct range {
    double lo, hi, step; /* ticks at multiples of step in [lo, hi] */
} range;

static double nice_step(double span, int ticks) {
    double raw = span / ticks, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

/* A range around [lo, hi] with round ends, inside [floor_, ceil_] (NaN: no bound). */
static range nice_range(double lo, double hi, double floor_, double ceil_, bool integer) {
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * (fabs(hi) + 1)) lo -= 0.5 * (fabs(lo) + 1e-3), hi += 0.5 * (fabs(hi) + 1e-3);
    double pad = integer ? 0 : 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    if (!isnan(floor_) && lo < floor_) lo = floor_;
    if (!isnan(ceil_) && hi > ceil_) hi = ceil_;
    double step = nice_step(hi - lo, 6);
    if (integer && step < 1) step = 1;
    range r = {floor(lo / step) * step, ceil(hi / step) * step, step};
    if (!isnan(floor_) && r.lo < floor_) r.lo = floor_;
    if (!isnan(ceil_) && r.hi > ceil_) r.hi = ceil_;
    return r;
}

typedef struct panel {
    double x0, y0, x1, y1; /* plot area on the canvas */
    range rx, ry;
} panel;

static double px(const panel *p, double x) {
    return p->x0 + (x - p->rx.lo) / (p->rx.hi - p->rx.lo) * (p->x1 - p->x0);
}
static double py(const panel *p, double y) {
    return p->y1 - (y - p->ry.lo) / (p->ry.hi - p->ry.lo) * (p->y1 - p->y0);
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, double ay) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.width * ax - e.x_bearing, y - e.height * ay - e.y_bearing);
    cairo_show_text(cr, s);
}

static void tick_label(char *buf, size_t len, double v, double step) {
    int digits = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (step < 1 && fabs(step * pow(10, digits) - round(step * pow(10, digits))) > 1e-6) digits++;
    snprintf(buf, len, "%.*f", digits, fabs(v) < step * 1e-9 ? 0.0 : v);
}

static void draw_frame(cairo_t *cr, const panel *p, const char *title, const char *xlabel,
                       const char *ylabel) {
    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);
    char buf[64];
    for (double v = p->ry.lo; v <= p->ry.hi + p->ry.step * 1e-6; v += p->ry.step) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, p->x0, round(py(p, v)) + 0.5);
        cairo_line_to(cr, p->x1, round(py(p, v)) + 0.5);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        tick_label(buf, sizeof buf, v, p->ry.step);
        text_at(cr, p->x0 - 6, py(p, v), buf, 1, 0.5);
    }
    for (double v = p->rx.lo; v <= p->rx.hi + p->rx.step * 1e-6; v += p->rx.step) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, round(px(p, v)) + 0.5, p->y0);
        cairo_line_to(cr, round(px(p, v)) + 0.5, p->y1);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        tick_label(buf, sizeof buf, v, p->rx.step);
        text_at(cr, px(p, v), p->y1 + 6, buf, 0.5, 0);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, p->x0 + 0.5, p->y0 + 0.5, p->x1 - p->x0, p->y1 - p->y0);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 13);
    text_at(cr, (p->x0 + p->x1) / 2, p->y1 + 24, xlabel, 0.5, 0);
    cairo_save(cr);
    cairo_translate(cr, p->x0 - 48, (p->y0 + p->y1) / 2);
    cairo_rotate(cr, -PLOT_PI / 2);
    text_at(cr, 0, 0, ylabel, 0.5, 0.5);
    cairo_restore(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 14);
    text_at(cr, (p->x0 + p->x1) / 2, p->y0 - 8, title, 0.5, 1);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
}

enum style { SOLID, DASHED, THIN };

static void set_style(cairo_t *cr, const double *rgb, enum style s) {
    static const double dash[2] = {7, 4};
    cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], s == THIN ? 0.55 : 1.0);
    cairo_set_line_width(cr, s == THIN ? 1.2 : 2.2);
    cairo_set_dash(cr, dash, s == DASHED ? 2 : 0, 0);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
}

/* A polyline through the finite points; markers at each when marks. */
static void series(cairo_t *cr, const panel *p, const double *x, const double *y, size_t stride, int n,
                   const double *rgb, enum style s, bool marks) {
    set_style(cr, rgb, s);
    bool open = false;
    for (int i = 0; i < n; i++) {
        double xv = x[(size_t)i * stride], yv = y[(size_t)i * stride];
        if (!isfinite(xv) || !isfinite(yv)) {
            open = false;
            continue;
        }
        if (open)
            cairo_line_to(cr, px(p, xv), py(p, yv));
        else
            cairo_move_to(cr, px(p, xv), py(p, yv));
        open = true;
    }
    cairo_stroke(cr);
    if (!marks) return;
    cairo_set_dash(cr, NULL, 0, 0);
    for (int i = 0; i < n; i++) {
        double xv = x[(size_t)i * stride], yv = y[(size_t)i * stride];
        if (!isfinite(xv) || !isfinite(yv)) continue;
        cairo_new_sub_path(cr);
        cairo_arc(cr, px(p, xv), py(p, yv), s == DASHED ? 2.5 : 3.0, 0, 2 * PLOT_PI);
        if (s == DASHED) {
            cairo_stroke(cr); /* hollow markers for test */
        } else {
            cairo_fill(cr);
        }
    }
}

/* The EMA of the finite per-step losses, debiased as TensorBoard's smoothing. */
static double *smoothed(const plot_run *r, double w) {
    double *s = malloc((r->n_steps ? (size_t)r->n_steps : 1) * sizeof *s);
    if (!s) return NULL;
    double acc = 0, norm = 0;
    for (int i = 0; i < r->n_steps; i++) {
        if (!isfinite(r->step_loss[i])) {
            s[i] = NAN;
            continue;
        }
        acc = w * acc + (1 - w) * r->step_loss[i];
        norm = w * norm + (1 - w);
        s[i] = acc / norm;
    }
    return s;
}

static void extend(double *lo, double *hi, double v) {
    if (!isfinite(v)) return;
    if (v < *lo) *lo = v;
    if (v > *hi) *hi = v;
}

/* Clips to the panel's plot area widened by a marker (radius 3, line 2.2): the ranges always
 * hold the data, so this only keeps the markers of points on the frame (first and last epoch,
 * accuracy 1, loss 0) whole instead of cut in half. */
static void clip_panel(cairo_t *cr, const panel *p) {
    const double m = 4.5;
    cairo_rectangle(cr, p->x0 - m, p->y0 - m, p->x1 - p->x0 + 2 * m, p->y1 - p->y0 + 2 * m);
    cairo_clip(cr);
}

static void legend_item(cairo_t *cr, double *x, double y, const double *rgb, enum style s, const char *text) {
    set_style(cr, rgb, s);
    cairo_move_to(cr, *x, y);
    cairo_line_to(cr, *x + 28, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, *x + 34, y, text, 0, 0.5);
    cairo_text_extents_t e;
    cairo_text_extents(cr, text, &e);
    *x += 34 + e.x_advance + 22;
}

static void draw(cairo_t *cr, const plot_run *runs, int n_runs, const plot_options *o,
                 double *const *smooth) {
    const double W = o->width, H = o->height;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    double top = 36;
    if (o->title) {
        cairo_set_font_size(cr, 16);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text_at(cr, W / 2, 10, o->title, 0.5, 0);
        top += 24;
    }
    /* Legend rows: the line styles, then the runs (wrapped). */
    cairo_set_font_size(cr, 12);
    int rows = 2;
    double x = 70;
    for (int r = 0; r < n_runs; r++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, runs[r].label, &e);
        if (x + 56 + e.x_advance > W - 10 && x > 70) rows++, x = 70;
        x += 56 + e.x_advance + 22;
    }
    const double legend_h = 22.0 * rows + 8, bottom = H - legend_h - 48;
    /* Data ranges. */
    double xlo = INFINITY, xhi = -INFINITY, llo = INFINITY, lhi = -INFINITY, alo = INFINITY, ahi = -INFINITY;
    bool any_steps = false;
    for (int r = 0; r < n_runs; r++) {
        for (int i = 0; i < runs[r].n_epochs; i++) {
            const plot_epoch *e = &runs[r].epochs[i];
            extend(&xlo, &xhi, e->epoch);
            extend(&llo, &lhi, e->train_loss);
            extend(&llo, &lhi, e->test_loss);
            extend(&alo, &ahi, e->train_accuracy);
            extend(&alo, &ahi, e->test_accuracy);
        }
        for (int i = 0; i < runs[r].n_steps; i++) {
            any_steps = true;
            extend(&xlo, &xhi, runs[r].step_x[i]);
            if (smooth[r]) extend(&llo, &lhi, smooth[r][i]);
        }
    }
    if (any_steps && xlo > 0) xlo = 0;
    range rx = nice_range(xlo, xhi, any_steps ? 0 : NAN, NAN, true);
    const double gap = 90, pw = (W - 70 - 20 - gap) / 2;
    panel loss = {70, top, 70 + pw, bottom, rx, nice_range(llo, lhi, 0, NAN, false)};
    panel acc = {70 + pw + gap, top, W - 20, bottom, rx, nice_range(alo, ahi, 0, 1, false)};
    draw_frame(cr, &loss, "loss", "epoch", "loss");
    draw_frame(cr, &acc, "accuracy", "epoch", "accuracy");
    for (int r = 0; r < n_runs; r++) {
        const plot_run *run = &runs[r];
        const double *rgb = palette[r % 10];
        cairo_save(cr);
        clip_panel(cr, &loss);
        if (smooth[r]) series(cr, &loss, run->step_x, smooth[r], 1, run->n_steps, rgb, THIN, false);
        const double *e0 = &run->epochs[0].epoch;
        const size_t st = sizeof(plot_epoch) / sizeof(double);
        if (run->n_epochs) {
            series(cr, &loss, e0, &run->epochs[0].train_loss, st, run->n_epochs, rgb, SOLID, true);
            series(cr, &loss, e0, &run->epochs[0].test_loss, st, run->n_epochs, rgb, DASHED, true);
        }
        cairo_restore(cr);
        cairo_save(cr);
        clip_panel(cr, &acc);
        if (run->n_epochs) {
            series(cr, &acc, e0, &run->epochs[0].train_accuracy, st, run->n_epochs, rgb, SOLID, true);
            series(cr, &acc, e0, &run->epochs[0].test_accuracy, st, run->n_epochs, rgb, DASHED, true);
        }
        cairo_restore(cr);
    }
    /* Legend. */
    cairo_set_font_size(cr, 12);
    static const double gray[3] = {0.3, 0.3, 0.3};
    double ly = H - legend_h + 8;
    x = 70;
    legend_item(cr, &x, ly, gray, SOLID, "train (epoch mean)");
    legend_item(cr, &x, ly, gray, DASHED, "test");
    if (any_steps) legend_item(cr, &x, ly, gray, THIN, "train per step (smoothed)");
    ly += 22, x = 70;
    for (int r = 0; r < n_runs; r++) {
        cairo_text_extents_t e;
        cairo_text_extents(cr, runs[r].label, &e);
        if (x + 56 + e.x_advance > W - 10 && x > 70) ly += 22, x = 70;
        legend_item(cr, &x, ly, palette[r % 10], SOLID, runs[r].label);
    }
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    if (a < b) return false;
    for (size_t i = 0; i < b; i++)
        if (tolower((unsigned char)s[a - b + i]) != suffix[i]) return false;
    return true;
}

int plot_check_path(const char *path, char *err, size_t err_len) {
    if (ends_with(path, ".png") || ends_with(path, ".svg") || ends_with(path, ".pdf")) return 0;
    snprintf(err, err_len, "plot: %s: the name must end in .png, .svg or .pdf", path);
    return -1;
}

int plot_write(const char *path, const plot_run *runs, int n_runs, const plot_options *opt, char *err,
               size_t err_len) {
    plot_options o = opt ? *opt : plot_default_options();
    if (o.width < 200 || o.height < 150 || o.width > 16384 || o.height > 16384 ||
        !(o.smooth >= 0 && o.smooth < 1)) {
        snprintf(err, err_len,
                 "plot: size %d x %d outside 200..16384 x 150..16384, or smoothing %g outside [0, 1)",
                 o.width, o.height, o.smooth);
        return -1;
    }
    if (plot_check_path(path, err, err_len)) return -1;
    enum { PNG, SVG, PDF } kind = ends_with(path, ".png") ? PNG : ends_with(path, ".svg") ? SVG : PDF;
    /* Drawn under "<path>.tmp" and renamed: a reader (or a crash) never sees half a chart,
     * which matters when clgrad-train redraws it after every epoch. */
    size_t tlen = strlen(path) + 5;
    char *tmp = malloc(tlen);
    if (!tmp) {
        snprintf(err, err_len, "plot: out of memory");
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp", path);
    cairo_surface_t *s = NULL;
    if (kind == PNG) s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, o.width, o.height);
#ifdef CAIRO_HAS_SVG_SURFACE
    if (kind == SVG) s = cairo_svg_surface_create(tmp, o.width, o.height);
#endif
#ifdef CAIRO_HAS_PDF_SURFACE
    if (kind == PDF) s = cairo_pdf_surface_create(tmp, o.width, o.height);
#endif
    if (!s) {
        free(tmp);
        snprintf(err, err_len, "plot: %s: this cairo writes no %s", path, kind == SVG ? "SVG" : "PDF");
        return -1;
    }
    double **smooth = calloc(n_runs > 0 ? (size_t)n_runs : 1, sizeof *smooth);
    int rc = smooth ? 0 : -1;
    for (int r = 0; !rc && r < n_runs; r++)
        if (runs[r].n_steps && !(smooth[r] = smoothed(&runs[r], o.smooth))) rc = -1;
    if (rc) snprintf(err, err_len, "plot: out of memory");
    cairo_t *cr = cairo_create(s);
    if (!rc) draw(cr, runs, n_runs, &o, smooth);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    if (!rc && cs == CAIRO_STATUS_SUCCESS && kind == PNG) cs = cairo_surface_write_to_png(s, tmp);
    cairo_surface_finish(s);
    if (!rc && cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (!rc && cs != CAIRO_STATUS_SUCCESS) {
        snprintf(err, err_len, "plot: %s: %s", path, cairo_status_to_string(cs));
        rc = -1;
    }
    if (!rc && rename(tmp, path) != 0) {
        snprintf(err, err_len, "plot: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        rc = -1;
    }
    if (rc) remove(tmp);
    free(tmp);
    for (int r = 0; smooth && r < n_runs; r++)
        free(smooth[r]);
    free(smooth);
    return rc;
}
