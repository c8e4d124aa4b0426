/* src/core/device_choice.h - the device choice string ("gpu", "cpu", "P:D", a name
 * substring) parsed and resolved without OpenCL, so tests/fuzz/fuzz_device_choice.c can drive
 * it with any bytes and made-up device lists. Implemented in src/core/device.c.
 */
#ifndef CLGRAD_DEVICE_CHOICE_H
#define CLGRAD_DEVICE_CHOICE_H

#include "core/core.h"

typedef enum clg_choice_kind {
    CLG_CHOICE_DEFAULT = 0, /* NULL or "": first GPU, else accelerator, else CPU */
    CLG_CHOICE_GPU,         /* "gpu" / "GPU" */
    CLG_CHOICE_CPU,         /* "cpu" / "CPU" */
    CLG_CHOICE_INDEX,       /* "P:D" */
    CLG_CHOICE_NAME,        /* anything else: a case-insensitive substring of the device name */
} clg_choice_kind;

typedef struct clg_device_choice {
    clg_choice_kind kind;
    long platform, device; /* CLG_CHOICE_INDEX; -1 when a number is negative or past INT_MAX */
    const char *name;      /* CLG_CHOICE_NAME: the choice string itself (borrowed) */
} clg_device_choice;

/* What the device-choice logic needs of one device. */
typedef struct clg_device_desc {
    char name[256];
    cl_device_type type;
    int pi, di; /* platform and device index */
} clg_device_desc;

/* Parses a choice; never fails (unknown forms are names). */
clg_device_choice clg__device_choice_parse(const char *choice);
/* The index of the device the choice picks among devs, or -1. */
int clg__device_choice_pick(const clg_device_choice *c, const clg_device_desc *devs, size_t n);
/* "no OpenCL device matches "x"; devices: 0:0 NAME (CPU); ..." into err (cut to err_len). */
void clg__device_choice_explain(const char *choice, const clg_device_desc *devs, size_t n, char *err,
                                size_t err_len);

#endif
