#!/usr/bin/env bash
# tools/gpu-check.sh BUILD_DIR [--device CHOICE] [--tune-seconds S] [--no-tests]
# One command for a person with a GPU (any vendor): builds clgrad into BUILD_DIR if needed
# (meson setup + ninja, from a fresh checkout too), lists the OpenCL platforms, picks the first
# GPU (a plain GPU; the Oclgrind simulator does not count), then on that GPU runs the test
# suite, clgrad-tune, clgrad-bench gemm / conv / train / launch and one epoch of LeNet with
# clgrad-train, and prints one report (also written to BUILD_DIR/gpu-check/report.txt, each
# step's full output beside it). clgrad-tune saves its result in clgrad's cache folder for that
# device, as it would by hand. Without a GPU it says so, lists what OpenCL sees, and exits 0.
# Exit status: 0 when every step passed (or there is no GPU), 1 when a step failed, 2 on usage.
set -uo pipefail

usage() {
    sed -n '2,3p' "$0" | sed 's/^# \{0,1\}/usage: /;2s/^usage: /       /' >&2
    exit 2
}
[ $# -ge 1 ] || usage
case $1 in -h | --help) usage ;; esac
build=$1
shift
device_choice=gpu
tune_seconds=${GPU_CHECK_TUNE_SECONDS:-120}
run_tests=1
while [ $# -gt 0 ]; do
    case $1 in
    --device) device_choice=${2:?--device needs a choice}; shift 2 ;;
    --tune-seconds) tune_seconds=${2:?--tune-seconds needs a number}; shift 2 ;;
    --no-tests) run_tests=0; shift ;;
    *) usage ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$build/build.ninja" ]; then
    echo "gpu-check: configuring $build" >&2
    meson setup "$build" "$root" >&2 || { echo "gpu-check: meson setup failed" >&2; exit 1; }
fi
ninja -C "$build" >&2 || { echo "gpu-check: the build failed" >&2; exit 1; }
build=$(cd "$build" && pwd)
out=$build/gpu-check
mkdir -p "$out"
report=$out/report.txt
: >"$report"
say() { printf '%s\n' "$*" | tee -a "$report"; }
failed=0

# step NAME COMMAND...: runs it with its output in $out/NAME.log, one report line with the
# status and the time; the last lines of the output go to the report too.
step() {
    local name=$1 t0 t1 rc
    shift
    t0=$(date +%s)
    "$@" >"$out/$name.log" 2>&1
    rc=$?
    t1=$(date +%s)
    if [ $rc -eq 0 ]; then
        say "[ ok ] $name ($((t1 - t0)) s)"
    else
        say "[FAIL] $name ($((t1 - t0)) s, exit $rc; full output: $out/$name.log)"
        failed=1
    fi
    return $rc
}
# The lines of a step's log worth reading in the report, indented.
excerpt() { sed 's/^/    /' | tee -a "$report"; }

say "clgrad gpu-check $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n) ($(uname -sr)), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
say ""
say "== OpenCL platforms and devices"
if command -v clinfo >/dev/null 2>&1; then clinfo -l 2>&1 | excerpt; fi
env -u CLGRAD_DEVICE "$build/tools/clgrad-info" --no-build >"$out/platforms.log" 2>&1
excerpt <"$out/platforms.log"

# The GPU: what the choice picks (clgrad-info resolves it as a context would).
line=$(CLGRAD_DEVICE=$device_choice "$build/tools/clgrad-info" --no-build 2>&1 | grep '^CLGRAD_DEVICE:')
picked=$(sed -n 's/^CLGRAD_DEVICE: *"[^"]*" -> \([0-9][0-9]*:[0-9][0-9]*\) .*/\1/p' <<<"$line")
name=$(sed -n 's/^CLGRAD_DEVICE: *"[^"]*" -> [0-9][0-9]*:[0-9][0-9]* \(.*\)$/\1/p' <<<"$line")
if [ -z "$picked" ] || { [ "$device_choice" = gpu ] && grep -qi 'oclgrind' <<<"$name"; }; then
    say ""
    say "gpu-check: no GPU here (the choice \"$device_choice\" found ${name:-no device}); OpenCL sees the devices"
    say "above. Install your GPU vendor's OpenCL driver (an ICD under /etc/OpenCL/vendors) and run this again,"
    say "or name a device with --device P:D. Nothing was run."
    exit 0
fi
export CLGRAD_DEVICE=$picked
say ""
say "== device $picked: $name"
say ""

if [ $run_tests -eq 1 ]; then
    step tests meson test -C "$build" --print-errorlogs
    grep -E '^(Ok|Expected Fail|Fail|Unexpected Pass|Skipped|Timeout): ' "$out/tests.log" | excerpt
    grep -E '^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT|ERROR) ' "$out/tests.log" | excerpt
fi
step tune "$build/tools/clgrad-tune" --device "$picked" --seconds "$tune_seconds"
# (its progress lines end in carriage returns)
tr '\r' '\n' <"$out/tune.log" | grep -v ' s left *$' | grep -v '^ *$' | tail -n 15 | excerpt
for what in gemm conv train launch; do
    step "bench-$what" "$build/tools/clgrad-bench" "$what" --device "$picked"
    excerpt <"$out/bench-$what.log"
done
data=/usr/share/datasets/fashion-mnist
if [ -d "$data" ]; then
    step train-lenet "$build/tools/clgrad-train" --model lenet --epochs 1 --device "$picked" --data "$data"
    grep -E 'epoch|test_accuracy' "$out/train-lenet.log" | tail -n 4 | excerpt
else
    say "[skip] train-lenet: no Fashion-MNIST in $data (Debian: apt-get install dataset-fashion-mnist)"
fi

say ""
if [ $failed -eq 0 ]; then say "gpu-check: every step passed on $name"; else say "gpu-check: some steps FAILED on $name (see above)"; fi
say "report: $report"
exit $failed
