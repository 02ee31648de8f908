"""An evaluation report a person can look at: ``tfresnet-eval --report=DIR``.

``ReportBuilder`` takes the evaluation batches one at a time (images, labels, logits), keeping only
what the report needs: the confusion matrix, the top-5 hits, the calibration bins and the most
confident mistakes, so an evaluation set of any size streams through it. ``write_report`` turns the
``Report`` into files:

- ``confusion_matrix.csv`` / ``.png``: rows are the true classes, columns the predicted ones;
- ``per_class.csv``: precision, recall, F1 and support of each class;
- ``reliability.png``: accuracy against confidence per bin, with the expected calibration error;
- ``mistakes.png``: the most confident wrong predictions, with their true and predicted names;
- ``summary.json``: top-1, top-5, ECE, the number of images and the worst classes;
- a TensorBoard event file with the same images (``tensorboard --logdir DIR``).

The expected calibration error is Guo et al. (2017)'s: the confidence (the top probability) in
``bins`` equal-width bins, ``sum_b n_b / N * |accuracy_b - mean confidence_b|``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

# Guo et al.'s choice, also torchmetrics' and most papers'.
CALIBRATION_BINS = 15
# Enough to see a pattern in, few enough to read the names.
MISTAKES_SHOWN = 16
# Classes named on the confusion matrix's axes (and counts written in its cells) up to these.
NAMED_AXES, COUNTED_CELLS = 40, 15


@dataclasses.dataclass(frozen=True)
class Mistake:
    """One wrong prediction: the image as the model saw it (uint8 pixels), its true and predicted class."""

    image: np.ndarray
    label: int
    predicted: int
    confidence: float


@dataclasses.dataclass(frozen=True)
class Report:
    """What ``ReportBuilder`` gathered over an evaluation.

    Attributes:
        class_names: The name of each class.
        confusion: ``[true, predicted]`` counts.
        top5_hits: Images whose label is among the five highest logits (None below six classes).
        bin_count, bin_confidence, bin_correct: Per calibration bin: images, their summed
            confidence and how many were right.
        mistakes: The most confident mistakes, most confident first.
    """

    class_names: tuple[str, ...]
    confusion: np.ndarray
    top5_hits: int | None
    bin_count: np.ndarray
    bin_confidence: np.ndarray
    bin_correct: np.ndarray
    mistakes: tuple[Mistake, ...]

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        return float(np.trace(self.confusion) / max(self.count, 1))

    @property
    def top5(self) -> float | None:
        return None if self.top5_hits is None else self.top5_hits / max(self.count, 1)

    @property
    def ece(self) -> float:
        """Expected calibration error (the module docstring)."""
        filled = self.bin_count > 0
        gaps = np.abs(self.bin_correct[filled] - self.bin_confidence[filled])
        return float(gaps.sum() / max(self.count, 1))

    def per_class(self) -> dict[str, np.ndarray]:
        """``precision``, ``recall``, ``f1`` and ``support`` of each class (0 where undefined)."""
        hits = np.diag(self.confusion).astype(np.float64)
        predicted, support = self.confusion.sum(axis=0), self.confusion.sum(axis=1)
        precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
        recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
        return {"precision": precision, "recall": recall, "f1": f1, "support": support}

    def worst_classes(self, n: int = 5) -> list[int]:
        """The ``n`` classes with the lowest F1 among those with test images (more images first on ties)."""
        stats = self.per_class()
        present = [c for c in range(len(self.class_names)) if stats["support"][c] > 0]
        return sorted(present, key=lambda c: (stats["f1"][c], -stats["support"][c], c))[:n]

    def summary(self) -> dict:
        stats = self.per_class()
        return {"images": self.count, "top1": self.top1, "top5": self.top5, "ece": self.ece,
                "calibration_bins": len(self.bin_count),
                "worst_classes": [{"class": self.class_names[c], "f1": float(stats["f1"][c]),
                                   "recall": float(stats["recall"][c]), "support": int(stats["support"][c])}
                                  for c in self.worst_classes()]}


class ReportBuilder:
    """Gathers a ``Report`` batch by batch.

    Args:
        class_names: The name of each logit.
        bins: Calibration bins.
        mistakes: How many of the most confident mistakes to keep (with their images).
    """

    def __init__(self, class_names: Sequence[str], bins: int = CALIBRATION_BINS, mistakes: int = MISTAKES_SHOWN):
        n = len(class_names)
        self.class_names = tuple(class_names)
        self.confusion = np.zeros((n, n), np.int64)
        self.top5_hits = 0 if n > 5 else None
        self.bin_count, self.bin_confidence, self.bin_correct = np.zeros(bins, np.int64), np.zeros(bins), np.zeros(bins)
        self.keep = mistakes
        self.mistakes: list[Mistake] = []

    def update(self, images: np.ndarray, labels: np.ndarray, logits: np.ndarray,
               weights: np.ndarray | None = None) -> None:
        """Adds a batch: uint8 ``images`` (for the mistakes shown), int ``labels``, float ``logits``;
        rows of ``weights`` 0 (an evaluation batch's padding) are left out."""
        if weights is not None:
            keep = np.asarray(weights) > 0
            images, labels, logits = images[keep], labels[keep], logits[keep]
        labels = np.asarray(labels, np.int64)
        logits = np.asarray(logits, np.float64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"labels outside [0, {len(self.class_names)}) in the evaluation data")
        predicted = np.argmax(logits, axis=-1)  # the first of ties, as the accuracy metric takes it
        np.add.at(self.confusion, (labels, predicted), 1)
        if self.top5_hits is not None:
            # Keras' top-k counts a label whose logit is above the 5th highest (ties with it in).
            fifth = np.sort(logits, axis=-1)[:, -5]
            self.top5_hits += int(np.sum(logits[np.arange(len(labels)), labels] >= fifth))
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        confidence = (exp / exp.sum(axis=-1, keepdims=True)).max(axis=-1)
        bins = len(self.bin_count)
        which = np.minimum((confidence * bins).astype(np.int64), bins - 1)  # (k/bins, (k+1)/bins], 1.0 in the last
        correct = predicted == labels
        np.add.at(self.bin_count, which, 1)
        np.add.at(self.bin_confidence, which, confidence)
        np.add.at(self.bin_correct, which, correct)
        wrong = np.flatnonzero(~correct)
        wrong = wrong[np.argsort(-confidence[wrong], kind="stable")[:self.keep]]
        self.mistakes += [Mistake(np.asarray(images[i]), int(labels[i]), int(predicted[i]), float(confidence[i]))
                          for i in wrong]
        self.mistakes = sorted(self.mistakes, key=lambda m: -m.confidence)[:self.keep]

    def result(self) -> Report:
        return Report(self.class_names, self.confusion.copy(), self.top5_hits, self.bin_count.copy(),
                      self.bin_confidence.copy(), self.bin_correct.copy(), tuple(self.mistakes))


def summary_lines(report: Report, directory: str) -> list[str]:
    """What ``tfresnet-eval --report`` prints: the figures, the worst five classes, where the files are."""
    top5 = f", top-5 {report.top5 * 100:.2f}%" if report.top5 is not None else ""
    lines = [f"Report of {report.count} images: top-1 {report.top1 * 100:.2f}%{top5}, expected calibration "
             f"error {report.ece * 100:.2f}%", "Worst classes (F1, recall, images):"]
    stats = report.per_class()
    lines += [f"  {report.class_names[c]}: F1 {stats['f1'][c]:.3f}, recall {stats['recall'][c]:.3f}, "
              f"{int(stats['support'][c])}" for c in report.worst_classes()]
    lines.append(f"Wrote the confusion matrix, per-class figures, reliability diagram and mistakes to {directory} "
                 f"(and for TensorBoard: tensorboard --logdir {directory})")
    return lines


def write_report(report: Report, directory: str, step: int = 0) -> dict[str, str]:
    """Writes the report's files (the module docstring) to ``directory``; returns ``{name: path}``."""
    tf.io.gfile.makedirs(directory)  # local, or gs:// beside a run there
    paths = {name: os.path.join(directory, name) for name in (
        "confusion_matrix.csv", "per_class.csv", "summary.json", "confusion_matrix.png", "reliability.png",
        "mistakes.png")}
    names = report.class_names
    with tf.io.gfile.GFile(paths["confusion_matrix.csv"], "w") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *names])
        writer.writerows([name, *row] for name, row in zip(names, report.confusion.tolist()))
    stats = report.per_class()
    with tf.io.gfile.GFile(paths["per_class.csv"], "w") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        writer.writerows([name, f"{stats['precision'][c]:.6f}", f"{stats['recall'][c]:.6f}", f"{stats['f1'][c]:.6f}",
                          int(stats["support"][c])] for c, name in enumerate(names))
    with tf.io.gfile.GFile(paths["summary.json"], "w") as f:
        json.dump(report.summary(), f, indent=2)
    pngs = {"confusion_matrix": confusion_png(report), "reliability": reliability_png(report),
            "mistakes": mistakes_png(report)}
    for name, png in pngs.items():
        with tf.io.gfile.GFile(paths[f"{name}.png"], "wb") as f:
            f.write(png)
    with tf.summary.create_file_writer(directory).as_default(step=step):
        for name, png in pngs.items():
            tf.summary.image(f"report/{name}", tf.image.decode_png(png, channels=4)[None])
        tf.summary.scalar("report/top1", report.top1)
        tf.summary.scalar("report/ece", report.ece)
    return paths


