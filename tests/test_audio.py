"""Keyword audio: the Speech Commands layout, honest splits, augmentation, log-mel features."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import SPOKEN_KEYWORDS
from tfresnet import audio as A


def write_wav(path, wave):
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.audio.encode_wav(np.asarray(wave, np.float32)[:, None], A.SAMPLE_RATE))


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
    with pytest.raises(ValueError, match=r"^\S+bad_nohash_0.wav: not a readable 16-bit PCM WAV file \(Header"):
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
    shifted = A.shift(tf.constant(wave), 100, tf.constant([1, 2], tf.int64)).numpy()
    moved = np.flatnonzero(shifted[0])[0] - 500
    assert abs(moved) <= 100 and shifted.sum() == 2
    np.testing.assert_array_equal(shifted, A.shift(tf.constant(wave), 100, tf.constant([1, 2], tf.int64)))
    noise = tf.random.stateless_normal([20000], [0, 1])
    signal = 0.3 * tf.sin(tf.range(1000, dtype=tf.float32) / 3.0)[None, :] * tf.ones([64, 1])  # no clipping
    mixed = A.mix_noise(signal, noise, 1.0, (10.0, 10.0), tf.constant([3, 4], tf.int64))
    snr = 10 * np.log10(np.mean(signal.numpy() ** 2) / np.mean((mixed - signal).numpy() ** 2, axis=1))
    np.testing.assert_allclose(snr, 10.0, atol=0.5)  # the mix is at the SNR asked for
    feats = tf.ones([3, 98, 40, 1])
    masked = A.mask_features(feats, tf.constant([5, 6], tf.int64)).numpy()
    assert 0 < (masked == 0).mean() < 0.5
    warped = A.warp_features(tf.reshape(tf.range(98.0), [1, 98, 1, 1]) * tf.ones([1, 1, 40, 1]), 0.2, 0.0,
                             tf.constant([7, 8], tf.int64)).numpy()[0, :, 0, 0]
    assert 0.8 <= warped[50] / 50 <= 1.2 and np.all(np.diff(warped) >= 0)


def test_features_are_log_mel_standardised_per_clip():
    waves, _ = A.synthetic_keywords(2, 1, seconds=1.0)
    feats = A.features(tf.constant(waves)).numpy()
    assert feats.shape == (2, 98, 40, 1) and A.clip_samples(98) == A.SAMPLE_RATE
    np.testing.assert_allclose(feats.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(feats.std(axis=(1, 2, 3)), 1, atol=1e-3)
    # Loudness does not change them.
    np.testing.assert_allclose(A.features(tf.constant(waves * 0.1)).numpy(), feats, atol=2e-3)


def test_speech_commands_through_tfds_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        clips = A.load_speech_commands("train", max_per_class=100)
    assert clips.waveforms.shape[1:] == (A.SAMPLE_RATE,) and clips.waveforms.dtype == np.float32
    assert not any(w.startswith("_") for w in clips.keywords)
