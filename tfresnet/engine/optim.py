"""Optimizers and learning-rate schedules, by name: ``make_optimizer(cfg, total_steps)``.

Both are name-to-factory tables (``OPTIMIZERS``, ``SCHEDULES``): adding one is one entry here, and
an unknown name is a one-line error listing the valid ones. Everything is a stock Keras optimizer
or schedule.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Union

import keras
import tensorflow as tf

from tfresnet.config import TrainConfig
from tfresnet.core.registry import Registry

LearningRate = Union[float, keras.optimizers.schedules.LearningRateSchedule]
SCHEDULES: Registry[Callable[[TrainConfig, int], LearningRate]] = Registry("lr_schedule")
OPTIMIZERS: Registry[Callable[[TrainConfig, LearningRate], keras.optimizers.Optimizer]] = Registry("optimizer")

# One-cycle (Smith 2018): the rate starts at this fraction of the peak and ends at ONECYCLE_END of it.
ONECYCLE_START, ONECYCLE_END = 0.04, 1e-4


@SCHEDULES.register("constant")
def constant(cfg: TrainConfig, total_steps: int) -> LearningRate:
    """The base learning rate throughout."""
    return cfg.base_learning_rate


# He et al. (2015) warm ResNet-110 up at a tenth of the rate (0.01) for its first 400 steps.
PIECEWISE_WARMUP_FACTOR = 0.1


@SCHEDULES.register("piecewise")
def piecewise(cfg: TrainConfig, total_steps: int) -> LearningRate:
    """Multiplied by ``lr_decay`` at each of ``lr_boundaries`` (He et al.: /10 at 32k and 48k).

    With ``warmup_steps``, the first steps run at a tenth of the rate: He et al.'s constant
    warm-up of ResNet-110 on CIFAR (0.01 for 400 steps, then 0.1).
    """
    lr = cfg.base_learning_rate
    if not cfg.lr_boundaries:
        raise ValueError("lr_schedule=piecewise needs lr_boundaries (steps)")
    boundaries = list(cfg.lr_boundaries)
    values = [lr * cfg.lr_decay**i for i in range(len(boundaries) + 1)]
    if cfg.warmup_steps:
        if cfg.warmup_steps >= boundaries[0]:
            raise ValueError(f"warmup_steps {cfg.warmup_steps} must end before the first of lr_boundaries "
                             f"{boundaries[0]}")
        # Keras' boundaries are inclusive (step <= b keeps the earlier value): steps 0 .. warmup - 1.
        boundaries, values = [cfg.warmup_steps - 1] + boundaries, [lr * PIECEWISE_WARMUP_FACTOR] + values
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


@SCHEDULES.register("cosine")
def cosine(cfg: TrainConfig, total_steps: int) -> LearningRate:
    """Cosine decay to 0 over the run, after a linear warm-up from 0 of ``warmup_steps``."""
    lr = cfg.base_learning_rate
    if cfg.warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            0.0, max(1, total_steps - cfg.warmup_steps), warmup_target=lr, warmup_steps=cfg.warmup_steps)
    return keras.optimizers.schedules.CosineDecay(lr, total_steps)


@SCHEDULES.register("onecycle")
def onecycle(cfg: TrainConfig, total_steps: int) -> LearningRate:
    """One-cycle (Smith 2018): linear from 4% of the peak up to it, then cosine down to 0.01% of it.

    The rise takes ``warmup_steps`` (default 30% of the run). This is exactly Keras'
    ``CosineDecay`` with a warm-up (``tests/test_optim.py`` checks it against the formula).
    """
    lr = cfg.base_learning_rate
    warmup = cfg.warmup_steps or max(1, int(0.3 * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        lr * ONECYCLE_START, max(1, total_steps - warmup), alpha=ONECYCLE_END, warmup_target=lr, warmup_steps=warmup)


def _common(cfg: TrainConfig, learning_rate: LearningRate) -> dict:
    # Keras applies weight decay whenever it is not None, so 0 means none rather than a no-op op.
    return {"learning_rate": learning_rate, "global_clipnorm": cfg.clip_norm,
            "weight_decay": cfg.weight_decay or None}


@keras.saving.register_keras_serializable(package="tfresnet")
class SGD(keras.optimizers.SGD):
    """SGD as the papers and PyTorch define it: L2 weight decay added to the gradient, then momentum.

    He et al. (2015), Goyal et al. (2017), Model Garden and ``torch.optim.SGD(weight_decay=...)``
    all update ``g = grad + wd * w; buf = momentum * buf + g; w -= lr * buf`` (Nesterov:
    ``w -= lr * (g + momentum * buf)``). Keras' own ``SGD`` decays outside the momentum buffer
    (``w -= lr * wd * w``), about ten times weaker at momentum 0.9, and folds the learning rate
    into the buffer, which drifts from the above once the rate changes. Variables excluded with
    ``exclude_from_weight_decay`` (BatchNorm, biases) get no decay. The buffer is the optimizer's
    ``momentums``, checkpointed as Keras' is.
    """

    def _apply_weight_decay(self, variables):
        return  # coupled: added to the gradient in update_step instead

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = keras.ops.cast(learning_rate, variable.dtype)
        gradient = keras.ops.cast(gradient, variable.dtype)
        if self.weight_decay is not None and self._use_weight_decay(variable):
            gradient = gradient + keras.ops.cast(self.weight_decay, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        momentum = keras.ops.cast(self.momentum, variable.dtype)
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(buf, momentum * buf + gradient)
        step = gradient + momentum * buf if self.nesterov else buf
        self.assign_sub(variable, learning_rate * step)


@OPTIMIZERS.register("sgd")
def sgd(cfg: TrainConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    """SGD with ``momentum`` (Nesterov with ``nesterov``) and the papers' coupled L2 ``weight_decay`` (``SGD``)."""
    return SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **_common(cfg, learning_rate))


