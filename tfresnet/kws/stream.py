"""Keyword detection in running speech, fed audio as it arrives: ``StreamingDetector``.

    detector = spotter.stream()                    # a KeywordSpotter with enrolled keywords
    for chunk in microphone_chunks():              # float32 16 kHz mono, any size (10 ms to minutes)
        for d in detector.feed(chunk):
            print(d.keyword, d.start, d.score)     # each detection once, as soon as it is confirmed
    detector.finish()                              # the end of the stream: what is still pending

A clip-long window slides every ``hop`` seconds. Each window is scored (the cosine of each keyword)
as soon as the audio it covers has arrived, in blocks of ``block`` windows whatever the chunks
were, so any chunking gives the same scores, bit for bit. A window counts when a keyword's score
reaches that keyword's threshold (one cosine for all, or one per keyword:
``tfresnet.kws.calibrate`` turns a false-alarm rate into them) and its loudest 10 ms frame stands
``min_level_db`` above the noise floor (the 20th percentile of the frame levels of the last
``history_seconds``, up to the window's end: only the past, as a stream knows it); its keyword is
the one furthest above its threshold. A window's score is the mean of its own and those of the
windows that pass the gate up to ``smooth_windows`` hops either side: a keyword scores high over
the hops its whole word sits in the window, a chance likeness of other speech mostly in one (so a
window is decided ``smooth_windows`` hops after it is scored). Windows that count and overlap
(start less than a window apart) are one word (``Words``). The best of them is the word once
``confirm_seconds`` of later windows did not beat it: it is reported then, and the later windows
that overlap it are dropped as the same word. Its start is the word's onset inside its best window:
the start of the longest run of 10 ms frames whose level rises 40% of the way from the floor to the
window's loudest frame (running speech leaves the cut-off ends of the neighbouring words in a
window, shorter than the word it holds whole).

Memory stays bounded by one window, one block, the scores of ``2 * smooth_windows + 1`` windows and
the history of frame levels, however long the stream; ``KeywordSpotter.detect`` runs a recording of
any length through it. ``WindowRecorder`` keeps each window's embedding and gate instead, and
``replay`` makes the same decisions from them for any keywords and thresholds (benchmarks and
calibration embed a long stream once).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence

import numpy as np

from tfresnet.kws.audio import SAMPLE_RATE

FRAME = SAMPLE_RATE // 100  # 10 ms: the frames of the level (energy) track
# Quieter stretches shorter than this (frames) stay inside a word: the closure of a stop consonant
# ("dog", "visual"); the pauses between words of running speech are longer.
GAP_FRAMES = 12
# A window's score is the mean over it and up to this many gated windows either side (at the 0.05 s
# hop, 0.1 s). Measured on five hours of running speech (BENCHMARKS.md): keywords found at 1 false
# alarm an hour, 10 dB, 3-clip enrollment, 32% with 0, 38% with 1, 44% with 2, 42% with 4.
SMOOTH_WINDOWS = 2


@dataclasses.dataclass(frozen=True)
class Detection:
    """A keyword found in a recording: where the word starts (seconds) and its score."""

    keyword: str
    start: float
    score: float


def word_onset(loud: np.ndarray, gap: int = GAP_FRAMES) -> int:
    """The first frame of the longest run of ``loud`` frames (runs closer than ``gap`` frames are one
    word): in running speech a window holds its word whole and the cut-off ends of its neighbours."""
    frames = np.flatnonzero(loud)
    if not len(frames):
        return 0
    breaks = np.flatnonzero(np.diff(frames) > gap)
    firsts = np.concatenate([[0], breaks + 1])
    lasts = np.concatenate([breaks, [len(frames) - 1]])
    longest = int(np.argmax(frames[lasts] - frames[firsts]))
    return int(frames[firsts[longest]])


class Words:
    """Windows that count, in time order, to words: the grouping of the module docstring.

    Pure bookkeeping (no audio), shared by the detector and ``replay``: ``add`` each window that
    counts, in time order; ``due(next_window)`` after each block of windows is scored; ``finish``
    at the end.

    Args:
        samples: The window in samples (windows whose starts are closer overlap).
        confirm: Samples after its best window before a word is reported.
    """

    def __init__(self, samples: int, confirm: int):
        self.samples, self.confirm = samples, confirm
        self.reported = -10 * samples  # the best window of the last word reported
        self.best: tuple[int, int, float, float, float] | None = None  # (start, keyword, onset s, score, margin)

    def due(self, next_window: int) -> list[tuple]:
        """The current word, if the next window to score starts more than ``confirm`` after its best."""
        return [self._report()] if self.best is not None and next_window > self.best[0] + self.confirm else []

    def add(self, window: tuple[int, int, float, float, float]) -> list[tuple]:
        """A window that counts: ``(start, keyword index, onset s, score, margin above its threshold)``."""
        start = window[0]
        if start - self.reported < self.samples:  # overlaps the word reported last: the same word
            return []
        if self.best is not None and start - self.best[0] < self.samples:  # the same word, not yet reported
            if window[4] > self.best[4]:
                self.best = window
            return []
        found = [] if self.best is None else [self._report()]
        self.best = window
        return found

    def finish(self) -> list[tuple]:
        """The word still waiting, if any."""
        return [self._report()] if self.best is not None else []

    def _report(self) -> tuple:
        found, self.best = self.best, None
        self.reported = found[0]
        return found


def smoothed(rows: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of a window's scores and its neighbours', summed in time order (``replay`` and the
    detector add in the same order: the same numbers, bit for bit)."""
    total = np.zeros_like(rows[0])
    for row in rows:
        total = total + row
    return total / len(rows)


