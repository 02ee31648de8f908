"""Kills, preemption, corrupt checkpoints and bad input, with real processes and the real CLI."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import MNIST_NPZ, REPO, launch_workers, shared_run, train_in_process
from tfresnet import training
from tfresnet.cli import main as cli_main
from tfresnet.config import TrainConfig

# 60 steps of 32 real MNIST images, a checkpoint every 4, bitwise-repeatable ops.
RUN = ["--dataset=mnist", f"--data_dir={MNIST_NPZ.parent}", "--train_split=train[:640]", "--batch_size=32",
       "--epochs=3", "--steps_per_loop=1", "--checkpoint_every=4", "--deterministic", "--mode=train", "--noexport",
       "--seed=3"]
# The few-shot task on the same engine: 60 steps of one synthetic 5-way 1-shot episode, XLA on (its CPU default).
FEWSHOT = ["--task=fewshot", "--dataset=synthetic", "--model_options=widths=[4,4,4]", "--time_shift=0.02", "--epochs=3",
           "--episodes_per_epoch=20", "--steps_per_loop=1", "--checkpoint_every=4", "--deterministic", "--mode=train",
           "--noexport", "--seed=3", "--learning_rate=0.01",
           "--speed=0.05", "--spec_augment"]  # seeded augmentation (shift, speed, masks): resume must replay it


def start(model_dir, *extra, run=RUN):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tfresnet.train", *run, f"--model_dir={model_dir}", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for_checkpoint(model_dir, proc, timeout=120):
    state = model_dir / "checkpoints" / "checkpoint"
    deadline = time.time() + timeout
    while not state.exists():
        assert proc.poll() is None, finish(proc)
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def final_state(model_dir):
    reader = tf.train.load_checkpoint(str(model_dir / "checkpoints"))
    # Everything but bookkeeping: the object graph and how many saves happened on the way.
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if n != "_CHECKPOINTABLE_OBJECT_GRAPH" and not n.startswith("save_counter"))
    return {n: reader.get_tensor(n) for n in names}


def metrics_log(model_dir):
    with open(model_dir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def uninterrupted_folder(tmp_path_factory, name, run):
    """The folder of the uninterrupted run of ``run``, made once per test session (``shared_run``)
    and in this process, without a cold TensorFlow start: it is bitwise what a fresh
    ``python -m tfresnet.train`` computes, which every test here asserts by comparing a run started
    as a real process with it."""
    return shared_run(tmp_path_factory, name, lambda folder: train_in_process(*run, f"--model_dir={folder}"))


def uninterrupted(tmp_path_factory, name, run):
    """``(final checkpoint state, metrics log)`` of ``uninterrupted_folder``."""
    model_dir = uninterrupted_folder(tmp_path_factory, name, run)
    return final_state(model_dir), metrics_log(model_dir)


@pytest.fixture
def reference(tmp_path_factory):
    """The uninterrupted image run every interrupted one must match (SIGKILL, SIGTERM, a crash mid-save)."""
    return uninterrupted(tmp_path_factory, "mnist_reference", RUN)


def restart(model_dir, capsys, run=RUN):
    """Resumes the interrupted run to the end, in this process: the kill is what needs a real process.

    Returns:
        What the restart printed.
    """
    capsys.readouterr()
    train_in_process(*run, f"--model_dir={model_dir}")
    return capsys.readouterr().out


def assert_same_as_reference(model_dir, reference, trained=0.8):
    state, log = final_state(model_dir), metrics_log(model_dir)
    ref_state, ref_log = reference
    assert int(state["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 60
    assert state.keys() == ref_state.keys()
    for name, value in ref_state.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)  # bitwise
    assert [r["step"] for r in log] == [20, 40, 60]  # no gap, no duplicate
    assert log == ref_log
    assert log[-1]["accuracy"] > trained  # it really trained


def kill_at_a_random_step_and_restart(model_dir, capsys, run=RUN):
    proc = start(model_dir, run=run)
    wait_for_checkpoint(model_dir, proc)
    time.sleep(random.Random().uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    saved = tf.train.load_checkpoint(str(model_dir / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert 4 <= saved <= 60
    out = restart(model_dir, capsys, run)
    if saved < 60:
        assert f"(step {saved})" in out


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_sigkill_at_a_random_step_then_restart_is_exact(tmp_path, reference, capsys):
    kill_at_a_random_step_and_restart(tmp_path / "killed", capsys)
    assert_same_as_reference(tmp_path / "killed", reference)


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_resume_continues_from_the_saved_step(tmp_path_factory, tmp_path, reference, capsys):
    """Resume without a kill, in this process: the reference's own folder, rewound to the oldest
    checkpoint it keeps (step 52 of 60), is trained again to the end. It says so, restores that step
    (not step 0), keeps the newest checkpoints and ends with the reference's weights, bit for bit:
    the data order is derived from the step. (Shares the reference with the kill tests here.)"""
    model_dir = tmp_path / "rewound"
    shutil.copytree(uninterrupted_folder(tmp_path_factory, "mnist_reference", RUN), model_dir)
    folder = model_dir / "checkpoints"
    state = tf.train.get_checkpoint_state(str(folder))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-52", "ckpt-56", "ckpt-60"]
    for stale in [*folder.glob("ckpt-56.*"), *folder.glob("ckpt-60.*")]:
        stale.unlink()
    # The state a run stopped right after saving step 52 leaves (the manager's timestamps included).
    (folder / "checkpoint").write_text(
        f'model_checkpoint_path: "ckpt-52"\nall_model_checkpoint_paths: "ckpt-52"\n'
        f"all_model_checkpoint_timestamps: {state.all_model_checkpoint_timestamps[0]}\n"
        f"last_preserved_timestamp: {state.last_preserved_timestamp}\n")
    log = metrics_log(model_dir)
    (model_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log if r["step"] <= 52))
    out = restart(model_dir, capsys)
    assert "Restored" in out and "(step 52)" in out
    kept = tf.train.get_checkpoint_state(str(folder)).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in kept] == ["ckpt-52", "ckpt-56", "ckpt-60"]
    assert_same_as_reference(model_dir, reference)


@pytest.mark.slow
def test_fewshot_sigkill_at_a_random_step_then_restart_is_exact(tmp_path, tmp_path_factory, capsys):
    """The few-shot task resumes bitwise too: the episode stream restarts at the step, the metrics with it."""
    reference = uninterrupted(tmp_path_factory, "fewshot_reference", FEWSHOT)
    kill_at_a_random_step_and_restart(tmp_path / "killed", capsys, FEWSHOT)
    assert_same_as_reference(tmp_path / "killed", reference, trained=0.3)  # chance: 0.2; measured 0.464


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_sigterm_checkpoints_exits_preempted_and_resumes(tmp_path, reference, capsys):
    model_dir = tmp_path / "preempted"
    proc = start(model_dir)
    wait_for_checkpoint(model_dir, proc)
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=60)
    if code == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert code == training.Preempted.exit_code, err
    assert "preempted (SIGTERM) at step" in err and err.count("\n") == 1
    step = int(err.split("at step ")[1].split(";")[0])
    saved = tf.train.load_checkpoint(str(model_dir / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert saved == step  # the step it stopped at, not only the last periodic checkpoint
    assert f"(step {step})" in restart(model_dir, capsys)
    assert_same_as_reference(model_dir, reference)


# Runs the CLI with SIGKILL wired to a point inside CheckpointManager.save() of the Nth checkpoint:
#   torn_write     - the shard in <prefix>_temp/ is half written (truncated), before the merge
#                    renames it into place;
#   before_pointer - ckpt-N is complete on disk but the `checkpoint` state file does not name it;
#   during_sweep   - the pointer names ckpt-N and the oldest checkpoint is being deleted.
KILL_IN_SAVE = """
import glob, os, signal, sys
from tensorflow.python.ops import gen_io_ops
from tensorflow.python.checkpoint import checkpoint_management as cm

