"""Training augmentation of keyword clips: time shifts, background noise, SpecAugment masks, speed and
formant warping (``Augmentation``, ``augmented_features``), and pseudo-words (``WordSplicer``).

Every draw is keyed by a seed, so an episode (or batch) and its augmentation are a pure function of
``(seed, index)`` and a resumed run replays them. (Image augmentations are ``tfresnet.data.augment``.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfresnet.kws.audio import SAMPLE_RATE
from tfresnet.kws.logmel import features


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training augmentation of keyword clips (waveforms), applied per clip.

    Attributes:
        time_shift: Shift each clip by up to this many seconds either way (zero fill): the
            word's onset varies in real recordings.
        noise_probability: Share of clips mixed with background noise.
        snr_db: ``(low, high)``: signal-to-noise ratio of the mix, uniform in dB.
        spec_augment: Mask one random band of up to 8 mel bins and one span of up to 10 frames of
            the features (SpecAugment, Park et al. 2019).
        speed: Stretch time by a random factor in ``1 +- speed`` (``warp_features``).
        formant: Stretch the mel axis by a random factor in ``1 +- formant`` (``warp_features``).
    """

    time_shift: float = 0.1
    noise_probability: float = 0.8
    snr_db: tuple[float, float] = (0.0, 20.0)
    spec_augment: bool = False
    speed: float = 0.0
    formant: float = 0.0


def shift(waveforms: tf.Tensor, max_samples: int, seed: tf.Tensor) -> tf.Tensor:
    """Each row of ``(clips, samples)`` shifted by a uniform random offset in [-max, max], zero-filled."""
    n = tf.shape(waveforms)[1]
    offsets = tf.random.stateless_uniform([tf.shape(waveforms)[0]], seed, -max_samples, max_samples + 1, tf.int32)
    padded = tf.pad(waveforms, [[0, 0], [max_samples, max_samples]])
    index = tf.range(n)[None, :] + max_samples - offsets[:, None]
    return tf.gather(padded, index, batch_dims=1)


def mix_noise(waveforms: tf.Tensor, noise: tf.Tensor, probability: float, snr_db: tuple[float, float],
              seed: tf.Tensor) -> tf.Tensor:
    """Adds a random stretch of ``noise`` (1-D) to each clip with ``probability``, at a random SNR (dB)."""
    count, n = tf.shape(waveforms)[0], tf.shape(waveforms)[1]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    starts = tf.random.stateless_uniform([count], seeds[0], 0, tf.shape(noise)[0] - n, tf.int32)
    pieces = tf.gather(noise, starts[:, None] + tf.range(n)[None, :])
    snr = tf.random.stateless_uniform([count, 1], seeds[1], *snr_db)
    signal_power = tf.reduce_mean(waveforms**2, -1, keepdims=True)
    noise_power = tf.reduce_mean(pieces**2, -1, keepdims=True) + 1e-10
    gain = tf.sqrt(signal_power / noise_power * 10 ** (-snr / 10))
    keep = tf.cast(tf.random.stateless_uniform([count, 1], seeds[2]) < probability, tf.float32)
    return tf.clip_by_value(waveforms + keep * gain * pieces, -1.0, 1.0)


def mask_features(features: tf.Tensor, seed: tf.Tensor, max_bins: int = 8, max_frames: int = 10) -> tf.Tensor:
    """SpecAugment-style: one band of mel bins and one span of frames of each clip set to 0 (the mean)."""
    count, frames, bins = tf.shape(features)[0], tf.shape(features)[1], tf.shape(features)[2]
    seeds = tf.random.experimental.stateless_split(seed, 4)

    def band(size, length, width_seed, start_seed):
        width = tf.random.stateless_uniform([count, 1], width_seed, 0, length + 1, tf.int32)
        start = tf.random.stateless_uniform([count, 1], start_seed, 0, size - length + 1, tf.int32)
        position = tf.range(size)[None, :]
        return (position >= start) & (position < start + width)

    in_time, in_bins = band(frames, max_frames, seeds[0], seeds[1]), band(bins, max_bins, seeds[2], seeds[3])
    masked = in_time[:, :, None] | in_bins[:, None, :]
    return tf.where(masked[..., None], 0.0, features)


