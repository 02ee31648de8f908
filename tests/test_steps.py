"""The step factories: distributed steps equal single-device ones; XLA compiles the whole single-device step."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import MNIST_NPZ
from tfresnet import data, models, training
from tfresnet.config import TrainConfig
from tfresnet.engine import runtime, steps
from tfresnet.models.resnet import ResNet


@pytest.fixture(scope="module")
def batches():
    src = data.load_source("mnist", "train[:64]", str(MNIST_NPZ.parent))
    return data.make_dataset(src, 16, training=True)


def tiny_resnet(**options) -> keras.Model:
    """The smallest ResNet with everything the step factories handle (convolutions, BatchNorm with
    moving statistics, a projection shortcut, a dense head): two basic blocks of 8 and 16 channels on
    MNIST. XLA compiles it in a quarter of ``mnist_resnet``'s time."""
    model = ResNet("basic", (1, 1), num_classes=10, stem="cifar", base_width=8, **options)
    model.build((None, 28, 28, 1))
    return model


def _train(batches, strategy, jit_compile, precision="float64", num_steps=3, learning_rate=0.01, model=tiny_resnet,
           **model_options):
    keras.utils.set_random_seed(0)
    with runtime.precision_policy(precision), strategy.scope():
        model = model(**model_options)
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9)
        if precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        metrics = steps.make_metrics("train")
    loop = steps.make_train_step(model, optimizer, steps.make_loss(), metrics, 16, strategy, jit_compile)
    dtype = tf.float64 if precision == "float64" else tf.float32
    iterator = iter(strategy.experimental_distribute_dataset(batches.map(lambda x, y: (tf.cast(x, dtype), y))))
    losses = loop(iterator, tf.constant(num_steps)).numpy()
    return losses, model, metrics, loop.get_concrete_function(iterator, tf.constant(1)).graph


def _initial_weights():
    keras.utils.set_random_seed(0)  # as _train does
    with runtime.precision_policy("float64"):
        return [w.numpy() for w in tiny_resnet().weights]


def ops_per_step_outside_xla(graph: tf.Graph) -> collections.Counter:
    """The op types of the loop body that run outside XLA: one kernel launch each, every step, on GPU."""
    library = graph.as_graph_def().library.function
    (body,) = [f for f in library if f.signature.name.startswith("while_body")]
    return collections.Counter(node.op for node in body.node_def)


@pytest.mark.needs_mnist
@pytest.mark.parametrize("strategy", [tf.distribute.get_strategy(), tf.distribute.OneDeviceStrategy("/cpu:0")],
                         ids=["default", "one_device"])
