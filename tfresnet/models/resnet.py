"""ResNet v1/v2 and ResNeXt for ImageNet- and CIFAR-sized images, and their registered names.

Depth lives in one table (``DEPTHS``), widths are derived (``base_width * 2**stage``), and every
named model is one line. Every model returns logits: the softmax lives in the loss
(``from_logits=True``), which stays finite when a probability underflows and keeps the logits in
float32 under mixed precision.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from tfresnet.models.blocks import BLOCKS, PreActivationBlock
from tfresnet.models.classifier import ImageClassifier
from tfresnet.models.layers import apply, batch_norm, conv, serializable
from tfresnet.models.registry import register_model

# name -> (block, units per stage), the one place depth is defined.
DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def cifar_depths(depth: int) -> tuple[int, int, int]:
    """Units per stage of the He et al. (2015) CIFAR ResNet of depth ``6n + 2``."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return (n, n, n)


@serializable
class ResNet(ImageClassifier):
    """ResNet v1/v2 and ResNeXt, for ImageNet-sized or CIFAR-sized images.

    Args:
        block: One of ``layers.BLOCKS``: ``basic``, ``bottleneck`` (v1, ResNeXt),
            ``preact_basic``, ``preact_bottleneck`` (v2).
        depths: Units per stage, e.g. ``(3, 4, 6, 3)``.
        num_classes: Classifier outputs; 0 returns the pooled features instead of logits.
        stem: ``imagenet`` (7x7/2 conv, 3x3/2 max-pool) or ``cifar`` (3x3/1 conv, no pool, for
            32x32 inputs).
        base_width: Width of the first stage; stage ``s`` has ``base_width * 2**s``.
        block_options: Extra block arguments (``groups``, ``width_per_group``,
            ``stride_in_1x1``, ``conv_bias``), the same for every block.
        zero_init_residual: Start every residual branch at zero (see ``layers.Block``).
        drop_path_rate: Stochastic depth (Huang et al. 2016): block ``i`` of ``n`` drops its
            residual branch with probability ``drop_path_rate * i / (n - 1)``, rising linearly
            from 0 at the first block to this at the last (timm, "ResNet strikes back").
        **kwargs: ``ImageClassifier`` options (``sync_batchnorm``: BatchNorm statistics over all
            replicas) and ``keras.Model`` arguments (``name``, ``dtype``).
    """

    def __init__(
        self,
        block: str,
        depths: Sequence[int],
        num_classes: int = 1000,
        stem: str = "imagenet",
        base_width: int = 64,
        block_options: Mapping[str, Any] | None = None,
        zero_init_residual: bool = False,
        drop_path_rate: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(num_classes, **kwargs)
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; expected one of {sorted(BLOCKS)}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}; expected 'imagenet' or 'cifar'")
        self.block = block
        self.depths = tuple(depths)
        self.stem = stem
        self.base_width = base_width
        self.block_options = dict(block_options or {})
        self.zero_init_residual = zero_init_residual
        self.drop_path_rate = drop_path_rate

        block_cls = BLOCKS[block]
        self.preact = issubclass(block_cls, PreActivationBlock)
        bias = self.block_options.get("conv_bias", False)
        if stem == "imagenet":
            self.stem_layers = conv(base_width, 7, "conv1_conv", 2, bias)
            if not self.preact:
                self.stem_layers += [batch_norm("conv1_bn"), keras.layers.ReLU(name="conv1_relu")]
            self.stem_layers += [
                keras.layers.ZeroPadding2D(1, name="pool1_pad"),
                keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool"),
            ]
        else:
            self.stem_layers = conv(base_width, 3, "conv1_conv", 1, bias)
            if not self.preact:
                self.stem_layers += [batch_norm("conv1_bn"), keras.layers.ReLU(name="conv1_relu")]

        # One stride rule: each of the len(depths) - 1 stage transitions halves the feature map,
        # in the first unit after it (v1) or the last unit before it (keras.applications v2).
        last = len(self.depths) - 1
        num_blocks, index = sum(self.depths), 0
        self.stages = []
        for s, n_units in enumerate(self.depths):
            units = []
            for u in range(n_units):
                if block_cls.stride_in_last_unit:
                    strided = u == n_units - 1 and s < last
                else:
                    strided = u == 0 and s > 0
                units.append(
                    block_cls(
                        base_width * 2**s,
                        strides=2 if strided else 1,
                        zero_init_residual=zero_init_residual,
                        drop_path=drop_path_rate * index / max(1, num_blocks - 1),
                        name=f"conv{s + 2}_block{u + 1}",
                        **self.block_options,
                    )
                )
                index += 1
            self.stages.append(units)
        self.post = [batch_norm("post_bn"), keras.layers.ReLU(name="post_relu")] if self.preact else []
        self.pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        self.head = self.make_head()

    @property
    def reduction(self) -> int:
        """The total stride: 4 in the ImageNet stem (1 in the CIFAR one), then 2 per stage transition."""
        return (4 if self.stem == "imagenet" else 1) * 2 ** (len(self.depths) - 1)

    # Every strided layer pads symmetrically ((k - 1) // 2): output cell i is centred on input pixel 2i.
    feature_offset = 0.0

    def extract_features(self, x: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """Feature maps of the stem and every stage, and the pooled features.

        Args:
            x: Float images ``(batch, height, width, channels)``.
            training: BatchNorm mode.

        Returns:
            ``{"stem": ..., "conv2": ..., ..., "pooled": (batch, channels)}``.
        """
        x = self.model_inputs(x)
        feats = {"stem": apply(self.stem_layers, x, training)}
        x = feats["stem"]
        for s, units in enumerate(self.stages):
            for unit in units:
                x = unit(x, training=training)
            feats[f"conv{s + 2}"] = x
        feats["pooled"] = self.pool(apply(self.post, x, training))
        return feats

    def conv_features(self, x, training=False):
        x = apply(self.stem_layers, self.model_inputs(x), training)
        for units in self.stages:
            for unit in units:
                x = unit(x, training=training)
        return apply(self.post, x, training)  # v2: the last BN-ReLU, so the map is activated as in v1

    def classify_features(self, features, training=False):
        pooled = self.pool(features)
        return pooled if self.head is None else self.head(pooled)

    def get_config(self):
        return {
            **super().get_config(),
            "block": self.block,
            "depths": list(self.depths),
            "stem": self.stem,
            "base_width": self.base_width,
            "block_options": self.block_options,
            "zero_init_residual": self.zero_init_residual,
            "drop_path_rate": self.drop_path_rate,
        }


# --------------------------------------------------------------------------------------------------
# Registered names: one line each.
# --------------------------------------------------------------------------------------------------

# keras.applications' conventions: biased convolutions, stride in the 1x1 of v1 bottlenecks.
_KERAS_V1 = {"conv_bias": True, "stride_in_1x1": True}
_KERAS_V2 = {"conv_bias": True}
_CIFAR = (32, 32, 3)


def _resnet(name: str, depth: int, block_options=None, preact: bool = False, reference: str = "") -> None:
    block, depths = DEPTHS[depth]
    register_model(name, ResNet, input_shape=(224, 224, 3), num_classes=1000, reference=reference,
                   block=f"preact_{block}" if preact else block, depths=depths, block_options=block_options)


_resnet("resnet18", 18, reference="torchvision")
_resnet("resnet34", 34, reference="torchvision")
_resnet("resnet50", 50, _KERAS_V1, reference="keras.applications")
_resnet("resnet101", 101, _KERAS_V1, reference="keras.applications")
_resnet("resnet152", 152, _KERAS_V1, reference="keras.applications")
# PyTorch's ResNets ("v1.5": stride in the 3x3, no convolution biases), as torchvision, NVIDIA and MLPerf.
_resnet("resnet50_v1_5", 50, reference="torchvision")
_resnet("resnet101_v1_5", 101, reference="torchvision")
_resnet("resnet152_v1_5", 152, reference="torchvision")
_resnet("resnet18v2", 18, preact=True, reference="He et al. 2016")
_resnet("resnet34v2", 34, preact=True, reference="He et al. 2016")
_resnet("resnet50v2", 50, _KERAS_V2, preact=True, reference="keras.applications")
_resnet("resnet101v2", 101, _KERAS_V2, preact=True, reference="keras.applications")
_resnet("resnet152v2", 152, _KERAS_V2, preact=True, reference="keras.applications")
_resnet("resnext50_32x4d", 50, {"groups": 32, "width_per_group": 4}, reference="torchvision")
_resnet("resnext101_32x8d", 101, {"groups": 32, "width_per_group": 8}, reference="torchvision")
for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}_cifar", ResNet, input_shape=_CIFAR, num_classes=10, reference="He et al. 2015",
                   block="basic", depths=cifar_depths(_depth), stem="cifar", base_width=16)
register_model("resnext29_32x4d_cifar", ResNet, input_shape=_CIFAR, num_classes=100, reference="Xie et al. 2017",
               block="bottleneck", depths=(3, 3, 3), stem="cifar", block_options={"groups": 32, "width_per_group": 4})
