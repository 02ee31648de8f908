"""Training augmentations, by name, and the evaluation resizing.

An augmentation is ``fn(image, image_shape, seed) -> image`` on one uint8 image: every random
choice comes from the stateless ``seed`` (two int64s) that the pipeline derives from ``(seed,
epoch, example)``, so a resumed run sees exactly the images an uninterrupted one would. Adding one
is one entry in ``AUGMENTATIONS``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from tfresnet.registry import Registry

Augmentation = Callable[[tf.Tensor, Sequence[int], tf.Tensor], tf.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("augment")


def _seeds(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


@AUGMENTATIONS.register("none")
def identity(image: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """No augmentation (MNIST: the tutorial recipe reaches 99.3%+ without it)."""
    return image


@AUGMENTATIONS.register("flip")
def flip(image: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """Random horizontal flip."""
    return tf.image.stateless_random_flip_left_right(image, seed=_seeds(seed, 2)[1])


def _pad_and_crop(image: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor, pad: int) -> tf.Tensor:
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(image, tuple(image_shape), seed=_seeds(seed, 2)[0])


@AUGMENTATIONS.register("shift")
def shift(image: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """Pad by 2 and crop back: shifts of up to 2 pixels, no flip (digits and text must not mirror)."""
    return _pad_and_crop(image, image_shape, seed, 2)


@AUGMENTATIONS.register("cifar")
def cifar(image: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """He et al. (2015): pad by 4, random crop, random horizontal flip."""
    return flip(_pad_and_crop(image, image_shape, seed, 4), image_shape, seed)


def _inception_window(image_size: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(begin, size)`` of a random-resized crop of an image of ``image_size`` (height, width, channels)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_size, tf.zeros([1, 0, 4]), seed=_seeds(seed, 2)[0], min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin, size


@AUGMENTATIONS.register("inception")
def inception(image: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """Inception-style random-resized crop (8-100% of the area, aspect 3/4-4/3), then flip."""
    begin, size = _inception_window(tf.shape(image), seed)
    return _resize_crop(tf.slice(image, begin, size), image_shape, seed)


def _resize_crop(crop: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    # Bilinear without antialiasing, as TensorFlow's reference ImageNet pipelines train: the
    # antialiasing filter doubled the cost of a crop and the training crops are random anyway.
    return flip(tf.image.resize(crop, tuple(image_shape[:2]), antialias=False), image_shape, seed)


def inception_from_encoded(encoded: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor) -> tf.Tensor:
    """``inception`` on an encoded image, decoding only the crop window when it is a JPEG.

    The window is sampled on the original size and aspect ratio (read from the JPEG header) and
    only its pixels are decoded (``tf.image.decode_and_crop_jpeg``): the same crop as ``inception``
    on the fully decoded image, for a fraction of the work. PNG, GIF and BMP are decoded whole.
    """
    channels = image_shape[-1]

    def jpeg():
        size = tf.concat([tf.image.extract_jpeg_shape(encoded)[:2], [channels]], 0)
        begin, crop = _inception_window(size, seed)
        window = tf.stack([begin[0], begin[1], crop[0], crop[1]])
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)

    def other():
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        begin, crop = _inception_window(tf.shape(image), seed)
        return tf.slice(image, begin, crop)

    return _resize_crop(tf.cond(tf.io.is_jpeg(encoded), jpeg, other), image_shape, seed)


def resize_for_eval(images: tf.Tensor, image_shape: Sequence[int], mode: str, crop_fraction: float = 0.875,
                    interpolation: str = "bilinear") -> tf.Tensor:
    """Evaluation resizing of one image or a batch: ``none``, ``resize`` (to ``image_shape``) or ``center_crop``.

    ``center_crop`` resizes the shorter side to ``size / crop_fraction`` (256 for 224 at the
    standard 0.875), then cuts out the centre: the ImageNet evaluation. ``crop_fraction`` and
    ``interpolation`` come from the weights' preprocessing record.
    """
    h, w, _ = image_shape
    if mode == "center_crop":
        shape = tf.cast(tf.shape(images)[-3:-1], tf.float32)
        scale = (h / crop_fraction) / tf.reduce_min(shape)
        images = tf.image.resize(images, tf.cast(tf.round(shape * scale), tf.int32), interpolation, antialias=True)
        return tf.image.resize_with_crop_or_pad(images, h, w)
    if mode == "resize":
        return tf.image.resize(images, (h, w), interpolation, antialias=True)
    if mode != "none":
        raise ValueError(f"eval_resize: unknown value {mode!r}; expected one of center_crop, none, resize")
    return images
