"""TrainConfig's one rule for options that the chosen task, optimizer or schedule does not read."""

import pytest

from tfresnet import tasks
from tfresnet.config import BUILT_IN, OPTION_SCOPES, TrainConfig
from tfresnet.engine import optim


def test_the_rule_knows_every_built_in_name_and_every_option_it_names_exists():
    assert set(BUILT_IN["task"]) == set(tasks.TASKS.names())
    assert set(BUILT_IN["optimizer"]) == set(optim.OPTIMIZERS.names())
    assert set(BUILT_IN["lr_schedule"]) == set(optim.SCHEDULES.names())
    fields = set(TrainConfig.__dataclass_fields__)
    for options, field, choices in OPTION_SCOPES:
        assert set(options) <= fields and field in fields
        assert choices is None or set(choices) <= set(BUILT_IN[field])


@pytest.mark.parametrize("changes, message", [
    (dict(momentum=0.5), "optimizer adam does not take momentum (options of optimizer sgd)"),
    (dict(optimizer="adamw", nesterov=True), "optimizer adamw does not take nesterov"),
    (dict(lr_decay=0.5), "lr_schedule constant does not take lr_decay (options of lr_schedule piecewise)"),
    (dict(task="fewshot", label_smoothing=0.1, ema=0.99), "task fewshot does not take ema, label_smoothing"),
    (dict(k_shot=5), "task classify does not take k_shot (options of task fewshot)"),
    (dict(randaugment_magnitude=5), "randaugment_magnitude has no effect without randaugment_ops"),
])
def test_an_option_the_choice_does_not_read_is_refused(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace(")", "\\)")):
        TrainConfig(**changes)


def test_what_the_choice_reads_or_a_user_registered_name_passes():
    TrainConfig(optimizer="sgd", momentum=0.5, nesterov=True)
    TrainConfig(lr_schedule="piecewise", lr_boundaries=(10,), lr_decay=0.5, warmup_steps=5)
    TrainConfig(task="fewshot", k_shot=5, time_shift=0.2)
    TrainConfig(randaugment_ops=2, randaugment_magnitude=5, ema=0.99, ema_warmup=True)
    TrainConfig(optimizer="my_lamb", momentum=0.5)  # a user's optimizer may read any option
    # The defaults of one task never count against the other.
    TrainConfig(task="fewshot")
    TrainConfig(task="classify")


def test_every_option_has_one_help_text_and_one_section():
    import dataclasses  # noqa: PLC0415

    from tfresnet.config import SECTIONS  # noqa: PLC0415

    fields = [f for f in dataclasses.fields(TrainConfig)]
    assert all(len(f.metadata["help"]) > 10 for f in fields), [f.name for f in fields if not f.metadata["help"]]
    placed = [name for names in SECTIONS.values() for name in names]
    assert sorted(placed) == sorted(f.name for f in fields)  # each exactly once
