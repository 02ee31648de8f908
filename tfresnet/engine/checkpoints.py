"""Checkpoints of a run: what is saved, where each worker writes, how a run resumes.

* ``make_checkpoint`` keys every model, optimizer and metric variable by its path, plus the step.
* ``Checkpointer`` owns a run's ``tf.train.CheckpointManager``: the chief writes
  ``model_dir/checkpoints``, other workers a write-only copy (collective saves need every
  worker); every worker resumes from the chief's, after all of them agree on the step; an
  unreadable checkpoint is skipped for the one before it, and a directory where none is readable
  is an error rather than a fresh start on top of it.
* ``run.json`` records which model the checkpoints belong to (``check_run_record`` refuses to mix).
* ``restore_weights`` loads only the model for evaluation and never writes.

Saves are atomic: ``CheckpointManager`` writes the shards into a temporary folder, renames it, and
only then moves the ``checkpoint`` pointer; ``run.json`` is written to a temporary file and renamed.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import keras
import tensorflow as tf

from tfresnet.core import files
from tfresnet.core.errors import BadInput, TrainingError
from tfresnet.engine import runtime

Log = Callable[[str], None]
RUN_RECORD = "run.json"


def make_checkpoint(model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None,
                    step: tf.Variable | None = None,
                    metrics: Mapping[str, keras.metrics.Metric] | None = None) -> tf.train.Checkpoint:
    """A checkpoint of every model, optimizer and metric variable, keyed by its path, and the step.

    The metrics' running sums are in it so that an epoch interrupted and resumed reports what an
    uninterrupted one would. Evaluation passes only the model (and the step), and restores that
    part of a training checkpoint.

    Keyed by path (``mnist_resnet/stage1/stage1_unit1/stage1_unit1_bn1/moving_mean``) rather than
    through the model object: Keras 3 hides layers kept in Python lists (blocks, units) from
    TensorFlow's object graph, which would silently leave BatchNorm statistics out. Paths come
    from the explicit layer names, so checkpoints do not depend on creation order.
    """
    model_vars = {v.path: v for v in model.weights}
    parts: dict[str, Any] = {"model": model_vars}
    if len(model_vars) != len(model.weights):
        raise ValueError(f"{model.name}: variable paths are not unique, checkpoints would be ambiguous")
    if optimizer is not None:
        # Drop the optimizer's own name: Keras makes it unique per process (adam, adam_1, ...).
        parts["optimizer"] = {v.path.split("/", 1)[-1]: v for v in optimizer.variables}
        if len(parts["optimizer"]) != len(optimizer.variables):
            raise ValueError(f"{optimizer.name}: variable paths are not unique, checkpoints would be ambiguous")
    if metrics is not None:
        parts["metrics"] = {f"{name}/{v.name}": v for name, m in metrics.items() for v in m.variables}
    if step is not None:
        parts["step"] = step
    return tf.train.Checkpoint(**parts)


def restore_newest(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager,
                   log: Log = print) -> str | None:
    """Restores the newest readable checkpoint of ``manager``, falling back past unreadable ones.

    Every object of ``checkpoint`` must be found in the file; values in the file that
    ``checkpoint`` does not hold (the optimizer, when evaluating) are left alone.

    Args:
        checkpoint: Made by ``make_checkpoint`` (its ``step`` is logged).
        manager: Lists the checkpoints to try, newest last.
        log: Where the warnings and the "Restored" line go.

    Returns:
        The restored checkpoint's path, or None when ``manager`` has none.

    Raises:
        TrainingError: There are checkpoints but none is readable (never start over on top of them).
    """
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
        except Exception as err:  # OpError, IndexError, AssertionError...: all mean "unreadable"
            log(f"WARNING: checkpoint {path} is unreadable ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160]}); falling back to the previous one")
            continue
        step = f" (step {int(checkpoint.step.numpy())})" if hasattr(checkpoint, "step") else ""
        log(f"Restored {path}{step}")
        return path
    if manager.checkpoints:
        raise TrainingError(f"no readable checkpoint in {manager.directory} (all "
                            f"{len(manager.checkpoints)} failed to load); not starting over on top of them")
    return None


def checkpoint_dir(model_dir: str) -> str:
    """Where the chief keeps a run's checkpoints (the ones every worker resumes from)."""
    return os.path.join(model_dir, "checkpoints")


# --------------------------------------------------------------------------------------------------
# run.json
# --------------------------------------------------------------------------------------------------


def read_run_record(model_dir: str) -> dict[str, Any] | None:
    """The ``run.json`` of ``model_dir`` (what was trained there), or None before the first run."""
    path = os.path.join(model_dir, RUN_RECORD)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def check_run_record(model_dir: str, record: Mapping[str, Any]) -> None:
    """Refuses a ``model_dir`` whose ``run.json`` names another model, before anything is written."""
    previous = read_run_record(model_dir)
    if previous is None:
        return
    # A key the older record lacks (written before it existed) is no difference.
    differ = {k: v for k, v in record.items() if k in previous and previous[k] != v}
    if differ:
        diff = ", ".join(f"{k}: {previous[k]!r} there, {v!r} here" for k, v in differ.items())
        raise BadInput(f"model_dir {model_dir} holds a checkpoint of a different model ({diff}); "
                            "use another --model_dir")


def check_writable(model_dir: str) -> None:
    """Refuses a ``model_dir`` that cannot be written (or lies under a file), before any write."""
    try:
        files.check_writable(model_dir, "model_dir")
    except ValueError as err:
        raise BadInput(str(err)) from None


