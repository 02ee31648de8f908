"""Few-shot episodes: queries never in the support, seeded, resumable without replay, sharded."""

import numpy as np
import pytest

from tfresnet.kws import episodes as E


def test_episode_sampler_keeps_queries_out_of_the_support():
    labels = np.repeat(np.arange(8), 6)
    ids = np.arange(len(labels), dtype=np.float32)[:, None]  # each example's feature is its index
    seen = 0
    for support, query in E.episodes(ids, labels, n_way=4, k_shot=2, n_query=3, num_episodes=50, seed=7):
        s, q = support.numpy()[..., 0].astype(int), query.numpy()[..., 0].astype(int)
        assert s.shape == (4, 2) and q.shape == (4, 3)
        assert not set(s.ravel()) & set(q.ravel())
        assert len(set(np.r_[s.ravel(), q.ravel()])) == 20  # no example twice in an episode
        for row in range(4):  # row i is one class, the same in support and query
            assert len(set(labels[np.r_[s[row], q[row]]])) == 1
        assert len({labels[s[r, 0]] for r in range(4)}) == 4
        seen += 1
    assert seen == 50
    a = next(iter(E.episodes(ids, labels, 4, 2, 3, 1, seed=7)))[0].numpy()
    b = next(iter(E.episodes(ids, labels, 4, 2, 3, 1, seed=7)))[0].numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs 9 classes"):
        E.episodes(ids, labels, 9, 2, 3)


def test_episodes_start_anywhere_without_generating_the_ones_before_and_shard_without_overlap():
    labels = np.repeat(np.arange(8), 6)
    ids = np.arange(len(labels), dtype=np.float32)[:, None]
    first = lambda ds: [s.numpy()[..., 0].astype(int).tolist() for s, _ in ds]  # noqa: E731
    stream = first(E.episodes(ids, labels, 4, 2, 3, num_episodes=12, seed=5))
    assert first(E.episodes(ids, labels, 4, 2, 3, num_episodes=12, seed=5, start=7)) == stream[7:]
    # Two shards (input pipelines) split the stream between them, in order, with nothing left out.
    shards = [first(E.episodes(ids, labels, 4, 2, 3, num_episodes=12, seed=5, num_shards=2, shard=i)) for i in (0, 1)]
    assert shards[0] == stream[0::2] and shards[1] == stream[1::2]
    assert first(E.episodes(ids, labels, 4, 2, 3, num_episodes=12, seed=5, start=7, num_shards=2, shard=0)) == \
        stream[8::2]


def test_support_and_queries_come_from_different_speakers():
    """Every speaker says every word once (the spoken keywords' layout): a query is never a support speaker."""
    labels, speakers = np.repeat(np.arange(10), 8), np.tile(np.arange(8), 10)
    sample = E.EpisodeSampler(labels, 5, 2, 3, speakers, seed=3)
    for i in range(200):
        support, query = sample(i)
        assert not set(speakers[support.ravel()]) & set(speakers[query.ravel()])
        for row in range(5):
            assert len(set(speakers[support[row]])) == 2 and len(set(speakers[query[row]])) == 3
            assert len(set(labels[np.r_[support[row], query[row]]])) == 1
        # The supports share a random speaker order: here the same two speakers for every class.
        assert len(set(speakers[support.ravel()])) == 2
    with pytest.raises(ValueError, match="spoken by >= 9 speakers"):
        E.EpisodeSampler(labels, 5, 4, 5, speakers)


