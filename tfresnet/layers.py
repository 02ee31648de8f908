"""Residual building blocks.

Two families live here:

* The pre-activation ``ResidualUnit`` and ``ResnetLayer`` of the classic TF2 tutorial (BN-ReLU-Conv
  twice), used by the small MNIST network and ``preact_resnet22``.
* The ImageNet/CIFAR blocks (``BasicBlock``, ``Bottleneck``, ``PreActBasicBlock``,
  ``PreActBottleneck``) used by ``tfresnet.models.ResNet``. Each block takes ``(filters, strides)``
  and decides its own shortcut from the input it is built on. Sub-layer names follow
  ``keras.applications`` (``conv3_block1_2_conv``) so weights port by name.

All layers are channels-last.
"""

from __future__ import annotations

from typing import Any, Sequence

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


# --------------------------------------------------------------------------------------------------
# The tutorial's pre-activation unit
# --------------------------------------------------------------------------------------------------


@serializable
class ResidualUnit(keras.layers.Layer):
    """Pre-activation residual unit: BN-ReLU-Conv, BN-ReLU-Conv, plus a shortcut.

    The shortcut is the identity when input and output shapes match, else a 1x1 convolution with the
    unit's stride (a projection) applied to the unit's input.

    Args:
        filter_in: Channels of the input.
        filter_out: Channels of the output (the second convolution and the shortcut).
        kernel_size: Kernel size of both convolutions.
        strides: Stride of the first convolution and of the projection.
        mid_filters: Channels of the first convolution; defaults to ``filter_out``. Lets the two
            convolutions of a unit differ in width.
        **kwargs: Standard ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).
    """

    def __init__(
        self,
        filter_in: int,
        filter_out: int,
        kernel_size: int | Sequence[int],
        strides: int = 1,
        mid_filters: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filter_in = filter_in
        self.filter_out = filter_out
        self.kernel_size = kernel_size
        self.strides = strides
        self.mid_filters = mid_filters
        n = self.name
        # Keras' default epsilon (1e-3), as in the tutorial this unit comes from.
        self.bn1 = BatchNorm(momentum=BN_MOMENTUM, name=f"{n}_bn1")
        self.conv1 = keras.layers.Conv2D(
            mid_filters or filter_out, kernel_size, strides=strides, padding="same", name=f"{n}_conv1"
        )
        self.bn2 = BatchNorm(momentum=BN_MOMENTUM, name=f"{n}_bn2")
        self.conv2 = keras.layers.Conv2D(filter_out, kernel_size, padding="same", name=f"{n}_conv2")
        self.shortcut = None
        if filter_in != filter_out or strides != 1:
            self.shortcut = keras.layers.Conv2D(filter_out, 1, strides=strides, name=f"{n}_shortcut")

    def build(self, input_shape):
        if input_shape[-1] != self.filter_in:
            raise ValueError(
                f"{self.name}: built for {self.filter_in} input channels, got input shape {tuple(input_shape)}"
            )

    def call(self, x, training=False):
        h = self.conv1(tf.nn.relu(self.bn1(x, training=training)))
        h = self.conv2(tf.nn.relu(self.bn2(h, training=training)))
        return h + (x if self.shortcut is None else self.shortcut(x))

    def get_config(self):
        return {
            **super().get_config(),
            "filter_in": self.filter_in,
            "filter_out": self.filter_out,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "mid_filters": self.mid_filters,
        }


@serializable
class ResnetLayer(keras.layers.Layer):
    """A chain of ``ResidualUnit``s.

    Unit ``i`` maps ``([filter_in] + list(filters))[i]`` channels to ``filters[i]``: the units are
    built from ``zip([filter_in] + list(filters), filters)``, so each unit takes the previous one's
    width. ``ResnetLayer(8, (16, 16), 3)`` is a projection unit 8->16 followed by an identity unit
    16->16. Only the first unit is strided.

    Args:
        filter_in: Channels of the input.
        filters: Output channels of each unit.
        kernel_size: Kernel size of every convolution.
        strides: Stride of the first unit.
        **kwargs: Standard ``keras.layers.Layer`` arguments.
    """

    def __init__(
        self,
        filter_in: int,
        filters: Sequence[int],
        kernel_size: int | Sequence[int],
        strides: int = 1,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.filter_in = filter_in
        self.filters = tuple(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.units = [
            ResidualUnit(f_in, f_out, kernel_size, strides=strides if i == 0 else 1, name=f"{self.name}_unit{i + 1}")
            for i, (f_in, f_out) in enumerate(zip([filter_in] + list(self.filters), self.filters))
        ]

    def call(self, x, training=False):
        for unit in self.units:
            x = unit(x, training=training)
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "filter_in": self.filter_in,
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
        }


# --------------------------------------------------------------------------------------------------
# ImageNet / CIFAR blocks
# --------------------------------------------------------------------------------------------------


class Block(keras.layers.Layer):
    """Base class of the ResNet blocks: holds the options every block shares.

    Args:
        filters: Base width of the block; the output has ``filters * expansion`` channels.
        strides: Spatial stride of the block.
        conv_bias: Give convolutions a bias. Only for keras.applications compatibility: in
            post-activation blocks every convolution gets one, in pre-activation blocks only those
            not followed by BatchNorm (a bias before BatchNorm is a no-op).
        zero_init_residual: Start each residual branch at zero (Goyal et al. 2017), so that every
            block is the identity at initialisation.
        **kwargs: Standard ``keras.layers.Layer`` arguments.
    """

    expansion = 1
    # Where a stage's stride goes: the first unit of stages 2..n (v1, torchvision), or the last unit
    # of stages 1..n-1 (keras.applications' v2). Both give the same feature-map sizes per stage.
    stride_in_last_unit = False

    def __init__(self, filters: int, strides: int = 1, conv_bias: bool = False, zero_init_residual: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.conv_bias = conv_bias
        self.zero_init_residual = zero_init_residual

    @property
    def out_channels(self) -> int:
        return self.filters * self.expansion

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "conv_bias": self.conv_bias,
            "zero_init_residual": self.zero_init_residual,
        }


class _PostActivationBlock(Block):
    """Shared build/call of v1 blocks: branch + (projection) shortcut, add, ReLU."""

    def build(self, input_shape):
        n = self.name
        self.shortcut = []
        if self.strides != 1 or input_shape[-1] != self.out_channels:
            self.shortcut = conv(self.out_channels, 1, f"{n}_0_conv", self.strides, self.conv_bias) + [
                batch_norm(f"{n}_0_bn")
            ]
        self.out = keras.layers.Activation("relu", name=f"{n}_out")

    def call(self, x, training=False):
        return self.out(apply(self.branch, x, training) + apply(self.shortcut, x, training))


@serializable
class BasicBlock(_PostActivationBlock):
    """ResNet-v1 basic block (ResNet-18/34, CIFAR ResNets): 3x3-3x3, post-activation."""

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(filters, strides, **kwargs)
        n, b = self.name, self.conv_bias
        self.branch = (
            conv(filters, 3, f"{n}_1_conv", strides, b)
            + [batch_norm(f"{n}_1_bn"), keras.layers.ReLU(name=f"{n}_1_relu")]
            + conv(filters, 3, f"{n}_2_conv", 1, b)
            + [batch_norm(f"{n}_2_bn", zero_gamma=self.zero_init_residual)]
        )


@serializable
class Bottleneck(_PostActivationBlock):
    """ResNet-v1 / ResNeXt bottleneck: 1x1 reduce, 3x3 (grouped), 1x1 expand by 4, post-activation.

    Args:
        filters: Output width / 4.
        strides: Spatial stride.
        groups: Cardinality of the 3x3 convolution (ResNeXt); 1 for ResNet.
        width_per_group: Channels per group of the 3x3 convolution at ``filters == 64``; the inner
            width is ``int(filters * width_per_group / 64) * groups`` (torchvision's rule).
        stride_in_1x1: Put the stride on the first 1x1 convolution (original paper, Caffe,
            keras.applications) instead of the 3x3 one ("ResNet v1.5", torchvision, slightly more
            accurate).
        **kwargs: ``Block`` options and ``keras.layers.Layer`` arguments.
    """

    expansion = 4

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        **kwargs,
    ):
        super().__init__(filters, strides, **kwargs)
        self.groups = groups
        self.width_per_group = width_per_group
        self.stride_in_1x1 = stride_in_1x1
        width = int(filters * width_per_group / 64) * groups
        s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
        n, b = self.name, self.conv_bias
        self.branch = (
            conv(width, 1, f"{n}_1_conv", s1, b)
            + [batch_norm(f"{n}_1_bn"), keras.layers.ReLU(name=f"{n}_1_relu")]
            + conv(width, 3, f"{n}_2_conv", s3, b, groups=groups)
            + [batch_norm(f"{n}_2_bn"), keras.layers.ReLU(name=f"{n}_2_relu")]
            + conv(self.out_channels, 1, f"{n}_3_conv", 1, b)
            + [batch_norm(f"{n}_3_bn", zero_gamma=self.zero_init_residual)]
        )

    def get_config(self):
        return {
            **super().get_config(),
            "groups": self.groups,
            "width_per_group": self.width_per_group,
            "stride_in_1x1": self.stride_in_1x1,
        }


class _PreActivationBlock(Block):
    """Shared build/call of v2 blocks (He et al. 2016, keras.applications layout).

    BN-ReLU runs once on the input ("preact"); a projection shortcut reads the pre-activated input,
    a stride-only shortcut subsamples the raw input, else the shortcut is the identity.
    """

    stride_in_last_unit = True

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(filters, strides, **kwargs)
        self.preact = [batch_norm(f"{self.name}_preact_bn"), keras.layers.ReLU(name=f"{self.name}_preact_relu")]

    def build(self, input_shape):
        self.projection = self.subsample = None
        if input_shape[-1] != self.out_channels:
            self.projection = conv(self.out_channels, 1, f"{self.name}_0_conv", self.strides, self.conv_bias)[0]
        elif self.strides != 1:
            self.subsample = keras.layers.MaxPooling2D(1, strides=self.strides, name=f"{self.name}_0_pool")

    def call(self, x, training=False):
        preact = apply(self.preact, x, training)
        if self.projection is not None:
            shortcut = self.projection(preact)
        elif self.subsample is not None:
            shortcut = self.subsample(x)
        else:
            shortcut = x
        return apply(self.branch, preact, training) + shortcut


@serializable
class PreActBasicBlock(_PreActivationBlock):
    """ResNet-v2 basic block: BN-ReLU, 3x3, BN-ReLU, 3x3."""

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(filters, strides, **kwargs)
        n = self.name
        self.branch = (
            conv(filters, 3, f"{n}_1_conv", strides)
            + [batch_norm(f"{n}_1_bn"), keras.layers.ReLU(name=f"{n}_1_relu")]
            + conv(filters, 3, f"{n}_2_conv", 1, self.conv_bias, zero_init=self.zero_init_residual)
        )


@serializable
class PreActBottleneck(_PreActivationBlock):
    """ResNet-v2 bottleneck: BN-ReLU, 1x1, BN-ReLU, 3x3 (strided), BN-ReLU, 1x1 expand by 4."""

    expansion = 4

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(filters, strides, **kwargs)
        n = self.name
        self.branch = (
            conv(filters, 1, f"{n}_1_conv")
            + [batch_norm(f"{n}_1_bn"), keras.layers.ReLU(name=f"{n}_1_relu")]
            + conv(filters, 3, f"{n}_2_conv", strides)
            + [batch_norm(f"{n}_2_bn"), keras.layers.ReLU(name=f"{n}_2_relu")]
            + conv(self.out_channels, 1, f"{n}_3_conv", 1, self.conv_bias, zero_init=self.zero_init_residual)
        )


BLOCKS: dict[str, type[Block]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact_basic": PreActBasicBlock,
    "preact_bottleneck": PreActBottleneck,
}
