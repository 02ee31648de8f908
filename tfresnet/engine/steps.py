"""Train and evaluation steps, built once by factories.

A step is a pure function of the model, optimizer, metric objects and a batch: no printing, no
I/O, ``training=`` always explicit. ``make_train_loop`` and ``make_eval_step`` serve every task: a
task (``tfresnet.tasks``) supplies ``forward`` (per-example losses and outputs of a batch) and the
metric updates; the controller (``tfresnet.engine.controller``) owns everything else.

Loss under a ``tf.distribute`` strategy: each replica divides its summed per-example loss by the
GLOBAL batch size (``tf.nn.compute_average_loss``); the optimizer sums gradients over replicas, so
the update equals the single-device one for the same global batch.
"""

from __future__ import annotations

from typing import Callable, Mapping

import keras
import tensorflow as tf

from tfresnet.engine import runtime

LossFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
# forward(batch, training) -> (per-example losses, outputs); the loss sums to the batch's share.
Forward = Callable[..., tuple[tf.Tensor, object]]
# update_metrics(batch, per-example losses, outputs): updates metric objects, returns nothing.
UpdateMetrics = Callable[[object, tf.Tensor, object], None]


def make_loss(label_smoothing: float = 0.0) -> LossFn:
    """Per-example cross-entropy on logits (``from_logits=True``: log-softmax is computed stably).

    Args:
        label_smoothing: Mass spread uniformly over all classes (0 disables).

    Returns:
        ``loss(labels, logits) -> (batch,)`` float32 losses. Labels are integers, or soft labels
        ``(batch, classes)`` summing to 1 (mixup, CutMix), which are smoothed the same way.
    """
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    dense = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing, reduction=None)

    def loss(labels, logits):
        logits = _at_least_float32(logits)
        if labels.shape.rank == 2:
            return dense(tf.cast(labels, logits.dtype), logits)
        if not label_smoothing:
            return sparse(labels, logits)
        return dense(tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype), logits)

    return loss


def _at_least_float32(logits: tf.Tensor) -> tf.Tensor:
    # A float16/bfloat16 softmax cross-entropy loses the small probabilities; float64 stays.
    return tf.cast(logits, tf.float32) if logits.dtype in (tf.float16, tf.bfloat16) else logits


def make_metrics(prefix: str, top5: bool = False) -> dict[str, keras.metrics.Metric]:
    """Keras metric objects for one phase (create them under the strategy's scope)."""
    metrics = {
        "loss": keras.metrics.Mean(name=f"{prefix}_loss"),
        "accuracy": keras.metrics.SparseCategoricalAccuracy(name=f"{prefix}_accuracy"),
    }
    if top5:
        metrics["top5"] = keras.metrics.SparseTopKCategoricalAccuracy(k=5, name=f"{prefix}_top5")
    return metrics


def why_not_xla(model: keras.Model, strategy: tf.distribute.Strategy) -> str | None:
    """Why ``make_train_step(..., jit_compile=True)`` cannot run ``model`` under ``strategy``, or None
    (``runtime.why_not_xla`` of its ``sync_batchnorm``)."""
    return runtime.why_not_xla(getattr(model, "sync_batchnorm", False), strategy)


