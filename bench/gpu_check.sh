#!/usr/bin/env bash
# The GPU figures of docs/speed.md in one command, each step under its own time limit,
# everything written under $OUT (default gpu-check/):
#   prepare         the five MNIST-M sets of the sweep generated into the cache (so that
#                   the timed sweeps below read them, packed and unpacked alike);
#   tests           the CUDA tests (pytest -m gpu on the files that hold them);
#   bench           dalab bench --device cuda (bare, captured and packed steps, train
#                   loop, conventional pipeline, evaluation, a small sweep both ways);
#   speedrun        the speedrun's time to accuracy, 3 seeds;
#   sweep_packed    the theta x lambda sweep of BENCHMARKS.md (30 points, preset quick)
#                   with --pack 32;
#   sweep_unpacked  the same sweep one point at a time (cut at its limit if slower);
#   speedrun_variants  time to accuracy of candidate speedrun recipes (VARIANTS, one
#                   "--preset P --set k=v ..." per line), 3 seeds each;
#   sota_probe      one epoch of the sota-gpu recipe, alone (its time per epoch);
#   sota_gpu        the sota-gpu preset, seeds 0 1 2 side by side on the one GPU;
#   sota_variants   candidate sota-gpu recipes (SOTA_VARIANTS, one line of dalab train
#                   flags each), seed 0, all side by side; each run's metrics.csv comes
#                   back, so a run cut at the limit still shows its epochs;
#   compare         dalab compare --methods all (3 seeds, theta 0.2 0.6 1.0, preset
#                   quick) with 8 runs side by side; its tables and every run's
#                   result.json and metrics.csv come back as compare.tar.gz (a second
#                   call with the tar in gpu-data/ resumes where the first was cut).
#   office_probe    Office-31 A -> W with the office preset (tllib's ResNet-50 recipe), 2
#                   epochs of its 20 (2,000 steps: its time per step and first figures);
#                   ResNet-50's weights must be in gpu-data/ (resnet50-0676ba61.pth:
#                   the machine is offline), else EfficientNet-Lite0 from gpu-data/cache;
#   office          the office preset, A -> W and D -> A, DANN, seed 0, side by side;
#   distributed     the data-parallel path on NCCL: one epoch of speedrun-gpu alone and
#                   under torchrun with one process (--distributed), images/s and
#                   accuracies of both (bench/distributed.py, a JSON line each), then
#                   the torchrun run with --sync-bn (distributed-sync-bn.json);
# STEPS picks some (default: prepare tests bench speedrun sweep_packed sweep_unpacked
# sota_probe), e.g. STEPS="prepare sota_variants" or STEPS="prepare distributed".
#
# Data: MNIST and BSDS500 copied into the git-ignored gpu-data/ of the checkout:
#   mkdir -p gpu-data && cp -r "$DALAB_DATA"/mnist "$DALAB_DATA"/BSR gpu-data/
# and for the office steps Office-31 (88 MB) and the backbone weights:
#   cp -r "$DALAB_DATA"/office31 gpu-data/ && mkdir -p gpu-data/cache/weights &&
#   cp "$DALAB_CACHE"/weights/efficientnet_lite0.safetensors gpu-data/cache/weights/
# Run from the repository root (dalab runs from the checkout, nothing is installed):
#   OUT=/some/folder bash bench/gpu_check.sh
# Generated MNIST-M sets are cached in gpu-data/cache; run folders go to gpu-data/runs.
# The default steps' limits add up to 9 min 10 s (a 15-minute slot leaves room for one more call).
set -u
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python}
DATA=${DATA:-$PWD/gpu-data}
STEPS=${STEPS:-prepare tests bench speedrun sweep_packed sweep_unpacked sota_probe}
mkdir -p "$OUT" "$DATA/cache" "$DATA/runs"
export PYTHONPATH=$PWD DALAB_DATA=$DATA DALAB_CACHE=$DATA/cache
SUMMARY=$OUT/summary.txt
touch "$SUMMARY"

step() {  # step NAME SECONDS COMMAND...: run if picked, log to $OUT/NAME.log, note rc, time
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    local start=$SECONDS
    echo "== $name (limit ${limit} s): $*" | tee -a "$SUMMARY"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "   $name: rc=$rc in $((SECONDS - start)) s$([ $rc = 124 ] && echo ' (time limit)')" \
        | tee -a "$SUMMARY"
}

