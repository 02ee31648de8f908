"""Keyword audio: WAV folders, log-mel features, Speech Commands through tensorflow-datasets."""

import numpy as np
import pytest
import tensorflow as tf

from tfresnet import audio as A


def test_log_mel_and_wav_folder(tmp_path):
    waves, labels = A.synthetic_keywords(3, 2, seconds=1.0)
    for wave, label in zip(waves, labels):
        folder = tmp_path / ["yes", "no", "up"][label]
        folder.mkdir(exist_ok=True)
        tf.io.write_file(str(folder / f"{len(list(folder.iterdir()))}.wav"),
                         tf.audio.encode_wav(wave[:, None], A.SAMPLE_RATE))
    loaded, loaded_labels, words = A.load_wav_folder(tmp_path)
    assert words == ["no", "up", "yes"] and loaded.shape == (6, A.SAMPLE_RATE)
    np.testing.assert_allclose(loaded[np.argsort(loaded_labels, kind="stable")][:2], waves[2:4], atol=1e-4)
    assert A.log_mel(tf.constant(waves[0])).shape == (98, 40, 1)  # 25 ms frames every 10 ms
    with pytest.raises(FileNotFoundError):
        A.load_wav_folder(tmp_path / "missing")


def test_speech_commands_through_tfds_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        waves, labels = A.load_speech_commands("train", max_per_class=100)
    assert waves.shape == (12, A.SAMPLE_RATE) and waves.dtype == np.float32 and labels.shape == (12,)
