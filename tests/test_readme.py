"""Every command in README.md runs (training commands shortened with overriding flags)."""

import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from conftest import REPO

README = (REPO / "README.md").read_text()
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
    assert install == ["python -m pip install -e '.[test]'"] and tests == ["python -m pytest -n 2"]
    assert install[0] in ci.splitlines() and tests[0] + " --durations=15" in ci.splitlines()


def test_cli_commands_run(tmp_path):
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "PYTHONPATH": str(REPO)}
    env.pop("TFRESNET_DATA_DIR", None)
    ran = 0
    for command in bash_commands():
        words = shlex.split(command)
        if words[0] == "export":
            key, value = words[1].split("=", 1)
            env[key] = value
            continue
        if words[0] not in ("tfresnet-train", "tfresnet-eval"):
            continue
        flagfile = next(w for w in words if w.startswith("--flagfile="))
        run_dir = tmp_path / os.path.basename(flagfile).removesuffix(".cfg")
        # Later flags override the flag file: a short run of the same command.
        short = ["--train_split=train[:256]", "--eval_split=test[:256]", "--epochs=1", f"--model_dir={run_dir}",
                 "--noexport"]
        proc = subprocess.run(words + short, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        assert ("Epoch 1, Loss:" if words[0] == "tfresnet-train" else "Eval test[:256]") in proc.stdout
        ran += 1
    assert ran == 3


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
def test_python_blocks_run(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks("python")[index], f"README.md python block {index}", "exec"), {})


def table_commands(prefix):
    return re.findall(rf"^\|.*\| `({re.escape(prefix)}[^`]*)` \|$", README, flags=re.M)


@pytest.mark.parametrize("command", table_commands("python benchmarks/"))
def test_benchmark_commands_run(command, tmp_path):
    """The README's benchmark commands, shrunk by overriding flags (argparse keeps the last value)."""
    words = shlex.split(command)
    words[0] = sys.executable
    script = os.path.basename(words[1])
    shrink = {"train_throughput.py": ["--batch_size", "2", "--steps", "1", "--repeats", "1"],
              "data_throughput.py": ["--batch_size", "8", "--batches", "3", "--steps", "1"],
              "time_to_accuracy.py": ["--target", "0.5", "--", "--train_split=train[:2000]", "--eval_split=test[:256]",
                                      "--epochs=1", "--batch_size=32"]}[script]
    if "--model" in words and words[words.index("--model") + 1] == "resnet50":
        shrink += ["--model", "resnet18"]  # same code path at a CPU-friendly size; ResNet-50 is a GPU figure
    proc = subprocess.run(words + shrink, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (command, proc.stderr[-2000:])
    assert ("reached 50.00% at epoch 1" if script == "time_to_accuracy.py" else "x the") in proc.stdout, proc.stdout
