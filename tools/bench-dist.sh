#!/usr/bin/env bash
# tools/bench-dist.sh [BUILD_DIR] [IMAGES] - data-parallel training on one machine: one process
# with every PoCL thread against N ranks (mpirun) with cores/N threads each, the same global
# batch (64), lenet and cnn (also with --sync-bn) on the first IMAGES Fashion-MNIST images
# (default 12800).
# Prints images/s and each rank's communication per step (host staging and MPI together).
set -eu
build=${1:-build}
images=${2:-12800}
train="$build/tools/clgrad-train"
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
printf "%-6s %-32s %10s %22s\n" model setup images/s "comm/step per rank"
for model in lenet cnn; do
    common=(--model "$model" --epochs 1 --limit "$images" --test-limit 1000 --no-shuffle)
    one=$(POCL_MAX_PTHREAD_COUNT=$cores "$train" "${common[@]}" --batch 64 2>&1)
    ips=$(grep -o 'images/s [0-9]*' <<<"$one" | tail -1 | cut -d' ' -f2)
    printf "%-6s %-32s %10s %22s\n" "$model" "1 process, $cores threads" "$ips" "-"
    for n in 2; do
        [ "$n" -le "$cores" ] || continue
        # cnn also with synchronized batch norm (--sync-bn: 386 more doubles summed per step)
        syncs=("")
        [ "$model" = cnn ] && syncs+=(--sync-bn)
        for sync in "${syncs[@]}"; do
            out=$(mpirun --oversubscribe -np "$n" -x POCL_MAX_PTHREAD_COUNT=$((cores / n)) "$train" "${common[@]}" \
                  --batch $((64 / n)) --distributed $sync 2>&1)
            ips=$(grep -o 'images/s [0-9]*' <<<"$out" | tail -1 | cut -d' ' -f2)
            comm=$(grep -o 'communication per step and rank: [0-9.]* ms, [0-9]* KiB' <<<"$out" | cut -d: -f2)
            printf "%-6s %-32s %10s %22s\n" "$model" "$n ranks x $((cores / n)) thread(s)${sync:+ $sync}" "$ips" "$comm"
        done
    done
done
