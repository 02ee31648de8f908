"""The model zoo's front door: ``create_model(name, ...)``, ``list_models()``, ``model_spec(name)``.

Names come from ``tfresnet.models.registry.MODELS``. The built-in families register themselves when
their modules are imported, which this module does: ``tfresnet.models.resnet`` (ResNet v1/v2, ResNeXt,
the CIFAR nets), ``tfresnet.models.tutorial`` (``mnist_resnet``, ``preact_resnet22``) and
``tfresnet.models.protores`` (the few-shot keyword encoder). Your own models join with
``tfresnet.register_model``.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import keras

from tfresnet import weights
from tfresnet.core.registry import unknown_name
from tfresnet.models import protores, resnet, tutorial  # noqa: F401 - importing them registers their models
from tfresnet.models.registry import MODELS, ModelSpec, register_model
from tfresnet.weights import classes, port
from tfresnet.weights.preprocessing import Preprocessing

__all__ = ["create_model", "list_models", "model_spec", "register_model", "ModelSpec", "KERAS_APPLICATIONS"]

# The models whose layers match keras.applications, for pretrained="imagenet".
KERAS_APPLICATIONS = port.KERAS_APPLICATIONS


def list_models(task: str | None = None) -> list[str]:
    """Names accepted by ``create_model``, sorted; only those trained by ``task`` when given."""
    return [n for n in MODELS.names() if task is None or MODELS.get(n).task == task]


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; an unknown name is a one-line ``ValueError`` listing the valid ones."""
    return MODELS.get(name)


def _options_of(builder: Any) -> set[str] | None:
    """Keyword options ``builder`` accepts, or None when it takes any (``**kwargs`` of a function)."""
    if inspect.isclass(builder):
        names = set()
        for klass in builder.__mro__:
            if klass in (keras.Model, keras.layers.Layer) or not issubclass(klass, keras.Model):
                continue
            names |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "kwargs")}
        return names | {"name", "dtype"}
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _valid_options(spec: ModelSpec) -> set[str] | None:
    """The options ``create_model`` accepts for ``spec``: its builder's, less the fixed ones; None: any."""
    valid = _options_of(spec.builder)
    return None if valid is None else valid - set(spec.kwargs) - {"num_classes"}


def accepts_option(name: str, option: str) -> bool:
    """Whether ``create_model(name, **{option: ...})`` is valid (a user's builder may not take it)."""
    valid = _valid_options(model_spec(name))
    return valid is None or option in valid


def create_model(
    name: str,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    pretrained: str | None = None,
    **options: Any,
) -> keras.Model:
    """Builds a registered model.

    Args:
        name: A name from ``list_models()``.
        num_classes: Classifier outputs; defaults to the model's usual task (1000 for ImageNet
            models, 10 for CIFAR and MNIST). 0 makes ResNets return pooled features. Encoders
            (``protores``) have no classifier and take none.
        input_shape: Shape of one input (``(height, width, channels)`` for images) to build the
            model on; defaults to the model's usual input. Any size works for the convolutional
            models; the dense heads of ``mnist_resnet``/``preact_resnet22`` fix it.
        pretrained: Weights to start from: a source in ``weights.sources(name)`` (``imagenet``:
            keras.applications, for its six twins; ``torchvision``/``timm``: the published
            PyTorch checkpoints, downloaded once and cached) or the path of a PyTorch state dict
            in torchvision's naming (``.pth``/``.pt``/``.bin`` with torch, ``.safetensors``
            without), or a saved tfresnet model (``.keras``, e.g. a run's ``model.keras``). With ``num_classes`` other than the weights' 1000, everything but the
            classifier is loaded and the head starts fresh (fine-tuning). The model's
            ``preprocessing`` is then the source's record.
        **options: Constructor options of the model (e.g. ``zero_init_residual=True``,
            ``stem="cifar"``, ``block_options={...}``, ``preprocessing=`` for a local file whose
            weights expect other inputs than torchvision's).

    Returns:
        A built ``keras.Model``.

    Raises:
        ValueError: unknown name or option, ``pretrained`` not available for this model, or a
            weights file whose tensors do not fit it (the tensor named; nothing is loaded).
        RuntimeError: the weights cannot be downloaded (the message names the URL).
    """
    spec = model_spec(name)
    source = None
    if pretrained is not None:
        given = options.get("preprocessing")
        source = weights.find(name, pretrained, None if given is None else Preprocessing.from_dict(given))
        if source.preprocessing is not None:
            options["preprocessing"] = source.preprocessing
    valid = _valid_options(spec)
    if valid is not None:
        for option in options:
            if option not in valid:
                raise unknown_name(f"option of model {name!r}", option, sorted(valid))
    kwargs = {"name": name, **spec.kwargs, **options}
    if spec.num_classes is None:
        if num_classes:
            raise ValueError(f"model {name!r} is an encoder without a classifier; it takes no num_classes "
                             f"(got {num_classes})")
    else:
        kwargs["num_classes"] = spec.num_classes if num_classes is None else num_classes
        if kwargs["num_classes"] < 0:
            raise ValueError(f"num_classes must be >= 0, got {kwargs['num_classes']}")
    input_shape = tuple(input_shape or spec.input_shape)
    if len(input_shape) != len(spec.input_shape):
        raise ValueError(f"input_shape of {name!r} must have {len(spec.input_shape)} dimensions like "
                         f"{spec.input_shape} (height, width, channels), got {input_shape}")
    if (source is not None and source.layout != "tfresnet" and kwargs.get("num_classes") == 1000
            and "class_names" not in options and (valid is None or "class_names" in valid)):
        kwargs["class_names"] = classes.imagenet()  # ImageNet-1k weights keep ImageNet's classifier
    model = spec.builder(**kwargs)
    model.build((None, *input_shape))
    if source is not None:
        if source.layout == "keras":
            port.load_keras_application(model, name)
        elif source.layout == "tfresnet":
            port.load_saved_model(model, source.path)
        else:
            path = weights.fetch(source)
            port.load_state_dict(model, weights.read_state_dict(path), where=str(path))
    return model
