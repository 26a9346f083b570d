#!/usr/bin/env bash
# Mini-ImageNet cells (Table 3) in a GPU window, whose calls carry at most
# 64 MiB each: the source files (162 MB of zips and CSVs) travel in parts over
# back-to-back calls to the same warm machine, are put together and checked
# there against ../shared/data/mini_imagenet/SHA256SUMS, then the cells train
# for CELL_MINUTES each, resumable (experiments.reproduce stores a
# checkpoint.msgpack in results/<cell>/ when a cell's meta-steps are not done).
#
# Here, once (data_carry_mi/ is git-ignored):
#   bash benchmarks/gpu_mini_imagenet.sh split
# prints the parts, then one run per part with no pause between the calls
# (the machine is given back 30 s after a call ends, and the parts with it):
#   run(command="bash benchmarks/gpu_mini_imagenet.sh receive data_carry_mi/part-aa",
#       carry=["data_carry_mi/part-aa"], timeout_s=120)
#   ... part-ab, then the last part with "receive ... && bash
#   benchmarks/gpu_mini_imagenet.sh train", timeout_s=560.
# Then, here: tar -xzf <files_at>/gpu_mini_imagenet.tar.gz   (updates results/)
#
# Environment: CELLS (default: mini_imagenet-5w1s-imaml_hf
# mini_imagenet-5w1s-maml), CELL_MINUTES (default 3), STAGE (where the parts
# gather on the device, default /root/mini_imagenet_stage), PART_MB (default
# 54: a part and the checkout stay under 64 MiB), PYTHON.
set -euo pipefail
stage=${STAGE:-/root/mini_imagenet_stage}
py=${PYTHON:-python3}
source_dir=../shared/data/mini_imagenet

case "${1:-}" in
  split)   # here: one tar of the source files, cut into parts
    rm -rf data_carry_mi && mkdir -p data_carry_mi
    tar -cf - -C "$source_dir" . | split -b "${PART_MB:-54}m" - data_carry_mi/part-
    ls -la data_carry_mi ;;
  receive)   # device: keep one carried part outside the checkout
    mkdir -p "$stage" && cp "$2" "$stage/" && ls -la "$stage" ;;
  assemble)   # the parts -> $stage/data, checked against SHA256SUMS
    mkdir -p "$stage/data"
    cat "$stage"/part-* | tar -xf - -C "$stage/data"
    (cd "$stage/data" && sha256sum -c --quiet SHA256SUMS) && echo "assembled: $stage/data" ;;
  train)   # device: assemble, then train the cells
    bash "$0" assemble
    out=${OUT:-runs/gpu_mini_imagenet}
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
    export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}.
    export MINI_IMAGENET_DIR="$stage/data"
    log="$out/gpu_mini_imagenet.log"
    { nvidia-smi -L || true; date -u; git log -1 --oneline; } 2>&1 | tee "$log"
    for cell in ${CELLS:-mini_imagenet-5w1s-imaml_hf mini_imagenet-5w1s-maml}; do
      timeout 400 $py -m experiments.reproduce "$cell" --noprogress \
        --session_minutes "${CELL_MINUTES:-3}" 2>&1 \
        | grep -v "examples/s\|Shuffling" | tail -8 | tee -a "$log" || true
    done
    tar -czf "$out/gpu_mini_imagenet.tar.gz" results "$log" ;;
  *) echo "usage: $0 split | receive PART | assemble | train" >&2; exit 2 ;;
esac
