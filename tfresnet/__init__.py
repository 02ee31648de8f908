"""tfresnet: the ResNet family as TensorFlow 2 subclassed models, with a readable training loop.

Names are imported lazily, so ``import tfresnet`` (and ``tfresnet-train --help``) is instant and
TensorFlow loads on first use. The package's Keras classes are registered as soon as Keras is
imported, so that ``keras.models.load_model`` reads every ``.keras`` file tfresnet writes after a
bare ``import tfresnet``.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

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


# The modules whose import registers every Keras class a tfresnet .keras file names (the zoo imports
# each model family; optim holds the SGD a compiled model may carry).
_KERAS_CLASSES = ("tfresnet.models.zoo", "tfresnet.engine.optim")


def _register_keras_classes() -> None:
    for module in _KERAS_CLASSES:
        importlib.import_module(module)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Runs ``_register_keras_classes`` right after ``keras`` itself is first imported.

    Keras finds a saved class only in its registry, which the class's module fills when imported;
    importing the models here would load TensorFlow on ``import tfresnet`` (and on ``--help``).
    """

    def find_spec(self, name, path, target=None):
        if name != "keras":
            return None
        # Out of the way while looking, so that find_spec below does not find this finder again;
        # back until Keras really executes: a look alone (TensorFlow's lazy loader asks
        # importlib.util.find_spec("keras") first, then imports it with a spec of its own) is no import.
        index = sys.meta_path.index(self)
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(index, self)
        if spec is not None and spec.loader is not None:
            exec_keras = spec.loader.exec_module

            def exec_module(module):
                if self in sys.meta_path:
                    sys.meta_path.remove(self)  # once
                exec_keras(module)
                try:
                    _register_keras_classes()
                except ImportError as err:  # Keras itself must still import; loading a tfresnet file then fails
                    warnings.warn(f"tfresnet's Keras classes are not registered ({err})", stacklevel=2)

            spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_keras_classes()
elif not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterKeras())
