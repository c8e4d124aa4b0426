/* tools/clgrad-plot.c - training curves from the CSVs that clgrad-train --metrics writes: one
 * chart of one or more runs (loss and accuracy per epoch, the smoothed per-step loss where a
 * RUN.steps.csv lies beside RUN.csv), PNG, SVG or PDF by the output's extension. The drawing
 * is tools/plot.c. Tests: tests/tools/test_plot.sh.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot.h"
#include "tool_args.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: clgrad-plot [options] -o OUT.png|OUT.svg|OUT.pdf RUN.csv [RUN.csv ...]\n"
            "  RUN.csv               a clgrad-train --metrics file (epoch,train_loss,train_accuracy,\n"
            "                        test_loss,test_accuracy,...); RUN.steps.csv beside it (columns\n"
            "                        epoch,loss: one row per step) adds the smoothed per-step loss\n"
            "  -o, --output FILE     the chart; the extension picks the format\n"
            "  --label TEXT          legend name of the next run (default: its file name)\n"
            "  --title TEXT          a title above the chart\n"
            "  --width N, --height N size in pixels (points for SVG/PDF), default 1200 x 480\n"
            "  --smooth X            EMA weight of the past for the per-step loss, [0, 1) (default 0.9)\n");
}

/* The file name without folders and .csv, as the default label. */
static const char *base_label(const char *path, char *buf, size_t len) {
    const char *slash = strrchr(path, '/');
    snprintf(buf, len, "%s", slash ? slash + 1 : path);
    size_t n = strlen(buf);
    if (n > 4 && strcmp(buf + n - 4, ".csv") == 0) buf[n - 4] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    static const struct option longs[] = {
        {"output", required_argument, 0, 'o'}, {"label", required_argument, 0, 'l'},
        {"title", required_argument, 0, 't'},  {"width", required_argument, 0, 'W'},
        {"height", required_argument, 0, 'H'}, {"smooth", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    plot_options o = plot_default_options();
    const char *out = NULL;
    /* Labels given before a run name apply to it: collected in argument order ("+" keeps
     * getopt from permuting, so runs and --label interleave). */
    const char **labels = calloc((size_t)argc, sizeof *labels), **files = calloc((size_t)argc, sizeof *files);
    if (!labels || !files) {
        fprintf(stderr, "clgrad-plot: out of memory\n");
        return 1;
    }
    int n = 0;
    const char *pending = NULL;
    long long v;
    double d;
    for (;;) {
        int c = getopt_long(argc, argv, "+o:h", longs, NULL);
        if (c == -1) {
            if (optind >= argc) break;
            labels[n] = pending, files[n++] = argv[optind++], pending = NULL;
            continue;
        }
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'l':
            pending = optarg;
            break;
        case 't':
            o.title = optarg;
            break;
        case 'W':
            if (!tool_parse_int("clgrad-plot", "--width", optarg, 200, 16384, &v)) return 2;
            o.width = (int)v;
            break;
        case 'H':
            if (!tool_parse_int("clgrad-plot", "--height", optarg, 150, 16384, &v)) return 2;
            o.height = (int)v;
            break;
        case 's':
            if (!tool_parse_real("clgrad-plot", "--smooth", optarg, 0, 0.999999, &d)) return 2;
            o.smooth = d;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!out || n == 0) {
        fprintf(stderr, "clgrad-plot: %s\n", !out ? "-o OUT.png|.svg|.pdf is required" : "no RUN.csv given");
        usage(stderr);
        return 2;
    }
    if (pending) fprintf(stderr, "clgrad-plot: --label %s follows the last run: ignored\n", pending);
    plot_run *runs = calloc((size_t)n, sizeof *runs);
    int rc = runs ? 0 : 1;
    char err[1024], name[256];
    for (int i = 0; !rc && i < n; i++) {
        char *steps = tool_steps_path(files[i]);
        if (!steps || plot_read_metrics(files[i], steps,
                                        labels[i] ? labels[i] : base_label(files[i], name, sizeof name),
                                        &runs[i], err, sizeof err)) {
            fprintf(stderr, "clgrad-plot: %s\n", steps ? err : "out of memory");
            rc = 1;
        } else if (runs[i].n_epochs == 0) {
            fprintf(stderr, "clgrad-plot: %s: no epochs yet (only the header)\n", files[i]);
        }
        free(steps);
    }
    if (!rc && plot_write(out, runs, n, &o, err, sizeof err)) {
        fprintf(stderr, "clgrad-plot: %s\n", err);
        rc = 1;
    }
    if (!rc) {
        int epochs = 0, steps = 0;
        for (int i = 0; i < n; i++)
            epochs += runs[i].n_epochs, steps += runs[i].n_steps;
        printf("%s: %d run%s, %d epoch rows, %d step losses\n", out, n, n == 1 ? "" : "s", epochs, steps);
    }
    for (int i = 0; runs && i < n; i++)
        plot_run_free(&runs[i]);
    free(runs);
    free(labels);
    free(files);
    return rc;
}
