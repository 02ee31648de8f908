"""Spoken keyword clips: the Speech Commands layout, tensorflow-datasets, synthetic chirps, honest splits.

Clips (``SpokenKeywords``: waveforms in [-1, 1] at 16 kHz, their words and speakers) come from a
folder in the Speech Commands layout, from tensorflow-datasets or from synthetic chirps. The
few-shot splits are fixed: ``TRAIN_WORDS``, ``VALIDATION_WORDS`` and ``TEST_WORDS`` of the 35
Speech Commands words, and a third of the speakers held out of training (``keyword_split``).
Their features are ``tfresnet.kws.logmel``, their augmentation ``tfresnet.kws.augment``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import pathlib
import wave
from typing import BinaryIO, Iterator

import numpy as np
import tensorflow as tf

from tfresnet.core import files

SAMPLE_RATE = 16_000


def fix_length(waveform: tf.Tensor, samples: int) -> tf.Tensor:
    """Zero-pads or trims ``waveform`` to ``samples``."""
    waveform = waveform[:samples]
    return tf.pad(waveform, [[0, samples - tf.shape(waveform)[0]]])

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


def wav_chunks(path: str | pathlib.Path, seconds: float = 10.0) -> Iterator[np.ndarray]:
    """A 16 kHz mono 16-bit WAV file as float32 chunks of ``seconds`` (the last one shorter): what
    ``read_wav`` reads, a piece at a time, so a recording of any length streams.

    Raises:
        ValueError: as ``read_wav``, before the first chunk.
    """
    files.check_wav(path, SAMPLE_RATE)
    frames = max(1, int(seconds * SAMPLE_RATE))
    with wave.open(str(path), "rb") as f:
        while True:
            data = f.readframes(frames)
            if not data:
                return
            yield np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def pcm_chunks(stream: BinaryIO, seconds: float = 0.1, name: str = "standard input") -> Iterator[np.ndarray]:
    """float32 chunks of 16 kHz mono audio arriving on a binary ``stream`` (standard input, a pipe
    from a microphone): a WAV stream (its header checked), or raw 16-bit little-endian PCM without
    a header (``arecord -f S16_LE -r 16000 -c 1 -t raw``, ``sox ... -t raw -``).

    Raises:
        ValueError: a WAV header of another format (one line naming what it holds).
    """
    head = stream.peek(4)[:4] if hasattr(stream, "peek") else b""
    size = max(2, 2 * int(seconds * SAMPLE_RATE))
    if head == b"RIFF":
        try:
            reader = wave.open(stream, "rb")
        except (wave.Error, EOFError) as err:
            raise ValueError(f"{name}: not a readable 16-bit PCM WAV stream ({err})") from None
        found = files.WavFormat(reader.getframerate(), reader.getnchannels(), 8 * reader.getsampwidth(), 0)
        if (found.rate, found.channels, found.bits) != (SAMPLE_RATE, 1, 16):
            raise ValueError(f"{name}: {found.describe()}; expected 16-bit PCM, {SAMPLE_RATE} Hz, mono (convert it: "
                             f"sox IN -r {SAMPLE_RATE} -b 16 -c 1 -t wav -)")
        read = lambda: reader.readframes(size // 2)  # noqa: E731
    else:
        read = lambda: stream.read(size)  # noqa: E731
    rest = b""
    while True:
        data = read()
        if not data:
            return
        data, rest = rest + data, b""
        if len(data) % 2:  # half a sample: it completes with the next read
            data, rest = data[:-1], data[-1:]
        if data:
            yield np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


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
