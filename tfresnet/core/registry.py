"""Name-to-factory tables: models, tasks, optimizers, schedules, augmentations.

Each table lives next to what it names (``optim.OPTIMIZERS``, ``augment.AUGMENTATIONS``,
``tasks.TASKS``); this module holds the table type and the model table, which every model module
fills with ``register_model``. Adding an entry is one line in one place, and looking up an unknown
name is a one-line ``ValueError`` that lists the valid ones (never a silent fallback).

This module imports nothing heavy, so the model modules and the tables can all depend on it.
"""

from __future__ import annotations

import difflib
from typing import Generic, TypeVar

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
