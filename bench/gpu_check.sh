#!/usr/bin/env bash
# The GPU figures of docs/speed.md in one command, each step under its own time limit,
# everything written under $OUT (default gpu-check/):
#   1. the CUDA tests (pytest -m gpu);
#   2. dalab bench --device cuda (bare, captured and packed steps, train loop,
#      conventional pipeline, evaluation, the small sweep one by one and packed);
#   3. the speedrun's time to accuracy, 3 seeds;
#   4. the theta x lambda sweep of BENCHMARKS.md (30 points, preset quick) packed,
#      then the same sweep one point at a time (cut at its limit if slower).
#
# Data: MNIST and BSDS500 copied into the git-ignored gpu-data/ of the checkout:
#   mkdir -p gpu-data && cp -r "$DALAB_DATA"/mnist "$DALAB_DATA"/BSR gpu-data/
# Run from the repository root (dalab runs from the checkout, nothing is installed):
#   OUT=/some/folder bash bench/gpu_check.sh
# Generated MNIST-M sets are cached in gpu-data/cache; run folders go to gpu-data/runs.
# The limits add up to 11 min, inside a 15-minute device slot with the machine's start.
set -u
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python}
DATA=${DATA:-$PWD/gpu-data}
mkdir -p "$OUT" "$DATA/cache" "$DATA/runs"
export PYTHONPATH=$PWD DALAB_DATA=$DATA DALAB_CACHE=$DATA/cache
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, note rc and time
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit} s): $*" | tee -a "$SUMMARY"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   $name: rc=$rc in $((SECONDS - start)) s$([ $rc = 124 ] && echo ' (time limit)')" \
        | tee -a "$SUMMARY"
}

{ nvidia-smi; git rev-parse HEAD; $PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } \
    > "$OUT/machine.txt" 2>&1
SWEEP=(--theta 0.2,0.4,0.6,0.8,1.0 --lambda 0,0.03,0.1,0.3,1 --protocol ts_tt,tst_tt
       --seeds 0 --preset quick --device cuda)

step tests 120 $PY -m pytest -q -m gpu tests
step bench 180 $PY -m dalab bench --device cuda --repeats 3 --workers 8 --json-out "$OUT/bench.json"
step sweep_packed 120 $PY -m dalab sweep "${SWEEP[@]}" --pack 32 --out "$DATA/runs/sweep-packed"
cp "$DATA/runs/sweep-packed/sweep.csv" "$OUT/sweep-packed.csv" 2>/dev/null
step speedrun 90 $PY bench/time_to_accuracy.py --device cuda --seeds 0 1 2
step sweep_unpacked 150 $PY -m dalab sweep "${SWEEP[@]}" --out "$DATA/runs/sweep-unpacked"
cp "$DATA/runs/sweep-unpacked/sweep.csv" "$OUT/sweep-unpacked.csv" 2>/dev/null
ls "$DATA/runs/sweep-unpacked/runs" 2>/dev/null | wc -l | sed 's/^/   unpacked points finished: /' \
    | tee -a "$SUMMARY"
