"""Keyword audio: the Speech Commands layout, honest splits, augmentation, log-mel features."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import SPOKEN_KEYWORDS, write_wav
from tfresnet.kws import audio as A
from tfresnet.kws import augment as clip_augment
from tfresnet.kws import logmel


def test_speech_commands_layout_is_read_correctly(tmp_path):
    waves, labels = A.synthetic_keywords(2, 2, seconds=1.0)
    for i, (wave, label) in enumerate(zip(waves, labels)):
        write_wav(tmp_path / ["yes", "no"][label] / f"spk{i % 2}_nohash_0.wav", wave)
    write_wav(tmp_path / "_background_noise_" / "white.wav", np.full(32000, 0.1))
    write_wav(tmp_path / "yes" / "short_nohash_0.wav", np.full(8000, 0.5))  # padded to 1 s
    write_wav(tmp_path / "yes" / "long_nohash_0.wav", np.full(24000, 0.25))  # cropped to 1 s
    write_wav(tmp_path / "yes" / "_hidden.wav", np.ones(16000))  # skipped, like _background_noise_
    (tmp_path / "yes" / "README.txt").write_text("not audio")  # skipped
    (tmp_path / "_unknown_").mkdir()
    clips = A.load_keyword_folder(tmp_path)
    assert clips.keywords == ["no", "yes"] and clips.waveforms.shape == (6, A.SAMPLE_RATE)
    assert sorted(set(clips.speakers)) == ["long", "short", "spk0", "spk1"]
    assert len(clips.noise) == 1 and clips.noise[0].shape == (32000,)
    short = clips.waveforms[list(clips.speakers).index("short")]
    assert np.allclose(short[:8000], 0.5, atol=1e-4) and not short[8000:].any()
    np.testing.assert_allclose(clips.waveforms[list(clips.speakers).index("long")], 0.25, atol=1e-4)
    np.testing.assert_allclose(clips.waveforms[clips.labels == 0], waves[2:4], atol=1e-4)
    # A malformed WAV is one line naming the file.
    (tmp_path / "no" / "bad_nohash_0.wav").write_bytes(b"RIFF\x00\x00\x00\x00junkjunk")
    with pytest.raises(ValueError, match=r"^\S+bad_nohash_0.wav: not a readable 16-bit PCM WAV file \(it is a RIFF file\)"):
        A.load_keyword_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        A.load_keyword_folder(tmp_path / "missing")


def test_keyword_lists_and_speakers_are_disjoint_and_fixed():
    lists = [set(A.TRAIN_WORDS), set(A.VALIDATION_WORDS), set(A.TEST_WORDS)]
    assert [len(w) for w in lists] == [20, 5, 10] and len(set.union(*lists)) == 35
    assert A.word_split("dog") == "test" and A.word_split("bird") == "validation" and A.word_split("yes") == "train"
    speakers = [f"s{i:02d}" for i in range(30)]
    held_out = A.held_out_speakers(speakers)
    assert len(held_out) == 10 and held_out == A.held_out_speakers(list(reversed(speakers)))


@pytest.mark.needs_keywords
def test_shared_spoken_keywords_split_into_words_and_speakers():
    clips = A.load_keyword_folder(SPOKEN_KEYWORDS)
    assert len(clips.keywords) == 35 and "_background_noise_" not in clips.keywords and len(clips.noise) == 3
    parts = {s: A.keyword_split(clips, s) for s in A.KEYWORD_SPLITS}
    words = {s: {p.keywords[i] for i in set(p.labels)} for s, p in parts.items()}
    assert words == {"train": set(A.TRAIN_WORDS), "validation": set(A.VALIDATION_WORDS), "test": set(A.TEST_WORDS)}
    speakers = {s: set(p.speakers) for s, p in parts.items()}
    assert len(speakers["train"]) == 20 and speakers["validation"] == speakers["test"]
    assert len(speakers["test"]) == 10 and not speakers["train"] & speakers["test"]
    assert [len(p.labels) for p in parts.values()] == [400, 50, 100]  # each speaker says each word once


def test_augmentation_is_seeded_and_does_what_it_says():
    wave = np.zeros((2, 1000), np.float32)
    wave[:, 500] = 1.0
    shifted = clip_augment.shift(tf.constant(wave), 100, tf.constant([1, 2], tf.int64)).numpy()
    moved = np.flatnonzero(shifted[0])[0] - 500
    assert abs(moved) <= 100 and shifted.sum() == 2
    np.testing.assert_array_equal(shifted, clip_augment.shift(tf.constant(wave), 100, tf.constant([1, 2], tf.int64)))
    noise = tf.random.stateless_normal([20000], [0, 1])
    signal = 0.3 * tf.sin(tf.range(1000, dtype=tf.float32) / 3.0)[None, :] * tf.ones([64, 1])  # no clipping
    mixed = clip_augment.mix_noise(signal, noise, 1.0, (10.0, 10.0), tf.constant([3, 4], tf.int64))
    snr = 10 * np.log10(np.mean(signal.numpy() ** 2) / np.mean((mixed - signal).numpy() ** 2, axis=1))
    np.testing.assert_allclose(snr, 10.0, atol=0.5)  # the mix is at the SNR asked for
    feats = tf.ones([3, 98, 40, 1])
    masked = clip_augment.mask_features(feats, tf.constant([5, 6], tf.int64)).numpy()
    assert 0 < (masked == 0).mean() < 0.5
    warped = clip_augment.warp_features(tf.reshape(tf.range(98.0), [1, 98, 1, 1]) * tf.ones([1, 1, 40, 1]), 0.2, 0.0,
                             tf.constant([7, 8], tf.int64)).numpy()[0, :, 0, 0]
    assert 0.8 <= warped[50] / 50 <= 1.2 and np.all(np.diff(warped) >= 0)


def _tones(spans, freqs, amplitudes, samples=A.SAMPLE_RATE):
    """One clip per (span in seconds, frequency, amplitude): a tone there, silence elsewhere."""
    t = np.arange(samples) / A.SAMPLE_RATE
    waves = np.zeros((len(spans), samples), np.float32)
    for row, ((start, end), freq, amplitude) in enumerate(zip(spans, freqs, amplitudes)):
        on = (t >= start) & (t < end)
        waves[row, on] = amplitude * np.sin(2 * np.pi * freq * t[on])
    return waves


def _frequency(piece):
    """The dominant frequency (Hz) of a stretch of samples."""
    return np.fft.rfftfreq(len(piece), 1 / A.SAMPLE_RATE)[np.abs(np.fft.rfft(piece)).argmax()]


def test_speech_spans_find_the_word():
    waves = _tones([(0.2, 0.6), (0.05, 0.93)], [500, 2000], [0.5, 0.01])
    waves[0] += 1e-4 * np.random.default_rng(0).standard_normal(A.SAMPLE_RATE).astype(np.float32)  # -70 dB floor
    spans = clip_augment.speech_spans(waves) / A.SAMPLE_RATE
    np.testing.assert_allclose(spans, [[0.2, 0.6], [0.05, 0.93]], atol=0.0101)  # to the 10 ms frame


def test_word_splicer_joins_the_start_of_one_word_to_the_end_of_another_by_the_same_speaker():
    # Three words (500, 1500, 3000 Hz tones of different lengths), each said by two speakers who
    # differ in loudness: a pseudo-word must take both of its parts from one speaker.
    spans = [(0.2, 0.6), (0.3, 0.5), (0.1, 0.8)] * 2
    freqs, amplitudes = [500, 1500, 3000] * 2, [0.5] * 3 + [0.1] * 3
    waves, labels = _tones(spans, freqs, amplitudes), np.array([0, 1, 2] * 2, np.int32)
    speakers = np.array(["loud"] * 3 + ["quiet"] * 3)
    splicer = clip_augment.WordSplicer(waves, labels, speakers, probability=0.99, cut=0.25)
    assert splicer.num_classes == 9
    spliced, classes = splicer(np.arange(6), np.random.default_rng(1))
    assert spliced.shape == waves.shape and spliced.dtype == np.float32 and classes.dtype == np.int32
    first, second = classes // 3, classes % 3
    np.testing.assert_array_equal(first, labels)  # each clip keeps its own word's start
    assert np.all(first != second)  # and ends with another word (probability 0.99: all six here)
    for row in range(6):
        loud = np.flatnonzero(np.abs(spliced[row]) > 1e-3)
        speech = spliced[row, loud[0]:loud[-1] + 1]
        assert _frequency(speech[:800]) == pytest.approx(freqs[first[row]], abs=25)
        assert _frequency(speech[-800:]) == pytest.approx(freqs[second[row]], abs=25)
        assert np.abs(speech).max() == pytest.approx(amplitudes[row], rel=0.02)  # the same speaker's parts
    # Cut at the middle of each word: half of each word's speech, joined without a gap or a doubled stretch.
    joined = splicer.splice(0, 2, np.array([0.5, 0.5]), np.random.default_rng(2))
    speech = np.flatnonzero(np.abs(joined) > 1e-3)
    assert (speech[-1] - speech[0]) / A.SAMPLE_RATE == pytest.approx(0.2 + 0.35, abs=0.003)
    # Seeded by the generator; probability 0 keeps every clip and gives it class w * words + w.
    again, _ = splicer(np.arange(6), np.random.default_rng(1))
    np.testing.assert_array_equal(again, spliced)
    kept, classes = clip_augment.WordSplicer(waves, labels, speakers, 0.0)(np.array([4, 0]), np.random.default_rng(0))
    np.testing.assert_array_equal(kept, waves[[4, 0]])
    np.testing.assert_array_equal(classes, [4, 0])
    for bad, message in (({"probability": 1.0}, "probability must be in"), ({"probability": 0.5, "cut": 0.5},
                                                                            "cut must be in")):
        with pytest.raises(ValueError, match=message):
            clip_augment.WordSplicer(waves, labels, speakers, **bad)
    with pytest.raises(ValueError, match="at least two words"):
        clip_augment.WordSplicer(waves[:1], labels[:1], speakers[:1], 0.5)


def test_context_words_surround_a_word_with_the_cut_off_ends_of_other_words_by_its_speaker():
    spans = [(0.2, 0.6), (0.3, 0.5), (0.1, 0.8)] * 2
    freqs, amplitudes = [500, 1500, 3000] * 2, [0.5] * 3 + [0.1] * 3
    waves, labels = _tones(spans, freqs, amplitudes), np.array([0, 1, 2] * 2, np.int32)
    speakers = np.array(["loud"] * 3 + ["quiet"] * 3)
    context = clip_augment.ContextWords(waves, labels, speakers, probability=0.99)
    assert context.num_classes == 3
    surrounded, classes = context(np.arange(6), np.random.default_rng(3))
    np.testing.assert_array_equal(classes, labels)  # the class stays the word's
    def runs_of(wave):  # stretches of sound (a 5 ms envelope: a tone crosses zero)
        loud = np.convolve(np.abs(wave) > 1e-3, np.ones(80), "same") > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        return list(zip(edges[::2], edges[1::2]))

    neighbours = 0
    for row in range(6):
        runs = runs_of(surrounded[row])
        (a0, b0), = runs_of(waves[row])  # the word alone
        own = [r for r in runs if abs(r[1] - r[0] - (b0 - a0)) <= 2]
        assert own and _frequency(surrounded[row, own[0][0]:own[0][1]]) == pytest.approx(freqs[row], abs=25)
        for a, b in runs:  # every run is a word of this speaker; the others are other words
            assert np.abs(surrounded[row, a:b]).max() == pytest.approx(amplitudes[row], rel=0.02)
            if (a, b) != own[0]:
                neighbours += 1
                if b - a > 200:  # long enough to hear its pitch
                    assert _frequency(surrounded[row, a:b]) != pytest.approx(freqs[row], abs=25)
                gap = own[0][0] - b if b <= own[0][0] else a - own[0][1]
                assert 0.15 * A.SAMPLE_RATE - 100 <= gap <= 0.6 * A.SAMPLE_RATE  # a natural pause away
    assert neighbours >= 3  # a one-second clip leaves room for them beside the shorter words
    kept, _ = clip_augment.ContextWords(waves, labels, speakers, 0.0)(np.array([4, 0]), np.random.default_rng(0))
    np.testing.assert_array_equal(kept, waves[[4, 0]])
    # Around pseudo-words: the splicer makes the batch, with its classes.
    splicer = clip_augment.WordSplicer(waves, labels, speakers, probability=0.5)
    both = clip_augment.ContextWords(waves, labels, speakers, 0.5, compose=splicer)
    assert both.num_classes == 9 and both(np.arange(6), np.random.default_rng(0))[1].max() < 9


def test_features_are_log_mel_standardised_per_clip():
    waves, _ = A.synthetic_keywords(2, 1, seconds=1.0)
    feats = logmel.features(tf.constant(waves)).numpy()
    assert feats.shape == (2, 98, 40, 1) and logmel.clip_samples(98) == A.SAMPLE_RATE
    np.testing.assert_allclose(feats.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(feats.std(axis=(1, 2, 3)), 1, atol=1e-3)
    # Loudness does not change them.
    np.testing.assert_allclose(logmel.features(tf.constant(waves * 0.1)).numpy(), feats, atol=2e-3)


def test_speech_commands_through_tfds_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        clips = A.load_speech_commands("train", max_per_class=100)
    assert clips.waveforms.shape[1:] == (A.SAMPLE_RATE,) and clips.waveforms.dtype == np.float32
    assert not any(w.startswith("_") for w in clips.keywords)


def test_extra_training_words_join_the_training_clips_and_keep_the_split_honest(tmp_path):
    waves, _ = A.synthetic_keywords(1, 8, seconds=1.0)
    speakers = [f"s{i:02d}" for i in range(6)]
    held_out = sorted(A.held_out_speakers(speakers))  # 2 of 6
    heard = [s for s in speakers if s not in held_out]
    for word in ("yes", "dog"):  # a training and a test word
        for i, s in enumerate(speakers):
            write_wav(tmp_path / "main" / word / f"{s}_nohash_0.wav", waves[i])
    for i, s in enumerate(heard[:2]):
        write_wav(tmp_path / "extra" / "table" / f"{s}_nohash_0.wav", waves[6 + i])
    clips = A.load_keyword_folder(tmp_path / "main")
    train = A.keyword_split(clips, "train")
    both = A.with_training_words(train, A.load_keyword_folder(tmp_path / "extra"), clips)
    assert both.keywords == ["dog", "table", "yes"] and len(both.labels) == len(train.labels) + 2
    words = [both.keywords[i] for i in both.labels]
    assert words == ["table"] * 2 + ["yes"] * 4 and list(both.speakers) == heard[:2] + heard  # as one folder
    np.testing.assert_allclose(both.waveforms[:2], waves[6:8], atol=1e-4)
    # No validation or test word, no word of the keyword folder, no held-out speaker; each is named.
    for word, speaker, culprit in (("go", heard[0], "'go' is a validation or test word"),
                                   ("yes", heard[0], "'yes' is also a word of the keyword folder"),
                                   ("chair", held_out[0], f"speaker '{held_out[0]}', one of the held-out")):
        bad = tmp_path / f"bad_{word}"
        write_wav(bad / word / f"{speaker}_nohash_0.wav", waves[0])
        with pytest.raises(ValueError, match=f"^extra training word.*{culprit}"):
            A.with_training_words(train, A.load_keyword_folder(bad), clips)
