"""The controller: runs a trainer in calls of ``steps_per_loop`` steps, then its actions.

After Orbit's ``Controller``: ``Controller(trainer, step=..., total_steps=..., ...).run()`` calls
``trainer.train(n)``, reads the trainer's metrics, and hands a ``LoopState`` to each action in
order (``tfresnet.engine.actions``: non-finite guard, TensorBoard, evaluation, the epoch line,
``metrics.jsonl``, target accuracy, checkpoints, preemption, export). An action can stop the loop
by setting ``state.stop``. What differs between tasks is in the trainer (its train loop, batches
and metrics) and the actions' arguments, never here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfresnet.engine.actions import Action, LoopState


@dataclasses.dataclass
class Trainer:
    """What the controller trains: a train loop over batches, and the metrics it updates.

    Attributes:
        train_loop: ``train_loop(iterator, n) -> losses of n steps`` (``steps.make_train_loop``).
        iterator: The training batches, positioned at the current step.
        metrics: The training metrics the train loop updates.
    """

    train_loop: Callable[[Any, tf.Tensor], tf.Tensor]
    iterator: Iterator
    metrics: Mapping[str, keras.metrics.Metric]

    def train(self, num_steps: int) -> np.ndarray:
        """Runs ``num_steps`` steps; returns their losses."""
        return self.train_loop(self.iterator, tf.constant(num_steps, tf.int32)).numpy()

    def results(self) -> dict[str, float]:
        """The metrics so far (running over the epoch)."""
        return {name: float(m.result()) for name, m in self.metrics.items()}

    def reset(self) -> None:
        """Starts the metrics over (at an epoch's end)."""
        for metric in self.metrics.values():
            metric.reset_state()


class Controller:
    """Drives a trainer from the step in ``step`` to ``total_steps``.

    Args:
        trainer: The train loop, its batches and its metrics (``Trainer``). Its metrics are read
            after every call and reset at each epoch's end (before the actions, so a checkpoint
            saved at an epoch's end holds the next epoch's empty sums).
        step: The checkpointed step variable; the controller advances it.
        total_steps: Where training ends.
        steps_per_epoch: Steps of one epoch; no call runs past an epoch's end.
        steps_per_loop: The most steps of one call (fewer host round trips).
        actions: Called in order after every call (``tfresnet.engine.actions``).
    """

    def __init__(self, trainer: Trainer, *, step: tf.Variable, total_steps: int, steps_per_epoch: int,
                 steps_per_loop: int, actions: Sequence[Action] = ()):
        self.trainer, self.step = trainer, step
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
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
                state.losses = self.trainer.train(n)
                state.seconds = time.perf_counter() - tic
                state.step += n
                self.step.assign(state.step)
                state.train = self.trainer.results()
                state.results = dict(state.train) if state.epoch_end else {}
                if state.epoch_end:
                    self.trainer.reset()
                for action in self.actions:
                    action(state)
            for action in self.actions:
                action.end(state)
        finally:
            for action in self.actions:
                action.close()
        return state
