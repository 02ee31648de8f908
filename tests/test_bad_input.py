"""Every bad input the package knows about, through its real entry points: one line, exit status 2.

Each row of ``CASES`` runs one command of ``tfresnet-train``, ``tfresnet-eval``, ``tfresnet-kws`` or
``tfresnet-shards`` in this process (``tfresnet.cli``'s ``main`` functions, which the console
scripts call; a new process per case would cost a TensorFlow import each) and checks:

* the exit status is 2;
* standard error is exactly one line, ``<command>: error: ...``, that names the culprit (the
  row's expected words), with no traceback; nothing else was printed;
* nothing was written: the workspace (input files, run folders) is unchanged, no folder was made;
* it answered within ``SECONDS`` (TensorFlow is already imported here; a fresh process adds its
  3-8 s import, which ``test_offline_quick_start_*`` measures with a real process).

The README's "What the commands check" section lists these checks.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import wave

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, THREAD_VARS, shared_run, write_wav
from tfresnet import cli, training
from tfresnet.config import TrainConfig

# In-process seconds a bad input may take to be refused (a fresh process adds TensorFlow's import).
SECONDS = 7.0
# A proxy that refuses every connection: "offline" here whatever the machine's network.
OFFLINE = "http://127.0.0.1:9"


def png(rng, size=(20, 24)):
    return tf.io.encode_png(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).numpy()


def jpeg(rng, size=(20, 24)):
    return tf.io.encode_jpeg(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).numpy()


def raw_wav(path, samples, rate=16_000, channels=1, bits=16):
    """A PCM WAV file of any format (``write_wav`` writes only 16-bit mono)."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(bits // 8)
        f.setframerate(rate)
        f.writeframes(np.zeros(samples * channels, np.uint8 if bits == 8 else np.int16).tobytes())


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The workspace every case reads and none writes (each checks): data files good and bad, a trained
    image run, a few-shot encoder. Made once per test session, for both xdist workers."""
    return shared_run(tmp_path_factory, "bad_input_workspace", make_workspace)


def make_workspace(ws: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    np.savez(ws / "ok.npz", x_train=x, y_train=np.arange(64) % 10, x_test=x[:16], y_test=np.arange(16) % 10)
    (ws / "mnistdir").mkdir()
    shutil.copy(ws / "ok.npz", ws / "mnistdir" / "mnist.npz")
    np.savez(ws / "one_class.npz", x_train=x, y_train=np.zeros(64), x_test=x[:16], y_test=np.zeros(16))
    np.savez(ws / "labels.npz", x_train=x[:8], y_train=np.arange(8) % 3, x_test=x[:2], y_test=np.array([0, 7]))
    np.savez(ws / "keys.npz", images=x[:2])
    (ws / "pic.jpg").write_bytes(jpeg(rng))
    (ws / "jpeg.npz").write_bytes(jpeg(rng))
    (ws / "npzdir").mkdir()
    (ws / "afile").write_text("not a folder")
    (ws / "empty").mkdir()
    for i in range(4):
        (ws / "one_class" / "cats").mkdir(parents=True, exist_ok=True)
        (ws / "one_class" / "cats" / f"{i}.png").write_bytes(png(rng))
    for cls in ("cats", "dogs"):
        (ws / "two_class" / cls).mkdir(parents=True)
        for i in range(4):
            (ws / "two_class" / cls / f"{i}.png").write_bytes(png(rng))
    write_wav(ws / "ok.wav", 0.1 * np.sin(np.arange(16_000) / 5))
    raw_wav(ws / "empty.wav", 0)
    raw_wav(ws / "stereo.wav", 16_000, channels=2)
    raw_wav(ws / "8bit.wav", 16_000, bits=8)
    raw_wav(ws / "8khz.wav", 8_000, rate=8_000)
    # A trained image run (2 steps of mnist_resnet) and a few-shot encoder (2 steps on synthetic chirps).
    quiet = lambda line: None  # noqa: E731
    training.train(TrainConfig(dataset="npz", data_dir=str(ws / "ok.npz"), batch_size=16, train_steps=2,
                               steps_per_loop=2, eval_batch_size=16, model_dir=str(ws / "img_run")), log=quiet)
    training.train(TrainConfig(task="fewshot", dataset="synthetic", model_options={"widths": [4, 4, 4]},
                               train_steps=2, steps_per_loop=2, eval_episodes=2, metric="cosine", jit_compile=False,
                               model_dir=str(ws / "enc_run")), log=quiet)  # no XLA: nothing to compile
    assert cli.kws_main(["tfresnet-kws", "enroll", f"--model={ws / 'enc_run'}", f"--keywords={ws / 'kw.json'}",
                         "--keyword=yes", str(ws / "ok.wav")]) == 0
    assert cli.shards_main(["tfresnet-shards", f"--data_dir={ws / 'two_class'}", f"--out_dir={ws / 'shards'}",
                            "--num_shards=2"]) == 0


def snapshot(folder: pathlib.Path):
    return sorted((str(p.relative_to(folder)), p.is_dir(), 0 if p.is_dir() else p.stat().st_size,
                   p.stat().st_mtime_ns) for p in folder.rglob("*"))


NEW_RUN = "--model_dir={ws}/new_run"  # a run folder that must not appear
NPZ = ["--dataset=npz", "--data_dir={ws}/ok.npz", NEW_RUN]
ENC, KW = "--model={ws}/enc_run", "--keywords={ws}/kw.json"

# (command, arguments, words the one line must hold). {ws} is the workspace. tfresnet-train's
# default dataset is MNIST, wherever conftest found it; the rows that do not reach the data need none.
CASES = [
    # -- tfresnet-train: flags, names and numbers, before TensorFlow or data are touched
    ("train", ["--no_such_flag=1", NEW_RUN], "Unknown command line flag 'no_such_flag'"),
    ("train", ["--batchsize=8", NEW_RUN], "Unknown command line flag 'batchsize'"),
    ("train", ["--batch_size=many", NEW_RUN], "flag --batch_size=many"),
    ("train", ["--flagfile=flags/nope.cfg", NEW_RUN], "Unable to open flagfile"),
    ("train", ["stray", NEW_RUN], "unexpected arguments ['stray']"),
    ("train", ["--batch_size=0", NEW_RUN], "batch_size must be positive, got 0"),
    ("train", ["--epochs=-1", NEW_RUN], "epochs must be positive, got -1"),
    ("train", ["--learning_rate=0", NEW_RUN], "learning_rate must be positive, got 0"),
    ("train", ["--learning_rate=-1", NEW_RUN], "learning_rate must be positive, got -1"),
    ("train", ["--backbone_lr_scale=0", NEW_RUN], "backbone_lr_scale must be positive, got 0.0"),
    ("train", ["--drop_path_rate=1", NEW_RUN], "drop_path_rate must be in [0, 1), got 1.0"),
    ("train", ["--task=fewshot", "--splice_words=1", NEW_RUN], "splice_words must be in [0, 1) (a share of the "
                                                                "clips), got 1.0"),
    ("train", ["--target_accuracy=99.4", NEW_RUN], "target_accuracy must be in (0, 1], got 99.4 (a fraction: "
                                                   "0.994 for 99.4%)"),
    ("train", ["--target_accuracy=0.9", "--mode=train", NEW_RUN], "target_accuracy needs mode=train_and_eval"),
    ("train", ["--classes=1,x", NEW_RUN], "classes: expected integers"),
    ("train", ["--model_options=foo", NEW_RUN], "--model_options: expected key=value, got 'foo'"),
    ("train", ["--lr_schedule=piecewise", NEW_RUN], "lr_schedule=piecewise needs lr_boundaries"),
    ("train", ["--optimizer=adm", NEW_RUN], "optimizer: unknown value 'adm' (did you mean 'adam'?); expected one of "
                                            "adam, adamw, sgd"),
    ("train", ["--lr_schedule=cosin", NEW_RUN], "lr_schedule: unknown value 'cosin' (did you mean 'cosine'?)"),
    ("train", ["--task=few_shot", NEW_RUN], "task: unknown value 'few_shot' (did you mean 'fewshot'?)"),
    ("train", ["--strategy=mirorred", NEW_RUN], "strategy: unknown value 'mirorred'"),
    ("train", ["--precision=fp16", NEW_RUN], "precision: unknown value 'fp16'"),
    ("train", ["--augment=shfit", NEW_RUN], "augment: unknown value 'shfit' (did you mean 'shift'?)"),
    ("train", ["--keep_best", "--keep_best_by=los", NEW_RUN], "keep_best_by: unknown value 'los' (did you mean "
                                                              "'loss'?)"),
    ("train", ["--bad_images=ignore", NEW_RUN], "bad_images: unknown value 'ignore'"),
    ("train", ["--model=resnet5", NEW_RUN], "model: unknown value 'resnet5' (did you mean 'resnet50'?)"),
    ("train", ["--task=fewshot", "--model=resnet18", NEW_RUN], "model 'resnet18' is trained by task 'classify', "
                                                               "not 'fewshot'"),
    ("train", ["--dataset=mnits", NEW_RUN], "unknown dataset 'mnits'; did you mean mnist"),
    ("train", ["--model=resnet18", "--pretrained=torchvison", NEW_RUN], "unknown value 'torchvison' (did you mean "
                                                                        "'torchvision'?)"),
    ("train", ["--model=resnet50", "--pretrained=torchvision", NEW_RUN], "resnet50 is the keras.applications "
                                                                         "layout"),
    ("train", ["--pretrained=/nonexistent/w.pth", NEW_RUN], "pretrained file not found: /nonexistent/w.pth"),
    # -- options that the chosen task, optimizer or schedule does not read: one rule (config.OPTION_SCOPES)
    ("train", ["--momentum=2", NEW_RUN], "optimizer adam does not take momentum (options of optimizer sgd)"),
    ("train", ["--optimizer=sgd", "--momentum=2", NEW_RUN], "momentum must be in [0, 1)"),
    ("train", ["--warmup_steps=10", NEW_RUN], "lr_schedule constant does not take warmup_steps"),
    ("train", ["--n_way=10", NEW_RUN], "task classify does not take n_way (options of task fewshot)"),
    ("train", ["--extra_words_dir=x", NEW_RUN], "task classify does not take extra_words_dir"),
    ("train", ["--task=fewshot", "--pretrained=x.pth", NEW_RUN], "task fewshot does not take pretrained (options of "
                                                                 "task classify)"),
    ("train", ["--task=fewshot", "--mixup=0.2", NEW_RUN], "task fewshot does not take mixup"),
    ("train", ["--ema_warmup", NEW_RUN], "ema_warmup has no effect without ema"),
    # -- data: what the files and folders hold
    ("train", NPZ[:1] + ["--data_dir={ws}/one_class.npz", NEW_RUN], "has 1 class; a classifier needs at least 2"),
    ("train", ["--dataset=folder", "--data_dir={ws}/one_class", "--batch_size=4", NEW_RUN],
     "train has 1 class (cats); a classifier needs at least 2"),
    ("train", NPZ + ["--classes=3"], "has 1 class (class_3); a classifier needs at least 2"),
    ("train", ["--dataset=npz", "--data_dir={ws}/npzdir", NEW_RUN], "{ws}/npzdir is a folder, not a .npz file"),
    ("train", ["--dataset=npz", "--data_dir={ws}/jpeg.npz", NEW_RUN], "{ws}/jpeg.npz is a JPEG image, not a "
                                                                      "Keras-layout .npz"),
    ("train", ["--dataset=npz", "--data_dir=/nonexistent/x.npz", NEW_RUN], "npz file not found: /nonexistent/x.npz"),
    ("train", ["--dataset=npz", "--data_dir={ws}/labels.npz", "--eval_split=test", NEW_RUN],
     "y_test: labels must be in [0, 3)"),
    ("train", ["--dataset=npz", "--data_dir={ws}/keys.npz", NEW_RUN], "lacks ['x_train', 'y_train']"),
    ("train", NPZ + ["--train_split=validation"], "unknown split 'validation'"),
    ("train", NPZ + ["--classes=5,5"], "repeat a class"),
    ("train", NPZ + ["--classes=12"], "classes [12] do not exist"),
    ("train", NPZ + ["--examples_per_class=1000"], "fewer than examples_per_class 1000"),
    ("train", NPZ + ["--batch_size=4096"], "batch_size 4096 is larger than the 64 examples"),
    ("train", NPZ + ["--image_size=32"], "image_size does not apply to dataset npz"),
    ("train", ["--dataset=mnist", "--data_dir={ws}/mnistdir", "--image_size=32", NEW_RUN],
     "image_size does not apply to dataset mnist"),
    ("train", ["--dataset=folder", "--data_dir=/nonexistent/images", NEW_RUN], "image folder not found"),
    ("train", ["--dataset=mnist", "--data_dir=/nonexistent/data", NEW_RUN], "data_dir /nonexistent/data does not "
                                                                             "exist"),
    ("train", ["--dataset=shards", "--data_dir=/nonexistent/shards", NEW_RUN], "/nonexistent/shards/shards.json not "
                                                                               "found: not a shard folder"),
    ("train", ["--dataset=mnist", "--data_dir={ws}/empty", NEW_RUN], "mnist is not in {ws}/empty and cannot be "
                                                                     "downloaded (no connection"),
    ("train", ["--dataset=cifar10", "--data_dir={ws}/empty", NEW_RUN], "cifar10 is not in {ws}/empty and cannot be "
                                                                       "downloaded"),
    ("train", ["--task=fewshot", "--dataset=folder", "--data_dir={ws}/one_class", NEW_RUN], "has no .wav files"),
    # -- the model against its input
    ("train", ["--model=resnet50", "--dataset=synthetic", "--image_size=7", NEW_RUN],
     "resnet50 needs images of at least 32x32 pixels (it downsamples 32x), got 7x7"),
    ("train", NPZ + ["--model_options=widthz=3"], "option of model 'mnist_resnet': unknown value 'widthz'"),
    ("train", NPZ + ["--drop_path_rate=0.1"], "option of model 'mnist_resnet': unknown value 'drop_path_rate'"),
    ("train", NPZ + ["--pretrained=imagenet"], "model 'mnist_resnet' has no 'imagenet' weights"),
    ("train", ["--dataset=synthetic", "--model=preact_resnet22", "--image_size=16", NEW_RUN],
     "preact_resnet22 needs images of at least 32x32 pixels"),
    ("train", ["--task=fewshot", "--dataset=mnist", NEW_RUN], "unknown keyword dataset 'mnist'"),
    ("train", ["--task=fewshot", "--dataset=synthetic", "--model_options=widths=[4,4]", NEW_RUN],
     "widths (4, 4) and dilations (1, 2, 4) differ in length"),
    # -- run folders
    ("train", NPZ[:2] + ["--model_dir=/proc/tfresnet_run"], "model_dir /proc/tfresnet_run is not writable: /proc"),
    ("train", NPZ[:2] + ["--model_dir={ws}/afile/run"], "is not writable: {ws}/afile is a file"),
    ("train", NPZ[:2] + ["--model_dir={ws}/img_run", "--model=resnet20_cifar"],
     "holds a checkpoint of a different model (model: 'mnist_resnet' there"),
    ("train", NPZ[:2] + ["--model_dir={ws}/img_run", "--learning_rate=-1"], "learning_rate must be positive"),
    ("train", NPZ[:2] + ["--model_dir={ws}/img_run", "--n_way=3"], "task classify does not take n_way"),
    ("eval", NPZ[:2] + ["--model_dir={ws}/empty"], "no checkpoint in {ws}/empty/checkpoints"),
    ("eval", ["--dataset=synthetic", "--model_dir={ws}/img_run"], "dataset 'synthetic' has nothing to evaluate on"),
    ("eval", NPZ[:2] + ["--model_dir={ws}/img_run", "--model=resnet20_cifar"], "holds a checkpoint of a different "
                                                                               "model"),
    # -- tfresnet-kws
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "--keyword=x", "{ws}/pic.jpg"],
     "{ws}/pic.jpg: not a readable 16-bit PCM WAV file (it is a JPEG image)"),
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "--keyword=x", "{ws}/empty.wav"],
     "{ws}/empty.wav holds no samples"),
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "--keyword=x", "{ws}/stereo.wav"],
     "{ws}/stereo.wav: 16-bit PCM, 16000 Hz, stereo; expected 16-bit PCM, 16000 Hz, mono"),
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "--keyword=x", "{ws}/8bit.wav"],
     "{ws}/8bit.wav: 8-bit PCM, 16000 Hz, mono; expected"),
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "--keyword=x", "{ws}/8khz.wav"], "8000 Hz, mono; expected"),
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "--keyword=x"] + ["{ws}/ok.wav"] * 6, "1 to 5 recordings"),
    ("kws", ["enroll", ENC, "--keywords={ws}/new.json", "{ws}/ok.wav"], "enroll needs --keyword=NAME"),
    ("kws", ["enroll", ENC, "--keywords={ws}/afile/k.json", "--keyword=x", "{ws}/ok.wav"],
     "--keywords {ws}/afile/k.json is not writable: {ws}/afile is a file"),
    ("kws", ["classify", "--model={ws}/img_run", KW, "{ws}/ok.wav"], "{ws}/img_run is a run of task classify "
                                                                      "(mnist_resnet), not a few-shot keyword encoder"),
    ("kws", ["classify", "--model={ws}/img_run/model.keras", KW, "{ws}/ok.wav"],
     "holds a MnistResNet, not a few-shot keyword encoder"),
    ("kws", ["classify", "--model={ws}/pic.jpg", KW, "{ws}/ok.wav"], "{ws}/pic.jpg is a JPEG image, not a saved "
                                                                      "Keras model"),
    ("kws", ["classify", ENC, "--keywords={ws}/none.json", "{ws}/ok.wav"], "keywords file not found"),
    ("kws", ["classify", ENC, "--keywords={ws}/pic.jpg", "{ws}/ok.wav"], "not a keywords file"),
    ("kws", ["classify", ENC, KW], "classify needs WAV files"),
    ("kws", ["detect", "--model=/nonexistent", KW, "x.wav"], "no encoder at /nonexistent"),
    ("kws", ["hear", ENC], "expected a command: enroll, classify, detect, listen, export or calibrate"),
    ("kws", ["classify", ENC, KW, "--threshhold=0.5", "{ws}/ok.wav"], "Unknown command line flag 'threshhold'"),
    ("kws", ["export", ENC, "--tflite={ws}/afile/x.tflite"], "--tflite {ws}/afile/x.tflite is not writable: "
                                                             "{ws}/afile is a file"),
    ("kws", ["export", ENC], "export needs --tflite=OUT.tflite"),
    ("kws", ["export", ENC, "--tflite={ws}/x.tflite", "--int8_data={ws}/missing"], "--int8_data {ws}/missing is not "
                                                                                   "a folder"),
    # -- tfresnet-shards
    ("shards", ["--data_dir={ws}/two_class"], "--out_dir is required"),
    ("shards", ["--data_dir={ws}/two_class", "--out_dir={ws}/afile"], "--out_dir {ws}/afile is a file, not a folder"),
    ("shards", ["--data_dir=/nonexistent/images", "--out_dir={ws}/new_shards"], "image folder not found"),
    ("shards", ["--data_dir={ws}/two_class", "--out_dir={ws}/shards"], "already holds split 'train'; pass "
                                                                       "--overwrite"),
    ("shards", ["--dataset=mnist", "--out_dir={ws}/new_shards"], "cannot convert 'mnist'"),
    ("shards", ["--data_dir={ws}/two_class", "--out_dir={ws}/new_shards", "--num_shards=0"],
     "num_shards must be positive, got 0"),
    ("shards", ["--data_dir={ws}/two_class", "--out_dir={ws}/new_shards", "extra"], "unexpected arguments ['extra']"),
]
ENTRY = {"train": lambda argv: cli.main(["tfresnet-train", *argv]),
         "eval": lambda argv: cli.main(["tfresnet-eval", *argv], mode="eval"),
         "kws": lambda argv: cli.kws_main(["tfresnet-kws", *argv]),
         "shards": lambda argv: cli.shards_main(["tfresnet-shards", *argv])}
PROG = {"train": "tfresnet-train", "eval": "tfresnet-eval", "kws": "tfresnet-kws", "shards": "tfresnet-shards"}


def test_the_table_holds_every_command_and_at_least_40_cases():
    assert len(CASES) >= 40 and {command for command, _, _ in CASES} == set(ENTRY)
    assert len({(command, tuple(args)) for command, args, _ in CASES}) == len(CASES)  # no row twice


@pytest.mark.parametrize("command, args, words", CASES, ids=[f"{c}:{' '.join(a)}"[:80] for c, a, _ in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written_and_fast(command, args, words, ws, capfd, monkeypatch):
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(proxy, OFFLINE)
    monkeypatch.setenv("KERAS_HOME", str(ws / "empty"))  # no cached mnist.npz there
    monkeypatch.delenv("TFRESNET_DATA_DIR", raising=False)
    monkeypatch.chdir(REPO)
    argv = [a.format(ws=ws) for a in args]
    before = snapshot(ws)
    capfd.readouterr()
    tic = time.perf_counter()
    code = ENTRY[command](argv)
    seconds = time.perf_counter() - tic
    out, err = capfd.readouterr()
    assert code == 2, (code, err)
    assert err.startswith(f"{PROG[command]}: error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert words.format(ws=ws) in err, err
    assert "Traceback" not in err and out == "", out
    assert snapshot(ws) == before, "something was written"
    assert seconds < SECONDS, f"{seconds:.1f} s"


@pytest.mark.slow
def test_offline_quick_start_answers_in_one_line_within_15_seconds_in_a_real_process(tmp_path):
    """The README's quick start on a machine with no mnist.npz and no network: the one line, within
    15 s of start (TensorFlow's import included), no download folders left behind. Run through the
    installed ``tfresnet-train`` console script, as the README's first command is (the other README
    commands run in-process, tests/test_readme.py)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_HOME": str(home / ".keras"), "HOME": str(home),
           **{proxy: OFFLINE for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}}
    for var in ("TFRESNET_DATA_DIR", *THREAD_VARS):  # as a user runs it: TensorFlow's own thread counts
        env.pop(var, None)
    tic = time.perf_counter()
    script = pathlib.Path(sys.executable).parent / "tfresnet-train"
    proc = subprocess.run([str(script), f"--flagfile={REPO / 'flags' / 'mnist.cfg'}"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - tic
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("tfresnet-train: error: mnist is not in tensorflow-datasets' data_dir"), proc.stderr
    assert "cannot be downloaded (no connection" in proc.stderr and "--data_dir=FOLDER" in proc.stderr
    assert seconds < 15, f"{seconds:.1f} s"
    assert list(work.iterdir()) == []  # no runs/mnist, no download folders
    # No data folders at home either (TensorFlow, Keras and matplotlib keep their settings there).
    assert not (home / "tensorflow_datasets").exists() and not (home / ".keras" / "datasets").exists()


def test_bad_input_after_a_run_leaves_the_model_dir_as_it_was(ws, tmp_path, capsys):
    """Bad flags and data against a run folder with checkpoints: one line each, nothing written there."""
    model_dir = tmp_path / "run"
    shutil.copytree(ws / "img_run", model_dir)
    before = snapshot(model_dir)
    cases = [
        (["--model=resnet20_cifar"], "holds a checkpoint of a different model (model: 'mnist_resnet' there"),
        (["--dataset=synthetic", "--image_size=32"], "holds a checkpoint of a different model (input_shape"),
        ([f"--data_dir={ws / 'labels.npz'}", "--eval_split=test"], "y_test: labels must be in [0, 3)"),
        ([f"--data_dir={ws / 'keys.npz'}"], "lacks ['x_train', 'y_train']"),
        (["--learning_rate=-1"], "learning_rate must be positive, got -1"),
        (["--strategy=tpuu"], "strategy: unknown value 'tpuu'"),
    ]
    for extra, message in cases:
        code = cli.main(["tfresnet-train", "--dataset=npz", f"--data_dir={ws / 'ok.npz'}", "--batch_size=16",
                         "--train_steps=4", f"--model_dir={model_dir}", *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (extra, err)
        assert err.count("\n") == 1 and err.startswith("tfresnet-train: error: "), err
        assert snapshot(model_dir) == before, extra


def test_hidden_files_are_skipped_by_every_folder_reader(ws, tmp_path):
    """.DS_Store and ._* files (macOS), .ipynb_checkpoints folders: never an image, a class or a keyword."""
    from tfresnet import data  # noqa: PLC0415
    from tfresnet.kws import audio

    folder = tmp_path / "images"
    shutil.copytree(ws / "two_class", folder)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "cats" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "dogs" / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    (folder / ".ipynb_checkpoints").mkdir()
    source = data.load_source("folder", "train", str(folder), image_size=16)
    assert source.class_names == ("cats", "dogs") and not any("/." in f for f in source.files)
    assert cli.shards_main(["tfresnet-shards", f"--data_dir={folder}", f"--out_dir={tmp_path / 'shards'}",
                            "--num_shards=1"]) == 0
    keywords = tmp_path / "keywords"
    write_wav(keywords / "yes" / "spk_nohash_0.wav", np.zeros(1600))
    (keywords / "yes" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (keywords / ".hidden").mkdir()
    assert audio.load_keyword_folder(keywords).keywords == ["yes"]


def test_what_is_right_but_was_silent_now_says_so(ws, tmp_path, capsys):
    """A re-enrolled keyword says it replaced the old one; a finished run says there is nothing left to do."""
    keywords = tmp_path / "kw.json"
    shutil.copy(ws / "kw.json", keywords)
    assert cli.kws_main(["tfresnet-kws", "enroll", f"--model={ws / 'enc_run'}", f"--keywords={keywords}",
                         "--keyword=yes", str(ws / "ok.wav")]) == 0
    assert "re-enrolled 'yes'" in capsys.readouterr().out and json.loads(keywords.read_text()).keys() == {"yes"}
    run = tmp_path / "run"
    shutil.copytree(ws / "img_run", run)
    assert cli.main(["tfresnet-train", "--dataset=npz", f"--data_dir={ws / 'ok.npz'}", "--batch_size=16",
                     "--train_steps=2", "--steps_per_loop=2", "--eval_batch_size=16", f"--model_dir={run}"]) == 0
    out = capsys.readouterr().out
    assert "Nothing left to train: the checkpoint is at step 2 of 2 (raise --epochs or --train_steps" in out


@pytest.mark.slow
def test_synthetic_data_trains_and_evaluates_through_the_cli(tmp_path, capsys):
    """The README's data table's last row, as a new user types it (it used to fail after training)."""
    assert cli.main(["tfresnet-train", "--dataset=synthetic", "--batch_size=8", "--train_steps=4",
                     "--steps_per_loop=2", f"--model_dir={tmp_path / 'run'}"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 1, Loss: " in out and "Test Accuracy: " in out and (tmp_path / "run" / "model.keras").exists()


@pytest.mark.slow
def test_an_image_that_does_not_decode_is_one_line_in_a_real_process(ws, tmp_path):
    """Found while training (the folder is read lazily): the one line naming the file, exit status 2,
    and none of the JPEG decoder's own complaints above it."""
    folder = tmp_path / "images"
    shutil.copytree(ws / "two_class", folder)
    rng = np.random.default_rng(1)
    broken = jpeg(rng, (40, 48))
    (folder / "cats" / "0a.jpg").write_bytes(broken[:len(broken) // 3] + b"\x00" * 10)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command's own default, as a user runs it
    proc = subprocess.run([sys.executable, "-m", "tfresnet.train", "--dataset=folder", f"--data_dir={folder}",
                           "--image_size=32", "--model=resnet20_cifar", "--batch_size=4", "--train_steps=9",
                           "--steps_per_loop=2", "--mode=train", "--noexport", f"--model_dir={tmp_path / 'run'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == f"tfresnet-train: error: folder:{folder} train: cannot read or decode {folder}/cats/0a.jpg\n"
