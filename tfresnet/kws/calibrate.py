"""A false-alarm rate turned into a threshold per keyword, from running speech stored with the encoder.

One cosine threshold does not mean the same thing for every keyword: a keyword that sounds like
common words ("go", "no") is crossed by other speech far more often than a long, rare one
("visual"). So the spotter keeps a *cohort*: the embeddings of hours of running speech
that holds none of the user's keywords (words of the encoder's training data, by its training
speakers, at a natural pace: ``running_speech``), recorded once per encoder
(``tfresnet-kws calibrate``, ``cohort.npz`` in the run folder). When a keyword is enrolled, its
prototype is run over the cohort exactly as the streaming detector would run over speech
(``stream.replay``): the number of detections per hour at a threshold is counted, and the
threshold that gives the asked rate (shared equally among the keywords) is that keyword's.

Rates below three detections in the cohort cannot be counted; there the tail is extrapolated:
the log of the count of detections falls close to linearly with the threshold at the top of the
range (the exceedances of a maximum over many windows), and the line through counts 3 and 5 is
followed down (``threshold_for_rate``). BENCHMARKS.md checks the rates against held-out streams
of five hours: with an 8-hour cohort, asked for one false alarm an hour among five keywords,
0.5-1.9 were measured in all nine conditions (SNR and enrollment size); asked for 0.1, 0.03-0.7.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable, Iterator, Sequence

import numpy as np

from tfresnet.core import files
from tfresnet.kws.audio import SAMPLE_RATE
from tfresnet.kws.stream import SMOOTH_WINDOWS, WindowRecorder, Windows, replay, smoothed_scores

COHORT_FILE = "cohort.npz"
# Counts of cohort detections whose thresholds are found (bisected); below the first, too few to
# count, the line through the first two (the tail) is followed down. Not through more: with the
# detector's smoothed scores the top of the tail falls faster than further down, and the line
# through counts 3-40 set thresholds too high (asked for 1 false alarm an hour, 0.2-1.07 measured;
# through 3-10, 0.4-1.7; through 3 and 5, 0.5-1.9: BENCHMARKS.md).
CURVE_COUNTS = (3, 5, 10, 20, 40, 80, 160, 320)
TAIL_COUNTS = CURVE_COUNTS[:2]


@dataclasses.dataclass(frozen=True)
class Pace:
    """How running speech is spoken: words one after another with pauses, in phrases.

    The defaults give about 55-60 words a minute of 0.3-0.7 s words, about twice the 30 a minute
    of relaxed conversation, so that an hour holds more chances of a false alarm than most hours a
    user speaks.
    """

    pause: tuple[float, float] = (0.15, 0.6)  # seconds between the words of a phrase
    phrase: tuple[int, int] = (4, 12)  # words in a phrase
    break_seconds: tuple[float, float] = (0.8, 2.0)  # between phrases


def trimmed(wave: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """The spoken part of a clip (a Speech Commands clip is mostly silence around its word)."""
    loud = np.flatnonzero(np.abs(wave) > floor)
    return wave[loud[0]: loud[-1] + 1] if len(loud) else wave[:0]


def running_speech(pick: Callable[[np.random.Generator], np.ndarray], seconds: float, rng: np.random.Generator,
                   pace: Pace = Pace()) -> Iterator[tuple[int, np.ndarray, list[tuple[int, int]]]]:
    """Running speech, one phrase at a time: ``(start, waveform, [(start, end) of each word])``,
    positions in samples from the stream's start.

    Args:
        pick: Draws the next word's waveform (trimmed, 16 kHz) with the generator it is given.
        seconds: The length of the whole stream (the last phrase may run over).
        rng: The stream's generator: the same seed, the same stream.
        pace: Pauses and phrases.

    The phrases run on from each other: each starts where the one before ended.
    """
    at, total = 0, int(seconds * SAMPLE_RATE)
    while at < total:
        pieces, words = [], []
        for i in range(int(rng.integers(pace.phrase[0], pace.phrase[1] + 1))):
            gap = pace.break_seconds if i == 0 else pace.pause
            pause = np.zeros(int(rng.uniform(*gap) * SAMPLE_RATE), np.float32)
            word = np.asarray(pick(rng), np.float32)
            start = at + sum(len(p) for p in pieces) + len(pause)
            words.append((start, start + len(word)))
            pieces += [pause, word]
        phrase = np.concatenate(pieces)
        yield at, phrase, words
        at += len(phrase)


def speech_level(words: Sequence[np.ndarray]) -> float:
    """The RMS of the spoken words (trimmed clips): the speech side of a signal-to-noise ratio."""
    return float(np.sqrt(np.mean(np.concatenate([np.asarray(w, np.float64) for w in words]) ** 2)))


def with_noise(piece: np.ndarray, start: int, noise: np.ndarray, rms: float) -> np.ndarray:
    """``piece`` (starting at sample ``start`` of its stream) plus ``noise`` looped along the stream,
    scaled to ``rms``, clipped to [-1, 1]."""
    index = (start + np.arange(len(piece))) % len(noise)
    return np.clip(piece + noise[index] * (rms / max(float(noise.std()), 1e-12)), -1, 1).astype(np.float32)


def record_windows(embed: Callable[[np.ndarray], np.ndarray], samples: int,
                   pieces: Iterator[np.ndarray], hop: float = 0.05, block: int = 64) -> Windows:
    """The gated windows of a stream given in pieces (``stream.WindowRecorder``; ``block`` windows
    embedded per call: a recording, unlike a live stream, need not wait for each window)."""
    recorder = WindowRecorder(embed, samples, hop, block=block)
    for piece in pieces:
        recorder.feed(piece)
    recorder.finish()
    return recorder.windows()


def detections_per_hour(windows: Windows, prototype: np.ndarray, threshold: float,
                        smooth_windows: int = SMOOTH_WINDOWS) -> float:
    """Detections per hour of ``prototype`` in the recorded stream at ``threshold``."""
    found = replay(windows, prototype[None], threshold, smooth_windows=smooth_windows)
    return len(found) / (windows.seconds / 3600)


def _scores(windows: Windows, prototype: np.ndarray, smooth_windows: int) -> np.ndarray:
    """The detector's (smoothed) score of ``prototype`` in each window ``(windows,)``."""
    prototype = np.asarray(prototype, windows.embeddings.dtype)
    return smoothed_scores(windows, (windows.embeddings @ prototype)[:, None], smooth_windows)[:, 0]


