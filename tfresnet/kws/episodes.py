"""Few-shot episodes: N-way K-shot sampling over labelled examples, with support and queries
spoken by different speakers.

Episode ``i`` is a pure function of ``(seed, i)``: a run resumed at step ``s`` starts the stream
at episode ``s`` without generating the ones before it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfresnet.config import METRICS


class EpisodeSampler:
    """Draws episode ``i`` of a seeded stream: indices ``(support (N, K), query (N, Q))``.

    Each episode draws N classes. The support of each class comes from K distinct speakers, taken
    in a random speaker order shared by the classes (so the N supports share few speakers); the
    queries come from Q other distinct speakers, none of whom is in the episode's support. A user
    enrolling a keyword is a new speaker: an episode never matches a query to its own voice.

    Args:
        labels: Integer class of each example.
        n_way, k_shot, n_query: Episode shape.
        speakers: Integer speaker of each example; None: every example its own speaker.
        seed: Seeds the draws.
    """

    def __init__(self, labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
                 speakers: np.ndarray | None = None, seed: int = 0):
        self.labels = np.asarray(labels)
        self.speakers = np.arange(len(self.labels)) if speakers is None else np.asarray(speakers)
        self.n_way, self.k_shot, self.n_query, self.seed = n_way, k_shot, n_query, seed
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        self.usable = sorted(c for c, idx in self.by_class.items()
                             if len(np.unique(self.speakers[idx])) >= k_shot + n_query)
        if len(self.usable) < n_way:
            raise ValueError(f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes spoken by "
                             f">= {k_shot + n_query} speakers each; only {len(self.usable)} are")
        self.num_speakers = int(self.speakers.max()) + 1

    def _one_per_speaker(self, rng: np.random.Generator, idx: np.ndarray) -> np.ndarray:
        """A random example of each speaker of ``idx``, the speakers in random order."""
        idx = rng.permutation(idx)
        _, first = np.unique(self.speakers[idx], return_index=True)
        return rng.permutation(idx[first])

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, i])
        classes = rng.choice(self.usable, self.n_way, replace=False)
        rank = rng.permutation(self.num_speakers)
        support = []
        for c in classes:
            candidates = self._one_per_speaker(rng, self.by_class[c])
            support.append(candidates[np.argsort(rank[self.speakers[candidates]], kind="stable")[: self.k_shot]])
        support_speakers = np.unique(self.speakers[np.concatenate(support)])
        query = []
        for c in classes:
            idx = self.by_class[c]
            candidates = self._one_per_speaker(rng, idx[~np.isin(self.speakers[idx], support_speakers)])
            if len(candidates) < self.n_query:
                raise ValueError(f"episode {i}: class {c} has {len(candidates)} speakers outside the support, "
                                 f"{self.n_query} queries need more; use fewer queries or shots")
            query.append(candidates[: self.n_query])
        return np.stack(support), np.stack(query)


def episodes(examples: np.ndarray, labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
             num_episodes: int | None = None, seed: int = 0, start: int = 0, num_shards: int = 1,
             shard: int = 0, speakers: np.ndarray | None = None, with_index: bool = False) -> tf.data.Dataset:
    """N-way K-shot episodes ``(support (N, K, ...), query (N, Q, ...))`` over labelled examples.

    See ``EpisodeSampler``: queries are never in the support, nor spoken by a support speaker.

    Args:
        examples: ``(examples, ...)`` array (waveforms or features).
        labels: Integer class of each example.
        n_way, k_shot, n_query: Episode shape.
        num_episodes: Episodes of the whole stream, all shards together (None: forever).
        seed: Seeds the draws; episode ``i`` is the same for the same seed.
        start: Index of the first episode (resuming at step ``s`` with ``R`` episodes a step:
            ``s * R``). Nothing before it is generated.
        num_shards, shard: Yield only episodes ``i`` with ``i % num_shards == shard`` (one input
            pipeline of several, under a ``tf.distribute`` strategy).
        speakers: Integer speaker of each example; None: every example its own speaker.
        with_index: Yield ``(i, support, query)``: the episode's index seeds its augmentation.

    Returns:
        A ``tf.data.Dataset`` of ``(support, query)`` float32 pairs.
    """
    sample = EpisodeSampler(labels, n_way, k_shot, n_query, speakers, seed)

    def generate():
        # The first index >= start that belongs to this shard.
        i = start + (shard - start) % num_shards
        while num_episodes is None or i < num_episodes:
            support, query = sample(i)
            yield (i, examples[support], examples[query]) if with_index else (examples[support], examples[query])
            i += num_shards

    shape = examples.shape[1:]
    pair = (tf.TensorSpec((n_way, k_shot, *shape), tf.float32), tf.TensorSpec((n_way, n_query, *shape), tf.float32))
    return tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec((), tf.int64), *pair) if with_index else pair)


def labelled_batches(examples: np.ndarray, labels: np.ndarray, batch_size: int, seed: int = 0, start: int = 0,
                     num_shards: int = 1, shard: int = 0,
                     compose: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]] | None = None
                     ) -> tf.data.Dataset:
    """Endless batches ``(i, examples (batch_size, ...), labels (batch_size,))`` of distinct examples.

    Batch ``i`` draws ``batch_size`` examples without replacement, a pure function of ``(seed, i)``
    like an episode: a run resumed at step ``s`` starts at batch ``s * num_shards`` and generates
    nothing before it. ``num_shards`` and ``shard`` as for ``episodes``; ``i`` seeds augmentation.
    ``compose(pick, rng)``, if given, makes the batch from the drawn indices instead of
    ``(examples[pick], labels[pick])``, with the batch's own generator (e.g. ``tfresnet.kws.augment.WordSplicer``).
    """
    if not 0 < batch_size <= len(labels):
        raise ValueError(f"batch_size {batch_size} must be between 1 and the {len(labels)} training examples")

    def generate():
        i = start + (shard - start) % num_shards
        while True:
            rng = np.random.default_rng([seed, i])
            pick = rng.choice(len(labels), batch_size, replace=False)
            yield (i, *compose(pick, rng)) if compose else (i, examples[pick], labels[pick])
            i += num_shards

    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec((), tf.int64), tf.TensorSpec((batch_size, *examples.shape[1:]), tf.float32),
        tf.TensorSpec((batch_size,), tf.int32)))


def evaluate_episodes(net, episodes: tf.data.Dataset) -> float:
    """Mean query accuracy of a ``PrototypicalNetwork`` (inference mode) over ``episodes``."""
    step = tf.function(lambda s, q: net(s, q, training=False)[1])
    return float(np.mean([step(s, q).numpy() for s, q in episodes]))


def accuracy_interval(accuracies) -> tuple[float, float]:
    """Mean and 95% confidence half-width (1.96 standard errors) of per-episode accuracies."""
    values = np.asarray(accuracies, np.float64)
    return float(values.mean()), float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


def episode_accuracies(embeddings: np.ndarray, labels: np.ndarray, n_way: int, k_shot: int, n_query: int,
                       num_episodes: int, speakers: np.ndarray | None = None, seed: int = 0,
                       metric: str = "euclidean") -> np.ndarray:
    """Query accuracy of each of ``num_episodes`` episodes, classified by the nearest prototype.

    The same episodes and the same rule as ``PrototypicalNetwork`` in inference mode (``metric``:
    squared Euclidean distance to the mean support embedding, or cosine similarity of unit
    embeddings to it), over embeddings computed once per clip: a thousand episodes cost no more
    than embedding the split. Raw features, flattened, give the non-learned baseline.
    """
    flat = np.asarray(embeddings, np.float64).reshape(len(embeddings), -1)
    if metric not in METRICS:
        raise ValueError(f"metric must be {' or '.join(METRICS)}, got {metric!r}")
    if metric == "cosine":
        flat = flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    sample = EpisodeSampler(labels, n_way, k_shot, n_query, speakers, seed)
    accuracies = np.empty(num_episodes)
    for i in range(num_episodes):
        support, query = sample(i)
        prototypes = flat[support].mean(axis=1)  # (N, D)
        queries = flat[query.ravel()]  # (N * Q, D), class i in rows i*Q ...
        if metric == "cosine":  # the largest cosine: the smallest angle to the prototype's direction
            distances = -queries @ (prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)).T
        else:
            distances = (queries**2).sum(1)[:, None] - 2 * queries @ prototypes.T + (prototypes**2).sum(1)[None, :]
        accuracies[i] = np.mean(distances.argmin(1) == np.repeat(np.arange(n_way), n_query))
    return accuracies
