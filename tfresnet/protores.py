"""``protores``: a dilated residual encoder over time, and the prototypical network around it.

Inputs are log-mel spectrograms shaped ``(time, features, 1)`` (``tfresnet.audio``): time on axis
1, mel bins on axis 2, one channel. Convolutions have kernels ``(k, 1)``: they look along time
only, so each mel bin keeps its own filters' view and the receptive field grows with the dilations
1, 2, 4.

``PrototypicalNetwork`` (Snell et al. 2017) embeds an N-way K-shot episode, averages the K support
embeddings of each class into a prototype, and classifies queries by a softmax over negative
squared Euclidean distances to the prototypes. ``tfresnet.tasks.FewShotTask`` trains it.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from tfresnet.layers import BN_MOMENTUM, BatchNorm, serializable
from tfresnet.registry import register_model


@serializable
class DilatedResidualBlock(keras.layers.Layer):
    """Conv-BN-ReLU, Conv-BN along time (dilated), plus a 1x1 Conv-BN-ReLU shortcut; add; ReLU.

    The second convolution takes the first one's output (a known tutorial version applies both to
    the block input, which leaves the first convolution without effect on the output).

    Args:
        filters: Output channels.
        kernel_size: Kernel length along time.
        dilation: Dilation along time.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, filters: int, kernel_size: int = 9, dilation: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.dilation = filters, kernel_size, dilation
        n = self.name
        conv = lambda name: keras.layers.Conv2D(  # noqa: E731
            filters, (kernel_size, 1), dilation_rate=(dilation, 1), padding="same", use_bias=False, name=name)
        self.conv1, self.bn1 = conv(f"{n}_conv1"), BatchNorm(momentum=BN_MOMENTUM, name=f"{n}_bn1")
        self.conv2, self.bn2 = conv(f"{n}_conv2"), BatchNorm(momentum=BN_MOMENTUM, name=f"{n}_bn2")
        self.shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{n}_shortcut")
        self.shortcut_bn = BatchNorm(momentum=BN_MOMENTUM, name=f"{n}_shortcut_bn")

    def call(self, x, training=False):
        h = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        h = self.bn2(self.conv2(h), training=training)
        s = tf.nn.relu(self.shortcut_bn(self.shortcut(x), training=training))
        return tf.nn.relu(h + s)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "dilation": self.dilation}


