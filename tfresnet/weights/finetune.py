"""Fine-tuning: a classifier's backbone, freezing it for the first epochs, and its own learning rate.

Every tfresnet image classifier names its classifier layer ``predictions`` (``port.HEAD``);
everything else is the backbone. Freezing uses Keras' own mechanism (``layer.trainable = False``),
under which tfresnet's BatchNorm also stops updating its statistics and normalises with them, as
in the Keras and PyTorch transfer-learning guides.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import keras
import tensorflow as tf

from tfresnet.weights.port import HEAD

TrainLoop = Callable[[Iterator, tf.Tensor], tf.Tensor]


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The top-level layers of ``model`` other than its classifier.

    Raises:
        ValueError: ``model`` has no classifier layer (an encoder, or ``num_classes=0``).
    """
    layers = model._flatten_layers(include_self=False, recursive=False)
    layers = [layer for layer in layers if isinstance(layer, keras.layers.Layer)]
    if not any(layer.name == HEAD for layer in layers):
        raise ValueError(f"{model.name} has no classifier layer {HEAD!r}: freezing the backbone or giving it its own "
                         "learning rate needs a classifier with a head")
    return [layer for layer in layers if layer.name != HEAD]


def backbone_variables(model: keras.Model) -> list[keras.Variable]:
    """The trainable variables of the backbone (everything but the classifier)."""
    return [v for layer in backbone_layers(model) for v in layer.trainable_variables]


def freeze_backbone(model: keras.Model, frozen: bool) -> None:
    """Freezes (or thaws) every backbone layer: no gradients, BatchNorm in inference mode."""
    for layer in backbone_layers(model):
        layer.trainable = not frozen


class FrozenBackboneLoop:
    """A train loop that trains only the classifier until ``frozen_steps``, then everything.

    Two train loops are built, each with the backbone frozen or not when it is first traced (the
    trainable variables and BatchNorm's mode are fixed then). The controller never runs a call
    across ``frozen_steps`` when it is an epoch's end, so each call runs in one phase; a run
    resumed in either phase picks it from the step.

    Args:
        model: The classifier being fine-tuned.
        make_loop: Builds a train loop of ``model`` as it is (``Task.make_train_loop``).
        step: The run's step variable.
        frozen_steps: Steps with the backbone frozen.
    """

    def __init__(self, model: keras.Model, make_loop: Callable[[], TrainLoop], step: tf.Variable, frozen_steps: int):
        backbone_layers(model)  # fail now for a model without a classifier
        self.model, self.make_loop, self.step, self.frozen_steps = model, make_loop, step, frozen_steps
        self.loops: dict[bool, TrainLoop] = {}

    def __call__(self, iterator: Iterator, num_steps: Any) -> tf.Tensor:
        frozen = int(self.step.numpy()) < self.frozen_steps
        freeze_backbone(self.model, frozen)
        if frozen not in self.loops:
            self.loops[frozen] = self.make_loop()
        return self.loops[frozen](iterator, num_steps)
