"""Few-shot keyword spotting: a dilated residual encoder over time and a prototypical network.

Inputs are log-mel spectrograms shaped ``(time, features, 1)``: time on axis 1, mel bins on axis
2, one channel. Convolutions have kernels ``(k, 1)``: they look along time only, so each mel bin
keeps its own filters' view and the receptive field grows with the dilations 1, 2, 4.

``PrototypicalNetwork`` (Snell et al. 2017) embeds an N-way K-shot episode, averages the K support
embeddings of each class into a prototype, and classifies queries by a softmax over negative
squared Euclidean distances to the prototypes.
"""

from __future__ import annotations

import itertools
import math
import pathlib
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfresnet.layers import BN_MOMENTUM, BatchNorm, serializable

SAMPLE_RATE = 16_000


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


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

    Args:
        widths: Channels of each residual block.
        dilations: Dilation of each block along time.
        kernel_size: Kernel length of the blocks along time.
        stem_filters: Channels of the first (3, 1) convolution; defaults to ``widths[0]``.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(self, widths: Sequence[int] = (24, 32, 48), dilations: Sequence[int] = (1, 2, 4),
                 kernel_size: int = 9, stem_filters: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if len(widths) != len(dilations):
            raise ValueError(f"widths {tuple(widths)} and dilations {tuple(dilations)} differ in length")
        self.widths, self.dilations = tuple(widths), tuple(dilations)
        self.kernel_size, self.stem_filters = kernel_size, stem_filters
        self.stem = keras.layers.Conv2D(stem_filters or widths[0], (3, 1), padding="same", name="stem_conv")
        self.blocks = [DilatedResidualBlock(w, kernel_size, d, name=f"block{i + 1}")
                       for i, (w, d) in enumerate(zip(self.widths, self.dilations))]
        self.pool = keras.layers.AveragePooling2D((2, 1), name="pool")
        self.flatten = keras.layers.Flatten(name="embedding")

    def call(self, x, training=False):
        if len(x.shape) != 4:
            raise ValueError(f"{self.name} expects spectrograms shaped (batch, time, features, 1), got {tuple(x.shape)}")
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.flatten(self.pool(x))

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dilations": list(self.dilations),
                "kernel_size": self.kernel_size, "stem_filters": self.stem_filters}


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


def make_episode_train_step(net: PrototypicalNetwork, optimizer: keras.optimizers.Optimizer,
                            metrics: dict[str, keras.metrics.Metric], jit_compile: bool = False):
    """``train_step(support, query)``: one episode under ``tf.GradientTape``; updates metric objects.

    Returns:
        A ``tf.function`` (XLA-compiled when ``jit_compile``) returning the episode's loss.
    """

    @tf.function(jit_compile=jit_compile)
    def train_step(support, query):
        with tf.GradientTape() as tape:
            loss, accuracy = net(support, query, training=True)
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        metrics["loss"].update_state(loss)
        metrics["accuracy"].update_state(accuracy)
        return loss

    return train_step