prepare() {  # the sweep's MNIST-M sets, in parallel
    for theta in 0.2 0.4 0.6 0.8 1.0; do
        $PY -m dalab data mnistm --theta $theta &
    done
    wait
}

compare() {  # resumable: unpack an earlier call's runs first (gpu-data/compare.tar.gz)
    local dir=$DATA/runs/compare
    [ -f "$DATA/compare.tar.gz" ] && mkdir -p "$DATA/runs" && tar -xzf "$DATA/compare.tar.gz" -C "$DATA/runs"
    $PY -m dalab compare --methods all --seeds 0,1,2 --theta 0.2,0.6,1.0 --preset quick \
        --device cuda --jobs 8 --out "$dir"
}

speedrun_variants() {  # each line of $VARIANTS: arguments of bench/time_to_accuracy.py
    local i=0
    while read -r line; do
        [ -z "$line" ] && continue
        i=$((i + 1))
        echo "variant $i: $line" >> "$OUT/variants.txt"
        $PY bench/time_to_accuracy.py --device cuda --seeds 0 1 2 $line > "$OUT/variant-$i.log" 2>&1
        tail -1 "$OUT/variant-$i.log" | $PY -c "import json,sys; r=json.loads(sys.stdin.read()); print('   ', r['seconds_to_accuracy'], [p['final_accuracy'] for p in r['per_seed']], [p['train_seconds'] for p in r['per_seed']])" >> "$OUT/variants.txt" 2>/dev/null \
            || echo "    no result (variant-$i.log)" >> "$OUT/variants.txt"
    done <<< "$VARIANTS"
}

sota_variants() {  # each line of $SOTA_VARIANTS: dalab train flags after --preset sota-gpu
    local i=0
    while read -r line; do
        [ -z "$line" ] && continue
        i=$((i + 1))
        echo "sota variant $i: $line" >> "$OUT/sota-variants.txt"
        $PY -m dalab train --preset sota-gpu --device cuda --seed 0 $line \
            --out "$DATA/runs/sota-variant-$i" > "$DATA/runs/sota-variant-$i.log" 2>&1 &
    done <<< "$SOTA_VARIANTS"
    wait
}

office_weights() {  # tllib's ResNet-50 file when carried, else the Lite0 in the cache
    if [ -f "$DATA/resnet50-0676ba61.pth" ]; then
        echo "--pretrained $DATA/resnet50-0676ba61.pth"
    else
        echo "--network efficientnet_lite0 --pretrained imagenet"
    fi
}

