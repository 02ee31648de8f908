"""The training loop: real learning, distribution, resume, schedules, errors."""

import collections
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import MNIST_NPZ, mnist_config
from tfresnet import data, tasks, training
from tfresnet.config import TrainConfig
from tfresnet.engine import optim, steps
from tfresnet.models import tutorial

pytestmark = pytest.mark.needs_mnist


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_mnist_2000_images_reach_90_percent(trained_mnist):
    """The session's trained run (conftest.trained_mnist), which the tests that need a trained run share."""
    cfg, results, printed = trained_mnist
    assert results["test_accuracy"] >= 0.90
    lines = [l for l in printed if l.startswith("Epoch")]
    assert len(lines) == 3 and lines[0].startswith("Epoch 1, Loss: ") and "Test Accuracy: " in lines[0]
    run = trained_mnist.model_dir
    log = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in log] == [62, 124, 186]
    assert log[-1]["loss"] < log[0]["loss"] / 3
    # Artifacts: checkpoints, TensorBoard event files, exported models that reproduce the logits.
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-186")
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "logs" / "train"))
    x = next(iter(data.make_dataset(data.load_source("mnist", "test[:8]", cfg.data_dir), 8, training=False)))[0]
    reloaded = keras.models.load_model(run / "model.keras")
    served = tf.saved_model.load(str(run / "saved_model"))
    np.testing.assert_allclose(served.serve(x), reloaded(x, training=False), atol=1e-5)
    np.testing.assert_allclose(np.argmax(reloaded(x, training=False), -1).mean() >= 0, True)


@pytest.mark.slow
def test_target_accuracy_stops_early_and_a_rerun_trains_no_further(tmp_path, capsys):
    # 1,024 images: 32 steps an epoch, 71-79% test accuracy after the first (seeds 0 and 1).
    cfg = mnist_config(tmp_path / "run", train_split="train[:1024]", eval_split="test[:500]", epochs=4, target_accuracy=0.5,
                       export=False)
    results = training.train(cfg)
    out = capsys.readouterr().out
    assert results["test_accuracy"] >= 0.5
    assert "Epoch 1, " in out and "Epoch 2, " not in out
    assert "Reached target_accuracy 50.00% at epoch 1 (step 32), " in out and " s after the start of training" in out
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-32")
    # The last test accuracy is checkpointed with the run: the same command again has nothing to do...
    again = training.train(cfg)
    assert f"Test accuracy {results['test_accuracy']:.2%} of step 32 already reaches target_accuracy 50.00%" \
        in capsys.readouterr().out
    assert again == {k: v for k, v in results.items() if k.startswith("test_")}
    # ...while a higher target resumes training from there.
    training.train(cfg.replace(epochs=2, target_accuracy=1.0))
    assert "Epoch 2, " in capsys.readouterr().out
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-64")


