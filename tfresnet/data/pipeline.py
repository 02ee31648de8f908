"""The input pipeline: ``make_dataset(source, batch_size, training=...)``, a ``tf.data.Dataset`` of batches.

In stages, each a function of its own, over a ``Plan`` decided once:

1. ``example_stream``: the examples in order (a pure function of the seed and the epoch over
   indices), sharded over input pipelines, from the resumed step, undecoded;
2. ``decode_and_augment``: decoded (a JPEG's training crop only), augmented, labels checked;
3. ``batch_and_pad``: per-replica batches, evaluation padded to one static shape;
4. ``mix``: mixup / CutMix of training batches;
5. ``hand_off``: uint8 pixels for the model to normalise, or float32 normalised here.

For every source the training order is a pure function of ``(seed, epoch)`` over indices and the
augmentation a pure function of ``(seed, epoch, example)``, so a run resumed at global step ``s``
(``start_step=s``) sees exactly the batches an uninterrupted run would, reached on indices without
reading what it skips: the data position never has to be stored beside the checkpoint. Files and
records stay encoded until decoded and name themselves when they do not decode. The evaluation
and serving preprocessing (``eval_pixels``, ``serving_images``) live here too: one home.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import tensorflow as tf

from tfresnet.config import BAD_IMAGES
from tfresnet.data import augment as augment_lib
from tfresnet.data import shards as shards_lib
from tfresnet.data.decode import decode_examples, decoder
from tfresnet.data.recipes import AUTOTUNE, EPOCHS_FOREVER, Recipe, Source, _check_image_dtype, to_pixels
from tfresnet.weights.preprocessing import Preprocessing


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


def _checked_label(label: tf.Tensor, num_classes: int, where: str) -> tf.Tensor:
    """``label``, failing the pipeline with a message naming ``where`` if it is out of range."""
    check = tf.debugging.assert_less(label, tf.cast(num_classes, label.dtype),
                                     f"{where}: label outside [0, {num_classes})")
    with tf.control_dependencies([check, tf.debugging.assert_non_negative(label, f"{where}: negative label")]):
        return tf.identity(label)


def pipeline_share(global_batch_size: int, input_context: tf.distribute.InputContext | None):
    """(per-replica batch, number of input pipelines, this pipeline's id)."""
    if input_context is None:
        return global_batch_size, 1, 0
    return (input_context.get_per_replica_batch_size(global_batch_size), input_context.num_input_pipelines,
            input_context.input_pipeline_id)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one input pipeline does, decided once by ``make_dataset``; every stage reads it.

    Attributes:
        source, batch_size, training, seed, start_step, bad_images, shuffle_buffer: As given.
        per_replica: Examples per batch (one replica's share of the global batch).
        num_pipelines, pipeline_id: The input pipelines and this one's index.
        per_pipeline: Replicas this pipeline feeds (batch b is replica b % k of step b // k).
        augment: The training augmentation's name; randaugment_ops: RandAugment's ops (0: off).
        preprocessing: The normalisation and evaluation crop of the model's weights.
        rand_augment, train_view: ``(image, key) -> image``: RandAugment; the whole training view.
        padded_size: Evaluation with ``pad_eval``: the examples each pipeline yields, padding
            included; None otherwise.
    """

    source: Source
    batch_size: int
    training: bool
    seed: int
    start_step: int
    bad_images: str
    shuffle_buffer: int
    per_replica: int
    num_pipelines: int
    pipeline_id: int
    per_pipeline: int
    augment: str
    preprocessing: Preprocessing
    randaugment_ops: int
    rand_augment: Callable
    train_view: Callable
    padded_size: int | None

    @property
    def recipe(self) -> Recipe:
        return self.source.recipe

    @property
    def where(self) -> str:
        return f"{self.source.name} {self.source.split}"

    def pixels(self, image: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
        """A stored uint8 image as trained (its training view) or evaluated (``eval_pixels``)."""
        image = (to_pixels(self.train_view(image, key)) if self.training
                 else eval_pixels(image, self.recipe, self.preprocessing))
        return tf.ensure_shape(image, self.recipe.image_shape)


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
    """Batches of ``(images, int32 labels)`` from ``source``, through the stages of the module docstring.

    Training repeats forever, a fresh order every epoch, dropping incomplete batches (static shapes
    for XLA and TPUs); evaluation is one ordered pass. Under a ``tf.distribute`` strategy pass the
    ``input_context`` of ``distribute_datasets_from_function``: each input pipeline reads its own
    shard and batches per replica. Images stay uint8 until ``hand_off``: ``image_dtype="uint8"``
    leaves the normalisation to the model on the device (``ImageClassifier``), a quarter of the
    bytes of float32; what the trainer does.

    Args:
        source: From ``load_source``.
        batch_size: GLOBAL batch size (all replicas together).
        training: Shuffle, augment, repeat.
        seed: Seeds the order and the augmentation.
        start_step: Global training step to resume at: the first batch is the one an
            uninterrupted run sees there, reached on indices in constant time.
        input_context: ``tf.distribute.InputContext`` or None.
        deterministic: Keep element order fixed under parallel maps (needed for exact resume).
        shuffle_buffer: Shuffle buffer of ``stream`` sources (the others shuffle by index).
        augment: Training augmentation (a name in ``tfresnet.data.augment.AUGMENTATIONS``); None: the
            source's recipe's.
        preprocessing: The normalisation (and evaluation crop) that the model's weights expect,
            e.g. ``model.preprocessing`` of a pretrained model; None: the dataset's own.
        bad_images: An image or record that cannot be read or decoded: ``fail`` stops with a
            one-line error naming it; ``skip`` warns and fills its place with another image of the
            batch, so batches and exact resume are unchanged (``tfresnet.data.decode``).
        data_service: ``[grpc://]host:port`` of a ``tf.data`` service dispatcher, whose workers
            read, decode and augment whole epochs; batches come as they are ready, so a resumed
            run starts at its epoch, not its exact batch.
        mixup: mixup's Beta parameter (``mix``, training only; soft float32 labels); 0 is off.
        cutmix: CutMix's, likewise.
        randaugment: ``(ops, magnitude)`` of RandAugment (``augment.rand_augment``) after the
            training augmentation, keyed by each example's seed; 0 ops is off. Never at evaluation.
        image_dtype: ``float32`` (normalised by ``preprocessing`` here) or ``uint8`` (pixels,
            normalised by the model).
        pad_eval: Evaluation only: ``(images, labels, weights)``, padded with filler of weight 0
            to as many whole batches in every pipeline: one static shape, one compiled step.

    Returns:
        A ``tf.data.Dataset``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if bad_images not in BAD_IMAGES:
        raise ValueError(f"bad_images: unknown value {bad_images!r}; expected one of {', '.join(BAD_IMAGES)}")
    _check_image_dtype(image_dtype)
    steps = source.steps_per_epoch(batch_size)
    if training and steps == 0:
        raise ValueError(f"{source.name} {source.split} has {source.num_examples} examples, fewer than one "
                         f"batch of {batch_size}")
    if data_service and training:
        # The service hands out whole epochs to its workers: a resumed run restarts its epoch.
        start_step -= start_step % steps
    plan = make_plan(source, batch_size, training, seed, start_step, input_context, augment, preprocessing,
                     bad_images, shuffle_buffer, randaugment, pad_eval)
    examples, kind = example_stream(plan, data_service)
    examples, kind = decode_and_augment(examples, kind, plan)
    batches = batch_and_pad(examples, kind, plan)
    if training and (mixup or cutmix):
        batches = mix(batches, plan, mixup, cutmix)
    return hand_off(batches, plan, image_dtype, data_service, deterministic)


def make_plan(source: Source, batch_size: int, training: bool, seed: int, start_step: int,
              input_context: tf.distribute.InputContext | None, augment: str | None,
              preprocessing: Preprocessing | None, bad_images: str, shuffle_buffer: int,
              randaugment: tuple[int, float], pad_eval: bool) -> Plan:
    """The ``Plan`` of ``make_dataset``'s arguments (they are documented there)."""
    per_replica, num_pipelines, pipeline_id = pipeline_share(batch_size, input_context)
    per_pipeline = max(1, (input_context.num_replicas_in_sync if input_context else 1) // num_pipelines)
    recipe = source.recipe
    augment = recipe.augment if augment is None else augment
    augment_fn = augment_lib.AUGMENTATIONS.get(augment)
    preprocessing = preprocessing or recipe.preprocessing
    if preprocessing.channels != recipe.image_shape[-1]:
        raise ValueError(f"{source.name} has {recipe.image_shape[-1]}-channel images; the preprocessing record is for "
                         f"{preprocessing.channels} channels (mean {preprocessing.mean})")
    rand_augment = _rand_augmenter(seed, randaugment)
    padded_size = None
    if not training and pad_eval:  # the examples of the fullest pipeline, in whole batches for each of its replicas
        most = (max(source.shards.for_pipeline(p, num_pipelines).num_examples for p in range(num_pipelines))
                if source.shards is not None else -(-source.num_examples // num_pipelines))
        padded_size = -(-most // (per_replica * per_pipeline)) * per_pipeline * per_replica
    return Plan(source, batch_size, training, seed, start_step, bad_images, shuffle_buffer, per_replica, num_pipelines,
                pipeline_id, per_pipeline, augment, preprocessing, randaugment[0], rand_augment,
                _training_view(augment_fn, recipe.image_shape, seed, rand_augment), padded_size)


def example_stream(plan: Plan, data_service: str | None = None) -> tuple[tf.data.Dataset, str]:
    """Stage 1: this pipeline's examples in their order (sharded, from ``plan.start_step``), undecoded.

    Returns:
        ``(dataset, kind)``: ``"encoded"`` ``(payload, label, name, key)`` of files (payload: the
        path) or shard records (label -1: inside the record); ``"indices"`` ``(index, key)`` of
        arrays; ``"pixels"`` ``(uint8 image, label, key)`` of a stream.
    """
    source = plan.source
    if source.files is not None:
        return _file_examples(source, plan.training, plan.seed, plan.start_step, plan.batch_size, plan.num_pipelines,
                              plan.pipeline_id), "encoded"
    if source.shards is not None:
        shard_set = source.shards.for_pipeline(plan.pipeline_id, plan.num_pipelines)
        start = plan.start_step * plan.batch_size // plan.num_pipelines
        if data_service:
            start -= start % shard_set.num_examples
        records = shards_lib.read_records(shard_set, plan.training, plan.seed, start,
                                          skip_bad=plan.bad_images == "skip")
        return records.map(lambda record, name, key: (record, tf.constant(-1), name, key)), "encoded"
    if source.images is not None:
        return _index_stream(len(source.labels), plan.training, plan.seed, plan.start_step, plan.batch_size,
                             plan.num_pipelines, plan.pipeline_id), "indices"
    ds = source.stream
    if plan.num_pipelines > 1:
        ds = ds.shard(plan.num_pipelines, plan.pipeline_id)
    if not plan.training:
        return ds.map(lambda image, label: (image, label, tf.constant(0, tf.int64))), "pixels"
    # A stream without files (mocked TFDS) can only be shuffled in a buffer and skipped by reading.
    ds = ds.shuffle(plan.shuffle_buffer, seed=plan.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().map(lambda key, ex: (*ex, key)).skip(plan.start_step * plan.batch_size // plan.num_pipelines)
    return ds.map(lambda image, label, key: (image, _checked_label(label, plan.recipe.num_classes, source.name),
                                             key)), "pixels"


def decode_and_augment(examples: tf.data.Dataset, kind: str, plan: Plan) -> tuple[tf.data.Dataset, str]:
    """Stage 2: ``(uint8 image, int32 label)`` as trained or evaluated, labels checked.

    Array examples with nothing to do per example (evaluation, or no augmentation) stay
    ``"indices"``: ``batch_and_pad`` gathers them a whole batch at a time (~10x less overhead).

    Returns:
        ``(dataset, kind)``, kind ``"images"`` or ``"indices"``.
    """
    recipe = plan.recipe
    if kind == "encoded":
        source = plan.source
        count = None if plan.training else (len(range(plan.pipeline_id, len(source.files), plan.num_pipelines))
                                            if source.files is not None
                                            else source.shards.for_pipeline(plan.pipeline_id,
                                                                            plan.num_pipelines).num_examples)
        decode = decoder(source, plan.training, plan.augment, plan.train_view, plan.preprocessing, plan.seed,
                          plan.rand_augment)
        decoded = decode_examples(examples, decode, count, plan.bad_images, plan.where)
        return decoded.map(lambda image, label: (image, _checked_label(label, recipe.num_classes, plan.where))), \
            "images"
    if kind == "indices":
        if not plan.training or (plan.augment == "none" and not plan.randaugment_ops):
            return examples, "indices"
        images, labels = tf.constant(plan.source.images), tf.constant(plan.source.labels)
        examples = examples.map(lambda i, key: (tf.gather(images, i), tf.gather(labels, i), key),
                                num_parallel_calls=AUTOTUNE)
    return examples.map(lambda image, label, key: (plan.pixels(image, key), tf.cast(label, tf.int32)),
                        num_parallel_calls=AUTOTUNE), "images"


def batch_and_pad(examples: tf.data.Dataset, kind: str, plan: Plan) -> tf.data.Dataset:
    """Stage 3: batches of ``per_replica`` examples; with ``pad_eval``, ``(images, labels, weights)``
    padded to ``plan.padded_size`` with filler of weight 0 (zero images; index 0 for arrays)."""
    padding = plan.padded_size is not None
    drop = plan.training or padding
    if kind == "indices":
        images, labels = tf.constant(plan.source.images), tf.constant(plan.source.labels)
        if padding:
            ds = _weighted(examples.map(lambda i, key: i), (tf.constant(0, tf.int64),), plan.padded_size)
            ds = ds.batch(plan.per_replica, drop_remainder=True)
            return ds.map(lambda i, weight: (tf.gather(images, i), tf.gather(labels, i), weight),
                          num_parallel_calls=AUTOTUNE)
        ds = examples.batch(plan.per_replica, drop_remainder=drop)
        return ds.map(lambda i, key: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=AUTOTUNE)
    if padding:
        image_spec, label_spec = examples.element_spec
        examples = _weighted(examples, (tf.zeros(image_spec.shape, image_spec.dtype),
                                        tf.zeros([], label_spec.dtype)), plan.padded_size)
    return examples.batch(plan.per_replica, drop_remainder=drop, num_parallel_calls=AUTOTUNE)


def mix(batches: tf.data.Dataset, plan: Plan, mixup: float, cutmix: float) -> tf.data.Dataset:
    """Stage 4 (training): mixup or CutMix of every batch (``augment.mix_batch``), soft labels.

    A batch's seed is a pure function of its step and replica (batch number b of this pipeline),
    so a resumed run mixes the same batches.
    """
    num_classes, seed = plan.recipe.num_classes, plan.seed
    return batches.enumerate(plan.start_step * plan.per_pipeline).map(
        lambda b, batch: augment_lib.mix_batch(*batch, num_classes, mixup, cutmix,
                                               tf.stack([tf.cast(seed, tf.int64) + 7919,
                                                         b * plan.num_pipelines + plan.pipeline_id])),
        num_parallel_calls=AUTOTUNE)


def hand_off(batches: tf.data.Dataset, plan: Plan, image_dtype: str, data_service: str | None,
             deterministic: bool) -> tf.data.Dataset:
    """Stage 5: what the step gets: uint8 pixels, or float32 normalised here; through a ``tf.data``
    service if one is named; prefetched."""
    if image_dtype == "float32":
        batches = batches.map(lambda images, *rest: (plan.preprocessing.normalize(images), *rest),
                              num_parallel_calls=AUTOTUNE)
    if data_service:
        address = data_service if "://" in data_service else f"grpc://{data_service}"
        batches = batches.apply(tf.data.experimental.service.distribute("distributed_epoch", address))
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF  # we shard
    return batches.with_options(options).prefetch(AUTOTUNE)


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
