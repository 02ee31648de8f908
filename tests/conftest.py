"""Shared test set-up: quiet TensorFlow, two logical CPUs, the shared MNIST file."""

import json
import os
import pathlib
import socket
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy tests have two replicas; must precede any op.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = pathlib.Path(__file__).resolve().parents[1]
MNIST_NPZ = REPO.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture
def mnist_npz() -> pathlib.Path:
    if not MNIST_NPZ.exists():
        pytest.fail(f"shared MNIST missing at {MNIST_NPZ} (tests need ../shared/data/mnist.npz)")
    return MNIST_NPZ


@pytest.fixture(scope="session")
def mirrored() -> tf.distribute.MirroredStrategy:
    """The two-CPU MirroredStrategy, one per test process: each instance numbers its collectives
    from the same start, so two that run steps in one process collide ("Shape mismatch in the
    collective instance 100")."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def launch_workers(model_dirs, *extra):
    """Starts one CLI process per model_dir as the workers of one MultiWorkerMirroredStrategy cluster."""
    ports = []
    for _ in model_dirs:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    args = ["--strategy=multi_worker", "--dataset=mnist", f"--data_dir={MNIST_NPZ.parent}", "--batch_size=32",
            "--mode=train", "--model_options=sync_batchnorm=true", *extra]
    procs = []
    for i, model_dir in enumerate(model_dirs):
        env = {**os.environ, "PYTHONPATH": str(REPO),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen([sys.executable, "-m", "tfresnet.train", *args, f"--model_dir={model_dir}"],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs
