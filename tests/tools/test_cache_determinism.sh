#!/usr/bin/env bash
# tests/tools/test_cache_determinism.sh CLGRAD_TRAIN - the same run gives the same checkpoint,
# byte for byte, whatever the state of clgrad's cache: off (CLGRAD_CACHE_DIR=off), cold (an
# empty folder), warm (the same folder again), and six runs started at once on one empty
# folder (they race to build, store and read the same programs and the GEMM choice).
set -u
train=$1
dir=$(mktemp -d /tmp/clgrad-cachedet-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "test_cache_determinism: $*"; exit 1; }
run() { # run CACHE_DIR OUT
    CLGRAD_CACHE_DIR=$1 "$train" --model cnn --epochs 1 --limit 256 --test-limit 100 --batch 32 --seed 3 \
        --save "$2" >"$2.log" 2>&1 || fail "run into $2 failed: $(tail -3 "$2.log")"
}
run off "$dir/off.safetensors"
run "$dir/cache1" "$dir/cold.safetensors"
run "$dir/cache1" "$dir/warm.safetensors"
pids=()
for i in 1 2 3 4 5 6; do
    run "$dir/cache2" "$dir/par$i.safetensors" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel run failed"; done
for f in cold warm par1 par2 par3 par4 par5 par6; do
    cmp -s "$dir/off.safetensors" "$dir/$f.safetensors" || fail "$f differs from the run with the cache off"
done
echo "test_cache_determinism: off, cold, warm and 6 parallel first runs: identical checkpoints ($(sha256sum <"$dir/off.safetensors" | cut -c1-16))"
