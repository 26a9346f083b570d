#!/usr/bin/env bash
# One GPU window (about 8 minutes): the test suite on the GPU, the GPU
# meta-step benchmarks, then the heaviest pending Table cells at their recipes
# (the paper's settings where a cell has no CPU recipe), each for a few
# minutes and resumable: experiments.reproduce stores a cell's checkpoint in
# results/<cell>/ whenever its meta-steps are not done, and its results when
# they are. Everything comes back as one tarball under $OUT.
#
# Prepare here, once (data_carry/ is git-ignored; ../shared does not travel):
#   mkdir -p data_carry/omniglot && cp ../shared/data/omniglot/images_*.zip data_carry/omniglot/
# Run with the device tool:
#   run(command="bash benchmarks/gpu_cells.sh", carry=["data_carry"], timeout_s=560)
# Then, here: tar -xzf <files_at>/gpu_window.tar.gz   (updates results/<cell>/)
#             python -m experiments.results_page; update results/CAMPAIGN.md.
#
# Environment: CELLS (space-separated cell names), CELL_MINUTES (training
# minutes per cell in this window), SUITE_SECONDS, RESULTS_DIR (default
# results), PYTHON.
set -uo pipefail
out=${OUT:-runs/gpu_window}
cells=${CELLS:-omniglot-20w1s-imaml_hf omniglot-20w1s-maml omniglot-20w1s-imaml_gd}
minutes=${CELL_MINUTES:-1.2}
results=${RESULTS_DIR:-results}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
export OMNIGLOT_DIR=${OMNIGLOT_DIR:-$PWD/data_carry/omniglot}
log="$out/gpu_window.log"
{ nvidia-smi -L; date -u; git log -1 --oneline
  $py -c 'import jax; print(jax.__version__, jax.devices())'; } 2>&1 | tee "$log"
# 1. The suite on the GPU (notebooks excluded; the fastest tests first fail fast).
timeout "${SUITE_SECONDS:-150}" $py -m pytest -q -x -n 8 -p no:cacheprovider \
  tests imaml_jax experiments 2>&1 | tail -15 | tee -a "$log"
# 2. Meta-step throughput at the paper's 5-way and 20-way settings.
timeout 60 $py -m benchmarks.meta_step --repeats 5 2>&1 | tee "$out/meta_step_5w1s.jsonl"
timeout 60 $py -m benchmarks.meta_step --ways 20 --meta_batch 16 --inner_steps 25 \
  --maml_steps 5 --maml_lr 0.1 --repeats 5 2>&1 | tee "$out/meta_step_20w1s.jsonl"
# 3. The pending cells, CELL_MINUTES of training each (plus compilation and,
#    for a finished cell, the 600-episode evaluations).
for cell in $cells; do
  timeout 240 $py -m experiments.reproduce "$cell" --noprogress \
    --results "$results" --session_minutes "$minutes" 2>&1 | grep -v "examples/s\|Shuffling" \
    | tail -8 | tee -a "$log"
done
tar -czf "$out/gpu_window.tar.gz" "$results" "$out"/*.jsonl "$log" 2>/dev/null
ls -la "$out"
