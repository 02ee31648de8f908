"""Runtime: which strategy a machine gets, the precision policy, XLA by default."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from tfresnet import training
from tfresnet.config import TrainConfig
from tfresnet.engine import runtime


def test_detect_strategy_prefers_tpu_then_gpus_then_default(monkeypatch):
    for var in ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: [])
    resolved = []

    def resolver(tpu):
        resolved.append(tpu)
        if tpu == "missing":
            raise ValueError("no TPU")

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    # Nothing announces a TPU: the resolver (a network probe) is never tried.
    assert runtime.detect_strategy() == "default" and resolved == []
    assert runtime.make_strategy("auto") is tf.distribute.get_strategy()
    monkeypatch.setenv("COLAB_TPU_ADDR", "10.0.0.2:8470")
    assert runtime.detect_strategy() == "tpu" and resolved == [""]
    assert runtime.detect_strategy(tpu="missing") == "default"  # announced but not found: go on without
    monkeypatch.delenv("COLAB_TPU_ADDR")
    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus[:1] if kind == "GPU" else [])
    assert runtime.detect_strategy() == "one_device"  # its update compiles with the XLA step
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    assert runtime.detect_strategy() == "mirrored"
    monkeypatch.setattr(runtime.glob, "glob", lambda pattern: ["/dev/accel0"] if "accel" in pattern else [])
    assert runtime.detect_strategy() == "tpu"


def test_precision_policy_is_restored_and_xla_is_off_by_default_on_cpu():
    with runtime.precision_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    default = tf.distribute.get_strategy()
    assert runtime.use_xla(None, default) is False and runtime.use_xla(True, default) is True


@pytest.mark.needs_mnist
def test_training_batches_are_fetched_to_the_device_ahead_and_resume_exactly(tmp_path, mnist_npz, mirrored):
    cfg = TrainConfig(dataset="mnist", data_dir=str(mnist_npz.parent), train_split="train[:256]", batch_size=32,
                      strategy="one_device", device_prefetch=3, model_dir=str(tmp_path / "run"), mode="train")
    run = training.Run(cfg, log=lambda line: None)
    iterator = run.task.train_iterator(0)
    # tf.distribute's device iterator: a buffer of 3 batches per replica, copied while the step runs.
    assert isinstance(iterator, tf.distribute.DistributedIterator)
    options = iterator._options
    assert options.experimental_fetch_to_device and options.experimental_per_replica_buffer_size == 3
    first = [next(iterator) for _ in range(5)]
    assert first[0][0].dtype == tf.uint8 and "CPU:0" in first[0][0].device
    resumed = next(run.task.train_iterator(3))  # what is prefetched is never a data position
    np.testing.assert_array_equal(resumed[0], first[3][0])
    np.testing.assert_array_equal(resumed[1], first[3][1])
    # Mirrored: each replica's share arrives on its own device.
    rt = runtime.Runtime(mirrored, False, "float32", device_prefetch=2)
    dist = rt.distribute(lambda ctx: tf.data.Dataset.range(64).batch(ctx.get_per_replica_batch_size(8)))
    assert dist._options.experimental_per_replica_buffer_size == 2
    devices = [v.device for v in next(iter(dist)).values]
    assert devices[0].endswith("CPU:0") and devices[1].endswith("CPU:1")


def test_the_default_strategy_prefetches_to_the_first_gpu(monkeypatch):
    # No GPU here: the first CPU stands in for it, which prefetch_to_device accepts as well.
    rt = runtime.Runtime(tf.distribute.get_strategy(), False, "float32")
    assert isinstance(rt.distribute(lambda ctx: tf.data.Dataset.range(4)), tf.data.Dataset)
    cpu = tf.config.list_logical_devices("CPU")[0]
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [cpu])
    dist = rt.distribute(lambda ctx: tf.data.Dataset.range(4).batch(2))
    assert "Prefetch" in type(dist).__name__ or "Device" in type(dist).__name__, type(dist)
    assert [b.numpy().tolist() for b in dist] == [[0, 1], [2, 3]]


@pytest.mark.slow
def test_the_persistent_compilation_cache_is_written_then_read(tmp_path):
    program = ("import sys; from tfresnet.engine import runtime; runtime.use_compilation_cache(sys.argv[1]); "
               "import tensorflow as tf; f = tf.function(lambda x: tf.nn.relu(x @ x), jit_compile=True); "
               "print(float(tf.reduce_sum(f(tf.ones((8, 8))))))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_XLA_FLAGS", None)
    env.pop("XLA_FLAGS", None)
    outputs, entries = [], []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", program, str(tmp_path / "xla")], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout.strip())
        entries.append(sorted(p.name for p in (tmp_path / "xla").glob("xla_compile_cache__*XLA_CPU_JIT*")))
    assert outputs == ["512.0", "512.0"]
    # The first run wrote its executable; the second found it and wrote nothing new.
    assert len(entries[0]) == 1 and entries[1] == entries[0]
    assert (tmp_path / "xla").is_dir()


def test_compilation_cache_folder_defaults_and_flags_are_appended(tmp_path, monkeypatch):
    monkeypatch.delenv("TFRESNET_XLA_CACHE", raising=False)
    assert runtime.compilation_cache_dir().endswith(f"xla-{tf.__version__}")
    monkeypatch.setenv("TFRESNET_XLA_CACHE", str(tmp_path / "env"))
    assert runtime.compilation_cache_dir() == str(tmp_path / "env")
    assert runtime.compilation_cache_dir("") is None and runtime.compilation_cache_dir("/x") == "/x"
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_per_fusion_autotune_cache_dir=/mine")
    runtime.use_compilation_cache(str(tmp_path / "cache"))
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=2 --tf_xla_persistent_cache_directory={tmp_path}/cache"
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_per_fusion_autotune_cache_dir=/mine"  # the user's flag wins
