"""Where examples come from: ``load_source(name, split, data_dir)`` finds one split of a dataset.

A tensorflow-datasets dataset (``tfresnet.data.tfds``), a Keras-layout ``.npz`` (or ``<name>.npz``
in a local folder), a folder of images (one sub-folder per class), or a shard folder
(``tfresnet-shards``); optionally a class subset. Datasets that fit in memory are held as arrays;
folders are lists of files read by index; big datasets are TFRecord shards. What happens to the
examples next is ``tfresnet.data.pipeline``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
import re
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfresnet.core import files as files_lib
from tfresnet.data import shards as shards_lib
from tfresnet.data.recipes import DATA_DIR_ENV, IMAGE_EXTENSIONS, RECIPES, SOURCES, Recipe, Source, check_labels
from tfresnet.data.tfds import load_tfds
from tfresnet.weights.preprocessing import IMAGENET_MEAN, IMAGENET_STD


def load_npz(path: str | os.PathLike, split: str, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split of a Keras-layout ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``).

    Args:
        path: The ``.npz`` file.
        split: ``train`` or ``test``; ``train[:N]``/``test[:N]`` take the first N examples.
        num_classes: If given, labels are checked against it.

    Returns:
        ``(images, labels)``: uint8 ``(N, H, W, C)`` (a channel axis is added to ``(N, H, W)``) and
        int32 ``(N,)``.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a .npz file: name the Keras-layout .npz file itself "
                         f"(e.g. {path / 'mnist.npz'})")
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    files_lib.check_kind(path, ("a ZIP archive", "an empty ZIP archive"),
                         "a Keras-layout .npz array file (x_train, y_train, x_test, y_test)")
    base, count = _parse_split(split)
    if base not in ("train", "test"):
        raise ValueError(f"{path}: unknown split {split!r}; a Keras-layout .npz has 'train' and 'test'")
    try:
        npz = np.load(path)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"it holds one {type(npz).__name__}, not named arrays")
        files = npz.files
    except (ValueError, OSError, EOFError) as err:  # not a zip of arrays: a pickle, a truncated or foreign file
        raise ValueError(f"{path} is not a readable .npz array file ({str(err).splitlines()[0][:120]})") from None
    with npz:
        missing = {f"x_{base}", f"y_{base}"} - set(npz.files)
        if missing:
            raise KeyError(
                f"{path} lacks {sorted(missing)}; expected the Keras layout x_train, y_train, x_test, y_test "
                f"(found {sorted(files)})"
            )
        images, labels = npz[f"x_{base}"][:count], npz[f"y_{base}"][:count]
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"{path}: x_{base} {images.shape} and y_{base} {labels.shape} do not pair up as images/labels")
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: x_{base} must hold uint8 pixels, got {images.dtype}")
    labels = labels.reshape(-1).astype(np.int32)
    if num_classes is not None:
        check_labels(labels, num_classes, f"{path} y_{base}")
    return images, labels


def _parse_split(split: str) -> tuple[str, int | None]:
    """``"train[:2000]"`` -> ``("train", 2000)``; the TFDS slice syntax, first-N form only."""
    if "[" not in split:
        return split, None
    base, rest = split.split("[", 1)
    try:
        return base, int(rest.rstrip("]").lstrip(":"))
    except ValueError:
        raise ValueError(f"unsupported split {split!r}; use 'train', 'test' or 'train[:N]'") from None


def keras_cache_dir() -> pathlib.Path:
    """Where ``keras.datasets`` keeps its downloads (``mnist.npz`` in the Keras layout among them)."""
    return pathlib.Path(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))) / "datasets"


def _local_npz(name: str, data_dir: str | None) -> pathlib.Path | None:
    """``<name>.npz`` in ``data_dir``, ``$TFRESNET_DATA_DIR`` or Keras' download cache, in that order."""
    for folder in (data_dir, os.environ.get(DATA_DIR_ENV), keras_cache_dir()):
        if folder and not str(folder).startswith("gs://") and (pathlib.Path(folder) / f"{name}.npz").is_file():
            return pathlib.Path(folder) / f"{name}.npz"
    return None


