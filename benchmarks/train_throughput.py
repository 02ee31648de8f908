"""Training throughput of tfresnet's loop against Keras ``model.fit``, in one process.

Every variant trains the same registered model, on the same data, with the same optimizer; warm-up
steps (tracing, XLA compilation) are excluded. Figures are images/s and ratios against
``model.fit`` without XLA measured in the same run, so they hold on a noisy machine. The achieved
FLOP/s is given as a fraction of a large matmul measured in the same run.

    python benchmarks/train_throughput.py --model mnist_resnet --batch_size 128 \\
        --variants fit,loop,loop_xla,loop_bf16,loop_xla_bf16

Variants: ``fit``/``fit_xla`` (Keras ``compile``/``fit``), ``loop``/``loop_xla`` (tfresnet's
``make_train_step``), with ``_bf16``/``_fp16`` suffixes for mixed precision. All read the same
``tf.data`` pipeline, so on a GPU every step copies its batch to the device. A ``_resident`` suffix
(loop on synthetic data only, e.g. ``loop_xla_bf16_resident``) keeps one batch on the accelerator
instead, as ``tfresnet-train --dataset=synthetic`` does: the model's speed without the copy, which
Keras ``fit`` has no way to skip.
"""

from __future__ import annotations

import argparse
import collections
import glob
import itertools
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

from tfresnet import data, models, steps, training  # noqa: E402

PRECISION = {"": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def accelerators() -> list[str]:
    """Names of the logical GPUs/TPUs TensorFlow sees (empty on a CPU-only machine)."""
    return [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]


def forward_flops(model: keras.Model, input_shape) -> float:
    """FLOPs of one forward pass of one image, counted by TensorFlow's graph profiler."""
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, *input_shape), tf.float32))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(tf.compat.v1.profiler.profile(fn.graph, options=opts).total_float_ops)


def matmul_flops_per_sec(n: int = 4096, repeats: int = 10) -> float:
    """float32 FLOP/s of an n x n matmul: what this device can do at best, measured now."""
    a = tf.random.normal((n, n))
    mm = tf.function(lambda a: tf.linalg.matmul(a, a))
    mm(a).numpy()
    tic = time.perf_counter()
    for _ in range(repeats):
        out = mm(a)
    out.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - tic)


def dataset(kind: str, model_name: str, batch_size: int, data_dir: str | None):
    spec = models.model_spec(model_name)
    if kind == "synthetic":
        return data.synthetic(spec.input_shape, spec.num_classes, batch_size), spec.input_shape
    source = data.load_source(kind, "train", data_dir)
    return data.make_dataset(source, batch_size, training=True), source.recipe.image_shape


def data_rate(ds: tf.data.Dataset, batch_size: int, batches: int) -> float:
    it = iter(ds)
    for _ in range(5):
        next(it)
    tic = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
    _ = x.numpy()
    return batches * batch_size / (time.perf_counter() - tic)


def build_variant(name: str, args, ds, input_shape):
    """Builds, traces and compiles one variant; returns ``measure() -> images/s`` of a timed pass."""
    kind, *options = name.split("_")
    unknown = set(options) - {"xla", "bf16", "fp16", "resident"}
    if kind not in ("fit", "loop") or unknown or ("resident" in options and (kind, args.data) != ("loop", "synthetic")):
        raise SystemExit(f"unknown variant {name!r}: fit or loop, then _xla, _bf16 or _fp16, and (loop on "
                         "synthetic data) _resident")
    xla = "xla" in options
    precision = PRECISION[next((o for o in options if o in PRECISION), "")]
    keras.utils.set_random_seed(0)
    with training.precision_policy(precision):
        model = models.create_model(args.model, input_shape=input_shape)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if kind == "fit":
        # The same work as the loop: loss and accuracy metrics, all steps in one tf.function call.
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                      jit_compile=xla, steps_per_execution=args.steps)
        run = lambda: model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)  # noqa: E731
    else:
        optimizer.build(model.trainable_variables)
        loop = steps.make_train_step(model, optimizer, steps.make_loss(), steps.make_metrics("train"),
                                     args.batch_size, jit_compile=xla)
        it, n = iter(ds), tf.constant(args.steps)
        if "resident" in options:
            with tf.device((accelerators() or ["/cpu:0"])[0]):
                it = itertools.repeat(tf.nest.map_structure(tf.identity, next(it)))
        run = lambda: loop(it, n).numpy()  # noqa: E731
    run()  # trace + compile

    def measure() -> float:
        tic = time.perf_counter()
        run()
        return args.steps * args.batch_size / (time.perf_counter() - tic)

    return measure