office() {  # A -> W and D -> A side by side, the whole recipe
    for task in amazon:webcam dslr:amazon; do
        $PY -m dalab train --preset office $(office_weights) --device cuda \
            --source office31:${task%%:*} --target office31:${task##*:} \
            --out "$DATA/runs/office-${task%%:*}-${task##*:}" \
            > "$DATA/runs/office-${task%%:*}-${task##*:}.log" 2>&1 &
    done
    wait
}

distributed() {  # the same epoch alone and as a torchrun job of one process (NCCL)
    local flags="--preset speedrun-gpu --device cuda --epochs 1 --log-every 26 --cuda-graphs false"
    $PY bench/distributed.py --out "$DATA/runs/distributed" --processes 1 -- $flags \
        && $PY -m torch.distributed.run --standalone --nproc_per_node 1 -m dalab -q train \
            $flags --distributed --sync-bn --out "$DATA/runs/distributed/sync-bn"
}

sota_gpu() {  # three seeds side by side; each run folder holds its time and figures
    for seed in 0 1 2; do
        $PY -m dalab train --preset sota-gpu --device cuda --seed $seed \
            --out "$DATA/runs/sota-gpu-$seed" > "$DATA/runs/sota-gpu-$seed.log" 2>&1 &
    done
    wait
}

{ nvidia-smi; git rev-parse HEAD; $PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } \
    > "$OUT/machine.txt" 2>&1
SWEEP=(--theta 0.2,0.4,0.6,0.8,1.0 --lambda 0,0.03,0.1,0.3,1 --protocol ts_tt,tst_tt
       --seeds 0 --preset quick --device cuda)

export -f prepare sota_gpu sota_variants speedrun_variants compare office office_weights \
    distributed
export PY OUT DATA VARIANTS=${VARIANTS:-"--preset speedrun"}
# longer training, the network without the input's instance norm, and the previous
# sota-gpu (dann_bn, 12 epochs) on the same card
export SOTA_VARIANTS=${SOTA_VARIANTS:-"--epochs 20
--network vada_plain
--network dann_bn --epochs 12"}
step prepare 40 bash -c prepare
step tests 60 $PY -m pytest -q -m gpu tests/test_graph.py tests/test_pack.py tests/test_speed.py \
    tests/test_evaluate.py
step bench 140 $PY -m dalab bench --device cuda --repeats 3 --workers 8 --json-out "$OUT/bench.json"
step speedrun 60 $PY bench/time_to_accuracy.py --device cuda --seeds 0 1 2
step speedrun_variants 150 bash -c speedrun_variants
step sweep_packed 90 $PY -m dalab sweep "${SWEEP[@]}" --pack 32 --out "$DATA/runs/sweep-packed"
cp "$DATA/runs/sweep-packed/sweep.csv" "$OUT/sweep-packed.csv" 2>/dev/null
step sweep_unpacked 100 $PY -m dalab sweep "${SWEEP[@]}" --out "$DATA/runs/sweep-unpacked"
cp "$DATA/runs/sweep-unpacked/sweep.csv" "$OUT/sweep-unpacked.csv" 2>/dev/null
[[ " $STEPS " == *" sweep_unpacked "* ]] && ls "$DATA/runs/sweep-unpacked/runs" 2>/dev/null \
    | wc -l | sed 's/^/   unpacked points finished: /' | tee -a "$SUMMARY"
step sota_probe 60 $PY -m dalab train --preset sota-gpu --device cuda --epochs 1 \
    --out "$DATA/runs/sota-probe"
cp "$DATA/runs/sota-probe/result.json" "$OUT/sota-probe.json" 2>/dev/null
step sota_gpu 420 bash -c sota_gpu
if [[ " $STEPS " == *" sota_gpu "* ]]; then  # results, or each epoch's figures if cut
    for seed in 0 1 2; do
        cp "$DATA/runs/sota-gpu-$seed/result.json" "$OUT/sota-gpu-$seed.json" 2>/dev/null
        cp "$DATA/runs/sota-gpu-$seed/metrics.csv" "$OUT/sota-gpu-$seed.csv" 2>/dev/null
    done
fi
step sota_variants 300 bash -c sota_variants
if [[ " $STEPS " == *" sota_variants "* ]]; then
    for run in "$DATA"/runs/sota-variant-*/; do
        name=$(basename "$run")
        cp "$run/result.json" "$OUT/$name.json" 2>/dev/null
        cp "$run/metrics.csv" "$OUT/$name.csv" 2>/dev/null
        tail -c 2000 "$DATA/runs/$name.log" > "$OUT/$name.log" 2>/dev/null
    done
fi
step office_probe 240 bash -c '$PY -m dalab train --preset office $(office_weights) \
    --device cuda --source office31:amazon --target office31:webcam --epochs 2 \
    --out "$DATA/runs/office-probe"'
cp "$DATA/runs/office-probe/result.json" "$OUT/office-probe.json" 2>/dev/null
cp "$DATA/runs/office-probe/metrics.csv" "$OUT/office-probe.csv" 2>/dev/null
step office 540 bash -c office
if [[ " $STEPS " == *" office "* ]]; then
    for run in "$DATA"/runs/office-*-*/; do
        cp "$run/result.json" "$OUT/$(basename "$run").json" 2>/dev/null
        cp "$run/metrics.csv" "$OUT/$(basename "$run").csv" 2>/dev/null
    done
fi
step distributed 150 bash -c distributed
cp "$DATA/runs/distributed/sync-bn/result.json" "$OUT/distributed-sync-bn.json" 2>/dev/null
step compare 420 bash -c compare
if [[ " $STEPS " == *" compare "* ]]; then  # the runs' results and curves, no weights
    (cd "$DATA/runs" && tar -czf "$OUT/compare.tar.gz" --exclude='*.safetensors' \
        --exclude=checkpoints --exclude='*.png' compare)
fi
exit 0
