"""Runtime: which strategy a machine gets, the precision policy, XLA by default."""

import keras
import tensorflow as tf

from tfresnet import runtime


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
