"""What the keyword encoder reads: per-clip standardised log-mel spectrograms ``(frames, mel bins, 1)``
of 16 kHz waveforms in [-1, 1], and the clip length / frame count arithmetic."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfresnet.kws.audio import SAMPLE_RATE

DYNAMIC_RANGE_DB = 60.0  # of the features: quieter mel bins are floored


def log_mel(waveform: tf.Tensor, sample_rate: int = SAMPLE_RATE, num_mel_bins: int = 40,
            frame_ms: float = 25.0, step_ms: float = 10.0) -> tf.Tensor:
    """Log-mel spectrogram ``(frames, num_mel_bins, 1)`` of a float waveform in [-1, 1]."""
    frame, step = int(sample_rate * frame_ms / 1000), int(sample_rate * step_ms / 1000)
    fft = 2 ** int(np.ceil(np.log2(frame)))
    stft = tf.signal.stft(tf.cast(waveform, tf.float32), frame, step, fft)
    mel = tf.tensordot(tf.abs(stft) ** 2, tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins, fft // 2 + 1, sample_rate, 20.0, sample_rate / 2 - 200), 1)
    return tf.math.log(mel + 1e-12)[..., None]  # 1e-12: below any floor a caller sets


def features(waveforms: tf.Tensor, num_mel_bins: int = 40) -> tf.Tensor:
    """What the encoder reads: log-mel ``(..., frames, num_mel_bins, 1)`` standardised per clip.

    Per-clip (not dataset) statistics: a clip's loudness only shifts its log-mel, and the
    standardisation removes it, so enrollment and detection need no statistics of the training data.
    """
    mel = log_mel(waveforms, num_mel_bins=num_mel_bins)
    # Floor each clip 60 dB below its loudest bin: digital silence (log 0) and a noise floor then
    # look alike, so a clean clip and a noisy one differ by the noise only.
    mel = tf.maximum(mel, tf.reduce_max(mel, axis=[-3, -2, -1], keepdims=True) - DYNAMIC_RANGE_DB * math.log(10) / 10)
    mean, variance = tf.nn.moments(mel, axes=[-3, -2, -1], keepdims=True)
    return (mel - mean) * tf.math.rsqrt(variance + 1e-6)


def num_frames(samples: int, step_ms: float = 10.0, frame_ms: float = 25.0) -> int:
    """Frames of the log-mel of a clip of ``samples``: e.g. 1 s -> 98 (``clip_samples`` inverts it)."""
    step, frame = int(SAMPLE_RATE * step_ms / 1000), int(SAMPLE_RATE * frame_ms / 1000)
    return 1 + (samples - frame) // step


def clip_samples(frames: int, step_ms: float = 10.0, frame_ms: float = 25.0) -> int:
    """The clip length (samples) whose log-mel has ``frames`` frames: e.g. 98 frames -> 1 s."""
    step, frame = int(SAMPLE_RATE * step_ms / 1000), int(SAMPLE_RATE * frame_ms / 1000)
    return int(math.ceil(((frames - 1) * step + frame) / (SAMPLE_RATE // 100))) * (SAMPLE_RATE // 100)