def _figure(width: float, height: float):
    import matplotlib  # noqa: PLC0415 - only the report draws

    matplotlib.use("Agg", force=False)  # no display needed (a server, CI)
    from matplotlib import pyplot as plt  # noqa: PLC0415

    return plt, plt.figure(figsize=(width, height), dpi=100)


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(report: Report) -> bytes:
    """The confusion matrix, each row coloured by its share of the true class's images."""
    n = len(report.class_names)
    side = min(4 + 0.35 * n, 20)
    plt, fig = _figure(side + 1.5, side)
    ax = fig.add_subplot()
    support = report.confusion.sum(axis=1, keepdims=True)
    shares = np.divide(report.confusion, support, out=np.zeros(report.confusion.shape), where=support > 0)
    shown = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
    if n <= NAMED_AXES:
        ax.set_xticks(range(n), report.class_names, rotation=90)
        ax.set_yticks(range(n), report.class_names)
    if n <= COUNTED_CELLS:
        for (i, j), count in np.ndenumerate(report.confusion):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix, {report.count} images, top-1 {report.top1 * 100:.2f}%")
    return _png(plt, fig)


def reliability_png(report: Report) -> bytes:
    """Accuracy against confidence per bin: on the diagonal, the probabilities mean what they say."""
    bins = len(report.bin_count)
    edges = np.linspace(0, 1, bins + 1)
    filled = report.bin_count > 0
    accuracy = np.divide(report.bin_correct, report.bin_count, out=np.zeros(bins), where=filled)
    confidence = np.divide(report.bin_confidence, report.bin_count, out=np.zeros(bins), where=filled)
    plt, fig = _figure(5.5, 5.5)
    ax = fig.add_subplot()
    ax.bar(edges[:-1], accuracy, width=1 / bins, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    ax.bar(edges[:-1][filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=1 / bins, align="edge",
           color="tab:red", alpha=0.35, edgecolor="tab:red", label="gap to the confidence")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability, expected calibration error {report.ece * 100:.2f}%")
    ax.legend(loc="upper left")
    return _png(plt, fig)


def mistakes_png(report: Report) -> bytes:
    """The most confident mistakes, each titled with its true and predicted class."""
    shown = report.mistakes
    cols = 4
    rows = max(1, -(-len(shown) // cols))
    plt, fig = _figure(3 * cols, 3.3 * rows)
    if not shown:
        fig.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=20)
    for i, mistake in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        image = mistake.image[..., 0] if mistake.image.shape[-1] == 1 else mistake.image
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(f"true: {report.class_names[mistake.label]}\npredicted: "
                     f"{report.class_names[mistake.predicted]} ({mistake.confidence:.2f})", fontsize=9)
        ax.axis("off")
    fig.suptitle("Most confident mistakes")
    return _png(plt, fig)
