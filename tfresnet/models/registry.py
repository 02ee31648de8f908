"""The model table: ``MODELS``, filled by ``register_model`` from every model module.

``tfresnet.models.create_model(name)`` reads it; your own models join with ``register_model``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from tfresnet.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one named model.

    Attributes:
        builder: A ``keras.Model`` class or a function returning a model; called with
            ``name=``, the fixed ``kwargs``, the user's options and, for classifiers,
            ``num_classes=``.
        kwargs: Fixed constructor arguments (what makes ``resnet50`` a ResNet-50).
        input_shape: Default input shape (height, width, channels) to build the model on.
        num_classes: Default number of outputs; None for encoders, which have no classifier.
        reference: Where its parameter count / weights come from.
        task: The task that trains it (``classify`` or ``fewshot``).
    """

    builder: Callable[..., Any]
    kwargs: Mapping[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int | None
    reference: str = ""
    task: str = "classify"


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, builder: Callable[..., Any] | None = None, *, input_shape: Sequence[int],
                   num_classes: int | None = 1000, reference: str = "", task: str = "classify",
                   overwrite: bool = False, **kwargs: Any) -> Callable[..., Any]:
    """Registers a model for ``tfresnet.create_model(name)``, as a call or as a decorator.

    Built-in models are registered the same way, e.g.
    ``register_model("resnet18", ResNet, input_shape=(224, 224, 3), block="basic", depths=(2, 2, 2, 2))``.
    As a decorator on a function::

        @tfresnet.register_model("tiny_resnet", input_shape=(32, 32, 3), num_classes=10)
        def tiny_resnet(num_classes, name, **options):
            return tfresnet.ResNet("basic", (1, 1, 1), num_classes, stem="cifar", name=name, **options)

    Args:
        name: The model's name.
        builder: A model class or function (see ``ModelSpec.builder``); omitted for a decorator.
        input_shape: Default ``(height, width, channels)``.
        num_classes: Default outputs; None for an encoder without a classifier.
        reference: Where its figures come from (shown by the README table).
        task: ``classify`` or ``fewshot``.
        overwrite: Replace an existing entry of the same name.
        **kwargs: Fixed builder arguments.

    Returns:
        The builder (so it works as a decorator).
    """
    if builder is None:
        return lambda fn: register_model(name, fn, input_shape=input_shape, num_classes=num_classes,
                                         reference=reference, task=task, overwrite=overwrite, **kwargs)
    MODELS.register(name, ModelSpec(builder, kwargs, tuple(input_shape), num_classes, reference, task),
                    overwrite=overwrite)
    return builder