point, nth = sys.argv.pop(1), int(sys.argv.pop(1))
saves = 0
merge, update, delete = gen_io_ops.merge_v2_checkpoints, cm.update_checkpoint_state_internal, cm._delete_file_if_exists

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def merging(checkpoint_prefixes, destination_prefix, **kw):
    global saves
    saves += 1
    if point == "torn_write" and saves == nth:
        for shard in glob.glob(destination_prefix.numpy().decode() + "_temp/*.data-*"):
            with open(shard, "r+b") as f:
                f.truncate(os.path.getsize(shard) // 2)
        die()
    return merge(checkpoint_prefixes, destination_prefix, **kw)

def updating(*args, **kw):
    if point == "before_pointer" and saves == nth:
        die()
    return update(*args, **kw)

def deleting(path):
    if point == "during_sweep" and saves == nth:
        die()
    return delete(path)

gen_io_ops.merge_v2_checkpoints, cm.update_checkpoint_state_internal, cm._delete_file_if_exists = merging, updating, deleting
from tfresnet import train
train.run()
"""


@pytest.mark.needs_mnist
@pytest.mark.parametrize("point", ["torn_write", "before_pointer", "during_sweep"])
@pytest.mark.slow
def test_crash_while_writing_a_checkpoint_keeps_the_latest_pointer_on_a_complete_one(point, tmp_path, reference,
                                                                                       capsys):
    model_dir, nth = tmp_path / point, 5  # ckpt-20; 3 are kept, so the 5th save also deletes ckpt-8
    script = tmp_path / "kill_in_save.py"
    script.write_text(KILL_IN_SAVE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(script), point, str(nth), *RUN, f"--model_dir={model_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpts = model_dir / "checkpoints"
    names = set(os.listdir(ckpts))
    latest = tf.train.latest_checkpoint(str(ckpts))
    state = tf.train.get_checkpoint_state(str(ckpts))
    if point == "torn_write":
        assert "ckpt-20_temp" in names and "ckpt-20.index" not in names  # really killed mid-save
    if point == "during_sweep":
        assert latest.endswith("ckpt-20")
    else:
        assert latest.endswith("ckpt-16")  # the previous, complete checkpoint
    # Every checkpoint the state file names is complete and readable: none was deleted early.
    listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
    assert listed == (["ckpt-8", "ckpt-12", "ckpt-16", "ckpt-20"] if point == "during_sweep"
                      else ["ckpt-8", "ckpt-12", "ckpt-16"])
    for path in state.all_model_checkpoint_paths:
        tf.train.load_checkpoint(path).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    if point != "torn_write":
        # The run restores the pointer's checkpoint, with no fallback needed; the torn write (the
        # worst case) below also runs the restart to the end, bitwise equal to the reference.
        lines = []
        cfg = TrainConfig(dataset="mnist", data_dir=str(MNIST_NPZ.parent), train_split="train[:640]", batch_size=32,
                          epochs=3, checkpoint_every=4, mode="train", seed=3, model_dir=str(model_dir))
        assert training.Run(cfg, log=lines.append).restore() == int(latest.rsplit("-", 1)[1])
        assert lines == [f"Restored {latest} (step {latest.rsplit('-', 1)[1]})"]
        return
    out = restart(model_dir, capsys)
    assert f"Restored {latest} (step {latest.rsplit('-', 1)[1]})" in out and "WARNING" not in out
    assert not [n for n in os.listdir(ckpts) if n.endswith("_temp")]  # the torn shard was overwritten
    assert_same_as_reference(model_dir, reference)


def _corrupt(path):
    with open(path, "r+b") as f:
        f.truncate(max(1, os.path.getsize(path) // 3))


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    cfg = TrainConfig(dataset="mnist", data_dir=str(MNIST_NPZ.parent), train_split="train[:320]", batch_size=32,
                      train_steps=8, steps_per_loop=4, checkpoint_every=4, mode="train", export=False,
                      model_dir=str(tmp_path))
    training.train(cfg)
    _corrupt(tmp_path / "checkpoints" / "ckpt-8.data-00000-of-00001")
    run = training.Run(cfg.replace(train_steps=12))
    assert run.restore() == 4
    assert "WARNING: checkpoint" in capsys.readouterr().out
    run.train()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-12")
    # Everything unreadable: an error, not a silent restart from step 0 over the old checkpoints.
    for name in os.listdir(tmp_path / "checkpoints"):
        if ".data-" in name:
            _corrupt(tmp_path / "checkpoints" / name)
    with pytest.raises(training.TrainingError, match="no readable checkpoint"):
        training.train(cfg.replace(train_steps=16))


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


@pytest.mark.needs_mnist
def test_unwritable_model_dir_is_a_clear_error(tmp_path, capsys):
    assert cli_main(["tfresnet-train", *RUN[:4], "--train_steps=2", "--model_dir=/proc/tfresnet_run"]) != 0
    err = capsys.readouterr().err
    assert "model_dir /proc/tfresnet_run is not writable" in err and err.count("\n") == 1, err
    afile = tmp_path / "file"
    afile.write_text("x")
    assert cli_main(["tfresnet-train", *RUN[:4], "--train_steps=2", f"--model_dir={afile}/run"]) != 0
    err = capsys.readouterr().err
    assert "is not writable" in err and "is a file" in err


@pytest.mark.needs_mnist
def test_batch_not_divisible_by_replicas(tmp_path):
    cfg = TrainConfig(dataset="mnist", data_dir=str(MNIST_NPZ.parent), train_split="train[:320]", batch_size=33,
                      strategy="mirrored", model_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="batch_size 33 is not divisible by the 2 replicas"):
        training.Run(cfg)
    assert not (tmp_path / "run").exists()


def error_line(stderr, prefix="tfresnet-train: error: "):
    """The CLI's one error line among TensorFlow's own log lines (workers' stderr has both)."""
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_killing_one_worker_ends_the_other_clearly_and_both_resume(tmp_path):
    mw = tmp_path / "mw"
    args = ["--train_split=train[:3200]", "--steps_per_loop=5", "--checkpoint_every=10", "--noexport"]
    chief, worker = launch_workers([mw, mw], *args, "--epochs=20")
    wait_for_checkpoint(mw, chief)
    worker.kill()
    tic = time.time()
    code, _, err = finish(chief, timeout=120)  # bounded: no hang
    assert time.time() - tic < 120 and code != 0
    line = error_line(err)
    assert "lost contact with another worker (" in line and line.endswith(
        f"); restart every worker with the same command to resume from the newest checkpoint in {mw / 'checkpoints'}")
    saved = tf.train.load_checkpoint(str(mw / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    finish(worker)
    # A worker killed mid-save holds one checkpoint fewer than the chief, or none: resuming must
    # not depend on its own copy. Make that lag certain instead of a matter of timing.
    shutil.rmtree(mw / ".worker1")
    # Restart both for ten steps more than the checkpoint holds: they resume, not start over.
    results = [finish(p) for p in launch_workers([mw, mw], *args, f"--train_steps={saved + 10}")]
    assert [r[0] for r in results] == [0, 0], [r[2][-500:] for r in results]
    assert f"(step {saved})" in results[0][1] and f"(step {saved})" in results[1][1]
    final = tf.train.load_checkpoint(str(mw / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert final == saved + 10


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_two_workers_train_as_one_and_a_sigterm_to_one_saves_both_at_one_step_and_resumes_exactly(tmp_path):
    """MultiWorkerMirroredStrategy with synchronised BatchNorm; preemption of worker 1 only; a restart
    where the workers would resume from different steps."""
    # 30 steps of 32 images, one step per call, a checkpoint each epoch: SIGTERM lands mid-run.
    args = ["--train_split=train[:320]", "--epochs=3", "--steps_per_loop=1", "--deterministic", "--seed=3"]
    ref = tmp_path / "reference"
    reference = [finish(p) for p in launch_workers([ref] * 2, *args, sync_batchnorm=True)]
    assert [r[0] for r in reference] == [0, 0], [r[2][-1000:] for r in reference]
    # The two workers trained one model: every weight and BatchNorm statistic equal; the chief exported it.
    chief, other = (tf.train.load_checkpoint(str(ref / d)) for d in ("checkpoints", ".worker1"))
    names = [n for n in chief.get_variable_to_shape_map() if n.startswith("model/") and "OPTIMIZER" not in n]
    assert len(names) > 20 and chief.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 30
    for name in names:
        np.testing.assert_array_equal(chief.get_tensor(name), other.get_tensor(name), err_msg=name)
    assert (ref / "model.keras").exists() and not (ref / ".worker1" / "model.keras").exists()

    mw = tmp_path / "mw"
    chief, worker = launch_workers([mw, mw], *args, "--noexport", sync_batchnorm=True)
    wait_for_checkpoint(mw, chief)
    worker.send_signal(signal.SIGTERM)
    results = [finish(chief), finish(worker)]
    if [r[0] for r in results] == [0, 0]:
        pytest.skip("the run finished before SIGTERM arrived")
    assert [r[0] for r in results] == [training.Preempted.exit_code] * 2, [r[2][-1000:] for r in results]
    stopped = {int(error_line(r[2], "tfresnet-train: preempted (SIGTERM) at step ").split("at step ")[1].split(";")[0])
               for r in results}
    assert len(stopped) == 1  # the same step on both
    step = stopped.pop()
    for folder in (mw / "checkpoints", mw / ".worker1"):  # both saved it
        assert tf.train.load_checkpoint(str(folder)).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == step
    restarted = [finish(p) for p in launch_workers([mw, mw], *args, "--noexport", sync_batchnorm=True)]
    assert [r[0] for r in restarted] == [0, 0], [r[2][-1000:] for r in restarted]
    assert f"(step {step})" in restarted[0][1] and f"(step {step})" in restarted[1][1]
    ref_state, state = final_state(ref), final_state(mw)
    assert int(state["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 30 and state.keys() == ref_state.keys()
    for name, value in ref_state.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)  # bitwise
    assert [r["step"] for r in metrics_log(mw)] == [10, 20, 30] and metrics_log(mw) == metrics_log(ref)

    # Worker 1 does not see the chief's model_dir (a local path on another machine): it would start
    # from step 0 while the chief resumes at 30, and their collectives would not match.
    elsewhere = tmp_path / "elsewhere"
    results = [finish(p, timeout=120) for p in launch_workers([mw, elsewhere], *args, "--epochs=4", "--noexport",
                                                              sync_batchnorm=True)]
    for (code, _, err), model_dir in zip(results, [mw, elsewhere]):
        assert code != 0 and "Traceback" not in err, err[-2000:]
        last = error_line(err)
        assert "found different checkpoints to resume from (steps: worker 0: 30, worker 1: 0)" in last, err[-2000:]
        assert f"the chief's checkpoints in {model_dir / 'checkpoints'}" in last
