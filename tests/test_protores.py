"""The protores encoder and the prototypical network: shapes, block wiring, prototypes against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import tfresnet
from tfresnet import protores as P


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