def _bisect(windows: Windows, prototype: np.ndarray, count: float, scores: np.ndarray) -> float:
    """The lowest threshold (to 1e-5) at which the cohort gives at most ``count`` detections
    (``scores``: ``_scores``, smoothed already)."""
    lo, hi = (float(np.quantile(scores, 0.5)) if len(scores) else 0.0), 1.0001
    for _ in range(16):
        mid = (lo + hi) / 2
        if len(replay(windows, prototype[None], mid, scores=scores[:, None], smooth_windows=0)) <= count:
            hi = mid
        else:
            lo = mid
    return hi


def rate_curve(windows: Windows, prototype: np.ndarray, smooth_windows: int = SMOOTH_WINDOWS) -> np.ndarray:
    """``(count, threshold)`` rows: for each count n of ``CURVE_COUNTS``, the threshold at which the
    cohort's detections of ``prototype`` reach n (the lowest that gives n - 1, to 1e-5: the n-th
    detection's score), windows scored as a detector with ``smooth_windows`` scores them."""
    scores = _scores(windows, prototype, smooth_windows)
    return np.array([(n, _bisect(windows, prototype, n - 1, scores)) for n in CURVE_COUNTS])


def threshold_for_rate(windows: Windows, prototype: np.ndarray, per_hour: float,
                       curve: np.ndarray | None = None, smooth_windows: int = SMOOTH_WINDOWS) -> float:
    """The cosine threshold at which ``prototype`` is detected ``per_hour`` times an hour in the
    cohort ``windows``: between counted points of its ``rate_curve`` (log count against threshold,
    linearly), below them the tail fitted through ``TAIL_COUNTS`` followed down, above them counted."""
    if per_hour <= 0:
        raise ValueError(f"a false-alarm rate must be positive, got {per_hour}")
    curve = rate_curve(windows, prototype, smooth_windows) if curve is None else curve
    count = per_hour * windows.seconds / 3600
    logs, thresholds = np.log(curve[:, 0]), curve[:, 1]
    if count > curve[-1, 0]:
        return _bisect(windows, prototype, count, _scores(windows, prototype, smooth_windows))
    if count >= curve[0, 0]:
        return float(np.interp(np.log(count), logs, thresholds))
    tail = slice(0, len(TAIL_COUNTS))
    slope, intercept = np.polyfit(logs[tail], thresholds[tail], 1)  # threshold against log count
    return float(min(intercept + slope * np.log(count), 1.0))


