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

from conftest import MNIST_NPZ, REPO, launch_workers
from tfresnet import training
from tfresnet.config import TrainConfig

# 60 steps of 32 real MNIST images, a checkpoint every 4, bitwise-repeatable ops.
RUN = ["--dataset=mnist", f"--data_dir={MNIST_NPZ.parent}", "--train_split=train[:640]", "--batch_size=32",
       "--epochs=3", "--steps_per_loop=1", "--checkpoint_every=4", "--deterministic", "--mode=train", "--noexport",
       "--seed=3"]


def start(model_dir, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tfresnet.train", *RUN, f"--model_dir={model_dir}", *extra],
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


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must match."""
    model_dir = tmp_path_factory.mktemp("reference")
    code, _, err = finish(start(model_dir))
    assert code == 0, err
    return final_state(model_dir), metrics_log(model_dir)


def assert_same_as_reference(model_dir, reference):
    state, log = final_state(model_dir), metrics_log(model_dir)
    ref_state, ref_log = reference
    assert int(state["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 60
    assert state.keys() == ref_state.keys()
    for name, value in ref_state.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)  # bitwise
    assert [r["step"] for r in log] == [20, 40, 60]  # no gap, no duplicate
    assert log == ref_log
    assert log[-1]["accuracy"] > 0.8  # it really trained


def test_sigkill_at_a_random_step_then_restart_is_exact(tmp_path, reference):
    model_dir = tmp_path / "killed"
    proc = start(model_dir)
    wait_for_checkpoint(model_dir, proc)
    time.sleep(random.Random().uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    saved = tf.train.load_checkpoint(str(model_dir / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")
    assert 4 <= saved <= 60
    code, out, err = finish(start(model_dir))
    assert code == 0, err
    if saved < 60:
        assert f"(step {saved})" in out
    assert_same_as_reference(model_dir, reference)


def test_sigterm_checkpoints_exits_preempted_and_resumes(tmp_path, reference):
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
    code, _, err = finish(start(model_dir))
    assert code == 0, err
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


@pytest.mark.parametrize("point", ["torn_write", "before_pointer", "during_sweep"])
def test_crash_while_writing_a_checkpoint_keeps_the_latest_pointer_on_a_complete_one(point, tmp_path, reference):
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
    code, out, err = finish(start(model_dir))
    assert code == 0, err
    assert f"Restored {latest} (step {latest.rsplit('-', 1)[1]})" in out and "WARNING" not in out
    assert not [n for n in os.listdir(ckpts) if n.endswith("_temp")]  # the torn shard was overwritten
    assert_same_as_reference(model_dir, reference)


def _corrupt(path):
    with open(path, "r+b") as f:
        f.truncate(max(1, os.path.getsize(path) // 3))


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


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfresnet.train", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


def test_bad_input_after_a_run_leaves_the_model_dir_as_it_was(tmp_path):
    model_dir = tmp_path / "run"
    ok = cli(*RUN[:4], "--train_steps=2", "--steps_per_loop=2", "--mode=train", "--noexport",
             f"--model_dir={model_dir}")
    assert ok.returncode == 0, ok.stderr
    before = snapshot(model_dir)
    bad_labels = tmp_path / "labels.npz"
    np.savez(bad_labels, x_train=np.zeros((8, 4, 4), np.uint8), y_train=np.arange(8) % 3,
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.array([0, 7]))
    no_keys = tmp_path / "keys.npz"
    np.savez(no_keys, images=np.zeros((2, 4, 4), np.uint8))
    cases = [
        (["--model=resnet20_cifar"], "holds a checkpoint of a different model (model: 'mnist_resnet' there"),
        (["--dataset=synthetic", "--image_size=32"], "holds a checkpoint of a different model (input_shape"),
        (["--dataset=npz", f"--data_dir={bad_labels}", "--eval_split=test"], "y_test: labels must be in [0, 3)"),
        (["--dataset=npz", f"--data_dir={no_keys}"], "lacks ['x_train', 'y_train']"),
        (["--learning_rate=-1"], "learning_rate must be positive, got -1"),
        (["--strategy=tpuu"], "strategy: unknown value 'tpuu'"),
    ]
    for extra, message in cases:
        proc = cli(*RUN[:4], "--train_steps=2", f"--model_dir={model_dir}", *extra)
        assert proc.returncode != 0 and message in proc.stderr, (extra, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert snapshot(model_dir) == before, extra


def test_unwritable_model_dir_is_a_clear_error(tmp_path):
    proc = cli(*RUN[:4], "--train_steps=2", "--model_dir=/proc/tfresnet_run")
    assert proc.returncode != 0 and "model_dir /proc/tfresnet_run is not writable" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1
    afile = tmp_path / "file"
    afile.write_text("x")
    proc = cli(*RUN[:4], "--train_steps=2", f"--model_dir={afile}/run")
    assert "is not writable" in proc.stderr and "is a file" in proc.stderr


def test_batch_not_divisible_by_replicas(tmp_path):
    cfg = TrainConfig(dataset="mnist", data_dir=str(MNIST_NPZ.parent), train_split="train[:320]", batch_size=33,
                      strategy="mirrored", model_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="batch_size 33 is not divisible by the 2 replicas"):
        training.Run(cfg)
    assert not (tmp_path / "run").exists()


def error_line(stderr):
    """The CLI's one error line among TensorFlow's own log lines (workers' stderr has both)."""
    lines = [line for line in stderr.splitlines() if line.startswith("tfresnet-train: error: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


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


def test_workers_that_restore_different_steps_stop_with_one_clear_line(tmp_path):
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    args = ["--train_split=train[:320]", "--steps_per_loop=5", "--noexport"]
    assert [finish(p)[0] for p in launch_workers([shared, shared], *args, "--epochs=1")] == [0, 0]
    # Worker 1 does not see the chief's model_dir (a local path on another machine): it would start
    # from step 0 while the chief resumes at 10, and their collectives would not match.
    results = [finish(p, timeout=120) for p in launch_workers([shared, elsewhere], *args, "--epochs=2")]
    for (code, _, err), model_dir in zip(results, [shared, elsewhere]):
        assert code != 0 and "Traceback" not in err, err[-2000:]
        last = error_line(err)
        assert "found different checkpoints to resume from (steps: worker 0: 10, worker 1: 0)" in last, err[-2000:]
        assert f"the chief's checkpoints in {model_dir / 'checkpoints'}" in last
