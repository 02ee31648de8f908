"""tfresnet: the ResNet family as TensorFlow 2 subclassed models, with a readable training loop.

Names are imported lazily, so ``import tfresnet`` (and ``tfresnet-train --help``) is instant and
TensorFlow loads on first use.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ResidualUnit": "tfresnet.tutorial",
    "ResnetLayer": "tfresnet.tutorial",
    "MnistResNet": "tfresnet.tutorial",
    "PreActResNet22": "tfresnet.tutorial",
    "BasicBlock": "tfresnet.blocks",
    "Bottleneck": "tfresnet.blocks",
    "PreActBasicBlock": "tfresnet.blocks",
    "PreActBottleneck": "tfresnet.blocks",
    "ResNet": "tfresnet.resnet",
    "ProtoResEncoder": "tfresnet.protores",
    "PrototypicalNetwork": "tfresnet.protores",
    "KeywordSpotter": "tfresnet.spotting",
    "create_model": "tfresnet.models",
    "list_models": "tfresnet.models",
    "model_spec": "tfresnet.models",
    "register_model": "tfresnet.registry",
    "register_weights": "tfresnet.weights",
    "Preprocessing": "tfresnet.preprocessing",
    "TrainConfig": "tfresnet.config",
    "train": "tfresnet.training",
    "evaluate": "tfresnet.training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfresnet' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
