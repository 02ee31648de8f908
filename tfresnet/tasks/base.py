"""Tasks: what differs between kinds of training, behind one interface the engine drives.

A task (after Model Garden's ``base_task.Task``) supplies the model, the inputs, the forward pass
of a batch and the metrics; the step factories (``tfresnet.engine.steps``), the controller
(``tfresnet.engine.controller``), its actions and the checkpoints are the same for every task. Two
are built in, one module each: ``classify`` (``ClassificationTask``) and ``fewshot``
(``FewShotTask``). A new task subclasses ``Task`` and is one entry in ``TASKS``.
"""

from __future__ import annotations

import abc
import os
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import keras

from tfresnet.config import TrainConfig
from tfresnet.core.registry import Registry
from tfresnet.engine import steps
from tfresnet.engine.runtime import Runtime

Metrics = Mapping[str, keras.metrics.Metric]


class Task(abc.ABC):
    """One kind of training. Built from the run's config and runtime; ``load_data`` comes first.

    After ``load_data``: ``input_shape``, ``num_classes`` (None for encoders), and when training
    ``steps_per_epoch`` and ``total_steps``.

    Args:
        cfg: The run's configuration.
        rt: The run's strategy, XLA and precision.
    """

    name: ClassVar[str]
    default_model: ClassVar[str]
    # XLA by default on CPU too (it always is on GPU/TPU): only where it measured faster there.
    xla_on_cpu: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig, rt: Runtime):
        self.cfg, self.runtime = cfg, rt
        self.model_name = cfg.model or self.default_model
        self.input_shape: tuple[int, ...] = ()
        self.num_classes: int | None = None
        self.steps_per_epoch = 0

    @property
    def total_steps(self) -> int:
        return self.cfg.train_steps or self.cfg.epochs * self.steps_per_epoch

    # -- data ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def load_data(self, training: bool) -> None:
        """Finds the examples: the training split (and the evaluation split unless
        ``mode=train``) when ``training``, only the evaluation split otherwise."""

    @abc.abstractmethod
    def train_iterator(self, start_step: int) -> Iterator:
        """Distributed training batches from ``start_step`` on: the ones an uninterrupted run sees."""

    @abc.abstractmethod
    def eval_batches(self) -> Iterable:
        """One pass of distributed evaluation batches."""

    # -- model and steps -----------------------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self, pretrained: bool = True) -> keras.Model:
        """The trained model (call inside ``Runtime.scope()``); ``pretrained=False`` skips loading
        pretrained weights (evaluation restores a checkpoint over them anyway)."""

    @abc.abstractmethod
    def build_metrics(self, training: bool) -> dict[str, keras.metrics.Metric]:
        """Metric objects of the training or the evaluation phase (inside ``Runtime.scope()``)."""

    @property
    @abc.abstractmethod
    def global_batch_size(self) -> int:
        """Examples (or episodes) per step over all replicas: the loss divisor."""

    @abc.abstractmethod
    def forward(self, model: keras.Model) -> steps.Forward:
        """``forward(batch, training) -> (per-example losses, outputs)``."""

    @abc.abstractmethod
    def metrics_update(self, metrics: Metrics) -> steps.UpdateMetrics:
        """``update(batch, per-example losses, outputs)`` of ``metrics``."""

    def make_train_loop(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, metrics: Metrics):
        """``train_loop(iterator, n)``: ``steps.make_train_loop`` on this task's forward pass."""
        return steps.make_train_loop(model, optimizer, self.forward(model), self.metrics_update(metrics),
                                     self.global_batch_size, self.runtime.strategy, self.runtime.jit_compile)

    def make_evaluator(self, model: keras.Model, metrics: Metrics) -> Callable[[], dict[str, float]]:
        """``evaluate() -> {metric: value}``: one pass over ``eval_batches`` from reset metrics."""
        step = steps.make_eval_step(self.forward(model), self.metrics_update(metrics), self.runtime.strategy,
                                    self.runtime.jit_compile)

        def evaluate() -> dict[str, float]:
            for metric in metrics.values():
                metric.reset_state()
            for batch in self.eval_batches():
                step(batch)
            return {name: float(m.result()) for name, m in metrics.items()}

        return evaluate

    # -- records, lines and export -------------------------------------------------------------------

    def run_record(self) -> dict[str, Any]:
        """What ``run.json`` holds: a model directory never mixes checkpoints of two models."""
        return {"task": self.name, "model": self.model_name, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "model_options": dict(self.cfg.model_options)}

    # What the test figures of the epoch line are about, e.g. " (5-way 1-shot, held-out keywords)".
    eval_note = ""

    def epoch_line(self, epoch: int, results: Mapping[str, float]) -> str:
        """The line printed after each epoch (``results``: train metrics and ``test_*``)."""
        line = f"Epoch {epoch}, Loss: {results['loss']:.4f}, Accuracy: {results['accuracy'] * 100:.2f}"
        if "test_loss" in results:
            line += (f", Test Loss: {results['test_loss']:.4f}, Test Accuracy: {results['test_accuracy'] * 100:.2f}"
                     + self.eval_note)
        if "test_raw_accuracy" in results:  # --ema: the figures above are of the averaged weights
            line += f" (EMA weights; raw weights: {results['test_raw_accuracy'] * 100:.2f})"
        return line

    @abc.abstractmethod
    def eval_line(self, step: int, results: Mapping[str, float]) -> str:
        """The line ``tfresnet-eval`` prints."""

    def export_model(self, model: keras.Model) -> keras.Model:
        """The model that is exported (the trained one by default)."""
        return model

    def export(self, model: keras.Model, model_dir: str) -> None:
        """Writes ``model.keras`` and a serving SavedModel (``saved_model/``) to ``model_dir``."""
        exported = self.export_model(model)
        exported.save(os.path.join(model_dir, "model.keras"))
        exported.export(os.path.join(model_dir, "saved_model"), verbose=False)


# Filled by the task modules (tfresnet.tasks imports them all).
TASKS: Registry[type[Task]] = Registry("task")
