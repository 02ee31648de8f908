"""Pretrained weights: where they come from, what inputs they expect, how they load, fine-tuning.

``catalog`` (the weight sources by model: keras.applications, torchvision, timm, files;
``sources``, ``find``, ``fetch``, ``register_weights``), ``preprocessing`` (``Preprocessing``: what weights
expect of their pixels), ``port`` (keras.applications by layer name, PyTorch state dicts by a name
map), ``finetune`` (the backbone, and training only the head first). Names of ``catalog`` are also
names of this package (``tfresnet.weights.find``).
"""

from tfresnet.core.lazy import namespace

__getattr__, __dir__ = namespace(__name__, ("catalog", "preprocessing", "port", "finetune"))
