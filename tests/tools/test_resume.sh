#!/usr/bin/env bash
# tests/tools/test_resume.sh CLGRAD_TRAIN - a run killed with SIGKILL and resumed from its
# training state (--checkpoint, --save-every, --resume) ends with the same checkpoint, byte for
# byte, as the same run uninterrupted: cnn (Adam, batch norm, dropout) and lenet (SGD momentum),
# both with a warm-up + cosine schedule and augmentation, killed mid-epoch; its metrics CSV
# keeps the epochs before the kill.
set -u
train=$1
dir=$(mktemp -d /tmp/clgrad-resume-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "test_resume: $*"; exit 1; }

for model in cnn lenet; do
    args=(--model "$model" --epochs 2 --limit 640 --test-limit 200 --batch 32 --lr-schedule cosine --warmup 0.5
          --augment --seed 7)
    "$train" "${args[@]}" --save "$dir/$model-whole.safetensors" --metrics "$dir/whole.csv" >"$dir/whole.log" 2>&1 ||
        fail "$model: the uninterrupted run failed: $(tail -3 "$dir/whole.log")"

    # Kill the second run once it has saved its state at least twice (every 4 steps), then resume.
    state="$dir/$model-state.safetensors"
    rm -f "$dir/resumed.csv" "$dir/resumed.steps.csv"
    "$train" "${args[@]}" --save "$dir/$model-resumed.safetensors" --checkpoint "$state" --save-every 4 \
        --metrics "$dir/resumed.csv" >"$dir/killed.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        [ -f "$state" ] && [ "$(stat -c %Y "$state")" ] && break
        sleep 0.05
    done
    sleep 0.3
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ -f "$state" ] || fail "$model: no training state after the kill: $(tail -3 "$dir/killed.log")"
    if grep -q '^test_accuracy=' "$dir/killed.log"; then
        echo "test_resume: $model: the run finished before the kill; resuming from its last state"
    fi
    "$train" "${args[@]}" --save "$dir/$model-resumed.safetensors" --checkpoint "$state" --save-every 4 \
        --metrics "$dir/resumed.csv" --resume "$state" >"$dir/resumed.log" 2>&1 || fail "$model: the resumed run failed: $(tail -3 "$dir/resumed.log")"
    grep -q '^resumed from' "$dir/resumed.log" || fail "$model: no 'resumed from' line"
    cmp -s "$dir/$model-whole.safetensors" "$dir/$model-resumed.safetensors" ||
        fail "$model: the resumed run's checkpoint differs from the uninterrupted run's ($(grep '^resumed' "$dir/resumed.log"))"
    # The metrics keep every epoch, the killed run's included: the same epochs and test columns
    # (train_loss of a resumed epoch counts only its resumed part; rates and times differ).
    [ "$(cut -d, -f1,4,5 "$dir/whole.csv")" = "$(cut -d, -f1,4,5 "$dir/resumed.csv")" ] ||
        fail "$model: the resumed metrics differ: $(cat "$dir/resumed.csv") vs $(cat "$dir/whole.csv")"
    # The step losses of the epochs before the resumed one are kept too, the same values.
    e=$(sed -n 's/^resumed from .*: epoch \([0-9]*\),.*/\1/p' "$dir/resumed.log")
    [ -n "$e" ] && [ "$(awk -F, -v e="$e" 'NR > 1 && $1 < e' "$dir/whole.steps.csv")" = \
        "$(awk -F, -v e="$e" 'NR > 1 && $1 < e' "$dir/resumed.steps.csv")" ] ||
        fail "$model: the step losses before epoch $e differ after the resume"
    echo "test_resume: $model: $(grep '^resumed' "$dir/resumed.log"): final checkpoint identical, metrics of $(($(wc -l <"$dir/resumed.csv") - 1)) epochs"
done

# A training state from another optimizer is refused with a message.
"$train" --model lenet --epochs 1 --limit 64 --test-limit 50 --resume "$dir/cnn-state.safetensors" \
    >"$dir/bad.log" 2>&1 && fail "lenet resumed from cnn's state"
grep -q "saved with adam" "$dir/bad.log" || grep -q "differ\|missing\|shape" "$dir/bad.log" ||
    fail "no clear message for a foreign state: $(cat "$dir/bad.log")"
echo "test_resume: a foreign training state is refused: $(grep clgrad-train "$dir/bad.log" | head -1)"
