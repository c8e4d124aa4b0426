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
dir=$(mktemp -d "${TMPDIR:-/tmp}/clgrad-oclgrind-$name.XXXXXX")
trap 'rm -rf "$dir"' EXIT
# Oclgrind opens OCLGRIND_LOG anew (truncating it) for every OpenCL context, and a test makes
# several: a report from the first context was lost when the next one opened the file. So the
# log is a FIFO drained into a file; the shell holds a writer open, so each context's
# open and close of it neither truncates nor ends the stream.
mkfifo "$dir/log.fifo"
cat "$dir/log.fifo" >"$dir/log" &
reader=$!
exec 4>"$dir/log.fifo"

export CLGRAD_DEVICE=${CLGRAD_OCLGRIND_DEVICE:-oclgrind}
export OCLGRIND_DATA_RACES=1 OCLGRIND_CHECK_API=1 OCLGRIND_LOG=$dir/log.fifo
unset OCLGRIND_UNINITIALIZED OCLGRIND_QUICK
# Oclgrind runs each work-group on a worker thread; more threads than cores only add
# switching (meson runs several tests at once).
export OCLGRIND_NUM_THREADS=${OCLGRIND_NUM_THREADS:-1}

"$test_exe" "$@" 4>&-
rc=$?
exec 4>&-
wait "$reader"
if [ -s "$dir/log" ]; then
    echo "run.sh: Oclgrind reported errors while running $name:" >&2
    head -c 20000 "$dir/log" >&2
    exit 1
fi
exit $rc