def _thresholds(threshold: float | Sequence[float], keywords: int) -> np.ndarray:
    out = np.asarray(threshold, np.float64)
    out = np.full(keywords, float(out)) if out.ndim == 0 else out
    if out.shape != (keywords,):
        raise ValueError(f"{len(out)} thresholds for {keywords} keywords: give one, or one per keyword")
    return out


class StreamingDetector:
    """Finds enrolled keywords in audio fed chunk by chunk (the module docstring).

    Args:
        scores: Waveforms ``(windows, samples)`` -> cosine scores ``(windows, keywords)``
            (``KeywordSpotter.scores``).
        keywords: The keyword of each score column.
        samples: The window (the encoder's clip) in samples.
        threshold: The score a window must reach: one cosine, or one per keyword.
        hop: Seconds between windows.
        min_level_db: How far above the noise floor a window's loudest frame must be.
        history_seconds: The past the noise floor is taken over.
        block: Windows scored per call of ``scores`` (a fixed size: the same numbers for any chunking).
        confirm_seconds: How long after its best window a word waits for a better one before it is
            reported; later windows that overlap it are the same word, and are dropped.
        smooth_windows: A window's score is the mean over it and the gated windows up to this many
            hops either side (0: its own).
    """

    def __init__(self, scores: Callable[[np.ndarray], np.ndarray], keywords: Sequence[str], samples: int,
                 threshold: float | Sequence[float], hop: float = 0.05, min_level_db: float = 10.0,
                 history_seconds: float = 30.0, block: int = 4, confirm_seconds: float = 0.25,
                 smooth_windows: int = SMOOTH_WINDOWS):
        if hop <= 0 or block < 1 or history_seconds <= 0 or confirm_seconds < 0 or smooth_windows < 0:
            raise ValueError(f"hop {hop}, block {block}, history_seconds {history_seconds}, confirm_seconds "
                             f"{confirm_seconds} and smooth_windows {smooth_windows} must be positive")
        self.score_fn, self.keywords, self.samples = scores, list(keywords), samples
        self.thresholds = _thresholds(threshold, len(self.keywords))
        self.min_level_db, self.block = min_level_db, block
        self.words = Words(samples, int(confirm_seconds * SAMPLE_RATE))
        self.step = max(1, int(round(hop * SAMPLE_RATE)))
        self.history = int(history_seconds * 100)  # frames
        self.audio = np.zeros(0, np.float32)  # the stream from sample self.audio_start on
        self.audio_start = 0
        self.levels = np.zeros(0)  # dB of each 10 ms frame, from frame self.levels_start on
        self.levels_start = 0
        self.fed = 0
        self.next_window = 0  # the start of the next window to score
        self.pending: list[int] = []  # window starts waiting for a full block
        self.reach = smooth_windows * self.step  # samples either side a window's score is averaged over
        self.gated: list[tuple[int, float, np.ndarray]] = []  # (start, onset s, scores): the neighbours kept
        self.undecided = 0  # windows that start before it are decided
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
        found += [self._detection(w) for w in self._decide(self.fed)]  # no later windows to wait for
        return found + [self._detection(w) for w in self.words.finish()]

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
        rows = np.asarray(self.score_fn(waves))[:len(starts)]
        found = []
        for start, row in zip(starts, rows):
            found += self._scored(start, row)
        # A best window that no window of the next confirm_seconds beat is the word (the windows up
        # to reach before the next one are decided).
        return [self._detection(w) for w in found + self.words.due(self.next_window - self.reach)]

    def _scored(self, start: int, row: np.ndarray) -> list[tuple]:
        """One scored window, in time order: the words it ends (the windows it decides start new ones)."""
        gate = self._gate(start)
        if gate is not None:  # else nothing rises above the noise: no word, and no neighbour
            self.gated.append((start, gate, np.asarray(row)))
        return self._decide(start - self.reach)

    def _decide(self, last: int) -> list[tuple]:
        """Decides the gated windows not yet decided that start at or before ``last`` (their neighbours
        up to ``reach`` later are scored), in time order: the words they end."""
        found = []
        for start, gate, _ in [w for w in self.gated if self.undecided <= w[0] <= last]:
            row = smoothed([r for s, _, r in self.gated if abs(s - start) <= self.reach])
            margins = row - self.thresholds
            best = int(margins.argmax())
            if margins[best] >= 0:
                found += self.words.add((start, best, gate, float(row[best]), float(margins[best])))
        self.undecided = max(self.undecided, last + 1)
        self.gated = [w for w in self.gated if w[0] >= self.undecided - self.reach]
        return found

    def _gate(self, start: int) -> float | None:
        """The word's onset (seconds) if the window's loudest frame stands above the noise floor, else None."""
        end_frame = min((start + self.samples) // FRAME, self.levels_start + len(self.levels))
        frames = self.levels[start // FRAME - self.levels_start: end_frame - self.levels_start]
        past = self.levels[max(0, end_frame - self.history - self.levels_start): end_frame - self.levels_start]
        if not len(frames):
            return None
        floor = float(np.percentile(past, 20))
        if frames.max() < floor + self.min_level_db:
            return None
        return (start + FRAME * word_onset(frames >= floor + 0.4 * (frames.max() - floor))) / SAMPLE_RATE

    def _detection(self, word: tuple) -> Detection:
        _, keyword, onset, score, _ = word
        return Detection(self.keywords[keyword], onset, score)


@dataclasses.dataclass
class Windows:
    """The windows of a stream that pass the energy gate: what ``replay`` needs to decide again.

    Attributes:
        starts: Each window's first sample ``(windows,)``, in time order.
        onsets: The onset (seconds) inside each window ``(windows,)``.
        embeddings: Unit-length embeddings ``(windows, dim)``.
        samples: The window in samples.
        seconds: The length of the stream.
        step: Samples between windows (the hop).
    """

    starts: np.ndarray
    onsets: np.ndarray
    embeddings: np.ndarray
    samples: int
    seconds: float
    step: int


class WindowRecorder(StreamingDetector):
    """A detector that decides nothing: it keeps the embedding and onset of every window that passes
    the energy gate (``windows()``), for ``replay`` with any keywords and thresholds.

    Args:
        embed: Waveforms ``(windows, samples)`` -> unit embeddings ``(windows, dim)``.
        samples, hop, min_level_db, history_seconds, block: As ``StreamingDetector``'s.
    """

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray], samples: int, hop: float = 0.05,
                 min_level_db: float = 10.0, history_seconds: float = 30.0, block: int = 4):
        super().__init__(embed, [], samples, np.zeros(0), hop, min_level_db, history_seconds, block, smooth_windows=0)
        self.kept: list[tuple[int, float, np.ndarray]] = []

    def _scored(self, start: int, row: np.ndarray) -> list[tuple]:
        gate = self._gate(start)
        if gate is not None:
            self.kept.append((start, gate, np.asarray(row, np.float32)))
        return []

    def windows(self) -> Windows:
        """What was kept, after ``finish()``."""
        if not self.finished:
            raise ValueError("call finish() first: the last windows are scored at the end of the stream")
        dim = self.kept[0][2].shape[0] if self.kept else 0
        return Windows(np.array([k[0] for k in self.kept], np.int64), np.array([k[1] for k in self.kept]),
                       np.stack([k[2] for k in self.kept]) if self.kept else np.zeros((0, dim), np.float32),
                       self.samples, self.fed / SAMPLE_RATE, self.step)


