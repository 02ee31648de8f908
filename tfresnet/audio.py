"""Keyword audio: WAV folders, Speech Commands, synthetic keywords, and log-mel features.

Everything here returns NumPy arrays or tensors of waveforms (float32 in [-1, 1], 16 kHz) and the
standardised log-mel features the ``protores`` encoder reads, shaped ``(time, mel bins, 1)``.
"""

from __future__ import annotations

import itertools
import math
import pathlib

import numpy as np
import tensorflow as tf

SAMPLE_RATE = 16_000


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
