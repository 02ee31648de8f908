"""tfresnet: the ResNet family as TensorFlow 2 subclassed models, with a readable training loop.

Names are imported lazily, so ``import tfresnet`` (and ``tfresnet-train --help``) is instant and
TensorFlow loads on first use.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ResidualUnit": "tfresnet.models.tutorial",
    "ResnetLayer": "tfresnet.models.tutorial",
    "MnistResNet": "tfresnet.models.tutorial",
    "PreActResNet22": "tfresnet.models.tutorial",
    "BasicBlock": "tfresnet.models.blocks",
    "Bottleneck": "tfresnet.models.blocks",
    "PreActBasicBlock": "tfresnet.models.blocks",
    "PreActBottleneck": "tfresnet.models.blocks",
    "ResNet": "tfresnet.models.resnet",
    "ProtoResEncoder": "tfresnet.models.protores",
    "PrototypicalNetwork": "tfresnet.models.protores",
    "KeywordSpotter": "tfresnet.kws.spotting",
    "create_model": "tfresnet.models",
    "list_models": "tfresnet.models",
    "model_spec": "tfresnet.models",
    "register_model": "tfresnet.models.registry",
    "register_weights": "tfresnet.weights",
    "Preprocessing": "tfresnet.weights.preprocessing",
    "TrainConfig": "tfresnet.config",
    "evaluate": "tfresnet.training",
}
__all__ = sorted([*_EXPORTS, "train"])


def __getattr__(name):
    if name == "train":  # the module of python -m tfresnet.train, which calling trains (train(cfg))
        return importlib.import_module("tfresnet.train")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tfresnet' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return sorted(list(globals()) + __all__)
