"""Keyword detection in running speech, fed audio as it arrives: ``StreamingDetector``.

    detector = spotter.stream()                    # a KeywordSpotter with enrolled keywords
    for chunk in microphone_chunks():              # float32 16 kHz mono, any size (10 ms to minutes)
        for d in detector.feed(chunk):
            print(d.keyword, d.start, d.score)     # each detection once, as soon as it is confirmed
    detector.finish()                              # the end of the stream: what is still pending

A clip-long window slides every ``hop`` seconds. Each window is scored (its best keyword's cosine)
as soon as the audio it covers has arrived, in blocks of ``block`` windows whatever the chunks
were, so any chunking gives the same scores, bit for bit. A window counts when its score reaches
the threshold and its loudest 10 ms frame stands ``min_level_db`` above the noise floor (the 20th
percentile of the frame levels of the last ``history_seconds``, up to the window's end: only the
past, as a stream knows it). Windows that count and overlap (start less than a window apart) are
one word. The best of them is the word once ``confirm_seconds`` of later windows did not beat it:
it is reported then, and the later windows that overlap it are dropped as the same word. Its
start is the word's onset inside its best window: the first 10 ms frame whose level rises 40% of
the way from the floor to the window's loudest frame.

Memory stays bounded by one window, one block and the history of frame levels, however long the
stream; ``KeywordSpotter.detect`` runs a recording of any length through it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from tfresnet.kws.audio import SAMPLE_RATE

FRAME = SAMPLE_RATE // 100  # 10 ms: the frames of the level (energy) track


@dataclasses.dataclass(frozen=True)
class Detection:
    """A keyword found in a recording: where the word starts (seconds) and its score."""

    keyword: str
    start: float
    score: float


class StreamingDetector:
    """Finds enrolled keywords in audio fed chunk by chunk (the module docstring).

    Args:
        scores: Waveforms ``(windows, samples)`` -> cosine scores ``(windows, keywords)``
            (``KeywordSpotter.scores``).
        keywords: The keyword of each score column.
        samples: The window (the encoder's clip) in samples.
        threshold: The score a window must reach.
        hop: Seconds between windows.
        min_level_db: How far above the noise floor a window's loudest frame must be.
        history_seconds: The past the noise floor is taken over.
        block: Windows scored per call of ``scores`` (a fixed size: the same numbers for any chunking).
        confirm_seconds: How long after its best window a word waits for a better one before it is
            reported; later windows that overlap it are the same word, and are dropped.
    """

    def __init__(self, scores: Callable[[np.ndarray], np.ndarray], keywords: Sequence[str], samples: int,
                 threshold: float, hop: float = 0.05, min_level_db: float = 10.0, history_seconds: float = 30.0,
                 block: int = 4, confirm_seconds: float = 0.25):
        if hop <= 0 or block < 1 or history_seconds <= 0 or confirm_seconds < 0:
            raise ValueError(f"hop {hop}, block {block}, history_seconds {history_seconds} and confirm_seconds "
                             f"{confirm_seconds} must be positive")
        self.confirm = int(confirm_seconds * SAMPLE_RATE)
        self.reported = -10 * samples  # the best window of the last word reported
        self.score_fn, self.keywords, self.samples = scores, list(keywords), samples
        self.threshold, self.min_level_db, self.block = threshold, min_level_db, block
        self.step = max(1, int(round(hop * SAMPLE_RATE)))
        self.history = int(history_seconds * 100)  # frames
        self.audio = np.zeros(0, np.float32)  # the stream from sample self.audio_start on
        self.audio_start = 0
        self.levels = np.zeros(0)  # dB of each 10 ms frame, from frame self.levels_start on
        self.levels_start = 0
        self.fed = 0
        self.next_window = 0  # the start of the next window to score
        self.pending: list[int] = []  # window starts waiting for a full block
        self.best: tuple[int, str, float, float] | None = None  # (window start, keyword, onset s, score)
        self.finished = False

    @property
    def seconds(self) -> float:
        """Audio fed so far, in seconds."""
        return self.fed / SAMPLE_RATE

    def feed(self, chunk: np.ndarray) -> list[Detection]:
        """Adds ``chunk`` (float32 samples in [-1, 1], 16 kHz mono) and returns the detections it confirmed."""
        if self.finished:
            raise ValueError("the stream has finished; start a new detector")
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, chunk])
        self.fed += len(chunk)
        self._add_levels()
        found = []
        while self.next_window + self.samples <= self.fed:
            self.pending.append(self.next_window)
            self.next_window += self.step
            if len(self.pending) == self.block:
                found += self._score_block()
        self._trim()
        return found

    def finish(self) -> list[Detection]:
        """Ends the stream: scores what is left (a word cut off at the end too, its windows padded with
        silence) and returns the last detections."""
        if self.finished:
            return []
        self.finished = True
        # As if silence followed: the windows that start before the end, padded (a word cut off
        # at the end sits at their start, where a whole window would have it).
        found = []
        while self.next_window < self.fed:
            self.pending.append(self.next_window)
            self.next_window += self.step
            if len(self.pending) == self.block:
                found += self._score_block()
        found += self._score_block() if self.pending else []
        if self.best is not None:
            found.append(self._report())
        return found

    # -- inside -----------------------------------------------------------------------------------

    def _add_levels(self) -> None:
        done = self.levels_start + len(self.levels)  # frames with a level
        whole = self.fed // FRAME
        if whole > done:
            lo = done * FRAME - self.audio_start
            frames = self.audio[lo: lo + (whole - done) * FRAME].reshape(-1, FRAME).astype(np.float64)
            self.levels = np.concatenate([self.levels, 10 * np.log10((frames ** 2).mean(axis=1) + 1e-10)])

    def _trim(self) -> None:
        # Keep the audio from the oldest window still to score, the levels of the history before it.
        keep_from = min(self.pending[0] if self.pending else self.next_window, (self.fed // FRAME) * FRAME)
        if keep_from > self.audio_start:
            self.audio = self.audio[keep_from - self.audio_start:]
            self.audio_start = keep_from
        first_needed = max(0, keep_from // FRAME - self.history)
        if first_needed > self.levels_start:
            self.levels = self.levels[first_needed - self.levels_start:]
            self.levels_start = first_needed

    def _window(self, start: int) -> np.ndarray:
        lo = start - self.audio_start
        wave = self.audio[lo: lo + self.samples]
        return np.pad(wave, (0, self.samples - len(wave))) if len(wave) < self.samples else wave

    def _score_block(self) -> list[Detection]:
        starts, self.pending = self.pending, []
        waves = np.stack([self._window(s) for s in starts] + [np.zeros(self.samples, np.float32)]
                         * (self.block - len(starts)))  # padded: the same block size every time
        scores = np.asarray(self.score_fn(waves))[:len(starts)]
        found = []
        for start, row in zip(starts, scores):
            found += self._consider(start, row)
        # A best window that no window of the next confirm_seconds beat is the word.
        if self.best is not None and self.next_window > self.best[0] + self.confirm:
            found.append(self._report())
        return found

    def _consider(self, start: int, row: np.ndarray) -> list[Detection]:
        """One scored window, in time order: a new best of the current word, a new word, or nothing."""
        score = float(row.max())
        if score < self.threshold:
            return []
        end_frame = min((start + self.samples) // FRAME, self.levels_start + len(self.levels))
        frames = self.levels[start // FRAME - self.levels_start: end_frame - self.levels_start]
        past = self.levels[max(0, end_frame - self.history - self.levels_start): end_frame - self.levels_start]
        if not len(frames):
            return []
        floor = float(np.percentile(past, 20))
        if frames.max() < floor + self.min_level_db:  # nothing rises above the noise: no word
            return []
        loud = np.flatnonzero(frames >= floor + 0.4 * (frames.max() - floor))
        onset = (start + FRAME * (loud[0] if len(loud) else 0)) / SAMPLE_RATE
        window = (start, self.keywords[int(row.argmax())], onset, score)
        if start - self.reported < self.samples:  # overlaps the word reported last: the same word
            return []
        if self.best is not None and start - self.best[0] < self.samples:  # the same word, not yet reported
            if score > self.best[3]:
                self.best = window
            return []
        found = [] if self.best is None else [self._report()]
        self.best = window
        return found

    def _report(self) -> Detection:
        start, keyword, onset, score = self.best
        self.reported, self.best = start, None
        return Detection(keyword, onset, score)
