"""Training augmentations, by name, and the evaluation resizing.

An augmentation is ``fn(image, image_shape, seed) -> image`` on one uint8 image: every random
choice comes from the stateless ``seed`` (two int64s) that the pipeline derives from ``(seed,
epoch, example)``, so a resumed run sees exactly the images an uninterrupted one would. Adding one
is one entry in ``AUGMENTATIONS``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from tfresnet.core.registry import Registry

Augmentation = Callable[[tf.Tensor, Sequence[int], tf.Tensor], tf.Tensor]
AUGMENTATIONS: Registry[Augmentation] = Registry("augment")


def to_pixels(images: tf.Tensor) -> tf.Tensor:
    """Images with values in [0, 255] -> uint8, rounded: what every pipeline hands on.

    A resized or mixed image is rounded back to whole pixel values, as a JPEG decoder or
    torchvision's PIL transforms deliver them, so that a batch crosses to the device in the
    smallest exact type (``data.make_dataset(image_dtype="uint8")``).
    """
    if images.dtype == tf.uint8:
        return images
    return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)


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


# --------------------------------------------------------------------------------------------------
# Batch mixing: mixup and CutMix, with soft labels
# --------------------------------------------------------------------------------------------------


def _beta(alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """A Beta(alpha, alpha) draw from two stateless Gamma draws."""
    a, b = _seeds(seed, 2)
    x = tf.random.stateless_gamma([], a, alpha)
    return x / (x + tf.random.stateless_gamma([], b, alpha))


def mixup(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup (Zhang et al. 2018): each image blended with the batch's reverse at one Beta(alpha, alpha) weight.

    Args:
        images: Images ``(batch, height, width, channels)``: float, or uint8 pixels, which are
            blended in float and rounded back to pixels (as timm's ``FastCollateMixup`` mixes its
            uint8 batches), so the batch still crosses to the device as uint8.
        labels: Soft labels ``(batch, classes)`` (one-hot rows for plain labels).
        alpha: The Beta distribution's parameter (timm: 0.8 with CutMix, 0.2 alone).
        seed: Two int64s: the same seed gives the same batch.

    Returns:
        ``(images, labels)``, labels still summing to 1, images of the input's dtype.
    """
    lam = _beta(alpha, seed)
    pixels = tf.cast(images, tf.float32) if images.dtype == tf.uint8 else images
    mixed = lam * pixels + (1 - lam) * tf.reverse(pixels, [0])
    if images.dtype == tf.uint8:
        mixed = to_pixels(mixed)
    return mixed, lam * labels + (1 - lam) * tf.reverse(labels, [0])


