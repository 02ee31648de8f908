"""``ImageClassifier``: the base of every image model (input checks, float32 classifier head)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from tfresnet.weights import classes
from tfresnet.weights.preprocessing import Preprocessing


class ImageClassifier(keras.Model):
    """Base of the image models: input checks, the float32 classifier head, the preprocessing record.

    Args:
        num_classes: Classifier outputs; 0 returns the pooled features instead of logits.
        sync_batchnorm: BatchNorm statistics over all replicas of a ``tf.distribute`` strategy.
        preprocessing: What the weights expect of their inputs (a ``Preprocessing`` or its
            ``to_dict()``), set by ``create_model(..., pretrained=...)``; None for a model trained
            from scratch, whose data pipeline's own normalisation applies. It is saved in the
            model's config, so an exported or reloaded model still knows it.
        class_names: The name of each class, in logit order (a folder's class folders, a dataset's
            labels, ImageNet's 1000 for its weights); saved in the config, so ``model.keras``
            carries them. None: ``label_names`` numbers them.
        **kwargs: ``keras.Model`` arguments (``name``, ``dtype``).
    """

    def __init__(self, num_classes: int, sync_batchnorm: bool = False,
                 preprocessing: Preprocessing | Mapping[str, Any] | None = None,
                 class_names: Sequence[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.sync_batchnorm = sync_batchnorm
        self.preprocessing = None if preprocessing is None else Preprocessing.from_dict(preprocessing)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
        self.class_names = None if class_names is None else tuple(str(name) for name in class_names)
        self._in_channels: int | None = None

    @property
    def label_names(self) -> tuple[str, ...]:
        """The name of each logit: ``class_names``, or ``class_0 ... class_{N-1}`` for a model saved
        without them."""
        return self.class_names or classes.numbered(self.num_classes)

    # How many times smaller the last feature map is than the input (the total stride); an input
    # smaller than that would be reduced below one pixel. Each model family sets its own.
    reduction: int = 1

    @property
    def feature_offset(self) -> float:
        """Where the last feature map's first cell is centred, in input pixels: cell ``j`` sits at
        pixel ``j * reduction + feature_offset`` (Grad-CAM lays its map back onto the image so).
        Halfway into the stride here, as 2x2 poolings place it; padded convolutions differ."""
        return (self.reduction - 1) / 2

    def build(self, input_shape):
        # Subclassed models create their variables by tracing ``call`` once on a symbolic input;
        # load_model() calls this too, so a reloaded model is complete before weights are set.
        self.check_input_size(input_shape)
        self._in_channels = input_shape[-1]
        self.compute_output_spec(keras.KerasTensor(tuple(input_shape)))
        # Only now do all BatchNorm layers exist (blocks make their shortcut's in build()).
        # Synchronised BN computes batch statistics over all replicas of a tf.distribute strategy,
        # so a step equals the single-device step on the same global batch.
        for layer in self._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = self.sync_batchnorm

    def model_inputs(self, x):
        """Checks ``x`` and returns what the first layer gets.

        uint8 images (what the training pipeline hands the step: a quarter of float32's bytes on
        the host-to-device copy) are normalised here by the preprocessing record, on the device and
        inside the compiled step; floating-point images are taken as already normalised.

        Raises:
            ValueError: wrong rank or channel count (the shapes named).
            TypeError: neither float nor uint8, or uint8 without a preprocessing record.
        """
        self.check_inputs(x)
        if keras.backend.standardize_dtype(x.dtype) == "uint8":
            return self.preprocessing.normalize(x)
        return x

    @property
    def takes_uint8(self) -> bool:
        """Whether the model normalises uint8 images itself (it has a preprocessing record)."""
        return self.preprocessing is not None

    def check_input_size(self, input_shape) -> None:
        """Refuses images smaller than the model's total stride (``reduction``), naming both.

        Raises:
            ValueError: a height or width below ``reduction`` (e.g. ResNet-50 at 7 pixels).
        """
        sides = [d for d in tuple(input_shape)[1:3] if d is not None]
        if len(tuple(input_shape)) == 4 and sides and min(sides) < self.reduction:
            raise ValueError(
                f"{self.name} needs images of at least {self.reduction}x{self.reduction} pixels (it downsamples "
                f"{self.reduction}x), got {'x'.join(map(str, sides))}; use a larger --image_size or a model for "
                "small images (resnet20_cifar, mnist_resnet)")

    def check_inputs(self, x) -> None:
        """Rejects inputs of the wrong rank, dtype, or channel count, naming shapes."""
        shape = tuple(x.shape)
        if len(shape) != 4:
            raise ValueError(
                f"{self.name} expects images shaped (batch, height, width, channels), got shape {shape}"
            )
        dtype = keras.backend.standardize_dtype(x.dtype)
        if dtype == "uint8" and self.preprocessing is None:
            raise TypeError(
                f"{self.name} has no preprocessing record to normalise uint8 images (shape {shape}); build it "
                "with preprocessing=... (tfresnet.data's recipe.preprocessing) or feed normalised floats"
            )
        if "float" not in dtype and dtype != "uint8":
            raise TypeError(
                f"{self.name} expects floating-point (normalised) or uint8 images, got dtype {dtype} with shape "
                f"{shape}; cast and scale them first (tfresnet.data does)"
            )
        if self._in_channels is None:
            self._in_channels = shape[-1]
        elif shape[-1] != self._in_channels:
            raise ValueError(
                f"{self.name} was built for {self._in_channels} input channels (shape "
                f"(batch, h, w, {self._in_channels})), got shape {shape}"
            )

    # -- the two halves of ``call``, split at the last convolutional stage (Grad-CAM's cut) ------------

    def conv_features(self, x, training=False):
        """The last convolutional stage's feature map ``(batch, height, width, channels)`` of images
        ``x`` (what ``call`` takes); ``classify_features`` of it is ``call(x)``."""
        raise NotImplementedError(f"{type(self).__name__} does not split its call for Grad-CAM")

    def classify_features(self, features, training=False):
        """The logits (or, without a head, the pooled features) of ``conv_features``' map."""
        raise NotImplementedError(f"{type(self).__name__} does not split its call for Grad-CAM")

    def call(self, x, training=False):
        return self.classify_features(self.conv_features(x, training=training), training=training)

    def make_head(self) -> keras.layers.Layer | None:
        # float32 logits under mixed precision: a float16 softmax/cross-entropy overflows.
        if not self.num_classes:
            return None
        low = keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16")
        return keras.layers.Dense(self.num_classes, dtype="float32" if low else None, name="predictions")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "sync_batchnorm": self.sync_batchnorm,
                "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
                "class_names": None if self.class_names is None else list(self.class_names)}
