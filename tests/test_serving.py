"""Fine-tuning from pretrained weights end to end: preprocessing applied, recorded, and served."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import safetensors.torch
import tensorflow as tf
from torch_reference import random_resnet

from tfresnet import data, training, weights
from tfresnet.config import TrainConfig
from tfresnet.data import augment
from tfresnet.weights.preprocessing import CAFFE

SIZES = [(40, 52), (32, 32), (61, 37)]  # raw images of any size, as a user's folder holds them


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of random PNGs of mixed sizes, in train/ and test/ sub-folders."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 3)):
        for cls in ("cats", "dogs"):
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                h, w = SIZES[i % len(SIZES)]
                png = tf.io.encode_png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).numpy()
                (root / split / cls / f"{i}.png").write_bytes(png)
    return root


@pytest.fixture
def caffe_source(tmp_path, monkeypatch):
    """A registered weight source (served from a file:// URL) whose weights expect Caffe's BGR, 0-255, mean-subtracted pixels."""
    state = random_resnet("resnet18").state_dict()
    path = tmp_path / "resnet18-caffe.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(weights.WEIGHTS._entries, "resnet18.caffe_test",
                        weights.WeightSource("resnet18", "caffe_test", CAFFE, url=path.as_uri()))
    return "caffe_test"


@pytest.mark.slow
def test_a_fine_tuned_run_applies_records_and_serves_its_weights_preprocessing(folder, caffe_source, tmp_path):
    cfg = TrainConfig(model="resnet18", pretrained=caffe_source, dataset="folder", data_dir=str(folder),
                      image_size=32, batch_size=4, eval_batch_size=6, train_steps=2, steps_per_loop=1,
                      optimizer="sgd", learning_rate=0.01, model_dir=str(tmp_path / "run"))
    run = training.Run(cfg, log=lambda line: None)
    # The pipelines normalise as the weights expect (BGR, 0-255, Caffe means), not with the dataset's statistics.
    # The model's record adds how the run's evaluation fits an image of any size (a folder: the centre crop).
    assert run.task.preprocessing == CAFFE and run.model.preprocessing == dataclasses.replace(CAFFE,
                                                                                            eval_view="center_crop")
    # Each image keeps its size until evaluation resizes its shorter side and cuts out the centre.
    stored = np.stack([augment.resize_for_eval(tf.io.decode_png(tf.io.read_file(f)), (32, 32, 3), "center_crop",
                                               CAFFE.crop_fraction, CAFFE.interpolation).numpy()
                       for f in run.task.eval_source.files])
    # The pipeline hands on the pixels (rounded after resizing); the model normalises them on the device.
    batch = next(iter(run.task.eval_batches()))[0]
    np.testing.assert_array_equal(batch, np.clip(np.round(stored), 0, 255).astype("uint8"))
    np.testing.assert_allclose(run.model.model_inputs(batch), batch.numpy()[..., ::-1].astype("float32") - CAFFE.mean,
                               atol=1e-4)
    # The backbone is the pretrained one; the 2-class head is new.
    assert run.model.get_layer("predictions").kernel.shape == (512, 2)
    results = run.train()

    out = tmp_path / "run"
    assert json.loads((out / "run.json").read_text())["preprocessing"] == CAFFE.to_dict()
    reloaded = keras.models.load_model(out / "model.keras")
    assert reloaded.preprocessing == dataclasses.replace(CAFFE, eval_view="center_crop")
    # Raw images of any size through the SavedModel = the same images through the Python pipeline.
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    source = data.load_source("folder", "test", str(folder), 32)
    x = next(iter(data.make_dataset(source, 6, training=False, preprocessing=reloaded.preprocessing)))[0]
    expected = reloaded(x, training=False).numpy()
    files = sorted((folder / "test").glob("*/*.png"))
    assert len(files) == 6
    for i, file in enumerate(files):
        raw = tf.io.decode_png(file.read_bytes())[None]
        assert raw.shape[1:3] == SIZES[int(file.stem) % len(SIZES)]
        served = serve(images=raw)
        np.testing.assert_allclose(served["logits"][0], expected[i], atol=1e-4 * np.abs(expected).max() + 1e-5)
        np.testing.assert_allclose(served["probabilities"][0], tf.nn.softmax(expected[i]), atol=1e-5)
    # Evaluating the run needs no --pretrained: the preprocessing comes from its record.
    evaluated = training.evaluate(cfg.replace(pretrained=None, mode="eval"), log=lambda line: None)
    assert evaluated["accuracy"] == pytest.approx(results["test_accuracy"])
    assert evaluated["loss"] == pytest.approx(results["test_loss"], rel=1e-5)
