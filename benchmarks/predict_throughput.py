"""Prediction speed: ``tfresnet.predict`` on image files against ``model.predict`` on the same images.

Both answer for the same images with the same model. ``predict`` reads the files: it decodes,
resizes and normalises each on parallel threads (the exported SavedModel's ``preprocess``) and runs
the model in batches. The peer, ``keras.Model.predict``, gets the images already decoded and
prepared, as float32 arrays in memory: what a hand-written loop costs at the least. It runs twice:
as a user calls it (``model.predict(x)``, its default batch of 32) and with ``predict``'s batch.
The rounds interleave the three (so a slow spell of the machine hits all alike); the figures are
images/s and the paired ratios. ``mnist_resnet`` reads 28x28 PNG digits, ``resnet50`` 256x256
JPEGs cropped to 224.

    python benchmarks/predict_throughput.py --model mnist_resnet --images 2000
    python benchmarks/predict_throughput.py --model resnet50 --images 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfresnet import data, models  # noqa: E402
from tfresnet.engine import serving  # noqa: E402
from tfresnet.predict import Classifier  # noqa: E402


def write_images(folder: str, model: str, count: int, data_dir: str | None) -> data.Recipe:
    """``count`` image files in ``folder``; returns the recipe the model is evaluated with."""
    rng = np.random.default_rng(0)
    if model == "mnist_resnet":
        recipe = data.RECIPES["mnist"]
        images = (data.load_source("mnist", f"test[:{count}]", data_dir).images if data_dir else
                  rng.integers(0, 256, (count, 28, 28, 1), dtype=np.uint8))
        encode = tf.io.encode_png
    else:
        recipe = data.RECIPES["imagenet2012"]
        images = rng.integers(0, 256, (count, 256, 256, 3), dtype=np.uint8)
        encode = tf.io.encode_jpeg
    for i, image in enumerate(images):
        tf.io.write_file(os.path.join(folder, f"{i:06d}.{'png' if encode is tf.io.encode_png else 'jpg'}"),
                         encode(image))
    return recipe


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mnist_resnet", choices=["mnist_resnet", "resnet50"])
    parser.add_argument("--images", type=int, default=2000, help="image files to predict")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="predict's batch (default: its own, tfresnet.predict.images_per_call)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of each")
    parser.add_argument("--data_dir", default=None, help="folder with mnist.npz (mnist_resnet: real digits)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="predict_throughput_")
    os.makedirs(os.path.join(work, "images"))
    recipe = write_images(os.path.join(work, "images"), args.model, args.images, args.data_dir)
    model = models.create_model(args.model, num_classes=recipe.num_classes, input_shape=recipe.image_shape,
                                preprocessing=recipe.preprocessing, class_names=recipe.class_names)
    serving.export_classifier(model, os.path.join(work, "saved_model"),
                              lambda images: data.serving_images(images, recipe), recipe.image_shape,
                              recipe.class_names)
    classifier = Classifier.load(os.path.join(work, "saved_model"))
    files = sorted(os.path.join(work, "images", f) for f in os.listdir(os.path.join(work, "images")))
    # The peer's input: the same images, decoded and prepared beforehand, in memory.
    prepared = np.stack([classifier.preprocess(tf.io.decode_image(tf.io.read_file(f), expand_animations=False)[None])[0]
                         for f in files])

    batch = args.batch_size or classifier.batch_size

    def ours() -> float:
        tic = time.perf_counter()
        count = sum(1 for _ in classifier.predict(files, top_k=5, batch_size=batch))
        return count / (time.perf_counter() - tic)

    def peer(batch_size: int | None) -> Callable[[], float]:
        def run() -> float:
            tic = time.perf_counter()
            model.predict(prepared, batch_size=batch_size, verbose=0)
            return len(prepared) / (time.perf_counter() - tic)
        return run

    runs = {"predict": ours, "model.predict": peer(None), f"model.predict, batch {batch}": peer(batch)}
    for run in runs.values():
        run()  # warm-up: tracing, thread pools
    rounds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            rounds[name].append(run())
    ratios = {peer_name: statistics.median(a / b for a, b in zip(rounds["predict"], rounds[peer_name]))
              for peer_name in list(runs)[1:]}
    result = {"args": vars(args), "batch": batch, "rounds": rounds, "paired_ratio": ratios,
              "images_per_sec": {k: statistics.median(v) for k, v in rounds.items()}}
    print(f"{args.model}, {args.images} images:")
    print(f"  tfresnet.predict from {os.path.splitext(files[0])[1]} files, batch {batch}: "
          f"{result['images_per_sec']['predict']:.0f} images/s")
    for name in list(runs)[1:]:
        print(f"  {name} on decoded, prepared arrays: {result['images_per_sec'][name]:.0f} images/s; "
              f"predict / it, median of paired rounds: {ratios[name]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
