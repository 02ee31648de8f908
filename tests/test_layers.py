"""Residual units and blocks: wiring, shortcuts, serialisation, BatchNorm modes."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfresnet import layers as L


def _kernel(layer, name):
    return next(w for w in layer.weights if w.path.endswith(f"{name}/kernel"))


def test_residual_unit_identity_when_shapes_match(rng):
    unit = L.ResidualUnit(16, 16, 3, name="u")
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
    unit = L.ResidualUnit(8, 32, 3, strides=2, mid_filters=16, name="proj")
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
    unit = L.ResidualUnit(8, 16, 3, name="u")
    with pytest.raises(ValueError, match=r"8 input channels.*\(1, 4, 4, 4\)"):
        unit(np.zeros((1, 4, 4, 4), "float32"))


def test_resnet_layer_chains_units_with_zip_rule():
    layer = L.ResnetLayer(8, (16, 16, 32), 3, strides=2, name="stage1")
    y = layer(np.zeros((1, 8, 8, 8), "float32"))
    assert y.shape == (1, 4, 4, 32)
    pairs = [(u.filter_in, u.filter_out) for u in layer.units]
    assert pairs == [(8, 16), (16, 16), (16, 32)]
    assert [u.strides for u in layer.units] == [2, 1, 1]
    assert [u.shortcut is not None for u in layer.units] == [True, False, True]
    assert [u.name for u in layer.units] == ["stage1_unit1", "stage1_unit2", "stage1_unit3"]


@pytest.mark.parametrize(
    "block, kwargs, in_ch, strides, out_shape",
    [
        ("basic", {}, 16, 1, (2, 8, 8, 16)),
        ("basic", {}, 16, 2, (2, 4, 4, 32)),
        ("bottleneck", {}, 64, 1, (2, 8, 8, 64)),
        ("bottleneck", {"groups": 4, "width_per_group": 4}, 32, 2, (2, 4, 4, 64)),
        ("preact_basic", {}, 16, 2, (2, 4, 4, 16)),
        ("preact_bottleneck", {}, 32, 2, (2, 4, 4, 64)),
    ],
)
def test_block_shapes_and_config_round_trip(block, kwargs, in_ch, strides, out_shape, rng):
    filters = out_shape[-1] // L.BLOCKS[block].expansion
    b = L.BLOCKS[block](filters, strides, name="conv2_block1", **kwargs)
    x = rng.standard_normal((2, 8, 8, in_ch)).astype("float32")
    y = b(x, training=False)
    assert y.shape == out_shape
    clone = L.BLOCKS[block].from_config(b.get_config())
    clone(x)
    clone.set_weights(b.get_weights())
    np.testing.assert_allclose(clone(x, training=False), y, atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(b))
    assert type(restored) is type(b) and restored.get_config() == b.get_config()


def test_block_decides_its_own_shortcut():
    def shortcut_kind(block):
        if isinstance(block, L._PreActivationBlock):
            return "conv" if block.projection else "pool" if block.subsample else "identity"
        return "conv" if block.shortcut else "identity"

    cases = [
        (L.BasicBlock(16, 1), 16, "identity"),
        (L.BasicBlock(16, 2), 16, "conv"),
        (L.BasicBlock(32, 1), 16, "conv"),
        (L.Bottleneck(16, 1), 64, "identity"),
        (L.Bottleneck(16, 1), 16, "conv"),
        (L.PreActBottleneck(16, 2), 64, "pool"),  # keras.applications v2: stride-only -> subsample
        (L.PreActBottleneck(16, 1), 32, "conv"),
        (L.PreActBasicBlock(16, 1), 16, "identity"),
    ]
    for block, in_ch, kind in cases:
        block(np.zeros((1, 8, 8, in_ch), "float32"))
        assert shortcut_kind(block) == kind, (block.name, in_ch)


def test_bottleneck_stride_placement_and_group_width():
    v1 = L.Bottleneck(64, 2, stride_in_1x1=True, name="a")
    v15 = L.Bottleneck(64, 2, groups=32, width_per_group=4, name="b")
    x = np.zeros((1, 8, 8, 64), "float32")
    v1(x), v15(x)
    strides = lambda b: [l.strides[0] for l in b.branch if isinstance(l, keras.layers.Conv2D)]  # noqa: E731
    assert strides(v1) == [2, 1, 1]
    assert strides(v15) == [1, 2, 1]
    # torchvision: width = int(64 * 4 / 64) * 32 = 128, grouped 3x3 kernel has 128 / 32 inputs.
    assert tuple(_kernel(v15, "b_2_conv").shape) == (3, 3, 4, 128)


@pytest.mark.parametrize("block", ["basic", "bottleneck", "preact_basic", "preact_bottleneck"])
def test_zero_init_residual_makes_block_an_identity(block, rng):
    b = L.BLOCKS[block](16, 1, zero_init_residual=True)
    x = np.abs(rng.standard_normal((2, 8, 8, 16 * b.expansion))).astype("float32")
    # Post-activation blocks end in ReLU, so use non-negative inputs: relu(x + 0) == x.
    np.testing.assert_allclose(b(x, training=False), x, atol=1e-6)


def test_batchnorm_training_flag_selects_statistics(rng):
    """training=True normalises with batch statistics and updates moving ones; False uses moving."""
    unit = L.ResidualUnit(4, 4, 3, name="u")
    x = (3.0 + 2.0 * rng.standard_normal((8, 6, 6, 4))).astype("float32")
    unit(x, training=False)
    bn = unit.bn1
    before = [w.numpy().copy() for w in (bn.moving_mean, bn.moving_variance)]
    # Inference: each example's output is independent of the rest of the batch.
    alone = unit(x[:1], training=False)
    np.testing.assert_allclose(unit(x, training=False)[:1], alone, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean, before[0])
    # Training: the moving statistics move towards the batch's by (1 - momentum)...
    unit(x, training=True)
    batch_mean = x.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.moving_mean, L.BN_MOMENTUM * before[0] + (1 - L.BN_MOMENTUM) * batch_mean, rtol=1e-4)
    # ...and the output is normalised with the batch's own statistics, so it depends on the batch.
    normed = bn(x, training=True)
    np.testing.assert_allclose(tf.reduce_mean(normed, [0, 1, 2]), 0.0, atol=1e-4)
    np.testing.assert_allclose(tf.math.reduce_std(normed, [0, 1, 2]), 1.0, atol=1e-2)
    assert not np.allclose(unit(x, training=True)[:1], unit(np.concatenate([x[:1], -x[1:]]), training=True)[:1])
