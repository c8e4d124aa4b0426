#!/usr/bin/env bash
# tests/oclgrind/run.sh TEST [ARGS...] - runs one cmocka test executable on the Oclgrind
# simulator (the `oclgrind` suite of tests/meson.build): CLGRAD_DEVICE=oclgrind, data-race and
# API checks on, Oclgrind's log sent to a file; any line Oclgrind writes there (a race, an
# out-of-bounds access, an invalid API call, a barrier divergence) fails the test, as does the
# test itself. Oclgrind must be registered with the ICD loader, e.g. through OCL_ICD_VENDORS
# pointing at a folder holding pocl.icd and oclgrind.icd (.ci/run does that), so the system's
# own choice stays as it is. Oclgrind 21.10's uninitialised-value check (--uninitialized) is
# left off: it reports values that are initialised (its own false positives).
set -uo pipefail
test_exe=$1
shift
name=$(basename "$test_exe")
log=$(mktemp "${TMPDIR:-/tmp}/clgrad-oclgrind-$name.XXXXXX")
trap 'rm -f "$log"' EXIT

export CLGRAD_DEVICE=${CLGRAD_OCLGRIND_DEVICE:-oclgrind}
export OCLGRIND_DATA_RACES=1 OCLGRIND_CHECK_API=1 OCLGRIND_LOG=$log
unset OCLGRIND_UNINITIALIZED OCLGRIND_QUICK
# Oclgrind runs each work-group on a worker thread; more threads than cores only add
# switching (meson runs several tests at once).
export OCLGRIND_NUM_THREADS=${OCLGRIND_NUM_THREADS:-1}

"$test_exe" "$@"
rc=$?
if [ -s "$log" ]; then
    echo "run.sh: Oclgrind reported errors while running $name:" >&2
    head -c 20000 "$log" >&2
    exit 1
fi
exit $rc
