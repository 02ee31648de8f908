"""Does Grad-CAM point at what decides the class? A generated test where the answer is known.

Each image is a textured background (smooth colour blobs, stripes at a random angle, pixel noise)
with one small shape at a random place: its kind (square, disk, triangle, cross, ring) is the
class, its colour is random, so the shape is all that tells the classes apart. A model is trained
on them with the package's own trainer (``--dataset=npz``), then the held-out images are written
as PNG files and explained through ``Classifier.explain`` (``tfresnet-predict --explain``), the path
a user takes. A heat map's peak counts as a hit when it falls inside the shape's box; the figure is
the hit rate over the correctly classified test images (and over all of them), beside the rate a
peak at a random place would reach (the boxes' share of the image, a few percent).

    python benchmarks/gradcam_shapes.py                       # 48x48 images, resnet20_cifar
    python benchmarks/gradcam_shapes.py --model resnet18 --image_size 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

# In the order --classes takes them: the first ones differ the most.
SHAPES = ("square", "cross", "ring", "disk", "triangle")


def shape_mask(kind: str, size: int) -> np.ndarray:
    """A ``size`` x ``size`` boolean mask of one shape."""
    y, x = np.mgrid[:size, :size] + 0.5
    c, r = size / 2, size / 2
    if kind == "square":
        return np.ones((size, size), bool)
    if kind == "disk":
        return (y - c) ** 2 + (x - c) ** 2 <= r ** 2
    if kind == "ring":
        d = (y - c) ** 2 + (x - c) ** 2
        return (d <= r ** 2) & (d >= (r * 0.55) ** 2)
    if kind == "triangle":  # apex up
        return (y >= 0) & (np.abs(x - c) <= y / 2)
    if kind == "cross":
        w = max(1, size // 4)
        return (np.abs(x - c) <= w / 2 + 0.5) | (np.abs(y - c) <= w / 2 + 0.5)
    raise ValueError(f"unknown shape {kind!r}")


def background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A float RGB texture in [0, 255]: colour blobs, stripes and noise, none of which tells a class."""
    coarse = rng.uniform(0, 255, (4, 4, 3))
    up = np.kron(coarse, np.ones((side // 4 + 1, side // 4 + 1, 1)))[:side, :side]
    yy, xx = np.mgrid[:side, :side]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    stripes = 30 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    return np.clip(0.7 * up + stripes[..., None] + rng.normal(0, 15, (side, side, 3)), 0, 255)


def make_images(count: int, side: int, shape_size: int, seed: int, classes: int = len(SHAPES)):
    """``count`` images ``(side, side, 3)`` uint8 of the first ``classes`` shapes, their labels and
    shape boxes ``(top, left, bottom, right)``."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, side, side, 3), np.uint8)
    labels = rng.integers(0, classes, count)
    boxes = np.empty((count, 4), np.int64)
    masks = {kind: shape_mask(kind, shape_size) for kind in SHAPES}
    for i in range(count):
        image = background(rng, side)
        top, left = rng.integers(0, side - shape_size + 1, 2)
        colour = rng.uniform(0, 255, 3)
        region = image[top:top + shape_size, left:left + shape_size]
        region[masks[SHAPES[labels[i]]]] = colour
        images[i] = np.round(image).astype(np.uint8)
        boxes[i] = top, left, top + shape_size, left + shape_size
    return images, labels.astype(np.int64), boxes


def peak_in_box(heat: np.ndarray, box) -> bool:
    """Whether the heat map's highest pixel lies in ``box`` (``(top, left, bottom, right)``, exclusive)."""
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    top, left, bottom, right = box
    return bool(top <= row < bottom and left <= col < right)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20_cifar", help="a model of the zoo")
    parser.add_argument("--model_options", default="", help="e.g. base_width=8 (tfresnet-train's --model_options)")
    parser.add_argument("--classes", type=int, default=len(SHAPES), help=f"the first N of {', '.join(SHAPES)}")
    parser.add_argument("--image_size", type=int, default=48)
    parser.add_argument("--shape_size", type=int, default=10)
    parser.add_argument("--train_images", type=int, default=4000)
    parser.add_argument("--test_images", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_hit_rate", type=float, default=0.8, help="exit 1 below this hit rate")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--work_dir", default=None, help="keep the data, run and explanations here")
    args = parser.parse_args(argv)

    import tensorflow as tf  # noqa: PLC0415 - --help answers without it

    from tfresnet import cli  # noqa: PLC0415
    from tfresnet.predict import Classifier  # noqa: PLC0415

    work = args.work_dir or tempfile.mkdtemp(prefix="gradcam_shapes_")
    os.makedirs(work, exist_ok=True)
    x_train, y_train, _ = make_images(args.train_images, args.image_size, args.shape_size, args.seed, args.classes)
    x_test, y_test, boxes = make_images(args.test_images, args.image_size, args.shape_size, args.seed + 1,
                                      args.classes)
    np.savez(os.path.join(work, "shapes.npz"), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    run = os.path.join(work, "run")
    flags = [f"--model={args.model}", "--dataset=npz", f"--data_dir={work}/shapes.npz", f"--model_dir={run}",
             f"--epochs={args.epochs}", f"--batch_size={args.batch_size}", "--optimizer=adam", "--learning_rate=2e-3",
             "--lr_schedule=cosine", "--augment=none", f"--seed={args.seed}"]
    if args.model_options:
        flags.append(f"--model_options={args.model_options}")
    if cli.main(["tfresnet-train", *flags]) != 0:
        raise SystemExit("training failed")

    folder = os.path.join(work, "test")
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(x_test):
        tf.io.write_file(os.path.join(folder, f"{i:05d}.png"), tf.io.encode_png(image))
    classifier = Classifier.load(run)
    hits, right = [], []
    for i, e in enumerate(classifier.explain([folder], os.path.join(work, "explained"))):
        hits.append(peak_in_box(np.load(e.heat_map), boxes[i]))
        right.append(e.prediction.top[0][0] == classifier.class_names[y_test[i]])
    hits, right = np.array(hits), np.array(right)
    chance = float(np.mean((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / args.image_size ** 2)
    result = {"model": args.model, "image_size": args.image_size, "shape_size": args.shape_size,
              "test_images": len(hits), "accuracy": float(right.mean()),
              "hit_rate_correct": float(hits[right].mean()) if right.any() else 0.0,
              "hit_rate_all": float(hits.mean()), "random_peak_hit_rate": chance}
    print(f"{args.model} on {args.image_size}x{args.image_size} shapes: accuracy {result['accuracy'] * 100:.1f}%, "
          f"Grad-CAM peak inside the shape for {result['hit_rate_correct'] * 100:.1f}% of the correctly classified "
          f"test images ({result['hit_rate_all'] * 100:.1f}% of all {len(hits)}); a random peak: "
          f"{chance * 100:.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if result["hit_rate_correct"] < args.min_hit_rate:
        print(f"below --min_hit_rate {args.min_hit_rate}", file=sys.stderr)
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
