"""The ResNet family as ``keras.Model`` subclasses, and the registry that names them.

Depth lives in one table (``DEPTHS``), widths are derived (``base_width * 2**stage``), and every
named model is one line of ``_register``. ``create_model(name, ...)`` reads the registry.

Every model returns logits: the softmax lives in the loss (``from_logits=True``), which computes
``log_softmax`` directly and so stays finite when a probability underflows to 0, and keeps the
logits in float32 under mixed precision.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from tfresnet import layers as L

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


class ImageClassifier(keras.Model):
    """Base of the image models: input checks and the float32 classifier head."""

    def __init__(self, num_classes: int, sync_batchnorm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.sync_batchnorm = sync_batchnorm
        self._in_channels: int | None = None

    def build(self, input_shape):
        # Subclassed models create their variables by tracing ``call`` once on a symbolic input;
        # load_model() calls this too, so a reloaded model is complete before weights are set.
        self._in_channels = input_shape[-1]
        self.compute_output_spec(keras.KerasTensor(tuple(input_shape)))
        # Only now do all BatchNorm layers exist (blocks make their shortcut's in build()).
        # Synchronised BN computes batch statistics over all replicas of a tf.distribute strategy,
        # so a step equals the single-device step on the same global batch.
        for layer in self._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = self.sync_batchnorm

    def check_inputs(self, x) -> None:
        """Rejects inputs of the wrong rank, dtype, or channel count, naming shapes."""
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ValueError(
                f"{self.name} expects images shaped (batch, height, width, channels), got shape {shape}"
            )
        dtype = keras.backend.standardize_dtype(x.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"{self.name} expects floating-point images, got dtype {dtype} with shape {shape}; "
                "cast and scale them first (tfresnet.data does)"
            )
        if self._in_channels is None:
            self._in_channels = shape[-1]
        elif shape[-1] != self._in_channels:
            raise ValueError(
                f"{self.name} was built for {self._in_channels} input channels (shape "
                f"(batch, h, w, {self._in_channels})), got shape {shape}"
            )

    def make_head(self) -> keras.layers.Layer | None:
        # float32 logits under mixed precision: a float16 softmax/cross-entropy overflows.
        if not self.num_classes:
            return None
        low = keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16")
        return keras.layers.Dense(self.num_classes, dtype="float32" if low else None, name="predictions")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "sync_batchnorm": self.sync_batchnorm}


@L.serializable
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
        **kwargs,
    ):
        super().__init__(num_classes, **kwargs)
        if block not in L.BLOCKS:
            raise ValueError(f"unknown block {block!r}; expected one of {sorted(L.BLOCKS)}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"unknown stem {stem!r}; expected 'imagenet' or 'cifar'")
        self.block = block
        self.depths = tuple(depths)
        self.stem = stem
        self.base_width = base_width
        self.block_options = dict(block_options or {})
        self.zero_init_residual = zero_init_residual

        block_cls = L.BLOCKS[block]
        self.preact = issubclass(block_cls, L._PreActivationBlock)
        bias = self.block_options.get("conv_bias", False)
        if stem == "imagenet":
            self.stem_layers = L.conv(base_width, 7, "conv1_conv", 2, bias)
            if not self.preact:
                self.stem_layers += [L.batch_norm("conv1_bn"), keras.layers.ReLU(name="conv1_relu")]
            self.stem_layers += [
                keras.layers.ZeroPadding2D(1, name="pool1_pad"),
                keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool"),
            ]
        else:
            self.stem_layers = L.conv(base_width, 3, "conv1_conv", 1, bias)
            if not self.preact:
                self.stem_layers += [L.batch_norm("conv1_bn"), keras.layers.ReLU(name="conv1_relu")]

        # One stride rule: each of the len(depths) - 1 stage transitions halves the feature map,
        # in the first unit after it (v1) or the last unit before it (keras.applications v2).
        last = len(self.depths) - 1
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
                        name=f"conv{s + 2}_block{u + 1}",
                        **self.block_options,
                    )
                )
            self.stages.append(units)
        self.post = [L.batch_norm("post_bn"), keras.layers.ReLU(name="post_relu")] if self.preact else []
        self.pool = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        self.head = self.make_head()

    def extract_features(self, x, training: bool = False) -> dict[str, tf.Tensor]:
        """Feature maps of the stem and every stage, and the pooled features.

        Args:
            x: Float images ``(batch, height, width, channels)``.
            training: BatchNorm mode.

        Returns:
            ``{"stem": ..., "conv2": ..., ..., "pooled": (batch, channels)}``.
        """
        self.check_inputs(x)
        feats = {"stem": L.apply(self.stem_layers, x, training)}
        x = feats["stem"]
        for s, units in enumerate(self.stages):
            for unit in units:
                x = unit(x, training=training)
            feats[f"conv{s + 2}"] = x
        feats["pooled"] = self.pool(L.apply(self.post, x, training))
        return feats

    def call(self, x, training=False):
        pooled = self.extract_features(x, training=training)["pooled"]
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
        }


@L.serializable
class MnistResNet(ImageClassifier):
    """The small pre-activation ResNet of the TF2 MNIST tutorial.

    Conv(8, 3x3, relu) -> ResnetLayer(8, (16, 16)) -> MaxPool -> ResnetLayer(16, (32, 32)) ->
    MaxPool -> ResnetLayer(32, (64, 64)) -> Flatten -> Dense(128, relu) -> Dense(num_classes).
    577,066 parameters on 28x28x1 inputs.

    Args:
        num_classes: Number of classes.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(self, num_classes: int = 10, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.conv1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem_conv")
        self.stage1 = L.ResnetLayer(8, (16, 16), 3, name="stage1")
        self.pool1 = keras.layers.MaxPooling2D(2, name="stage1_pool")
        self.stage2 = L.ResnetLayer(16, (32, 32), 3, name="stage2")
        self.pool2 = keras.layers.MaxPooling2D(2, name="stage2_pool")
        self.stage3 = L.ResnetLayer(32, (64, 64), 3, name="stage3")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(128, activation="relu", name="fc")
        self.head = self.make_head()

    def call(self, x, training=False):
        self.check_inputs(x)
        x = self.pool1(self.stage1(self.conv1(x), training=training))
        x = self.pool2(self.stage2(x, training=training))
        x = self.fc(self.flatten(self.stage3(x, training=training)))
        return self.head(x)


@L.serializable
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
        **kwargs,
    ):
        super().__init__(num_classes, **kwargs)
        self.widths = tuple(widths)
        self.dense_units = dense_units
        self.stem = [
            keras.layers.Conv2D(self.widths[0], 3, strides=2, padding="same", name="stem_conv"),
            L.batch_norm("stem_bn"),
            keras.layers.ReLU(name="stem_relu"),
        ]
        self.stages = [
            L.ResnetLayer(f_in, (f, f), 3, strides=2, name=f"stage{i + 1}")
            for i, (f_in, f) in enumerate(zip(self.widths[:1] + self.widths, self.widths))
        ]
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(dense_units, activation="relu", name="fc")
        self.head = self.make_head()

    def call(self, x, training=False):
        self.check_inputs(x)
        x = L.apply(self.stem, x, training)
        for stage in self.stages:
            x = stage(x, training=training)
        return self.head(self.fc(self.flatten(x)))

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dense_units": self.dense_units}


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    Attributes:
        cls: The model class.
        kwargs: Fixed constructor arguments.
        input_shape: Default input shape (height, width, channels), used to build the model.
        reference: Where its parameter count / weights come from.
    """

    cls: type[keras.Model]
    kwargs: Mapping[str, Any]
    input_shape: tuple[int, int, int]
    num_classes: int
    reference: str = ""


_REGISTRY: dict[str, ModelSpec] = {}

# keras.applications' conventions: biased convolutions, stride in the 1x1 of v1 bottlenecks.
_KERAS_V1 = {"conv_bias": True, "stride_in_1x1": True}
_KERAS_V2 = {"conv_bias": True}
_IMAGENET = (224, 224, 3)
_CIFAR = (32, 32, 3)


def _register(name: str, cls: type[keras.Model], input_shape, num_classes, reference="", **kwargs) -> None:
    _REGISTRY[name] = ModelSpec(cls, kwargs, input_shape, num_classes, reference)


def _resnet(name, depth, block_options=None, preact=False, **kw):
    block, depths = DEPTHS[depth]
    block = f"preact_{block}" if preact else block
    _register(name, ResNet, kw.pop("input_shape", _IMAGENET), kw.pop("num_classes", 1000),
              kw.pop("reference", ""), block=block, depths=depths, block_options=block_options, **kw)


_register("mnist_resnet", MnistResNet, (28, 28, 1), 10, "TF2 tutorial")
_register("preact_resnet22", PreActResNet22, (256, 256, 3), 4)
_resnet("resnet18", 18, reference="torchvision")
_resnet("resnet34", 34, reference="torchvision")
_resnet("resnet50", 50, _KERAS_V1, reference="keras.applications")
_resnet("resnet101", 101, _KERAS_V1, reference="keras.applications")
_resnet("resnet152", 152, _KERAS_V1, reference="keras.applications")
_resnet("resnet18v2", 18, preact=True, reference="He et al. 2016")
_resnet("resnet34v2", 34, preact=True, reference="He et al. 2016")
_resnet("resnet50v2", 50, _KERAS_V2, preact=True, reference="keras.applications")
_resnet("resnet101v2", 101, _KERAS_V2, preact=True, reference="keras.applications")
_resnet("resnet152v2", 152, _KERAS_V2, preact=True, reference="keras.applications")
_resnet("resnext50_32x4d", 50, {"groups": 32, "width_per_group": 4}, reference="torchvision")
_resnet("resnext101_32x8d", 101, {"groups": 32, "width_per_group": 8}, reference="torchvision")
for _depth in (20, 32, 44, 56, 110):
    _register(f"resnet{_depth}_cifar", ResNet, _CIFAR, 10, "He et al. 2015", block="basic",
              depths=cifar_depths(_depth), stem="cifar", base_width=16)
_register("resnext29_32x4d_cifar", ResNet, _CIFAR, 100, "Xie et al. 2017", block="bottleneck",
          depths=(3, 3, 3), stem="cifar", block_options={"groups": 32, "width_per_group": 4})

# The models whose layers match keras.applications, for pretrained="imagenet".
KERAS_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50v2": "ResNet50V2",
    "resnet101v2": "ResNet101V2",
    "resnet152v2": "ResNet152V2",
}


def list_models() -> list[str]:
    """Names accepted by ``create_model``, sorted."""
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; unknown names raise ``ValueError`` with close matches."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (tfresnet.list_models() lists all {len(_REGISTRY)})")
    return _REGISTRY[name]


def _options_of(cls: type) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if klass in (keras.Model, keras.layers.Layer) or not issubclass(klass, keras.Model):
            continue
        names |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")}
    return names | {"name", "dtype"}


def create_model(
    name: str,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    pretrained: str | None = None,
    **options: Any,
) -> keras.Model:
    """Builds a registered model.

    Args:
        name: A name from ``list_models()``.
        num_classes: Classifier outputs; defaults to the model's usual task (1000 for ImageNet
            models, 10 for CIFAR and MNIST). 0 makes ResNets return pooled features.
        input_shape: ``(height, width, channels)`` to build the model on; defaults to the
            model's usual input. Any size works for the convolutional models; the dense heads of
            ``mnist_resnet``/``preact_resnet22`` fix it.
        pretrained: ``"imagenet"`` loads keras.applications' ImageNet weights (models listed in
            ``KERAS_APPLICATIONS``; needs the network or Keras' cache).
        **options: Constructor options of the model class (e.g. ``zero_init_residual=True``,
            ``stem="cifar"``, ``block_options={...}``).

    Returns:
        A built ``keras.Model`` that maps float images to logits.

    Raises:
        ValueError: unknown name or option, or ``pretrained`` not available for this model.
    """
    spec = model_spec(name)
    valid = _options_of(spec.cls) - set(spec.kwargs) - {"num_classes"}
    for option in options:
        if option not in valid:
            close = difflib.get_close_matches(option, valid, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown option {option!r} for model {name!r}{hint} (valid: {', '.join(sorted(valid))})")
    num_classes = spec.num_classes if num_classes is None else num_classes
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    input_shape = tuple(input_shape or spec.input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    model = spec.cls(num_classes=num_classes, **{"name": name, **spec.kwargs, **options})
    model.build((None, *input_shape))
    if pretrained is not None:
        from tfresnet import port  # noqa: PLC0415 - keeps keras.applications off the import path

        port.load_pretrained(model, name, pretrained)
    return model
