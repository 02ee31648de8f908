"""Writes the run folders that ``tests/test_compat.py`` reads: tfresnet-train with a tiny registered ResNet.

Run with the checkout to be kept compatible with on ``PYTHONPATH`` (these were written by main at
83a0a43, before issue 29's restructuring), from the repository root::

    PYTHONPATH=<old checkout> python tests/data/old_runs/write.py classify
    PYTHONPATH=<old checkout> python tests/data/old_runs/write.py fewshot

then drop ``saved_model/`` and ``logs/`` (not read by the test; they would only add size).
"""

import sys

import tfresnet


def register() -> None:
    """The tiny model of the classify run (the test registers it the same way: its name is in
    run.json, its class in model.keras)."""
    tfresnet.register_model("compat_resnet", tfresnet.ResNet, input_shape=(28, 28, 1), num_classes=10,
                            block="basic", depths=(1, 1, 1), stem="cifar", base_width=8, overwrite=True)


COMMANDS = {
    "classify": ["--dataset=mnist", "--train_split=train[:512]", "--eval_split=test[:256]", "--model=compat_resnet",
                 "--batch_size=32", "--epochs=2", "--steps_per_loop=8", "--eval_batch_size=128",
                 "--keep_checkpoints=1", "--seed=1"],
    "fewshot": ["--task=fewshot", "--dataset=synthetic", "--model_options=widths=[4,4,4]", "--metric=cosine",
                "--epochs=2", "--episodes_per_epoch=8", "--steps_per_loop=8", "--eval_episodes=8",
                "--keep_checkpoints=1", "--seed=1"],
}

if __name__ == "__main__":
    from tfresnet import cli

    register()
    task = sys.argv[1]
    sys.exit(cli.main([sys.argv[0], *COMMANDS[task], f"--model_dir=tests/data/old_runs/{task}", *sys.argv[2:]]))
