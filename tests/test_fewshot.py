"""Few-shot keyword spotting: encoder wiring and shapes, prototypes, episodes, real learning."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfresnet import fewshot as F
from tfresnet.config import TrainConfig


def test_embedding_shapes():
    encoder = F.ProtoResEncoder()
    x = tf.random.normal((3, 48, 20, 1))
    # Time halved by the (2, 1) pooling, every mel bin kept, 48 channels of the last block.
    assert encoder(x).shape == (3, 24 * 20 * 48)
    small = F.ProtoResEncoder(widths=(4, 6), dilations=(1, 3), kernel_size=5)
    assert small(x).shape == (3, 24 * 20 * 6)
    with pytest.raises(ValueError, match="differ in length"):
        F.ProtoResEncoder(widths=(4, 6), dilations=(1,))


def test_block_second_convolution_takes_the_first_ones_output():
    block = F.DilatedResidualBlock(6, kernel_size=9, dilation=2, name="b")
    x = tf.random.normal((2, 30, 5, 3))
    y = block(x, training=False)
    assert y.shape == (2, 30, 5, 6)
    assert tuple(block.conv1.kernel.shape) == (9, 1, 3, 6) and tuple(block.conv2.kernel.shape) == (9, 1, 6, 6)
    assert block.conv1.dilation_rate == (2, 1)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(block(x, training=False) ** 2)
    grad = tape.gradient(out, block.conv1.kernel)
    assert np.any(grad.numpy())  # the output depends on conv1 (through conv2, not beside it)
    # Zeroing conv1 leaves only BN's shift into conv2: the output must change.
    block.conv1.kernel.assign(tf.zeros_like(block.conv1.kernel))
    assert not np.allclose(block(x, training=False), y)


def test_prototypes_and_loss_match_a_numpy_reference(rng):
    net = F.PrototypicalNetwork(keras.Sequential([keras.layers.Flatten()]), distance_scale=1.0)
    support = rng.standard_normal((3, 2, 4)).astype("float32")  # 3-way 2-shot, 4-d "embeddings"
    query = rng.standard_normal((3, 5, 4)).astype("float32")
    loss, accuracy = net(support, query)
    prototypes = support.mean(1)
    q = query.reshape(15, 4)
    logits = -((q[:, None, :] - prototypes[None]) ** 2).sum(-1)
    labels = np.repeat(np.arange(3), 5)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(loss, -log_p[np.arange(15), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(accuracy, (logits.argmax(1) == labels).mean())
    clone = F.PrototypicalNetwork.from_config(net.get_config())
    assert clone.distance_scale == 1.0


def test_episode_sampler_keeps_queries_out_of_the_support():
    labels = np.repeat(np.arange(8), 6)
    ids = np.arange(len(labels), dtype=np.float32)[:, None]  # each example's feature is its index
    seen = 0
    for support, query in F.episodes(ids, labels, n_way=4, k_shot=2, n_query=3, num_episodes=50, seed=7):
        s, q = support.numpy()[..., 0].astype(int), query.numpy()[..., 0].astype(int)
        assert s.shape == (4, 2) and q.shape == (4, 3)
        assert not set(s.ravel()) & set(q.ravel())
        assert len(set(np.r_[s.ravel(), q.ravel()])) == 20  # no example twice in an episode
        for row in range(4):  # row i is one class, the same in support and query
            assert len(set(labels[np.r_[s[row], q[row]]])) == 1
        assert len({labels[s[r, 0]] for r in range(4)}) == 4
        seen += 1
    assert seen == 50
    a = next(iter(F.episodes(ids, labels, 4, 2, 3, 1, seed=7)))[0].numpy()
    b = next(iter(F.episodes(ids, labels, 4, 2, 3, 1, seed=7)))[0].numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="needs 9 classes"):
        F.episodes(ids, labels, 9, 2, 3)


def test_log_mel_and_wav_folder(tmp_path):
    waves, labels = F.synthetic_keywords(3, 2, seconds=1.0)
    for wave, label in zip(waves, labels):
        folder = tmp_path / ["yes", "no", "up"][label]
        folder.mkdir(exist_ok=True)
        tf.io.write_file(str(folder / f"{len(list(folder.iterdir()))}.wav"),
                         tf.audio.encode_wav(wave[:, None], F.SAMPLE_RATE))
    loaded, loaded_labels, words = F.load_wav_folder(tmp_path)
    assert words == ["no", "up", "yes"] and loaded.shape == (6, F.SAMPLE_RATE)
    np.testing.assert_allclose(loaded[np.argsort(loaded_labels, kind="stable")][:2], waves[2:4], atol=1e-4)
    assert F.log_mel(tf.constant(waves[0])).shape == (98, 40, 1)  # 25 ms frames every 10 ms
    with pytest.raises(FileNotFoundError):
        F.load_wav_folder(tmp_path / "missing")


def test_speech_commands_through_tfds_mock():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        waves, labels = F.load_speech_commands("train", max_per_class=100)
    assert waves.shape == (12, F.SAMPLE_RATE) and waves.dtype == np.float32 and labels.shape == (12,)


def test_episodic_step_under_xla_matches_graph_mode():
    waves, labels = F.synthetic_keywords(5, 4, seed=1)
    feats = F.features_of(waves, samples=waves.shape[1], num_mel_bins=20)
    support, query = next(iter(F.episodes(feats, labels, 5, 1, 3, 1)))
    losses = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        net = F.PrototypicalNetwork(F.ProtoResEncoder(widths=(4, 4, 4)))
        net.encoder(support[0])
        optimizer = keras.optimizers.SGD(0.01)
        optimizer.build(net.encoder.trainable_variables)
        metrics = {"loss": keras.metrics.Mean(), "accuracy": keras.metrics.Mean()}
        losses.append(F.make_episode_train_step(net, optimizer, metrics, jit_compile=jit)(support, query).numpy())
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_five_way_one_shot_learns_held_out_keywords(tmp_path):
    """From chance (1 in 5) untrained to >= 80% on keywords never seen in training."""
    features, labels = F.keyword_data("synthetic", None)
    seen, held_out = F.split_classes(labels)
    assert not set(labels[seen]) & set(labels[held_out])
    keras.utils.set_random_seed(0)
    untrained = F.PrototypicalNetwork(F.ProtoResEncoder(widths=(8, 12, 16)))
    start = F.evaluate_episodes(untrained, F.episodes(features[held_out], labels[held_out], 5, 1, 5, 40, seed=1))
    cfg = TrainConfig(task="fewshot", dataset="synthetic", epochs=10, episodes_per_epoch=100, eval_episodes=40,
                      model_dir=str(tmp_path), learning_rate=3e-3, lr_schedule="cosine")
    results = F.train(cfg)
    # 1000 queries: chance is 0.20 +- 0.013; loudness and noise level, not the keyword, decide raw distances.
    assert 0.14 < start < 0.30, start
    assert results["test_accuracy"] >= 0.8, results
    # The exported encoder is the trained one: same held-out accuracy on the same episodes.
    reloaded = F.PrototypicalNetwork(keras.models.load_model(tmp_path / "protores.keras"))
    test = F.episodes(features[held_out], labels[held_out], 5, 1, 5, 40, seed=cfg.seed + 1)
    assert F.evaluate_episodes(reloaded, test) == pytest.approx(results["test_accuracy"], abs=1e-6)


def test_fewshot_rejects_mixed_precision_before_touching_the_model_dir(tmp_path):
    cfg = TrainConfig(task="fewshot", dataset="synthetic", precision="mixed_bfloat16", model_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="trains in float32; precision 'mixed_bfloat16'"):
        F.train(cfg)
    assert not (tmp_path / "run").exists()
