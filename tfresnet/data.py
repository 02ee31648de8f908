"""Input pipelines: pure functions that return ``tf.data.Dataset``s of ``(image, label)`` batches.

Two steps, so the trainer, the notebook and the benchmarks share everything:

1. ``load_source(name, split, data_dir)`` finds the examples: a tensorflow-datasets dataset, a
   Keras-layout ``.npz``, a folder of images (one sub-folder per class), or synthetic data.
2. ``make_dataset(source, batch_size, training=...)`` shuffles, augments, normalises, shards and
   batches them.

Datasets that fit in memory (MNIST, CIFAR, ``.npz``) are held as arrays; folders are lists of files
read by index; big datasets are TFRecord shards (``tfresnet.shards``, tensorflow-datasets' prepared
files too). For all of them the training order is a pure function of ``(seed, epoch)`` over
indices and the augmentation a pure function of ``(seed, epoch, example)``, so a run resumed at
global step ``s`` (``start_step=s``) sees exactly the batches an uninterrupted run would, reached on
indices without reading what it skips: the data position never has to be stored beside the
checkpoint. Files and records stay encoded until the pipeline decodes them (a JPEG's training crop
only) and name themselves when they do not decode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import pathlib
import re
import shutil
import sys
import textwrap
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfresnet import augment as augment_lib
from tfresnet import files as files_lib
from tfresnet import shards as shards_lib
from tfresnet.errors import BadInput
from tfresnet.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# The environment variable naming a folder with local copies (mnist.npz, ...); see the README.
DATA_DIR_ENV = "TFRESNET_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a dataset is read and preprocessed.

    Attributes:
        num_classes: Label count.
        image_shape: Shape of a preprocessed image (what the model sees).
        mean, std: Per-channel normalisation, on images scaled to [0, 1].
        augment: Training augmentation, a name in ``tfresnet.augment.AUGMENTATIONS``: ``none``,
            ``flip``, ``shift`` (pad-2 random crop, no flip: for digits), ``cifar`` (pad-4 random
            crop + flip) or ``inception`` (random-resized crop + flip).
        eval_resize: Evaluation resizing: ``none``, ``resize`` (to ``image_shape``) or
            ``center_crop`` (shorter side to 1/0.875 of the size, then a central crop).
        tfds_name: The tensorflow-datasets name, if any.
        splits: Names of the (train, test) splits.
        in_memory: Small enough to hold as arrays.
        fixed_size: Every stored image already has ``image_shape`` (arrays, resized folders);
            False for streams of images of any size (ImageNet), which ``eval_resize`` fits.
        download_url: Where tensorflow-datasets downloads it from ("" for a manual download):
            probed for a few seconds before a download, which offline would retry for minutes.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    eval_resize: str = "none"
    tfds_name: str | None = None
    splits: tuple[str, str] = ("train", "test")
    in_memory: bool = True
    fixed_size: bool = True
    download_url: str = "https://storage.googleapis.com/tfds-data/"

    @property
    def preprocessing(self) -> Preprocessing:
        """The dataset's own normalisation, for models trained from scratch on it."""
        return Preprocessing.for_dataset(self.mean, self.std, self.image_shape[0])


