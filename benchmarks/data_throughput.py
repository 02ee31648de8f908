"""Input pipelines against the model that consumes them, in one process.

Times the MNIST ``.npz`` training pipeline and the synthetic source (images/s delivered), then
``mnist_resnet`` training on the synthetic batch with tfresnet's loop (images/s consumed), and
prints how many times faster the data arrives than the model can use it. The pipeline must not be
the bottleneck: the target is 10x.

    python benchmarks/data_throughput.py --data_dir ../shared/data --batch_size 128
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfresnet import data, models, steps  # noqa: E402
from train_throughput import data_rate  # noqa: E402 - same folder


def consumed(batch_size: int, steps_: int) -> float:
    model = models.create_model("mnist_resnet")
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    loop = steps.make_train_step(model, optimizer, steps.make_loss(), steps.make_metrics("train"), batch_size)
    it = iter(data.synthetic((28, 28, 1), 10, batch_size))
    loop(it, tf.constant(5)).numpy()
    tic = time.perf_counter()
    loop(it, tf.constant(steps_)).numpy()
    return steps_ * batch_size / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    model_rate = consumed(args.batch_size, args.steps)
    source = data.load_source("mnist", "train", args.data_dir)
    sources = {
        "mnist .npz (train pipeline)": data.make_dataset(source, args.batch_size, training=True, seed=0),
        "synthetic": data.synthetic((28, 28, 1), 10, args.batch_size),
    }
    print(f"{os.cpu_count()} CPUs, TF {tf.__version__}, batch {args.batch_size}")
    print(f"{'mnist_resnet training consumes':<34}{model_rate:>12.0f} images/s")
    for name, ds in sources.items():
        rate = data_rate(ds, args.batch_size, args.batches)
        print(f"{name:<34}{rate:>12.0f} images/s = {rate / model_rate:6.1f}x the model")


if __name__ == "__main__":
    main()
