"""The benchmark scripts run end to end (tiny sizes: these check the harness, not the speed)."""

import json
import os
import re
import subprocess
import sys

from conftest import MNIST_NPZ, REPO


def bench(script, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_throughput_interleaves_variants_and_profiles(tmp_path):
    out = bench("train_throughput.py", "--batch_size=8", "--steps=2", "--repeats=2", "--variants=fit,loop",
                f"--profile={tmp_path / 'trace'}", f"--json={tmp_path / 'r.json'}")
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["images_per_sec"]) == {"fit", "loop"}
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
