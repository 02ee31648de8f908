"""The protores encoder and the prototypical network: shapes, block wiring, prototypes against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresnet
from tfresnet.models import protores as P


def test_embedding_shapes():
    encoder = P.ProtoResEncoder()
    x = tf.random.normal((3, 48, 20, 1))
    # Time halved by the (2, 1) pooling, every mel bin kept, 48 channels of the last block.
    assert encoder(x).shape == (3, 24 * 20 * 48)
    small = P.ProtoResEncoder(widths=(4, 6), dilations=(1, 3), kernel_size=5)
    assert small(x).shape == (3, 24 * 20 * 6)
    with pytest.raises(ValueError, match="differ in length"):
        P.ProtoResEncoder(widths=(4, 6), dilations=(1,))


def test_block_second_convolution_takes_the_first_ones_output():
    block = P.DilatedResidualBlock(6, kernel_size=9, dilation=2, name="b")
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
    net = P.PrototypicalNetwork(keras.Sequential([keras.layers.Flatten()]), distance_scale=1.0)
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
    clone = P.PrototypicalNetwork.from_config(net.get_config())
    assert clone.distance_scale == 1.0


def test_protores_is_a_registered_model_that_serialises(tmp_path, rng):
    encoder = tfresnet.create_model("protores", input_shape=(48, 20, 1), widths=(4, 6), dilations=(1, 2))
    x = rng.standard_normal((2, 48, 20, 1)).astype("float32")
    y = encoder(x, training=False)
    assert y.shape == (2, 24 * 20 * 6) and encoder.name == "protores"
    encoder.save(tmp_path / "e.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "e.keras")(x, training=False), y, atol=1e-6)


def test_cosine_episodes_and_the_word_classifier_match_numpy(rng):
    identity = keras.layers.Identity()
    net = P.PrototypicalNetwork(identity, metric="cosine", classes=3, logit_scale=16.0, margin=0.2)
    net.build_word_head((4,))
    assert tuple(net.word_head.kernel.shape) == (4, 3)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    support = rng.standard_normal((3, 2, 4)).astype("float32")
    query = rng.standard_normal((3, 5, 4)).astype("float32")
    # Episodes: 16 x the cosine of each unit query to the direction of the mean unit support.
    prototypes = unit(unit(support).mean(1))
    logits = 16.0 * unit(query.reshape(15, 4)) @ prototypes.T
    np.testing.assert_allclose(net.logits(support, query), logits, rtol=1e-5, atol=1e-5)
    labels = np.repeat(np.arange(3), 5)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    loss, accuracy = net(support, query)
    np.testing.assert_allclose(loss, -log_p[np.arange(15), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(accuracy, (logits.argmax(1) == labels).mean())
    # The word classifier (CosFace): s * (cos - m at the true word), cross-entropy per example.
    x, y = rng.standard_normal((6, 4)).astype("float32"), np.array([0, 1, 2, 2, 1, 0])
    cosines = unit(x) @ unit(net.word_head.kernel.numpy().T).T
    margined = 16.0 * (cosines - 0.2 * np.eye(3)[y])
    expected = -(margined[np.arange(6), y] - np.log(np.exp(margined).sum(1)))
    losses, hits = net.word_loss(x, y)
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-5)  # float32 sums
    np.testing.assert_array_equal(hits, cosines.argmax(1) == y)
    clone = P.PrototypicalNetwork.from_config(net.get_config())
    assert (clone.metric, clone.classes, clone.logit_scale, clone.margin) == ("cosine", 3, 16.0, 0.2)
    with pytest.raises(ValueError, match="no word classifier"):
        P.PrototypicalNetwork(identity).word_loss(x, y)
    # A label the head has no class for is named, eagerly and in a graph, instead of a NaN loss.
    outside = "a word label is outside the 3 classes of the word classifier"
    with pytest.raises(ValueError, match=outside + " \\(labels 0..5\\)"):
        net.word_loss(x, np.array([0, 1, 2, 5, 1, 0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=outside):
        tf.function(net.word_loss)(x, tf.constant([0, 1, 2, 5, 1, 0]))
    with pytest.raises(ValueError, match="metric must be one of euclidean, cosine, got 'cos'"):
        P.PrototypicalNetwork(identity, metric="cos")


def test_center_bins_ignores_a_fixed_colouring_of_each_mel_bin(rng):
    encoder = tfresnet.create_model("protores", input_shape=(48, 20, 1), widths=(8, 8), dilations=(1, 2),
                                    bins_as_channels=True, pooling="average", center_bins=True)
    x = rng.standard_normal((2, 48, 20, 1)).astype("float32")
    colour = rng.standard_normal((1, 1, 20, 1)).astype("float32")  # a voice's or a microphone's tilt
    np.testing.assert_allclose(encoder(x + colour), encoder(x), atol=1e-5)
    assert keras.models.clone_model(encoder).center_bins  # kept in the config
    plain = tfresnet.create_model("protores", input_shape=(48, 20, 1), widths=(8, 8), dilations=(1, 2),
                                  bins_as_channels=True, pooling="average")
    assert not np.allclose(plain(x + colour), plain(x), atol=1e-3)


def test_cepstra_are_the_orthonormal_dct_of_the_mel_bins(rng):
    x = rng.standard_normal((3, 40))
    # DCT-II through the FFT of the mirrored signal (Makhoul 1980), scaled to be orthonormal.
    spectrum = np.fft.fft(np.concatenate([x, x[:, ::-1]], 1))[:, :40]
    reference = np.real(np.exp(-1j * np.pi * np.arange(40) / 80) * spectrum) / np.sqrt(2 * 40)
    reference[:, 0] /= np.sqrt(2)
    np.testing.assert_allclose(x @ P.dct_matrix(40, 40), reference, atol=1e-5)
    np.testing.assert_allclose(P.dct_matrix(40, 40).T @ P.dct_matrix(40, 40), np.eye(40), atol=1e-5)
    encoder = tfresnet.create_model("protores", input_shape=(48, 40, 1), widths=(8, 8), dilations=(1, 2),
                                    bins_as_channels=True, pooling="average", cepstra=12)
    assert tuple(encoder.stem.kernel.shape) == (3, 1, 12, 8)  # 12 coefficients in, not 40 bins
    # A ripple across the bins at the top of the DCT's range (a voice's harmonics) is ignored.
    mel = rng.standard_normal((2, 48, 40, 1)).astype("float32")
    ripple = np.cos(np.pi * (np.arange(40) + 0.5) * 30 / 40).reshape(1, 1, 40, 1).astype("float32")
    np.testing.assert_allclose(encoder(mel + ripple * rng.standard_normal((2, 48, 1, 1)).astype("float32")),
                               encoder(mel), atol=1e-5)
    with pytest.raises(ValueError, match="cepstra=41 is more than the 40 mel bins"):
        tfresnet.create_model("protores", input_shape=(48, 40, 1), cepstra=41, bins_as_channels=True)


def test_frequency_filters_slide_along_the_mel_axis_before_the_bins_become_channels(tmp_path, rng):
    encoder = tfresnet.create_model("protores", input_shape=(48, 20, 1), widths=(8, 8), dilations=(1, 2),
                                    bins_as_channels=True, pooling="average", center_bins=True, frequency_filters=3)
    assert tuple(encoder.frequency_conv.kernel.shape) == (3, 3, 1, 3)
    assert tuple(encoder.stem.kernel.shape) == (3, 1, 20 * 3, 8)  # every bin's 3 filter outputs are channels
    x = rng.standard_normal((2, 48, 20, 1)).astype("float32")
    # The same filters at every bin: a pattern moved up two bins gives the moved responses.
    inner = lambda v: encoder.frequency_conv(v).numpy()[:, :, 3:-3]  # noqa: E731
    np.testing.assert_allclose(inner(np.roll(x, 2, axis=2))[:, :, 2:], inner(x)[:, :, :-2], atol=1e-5)
    encoder.save(tmp_path / "e.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "e.keras")(x), encoder(x), atol=1e-5)
