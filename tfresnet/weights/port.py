"""Weight ports: from keras.applications by layer name, from PyTorch state dicts by a name map.

The ResNet v1/v2 models named in ``KERAS_APPLICATIONS`` use keras.applications' layer names
(``conv3_block2_1_conv``), shapes and padding, so that port is a name-to-name copy. The
torchvision-layout models (``resnet18/34``, ``resnet*_v1_5``, the ResNeXts) map each layer to its
PyTorch name (``conv3_block2_1_conv`` -> ``layer2.1.conv1``) and transpose kernels to channels-last.
Both ports check every tensor before they set any: a model is loaded whole or not at all.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import keras
import numpy as np

from tfresnet.core.errors import DownloadError

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


HEAD = "predictions"  # the classifier's layer name in every tfresnet image model


def _keeps_head(model: keras.Model, classes_in_source: int) -> bool:
    """Whether a source's classifier fits ``model``: otherwise the model keeps its fresh head."""
    return bool(getattr(model, "num_classes", 0)) and model.num_classes == classes_in_source


def copy_weights(source: keras.Model, target: keras.Model, skip: tuple[str, ...] = ()) -> int:
    """Copies every weighted layer of ``source`` into the same-named layer of ``target``.

    Args:
        source: A built model, e.g. ``keras.applications.ResNet50(weights=None)``.
        target: A built tfresnet model with the same layer names.
        skip: Layer names to leave alone on both sides (a classifier being replaced).

    Returns:
        The number of layers copied.

    Raises:
        ValueError: a layer is missing on either side or its weight shapes differ; nothing is
            copied then.
    """
    src = {k: v for k, v in named_layers(source).items() if k not in skip}
    dst = {k: v for k, v in named_layers(target).items() if k not in skip}
    if set(src) != set(dst):
        raise ValueError(
            f"cannot port {source.name} -> {target.name}: only in source {sorted(set(src) - set(dst))[:5]}, "
            f"only in target {sorted(set(dst) - set(src))[:5]}"
        )
    pairs = []
    for name, layer in src.items():
        weights = layer.get_weights()
        expected = [w.shape for w in dst[name].get_weights()]
        if [w.shape for w in weights] != expected:
            raise ValueError(f"layer {name}: source shapes {[w.shape for w in weights]}, target {expected}")
        pairs.append((dst[name], weights))
    for layer, weights in pairs:
        layer.set_weights(weights)
    return len(src)


def keras_application(name: str, weights: str | None, num_classes: int, input_shape) -> keras.Model:
    """The keras.applications twin of a registered model (logits, no softmax)."""
    if name not in KERAS_APPLICATIONS:
        raise ValueError(
            f"model {name!r} has no keras.applications twin; those that do: {sorted(KERAS_APPLICATIONS)}"
        )
    builder = getattr(keras.applications, KERAS_APPLICATIONS[name])
    return builder(weights=weights, classes=num_classes, input_shape=tuple(input_shape), classifier_activation=None)


def load_keras_application(model: keras.Model, name: str) -> int:
    """Loads keras.applications' ImageNet weights into ``model``; a head of another size stays fresh.

    Returns:
        The number of layers loaded.

    Raises:
        ValueError: ``model`` has no keras.applications twin or is not built for 3 channels.
        RuntimeError: the weights cannot be downloaded (no network and nothing cached).
    """
    if model._in_channels != 3:
        raise ValueError(f"ImageNet weights need 3 input channels; {model.name} was built for {model._in_channels}")
    try:
        twin = keras_application(name, "imagenet", 1000, (224, 224, 3))
    except ValueError:
        raise
    except Exception as err:  # urllib/OSError/HTTP errors all mean the same thing to a user
        raise DownloadError(
            f"could not fetch ImageNet weights for {name} through keras.applications "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "connect to the internet once, or place the .h5 file in ~/.keras/models"
        ) from None
    return copy_weights(twin, model, skip=() if _keeps_head(model, 1000) else (HEAD,))


def load_saved_model(model: keras.Model, path: str) -> int:
    """Loads the weights of a saved tfresnet model (``.keras``) into ``model``, by layer name.

    The classifier is copied when its class count equals ``model``'s, else ``model`` keeps its
    fresh head: pretraining on some classes, fine-tuning on others.

    Returns:
        The number of layers loaded.

    Raises:
        ValueError: the file cannot be loaded, or its layers differ from ``model``'s.
    """
    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as err:  # zip, JSON and deserialisation errors: not a model file of ours
        raise ValueError(f"cannot load {path} as a saved tfresnet model ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else 'no detail'})") from None
    keep = _keeps_head(model, getattr(source, "num_classes", -1))
    try:
        return copy_weights(source, model, skip=() if keep else (HEAD,))
    except ValueError as err:
        raise ValueError(f"{path}: {err}; nothing was loaded") from None


# --------------------------------------------------------------------------------------------------
# PyTorch state dicts (torchvision's naming, which timm's ResNets share)
# --------------------------------------------------------------------------------------------------

_BLOCK_LAYER = re.compile(r"conv(\d+)_block(\d+)_(\d)_(conv|bn)")
_STEM = {"conv1_conv": "conv1", "conv1_bn": "bn1", HEAD: "fc"}

Transform = Callable[[np.ndarray], np.ndarray]
_KERNEL: Transform = lambda w: np.transpose(w, (2, 3, 1, 0))  # noqa: E731 - torch (out, in, h, w) -> (h, w, in, out)
_DENSE: Transform = np.transpose  # torch (out, in) -> keras (in, out)
_SAME: Transform = np.asarray


def torch_name(layer_name: str) -> str | None:
    """The torchvision module name of one of our layers (``conv3_block2_1_conv`` -> ``layer2.1.conv1``)."""
    if layer_name in _STEM:
        return _STEM[layer_name]
    match = _BLOCK_LAYER.fullmatch(layer_name)
    if not match:
        return None
    stage, unit, index, kind = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(unit) - 1}."
    if index == "0":  # the projection shortcut
        return prefix + ("downsample.0" if kind == "conv" else "downsample.1")
    return prefix + f"{kind}{index}"


def torch_variables(model: keras.Model) -> dict[str, tuple[keras.Variable, Transform]]:
    """Every weight of ``model`` by its PyTorch state-dict name, with the array transform into it.

    Raises:
        ValueError: a layer without a torchvision counterpart (v2 models, biased convolutions).
    """
    found: dict[str, tuple[keras.Variable, Transform]] = {}
    for name, layer in named_layers(model).items():
        prefix = torch_name(name)
        if prefix is None:
            raise ValueError(f"{model.name} has layer {name!r}, which torchvision's ResNets lack: PyTorch weights fit "
                             "resnet18/34, resnet50/101/152_v1_5 and the ResNeXts")
        if isinstance(layer, keras.layers.BatchNormalization):
            pairs = [("weight", layer.gamma, _SAME), ("bias", layer.beta, _SAME),
                     ("running_mean", layer.moving_mean, _SAME), ("running_var", layer.moving_variance, _SAME)]
        elif isinstance(layer, keras.layers.Conv2D):
            pairs = [("weight", layer.kernel, _KERNEL)] + ([("bias", layer.bias, _SAME)] if layer.use_bias else [])
        elif isinstance(layer, keras.layers.Dense):
            pairs = [("weight", layer.kernel, _DENSE), ("bias", layer.bias, _SAME)]
        else:
            raise ValueError(f"{model.name}: no PyTorch mapping for layer {name!r} ({type(layer).__name__})")
        for suffix, variable, transform in pairs:
            found[f"{prefix}.{suffix}"] = (variable, transform)
    return found


def load_state_dict(model: keras.Model, state: Mapping[str, np.ndarray], where: str = "state dict") -> list[str]:
    """Loads a PyTorch state dict in torchvision's naming into ``model``, all of it or nothing.

    Every tensor is checked by name and shape before any is set. The classifier (``fc.*``) is
    loaded when its class count equals the model's; otherwise (fine-tuning on other classes, or a
    model without a head) the model keeps its freshly initialised head.

    Args:
        model: A built torchvision-layout model (``resnet18``, ``resnet50_v1_5``, ...).
        state: Tensor name -> array (``weights.read_state_dict``).
        where: The file the tensors came from, for error messages.

    Returns:
        The names of the tensors that were not loaded (the replaced classifier's).

    Raises:
        ValueError: a missing, unexpected or wrongly shaped tensor (named), or a model that does
            not have the torchvision layout.
    """
    if getattr(model, "_in_channels", 3) != 3:
        raise ValueError(f"PyTorch ImageNet weights need 3 input channels; {model.name} was built for "
                         f"{model._in_channels}")
    targets = torch_variables(model)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # a counter, not a weight
    skipped = []
    if "fc.weight" in state and not _keeps_head(model, state["fc.weight"].shape[0]):
        skipped = sorted(k for k in state if k.startswith("fc."))
        targets = {k: v for k, v in targets.items() if not k.startswith("fc.")}
    missing = sorted(set(targets) - set(state))
    unexpected = sorted(set(state) - set(targets) - set(skipped))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{where}: tensor {missing[0]!r} of {model.name} is missing{more}; nothing was loaded")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise ValueError(f"{where}: unexpected tensor {unexpected[0]!r} {tuple(state[unexpected[0]].shape)}{more}, "
                         f"which {model.name} has no place for; nothing was loaded")
    values = []
    for key, (variable, transform) in targets.items():
        value = transform(state[key])
        if tuple(value.shape) != tuple(variable.shape):
            shape = tuple(variable.shape)
            torch_shape = {_KERNEL: lambda: (shape[3], shape[2], *shape[:2]), _DENSE: lambda: shape[::-1]}.get(
                transform, lambda: shape)()
            raise ValueError(f"{where}: tensor {key!r} has shape {tuple(state[key].shape)}, {model.name} needs "
                             f"{torch_shape}; nothing was loaded")
        values.append((variable, value))
    for variable, value in values:
        variable.assign(value.astype(variable.dtype))
    return skipped
