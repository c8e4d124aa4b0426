#!/bin/sh
# tests/install/check.sh - installs a built clgrad into a temporary folder (meson install
# --destdir) and builds tests/install/example.c against it through pkg-config, shared and
# static, then runs both. Proves a program outside the tree can use the installed library.
# Usage: tests/install/check.sh BUILD_DIR   (run by `meson test install`)
set -eu

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clgrad-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "install check: $*" >&2; exit 1; }

meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "meson install failed"; }

pc=$(find "$tmp/root" -name clgrad.pc | head -n 1)
[ -n "$pc" ] || fail "no clgrad.pc was installed"
export PKG_CONFIG_PATH="$(dirname "$pc")"
# The .pc names the real prefix; point it at the staged copy.
prefix=$(pkg-config --variable=prefix clgrad)
pcx() { pkg-config --define-variable=prefix="$tmp/root$prefix" "$@" clgrad; }
libdir=$(pcx --variable=libdir)
[ -f "$(pcx --variable=includedir)/clgrad.h" ] || fail "clgrad.h is not in the installed includedir"
# Cflags carry what the public headers need, not the private libraries' folders.
case " $(pcx --cflags) " in *cjson* | *libpng* | *clblast*) fail "private include folders in Cflags: $(pcx --cflags)" ;; esac

# Shared: exactly what a user types.
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$tmp/example" "$here/example.c" $(pcx --cflags --libs) -lm ||
    fail "compiling/linking against the shared library failed"
if command -v ldd >/dev/null 2>&1; then
    LD_LIBRARY_PATH="$libdir" ldd "$tmp/example" | grep 'libclgrad' | grep -q "$tmp" ||
        fail "the example did not link the installed libclgrad"
fi
LD_LIBRARY_PATH="$libdir" "$tmp/example" || fail "the example (shared) failed"

# The embedding example of tools/ builds the same way and must train (its loss falls).
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$tmp/example-embed" "$here/../../tools/example-embed.c" \
    $(pcx --cflags --libs) -lm || fail "compiling tools/example-embed.c through pkg-config failed"
LD_LIBRARY_PATH="$libdir" "$tmp/example-embed" >"$tmp/embed.log" 2>&1 ||
    { cat "$tmp/embed.log" >&2; fail "tools/example-embed.c (installed library) failed"; }

# Static: the archive plus the private libraries the .pc lists.
[ -f "$libdir/libclgrad.a" ] || fail "libclgrad.a was not installed"
# shellcheck disable=SC2046
"$cc" -std=c11 -o "$tmp/example-static" "$here/example.c" $(pcx --cflags) "$libdir/libclgrad.a" \
    $(pcx --static --libs | sed 's/-lclgrad\b//') -lm ||
    fail "linking the static library with pkg-config --static --libs failed"
"$tmp/example-static" || fail "the example (static) failed"

# The headers also parse as C++ (extern "C" guards).
if command -v c++ >/dev/null 2>&1; then
    # shellcheck disable=SC2046
    echo '#include <clgrad.h>' | c++ -x c++ -fsyntax-only -Wall -Wextra $(pcx --cflags) - ||
        fail "clgrad.h does not parse as C++"
fi
echo "install check: ok (prefix $prefix staged in a temp folder; shared and static)"
