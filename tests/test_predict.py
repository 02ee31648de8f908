"""tfresnet.predict: a trained classifier's top classes, by name, for image files."""

import json
import pathlib
import shutil

import keras
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

from conftest import image_folder, pytorch_weights_file
from tfresnet import data, training
from tfresnet.config import TrainConfig
from tfresnet.core.errors import BadInput
from tfresnet.predict import Classifier, image_files, images_per_call
from tfresnet.weights import classes


def png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


def test_image_files_reads_files_folders_and_globs_and_names_what_matches_nothing(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    for name in ("b/2.png", "b/sub/1.png", "b/.hidden/3.png", "a.png"):
        png(tmp_path / name, image)
    (tmp_path / "b" / "notes.txt").write_text("x")
    assert image_files([tmp_path / "a.png", tmp_path / "b", str(tmp_path / "*.png")]) == [
        str(tmp_path / "a.png"), str(tmp_path / "b" / "2.png"), str(tmp_path / "b" / "sub" / "1.png"),
        str(tmp_path / "a.png")]
    with pytest.raises(BadInput, match=r"/nope/\*\.jpg names no image file"):
        image_files([tmp_path / "a.png", "/nope/*.jpg"])
    with pytest.raises(BadInput, match="holds no model: expected a run folder"):
        Classifier.load(tmp_path)


def test_the_default_batch_holds_the_pixels_of_32_imagenet_images_within_32_to_256_images():
    assert images_per_call(224, 224) == 32 and images_per_call(256, 256) == 32 and images_per_call(600, 800) == 32
    assert images_per_call(160, 160) == 64 and images_per_call(112, 112) == 128
    assert images_per_call(32, 32) == 256 and images_per_call(28, 28) == 256 and images_per_call(1, 1) == 256


@pytest.mark.slow
def test_predictions_are_the_evaluation_pipelines_logits_with_names(trained_mnist, tmp_path):
    """MNIST test images written as PNG and BMP files: the run's classifier gives the logits of the
    pipeline tfresnet-eval reads them with, names them by digit, and names or skips a corrupt file."""
    source = data.load_source("mnist", "test[:40]", trained_mnist.cfg.data_dir)
    for i, image in enumerate(source.images):
        png(tmp_path / "digits" / f"{i:02d}.png", image)
    PIL.Image.fromarray(source.images[0][..., 0]).save(tmp_path / "digits" / "40.bmp")  # TensorFlow writes no BMP
    x = next(iter(data.make_dataset(source, 40, training=False)))[0]
    expected = keras.models.load_model(trained_mnist.model_dir / "model.keras")(x, training=False).numpy()

    classifier = Classifier.load(trained_mnist.model_dir)
    assert classifier.class_names == classes.MNIST and classifier.channels == 1
    assert classifier.input_size == (28, 28) and classifier.batch_size == 256
    got = list(classifier.predict([tmp_path / "digits"], top_k=3, batch_size=16))
    assert [p.path for p in got] == image_files([tmp_path / "digits"]) and len(got) == 41
    np.testing.assert_allclose(np.stack([p.logits for p in got[:40]]), expected, atol=1e-4)
    in_one_batch = list(classifier.predict([tmp_path / "digits"], top_k=3))  # the default batch: all 41
    np.testing.assert_allclose(np.stack([p.logits for p in in_one_batch]), np.stack([p.logits for p in got]), atol=1e-5)
    np.testing.assert_allclose(got[40].logits, expected[0], atol=1e-4)
    for p in got:
        names = [name for name, _ in p.top]
        assert len(p.top) == 3 and names[0] == str(np.argmax(p.logits)) and p.top[0][1] >= p.top[1][1] >= p.top[2][1]
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    accuracy = np.mean([p.top[0][0] == str(label) for p, label in zip(got, source.labels)])
    assert accuracy >= 0.85  # the run reaches 90% (test_training)
    # The SavedModel folder, and the run's model.keras (through the SavedModel beside it), load the same.
    for path in (trained_mnist.model_dir / "saved_model", trained_mnist.model_dir / "model.keras"):
        again = list(Classifier.load(path).predict([tmp_path / "digits" / "00.png"]))[0]
        np.testing.assert_allclose(again.logits, got[0].logits, atol=1e-4)  # a batch of one: other sums

    (tmp_path / "digits" / "05.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadInput, match=r"digits/05.png is not an image that decodes; pass bad_images='skip'"):
        list(classifier.predict([tmp_path / "digits"], batch_size=16))
    kept = list(classifier.predict([tmp_path / "digits"], batch_size=16, bad_images="skip"))
    assert len(kept) == 40 and classifier.skipped == 1 and "05.png" not in " ".join(p.path for p in kept)


@pytest.mark.slow
def test_pretrained_weights_predict_imagenet_names_for_images_of_any_size(tmp_path):
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(40, 48, 3), (300, 200, 3)]):
        png(tmp_path / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    classifier = Classifier.load("resnet18", pretrained=str(pytorch_weights_file(tmp_path)))
    got = list(classifier.predict([tmp_path / "0.png", tmp_path / "1.png"], top_k=5))
    assert len(got) == 2 and all(p.logits.shape == (1000,) and len(p.top) == 5 for p in got)
    assert all(p.top[0][0] == classes.imagenet()[int(np.argmax(p.logits))] for p in got)


@pytest.mark.slow
def test_the_predict_command_prints_or_writes_csv_and_json_lines(trained_mnist, tmp_path, capsys):
    from tfresnet import cli

    source = data.load_source("mnist", "test[:5]", trained_mnist.cfg.data_dir)
    for i, image in enumerate(source.images):
        png(tmp_path / "digits" / f"{i}.png", image)
    run = f"--model={trained_mnist.model_dir}"
    assert cli.predict_main(["tfresnet-predict", run, "--top_k=2", str(tmp_path / "digits" / "*.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith(f"{tmp_path / 'digits' / '0.png'}: ") and lines[0].count(", ") == 1
    assert cli.predict_main(["tfresnet-predict", run, f"--output={tmp_path / 'p.csv'}", str(tmp_path / "digits")]) == 0
    assert capsys.readouterr().err == f"wrote 5 predictions to {tmp_path / 'p.csv'}\n"
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "path," + ",".join(f"class_{i},probability_{i}" for i in range(1, 6)) and len(rows) == 6
    assert cli.predict_main(["tfresnet-predict", run, f"--output={tmp_path / 'p.jsonl'}", str(tmp_path / "digits")]) == 0
    capsys.readouterr()
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert first["path"] == str(tmp_path / "digits" / "0.png") and rows[1].split(",")[1] == first["top"][0][0]
    # --explain: the same lines printed, and each digit's Grad-CAM at its 28x28 pixels, for the class asked.
    assert cli.predict_main(["tfresnet-predict", run, "--top_k=2", f"--explain={tmp_path / 'cam'}",
                             "--explain_class=3", str(tmp_path / "digits" / "*.png")]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == lines and f"wrote the Grad-CAM of 5 images to {tmp_path / 'cam'}" in printed.err
    heat = [np.load(tmp_path / "cam" / f"{i}_gradcam.npy") for i in range(5)]
    assert all(h.shape == (28, 28) and 0 <= h.min() and h.max() <= 1 for h in heat) and max(h.max() for h in heat) > 0
    assert len(list((tmp_path / "cam").glob("*_gradcam.png"))) == 5
    # Bad input: one line, exit 2, before anything is read.
    for argv, words in [([run], "give --model"), ([run, "--output=x.txt", "a.png"], "--output must name a .csv"),
                        ([run, "--explain_class=3", "a.png"], "--explain_class needs --explain=DIR"),
                        ([run, f"--explain={tmp_path / 'cam'}", "--explain_class=cat", str(tmp_path / "digits")],
                         "explain class 'cat' is not a class of this model (0, 1, 2"),
                        ([f"--model={shutil.copytree(trained_mnist.model_dir / 'saved_model', tmp_path / 'sm')}",
                          f"--explain={tmp_path / 'c2'}",
                          str(tmp_path / "digits")], "explaining needs the Keras model"),
                        ([f"--model={tmp_path}", str(tmp_path / "digits")], "holds no model"),
                        (["--model=mnist_resnet", "--pretrained=imagenet", str(tmp_path / "digits")], "imagenet"),
                        ([run, str(tmp_path / "none")], "names no image file")]:
        assert cli.predict_main(["tfresnet-predict", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tfresnet-predict: error: ") and words in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_a_folder_run_predicts_the_evaluation_pipelines_logits_of_its_centre_crops(tmp_path):
    """Images of another size than the model's, centre-cropped as tfresnet-eval crops them."""
    folder = image_folder(tmp_path / "images")  # 40x48 PNGs; the model sees 32x32 crops
    cfg = TrainConfig(model="resnet20_cifar", dataset="folder", data_dir=str(folder), image_size=32, batch_size=4,
                      eval_batch_size=4, train_steps=2, steps_per_loop=2, model_dir=str(tmp_path / "run"))
    training.train(cfg, log=lambda line: None)
    source = data.load_source("folder", "train", str(folder), image_size=32)
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    x = np.concatenate([b[0] for b in data.make_dataset(source, 4, training=False, image_dtype="uint8")])
    expected = dict(zip(source.files, model(x, training=False).numpy()))
    got = {p.path: p.logits for p in Classifier.load(tmp_path / "run").predict([folder], batch_size=3)}
    assert set(got) >= set(expected) and len(expected) >= 10
    for path, logits in expected.items():
        np.testing.assert_allclose(got[path], logits, atol=1e-4, err_msg=path)
    # Its model.keras alone (no SavedModel beside it) knows the same evaluation: its record says centre crop.
    alone = tmp_path / "elsewhere" / "flowers.keras"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "run" / "model.keras", alone)
    classifier = Classifier.load(alone)
    assert classifier.class_names == source.class_names
    for p in classifier.predict([folder], batch_size=3):
        if p.path in expected:
            np.testing.assert_allclose(p.logits, expected[p.path], atol=1e-4, err_msg=p.path)

    # Grad-CAM at the image's own 40x48 pixels: 0 outside the 32x32 crop the model saw (40 / (32 / 0.875) = 1.09 x
    # the crop: rows 2.5-37.5, columns 6.5-41.5 of the image).
    first = next(classifier.explain([source.files[0]], tmp_path / "cam", class_name=source.class_names[1]))
    heat = np.load(first.heat_map)
    assert heat.shape == (40, 48) and first.class_name == source.class_names[1] and heat.max() <= 1
    assert heat[:2].max() == heat[38:].max() == heat[:, :6].max() == heat[:, 42:].max() == 0
    assert tf.io.decode_png((tmp_path / "cam" / f"{pathlib.Path(source.files[0]).stem}_gradcam.png").read_bytes()
                            ).shape == (40, 48, 3)
