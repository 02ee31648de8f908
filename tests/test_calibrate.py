"""tfresnet.kws.calibrate: running speech, and a false-alarm rate turned into per-keyword thresholds."""

import numpy as np
import pytest

from tfresnet.kws import calibrate, stream
from tfresnet.kws.audio import SAMPLE_RATE as RATE


def test_running_speech_is_the_picked_words_at_a_natural_pace_and_the_same_for_a_seed():
    words = [np.full(int(RATE * (0.3 + 0.1 * i)), i + 1, np.float32) for i in range(5)]

    def run(seed):
        picked = []

        def pick(rng):
            picked.append(int(rng.integers(len(words))))
            return words[picked[-1]]

        phrases = list(calibrate.running_speech(pick, 120.0, np.random.default_rng(seed)))
        return phrases, picked

    phrases, picked = run(0)
    spoken = [w for _, _, ws in phrases for w in ws]
    assert len(spoken) == len(picked)
    at = 0
    for start, phrase, ws in phrases:
        assert start == at and 4 <= len(ws) <= 12
        at += len(phrase)
        for (lo, hi), _ in zip(ws, ws):
            assert lo >= start and hi <= start + len(phrase)
    assert 120 * RATE <= at < 140 * RATE
    stream_ = np.concatenate([p for _, p, _ in phrases])
    for (lo, hi), k in zip(spoken, picked):  # each word where it is said to be
        np.testing.assert_array_equal(stream_[lo:hi], words[k])
    gaps = np.array([b[0] - a[1] for a, b in zip(spoken, spoken[1:])]) / RATE
    assert gaps.min() >= 0.15 and gaps.max() <= 2.0 and np.mean(gaps < 0.6) > 0.8  # pauses, and a break per phrase
    minutes = at / RATE / 60
    assert 40 <= len(spoken) / minutes <= 80, len(spoken) / minutes  # words a minute
    again, _ = run(0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(phrases, again))
    assert not np.array_equal(run(1)[0][0][1], phrases[0][1])


def windows_with_scores(scores, seed=0):
    """A recorded stream whose windows (each its own word, in shuffled time order) score ``scores``
    against the prototype (1, 0)."""
    scores = np.asarray(scores, np.float32)
    order = np.random.default_rng(seed).permutation(len(scores))
    embeddings = np.stack([scores, np.sqrt(1 - scores ** 2)], axis=1)[order]
    starts = np.arange(len(scores)) * 2 * RATE
    return stream.Windows(starts, starts / RATE, embeddings, RATE, seconds=len(scores) * 2.0, step=800)


def test_thresholds_give_the_asked_rate_counted_and_in_the_fitted_tail():
    # Counts above t fall exactly exponentially: floor(exp((0.9 - t) / 0.02)) windows score at least t.
    scores = 0.9 - 0.02 * np.log(np.arange(1, 3001))
    windows = windows_with_scores(scores)
    hours = windows.seconds / 3600
    prototype = np.array([1.0, 0.0])
    for per_hour in (500, 50, 10):  # counted: the threshold gives the count
        t = calibrate.threshold_for_rate(windows, prototype, per_hour)
        count = per_hour * hours
        assert abs(t - (0.9 - 0.02 * np.log(count))) < 0.02 * np.log(1 + 1 / count) + 1e-3, per_hour
        # Between counted points the count is interpolated: within one detection of the asked one.
        assert abs(calibrate.detections_per_hour(windows, prototype, t) * hours - count) <= 1
    for per_hour in (1, 0.1):  # fewer than 3 in the cohort: the tail's line, followed down
        count = per_hour * hours
        t = calibrate.threshold_for_rate(windows, prototype, per_hour)
        assert abs(t - (0.9 - 0.02 * np.log(count))) < 0.006, (per_hour, t)
    with pytest.raises(ValueError, match="must be positive"):
        calibrate.threshold_for_rate(windows, prototype, 0)


def test_a_keyword_near_common_words_gets_a_higher_threshold_and_a_cohort_file_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    # Words of the cohort cluster around direction (1, 0, 0); keyword a sits near them, b far.
    dirs = rng.normal([1, 0, 0], 0.3, (2000, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    starts = np.arange(2000) * 2 * RATE
    windows = stream.Windows(starts, starts / RATE, dirs.astype(np.float32), RATE, 4000.0, 800)
    cohort = calibrate.Cohort(windows, hop=0.05)
    a, b = np.array([0.9, 0.436, 0]), np.array([0, 0.6, 0.8])
    ta, tb = cohort.thresholds([a / np.linalg.norm(a), b / np.linalg.norm(b)], 20)
    assert ta > tb
    for proto, t in ((a, ta), (b, tb)):  # in the cohort itself, each keyword gets half of the asked 20 an hour
        assert 9 <= calibrate.detections_per_hour(windows, proto / np.linalg.norm(proto), t) <= 10
    cohort.save(tmp_path / "cohort.npz")
    again = calibrate.Cohort.load(tmp_path / "cohort.npz")
    assert again.hop == 0.05 and again.hours == pytest.approx(4000 / 3600)
    assert np.allclose(again.thresholds([a / np.linalg.norm(a)], 10), ta, atol=2e-3)
    (tmp_path / "bad.npz").write_text("not a cohort")
    with pytest.raises(ValueError, match=r"bad.npz: not a cohort file \(text.*tfresnet-kws calibrate writes one\)"):
        calibrate.Cohort.load(tmp_path / "bad.npz")
