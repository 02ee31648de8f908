"""tfresnet.kws.stream: keyword detection on audio fed as it arrives, the same in any chunks."""

import io
import wave

import keras
import numpy as np
import pytest

from tfresnet import cli, models
from tfresnet.kws import audio, spotting, stream
from tfresnet.kws.stream import StreamingDetector

RATE = audio.SAMPLE_RATE


def sweep(f0, f1, seconds=0.6):
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / seconds / 2) * t) * np.hanning(len(t))).astype(np.float32)


WORDS = {"up": sweep(300, 1500), "down": sweep(1500, 300), "flat": sweep(900, 950)}


@pytest.fixture(scope="module")
def spotter():
    """An untrained small encoder: its arithmetic is the detector's, the words are chirps. Its scores
    peak sharply (a chirp scores 0.96 in its best window, 0.76-0.86 a hop either side; 0.77 averaged
    over the five windows of ``stream.SMOOTH_WINDOWS``), hence 0.75."""
    keras.utils.set_random_seed(5)  # the same weights every run: an untrained encoder's scores depend on them
    encoder = models.create_model("protores", input_shape=(98, 40, 1), widths=[4, 4, 4])
    spotter = spotting.KeywordSpotter(encoder, threshold=0.75)
    for name in ("up", "down"):
        clip = np.zeros(RATE, np.float32)
        clip[200:200 + len(WORDS[name])] = WORDS[name]
        spotter.enroll(name, [clip])
    return spotter


def recording(events, seconds, seed=0):
    """Quiet noise with ``(word, onset seconds)`` said in it."""
    rng = np.random.default_rng(seed)
    wave_ = (0.003 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)
    for word, onset in events:
        start = int(onset * RATE)
        said = WORDS[word][:len(wave_) - start]  # a recording may end mid-word
        wave_[start:start + len(said)] += said
    return wave_


EVENTS = [("up", 1.0), ("flat", 3.2), ("down", 5.05), ("up", 7.5), ("down", 8.6)]


def test_any_chunking_gives_the_offline_detections_as_soon_as_confirmed(spotter):
    wave_ = recording(EVENTS, 11.0)
    offline = spotter.detect(wave_)
    assert [d.keyword for d in offline] == ["up", "down", "up", "down"], offline  # not "flat", not enrolled
    assert all(abs(d.start - onset) <= 0.1 for d, onset in zip(offline, [1.0, 5.05, 7.5, 8.6])), offline
    rng = np.random.default_rng(1)
    for trial in range(4):
        detector, got, fed = spotter.stream(), [], 0
        while fed < len(wave_):
            size = int(rng.choice([160, 1_000, 4_000, 16_000, 50_000]) * rng.uniform(0.5, 1.5)) if trial else 160
            for d in detector.feed(wave_[fed:fed + size]):
                got.append(d)
                word_end = next(on for w, on in EVENTS if abs(on - d.start) < 0.2) + 0.6
                # As soon as confirmed: the rest of its window (a chirp sits at the start of its best
                # window, as enrolled), confirm_seconds, a block of windows, and the chunk that confirmed it.
                assert (fed + size) / RATE - word_end <= 0.4 + 0.25 + 0.05 + 4 * 0.05 + 0.05 + size / RATE, (d, fed)
            fed += size
        got += detector.finish()
        assert got == offline, trial
        # What it holds is a window, a block and the levels' history: not the 11 s fed.
        assert len(detector.audio) <= RATE + 4 * 800 + 50_000 * 1.5 and len(detector.levels) <= 3000 + 200


def test_a_stream_that_ends_mid_word_still_reports_it(spotter):
    wave_ = recording([("up", 1.0), ("down", 2.5)], 2.5 + 0.45)  # cut 0.45 s into the 0.6 s "down"
    detector = spotter.stream()
    during = [d for i in range(0, len(wave_), 1600) for d in detector.feed(wave_[i:i + 1600])]
    assert [d.keyword for d in during] == ["up"]
    last = detector.finish()
    assert [d.keyword for d in last] == ["down"] and abs(last[0].start - 2.5) < 0.1
    assert detector.finish() == [] and spotter.detect(wave_) == during + last
    with pytest.raises(ValueError, match="the stream has finished"):
        detector.feed(wave_[:10])
    # A detector keeps the keywords of its start: one enrolled meanwhile is not among its names.
    detector = spotter.stream()
    spotter.enroll("flat", [WORDS["flat"]])
    try:
        assert {d.keyword for d in detector.feed(wave_) + detector.finish()} == {"up", "down"}
    finally:
        del spotter.keywords["flat"]