class Cohort:
    """Running speech without the keywords, as the encoder sees it: ``Windows`` saved with the encoder.

    Args:
        windows: The cohort stream's gated windows (``record_windows``).
        hop: The hop they were recorded with (the detector's must match).
    """

    def __init__(self, windows: Windows, hop: float):
        self.windows, self.hop = windows, hop
        self._curves: dict[tuple[bytes, int], np.ndarray] = {}

    @property
    def hours(self) -> float:
        return self.windows.seconds / 3600

    def threshold(self, prototype: np.ndarray, per_hour: float, smooth_windows: int = SMOOTH_WINDOWS) -> float:
        """``threshold_for_rate`` of a keyword's prototype for a detector that smooths over
        ``smooth_windows`` (its ``rate_curve`` remembered: other rates are free)."""
        key = (np.asarray(prototype, np.float64).tobytes(), smooth_windows)
        if key not in self._curves:
            self._curves[key] = rate_curve(self.windows, np.asarray(prototype), smooth_windows)
        return threshold_for_rate(self.windows, np.asarray(prototype), per_hour, self._curves[key], smooth_windows)

    def thresholds(self, prototypes: Sequence[np.ndarray], false_alarms_per_hour: float,
                   smooth_windows: int = SMOOTH_WINDOWS) -> np.ndarray:
        """One threshold per keyword: the asked rate for all of them, shared equally."""
        return np.array([self.threshold(p, false_alarms_per_hour / len(prototypes), smooth_windows)
                         for p in prototypes])

    def save(self, path: str | os.PathLike) -> None:
        """Writes the cohort to ``path`` (whole or not at all: a cohort already there survives a failed write)."""
        w, tmp = self.windows, pathlib.Path(f"{path}.tmp")
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to another name
            np.savez_compressed(f, starts=w.starts, onsets=w.onsets.astype(np.float32),
                                embeddings=w.embeddings.astype(np.float16), samples=w.samples, seconds=w.seconds,
                                hop=self.hop)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Cohort":
        """A saved cohort; a one-line error naming the file if it is not one."""
        try:
            with np.load(path) as f:
                hop = float(f["hop"])
                windows = Windows(f["starts"], f["onsets"].astype(np.float64), f["embeddings"].astype(np.float32),
                                  int(f["samples"]), float(f["seconds"]), max(1, int(round(hop * SAMPLE_RATE))))
                return cls(windows, hop)
        except (OSError, ValueError, KeyError) as err:
            what = files.describe(path) if pathlib.Path(path).exists() else "missing"
            raise ValueError(f"{path}: not a cohort file ({what}: {err}; tfresnet-kws calibrate writes one)") from None


def build_cohort(spotter, words: Sequence[np.ndarray], noise: Sequence[np.ndarray] = (), hours: float = 8.0,
                 snr_db: tuple[float, float] = (5.0, 20.0), seed: int = 0, hop: float = 0.05,
                 pace: Pace = Pace()) -> Cohort:
    """The cohort of ``spotter``'s encoder: ``hours`` of running speech of ``words`` (clips none of
    which is a keyword the user will enroll: the encoder's training words), in noise, recorded.

    Args:
        spotter: A ``KeywordSpotter`` (its encoder and clip length).
        words: The clips to speak (trimmed here), drawn at random.
        noise: Background noise recordings; each phrase is mixed with one of them at a signal-to-noise
            ratio drawn from ``snr_db`` (a stream in noise crosses thresholds at other rates than a
            clean one). None: clean speech.
        hours: Length of the cohort stream: an hour of speech takes about 45 s on 2 CPU cores. 8:
            one false alarm an hour among five keywords is then 1.6 cohort detections per keyword, close
            to the counted ones (with 2 hours, 0.4: asked for 1 an hour, 0.1-1.1 measured, BENCHMARKS.md).
        snr_db: The range of signal-to-noise ratios (dB).
        seed: The stream's seed.
        hop: The detector's hop.
        pace: ``Pace``.
    """
    words = [w for w in (trimmed(np.asarray(c, np.float32)) for c in words) if len(w)]
    if len(words) < 20:
        raise ValueError(f"a cohort needs at least 20 spoken clips of other words, got {len(words)}")
    rng, level = np.random.default_rng(seed), speech_level(words)
    noise = [np.asarray(n, np.float32) for n in noise]

    def pieces():
        for start, phrase, _ in running_speech(lambda r: words[int(r.integers(len(words)))], hours * 3600, rng, pace):
            if noise:
                snr = rng.uniform(*snr_db)
                phrase = with_noise(phrase, start, noise[int(rng.integers(len(noise)))], level / 10 ** (snr / 20))
            yield phrase

    return Cohort(record_windows(spotter.embed, spotter.samples, pieces(), hop), hop)
