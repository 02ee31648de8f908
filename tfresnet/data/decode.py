"""Decoding files and shard records into images, and naming the ones that do not decode.

``decoder`` decodes one example (a JPEG's training crop only: ``tf.image.decode_and_crop_jpeg``);
``decode_examples`` runs it over a stream in parallel and turns a gap (an example that failed) into
a one-line error naming the file, or shard and record, or with ``bad_images="skip"`` into a
warning and the next image in its place.
"""

from __future__ import annotations

import sys

import tensorflow as tf

from tfresnet.data import augment as augment_lib
from tfresnet.data import shards as shards_lib
from tfresnet.data.recipes import AUTOTUNE, Source, to_pixels
from tfresnet.weights.preprocessing import Preprocessing


def decoder(source: Source, training: bool, augment: str, train_view, preprocessing: Preprocessing, seed: int,
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


def decode_examples(examples: tf.data.Dataset, decode, count: int | None, bad_images: str,
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