RECIPES: dict[str, Recipe] = {
    # No augmentation for MNIST: the tutorial recipe reaches 99.3%+ without it.
    "mnist": Recipe(10, (28, 28, 1), (0.1307,), (0.3081,), tfds_name="mnist",
                    download_url="https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": Recipe(10, (28, 28, 1), (0.2860,), (0.3530,), tfds_name="fashion_mnist",
                            download_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    "cifar10": Recipe(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar",
                      tfds_name="cifar10", download_url="https://www.cs.toronto.edu/~kriz/"),
    "cifar100": Recipe(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar",
                       tfds_name="cifar100", download_url="https://www.cs.toronto.edu/~kriz/"),
    "imagenette": Recipe(10, (224, 224, 3), IMAGENET_MEAN, IMAGENET_STD, "inception", "center_crop",
                         "imagenette/full-size-v2", ("train", "validation"), in_memory=False, fixed_size=False,
                         download_url="https://s3.amazonaws.com/fast-ai-imageclas/"),
    # Manual download, as TFDS requires: put the ILSVRC2012 tars in <data_dir>/downloads/manual.
    "imagenet2012": Recipe(1000, (224, 224, 3), IMAGENET_MEAN, IMAGENET_STD, "inception", "center_crop",
                           "imagenet2012", ("train", "validation"), in_memory=False, fixed_size=False,
                           download_url=""),
}
SOURCES = sorted(RECIPES) + ["folder", "npz", "shards", "synthetic"]
# The epoch count of a training stream that repeats forever.
EPOCHS_FOREVER = shards_lib.EPOCHS_FOREVER
# What make_dataset does with an image it cannot read or decode.
BAD_IMAGES = ("fail", "skip")
# What make_dataset hands on: uint8 pixels (normalised by the model, on the device) or float32 inputs.
IMAGE_DTYPES = ("uint8", "float32")
to_pixels = augment_lib.to_pixels


def _check_image_dtype(image_dtype: str) -> None:
    if image_dtype not in IMAGE_DTYPES:
        raise ValueError(f"image_dtype: unknown value {image_dtype!r}; expected one of {', '.join(IMAGE_DTYPES)}")


def synthetic_preprocessing(channels: int, image_size: int) -> Preprocessing:
    """How a model normalises ``synthetic(image_dtype="uint8")`` pixels: uniform on [0, 1] -> mean 0, std 1."""
    return Preprocessing.for_dataset((0.5,) * channels, (12 ** -0.5,) * channels, image_size)


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """Examples of one split, before preprocessing.

    Exactly one of these holds the examples:

    - ``images`` and ``labels``: uint8 arrays in memory;
    - ``files`` and ``labels``: encoded image files (a folder), read by index;
    - ``shards``: TFRecord files of encoded examples (``tfresnet.shards``; tensorflow-datasets'
      prepared files too);
    - ``stream``: a dataset of ``(uint8 image, int label)`` without files behind it (mocked
      tensorflow-datasets): the one kind that resumes by reading up to the step.
    """

    name: str
    split: str
    recipe: Recipe
    num_examples: int
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    stream: tf.data.Dataset | None = None
    files: np.ndarray | None = None
    shards: shards_lib.ShardSet | None = None
    class_names: tuple[str, ...] | None = None  # where the data names its classes (folders, shards)

    @property
    def num_classes(self) -> int:
        return self.recipe.num_classes

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full global batches in one epoch (the remainder is dropped)."""
        return self.num_examples // global_batch_size


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raises ``ValueError`` naming ``where`` if a label is outside ``[0, num_classes)``."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(
            f"{where}: labels must be in [0, {num_classes}), found {bad.size} outside (e.g. {bad.flat[0]})"
        )


def check_classes(source: Source) -> None:
    """Refuses a training split that cannot train a classifier: one class, or examples of one class only.

    Raises:
        ValueError: one line naming the split and its class.
    """
    where = f"{source.name} {source.split}"
    names = f" ({', '.join(source.class_names)})" if source.class_names else ""
    if source.num_classes < 2:
        raise ValueError(f"{where} has {source.num_classes} class{names}; a classifier needs at least 2 (one "
                         "sub-folder per class, or labels 0..N-1 with N >= 2)")
    if source.labels is not None and len(source.labels):  # arrays and folders know their labels up front
        present = np.unique(source.labels)
        if len(present) < 2:
            name = source.class_names[present[0]] if source.class_names else present[0]
            raise ValueError(f"{where}: all {len(source.labels)} examples are of class {name}; a classifier needs "
                             "examples of at least 2 classes")


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


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why ``url``'s server cannot be reached within ``timeout`` seconds, or None when it answers.

    Any HTTP answer (even 403 or 404) means the network is there; proxies in the environment
    (``HTTPS_PROXY``) are used as a download would use them.
    """
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    host = url.split("/")[2]
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as err:
        return f"no connection to {host}: {getattr(err.reason, 'strerror', None) or err.reason}"
    except (OSError, ValueError) as err:  # timeouts, resets
        return f"no answer from {host} within {timeout:g} s ({type(err).__name__})"
    return None


@contextlib.contextmanager
def _quiet_absl():
    """tensorflow-datasets warns through absl's logger about folders it has not made yet: not our user's concern."""
    import logging  # noqa: PLC0415

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_available(name: str, recipe: Recipe, builder, data_dir: str | None) -> None:
    """Refuses, in seconds, a dataset that is not prepared and cannot be downloaded now (offline, a
    manual download), instead of tensorflow-datasets retrying for minutes."""
    # Prepared already, or a stand-in that downloads nothing (tfds.testing.mock_data): nothing to probe.
    mocked = not type(builder).download_and_prepare.__module__.startswith("tensorflow_datasets.core")
    if builder.is_prepared() or mocked:
        return
    where = data_dir or "tensorflow-datasets' data_dir (~/tensorflow_datasets)"
    if not recipe.download_url:
        manual = os.path.join(data_dir or "~/tensorflow_datasets", "downloads", "manual")
        raise BadInput(f"{name} is not prepared in {where} and needs a manual download: put its archives in "
                       f"{manual} (see tensorflow-datasets' {recipe.tfds_name} page), or name its shards with "
                       "--dataset=shards")
    reason = unreachable(recipe.download_url)
    if reason:
        local = (f"put {name}.npz (Keras layout) in a folder and pass --data_dir=FOLDER (or set ${DATA_DIR_ENV})"
                 if recipe.in_memory else "prepare it on a machine online and pass its folder as --data_dir")
        raise BadInput(f"{name} is not in {where} and cannot be downloaded ({reason}); {local}")


def _load_tfds(name: str, recipe: Recipe, split: str, data_dir: str | None) -> Source:
    import tensorflow_datasets as tfds  # noqa: PLC0415 - only users of TFDS pay for importing it

    train = split.startswith(recipe.splits[0])
    root = data_dir or os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    # Folders a failed download would leave behind, empty or half-filled: removed again on failure.
    watched = (root, os.path.join(root, "downloads"), os.path.join(root, recipe.tfds_name.split("/")[0]))
    new_folders = [d for d in watched if "://" not in d and not os.path.exists(d)]
    try:
        with _quiet_absl():
            _check_available(name, recipe, tfds.builder(recipe.tfds_name, data_dir=data_dir), data_dir)
            stream = tfds.load(recipe.tfds_name, split=split, data_dir=data_dir, as_supervised=True,
                               shuffle_files=train and not recipe.in_memory,
                               read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False))
            splits = tfds.builder(recipe.tfds_name, data_dir=data_dir).info.splits
    except BadInput:
        raise
    except Exception as err:  # download, manual-download and parsing errors all land here
        for folder in reversed(new_folders):
            shutil.rmtree(folder, ignore_errors=True)
        local = f" or put {name}.npz in data_dir / ${DATA_DIR_ENV}" if recipe.in_memory else ""
        reason = textwrap.shorten(str(err).splitlines()[0] if str(err) else "", 200, placeholder=" ...")
        raise BadInput(
            f"tensorflow-datasets could not load {recipe.tfds_name!r} split {split!r} from "
            f"{data_dir or 'its default data_dir'} ({type(err).__name__}: {reason}); "
            f"prepare it with tfds.builder({recipe.tfds_name!r}).download_and_prepare(){local}"
        ) from None
    if recipe.in_memory:
        chunks = list(tfds.as_numpy(stream.batch(8192)))
        images = np.concatenate([c[0] for c in chunks])
        labels = np.concatenate([c[1] for c in chunks]).astype(np.int32)
        check_labels(labels, recipe.num_classes, f"{name} {split}")
        return Source(name, split, recipe, len(labels), images=images, labels=labels)
    shard_set = _tfds_shards(splits, split, f"{recipe.tfds_name} {split}")
    if shard_set is not None:
        return Source(name, split, recipe, shard_set.num_examples, shards=shard_set)
    # No prepared files (tfds.testing.mock_data): the stream itself, counted once.
    num_examples = int(stream.reduce(0, lambda count, _: count + 1))
    return Source(name, split, recipe, num_examples, stream=stream)


def _tfds_shards(splits, split: str, where: str) -> shards_lib.ShardSet | None:
    """The prepared TFRecord files behind a tensorflow-datasets split (slices included), if they exist."""
    try:
        instructions = splits[split].file_instructions
    except (KeyError, ValueError, AttributeError):
        return None
    files = [str(i.filename) for i in instructions]
    # Only TFRecord files (not ArrayRecord) that are really there (not mocked) are read directly.
    if not files or not all(".tfrecord" in os.path.basename(f) and tf.io.gfile.exists(f) for f in files):
        return None
    counts = [i.examples_in_shard - i.skip if i.take == -1 else i.take for i in instructions]
    return shards_lib.ShardSet(tuple(files), tuple(counts), tuple(i.skip for i in instructions), where)


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


def _folder_files(root: pathlib.Path, split: str,
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
        classes, examples_per_class, seed: A subset (``choose_examples``); a class is the index
            of its sub-folder in sorted order.

    Returns:
        A ``Source`` of files.
    """
    root = pathlib.Path(path)
    base, class_names, files, labels = _folder_files(root, split, validation_fraction)
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


def write_shards(name: str, data_dir: str | None, out_dir: str, num_shards: int, splits: Sequence[str] = (),
                 seed: int = 0, overwrite: bool = False,
                 log=print) -> dict[str, shards_lib.ShardSet]:
    """Converts a class-folder dataset, or a tensorflow-datasets image dataset, into shard files.

    Images are stored as encoded (a folder's files byte for byte), not decoded and re-encoded. A
    folder's images are checked first: one that does not decode is a one-line error naming it.

    Args:
        name: ``folder`` (``data_dir`` is the folder) or a tensorflow-datasets name in ``RECIPES``.
        data_dir: The folder, or tensorflow-datasets' data directory.
        out_dir: The shard folder (local or ``gs://``).
        num_shards: Files per split (each input pipeline reads its own, so at least that many).
        splits: Splits to convert; default ``train`` and ``test`` (a folder) or the recipe's.
        seed: Seeds the order in which examples are spread over the shards.
        overwrite: Replace splits the folder already holds.
        log: Prints one line per split.

    Returns:
        The written splits.
    """
    written = {}

    def write(examples, split, class_names, order_seed):
        written[split] = shards_lib.write_shards(examples, out_dir, split, num_shards, class_names, order_seed,
                                                 overwrite)
        log(f"{split}: {written[split].num_examples} images of {len(class_names)} classes -> "
            f"{len(written[split].files)} shards in {out_dir}")

    if name == "folder":
        if not data_dir:
            raise ValueError("converting a folder needs data_dir: a folder with one sub-folder per class")
        for split in splits or ("train", "test"):
            _, class_names, files, labels = _folder_files(pathlib.Path(data_dir), split, 0.1)
            check_images(files)
            write([(f, label, os.path.relpath(f, data_dir)) for f, label in zip(files, labels)], split, class_names,
                  seed)
        return written
    if name not in RECIPES or RECIPES[name].in_memory:
        raise ValueError(f"cannot convert {name!r}: convert a folder or an image dataset of tensorflow-datasets "
                         f"({', '.join(k for k, r in RECIPES.items() if not r.in_memory)})")
    import tensorflow_datasets as tfds  # noqa: PLC0415

    recipe = RECIPES[name]
    builder = tfds.builder(recipe.tfds_name, data_dir=data_dir)
    class_names = builder.info.features["label"].names
    for split in splits or recipe.splits:
        # Streamed, never held in memory: the encoded bytes as tensorflow-datasets stored them.
        stream = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        examples = ((image, label, f"{recipe.tfds_name}/{split}/{i}")
                    for i, (image, label) in enumerate(stream.map(lambda ex: (ex["image"], ex["label"]))
                                                       .as_numpy_iterator()))
        write(examples, split, class_names, None)
    return written


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
                                   labels=labels)
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
    return _load_tfds(name, recipe, split, data_dir)


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def normalize(images: tf.Tensor, recipe: Recipe) -> tf.Tensor:
    """uint8 (or [0, 255] float) images -> float32 ``(x / 255 - mean) / std`` with the dataset's statistics."""
    return recipe.preprocessing.normalize(images)


def fit_images(images: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """uint8 images (one, or a batch) of any size -> uint8 images of ``size`` (height, width).

    How a folder of images is stored for the pipeline, and how the serving signature brings an
    image of any size to the dataset's: the same resize (antialiased bilinear), rounded back to
    uint8 pixels. Images that have the size already pass unchanged.
    """
    shape = tf.shape(images)[-3:-1]
    same = tf.reduce_all(tf.equal(shape, tf.constant(tuple(size), tf.int32)))

    def resize():
        return to_pixels(tf.image.resize(images, tuple(size), antialias=True))

    return tf.cond(same, lambda: tf.cast(images, tf.uint8), resize)


def eval_pixels(images: tf.Tensor, recipe: Recipe, preprocessing: Preprocessing | None = None) -> tf.Tensor:
    """Stored uint8 images (one, or a batch) -> the uint8 images evaluated.

    The evaluation resizing of ``recipe``, with the crop fraction and interpolation of
    ``preprocessing`` (the dataset's own when None), rounded back to pixels (``to_pixels``).
    """
    preprocessing = preprocessing or recipe.preprocessing
    return to_pixels(augment_lib.resize_for_eval(images, recipe.image_shape, recipe.eval_resize,
                                                 preprocessing.crop_fraction, preprocessing.interpolation))


def eval_images(images: tf.Tensor, recipe: Recipe, preprocessing: Preprocessing | None = None) -> tf.Tensor:
    """Stored uint8 images (one, or a batch) -> float32 model inputs, as evaluated.

    ``eval_pixels``, then the normalisation of ``preprocessing`` (the dataset's own when None).
    """
    preprocessing = preprocessing or recipe.preprocessing
    return preprocessing.normalize(eval_pixels(images, recipe, preprocessing))


def serving_images(images: tf.Tensor, recipe: Recipe, preprocessing: Preprocessing | None = None) -> tf.Tensor:
    """A batch of raw uint8 images of any size -> float32 model inputs: what the serving signature does.

    The images are first stored as the pipeline stores them (``fit_images`` for fixed-size
    datasets), then evaluated exactly as ``make_dataset(training=False)`` does (``eval_images``),
    so an exported model gives the logits of the Python pipeline.
    """
    if recipe.fixed_size:
        images = fit_images(images, recipe.image_shape[:2])
    return eval_images(images, recipe, preprocessing)


# --------------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------------


def _checked_label(label: tf.Tensor, num_classes: int, where: str) -> tf.Tensor:
    """``label``, failing the pipeline with a message naming ``where`` if it is out of range."""
    check = tf.debugging.assert_less(label, tf.cast(num_classes, label.dtype),
                                     f"{where}: label outside [0, {num_classes})")
    with tf.control_dependencies([check, tf.debugging.assert_non_negative(label, f"{where}: negative label")]):
        return tf.identity(label)


def _pipeline_share(global_batch_size: int, input_context: tf.distribute.InputContext | None):
    """(per-replica batch, number of input pipelines, this pipeline's id)."""
    if input_context is None:
        return global_batch_size, 1, 0
    return (input_context.get_per_replica_batch_size(global_batch_size), input_context.num_input_pipelines,
            input_context.input_pipeline_id)


def make_dataset(
    source: Source,
    batch_size: int,
    training: bool,
    seed: int = 0,
    start_step: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    deterministic: bool = True,
    shuffle_buffer: int = 10_000,
    augment: str | None = None,
    preprocessing: Preprocessing | None = None,
    bad_images: str = "fail",
    data_service: str | None = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    randaugment: tuple[int, float] = (0, 9.0),
    image_dtype: str = "float32",
    pad_eval: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(images, int32 labels)`` from ``source``.

    Training datasets repeat forever with a fresh order every epoch and drop incomplete batches
    (static shapes for XLA and TPUs); evaluation datasets make one ordered pass, keeping the last
    partial batch unless ``pad_eval``. Under a ``tf.distribute`` strategy pass the
    ``input_context`` of ``distribute_datasets_from_function``: each input pipeline reads its own
    shard and batches per replica.

    Every image is uint8 until the end: decoded, cropped, resized (rounded back to pixels,
    ``to_pixels``), augmented and mixed as pixels. ``image_dtype="uint8"`` hands them on as they
    are, a quarter of the bytes of float32, and leaves the normalisation to the model on the
    device (``ImageClassifier`` normalises uint8 inputs with its preprocessing record, which must
    then be ``preprocessing``): what the trainer does. ``"float32"`` normalises on the host.

    Args:
        source: From ``load_source``.
        batch_size: GLOBAL batch size (all replicas together).
        training: Shuffle, augment, repeat.
        seed: Seeds the order and the augmentation.
        start_step: Global training step to start at (resuming): the first batch is the one an
            uninterrupted run would see at that step. Arrays, files and shards get there in
            constant time, on indices, without reading what they skip.
        input_context: ``tf.distribute.InputContext`` or None.
        deterministic: Keep element order fixed under parallel maps (needed for exact resume).
        shuffle_buffer: Shuffle buffer of ``stream`` sources (the others shuffle by index).
        augment: Training augmentation (a name in ``tfresnet.augment.AUGMENTATIONS``); None: the
            source's recipe's.
        preprocessing: The normalisation (and evaluation crop) that the model's weights expect,
            e.g. ``model.preprocessing`` of a pretrained model; None: the dataset's own.
        bad_images: An image file or record that cannot be read or decoded (and a corrupt or
            truncated shard): ``fail`` stops with a one-line error naming it; ``skip`` warns on
            stderr and fills its place in the batch with another image of the same batch, so
            batches keep their size and a resumed run still sees the same batches.
        data_service: ``grpc://host:port`` (or ``host:port``) of a ``tf.data`` service dispatcher:
            reading, decoding and augmentation run on its workers. Each worker makes whole epochs
            in the order above, but the service hands out their batches as they are ready: exact
            resume is given up (a resumed run starts at the right epoch, not the exact batch).
        mixup, cutmix: Training only: mix each batch (``augment.mix_batch``) with these Beta
            parameters, seeded by ``(seed, batch number)``; labels are then soft, ``(batch,
            classes)`` float32.
        randaugment: ``(ops, magnitude)`` of RandAugment (``augment.rand_augment``) after the
            training augmentation, keyed by each example's seed; 0 ops is off. Never at evaluation.
        image_dtype: ``float32`` (normalised by ``preprocessing`` here) or ``uint8`` (pixels,
            normalised by the model).
        pad_eval: Evaluation only: pad the last batch to the full batch size with filler
            examples (zero images; the first example for arrays) and yield ``(images, labels,
            weights)``, weight 0 for the filler, 1 otherwise (Keras' ``sample_weight``), with as many batches in every input pipeline and a multiple of its
            replicas: every batch has one static shape, so a compiled step is built once.

    Returns:
        A ``tf.data.Dataset``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if bad_images not in BAD_IMAGES:
        raise ValueError(f"bad_images: unknown value {bad_images!r}; expected one of {', '.join(BAD_IMAGES)}")
    _check_image_dtype(image_dtype)
    per_replica, num_pipelines, pipeline_id = _pipeline_share(batch_size, input_context)
    # Replicas each input pipeline feeds (batch b of a pipeline is replica b % k of step b // k).
    per_pipeline = max(1, (input_context.num_replicas_in_sync if input_context else 1) // num_pipelines)
    recipe = source.recipe
    augment = recipe.augment if augment is None else augment
    augment_fn = augment_lib.AUGMENTATIONS.get(augment)
    steps = source.steps_per_epoch(batch_size)
    if training and steps == 0:
        raise ValueError(f"{source.name} {source.split} has {source.num_examples} examples, fewer than one "
                         f"batch of {batch_size}")
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # we shard

    preprocessing = preprocessing or recipe.preprocessing
    if preprocessing.channels != recipe.image_shape[-1]:
        raise ValueError(f"{source.name} has {recipe.image_shape[-1]}-channel images; the preprocessing record is for "
                         f"{preprocessing.channels} channels (mean {preprocessing.mean})")

    rand_augment = _rand_augmenter(seed, randaugment)
    train_view = _training_view(augment_fn, recipe.image_shape, seed, rand_augment)

    def prepare(image, label, key):
        image = to_pixels(train_view(image, key)) if training else eval_pixels(image, recipe, preprocessing)
        return tf.ensure_shape(image, recipe.image_shape), tf.cast(label, tf.int32)

    padding = not training and pad_eval
    if padding:  # the examples of the fullest pipeline, in whole batches for each of its replicas
        most = (max(source.shards.for_pipeline(p, num_pipelines).num_examples for p in range(num_pipelines))
                if source.shards is not None else -(-source.num_examples // num_pipelines))
        padded_size = -(-most // (per_replica * per_pipeline)) * per_pipeline * per_replica

    def pad(ds: tf.data.Dataset) -> tf.data.Dataset:
        """``(image, label)`` -> ``(image, label, weight)``, padded with zero images of weight 0."""
        if not padding:
            return ds
        image_spec, label_spec = ds.element_spec
        return _weighted(ds, (tf.zeros(image_spec.shape, image_spec.dtype), tf.zeros([], label_spec.dtype)),
                         padded_size)

    if data_service and training:
        # The service hands out whole epochs to its workers: a resumed run restarts its epoch.
        start_step -= start_step % steps

    def finish(ds: tf.data.Dataset) -> tf.data.Dataset:
        if training and (mixup or cutmix):
            # A batch's seed is a pure function of its step and replica (batch number b of this
            # pipeline), so a resumed run mixes the same batches.
            ds = ds.enumerate(start_step * per_pipeline).map(
                lambda b, batch: augment_lib.mix_batch(*batch, recipe.num_classes, mixup, cutmix,
                                                       tf.stack([tf.cast(seed, tf.int64) + 7919,
                                                                 b * num_pipelines + pipeline_id])),
                num_parallel_calls=AUTOTUNE)
        if image_dtype == "float32":
            ds = ds.map(lambda images, *rest: (preprocessing.normalize(images), *rest), num_parallel_calls=AUTOTUNE)
        if data_service:
            address = data_service if "://" in data_service else f"grpc://{data_service}"
            ds = ds.apply(tf.data.experimental.service.distribute("distributed_epoch", address))
        return ds.with_options(options).prefetch(AUTOTUNE)

    if source.files is not None or source.shards is not None:
        if source.files is not None:
            ds = _file_examples(source, training, seed, start_step, batch_size, num_pipelines, pipeline_id)
        else:
            shard_set = source.shards.for_pipeline(pipeline_id, num_pipelines)
            start = start_step * batch_size // num_pipelines
            if data_service:
                start -= start % shard_set.num_examples
            records = shards_lib.read_records(shard_set, training, seed, start, skip_bad=bad_images == "skip")
            ds = records.map(lambda record, name, key: (record, tf.constant(-1), name, key))
        decode = _decoder(source, training, augment, train_view, preprocessing, seed, rand_augment)
        count = None if training else (len(range(pipeline_id, len(source.files), num_pipelines))
                                       if source.files is not None else shard_set.num_examples)
        where = f"{source.name} {source.split}"
        ds = _decode_examples(ds, decode, count, bad_images, where)
        ds = pad(ds.map(lambda image, label: (image, _checked_label(label, recipe.num_classes, where))))
        ds = ds.batch(per_replica, drop_remainder=training or padding, num_parallel_calls=AUTOTUNE)
        return finish(ds)

    if source.images is not None:
        images, labels = tf.constant(source.images), tf.constant(source.labels)
        ds = _index_stream(len(source.labels), training, seed, start_step, batch_size, num_pipelines,
                           pipeline_id)
        if not training or (augment == "none" and not randaugment[0]):
            # Nothing per-example to do: gather whole batches (~10x less overhead).
            if padding:  # index 0 of weight 0 fills the last batch
                ds = _weighted(ds.map(lambda i, key: i), (tf.constant(0, tf.int64),), padded_size)
                ds = ds.batch(per_replica, drop_remainder=True)
                ds = ds.map(lambda i, weight: (tf.gather(images, i), tf.gather(labels, i), weight),
                            num_parallel_calls=AUTOTUNE)
            else:
                ds = ds.batch(per_replica, drop_remainder=training)
                ds = ds.map(lambda i, key: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=AUTOTUNE)
            return finish(ds)
        ds = ds.map(lambda i, key: (tf.gather(images, i), tf.gather(labels, i), key), num_parallel_calls=AUTOTUNE)
    else:
        ds = source.stream
        if num_pipelines > 1:
            ds = ds.shard(num_pipelines, pipeline_id)
        if training:
            # A stream without files (mocked TFDS) can only be shuffled in a buffer and skipped by reading.
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
            ds = ds.enumerate().map(lambda key, ex: (*ex, key)).skip(start_step * batch_size // num_pipelines)
            ds = ds.map(lambda image, label, key: (image, _checked_label(label, recipe.num_classes, source.name), key))
        else:
            ds = ds.map(lambda image, label: (image, label, tf.constant(0, tf.int64)))
    ds = pad(ds.map(prepare, num_parallel_calls=AUTOTUNE))
    ds = ds.batch(per_replica, drop_remainder=training or padding, num_parallel_calls=AUTOTUNE)
    return finish(ds)


def _weighted(ds: tf.data.Dataset, filler: tuple, size: int) -> tf.data.Dataset:
    """``ds``'s elements with weight 1.0 appended, then ``filler`` with weight 0.0: ``size`` elements in all."""
    ds = ds.map(lambda *element: (*element, tf.constant(1.0)))
    return ds.concatenate(tf.data.Dataset.from_tensors((*filler, tf.constant(0.0))).repeat()).take(size)


def _index_stream(n: int, training: bool, seed: int, start_step: int, batch_size: int, num_pipelines: int,
                  pipeline_id: int) -> tf.data.Dataset:
    """``(index, key)`` of examples held by index (arrays, files), in this pipeline's order.

    Training: epoch ``e`` is ``stateless_shuffle(range(n), [seed, e])`` cut to whole global
    batches, every ``num_pipelines``-th to this pipeline, repeated forever from the epoch and
    position of ``start_step``: the skip is on indices, nothing is read. The key seeds each
    example's augmentation: distinct for every (epoch, example). Evaluation: one ordered pass.
    """
    if not training:
        order = tf.range(n, dtype=tf.int64)[pipeline_id::num_pipelines]
        return tf.data.Dataset.from_tensor_slices((order, order))
    steps = n // batch_size
    start_epoch, step_in_epoch = divmod(start_step, steps)

    def epoch_indices(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[seed, epoch])
        order = order[:steps * batch_size][pipeline_id::num_pipelines]
        return tf.data.Dataset.from_tensor_slices((order, epoch * n + order))

    # range, not counter: a tf.data service splits a range among its workers (whole epochs each).
    ds = tf.data.Dataset.range(start_epoch, EPOCHS_FOREVER).flat_map(epoch_indices)
    return ds.skip(step_in_epoch * batch_size // num_pipelines)


def _file_examples(source: Source, training: bool, seed: int, start_step: int, batch_size: int,
                   num_pipelines: int, pipeline_id: int) -> tf.data.Dataset:
    """``(path, label, path, key)`` of a folder's files, ordered as ``_index_stream`` orders indices."""
    files, labels = tf.constant(source.files), tf.constant(source.labels)
    ds = _index_stream(len(source.files), training, seed, start_step, batch_size, num_pipelines, pipeline_id)

    def example(i, key):
        path = tf.gather(files, i)
        return path, tf.gather(labels, i), path, key

    return ds.map(example)


def _rand_augmenter(seed: int, randaugment: tuple[int, float]):
    """``(image, key) -> image``: RandAugment keyed by ``(seed, key)``, or the image itself when off."""
    num_ops, magnitude = randaugment

    def apply(image, key):
        if not num_ops:
            return image
        return augment_lib.rand_augment(image, num_ops, magnitude, tf.stack([tf.cast(seed, tf.int64) + 104_729, key]))

    return apply


def _training_view(augment_fn, image_shape: Sequence[int], seed: int, rand_augment):
    """``(image, key) -> image``: the training augmentation keyed by ``(seed, key)``, then ``rand_augment``."""
    return lambda image, key: rand_augment(augment_fn(image, image_shape, tf.stack([tf.cast(seed, tf.int64), key])),
                                           key)


def _decoder(source: Source, training: bool, augment: str, train_view, preprocessing: Preprocessing, seed: int,
             rand_augment):
    """``(payload, label, key) -> (uint8 image, label)`` for files (payload: the path) or records."""
    recipe = source.recipe
    shape, channels = recipe.image_shape, recipe.image_shape[-1]

    def decode(payload, label, key):
        if source.files is not None:
            encoded = tf.io.read_file(payload)
        else:
            encoded, label = shards_lib.parse(payload)
        if training and augment == "inception":
            image = rand_augment(
                augment_lib.inception_from_encoded(encoded, shape, tf.stack([tf.cast(seed, tf.int64), key])), key)
        else:
            image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
            image = augment_lib.resize_for_eval(image, shape, recipe.eval_resize, preprocessing.crop_fraction,
                                                preprocessing.interpolation)
            if training:
                image = train_view(image, key)
        return tf.ensure_shape(to_pixels(image), shape), label

    return decode


def _decode_examples(examples: tf.data.Dataset, decode, count: int | None, bad_images: str,
                     where: str) -> tf.data.Dataset:
    """``(payload, label, name, key)`` -> ``(image, label)``, decoded in parallel, bad ones named.

    A decode that fails drops its element (``ignore_errors``); every element carries its position,
    so the gap shows at the next one. ``fail``: a one-line error naming the file (or shard and
    record), looked up on the undecoded stream only then. ``skip``: a warning, and the next image
    fills the gap, so later positions, batches and exact resume are unchanged.

    Args:
        examples: The undecoded stream.
        decode: ``(payload, label, key) -> (image, label)``.
        count: Elements of a finite (evaluation) stream, so that a failure at its very end shows;
            None for the infinite training stream.
        bad_images: ``fail`` or ``skip``.
        where: Names the data in errors.
    """
    positioned = examples.enumerate()
    decoded = positioned.map(lambda p, ex: (*decode(ex[0], ex[1], ex[3]), p), num_parallel_calls=AUTOTUNE,
                             deterministic=True).ignore_errors()
    if count is not None:  # a marker after the last element: a failure there leaves a gap before it
        image_spec, label_spec, _ = decoded.element_spec
        decoded = decoded.concatenate(tf.data.Dataset.from_tensors(
            (tf.zeros(image_spec.shape, image_spec.dtype), tf.constant(-1, label_spec.dtype),
             tf.constant(count, tf.int64))))

    def names(start, stop):
        found = positioned.skip(start).take(stop - start).map(lambda p, ex: ex[2])
        return found.reduce(tf.constant(""), lambda joined, name: tf.where(
            joined == "", name, tf.strings.join([joined, name], " ")))

    def check(expected, element):
        image, label, position = element
        gap = position > expected
        missing = tf.cond(gap, lambda: names(expected, position), lambda: tf.constant(""))
        if bad_images == "fail":
            report = tf.debugging.Assert(tf.logical_not(gap), [f"{where}: cannot read or decode", missing])
        else:
            report = tf.cond(gap, lambda: tf.print("tfresnet: skipped", position - expected, "unreadable image(s):",
                                                   missing, output_stream=sys.stderr), tf.no_op)
        with tf.control_dependencies([report]):
            return position + 1, (tf.identity(image), label, position - expected + 1)

    checked = decoded.scan(tf.constant(0, tf.int64), check)
    if count is not None:
        checked = checked.filter(lambda image, label, copies: label >= 0)
    if bad_images == "fail":
        return checked.map(lambda image, label, copies: (image, label))
    # The image after a gap also takes the places of the images missing before it.
    return checked.flat_map(lambda image, label, copies: tf.data.Dataset.from_tensors((image, label)).repeat(copies))


def synthetic(
    image_shape: Sequence[int],
    num_classes: int,
    batch_size: int,
    seed: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    image_dtype: str = "float32",
) -> tf.data.Dataset:
    """One random batch repeated forever, for speed tuning and smoke runs.

    The batch is generated once; the classification task keeps the first distributed batch on the
    device and reuses it (``dataset="synthetic"``), so no step pays a host-to-device copy.

    Args:
        image_shape: ``(height, width, channels)``.
        num_classes: Labels are drawn from ``[0, num_classes)``.
        batch_size: GLOBAL batch size.
        seed: Seeds the batch.
        input_context: ``tf.distribute.InputContext`` or None.
        mixup, cutmix: Mix the batch once, as ``make_dataset`` mixes every batch: soft labels.
        image_dtype: ``float32`` (standard normal images) or ``uint8`` (uniform pixels, which a
            model normalises with ``synthetic_preprocessing``, as it would real ones).

    Returns:
        An infinite ``tf.data.Dataset`` of ``(images, int32 labels)`` (float32 soft labels
        ``(batch, classes)`` when mixed).
    """
    _check_image_dtype(image_dtype)
    per_replica, _, pipeline_id = _pipeline_share(batch_size, input_context)
    if image_dtype == "uint8":
        images = tf.cast(tf.random.stateless_uniform((per_replica, *image_shape), [seed, pipeline_id], 0, 256,
                                                     tf.int32), tf.uint8)
    else:
        images = tf.random.stateless_normal((per_replica, *image_shape), seed=[seed, pipeline_id])
    labels = tf.random.stateless_uniform((per_replica,), [seed, pipeline_id + 1], 0, num_classes, tf.int32)
    if mixup or cutmix:
        images, labels = augment_lib.mix_batch(images, labels, num_classes, mixup, cutmix,
                                               tf.constant([seed, pipeline_id + 2], tf.int64))
    return tf.data.Dataset.from_tensors((images, labels)).repeat()