def test_episode_accuracies_match_the_prototypical_network():
    import tensorflow as tf

    from tfresnet.models import protores

    rng = np.random.default_rng(0)
    labels, features = np.repeat(np.arange(6), 5), rng.normal(size=(30, 7)).astype(np.float32)
    features += labels[:, None]  # separable, but not perfectly
    identity = tf.keras.layers.Lambda(lambda x: x)
    net = protores.PrototypicalNetwork(identity, distance_scale=1.0)
    expected = E.evaluate_episodes(net, E.episodes(features, labels, 4, 2, 3, 20, seed=9))
    accuracies = E.episode_accuracies(features, labels, 4, 2, 3, 20, seed=9)
    assert accuracies.mean() == pytest.approx(expected, abs=1e-6) and 0.3 < expected < 1
    mean, half = E.accuracy_interval(accuracies)
    assert mean == pytest.approx(expected) and half == pytest.approx(1.96 * accuracies.std(ddof=1) / np.sqrt(20))


def test_cosine_episode_accuracies_match_the_prototypical_network():
    import tensorflow as tf

    from tfresnet.models import protores

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 5)
    features = (rng.normal(size=(30, 7)) + 0.7 * np.eye(7)[labels]).astype(np.float32)
    features *= rng.uniform(0.1, 10, size=(30, 1)).astype(np.float32)  # lengths that cosine ignores
    net = protores.PrototypicalNetwork(tf.keras.layers.Lambda(lambda x: x), metric="cosine")
    expected = E.evaluate_episodes(net, E.episodes(features, labels, 4, 3, 2, 20, seed=9))
    cosine = E.episode_accuracies(features, labels, 4, 3, 2, 20, seed=9, metric="cosine")
    assert cosine.mean() == pytest.approx(expected, abs=1e-6) and 0.3 < expected < 1
    assert cosine.mean() > E.episode_accuracies(features, labels, 4, 3, 2, 20, seed=9).mean()
    with pytest.raises(ValueError, match="metric must be euclidean or cosine"):
        E.episode_accuracies(features, labels, 4, 3, 2, 20, metric="dot")


def test_labelled_batches_are_seeded_by_index_distinct_and_sharded():
    examples, labels = np.arange(40, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32), np.arange(40) % 4
    take = lambda ds, n: [(int(i), x.numpy(), y.numpy()) for i, x, y in ds.take(n)]  # noqa: E731
    stream = take(E.labelled_batches(examples, labels.astype(np.int32), 8, seed=3), 5)
    assert [i for i, _, _ in stream] == [0, 1, 2, 3, 4]
    for _, x, y in stream:
        assert len(set(x[:, 0])) == 8 and np.array_equal(y, labels[x[:, 0].astype(int)])
    resumed = take(E.labelled_batches(examples, labels.astype(np.int32), 8, seed=3, start=3), 2)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(resumed, stream[3:]))
    shards = [take(E.labelled_batches(examples, labels.astype(np.int32), 8, seed=3, start=2, num_shards=2,
                                      shard=k), 2) for k in (0, 1)]
    assert [i for i, _, _ in shards[0]] == [2, 4] and [i for i, _, _ in shards[1]] == [3, 5]
    assert np.array_equal(shards[1][0][1], stream[3][1])
    assert not np.array_equal(stream[0][1], take(E.labelled_batches(examples, labels.astype(np.int32), 8, 4), 1)[0][1])
    with pytest.raises(ValueError, match="batch_size 41 must be between 1 and the 40 training examples"):
        E.labelled_batches(examples, labels, 41)
    # compose makes the batch from the drawn indices, with the batch's own generator: still a pure
    # function of (seed, i), so a resumed stream matches.
    compose = lambda pick, rng: (examples[pick] + rng.integers(100, 200), labels[pick] + 10)  # noqa: E731
    composed = take(E.labelled_batches(examples, labels.astype(np.int32), 8, seed=3, compose=compose), 4)
    for (_, x, y), (_, plain, plain_labels) in zip(composed, stream):
        assert np.all(x - plain >= 100) and len(np.unique(x - plain)) == 1 and np.array_equal(y, plain_labels + 10)
    resumed = take(E.labelled_batches(examples, labels.astype(np.int32), 8, seed=3, start=3, compose=compose), 1)
    np.testing.assert_array_equal(resumed[0][1], composed[3][1])
