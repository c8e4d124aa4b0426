#!/bin/sh
# tests/fuzz/run.sh [seconds [target...]] - builds the libFuzzer targets (fuzz_safetensors.c, fuzz_idx.c,
# their file-reading twins fuzz_safetensors_read.c and fuzz_idx_read.c, fuzz_device_choice.c,
# fuzz_cache_file.c) with clang -fsanitize=fuzzer,address,undefined
# straight from the host-only parsers in src/io and src/core (no OpenCL device needed) and
# runs each for [seconds] (default 60) from the seeds in tests/fuzz/corpus/<target>/. Output, grown corpus and crash files go to build-fuzz/ (or
# $FUZZ_OUT). Exits non-zero when a target crashed; the crash input is left there.
set -eu
secs=${1:-60}
[ $# -gt 0 ] && shift
# Optional target names after the seconds run only those (default: all of them).
targets=${*:-fuzz_safetensors fuzz_idx fuzz_safetensors_read fuzz_idx_read fuzz_device_choice fuzz_cache_file}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/build-fuzz}
cc=${CLANG:-clang}
mkdir -p "$out"

flags="-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120
       -I$root/include -I$root/src"
common="$root/src/core/host.c $root/src/core/status.c"

# shellcheck disable=SC2086  # flags are word lists on purpose
$cc $flags "$root/tests/fuzz/fuzz_safetensors.c" "$root/src/io/safetensors.c" "$root/src/io/file.c" $common \
    $(pkg-config --cflags --libs libcjson) -lm -o "$out/fuzz_safetensors"
# shellcheck disable=SC2086
$cc $flags "$root/tests/fuzz/fuzz_idx.c" "$root/src/io/idx.c" "$root/src/io/file.c" $common \
    $(pkg-config --cflags --libs zlib) -o "$out/fuzz_idx"
# The readers of files (src/io/file.c): each input goes through a file in /tmp.
# shellcheck disable=SC2086
$cc $flags "$root/tests/fuzz/fuzz_safetensors_read.c" "$root/src/io/safetensors.c" "$root/src/io/file.c" \
    $common $(pkg-config --cflags --libs libcjson) -lm -o "$out/fuzz_safetensors_read"
# shellcheck disable=SC2086
$cc $flags "$root/tests/fuzz/fuzz_idx_read.c" "$root/src/io/idx.c" "$root/src/io/file.c" $common \
    $(pkg-config --cflags --libs zlib) -o "$out/fuzz_idx_read"

# The device-choice logic is pure, but device.c also holds the OpenCL enumeration: it links
# the ICD loader without calling it.
# shellcheck disable=SC2086
$cc $flags "$root/tests/fuzz/fuzz_device_choice.c" "$root/src/core/device.c" $common \
    $(pkg-config --cflags --libs OpenCL) -o "$out/fuzz_device_choice"
# shellcheck disable=SC2086
$cc $flags "$root/tests/fuzz/fuzz_cache_file.c" "$root/src/core/disk_cache.c" $common \
    -o "$out/fuzz_cache_file"

failed=0
for t in $targets; do
    mkdir -p "$out/corpus/$t"
    echo "== $t: ${secs} s"
    # A file-reading twin (fuzz_x_read) shares fuzz_x's dictionary and seeds.
    base=${t%_read}
    dict=""
    [ -f "$root/tests/fuzz/${base#fuzz_}.dict" ] && dict="-dict=$root/tests/fuzz/${base#fuzz_}.dict"
    seeds="$root/tests/fuzz/corpus/$base"
    # New inputs go to the first folder (build dir); the committed seeds stay as they are.
    # shellcheck disable=SC2086
    if ! "$out/$t" -max_total_time="$secs" -max_len=16384 -print_final_stats=1 \
            $dict -artifact_prefix="$out/$t-" "$out/corpus/$t" "$seeds" \
            >"$out/$t.log" 2>&1; then
        failed=1
        echo "$t: CRASH (see $out/$t.log and $out/$t-crash-*)"
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$out/$t.log" | tail -n 3
done
exit $failed