def _resample_axis(x: tf.Tensor, scale: tf.Tensor, axis: int) -> tf.Tensor:
    """Linear resampling of each clip of ``x`` (clips first) along ``axis``: output position ``j``
    reads input position ``j * scale`` (per clip); past the end, the last value repeats."""
    n = tf.shape(x)[axis]
    position = tf.cast(tf.range(n), tf.float32)[None, :] * scale[:, None]  # (clips, n)
    position = tf.minimum(position, tf.cast(n - 1, tf.float32))
    low = tf.cast(tf.floor(position), tf.int32)
    high = tf.minimum(low + 1, n - 1)
    frac = position - tf.cast(low, tf.float32)
    moved = tf.experimental.numpy.moveaxis(x, axis, 1)  # (clips, n, ...)
    a, b = tf.gather(moved, low, batch_dims=1), tf.gather(moved, high, batch_dims=1)
    frac = tf.reshape(frac, tf.concat([tf.shape(frac), tf.ones([tf.rank(moved) - 2], tf.int32)], 0))
    return tf.experimental.numpy.moveaxis(a + frac * (b - a), 1, axis)


def warp_features(features: tf.Tensor, speed: float, formant: float, seed: tf.Tensor) -> tf.Tensor:
    """Per-clip speed and vocal-tract-length perturbation of ``(clips, frames, bins, 1)`` features.

    Speakers differ in tempo and in where their formants lie: time is stretched by a factor in
    ``1 +- speed`` (Ko et al. 2015) and the mel axis by one in ``1 +- formant`` (VTLP, Jaitly and
    Hinton 2013), both uniform per clip.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    count = tf.shape(features)[0]
    if speed:
        features = _resample_axis(features, tf.random.stateless_uniform([count], seeds[0], 1 - speed, 1 + speed), 1)
    if formant:
        features = _resample_axis(features, tf.random.stateless_uniform([count], seeds[1], 1 - formant, 1 + formant),
                                  2)
    return features


def augmented_features(waveforms: tf.Tensor, augmentation: Augmentation | None, noise: tf.Tensor | None,
                       seed: tf.Tensor, num_mel_bins: int = 40) -> tf.Tensor:
    """``features`` of ``(clips, samples)`` waveforms, after ``augmentation`` (None: none).

    Stateless: the same ``seed`` (shape ``[2]``, e.g. ``[run seed, episode]``) gives the same
    clips, so a resumed run sees exactly what an uninterrupted one would.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    if augmentation and augmentation.time_shift:
        waveforms = shift(waveforms, int(augmentation.time_shift * SAMPLE_RATE), seeds[0])
    if augmentation and noise is not None and augmentation.noise_probability:
        waveforms = mix_noise(waveforms, noise, augmentation.noise_probability, augmentation.snr_db, seeds[1])
    feats = features(waveforms, num_mel_bins)
    if augmentation and (augmentation.speed or augmentation.formant):
        feats = warp_features(feats, augmentation.speed, augmentation.formant, seeds[3])
    if augmentation and augmentation.spec_augment:
        feats = mask_features(feats, seeds[2])
    return feats


