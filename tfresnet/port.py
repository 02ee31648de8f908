"""Weight ports from keras.applications, by layer name.

The ResNet v1/v2 models named in ``KERAS_APPLICATIONS`` use keras.applications'
layer names (``conv3_block2_1_conv``), shapes and padding, so a port is a name-to-name copy.
"""

from __future__ import annotations

import keras

# The registered models whose layers match keras.applications, for pretrained="imagenet".
KERAS_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50v2": "ResNet50V2",
    "resnet101v2": "ResNet101V2",
    "resnet152v2": "ResNet152V2",
}


def named_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """Every layer that owns weights, nested ones included, by name."""
    found: dict[str, keras.layers.Layer] = {}

    def walk(layer):
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            if sub.weights and not sub._layers:
                if sub.name in found:
                    raise ValueError(f"duplicate layer name {sub.name!r} in {model.name}")
                found[sub.name] = sub
            walk(sub)

    walk(model)
    return found


def copy_weights(source: keras.Model, target: keras.Model) -> int:
    """Copies every weighted layer of ``source`` into the same-named layer of ``target``.

    Args:
        source: A built model, e.g. ``keras.applications.ResNet50(weights=None)``.
        target: A built tfresnet model with the same layer names.

    Returns:
        The number of layers copied.

    Raises:
        ValueError: a layer is missing on either side or its weight shapes differ.
    """
    src, dst = named_layers(source), named_layers(target)
    if set(src) != set(dst):
        raise ValueError(
            f"cannot port {source.name} -> {target.name}: only in source {sorted(set(src) - set(dst))[:5]}, "
            f"only in target {sorted(set(dst) - set(src))[:5]}"
        )
    for name, layer in src.items():
        weights = layer.get_weights()
        expected = [w.shape for w in dst[name].get_weights()]
        if [w.shape for w in weights] != expected:
            raise ValueError(f"layer {name}: source shapes {[w.shape for w in weights]}, target {expected}")
        dst[name].set_weights(weights)
    return len(src)


def keras_application(name: str, weights: str | None, num_classes: int, input_shape) -> keras.Model:
    """The keras.applications twin of a registered model (logits, no softmax)."""
    if name not in KERAS_APPLICATIONS:
        raise ValueError(
            f"model {name!r} has no keras.applications twin; those that do: {sorted(KERAS_APPLICATIONS)}"
        )
    builder = getattr(keras.applications, KERAS_APPLICATIONS[name])
    return builder(weights=weights, classes=num_classes, input_shape=tuple(input_shape), classifier_activation=None)


def load_pretrained(model: keras.Model, name: str, weights: str) -> None:
    """Loads keras.applications' pretrained ``weights`` (only ``"imagenet"``) into ``model``.

    Raises:
        ValueError: unknown weights, or a head that is not the 1000-class ImageNet one.
        RuntimeError: the weights cannot be downloaded (no network and nothing cached).
    """
    if weights != "imagenet":
        raise ValueError(f"unknown pretrained weights {weights!r}; only 'imagenet' is available")
    if model.num_classes not in (0, 1000):
        raise ValueError(f"pretrained='imagenet' needs num_classes=1000 (or 0 for features), got {model.num_classes}")
    input_shape = model._in_channels and (224, 224, model._in_channels)
    try:
        twin = keras_application(name, "imagenet", 1000, input_shape)
    except ValueError:
        raise
    except Exception as err:  # urllib/OSError/HTTP errors all mean the same thing to a user
        raise RuntimeError(
            f"could not fetch ImageNet weights for {name} through keras.applications "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "connect to the internet once, or place the .h5 file in ~/.keras/models"
        ) from None
    if model.num_classes == 0:
        twin = keras.Model(twin.input, twin.get_layer("avg_pool").output)
    copy_weights(twin, model)
