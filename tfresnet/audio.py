"""Keyword audio: the Speech Commands layout, honest splits, augmentation, and log-mel features.

Clips (``SpokenKeywords``: waveforms in [-1, 1] at 16 kHz, their words and speakers) come from a
folder in the Speech Commands layout, from tensorflow-datasets or from synthetic chirps. The
few-shot splits are fixed: ``TRAIN_WORDS``, ``VALIDATION_WORDS`` and ``TEST_WORDS`` of the 35
Speech Commands words, and a third of the speakers held out of training (``keyword_split``).
``augmented_features`` turns a batch of waveforms into what the ``protores`` encoder reads
(per-clip standardised log-mel, ``(time, mel bins, 1)``), with seeded training augmentation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import pathlib

import numpy as np
import tensorflow as tf

from tfresnet import files

SAMPLE_RATE = 16_000
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


def fix_length(waveform: tf.Tensor, samples: int) -> tf.Tensor:
    """Zero-pads or trims ``waveform`` to ``samples``."""
    waveform = waveform[:samples]
    return tf.pad(waveform, [[0, samples - tf.shape(waveform)[0]]])


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
        # Each speaker's clips, in index order: partners are looked up per drawn clip, so that tens
        # of thousands of clips (Speech Commands) cost no table of every pair.
        _, self.speaker_of = np.unique(np.asarray(speakers), return_inverse=True)
        order = np.argsort(self.speaker_of, kind="stable")
        self.by_speaker = np.split(order, np.cumsum(np.bincount(self.speaker_of))[:-1])

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
        group = self.by_speaker[self.speaker_of[first]]
        same = group[self.labels[group] != self.labels[first]]
        if len(same):
            return int(rng.choice(same))
        while True:  # other words are most clips: a few draws at most
            second = int(rng.integers(len(self.labels)))
            if self.labels[second] != self.labels[first]:
                return second

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


@dataclasses.dataclass(frozen=True)
class SpokenKeywords:
    """Clips of spoken keywords: one waveform, keyword and speaker per clip.

    Attributes:
        waveforms: ``(clips, samples)`` float32 in [-1, 1], every clip padded or cropped to one length.
        labels: ``(clips,)`` int32, indexing ``keywords``.
        keywords: The keyword names, sorted.
        speakers: ``(clips,)`` speaker ids (str): the ``<speaker>_nohash_`` prefix of Speech Commands
            file names, or the file name when there is none (each clip its own speaker).
        noise: Background-noise recordings for augmentation (``_background_noise_``), float32.
    """

    waveforms: np.ndarray
    labels: np.ndarray
    keywords: list[str]
    speakers: np.ndarray
    noise: list[np.ndarray] = dataclasses.field(default_factory=list)

    def subset(self, mask: np.ndarray) -> "SpokenKeywords":
        """The clips where ``mask`` is true (labels keep indexing the same ``keywords``)."""
        return dataclasses.replace(self, waveforms=self.waveforms[mask], labels=self.labels[mask],
                                   speakers=self.speakers[mask])

    def speaker_ids(self) -> np.ndarray:
        """Speakers as integers (for the episode sampler)."""
        return np.unique(self.speakers, return_inverse=True)[1].astype(np.int64)


def read_wav(path: str | pathlib.Path, samples: int | None = None) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV file as float32 in [-1, 1], padded or cropped to ``samples`` if given.

    Raises:
        ValueError: one line naming the file and what it holds, when it is not a WAV file, not 16-bit
            PCM, not 16 kHz, not mono (nothing is mixed down without a word), or holds no samples.
    """
    files.check_wav(path, SAMPLE_RATE)
    try:
        audio, _ = tf.audio.decode_wav(tf.io.read_file(str(path)), desired_channels=1)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as err:
        reason = err.message.split("[Op:")[0].split("}}")[-1].strip()
        raise ValueError(f"{path}: not a readable 16-bit PCM WAV file ({reason})") from None
    wave = audio[:, 0]
    return (fix_length(wave, samples) if samples else wave).numpy()


def _skipped(path: pathlib.Path) -> bool:
    # Speech Commands marks what is not a keyword with a leading underscore (_background_noise_).
    return path.name.startswith(("_", "."))


def speaker_of(path: pathlib.Path) -> str:
    """The speaker of a Speech Commands file name ``<speaker>_nohash_<n>.wav`` (else the file stem)."""
    return path.stem.split("_nohash_")[0]


def load_background_noise(root: str | pathlib.Path) -> list[np.ndarray]:
    """The recordings of ``root/_background_noise_/*.wav`` (none if the folder is absent)."""
    folder = pathlib.Path(root) / "_background_noise_"
    return [read_wav(f) for f in sorted(folder.glob("*.wav"))] if folder.is_dir() else []


