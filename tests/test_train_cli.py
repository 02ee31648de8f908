"""The absl front end: flag files, one step of every recipe, evaluation, one-line errors."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from tfresnet import cli as train
from tfresnet import training

FLAG_FILES = sorted((REPO / "flags").glob("*.cfg"))


def cli(*args, cwd=REPO, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfresnet.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_every_recipe_is_here():
    names = {f.stem for f in FLAG_FILES}
    assert {"mnist", "mnist_fast", "cifar10_resnet56", "cifar100_resnext", "imagenet_resnet50_gpu",
            "imagenet_resnet50_tpu", "preact_resnet22_folder", "finetune_folder", "cifar10_resnet110",
            "imagenet_resnet50_rsb"} <= names


def test_tutorial_flag_file_is_the_tutorial_recipe():
    cfg = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'mnist.cfg'}"])
    assert (cfg.model, cfg.dataset, cfg.optimizer, cfg.learning_rate, cfg.batch_size, cfg.epochs) == (
        "mnist_resnet", "mnist", "adam", 0.001, 32, 10)
    he = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'cifar10_resnet56.cfg'}"])
    assert (he.model, he.optimizer, he.learning_rate, he.momentum, he.weight_decay, he.batch_size) == (
        "resnet56_cifar", "sgd", 0.1, 0.9, 1e-4, 128)
    assert (he.lr_schedule, he.lr_boundaries, he.train_steps) == ("piecewise", (32000, 48000), 64000)
    gpu = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'imagenet_resnet50_gpu.cfg'}"])
    assert (gpu.precision, gpu.jit_compile, gpu.label_smoothing, gpu.lr_schedule, gpu.strategy) == (
        "mixed_bfloat16", True, 0.1, "cosine", "auto")
    assert gpu.model_options == {"zero_init_residual": True}
    assert (gpu.model, gpu.weight_decay, gpu.optimizer, gpu.epochs) == ("resnet50_v1_5", 1e-4, "sgd", 90)
    # ResNet-110: He et al.'s 400 steps at 0.01 first (piecewise warm-up runs at a tenth of the rate).
    r110 = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'cifar10_resnet110.cfg'}"])
    assert (r110.model, r110.lr_schedule, r110.warmup_steps, r110.learning_rate) == (
        "resnet110_cifar", "piecewise", 400, 0.1)
    rsb = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'imagenet_resnet50_rsb.cfg'}"])
    assert (rsb.optimizer, rsb.mixup, rsb.cutmix, rsb.drop_path_rate) == ("adamw", 0.1, 1.0, 0.05)
    for name in ("cifar10_resnet56", "cifar10_resnet110"):
        assert "Table 6" in (REPO / "flags" / f"{name}.cfg").read_text()
    kws = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'kws_protores.cfg'}",
                                   "--model_options=widths=[8,12,16],kernel_size=5"])
    assert (kws.task, kws.model, kws.model_options) == ("fewshot", "protores", {"widths": [8, 12, 16], "kernel_size": 5})
    assert (kws.fewshot_loss, kws.metric, kws.batch_size, kws.logit_scale) == ("cosine_softmax", "cosine", 60, 10.0)
    assert (kws.splice_words, kws.splice_cut, kws.epochs) == (0.5, 0.0, 12)
    # More training words: the same recipe over the folder benchmarks/kws_words.py renders.
    words = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'kws_protores_words.cfg'}"])
    assert (words.extra_words_dir, words.splice_words, words.epochs) == ("runs/kws_words", 0.0, 24)
    same = train.config_from_flags(["prog", f"--flagfile={REPO / 'flags' / 'kws_protores.cfg'}"])
    assert {k: v for k, v in vars(words).items() if getattr(same, k) != v}.keys() == {
        "extra_words_dir", "splice_words", "epochs", "model_dir"}


# finetune_folder runs in tests/test_readme.py instead, on a real image folder (its README command).
SYNTHETIC = [f for f in FLAG_FILES if f.stem != "finetune_folder"]


@pytest.mark.parametrize("flagfile", SYNTHETIC, ids=[f.stem for f in SYNTHETIC])
@pytest.mark.slow
def test_every_recipe_runs_one_step_on_synthetic_data(flagfile, tmp_path):
    cfg = train.config_from_flags([
        "prog", f"--flagfile={flagfile}", "--dataset=synthetic", "--train_steps=1", "--batch_size=2",
        "--steps_per_loop=1", f"--model_dir={tmp_path}", "--mode=train", "--noexport",
        # One CPU here: the recipe's multi-device strategy would be a single replica anyway.
        "--strategy=default",
        # ImageNet recipes at 32x32: the same code path (XLA, bfloat16, ResNet-50) at a CPU-friendly size.
        *(["--image_size=32"] if "imagenet" in flagfile.stem else []),
        # --mode=train has no evaluation to pick the best weights by.
        *(["--nokeep_best"] if flagfile.stem.startswith("kws_protores") else []),
        # Synthetic chirps take no spoken extra words.
        *(["--extra_words_dir="] if flagfile.stem == "kws_protores_words" else []),
    ])
    results = training.train(cfg)
    assert np.isfinite(results["loss"])
    assert tf_checkpoint_step(tmp_path) == 1


def tf_checkpoint_step(model_dir):
    import tensorflow as tf

    return int(tf.train.load_checkpoint(str(pathlib.Path(model_dir) / "checkpoints")).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.mark.parametrize("args, message", [
    (["--batch_size=0"], "tfresnet-train: error: batch_size must be positive, got 0\n"),  # before TensorFlow loads
    (["--optimizer=adm"], "tfresnet-train: error: optimizer: unknown value 'adm' (did you mean 'adam'?); expected "
                          "one of adam, adamw, sgd\n"),  # after: TensorFlow's start-up lines must not show
])
@pytest.mark.slow
def test_a_real_process_prints_exactly_the_one_line(args, message, tmp_path):
    proc = cli(*args, f"--model_dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and proc.stderr == message, proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_verbose_shows_the_traceback(tmp_path):
    proc = cli("--dataset=npz", "--data_dir=/nonexistent/x.npz", "--verbose", f"--model_dir={tmp_path}")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_console_scripts_are_declared_and_each_names_a_function():
    import configparser  # noqa: PLC0415
    import importlib  # noqa: PLC0415

    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in parser["options.entry_points"]["console_scripts"].split("\n") if line)
    assert set(scripts) == {"tfresnet-train", "tfresnet-eval", "tfresnet-kws", "tfresnet-shards", "tfresnet-predict",
                            "tfresnet-export"}
    assert scripts["tfresnet-train"] == "tfresnet.cli:run"
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


HELP_SCRIPT = """
import sys, time
tic = time.perf_counter()
from tfresnet import cli
codes = [cli.main(["tfresnet-train", "--help"]), cli.main(["tfresnet-eval", "-h"], mode="eval"),
         cli.kws_main(["tfresnet-kws", "--help"]), cli.shards_main(["tfresnet-shards", "--help"]),
         cli.main(["tfresnet-train", "--helpfull"]), cli.main(["tfresnet-eval", "--helpfull"], mode="eval"),
         cli.kws_main(["tfresnet-kws", "--helpfull"]), cli.shards_main(["tfresnet-shards", "--helpfull"]),
         cli.predict_main(["tfresnet-predict", "--help"]), cli.predict_main(["tfresnet-predict", "--helpfull"]),
         cli.export_main(["tfresnet-export", "--help"]), cli.export_main(["tfresnet-export", "--helpfull"])]
