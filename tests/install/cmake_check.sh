#!/bin/sh
# tests/install/cmake_check.sh - installs a built clgrad into a temporary folder (meson install
# --destdir), then configures tests/install/cmake/CMakeLists.txt with CMAKE_PREFIX_PATH there:
# find_package(clgrad 0.1) must find the package config and version file, clgrad::clgrad must
# carry the headers and the library, and tools/example-embed.c built that way must train
# (its loss falls). A version the package does not satisfy (find_package(clgrad 9)) must be
# refused. The pkg-config twin is check.sh. Exits 77 (skipped) without cmake.
# Usage: tests/install/cmake_check.sh BUILD_DIR   (run by `meson test install-cmake`)
set -eu

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
command -v cmake >/dev/null 2>&1 || { echo "cmake check: no cmake: skipped"; exit 77; }
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clgrad-cmake-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "cmake check: $*" >&2; exit 1; }

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install failed"; }
config=$(find "$tmp/root" -name clgradConfig.cmake | head -n 1)
[ -n "$config" ] || fail "no clgradConfig.cmake was installed"
[ -f "$(dirname "$config")/clgradConfigVersion.cmake" ] || fail "no clgradConfigVersion.cmake beside it"
# The staged prefix: <root><prefix>, four levels above <libdir>/cmake/clgrad (lib/<triplet>)
# or three (lib); CMake searches <prefix>/lib*/cmake/<name> itself.
prefix=$(meson introspect --buildoptions "$build" | python3 -c \
    'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
staged="$tmp/root$prefix"

cmake -S "$here/cmake" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$staged" \
    -DEMBED_SOURCE="$here/../../tools/example-embed.c" >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log" >&2; fail "cmake configure (find_package(clgrad)) failed"; }
grep -q "clgrad 0.1.0 from $staged" "$tmp/configure.log" ||
    { cat "$tmp/configure.log" >&2; fail "find_package did not report the staged clgrad 0.1.0"; }
cmake --build "$tmp/b" >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log" >&2; fail "building tools/example-embed.c with clgrad::clgrad failed"; }
libdir=$(dirname "$(find "$staged" -name 'libclgrad.so' | head -n 1)")
if command -v ldd >/dev/null 2>&1; then
    LD_LIBRARY_PATH="$libdir" ldd "$tmp/b/example-embed" | grep 'libclgrad' | grep -q "$tmp" ||
        fail "example-embed did not link the installed libclgrad"
fi
LD_LIBRARY_PATH="$libdir" "$tmp/b/example-embed" >"$tmp/embed.log" 2>&1 ||
    { cat "$tmp/embed.log" >&2; fail "example-embed (CMake build, installed library) failed"; }

# The version file refuses what it does not provide.
mkdir "$tmp/v9"
sed 's/find_package(clgrad 0.1 /find_package(clgrad 9.0 /' "$here/cmake/CMakeLists.txt" >"$tmp/v9/CMakeLists.txt"
if cmake -S "$tmp/v9" -B "$tmp/b9" -DCMAKE_PREFIX_PATH="$staged" -DEMBED_SOURCE=x.c >"$tmp/v9.log" 2>&1; then
    fail "find_package(clgrad 9.0) accepted clgrad 0.1.0"
fi
grep -q "0.1.0" "$tmp/v9.log" || { cat "$tmp/v9.log" >&2; fail "the version refusal does not name 0.1.0"; }
echo "cmake check: ok (find_package(clgrad 0.1) -> clgrad::clgrad from $staged, example-embed trained)"
