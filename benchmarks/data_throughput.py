"""Input pipelines against the model that consumes them, in one process.

Times the MNIST ``.npz`` training pipeline and the synthetic source (images/s delivered), then
``mnist_resnet`` training on the synthetic batch with tfresnet's loop (images/s consumed), and
prints how many times faster the data arrives than the model can use it. The pipeline must not be
the bottleneck: the target is 10x.

Then ImageNet-style input: a folder of full-size JPEGs (``--jpeg_images`` of 500x375, generated in a
temporary folder) and the same images as TFRecord shards, each through the training pipeline
(random-resized crop decoded from the JPEG window), next to the old path in the same run (every
image fully decoded and squashed to a square, then cropped), in images/s per CPU core and in cores
needed to feed ``--gpu_target`` images/s; and the time to the first batch of a fresh run and of one
resumed 8 epochs in (the old path skips by reading and decoding every skipped image). The
``folder``/``shards`` rows normalise on the host (float32 batches); the ``uint8`` rows hand the
pixels on as the trainer does since issue 18, leaving the normalisation to the device.

    python benchmarks/data_throughput.py --data_dir ../shared/data --batch_size 128
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_throughput import data_rate  # noqa: E402 - same folder

from tfresnet import data, models  # noqa: E402
from tfresnet.data import augment
from tfresnet.engine import steps


def consumed(batch_size: int, steps_: int) -> float:
    model = models.create_model("mnist_resnet")
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    loop = steps.make_train_step(model, optimizer, steps.make_loss(), steps.make_metrics("train"), batch_size)
    it = iter(data.synthetic((28, 28, 1), 10, batch_size))
    loop(it, tf.constant(5)).numpy()
    tic = time.perf_counter()
    loop(it, tf.constant(steps_)).numpy()
    return steps_ * batch_size / (time.perf_counter() - tic)


def write_jpegs(folder: str, count: int, classes: int = 8, size=(375, 500)) -> None:
    """``count`` smooth random JPEGs of ``size`` (quality 90, like camera files) in ``classes`` folders."""
    rng = np.random.default_rng(0)
    for i in range(count):
        os.makedirs(os.path.join(folder, f"class{i % classes}"), exist_ok=True)
        coarse = rng.integers(0, 256, (size[0] // 25, size[1] // 25, 3)).astype("float32")
        pixels = tf.image.resize(coarse, size) + rng.normal(0, 8, (*size, 3))
        jpeg = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(pixels, 0, 255), tf.uint8), quality=90)
        tf.io.write_file(os.path.join(folder, f"class{i % classes}", f"{i:05d}.jpg"), jpeg)


def old_folder_pipeline(source: data.Source, batch_size: int, start_step: int = 0) -> tf.data.Dataset:
    """The path before issue 16, for comparison: every image decoded whole and squashed to a square,
    a buffer shuffle, resume by skipping (reading and decoding) everything before the step, then the
    random-resized crop of the squashed image."""
    side = source.recipe.image_shape[0]

    def decode(file, label):
        image = tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)
        return data.fit_images(image, (side, side)), label

    def prepare(image, label, key):
        image = augment.inception(image, source.recipe.image_shape, tf.stack([tf.constant(0, tf.int64), key]))
        return source.recipe.preprocessing.normalize(image), label

    ds = tf.data.Dataset.from_tensor_slices((source.files, source.labels))
    ds = ds.map(decode, num_parallel_calls=data.AUTOTUNE, deterministic=True)
    ds = ds.shuffle(10_000, seed=0).repeat().enumerate().map(lambda key, ex: (*ex, key))
    ds = ds.skip(start_step * batch_size).map(prepare, num_parallel_calls=data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(data.AUTOTUNE)


def first_batch_seconds(make) -> float:
    tic = time.perf_counter()
    next(iter(make()))[0].numpy()
    return time.perf_counter() - tic


def model_rate(name: str, image_size: int, batch_size: int, steps_: int) -> float:
    """Training ``name`` on this host's CPU (images/s): the model the JPEG pipelines feed."""
    model = models.create_model(name, num_classes=1000, input_shape=(image_size, image_size, 3))
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loop = steps.make_train_step(model, optimizer, steps.make_loss(), steps.make_metrics("train"), batch_size)
    it = iter(data.synthetic((image_size, image_size, 3), 1000, batch_size))
    loop(it, tf.constant(1)).numpy()
    tic = time.perf_counter()
    loop(it, tf.constant(steps_)).numpy()
    return steps_ * batch_size / (time.perf_counter() - tic)


