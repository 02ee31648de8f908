"""Use a trained image classifier: the top classes, by name, of image files of any size and format.

    classifier = Classifier.load("runs/flowers")                  # a run folder, or its saved_model/
    for p in classifier.predict(["photos/", "more/*.jpg"], top_k=3):
        print(p.path, p.top)                                      # (("tulip", 0.91), ("rose", 0.05), ...)
    classifier = Classifier.load("resnet50", pretrained="imagenet")  # the 1000 ImageNet names

Each image is prepared as ``tfresnet-eval`` prepares its images (a run's SavedModel carries that
preprocessing as its ``preprocess`` endpoint; pretrained weights carry their record), one file at a
time on parallel threads, then goes through the model in batches: the files stream, a folder of any
size is never held in memory at once.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import pathlib
import sys
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfresnet import data, models
from tfresnet.core.errors import BadInput

# What tf.io.decode_image reads (a GIF's first frame).
IMAGE_FILES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's answer: ``top`` holds the ``top_k`` ``(class name, probability)``, best first."""

    path: str
    logits: np.ndarray
    probabilities: np.ndarray
    top: tuple[tuple[str, float], ...]


def image_files(patterns: Sequence[str | os.PathLike]) -> list[str]:
    """The image files that ``patterns`` name: files, folders (searched recursively, hidden files
    skipped) and globs, in that order, each folder's and glob's sorted.

    Raises:
        BadInput: a pattern that names no image (the pattern named).
    """
    found = []
    for pattern in map(str, patterns):
        if os.path.isdir(pattern):
            matches = sorted(str(p) for p in pathlib.Path(pattern).rglob("*") if p.suffix.lower() in IMAGE_FILES
                             and not any(part.startswith(".") for part in p.relative_to(pattern).parts))
        elif os.path.isfile(pattern):
            matches = [pattern]
        else:
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not matches:
            raise BadInput(f"{pattern} names no image file ({', '.join(IMAGE_FILES)}, or a folder of them)")
        found += matches
    return found


