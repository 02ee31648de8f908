"""tfresnet.models.gradcam: Grad-CAM of every image model, laid back onto the image it explains."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresnet import data, models
from tfresnet.data import augment
from tfresnet.models.classifier import ImageClassifier
from tfresnet.models.gradcam import grad_cam, to_image, view_box

# One of each way a zoo model ends its last stage (the classes below split call so; the depths and
# ResNeXt's groups do not change where): v1 basic and bottleneck, v2 (its last BN-ReLU), the CIFAR
# stem, the tutorial nets' flatten-dense heads.
SPLITS = ["resnet18", "resnet50_v1_5", "resnet50v2", "resnet20_cifar", "mnist_resnet", "preact_resnet22"]


def test_every_image_model_of_the_zoo_splits_its_call_for_grad_cam():
    for name in models.list_models("classify"):
        builder = models.model_spec(name).builder
        if not (isinstance(builder, type) and builder.__module__.startswith("tfresnet.")):
            continue  # a model another test registered (a function, or a user's own class)
        assert builder.conv_features is not ImageClassifier.conv_features, name
        assert builder.classify_features is not ImageClassifier.classify_features, name


@pytest.mark.parametrize("name", SPLITS)
def test_the_split_is_the_models_call_and_grad_cam_explains_it(name, rng):
    spec = models.model_spec(name)
    side = 64 if spec.input_shape[0] > 32 else spec.input_shape[0]
    model = models.create_model(name, num_classes=3, input_shape=(side, side, spec.input_shape[-1]))
    x = rng.normal(size=(2, side, side, spec.input_shape[-1])).astype(np.float32)
    features = model.conv_features(x)
    assert features.shape[1:3] == (side // model.reduction, side // model.reduction)
    np.testing.assert_allclose(model.classify_features(features), model(x), atol=1e-5)
    heat, logits, chosen = grad_cam(model, x)
    assert heat.shape == (2, *features.shape[1:3]) and heat.min() >= 0 and heat.max() <= 1
    np.testing.assert_array_equal(chosen, np.argmax(logits, axis=-1))
    assert grad_cam(model, x, 2)[2].tolist() == [2, 2]


def test_grad_cam_of_a_pooled_linear_head_is_the_class_activation_map(rng):
    """Behind global average pooling and one dense layer, the gradient of a logit is that class's
    weights over the map's area: Grad-CAM is Zhou et al.'s CAM, ReLU(features @ w_c), up to scale."""
    keras.utils.set_random_seed(0)
    model = models.create_model("resnet20_cifar", num_classes=4)
    x = rng.normal(size=(3, 32, 32, 3)).astype(np.float32)
    features = model.conv_features(x).numpy()
    kernel = model.head.kernel.numpy()
    heat, _, chosen = grad_cam(model, x, [1, 3, 0])
    for i, c in enumerate([1, 3, 0]):
        cam = np.maximum(features[i] @ kernel[:, c], 0)
        # A map with no positive evidence at all is zeros (not 0 / 0).
        np.testing.assert_allclose(heat[i], cam / cam.max() if cam.max() > 0 else cam, atol=1e-5)
    assert heat.max() > 0
    assert chosen.tolist() == [1, 3, 0]


def test_to_image_is_a_half_pixel_resize_when_the_cells_sit_halfway(rng):
    heat = rng.random((7, 5)).astype(np.float32)
    got = to_image(heat, (28, 20), (0, 0, 28, 20), (28, 20))
    expected = tf.image.resize(heat[..., None], (28, 20), "bilinear")[..., 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_to_image_puts_a_cell_where_its_padded_convolutions_centre_it():
    """A ResNet's cell j is centred on input pixel j * stride (symmetric padding): a map with one hot
    cell peaks there, not half a stride further."""
    model = models.create_model("resnet20_cifar", num_classes=2)
    assert model.feature_offset == 0 and model.reduction == 4
    heat = np.zeros((8, 8), np.float32)
    heat[3, 5] = 1
    full = to_image(heat, (32, 32), (0, 0, 32, 32), (32, 32), model.feature_offset)
    assert np.unravel_index(np.argmax(full), full.shape) == (12, 20)
    # Each strided unit keeps the rule: the inputs that output cell (3, 5) reads are centred on (6, 10).
    x = tf.Variable(np.random.default_rng(0).normal(size=(1, 16, 16, 16)).astype(np.float32))
    with tf.GradientTape() as tape:
        cell = tf.reduce_sum(model.stages[1][0](x)[0, 3, 5])
    rows, cols = np.nonzero(np.abs(tape.gradient(cell, x).numpy()[0]).sum(-1))
    assert ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2) == (6, 10)


@pytest.mark.parametrize("shape", [(300, 200), (224, 224), (180, 400)])
def test_view_box_is_the_centre_crop_the_evaluation_cuts(shape):
    """Pixels numbered by their position, through resize_for_eval's centre crop: the crop's corners
    hold the positions view_box names."""
    h, w = shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], -1)
    crop = augment.resize_for_eval(image, (224, 224, 3), "center_crop", 0.875, "bilinear").numpy()
    top, left, box_h, box_w = view_box(h, w, (224, 224), "center_crop", 0.875)
    step_r, step_c = box_h / 224, box_w / 224
    # The crop's first and last pixel centres, mapped back, are where the crop says they came from.
    assert crop[0, 0, 0] == pytest.approx(top + step_r / 2 - 0.5, abs=0.3)
    assert crop[-1, -1, 1] == pytest.approx(left + box_w - step_c / 2 - 0.5, abs=0.3)
    assert view_box(h, w, (224, 224), "fit") == (0, 0, h, w)
    with pytest.raises(ValueError, match="view: unknown value 'zoom'"):
        view_box(h, w, (224, 224), "zoom")


def test_a_recipe_records_the_view_its_evaluation_takes():
    assert data.RECIPES["mnist"].preprocessing.eval_view == "fit"
    assert data.RECIPES["imagenette"].preprocessing.eval_view == "center_crop"
    recipe = data.eval_recipe(data.RECIPES["mnist"].preprocessing, 10)
    assert recipe.fixed_size and recipe.eval_resize == "none" and recipe.image_shape == (28, 28, 1)
