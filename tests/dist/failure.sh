#!/usr/bin/env bash
# tests/dist/failure.sh MPIRUN TEST_DIST - a rank that dies (SIGKILL) or aborts with a message
# mid-training ends the whole job, with a message naming the rank, instead of hanging. The
# 120 s guard only turns a hang into a failure; the job normally ends within seconds.
set -u
mpirun=$1
bin=$2
for mode in --kill --abort; do
    out=$(timeout 120 "$mpirun" --oversubscribe -np 2 "$bin" "$mode" 2>&1)
    rc=$?
    if [ $rc -eq 124 ]; then echo "failure.sh: $mode: the job hung"; echo "$out"; exit 1; fi
    if [ $rc -eq 0 ]; then echo "failure.sh: $mode: the job succeeded"; echo "$out"; exit 1; fi
    case $mode in
    --kill) want="rank 1" ;;
    --abort) want="clgrad: rank 1 of 2: injected failure at step 3" ;;
    esac
    if ! grep -q "$want" <<<"$out"; then
        echo "failure.sh: $mode: no \"$want\" in the output:"; echo "$out"; exit 1
    fi
    echo "failure.sh: $mode: ended with status $rc and the message \"$want\""
done
