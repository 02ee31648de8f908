"""Few-shot training speed: the ``fewshot`` task's train loop with and without XLA, in one process.

Both variants train the same ``protores`` encoder in a prototypical network on the same synthetic
N-way K-shot episodes, through the engine's own ``Task.make_train_loop``; rounds interleave the
variants (graph, XLA, graph, ...) so a slow spell of the machine hits both alike. The figure is
episodes/s (one episode is N x (K + Q) spectrograms) and the ratio to the graph loop.

    python benchmarks/fewshot_throughput.py --widths 8,12,16 --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfresnet import tasks  # noqa: E402
from tfresnet.config import TrainConfig  # noqa: E402
from tfresnet.engine import runtime


def build(cfg: TrainConfig, jit: bool):
    """``measure() -> episodes/s`` of one timed call of ``cfg.steps_per_loop`` steps, after a warm-up call."""
    task = tasks.FewShotTask(cfg, runtime.Runtime(tf.distribute.get_strategy(), jit, "float32"))
    task.load_data(training=True)
    keras.utils.set_random_seed(cfg.seed)
    model = task.build_model()
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loop = task.make_train_loop(model, optimizer, task.build_metrics(training=True))
    iterator, n = task.train_iterator(0), tf.constant(cfg.steps_per_loop)
    loop(iterator, n).numpy()  # trace, compile

    def measure() -> float:
        tic = time.perf_counter()
        loop(iterator, n).numpy()
        return cfg.steps_per_loop / (time.perf_counter() - tic)

    return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="24,32,48", help="protores widths (the package's default: 24,32,48)")
    parser.add_argument("--n_way", type=int, default=5)
    parser.add_argument("--k_shot", type=int, default=1)
    parser.add_argument("--n_query", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (episodes) per round and variant")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    cfg = TrainConfig(task="fewshot", dataset="synthetic", n_way=args.n_way, k_shot=args.k_shot, n_query=args.n_query,
                      steps_per_loop=args.steps, model_options={"widths": [int(w) for w in args.widths.split(",")]},
                      model_dir="unused")
    print(f"{platform.node()} | {os.cpu_count()} CPUs | TF {tf.__version__} | protores widths {args.widths}, "
          f"{args.n_way}-way {args.k_shot}-shot, {args.n_query} queries, {args.steps} timed steps")
    variants = {"loop": build(cfg, False), "loop_xla": build(cfg, True)}
    rounds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for name, measure in variants.items():
            rounds[name].append(measure())
    best = {v: max(r) for v, r in rounds.items()}
    paired = float(np.median(np.array(rounds["loop_xla"]) / np.array(rounds["loop"])))
    print(f"{'variant':<10}{'episodes/s':>12}{'ms/episode':>12}{'vs loop':>9}  all rounds")
    for name, rate in best.items():
        print(f"{name:<10}{rate:>12.2f}{1000 / rate:>12.1f}{rate / best['loop']:>9.2f}  "
              + " ".join(f"{r:.2f}" for r in rounds[name]))
    print(f"XLA vs graph, median of paired rounds: {paired:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "episodes_per_sec": best, "rounds": rounds, "paired_ratio": paired}, f,
                      indent=1)


if __name__ == "__main__":
    main()
