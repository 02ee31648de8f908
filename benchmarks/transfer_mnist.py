"""Transfer on real data, offline: pretrain on MNIST digits 0-4, fine-tune on 10 images of each of 5-9.

The question a fine-tuning user asks, answered on data every machine here has: do pretrained
features beat training from scratch when labelled data is scarce? Three steps, all through the
package's own training engine (``tfresnet.training``):

1. Pretrain ``mnist_resnet`` on digits 0-4 (``classes=0..4``) and export ``model.keras``.
2. For each seed, draw ``--shots`` training images of each of digits 5-9 (``classes=5..9``,
   ``examples_per_class``; the seed picks the images), and train twice on those same images:
   fine-tuned from step 1 (``pretrained=model.keras``: a fresh 5-class head) and from scratch.
3. Evaluate both on the whole 5-9 test split (4,861 images) and print the accuracies.

    python benchmarks/transfer_mnist.py --data_dir ../shared/data --seeds 0,1,2,3,4

Exits 1 unless fine-tuning beats scratch by ``--margin`` on average (the claim, checked).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tfresnet import training  # noqa: E402
from tfresnet.config import TrainConfig  # noqa: E402

PRETRAIN, TRANSFER = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def quiet(line: str) -> None:
    """The runs' own epoch lines would drown the table."""


def pretrain(args, model_dir: str) -> str:
    """Trains mnist_resnet on digits 0-4; returns the exported model.keras."""
    cfg = TrainConfig(model="mnist_resnet", dataset="mnist", data_dir=args.data_dir, classes=PRETRAIN,
                      examples_per_class=args.pretrain_examples_per_class, epochs=args.pretrain_epochs,
                      batch_size=64, optimizer="adam", learning_rate=1e-3, mode="train", model_dir=model_dir)
    training.train(cfg, log=quiet)
    return os.path.join(model_dir, "model.keras")


def few_shot_accuracy(args, seed: int, model_dir: str, pretrained: str | None) -> float:
    """Trains on ``shots`` images of each of digits 5-9 (drawn by ``seed``); test accuracy on all of 5-9."""
    cfg = TrainConfig(model="mnist_resnet", dataset="mnist", data_dir=args.data_dir, classes=TRANSFER,
                      examples_per_class=args.shots, eval_split=args.eval_split, seed=seed, pretrained=pretrained,
                      epochs=args.epochs, batch_size=args.shots, optimizer="adam", learning_rate=args.learning_rate,
                      backbone_lr_scale=args.backbone_lr_scale if pretrained else 1.0,
                      freeze_backbone_epochs=args.freeze_backbone_epochs if pretrained else 0, mode="train", export=False,
                      model_dir=model_dir)
    training.train(cfg, log=quiet)
    return training.evaluate(cfg.replace(mode="eval"), log=quiet)["accuracy"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=None, help="folder with mnist.npz (default: the usual lookup)")
    parser.add_argument("--pretrain_examples_per_class", type=int, default=None, help="default: all (~6,000)")
    parser.add_argument("--pretrain_epochs", type=int, default=2)
    parser.add_argument("--shots", type=int, default=10, help="training images of each of digits 5-9")
    parser.add_argument("--epochs", type=int, default=10, help="epochs over those 5 x shots images")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--backbone_lr_scale", type=float, default=1.0, help="fine-tuning: the backbone's share")
    parser.add_argument("--freeze_backbone_epochs", type=int, default=0, help="fine-tuning: head alone first")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--eval_split", default="test")
    parser.add_argument("--margin", type=float, default=0.05, help="fine-tuning must beat scratch by this")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    work = tempfile.mkdtemp(prefix="transfer_mnist_")
    start = time.perf_counter()
    source = pretrain(args, os.path.join(work, "digits04"))
    print(f"pretrained mnist_resnet on digits 0-4 ({args.pretrain_examples_per_class or 'all'} per class, "
          f"{args.pretrain_epochs} epochs) in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{'seed':>4}  {'fine-tuned':>10}  {'scratch':>8}   ({args.shots} images of each of 5-9; "
          f"test accuracy on {args.eval_split} digits 5-9)", flush=True)
    rows = []
    for seed in seeds:
        tuned = few_shot_accuracy(args, seed, os.path.join(work, f"tuned{seed}"), source)
        scratch = few_shot_accuracy(args, seed, os.path.join(work, f"scratch{seed}"), None)
        rows.append({"seed": seed, "fine_tuned": tuned, "scratch": scratch})
        print(f"{seed:>4}  {tuned:>10.2%}  {scratch:>8.2%}", flush=True)
    tuned = statistics.mean(r["fine_tuned"] for r in rows)
    scratch = statistics.mean(r["scratch"] for r in rows)
    print(f"mean  {tuned:>10.2%}  {scratch:>8.2%}   fine-tuning {tuned - scratch:+.2%} "
          f"({time.perf_counter() - start:.0f} s in all)")
    result = {"args": vars(args), "runs": rows, "fine_tuned": tuned, "scratch": scratch}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if tuned - scratch < args.margin:
        sys.exit(f"fine-tuning beat scratch by {tuned - scratch:+.2%}, less than the margin {args.margin:.0%}")
    return result


if __name__ == "__main__":
    main()