def write_atomically(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename: readers never see half of it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


# --------------------------------------------------------------------------------------------------
# The checkpointer of a training run
# --------------------------------------------------------------------------------------------------


class Checkpointer:
    """Saves and restores one training run's checkpoint in ``model_dir``.

    Args:
        model_dir: The run's folder (local or ``gs://``); the chief's checkpoints go to
            ``model_dir/checkpoints``.
        checkpoint: From ``make_checkpoint``, with a ``step``.
        strategy: The run's strategy: under ``MultiWorkerMirroredStrategy`` worker N (N > 0)
            writes ``model_dir/.workerN`` and keeps only its newest checkpoint.
        keep: Checkpoints the chief keeps.
        log: Where the "Restored" line and warnings go.
    """

    def __init__(self, model_dir: str, checkpoint: tf.train.Checkpoint, strategy: tf.distribute.Strategy,
                 keep: int = 3, log: Log = print):
        self.model_dir, self.checkpoint, self.strategy, self.log = model_dir, checkpoint, strategy, log
        self.worker_id = runtime.worker_id(strategy)
        self.directory = checkpoint_dir(model_dir)  # the chief's: what every worker resumes from
        # Every worker writes (the save is a collective), but only the chief into model_dir.
        own = os.path.join(model_dir, f".worker{self.worker_id}") if self.worker_id else self.directory
        self.manager = tf.train.CheckpointManager(checkpoint, own, max_to_keep=keep if self.is_chief else 1,
                                                  checkpoint_name="ckpt")

    @property
    def is_chief(self) -> bool:
        return not self.worker_id

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint this worker wrote (the chief's: the one a restart resumes from)."""
        return self.manager.latest_checkpoint

    def restore(self) -> int:
        """Restores the newest readable checkpoint (the chief's, on every worker); returns its step (0: none)."""
        manager = self.manager
        if self.worker_id is not None:
            # Every worker resumes from the chief's checkpoints, never from its own copy: a worker
            # killed while saving keeps one save fewer than the chief, and workers at different
            # steps run mismatched collectives (a crash or a hang instead of a resume).
            if not self.is_chief:
                manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=None)
            # Restoring runs collectives too, so the workers must agree before any of them starts.
            latest = manager.latest_checkpoint
            self._check_workers_agree(int(latest.rsplit("-", 1)[1]) if latest else 0)
        if restore_newest(self.checkpoint, manager, self.log) is None:
            return 0
        return int(self.checkpoint.step.numpy())

    def _check_workers_agree(self, step: int) -> None:
        """Fails every worker with one clear line unless all of them would resume at the same step."""
        steps_seen = runtime.gather_from_workers(self.strategy, step)
        if len(set(steps_seen)) > 1:
            per_worker = ", ".join(f"worker {i}: {s}" for i, s in enumerate(steps_seen))
            raise TrainingError(f"the workers found different checkpoints to resume from (steps: {per_worker}); "
                                f"every worker must read the chief's checkpoints in {self.directory}, so "
                                "--model_dir must be the same shared directory (e.g. gs://...) on all of them")

    def save(self, step: int) -> str:
        """Saves the run at ``step`` (every worker must call it); a second save of a step is skipped."""
        latest = self.manager.latest_checkpoint
        if latest is not None and latest.endswith(f"-{step}"):
            return latest
        return self.manager.save(checkpoint_number=step)

    def write_run_record(self, record: Mapping[str, Any]) -> None:
        """Writes ``run.json`` (the chief only)."""
        if self.is_chief:
            tf.io.gfile.makedirs(self.model_dir)
            write_atomically(os.path.join(self.model_dir, RUN_RECORD), json.dumps(dict(record)))


def best_dir(model_dir: str) -> str:
    """Where ``keep_best`` keeps the weights of a run's best evaluation (``actions.KeepBest``)."""
    return os.path.join(model_dir, "best")


def restore_weights(model: keras.Model, model_dir: str, log: Log = print, best: bool = False,
                    averaged: bool = False) -> int:
    """Loads the model weights of the newest readable checkpoint in ``model_dir``; writes nothing.

    Only the model's variables (and the step) are read: no optimizer, no metrics. With ``best``,
    the checkpoint of the best evaluation (``best_dir``) instead. With ``averaged``, the trainable
    weights are their moving averages (``--ema``), read from the optimizer's part of it.

    Returns:
        The checkpoint's training step.

    Raises:
        BadInput: no checkpoint (nothing was trained in ``model_dir``).
        TrainingError: none readable.
    """
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = make_checkpoint(model, step=step)
    if averaged:  # the averages restore straight into the weights they average
        trainable = {id(v) for v in model.trainable_variables}
        checkpoint = tf.train.Checkpoint(
            model={v.path: v for v in model.weights if id(v) not in trainable}, step=step,
            optimizer={ema_key(v): v for v in model.trainable_variables})
    directory = best_dir(model_dir) if best else checkpoint_dir(model_dir)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=None)
    if restore_newest(checkpoint, manager, log) is None:
        raise BadInput(f"no checkpoint in {directory}: train there first (tfresnet-train with the same "
                       "--model_dir), or name the run's folder with --model_dir")
    return int(step.numpy())


def ema_key(variable) -> str:
    """The checkpoint key of ``variable``'s moving average: Keras' optimizer-variable name for it."""
    return variable.path.replace("/", "_") + "_average"
