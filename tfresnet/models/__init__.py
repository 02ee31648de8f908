"""The model zoo: the building blocks, the ResNet family, the tutorial nets, the keyword encoder.

``layers`` (the fused BatchNorm, padded convolutions) -> ``blocks`` (ResNet v1/v2, ResNeXt blocks)
-> ``classifier`` (``ImageClassifier``) -> ``resnet`` (``ResNet`` and its one depth table),
``tutorial`` (``mnist_resnet``, ``preact_resnet22``), ``protores`` (the few-shot keyword encoder);
``registry`` (``MODELS``, ``register_model``) and ``zoo`` (``create_model``, ``list_models``,
``model_spec``), whose names are also names of this package (``tfresnet.models.create_model``).
Models import nothing from the data, engine, tasks or command-line layers.
"""

from tfresnet.core.lazy import namespace

__getattr__, __dir__ = namespace(__name__, ("zoo", "registry"))
