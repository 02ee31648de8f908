"""LiteRT flatbuffers of an image classifier against the Keras model: size and latency per image.

``tfresnet.export.export_lite`` writes float32, float16 and full-int8 flatbuffers (uint8 pixels in,
crop and normalisation inside). Each answers one image at a time, as on a device; the peer is the
Keras model called on one image (a compiled ``tf.function``, the image already normalised). The
images have the size the model evaluates at (no resizing inside). The figure is the median
milliseconds per image over the rounds, interleaved, and the file sizes (Keras: ``model.keras``).
``mnist_resnet`` is the run trained here on 2,000 digits when ``--data_dir`` names MNIST (then the
top-1 on 2,000 test digits is printed too), else fresh weights; ``resnet50`` has fresh weights
(latency does not depend on them) and is calibrated on random images.

    python benchmarks/lite_latency.py --data_dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def mnist_model(work: str, data_dir: str | None, train_images: int = 2000, epochs: int = 3):
    """``(model, calibration, test images, test labels)``: trained on ``train_images`` digits with ``data_dir``."""
    import dataclasses  # noqa: PLC0415

    from tfresnet import data, models, training  # noqa: PLC0415
    from tfresnet.config import TrainConfig  # noqa: PLC0415
    from tfresnet.export import load_model  # noqa: PLC0415

    recipe = data.RECIPES["mnist"]
    if data_dir is not None and train_images == 0:  # real digits, fresh weights
        source = data.load_source("mnist", "test[:2000]", data_dir)
        model = models.create_model("mnist_resnet", preprocessing=recipe.preprocessing)
        return model, list(data.load_source("mnist", "train[:300]", data_dir).images), source.images, source.labels
    if data_dir is None:
        rng = np.random.default_rng(0)
        model = models.create_model("mnist_resnet", preprocessing=recipe.preprocessing)
        return model, list(rng.integers(0, 256, (300, 28, 28, 1), dtype=np.uint8)), rng.integers(
            0, 256, (50, 28, 28, 1), dtype=np.uint8), None
    run = os.path.join(work, "mnist")
    split = f"train[:{train_images}]"
    training.train(TrainConfig(model="mnist_resnet", dataset="mnist", data_dir=data_dir, train_split=split,
                               eval_split="test[:1000]", epochs=epochs, model_dir=run, mode="train"),
                   log=lambda line: None)
    train = data.load_source("mnist", split, data_dir)
    test = data.load_source("mnist", "test[:2000]", data_dir)
    model = load_model(run)
    assert dataclasses.asdict(model.preprocessing)["eval_view"] == "fit"
    return model, list(train.images[:300]), test.images, test.labels


def resnet50_model(calibration_count: int):
    import dataclasses  # noqa: PLC0415

    from tfresnet import models  # noqa: PLC0415
    from tfresnet.weights.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing  # noqa: PLC0415

    prep = dataclasses.replace(Preprocessing(IMAGENET_MEAN, IMAGENET_STD), eval_view="center_crop")
    model = models.create_model("resnet50", preprocessing=prep)
    rng = np.random.default_rng(0)
    # At the size the model evaluates: the shorter side at 224 / 0.875 = 256.
    images = rng.integers(0, 256, (max(calibration_count, 20), 256, 256, 3), dtype=np.uint8)
    return model, list(images[:calibration_count]), images[:20], None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mnist_resnet,resnet50")
    parser.add_argument("--images", type=int, default=50, help="images timed per round (top-1: all test digits)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--calibration_count", type=int, default=300)
    parser.add_argument("--data_dir", default=None, help="folder with mnist.npz: mnist_resnet trained on digits")
    parser.add_argument("--train_images", type=int, default=2000,
                        help="mnist_resnet: digits it is trained on (0: fresh weights)")
    parser.add_argument("--epochs", type=int, default=3, help="mnist_resnet: epochs it is trained for")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import tensorflow as tf  # noqa: PLC0415

    from tfresnet import data  # noqa: PLC0415
    from tfresnet.export import LiteClassifier, export_lite  # noqa: PLC0415

    results = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            if name == "mnist_resnet":
                model, calibration, images, labels = mnist_model(work, args.data_dir, args.train_images, args.epochs)
            elif name == "resnet50":
                model, calibration, images, labels = resnet50_model(args.calibration_count)
            else:
                raise SystemExit(f"--models: unknown model {name!r}; expected mnist_resnet or resnet50")
            calibration = calibration[:args.calibration_count]
            paths = export_lite(model, os.path.join(work, name), calibration)
            keras_file = os.path.join(work, f"{name}.keras")
            model.save(keras_file)
            timed = min(args.images, len(images))
            prep = model.preprocessing
            x = data.serving_images(tf.constant(images), data.eval_recipe(prep, model.num_classes), prep).numpy()
            keras_call = tf.function(lambda t: model(t, training=False))
            runners = {"keras": lambda i: keras_call(x[i:i + 1]).numpy()}
            for precision, path in paths.items():
                lite = LiteClassifier(path)
                runners[precision] = lambda i, lite=lite: lite.logits(images[i])
            for run in runners.values():  # warm-up: tracing, allocation
                run(0)
            rounds = {k: [] for k in runners}
            for _ in range(args.repeats):
                for key, run in runners.items():
                    tic = time.perf_counter()
                    for i in range(timed):
                        run(i)
                    rounds[key].append((time.perf_counter() - tic) / timed * 1000)
            sizes = {"keras": os.path.getsize(keras_file), **{p: os.path.getsize(f) for p, f in paths.items()}}
            row = {"ms_per_image": {k: statistics.median(v) for k, v in rounds.items()}, "bytes": sizes,
                   "rounds": rounds}
            if labels is not None:
                row["top1"] = {k: float(np.mean([np.argmax(run(i)) == labels[i] for i in range(len(images))]))
                               for k, run in runners.items()}
            results[name] = row
            print(f"{name}: " + "; ".join(
                f"{k} {row['ms_per_image'][k]:.2f} ms, {sizes[k] / 2**20:.2f} MiB"
                + (f", top-1 {row['top1'][k] * 100:.2f}%" if "top1" in row else "") for k in runners))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
