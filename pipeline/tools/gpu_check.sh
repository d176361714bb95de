#!/usr/bin/env bash
# The whole GPU check in one command, for a machine with a CUDA GPU and no network (see BENCHMARKS.md, "GPU"):
# a competition-sized generated set, the benchmark (efficientnet_b0, 224x224, AMP bf16, channels_last, naive vs
# tuned, the whole loop with loader workers), train-all for 5 folds x efficientnet_b0 x EPOCHS epochs plus
# ensemble with each stage timed, and the CUDA-marked tests. Figures and logs go to $OUT.
#
#   PERSONS=2700 EPOCHS=2 DEVICE=cuda WORKERS=12 OUT=/tmp/gpu bash pipeline/tools/gpu_check.sh
#   PERSONS=30 EPOCHS=1 DEVICE=cpu WORKERS=2 BATCH=16 OUT=/tmp/rehearsal bash pipeline/tools/gpu_check.sh   # rehearsal
#
# Wheels the machine lacks (albumentations and what it needs) are installed from .whl/ when that folder exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
PERSONS=${PERSONS:-2700}; EPOCHS=${EPOCHS:-2}; DEVICE=${DEVICE:-cuda}; WORKERS=${WORKERS:-12}; BATCH=${BATCH:-256}
OUT=${OUT:-runs/gpu-check}; JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MASKFOLD_BARS=0 GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
M="python3 -m pipeline.cli"
DATA=runs/gpu-data; RUN=runs/gpu-run
SETS=(--set data_dir=$DATA --set run_dir=$RUN --set cache_dir=runs/gpu-cache --set data.use_external=false
      --set 'backbones=[{name: efficientnet_b0, pretrained: false}]' --set train.img_size=[224,224]
      --set data.cache_size=[256,320] --set train.batch_size=$BATCH --set train.num_workers=$WORKERS
      --set train.device=$DEVICE --set train.amp=bf16 --set train.epochs=$EPOCHS --set folds.n_splits=5)
stamp() { echo "$(date +%s.%N) $1" >> "$OUT/timings.txt"; }
python3 -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" | tee "$OUT/device.txt"
stamp start
test -f $DATA/train/train.csv || $M demo-data --out $DATA --persons "$PERSONS" --eval-images $((PERSONS * 4 / 3)) --elder-pool 0 --jobs "$JOBS"
stamp demo-data
$M folds --config configs/base.yaml "${SETS[@]}" > "$OUT/folds.log" 2>&1
stamp folds
$M bench --config configs/base.yaml "${SETS[@]}" --device "$DEVICE" --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
stamp bench
$M train-all --config configs/base.yaml "${SETS[@]}" 2>&1 | tee "$OUT/train-all.log"
stamp train-all
$M ensemble --config configs/base.yaml "${SETS[@]}" 2>&1 | tee "$OUT/ensemble.log"
stamp ensemble
python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | tee "$OUT/pytest-gpu.log" || true
stamp gpu-tests
cp $RUN/run.json $RUN/log.txt "$OUT/" 2>/dev/null || true
awk 'NR > 1 { printf "%-10s %8.1f s\n", $2, $1 - prev } { prev = $1 }' "$OUT/timings.txt" | tee "$OUT/stages.txt"
