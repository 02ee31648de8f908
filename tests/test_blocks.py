"""The ResNet v1/v2 and ResNeXt blocks: shapes, shortcuts, stride placement, zero-init, serialisation."""

import numpy as np
import pytest

import keras
from tfresnet import blocks as B


def _kernel(layer, name):
    return next(w for w in layer.weights if w.path.endswith(f"{name}/kernel"))


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
    filters = out_shape[-1] // B.BLOCKS[block].expansion
    b = B.BLOCKS[block](filters, strides, name="conv2_block1", **kwargs)
    x = rng.standard_normal((2, 8, 8, in_ch)).astype("float32")
    y = b(x, training=False)
    assert y.shape == out_shape
    clone = B.BLOCKS[block].from_config(b.get_config())
    clone(x)
    clone.set_weights(b.get_weights())
    np.testing.assert_allclose(clone(x, training=False), y, atol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(b))
    assert type(restored) is type(b) and restored.get_config() == b.get_config()


def test_block_decides_its_own_shortcut():
    def shortcut_kind(block):
        if isinstance(block, B.PreActivationBlock):
            return "conv" if block.projection else "pool" if block.subsample else "identity"
        return "conv" if block.shortcut else "identity"

    cases = [
        (B.BasicBlock(16, 1), 16, "identity"),
        (B.BasicBlock(16, 2), 16, "conv"),
        (B.BasicBlock(32, 1), 16, "conv"),
        (B.Bottleneck(16, 1), 64, "identity"),
        (B.Bottleneck(16, 1), 16, "conv"),
        (B.PreActBottleneck(16, 2), 64, "pool"),  # keras.applications v2: stride-only -> subsample
        (B.PreActBottleneck(16, 1), 32, "conv"),
        (B.PreActBasicBlock(16, 1), 16, "identity"),
    ]
    for block, in_ch, kind in cases:
        block(np.zeros((1, 8, 8, in_ch), "float32"))
        assert shortcut_kind(block) == kind, (block.name, in_ch)


def test_bottleneck_stride_placement_and_group_width():
    v1 = B.Bottleneck(64, 2, stride_in_1x1=True, name="a")
    v15 = B.Bottleneck(64, 2, groups=32, width_per_group=4, name="b")
    x = np.zeros((1, 8, 8, 64), "float32")
    v1(x), v15(x)
    strides = lambda b: [l.strides[0] for l in b.branch if isinstance(l, keras.layers.Conv2D)]  # noqa: E731
    assert strides(v1) == [2, 1, 1]
    assert strides(v15) == [1, 2, 1]
    # torchvision: width = int(64 * 4 / 64) * 32 = 128, grouped 3x3 kernel has 128 / 32 inputs.
    assert tuple(_kernel(v15, "b_2_conv").shape) == (3, 3, 4, 128)


@pytest.mark.parametrize("block", ["basic", "bottleneck", "preact_basic", "preact_bottleneck"])
def test_zero_init_residual_makes_block_an_identity(block, rng):
    b = B.BLOCKS[block](16, 1, zero_init_residual=True)
    x = np.abs(rng.standard_normal((2, 8, 8, 16 * b.expansion))).astype("float32")
    # Post-activation blocks end in ReLU, so use non-negative inputs: relu(x + 0) == x.
    np.testing.assert_allclose(b(x, training=False), x, atol=1e-6)
