#!/usr/bin/env bash
# GPU checks, sized for a few minutes on one accelerator: the test suite on the
# device, the sinusoid demo, and meta-step timings on Omniglot-shaped tasks.
# Usage: bash benchmarks/gpu.sh [OUTPUT_DIR]   (logs go to OUTPUT_DIR, default runs/gpu)
set -uo pipefail
out=${1:-${OUT:-runs/gpu}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
py=${PYTHON:-python3}
{ nvidia-smi -L; date -u; $py -c 'import jax; print(jax.__version__, jax.devices())'; } 2>&1 | tee "$out/device.txt"
timeout 200 $py -m pytest -q -n 4 -p no:cacheprovider tests imaml_jax 2>&1 | tail -25 | tee "$out/pytest.txt"
timeout 90 $py -m experiments.sinusoid 2>/dev/null | tee "$out/sinusoid.txt"
timeout 120 $py -m benchmarks.meta_step 2>&1 | tee "$out/meta_step_5w1s.txt"
timeout 90 $py -m benchmarks.meta_step --ways 20 --meta_batch 16 --inner_steps 25 --maml_steps 5 --maml_lr 0.1 2>&1 | tee "$out/meta_step_20w1s.txt"