def evaluate_episodes(net: PrototypicalNetwork, episodes: tf.data.Dataset) -> float:
    """Mean query accuracy of ``net`` (inference mode) over ``episodes``."""
    step = tf.function(lambda s, q: net(s, q, training=False)[1])
    return float(np.mean([step(s, q).numpy() for s, q in episodes]))


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def log_mel(waveform: tf.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 40,
            frame_ms: float = 25.0, step_ms: float = 10.0) -> tf.Tensor:
    """Log-mel spectrogram ``(frames, num_mel_bins, 1)`` of a float waveform in [-1, 1]."""
    frame, step = int(sample_rate * frame_ms / 1000), int(sample_rate * step_ms / 1000)
    fft = 2 ** int(np.ceil(np.log2(frame)))
    stft = tf.signal.stft(tf.cast(waveform, tf.float32), frame, step, fft)
    mel = tf.tensordot(tf.abs(stft) ** 2, tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins, fft // 2 + 1, sample_rate, 20.0, sample_rate / 2 - 200), 1)
    return tf.math.log(mel + 1e-6)[..., None]


def fix_length(waveform: tf.Tensor, samples: int) -> tf.Tensor:
    """Zero-pads or trims ``waveform`` to ``samples``."""
    waveform = waveform[:samples]
    return tf.pad(waveform, [[0, samples - tf.shape(waveform)[0]]])


def features_of(waveforms, samples: int = SAMPLE_RATE, num_mel_bins: int = 40, batch: int = 256) -> np.ndarray:
    """Standardised log-mel features of a list/array of waveforms, computed in a ``tf.data`` map."""
    ds = tf.data.Dataset.from_generator(lambda: (np.asarray(w, np.float32) for w in waveforms),
                                        output_signature=tf.TensorSpec([None], tf.float32))
    ds = ds.map(lambda w: log_mel(fix_length(w, samples), num_mel_bins=num_mel_bins),
                num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
    feats = np.concatenate([b.numpy() for b in ds])
    return ((feats - feats.mean()) / (feats.std() + 1e-6)).astype(np.float32)


def synthetic_keywords(num_classes: int, per_class: int, seconds: float = 0.5, seed: int = 0,
                       noise: tuple[float, float] = (0.05, 0.5), gain: tuple[float, float] = (0.1, 1.0),
                       length: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Offline stand-in for spoken keywords: each class is an ordering of the same chirps.

    There are ``length`` chirps (random start/end frequencies) and every class plays all of them,
    in its own order (at most ``length!`` classes): classes have the same spectral content and
    differ only in temporal pattern. Like recorded speech, every example has its own onset, its own
    loudness and its own background level (both log-uniform in the given ranges, 20 dB each by
    default); these nuisances dominate raw spectrogram distances, so an untrained encoder is near
    chance and a trained one must learn order while ignoring level.

    Args:
        num_classes: Keywords (chirp orderings).
        per_class: Examples of each.
        seconds: Clip length.
        seed: Seeds the chirps, the orderings and every example.
        noise: ``(low, high)`` standard deviation of the Gaussian background.
        gain: ``(low, high)`` amplitude of the chirps.
        length: Chirps per keyword.

    Returns:
        ``(waveforms (num_classes * per_class, samples) float32, labels int32)``.
    """
    if num_classes > math.factorial(length):
        raise ValueError(f"{num_classes} classes need more than {length}! orderings; raise length")
    rng = np.random.default_rng(seed)
    samples = int(seconds * SAMPLE_RATE)
    seg = samples // (length + 2)
    t = np.arange(seg) / SAMPLE_RATE
    chirps = rng.uniform(300, 5000, size=(length, 2))
    orders = [tuple(p) for p in itertools.permutations(range(length))]
    orders = [orders[i] for i in rng.permutation(len(orders))[:num_classes]]
    log_uniform = lambda low_high: np.exp(rng.uniform(*np.log(low_high)))  # noqa: E731
    waves, labels = [], []
    for c, order in enumerate(orders):
        for _ in range(per_class):
            wave = log_uniform(noise) * rng.standard_normal(samples)
            start = rng.integers(0, samples - length * seg)
            amplitude = log_uniform(gain)
            for j, (f0, f1) in enumerate(chirps[list(order)]):
                phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * t[-1]))
                wave[start + j * seg: start + (j + 1) * seg] += amplitude * np.sin(phase) * np.hanning(seg)
            waves.append(np.clip(wave, -1, 1).astype(np.float32))
            labels.append(c)
    return np.stack(waves), np.array(labels, np.int32)


def load_wav_folder(path: str | pathlib.Path, seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Waveforms from ``path/<keyword>/*.wav`` (16 kHz mono), padded/trimmed to ``seconds``.

    Returns:
        ``(waveforms, labels, keywords)``; labels index the sorted keyword folder names.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"keyword folder not found: {root}")
    keywords = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not keywords:
        raise ValueError(f"{root} has no keyword sub-folders; expected {root}/<keyword>/<clip>.wav")
    waves, labels = [], []
    for label, word in enumerate(keywords):
        files = sorted((root / word).glob("*.wav"))
        if not files:
            raise ValueError(f"keyword folder {root / word} has no .wav files")
        for f in files:
            audio, rate = tf.audio.decode_wav(tf.io.read_file(str(f)), desired_channels=1)
            if int(rate) != SAMPLE_RATE:
                raise ValueError(f"{f}: sample rate {int(rate)}, expected {SAMPLE_RATE}")
            waves.append(fix_length(audio[:, 0], int(seconds * SAMPLE_RATE)).numpy())
            labels.append(label)
    return np.stack(waves), np.array(labels, np.int32), keywords


def load_speech_commands(split: str = "train", data_dir: str | None = None,
                         max_per_class: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms of tensorflow-datasets' ``speech_commands`` (1 s, 16 kHz), at most N per keyword."""
    import tensorflow_datasets as tfds  # noqa: PLC0415

    ds = tfds.load("speech_commands", split=split, data_dir=data_dir, as_supervised=True)
    waves, labels, counts = [], [], {}
    for audio, label in tfds.as_numpy(ds):
        if counts.get(int(label), 0) < max_per_class:
            counts[int(label)] = counts.get(int(label), 0) + 1
            waves.append(fix_length(tf.cast(audio, tf.float32) / 32768.0, SAMPLE_RATE).numpy())
            labels.append(int(label))
    return np.stack(waves), np.array(labels, np.int32)


def episodes(features: np.ndarray, labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
             num_episodes: int | None = None, seed: int = 0) -> tf.data.Dataset:
    """N-way K-shot episodes ``(support (N, K, ...), query (N, Q, ...))`` over labelled examples.

    Each episode draws N classes, then K + Q distinct examples of each: the first K are the
    support, the rest the queries, so a query is never in the support set. Seeded and repeatable.

    Args:
        features: ``(examples, ...)`` array.
        labels: Integer class of each example.
        n_way, k_shot, n_query: Episode shape.
        num_episodes: Episodes to yield (None: forever).
        seed: Seeds the draws; episode ``i`` is the same for the same seed.
    """
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    usable = sorted(c for c, idx in by_class.items() if len(idx) >= k_shot + n_query)
    if len(usable) < n_way:
        raise ValueError(f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes with "
                         f">= {k_shot + n_query} examples; only {len(usable)} have that many")

    def generate():
        i = 0
        while num_episodes is None or i < num_episodes:
            rng = np.random.default_rng([seed, i])
            classes = rng.choice(usable, n_way, replace=False)
            picks = np.stack([rng.choice(by_class[c], k_shot + n_query, replace=False) for c in classes])
            yield features[picks[:, :k_shot]], features[picks[:, k_shot:]]
            i += 1

    shape = features.shape[1:]
    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((n_way, k_shot, *shape), tf.float32), tf.TensorSpec((n_way, n_query, *shape), tf.float32),
    )).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------------------
# Episodic training (tfresnet-train --task=fewshot)
# --------------------------------------------------------------------------------------------------


def keyword_data(dataset: str, data_dir: str | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of ``synthetic`` keywords, ``speech_commands`` (TFDS) or a WAV ``folder``."""
    if dataset == "synthetic":
        # 64 keywords: 48 to train on, 16 held out; fewer training classes over-fit to them.
        waves, labels = synthetic_keywords(64, 20, seed=seed)
    elif dataset == "speech_commands":
        waves, labels = load_speech_commands("train", data_dir)
    elif dataset == "folder":
        if not data_dir:
            raise ValueError("dataset 'folder' needs data_dir: a folder with one sub-folder of .wav files per keyword")
        waves, labels, _ = load_wav_folder(data_dir)
    else:
        raise ValueError(f"unknown keyword dataset {dataset!r}; expected synthetic, speech_commands or folder")
    return features_of(waves, samples=waves.shape[1], num_mel_bins=20 if dataset == "synthetic" else 40), labels


def split_classes(labels: np.ndarray, held_out: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Masks of training and held-out examples: the last ``held_out`` share of classes is held out."""
    classes = np.unique(labels)
    cut = classes[int(round(len(classes) * (1 - held_out)))]
    return labels < cut, labels >= cut


def train(cfg, log=print) -> dict[str, float]:
    """Episodic training of ``PrototypicalNetwork(ProtoResEncoder())`` from a ``TrainConfig``.

    Trains on episodes of the training classes, evaluates every epoch on episodes of held-out
    classes (never seen in training), checkpoints every epoch and resumes from the newest
    checkpoint in ``cfg.model_dir``.

    Returns:
        The last epoch's ``loss``, ``accuracy`` and ``test_accuracy``.
    """
    from tfresnet import training  # noqa: PLC0415 - training imports the image pipeline

    if cfg.precision != "float32":
        raise ValueError(f"--task=fewshot trains in float32; precision {cfg.precision!r} is for image models")
    keras.utils.set_random_seed(cfg.seed)
    features, labels = keyword_data(cfg.dataset, cfg.data_dir, cfg.seed)
    seen, held_out = split_classes(labels)
    encoder_options = {"widths": (8, 12, 16)} if cfg.dataset == "synthetic" else {}
    net = PrototypicalNetwork(ProtoResEncoder(**{**encoder_options, **cfg.model_options}, name="protores"))
    net.encoder(tf.zeros((1, *features.shape[1:])))  # create the variables before the optimizer
    total = cfg.train_steps or cfg.epochs * cfg.episodes_per_epoch
    # The image trainer's optimizer, learning-rate schedule, weight decay and clipping.
    optimizer = training.make_optimizer(cfg, total)
    optimizer.build(net.encoder.trainable_variables)  # the wrapper is built on its first episode
    metrics = {"loss": keras.metrics.Mean(name="loss"), "accuracy": keras.metrics.Mean(name="accuracy")}
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = training.make_checkpoint(net.encoder, optimizer, step, metrics)
    manager = tf.train.CheckpointManager(checkpoint, f"{cfg.model_dir}/checkpoints", cfg.keep_checkpoints)
    training.restore_newest(checkpoint, manager, log)
    train_step = make_episode_train_step(net, optimizer, metrics, jit_compile=bool(cfg.jit_compile))
    test = episodes(features[held_out], labels[held_out], cfg.n_way, cfg.k_shot, cfg.n_query,
                    cfg.eval_episodes, seed=cfg.seed + 1)
    done = int(step.numpy())
    # Episode i is a pure function of (seed, i): resuming at step s continues the same sequence.
    stream = iter(episodes(features[seen], labels[seen], cfg.n_way, cfg.k_shot, cfg.n_query, None, seed=cfg.seed + 2)
                  .skip(done))
    results: dict[str, float] = {}
    while done < total:
        loss = float(train_step(*next(stream)))
        if not np.isfinite(loss):
            raise training.TrainingError(f"loss became {loss} at episode {done + 1}")
        done += 1
        step.assign(done)
        if done % cfg.episodes_per_epoch == 0 or done == total:
            results = {k: float(m.result()) for k, m in metrics.items()}
            results["test_accuracy"] = evaluate_episodes(net, test)
            log(f"Epoch {-(-done // cfg.episodes_per_epoch)}, Loss: {results['loss']:.4f}, "
                f"Accuracy: {results['accuracy'] * 100:.2f}, Test Accuracy: {results['test_accuracy'] * 100:.2f} "
                f"({cfg.n_way}-way {cfg.k_shot}-shot, held-out classes)")
            for m in metrics.values():
                m.reset_state()
            manager.save(checkpoint_number=done)
    if cfg.export:
        net.encoder.save(f"{cfg.model_dir}/protores.keras")
    return results
