"""Few-shot episodes: queries never in the support, seeded, resumable without replay, sharded."""

import numpy as np
import pytest

from tfresnet import episodes as E


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


def test_split_classes_holds_out_the_last_quarter_of_the_keywords():
    labels = np.repeat(np.arange(8), 3)
    seen, held_out = E.split_classes(labels)
    assert set(labels[seen]) == set(range(6)) and set(labels[held_out]) == {6, 7}
