"""The exported serving SavedModel: raw uint8 images of any size in, probabilities and class names out.

A served model must not depend on its caller knowing the preprocessing: the signature takes the
pixels as they come from a decoder and applies the pipeline's own evaluation preprocessing
(``tfresnet.data.serving_images``, which reads the weights' preprocessing record) inside the graph.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf


def export_classifier(model: keras.Model, path: str, preprocess: Callable[[tf.Tensor], tf.Tensor] | None,
                      input_shape: Sequence[int], class_names: Sequence[str]) -> None:
    """Writes a SavedModel of ``model`` with two endpoints.

    * ``serving_default(images)``: uint8 ``(batch, height, width, channels)`` of any height and
      width -> ``{"probabilities": (batch, classes), "logits": (batch, classes)}``, float32, and
      ``"class_name"`` (batch,), the name of each image's top class: a served model says what its
      answer means.
    * ``class_names()``: every class's name, in logit order (what index 3 of the probabilities is).
    * ``preprocess(images)``: the first half of ``serving_default`` (uint8 images of any size ->
      float32 model inputs), so that images of different sizes can be prepared one by one and then
      go through ``serve`` in batches (``tfresnet.predict``).
    * ``serve(x)``: already preprocessed float32 ``(batch, *input_shape)`` -> logits (what
      ``keras.Model.export`` writes).

    Args:
        model: A built classifier returning logits.
        path: The SavedModel folder.
        preprocess: Raw uint8 batch -> float32 model inputs (``data.serving_images``); None (a
            model trained on synthetic data, which has no pixel format) exports ``serve`` alone,
            which then is the default signature.
        input_shape: The model's input shape ``(height, width, channels)``.
        class_names: The name of each class, in logit order.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    names = tf.constant(list(class_names), tf.string)

    def classify(images):
        logits = tf.cast(model(preprocess(images), training=False), tf.float32)
        return {"probabilities": tf.nn.softmax(logits), "logits": logits,
                "class_name": tf.gather(names, tf.argmax(logits, axis=-1))}

    if preprocess is not None:
        raw = [tf.TensorSpec((None, None, None, input_shape[-1]), tf.uint8, name="images")]
        archive.add_endpoint("serving_default", classify, input_signature=raw)
        archive.add_endpoint("preprocess", preprocess, input_signature=raw)
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[
        tf.TensorSpec((None, *input_shape), tf.float32, name="x")])
    archive.add_endpoint("class_names", lambda: names, input_signature=[])
    archive.write_out(path, verbose=False)
