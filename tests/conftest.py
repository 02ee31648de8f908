"""Shared test set-up: quiet TensorFlow, two logical CPUs, the shared MNIST file."""

import os
import pathlib

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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
