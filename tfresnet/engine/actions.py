"""What the controller does after each call of the train loop, one action each, and what it sees.

``LoopState`` is where the run is; ``Action`` is the interface (start, after each call, end,
close).

In the order ``tfresnet.training`` lists them: ``NonFiniteGuard``, ``TensorBoard``,
``ProgressBar``, ``Evaluate``, ``EpochLog`` (the printed line and ``metrics.jsonl``),
``TargetAccuracy``, ``KeepBest``, ``CheckpointEvery``, ``Preemption``, ``Export``. Each is a few lines; a new one
(a logger, weight averaging) is a new class in the list, not an edit of the loop.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from typing import Callable, Mapping

import keras
import numpy as np
import tensorflow as tf

from tfresnet.config import KEEP_BEST_BY
from tfresnet.engine import optim, runtime
from tfresnet.engine.checkpoints import Checkpointer, best_dir, make_checkpoint, write_atomically
from tfresnet.engine.runtime import TrainingError

Log = Callable[[str], None]


@dataclasses.dataclass
class LoopState:
    """Where the run is, handed to every action after every call of the train loop.

    Attributes:
        step: Global steps done (after this call).
        start_step: The step the run (re)started from.
        total_steps: Where training ends.
        steps_per_epoch: Steps of one epoch.
        started: ``time.perf_counter()`` when the loop started.
        losses: Loss of each step of this call.
        seconds: Wall time of this call.
        train: Training metrics after this call (``loss``, ``accuracy``), running over the epoch.
        results: The epoch's results at an epoch's end (``train`` plus ``test_*`` once evaluated),
            else empty.
        stop: Set by an action (a reason) to end training after this call.
    """

    step: int
    start_step: int
    total_steps: int
    steps_per_epoch: int
    started: float
    losses: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    seconds: float = 0.0
    train: dict[str, float] = dataclasses.field(default_factory=dict)
    results: dict[str, float] = dataclasses.field(default_factory=dict)
    stop: str | None = None

    @property
    def steps_in_call(self) -> int:
        return len(self.losses)

    @property
    def epoch(self) -> int:
        """The (1-based) epoch the last step belongs to."""
        return -(-self.step // self.steps_per_epoch)

    @property
    def epoch_end(self) -> bool:
        """Whether this call ended an epoch (or training)."""
        return self.step % self.steps_per_epoch == 0 or self.step == self.total_steps

    @property
    def finished(self) -> bool:
        """Whether training ends after this call."""
        return self.step >= self.total_steps or self.stop is not None


class Action:
    """Something done around the train loop; override any hook.

    Every worker of a multi-worker run calls every hook in the same order: an action that runs
    a collective (a metric read, a save) runs it on all of them, and only the writing to files
    and logs is the chief's.

    Attributes:
        interval: If set, no call of the train loop runs past a multiple of it (checkpoints).
    """

    interval: int | None = None

    def start(self, state: LoopState) -> None:
        """Before the first call (after any restore)."""

    def __call__(self, state: LoopState) -> None:
        """After every call of the train loop."""

    def end(self, state: LoopState) -> None:
        """After training ended normally (not after an error or preemption)."""

    def close(self) -> None:
        """Always, last: release what ``start`` took (signal handlers, writers)."""



class Preempted(Exception):
    """SIGTERM arrived: the run saved a checkpoint at ``step`` and stopped; rerun to resume."""

    exit_code = 75  # EX_TEMPFAIL: "temporary failure, try again", what schedulers retry on

    def __init__(self, step: int, checkpoint: str | None):
        super().__init__(f"preempted (SIGTERM) at step {step}; saved {checkpoint}; run the same command to resume")
        self.step = step


class NonFiniteGuard(Action):
    """Stops training at the first NaN/inf loss; the last good checkpoint stays the newest."""

    def __init__(self, checkpointer: Checkpointer):
        self.checkpointer = checkpointer

    def __call__(self, state: LoopState) -> None:
        bad = np.flatnonzero(~np.isfinite(state.losses))
        if bad.size:
            step = state.step - state.steps_in_call + bad[0] + 1
            raise TrainingError(f"loss became {state.losses[bad[0]]} at step {step}; the last good checkpoint "
                                f"({self.checkpointer.latest_checkpoint}) is kept")


class TensorBoard(Action):
    """``logs/train`` (loss, accuracy, learning rate, examples/s every call) and ``logs/eval`` (each epoch).

    Args:
        model_dir: The run's folder.
        optimizer: For the learning rate.
        global_batch_size: Examples per step, for the rate.
        is_chief: Only the chief writes; the others write nowhere (their values are the same).
    """

    def __init__(self, model_dir: str, optimizer: keras.optimizers.Optimizer, global_batch_size: int,
                 is_chief: bool = True):
        self.model_dir, self.optimizer, self.batch, self.is_chief = model_dir, optimizer, global_batch_size, is_chief
        self.writers: dict[str, tf.summary.SummaryWriter] = {}

    def _writer(self, phase: str) -> tf.summary.SummaryWriter:
        if phase not in self.writers:
            self.writers[phase] = (tf.summary.create_file_writer(os.path.join(self.model_dir, "logs", phase))
                                   if self.is_chief else tf.summary.create_noop_writer())
        return self.writers[phase]

    def __call__(self, state: LoopState) -> None:
        with self._writer("train").as_default(step=state.step):
            tf.summary.scalar("loss", float(state.losses.mean()))
            if "accuracy" in state.train:
                tf.summary.scalar("accuracy", state.train["accuracy"])
            tf.summary.scalar("learning_rate", optim.current_lr(self.optimizer))
            tf.summary.scalar("images_per_sec", state.steps_in_call * self.batch / state.seconds)
        tests = {k[5:]: v for k, v in state.results.items() if k.startswith("test_")}
        if tests:
            with self._writer("eval").as_default(step=state.step):
                for name, value in tests.items():
                    tf.summary.scalar(name, value)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.flush()


class ProgressBar(Action):
    """A Keras progress bar over each epoch, on an interactive terminal (the chief's)."""

    def __init__(self, steps_per_epoch: int, is_chief: bool = True):
        self.steps_per_epoch = steps_per_epoch
        self.enabled = is_chief and sys.stdout.isatty()
        self.bar: keras.utils.Progbar | None = None

    def __call__(self, state: LoopState) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = keras.utils.Progbar(self.steps_per_epoch, unit_name="step")
        self.bar.update((state.step - 1) % self.steps_per_epoch + 1, [("loss", state.train.get("loss", 0.0))])
        if state.epoch_end:
            self.bar = None


class Evaluate(Action):
    """At each epoch's end, adds the evaluation's results to ``state.results`` as ``test_*``.

    Args:
        evaluate: ``evaluate() -> {metric: value}`` (``Task.make_evaluator``); its metric objects
            are checkpointed, so a resumed run knows its last evaluation.
    """

    def __init__(self, evaluate: Callable[[], Mapping[str, float]]):
        self.evaluate = evaluate

    def __call__(self, state: LoopState) -> None:
        if state.epoch_end:
            state.results.update({f"test_{k}": v for k, v in self.evaluate().items()})


class EpochLog(Action):
    """At each epoch's end: the task's line (``Epoch 1, Loss: ...``) and a line of ``metrics.jsonl``.

    On start, lines of ``metrics.jsonl`` past the restored step are dropped: a run killed between
    writing a line and saving its checkpoint recomputes them instead of duplicating them.

    Args:
        model_dir: The run's folder.
        line: ``line(epoch, results) -> str`` (``Task.epoch_line``).
        log: Where the line goes.
        is_chief: Only the chief prints and writes.
    """

    def __init__(self, model_dir: str, line: Callable[[int, Mapping[str, float]], str], log: Log = print,
                 is_chief: bool = True):
        self.path = os.path.join(model_dir, "metrics.jsonl")
        self.line, self.log, self.is_chief = line, log, is_chief

    def start(self, state: LoopState) -> None:
        if not self.is_chief or not tf.io.gfile.exists(self.path):
            return
        with tf.io.gfile.GFile(self.path) as f:
            lines = [line for line in f if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= state.step]
        if len(kept) != len(lines):
            write_atomically(self.path, "".join(kept))

    def __call__(self, state: LoopState) -> None:
        if not (state.epoch_end and self.is_chief):
            return
        self.log(self.line(state.epoch, state.results))
        with tf.io.gfile.GFile(self.path, "a") as f:
            f.write(json.dumps({"epoch": state.epoch, "step": state.step, **state.results}) + "\n")


class TargetAccuracy(Action):
    """Stops at the first epoch whose test accuracy reaches ``target`` (MLPerf-style time to accuracy).

    The last evaluation is checkpointed with the run, so the same command again finds the target
    reached and trains no further, while a higher target resumes.

    Args:
        target: Test accuracy to reach, a fraction.
        eval_metrics: The evaluation's metric objects (restored with the checkpoint).
        log: Where the line goes.
    """

    def __init__(self, target: float, eval_metrics: Mapping[str, keras.metrics.Metric], log: Log = print):
        self.target, self.eval_metrics, self.log = target, eval_metrics, log
        self.accuracy = eval_metrics["accuracy"]

    def start(self, state: LoopState) -> None:
        # The restored evaluation of the checkpoint (none at step 0: its count is 0).
        if state.step and float(self.accuracy.count) > 0 and float(self.accuracy.result()) >= self.target:
            state.results = {f"test_{k}": float(m.result()) for k, m in self.eval_metrics.items()}
            self.log(f"Test accuracy {float(self.accuracy.result()):.2%} of step {state.step} already reaches "
                     f"target_accuracy {self.target:.2%}; nothing to train")
            state.stop = "target reached"

    def __call__(self, state: LoopState) -> None:
        if state.results.get("test_accuracy", -1.0) >= self.target:
            state.stop = "target reached"
            self.log(f"Reached target_accuracy {self.target:.2%} at epoch {state.epoch} (step {state.step}), "
                     f"{time.perf_counter() - state.started:.1f} s after the start of training")


class KeepBest(Action):
    """Keeps the model weights of the best evaluation so far in ``model_dir/best`` (``best.json``).

    The evaluation that selects is the run's ``test_accuracy`` (highest) or ``test_loss`` (lowest),
    ``by``; for few-shot runs, episodes of the validation keywords. The loss still ranks weights
    when the accuracy has saturated near 100% and moves by the noise of the episodes drawn. The
    record is read back on start, so a resumed run keeps comparing against the best of the steps
    before it. The chief writes; no collective save is needed, so it is refused under
    multi-worker training.

    Args:
        model: The trained model.
        step: The run's step variable (saved with the weights).
        model_dir: The run's folder.
        log: Where the "New best" line goes.
        is_chief: Only the chief writes.
        by: ``"accuracy"`` or ``"loss"``.
    """

    def __init__(self, model: keras.Model, step: tf.Variable, model_dir: str, log: Log = print,
                 is_chief: bool = True, by: str = "accuracy"):
        if by not in KEEP_BEST_BY:
            raise ValueError(f"keep_best_by: unknown value {by!r}; expected one of {', '.join(KEEP_BEST_BY)}")
        self.directory, self.log, self.is_chief = best_dir(model_dir), log, is_chief
        self.key, self.sign = f"test_{by}", (1.0 if by == "accuracy" else -1.0)  # sign: larger is better
        self.record_path = os.path.join(self.directory, "best.json")
        self.manager = tf.train.CheckpointManager(make_checkpoint(model, step=step), self.directory, max_to_keep=1,
                                                  checkpoint_name="best")
        self.best = -np.inf  # sign * value of the best evaluation

    def start(self, state: LoopState) -> None:
        if tf.io.gfile.exists(self.record_path):
            with tf.io.gfile.GFile(self.record_path) as f:
                record = json.load(f)
            if self.key not in record:
                raise ValueError(f"{self.record_path} ranks by another measure than {self.key}: resume with the "
                                 "keep_best_by the run was started with")
            self.best = self.sign * record[self.key]

    def __call__(self, state: LoopState) -> None:
        value = state.results.get(self.key)
        if not (state.epoch_end and self.is_chief) or value is None or self.sign * value <= self.best:
            return
        self.best = self.sign * value
        path = self.manager.save(checkpoint_number=state.step)
        write_atomically(self.record_path, json.dumps({"step": state.step, "epoch": state.epoch,
                                                       self.key: value, "checkpoint": path}))
        self.log(f"New best {self.key} {value:.4f} at epoch {state.epoch}: kept in {self.directory}")


class CheckpointEvery(Action):
    """Saves every ``every`` steps, at the end of training, and when an action stops it.

    The epoch's log line goes before the checkpoint (the action order): a crash in between
    repeats the line's steps on restart, and ``EpochLog`` drops the stale line.
    """

    def __init__(self, checkpointer: Checkpointer, every: int):
        self.checkpointer, self.interval = checkpointer, every

    def __call__(self, state: LoopState) -> None:
        if state.step % self.interval == 0 or state.finished:
            self.checkpointer.save(state.step)


class Preemption(Action):
    """SIGTERM checkpoints at the next call's end, on every worker at the same step, and stops.

    While training, SIGTERM only sets a flag. After each call of the train loop the workers
    combine their flags (one small all-gather under ``MultiWorkerMirroredStrategy``), so when any
    one of them is signalled, all save the same step and raise ``Preempted`` (exit status 75);
    the same command resumes bitwise. This is the guarantee of
    ``tf.distribute.experimental.PreemptionCheckpointHandler``, which this does not use: on GCE
    CPU and TPU VMs (Colab among them) its ``save_checkpoint_if_preempted`` does nothing, and it
    restores at construction from its own manager, bypassing ``Checkpointer.restore``'s fallback
    past a corrupt checkpoint and the workers' agreement on the step.
    """

    def __init__(self, checkpointer: Checkpointer, strategy: tf.distribute.Strategy):
        self.checkpointer, self.strategy = checkpointer, strategy
        self.flag = threading.Event()
        self.previous = None

    def start(self, state: LoopState) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self.previous = signal.signal(signal.SIGTERM, lambda *_: self.flag.set())

    def __call__(self, state: LoopState) -> None:
        # Every worker takes part in the gather, signalled or not, on every call.
        if any(runtime.gather_from_workers(self.strategy, int(self.flag.is_set()))) and not state.finished:
            raise Preempted(state.step, self.checkpointer.save(state.step))

    def close(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


class Export(Action):
    """At the end of training, writes the task's exported model (``model.keras``, ``saved_model/``).

    Only the chief, and only if this run trained (a finished run started again exports nothing).
    """

    def __init__(self, export: Callable[[], None], is_chief: bool = True):
        self.export, self.is_chief = export, is_chief

    def end(self, state: LoopState) -> None:
        if self.is_chief and state.step > state.start_step:
            self.export()
