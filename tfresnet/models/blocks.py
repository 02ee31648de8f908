"""The ResNet v1/v2 and ResNeXt blocks used by ``tfresnet.models.resnet.ResNet``.

Each block takes ``(filters, strides)`` and decides its own shortcut from the input it is built
on. Sub-layer names follow ``keras.applications`` (``conv3_block1_2_conv``) so weights port by
name: v1 blocks are post-activation (``BasicBlock``, ``Bottleneck``, also ResNeXt), v2 blocks
pre-activation (He et al. 2016, ``PreActBasicBlock``, ``PreActBottleneck``).
"""

from __future__ import annotations

import keras

from tfresnet.models.layers import DropPath, apply, batch_norm, conv, serializable


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
        drop_path: Stochastic depth: the probability of dropping the residual branch of an
            example in training (``layers.DropPath``); 0 is none.
        **kwargs: Standard ``keras.layers.Layer`` arguments.
    """

    expansion = 1
    # Where a stage's stride goes: the first unit of stages 2..n (v1, torchvision), or the last unit
    # of stages 1..n-1 (keras.applications' v2). Both give the same feature-map sizes per stage.
    stride_in_last_unit = False

    def __init__(self, filters: int, strides: int = 1, conv_bias: bool = False, zero_init_residual: bool = False,
                 drop_path: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.conv_bias = conv_bias
        self.zero_init_residual = zero_init_residual
        self.drop_path = drop_path
        # Only when asked for: its seed state would otherwise change every checkpoint's layout.
        self.drop = DropPath(drop_path, name=f"{self.name}_drop_path") if drop_path else None

    def residual(self, branch, training) -> "keras.KerasTensor":
        """The residual branch's output, dropped per example in training when ``drop_path`` is set."""
        return self.drop(branch, training=training) if self.drop is not None else branch

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
            "drop_path": self.drop_path,
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
        return self.out(self.residual(apply(self.branch, x, training), training) + apply(self.shortcut, x, training))


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


class PreActivationBlock(Block):
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
        return self.residual(apply(self.branch, preact, training), training) + shortcut


@serializable
class PreActBasicBlock(PreActivationBlock):
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
class PreActBottleneck(PreActivationBlock):
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