@OPTIMIZERS.register("adam")
def adam(cfg: TrainConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    """Adam; ``weight_decay`` decoupled (Keras: ``w -= lr * wd * w``), none by default."""
    return keras.optimizers.Adam(**_common(cfg, learning_rate))


@OPTIMIZERS.register("adamw")
def adamw(cfg: TrainConfig, learning_rate: LearningRate) -> keras.optimizers.Optimizer:
    """AdamW, decoupled ``weight_decay`` (Loshchilov & Hutter), exactly as given (Keras' own default of
    0.004 is never slipped in)."""
    return keras.optimizers.AdamW(**{**_common(cfg, learning_rate), "weight_decay": cfg.weight_decay})


def make_schedule(cfg: TrainConfig, total_steps: int) -> LearningRate:
    """The learning rate of ``cfg.lr_schedule``: a float or a Keras schedule of the optimizer step."""
    return SCHEDULES.get(cfg.lr_schedule)(cfg, total_steps)


def make_optimizer(cfg: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """``cfg.optimizer`` with its schedule, weight decay (not on BN or biases), clipping and loss scaling.

    Args:
        cfg: The run's configuration.
        total_steps: Length of the run, for schedules that decay over it.

    Returns:
        A Keras optimizer; wrapped in ``LossScaleOptimizer`` for ``mixed_float16``.
    """
    opt = OPTIMIZERS.get(cfg.optimizer)(cfg, make_schedule(cfg, total_steps))
    # Decaying BatchNorm's scale/shift or biases only hurts (Goyal et al. 2017, "no bias decay").
    opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if cfg.ema:
        # Keras keeps the averages as optimizer variables: checkpointed and resumed with it.
        opt.use_ema, opt.ema_momentum, opt.ema_overwrite_frequency = True, cfg.ema, None
        if cfg.ema_warmup:
            opt._update_model_variables_moving_average = _ema_update_with_warmup(opt, cfg.ema)
    if cfg.precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def scale_learning_rate(optimizer: keras.optimizers.Optimizer, variables, factor: float) -> None:
    """Gives ``variables`` ``factor`` times the learning rate of the others (PyTorch's parameter groups).

    Keras optimizers have one learning rate (schedule); every variable's update goes through
    ``update_step(gradient, variable, learning_rate)``, which this wraps for the listed variables
    only, so the optimizer's state, schedule and checkpoint stay what they are. SGD's coupled
    weight decay is part of the gradient and so scaled with it (as in a PyTorch parameter group);
    Adam's decoupled decay is applied at the unscaled rate.

    Args:
        optimizer: The (inner, for a ``LossScaleOptimizer``) optimizer, built.
        variables: The variables whose rate is scaled (a fine-tuned backbone).
        factor: The scale, e.g. 0.1.
    """
    optimizer = base_optimizer(optimizer)
    keys = {optimizer._var_key(v) for v in variables}
    update_step = optimizer.update_step

    def scaled_update_step(gradient, variable, learning_rate):
        if optimizer._var_key(variable) in keys:
            learning_rate = learning_rate * tf.cast(factor, learning_rate.dtype)
        return update_step(gradient, variable, learning_rate)

    optimizer.update_step = scaled_update_step


def base_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer inside a ``LossScaleOptimizer``, or ``optimizer`` itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate at the optimizer's current step (Keras evaluates schedules for us)."""
    return float(tf.convert_to_tensor(base_optimizer(optimizer).learning_rate))


def warmed_up_ema_decay(decay: float, step: tf.Tensor) -> tf.Tensor:
    """The EMA decay at optimizer step ``step`` with warm-up: 0 at the first (the average starts as
    the weights, as in Keras), then ``min(decay, (1 + step) / (10 + step))``."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(decay, (1.0 + step) / (10.0 + step)) * tf.cast(step > 0, tf.float32)


def _ema_update_with_warmup(optimizer: keras.optimizers.Optimizer, decay: float):
    """Keras' ``_update_model_variables_moving_average`` with the warmed-up decay."""

    def update(trainable_variables):
        momentum = warmed_up_ema_decay(decay, optimizer.iterations)
        for var, average in zip(trainable_variables, optimizer._model_variables_moving_average):
            if average is not None:
                m = tf.cast(momentum, var.dtype)
                average.assign(m * average + (1 - m) * var)

    return update


def uses_ema(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether the optimizer keeps a moving average of the weights."""
    return bool(base_optimizer(optimizer).use_ema)


@contextlib.contextmanager
def averaged_weights(optimizer: keras.optimizers.Optimizer) -> Iterator[None]:
    """Within the block the model's trainable variables hold their moving averages (``--ema``).

    The weights and the averages trade places on entry and back on exit, on every replica: the
    training state is untouched afterwards. Does nothing without EMA.
    """
    opt = base_optimizer(optimizer)
    if not opt.use_ema:
        yield
        return
    pairs = [(v, a) for v, a in zip(opt._trainable_variables, opt._model_variables_moving_average) if a is not None]

    def swap():
        for var, average in pairs:
            held = tf.identity(var)
            var.assign(average)
            average.assign(held)

    swap()
    try:
        yield
    finally:
        swap()

