"""Shared layer primitives: the fused BatchNorm, padded convolutions, and ``apply``.

The residual units and blocks built from them live in ``tfresnet.models.tutorial`` (the TF2 tutorial's
pre-activation ``ResidualUnit``/``ResnetLayer``) and ``tfresnet.models.blocks`` (the ImageNet/CIFAR
blocks). All layers are channels-last.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

# keras.applications' BatchNorm epsilon: needed for exact ports of its ImageNet weights.
BN_EPSILON = 1.001e-5
# 0.9 (torchvision, Model Garden) rather than Keras' 0.99: moving statistics settle within a few
# hundred steps, which matters for short runs and for evaluating right after an epoch.
BN_MOMENTUM = 0.9

serializable = keras.saving.register_keras_serializable(package="tfresnet")


@serializable
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed with TensorFlow's fused kernel where it can.

    Keras 3 normalises with separate moment and arithmetic ops; the fused kernel (oneDNN on CPU,
    cuDNN on GPU, one HLO op under XLA) does it in one pass and made ``mnist_resnet`` training 35%
    faster on CPU (BENCHMARKS.md). Same weights, config and semantics as the Keras layer, except
    that the moving variance is updated with the unbiased batch variance (as in PyTorch and in
    tf.keras 2's fused path). Synchronised BN, float64 and non-image inputs use the Keras path.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) and len(inputs.shape) == 4
        if self.synchronized or mask is not None or not fusable or self.axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones(inputs.shape[-1])
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros(inputs.shape[-1])
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, epsilon=self.epsilon, is_training=True)
            for stat, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                stat.assign(stat * self.momentum + tf.cast(value, stat.dtype) * (1.0 - self.momentum))
            return y
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, mean=self.moving_mean, variance=self.moving_variance, epsilon=self.epsilon,
            is_training=False)
        return y


@serializable
class DropPath(keras.layers.Layer):
    """Stochastic depth (Huang et al. 2016): drops a residual branch for whole examples in training.

    Each example keeps the branch with probability ``1 - rate``, scaled by ``1 / (1 - rate)`` so
    that its expected value is unchanged; at inference the branch always passes, unchanged. The
    draws are stateless, keyed by ``(seed, draw count, replica)``, and the draw count is a weight
    of the layer: a checkpoint holds it, so a resumed run drops exactly what an uninterrupted one
    would.

    Args:
        rate: Probability of dropping the branch.
        seed: Seeds the draws.
        **kwargs: Standard ``keras.layers.Layer`` arguments.
    """

    def __init__(self, rate: float, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed

    def build(self, input_shape):
        self.draws = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False, name="draws")

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        context = tf.distribute.get_replica_context()
        replica = context.replica_id_in_sync_group if context is not None else 0
        key = tf.stack([tf.cast(self.seed, tf.int64) * 1_000_003 + tf.cast(replica, tf.int64), self.draws.value])
        shape = tf.concat([tf.shape(x)[:1], tf.ones([len(x.shape) - 1], tf.int32)], 0)
        mask = tf.floor(keep + tf.random.stateless_uniform(shape, seed=key)) / keep
        self.draws.assign_add(1)
        return x * tf.cast(mask, x.dtype)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def batch_norm(name: str, zero_gamma: bool = False) -> BatchNorm:
    """BatchNorm with the package's epsilon/momentum; ``zero_gamma`` starts a residual branch at 0."""
    return BatchNorm(
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )


def conv(
    filters: int,
    kernel_size: int,
    name: str,
    strides: int = 1,
    use_bias: bool = False,
    groups: int = 1,
    zero_init: bool = False,
) -> list[keras.layers.Layer]:
    """A convolution as a list of layers: [ZeroPadding2D,] Conv2D.

    Strided convolutions pad explicitly and symmetrically ((k-1)//2 on every side) instead of using
    ``padding="same"``, whose TF flavour pads only bottom/right for even inputs. Symmetric padding is
    what keras.applications and torchvision do, so their weights port with identical outputs.
    """
    layers: list[keras.layers.Layer] = []
    padding = "same"
    if strides > 1 and kernel_size > 1:
        layers.append(keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad"))
        padding = "valid"
    layers.append(
        keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            groups=groups,
            kernel_initializer="zeros" if zero_init else "he_normal",
            name=name,
        )
    )
    return layers


def apply(layers: Sequence[keras.layers.Layer], x: tf.Tensor, training: bool | None) -> tf.Tensor:
    """Runs ``x`` through ``layers``, passing ``training`` to BatchNormalization only."""
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            x = layer(x, training=training)
        else:
            x = layer(x)
    return x
