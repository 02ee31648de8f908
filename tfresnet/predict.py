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
import math
import os
import pathlib
import sys
from typing import Callable, Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfresnet import data, models
from tfresnet.core.errors import BadInput
from tfresnet.models import gradcam

# What tf.io.decode_image reads (a GIF's first frame).
IMAGE_FILES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's answer: ``top`` holds the ``top_k`` ``(class name, probability)``, best first."""

    path: str
    logits: np.ndarray
    probabilities: np.ndarray
    top: tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class Explanation:
    """One image's Grad-CAM: the class explained and the files written (``Classifier.explain``)."""

    prediction: Prediction
    class_name: str
    heat_map: str
    overlay: str


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
        model: The Keras model (``explain`` needs it), or a ``.keras`` path to load it from when
            asked; None: predictions only.
        input_size: The model's input ``(height, width)``, which sizes the default batch
            (``images_per_call``); None: unknown (batches of 32).
    """

    def __init__(self, preprocess: Callable[[tf.Tensor], tf.Tensor], logits: Callable[[tf.Tensor], tf.Tensor],
                 class_names: Sequence[str], channels: int, model: "keras.Model | str | None" = None,
                 input_size: Sequence[int] | None = None):
        self.preprocess = preprocess
        self.logits = logits
        self.class_names = tuple(class_names)
        self.channels = channels
        self._model = model
        self.input_size = tuple(input_size) if input_size and all(input_size) else None  # None: any size
        self.batch_size = images_per_call(*self.input_size) if self.input_size else 32

    @classmethod
    def load(cls, path: str | os.PathLike, pretrained: str | None = None) -> "Classifier":
        """A classifier from a run folder, its ``model.keras`` or its SavedModel, or a model name
        with ``pretrained`` weights (``tfresnet.weights.sources``).

        A run folder (and a ``model.keras`` beside its ``saved_model/``) serves through the
        SavedModel, which carries the run's evaluation preprocessing; a ``model.keras`` alone
        through the preprocessing record in its config.

        Raises:
            BadInput: ``path`` holds no model, or one saved without its preprocessing.
        """
        if pretrained is not None:
            return cls.from_model(pretrained_model(str(path), pretrained))
        folder = pathlib.Path(path)
        if folder.suffix == ".keras":
            if not (folder.parent / "saved_model" / "saved_model.pb").is_file():
                return cls._keras_file(folder)
            folder = folder.parent
        saved = folder / "saved_model" if (folder / "saved_model" / "saved_model.pb").is_file() else folder
        if not (saved / "saved_model.pb").is_file():
            raise BadInput(f"{path} holds no model: expected a run folder (with saved_model/), a .keras file or a "
                           "SavedModel folder, or a model name with --pretrained")
        served = tf.saved_model.load(str(saved))
        if not hasattr(served, "preprocess"):
            raise BadInput(f"{saved} was exported without its preprocessing (a run of a version before class names, "
                           "or of synthetic data); export it again by resuming the run")
        names = [name.decode() for name in served.class_names().numpy()]
        channels = served.preprocess.input_signature[0].shape[-1]
        keras_file = saved.parent / "model.keras"
        classifier = cls(served.preprocess, served.serve, names, channels,
                         str(keras_file) if keras_file.is_file() else None, served.serve.input_signature[0].shape[1:3])
        classifier.saved_model = served  # owns the variables its functions read
        return classifier

    @classmethod
    def _keras_file(cls, path: pathlib.Path) -> "Classifier":
        if not path.is_file():
            raise BadInput(f"{path} holds no model: no such file")
        model = keras.models.load_model(path)
        record = getattr(model, "preprocessing", None)
        if record is None or record.eval_view is None:
            raise BadInput(f"{path} does not record how its images were fitted (saved before eval_view, or without "
                           "a preprocessing record); give its run folder or saved_model/ instead")
        return cls.from_model(model)

    @classmethod
    def from_model(cls, model: keras.Model) -> "Classifier":
        """A classifier of a Keras image model of the zoo, prepared by its preprocessing record."""
        prep = model.preprocessing
        recipe = data.eval_recipe(prep, model.num_classes)
        return cls(lambda images: data.serving_images(images, recipe, prep), lambda x: model(x, training=False),
                   model.label_names, prep.channels, model, recipe.image_shape[:2])

    @property
    def model(self) -> keras.Model:
        """The Keras model (loaded on first use from the run's ``model.keras``).

        Raises:
            BadInput: there is none (a SavedModel folder without the run's ``model.keras`` beside it).
        """
        if self._model is None:
            raise BadInput("explaining needs the Keras model: give the run folder or its model.keras, not a "
                           "SavedModel alone")
        if isinstance(self._model, str):
            self._model = keras.models.load_model(self._model)
        return self._model

    def predict(self, images: Sequence[str | os.PathLike], top_k: int = 5, batch_size: int | None = None,
                bad_images: str = "error") -> Iterator[Prediction]:
        """The predictions for the image files ``images`` names (``image_files``), in their order.

        Args:
            images: Files, folders and globs.
            top_k: How many classes each ``Prediction.top`` holds.
            batch_size: Images per call of the model; None: ``self.batch_size`` (``images_per_call``).
            bad_images: ``error`` (a file that does not decode is a ``BadInput`` naming it) or
                ``skip`` (left out; ``skipped`` counts them once the iteration ends, of ``total``).

        Yields:
            One ``Prediction`` per image.
        """
        for predictions, _ in self._predicted_batches(images, top_k, batch_size, bad_images):
            yield from predictions

    def _predicted_batches(self, images, top_k: int, batch_size: int, bad_images: str):
        """``(predictions, model inputs)`` per batch (``predict``'s arguments)."""
        if bad_images not in ("error", "skip"):
            raise BadInput(f"bad_images: unknown value {bad_images!r}; expected error or skip")
        files = image_files(images)
        batch_size = batch_size or self.batch_size
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
            yield [Prediction(path.decode(), row, p, tuple((self.class_names[i], float(p[i])) for i in top))
                   for path, row, p, top in zip(paths.numpy(), logits, probabilities, best)], x
            done += len(logits)
        self.skipped = len(files) - done

    def explain(self, images: Sequence[str | os.PathLike], directory: str | os.PathLike,
                class_name: str | None = None, top_k: int = 5, batch_size: int | None = None,
                bad_images: str = "error") -> Iterator[Explanation]:
        """Grad-CAM (``tfresnet.models.gradcam``) of each image, from the model's last convolutional
        stage: writes ``<name>_gradcam.npy`` (the heat map in [0, 1] at the image's own resolution;
        0 outside the part the model saw, e.g. beyond a centre crop) and ``<name>_gradcam.png``
        (laid over the image) to ``directory``.

        Args:
            images: Files, folders and globs (as ``predict``).
            directory: Where the files go (made if missing).
            class_name: The class to explain; None: each image's predicted class.
            top_k: Classes in each ``Explanation.prediction``.
            batch_size: Images per call of the model; None: ``self.batch_size``.
            bad_images: As ``predict``.

        Yields:
            One ``Explanation`` per image, with its ``Prediction``.

        Raises:
            BadInput: an unknown ``class_name``, or no Keras model (``model``).
        """
        if class_name is not None and class_name not in self.class_names:
            raise BadInput(f"explain class {class_name!r} is not a class of this model ({_some(self.class_names)})")
        model = self.model
        view = model.preprocessing and model.preprocessing.eval_view
        if view is None:
            raise BadInput("the model does not record how its images were fitted (eval_view): export it again")
        os.makedirs(directory, exist_ok=True)
        names: set[str] = set()
        for predictions, x in self._predicted_batches(images, top_k, batch_size, bad_images):
            # The class each prediction names (not the Keras model's own argmax, which a near tie could flip).
            chosen = ([int(np.argmax(p.logits)) for p in predictions] if class_name is None
                      else self.class_names.index(class_name))
            heat, _, classes = gradcam.grad_cam(model, x, chosen)
            for p, cam, c in zip(predictions, heat, classes):
                image = decode(tf.io.read_file(p.path), self.channels).numpy()
                box = gradcam.view_box(*image.shape[:2], x.shape[1:3], view, model.preprocessing.crop_fraction)
                full = gradcam.to_image(cam, image.shape[:2], box, x.shape[1:3], model.feature_offset)
                stem = pathlib.Path(p.path).stem
                name = stem if stem not in names else f"{stem}_{len(names)}"
                names.add(name)
                base = os.path.join(directory, f"{name}_gradcam")
                np.save(f"{base}.npy", full)
                with open(f"{base}.png", "wb") as f:
                    f.write(overlay_png(image, full))
                yield Explanation(p, self.class_names[c], f"{base}.npy", f"{base}.png")

    def _batches(self, files: list[str], batch_size: int, skip: bool):
        def prepare(path):
            return path, self.preprocess(decode(tf.io.read_file(path), self.channels)[None])[0]

        ds = tf.data.Dataset.from_tensor_slices(files).map(prepare, num_parallel_calls=tf.data.AUTOTUNE,
                                                           deterministic=True)
        if skip:
            ds = ds.ignore_errors()
        return iter(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def images_per_call(height: int, width: int) -> int:
    """The default batch of ``predict`` for a model taking ``height`` x ``width`` images: the pixels
    of 32 ImageNet-sized (224x224) images per call, as a power of two from 32 to 256.

    Small images in batches of 32 leave the cores waiting on each call's fixed cost: on 2 CPU cores
    ``mnist_resnet`` (28x28) predicts about 1.2-1.4x as many images a second in batches of 256 as
    of 32 (BENCHMARKS.md); ResNet-50 (224x224) gains nothing from more than 32, which keep its
    activations small.
    """
    return int(min(256, max(32, 2 ** round(math.log2(32 * 224 * 224 / (height * width))))))


def pretrained_model(name: str, pretrained: str) -> keras.Model:
    """``create_model(name, pretrained=pretrained)``, its record completed with the evaluation its
    weights were measured with (the centre crop, where the weights' record names no view)."""
    model = models.create_model(name, pretrained=pretrained)
    if model.preprocessing.eval_view is None:
        model.preprocessing = dataclasses.replace(model.preprocessing, eval_view="center_crop")
    return model


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


def overlay_png(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> bytes:
    """PNG bytes of uint8 ``image`` (h, w, 1 or 3) with ``heat`` (h, w, in [0, 1]) laid over it in
    the jet colours (blue: nothing, red: the strongest evidence)."""
    from matplotlib import colormaps  # noqa: PLC0415 - only explaining draws

    colours = colormaps["jet"](heat)[..., :3] * 255
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    return tf.io.encode_png(np.clip(np.round(blended), 0, 255).astype(np.uint8)).numpy()


def _some(names: Sequence[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
