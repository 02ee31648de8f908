"""The model zoo: shapes, parameter counts against references, ports, serialisation, gradients."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresnet
from tfresnet import models
from tfresnet.models import resnet
from tfresnet.weights import port

# Dense heads after Flatten fix the input size; the convolutional models take smaller inputs.
DENSE_HEADS = ("mnist_resnet", "preact_resnet22")


def _small_shape(name):
    spec = models.model_spec(name)
    if name in DENSE_HEADS:
        return spec.input_shape
    return (32, 32, 3) if spec.input_shape == (32, 32, 3) else (64, 64, 3)


@functools.cache
def default_model(name):
    """Each registered model built once per test process with its defaults (building ResNet-152 takes ~10 s)."""
    return tfresnet.create_model(name)


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", tfresnet.list_models(task="classify"))
@pytest.mark.slow
def test_every_model_maps_images_to_logits(name, rng):
    shape = _small_shape(name)
    x = rng.random((2, *shape), dtype=np.float32)
    y = default_model(name)(x, training=False)
    assert y.shape == (2, models.model_spec(name).num_classes)
    assert y.dtype == tf.float32
    assert np.all(np.isfinite(y))


# count_params() (all weights) of keras.applications' models; trainable counts of torchvision's;
# trainable counts of He et al. (2015) CIFAR nets within 2%.
KERAS_COUNTS = {
    "resnet50": 25_636_712,
    "resnet101": 44_707_176,
    "resnet152": 60_419_944,
    "resnet50v2": 25_613_800,
    "resnet101v2": 44_675_560,
    "resnet152v2": 60_380_648,
    "mnist_resnet": 577_066,
}
TORCHVISION_TRAINABLE = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50_v1_5": 25_557_032,
    "resnet101_v1_5": 44_549_160,
    "resnet152_v1_5": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
}
PAPER_CIFAR = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}


def deep_ones_slow(counts):
    """The 101- and 152-layer nets take 2-4 s each to build: the slow tier counts them, the quick one
    the 50-layer nets of the same classes."""
    return [pytest.param(name, count, marks=pytest.mark.slow) if "101" in name or "152" in name else (name, count)
            for name, count in sorted(counts.items())]


@pytest.mark.parametrize("name, count", deep_ones_slow(KERAS_COUNTS))
def test_count_params_match_keras_applications(name, count):
    assert default_model(name).count_params() == count


@pytest.mark.parametrize("name, count", deep_ones_slow(TORCHVISION_TRAINABLE))
def test_trainable_params_match_torchvision(name, count):
    assert _trainable(default_model(name)) == count


@pytest.mark.parametrize("depth, count", sorted(PAPER_CIFAR.items()))
def test_cifar_resnets_match_paper(depth, count):
    model = default_model(f"resnet{depth}_cifar")
    assert abs(_trainable(model) - count) / count <= 0.02
    assert len(model.stages) == 3 and all(len(s) == (depth - 2) // 6 for s in model.stages)


def test_features_and_headless_models(rng):
    model = tfresnet.create_model("resnet18", num_classes=5, input_shape=(64, 64, 3))
    x = rng.random((2, 64, 64, 3), dtype=np.float32)
    feats = model.extract_features(x)
    assert [tuple(feats[k].shape) for k in ("stem", "conv2", "conv3", "conv4", "conv5", "pooled")] == [
        (2, 16, 16, 64), (2, 16, 16, 64), (2, 8, 8, 128), (2, 4, 4, 256), (2, 2, 2, 512), (2, 512)]
    np.testing.assert_allclose(model.head(feats["pooled"]), model(x), atol=1e-5)
    headless = tfresnet.create_model("resnet50v2", num_classes=0, input_shape=(64, 64, 3))
    assert headless(x).shape == (2, 2048)


def test_v2_strides_in_last_unit_like_keras():
    model = tfresnet.create_model("resnet50v2", input_shape=(64, 64, 3))
    strides = [[b.strides for b in stage] for stage in model.stages]
    assert strides == [[1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1, 1, 2], [1, 1, 1]]
    v1 = tfresnet.create_model("resnet50", input_shape=(64, 64, 3))
    assert [[b.strides for b in s] for s in v1.stages] == [[1, 1, 1], [2, 1, 1, 1], [2] + [1] * 5, [2, 1, 1]]


def test_layer_names_are_explicit_and_independent_of_creation_order():
    tfresnet.create_model("resnet18", input_shape=(32, 32, 3))  # creation before must not matter
    a = tfresnet.create_model("resnet20_cifar")
    b = tfresnet.create_model("resnet20_cifar")
    assert [w.path for w in a.weights] == [w.path for w in b.weights]
    names = set(port.named_layers(a))
    assert {"conv1_conv", "conv2_block1_1_conv", "conv3_block1_0_conv", "conv4_block3_2_bn", "predictions"} <= names
    mnist = set(port.named_layers(tfresnet.create_model("mnist_resnet")))
    assert {"stem_conv", "stage2_unit1_conv1", "stage2_unit1_shortcut", "stage3_unit2_bn2", "fc"} <= mnist


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros((2, 32, 32, 1), "float32"), ValueError, r"built for 3 input channels.*\(2, 32, 32, 1\)"),
        (np.zeros((32, 32, 3), "float32"), ValueError, r"\(batch, height, width, channels\).*\(32, 32, 3\)"),
        (np.zeros((2, 32, 32, 3), "uint8"), TypeError, r"no preprocessing record to normalise uint8 images"),
        (np.zeros((2, 32, 32, 3), "int32"), TypeError, r"floating-point \(normalised\) or uint8 images, got dtype int"),
    ],
)
def test_wrong_inputs_are_clear_errors(bad, error, message):
    model = tfresnet.create_model("resnet20_cifar")
    with pytest.raises(error, match=message):
        model(bad)


def test_registry_errors_name_the_culprit_and_close_matches():
    with pytest.raises(ValueError, match=r"^model: unknown value 'resnet5' \(did you mean 'resnet50'\?\); expected "
                                         r"one of .*mnist_resnet.*resnext29_32x4d_cifar"):
        tfresnet.create_model("resnet5")
    with pytest.raises(ValueError, match=r"^option of model 'resnet18': unknown value 'zero_init_residuals' "
                                         r"\(did you mean 'zero_init_residual'\?\); expected one of .*stem"):
        tfresnet.create_model("resnet18", zero_init_residuals=True)
    with pytest.raises(ValueError, match="model 'protores' is an encoder without a classifier"):
        tfresnet.create_model("protores", num_classes=10)
    assert {"resnet50", "resnext50_32x4d", "resnet56_cifar", "mnist_resnet", "preact_resnet22"} <= set(
        tfresnet.list_models())


def test_resnext_cifar_stem_option(rng):
    model = tfresnet.create_model("resnext50_32x4d", num_classes=10, input_shape=(32, 32, 3), stem="cifar")
    assert model.extract_features(rng.random((1, 32, 32, 3), dtype=np.float32))["conv5"].shape == (1, 4, 4, 2048)


def test_grouped_convolutions_with_and_without_xla(rng):
    model = resnet.ResNet("bottleneck", (1, 1), num_classes=3, stem="cifar", base_width=16,
                          block_options={"groups": 4, "width_per_group": 8})
    x = rng.random((2, 16, 16, 3), dtype=np.float32)
    eager = model(x, training=False)
    xla = tf.function(lambda t: model(t, training=False), jit_compile=True)(x)
    graph = tf.function(lambda t: model(t, training=False), jit_compile=False)(x)
    np.testing.assert_allclose(xla, eager, atol=1e-4)
    np.testing.assert_allclose(graph, eager, atol=1e-5)


@pytest.mark.parametrize(
    "name, shape",
    [("resnet20_cifar", (32, 32, 3)), ("resnet18v2", (32, 32, 3)), ("mnist_resnet", (28, 28, 1)),
     ("preact_resnet22", (64, 64, 3)), ("resnext29_32x4d_cifar", (16, 16, 3))],
)
@pytest.mark.slow
def test_save_load_and_export_round_trip(name, shape, tmp_path, rng):
    model = tfresnet.create_model(name, num_classes=5, input_shape=shape)
    x = rng.random((2, *shape), dtype=np.float32)
    model(x, training=True)  # move BatchNorm statistics away from their initial values
    y = model(x, training=False)

    clone = model.__class__.from_config(model.get_config())
    assert clone.get_config() == model.get_config()

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded(x, training=False), y, atol=1e-6)

    model.export(str(tmp_path / "serving"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "serving"))
    # The served graph fuses ops differently: float32 rounding on the scale of the largest logit.
    np.testing.assert_allclose(served.serve(tf.constant(x)), y, atol=1e-5 * max(1.0, float(np.abs(y).max())))


@pytest.mark.parametrize(
    "model",
    [
        lambda: tfresnet.create_model("mnist_resnet"),
        lambda: tfresnet.create_model("preact_resnet22", input_shape=(32, 32, 3)),
        lambda: tfresnet.create_model("resnet18", num_classes=4, input_shape=(32, 32, 3)),
        lambda: resnet.ResNet("bottleneck", (1, 1), num_classes=4, base_width=8, block_options={"conv_bias": True}),
        lambda: resnet.ResNet("preact_bottleneck", (2, 1), num_classes=4, base_width=8,
                              block_options={"conv_bias": True}),
        lambda: resnet.ResNet("preact_basic", (1, 1), num_classes=4, stem="cifar", base_width=8),
        lambda: resnet.ResNet("bottleneck", (1, 1), num_classes=4, stem="cifar", base_width=16,
                              block_options={"groups": 4, "width_per_group": 8}),
    ],
    ids=["mnist", "preact22", "resnet18", "bottleneck_v1", "preact_bottleneck", "preact_basic", "resnext"],
)
def test_every_trainable_variable_gets_a_gradient(model, rng):
    model = model()
    shape = (28, 28, 1) if model.name == "mnist_resnet" else (32, 32, 3)
    x = rng.random((4, *shape), dtype=np.float32)
    y = np.array([0, 1, 2, 3])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    dead = [v.path for v, g in zip(model.trainable_variables, grads) if g is None or not np.any(g.numpy())]
    assert not dead
