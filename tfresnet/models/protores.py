"""``protores``: a dilated residual encoder over time, and the prototypical network around it.

Inputs are log-mel spectrograms shaped ``(time, features, 1)`` (``tfresnet.kws.audio``): time on axis
1, mel bins on axis 2, one channel. Convolutions have kernels ``(k, 1)``: they look along time
only, so each mel bin keeps its own filters' view and the receptive field grows with the dilations
1, 2, 4.

``PrototypicalNetwork`` (Snell et al. 2017) embeds an N-way K-shot episode, averages the K support
embeddings of each class into a prototype, and classifies queries by a softmax over negative
squared Euclidean distances to the prototypes (or, with ``metric="cosine"``, over their cosine
similarities). With ``classes`` it also holds a cosine classifier over the training words
(``word_loss``: CosFace, Wang et al. 2018), the other way ``tfresnet.tasks.FewShotTask`` trains
the encoder; prototypes still classify new words.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfresnet.config import METRICS
from tfresnet.models.layers import BN_MOMENTUM, BatchNorm, serializable
from tfresnet.models.registry import register_model


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

    def __init__(self, filters: int, kernel_size: int = 9, dilation: int = 1, **kwargs: Any):
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
        center_bins: Subtract each mel bin's mean over the clip's frames first (cepstral mean
            normalisation): a voice's or a microphone's fixed spectral colouring is a constant per
            bin over time, and it goes, while the word's changes over time stay.
        cepstra: Keep only the first ``cepstra`` coefficients of the DCT over the mel bins of each
            frame (MFCCs) and read them instead of the bins. The low coefficients are the spectral
            envelope, which says what is spoken; the higher ones hold the ripple of the voice's
            harmonics, which says how high it is pitched. None: the mel bins as they are.
        frequency_filters: A 3x3 Conv-BN-ReLU over (time, mel bins) with this many filters first
            (0: none). Its filters slide along the mel axis, so a formant pattern is recognised
            wherever a voice puts it; with ``bins_as_channels`` the bins times these filters then
            become the channels of the convolutions over time.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(self, widths: Sequence[int] = (24, 32, 48), dilations: Sequence[int] = (1, 2, 4),
                 kernel_size: int = 9, stem_filters: int | None = None, bins_as_channels: bool = False,
                 pooling: str = "flatten", center_bins: bool = False, cepstra: int | None = None,
                 frequency_filters: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        if len(widths) != len(dilations):
            raise ValueError(f"widths {tuple(widths)} and dilations {tuple(dilations)} differ in length")
        if pooling not in ("flatten", "average"):
            raise ValueError(f"pooling must be 'flatten' or 'average', got {pooling!r}")
        self.widths, self.dilations = tuple(widths), tuple(dilations)
        self.kernel_size, self.stem_filters = kernel_size, stem_filters
        self.bins_as_channels, self.pooling, self.center_bins = bins_as_channels, pooling, center_bins
        self.cepstra, self.frequency_filters = cepstra, frequency_filters
        if frequency_filters:
            self.frequency_conv = keras.layers.Conv2D(frequency_filters, 3, padding="same", use_bias=False,
                                                      name="frequency_conv")
            self.frequency_bn = BatchNorm(momentum=BN_MOMENTUM, name="frequency_bn")
        if cepstra is not None and cepstra <= 0:
            raise ValueError(f"cepstra must be a positive number of coefficients, got {cepstra}")
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
        if self.center_bins:
            x = x - tf.reduce_mean(x, axis=1, keepdims=True)
        if self.cepstra:
            if self.cepstra > x.shape[2]:
                raise ValueError(f"{self.name}: cepstra={self.cepstra} is more than the {x.shape[2]} mel bins")
            x = tf.einsum("btfc,fk->btkc", x, tf.constant(dct_matrix(x.shape[2], self.cepstra), x.dtype))
        if self.frequency_filters:
            x = tf.nn.relu(self.frequency_bn(self.frequency_conv(x), training=training))
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
                "bins_as_channels": self.bins_as_channels, "pooling": self.pooling, "center_bins": self.center_bins,
                "cepstra": self.cepstra, "frequency_filters": self.frequency_filters}


def dct_matrix(bins: int, coefficients: int) -> np.ndarray:
    """``(bins, coefficients)``: the first columns of the orthonormal DCT-II over ``bins`` values
    (``x @ dct_matrix`` is ``scipy.fft.dct(x, norm="ortho")[..., :coefficients]``)."""
    n = np.arange(bins)
    basis = np.sqrt(2 / bins) * np.cos(np.pi * (n[:, None] + 0.5) * np.arange(coefficients)[None, :] / bins)
    basis[:, 0] /= np.sqrt(2)
    return basis.astype(np.float32)



@serializable
class PrototypicalNetwork(keras.Model):
    """Prototypical network around an encoder, optionally with a cosine classifier over known words.

    ``call(support, query)`` takes an episode, ``support`` shaped ``(N, K, *example)`` and
    ``query`` shaped ``(N, Q, *example)`` (class ``i`` in row ``i``), and returns ``(loss,
    accuracy)`` of classifying the queries.

    Args:
        encoder: Maps a batch of examples to a batch of embedding vectors.
        distance_scale: Multiplies the squared distances (``euclidean``) before the softmax; None
            uses 1 / embedding size. Raw distances grow with the embedding size (thousands here)
            and saturate the softmax from the first episode; the scale is a temperature.
        metric: ``euclidean``: squared distances of the embeddings to the prototypes (Snell et
            al. 2017); ``cosine``: cosine similarity of the unit-length embeddings to the
            prototypes (means of unit embeddings), times ``logit_scale``: how
            ``tfresnet.kws.spotting`` scores a clip against an enrolled keyword.
        classes: Classes of the cosine classifier (``word_loss``): the training words, or the
            pseudo-words of ``tfresnet.kws.augment.WordSplicer``; None: none.
        logit_scale: The classifier's (and the cosine episodes') temperature ``s``.
        margin: CosFace's additive margin ``m``: the true word's cosine counts ``m`` less in
            training, so words must be that much apart, which leaves room for new ones.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(self, encoder: keras.Model, distance_scale: float | None = None, metric: str = "euclidean",
                 classes: int | None = None, logit_scale: float = 16.0, margin: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.encoder = encoder
        self.distance_scale, self.metric = distance_scale, metric
        self.classes, self.logit_scale, self.margin = classes, logit_scale, margin
        self.word_head = keras.layers.Dense(classes, use_bias=False, name="word_head") if classes else None

    def build_word_head(self, example_shape: Sequence[int]) -> None:
        """Creates the word classifier's weights (if any) for examples shaped ``example_shape``,
        e.g. before an optimizer or a checkpoint needs them."""
        if self.word_head is not None and not self.word_head.built:
            embedding = self.encoder.compute_output_spec(keras.KerasTensor((1, *example_shape)))
            self.word_head.build((None, embedding.shape[-1]))

    def embed(self, x, training=False):
        """Float32 embeddings of a batch (unit length with ``metric="cosine"``)."""
        embedded = tf.cast(self.encoder(x, training=training), tf.float32)
        return tf.math.l2_normalize(embedded, -1) if self.metric == "cosine" else embedded

    def logits(self, support, query, training=False):
        """``(N * Q, N)`` logits of each query for each class prototype (the mean support embedding):
        negative scaled squared distances, or with ``metric="cosine"`` ``logit_scale`` times the
        cosine similarity (``tfresnet.kws.spotting``'s score)."""
        n_way, k_shot = tf.shape(support)[0], tf.shape(support)[1]
        example = tf.shape(support)[2:]
        flat = tf.concat([tf.reshape(support, tf.concat([[-1], example], 0)),
                          tf.reshape(query, tf.concat([[-1], example], 0))], 0)
        embedded = self.embed(flat, training=training)
        dim = tf.shape(embedded)[-1]
        prototypes = tf.reduce_mean(tf.reshape(embedded[: n_way * k_shot], [n_way, k_shot, dim]), axis=1)
        queries = embedded[n_way * k_shot:]
        if self.metric == "cosine":
            return self.logit_scale * tf.matmul(queries, tf.math.l2_normalize(prototypes, -1), transpose_b=True)
        # |q - p|^2 = |q|^2 - 2 q.p + |p|^2, one matmul instead of an (NQ, N, D) tensor.
        distances = (tf.reduce_sum(queries**2, -1, keepdims=True) - 2 * tf.matmul(queries, prototypes, transpose_b=True)
                     + tf.reduce_sum(prototypes**2, -1)[None, :])
        return -(self.distance_scale or 1.0 / tf.cast(dim, tf.float32)) * distances

    def call(self, support, query, training=False):
        logits = self.logits(support, query, training=training)
        labels = episode_labels(tf.shape(support)[0], tf.shape(query)[1])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, accuracy

    def word_loss(self, x, labels, training=False):
        """Per-example cosine-softmax losses over the ``classes`` training words, and 1.0 where the
        nearest word (largest cosine) is right: ``s * (cos - m [true word])`` into cross-entropy."""
        if self.word_head is None:
            raise ValueError(f"{self.name} has no word classifier: create it with classes=<training words>")
        if not self.word_head.built:
            raise ValueError(f"{self.name}'s word classifier has no weights yet: call build_word_head(example_shape)")
        embedded = tf.math.l2_normalize(tf.cast(self.encoder(x, training=training), tf.float32), -1)
        cosines = tf.matmul(embedded, tf.math.l2_normalize(tf.cast(self.word_head.kernel, tf.float32), 0))
        labels = tf.cast(labels, tf.int32)
        # A label outside the head makes a NaN loss: say so instead (eagerly, or in a graph; XLA drops
        # the check, and the engine builds the head from the labels it trains on).
        message = f"{self.name}: a word label is outside the {self.classes} classes of the word classifier"
        if tf.executing_eagerly():
            low, high = (int(f(labels)) for f in (tf.reduce_min, tf.reduce_max)) if labels.shape.num_elements() \
                else (0, 0)
            if low < 0 or high >= self.classes:
                raise ValueError(f"{message} (labels {low}..{high})")
        else:
            with tf.control_dependencies([tf.debugging.assert_less(labels, self.classes, message=message),
                                          tf.debugging.assert_non_negative(labels, message=message)]):
                labels = tf.identity(labels)
        logits = self.logit_scale * (cosines - self.margin * tf.one_hot(labels, self.classes))
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        return loss, tf.cast(tf.equal(tf.argmax(cosines, -1, output_type=tf.int32), labels), tf.float32)

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder),
                "distance_scale": self.distance_scale, "metric": self.metric, "classes": self.classes,
                "logit_scale": self.logit_scale, "margin": self.margin}

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
