#!/bin/sh
# tests/fuzz/run.sh [seconds] - builds the libFuzzer targets (fuzz_safetensors.c, fuzz_idx.c)
# with clang -fsanitize=fuzzer,address,undefined straight from the host-only parsers in
# src/io (no OpenCL device needed) and runs each for [seconds] (default 60) from the seeds in
# tests/fuzz/corpus/<target>/. Output, grown corpus and crash files go to build-fuzz/ (or
# $FUZZ_OUT). Exits non-zero when a target crashed; the crash input is left there.
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/build-fuzz}
cc=${CLANG:-clang}
mkdir -p "$out"

flags="-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120
       -I$root/include -I$root/src"
common="$root/src/io/io_util.c $root/src/core/status.c"

# shellcheck disable=SC2086  # flags are word lists on purpose
$cc $flags "$root/tests/fuzz/fuzz_safetensors.c" "$root/src/io/safetensors.c" $common \
    $(pkg-config --cflags --libs libcjson) -lm -o "$out/fuzz_safetensors"
# shellcheck disable=SC2086
$cc $flags "$root/tests/fuzz/fuzz_idx.c" "$root/src/io/idx.c" $common \
    $(pkg-config --cflags --libs zlib) -o "$out/fuzz_idx"

failed=0
for t in fuzz_safetensors fuzz_idx; do
    mkdir -p "$out/corpus/$t"
    echo "== $t: ${secs} s"
    dict=""
    [ -f "$root/tests/fuzz/${t#fuzz_}.dict" ] && dict="-dict=$root/tests/fuzz/${t#fuzz_}.dict"
    # New inputs go to the first folder (build dir); the committed seeds stay as they are.
    # shellcheck disable=SC2086
    if ! "$out/$t" -max_total_time="$secs" -max_len=16384 -print_final_stats=1 \
            $dict -artifact_prefix="$out/$t-" "$out/corpus/$t" "$root/tests/fuzz/corpus/$t" \
            >"$out/$t.log" 2>&1; then
        failed=1
        echo "$t: CRASH (see $out/$t.log and $out/$t-crash-*)"
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$out/$t.log" | tail -n 3
done
exit $failed
