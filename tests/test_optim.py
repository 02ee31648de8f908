"""Optimizers and schedules by name: the curves, weight decay where asked and only there, no silent defaults."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresnet import models
from tfresnet.config import TrainConfig
from tfresnet.engine import optim

CFG = TrainConfig(learning_rate=0.1, lr_scale_batch=256, batch_size=512)


def test_schedules():
    assert CFG.base_learning_rate == pytest.approx(0.2)
    assert optim.make_schedule(CFG, 100) == pytest.approx(0.2)
    cosine = optim.make_schedule(CFG.replace(lr_schedule="cosine", warmup_steps=10), 110)
    assert float(cosine(0)) == pytest.approx(0.0) and float(cosine(10)) == pytest.approx(0.2)
    assert float(cosine(60)) == pytest.approx(0.1, rel=1e-3) and float(cosine(110)) == pytest.approx(0.0, abs=1e-6)
    piece = optim.make_schedule(CFG.replace(lr_schedule="piecewise", lr_boundaries=(5, 8)), 10)
    assert [round(float(piece(s)), 6) for s in (0, 6, 9)] == [0.2, 0.02, 0.002]


def one_cycle_formula(step, max_lr, total_steps, warmup_steps=None, start=0.04, end=1e-4):
    """The one-cycle curve the package wrote out by hand before (Smith 2018), transcribed to Python."""
    warmup = warmup_steps or max(1, int(0.3 * total_steps))
    if step < warmup:
        return max_lr * (start + (1 - start) * step / warmup)
    down = min(max((step - warmup) / max(1, total_steps - warmup), 0.0), 1.0)
    return max_lr * (end + (1 - end) * 0.5 * (1 + math.cos(math.pi * down)))


@pytest.mark.parametrize("total, warmup", [(100, 30), (100, 0), (7, 0), (1000, 1)])
def test_onecycle_is_keras_cosine_decay_with_warmup_and_the_same_curve(total, warmup):
    schedule = optim.make_schedule(CFG.replace(lr_schedule="onecycle", warmup_steps=warmup), total)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    steps = range(total + 5)  # past the end it stays at the floor
    ours = np.array([float(schedule(s)) for s in steps])
    # Keras computes in float32: rounding of ~1e-8 of the peak rate (measured 3e-9 at the floor).
    np.testing.assert_allclose(ours, [one_cycle_formula(s, 0.2, total, warmup) for s in steps], rtol=2e-6,
                               atol=0.2 * 1e-6)
    peak = warmup or max(1, int(0.3 * total))
    assert int(np.argmax(ours)) == peak and ours[peak] == pytest.approx(0.2) and ours[total] < 1e-4


def test_weight_decay_is_exactly_what_was_asked_for_every_optimizer():
    model = models.create_model("resnet20_cifar")
    for name in ("sgd", "adam", "adamw"):
        none = optim.make_optimizer(CFG.replace(optimizer=name, weight_decay=0.0), 100)
        assert none.weight_decay in (None, 0.0), name  # AdamW's own default (0.004) never slips in
        decayed = optim.make_optimizer(CFG.replace(optimizer=name, weight_decay=1e-4), 100)
        decayed.build(model.trainable_variables)
        assert decayed.weight_decay == pytest.approx(1e-4), name
        paths = {v.path for v in model.trainable_variables if decayed._use_weight_decay(v)}
        # Never BatchNorm's scale/shift or biases.
        assert paths and all(p.endswith("kernel") for p in paths), name


def test_adamw_with_zero_weight_decay_updates_like_adam():
    var = [keras.Variable(np.ones(3, np.float32)) for _ in range(2)]
    grads = [np.array([0.1, -0.2, 0.3], np.float32)]
    for v, name in zip(var, ("adam", "adamw")):
        opt = optim.make_optimizer(CFG.replace(optimizer=name, weight_decay=0.0), 10)
        for _ in range(3):
            opt.apply_gradients(zip(grads, [v]))
    np.testing.assert_array_equal(var[0].numpy(), var[1].numpy())


def test_float16_gets_loss_scaling_and_an_unknown_name_is_refused():
    assert isinstance(optim.make_optimizer(CFG.replace(precision="mixed_float16"), 10),
                      keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="^optimizer: unknown value 'rmsprop'; expected one of adam, adamw, sgd$"):
        optim.make_optimizer(CFG.replace(optimizer="rmsprop"), 10)
    # Before the tables, any unknown schedule silently became one-cycle.
    with pytest.raises(ValueError, match="^lr_schedule: unknown value 'cosin' \\(did you mean 'cosine'\\?\\)"):
        optim.make_schedule(CFG.replace(lr_schedule="cosin"), 10)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_weight_decay_is_pytorchs_coupled_l2(nesterov):
    """Several steps of tfresnet's sgd against torch.optim.SGD(momentum, nesterov, weight_decay), with a
    changing learning rate; BatchNorm parameters and biases are not decayed, in both."""
    import torch

    rng = np.random.default_rng(0)
    shapes = {"conv/kernel": (3, 3, 2, 4), "bn/gamma": (4,), "dense/bias": (4,)}
    start = {name: rng.normal(size=shape).astype("float32") for name, shape in shapes.items()}
    grads = [{name: rng.normal(size=shape).astype("float32") for name, shape in shapes.items()} for _ in range(6)]
    rates = [0.1, 0.1, 0.05, 0.02, 0.02, 0.01]
    cfg = CFG.replace(optimizer="sgd", momentum=0.9, nesterov=nesterov, weight_decay=0.05)
    variables = [keras.Variable(start[name], name=name.split("/")[1]) for name in shapes]
    opt = optim.make_optimizer(cfg, 100)
    opt.build(variables)
    params = {name: torch.tensor(start[name], requires_grad=True) for name in shapes}
    decayed = [params["conv/kernel"]]
    torch_opt = torch.optim.SGD([{"params": decayed, "weight_decay": 0.05},
                                 {"params": [params["bn/gamma"], params["dense/bias"]], "weight_decay": 0.0}],
                                lr=0.1, momentum=0.9, nesterov=nesterov)
    for grad, lr in zip(grads, rates):
        opt.learning_rate = lr
        opt.apply([tf.constant(grad[name]) for name in shapes], variables)
        for group in torch_opt.param_groups:
            group["lr"] = lr
        for name, p in params.items():
            p.grad = torch.tensor(grad[name])
        torch_opt.step()
    for variable, name in zip(variables, shapes):
        np.testing.assert_allclose(variable.numpy(), params[name].detach().numpy(), atol=1e-6, rtol=0)
    # The decay is coupled: ten times stronger than Keras' decoupled one at momentum 0.9.
    assert not np.allclose(start["conv/kernel"], variables[0].numpy())


def test_sgd_checkpoints_and_serializes():
    opt = optim.make_optimizer(CFG.replace(optimizer="sgd", weight_decay=1e-4), 100)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is optim.SGD and again.weight_decay == pytest.approx(1e-4)


def test_piecewise_warmup_is_he_et_als_constant_tenth():
    """ResNet-110 on CIFAR (He et al. 2015): 0.01 until step 400, then 0.1, /10 at 32k and 48k."""
    cfg = TrainConfig(learning_rate=0.1, lr_schedule="piecewise", lr_boundaries=(32000, 48000), warmup_steps=400)
    schedule = optim.make_schedule(cfg, 64000)
    # Keras' boundaries are inclusive: step 32000 is the last at 0.1.
    for step, lr in ((0, 0.01), (399, 0.01), (400, 0.1), (32000, 0.1), (32001, 0.01), (48001, 0.001)):
        assert float(schedule(step)) == pytest.approx(lr), step
    with pytest.raises(ValueError, match="warmup_steps 40000 must end before the first of lr_boundaries 32000"):
        optim.make_schedule(cfg.replace(warmup_steps=40000), 64000)


@pytest.mark.parametrize("warmup", [False, True])
def test_weight_ema_follows_its_numpy_recursion(warmup):
    """average_0 = w_1; then average = d * average + (1 - d) * w after each step, d = min(decay,
    (1 + n) / (10 + n)) at step n with warm-up."""
    rng = np.random.default_rng(1)
    start = rng.normal(size=(3, 2)).astype("float32")
    grads = rng.normal(size=(6, 3, 2)).astype("float32")
    variable = keras.Variable(start, name="kernel")
    opt = optim.make_optimizer(CFG.replace(optimizer="sgd", momentum=0.0, ema=0.8, ema_warmup=warmup), 100)
    opt.build([variable])
    w, average = start.astype("float64"), None
    for n, grad in enumerate(grads):
        opt.apply([tf.constant(grad)], [variable])
        w = w - 0.2 * grad  # lr 0.1 scaled by batch 512 / 256
        decay = 0.0 if n == 0 else (min(0.8, (1 + n) / (10 + n)) if warmup else 0.8)
        average = w if average is None else decay * average + (1 - decay) * w
    np.testing.assert_allclose(variable.numpy(), w, atol=1e-5)
    with optim.averaged_weights(opt):
        np.testing.assert_allclose(variable.numpy(), average, atol=1e-5)
    np.testing.assert_allclose(variable.numpy(), w, atol=1e-5)  # and back
