"""The benchmark scripts run end to end (tiny sizes: these check the harness, not the speed)."""

import json
import os
import re
import subprocess
import sys

from conftest import MNIST_NPZ, REPO


def run_bench(script, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def bench(script, *args):
    proc = run_bench(script, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_throughput_interleaves_variants_and_profiles(tmp_path):
    out = bench("train_throughput.py", "--batch_size=8", "--steps=2", "--repeats=2",
                "--variants=fit,loop,loop_resident", f"--profile={tmp_path / 'trace'}", f"--json={tmp_path / 'r.json'}")
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["images_per_sec"]) == {"fit", "loop", "loop_resident"}
    assert all(len(r) == 2 and min(r) > 0 for r in result["rounds"].values())
    assert result["paired_ratio"]["fit"] == 1.0 and result["paired_ratio"]["loop"] > 0
    assert result["train_flops_per_image"] > 3 * 30e6  # mnist_resnet: ~40 MFLOP forward
    # The profile names real TensorFlow ops (convolutions dominate) and leaves a trace for TensorBoard.
    assert "profile loop" in out and "Conv2D" in out.split("profile loop")[1].splitlines()[0]
    assert list((tmp_path / "trace" / "loop").rglob("*.xplane.pb"))


def test_data_throughput_against_the_model():
    out = bench("data_throughput.py", f"--data_dir={MNIST_NPZ.parent}", "--batch_size=16", "--batches=5",
                "--steps=2")
    rates = dict(re.findall(r"^(mnist \.npz|synthetic).*?=\s+([\d.]+)x the model$", out, flags=re.M))
    assert set(rates) == {"mnist .npz", "synthetic"} and all(float(r) > 0 for r in rates.values()), out


def test_time_to_accuracy_times_a_real_run_to_its_target(tmp_path):
    small = ["--", f"--data_dir={MNIST_NPZ.parent}", "--train_split=train[:2000]", "--eval_split=test[:500]",
             "--batch_size=32", "--epochs=3"]
    out = bench("time_to_accuracy.py", "--flagfile=flags/mnist.cfg", "--target=0.5", f"--json={tmp_path / 'r.json'}",
                *small)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["epoch"] == 1 and result["step"] == 62 and len(result["epochs"]) == 1, out
    assert result["epochs"][0]["test_accuracy"] >= 0.5
    assert 0 < result["training_seconds"] < result["process_seconds"]
    assert re.search(r"^reached 50.00% at epoch 1 \(step 62\): [\d.]+ s of training", out, flags=re.M)
    # A target out of reach is an error, with the best accuracy seen.
    proc = run_bench("time_to_accuracy.py", "--target=1.0", *small[:-1], "--epochs=1")
    assert proc.returncode == 1 and re.search(r"did not reach 100.00% in 1 epochs \(best \d+\.\d+%\)", proc.stderr)
