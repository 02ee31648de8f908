#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md (issue 6), one device call each (at most 10 minutes a call):
#
#   bash benchmarks/gpu.sh resnet50   # resnet50, 224x224 synthetic, batch 256: loop vs fit, XLA, bf16
#   bash benchmarks/gpu.sh mnist      # time to 99.4% MNIST test accuracy, compilation included
#
# Before the first call, stage TensorFlow as ../shared/gpu/README.md says (prepare.sh here, then one
# device run per part). The mnist call needs the data carried over: here,
# `mkdir -p .gpu/data && cp ../shared/data/mnist.npz .gpu/data/`, then run it with carry [".gpu/data"].
# Everything printed is also written to $OUT (fetched back by the device tool).
set -euo pipefail
if [[ "${1:-}" != resnet50 && "${1:-}" != mnist ]]; then
  echo "usage: bash benchmarks/gpu.sh resnet50|mnist" >&2
  exit 2
fi
bash /tmp/parts/assemble.sh >/dev/null
source /tmp/parts/env.sh
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
out="${OUT:-/tmp/gpu_benchmarks}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/card.txt"
case "${1:-}" in
  resnet50)
    # fit vs loop on the same tf.data pipeline (one host-to-device copy per step for both), and
    # the loop on a batch kept on the GPU, as `tfresnet-train --dataset=synthetic` runs.
    python3 benchmarks/train_throughput.py --model resnet50 --batch_size 256 --steps 100 --repeats 3 \
      --variants fit_xla_bf16,loop_xla_bf16,loop_xla_bf16_resident --json "$out/resnet50.json" 2>&1 \
      | tee "$out/resnet50.txt" ;;
  mnist)
    python3 benchmarks/time_to_accuracy.py --flagfile flags/mnist_fast.cfg --target 0.994 --data_dir .gpu/data \
      --json "$out/mnist.json" 2>&1 | tee "$out/mnist.txt" ;;
esac
