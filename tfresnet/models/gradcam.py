"""Grad-CAM (Selvaraju et al. 2017): where in an image a classifier found its class.

The gradient of the class's logit with respect to the last convolutional stage's feature map,
averaged over the map, weighs each channel; the weighted sum of the channels, through a ReLU, is
the heat map. Every image model of the zoo splits its ``call`` at that stage
(``ImageClassifier.conv_features`` / ``classify_features``), so this works for all of them.

    heat, logits, chosen = grad_cam(model, inputs)        # heat: (batch, h, w) in [0, 1]
    full = to_image(heat[0], (height, width), box, inputs.shape[1:3], model.feature_offset)
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf


def grad_cam(model: keras.Model, inputs: tf.Tensor, class_index: int | Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM heat maps of a batch.

    Args:
        model: An ``ImageClassifier`` of the zoo (with a classifier head).
        inputs: What the model takes: float32 model inputs or uint8 images, ``(batch, h, w, c)``.
        class_index: The class to explain, one for all or one per image; None: each image's
            predicted class.

    Returns:
        ``(heat, logits, chosen)``: heat maps ``(batch, map height, map width)`` scaled to a
        maximum of 1 (all zeros where no place speaks for the class), the float32 logits and the
        class explained per image.
    """
    if getattr(model, "head", None) is None:
        raise ValueError("Grad-CAM needs a classifier: this model has no head (num_classes=0)")
    with tf.GradientTape() as tape:
        features = model.conv_features(inputs, training=False)
        tape.watch(features)
        logits = tf.cast(model.classify_features(features, training=False), tf.float32)
        if class_index is None:
            chosen = tf.argmax(logits, axis=-1, output_type=tf.int32)
        else:
            chosen = tf.broadcast_to(tf.constant(class_index, tf.int32), tf.shape(logits)[:1])
        score = tf.reduce_sum(tf.gather(logits, chosen, axis=-1, batch_dims=1))
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # one per channel
    heat = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
    peak = tf.reduce_max(heat, axis=(1, 2), keepdims=True)
    heat = tf.math.divide_no_nan(heat, peak)
    return heat.numpy(), logits.numpy(), chosen.numpy()


def view_box(height: int, width: int, input_size: Sequence[int], view: str, crop_fraction: float = 0.875
             ) -> tuple[float, float, float, float]:
    """The part of a ``height`` x ``width`` image that the model saw, in its pixels: ``(top, left,
    box height, box width)``.

    Args:
        input_size: The model's input ``(height, width)``.
        view: ``center_crop`` (the shorter side resized to ``input / crop_fraction``, the centre
            cut out: the ImageNet evaluation) or ``fit`` / ``resize`` (the whole image resized).
        crop_fraction: Of ``center_crop``.
    """
    if view in ("fit", "resize"):
        return 0.0, 0.0, float(height), float(width)
    if view != "center_crop":
        raise ValueError(f"view: unknown value {view!r}; expected center_crop, fit or resize")
    h, w = input_size
    scale = (h / crop_fraction) / min(height, width)  # as augment.resize_for_eval
    resized_h, resized_w = round(height * scale), round(width * scale)
    top, left = (resized_h - h) // 2, (resized_w - w) // 2  # tf.image.resize_with_crop_or_pad's centre
    return top / scale, left / scale, h / scale, w / scale


def to_image(heat: np.ndarray, image_size: Sequence[int], box: Sequence[float], input_size: Sequence[int],
             offset: float | None = None) -> np.ndarray:
    """A heat map laid back onto the original image: ``image_size`` (height, width), the map
    interpolated (bilinear) over ``box`` (``view_box``), 0 outside it.

    Args:
        heat: ``(map height, map width)``.
        image_size: The original image's ``(height, width)``.
        box: The part of it the model saw, ``view_box``.
        input_size: The model's input ``(height, width)``; the map's stride is input / map.
        offset: Where the map's first cell is centred, in input pixels (``ImageClassifier.feature_offset``):
            cell ``j`` sits at pixel ``j * stride + offset``. None: halfway into its stride, as a
            resize would place it.
    """
    out = []
    for axis in (0, 1):
        size, start, extent = image_size[axis], box[axis], box[axis + 2]
        stride = input_size[axis] / heat.shape[axis]
        shift = (stride - 1) / 2 if offset is None else offset
        # Each output pixel centre, in input pixels (continuous), then in map cells.
        pixels = (np.arange(size) + 0.5 - start) * input_size[axis] / extent
        cells = (pixels - 0.5 - shift) / stride
        inside = (pixels >= 0) & (pixels <= input_size[axis])
        out.append((np.clip(cells, 0, heat.shape[axis] - 1), inside))
    (r, rows_in), (c, cols_in) = out
    r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
    r1, c1 = np.minimum(r0 + 1, heat.shape[0] - 1), np.minimum(c0 + 1, heat.shape[1] - 1)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    upper = heat[r0][:, c0] * (1 - fc) + heat[r0][:, c1] * fc
    lower = heat[r1][:, c0] * (1 - fc) + heat[r1][:, c1] * fc
    return np.where(rows_in[:, None] & cols_in[None, :], upper * (1 - fr) + lower * fr, 0.0).astype(np.float32)
