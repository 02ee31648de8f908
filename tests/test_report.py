"""tfresnet.engine.report: the figures of ``tfresnet-eval --report`` add up, and its pictures show something."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfresnet import cli, data, training
from tfresnet.engine.report import ReportBuilder, write_report


def ece_by_definition(probabilities, labels, bins=15):
    """Guo et al.'s expected calibration error, written out bin by bin (right-closed bins)."""
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs((predicted[inside] == labels[inside]).mean() - confidence[inside].mean())
    return total


def png_pixels(path) -> np.ndarray:
    return tf.io.decode_png(path.read_bytes(), channels=3).numpy()


def test_builder_counts_what_a_loop_over_the_images_counts(rng):
    n, classes = 300, 7
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) * 3
    logits[np.arange(n), labels] += rng.normal(1.0, 1.0, n)  # better than chance, not perfect
    logits = logits.astype(np.float32)  # as models give them
    logits[0] = 0.0  # all tied: predicted 0, the label among the top 5 (in_top_k counts ties in)
    images = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    weights = np.ones(n)
    weights[-20:] = 0  # an evaluation batch's padding
    builder = ReportBuilder([f"c{i}" for i in range(classes)], mistakes=5)
    for lo in range(0, n, 64):  # batch by batch
        builder.update(images[lo:lo + 64], labels[lo:lo + 64], logits[lo:lo + 64], weights[lo:lo + 64])
    report = builder.result()

    kept_labels, kept_logits = labels[:-20], logits[:-20]
    predicted = kept_logits.argmax(axis=1)
    expected = np.zeros((classes, classes), int)
    for true, guess in zip(kept_labels, predicted):
        expected[true, guess] += 1
    np.testing.assert_array_equal(report.confusion, expected)
    assert report.count == n - 20 and report.top1 == pytest.approx(np.mean(predicted == kept_labels))
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    top5.update_state(kept_labels, kept_logits)
    assert report.top5 == pytest.approx(float(top5.result()), abs=1e-7)
    probabilities = tf.nn.softmax(kept_logits).numpy()
    assert report.ece == pytest.approx(ece_by_definition(probabilities, kept_labels), abs=1e-6)  # float32 softmax
    stats = report.per_class()
    for c in range(classes):
        tp = np.sum((predicted == c) & (kept_labels == c))
        precision, recall = tp / np.sum(predicted == c), tp / np.sum(kept_labels == c)
        assert stats["precision"][c] == pytest.approx(precision)
        assert stats["recall"][c] == pytest.approx(recall)
        assert stats["f1"][c] == pytest.approx(2 * precision * recall / (precision + recall))
    assert report.worst_classes(7)[0] == int(np.argmin(stats["f1"]))
    wrong = np.flatnonzero(predicted != kept_labels)
    most_confident = wrong[np.argsort(-probabilities[wrong].max(axis=1))][:5]
    assert [m.confidence for m in report.mistakes] == pytest.approx(probabilities[most_confident].max(axis=1))
    for m, i in zip(report.mistakes, most_confident):
        assert (m.label, m.predicted) == (kept_labels[i], predicted[i]) and np.array_equal(m.image, images[i])
    with pytest.raises(ValueError, match=r"labels outside \[0, 7\)"):
        builder.update(images[:1], np.array([7]), logits[:1])


def test_a_perfect_report_still_draws_every_picture(tmp_path):
    builder = ReportBuilder(["a", "b"])
    builder.update(np.zeros((2, 3, 3, 3), np.uint8), np.array([0, 1]), np.array([[5.0, 0.0], [0.0, 5.0]]))
    paths = write_report(builder.result(), str(tmp_path))
    assert json.loads((tmp_path / "summary.json").read_text())["top1"] == 1.0
    assert all(tf.io.gfile.exists(p) for p in paths.values())
    assert png_pixels(tmp_path / "mistakes.png").std() > 5  # "no mistakes", written


@pytest.mark.slow
def test_eval_report_of_a_trained_run_adds_up(trained_mnist, tmp_path, capsys):
    """``tfresnet-eval --report``: the matrix sums to the test images, its diagonal is the printed
    top-1, the ECE is the one computed here from the model's own probabilities, the PNGs are pictures."""
    cfg = trained_mnist.cfg
    flags = [f"--model_dir={cfg.model_dir}", f"--dataset={cfg.dataset}", f"--data_dir={cfg.data_dir}",
             f"--eval_split={cfg.eval_split}", f"--model={cfg.model}", f"--report={tmp_path / 'report'}"]
    assert cli.main(["tfresnet-eval", *flags], mode="eval") == 0
    printed = capsys.readouterr().out
    results = training.evaluate(cfg.replace(mode="eval"), log=lambda line: None)
    report = tmp_path / "report"

    with open(report / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == [str(d) for d in range(10)] and [r[0] for r in rows[1:]] == rows[0][1:]
    matrix = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert matrix.sum() == 1000  # test[:1000]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(results["accuracy"], abs=1e-6)
    assert f"accuracy: {results['accuracy'] * 100:.2f}%" in printed
    assert f"Report of 1000 images: top-1 {results['accuracy'] * 100:.2f}%, top-5 {results['top5'] * 100:.2f}%" in printed
    summary = json.loads((report / "summary.json").read_text())
    assert summary["top5"] == pytest.approx(results["top5"], abs=1e-6)

    source = data.load_source("mnist", cfg.eval_split, cfg.data_dir)
    model = keras.models.load_model(trained_mnist.model_dir / "model.keras")
    probabilities = tf.nn.softmax(model.predict(source.images, batch_size=250, verbose=0)).numpy()
    assert summary["ece"] == pytest.approx(ece_by_definition(probabilities, source.labels), abs=1e-4)
    with open(report / "per_class.csv") as f:
        per_class = {r["class"]: r for r in csv.DictReader(f)}
    assert sum(int(r["support"]) for r in per_class.values()) == 1000
    assert float(per_class["3"]["recall"]) == pytest.approx(matrix[3, 3] / matrix[3].sum(), abs=1e-6)
    worst = [w["class"] for w in summary["worst_classes"]]
    assert len(worst) == 5 and all(f"  {name}: F1 " in printed for name in worst)

    for name in ("confusion_matrix", "reliability", "mistakes"):
        pixels = png_pixels(report / f"{name}.png")
        assert min(pixels.shape[:2]) > 200 and pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    events = [str(p) for p in report.glob("events.out.tfevents.*")]
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert {"report/confusion_matrix", "report/reliability", "report/mistakes", "report/top1"} <= tags


def test_report_is_an_evaluation_of_a_classifier(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["tfresnet-eval", "--dataset=mnist", f"--report={tmp_path / 'file' / 'r'}",
                     f"--model_dir={tmp_path}"], mode="eval") == 2
    assert "report" in capsys.readouterr().err
    assert cli.main(["tfresnet-eval", "--task=fewshot", f"--report={tmp_path}/r"], mode="eval") == 2
    assert "task fewshot does not take report" in capsys.readouterr().err
    assert cli.main(["tfresnet-train", "--dataset=synthetic", f"--report={tmp_path}/r"]) == 2
    assert "report is written by an evaluation: run tfresnet-eval --report=DIR" in capsys.readouterr().err
