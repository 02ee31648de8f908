"""Few-shot keyword spotting on spoken words: held-out words, held-out speakers, LiteRT export.

Trains the ``fewshot`` task with a flag file (default ``flags/kws_protores.cfg``) on the training
words spoken by the training speakers, keeps the checkpoint that does best on the validation
words, then reports N-way K-shot accuracy on the TEST words spoken by the HELD-OUT speakers
(``tfresnet.kws.audio``: word lists and speaker split), mean and 95% confidence interval over
``--episodes`` episodes, next to the same encoder untrained and to two non-learned baselines
(nearest prototype on the raw log-mel features, and on their average over time), and how the
``KeywordSpotter`` threshold splits an open set (half of the test words enrolled, the other half
to be answered ``unknown``), with the threshold the validation words would pick. It then exports
the encoder to LiteRT in float32 and full int8 and reports size, per-clip latency and 5-way
1-shot accuracy of each.

    python benchmarks/kws_fewshot.py --data_dir ../shared/data/spoken_keywords
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfresnet import cli, models, training  # noqa: E402
from tfresnet.kws import audio, episodes, logmel, spotting

SHAPES = ((5, 1), (5, 5), (10, 1))


def accuracies(embeddings: np.ndarray, clips: audio.SpokenKeywords, count: int, n_query: int,
               metric: str = "euclidean") -> dict:
    """``{"5-way 1-shot": (mean, 95% half-width), ...}`` over ``count`` episodes of each shape."""
    out = {}
    for n_way, k_shot in SHAPES:
        accs = episodes.episode_accuracies(embeddings, clips.labels, n_way, k_shot, n_query, count,
                                           clips.speaker_ids(), seed=1, metric=metric)
        out[f"{n_way}-way {k_shot}-shot"] = episodes.accuracy_interval(accs)
    return out


def open_set(embeddings: np.ndarray, clips: audio.SpokenKeywords, enrolled: int, k_shot: int,
             thresholds: np.ndarray, rounds: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``KeywordSpotter.classify`` in an open set: for each threshold, the share of the enrolled
    words' clips named right (best cosine at or above it) and of the other words' clips answered
    ``unknown``. Each of ``rounds`` times per speaker, ``enrolled`` words drawn at random are
    enrolled from that speaker and the ``k_shot - 1`` after it (1 clip each); the other speakers'
    clips of every word of the split are classified."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    words, speakers = np.unique(clips.labels), sorted(set(clips.speakers))
    rng = np.random.default_rng(0)
    named, rejected, known_count, other_count = np.zeros(len(thresholds)), np.zeros(len(thresholds)), 0, 0
    for _ in range(rounds):
        for i in range(len(speakers)):
            enrolling = np.isin(clips.speakers, [speakers[(i + j) % len(speakers)] for j in range(k_shot)])
            chosen = rng.permutation(words)[:enrolled]
            prototypes = np.stack([spotting.prototype(unit[(clips.labels == w) & enrolling]) for w in chosen])
            query = ~enrolling
            scores = unit[query] @ prototypes.T
            best, right = scores.max(1), chosen[scores.argmax(1)] == clips.labels[query]
            known = np.isin(clips.labels[query], chosen)
            named += ((best[None] >= thresholds[:, None]) & (known & right)[None]).sum(1)
            rejected += ((best[None] < thresholds[:, None]) & ~known[None]).sum(1)
            known_count, other_count = known_count + known.sum(), other_count + (~known).sum()
    return named / known_count, rejected / other_count


def embed(encoder, features: np.ndarray, batch: int = 100) -> np.ndarray:
    return np.concatenate([np.asarray(encoder(features[i:i + batch], training=False)).reshape(
        len(features[i:i + batch]), -1) for i in range(0, len(features), batch)])


def lite_latency(encoder: spotting.LiteEncoder, features: np.ndarray, repeats: int = 50) -> float:
    """Median seconds of one clip through the interpreter (batch 1)."""
    encoder(features[:1])
    times = []
    for i in range(repeats):
        tic = time.perf_counter()
        encoder(features[i % len(features)][None])
        times.append(time.perf_counter() - tic)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default="../shared/data/spoken_keywords")
    parser.add_argument("--flagfile", default="flags/kws_protores.cfg")
    parser.add_argument("--episodes", type=int, default=1000, help="episodes of each shape")
    parser.add_argument("--n_query", type=int, default=5)
    parser.add_argument("--model_dir", default=None, help="default: a temporary folder")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("flags", nargs="*", help="more training flags after --, e.g. -- --epochs=2")
    args = parser.parse_args(argv)
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="kws_fewshot_")
    cfg = cli.config_from_flags(["kws", f"--flagfile={args.flagfile}", "--dataset=folder",
                                 f"--data_dir={args.data_dir}", f"--model_dir={model_dir}", *args.flags])

    tic = time.perf_counter()
    training.train(cfg, log=lambda line: print(line, flush=True))
    train_seconds = time.perf_counter() - tic

    clips = audio.load_keyword_folder(args.data_dir)
    test = audio.keyword_split(clips, "test")
    bins = 40
    features = logmel.features(tf.constant(test.waveforms), bins).numpy()
    trained = spotting.load_encoder(model_dir)
    keras.utils.set_random_seed(cfg.seed)
    untrained = models.create_model(cfg.model or "protores", input_shape=features.shape[1:], **cfg.model_options)
    # Every row compares with prototypes by the run's --metric (cosine: tfresnet-kws' own score).
    score = lambda x: accuracies(x, test, args.episodes, args.n_query, cfg.metric)  # noqa: E731
    test_embeddings = embed(trained, features)
    rows = {
        "raw log-mel, nearest prototype": score(features),
        "mean log-mel spectrum, nearest prototype": score(features.mean(axis=1)),
        "encoder, untrained": score(embed(untrained, features)),
        "encoder, trained": score(test_embeddings),
    }

    # The "unknown" threshold in an open set: half of the test words enrolled, the rest must come
    # out unknown; the validation words (3 of 5 enrolled) pick the threshold that gets most right.
    thresholds = np.round(np.arange(0.5, 0.951, 0.025), 3)
    validation = audio.keyword_split(clips, "validation")
    validation_embeddings = embed(trained, logmel.features(tf.constant(validation.waveforms), bins).numpy())
    threshold_rows = {}
    for k_shot in (1, 5):
        chosen = thresholds[np.argmax(sum(open_set(validation_embeddings, validation, 3, k_shot, thresholds)))]
        named, rejected = open_set(test_embeddings, test, len(np.unique(test.labels)) // 2, k_shot, thresholds)
        threshold_rows[f"{k_shot}-shot"] = {"chosen on validation": float(chosen), **{
            f"{t:.3f}": (float(n), float(r)) for t, n, r in zip(thresholds, named, rejected)}}

    # LiteRT: float32 and full int8 (calibrated on 200 training clips), on the same test episodes.
    representative = spotting.representative_features(args.data_dir, bins)
    lite = {}
    for name, rep in (("float32", None), ("int8", representative)):
        path = os.path.join(model_dir, f"encoder_{name}.tflite")
        size = spotting.export_tflite(trained, path, rep)
        encoder = spotting.LiteEncoder(path)
        accs = episodes.episode_accuracies(embed(encoder, features), test.labels, 5, 1, args.n_query, args.episodes,
                                           test.speaker_ids(), seed=1, metric=cfg.metric)
        lite[name] = {"bytes": size, "latency_ms": 1000 * lite_latency(encoder, features),
                      "5-way 1-shot": episodes.accuracy_interval(accs)}

    print(f"\ntest words {', '.join(audio.TEST_WORDS)}; {len(set(test.speakers))} held-out speakers; "
          f"{args.episodes} episodes of each shape, {args.n_query} queries per class, {cfg.metric} prototypes; "
          "mean +- 95% CI")
    header = "".join(f"{s:>18}" for s in rows["encoder, trained"])
    print(f"{'':42}{header}")
    for name, row in rows.items():
        print(f"{name:42}" + "".join(f"{m:>11.1%} +-{c:4.1%}" for m, c in row.values()))
    print(f"training: {train_seconds:.0f} s on {platform.processor() or platform.machine()} "
          f"({os.cpu_count()} cores)")
    print("open set, test words (half enrolled): threshold, enrolled words named right, other words unknown")
    for shot, row in threshold_rows.items():
        print(f"  {shot} (the validation words pick {row['chosen on validation']:.3f}): " + ", ".join(
            f"{t} {row[t][0]:.1%}/{row[t][1]:.1%}" for t in ("0.700", "0.750", "0.800", "0.850")))
    for name, row in lite.items():
        m, c = row["5-way 1-shot"]
        print(f"LiteRT {name:8} {row['bytes'] / 1024:7.0f} KiB  {row['latency_ms']:6.2f} ms/clip  "
              f"5-way 1-shot {m:.1%} +-{c:.1%}")
    result = {"args": vars(args), "train_seconds": train_seconds, "rows": rows, "lite": lite,
              "open_set": threshold_rows,
              "test_speakers": sorted(set(test.speakers.tolist()))}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
