"""Fine-tuning: the backbone frozen for the first epochs, and its own learning rate."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfresnet
from tfresnet import training
from tfresnet.config import TrainConfig
from tfresnet.engine import optim
from tfresnet.weights import finetune as transfer


@pytest.mark.parametrize("make", [lambda: keras.optimizers.SGD(0.1, momentum=0.9), lambda: keras.optimizers.Adam(0.01)])
def test_the_backbone_gets_a_scaled_learning_rate_and_the_head_the_full_one(make):
    model = tfresnet.create_model("resnet20_cifar", num_classes=3, input_shape=(8, 8, 3))
    backbone = transfer.backbone_variables(model)
    head = model.get_layer("predictions").trainable_variables
    assert len(backbone) + len(head) == len(model.trainable_variables) and len(head) == 2
    grads = [tf.random.stateless_normal(v.shape, seed=[i, 0]) for i, v in enumerate(model.trainable_variables)]

    def deltas(scale):
        start = [v.numpy() for v in model.trainable_variables]
        optimizer = make()
        optimizer.build(model.trainable_variables)
        if scale != 1:
            optim.scale_learning_rate(optimizer, backbone, scale)
        for _ in range(2):  # momentum and Adam's moments are part of it
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        moved = [v.numpy() - s for v, s in zip(model.trainable_variables, start)]
        for v, s in zip(model.trainable_variables, start):
            v.assign(s)
        return {id(v): d for v, d in zip(model.trainable_variables, moved)}

    plain, scaled = deltas(1), deltas(0.1)
    for v in backbone:
        np.testing.assert_allclose(scaled[id(v)], 0.1 * plain[id(v)], rtol=1e-4, atol=1e-7)
    for v in head:
        np.testing.assert_allclose(scaled[id(v)], plain[id(v)], rtol=1e-6)


def test_models_without_a_head_cannot_freeze_a_backbone():
    with pytest.raises(ValueError, match="has no classifier layer 'predictions'"):
        transfer.backbone_variables(tfresnet.create_model("resnet20_cifar", num_classes=0, input_shape=(8, 8, 3)))


@pytest.mark.slow
def test_a_frozen_backbone_trains_only_the_head_and_thaws_after_its_epochs(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 64)
    np.savez(tmp_path / "tiny.npz", x_train=images, y_train=labels, x_test=images[:16], y_test=labels[:16])
    cfg = TrainConfig(model="resnet20_cifar", dataset="npz", data_dir=str(tmp_path / "tiny.npz"), batch_size=16,
                      epochs=1, freeze_backbone_epochs=1, backbone_lr_scale=0.5, optimizer="sgd",
                      learning_rate=0.1, mode="train", export=False, model_dir=str(tmp_path / "run"))

    def snapshot(run):
        head = run.model.get_layer("predictions")
        backbone = [v.numpy() for layer in transfer.backbone_layers(run.model) for v in layer.weights]
        return backbone, [v.numpy() for v in head.weights]

    run = training.Run(cfg, log=lambda line: None)
    backbone, head = snapshot(run)
    run.train()  # epoch 1 of 1: frozen throughout
    frozen_backbone, frozen_head = snapshot(run)
    for before, after in zip(backbone, frozen_backbone):  # weights and BatchNorm statistics alike
        np.testing.assert_array_equal(before, after)
    assert not np.allclose(head[0], frozen_head[0])
    # The same run extended to 2 epochs resumes at step 4 and trains everything in epoch 2.
    run = training.Run(cfg.replace(epochs=2), log=lambda line: None)
    run.train()
    thawed, _ = snapshot(run)
    changed = [not np.array_equal(a, b) for a, b in zip(frozen_backbone, thawed)]
    assert all(changed), f"{changed.count(False)} backbone weights did not train after thawing"
    assert all(layer.trainable for layer in transfer.backbone_layers(run.model))