def jpeg_section(args) -> None:
    cores = os.cpu_count() or 1
    batch, side = args.jpeg_batch_size, args.image_size
    with tempfile.TemporaryDirectory() as tmp:
        folder, shard_dir = os.path.join(tmp, "jpegs"), os.path.join(tmp, "shards")
        write_jpegs(folder, args.jpeg_images)
        data.to_shards("folder", folder, shard_dir, args.num_shards, splits=("train",), log=lambda line: None)
        files = data.load_source("folder", "train", folder, image_size=side)
        records = data.load_source("shards", "train", shard_dir, image_size=side)
        model = model_rate(args.model, side, args.model_batch_size, args.model_steps) if args.model_steps else None
        print(f"\n{files.num_examples} JPEGs of 500x375 -> {side}x{side} training crops, batch {batch}, {cores} CPUs")
        if model:
            print(f"{args.model + ' training on this CPU':<34}{model:>12.1f} images/s")
        pipelines = {
            "old: decode all, squash, crop": lambda start=0: old_folder_pipeline(files, batch, start),
            "folder: decode crop window": lambda start=0: data.make_dataset(files, batch, True, start_step=start),
            "shards: decode crop window": lambda start=0: data.make_dataset(records, batch, True, start_step=start),
            # What the trainer reads since issue 18: pixels handed on as uint8, normalised on the device.
            "uint8 folder: crop window": lambda start=0: data.make_dataset(files, batch, True, start_step=start,
                                                                           image_dtype="uint8"),
            "uint8 shards: crop window": lambda start=0: data.make_dataset(records, batch, True, start_step=start,
                                                                           image_dtype="uint8"),
        }
        steps_per_epoch = files.steps_per_epoch(batch)
        for name, make in pipelines.items():
            rate = data_rate(make(), batch, args.jpeg_batches)
            fresh = first_batch_seconds(make)
            resumed = first_batch_seconds(lambda: make(8 * steps_per_epoch))
            feeds = f" = {rate / model:6.1f}x the model" if model else ""
            print(f"{name:<34}{rate:>12.0f} images/s = {rate / cores:6.0f} per core; {args.gpu_target / (rate / cores):5.0f}"
                  f" cores for {args.gpu_target} images/s{feeds}; first batch {fresh:5.2f} s fresh, {resumed:5.2f} s "
                  f"8 epochs in ({resumed / fresh:4.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--jpeg_images", type=int, default=512, help="0 skips the JPEG section")
    parser.add_argument("--jpeg_batch_size", type=int, default=32)
    parser.add_argument("--jpeg_batches", type=int, default=20)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--gpu_target", type=int, default=6500, help="ResNet-50 images/s of an H100 (issue 16)")
    parser.add_argument("--model", default="resnet50", help="the model the JPEG pipelines feed")
    parser.add_argument("--model_batch_size", type=int, default=8)
    parser.add_argument("--model_steps", type=int, default=2, help="0 skips timing the model on the CPU")
    args = parser.parse_args()

    model_rate = consumed(args.batch_size, args.steps)
    source = data.load_source("mnist", "train", args.data_dir)
    sources = {
        "mnist .npz (train pipeline)": data.make_dataset(source, args.batch_size, training=True, seed=0),
        "synthetic": data.synthetic((28, 28, 1), 10, args.batch_size),
    }
    print(f"{os.cpu_count()} CPUs, TF {tf.__version__}, batch {args.batch_size}")
    print(f"{'mnist_resnet training consumes':<34}{model_rate:>12.0f} images/s")
    for name, ds in sources.items():
        rate = data_rate(ds, args.batch_size, args.batches)
        print(f"{name:<34}{rate:>12.0f} images/s = {rate / model_rate:6.1f}x the model")
    if args.jpeg_images:
        jpeg_section(args)


if __name__ == "__main__":
    main()
