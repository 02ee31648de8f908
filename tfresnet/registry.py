"""Name-to-factory tables: models, tasks, optimizers, schedules, augmentations.

Each table lives next to what it names (``optim.OPTIMIZERS``, ``augment.AUGMENTATIONS``,
``tasks.TASKS``); this module holds the table type and the model table, which every model module
fills with ``register_model``. Adding an entry is one line in one place, and looking up an unknown
name is a one-line ``ValueError`` that lists the valid ones (never a silent fallback).

This module imports nothing heavy, so the model modules and the tables can all depend on it.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Generic, Mapping, TypeVar

T = TypeVar("T")


def unknown_name(kind: str, name: object, valid: list[str]) -> ValueError:
    """The one-line error for an unknown ``name`` of ``kind``, with the closest valid name."""
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"{kind}: unknown value {name!r}{hint}; expected one of {', '.join(valid)}")


class Registry(Generic[T]):
    """A table from names to entries (factories, classes, specs) of one kind.

    Args:
        kind: What the entries are, e.g. ``"optimizer"``: the start of every error message.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, overwrite: bool = False):
        """Adds ``entry`` under ``name``; without ``entry``, returns a decorator that adds it.

        Raises:
            ValueError: ``name`` is taken and ``overwrite`` is False (two entries would race).
        """
        if entry is None:
            return lambda fn: self.register(name, fn, overwrite=overwrite) or fn
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name raises a one-line ``ValueError``."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)


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


def register_model(name: str, builder: Callable[..., Any] | None = None, *, input_shape,
                   num_classes: int | None = 1000, reference: str = "", task: str = "classify",
                   overwrite: bool = False, **kwargs: Any):
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
