"""Every command in README.md and the pages under docs/ runs (training commands shortened with overriding flags)."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import MNIST_NPZ, README, REPO, SPOKEN_KEYWORDS, image_folder, local, pytorch_weights_file, write_wav

BIN = os.path.dirname(sys.executable)


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def bash_commands():
    return [line.strip() for block in blocks("bash") for line in block.splitlines() if line.strip()]


def test_setup_commands_are_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    commands = bash_commands()
    install = [c for c in commands if "pip install" in c]
    tests = [c for c in commands if "pytest" in c]
    # The whole suite, which CI runs, and the quick tier for working.
    assert install == ["python -m pip install -e '.[test]'"]
    assert tests == ["python -m pytest -n 2", 'python -m pytest -m "not slow" -n 2']
    assert install[0] in ci.splitlines() and tests[0] + " --durations=15" in ci.splitlines()


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_cli_commands_run(tmp_path, monkeypatch, capsys):
    """The image commands, in this process through the console scripts' own functions (one
    TensorFlow start; tests/test_bad_input.py runs the installed ``tfresnet-train`` itself)."""
    from tfresnet import cli

    # The first command has no --data_dir: a user's first run downloads MNIST into a cache, which
    # is what $TFRESNET_DATA_DIR stands for here (no network in CI).
    monkeypatch.setenv("TFRESNET_DATA_DIR", str(MNIST_NPZ.parent))
    monkeypatch.chdir(REPO)
    ran, run_dirs, predicted, exported = 0, {}, 0, 0
    for command in bash_commands():
        words = local(shlex.split(command))
        if words[0] == "export":
            monkeypatch.setenv(*words[1].split("=", 1))
            continue
        # What the docs write into a run folder goes to this test's folder instead.
        words = [re.sub(r"^(--(?:report|explain|out_dir))=runs/", rf"\1={tmp_path}/", w) for w in words]
        if words[0] == "tfresnet-predict" and "--pretrained" not in command:  # the run trained above
            predicted += predict(words, run_dirs, tmp_path, capsys)
            continue
        if words[0] == "tfresnet-export":
            exported += export(words, run_dirs, tmp_path, capsys)
            continue
        if words[0] not in ("tfresnet-train", "tfresnet-eval") or "kws_protores" in command or "shards" in command:
            continue  # keyword spotting and shards: test_keyword_spotting_commands_run, test_data_commands_run
        stem = os.path.basename(next(w for w in words if w.startswith("--flagfile="))).removesuffix(".cfg")
        # Each training command starts a fresh run; evaluation reads the last run of its flag file.
        if words[0] == "tfresnet-train":
            run_dirs[stem] = tmp_path / f"{stem}_{ran}"
        run_dir = run_dirs[stem]
        # Later flags override the flag file: a short run of the same command (mnist_fast's exported:
        # the page on using a trained model predicts with it).
        short = ["--train_split=train[:256]", "--eval_split=test[:256]", "--epochs=1", f"--model_dir={run_dir}",
                 *([] if stem == "mnist_fast" else ["--noexport"])]
        if stem == "finetune_folder":
            # Your images: a small folder. The weights: offline, a random PyTorch state dict takes the
            # download's path through the port; ResNet-18 at 32 pixels keeps it short (ResNet-50 v1.5
            # against PyTorch is tests/test_weights.py).
            short = [f"--data_dir={image_folder(tmp_path / 'images')}", "--model=resnet18",
                     f"--pretrained={pytorch_weights_file(tmp_path)}", "--image_size=32", "--batch_size=4",
                     "--eval_batch_size=4", *short[2:]]
        code = cli.main(words + short, mode="eval" if words[0] == "tfresnet-eval" else None)
        out, err = capsys.readouterr()
        assert code == 0, (command, err)
        if words[0] == "tfresnet-train":
            assert "Epoch 1, Loss:" in out and "Test Accuracy: " in out, (command, out)
        else:  # the newest checkpoint of the training command above: 256 images in batches of 128
            assert re.search(r"^Eval test\[:256\] at step 2: loss: [\d.]+, accuracy: [\d.]+%, top5: [\d.]+%$", out,
                             flags=re.M), (command, out)
        if "--report" in command:  # docs/use.md
            report = next(w for w in words if w.startswith("--report=")).split("=", 1)[1]
            assert "Report of 256 images: top-1 " in out and os.path.getsize(f"{report}/confusion_matrix.png") > 1000
        ran += 1
    assert ran == 6 and predicted == 2 and exported == 1


def export(words, run_dirs, tmp_path, capsys):
    """``tfresnet-export --model=runs/NAME --out_dir=... --dataset=mnist``: the run trained above."""
    from tfresnet import cli

    words = [f"--model={run_dirs[w.split('/')[-1]]}" if w.startswith("--model=runs/") else w for w in words]
    assert cli.export_main(words) == 0, capsys.readouterr().err
    out_dir = next(w for w in words if w.startswith("--out_dir=")).split("=", 1)[1]
    assert sorted(os.listdir(out_dir)) == ["export.json", "labels.txt", "model_float16.tflite", "model_float32.tflite",
                                           "model_int8.tflite"]
    assert "int8: " in capsys.readouterr().out
    return 1


def predict(words, run_dirs, tmp_path, capsys):
    """``tfresnet-predict --model=runs/NAME ... my_digits/``: the run of that name trained above, on
    a folder of MNIST test digits; one line per image, its top classes by name."""
    import tensorflow as tf

    from tfresnet import cli, data

    digits = tmp_path / "my_digits"
    digits.mkdir(exist_ok=True)
    for i, image in enumerate(data.load_source("mnist", "test[:4]", str(MNIST_NPZ.parent)).images):
        (digits / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    words = [f"--model={run_dirs[w.split('/')[-1]]}" if w.startswith("--model=runs/") else
             str(digits) if w == "my_digits/" else w for w in words]
    assert cli.predict_main(words) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    top_k = next((int(w.split("=")[1]) for w in words if w.startswith("--top_k=")), 5)
    assert len(lines) == 4 and all(line.startswith(str(digits)) and line.count(", ") == top_k - 1 for line in lines)
    assert {line.split(": ")[1].split()[0] for line in lines} <= set("0123456789")
    explained = next((w.split("=", 1)[1] for w in words if w.startswith("--explain=")), None)
    if explained:
        assert sorted(os.listdir(explained)) == sorted(f"{i}_gradcam.{ext}" for i in range(4) for ext in ("npy", "png"))
    return 1


def test_tensorboard_command_starts(tmp_path):
    command = next(c for c in bash_commands() if c.startswith("tensorboard"))
    words = shlex.split(command)
    words[0] = os.path.join(BIN, words[0])
    (tmp_path / "runs").mkdir()
    proc = subprocess.Popen(words + ["--port", "0", "--host", "127.0.0.1"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, out = time.time() + 60, ""
        while time.time() < deadline and "http://" not in out:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        assert "TensorBoard" in out and "http://127.0.0.1:" in out, out
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("index", range(len(blocks("python"))))
@pytest.mark.slow
def test_python_blocks_run(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks("python")[index], f"README.md python block {index}", "exec"), {})


@pytest.mark.slow
def test_data_commands_run(tmp_path, capsys):
    """The data section's commands, in this process: a folder to shards, then a short run on them."""
    from tfresnet import cli

    commands = [local(shlex.split(c)) for c in bash_commands() if "shards" in c]
    assert [c[0] for c in commands] == ["tfresnet-shards", "tfresnet-train"]
    image_folder(tmp_path / "data" / "images")
    swap = lambda words: [w.replace("data/", f"{tmp_path}/data/") for w in words]  # noqa: E731
    assert cli.shards_main(swap(commands[0])) == 0
    assert "train: 14 images of 2 classes -> 14 shards" in capsys.readouterr().out
    short = ["--model=resnet20_cifar", "--image_size=32", "--batch_size=4", "--eval_batch_size=4", "--train_steps=3",
             "--steps_per_loop=3", f"--model_dir={tmp_path / 'run'}", "--noexport"]
    assert cli.main(swap(commands[1]) + short) == 0, capsys.readouterr().err
    assert "Test Accuracy: " in capsys.readouterr().out


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time: any write shows."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.needs_keywords
@pytest.mark.slow
def test_keyword_spotting_commands_run(tmp_path, capsys):
    """The keyword-spotting section, in this process (one TensorFlow start), on the shared spoken
    keywords: a tiny encoder for one short epoch, then the same commands on its run folder."""
    import numpy as np
    import tensorflow as tf

    from tfresnet import cli
    from tfresnet.kws import audio

    commands = [shlex.split(c) for c in bash_commands()
                if "kws_protores" in c or "kws_words.py" in c or c.startswith("tfresnet-kws")]
    assert [c[0] for c in commands] == ["python", "tfresnet-train", "tfresnet-eval"] + ["tfresnet-kws"] * 6
    assert [c[1] for c in commands[3:]] == ["calibrate", "enroll", "classify", "detect", "listen", "export"]
    # The WAV files the commands name: test words of held-out speakers, and a 3 s recording.
    clips = audio.keyword_split(audio.load_keyword_folder(SPOKEN_KEYWORDS), "test")
    dog = clips.waveforms[clips.labels == clips.keywords.index("dog")]
    files = {"dog_1.wav": dog[0], "dog_2.wav": dog[1], "clip.wav": dog[2],
             "recording.wav": np.concatenate([np.zeros(16000, np.float32), dog[3], np.zeros(16000, np.float32)])}
    for name, wave in files.items():
        tf.io.write_file(str(tmp_path / name), tf.audio.encode_wav(wave[:, None], audio.SAMPLE_RATE))
    run, extra = tmp_path / "kws_protores_words", tmp_path / "kws_words"
    short = ["--epochs=1", "--episodes_per_epoch=10", "--eval_episodes=10", f"--model_dir={run}",
             "--model_options=widths=[8,8,8],bins_as_channels=true,pooling=average", f"--extra_words_dir={extra}"]
    for words in commands:
        words = local(words)
        words = [str(tmp_path / w) if w in files else w.replace("runs/kws_protores_words", str(run)) for w in words]
        words = [w.replace("--keywords=", f"--keywords={tmp_path}/").replace("--tflite=", f"--tflite={tmp_path}/")
                 .replace("runs/kws_words", str(extra)) for w in words]
        if words[0] == "python":
            # Three words of a small dictionary where espeak-ng and sox are installed (.ci/run tries);
            # elsewhere a stand-in folder: two chirps by each training speaker.
            if shutil.which("espeak-ng") and shutil.which("sox"):
                (tmp_path / "dict").write_text("table\nchair\nwindow\nlamp\n")
                proc = subprocess.run([sys.executable, *words[1:], "--words=3", f"--dictionary={tmp_path / 'dict'}"],
                                      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                                      text=True, timeout=300)
                assert proc.returncode == 0 and len(os.listdir(extra)) == 3, proc.stderr[-2000:]
            else:
                every = audio.load_keyword_folder(SPOKEN_KEYWORDS).speakers
                chirps, _ = audio.synthetic_keywords(2, 1, seconds=1.0)
                for word, chirp in zip(("table", "chair"), chirps):
                    for speaker in set(every) - audio.held_out_speakers(every):
                        write_wav(extra / word / f"{speaker}_nohash_0.wav", chirp)
        elif words[0] == "tfresnet-kws":
            shrink = ["--cohort_hours=0.02"] if words[1] == "calibrate" else []  # 72 s of speech, not 2 hours
            assert cli.kws_main(words + shrink) == 0, capsys.readouterr().err
        elif words[0] == "tfresnet-eval":
            before = snapshot(run)
            assert cli.main(words + short, mode="eval") == 0  # what the tfresnet-eval entry point runs
            assert snapshot(run) == before  # evaluation writes nothing
        else:
            assert cli.main(words + short) == 0
    out = capsys.readouterr().out
    assert "Epoch 1, Loss:" in out and "(5-way 1-shot, validation keywords)" in out
    assert "Eval test keywords at step 10: " in out and "(5-way 1-shot, 10 episodes, held-out speakers)" in out
    assert f"{tmp_path / 'clip.wav'} " in out and "enrolled 'dog' from 2 recording(s)" in out
    assert "kws_int8.tflite (int8, " in out and (tmp_path / "kws_int8.tflite").stat().st_size > 0
    assert f"wrote {run / 'cohort.npz'}: 0.02 h of running speech (2" in out  # 22 or 23 training words
    # The encoder's classifier was over the 20 training words and the extra ones (3, or the 2 stand-ins).
    assert json.loads((run / "run.json").read_text())["word_classes"] in (22, 23)
