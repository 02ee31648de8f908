"""Few-shot episodes: N-way K-shot sampling over labelled examples, and class splits.

Episode ``i`` is a pure function of ``(seed, i)``: a run resumed at step ``s`` starts the stream
at episode ``s`` without generating the ones before it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def episodes(features: np.ndarray, labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
             num_episodes: int | None = None, seed: int = 0, start: int = 0, num_shards: int = 1,
             shard: int = 0) -> tf.data.Dataset:
    """N-way K-shot episodes ``(support (N, K, ...), query (N, Q, ...))`` over labelled examples.

    Each episode draws N classes, then K + Q distinct examples of each: the first K are the
    support, the rest the queries, so a query is never in the support set. Seeded and repeatable.

    Args:
        features: ``(examples, ...)`` array.
        labels: Integer class of each example.
        n_way, k_shot, n_query: Episode shape.
        num_episodes: Episodes of the whole stream, all shards together (None: forever).
        seed: Seeds the draws; episode ``i`` is the same for the same seed.
        start: Index of the first episode (resuming at step ``s`` with ``R`` episodes a step:
            ``s * R``). Nothing before it is generated.
        num_shards, shard: Yield only episodes ``i`` with ``i % num_shards == shard`` (one input
            pipeline of several, under a ``tf.distribute`` strategy).

    Returns:
        A ``tf.data.Dataset`` of ``(support, query)`` float32 pairs.
    """
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    usable = sorted(c for c, idx in by_class.items() if len(idx) >= k_shot + n_query)
    if len(usable) < n_way:
        raise ValueError(f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes with "
                         f">= {k_shot + n_query} examples; only {len(usable)} have that many")

    def generate():
        # The first index >= start that belongs to this shard.
        i = start + (shard - start) % num_shards
        while num_episodes is None or i < num_episodes:
            rng = np.random.default_rng([seed, i])
            classes = rng.choice(usable, n_way, replace=False)
            picks = np.stack([rng.choice(by_class[c], k_shot + n_query, replace=False) for c in classes])
            yield features[picks[:, :k_shot]], features[picks[:, k_shot:]]
            i += num_shards

    shape = features.shape[1:]
    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((n_way, k_shot, *shape), tf.float32), tf.TensorSpec((n_way, n_query, *shape), tf.float32),
    )).prefetch(tf.data.AUTOTUNE)


def split_classes(labels: np.ndarray, held_out: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Masks of training and held-out examples: the last ``held_out`` share of classes is held out."""
    classes = np.unique(labels)
    cut = classes[int(round(len(classes) * (1 - held_out)))]
    return labels < cut, labels >= cut


def evaluate_episodes(net, episodes: tf.data.Dataset) -> float:
    """Mean query accuracy of a ``PrototypicalNetwork`` (inference mode) over ``episodes``."""
    step = tf.function(lambda s, q: net(s, q, training=False)[1])
    return float(np.mean([step(s, q).numpy() for s, q in episodes]))
