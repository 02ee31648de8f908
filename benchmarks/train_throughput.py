"""Training throughput of tfresnet's loop against Keras ``model.fit``, in one process.

Every variant trains the same registered model, on the same data, with the same optimizer. After
the first call (tracing, XLA compilation) each variant is warmed up until two rounds in a row
agree within ``--agree`` (the first rounds after an XLA compilation run slow: GPU autotuning,
memory pools); the timed rounds then interleave the variants. Figures are images/s and ratios
against the first variant measured in the same run, so they hold on a noisy machine. The
achieved FLOP/s is given as a fraction of a large matmul measured in the same run.

    python benchmarks/train_throughput.py --model mnist_resnet --batch_size 128 \\
        --variants fit,loop,loop_xla,loop_bf16,loop_xla_bf16

Variants: ``fit``/``fit_xla`` (Keras ``compile``/``fit`` on the float32 pipeline, normalised on
the host, as Keras users feed it), ``loop``/``loop_xla`` (tfresnet's ``make_train_step``, fed as
``tfresnet-train`` feeds it: uint8 batches through ``Runtime.distribute``, fetched to the device
ahead of the step, normalised by the model on the device), with ``_bf16``/``_fp16`` suffixes for
mixed precision. ``_floatfeed`` makes a loop read the float32 pipeline instead (the feed before
issue 18); ``_resident`` (loop on synthetic data) keeps one batch on the device, as
``tfresnet-train --dataset=synthetic`` does: the step's speed without any copy, which the fed
loop is measured against. ``--peer_json`` adds the ratio to the PyTorch peer
(``benchmarks/torch_peer.py``) run on the same machine just before.
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

from tfresnet import data, models, training  # noqa: E402
from tfresnet.engine import runtime, steps

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


def card_name() -> str:
    """The accelerator's name (``NVIDIA H100 80GB HBM3``, ...), or ``CPU``."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