def speech_spans(waveforms: np.ndarray, floor_db: float = 35.0) -> np.ndarray:
    """``(clips, 2)``: the first and last sample (end exclusive) of the speech in each clip.

    Speech is every 10 ms frame whose energy is within ``floor_db`` of the clip's loudest frame;
    the span runs from the first such frame to the end of the last one.
    """
    frame = SAMPLE_RATE // 100
    count, samples = waveforms.shape
    frames = np.asarray(waveforms, np.float64)[:, :samples // frame * frame].reshape(count, -1, frame)
    energy = 10 * np.log10(np.mean(frames**2, axis=-1) + 1e-12)
    loud = energy > energy.max(axis=1, keepdims=True) - floor_db
    first, last = loud.argmax(axis=1), loud.shape[1] - loud[:, ::-1].argmax(axis=1)
    return np.stack([first, last], axis=1) * frame


class Partners:
    """Another word's clip for a clip: by the same speaker if they said one, else by anyone.

    Args:
        labels: ``(clips,)`` int words.
        speakers: ``(clips,)`` speaker of each clip.
    """

    def __init__(self, labels: np.ndarray, speakers: np.ndarray):
        self.labels = np.asarray(labels)
        # Each speaker's clips, in index order: partners are looked up per drawn clip, so that tens
        # of thousands of clips (Speech Commands) cost no table of every pair.
        _, self.speaker_of = np.unique(np.asarray(speakers), return_inverse=True)
        order = np.argsort(self.speaker_of, kind="stable")
        self.by_speaker = np.split(order, np.cumsum(np.bincount(self.speaker_of))[:-1])

    def partner(self, first: int, rng: np.random.Generator) -> int:
        """A clip of a word other than clip ``first``'s."""
        group = self.by_speaker[self.speaker_of[first]]
        same = group[self.labels[group] != self.labels[first]]
        if len(same):
            return int(rng.choice(same))
        while True:  # other words are most clips: a few draws at most
            second = int(rng.integers(len(self.labels)))
            if self.labels[second] != self.labels[first]:
                return second


class WordSplicer:
    """Pseudo-words for training an encoder on few words: the start of one word joined to the end
    of another, said by the same speaker.

    An encoder that must tell 20 training words apart learns what separates those 20, and new words
    that differ elsewhere (go and no differ only in their first consonant) fall together. Joining
    the first part of word ``a`` to the rest of word ``b`` makes ``words**2`` classes from the same
    clips, each a new sequence of real speech sounds, so the encoder has to resolve the whole word,
    beginning and end. Class ``a * words + b`` is ``a``'s start and ``b``'s end; an unspliced clip of
    word ``w`` is class ``w * words + w``. On the spoken keywords it took the test words of held-out
    speakers from 90.3% to 93.7% 5-way 1-shot in equal training (BENCHMARKS.md).

    Each word is cut in the middle of its speech (``speech_spans``), or with ``cut`` at a random
    point within ``0.5 +- cut`` of its length; the two parts, with 50 ms of context either side,
    are cross-faded over 5 ms and placed at a random start in a clip of the original length
    (longer results are cut at its end).
    The other word is said by the same speaker where that speaker said another word, else by anyone.

    Args:
        waveforms: ``(clips, samples)`` training clips.
        labels: ``(clips,)`` int words, 0 .. words - 1.
        speakers: ``(clips,)`` speaker of each clip.
        probability: Share of clips replaced by a spliced pseudo-word, in [0, 1).
        cut: Cut points are uniform in ``0.5 +- cut`` of each word's speech, in [0, 0.5); 0: the middle.
    """

    CONTEXT = SAMPLE_RATE // 20  # 50 ms of each part's surroundings: the onset and the tail of the word
    FADE = SAMPLE_RATE // 200  # 5 ms cross-fade: no click at the joint

    def __init__(self, waveforms: np.ndarray, labels: np.ndarray, speakers: np.ndarray, probability: float,
                 cut: float = 0.0):
        if not 0 <= probability < 1:
            raise ValueError(f"splice probability must be in [0, 1), got {probability}")
        if not 0 <= cut < 0.5:
            raise ValueError(f"splice cut must be in [0, 0.5), got {cut}")
        labels = np.asarray(labels)
        self.words = int(labels.max()) + 1
        if len(np.unique(labels)) < 2:
            raise ValueError("splicing words needs clips of at least two words")
        self.waveforms, self.labels = waveforms, labels
        self.probability, self.cut = probability, cut
        self.spans = speech_spans(waveforms)
        self.partners = Partners(labels, speakers)

    @property
    def num_classes(self) -> int:
        return self.words * self.words

    def __call__(self, pick: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The clips ``pick`` with their pseudo-word classes, each spliced with ``probability``."""
        waves = self.waveforms[pick].copy()
        classes = self.labels[pick] * (self.words + 1)  # w * words + w: the word itself
        for row, first in enumerate(pick):
            if rng.random() >= self.probability:
                continue
            second = self.partner(first, rng)
            waves[row] = self.splice(first, second, rng.uniform(0.5 - self.cut, 0.5 + self.cut, 2), rng)
            classes[row] = self.labels[first] * self.words + self.labels[second]
        return waves, classes.astype(np.int32)

    def partner(self, first: int, rng: np.random.Generator) -> int:
        """A clip of another word: by the same speaker if they said one, else by anyone."""
        return self.partners.partner(first, rng)

    def splice(self, first: int, second: int, cuts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clip ``first`` up to ``cuts[0]`` of its speech, then clip ``second`` from ``cuts[1]`` of its own."""
        samples = self.waveforms.shape[1]
        (start_a, end_a), (start_b, end_b) = self.spans[first], self.spans[second]
        cut_a = int(start_a + cuts[0] * (end_a - start_a))
        cut_b = int(start_b + cuts[1] * (end_b - start_b))
        # The cross-fade straddles both cuts: the word is as long as the two parts.
        half = self.FADE // 2
        head = self.waveforms[first, max(start_a - self.CONTEXT, 0):cut_a + half]
        tail = self.waveforms[second, max(cut_b - self.FADE + half, 0):min(end_b + self.CONTEXT, samples)]
        fade = min(self.FADE, len(head), len(tail))
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        joint = head[len(head) - fade:] * (1 - ramp) + tail[:fade] * ramp
        word = np.concatenate([head[:len(head) - fade], joint, tail[fade:]])[:samples]
        out = np.zeros(samples, np.float32)
        start = rng.integers(0, samples - len(word) + 1)
        out[start:start + len(word)] = word
        return out


class ContextWords:
    """Running speech around a training word: the cut-off end of a word said before it and the
    start of one said after it, by the same speaker, at a natural pause.

    A one-second window of running speech holds its word whole and, at its edges, parts of the
    neighbouring words; an encoder trained on words alone in silence takes those parts for part of
    the word. With ``probability`` a drawn clip's word (``speech_spans``) is placed at a random
    start, and the speech of two other words of the same speaker (other words than its own) fills
    the clip before and after it, ``pause`` seconds away; the class stays the word's.

    Args:
        waveforms: ``(clips, samples)`` training clips.
        labels: ``(clips,)`` int words.
        speakers: ``(clips,)`` speaker of each clip.
        probability: Share of clips surrounded, in [0, 1).
        pause: The range of the pauses (seconds) between the words.
        compose: Makes the batch first (``WordSplicer``): its clips are surrounded.
    """

    def __init__(self, waveforms: np.ndarray, labels: np.ndarray, speakers: np.ndarray, probability: float,
                 pause: tuple[float, float] = (0.15, 0.6), compose=None):
        if not 0 <= probability < 1:
            raise ValueError(f"context probability must be in [0, 1), got {probability}")
        self.waveforms, self.labels = waveforms, np.asarray(labels)
        self.probability, self.compose = probability, compose
        self.pause = (int(pause[0] * SAMPLE_RATE), int(pause[1] * SAMPLE_RATE))
        self.spans = speech_spans(waveforms)
        self.partners = Partners(self.labels, speakers)

    @property
    def num_classes(self) -> int:
        return self.compose.num_classes if self.compose else int(self.labels.max()) + 1

    def __call__(self, pick: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The clips ``pick`` (composed first, if given), each surrounded with ``probability``."""
        waves, classes = self.compose(pick, rng) if self.compose else (self.waveforms[pick].copy(), self.labels[pick])
        spans = speech_spans(waves)
        for row, index in enumerate(pick):
            if rng.random() < self.probability:
                waves[row] = self.surround(waves[row], spans[row], int(index), rng)
        return waves, np.asarray(classes, np.int32)

    def surround(self, wave: np.ndarray, span: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
        """``wave``'s word at a random start, the end of another word before it and the start of one after."""
        samples = len(wave)
        word = wave[span[0]:span[1]]
        out = np.zeros(samples, np.float32)
        start = int(rng.integers(0, samples - len(word) + 1))
        out[start:start + len(word)] = word
        end_before = start - int(rng.integers(*self.pause))
        if end_before > 0:
            before = self._speech(self.partners.partner(index, rng))[-end_before:]
            out[end_before - len(before):end_before] = before
        begin_after = start + len(word) + int(rng.integers(*self.pause))
        if begin_after < samples:
            after = self._speech(self.partners.partner(index, rng))[:samples - begin_after]
            out[begin_after:begin_after + len(after)] = after
        return out

    def _speech(self, index: int) -> np.ndarray:
        lo, hi = self.spans[index]
        return self.waveforms[index, lo:hi]