@pytest.mark.slow
def test_evaluate_builds_no_optimizer_reads_no_training_data_and_writes_nothing(trained_mnist, monkeypatch, capsys):
    cfg, trained, _ = trained_mnist
    before = sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in trained_mnist.model_dir.rglob("*"))

    def refuse(*args, **kwargs):
        raise AssertionError("evaluation built an optimizer")

    monkeypatch.setattr(optim, "make_optimizer", refuse)
    # A training split that cannot be read: evaluation must never look at it.
    results = training.evaluate(cfg.replace(train_split="no_such_split"))
    assert results == {k[5:]: v for k, v in trained.items() if k.startswith("test_")}
    line = capsys.readouterr().out
    assert "Eval test[:1000] at step 186: loss: " in line  # accuracies in percent, as the epoch lines print them
    assert f"accuracy: {results['accuracy'] * 100:.2f}%" in line and f"top5: {results['top5'] * 100:.2f}%" in line
    assert sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in trained_mnist.model_dir.rglob("*")) == before


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = mnist_config(tmp_path / "run", train_split="train[:640]", steps_per_loop=5, checkpoint_every=5, mode="train")
    training.train(cfg.replace(train_steps=5))
    run = training.Run(cfg.replace(train_steps=40))
    restore = run.restore

    def restore_then_diverge():  # a NaN weight, as after a blown-up update
        step = restore()
        # The classifier: oneDNN's ReLU and max-pool can swallow NaNs from earlier layers.
        run.model.head.kernel.assign(tf.fill(run.model.head.kernel.shape, np.nan))
        return step

    run.restore = restore_then_diverge
    with pytest.raises(training.TrainingError, match=r"loss became nan at step 6; the last good checkpoint .*ckpt-5"):
        run.train()
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-5")
    ckpts = tf.train.get_checkpoint_state(str(tmp_path / "run" / "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in ckpts] == ["ckpt-5"]


@pytest.mark.slow
def test_tutorial_signatures_train_the_tutorial_model():
    src = data.load_source("mnist", "train[:1024]", str(MNIST_NPZ.parent))
    model = tutorial.MnistResNet()
    loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam()
    train_loss, train_accuracy = keras.metrics.Mean(), keras.metrics.SparseCategoricalAccuracy()
    test_loss, test_accuracy = keras.metrics.Mean(), keras.metrics.SparseCategoricalAccuracy()
    first = None
    for images, labels in data.make_dataset(src, 32, training=True).take(96):  # 3 epochs
        steps.train_step(model, images, labels, loss_object, optimizer, train_loss, train_accuracy)
        first = first if first is not None else float(train_loss.result())
    assert float(train_loss.result()) < first
    for images, labels in data.make_dataset(data.load_source("mnist", "test[:256]", str(MNIST_NPZ.parent)), 64,
                                            training=False):
        steps.test_step(model, images, labels, loss_object, test_loss, test_accuracy)
    assert float(test_accuracy.result()) > 0.85


@pytest.mark.slow
def test_mixed_precision_keeps_logits_and_loss_float32(tmp_path):
    run = training.Run(mnist_config(tmp_path / "run", precision="mixed_bfloat16", train_steps=2, mode="train"))
    assert keras.config.dtype_policy().name == "float32"  # restored after the model was built
    assert run.model.get_layer("fc").compute_dtype == "bfloat16"
    logits = run.model(tf.zeros((2, 28, 28, 1)), training=False)
    assert logits.dtype == tf.float32 and steps.make_loss()(tf.constant([0, 1]), logits).dtype == tf.float32
    run.train()


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_ema_resumes_exactly_is_evaluated_beside_the_raw_weights_and_exported(tmp_path):
    from tfresnet.engine import checkpoints

    lines = []
    cfg = TrainConfig(model="mnist_resnet", dataset="mnist", data_dir=str(MNIST_NPZ.parent), train_split="train[:128]",
                      eval_split="test[:64]", batch_size=32, eval_batch_size=64, epochs=2, steps_per_loop=2,
                      optimizer="adam", learning_rate=0.001, ema=0.9, ema_warmup=True, model_dir=str(tmp_path / "a"))
    straight = training.Run(cfg, log=lines.append)
    results = straight.train()
    assert "(EMA weights; raw weights: " in lines[-1] and "test_raw_accuracy" in results
    # Interrupted after one epoch, then resumed: the same weights and averages, bit for bit.
    resumed_cfg = cfg.replace(model_dir=str(tmp_path / "b"))
    training.train(resumed_cfg.replace(epochs=1, export=False), log=lambda line: None)
    # No export: the straight run's is the one read below.
    resumed = training.Run(resumed_cfg.replace(export=False), log=lambda line: None)
    assert resumed.train()["test_accuracy"] == results["test_accuracy"]
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # tfresnet-eval and the exported model both use the averages.
    averages = {checkpoints.ema_key(v): a.numpy() for v, a in zip(
        straight.model.trainable_variables, optim.base_optimizer(straight.optimizer)._model_variables_moving_average)}
    exported = keras.models.load_model(tmp_path / "a" / "model.keras")
    for v in exported.trainable_variables:
        np.testing.assert_array_equal(v.numpy(), averages[checkpoints.ema_key(v)])
    evaluated = training.evaluate(cfg.replace(mode="eval"), log=lambda line: None)
    assert evaluated["accuracy"] == pytest.approx(results["test_accuracy"])


@pytest.mark.slow
def test_each_step_function_is_traced_once_over_two_epochs_of_uneven_data(tmp_path, monkeypatch):
    # 100 training images in batches of 32 (3 steps an epoch, 4 images left over), calls of 2 and 1
    # steps, and 50 test images in batches of 16 (2 left over): none of it may build a second
    # step. Each trace of a step calls the task's forward once (XLA compiles once per trace).
    traces = collections.Counter()
    make_forward = tasks.ClassificationTask.forward

    def counting_forward(self, model):
        forward = make_forward(self, model)

        def traced(batch, training):
            traces["train" if training else "eval"] += 1
            return forward(batch, training)

        return traced

    monkeypatch.setattr(tasks.ClassificationTask, "forward", counting_forward)
    cfg = mnist_config(tmp_path / "run", train_split="train[:100]", eval_split="test[:50]", eval_batch_size=16, epochs=2,
                       steps_per_loop=2, jit_compile=True, export=False)
    run = training.Run(cfg, log=lambda line: None)
    results = run.train()
    assert int(run.step.numpy()) == 6 and 0 <= results["test_accuracy"] <= 1
    assert traces == {"train": 1, "eval": 1}


@pytest.mark.slow
def test_tfresnet_train_and_evaluate_are_top_level_names(tmp_path):
    import tfresnet  # noqa: PLC0415
    import tfresnet.train  # noqa: PLC0415 - the module of python -m tfresnet.train: still callable

    cfg = mnist_config(tmp_path / "run", train_split="train[:64]", eval_split="test[:64]", train_steps=2, steps_per_loop=2,
                       export=False)
    trained = tfresnet.train(cfg, log=lambda line: None)
    evaluated = tfresnet.evaluate(cfg, log=lambda line: None)
    assert evaluated["accuracy"] == trained["test_accuracy"] and evaluated["loss"] == trained["test_loss"]
