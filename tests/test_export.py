"""tfresnet.export: LiteRT flatbuffers of image classifiers give the Keras model's answers."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import MNIST_MISSING, MNIST_NPZ, shared_run
from tfresnet import cli, data, training
from tfresnet.config import TrainConfig
from tfresnet.core.errors import BadInput
from tfresnet.export import LiteClassifier, calibration_images, export_lite, load_model
from tfresnet.weights import classes


def top1(logits, labels) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def within_points(a: float, b: float, points: float) -> bool:
    """``a`` and ``b`` (fractions) differ by at most ``points`` percentage points: 3 images of 1,000
    are 0.3 points, which float rounding of ``0.929 - 0.926`` must not turn into a failure."""
    return abs(a - b) <= points / 100 + 1e-9


@pytest.mark.slow
def test_mnist_flatbuffers_answer_as_keras_does(trained_mnist, tmp_path):
    """float32 to 1e-4 of the Keras logits; int8 (calibrated on 300 training digits) within 0.3 points
    of Keras' top-1 on the whole MNIST test set; float16 between them in size."""
    model = load_model(trained_mnist.model_dir)
    cal = calibration_images(dataset="mnist", data_dir=trained_mnist.cfg.data_dir, split="train[:2000]")
    assert len(cal) == 300 and cal[0].shape == (28, 28, 1)
    paths = export_lite(model, tmp_path / "lite", calibration=cal)
    test = data.load_source("mnist", "test", trained_mnist.cfg.data_dir)
    expected = model.predict(test.images, batch_size=500, verbose=0)

    lite = {p: LiteClassifier(path) for p, path in paths.items()}
    assert lite["float32"].class_names == classes.MNIST and lite["int8"].channels == 1
    got32 = np.stack([lite["float32"].logits(image) for image in test.images[:1000]])
    np.testing.assert_allclose(got32, expected[:1000], atol=1e-4)
    got16 = np.stack([lite["float16"].logits(image) for image in test.images[:500]])
    assert top1(got16, np.argmax(expected[:500], -1)) >= 0.99
    got8 = np.stack([lite["int8"].logits(image) for image in test.images])
    keras_top1, int8_top1 = top1(expected, test.labels), top1(got8, test.labels)
    assert within_points(int8_top1, keras_top1, 0.3), (int8_top1, keras_top1)
    record = json.loads((tmp_path / "lite" / "export.json").read_text())
    sizes = {p: record["files"][p]["bytes"] for p in paths}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"] and record["calibration_images"] == 300
    assert record["preprocessing"]["eval_view"] == "fit"
    assert lite["int8"].top(test.images[0], 2)[0][0] == str(np.argmax(got8[0]))


def digit_folder_run(folder):
    """mnist_resnet trained on a class folder of MNIST PNGs (1,500 train, 1,000 test digits, 4 epochs):
    images of any size, evaluated as a centre crop."""
    for split, part in (("train", "train[:1500]"), ("test", "test[:1000]")):
        source = data.load_source("mnist", part, str(MNIST_NPZ.parent))
        for i, (image, label) in enumerate(zip(source.images, source.labels)):
            path = folder / "digits" / split / classes.MNIST[label] / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tf.io.encode_png(image).numpy())
    training.train(TrainConfig(model="mnist_resnet", dataset="folder", data_dir=str(folder / "digits"), image_size=28,
                               batch_size=32, epochs=4, steps_per_loop=16, augment="none",
                               model_dir=str(folder / "run")), log=lambda line: None)


@pytest.mark.slow
def test_a_folder_runs_flatbuffers_crop_inside_and_keep_its_top1(tmp_path_factory, tmp_path, capsys):
    """tfresnet-export of a folder run: the centre crop is inside the flatbuffer. At the size the
    model evaluates (32 pixels for its 28-pixel crops) the float32 logits are Keras'; the int8 top-1
    on the test digits as they are (28 pixels, resized on the device) is within 0.3 points of Keras'."""
    if MNIST_MISSING:
        pytest.skip(MNIST_MISSING)
    shared = shared_run(tmp_path_factory, "digit_folder", digit_folder_run)
    digits = shared / "digits"
    assert cli.export_main(["tfresnet-export", f"--model={shared / 'run'}", f"--out_dir={tmp_path / 'lite'}",
                            f"--calibration_images={digits / 'train'}", "--precisions=float32,int8"]) == 0
    printed = capsys.readouterr().out
    assert "int8: " in printed and "KiB" in printed and (tmp_path / "lite" / "labels.txt").read_text().split() == list(
        classes.MNIST)
    model = keras.models.load_model(shared / "run" / "model.keras")
    test = data.load_source("folder", "test", str(digits), image_size=28)
    files = [tf.io.decode_png(tf.io.read_file(f), 3).numpy() for f in test.files]

    big = [tf.cast(tf.round(tf.image.resize(f, (32, 32))), tf.uint8).numpy() for f in files[:300]]
    x = data.serving_images(tf.constant(np.stack(big)), data.eval_recipe(model.preprocessing, 10), model.preprocessing)
    float32 = LiteClassifier(tmp_path / "lite" / "model_float32.tflite")
    np.testing.assert_allclose(np.stack([float32.logits(b) for b in big]), model(x, training=False), atol=1e-4)

    batches = data.make_dataset(test, 100, training=False, image_dtype="uint8")
    expected = np.concatenate([model(b[0], training=False) for b in batches])
    int8 = LiteClassifier(tmp_path / "lite" / "model_int8.tflite")
    keras_top1, int8_top1 = top1(expected, test.labels), top1([int8.logits(f) for f in files], test.labels)
    assert keras_top1 > 0.85 and within_points(int8_top1, keras_top1, 0.3), (int8_top1, keras_top1)


def test_export_refuses_what_it_cannot_write(tmp_path, capsys):
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(BadInput, match="does not record its preprocessing"):
        export_lite(model, tmp_path)
    with pytest.raises(BadInput, match="holds no model"):
        load_model(tmp_path)
    for argv, words in [([], "give --model"), (["--model=x", f"--out_dir={tmp_path}"], "int8 needs calibration"),
                        (["--model=x", f"--out_dir={tmp_path}", "--precisions=int4"], "unknown value 'int4'"),
                        ([f"--model={tmp_path}", f"--out_dir={tmp_path}/o", "--precisions=float32"], "holds no model")]:
        assert cli.export_main(["tfresnet-export", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tfresnet-export: error: ") and words in err and err.count("\n") == 1, err