def load_keyword_folder(path: str | pathlib.Path, seconds: float = 1.0) -> SpokenKeywords:
    """Clips in the Speech Commands layout: ``path/<keyword>/<speaker>_nohash_<n>.wav`` (16 kHz mono).

    Folders and files starting with ``_`` or ``.`` and files other than ``.wav`` are skipped;
    ``_background_noise_`` is read into ``noise``, never as a keyword. Clips are zero-padded or
    cropped to ``seconds``.
    """
    root = pathlib.Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"keyword folder not found: {root}")
    keywords = sorted(d.name for d in root.iterdir() if d.is_dir() and not _skipped(d))
    if not keywords:
        raise ValueError(f"{root} has no keyword sub-folders; expected {root}/<keyword>/<speaker>_nohash_0.wav")
    samples = int(seconds * SAMPLE_RATE)
    waves, labels, speakers = [], [], []
    for label, word in enumerate(keywords):
        files = sorted(f for f in (root / word).iterdir()
                       if f.is_file() and f.suffix.lower() == ".wav" and not _skipped(f))
        if not files:
            raise ValueError(f"keyword folder {root / word} has no .wav files")
        for f in files:
            waves.append(read_wav(f, samples))
            labels.append(label)
            speakers.append(speaker_of(f))
    return SpokenKeywords(np.stack(waves), np.array(labels, np.int32), keywords, np.array(speakers),
                          load_background_noise(root))


def load_speech_commands(split: str = "train", data_dir: str | None = None,
                         max_per_class: int = 200) -> SpokenKeywords:
    """tensorflow-datasets' ``speech_commands`` (1 s, 16 kHz), at most N clips per keyword.

    Its ``_silence_`` and ``_unknown_`` classes are not keywords and are left out. TFDS keeps no
    speaker ids, so each clip counts as its own speaker.
    """
    import tensorflow_datasets as tfds  # noqa: PLC0415

    ds, info = tfds.load("speech_commands", split=split, data_dir=data_dir, as_supervised=True, with_info=True)
    names = info.features["label"].names
    words = sorted(n for n in names if not n.startswith("_"))
    waves, labels, counts = [], [], {}
    for audio, label in tfds.as_numpy(ds):
        word = names[int(label)]
        if not word.startswith("_") and counts.get(word, 0) < max_per_class:
            counts[word] = counts.get(word, 0) + 1
            waves.append(fix_length(tf.cast(audio, tf.float32) / 32768.0, SAMPLE_RATE).numpy())
            labels.append(words.index(word))
    return SpokenKeywords(np.stack(waves), np.array(labels, np.int32), words,
                          np.array([f"clip{i}" for i in range(len(waves))]))


# The few-shot split of the 35 Speech Commands words. The encoder trains on TRAIN_WORDS only; the
# VALIDATION_WORDS choose its checkpoint; the TEST_WORDS are only reported. Each list mixes short
# and long words, digits and commands. Words outside these lists go by a hash of the word.
TRAIN_WORDS = ("backward", "bed", "cat", "eight", "follow", "forward", "four", "house", "marvin", "one", "on",
               "seven", "sheila", "six", "stop", "three", "two", "up", "yes", "zero")
VALIDATION_WORDS = ("bird", "learn", "right", "tree", "wow")
TEST_WORDS = ("dog", "down", "five", "go", "happy", "left", "nine", "no", "off", "visual")
KEYWORD_SPLITS = ("train", "validation", "test")
# The share of speakers held out of training: validation and test episodes use only them.
HELD_OUT_SPEAKERS = 1 / 3


def _hash(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16)


def word_split(word: str) -> str:
    """``train``, ``validation`` or ``test``: the lists above, else 60/15/25% by a hash of the word."""
    for split, words in zip(KEYWORD_SPLITS, (TRAIN_WORDS, VALIDATION_WORDS, TEST_WORDS)):
        if word in words:
            return split
    bucket = _hash(word) % 100
    return "train" if bucket < 60 else "validation" if bucket < 75 else "test"


def held_out_speakers(speakers, fraction: float = HELD_OUT_SPEAKERS) -> set[str]:
    """The ``fraction`` of the distinct ``speakers`` with the smallest SHA-1 of their id.

    A pure function of the ids: the same speakers are held out on every machine and every run.
    """
    distinct = sorted(set(str(s) for s in speakers), key=_hash)
    return set(distinct[:int(round(len(distinct) * fraction))])


def _check_split(split: str) -> None:
    if split not in KEYWORD_SPLITS:
        raise ValueError(f"keyword split {split!r} is not one of {', '.join(KEYWORD_SPLITS)}")


