"""Time to a test accuracy: the wall clock of one real training run, compilation included.

Runs the package's command line (``python -m tfresnet.train``) on a flag file with
``--target_accuracy``, which stops training at the first epoch whose test accuracy reaches the
target, and times it from the outside: process start, every epoch line, the stop. The process
time includes importing TensorFlow, loading the data, building the model, tracing and (on GPU) XLA
compilation; the training time, printed by the trainer, starts after loading.

    python benchmarks/time_to_accuracy.py --flagfile flags/mnist_fast.cfg --target 0.994 \\
        --data_dir ../shared/data

Extra arguments after ``--`` go to the trainer unchanged (e.g. ``-- --precision=mixed_bfloat16``).
Exits 1 if the run ends without reaching the target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EPOCH = re.compile(r"^Epoch (\d+), .*Test Accuracy: ([\d.]+)")
REACHED = re.compile(r"^Reached target_accuracy .* at epoch (\d+) \(step (\d+)\), ([\d.]+) s after the start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flagfile", default="flags/mnist_fast.cfg")
    parser.add_argument("--target", type=float, default=0.994, help="test accuracy to reach, as a fraction")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--model_dir", default=None, help="default: a fresh temporary folder (never resume)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]

    model_dir = args.model_dir or tempfile.mkdtemp(prefix="time_to_accuracy_")
    command = [sys.executable, "-m", "tfresnet.train", f"--flagfile={args.flagfile}",
               f"--target_accuracy={args.target}", f"--model_dir={model_dir}", "--export=false", *extra]
    if args.data_dir:
        command.append(f"--data_dir={args.data_dir}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    print(f"{platform.node()} | {os.cpu_count()} CPUs | {' '.join(command[1:])}", flush=True)

    epochs, reached = [], None
    start = time.perf_counter()
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            now = time.perf_counter() - start
            if match := EPOCH.match(line):
                epochs.append({"epoch": int(match[1]), "test_accuracy": float(match[2]) / 100, "seconds": now})
                print(f"{now:8.1f} s  epoch {match[1]}: test accuracy {match[2]}%", flush=True)
            elif match := REACHED.match(line):
                reached = {"epoch": int(match[1]), "step": int(match[2]), "training_seconds": float(match[3]),
                           "process_seconds": now}
    if proc.returncode != 0:
        sys.exit(f"the trainer failed with exit status {proc.returncode}")
    if reached is None:
        best = max((e["test_accuracy"] for e in epochs), default=0.0)
        sys.exit(f"did not reach {args.target:.2%} in {len(epochs)} epochs (best {best:.2%})")
    print(f"reached {args.target:.2%} at epoch {reached['epoch']} (step {reached['step']}): "
          f"{reached['training_seconds']:.1f} s of training, {reached['process_seconds']:.1f} s from process start")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "target": args.target, "epochs": epochs, **reached}, f, indent=1)


if __name__ == "__main__":
    main()
