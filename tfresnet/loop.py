"""The controller: runs the train loop in calls of ``steps_per_loop`` steps, then its actions.

After Orbit's ``Controller``: ``Controller.run()`` calls ``train_loop(iterator, n)``, reads the
training metrics, and hands a ``LoopState`` to each action in order (``tfresnet.actions``:
non-finite guard, TensorBoard, evaluation, the epoch line, ``metrics.jsonl``, target accuracy,
checkpoints, preemption, export). An action can stop the loop by setting ``state.stop``. What
differs between tasks is in the train loop and the actions' arguments, never here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf


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


class Controller:
    """Drives a train loop from the step in ``step`` to ``total_steps``.

    Args:
        train_loop: ``train_loop(iterator, n) -> losses of n steps`` (``steps.make_train_loop``).
        iterator: The training batches, positioned at the current step.
        step: The checkpointed step variable; the controller advances it.
        train_metrics: Read after every call, and reset at each epoch's end (before the actions,
            so a checkpoint saved at an epoch's end holds the next epoch's empty sums).
        total_steps: Where training ends.
        steps_per_epoch: Steps of one epoch; no call runs past an epoch's end.
        steps_per_loop: The most steps of one call (fewer host round trips).
        actions: Called in order after every call.
    """

    def __init__(self, train_loop: Callable[[Any, tf.Tensor], tf.Tensor], iterator: Iterator, step: tf.Variable,
                 train_metrics: Mapping[str, keras.metrics.Metric], total_steps: int, steps_per_epoch: int,
                 steps_per_loop: int, actions: Sequence[Action] = ()):
        self.train_loop, self.iterator, self.step = train_loop, iterator, step
        self.train_metrics, self.total_steps, self.steps_per_epoch = train_metrics, total_steps, steps_per_epoch
        self.steps_per_loop, self.actions = steps_per_loop, list(actions)
        self.intervals = [steps_per_epoch] + [a.interval for a in self.actions if a.interval]

    def steps_in_next_call(self, step: int) -> int:
        """Up to ``steps_per_loop``, never past an epoch's end, an action's interval or the end."""
        return min(self.steps_per_loop, self.total_steps - step, *(i - step % i for i in self.intervals))

    def run(self) -> LoopState:
        """Trains to ``total_steps`` (or until an action stops it); returns the last state."""
        start = int(self.step.numpy())
        state = LoopState(start, start, self.total_steps, self.steps_per_epoch, time.perf_counter())
        try:
            for action in self.actions:
                action.start(state)
            while state.stop is None and state.step < self.total_steps:
                n = self.steps_in_next_call(state.step)
                tic = time.perf_counter()
                state.losses = self.train_loop(self.iterator, tf.constant(n, tf.int32)).numpy()
                state.seconds = time.perf_counter() - tic
                state.step += n
                self.step.assign(state.step)
                state.train = {name: float(m.result()) for name, m in self.train_metrics.items()}
                state.results = dict(state.train) if state.epoch_end else {}
                if state.epoch_end:
                    for metric in self.train_metrics.values():
                        metric.reset_state()
                for action in self.actions:
                    action(state)
            for action in self.actions:
                action.end(state)
        finally:
            for action in self.actions:
                action.close()
        return state