def make_train_loop(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    forward: Forward,
    update_metrics: UpdateMetrics,
    global_batch_size: int,
    strategy: tf.distribute.Strategy | None = None,
    jit_compile: bool = False,
) -> Callable[[object, tf.Tensor], tf.Tensor]:
    """Builds ``train_loop(iterator, num_steps) -> per-step losses`` for any task.

    One call runs ``num_steps`` steps inside a single ``tf.function`` (``steps_per_loop``): fewer
    host round trips, which TPUs need. Each step takes ``next(iterator)``, runs ``forward`` under
    ``tf.GradientTape``, divides the summed per-example losses by the GLOBAL batch
    (``tf.nn.compute_average_loss``), applies the gradients and updates the metric objects.

    Args:
        model: Its ``trainable_variables`` are trained; ``forward`` calls it.
        optimizer: A Keras optimizer (``LossScaleOptimizer`` for float16).
        forward: ``forward(batch, training=True) -> (per-example losses, outputs)``.
        update_metrics: ``update_metrics(batch, per-example losses, outputs)``: metric updates.
        global_batch_size: Examples per step over all replicas: the loss divisor.
        strategy: The ``tf.distribute`` strategy whose scope made the variables.
        jit_compile: XLA compilation. On one device (the default strategy, ``OneDeviceStrategy``)
            the whole step is one XLA cluster: forward, backward, optimizer update and metrics,
            so the per-variable update ops fuse instead of launching one kernel each. Under
            multi-replica strategies only forward/backward is compiled, per replica; the gradient
            all-reduce and the update stay outside XLA, which is what makes XLA work with
            ``MirroredStrategy``.

    Returns:
        A ``tf.function`` returning the global mean loss of each step, shape ``(num_steps,)``.

    Raises:
        ValueError: ``jit_compile`` for a model that cannot run inside XLA here (``why_not_xla``).
    """
    strategy = strategy or tf.distribute.get_strategy()
    variables = model.trainable_variables

    def forward_backward(batch):
        with tf.GradientTape() as tape:
            per_example, outputs = forward(batch, training=True)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            scaled = optimizer.scale_loss(loss)  # loss scaling for float16; identity otherwise
        return loss, per_example, outputs, tape.gradient(scaled, variables)

    if jit_compile and (reason := why_not_xla(model, strategy)):
        raise ValueError(f"{model.name}: {reason}; use jit_compile=False or sync_batchnorm=False")
    # TPUStrategy compiles the whole replica step itself: nothing to wrap there.
    whole_step = jit_compile and runtime.updates_locally(strategy)
    if jit_compile and not whole_step and not isinstance(strategy, tf.distribute.TPUStrategy):
        # Its own XLA cluster per replica, holding no cross-replica sync point (merge_call).
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def replica_step(batch):
        loss, per_example, outputs, grads = forward_backward(batch)
        optimizer.apply_gradients(zip(grads, variables))
        update_metrics(batch, per_example, outputs)
        return loss

    if whole_step:
        replica_step = tf.function(replica_step, jit_compile=True)

    @tf.function
    def train_loop(iterator, num_steps):
        losses = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            per_replica = strategy.run(replica_step, args=(next(iterator),))
            losses = losses.write(i, strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
        return losses.stack()

    return train_loop


def make_eval_step(
    forward: Forward,
    update_metrics: UpdateMetrics,
    strategy: tf.distribute.Strategy | None = None,
    jit_compile: bool = False,
) -> Callable[[object], None]:
    """Builds ``eval_step(batch)`` for any task: an inference-mode ``forward`` and metric updates.

    Args:
        forward: ``forward(batch, training=False) -> (per-example losses, outputs)``.
        update_metrics: ``update_metrics(batch, per-example losses, outputs)``.
        strategy: The ``tf.distribute`` strategy whose scope made the variables.
        jit_compile: XLA-compile ``forward``.

    Returns:
        A ``tf.function`` over one (distributed) batch.
    """
    strategy = strategy or tf.distribute.get_strategy()
    compiled = tf.function(lambda batch: forward(batch, training=False), jit_compile=jit_compile)

    def replica_step(batch):
        per_example, outputs = compiled(batch)
        update_metrics(batch, per_example, outputs)

    # One trace for padded batches of one shape (what the tasks feed); an unpadded last batch of
    # another shape gets one more, shape-relaxed trace instead of one per shape.
    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        strategy.run(replica_step, args=(batch,))

    return eval_step


# --------------------------------------------------------------------------------------------------
# Image classification: (images, labels) batches.
# --------------------------------------------------------------------------------------------------


def classifier_forward(model: keras.Model, loss_fn: LossFn) -> Forward:
    """``forward((images, labels[, weights]), training) -> (per-example losses, logits)`` of a classifier.

    uint8 images are normalised by the model itself (``ImageClassifier.model_inputs``), inside
    the compiled step.
    """

    def forward(batch, training):
        images, labels = batch[0], batch[1]
        logits = model(images, training=training)
        return loss_fn(labels, logits), logits

    return forward


def classifier_metrics_update(metrics: Mapping[str, keras.metrics.Metric]) -> UpdateMetrics:
    """Updates ``loss`` with the per-example losses and every other metric with ``(labels, logits)``.

    A batch's third element, if any, is the examples' weights (``make_dataset(pad_eval=True)``:
    0 for the padding of the last batch), passed to every metric as ``sample_weight``.
    """

    def update(batch, per_example, logits):
        weights = batch[2] if len(batch) > 2 else None
        metrics["loss"].update_state(per_example, sample_weight=weights)
        labels = batch[1]
        if labels.shape.rank == 2:  # soft labels (mixup, CutMix): the class with the most weight
            labels = tf.argmax(labels, axis=-1, output_type=tf.int32)
        for name, metric in metrics.items():
            if name != "loss":
                metric.update_state(labels, logits, sample_weight=weights)

    return update


def make_train_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    loss_fn: LossFn,
    metrics: Mapping[str, keras.metrics.Metric],
    global_batch_size: int,
    strategy: tf.distribute.Strategy | None = None,
    jit_compile: bool = False,
) -> Callable[[object, tf.Tensor], tf.Tensor]:
    """Builds ``train_loop(iterator, num_steps) -> per-step losses`` for an image classifier.

    ``make_train_loop`` on ``(images, labels)`` batches: ``model(images, training=True)`` gives
    logits, ``loss_fn(labels, logits)`` per-example losses; ``metrics`` are ``{"loss": Mean,
    "accuracy": SparseCategoricalAccuracy, ...}``. See ``make_train_loop`` for the other arguments.
    """
    return make_train_loop(model, optimizer, classifier_forward(model, loss_fn), classifier_metrics_update(metrics),
                           global_batch_size, strategy, jit_compile)