@pytest.mark.slow
def test_single_device_xla_compiles_the_whole_step_and_matches_the_graph(batches, strategy):
    assert runtime.updates_locally(strategy)
    losses, model, metrics, graph = _train(batches, strategy, jit_compile=False)
    xla_losses, xla_model, xla_metrics, xla_graph = _train(batches, strategy, jit_compile=True)
    np.testing.assert_allclose(xla_losses, losses, rtol=1e-6)  # float32 per-step losses
    # Kernels, BN parameters and statistics. Not bitwise (XLA orders sums differently, the learning
    # rate is a float32 variable): 3e-8 apart here, against updates of ~1e-2.
    for a, b in zip(model.weights, xla_model.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=3e-7, err_msg=a.path)
    initial = _initial_weights()[0]
    assert np.abs(xla_model.weights[0].numpy() - initial).max() > 3e-4  # the steps did move the weights (1000x atol)
    assert float(xla_metrics["accuracy"].result()) == float(metrics["accuracy"].result())
    # Forward, backward, update and metrics are one XLA call: no per-variable update ops are left.
    outside, graph_ops = ops_per_step_outside_xla(xla_graph), ops_per_step_outside_xla(graph)
    assert sum(outside.values()) <= 15 and outside["StatefulPartitionedCall"] == 1, outside
    assert not {"AssignVariableOp", "AssignAddVariableOp", "Conv2D"} & set(outside), outside
    assert graph_ops["AssignVariableOp"] >= len(model.trainable_weights), graph_ops


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_mirrored_step_equals_single_device_step(batches, mirrored):
    """One step on two replicas (half the batch each) == one step on one device, same global batch.

    In float64: at initialisation this network's backward pass amplifies float32 rounding ~100x
    (single-device runs with and without synchronised BatchNorm already differ by ~3e-4), which
    would hide the semantics under test: loss / global batch, summed gradients, synchronised BN.
    """
    assert mirrored.num_replicas_in_sync == 2
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    loss_1, model_1, metrics_1, _ = _train(batches, one, False, num_steps=1, sync_batchnorm=True)
    loss_2, model_2, metrics_2, _ = _train(batches, mirrored, False, num_steps=1, sync_batchnorm=True)
    np.testing.assert_allclose(loss_2, loss_1, atol=1e-5)
    assert float(metrics_1["accuracy"].result()) == float(metrics_2["accuracy"].result())
    for a, b in zip(model_1.weights, model_2.weights):  # kernels, biases, BN parameters and moving statistics
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-5)
    assert not np.allclose(model_1.weights[0].numpy(), _initial_weights()[0])  # the step did move the weights


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_mirrored_xla_keeps_the_update_outside_the_compiled_step(batches, mirrored):
    strategy = mirrored
    assert not runtime.updates_locally(strategy)
    losses, model, _, graph = _train(batches, strategy, True, num_steps=2)
    reference_losses, reference, _, _ = _train(batches, strategy, False, num_steps=2)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-6)
    for a, b in zip(reference.weights, model.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-7, err_msg=a.path)
    assert ops_per_step_outside_xla(graph)["AssignVariableOp"] >= len(model.trainable_weights)


def test_synchronised_batchnorm_under_mirrored_xla_is_a_clear_error(tmp_path, monkeypatch, mirrored):
    strategy = mirrored
    with strategy.scope():
        model = models.create_model("mnist_resnet", sync_batchnorm=True)
        optimizer = keras.optimizers.SGD(0.01)
    assert steps.why_not_xla(model, tf.distribute.get_strategy()) is None
    assert steps.why_not_xla(model, strategy) == "synchronised BatchNorm cannot run inside XLA under MirroredStrategy"
    with pytest.raises(ValueError, match="synchronised BatchNorm cannot run inside XLA under MirroredStrategy"):
        steps.make_train_step(model, optimizer, steps.make_loss(), {}, 16, strategy, jit_compile=True)
    # The trainer: asked for XLA, a one-line error; XLA only by default (as on a GPU), it turns
    # XLA off and says so.
    cfg = TrainConfig(dataset="synthetic", strategy="mirrored", model_options={"sync_batchnorm": True},
                      model_dir=str(tmp_path))
    with pytest.raises(ValueError, match="^jit_compile: synchronised BatchNorm cannot run inside XLA under "
                                         "MirroredStrategy; use --jit_compile=false or drop sync_batchnorm$"):
        training.Run(cfg.replace(jit_compile=True))
    monkeypatch.setattr(runtime, "use_xla", lambda jit_compile, strategy, on_cpu: True)
    lines = []
    assert training.Run(cfg, log=lines.append).jit is False
    assert lines == ["XLA is off: synchronised BatchNorm cannot run inside XLA under MirroredStrategy "
                     "(--jit_compile=false silences this)"]


@pytest.fixture(scope="module")
def float32_losses(batches):
    """Ten float32 steps on one repeated batch: the reference of the mixed-precision runs.

    ``mnist_resnet``, not the tiny ResNet: its dense head fits one batch in ten steps (the tiny one's
    global pooling takes far more), so "the loss falls as float32's does" is a wide margin.
    """
    return _train(batches.take(1).repeat(), tf.distribute.get_strategy(), True, "float32", num_steps=10,
                  learning_rate=0.003, model=mnist_resnet)[0]


