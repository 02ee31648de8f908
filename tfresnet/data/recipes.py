"""What a dataset is: its recipe (classes, image shape, normalisation, augmentation) and a split's examples.

``Recipe`` describes a dataset, ``RECIPES`` the built-in ones; ``Source`` holds one split's
examples (arrays, files, shards or a stream) as ``tfresnet.data.sources.load_source`` found them;
``check_labels`` and ``check_classes`` refuse what cannot train a classifier.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from tfresnet.data import augment as augment_lib
from tfresnet.data import shards as shards_lib
from tfresnet.weights import classes
from tfresnet.weights.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

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
        augment: Training augmentation, a name in ``tfresnet.data.augment.AUGMENTATIONS``: ``none``,
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
        class_names: The name of each label, in label order (``tfresnet.weights.classes``).
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
    class_names: tuple[str, ...] = ()

    @property
    def preprocessing(self) -> Preprocessing:
        """The dataset's own normalisation, for models trained from scratch on it."""
        return dataclasses.replace(Preprocessing.for_dataset(self.mean, self.std, self.image_shape[0]),
                                   eval_view=self.eval_view)

    @property
    def eval_view(self) -> str | None:
        """How the evaluation brings an image of any size to ``image_shape`` (``Preprocessing.eval_view``):
        recorded in the models trained on it, so a ``model.keras`` alone can be served."""
        if self.fixed_size:
            return "fit" if self.eval_resize == "none" else None
        return self.eval_resize if self.eval_resize in ("center_crop", "resize") else None


def eval_recipe(preprocessing: Preprocessing, num_classes: int) -> Recipe:
    """The evaluation that a model's preprocessing record describes (its ``eval_view``, at its
    ``input_size``): what ``serving_images`` needs to prepare images of any size for it."""
    if preprocessing.eval_view is None:
        raise ValueError("the preprocessing record does not say how images are fitted to the model (eval_view)")
    size = preprocessing.input_size
    fit = preprocessing.eval_view == "fit"
    return Recipe(num_classes, (size, size, preprocessing.channels), preprocessing.mean, preprocessing.std,
                  eval_resize="none" if fit else preprocessing.eval_view, in_memory=False, fixed_size=fit)


RECIPES: dict[str, Recipe] = {
    # No augmentation for MNIST: the tutorial recipe reaches 99.3%+ without it.
    "mnist": Recipe(10, (28, 28, 1), (0.1307,), (0.3081,), tfds_name="mnist",
                    download_url="https://storage.googleapis.com/cvdf-datasets/mnist/", class_names=classes.MNIST),
    "fashion_mnist": Recipe(10, (28, 28, 1), (0.2860,), (0.3530,), tfds_name="fashion_mnist",
                            download_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                            class_names=classes.FASHION_MNIST),
    "cifar10": Recipe(10, (32, 32, 3), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar",
                      tfds_name="cifar10", download_url="https://www.cs.toronto.edu/~kriz/",
                      class_names=classes.CIFAR10),
    "cifar100": Recipe(100, (32, 32, 3), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar",
                       tfds_name="cifar100", download_url="https://www.cs.toronto.edu/~kriz/",
                       class_names=classes.CIFAR100),
    "imagenette": Recipe(10, (224, 224, 3), IMAGENET_MEAN, IMAGENET_STD, "inception", "center_crop",
                         "imagenette/full-size-v2", ("train", "validation"), in_memory=False, fixed_size=False,
                         download_url="https://s3.amazonaws.com/fast-ai-imageclas/", class_names=classes.IMAGENETTE),
    # Manual download, as TFDS requires: put the ILSVRC2012 tars in <data_dir>/downloads/manual.
    "imagenet2012": Recipe(1000, (224, 224, 3), IMAGENET_MEAN, IMAGENET_STD, "inception", "center_crop",
                           "imagenet2012", ("train", "validation"), in_memory=False, fixed_size=False,
                           download_url="", class_names=classes.imagenet()),
}
SOURCES = sorted(RECIPES) + ["folder", "npz", "shards", "synthetic"]
# The epoch count of a training stream that repeats forever.
EPOCHS_FOREVER = shards_lib.EPOCHS_FOREVER
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
    - ``shards``: TFRecord files of encoded examples (``tfresnet.data.shards``; tensorflow-datasets'
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

    @property
    def label_names(self) -> tuple[str, ...]:
        """The name of each label: the data's own (folders, shards), the dataset's (MNIST, CIFAR,
        ImageNet), else ``class_0 ... class_{N-1}`` (arrays in a ``.npz``)."""
        return self.class_names or self.recipe.class_names or classes.numbered(self.num_classes)

    def names_of(self, labels: Sequence[int]) -> tuple[str, ...]:
        """The names of ``labels`` (``--classes``, relabelled ``0..k-1``: ``--classes=5,6`` names its
        labels "5" and "6"); all of ``label_names`` for none."""
        return tuple(self.label_names[label] for label in labels) if labels else self.label_names

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full global batches in one epoch (the remainder is dropped)."""
        return self.num_examples // global_batch_size


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