class Data:
    """The benchmark's input: ``make(image_dtype, input_context)`` datasets, their shape and normalisation."""

    def __init__(self, kind: str, model_name: str, batch_size: int, data_dir: str | None):
        spec = models.model_spec(model_name)
        self.batch_size, self.num_classes = batch_size, spec.num_classes
        if kind == "synthetic":
            self.source, self.input_shape = None, spec.input_shape
            self.preprocessing = data.synthetic_preprocessing(spec.input_shape[-1], spec.input_shape[0])
        else:
            self.source = data.load_source(kind, "train", data_dir)
            self.input_shape, self.preprocessing = self.source.recipe.image_shape, self.source.recipe.preprocessing

    def make(self, image_dtype: str = "float32", ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        if self.source is None:
            return data.synthetic(self.input_shape, self.num_classes, self.batch_size, input_context=ctx,
                                  image_dtype=image_dtype)
        return data.make_dataset(self.source, self.batch_size, training=True, input_context=ctx,
                                 image_dtype=image_dtype)


def data_rate(ds: tf.data.Dataset, batch_size: int, batches: int) -> float:
    it = iter(ds)
    for _ in range(5):
        next(it)
    tic = time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
    _ = x.numpy()
    return batches * batch_size / (time.perf_counter() - tic)


def build_variant(name: str, args, inputs: Data, strategy: tf.distribute.Strategy):
    """Builds, compiles and warms up one variant.

    Returns:
        ``(measure, warm-up rounds)``: ``measure() -> images/s`` of one timed call of ``--steps``
        steps, and the images/s of the warm-up rounds after the first call, the last two of which
        agree within ``--agree`` (unless ``--max_warmup`` ran out first).
    """
    kind, *options = name.split("_")
    unknown = set(options) - {"xla", "bf16", "fp16", "resident", "floatfeed"}
    if kind not in ("fit", "loop") or unknown or (kind == "fit" and {"resident", "floatfeed"} & set(options)) or (
            "resident" in options and args.data != "synthetic"):
        raise SystemExit(f"unknown variant {name!r}: fit or loop, then _xla, _bf16 or _fp16, and for a loop "
                         "_floatfeed or (on synthetic data) _resident")
    xla = "xla" in options
    precision = PRECISION[next((o for o in options if o in PRECISION), "")]
    keras.utils.set_random_seed(0)
    with training.precision_policy(precision), strategy.scope():
        model = models.create_model(args.model, input_shape=inputs.input_shape, preprocessing=inputs.preprocessing)
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        if kind == "fit":
            # The same work as the loop: loss and accuracy metrics, all steps in one tf.function call.
            model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"], jit_compile=xla, steps_per_execution=args.steps)
        else:
            optimizer.build(model.trainable_variables)
            metrics = steps.make_metrics("train")
    if kind == "fit":
        ds = inputs.make("float32")
        run = lambda: model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)  # noqa: E731
    else:
        loop = steps.make_train_step(model, optimizer, steps.make_loss(), metrics, args.batch_size, strategy,
                                     jit_compile=xla)
        feed = "float32" if "floatfeed" in options else "uint8"
        rt = runtime.Runtime(strategy, xla, precision, args.device_prefetch)
        it, n = iter(rt.distribute(lambda ctx: inputs.make(feed, ctx))), tf.constant(args.steps)
        if "resident" in options:
            it = itertools.repeat(next(it))  # already on the device: fetched there by the distributed iterator
        run = lambda: loop(it, n).numpy()  # noqa: E731

    def measure() -> float:
        tic = time.perf_counter()
        run()
        return args.steps * args.batch_size / (time.perf_counter() - tic)

    run()  # trace + compile
    warmup = [measure(), measure()]
    while abs(warmup[-1] / warmup[-2] - 1) > args.agree and len(warmup) < args.max_warmup:
        warmup.append(measure())
    return measure, warmup


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
    parser.add_argument("--agree", type=float, default=0.03, help="warm each variant up until two rounds agree "
                        "within this fraction")
    parser.add_argument("--max_warmup", type=int, default=8, help="at most this many warm-up rounds per variant")
    parser.add_argument("--device_prefetch", type=int, default=2, help="batches fetched to the device ahead (loop)")
    parser.add_argument("--strategy", default="auto", help="tfresnet's strategy name (auto: one GPU gets "
                        "OneDeviceStrategy, as tfresnet-train --strategy=auto)")
    parser.add_argument("--peer_json", default=None, help="benchmarks/torch_peer.py's JSON from this machine: adds "
                        "the ratio to it")
    parser.add_argument("--profile", default=None, help="trace one more pass per variant into this folder and "
                        "print the op types that take the time")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--matmul_size", type=int, default=4096, help="side of the reference matmul (FLOP/s peak)")
    args = parser.parse_args()

    strategy = runtime.make_strategy(args.strategy)
    if any("xla" in v for v in args.variants.split(",")) and (cache := runtime.compilation_cache_dir()):
        runtime.use_compilation_cache(cache)  # as tfresnet-train does: a rerun skips most compilation
    inputs = Data(args.data, args.model, args.batch_size, args.data_dir)
    input_shape = inputs.input_shape
    devices = accelerators() or ["CPU"]
    card = card_name()
    print(f"{platform.node()} | {os.cpu_count()} CPUs | {card} ({', '.join(devices)}) | TF {tf.__version__} | "
          f"{type(strategy).__name__} | {args.model} batch {args.batch_size} on {args.data}, {args.steps} steps a "
          "round", flush=True)
    flops = 3 * forward_flops(models.create_model(args.model, input_shape=input_shape), input_shape)
    peak = matmul_flops_per_sec(args.matmul_size)
    built = {v: build_variant(v, args, inputs, strategy) for v in args.variants.split(",")}
    variants = {v: measure for v, (measure, _) in built.items()}
    warmups = {v: warmup for v, (_, warmup) in built.items()}
    # Rounds interleave the variants (A B C A B C ...), so a slow spell of the machine hits all alike.
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for name, measure in variants.items():
            samples[name].append(measure())
    rates = {v: max(r) for v, r in samples.items()}
    feed = data_rate(inputs.make("uint8"), args.batch_size, max(50, args.steps))
    peer = None
    if args.peer_json and os.path.exists(args.peer_json):
        with open(args.peer_json) as f:
            peer = json.load(f).get("images_per_sec")
    # Best round vs best round, and the median of per-round ratios (robust to one slow spell).
    base_name = "fit" if "fit" in rates else next(iter(rates))
    base = rates[base_name]
    paired = {v: float(np.median(np.array(r) / np.array(samples[base_name]))) for v, r in samples.items()}
    width = max(16, *(len(v) + 2 for v in rates))
    print(f"ratios against {base_name}; paired: the median of per-round ratios")
    print(f"{'variant':<{width}}{'images/s':>12}{'ratio':>10}{'paired':>9}"
          + (f"{'vs torch':>10}" if peer else "") + f"{'GFLOP/s':>10}{'of matmul':>11}  rounds | warm-up")
    for name, rate in rates.items():
        print(f"{name:<{width}}{rate:>12.1f}{rate / base:>10.2f}{paired[name]:>9.2f}"
              + (f"{rate / peer:>10.2f}" if peer else "") + f"{rate * flops / 1e9:>10.1f}{rate * flops / peak:>11.1%}  "
              + " ".join(f"{r:.0f}" for r in samples[name]) + " | " + " ".join(f"{r:.0f}" for r in warmups[name]))
    for name in rates:
        if name.endswith("_resident") and name[:-len("_resident")] in rates:
            fed = name[:-len("_resident")]
            print(f"fed / resident: {fed} {rates[fed] / rates[name]:.3f} (best rounds), "
                  f"{float(np.median(np.array(samples[fed]) / np.array(samples[name]))):.3f} (paired)")
    if peer:
        print(f"torch peer (benchmarks/torch_peer.py, {args.peer_json}): {peer:.1f} images/s")
    print(f"{'input pipeline':<16}{feed:>12.1f}{feed / max(rates.values()):>9.1f}x the fastest variant")
    print(f"matmul ({args.matmul_size}²) {peak / 1e9:.1f} GFLOP/s; train step {flops / 1e9:.3f} GFLOP/image "
          "(3x forward)")
    if args.profile:
        for name, measure in variants.items():
            wall, ops = op_profile(measure, os.path.join(args.profile, name))
            print(f"profile {name} ({wall:.2f} s traced): " + ", ".join(f"{op} {share:.0%}" for op, share in ops))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "card": card, "strategy": type(strategy).__name__, "images_per_sec": rates,
                       "rounds": samples, "warmup": warmups, "paired_ratio": paired, "torch_images_per_sec": peer,
                       "data_images_per_sec": feed, "matmul_flops": peak, "train_flops_per_image": flops}, f, indent=1)


if __name__ == "__main__":
    main()
