/* src/core/device_choice.h - the device choice string ("gpu", "cpu", "P:D", a name
 * substring, any of them after "PLATFORM:") parsed and resolved without OpenCL, so
 * tests/fuzz/fuzz_device_choice.c can drive it with any bytes and made-up device lists.
 * Implemented in src/core/device.c; tests: tests/core/test_device_choice.c.
 */
#ifndef CLGRAD_DEVICE_CHOICE_H
#define CLGRAD_DEVICE_CHOICE_H

#include "core/core.h"

/* A device's "plain" type: one of CPU, GPU or accelerator and no other (the DEFAULT bit aside).
 * Simulators such as Oclgrind report ACCELERATOR | GPU | CPU: they are none of the three
 * plainly, and rank after every plain device. */
typedef enum clg_choice_kind {
    CLG_CHOICE_DEFAULT = 0, /* NULL or "": first plain GPU, else plain accelerator, else plain CPU,
                               else any device (mixed types last) */
    CLG_CHOICE_GPU,         /* "gpu" / "GPU": a plain GPU first, else any device with the GPU bit */
    CLG_CHOICE_CPU,         /* "cpu" / "CPU": a plain CPU first, else any device with the CPU bit */
    CLG_CHOICE_INDEX,       /* "P:D" */
    CLG_CHOICE_NAME,        /* anything else: a case-insensitive substring of the device name,
                               else of the platform's name or vendor */
} clg_choice_kind;

typedef struct clg_device_choice {
    clg_choice_kind kind;
    long platform, device; /* CLG_CHOICE_INDEX; -1 when a number is negative or past INT_MAX */
    const char *name;      /* CLG_CHOICE_NAME: a substring (borrowed, points into the choice) */
    /* "PLATFORM:REST" (e.g. "pocl:cpu", "oclgrind:0"): only devices whose platform name or vendor
     * contains PLATFORM (any case), REST being one of the forms above ("" = the default). The
     * borrowed pointer and length point into the choice; platform_len 0 = every platform. A
     * choice that fits both readings ("gfx90a:sramecc+" is an AMD device name) is also tried
     * whole as a name when the qualified reading matches nothing (clg__device_choice_pick). */
    const char *platform_name;
    size_t platform_len;
    const char *whole; /* the choice string, for that second reading */
} clg_device_choice;

/* What the device-choice logic needs of one device. */
typedef struct clg_device_desc {
    char name[256];
    cl_device_type type;
    int pi, di;         /* platform and device index */
    char platform[256]; /* the platform's name and vendor, "NAME / VENDOR" */
} clg_device_desc;

/* Parses a choice; never fails (unknown forms are names). The result borrows choice. */
clg_device_choice clg__device_choice_parse(const char *choice);
/* The index of the device the choice picks among devs, or -1. */
int clg__device_choice_pick(const clg_device_choice *c, const clg_device_desc *devs, size_t n);
/* 0 for a plain GPU, 1 plain accelerator, 2 plain CPU, 3 anything else (several type bits,
 * CUSTOM, none): the default choice's order. */
int clg__device_type_rank(cl_device_type type);
/* "no OpenCL device matches "x"; devices: 0:0 NAME (CPU, PLATFORM); ..." into err (cut to err_len). */
void clg__device_choice_explain(const char *choice, const clg_device_desc *devs, size_t n, char *err,
                                size_t err_len);

#endif