def test_memory_does_not_grow_with_the_length_of_the_stream():
    """Half an hour through the detector (a stand-in scorer: the arithmetic, not the encoder)."""
    calls = []

    def scores(waves):
        calls.append(len(waves))
        return np.full((len(waves), 1), 0.1)

    detector = StreamingDetector(scores, ["x"], RATE, threshold=0.5)
    rng = np.random.default_rng(0)
    gated = 0
    for _ in range(30 * 60):
        second = (0.01 * rng.standard_normal(RATE)).astype(np.float32)
        second[4000:6000] *= 30  # a loud burst: windows over it pass the gate and are kept as neighbours
        assert detector.feed(second) == []
        assert len(detector.audio) <= RATE + 4 * 800 and len(detector.levels) <= 3000 + 200
        assert len(detector.gated) <= 2 * stream.SMOOTH_WINDOWS + 1  # the neighbours a decision needs
        gated = max(gated, len(detector.gated))
    assert detector.finish() == [] and set(calls) == {4} and sum(calls) >= 30 * 60 * 20 - 20
    assert gated > 0


def wav_bytes(wave_, rate=RATE, channels=1, width=2):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes((np.clip(wave_, -1, 1) * 32767).astype("<i2").tobytes() if width == 2 else
                      bytes(len(wave_) * channels))
    return buffer.getvalue()


def test_pcm_chunks_read_a_wav_stream_or_raw_pcm_and_name_what_they_cannot(tmp_path):
    wave_ = (np.arange(1000) / 1000 - 0.5).astype(np.float32)
    pcm = (wave_ * 32767).astype("<i2")
    for data in (wav_bytes(wave_), pcm.tobytes()):
        got = np.concatenate(list(audio.pcm_chunks(io.BufferedReader(io.BytesIO(data)), seconds=0.01)))
        np.testing.assert_array_equal(got, pcm.astype(np.float32) / 32768)
    for data, what in ((wav_bytes(wave_, rate=8000), "16-bit PCM, 8000 Hz, mono"),
                       (wav_bytes(wave_, channels=2), "16-bit PCM, 16000 Hz, stereo"),
                       (wav_bytes(wave_, width=1), "8-bit PCM, 16000 Hz, mono")):
        with pytest.raises(ValueError, match=f"standard input: {what}; expected 16-bit PCM, 16000 Hz, mono"):
            next(audio.pcm_chunks(io.BufferedReader(io.BytesIO(data))))
    (tmp_path / "a.wav").write_bytes(wav_bytes(wave_))
    np.testing.assert_array_equal(np.concatenate(list(audio.wav_chunks(tmp_path / "a.wav", 0.01))),
                                  pcm.astype(np.float32) / 32768)


def test_listen_prints_detections_of_standard_input(spotter, tmp_path, monkeypatch, capsys):
    encoder_file = tmp_path / "encoder.keras"
    spotter.encoder.save(encoder_file)
    keywords = tmp_path / "k.json"
    spotter.save_keywords(keywords)
    wave_ = recording([("up", 1.0), ("flat", 2.2), ("down", 3.4)], 5.0)
    heard = (np.clip(wave_, -1, 1) * 32767).astype("<i2").astype(np.float32) / 32768  # what 16-bit PCM carries
    expected = [f"{d.start:.2f} {d.keyword} {d.score:.3f}" for d in spotter.detect(heard)]
    assert [line.split()[1] for line in expected] == ["up", "down"]
    flags = [f"--model={encoder_file}", f"--keywords={keywords}", f"--threshold={spotter.threshold}"]
    for data in (wav_bytes(wave_), (np.clip(wave_, -1, 1) * 32767).astype("<i2").tobytes()):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
        assert cli.kws_main(["tfresnet-kws", "listen", *flags]) == 0
        assert capsys.readouterr().out.splitlines() == expected
    (tmp_path / "s.wav").write_bytes(wav_bytes(wave_))
    assert cli.kws_main(["tfresnet-kws", "listen", *flags, str(tmp_path / "s.wav")]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(wav_bytes(wave_, rate=8000)))))
    assert cli.kws_main(["tfresnet-kws", "listen", *flags]) == 2
    err = capsys.readouterr().err
    assert err == ("tfresnet-kws: error: standard input: 16-bit PCM, 8000 Hz, mono; expected 16-bit PCM, 16000 Hz, "
                   "mono (convert it: sox IN -r 16000 -b 16 -c 1 -t wav -)\n")


