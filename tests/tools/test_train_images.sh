#!/usr/bin/env bash
# tests/tools/test_train_images.sh - clgrad-train --data on image folders (tools/train_data.c):
# generated PNGs of crosses and squares (make_shapes.py), grey in train/ and test/ folders and
# RGB with a holdout, each trained to high accuracy by a model built for the data's channels,
# size and classes (read back from the saved state's shapes); a corrupt file named and then
# fatal or skipped as asked; sizes, classes and options that do not fit refused with a message.
# Usage: test_train_images.sh CLGRAD_TRAIN MAKE_SHAPES_PY
set -u
train="$1"
make_shapes="$2"
py=/usr/bin/python3
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
shapes() { # shapes FILE.safetensors NAME...: "NAME=[d, ...]" for each tensor named
    "$py" - "$@" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
print(" ".join("%s=%s" % (k, header[k]["shape"]) for k in sys.argv[2:]))
EOF
}
# Exits 1 (not 0, not a crash) and says $2 on stderr; $1 names the case.
refused() {
    local name="$1" want="$2"
    shift 2
    "$train" "$@" >"$tmp/out.txt" 2>"$tmp/err.txt"
    local rc=$?
    [ $rc -eq 1 ] && grep -qF -- "$want" "$tmp/err.txt"
    check "$name (exit $rc): $(head -1 "$tmp/err.txt")" $?
}
# Both shapes are drawn with a gap of at least 60 grey levels (each RGB channel: 10) between
# every shape and every background pixel, so a model that learned them is right on all but a
# few; chance is 0.5. Cosine schedules end each run at a rate of 0, so the last epoch does not
# land on a noisy step: the runs below end at 0.995-1.000 (cnn) and 1.000 (resnet) with each of
# seeds 1-6 (5 for resnet). 0.9 fails a model that did not learn the shapes, not one that rounds
# differently on another CPU.
THRESHOLD=0.9

# 1. Grey, 16 x 16, train/ and test/ folders: cnn (Adam) to high test accuracy.
"$py" "$make_shapes" "$tmp/grey/train" --per-class 300 --seed 1 &&
    "$py" "$make_shapes" "$tmp/grey/test" --per-class 100 --seed 2
check "grey folder generated" $?
"$train" --data "$tmp/grey" --model cnn --epochs 6 --batch 16 --lr-schedule cosine --save "$tmp/grey.safetensors" \
    >"$tmp/g.txt" 2>&1
check "cnn on the grey folder exits 0" $?
cat "$tmp/g.txt" | grep -v "^epoch [0-9]*/"
grep -q "^data: image folder: $tmp/grey/train and $tmp/grey/test; 2 classes (cross, square); images 1 x 16 x 16$" \
    "$tmp/g.txt"
check "the data line names both folders, the classes in sorted order and the size" $?
acc=$(field "$tmp/g.txt" test_accuracy)
awk -v a="$acc" -v t=$THRESHOLD 'BEGIN { exit !(a >= t) }'
check "grey test accuracy $acc >= $THRESHOLD (600 training, 200 test images)" $?
s=$(shapes "$tmp/grey.safetensors" conv1.weight fc1.weight fc2.weight)
[ "$s" = "conv1.weight=[32, 1, 3, 3] fc1.weight=[128, 1024] fc2.weight=[2, 128]" ]
check "cnn built for 1 channel, 16 x 16 (64 x 4 x 4 features), 2 classes: $s" $?

# 2. RGB, no test folder: --holdout 0.2 of every class; resnet (in_channels 3, normalised per channel).
"$py" "$make_shapes" "$tmp/rgb" --per-class 300 --channels 3 --seed 3
check "RGB folder generated" $?
"$train" --data "$tmp/rgb" --model resnet --holdout 0.2 --epochs 6 --batch 32 --save "$tmp/rgb.safetensors" \
    >"$tmp/c.txt" 2>&1
check "resnet on the RGB folder exits 0" $?
cat "$tmp/c.txt" | grep -v "^epoch [0-9]*/"
grep -q "^model resnet, .* 480 training and 120 test images$" "$tmp/c.txt"
check "a holdout of 0.2 keeps 60 of each class's 300 images for the test set" $?
grep -q "^normalisation: mean [0-9.]* [0-9.]* [0-9.]* std [0-9.]* [0-9.]* [0-9.]*$" "$tmp/c.txt"
check "normalised by three per-channel means and standard deviations" $?
acc=$(field "$tmp/c.txt" test_accuracy)
awk -v a="$acc" -v t=$THRESHOLD 'BEGIN { exit !(a >= t) }'
check "RGB test accuracy $acc >= $THRESHOLD" $?
s=$(shapes "$tmp/rgb.safetensors" conv1.weight fc.weight)
[ "$s" = "conv1.weight=[16, 3, 3, 3] fc.weight=[2, 64]" ]
check "resnet built for 3 channels and 2 classes: $s" $?
"$train" --data "$tmp/rgb" --model resnet --holdout 0.2 --eval-only --load "$tmp/rgb.safetensors" >"$tmp/e.txt" 2>&1 &&
    [ "$(field "$tmp/e.txt" test_accuracy)" = "$acc" ]
