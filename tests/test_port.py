"""Weight ports from keras.applications: same outputs, clear errors offline."""

import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import tfresnet
from tfresnet import port


@pytest.mark.parametrize("name", sorted(port.KERAS_APPLICATIONS))
def test_port_from_keras_applications_gives_same_outputs(name, rng):
    shape = (64, 64, 3)
    ours = tfresnet.create_model(name, input_shape=shape)
    theirs = port.keras_application(name, None, 1000, shape)  # randomly initialised
    # Randomise BatchNorm statistics too, so the test sees them used in inference mode.
    for layer in theirs.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([1 + 0.1 * rng.standard_normal(g.shape), 0.1 * rng.standard_normal(b.shape),
                               0.1 * rng.standard_normal(m.shape), 1 + rng.random(v.shape)])
    assert port.copy_weights(theirs, ours) > 100
    x = rng.uniform(-1, 1, (2, *shape)).astype("float32")
    diff = np.abs(ours(x, training=False) - theirs(x, training=False)).max()
    assert diff <= 1e-4


def test_pretrained_without_network_is_a_clear_error(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = "import tfresnet; tfresnet.create_model('resnet50', pretrained='imagenet')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        pytest.skip("this machine reached the network and downloaded the weights")
    assert "RuntimeError: could not fetch ImageNet weights for resnet50" in proc.stderr


def test_pretrained_rejects_models_without_keras_twin():
    with pytest.raises(ValueError, match="no keras.applications twin"):
        tfresnet.create_model("resnet18", pretrained="imagenet")
