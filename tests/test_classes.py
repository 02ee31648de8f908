"""Class names travel with the data, the model, run.json and the SavedModel (tfresnet.weights.classes)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresnet
from conftest import MNIST_NPZ, REPO, image_folder, pytorch_weights_file
from tfresnet import data, training
from tfresnet.config import TrainConfig
from tfresnet.weights import classes


def test_every_named_dataset_names_each_of_its_classes_once():
    for name, recipe in data.RECIPES.items():
        assert len(recipe.class_names) == recipe.num_classes == len(set(recipe.class_names)), name
    assert classes.imagenet()[:3] == ("tench", "goldfish", "great white shark") and len(classes.imagenet()) == 1000
    assert data.RECIPES["cifar10"].class_names[3] == "cat" and data.RECIPES["cifar100"].class_names[-1] == "worm"


def test_a_source_names_its_labels_subsets_keep_theirs_and_arrays_are_numbered(tmp_path):
    folder = data.load_source("folder", "train", str(image_folder(tmp_path / "images")), image_size=16)
    assert folder.label_names == ("cats", "dogs")
    x = np.zeros((12, 4, 4), np.uint8)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.arange(12) % 3, x_test=x[:3], y_test=np.arange(3))
    assert data.load_source("npz", "train", str(tmp_path / "a.npz")).label_names == ("class_0", "class_1", "class_2")
    # A subset is relabelled 0..k-1 and keeps its names: label 1 of --classes=2,0 is class_0.
    subset = data.load_source("npz", "train", str(tmp_path / "a.npz"), classes=(2, 0))
    assert subset.label_names == ("class_2", "class_0") and set(subset.labels) == {0, 1}


@pytest.mark.needs_mnist
def test_mnist_digits_are_their_names_also_in_a_subset():
    assert data.load_source("mnist", "test[:100]", str(MNIST_NPZ.parent)).label_names == classes.MNIST
    assert data.load_source("mnist", "test[:100]", str(MNIST_NPZ.parent), classes=(5, 7)).label_names == ("5", "7")


def test_a_model_saves_its_class_names_and_one_without_numbers_them(tmp_path):
    model = tfresnet.create_model("resnet20_cifar", num_classes=3, input_shape=(16, 16, 3),
                                  class_names=["ant", "bee", "cat"])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.class_names == ("ant", "bee", "cat") and loaded.get_config()["class_names"] == ["ant", "bee", "cat"]
    unnamed = tfresnet.create_model("mnist_resnet", num_classes=4)
    assert unnamed.class_names is None and unnamed.label_names == ("class_0", "class_1", "class_2", "class_3")
    with pytest.raises(ValueError, match="class_names has 2 names for 3 classes"):
        tfresnet.create_model("resnet20_cifar", num_classes=3, class_names=["ant", "bee"])


@pytest.mark.slow
def test_imagenet_weights_name_the_1000_classes_and_fine_tuning_names_its_own(tmp_path):
    path = pytorch_weights_file(tmp_path)  # torchvision's layout: ImageNet's classifier
    assert tfresnet.create_model("resnet18", pretrained=str(path), input_shape=(32, 32, 3)).class_names == \
        classes.imagenet()
    tuned = tfresnet.create_model("resnet18", pretrained=str(path), num_classes=2, input_shape=(32, 32, 3),
                                  class_names=["cats", "dogs"])
    assert tuned.class_names == ("cats", "dogs")


@pytest.mark.slow
def test_a_run_records_its_class_names_in_run_json_model_keras_and_the_saved_model(tmp_path):
    cfg = TrainConfig(model="resnet20_cifar", dataset="folder", data_dir=str(image_folder(tmp_path / "images")),
                      image_size=32, batch_size=4, eval_batch_size=4, train_steps=2, steps_per_loop=2,
                      model_dir=str(tmp_path / "run"))
    training.train(cfg, log=lambda line: None)
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["class_names"] == ["cats", "dogs"]
    assert keras.models.load_model(run / "model.keras").class_names == ("cats", "dogs")
    served = tf.saved_model.load(str(run / "saved_model"))
    assert [n.decode() for n in served.class_names().numpy()] == ["cats", "dogs"]
    images = tf.random.stateless_uniform((3, 40, 48, 3), (0, 1), 0, 256, tf.int32)
    out = served.signatures["serving_default"](images=tf.cast(images, tf.uint8))
    top = np.array(["cats", "dogs"])[np.argmax(out["probabilities"].numpy(), -1)]
    assert [n.decode() for n in out["class_name"].numpy()] == list(top)
    # The same folder with a class renamed is another model: refused before anything is written.
    os.rename(tmp_path / "images" / "dogs", tmp_path / "images" / "wolves")
    with pytest.raises(ValueError, match="class_names: \\['cats', 'dogs'\\] there, \\['cats', 'wolves'\\] here"):
        training.train(cfg.replace(train_steps=4), log=lambda line: None)


LOAD_SCRIPT = """
import sys
import tfresnet
assert "tensorflow" not in sys.modules  # import tfresnet stays instant
if sys.argv.pop(1) == "tensorflow_first":  # TensorFlow looks for Keras before importing it (its lazy tf.keras)
    import tensorflow as tf
    tf.config.list_physical_devices()
import keras
for path in sys.argv[1:]:
    model = keras.models.load_model(path)
    print(type(model).__name__, getattr(model, "label_names", ("-",))[:3])
"""


@pytest.mark.slow
def test_keras_loads_every_family_s_model_keras_after_a_bare_import_tfresnet(tmp_path):
    """In a fresh process (nothing of tfresnet imported but the package): ``import tfresnet`` then
    ``keras.models.load_model`` reads the ``.keras`` files of every model family the package writes,
    and the files of runs written before class names existed (``class_0 ...``)."""
    written = {
        "ResNet": tfresnet.create_model("resnet20_cifar", num_classes=2, class_names=["a", "b"]),
        "MnistResNet": tfresnet.create_model("mnist_resnet"),
        "PreActResNet22": tfresnet.create_model("preact_resnet22", input_shape=(64, 64, 3)),
        "ProtoResEncoder": tfresnet.create_model("protores", input_shape=(98, 40, 1), widths=[4, 4, 4]),
    }
    paths = []
    for name, model in written.items():
        paths.append(str(tmp_path / f"{name}.keras"))
        model.save(paths[-1])
    old = REPO / "tests" / "data" / "old_runs"
    paths += [str(old / "classify" / "model.keras"), str(old / "fewshot" / "model.keras")]
    # Keras imported first, or TensorFlow first: both at once, in two processes.
    procs = [subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, first, *paths], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
             for first in ("keras_first", "tensorflow_first")]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    assert outputs[0][0] == outputs[1][0]
    lines = outputs[0][0].splitlines()
    assert [line.split()[0] for line in lines[:4]] == list(written)
    assert lines[0] == "ResNet ('a', 'b')" and lines[1] == "MnistResNet ('class_0', 'class_1', 'class_2')"
    assert lines[4] == "ResNet ('class_0', 'class_1', 'class_2')", lines  # an old run: numbered
    assert len(lines) == 6, lines
