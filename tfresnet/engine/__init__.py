"""The training engine every task shares: where it runs, the steps, the controller and its actions.

``runtime`` (strategy, XLA, precision, seeds, workers), ``steps`` (losses, metrics, the train and
evaluation step factories), ``controller`` (``Controller`` and ``Trainer``), ``actions``
(``LoopState``, ``Action`` and every action: evaluation, logs, checkpoints, preemption, export),
``checkpoints`` (what a checkpoint holds, restore with fallback, ``run.json``), ``optim`` (the
optimizer and schedule tables), ``serving`` (the exported SavedModel).
"""
