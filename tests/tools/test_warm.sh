#!/usr/bin/env bash
# tests/tools/test_warm.sh CLGRAD_INFO CLGRAD_TRAIN - clgrad-info --warm prepares a cache folder
# ahead of time: it writes the programs a model's training step and evaluation need (a second
# warm finds every one there and writes none), refuses an unknown model and a --model without
# --warm, and a clgrad-train run on the warmed folder saves the same checkpoint, byte for byte,
# as one with the cache off (when the Fashion-MNIST files are installed).
set -u
info=$1
train=$2
dir=$(mktemp -d /tmp/clgrad-warm-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "test_warm: $*"; exit 1; }
written() { # the N of "N programs written" in file $1
    sed -n 's/.*: \([0-9][0-9]*\) programs written to .*/\1/p' "$1" | tail -1
}

"$info" --warm --model no-such-model >"$dir/bad.log" 2>&1
[ $? -eq 2 ] || fail "--model no-such-model: want exit 2: $(cat "$dir/bad.log")"
grep -q "no such model" "$dir/bad.log" || fail "--model no-such-model: no reason given: $(cat "$dir/bad.log")"
"$info" --model lenet >"$dir/nowarm.log" 2>&1
[ $? -eq 2 ] || fail "--model without --warm: want exit 2: $(cat "$dir/nowarm.log")"

CLGRAD_CACHE_DIR="$dir/cache" "$info" --warm --model lenet >"$dir/warm1.log" 2>&1 ||
    fail "first warm failed: $(tail -3 "$dir/warm1.log")"
n1=$(written "$dir/warm1.log")
files=$(find "$dir/cache" -name '*.bin' | wc -l)
[ -n "$n1" ] && [ "$n1" -ge 1 ] || fail "first warm wrote no programs: $(cat "$dir/warm1.log")"
[ "$files" -eq "$n1" ] || fail "first warm says $n1 programs written, the folder holds $files files"
CLGRAD_CACHE_DIR="$dir/cache" "$info" --warm --model lenet >"$dir/warm2.log" 2>&1 ||
    fail "second warm failed: $(tail -3 "$dir/warm2.log")"
[ "$(written "$dir/warm2.log")" = 0 ] || fail "second warm wrote programs again: $(cat "$dir/warm2.log")"
echo "test_warm: lenet warmed: $n1 programs written, none the second time"

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "test_warm: Fashion-MNIST missing: the checkpoint comparison is skipped"
    exit 0
fi
run() { # run CACHE_DIR OUT
    CLGRAD_CACHE_DIR=$1 "$train" --model lenet --epochs 1 --limit 256 --test-limit 100 --batch 32 --seed 3 \
        --save "$2" >"$2.log" 2>&1 || fail "run into $2 failed: $(tail -3 "$2.log")"
}
run off "$dir/off.safetensors"
run "$dir/cache" "$dir/warmed.safetensors"
cmp -s "$dir/off.safetensors" "$dir/warmed.safetensors" || fail "the run on the warmed folder differs from the run with the cache off"
echo "test_warm: a run on the warmed folder saves the same checkpoint as one with the cache off"
