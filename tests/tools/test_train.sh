#!/usr/bin/env bash
# tests/tools/test_train.sh - end-to-end checks of tools/clgrad-train on a small
# Fashion-MNIST subset: learning beats chance, save -> load predicts the same, --load resumes,
# --no-shuffle is bit-identical, bad checkpoints are rejected. Usage: test_train.sh CLGRAD_TRAIN
set -u
train="$1"
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
    echo "SKIP: $data missing (apt-get install dataset-fashion-mnist)"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
failed=0
check() { # check NAME CONDITION-EXIT-CODE
    if [ "$2" -eq 0 ]; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}
field() { # field FILE KEY: the value after "KEY=" on the last line that has it
    grep -o "$2=[0-9.]*" "$1" | tail -1 | cut -d= -f2
}
common=(--model cnn --limit 3000 --test-limit 1000 --seed 7)

# 1. Learning: two epochs lower the training loss and beat chance (10%) clearly.
"$train" "${common[@]}" --epochs 2 --save "$tmp/a.safetensors" --metrics "$tmp/m.csv" >"$tmp/run1.txt" 2>&1
check "training run exits 0" $?
cat "$tmp/run1.txt"
acc=$(field "$tmp/run1.txt" test_accuracy)
l1=$(sed -n 2p "$tmp/m.csv" | cut -d, -f2)
l2=$(sed -n 3p "$tmp/m.csv" | cut -d, -f2)
echo "test_accuracy $acc, train loss $l1 -> $l2"
awk -v a="$acc" 'BEGIN { exit !(a > 0.6) }'
check "accuracy beats chance (0.1) clearly (> 0.6)" $?
awk -v a="$l1" -v b="$l2" 'BEGIN { exit !(b < a) }'
check "training loss falls between epochs" $?
[ "$(wc -l <"$tmp/m.csv")" -eq 3 ]
check "metrics CSV has a header and one row per epoch" $?
[ "$(tail -1 "$tmp/run1.txt" | grep -c '^test_accuracy=0\.[0-9]\{4\}$')" -eq 1 ]
check "last line is test_accuracy=0.xxxx" $?

# 2. Save -> load predicts the same: evaluating the checkpoint gives the final metrics.
"$train" "${common[@]}" --load "$tmp/a.safetensors" --eval-only >"$tmp/eval.txt" 2>&1
check "eval-only exits 0" $?
[ "$(field "$tmp/eval.txt" test_loss)" = "$(field "$tmp/run1.txt" test_loss)" ] &&
    [ "$(field "$tmp/eval.txt" test_accuracy)" = "$acc" ]
check "loaded checkpoint reproduces test loss and accuracy" $?

# 3. --load then more training resumes from the checkpoint (starts far below a fresh run).
"$train" "${common[@]}" --epochs 1 --load "$tmp/a.safetensors" --metrics "$tmp/r.csv" >/dev/null 2>&1
check "resumed run exits 0" $?
r1=$(sed -n 2p "$tmp/r.csv" | cut -d, -f2)
awk -v a="$l1" -v b="$r1" 'BEGIN { exit !(b < a) }'
check "resumed training loss ($r1) is below a fresh first epoch ($l1)" $?

# 4. --no-shuffle runs are bit-identical.
"$train" "${common[@]}" --epochs 1 --limit 1000 --no-shuffle --save "$tmp/n1.safetensors" >/dev/null 2>&1 &&
    "$train" "${common[@]}" --epochs 1 --limit 1000 --no-shuffle --save "$tmp/n2.safetensors" >/dev/null 2>&1 &&
    cmp "$tmp/n1.safetensors" "$tmp/n2.safetensors"
check "--no-shuffle runs give bit-identical checkpoints" $?

# 5. Corrupt and mismatched checkpoints are rejected with an error, never a crash.
head -c 300 "$tmp/a.safetensors" >"$tmp/trunc.safetensors"
"$train" "${common[@]}" --load "$tmp/trunc.safetensors" --eval-only >"$tmp/bad1.txt" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "clgrad-train" "$tmp/bad1.txt"
check "truncated checkpoint rejected (exit $rc): $(tail -1 "$tmp/bad1.txt")" $?
"$train" --model lenet --test-limit 100 --load "$tmp/a.safetensors" --eval-only >"$tmp/bad2.txt" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ]
check "cnn checkpoint into lenet rejected (exit $rc): $(tail -1 "$tmp/bad2.txt")" $?
"$train" --data "$tmp" --epochs 1 >"$tmp/bad3.txt" 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "no train-images-idx3-ubyte" "$tmp/bad3.txt"
check "missing data set named (exit $rc)" $?

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
