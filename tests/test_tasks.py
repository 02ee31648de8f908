"""Tasks on the one engine: few-shot keyword spotting learns held-out keywords, under XLA and two replicas."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import write_wav
from tfresnet import tasks, training
from tfresnet.config import TrainConfig
from tfresnet.engine import runtime
from tfresnet.kws import audio, episodes, logmel
from tfresnet.kws import augment as clip_augment
from tfresnet.models import protores

SMALL = {"widths": [16, 16, 16], "bins_as_channels": True}  # the synthetic keywords need no more


def fewshot_config(tmp_path, **changes) -> TrainConfig:
    base = dict(task="fewshot", dataset="synthetic", epochs=5, episodes_per_epoch=100, eval_episodes=40,
                steps_per_loop=25, learning_rate=1e-2, lr_schedule="cosine", model_options=SMALL, time_shift=0.0,
                model_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **changes})


@pytest.mark.slow
def test_five_way_one_shot_learns_held_out_keywords_on_the_shared_engine(tmp_path, capsys):
    """From near chance untrained to >= 75% on keywords never seen in training (measured: 34% -> 84.2%)."""
    clips = audio.synthetic_clips()
    held_out = audio.synthetic_split(clips, "validation")
    assert not set(held_out.labels) & set(audio.synthetic_split(clips, "train").labels)
    features = logmel.features(held_out.waveforms, 20).numpy()
    keras.utils.set_random_seed(0)
    untrained = protores.ProtoResEncoder(**SMALL)
    start = episodes.episode_accuracies(untrained(features).numpy(), held_out.labels, 5, 1, 5, 200, seed=1).mean()
    cfg = fewshot_config(tmp_path)
    results = training.train(cfg)
    # 1000 queries: chance is 0.20 +- 0.013; per-clip standardised log-mel already hold some order
    # (measured 34% untrained).
    assert 0.12 < start < 0.45, start
    assert results["test_accuracy"] >= 0.75 and results["test_accuracy"] > start + 0.3, results
    # Everything the image task writes: epoch lines, metrics.jsonl, run.json, TensorBoard, checkpoints, export.
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 5 and "(5-way 1-shot, validation keywords)" in out
    run = tmp_path / "run"
    assert {"checkpoints", "logs", "metrics.jsonl", "run.json", "model.keras", "saved_model"} <= set(os.listdir(run))
    assert os.listdir(run / "logs") and tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-500")
    # The exported encoder is the trained one: same held-out accuracy on the same episodes.
    task = tasks.FewShotTask(cfg, runtime.Runtime(tf.distribute.get_strategy(), False, "float32"))
    task.load_data(training=True)
    reloaded = protores.PrototypicalNetwork(keras.models.load_model(run / "model.keras"))
    test = task.episodes(task.eval_clips, cfg.seed + 1, False, count=cfg.eval_episodes)
    assert episodes.evaluate_episodes(reloaded, test) == pytest.approx(results["test_accuracy"], abs=1e-6)
    served = tf.saved_model.load(str(run / "saved_model"))
    x = features[:3]
    np.testing.assert_allclose(served.serve(x), reloaded.encoder(x, training=False), rtol=1e-4, atol=1e-4)


def _task(tmp_path, strategy, jit, **changes):
    cfg = fewshot_config(tmp_path, model_options={"widths": [4, 4, 4]}, **changes)
    task = tasks.FewShotTask(cfg, runtime.Runtime(strategy, jit, "float32"))
    task.load_data(training=True)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = task.build_model()
        optimizer = keras.optimizers.SGD(0.05)
        optimizer.build(model.trainable_variables)
        metrics = task.build_metrics(training=True)
    return task, model, task.make_train_loop(model, optimizer, metrics), metrics


@pytest.mark.slow
def test_episodic_step_under_xla_matches_graph_mode(tmp_path):
    losses, weights = [], []
    for jit in (False, True):
        task, model, loop, _ = _task(tmp_path, tf.distribute.get_strategy(), jit)
        losses.append(loop(task.train_iterator(0), tf.constant(2)).numpy())
        weights.append([w.numpy() for w in model.weights])
    # float32 sums in another order, through BatchNorm: measured 2e-5 apart after two steps, against
    # updates of 0.27 (a wrong step would be off by ~0.1).
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, atol=1e-4)
    initial = _task(tmp_path, tf.distribute.get_strategy(), True)[1].weights
    assert max(np.abs(a - b.numpy()).max() for a, b in zip(weights[1], initial)) > 0.1


@pytest.mark.slow
def test_two_replicas_train_on_two_episodes_a_step_averaged_like_one_device(tmp_path, mirrored):
    """One episode per replica: the update is the single-device gradient of the two episodes' mean loss."""
    task, model, loop, metrics = _task(tmp_path, mirrored, False)
    assert task.global_batch_size == 2
    losses = loop(task.train_iterator(0), tf.constant(1)).numpy()
    # The reference on one device: episodes 0 and 1 of the same stream, mean loss, one SGD step.
    ref_task, ref, _, _ = _task(tmp_path, tf.distribute.get_strategy(), False)
    stream = ref_task.train_iterator(0)
    pair = [next(stream), next(stream)]
    with tf.GradientTape() as tape:
        per_episode = [ref(s, q, training=True)[0] for s, q in pair]
        loss = tf.add_n(per_episode) / 2
    grads = tape.gradient(loss, ref.trainable_variables)
    keras.optimizers.SGD(0.05).apply_gradients(zip(grads, ref.trainable_variables))
    np.testing.assert_allclose(losses, [loss.numpy()], rtol=1e-5)
    for a, b in zip(ref.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5, err_msg=a.path)
    assert float(metrics["loss"].result()) == pytest.approx(float(loss), rel=1e-5)  # both episodes counted