def make_test_step(
    model: keras.Model,
    loss_fn: LossFn,
    metrics: Mapping[str, keras.metrics.Metric],
    strategy: tf.distribute.Strategy | None = None,
    jit_compile: bool = False,
) -> Callable[[tuple[tf.Tensor, tf.Tensor]], None]:
    """Builds ``test_step((images, labels))`` for an image classifier (``make_eval_step``).

    Args:
        model: The model; called with ``training=False``.
        loss_fn: ``loss(labels, logits) -> per-example losses``.
        metrics: ``loss``, ``accuracy`` and optionally ``top5`` metric objects.
        strategy: The ``tf.distribute`` strategy whose scope made the variables.
        jit_compile: XLA-compile the forward pass.
    """
    return make_eval_step(classifier_forward(model, loss_fn), classifier_metrics_update(metrics), strategy,
                          jit_compile)


# --------------------------------------------------------------------------------------------------
# The TF2 tutorial's signatures, for people coming from it (single device).
# --------------------------------------------------------------------------------------------------


@tf.function
def train_step(model, images, labels, loss_object, optimizer, train_loss, train_accuracy):
    """One training step with the tutorial's signature.

    Args:
        model: A Keras model returning logits.
        images, labels: One batch.
        loss_object: E.g. ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.
        optimizer: A Keras optimizer.
        train_loss, train_accuracy: ``keras.metrics.Mean`` and ``SparseCategoricalAccuracy``.
    """
    with tf.GradientTape() as tape:
        predictions = model(images, training=True)
        loss = loss_object(labels, predictions)
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    train_loss(loss)
    train_accuracy(labels, predictions)


@tf.function
def test_step(model, images, labels, loss_object, test_loss, test_accuracy):
    """One evaluation step with the tutorial's signature (see ``train_step``)."""
    predictions = model(images, training=False)
    test_loss(loss_object(labels, predictions))
    test_accuracy(labels, predictions)