def op_profile(measure, logdir: str, top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """Traces one timed pass with ``tf.profiler``; returns wall seconds and the op types taking most time.

    Op time is summed over TensorFlow's executor threads (two on two cores), so shares are of all
    op time, not of the wall time. The full trace stays in ``logdir`` for TensorBoard's profiler.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: PLC0415 - ships with TensorFlow

    tf.profiler.experimental.start(logdir)
    tic = time.perf_counter()
    measure()
    wall = time.perf_counter() - tic
    tf.profiler.experimental.stop()
    newest = max(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    space = xplane_pb2.XSpace()
    with open(newest, "rb") as f:
        space.ParseFromString(f.read())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads that run the ops
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "node/name:OpType"; skip executor bookkeeping
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps * 1e-12
    total = sum(seconds.values()) or 1.0
    return wall, [(op, t / total) for op, t in seconds.most_common(top)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist_resnet")
    parser.add_argument("--data", default="synthetic", help="synthetic or a dataset name (mnist, ...)")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per variant (after as many warm-up)")
    parser.add_argument("--variants", default="fit,loop,loop_xla")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all variants; the best round counts")
    parser.add_argument("--profile", default=None, help="trace one more pass per variant into this folder and "
                        "print the op types that take the time")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--matmul_size", type=int, default=4096, help="side of the reference matmul (FLOP/s peak)")
    args = parser.parse_args()

    ds, input_shape = dataset(args.data, args.model, args.batch_size, args.data_dir)
    devices = accelerators() or ["CPU"]
    print(f"{platform.node()} | {os.cpu_count()} CPUs | {', '.join(devices)} | TF {tf.__version__} | "
          f"{args.model} batch {args.batch_size} on {args.data}, {args.steps} timed steps")
    flops = 3 * forward_flops(models.create_model(args.model, input_shape=input_shape), input_shape)
    peak = matmul_flops_per_sec(args.matmul_size)
    variants = {v: build_variant(v, args, ds, input_shape) for v in args.variants.split(",")}
    # Rounds interleave the variants (A B C A B C ...), so a slow spell of the machine hits all alike.
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for name, measure in variants.items():
            samples[name].append(measure())
    rates = {v: max(r) for v, r in samples.items()}
    feed = data_rate(ds, args.batch_size, max(50, args.steps))
    # Best round vs best round, and the median of per-round ratios (robust to one slow spell).
    base_name = "fit" if "fit" in rates else next(iter(rates))
    base = rates[base_name]
    paired = {v: float(np.median(np.array(r) / np.array(samples[base_name]))) for v, r in samples.items()}
    print(f"{'variant':<16}{'images/s':>12}{'vs fit':>9}{'paired':>9}{'GFLOP/s':>10}{'of matmul':>11}  all rounds")
    for name, rate in rates.items():
        print(f"{name:<16}{rate:>12.1f}{rate / base:>9.2f}{paired[name]:>9.2f}{rate * flops / 1e9:>10.1f}"
              f"{rate * flops / peak:>11.1%}  " + " ".join(f"{r:.0f}" for r in samples[name]))
    print(f"{'input pipeline':<16}{feed:>12.1f}{feed / max(rates.values()):>9.1f}x the fastest variant")
    print(f"matmul ({args.matmul_size}²) {peak / 1e9:.1f} GFLOP/s; train step {flops / 1e9:.3f} GFLOP/image "
          "(3x forward)")
    if args.profile:
        for name, measure in variants.items():
            wall, ops = op_profile(measure, os.path.join(args.profile, name))
            print(f"profile {name} ({wall:.2f} s traced): " + ", ".join(f"{op} {share:.0%}" for op, share in ops))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "images_per_sec": rates, "rounds": samples, "paired_ratio": paired,
                       "data_images_per_sec": feed, "matmul_flops": peak, "train_flops_per_image": flops}, f, indent=1)


if __name__ == "__main__":
    main()