def keyword_split(clips: SpokenKeywords, split: str, fraction: float = HELD_OUT_SPEAKERS) -> SpokenKeywords:
    """The clips of one split: the split's words, spoken by the training speakers (``train``) or
    by the held-out ones (``validation`` and ``test``)."""
    _check_split(split)
    words = np.array([word_split(w) == split for w in clips.keywords])
    held_out = held_out_speakers(clips.speakers, fraction)
    heard = np.array([s in held_out for s in clips.speakers]) != (split == "train")
    return clips.subset(words[clips.labels] & heard)


def synthetic_clips(seed: int = 0) -> SpokenKeywords:
    """``synthetic_keywords`` as clips: 64 keywords of 20 clips, each clip its own speaker.

    Their words are ``chirp00``... and split 48 / 8 / 8 (train / validation / test) in order:
    fewer training classes over-fit to them.
    """
    waves, labels = synthetic_keywords(64, 20, seed=seed)
    return SpokenKeywords(waves, labels, [f"chirp{i:02d}" for i in range(64)],
                          np.array([f"clip{i}" for i in range(len(waves))]))


def synthetic_split(clips: SpokenKeywords, split: str) -> SpokenKeywords:
    """Keywords 0-47 train, 48-55 validation, 56-63 test (all clips: synthetic speakers are unique)."""
    _check_split(split)
    low, high = {"train": (0, 48), "validation": (48, 56), "test": (56, 64)}[split]
    return clips.subset((clips.labels >= low) & (clips.labels < high))


def keyword_clips(dataset: str, data_dir: str | None, seed: int = 0) -> SpokenKeywords:
    """All clips of ``synthetic`` keywords, TFDS ``speech_commands`` or a Speech Commands ``folder``."""
    if dataset == "synthetic":
        return synthetic_clips(seed)
    if dataset == "speech_commands":
        return load_speech_commands("train", data_dir)
    if dataset == "folder":
        if not data_dir:
            raise ValueError("dataset 'folder' needs data_dir: a folder with one sub-folder of .wav files per keyword")
        return load_keyword_folder(data_dir)
    raise ValueError(f"unknown keyword dataset {dataset!r}; expected synthetic, speech_commands or folder")


def split_of(clips: SpokenKeywords, dataset: str, split: str) -> SpokenKeywords:
    """``keyword_split`` (``synthetic_split`` for synthetic keywords), refusing an empty split."""
    part = synthetic_split(clips, split) if dataset == "synthetic" else keyword_split(clips, split)
    if not len(part.labels):
        raise ValueError(f"the {split} split of {dataset} has no clips (its words: "
                         f"{', '.join(w for w in clips.keywords if word_split(w) == split) or 'none'})")
    return part


def with_training_words(train: SpokenKeywords, extra: SpokenKeywords, clips: SpokenKeywords) -> SpokenKeywords:
    """The training clips ``train`` of ``clips`` and every clip of ``extra``: more training words.

    An encoder trained on 20 words learns what tells those 20 apart; hundreds of words teach it
    what tells words apart (BENCHMARKS.md, and ``benchmarks/kws_words.py``, which renders such a
    folder in the training speakers' voices). ``extra`` must keep the split honest: none of its
    words may be a validation or test word, or a word of ``clips`` at all (one word, one folder),
    and none of its speakers one that ``clips`` holds out.

    Raises:
        ValueError: one line naming the first such word or speaker.
    """
    held = set(VALIDATION_WORDS + TEST_WORDS) | {w for w in clips.keywords if word_split(w) != "train"}
    for word in extra.keywords:
        if word in held:
            raise ValueError(f"extra training word {word!r} is a validation or test word: the encoder must not hear it")
        if word in clips.keywords:
            raise ValueError(f"extra training word {word!r} is also a word of the keyword folder; keep it in one")
    unheard = sorted(set(extra.speakers.tolist()) & held_out_speakers(clips.speakers))
    if unheard:
        raise ValueError(f"extra training words by speaker {unheard[0]!r}, one of the held-out speakers "
                         "(validation and test): the encoder must not hear them")
    if extra.waveforms.shape[1] != train.waveforms.shape[1]:
        raise ValueError(f"extra training clips hold {extra.waveforms.shape[1]} samples, the keyword folder's "
                         f"{train.waveforms.shape[1]}")
    keywords = sorted(train.keywords + extra.keywords)
    index = {word: i for i, word in enumerate(keywords)}
    relabel = lambda part: np.array([index[w] for w in part.keywords], np.int32)[part.labels]  # noqa: E731
    labels = np.concatenate([relabel(train), relabel(extra)])
    # Word by word, as one folder holding both would load: the batches then do not depend on
    # which of the two folders a word came from.
    order = np.argsort(labels, kind="stable")
    return SpokenKeywords(np.concatenate([train.waveforms, extra.waveforms])[order], labels[order], keywords,
                          np.concatenate([train.speakers, extra.speakers])[order], train.noise + extra.noise)
