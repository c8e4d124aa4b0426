#!/bin/sh
# tests/tools/test_plot.sh - tools/clgrad-plot end to end: two runs in clgrad-train's metrics
# format (the header taken from tools/clgrad-train.c itself, so a change there fails here),
# one with a RUN.steps.csv, to PNG and SVG; python3 checks the PNG's signature and IHDR size
# and parses the SVG as XML. Also: usage errors and a bad CSV named with its line.
# Usage: test_plot.sh CLGRAD_PLOT TRAIN_SOURCE   (run by `meson test plot-cli`)
set -eu
plot=$1
train_src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/clgrad-plot-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "test_plot: $*" >&2; exit 1; }

# The header string as clgrad-train.c writes it: a METRICS_HEADER define or an fputs literal.
header=$(sed -n -e 's/^#define METRICS_HEADER "\(epoch,[a-z_,]*\)\\n".*/\1/p' \
    -e 's/.*fputs("\(epoch,[a-z_,]*\)\\n", f).*/\1/p' "$train_src" | head -n 1)
[ -n "$header" ] || fail "no metrics header found in $train_src"
case "$header" in epoch,train_loss,train_accuracy,test_loss,test_accuracy*) ;;
    *) fail "clgrad-train's metrics header changed: $header (update tools/plot.c's reader)";;
esac
{
    echo "$header"
    echo "1,0.612345,0.781200,0.501234,0.820100,2345.6,25.600"
    echo "2,0.401234,0.851200,0.421234,0.845100,2400.1,25.000"
    echo "3,0.351234,0.871200,0.391234,0.858100,2399.9,25.010"
} >"$tmp/sgd.csv"
{
    echo "$header"
    echo "1,0.552345,0.801200,0.461234,0.832100,2345.6,25.600"
    echo "2,0.371234,0.861200,0.401234,0.852100,2400.1,25.000"
    echo "3,0.321234,0.881200,0.381234,0.866100,2399.9,25.010"
} >"$tmp/adam.csv"
{
    echo "epoch,step,loss"
    for e in 1 2 3; do for s in 1 2 3 4 5 6 7 8 9 10; do
        echo "$e,$(( (e - 1) * 10 + s )),0.$(( 90 - e * 15 - s ))"
    done; done
} >"$tmp/adam.steps.csv"

"$plot" -o "$tmp/c.png" --width 800 --height 360 --title "sgd vs adam" "$tmp/sgd.csv" --label "adam 1e-3" "$tmp/adam.csv" \
    >"$tmp/out.txt" || fail "clgrad-plot (PNG) failed"
grep -q "2 runs, 6 epoch rows, 30 step losses" "$tmp/out.txt" || { cat "$tmp/out.txt"; fail "unexpected summary"; }
"$plot" -o "$tmp/c.svg" "$tmp/sgd.csv" "$tmp/adam.csv" >/dev/null || fail "clgrad-plot (SVG) failed"

python3 - "$tmp/c.png" "$tmp/c.svg" <<'PY' || fail "the files are not a valid PNG / well-formed SVG"
import struct, sys, xml.etree.ElementTree as ET, zlib
png = open(sys.argv[1], "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
pos, size, chunks = 8, None, []
while pos < len(png):
    n, kind = struct.unpack(">I4s", png[pos:pos + 8])
    data = png[pos + 8:pos + 8 + n]
    crc, = struct.unpack(">I", png[pos + 8 + n:pos + 12 + n])
    assert zlib.crc32(kind + data) == crc, "CRC of %r" % kind
    if kind == b"IHDR": size = struct.unpack(">II", data[:8])
    chunks.append(kind)
    pos += 12 + n
assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks, chunks
assert size == (800, 360), size
root = ET.parse(sys.argv[2]).getroot()
assert root.tag.endswith("svg"), root.tag
assert root.get("width", "").startswith("1200") and root.get("height", "").startswith("480"), root.attrib
print("PNG %dx%d, %d chunks; SVG %s x %s, %d elements" % (size[0], size[1], len(chunks), root.get("width"),
      root.get("height"), sum(1 for _ in root.iter())))
PY

# Refusals: no output, no runs, a bad row (file and line named), an unknown extension.
if "$plot" "$tmp/sgd.csv" 2>/dev/null; then fail "no -o accepted"; fi
if "$plot" -o "$tmp/x.png" 2>/dev/null; then fail "no runs accepted"; fi
printf '%s\n1,0.5,x,0.4,0.8,1,1\n' "$header" >"$tmp/bad.csv"
if "$plot" -o "$tmp/x.png" "$tmp/bad.csv" 2>"$tmp/err.txt"; then fail "a bad CSV accepted"; fi
grep -q "bad.csv:2: train_accuracy is 'x'" "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "bad CSV message"; }
if "$plot" -o "$tmp/x.gif" "$tmp/sgd.csv" 2>/dev/null; then fail ".gif accepted"; fi
[ ! -e "$tmp/x.png" ] || fail "a failed run left x.png"
echo "test_plot: ok"
