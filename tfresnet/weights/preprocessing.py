"""``Preprocessing``: how a model's weights expect their pixels, recorded next to the weights.

Weights are only as good as the preprocessing they were trained with: keras.applications' ResNet
v1 weights expect Caffe's BGR, mean-subtracted 0-255 pixels, its v2 weights [-1, 1], torchvision
and timm RGB in [0, 1] normalised by the ImageNet mean and standard deviation. A mismatch costs
several points of accuracy without any error (tensorflow/models#10420). So every weight source
(``tfresnet.weights``) carries one of these records, a model built from it keeps the record in its
config (``model.preprocessing``), and the training, evaluation and serving pipelines read it from
there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import tensorflow as tf

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("bilinear", "bicubic")
EVAL_VIEWS = ("center_crop", "resize", "fit")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Pixels to model inputs: ``(pixels[channel_order] * scale - mean) / std``.

    Attributes:
        mean: Per-channel mean, subtracted after scaling (in ``channel_order``).
        std: Per-channel standard deviation, divided by after subtracting the mean.
        scale: Multiplies the 0-255 pixel values first (1/255: [0, 1]; 1: Caffe's 0-255).
        channel_order: ``RGB``, or ``BGR`` (Caffe-trained weights): images are always RGB in the
            pipelines, and are flipped for ``BGR``.
        input_size: The side the weights were trained at (a fine-tuning run uses it unless told
            otherwise).
        crop_fraction: Evaluation centre crop: the shorter side is resized to
            ``input_size / crop_fraction``, then the centre is cut out (0.875: 256 -> 224).
        interpolation: The resizing method of that evaluation (``tf.image.resize``'s ``bilinear``
            or ``bicubic``; timm's recent weights were evaluated with bicubic).
        eval_view: How the model's evaluation brings an image of any size to its input:
            ``center_crop`` (above), ``resize`` (the whole image) or ``fit`` (the whole image,
            stored at the dataset's size first, as arrays and resized folders are). None: not
            recorded (weights' records, and models saved before it was): the run's SavedModel
            knows it.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1 / 255
    channel_order: str = "RGB"
    input_size: int = 224
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    eval_view: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"preprocessing mean {self.mean} and std {self.std} need one value per channel each")
        if min(self.std) <= 0 or self.scale <= 0:
            raise ValueError(f"preprocessing std {self.std} and scale {self.scale} must be positive")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"preprocessing channel_order: unknown value {self.channel_order!r}; expected RGB or BGR")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"preprocessing interpolation: unknown value {self.interpolation!r}; expected one of "
                             f"{', '.join(INTERPOLATIONS)}")
        if self.eval_view is not None and self.eval_view not in EVAL_VIEWS:
            raise ValueError(f"preprocessing eval_view: unknown value {self.eval_view!r}; expected one of "
                             f"{', '.join(EVAL_VIEWS)}")
        if self.input_size <= 0 or not 0 < self.crop_fraction <= 1:
            raise ValueError(f"preprocessing input_size {self.input_size} must be positive and crop_fraction "
                             f"{self.crop_fraction} in (0, 1]")

    @property
    def channels(self) -> int:
        return len(self.mean)

    def normalize(self, images: tf.Tensor) -> tf.Tensor:
        """uint8 (or 0-255 float) RGB images, any leading axes -> float32 model inputs."""
        images = tf.cast(images, tf.float32)
        if self.channel_order == "BGR":
            images = images[..., ::-1]
        return (images * self.scale - tf.constant(self.mean)) / tf.constant(self.std)

    def pixels(self, inputs: tf.Tensor) -> tf.Tensor:
        """The inverse of ``normalize``: model inputs -> uint8 RGB pixels (to show what the model saw)."""
        images = (tf.cast(inputs, tf.float32) * tf.constant(self.std) + tf.constant(self.mean)) / self.scale
        if self.channel_order == "BGR":
            images = images[..., ::-1]
        return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, for a model's config and a run's ``run.json``."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any] | "Preprocessing") -> "Preprocessing":
        """The inverse of ``to_dict`` (a ``Preprocessing`` passes through); unknown keys are an error."""
        if isinstance(record, cls):
            return record
        unknown = set(record) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"preprocessing record has unknown keys {sorted(unknown)}; expected "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**record)

    @classmethod
    def for_dataset(cls, mean: Sequence[float], std: Sequence[float], image_size: int) -> "Preprocessing":
        """A dataset's own normalisation (pixels in [0, 1], then its mean/std), for models trained from scratch."""
        return cls(tuple(mean), tuple(std), 1 / 255, "RGB", image_size)


# The published weights' conventions (keras.applications' ``preprocess_input`` modes, torchvision's
# transforms, timm's pretrained_cfg).
CAFFE = Preprocessing((103.939, 116.779, 123.68), (1.0, 1.0, 1.0), scale=1.0, channel_order="BGR")
INCEPTION = Preprocessing((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), scale=1 / 127.5)  # [-1, 1]
TORCHVISION = Preprocessing(IMAGENET_MEAN, IMAGENET_STD)
