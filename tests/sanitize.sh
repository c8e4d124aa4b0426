#!/usr/bin/env bash
# tests/sanitize.sh - the test suite in an AddressSanitizer + UndefinedBehaviorSanitizer build
# configures build-asan (or $ASAN_BUILD) with -Db_sanitize=address,undefined, builds,
# and runs the floors' suites (core, tensor, blas, ops, nn, optim, io) and hostile (bad sizes at
# the public API; skipped: tools trains for minutes, soak measures
# RSS, which ASan's quarantine inflates, install links an example without the sanitizer
# flags). Any ASan, UBSan or leak report in clgrad's code fails the run; tests/lsan.supp
# silences leaks inside the OpenCL implementation only (PoCL and its LLVM). Called by .ci/run;
# extra arguments go to `meson test`.
# The kernel caches (clgrad's under ~/.cache/clgrad, PoCL's under ~/.cache/pocl) are the ones
# the regular build's `meson test` just filled, so the programs are not compiled again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ASAN_BUILD:-$root/build-asan}
cd "$root"

# b_lundef=false: the sanitizer runtimes resolve some symbols at load time. An existing
# folder is set to the same options, whatever it was configured with before.
opts=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug -Dbench=false)
if [ -f "$build/build.ninja" ]; then
    meson configure "$build" "${opts[@]}"
else
    meson setup "$build" "${opts[@]}"
fi
ninja -C "$build"
# A build that is not instrumented would pass everything: make sure it is.
syms=$(nm -D "$build/libclgrad.so")
if ! grep -q " U __asan_init" <<<"$syms" || ! grep -q " U __ubsan_handle_" <<<"$syms"; then
    echo "sanitize.sh: $build/libclgrad.so is not built with ASan and UBSan" >&2
    exit 1
fi

supp="$root/tests/lsan.supp"
# halt_on_error: the first report fails the test. detect_leaks: LeakSanitizer at exit.
# intercept_tls_get_addr=0: the sanitizer runtime of gcc 12 misreads glibc 2.36's dynamic TLS
# (of libraries PoCL dlopens) and LeakSanitizer crashes at exit ("Tracer caught signal 11",
# google/sanitizers#1322, #1342; seen in example-embed). clgrad has no thread-local storage,
# so not scanning dynamic TLS hides none of its pointers. UBSan halts too, with a stack.
# use_sigaltstack=0: with ASan's own signal stack per thread, a thread that ends after PoCL's
# first device enumeration makes ASan fail to unmap that stack and abort ("failed to
# deallocate ... UnsetAlternateSignalStack"; test_threads); ASan then cannot report a stack
# overflow as such, nothing else changes.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:intercept_tls_get_addr=0:print_summary=1:use_sigaltstack=0"
export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1"
export CLGRAD_DEVICE="${CLGRAD_DEVICE:-cpu}"

# The sanitizers watch host code: the f64 and other-tile repeats of conv2d's bit-for-bit tables
# (tests/ops/test_conv2d_implicit.c) run the host paths their f32 cases run, for minutes.
export CLGRAD_TEST_SKIP="${CLGRAD_TEST_SKIP:-test_bits_f64 test_dx_bits_f64 test_direct_bits_f64 test_dx_tiles test_direct_tiles}"

# ASan makes everything 2-3x slower: longer timeouts.
meson test -C "$build" --print-errorlogs --timeout-multiplier 4 --suite core --suite tensor --suite blas --suite ops --suite nn --suite optim --suite io --suite hostile "$@"
