"""Weight ports from keras.applications: same outputs, clear errors offline."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfresnet
from tfresnet.weights import port


@pytest.mark.parametrize("name", sorted(port.KERAS_APPLICATIONS))
@pytest.mark.slow
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


def test_a_port_to_other_classes_keeps_the_fresh_head_and_copies_nothing_on_a_mismatch(rng):
    shape = (64, 64, 3)
    theirs = port.keras_application("resnet50", None, 1000, shape)
    tuned = tfresnet.create_model("resnet50", num_classes=5, input_shape=shape)
    head = [w.numpy() for w in tuned.get_layer("predictions").weights]
    with pytest.raises(ValueError, match="only in source \\[\\], only in target \\[\\]|layer predictions: source shapes"):
        port.copy_weights(theirs, tuned)  # the 1000-class head does not fit: nothing is copied
    assert not np.allclose(tuned.get_layer("conv1_conv").kernel.numpy(), theirs.get_layer("conv1_conv").kernel.numpy())
    assert port.copy_weights(theirs, tuned, skip=("predictions",)) == 106  # all but the head
    np.testing.assert_array_equal(tuned.get_layer("conv1_conv").kernel.numpy(),
                                  theirs.get_layer("conv1_conv").kernel.numpy())
    for variable, value in zip(tuned.get_layer("predictions").weights, head):
        np.testing.assert_array_equal(variable.numpy(), value)


@pytest.mark.slow
def test_pretrained_without_network_is_a_clear_error(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = "import tfresnet; tfresnet.create_model('resnet50', pretrained='imagenet')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        pytest.skip("this machine reached the network and downloaded the weights")
    assert "DownloadError: could not fetch ImageNet weights for resnet50" in proc.stderr
