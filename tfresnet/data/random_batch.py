"""Synthetic data: one random batch repeated forever, for speed tuning and smoke runs (``--dataset=synthetic``)."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfresnet.data import augment as augment_lib
from tfresnet.data.pipeline import pipeline_share
from tfresnet.data.recipes import _check_image_dtype


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
    per_replica, _, pipeline_id = pipeline_share(batch_size, input_context)
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
