"""Run folders written before the restructuring (issue 29) still load, evaluate the same and resume.

``tests/data/old_runs/`` holds one small run of each task written by main at 83a0a43 (the command
is in ``tests/data/old_runs/write.py``): checkpoints, ``run.json``, ``metrics.jsonl`` and
``model.keras``. Serialized names (Keras' registered classes, checkpoint keys, the run record) must
keep reading them: evaluating the checkpoint gives the figures its run logged, the exported model
loads and gives the checkpoint's outputs, and training resumes from its step.
"""

import json
import shutil
import sys

import keras
import numpy as np
import pytest

from conftest import MNIST_NPZ, REPO
from tfresnet import training

OLD = REPO / "tests" / "data" / "old_runs"
sys.path.insert(0, str(OLD))
from write import COMMANDS, register  # noqa: E402

from tfresnet import cli  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def compat_resnet():
    """The writing run's tiny model; registered while these tests run, not at collection (the zoo's
    own tests iterate over the registered models)."""
    register()


def old_config(task, tmp_path, **changes):
    """The writing command's config, in a copy of its run folder."""
    shutil.copytree(OLD / task, tmp_path / task)
    cfg = cli.config_from_flags(["prog", *COMMANDS[task], f"--model_dir={tmp_path / task}",
                                 *([f"--data_dir={MNIST_NPZ.parent}"] if task == "classify" else [])])
    return cfg.replace(**changes)


def last_epoch(task):
    return [json.loads(line) for line in (OLD / task / "metrics.jsonl").read_text().splitlines()][-1]


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_an_old_image_run_evaluates_to_its_logged_figures_loads_and_resumes(tmp_path):
    cfg = old_config("classify", tmp_path)
    results = training.evaluate(cfg, log=lambda line: None)
    logged = last_epoch("classify")
    assert logged["step"] == 32
    np.testing.assert_allclose(results["loss"], logged["test_loss"], rtol=1e-4)
    assert abs(results["accuracy"] - logged["test_accuracy"]) <= 1 / 256 + 1e-6  # one image either way at most
    model = keras.models.load_model(tmp_path / "classify" / "model.keras")
    assert model.name == "compat_resnet" and model.count_params() > 0
    images = np.load(MNIST_NPZ)["x_test"][:8, ..., None].astype(np.float32)
    restored = training.Run(cfg, log=lambda line: None)
    assert restored.restore() == 32
    normalised = (images / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(model(normalised, training=False), restored.model(normalised, training=False),
                               rtol=1e-4, atol=1e-4)
    lines = []
    resumed = training.train(cfg.replace(epochs=3), log=lines.append)
    assert any("(step 32)" in line for line in lines) and np.isfinite(resumed["loss"])
    assert [r["step"] for r in map(json.loads, (tmp_path / "classify" / "metrics.jsonl").read_text().splitlines())] \
        == [16, 32, 48]


@pytest.mark.slow
def test_an_old_fewshot_run_evaluates_to_its_logged_figures_loads_and_resumes(tmp_path):
    cfg = old_config("fewshot", tmp_path, eval_split="validation")  # what the run evaluated on while training
    results = training.evaluate(cfg, log=lambda line: None)
    logged = last_epoch("fewshot")
    assert logged["step"] == 16
    np.testing.assert_allclose(results["loss"], logged["test_loss"], rtol=1e-4)
    np.testing.assert_allclose(results["accuracy"], logged["test_accuracy"], atol=1e-6)
    encoder = keras.models.load_model(tmp_path / "fewshot" / "model.keras")
    assert encoder.__class__.__name__ == "ProtoResEncoder"
    lines = []
    resumed = training.train(cfg.replace(epochs=3, eval_split=None), log=lines.append)
    assert any("(step 16)" in line for line in lines) and np.isfinite(resumed["loss"])