def smoothed_scores(windows: Windows, scores: np.ndarray, smooth_windows: int = SMOOTH_WINDOWS) -> np.ndarray:
    """Each window's ``scores`` row averaged with those of the windows up to ``smooth_windows`` hops
    either side, as the detector averages them (``smoothed``)."""
    if smooth_windows == 0 or not len(scores):
        return scores
    slots = (windows.starts // windows.step).astype(np.int64)  # a window's place on the hop grid
    grid = np.zeros((int(slots[-1]) + 2 * smooth_windows + 1, scores.shape[1]), scores.dtype)
    present = np.zeros(len(grid), bool)
    grid[slots + smooth_windows], present[slots + smooth_windows] = scores, True
    total, count = np.zeros_like(scores), np.zeros(len(scores), np.int64)
    for shift in range(-smooth_windows, smooth_windows + 1):  # in time order, as smoothed() adds
        rows = slots + smooth_windows + shift
        total = np.where(present[rows, None], total + grid[rows], total)
        count += present[rows]
    return total / count[:, None].astype(scores.dtype)


def replay(windows: Windows, prototypes: np.ndarray, thresholds: float | Sequence[float],
           keywords: Iterable[str] | None = None, confirm_seconds: float = 0.25, block: int = 4,
           scores: np.ndarray | None = None, smooth_windows: int = SMOOTH_WINDOWS) -> list[Detection]:
    """The detections a ``StreamingDetector`` with these prototypes and thresholds makes on the
    stream ``windows`` was recorded from (the same, detection for detection: tested).

    Args:
        windows: A ``WindowRecorder``'s.
        prototypes: Unit-length keyword prototypes ``(keywords, dim)``.
        thresholds: One cosine, or one per keyword.
        keywords: Their names (default ``"0", "1", ...``).
        confirm_seconds: As the detector's.
        block: As the detector's (its windows are scored, and words confirmed, a block at a time).
        scores: ``windows.embeddings @ prototypes.T``, when the caller has it (replays at many thresholds).
        smooth_windows: As the detector's.
    """
    prototypes = np.atleast_2d(np.asarray(prototypes, np.float32))
    names = list(keywords) if keywords is not None else [str(i) for i in range(len(prototypes))]
    scores = windows.embeddings @ prototypes.T if scores is None else scores
    scores = smoothed_scores(windows, scores, smooth_windows)
    margins = scores - _thresholds(thresholds, len(prototypes))
    best = margins.argmax(axis=1) if len(margins) else np.zeros(0, np.int64)
    rows = np.arange(len(best))
    counting = np.flatnonzero(margins[rows, best] >= 0)
    words, found = Words(windows.samples, int(confirm_seconds * SAMPLE_RATE)), []
    # Plain Python numbers: the loop runs over every window that counts, hundreds of thousands in a
    # benchmark's hours.
    columns = best[counting]
    span = block * windows.step  # the detector confirms words after each block of windows
    reach = smooth_windows * windows.step  # and decides a window once the window reach after it is scored
    fed = int(round(windows.seconds * SAMPLE_RATE))
    last = -(-fed // windows.step) * windows.step - reach  # the last check: the end of the stream's last block
    for start, k, onset, score, margin in zip(windows.starts[counting].tolist(), columns.tolist(),
                                              windows.onsets[counting].tolist(),
                                              scores[counting, columns].tolist(), margins[counting, columns].tolist()):
        # The last check before this window is decided: after the block before the one that scores
        # the window reach after it, or the stream's last (windows that do not count change nothing
        # in between).
        check = (start + reach) // span * span - reach if start < last else last
        found += words.due(check) + words.add((start, k, onset, score, margin))
    return [Detection(names[k], onset, score) for _, k, onset, score, _ in found + words.finish()]
