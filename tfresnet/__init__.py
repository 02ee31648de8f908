"""tfresnet: the ResNet family as TensorFlow 2 subclassed models, with a readable training loop.

Names are imported lazily, so ``import tfresnet`` (and ``tfresnet-train --help``) is instant and
TensorFlow loads on first use.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ResidualUnit": "tfresnet.layers",
    "ResnetLayer": "tfresnet.layers",
    "BasicBlock": "tfresnet.layers",
    "Bottleneck": "tfresnet.layers",
    "PreActBasicBlock": "tfresnet.layers",
    "PreActBottleneck": "tfresnet.layers",
    "ResNet": "tfresnet.models",
    "MnistResNet": "tfresnet.models",
    "PreActResNet22": "tfresnet.models",
    "create_model": "tfresnet.models",
    "list_models": "tfresnet.models",
    "TrainConfig": "tfresnet.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfresnet' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
