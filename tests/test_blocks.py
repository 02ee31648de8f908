"""The ResNet v1/v2 and ResNeXt blocks: shapes, shortcuts, stride placement, zero-init, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresnet import models
from tfresnet.models import blocks as B
from tfresnet.models.layers import DropPath


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


def test_drop_path_keeps_the_expected_value_and_leaves_inference_alone():
    drop = DropPath(0.3, seed=1)
    x = np.ones((4000, 2, 2, 3), np.float32)
    np.testing.assert_array_equal(drop(x, training=False), x)
    y = drop(x, training=True).numpy()
    per_example = y.reshape(4000, -1)
    # Whole examples are dropped (all zeros) or kept and scaled by 1 / 0.7.
    assert np.all((per_example == 0).all(1) | np.isclose(per_example, 1 / 0.7).all(1))
    assert abs((per_example[:, 0] == 0).mean() - 0.3) < 0.03  # 4000 draws: std 0.007
    assert abs(y.mean() - 1.0) < 0.05
    with pytest.raises(ValueError, match=r"drop path rate must be in \[0, 1\), got 1"):
        DropPath(1.0)


def test_drop_path_rises_linearly_with_depth_and_inference_is_unchanged(rng):
    with_drop = models.create_model("resnet20_cifar", drop_path_rate=0.2)
    without = models.create_model("resnet20_cifar")
    rates = [unit.drop_path for units in with_drop.stages for unit in units]
    np.testing.assert_allclose(rates, np.linspace(0, 0.2, 9))
    weights = {v.path: v for v in with_drop.weights}
    for v in without.weights:
        v.assign(weights[v.path])
    x = rng.normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(with_drop(x, training=False), without(x, training=False))
    again = type(with_drop).from_config(with_drop.get_config())
    assert again.drop_path_rate == 0.2 and [u.drop_path for units in again.stages for u in units] == rates


def test_drop_path_draws_resume_from_a_checkpoint(tmp_path):
    """The draw count is a weight: a restored layer drops exactly what the original would next."""
    x = np.ones((64, 1, 1, 1), np.float32)
    first = DropPath(0.5, seed=3)
    for _ in range(3):
        first(x, training=True)
    path = tf.train.Checkpoint(layer=first).write(str(tmp_path / "ckpt"))
    restored = DropPath(0.5, seed=3)
    restored(x, training=False)  # builds it
    tf.train.Checkpoint(layer=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(restored(x, training=True), first(x, training=True))
    assert not np.array_equal(first(x, training=True), DropPath(0.5, seed=3)(x, training=True))
