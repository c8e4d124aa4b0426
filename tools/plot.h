/* tools/plot.h - training curves drawn with cairo (tools/plot.c), shared by tools/clgrad-plot.c
 * and clgrad-train: per-epoch train/test loss and accuracy of one or more runs, and the
 * smoothed per-step training loss, on two labelled panels with a legend, written as PNG, SVG
 * or PDF by the output's extension. Reads the CSV that clgrad-train --metrics writes (columns
 * found by name in the header). Tests: tests/tools/test_plot.c, tests/tools/test_plot.sh.
 */
#ifndef CLGRAD_TOOLS_PLOT_H
#define CLGRAD_TOOLS_PLOT_H

#include <stddef.h>

/* One row of a metrics CSV; a missing or empty column is NaN. */
typedef struct plot_epoch {
    double epoch, train_loss, train_accuracy, test_loss, test_accuracy;
} plot_epoch;

/* One run: its rows and, optionally, its per-step training losses. */
typedef struct plot_run {
    char *label;        /* legend text (owned) */
    plot_epoch *epochs; /* n_epochs rows (owned) */
    int n_epochs, cap_epochs;
    /* Per-step losses with their position on the epoch axis: step k (from 0) of epoch e (from 1) of
     * an epoch of n steps sits at e - 1 + (k + 1) / n. Owned. */
    double *step_x, *step_loss;
    int n_steps, cap_steps;
} plot_run;

typedef struct plot_options {
    int width, height; /* pixels (PNG) or points (SVG, PDF); default 1200 x 480 */
    double smooth;     /* EMA weight of the past for the per-step loss, [0, 1); default 0.9 */
    const char *title; /* NULL: none */
} plot_options;

plot_options plot_default_options(void);

/* Appends an epoch row / a step loss to run (which starts zeroed); -1 when out of memory. */
int plot_run_add_epoch(plot_run *run, plot_epoch row);
int plot_run_add_step(plot_run *run, double x, double loss);
void plot_run_free(plot_run *run);

/* Reads a CSV written by clgrad-train --metrics (header row, then one row per epoch; the
 * columns epoch, train_loss, train_accuracy, test_loss, test_accuracy found by name, others
 * ignored) into run, labelled label. When steps_path is not NULL and exists, it is a CSV with
 * columns epoch and loss (one row per training step, in order) whose losses are added as
 * steps. 0, or -1 with a message naming the file and line in err. */
int plot_read_metrics(const char *path, const char *steps_path, const char *label, plot_run *run, char *err,
                      size_t err_len);

/* 0 when path names a format plot_write writes (.png, .svg or .pdf, any case), else -1 with a
 * message in err: for checking a name when it is given, before a run that draws at its end. */
int plot_check_path(const char *path, char *err, size_t err_len);

/* Draws the runs to path: .png, .svg or .pdf (by the extension, any case). 0, or -1 with a
 * message in err. */
int plot_write(const char *path, const plot_run *runs, int n_runs, const plot_options *o, char *err,
               size_t err_len);

#endif