def choose_examples(labels: np.ndarray, num_classes: int, classes: Sequence[int] = (),
                    examples_per_class: int | None = None, seed: int = 0,
                    where: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """Which examples a class subset keeps, and their new labels.

    Args:
        labels: Labels of all examples, in order.
        num_classes: The dataset's label count.
        classes: Labels to keep, relabelled ``0 .. len(classes) - 1`` in this order (digits 5-9
            become 0-4); empty keeps all.
        examples_per_class: Keep this many of each class, drawn with ``seed`` (few-shot and
            transfer experiments); None keeps all.
        seed: Seeds the draw.
        where: Names the data in errors.

    Returns:
        ``(indices, labels)``: the kept examples' positions, ascending, and their new labels.

    Raises:
        ValueError: a class outside the dataset, repeated, or with fewer examples than asked for.
    """
    classes = list(classes) or list(range(num_classes))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"{where}: classes {bad} do not exist; labels are 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"{where}: classes {classes} repeat a class")
    rng = np.random.default_rng(seed)
    keep = []
    for c in classes:
        found = np.flatnonzero(labels == c)
        if examples_per_class is not None:
            if len(found) < examples_per_class:
                raise ValueError(f"{where}: class {c} has {len(found)} examples, fewer than examples_per_class "
                                 f"{examples_per_class}")
            found = rng.permutation(found)[:examples_per_class]
        keep.append(found)
    indices = np.sort(np.concatenate(keep))
    relabel = np.full(num_classes, -1, np.int32)
    relabel[classes] = np.arange(len(classes), dtype=np.int32)
    return indices, relabel[labels[indices]]


def folder_files(root: pathlib.Path, split: str,
                  validation_fraction: float) -> tuple[pathlib.Path, list[str], list[str], list[int]]:
    """``(base, class names, files, labels)`` of one split of a class-folder dataset."""
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r} for an image folder; expected 'train' or 'test'")
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if split_dirs else root
    # Hidden entries (.DS_Store, .ipynb_checkpoints, ._* of macOS) are never classes or images.
    class_names = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_names:
        raise ValueError(f"{base} has no class sub-folders; expected {base}/<class>/<image>.jpg")
    files, labels = [], []
    for label, cls in enumerate(class_names):
        found = sorted(p for p in (base / cls).iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise ValueError(f"class folder {base / cls} is empty")
        for p in found:
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(f"{p} is not an image (expected {', '.join(IMAGE_EXTENSIONS)})")
        if not split_dirs:
            # A fixed, seed-independent share of each class is held out; a class of one image has
            # none to spare, so it only trains.
            n_test = int(round(len(found) * validation_fraction))
            n_test = min(max(1, n_test), len(found) - 1) if validation_fraction > 0 else 0
            found = found[len(found) - n_test:] if split == "test" else found[:len(found) - n_test]
        files += [str(p) for p in found]
        labels += [label] * len(found)
    if not files:
        raise ValueError(f"image folder {root}: the {split} split is empty (no class has an image to hold out; add "
                         f"images, or {root}/train and {root}/test folders)")
    return base, class_names, files, labels


def load_folder(path: str | os.PathLike, split: str, image_size: int = 256,
                validation_fraction: float = 0.1, classes: Sequence[int] = (),
                examples_per_class: int | None = None, seed: int = 0) -> Source:
    """Images in ``path/<class>/*.{jpg,jpeg,png}``; classes are the sorted sub-folder names.

    If ``path/train`` and ``path/test`` exist they are the splits; otherwise a fixed,
    seed-independent ``validation_fraction`` of each class is the ``test`` split.

    The files are read by index, as arrays are: a training epoch's order is a pure function of
    ``(seed, epoch)``, so resuming skips to the step without opening a file. Images keep their
    size until the pipeline crops them: a random-resized crop decoded from the JPEG window for
    training, the shorter side resized and the centre cut out for evaluation.

    Args:
        path: The folder.
        split: ``train`` or ``test``.
        image_size: Side of the preprocessed (square) images.
        validation_fraction: Held-out share when the folder has no split sub-folders.
        classes: A class subset (``choose_examples``); a class is the index of its sub-folder in
            sorted order.
        examples_per_class: Examples kept per class, drawn with ``seed``.
        seed: Seeds that draw.

    Returns:
        A ``Source`` of files.
    """
    root = pathlib.Path(path)
    base, class_names, files, labels = folder_files(root, split, validation_fraction)
    chosen, labels = choose_examples(np.array(labels, np.int32), len(class_names), classes, examples_per_class, seed,
                                     f"image folder {base}")
    recipe = _files_recipe(len(classes) or len(class_names), image_size)
    names = tuple(class_names[c] for c in classes) if classes else tuple(class_names)
    return Source(f"folder:{root}", split, recipe, len(chosen), labels=labels, files=np.array(files)[chosen],
                  class_names=names)


def _files_recipe(num_classes: int, image_size: int) -> Recipe:
    """How images of any size in files or records are prepared: as ImageNet is."""
    return Recipe(num_classes, (image_size, image_size, 3), IMAGENET_MEAN, IMAGENET_STD, "inception", "center_crop",
                  in_memory=False, fixed_size=False)


def load_shard_folder(path: str, split: str, image_size: int = 256) -> Source:
    """A split of a shard folder written by ``write_shards`` (``tfresnet-shards``); local or ``gs://``."""
    shard_set, class_names = shards_lib.load_shards(path, split)
    return Source(f"shards:{path}", split, _files_recipe(len(class_names), image_size), shard_set.num_examples,
                  shards=shard_set, class_names=tuple(class_names))


def check_images(files: Sequence[str]) -> None:
    """Decodes every file once; a ``ValueError`` names the first that does not decode, and the count."""
    bad = []
    for f in files:
        try:
            tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
            bad.append((f, re.sub(r"\{\{.*?\}\}\s*", "", err.message).strip().splitlines()[0][:100]))
    if bad:
        raise ValueError(f"{bad[0][0]} does not decode as an image ({bad[0][1]}); {len(bad)} of {len(files)} files "
                         f"are unreadable: fix or remove them")


def load_source(
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    image_size: int | None = None,
    classes: Sequence[int] = (),
    examples_per_class: int | None = None,
    seed: int = 0,
) -> Source:
    """Finds the examples of ``split`` of dataset ``name``.

    Args:
        name: A key of ``RECIPES`` (tensorflow-datasets names), ``npz`` (``data_dir`` is the file)
            or ``folder`` (``data_dir`` is the folder). ``mnist`` and the other TFDS names use a
            ``<name>.npz`` in ``data_dir`` or in ``$TFRESNET_DATA_DIR`` when there is one, with no
            network access.
        split: Split name, TFDS slicing allowed (``train[:2000]``).
        data_dir: TFDS data directory (a local path or ``gs://`` bucket), the ``.npz`` file, or
            the image folder.
        image_size: Side of the preprocessed images, for ImageNet-style and folder sources.
        classes: Only these labels, relabelled ``0 .. len(classes) - 1`` in this order (MNIST
            digits 5-9 as a 5-class task); empty: all.
        examples_per_class: Only this many examples of each class, drawn with ``seed``.
        seed: Seeds that draw.

    Returns:
        A ``Source``.
    """
    if name == "synthetic":
        raise ValueError("synthetic data has no source; use tfresnet.data.synthetic()")
    if name == "folder":
        if not data_dir:
            raise ValueError("dataset 'folder' needs data_dir: a folder with one sub-folder per class")
        return load_folder(data_dir, split, image_size or 256, classes=classes, examples_per_class=examples_per_class,
                           seed=seed)
    if name == "shards":
        if not data_dir:
            raise ValueError("dataset 'shards' needs data_dir: a shard folder written by tfresnet-shards")
        if classes or examples_per_class is not None:
            raise ValueError("classes and examples_per_class need a dataset held in memory or a folder, not shards")
        return load_shard_folder(data_dir, split, image_size or 256)
    if classes or examples_per_class is not None:
        source = load_source(name, split, data_dir, image_size)
        if source.images is None:
            raise ValueError(f"classes and examples_per_class need a dataset held in memory (mnist, cifar10, npz, "
                             f"...) or a folder, not the stream of {source.name}")
        chosen, labels = choose_examples(source.labels, source.num_classes, classes, examples_per_class, seed,
                                         f"{source.name} {split}")
        recipe = dataclasses.replace(source.recipe, num_classes=len(classes) or source.num_classes)
        return dataclasses.replace(source, recipe=recipe, num_examples=len(chosen), images=source.images[chosen],
                                   labels=labels, class_names=source.names_of(classes))
    if name == "npz":
        if not data_dir:
            raise ValueError("dataset 'npz' needs data_dir: the path of a Keras-layout .npz file")
        images, labels = load_npz(data_dir, split)
        train_images, train_labels = load_npz(data_dir, "train")
        # Normalise with the training set's statistics, whichever split this is.
        mean = train_images.mean((0, 1, 2), dtype=np.float64) / 255.0
        std = train_images.std((0, 1, 2), dtype=np.float64) / 255.0 + 1e-6
        recipe = Recipe(int(train_labels.max()) + 1, images.shape[1:], tuple(mean), tuple(std))
        check_labels(labels, recipe.num_classes, f"{data_dir} y_{split}")
        return Source(f"npz:{data_dir}", split, recipe, len(labels), images=images, labels=labels)
    if name not in RECIPES:
        close = difflib.get_close_matches(name, SOURCES, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint} (known: {', '.join(SOURCES)})")
    recipe = RECIPES[name]
    if image_size and not recipe.in_memory:
        recipe = dataclasses.replace(recipe, image_shape=(image_size, image_size, 3))
    local = _local_npz(name, data_dir)
    if local is not None:
        images, labels = load_npz(local, split.replace(recipe.splits[1], "test"), recipe.num_classes)
        return Source(name, split, recipe, len(labels), images=images, labels=labels)
    if data_dir and "://" not in data_dir and not os.path.isdir(data_dir):
        # Usually a typo: fail now instead of tensorflow-datasets creating the folder and
        # downloading (or retrying for minutes offline).
        extra = f" and no {name}.npz" if recipe.in_memory else ""
        raise FileNotFoundError(f"data_dir {data_dir} does not exist{extra}; create it to let "
                                f"tensorflow-datasets download {recipe.tfds_name!r} there")
    return load_tfds(name, recipe, split, data_dir)
