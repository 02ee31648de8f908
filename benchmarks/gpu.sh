#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md (issue 18), one device call each, each under 8 minutes:
#
#   bash benchmarks/gpu.sh resnet50   # ResNet-50, 224x224 synthetic, batch 256, bfloat16, XLA: the PyTorch
#                                     # torch.compile peer, Keras fit, the fed loop and the resident loop
#   bash benchmarks/gpu.sh mnist      # time to 99.4% MNIST test accuracy (flags/mnist_fast.cfg) from process
#                                     # start, twice: with an empty XLA cache, then with the first run's
#
# Before the first call, stage TensorFlow as ../shared/gpu/README.md says (prepare.sh here, then one
# device run per part). The mnist call needs the data carried over: here,
# `mkdir -p .gpu/data && cp ../shared/data/mnist.npz .gpu/data/`, then run it with carry [".gpu/data"].
# Everything printed is also written to $OUT (fetched back by the device tool), the card's name first.
#
# Where /tmp/parts does not exist (a CPU machine) it runs with $PYTHON (default python3) as it is;
# GPU_BENCH_SMOKE=1 shrinks every run to check the script itself (tests/test_benchmarks.py does), and
# GPU_BENCH_DATA names another folder with mnist.npz.
set -euo pipefail
if [[ "${1:-}" != resnet50 && "${1:-}" != mnist ]]; then
  echo "usage: bash benchmarks/gpu.sh resnet50|mnist" >&2
  exit 2
fi
python="${PYTHON:-python3}"
if [[ -d /tmp/parts ]]; then
  bash /tmp/parts/assemble.sh >/dev/null
  source /tmp/parts/env.sh
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
out="${OUT:-/tmp/gpu_benchmarks}"
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU (nvidia-smi)"; \
  date -u +%Y-%m-%dT%H:%MZ; } | tee "$out/card.txt"
if [[ "${GPU_BENCH_SMOKE:-0}" == 1 ]]; then
  model=mnist_resnet; batch=8; steps=2; repeats=2; shrink=(--max_warmup 3)
  torch_size=(--image_size 32 --model resnet18 --no-compile); tf_size=(--matmul_size 256)
  mnist=(--target 0.3 -- --train_split=train[:1000] --eval_split=test[:256] --epochs=1 --batch_size=32)
else
  # resnet50 is keras.applications' v1 (the issue's baseline); torchvision's is v1.5, about 6% more
  # FLOPs: GPU_BENCH_MODEL=resnet50_v1_5 is the like-for-like comparison with the torch peer.
  model="${GPU_BENCH_MODEL:-resnet50}"; batch=256; steps=50; repeats=3; shrink=(); torch_size=(); tf_size=()
  mnist=(--target 0.994)
fi
case "$1" in
  resnet50)
    # The PyTorch peer first, in its own process (the GPU's memory is then all TensorFlow's), then the
    # variants in one process: each warmed up until two rounds agree within 3%, then interleaved rounds.
    "$python" benchmarks/torch_peer.py --batch_size "$batch" --steps "$steps" --repeats "$repeats" \
      "${shrink[@]}" "${torch_size[@]}" --json "$out/torch.json" 2>&1 | tee "$out/torch.txt" || echo "torch peer failed" | tee -a "$out/torch.txt"
    "$python" benchmarks/train_throughput.py --model "$model" --batch_size "$batch" --steps "$steps" \
      --repeats "$repeats" --agree 0.03 --variants fit_xla_bf16,loop_xla_bf16,loop_xla_bf16_resident \
      "${shrink[@]}" "${tf_size[@]}" --peer_json "$out/torch.json" --json "$out/resnet50.json" 2>&1 | tee "$out/resnet50.txt" ;;
  mnist)
    # A fresh compilation cache, so the first run compiles everything and the second finds it all.
    export TFRESNET_XLA_CACHE="$out/xla_cache"
    rm -rf "$TFRESNET_XLA_CACHE"
    for run in cold warm; do
      echo "== $run XLA cache ($TFRESNET_XLA_CACHE)" | tee -a "$out/mnist.txt"
      "$python" benchmarks/time_to_accuracy.py --flagfile flags/mnist_fast.cfg --data_dir "${GPU_BENCH_DATA:-.gpu/data}" \
        --json "$out/mnist_$run.json" "${mnist[@]}" 2>&1 | tee -a "$out/mnist.txt"
    done
    rm -rf "$TFRESNET_XLA_CACHE" ;;
esac
