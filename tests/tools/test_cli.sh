#!/usr/bin/env bash
# tests/tools/test_cli.sh - the command line refuses what it cannot honour, and training stops
# on a non-finite loss: every numeric option of clgrad-train, clgrad-soak and clgrad-backprop
# out of range (4294967297 no longer wraps to 1, -1 no longer means "default", NaN is no
# rate), options that would be ignored, and --save/--metrics paths that cannot be written,
# each refused with exit 2 and a message naming the option, before any data or device is
# touched (--data points nowhere: a refusal that came late would say so). Then, on a small
# Fashion-MNIST run: a diverging rate stops training with exit 3, and the checkpoint of an
# earlier run is never replaced by a non-finite one (also with --allow-nonfinite); no temp
# file is left; --label-smoothing 0 is the plain loss and 0.1 another. Usage: test_cli.sh
# CLGRAD_TRAIN CLGRAD_SOAK CLGRAD_BACKPROP
set -u
train="$1"
soak="$2"
backprop="$3"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
pass=0
failed=0
check() { # check NAME CONDITION-EXIT-CODE
    if [ "$2" -eq 0 ]; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}
# refused TOOL NEEDLE ARGS...: exit 2 and a message with NEEDLE (a fixed string)
refused() {
    local tool="$1" needle="$2"
    shift 2
    "$tool" "$@" >"$tmp/out.txt" 2>&1
    local rc=$?
    [ $rc -eq 2 ] && grep -qF -- "$needle" "$tmp/out.txt"
    check "$(basename "$tool") $* -> exit $rc: $(grep -F -- "$needle" "$tmp/out.txt" | head -1)" $?
    [ $rc -eq 2 ] && grep -qF -- "$needle" "$tmp/out.txt" || cat "$tmp/out.txt"
}
nodata=(--data "$tmp/no-such-data")

# 1. clgrad-train: numbers in range, all of the argument.
refused "$train" "--batch must be an integer in 1..1048576, not '4294967297'" "${nodata[@]}" --batch 4294967297
refused "$train" "--batch must be an integer in 1..1048576, not '0'" "${nodata[@]}" --batch 0
refused "$train" "--batch must be an integer in 1..1048576, not '64x'" "${nodata[@]}" --batch 64x
refused "$train" "--epochs must be an integer in 0..1000000, not '-1'" "${nodata[@]}" --epochs -1
refused "$train" "--limit must be an integer in 0..2147483647, not '-5'" "${nodata[@]}" --limit -5
refused "$train" "--test-limit must be an integer in 0..2147483647, not '99999999999'" "${nodata[@]}" --test-limit 99999999999
refused "$train" "--lr must be a finite number >= 0, not '-1'" "${nodata[@]}" --lr -1
refused "$train" "--lr must be a finite number >= 0, not 'nan'" "${nodata[@]}" --lr nan
refused "$train" "--lr must be a finite number >= 0, not 'inf'" "${nodata[@]}" --lr inf
refused "$train" "--lr must be a finite number >= 0, not '1e999'" "${nodata[@]}" --lr 1e999
refused "$train" "--momentum must be a number in [0, 1], not '1.5'" "${nodata[@]}" --momentum 1.5
refused "$train" "--label-smoothing must be a number in [0, 1], not '1.5'" "${nodata[@]}" --label-smoothing 1.5
refused "$train" "--label-smoothing must be a number in [0, 1], not 'nan'" "${nodata[@]}" --label-smoothing nan
refused "$train" "--weight-decay must be a finite number >= 0, not '-0.1'" "${nodata[@]}" --weight-decay -0.1
refused "$train" "--seed must be an integer in 0..18446744073709551615, not '-1'" "${nodata[@]}" --seed -1
refused "$train" "--seed must be an integer in 0..18446744073709551615, not '18446744073709551616'" "${nodata[@]}" --seed 18446744073709551616
# 2. clgrad-train: options that would be ignored.
refused "$train" "--momentum is SGD's; the optimizer is adam" "${nodata[@]}" --optimizer adam --momentum 0.5
refused "$train" "--json goes with --list-models only" "${nodata[@]}" --json
refused "$train" "--save, --metrics and --allow-nonfinite need training" "${nodata[@]}" --eval-only --save "$tmp/x.st"
refused "$train" "--save, --metrics and --allow-nonfinite need training" "${nodata[@]}" --epochs 0 --metrics "$tmp/m.csv"
refused "$train" "--optimizer must be sgd or adam, not 'lbfgs'" "${nodata[@]}" --optimizer lbfgs
# 3. clgrad-train: outputs checked before training, not after the first epoch.
refused "$train" "--save $tmp/no-dir/x.st: the folder $tmp/no-dir does not exist" "${nodata[@]}" --save "$tmp/no-dir/x.st"
refused "$train" "--save $tmp is a folder, not a file" "${nodata[@]}" --save "$tmp"
refused "$train" "--metrics $tmp/no-dir/m.csv: the folder $tmp/no-dir does not exist" "${nodata[@]}" --metrics "$tmp/no-dir/m.csv"
refused "$train" "--save needs a file name" "${nodata[@]}" --save ""
# --plot: the format (or, without cairo, the option itself) is refused before any data is read.
refused "$train" "clgrad-train: --plot" "${nodata[@]}" --plot "$tmp/curves.jpg"
if [ "$(id -u)" -ne 0 ]; then # root writes anywhere
    mkdir "$tmp/ro" && chmod 555 "$tmp/ro"
    refused "$train" "--metrics $tmp/ro/m.csv: cannot write in the folder $tmp/ro" "${nodata[@]}" --metrics "$tmp/ro/m.csv"