class Classifier:
    """A trained classifier with its class names and its evaluation preprocessing.

    Args:
        preprocess: uint8 images ``(1, height, width, channels)`` of any size -> float32 model inputs.
        logits: A batch of model inputs -> float32 logits.
        class_names: The name of each logit.
        channels: The channels the model takes (1: greyscale, 3: RGB); images are decoded to it.
    """

    def __init__(self, preprocess: Callable[[tf.Tensor], tf.Tensor], logits: Callable[[tf.Tensor], tf.Tensor],
                 class_names: Sequence[str], channels: int):
        self.preprocess = preprocess
        self.logits = logits
        self.class_names = tuple(class_names)
        self.channels = channels

    @classmethod
    def load(cls, path: str | os.PathLike, pretrained: str | None = None) -> "Classifier":
        """A classifier from a run folder (or its ``model.keras``) or a SavedModel that tfresnet
        exported, or a model name with ``pretrained`` weights (``tfresnet.weights.sources``).

        Raises:
            BadInput: ``path`` holds no model, or one exported without its preprocessing.
        """
        if pretrained is not None:
            return cls._pretrained(str(path), pretrained)
        folder = pathlib.Path(path)
        if folder.suffix == ".keras":  # a run's model.keras: the SavedModel beside it knows its preprocessing
            if not (folder.parent / "saved_model" / "saved_model.pb").is_file():
                raise BadInput(f"{path} alone does not say how its images were resized (a crop or the whole "
                               "image); give the run folder or its saved_model/ instead")
            folder = folder.parent
        saved = folder / "saved_model" if (folder / "saved_model" / "saved_model.pb").is_file() else folder
        if not (saved / "saved_model.pb").is_file():
            raise BadInput(f"{path} holds no model: expected a run folder (with saved_model/) or a SavedModel folder, "
                           "or a model name with --pretrained")
        served = tf.saved_model.load(str(saved))
        if not hasattr(served, "preprocess"):
            raise BadInput(f"{saved} was exported without its preprocessing (a run of a version before class names, "
                           "or of synthetic data); export it again by resuming the run")
        names = [name.decode() for name in served.class_names().numpy()]
        channels = served.preprocess.input_signature[0].shape[-1]
        classifier = cls(served.preprocess, served.serve, names, channels)
        classifier.saved_model = served  # owns the variables its functions read
        return classifier

    @classmethod
    def _pretrained(cls, name: str, pretrained: str) -> "Classifier":
        model = models.create_model(name, pretrained=pretrained)
        prep = model.preprocessing
        # What an evaluation of the weights on ImageNet does: the record's centre crop at its size.
        recipe = data.Recipe(model.num_classes, (prep.input_size, prep.input_size, prep.channels), prep.mean,
                             prep.std, eval_resize="center_crop", in_memory=False, fixed_size=False)
        return cls(lambda images: data.serving_images(images, recipe, prep), lambda x: model(x, training=False),
                   model.label_names, prep.channels)

    def predict(self, images: Sequence[str | os.PathLike], top_k: int = 5, batch_size: int = 32,
                bad_images: str = "error") -> Iterator[Prediction]:
        """The predictions for the image files ``images`` names (``image_files``), in their order.

        Args:
            images: Files, folders and globs.
            top_k: How many classes each ``Prediction.top`` holds.
            batch_size: Images per call of the model.
            bad_images: ``error`` (a file that does not decode is a ``BadInput`` naming it) or
                ``skip`` (left out; ``skipped`` counts them once the iteration ends, of ``total``).

        Yields:
            One ``Prediction`` per image.
        """
        if bad_images not in ("error", "skip"):
            raise BadInput(f"bad_images: unknown value {bad_images!r}; expected error or skip")
        files = image_files(images)
        self.total, self.skipped = len(files), 0
        batches = self._batches(files, batch_size, bad_images == "skip")
        done = 0
        while True:
            try:
                paths, x = next(batches)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError:
                raise BadInput(f"{_first_bad(files[done:done + batch_size], self.channels)} is not an image "
                               "that decodes; pass bad_images='skip' (--bad_images=skip) to leave such files out")
            logits = np.asarray(self.logits(x), np.float32)
            exp = np.exp(logits - logits.max(axis=-1, keepdims=True))  # the softmax, stable, for the batch at once
            probabilities = exp / exp.sum(axis=-1, keepdims=True)
            best = np.argsort(-probabilities, axis=-1, kind="stable")[:, :top_k]
            for path, row, p, top in zip(paths.numpy(), logits, probabilities, best):
                yield Prediction(path.decode(), row, p, tuple((self.class_names[i], float(p[i])) for i in top))
            done += len(logits)
        self.skipped = len(files) - done

    def _batches(self, files: list[str], batch_size: int, skip: bool):
        def prepare(path):
            return path, self.preprocess(decode(tf.io.read_file(path), self.channels)[None])[0]

        ds = tf.data.Dataset.from_tensor_slices(files).map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                                                           deterministic=True)
        if skip:
            ds = ds.ignore_errors()
        return iter(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def write_predictions(predictions: Iterable[Prediction], output: str | os.PathLike | None = None,
                      progress: Callable[[int], None] | None = None) -> int:
    """Prints ``path: name p, name p, ...`` lines, or writes ``output``: CSV (``path, class_1,
    probability_1, ...``) for ``.csv``, else one JSON object per line (``{"path": ..., "top": [[name,
    p], ...]}``). Returns how many predictions it wrote; they are written as they come, and
    ``progress(count)`` is told after each."""
    output = None if output is None else str(output)
    out = open(output, "w", newline="") if output else sys.stdout
    rows, writer = 0, csv.writer(out) if output and output.endswith(".csv") else None
    try:
        for p in predictions:
            if writer is not None:
                if rows == 0:
                    writer.writerow(["path"] + [f"{kind}_{i + 1}" for i in range(len(p.top))
                                                for kind in ("class", "probability")])
                writer.writerow([p.path] + [v for name, prob in p.top for v in (name, f"{prob:.6f}")])
            elif output:
                out.write(json.dumps({"path": p.path, "top": [[name, prob] for name, prob in p.top]}) + "\n")
            else:
                print(f"{p.path}: " + ", ".join(f"{name} {prob:.3f}" for name, prob in p.top), flush=True)
            rows += 1
            if progress is not None:
                progress(rows)
    finally:
        if output:
            out.close()
    return rows


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """JPEG, PNG, BMP or GIF (its first frame) bytes -> uint8 ``(height, width, channels)``.

    Decoded with the file's own channels, then brought to the model's: greyscale repeated to RGB,
    RGB to greyscale (ITU-R 601 luma), alpha dropped. (BMP decodes to no other count itself.)
    """
    image = tf.io.decode_image(encoded, expand_animations=False)
    image.set_shape((None, None, None))
    grey = tf.shape(image)[-1] < 3
    if channels == 3:
        image = tf.cond(grey, lambda: tf.image.grayscale_to_rgb(image[..., :1]), lambda: image[..., :3])
    else:
        luma = lambda: tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image[..., :3], tf.float32))), tf.uint8)  # noqa: E731
        image = tf.cond(grey, lambda: image[..., :1], luma)
    return tf.ensure_shape(image, (None, None, channels))


def _first_bad(files: Sequence[str], channels: int) -> str:
    """The first of ``files`` that does not decode (the batch that failed held it)."""
    for path in files:
        try:
            decode(tf.io.read_file(path), channels)
        except tf.errors.InvalidArgumentError:
            return path
    return files[0]
