"""Lazy package namespaces: a package's public names come from its modules on first use.

``tfresnet.data.make_dataset`` is ``tfresnet.data.pipeline.make_dataset``, imported when first asked
for: importing a package (or ``tfresnet.config`` inside it) costs nothing, so ``--help`` and the
flag checks answer before TensorFlow loads.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable, Sequence


def namespace(package: str, modules: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: a name is its submodule, else the first of
    ``modules`` (in order) that defines it."""

    def getattr_(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        for module in modules:
            found = importlib.import_module(f"{package}.{module}")
            if hasattr(found, name) and not name.startswith("_"):
                return getattr(found, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        names = set(modules)
        for module in modules:
            names |= {n for n in dir(importlib.import_module(f"{package}.{module}")) if not n.startswith("_")}
        return sorted(names)

    return getattr_, dir_
