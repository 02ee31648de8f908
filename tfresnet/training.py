"""``train(cfg)`` and ``evaluate(cfg)``: one run, wired from the task, the runtime and the controller.

A run (``Run``) is the runtime (strategy, XLA, precision), a task (model, inputs, forward pass,
metrics), an optimizer, a ``Checkpointer`` and a ``Controller`` with its actions. The same engine
trains every task. A run resumes from the newest checkpoint in ``cfg.model_dir`` by itself: the
step, the optimizer (and so the learning-rate schedule), the model and the metrics are in the
checkpoint, and the data position is re-derived from the step.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from tfresnet import models, tasks
from tfresnet.config import TrainConfig
from tfresnet.core import files
from tfresnet.data import augment
from tfresnet.engine import actions, checkpoints, optim, report, runtime
from tfresnet.engine.actions import Preempted
from tfresnet.engine.controller import Controller, Trainer
from tfresnet.engine.runtime import TrainingError, detect_strategy, make_strategy, precision_policy, use_xla
from tfresnet.weights import finetune as transfer

__all__ = ["Run", "train", "evaluate", "check_names", "TrainingError", "Preempted", "detect_strategy",
           "make_strategy", "precision_policy", "use_xla"]

Log = Callable[[str], None]


def check_names(cfg: TrainConfig) -> type[tasks.Task]:
    """Looks up every name of ``cfg`` in its table; the first unknown one is a one-line ``ValueError``.

    Returns:
        The task class of ``cfg.task``.
    """
    task = tasks.TASKS.get(cfg.task)
    model = cfg.model or task.default_model
    trained_by = models.model_spec(model).task
    if trained_by != cfg.task:
        raise ValueError(f"model {model!r} is trained by task {trained_by!r}, not {cfg.task!r}; use "
                         f"--task={trained_by} or another model ({', '.join(models.list_models(cfg.task))})")
    optim.OPTIMIZERS.get(cfg.optimizer)
    optim.SCHEDULES.get(cfg.lr_schedule)
    if cfg.augment is not None:
        augment.AUGMENTATIONS.get(cfg.augment)
    return task


class Run:
    """The pieces of one training run, built from a ``TrainConfig``; ``train()`` runs it.

    Building checks everything that can be checked before a file is written: names, data,
    batch sizes, the model directory (writable, not another model's).

    Attributes:
        runtime, task, model, optimizer, train_metrics, eval_metrics, step, checkpointer: as named.
    """

    def __init__(self, cfg: TrainConfig, log: Log = print):
        self.cfg, self.log = cfg, log
        if cfg.report:
            raise ValueError("report is written by an evaluation: run tfresnet-eval --report=DIR (or --mode=eval)")
        task_cls = check_names(cfg)
        self.runtime = runtime.make_runtime(cfg, task_cls.xla_on_cpu, log)  # first: before TensorFlow's context
        self.task = task_cls(cfg, self.runtime)
        self.task.load_data(training=True)
        checkpoints.check_run_record(cfg.model_dir, self.task.run_record())
        checkpoints.check_writable(cfg.model_dir)
        with self.runtime.scope():
            self.model = self.task.build_model()
            self.optimizer = optim.make_optimizer(cfg, self.task.total_steps)
            self.optimizer.build(self.model.trainable_variables)
            if cfg.backbone_lr_scale != 1:
                optim.scale_learning_rate(self.optimizer, transfer.backbone_variables(self.model), cfg.backbone_lr_scale)
            self.train_metrics = self.task.build_metrics(training=True)
            self.eval_metrics = self.task.build_metrics(training=False)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        if cfg.keep_best and isinstance(self.runtime.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise ValueError("keep_best is not supported under multi-worker training (the chief alone saves it)")
        # The evaluation metrics too: a resumed run knows its last test accuracy (target_accuracy).
        metrics = {**self.train_metrics, **{f"test_{name}": m for name, m in self.eval_metrics.items()}}
        self.checkpointer = checkpoints.Checkpointer(
            cfg.model_dir, checkpoints.make_checkpoint(self.model, self.optimizer, self.step, metrics),
            self.runtime.strategy, cfg.keep_checkpoints, log)

    @property
    def jit(self) -> bool:
        """Whether the steps are XLA-compiled."""
        return self.runtime.jit_compile

    def restore(self) -> int:
        """Restores the newest readable checkpoint (see ``Checkpointer.restore``); returns its step."""
        step = self.checkpointer.restore()
        if step and self.cfg.lr_schedule == "constant":
            # A constant rate is a checkpointed variable: the configured one wins on resume.
            optim.base_optimizer(self.optimizer).learning_rate = self.cfg.base_learning_rate
        return step

    def actions(self) -> list[actions.Action]:
        """The controller's actions, in the order they run after each call of the train loop."""
        cfg, chief, task = self.cfg, self.runtime.is_chief, self.task
        evaluating = cfg.mode != "train"
        return [
            actions.NonFiniteGuard(self.checkpointer),
            actions.TensorBoard(cfg.model_dir, self.optimizer, task.global_batch_size, chief),
            actions.ProgressBar(task.steps_per_epoch, chief),
            *([actions.Evaluate(self.evaluator())] if evaluating else []),
            actions.EpochLog(cfg.model_dir, task.epoch_line, self.log, chief),
            *([actions.TargetAccuracy(cfg.target_accuracy, self.eval_metrics, self.log)]
              if cfg.target_accuracy is not None else []),
            *([actions.KeepBest(self.model, self.step, cfg.model_dir, self.log, chief, cfg.keep_best_by)]
              if cfg.keep_best else []),
            actions.CheckpointEvery(self.checkpointer, cfg.checkpoint_every or task.steps_per_epoch),
            actions.Preemption(self.checkpointer, self.runtime.strategy),
            *([actions.Export(self.export, chief)] if cfg.export else []),
        ]

    def evaluator(self):
        """The task's evaluation; with EMA, of the averaged weights, plus the raw ones as ``raw_*``."""
        evaluate = self.task.make_evaluator(self.model, self.eval_metrics)
        if not optim.uses_ema(self.optimizer):
            return evaluate

        def both():
            raw = evaluate()
            with optim.averaged_weights(self.optimizer):  # last: the metrics keep the EMA figures
                averaged = evaluate()
            return {**averaged, **{f"raw_{name}": value for name, value in raw.items()}}

        return both

    def export(self) -> None:
        """Exports the task's model; with ``keep_best``, the weights of the best evaluation; with EMA,
        the averaged weights."""
        if self.cfg.keep_best:
            checkpoints.restore_weights(self.model, self.cfg.model_dir, self.log, best=True)
        with optim.averaged_weights(self.optimizer):
            self.task.export(self.model, self.cfg.model_dir)

    def train_loop(self) -> transfer.TrainLoop:
        """The task's train loop; with ``freeze_backbone_epochs``, one that trains only the head first."""
        def make():
            return self.task.make_train_loop(self.model, self.optimizer, self.train_metrics)

        frozen_steps = self.cfg.freeze_backbone_epochs * self.task.steps_per_epoch
        return transfer.FrozenBackboneLoop(self.model, make, self.step, frozen_steps) if frozen_steps else make()

    def train(self) -> dict[str, float]:
        """Trains to ``total_steps``, resuming if a checkpoint exists, and exports the model.

        Returns:
            The last epoch's metrics (``loss``, ``accuracy`` and, with evaluation, ``test_*``).

        Raises:
            Preempted: SIGTERM arrived; a checkpoint was saved (exit status 75 from the CLI).
            TrainingError: non-finite loss, unreadable checkpoints, a lost worker.
        """
        with runtime.lost_worker_is_an_error(self.runtime.strategy, self.checkpointer.directory):
            start = self.restore()
            if start >= self.task.total_steps:
                self.log(f"Nothing left to train: the checkpoint is at step {start} of {self.task.total_steps} (raise "
                         "--epochs or --train_steps to train further)")
            self.checkpointer.write_run_record(self.task.run_record())
            trainer = Trainer(self.train_loop(), self.task.train_iterator(start), self.train_metrics)
            controller = Controller(trainer, step=self.step, total_steps=self.task.total_steps,
                                    steps_per_epoch=self.task.steps_per_epoch, steps_per_loop=self.cfg.steps_per_loop,
                                    actions=self.actions())
            return controller.run().results


def train(cfg: TrainConfig, log: Log = print) -> dict[str, float]:
    """Builds a ``Run`` from ``cfg`` and trains it. See ``Run.train``."""
    return Run(cfg, log).train()


def evaluate(cfg: TrainConfig, log: Log = print) -> dict[str, float]:
    """Metrics of the newest checkpoint in ``cfg.model_dir`` on the evaluation split; writes nothing.

    Builds only what evaluation needs: the model (its weights restored, no optimizer) and the
    evaluation data (no training split). For ``fewshot``, the episodes of the held-out keywords.

    With ``cfg.report`` (image classification), also writes the report of ``tfresnet.engine.report``
    to that folder and logs its summary.

    Returns:
        ``{"loss": ..., "accuracy": ..., ("top5": ...)}``.
    """
    task_cls = check_names(cfg)
    if cfg.report:
        files.check_writable(cfg.report, "report")
    rt = runtime.make_runtime(cfg, task_cls.xla_on_cpu, log)
    task = task_cls(cfg, rt)
    task.load_data(training=False)
    checkpoints.check_run_record(cfg.model_dir, task.run_record())
    with rt.scope():
        model = task.build_model(pretrained=False)  # the checkpoint's weights replace them
        metrics = task.build_metrics(training=False)
    # keep_best: the weights the evaluation during training chose (the few-shot validation keywords).
    step = checkpoints.restore_weights(model, cfg.model_dir, log, best=cfg.keep_best, averaged=bool(cfg.ema))
    results = task.make_evaluator(model, metrics)()
    log(task.eval_line(step, results))
    if cfg.report:
        found = task.make_report(model)
        report.write_report(found, cfg.report, step)
        for line in report.summary_lines(found, cfg.report):
            log(line)
    return results