check "--eval-only draws the same holdout from the same seed (accuracy $(field "$tmp/e.txt" test_accuracy))" $?

# 3. --image-size resizes (to a size that is not square: lenet's dense layer follows it).
"$train" --data "$tmp/rgb" --model lenet --image-size 24x20 --epochs 1 --limit 64 --test-limit 32 \
    --save "$tmp/l.safetensors" >"$tmp/l.txt" 2>&1 &&
    grep -q "images 3 x 24 x 20" "$tmp/l.txt" && grep -q " 64 training and 32 test images$" "$tmp/l.txt"
check "--image-size 24x20 with --limit and --test-limit" $?
s=$(shapes "$tmp/l.safetensors" conv1.weight fc1.weight)
[ "$s" = "conv1.weight=[6, 3, 5, 5] fc1.weight=[120, 192]" ]
check "lenet's fc1 takes 16 x 4 x 3 features of 24 x 20 images: $s" $?

# 4. A corrupt (truncated) file: named, and the run fails; --bad-files skip leaves it out.
cp -r "$tmp/grey" "$tmp/bad"
head -c 100 "$tmp/grey/train/square/0007.png" >"$tmp/bad/train/square/0007.png"
refused "a truncated PNG fails the run" "$tmp/bad/train/square/0007.png: corrupt or truncated PNG" \
    --data "$tmp/bad" --epochs 1
grep -q "bad-files skip" "$tmp/err.txt"
check "the failure says how to skip such files" $?
"$train" --data "$tmp/bad" --epochs 1 --limit 64 --bad-files skip >"$tmp/out.txt" 2>"$tmp/err.txt"
check "--bad-files skip goes on (exit $?)" $?
grep -qF "skipped (--bad-files skip): image folder: $tmp/bad/train/square/0007.png: corrupt or truncated PNG" \
    "$tmp/err.txt" && grep -q "; 1 bad file skipped$" "$tmp/out.txt"
check "the skipped file is named: $(head -1 "$tmp/err.txt")" $?
cp "$tmp/grey/train/cross/0001.png" "$tmp/bad/train/square/0007.jpg"
refused "PNG data named .jpg is named as mislabelled" "0007.jpg: mislabelled" --data "$tmp/bad" --bad-files fail

# 5. Sizes: one image of another size is named; --image-size takes it; a model's smallest size.
"$py" "$make_shapes" "$tmp/odd" --per-class 1 --size 20 --seed 4
mkdir -p "$tmp/sized" && cp -r "$tmp/grey/train" "$tmp/grey/test" "$tmp/sized/"
cp "$tmp/odd/cross/0000.png" "$tmp/sized/train/cross/0005b.png"
refused "an image of another size is named" "$tmp/sized/train/cross/0005b.png: 20 x 20 pixels, not 16 x 16" \
    --data "$tmp/sized" --epochs 1
grep -q "image-size" "$tmp/err.txt"
check "the size error points at --image-size" $?
"$train" --data "$tmp/sized" --image-size 16x16 --epochs 1 --limit 32 --test-limit 32 >/dev/null 2>&1
check "--image-size 16x16 takes it (exit $?)" $?
refused "lenet refuses 8 x 8 images" "model lenet takes images of at least 12 x 12 pixels" \
    --data "$tmp/grey" --model lenet --image-size 8x8 --epochs 1

# 6. Layouts and options that do not fit.
mkdir -p "$tmp/mismatch/train" "$tmp/mismatch/test"
cp -r "$tmp/grey/train/cross" "$tmp/grey/train/square" "$tmp/mismatch/train/"
cp -r "$tmp/grey/test/cross" "$tmp/mismatch/test/"
cp -r "$tmp/grey/test/cross" "$tmp/mismatch/test/circle"
refused "test/ with other class folders than train/" "differ from those of $tmp/mismatch/train" \
    --data "$tmp/mismatch" --epochs 1
refused "--holdout with a test folder" "--holdout is for a folder without test/ or val/" \
    --data "$tmp/grey" --holdout 0.3 --epochs 1
mkdir -p "$tmp/one" && cp -r "$tmp/grey/train/cross" "$tmp/one/"
refused "a folder of one class" "has one class folder (cross)" --data "$tmp/one" --epochs 1
mkdir -p "$tmp/empty"
refused "a folder with neither IDX files nor class folders" "no train-images-idx3-ubyte" --data "$tmp/empty" --epochs 1
"$train" --data "$tmp/grey" --image-size 16 >/dev/null 2>"$tmp/err.txt"
rc=$?
[ $rc -eq 2 ] && grep -q "image-size must be HxW" "$tmp/err.txt"
check "--image-size 16 is bad usage (exit $rc)" $?
"$train" --data "$tmp/grey" --bad-files ignore >/dev/null 2>"$tmp/err.txt"
rc=$?
[ $rc -eq 2 ] && grep -q "bad-files must be fail or skip" "$tmp/err.txt"
check "--bad-files ignore is bad usage (exit $rc)" $?
"$train" --data "$tmp/grey" --holdout 1 >/dev/null 2>"$tmp/err.txt"
rc=$?
[ $rc -eq 2 ]
check "--holdout 1 is bad usage (exit $rc)" $?

echo "$pass passed, $failed failed"
[ "$failed" -eq 0 ]