@pytest.mark.slow
def test_cosine_softmax_trains_on_word_batches_two_replicas_averaging_like_one_device(tmp_path, mirrored):
    """fewshot_loss=cosine_softmax: batches of clips over all training words; the global batch is
    split over the replicas and the update is the one-device gradient of its mean loss."""
    words = dict(fewshot_loss="cosine_softmax", margin=0.2, logit_scale=16.0)
    task, model, loop, metrics = _task(tmp_path, mirrored, False, batch_size=8, **words)
    assert task.global_batch_size == 8 and task.word_classes == 48 and model.word_head.kernel.shape[-1] == 48
    assert task.run_record()["word_classes"] == 48
    losses = loop(task.train_iterator(0), tf.constant(1)).numpy()
    # The reference: batches 0 and 1 of 4 clips (one per replica), the mean of the 8 losses, one SGD step.
    ref_task, ref, _, _ = _task(tmp_path, tf.distribute.get_strategy(), False, batch_size=4, **words)
    stream = ref_task.train_iterator(0)
    pair = [next(stream), next(stream)]
    assert pair[0][0].shape == (4, 48, 20, 1) and pair[0][1].dtype == tf.int32
    np.testing.assert_array_equal(next(ref_task.train_iterator(1))[0], pair[1][0])  # resume: batch 1 as is
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.concat([ref.word_loss(x, y, training=True)[0] for x, y in pair], 0)) / 8
    grads = tape.gradient(loss, ref.trainable_variables)
    keras.optimizers.SGD(0.05).apply_gradients(zip(grads, ref.trainable_variables))
    np.testing.assert_allclose(losses, [loss.numpy()], rtol=1e-5)
    for a, b in zip(ref.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5, err_msg=a.path)
    assert float(metrics["loss"].result()) == pytest.approx(float(loss), rel=1e-5)
    with pytest.raises(ValueError, match="batch_size 5 is not divisible by the 2 replicas"):
        _task(tmp_path, mirrored, False, batch_size=5, **words)


def test_splice_words_trains_over_pseudo_words_of_every_pair_of_training_words(tmp_path):
    """splice_words: the classifier has a class per (start word, end word), batches carry them, and
    batch i is still a pure function of the seed and i (exact resume)."""
    words = dict(fewshot_loss="cosine_softmax", batch_size=16, splice_words=0.5)
    task, model, loop, _ = _task(tmp_path, tf.distribute.get_strategy(), False, **words)
    assert task.word_classes == 48 * 48 and model.word_head.kernel.shape[-1] == 48 * 48
    assert task.run_record()["word_classes"] == 48 * 48
    batches = [next(task.train_iterator(step)) for step in range(3)]
    classes = np.concatenate([y.numpy() for _, y in batches])
    spliced = classes // 48 != classes % 48
    assert 0.3 < spliced.mean() < 0.7 and classes.max() < 48 * 48
    stream = task.train_iterator(0)
    for features, labels in batches:
        again = next(stream)
        np.testing.assert_array_equal(again[0], features)
        np.testing.assert_array_equal(again[1], labels)
    assert np.isfinite(loop(task.train_iterator(0), tf.constant(2)).numpy()).all()


def test_context_words_surround_training_words_and_keep_batches_a_function_of_the_seed(tmp_path):
    """context_words (clip_augment.ContextWords): the classes stay the words, batches change, and
    batch i is still a pure function of the seed and i (exact resume)."""
    plain = _task(tmp_path / "plain", tf.distribute.get_strategy(), False, fewshot_loss="cosine_softmax",
                  batch_size=16)[0]
    task, _, loop, _ = _task(tmp_path / "ctx", tf.distribute.get_strategy(), False, fewshot_loss="cosine_softmax",
                             batch_size=16, context_words=0.5)
    assert task.word_classes == plain.word_classes == 48
    first, again, before = next(task.train_iterator(3)), next(task.train_iterator(3)), next(plain.train_iterator(3))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], before[1])  # the same words drawn, with the same classes
    # (The synthetic chirps fill their clips: no room for neighbours, so the features are the same;
    # what surrounding does is tests/test_audio.py's.)
    assert isinstance(task.splicer, clip_augment.ContextWords) and task.splicer.probability == 0.5
    assert np.isfinite(loop(task.train_iterator(0), tf.constant(2)).numpy()).all()