print("RESULT", codes, "tensorflow" in sys.modules, round(time.perf_counter() - tic, 2))
"""


def test_help_of_every_command_lists_its_flags_by_section_with_defaults_at_once_without_tensorflow():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", HELP_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    *helps, result = proc.stdout.split("RESULT ")
    codes, tensorflow, seconds = result.rsplit(" ", 2)[0], result.split()[-2], float(result.split()[-1])
    assert codes.startswith("[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]") and tensorflow == "False" and seconds < 3, result
    text = "".join(helps)
    from tfresnet import config  # noqa: PLC0415

    for title in config.SECTIONS:
        assert f"\n{title}:\n" in text
    assert "  --batch_size: GLOBAL batch size, split evenly over replicas.\n    (default: 32)" in text
    assert "  --[no]deterministic: Bitwise-repeatable ops" in text and "(default: 'mnist')" in text
    assert text.startswith("tfresnet-train: train a model") and "tfresnet-eval: evaluate the newest" in text
    assert "tfresnet-kws enroll   --model=RUN" in text and "  --threshold: Scores (cosine similarity)" in text
    assert "tfresnet-shards: convert a class folder" in text and "  --out_dir: The shard folder" in text
    assert "tfresnet-predict: the top classes, by name" in text and "  --top_k: Classes given per image" in text
    assert "tfresnet-export: a trained image classifier as LiteRT" in text and "  --calibration_images: " in text
    assert "--explain: Also write each image's Grad-CAM" in text and "  --report: tfresnet-eval: also write" in text
    assert text.count("absl flags:\n  --flagfile: ") == 6  # --helpfull only, for each command
    # Through the console script's module, as the README names it.
    proc = subprocess.run([sys.executable, "-m", "tfresnet.train", "--help"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "Optimisation:\n  --optimizer: " in proc.stdout