@serializable
class ProtoResEncoder(keras.Model):
    """``protores``: Conv (3, 1), dilated residual blocks, average pooling (2, 1), flatten.

    With ``bins_as_channels`` the mel bins are the input channels of one-dimensional convolutions
    over time (as in TC-ResNet, Choi et al. 2019): the same receptive field in time at a fraction
    of the cost, since no convolution runs once per mel bin. ``pooling="average"`` averages the
    last block over time instead of flattening it: an embedding that does not move with the
    word's onset (for sliding-window detection) and has ``widths[-1]`` dimensions.

    Args:
        widths: Channels of each residual block.
        dilations: Dilation of each block along time.
        kernel_size: Kernel length of the blocks along time.
        stem_filters: Channels of the first (3, 1) convolution; defaults to ``widths[0]``.
        bins_as_channels: Convolve over time with the mel bins as channels.
        pooling: ``flatten`` (average pooling (2, 1), then flatten) or ``average`` (over time and bins).
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(self, widths: Sequence[int] = (24, 32, 48), dilations: Sequence[int] = (1, 2, 4),
                 kernel_size: int = 9, stem_filters: int | None = None, bins_as_channels: bool = False,
                 pooling: str = "flatten", **kwargs):
        super().__init__(**kwargs)
        if len(widths) != len(dilations):
            raise ValueError(f"widths {tuple(widths)} and dilations {tuple(dilations)} differ in length")
        if pooling not in ("flatten", "average"):
            raise ValueError(f"pooling must be 'flatten' or 'average', got {pooling!r}")
        self.widths, self.dilations = tuple(widths), tuple(dilations)
        self.kernel_size, self.stem_filters = kernel_size, stem_filters
        self.bins_as_channels, self.pooling = bins_as_channels, pooling
        self.stem = keras.layers.Conv2D(stem_filters or widths[0], (3, 1), padding="same", name="stem_conv")
        self.blocks = [DilatedResidualBlock(w, kernel_size, d, name=f"block{i + 1}")
                       for i, (w, d) in enumerate(zip(self.widths, self.dilations))]
        self.pool = keras.layers.AveragePooling2D((2, 1), name="pool")
        self.flatten = keras.layers.Flatten(name="embedding")

    def build(self, input_shape):
        # Create every variable by tracing ``call`` on a symbolic input (load_model() calls this too).
        self.compute_output_spec(keras.KerasTensor(tuple(input_shape)))

    def call(self, x, training=False):
        if len(x.shape) != 4:
            raise ValueError(f"{self.name} expects spectrograms shaped (batch, time, features, 1), got {tuple(x.shape)}")
        if self.bins_as_channels:
            x = tf.reshape(x, [-1, x.shape[1], 1, x.shape[2] * x.shape[3]])
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        if self.pooling == "average":
            return tf.reduce_mean(x, axis=[1, 2])
        return self.flatten(self.pool(x))

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dilations": list(self.dilations),
                "kernel_size": self.kernel_size, "stem_filters": self.stem_filters,
                "bins_as_channels": self.bins_as_channels, "pooling": self.pooling}


@serializable
class PrototypicalNetwork(keras.Model):
    """Prototypical network around an encoder.

    ``call(support, query)`` takes an episode, ``support`` shaped ``(N, K, *example)`` and
    ``query`` shaped ``(N, Q, *example)`` (class ``i`` in row ``i``), and returns ``(loss,
    accuracy)`` of classifying the queries.

    Args:
        encoder: Maps a batch of examples to a batch of embedding vectors.
        distance_scale: Multiplies the squared distances before the softmax; None uses
            1 / embedding size. Raw distances grow with the embedding size (thousands here) and
            saturate the softmax from the first episode; the scale is a temperature.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(self, encoder: keras.Model, distance_scale: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.distance_scale = distance_scale

    def logits(self, support, query, training=False):
        """``(N * Q, N)`` negative (scaled) squared distances of each query to each class prototype."""
        n_way, k_shot = tf.shape(support)[0], tf.shape(support)[1]
        example = tf.shape(support)[2:]
        flat = tf.concat([tf.reshape(support, tf.concat([[-1], example], 0)),
                          tf.reshape(query, tf.concat([[-1], example], 0))], 0)
        embedded = tf.cast(self.encoder(flat, training=training), tf.float32)
        dim = tf.shape(embedded)[-1]
        prototypes = tf.reduce_mean(tf.reshape(embedded[: n_way * k_shot], [n_way, k_shot, dim]), axis=1)
        queries = embedded[n_way * k_shot:]
        # |q - p|^2 = |q|^2 - 2 q.p + |p|^2, one matmul instead of an (NQ, N, D) tensor.
        distances = (tf.reduce_sum(queries**2, -1, keepdims=True) - 2 * tf.matmul(queries, prototypes, transpose_b=True)
                     + tf.reduce_sum(prototypes**2, -1)[None, :])
        scale = self.distance_scale or 1.0 / tf.cast(dim, tf.float32)
        return -scale * distances

    def call(self, support, query, training=False):
        logits = self.logits(support, query, training=training)
        labels = episode_labels(tf.shape(support)[0], tf.shape(query)[1])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, accuracy

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "distance_scale": self.distance_scale}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def episode_labels(n_way, n_query) -> tf.Tensor:
    """Labels of the flattened queries: ``[0]*Q + [1]*Q + ...``."""
    return tf.repeat(tf.range(n_way, dtype=tf.int32), n_query)


# One second of 16 kHz audio as 25 ms frames every 10 ms (98 frames) of 40 mel bins.
register_model("protores", ProtoResEncoder, input_shape=(98, 40, 1), num_classes=None, task="fewshot",
               reference="dilated residual encoder, prototypical network (Snell et al. 2017)")
