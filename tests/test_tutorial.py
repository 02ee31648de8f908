"""The tutorial's pre-activation unit and layer: identity and projection shortcuts, the zip rule."""

import numpy as np
import pytest
import tensorflow as tf

from tfresnet.models import tutorial as T


def test_residual_unit_identity_when_shapes_match(rng):
    unit = T.ResidualUnit(16, 16, 3, name="u")
    x = rng.standard_normal((2, 8, 8, 16)).astype("float32")
    y = unit(x, training=False)
    assert unit.shortcut is None
    # Zero both convolutions: the unit must reduce to its identity shortcut.
    for conv in (unit.conv1, unit.conv2):
        conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])
    np.testing.assert_allclose(unit(x, training=False), x, atol=0)
    assert y.shape == (2, 8, 8, 16)


def test_residual_unit_projection_with_different_widths(rng):
    """A strided projection unit whose two convolutions differ in width (f1 != f2)."""
    unit = T.ResidualUnit(8, 32, 3, strides=2, mid_filters=16, name="proj")
    x = rng.standard_normal((2, 16, 16, 8)).astype("float32")
    y = unit(x, training=True)
    assert y.shape == (2, 8, 8, 32)
    assert tuple(unit.conv1.kernel.shape) == (3, 3, 8, 16)
    assert tuple(unit.conv2.kernel.shape) == (3, 3, 16, 32)
    assert tuple(unit.shortcut.kernel.shape) == (1, 1, 8, 32)
    # With the branch zeroed, the output is exactly the strided 1x1 projection of the input.
    unit.conv2.set_weights([np.zeros_like(w) for w in unit.conv2.get_weights()])
    expected = tf.nn.conv2d(x, unit.shortcut.kernel, 2, "SAME") + unit.shortcut.bias
    np.testing.assert_allclose(unit(x, training=False), expected, atol=1e-5)


def test_residual_unit_rejects_wrong_input_channels():
    unit = T.ResidualUnit(8, 16, 3, name="u")
    with pytest.raises(ValueError, match=r"8 input channels.*\(1, 4, 4, 4\)"):
        unit(np.zeros((1, 4, 4, 4), "float32"))


def test_resnet_layer_chains_units_with_zip_rule():
    layer = T.ResnetLayer(8, (16, 16, 32), 3, strides=2, name="stage1")
    y = layer(np.zeros((1, 8, 8, 8), "float32"))
    assert y.shape == (1, 4, 4, 32)
    pairs = [(u.filter_in, u.filter_out) for u in layer.units]
    assert pairs == [(8, 16), (16, 16), (16, 32)]
    assert [u.strides for u in layer.units] == [2, 1, 1]
    assert [u.shortcut is not None for u in layer.units] == [True, False, True]
    assert [u.name for u in layer.units] == ["stage1_unit1", "stage1_unit2", "stage1_unit3"]
