#!/usr/bin/env bash
# tests/dist/train_sync_bn.sh MPIRUN CLGRAD_TRAIN - clgrad-train --sync-bn: refused without
# --distributed; under mpirun with two ranks the cnn's two batch-norm layers are synchronized
# and it trains (an epoch of 512 Fashion-MNIST images: the epoch's mean training loss below
# chance, ln 10 = 2.303). That the replicas stay equal bit for bit, and equal one big batch,
# is tests/dist/test_dist.c's (rank 0 alone prints here).
set -u
mpirun=$1
train=$2

out=$("$train" --sync-bn --epochs 1 2>&1)
rc=$?
if [ $rc -ne 2 ] || ! grep -q -- "--sync-bn synchronizes batch norm over the ranks of --distributed" <<<"$out"; then
    echo "train_sync_bn.sh: --sync-bn without --distributed: status $rc, output:"; echo "$out"; exit 1
fi

out=$(timeout 240 "$mpirun" --oversubscribe -np 2 "$train" --distributed --sync-bn --model cnn --epochs 1 \
    --limit 512 --test-limit 200 --batch 32 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ]; then echo "train_sync_bn.sh: the run ended with status $rc"; exit 1; fi
for want in "batch norm synchronized over the ranks (2 layers)" "batch-norm statistics summed" "test_accuracy="; do
    if ! grep -qF "$want" <<<"$out"; then echo "train_sync_bn.sh: no \"$want\" in the output"; exit 1; fi
done
loss=$(sed -n 's/^epoch 1 train_loss \([0-9.]*\) .*/\1/p' <<<"$out")
if [ -z "$loss" ] || ! awk -v l="$loss" 'BEGIN { exit !(l < 2.302585) }'; then
    echo "train_sync_bn.sh: the epoch's training loss '$loss' is not below chance (2.303)"; exit 1
fi
echo "train_sync_bn.sh: trained, epoch training loss $loss"