def test_replay_of_recorded_windows_makes_the_detectors_decisions(spotter):
    """The benchmark and the calibration embed a stream once and replay the decisions: the same ones."""
    wave_ = recording(EVENTS + [("flat", 9.9), ("up", 10.8)], 12.0, seed=3)
    recorder = stream.WindowRecorder(spotter.embed, spotter.samples)
    for i in range(0, len(wave_), 3_000):
        recorder.feed(wave_[i:i + 3_000])
    recorder.finish()
    windows = recorder.windows()
    assert windows.seconds == len(wave_) / RATE and len(windows.starts) < 12 * 20  # the gate keeps the words' windows
    names, prototypes = list(spotter.keywords), np.stack(list(spotter.keywords.values()))
    for smooth, high in [(0, 0.85), (2, 0.75), (1, 0.8)]:  # each window's own score, or averaged
        for thresholds in (high, [high, 0.95], [0.99, high], [0.6, 0.6]):
            detector = StreamingDetector(lambda w: spotter.embed(w) @ prototypes.T, names, spotter.samples,
                                         thresholds, smooth_windows=smooth)
            live = [d for i in range(0, len(wave_), 5_000) for d in detector.feed(wave_[i:i + 5_000])]
            live += detector.finish()
            replayed = stream.replay(windows, prototypes, thresholds, names, smooth_windows=smooth)
            assert [(d.keyword, d.start) for d in replayed] == [(d.keyword, d.start) for d in live], thresholds
            np.testing.assert_allclose([d.score for d in replayed], [d.score for d in live], atol=1e-5)
            if thresholds == [0.99, high]:  # "up" held to a threshold it never reaches: only "down" is left
                assert {d.keyword for d in live} == {"down"}
            if thresholds == high:
                assert [d.keyword for d in live] == ["up", "down", "up", "down", "up"], smooth
    with pytest.raises(ValueError, match="3 thresholds for 2 keywords"):
        StreamingDetector(lambda w: w, names, spotter.samples, [0.1, 0.2, 0.3])


def test_a_words_onset_is_the_start_of_the_longest_loud_run_of_its_window():
    loud = np.zeros(100, bool)
    loud[0:18] = True  # the cut-off end of the word before
    loud[40:52] = loud[58:85] = True  # the word itself: a stop's closure (6 frames) inside it
    loud[95:100] = True  # the start of the next word
    assert stream.word_onset(loud) == 40
    assert stream.word_onset(loud, gap=3) == 58  # closures longer than gap split a word
    assert stream.word_onset(np.zeros(100, bool)) == 0
    loud[:] = False
    loud[7:9] = True
    assert stream.word_onset(loud) == 7


def test_smoothing_averages_gated_neighbours_and_the_cli_defaults_to_it():
    """A window's score is the mean over the windows that passed the gate up to ``smooth_windows``
    hops either side: missing neighbours (gated out) are left out, not counted as zeros."""
    step = 800
    windows = stream.Windows(np.array([0, 1, 2, 4, 7]) * step, np.zeros(5), np.zeros((5, 1), np.float32), RATE,
                             10.0, step)
    scores = np.array([[1.0], [2.0], [4.0], [8.0], [16.0]], np.float32)
    np.testing.assert_array_equal(stream.smoothed_scores(windows, scores, 0), scores)
    np.testing.assert_allclose(stream.smoothed_scores(windows, scores, 1)[:, 0], [1.5, 7 / 3, 3.0, 8.0, 16.0])
    np.testing.assert_allclose(stream.smoothed_scores(windows, scores, 2)[:, 0], [7 / 3, 7 / 3, 15 / 4, 6.0, 16.0])
    assert stream.smoothed([scores[0], scores[1], scores[2]]) == np.float32(7 / 3)
    from tfresnet.cli import tools  # noqa: PLC0415

    assert tools.KWS_FLAGS["smooth_windows"].default == stream.SMOOTH_WINDOWS
    with pytest.raises(ValueError, match="smooth_windows -1 must be positive"):
        StreamingDetector(lambda w: w, ["x"], RATE, 0.5, smooth_windows=-1)
