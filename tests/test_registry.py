"""Name-to-factory tables: users add models, optimizers, schedules, augmentations and tasks in one place."""

import numpy as np
import pytest

import tfresnet
from tfresnet import data, models, tasks
from tfresnet.data import augment
from tfresnet.engine import optim
from tfresnet.models import registry


def test_every_builtin_model_is_registered_with_register_model():
    # The registry is the only list of models: every family filled it through register_model.
    assert set(models.list_models()) == set(registry.MODELS.names())
    assert models.list_models(task="fewshot") == ["protores"]
    assert "mnist_resnet" in models.list_models(task="classify") and "protores" not in models.list_models("classify")
    assert models.model_spec("resnet50").builder is tfresnet.ResNet
    assert models.model_spec("protores").builder is tfresnet.ProtoResEncoder


def test_register_model_as_decorator_and_as_call(rng):
    @tfresnet.register_model("tiny_resnet_for_test", input_shape=(16, 16, 3), num_classes=3, reference="a test")
    def tiny(num_classes, name, base_width=8):
        return tfresnet.ResNet("basic", (1, 1), num_classes, stem="cifar", base_width=base_width, name=name)

    try:
        model = tfresnet.create_model("tiny_resnet_for_test", base_width=4)
        assert model.name == "tiny_resnet_for_test" and model(rng.random((2, 16, 16, 3), np.float32)).shape == (2, 3)
        assert tfresnet.create_model("tiny_resnet_for_test", num_classes=5).num_classes == 5
        with pytest.raises(ValueError, match="unknown value 'base_widht' \\(did you mean 'base_width'\\?\\)"):
            tfresnet.create_model("tiny_resnet_for_test", base_widht=4)
        # A name is taken once; replacing it is explicit.
        with pytest.raises(ValueError, match="model 'tiny_resnet_for_test' is already registered"):
            tfresnet.register_model("tiny_resnet_for_test", tiny, input_shape=(16, 16, 3))
        tfresnet.register_model("tiny_resnet_for_test", tfresnet.ResNet, input_shape=(16, 16, 3), num_classes=2,
                                overwrite=True, block="basic", depths=(1,), stem="cifar", base_width=4)
        assert tfresnet.create_model("tiny_resnet_for_test").num_classes == 2
    finally:
        registry.MODELS._entries.pop("tiny_resnet_for_test", None)


@pytest.mark.parametrize("table, name, close", [
    (optim.OPTIMIZERS, "adm", "adam"),
    (optim.SCHEDULES, "cosin", "cosine"),
    (augment.AUGMENTATIONS, "shfit", "shift"),
    (tasks.TASKS, "fewhsot", "fewshot"),
])
def test_unknown_names_are_one_line_errors_listing_the_valid_ones(table, name, close):
    with pytest.raises(ValueError) as err:
        table.get(name)
    message = str(err.value)
    assert message == (f"{table.kind}: unknown value {name!r} (did you mean {close!r}?); "
                       f"expected one of {', '.join(table.names())}")
    assert "\n" not in message


def test_a_new_table_entry_is_usable_by_name_everywhere():
    @augment.AUGMENTATIONS.register("test_invert")
    def invert(image, image_shape, seed):
        return 255 - image

    try:
        images = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8, 1)
        recipe = data.Recipe(2, (8, 8, 1), (0.0,), (1.0,))
        src = data.Source("toy", "train", recipe, 4, images=images, labels=np.array([0, 1, 0, 1], np.int32))
        x, _ = next(iter(data.make_dataset(src, 4, training=True, augment="test_invert")))
        # The epoch is shuffled, so compare the pixel values as a multiset.
        np.testing.assert_allclose(np.sort(x.numpy().ravel()), np.sort((255 - images.ravel()) / 255.0), atol=1e-6)
    finally:
        augment.AUGMENTATIONS._entries.pop("test_invert")
