"""The TF2 tutorial's pre-activation ResNet: ``ResidualUnit``, ``ResnetLayer`` and the nets built on them.

``ResidualUnit`` is BN-ReLU-Conv twice plus a shortcut; ``ResnetLayer`` chains units with
``zip([filter_in] + filters, filters)``, so each unit takes the previous one's width. On them:
``mnist_resnet`` (the tutorial's MNIST network) and ``preact_resnet22`` (256x256 images).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import tensorflow as tf

from tfresnet.models.classifier import ImageClassifier
from tfresnet.models.layers import BN_MOMENTUM, BatchNorm, apply, batch_norm, serializable
from tfresnet.models.registry import register_model


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


@serializable
class MnistResNet(ImageClassifier):
    """The small pre-activation ResNet of the TF2 MNIST tutorial.

    Conv(8, 3x3, relu) -> ResnetLayer(8, (16, 16)) -> MaxPool -> ResnetLayer(16, (32, 32)) ->
    MaxPool -> ResnetLayer(32, (64, 64)) -> Flatten -> Dense(128, relu) -> Dense(num_classes).
    577,066 parameters on 28x28x1 inputs.

    Args:
        num_classes: Number of classes.
        **kwargs: ``keras.Model`` arguments.
    """

    reduction = 4  # two 2x2 max-pools

    def __init__(self, num_classes: int = 10, **kwargs: Any):
        super().__init__(num_classes, **kwargs)
        self.conv1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem_conv")
        self.stage1 = ResnetLayer(8, (16, 16), 3, name="stage1")
        self.pool1 = keras.layers.MaxPooling2D(2, name="stage1_pool")
        self.stage2 = ResnetLayer(16, (32, 32), 3, name="stage2")
        self.pool2 = keras.layers.MaxPooling2D(2, name="stage2_pool")
        self.stage3 = ResnetLayer(32, (64, 64), 3, name="stage3")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(128, activation="relu", name="fc")
        self.head = self.make_head()

    def conv_features(self, x, training=False):
        x = self.model_inputs(x)
        x = self.pool1(self.stage1(self.conv1(x), training=training))
        x = self.pool2(self.stage2(x, training=training))
        return self.stage3(x, training=training)

    def classify_features(self, features, training=False):
        return self.head(self.fc(self.flatten(features)))


@serializable
class PreActResNet22(ImageClassifier):
    """22-layer pre-activation ResNet for 256x256 images (e.g. a 4-class folder dataset).

    Stem Conv(16, 3x3, stride 2)-BN-ReLU, then one ``ResnetLayer`` per width, each a strided
    projection unit and an identity unit, then Flatten-Dense(128)-Dense(num_classes).

    Args:
        num_classes: Number of classes.
        widths: Width of each stage.
        dense_units: Width of the hidden dense layer.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(
        self,
        num_classes: int = 4,
        widths: Sequence[int] = (16, 32, 64, 128),
        dense_units: int = 128,
        **kwargs: Any,
    ):
        super().__init__(num_classes, **kwargs)
        self.widths = tuple(widths)
        self.dense_units = dense_units
        self.stem = [
            keras.layers.Conv2D(self.widths[0], 3, strides=2, padding="same", name="stem_conv"),
            batch_norm("stem_bn"),
            keras.layers.ReLU(name="stem_relu"),
        ]
        self.stages = [
            ResnetLayer(f_in, (f, f), 3, strides=2, name=f"stage{i + 1}")
            for i, (f_in, f) in enumerate(zip(self.widths[:1] + self.widths, self.widths))
        ]
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(dense_units, activation="relu", name="fc")
        self.head = self.make_head()

    @property
    def reduction(self) -> int:
        """The total stride: 2 in the stem, 2 in every stage."""
        return 2 ** (1 + len(self.widths))

    def conv_features(self, x, training=False):
        x = apply(self.stem, self.model_inputs(x), training)
        for stage in self.stages:
            x = stage(x, training=training)
        return x

    def classify_features(self, features, training=False):
        return self.head(self.fc(self.flatten(features)))

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dense_units": self.dense_units}


register_model("mnist_resnet", MnistResNet, input_shape=(28, 28, 1), num_classes=10, reference="TF2 tutorial")
register_model("preact_resnet22", PreActResNet22, input_shape=(256, 256, 3), num_classes=4)
