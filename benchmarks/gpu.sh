#!/usr/bin/env bash
# GPU checks of issue 5, sized for under 8 minutes on one accelerator: meta-step
# throughput with FLOP/s and batching efficiency (items 1, 2, 5), compute and
# memory versus inner steps (item 3), the sinusoid demo, and a short Omniglot
# training if a TFDS data dir is given.
# Usage: bash benchmarks/gpu.sh [OUTPUT_DIR] [TFDS_DATA_DIR]
#   (logs go to OUTPUT_DIR, default runs/gpu; without TFDS_DATA_DIR no training)
set -uo pipefail
out=${1:-${OUT:-runs/gpu}}
data=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
py=${PYTHON:-python3}
{ nvidia-smi -L; date -u; $py -c 'import jax; print(jax.__version__, jax.devices())'; } 2>&1 | tee "$out/device.txt"
timeout 120 $py -m benchmarks.meta_step --batching 2>&1 | tee "$out/meta_step_5w1s.jsonl"
timeout 90 $py -m benchmarks.meta_step --ways 20 --meta_batch 16 --inner_steps 25 \
  --maml_steps 5 --maml_lr 0.1 2>&1 | tee "$out/meta_step_20w1s.jsonl"
timeout 150 $py -m benchmarks.inner_steps --repeats 3 --out "$out/inner_steps.png" \
  --json "$out/inner_steps.jsonl" 2>&1 | tail -30
timeout 40 $py -m experiments.sinusoid 2>/dev/null | tee "$out/sinusoid.txt"
if [ -n "$data" ]; then
  timeout 100 $py -m experiments.train --noprogress \
    --config experiments/configs/omniglot.py:5way1shot-imaml_gd \
    --config.meta_steps=2000 --config.log_every=250 --config.eval_every=1000 \
    --config.data_dir="$data" --workdir /tmp/gpu_train 2>&1 | tail -12 | tee "$out/train.log"
  $py -m experiments.evaluate --workdir /tmp/gpu_train 2>&1 | tail -1 | tee -a "$out/train.log"
fi