def cutmix(images: tf.Tensor, labels: tf.Tensor, alpha: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix (Yun et al. 2019): a box of the batch's reverse pasted into each image.

    The box covers ``1 - lam`` of the image for a Beta(alpha, alpha) draw ``lam``, at a uniform
    centre, clipped at the borders; each label takes the pasted image's class with the weight of
    the area actually pasted.

    Args:
        images, labels, alpha, seed: As for ``mixup`` (timm's CutMix alpha: 1.0).

    Returns:
        ``(images, labels)``.
    """
    lam_seed, y_seed, x_seed = _seeds(seed, 3)
    lam = _beta(alpha, lam_seed)
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    cut = tf.sqrt(1.0 - lam)
    cy = tf.random.stateless_uniform([], y_seed, 0, hf)
    cx = tf.random.stateless_uniform([], x_seed, 0, wf)
    top = tf.cast(tf.clip_by_value(tf.round(cy - cut * hf / 2), 0, hf), tf.int32)
    bottom = tf.cast(tf.clip_by_value(tf.round(cy + cut * hf / 2), 0, hf), tf.int32)
    left = tf.cast(tf.clip_by_value(tf.round(cx - cut * wf / 2), 0, wf), tf.int32)
    right = tf.cast(tf.clip_by_value(tf.round(cx + cut * wf / 2), 0, wf), tf.int32)
    rows = tf.logical_and(tf.range(h) >= top, tf.range(h) < bottom)
    cols = tf.logical_and(tf.range(w) >= left, tf.range(w) < right)
    box = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
    pasted = tf.where(box, tf.reverse(images, [0]), images)
    area = tf.cast((bottom - top) * (right - left), labels.dtype) / tf.cast(h * w, labels.dtype)
    return pasted, (1 - area) * labels + area * tf.reverse(labels, [0])


def mix_batch(images: tf.Tensor, labels: tf.Tensor, num_classes: int, mixup_alpha: float, cutmix_alpha: float,
              seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup or CutMix of one batch (with both on, each batch picks one at even odds), soft labels out.

    Args:
        images: Images of one batch, float or uint8 (kept uint8).
        labels: Integer labels.
        num_classes: Width of the soft labels.
        mixup_alpha, cutmix_alpha: Their Beta parameters; 0 turns one off.
        seed: Two int64s, per batch: the same seed gives the same batch.
    """
    soft = tf.one_hot(labels, num_classes, dtype=tf.float32)
    choice, draw = _seeds(seed, 2)
    if mixup_alpha and cutmix_alpha:
        use_cutmix = tf.random.stateless_uniform([], choice) < 0.5
        return tf.cond(use_cutmix, lambda: cutmix(images, soft, cutmix_alpha, draw),
                       lambda: mixup(images, soft, mixup_alpha, draw))
    if cutmix_alpha:
        return cutmix(images, soft, cutmix_alpha, draw)
    return mixup(images, soft, mixup_alpha, draw)


# --------------------------------------------------------------------------------------------------
# RandAugment (Cubuk et al. 2020), stateless
# --------------------------------------------------------------------------------------------------
#
# keras.layers.RandAugment draws from a SeedGenerator (a state that advances), which cannot be
# keyed by the pipeline's per-example seed: a resumed run would augment differently. This one is a
# pure function of (image, seed). The op set and magnitudes follow timm's rand-m9-n2 (magnitude on
# a 0-10 scale, signs drawn at random, translation up to 45% of the side).

_MAX_MAGNITUDE = 10.0
_FILL = 128.0  # grey, what the geometric ops leave where the image moved away


def _blend(a: tf.Tensor, b: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """``a + factor * (b - a)``, clipped to [0, 255]: factor 0 is ``a``, 1 is ``b``."""
    return tf.clip_by_value(a + factor * (b - a), 0.0, 255.0)


def _grey(image: tf.Tensor) -> tf.Tensor:
    if image.shape[-1] == 3:
        return tf.broadcast_to(tf.image.rgb_to_grayscale(image), tf.shape(image))
    return tf.broadcast_to(tf.reduce_mean(image, -1, keepdims=True), tf.shape(image))


def _transform(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """A projective transform (output pixel -> input pixel, 8 numbers), bilinear, grey outside."""
    shape = tf.shape(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.cast(matrix, tf.float32)[None], output_shape=shape[:2],
        fill_value=_FILL, interpolation="BILINEAR", fill_mode="CONSTANT")
    return out[0]


def _equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation of each channel (PIL's ``ImageOps.equalize``)."""

    def channel(c):
        c = tf.cast(tf.clip_by_value(tf.round(c), 0, 255), tf.int32)
        hist = tf.math.bincount(tf.reshape(c, [-1]), minlength=256, maxlength=256, dtype=tf.float32)
        nonzero = tf.boolean_mask(hist, hist > 0)
        step = tf.math.floordiv(tf.reduce_sum(nonzero) - nonzero[-1], 255.0)
        lut = tf.math.floordiv(tf.cumsum(hist) - hist + tf.math.floordiv(step, 2.0), tf.maximum(step, 1.0))
        lut = tf.clip_by_value(lut, 0, 255)
        return tf.where(step > 0, tf.gather(lut, c), tf.cast(c, tf.float32))

    return tf.stack([channel(image[..., i]) for i in range(image.shape[-1])], -1)


def _sharpen(image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL's ``ImageEnhance.Sharpness``: blend with a smoothed copy, borders kept."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    channels = image.shape[-1]
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    inner = tf.pad(tf.ones(tf.shape(image)[:2] - 2), [[1, 1], [1, 1]])[..., None] > 0
    return _blend(tf.where(inner, smooth, image), image, factor)


def _randaugment_ops(image: tf.Tensor, level: tf.Tensor, sign: tf.Tensor) -> list:
    """The 14 ops as branches of ``tf.switch_case``; ``level`` in [0, 1], ``sign`` +-1."""
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    enhance = 1.0 + sign * 0.9 * level  # PIL enhance factors in [0.1, 1.9]

    def rotate():
        angle = sign * level * 30.0 * 3.141592653589793 / 180.0
        cos, sin = tf.cos(angle), tf.sin(angle)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        return _transform(image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])

    def shear(x_axis: bool):
        s = sign * level * 0.3
        return lambda: _transform(image, [1.0, s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0] if x_axis
                                  else [1.0, 0.0, 0.0, s, 1.0, 0.0, 0.0, 0.0])

    def translate(x_axis: bool):
        return lambda: _transform(image, [1.0, 0.0, sign * level * 0.45 * w, 0.0, 1.0, 0.0, 0.0, 0.0] if x_axis
                                  else [1.0, 0.0, 0.0, 0.0, 1.0, sign * level * 0.45 * h, 0.0, 0.0])

    def autocontrast():
        low = tf.reduce_min(image, [0, 1], keepdims=True)
        high = tf.reduce_max(image, [0, 1], keepdims=True)
        scaled = (image - low) * 255.0 / tf.maximum(high - low, 1e-3)
        return tf.where(high > low, scaled, image)

    def posterize():
        shift = tf.cast(tf.round(level * 4.0), tf.int32)  # keep 8 - 0..4 bits
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.int32)
        return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift), tf.float32)

    return [
        lambda: image,
        autocontrast,
        lambda: _equalize(image),
        rotate,
        lambda: tf.where(image >= 256.0 - level * 256.0, 255.0 - image, image),  # solarize
        lambda: _blend(_grey(image), image, enhance),  # colour (saturation)
        posterize,
        lambda: _blend(tf.fill(tf.shape(image), tf.reduce_mean(_grey(image))), image, enhance),  # contrast
        lambda: _blend(tf.zeros_like(image), image, enhance),  # brightness
        lambda: _sharpen(image, enhance),
        shear(True),
        shear(False),
        translate(True),
        translate(False),
    ]


RANDAUGMENT_OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
                   "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")


def rand_augment(image: tf.Tensor, num_ops: int, magnitude: float, seed: tf.Tensor,
                 ops: tf.Tensor | None = None) -> tf.Tensor:
    """RandAugment: ``num_ops`` ops drawn uniformly from ``RANDAUGMENT_OPS``, each at ``magnitude``.

    Args:
        image: One image, uint8 or float in [0, 255], ``(height, width, channels)``.
        num_ops: Ops applied in turn (N; timm's default 2).
        magnitude: Strength on a 0-10 scale (M; timm's default 9).
        seed: Two int64s, the example's key: the same seed gives the same image.
        ops: Force these op indices instead of drawing them (tests).

    Returns:
        A float32 image in [0, 255] of the input's shape.
    """
    image = tf.cast(image, tf.float32)
    level = tf.constant(min(max(magnitude, 0.0), _MAX_MAGNITUDE) / _MAX_MAGNITUDE, tf.float32)
    for i, s in enumerate(_seeds(seed, num_ops)):
        pick, flip_sign = _seeds(s, 2)
        index = (tf.convert_to_tensor(ops[i], tf.int32) if ops is not None
                 else tf.random.stateless_uniform([], pick, 0, len(RANDAUGMENT_OPS), tf.int32))
        sign = tf.where(tf.random.stateless_uniform([], flip_sign) < 0.5, -1.0, 1.0)
        shape = image.shape
        image = tf.ensure_shape(tf.switch_case(index, _randaugment_ops(image, level, sign)), shape)
    return image
