"""tfresnet: the ResNet family as TensorFlow 2 subclassed models, with a readable training loop."""

from tfresnet.layers import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ResidualUnit,
    ResnetLayer,
)
from tfresnet.models import MnistResNet, PreActResNet22, ResNet, create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "MnistResNet",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet22",
    "ResNet",
    "ResidualUnit",
    "ResnetLayer",
    "create_model",
    "list_models",
]
