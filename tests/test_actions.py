"""Loop actions: KeepBest keeps the weights of the best evaluation, by accuracy or by loss."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresnet.engine import actions, checkpoints
from tfresnet.engine.actions import LoopState


def _model():
    # Checkpoints are keyed by variable path: the same name, as a restarted run would have.
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")], name="net")


def _evaluate(keeper, model, step, epoch_steps, results):
    """One epoch's end: the weights become the step number, then the action sees the results."""
    model.set_weights([np.full_like(w, step) for w in model.get_weights()])
    keeper(LoopState(step=step, start_step=0, total_steps=100, steps_per_epoch=epoch_steps, started=0.0,
                     results=results))


@pytest.mark.parametrize("by, evaluations, kept", [
    ("accuracy", [0.90, 0.95, 0.93, 0.95], 20),  # the highest; a tie keeps the earlier
    ("loss", [0.40, 0.30, 0.35, 0.20], 40),  # the lowest, though accuracy says otherwise below
])
def test_keep_best_keeps_the_weights_of_the_best_evaluation_and_resumes_its_record(tmp_path, by, evaluations, kept):
    model, step, logged = _model(), tf.Variable(0, dtype=tf.int64), []
    keeper = actions.KeepBest(model, step, str(tmp_path), logged.append, by=by)
    keeper.start(None)
    for epoch, value in enumerate(evaluations, 1):
        step.assign(10 * epoch)
        # A loss run's accuracy falls while its loss falls too: only the loss decides.
        results = {"test_accuracy": value, "test_loss": 1 - value} if by == "accuracy" else \
            {"test_loss": value, "test_accuracy": 1 - epoch / 10}
        _evaluate(keeper, model, 10 * epoch, 10, results)
    record = json.loads((tmp_path / "best" / "best.json").read_text())
    assert record["step"] == kept and record[f"test_{by}"] == pytest.approx(evaluations[kept // 10 - 1])
    assert logged[-1].startswith(f"New best test_{by} ")
    restored = _model()
    assert checkpoints.restore_weights(restored, str(tmp_path), lambda line: None, best=True) == kept
    np.testing.assert_array_equal(restored.get_weights()[0], np.full((2, 1), kept, np.float32))
    # A resumed run compares with the record: no better evaluation, nothing kept.
    again = actions.KeepBest(model, step, str(tmp_path), logged.append, by=by)
    again.start(None)
    worse = evaluations[kept // 10 - 1] + (-0.01 if by == "accuracy" else 0.01)
    _evaluate(again, model, 50, 10, {f"test_{by}": worse})
    assert json.loads((tmp_path / "best" / "best.json").read_text())["step"] == kept
    # Resuming with the other measure would compare unlike numbers: an error, not a silent restart.
    other = "loss" if by == "accuracy" else "accuracy"
    with pytest.raises(ValueError, match=f"ranks by another measure than test_{other}: resume with the keep_best_by"):
        actions.KeepBest(model, step, str(tmp_path), by=other).start(None)


def test_keep_best_by_is_checked():
    with pytest.raises(ValueError, match="keep_best_by: unknown value 'f1'; expected one of accuracy, loss"):
        actions.KeepBest(_model(), tf.Variable(0, dtype=tf.int64), "/tmp/unused", by="f1")
