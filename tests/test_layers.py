"""Layer primitives: the fused BatchNorm in training and inference mode."""

import numpy as np
import tensorflow as tf

from tfresnet.models import layers as L
from tfresnet.models.tutorial import ResidualUnit


def test_batchnorm_training_flag_selects_statistics(rng):
    """training=True normalises with batch statistics and updates moving ones; False uses moving."""
    unit = ResidualUnit(4, 4, 3, name="u")
    x = (3.0 + 2.0 * rng.standard_normal((8, 6, 6, 4))).astype("float32")
    unit(x, training=False)
    bn = unit.bn1
    before = [w.numpy().copy() for w in (bn.moving_mean, bn.moving_variance)]
    # Inference: each example's output is independent of the rest of the batch.
    alone = unit(x[:1], training=False)
    np.testing.assert_allclose(unit(x, training=False)[:1], alone, atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean, before[0])
    # Training: the moving statistics move towards the batch's by (1 - momentum)...
    unit(x, training=True)
    batch_mean = x.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.moving_mean, L.BN_MOMENTUM * before[0] + (1 - L.BN_MOMENTUM) * batch_mean, rtol=1e-4)
    # ...and the output is normalised with the batch's own statistics, so it depends on the batch.
    normed = bn(x, training=True)
    np.testing.assert_allclose(tf.reduce_mean(normed, [0, 1, 2]), 0.0, atol=1e-4)
    np.testing.assert_allclose(tf.math.reduce_std(normed, [0, 1, 2]), 1.0, atol=1e-2)
    assert not np.allclose(unit(x, training=True)[:1], unit(np.concatenate([x[:1], -x[1:]]), training=True)[:1])
