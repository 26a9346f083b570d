#!/usr/bin/env bash
# Short Omniglot 5-way 1-shot trainings on one GPU with the protocol's settings,
# each followed by a 600-episode test evaluation. Sized for ~7 minutes on an H100.
# Usage: bash benchmarks/gpu_omniglot.sh DATA_DIR [OUTPUT_DIR] [STEPS]
#   DATA_DIR: a TFDS data dir with imaml_omniglot prepared (or "" to build it).
set -uo pipefail
data=${1:-}
out=${2:-${OUT:-runs/gpu}}
steps=${3:-2000}
runs=${RUNS:-/tmp/gpu_runs}   # checkpoints stay here; summaries go to $out
mkdir -p "$out" "$runs"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
py=${PYTHON:-python3}
nvidia-smi -L | tee "$out/device_omniglot.txt"
for variant in "imaml_gd exact" "imaml_gd gauss_newton"; do
  set -- $variant
  name="omniglot_5w1s_$1_$2"
  timeout 220 $py -m experiments.train --noprogress \
    --config experiments/configs/omniglot.py:5way1shot-$1 \
    --config.system=$2 --config.meta_steps=$steps --config.eval_every=500 \
    --config.checkpoint_every=500 --config.log_every=100 \
    --config.data_dir="$data" --workdir "$runs/$name" 2>&1 | tee "$out/$name.log"
  $py -m experiments.evaluate --workdir "$runs/$name" 2>&1 | tail -1 | tee -a "$out/$name.log"
  cp "$runs/$name/results.json" "$out/$name.results.json" 2>/dev/null
  cp "$runs/$name/metrics.jsonl" "$out/$name.metrics.jsonl" 2>/dev/null
done