fi

# 4. clgrad-soak.
refused "$soak" "--steps must be an integer in 2..100000000, not '4294967297'" "${nodata[@]}" --steps 4294967297
refused "$soak" "--batch must be an integer in 1..65536, not '0'" "${nodata[@]}" --batch 0
refused "$soak" "--subset must be an integer in 1..1000000, not '-3'" "${nodata[@]}" --subset -3
refused "$soak" "--every must be an integer in 1..100000000, not '0'" "${nodata[@]}" --every 0
refused "$soak" "--warmup (10) must be below --steps (10)" "${nodata[@]}" --steps 10 --warmup 10
refused "$soak" "--rss-slack must be a finite number >= 0, not 'nan'" "${nodata[@]}" --rss-slack nan
refused "$soak" "--rss-slack must be a finite number >= 0, not '-1'" "${nodata[@]}" --rss-slack -1
refused "$soak" "--data and --synthetic exclude each other" "${nodata[@]}" --synthetic

# 5. clgrad-backprop.
refused "$backprop" "--lr must be a finite number >= 0, not '-1'" --lr -1
refused "$backprop" "--lr must be a finite number >= 0, not 'nan'" --lr nan
refused "$backprop" "--steps must be an integer in 1..1000000, not '0'" --steps 0
refused "$backprop" "--steps must be an integer in 1..1000000, not '4294967297'" --steps 4294967297
refused "$backprop" "unknown option '--bogus'" --bogus
refused "$backprop" "--lr needs a value" --lr

# 6. A diverging run (Fashion-MNIST, lenet, a rate of 1e30) on top of a good checkpoint.
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP the training checks: $data missing (apt-get install dataset-fashion-mnist)"
else
    small=(--model lenet --limit 256 --test-limit 100 --batch 64 --seed 3)
    "$train" "${small[@]}" --epochs 1 --save "$tmp/good.st" --metrics "$tmp/m.csv" >"$tmp/good.txt" 2>&1
    check "a small run saves a checkpoint (exit $?)" $?
    # --metrics m.csv also writes each step's loss to m.steps.csv (clgrad-plot's per-step curve)
    [ "$(head -1 "$tmp/m.steps.csv")" = "epoch,loss" ] && [ "$(grep -c '^1,[0-9.]*$' "$tmp/m.steps.csv")" -eq 4 ]
    check "--metrics writes the 4 steps' losses beside it: $(tr '\n' ' ' <"$tmp/m.steps.csv")" $?
    cp "$tmp/good.st" "$tmp/good.copy"

    "$train" "${small[@]}" --epochs 2 --lr 1e30 --load "$tmp/good.st" --save "$tmp/good.st" \
        --metrics "$tmp/m.csv" >"$tmp/nan.txt" 2>&1
    rc=$?
    [ $rc -eq 3 ] && grep -q "clgrad-train: the training loss is nan at epoch 1, batch [0-9]* (images .*): stopping" "$tmp/nan.txt"
    check "a diverging run stops at the first non-finite loss, exit 3 (exit $rc): $(grep 'loss is' "$tmp/nan.txt")" $?
    cmp -s "$tmp/good.st" "$tmp/good.copy"
    check "the earlier checkpoint is left as it was" $?

    "$train" "${small[@]}" --epochs 2 --lr 1e30 --load "$tmp/good.st" --save "$tmp/good.st" \
        --allow-nonfinite >"$tmp/go.txt" 2>&1
    rc=$?
    [ $rc -eq 0 ] && grep -q "going on (--allow-nonfinite)" "$tmp/go.txt" &&
        grep -q "epoch 2 not saved: .*holds NaN" "$tmp/go.txt" && [ "$(tail -1 "$tmp/go.txt" | cut -c1-14)" = "test_accuracy=" ]
    check "--allow-nonfinite trains on, saves nothing non-finite (exit $rc): $(grep 'not saved' "$tmp/go.txt" | head -1 | cut -c1-100)" $?
    cmp -s "$tmp/good.st" "$tmp/good.copy"
    check "the earlier checkpoint is still as it was" $?

    # A fresh diverging run: nothing to save, nothing saved.
    "$train" "${small[@]}" --epochs 1 --lr 1e30 --save "$tmp/fresh.st" >"$tmp/fresh.txt" 2>&1
    rc=$?
    [ $rc -eq 3 ] && [ ! -e "$tmp/fresh.st" ] && grep -q "nothing saved to $tmp/fresh.st" "$tmp/fresh.txt"
    check "a fresh diverging run writes no checkpoint (exit $rc)" $?

    # --label-smoothing: 0 is the plain loss (the same checkpoint, byte for byte); 0.1 trains
    # on the smoothed loss (another checkpoint) and says so.
    "$train" "${small[@]}" --epochs 1 --label-smoothing 0 --save "$tmp/ls0.st" >"$tmp/ls0.txt" 2>&1 &&
        cmp -s "$tmp/ls0.st" "$tmp/good.copy"
    check "--label-smoothing 0 saves the checkpoint of a run without it" $?
    "$train" "${small[@]}" --epochs 1 --label-smoothing 0.1 --save "$tmp/ls1.st" >"$tmp/ls1.txt" 2>&1 &&
        grep -q "label smoothing 0.1" "$tmp/ls1.txt" && ! cmp -s "$tmp/ls1.st" "$tmp/good.copy"
    check "--label-smoothing 0.1 trains on the smoothed loss" $?

    ls -a "$tmp" | grep -q '\.tmp'
    [ $? -ne 0 ]
    check "no temp files left: $(ls -a "$tmp" | grep '\.tmp' | tr '\n' ' ')" $?
fi

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