def mnist_resnet(**options) -> keras.Model:
    return models.create_model("mnist_resnet", **options)


@pytest.mark.needs_mnist
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.slow
def test_mixed_precision_whole_step_xla_trains_like_float32(batches, float32_losses, precision):
    """Ten steps on one repeated batch: the loss falls as float32's does, from the same start.

    A rate low enough that no precision overshoots (at 0.01, float32 itself jumps from 2.9 to 5.3 at
    its third step, and float16's first three steps are loss-scale skips): the measured falls are
    3.8 -> 0.02-0.03 for all three, so a quarter of the start is a wide margin on any CPU.
    """
    one_batch = batches.take(1).repeat()
    losses, model, metrics, _ = _train(one_batch, tf.distribute.get_strategy(), True, precision, num_steps=10,
                                       learning_rate=0.003, model=mnist_resnet)
    assert model.compute_dtype == precision.removeprefix("mixed_")  # the layers really compute in 16 bits
    float32 = float32_losses
    assert losses.dtype == np.float32 and np.isfinite(losses).all(), losses
    np.testing.assert_allclose(losses[0], float32[0], rtol=0.05)  # same computation, fewer bits
    assert float32[-1] < float32[0] / 4, float32
    assert losses[-1] < losses[0] / 4, losses
    assert model.trainable_weights[0].dtype == "float32" and 0 < float(metrics["accuracy"].result()) <= 1


def test_label_smoothing_loss():
    logits = tf.constant([[2.0, 0.0, -1.0]])
    plain = steps.make_loss()(tf.constant([0]), logits)
    smooth = steps.make_loss(0.3)(tf.constant([0]), logits)
    log_p = tf.nn.log_softmax(logits)[0].numpy()
    np.testing.assert_allclose(plain, [-log_p[0]], rtol=1e-6)
    np.testing.assert_allclose(smooth, [-(0.8 * log_p[0] + 0.1 * log_p[1] + 0.1 * log_p[2])], rtol=1e-5)
    # Soft labels (mixup, CutMix): cross-entropy against the mixed distribution, smoothed the same way.
    soft = tf.constant([[0.6, 0.4, 0.0]])
    np.testing.assert_allclose(steps.make_loss()(soft, logits), [-(0.6 * log_p[0] + 0.4 * log_p[1])], rtol=1e-6)
    mixed = 0.7 * np.array([0.6, 0.4, 0.0]) + 0.1
    np.testing.assert_allclose(steps.make_loss(0.3)(soft, logits), [-(mixed * log_p).sum()], rtol=1e-5)
    # The accuracy of a soft label is that of its heaviest class.
    metrics = steps.make_metrics("train")
    steps.classifier_metrics_update(metrics)((None, tf.constant([[0.3, 0.7, 0.0], [0.9, 0.1, 0.0]])),
                                             tf.constant([1.0, 2.0]), tf.constant([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]))
    assert float(metrics["accuracy"].result()) == 0.5


@pytest.mark.slow
def test_mixup_and_cutmix_train_on_soft_labels(tmp_path):
    cfg = TrainConfig(model="resnet20_cifar", dataset="synthetic", mixup=0.2, cutmix=1.0, batch_size=8, train_steps=2,
                      steps_per_loop=2, mode="train", export=False, model_dir="unused")
    run = training.Run(cfg.replace(model_dir=str(tmp_path)), log=lambda line: None)
    batch = next(run.task.train_iterator(0))
    assert batch[1].shape == (8, 10) and np.allclose(batch[1].numpy().sum(1), 1)
    results = run.train()
    assert np.isfinite(results["loss"]) and 0 <= results["accuracy"] <= 1
    with pytest.raises(ValueError, match="task fewshot does not take mixup \\(options of task classify\\)"):
        TrainConfig(task="fewshot", mixup=0.2)