def test_extra_words_dir_adds_its_words_to_the_word_classifier(tmp_path):
    """extra_words_dir: a folder of more training words (benchmarks/kws_words.py) joins the
    training words as classes of their own; the held-out speakers and words stay unheard."""
    waves, _ = audio.synthetic_keywords(4, 6, seconds=1.0)
    speakers = [f"s{i}" for i in range(6)]
    heard = [s for s in speakers if s not in audio.held_out_speakers(speakers)]
    for w, word in enumerate(("yes", "up", "dog")):
        for i, s in enumerate(speakers):
            write_wav(tmp_path / "kw" / word / f"{s}_nohash_0.wav", waves[6 * w + i])
    for i, s in enumerate(heard):
        write_wav(tmp_path / "more" / "table" / f"{s}_nohash_0.wav", waves[18 + i])
    words = dict(fewshot_loss="cosine_softmax", batch_size=8, dataset="folder", data_dir=str(tmp_path / "kw"),
                 mode="train", extra_words_dir=str(tmp_path / "more"))
    task, model, loop, _ = _task(tmp_path, tf.distribute.get_strategy(), False, **words)
    assert task.word_classes == 3 and model.word_head.kernel.shape[-1] == 3  # up, table, yes
    assert [task.train_clips.keywords[i] for i in np.unique(task.train_clips.labels)] == ["table", "up", "yes"]
    assert set(task.train_clips.speakers) == set(heard) and len(task.train_clips.labels) == 3 * len(heard)
    assert np.isfinite(loop(task.train_iterator(0), tf.constant(2)).numpy()).all()
    with pytest.raises(ValueError, match="extra_words_dir adds spoken words .* not to the synthetic chirps"):
        training.Run(fewshot_config(tmp_path, extra_words_dir=str(tmp_path / "more")))
    with pytest.raises(ValueError, match="task classify does not take extra_words_dir"):
        training.Run(TrainConfig(task="classify", dataset="synthetic", extra_words_dir=str(tmp_path / "more"),
                                 model_dir=str(tmp_path / "c")))


def test_fewshot_checks_its_inputs_before_touching_the_model_dir(tmp_path):
    with pytest.raises(ValueError, match="needs 30 classes"):
        training.Run(fewshot_config(tmp_path, n_way=30))
    with pytest.raises(ValueError, match="model 'resnet18' is trained by task 'classify', not 'fewshot'"):
        training.Run(fewshot_config(tmp_path, model="resnet18"))
    with pytest.raises(ValueError, match="^task: unknown value 'few_shot' \\(did you mean 'fewshot'\\?\\)"):
        training.Run(fewshot_config(tmp_path, task="few_shot"))
    with pytest.raises(ValueError, match="^fewshot_loss: unknown value 'cosine' \\(did you mean 'cosine_softmax'"):
        training.Run(fewshot_config(tmp_path, fewshot_loss="cosine"))
    with pytest.raises(ValueError, match="batch_size 5000 must be between 1 and the 960 training examples"):
        training.Run(fewshot_config(tmp_path, fewshot_loss="cosine_softmax", batch_size=5000))
    with pytest.raises(ValueError, match="margin must be in \\[0, 1\\)"):
        training.Run(fewshot_config(tmp_path, margin=1.5))
    with pytest.raises(ValueError, match="splice_words must be in \\[0, 1\\)"):
        training.Run(fewshot_config(tmp_path, fewshot_loss="cosine_softmax", splice_words=1.0))
    with pytest.raises(ValueError, match="splice_cut must be in \\[0, 0.5\\)"):
        training.Run(fewshot_config(tmp_path, fewshot_loss="cosine_softmax", splice_words=0.5, splice_cut=0.6))
    with pytest.raises(ValueError, match="splice_cut 0.2 has nothing to cut: set splice_words too"):
        training.Run(fewshot_config(tmp_path, fewshot_loss="cosine_softmax", splice_cut=0.2))
    with pytest.raises(ValueError, match="splice_words .* needs fewshot_loss=cosine_softmax \\(got prototypical\\)"):
        training.Run(fewshot_config(tmp_path, splice_words=0.5))
    with pytest.raises(ValueError, match="context_words must be in \\[0, 1\\)"):
        training.Run(fewshot_config(tmp_path, fewshot_loss="cosine_softmax", context_words=1.0))
    with pytest.raises(ValueError, match="context_words .* needs fewshot_loss=cosine_softmax \\(got prototypical\\)"):
        training.Run(fewshot_config(tmp_path, context_words=0.5))
    assert not (tmp_path / "run").exists()
