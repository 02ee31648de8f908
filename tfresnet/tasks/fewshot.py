"""``fewshot``: few-shot keyword spotting (``FewShotTask``): a prototypical network around the
``protores`` encoder, trained on N-way K-shot episodes (or batches of words) of some keywords and
evaluated on episodes of keywords it never saw, spoken by speakers it never heard."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

from tfresnet import models
from tfresnet.config import TrainConfig
from tfresnet.engine import steps
from tfresnet.engine.runtime import Runtime
from tfresnet.kws import audio, episodes, logmel
from tfresnet.kws import augment as clip_augment
from tfresnet.models.protores import PrototypicalNetwork
from tfresnet.tasks.base import TASKS, Metrics, Task


class FewShotTask(Task):
    """Few-shot keyword spotting: N-way K-shot episodes, one per replica per step.

    Trains a ``PrototypicalNetwork`` around the registered encoder (``protores``) on episodes of
    the training keywords spoken by the training speakers (``tfresnet.kws.audio.keyword_split``),
    with time shifts and background noise (``clip_augment.Augmentation``); episode ``i`` and its
    augmentation are pure functions of ``(seed + 2, i)``. With ``fewshot_loss=cosine_softmax`` it
    trains on batches of those clips instead, classified over all the training words
    (``PrototypicalNetwork.word_loss``), seeded the same way. While training it evaluates on
    ``eval_episodes`` fixed episodes of the validation keywords, spoken by held-out speakers;
    ``tfresnet-eval`` reports the test keywords. The exported model is the encoder:
    spectrograms to embeddings.
    """

    name = "fewshot"
    default_model = "protores"
    xla_on_cpu = True  # 1.8x (default widths) to 2.2x more episodes/s on 2 CPU cores (BENCHMARKS.md)

    def __init__(self, cfg: TrainConfig, rt: Runtime):
        super().__init__(cfg, rt)
        if cfg.eval_episodes % rt.replicas:
            raise ValueError(f"eval_episodes {cfg.eval_episodes} is not divisible by the {rt.replicas} replicas")
        self.train_clips: audio.SpokenKeywords | None = None
        self.word_labels: np.ndarray | None = None
        self.eval_clips: audio.SpokenKeywords | None = None
        self.noise: np.ndarray | None = None
        self.augmentation = clip_augment.Augmentation(cfg.time_shift, cfg.noise_probability, tuple(cfg.noise_snr_db),
                                               cfg.spec_augment, cfg.speed, cfg.formant)
        self.num_mel_bins = 20 if cfg.dataset == "synthetic" else 40  # the synthetic chirps need fewer
        self.words = cfg.fewshot_loss == "cosine_softmax"  # trains on batches of words, not episodes
        # The cosine classifier's classes: the training words, or with splice_words the pseudo-words
        # of every pair of them (clip_augment.WordSplicer).
        self.word_classes: int | None = None
        self.splicer: clip_augment.WordSplicer | None = None
        if self.words and cfg.batch_size % rt.replicas:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {rt.replicas} replicas")
        if cfg.extra_words_dir and cfg.dataset == "synthetic":
            raise ValueError("extra_words_dir adds spoken words to a spoken keyword dataset (folder or "
                             "speech_commands), not to the synthetic chirps")
        if cfg.splice_words and not self.words:
            raise ValueError("splice_words makes pseudo-words for the word classifier: it needs "
                             f"fewshot_loss=cosine_softmax (got {cfg.fewshot_loss})")
        if cfg.context_words and not self.words:
            raise ValueError("context_words surrounds the word classifier's training clips: it needs "
                             f"fewshot_loss=cosine_softmax (got {cfg.fewshot_loss})")

    def eval_split(self, training: bool) -> str:
        # The validation keywords pick the checkpoint; the test keywords are only reported.
        return self.cfg.eval_split or ("validation" if training else "test")

    def load_data(self, training: bool) -> None:
        cfg = self.cfg
        clips = audio.keyword_clips(cfg.dataset, cfg.data_dir, cfg.seed)
        train_clips = audio.split_of(clips, cfg.dataset, "train")
        if cfg.extra_words_dir:
            train_clips = audio.with_training_words(train_clips, audio.load_keyword_folder(cfg.extra_words_dir), clips)
        # Training words as 0..W-1 (the word classifier's classes; also known to evaluation, whose
        # model must hold the same variables as the checkpoint).
        words, word_labels = np.unique(train_clips.labels, return_inverse=True)
        self.word_classes = (len(words) ** 2 if cfg.splice_words else len(words)) if self.words else None
        if training:
            self.train_clips = train_clips
            self.word_labels = word_labels.astype(np.int32)
            if self.words and cfg.splice_words:
                self.splicer = clip_augment.WordSplicer(train_clips.waveforms, self.word_labels, train_clips.speakers,
                                                 cfg.splice_words, cfg.splice_cut)
            if self.words and cfg.context_words:  # around the (maybe spliced) words
                self.splicer = clip_augment.ContextWords(train_clips.waveforms, self.word_labels, train_clips.speakers,
                                                         cfg.context_words, compose=self.splicer)
        if not training or cfg.mode != "train":
            self.eval_clips = audio.split_of(clips, cfg.dataset, self.eval_split(training))
        self.noise = np.concatenate(clips.noise) if clips.noise else None
        self.input_shape = (logmel.num_frames(clips.waveforms.shape[1]), self.num_mel_bins, 1)
        self.steps_per_epoch = cfg.episodes_per_epoch
        # Fail now, not inside the input pipeline, if a split cannot make such episodes.
        if self.train_clips is not None and self.words:
            episodes.labelled_batches(self.train_clips.waveforms, self.word_labels,
                                      cfg.batch_size // self.runtime.replicas)
        elif self.train_clips is not None:
            self._sampler(self.train_clips, self.cfg.train_n_way or self.cfg.n_way)(0)
        if self.eval_clips is not None:
            self._sampler(self.eval_clips, self.cfg.n_way)(0)

    def _sampler(self, clips: audio.SpokenKeywords, n_way: int, seed: int = 0) -> episodes.EpisodeSampler:
        return episodes.EpisodeSampler(clips.labels, n_way, self.cfg.k_shot, self.cfg.n_query, clips.speaker_ids(),
                                       seed)

    def episodes(self, clips: audio.SpokenKeywords, seed: int, training: bool, start: int = 0,
                 count: int | None = None, ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Episodes of ``clips`` as features ``(support, query)``, augmented when ``training``."""
        n_way = (self.cfg.train_n_way if training else None) or self.cfg.n_way
        shards, shard = (ctx.num_input_pipelines, ctx.input_pipeline_id) if ctx else (1, 0)
        ds = episodes.episodes(clips.waveforms, clips.labels, n_way, self.cfg.k_shot, self.cfg.n_query, count,
                               seed=seed, start=start, num_shards=shards, shard=shard,
                               speakers=clips.speaker_ids(), with_index=True)
        augmentation = self.augmentation if training else None
        noise = tf.constant(self.noise) if training and self.noise is not None else None
        bins = self.num_mel_bins

        def featurize(index, support, query):
            shape = tf.shape(support)
            both = tf.concat([tf.reshape(support, [-1, shape[-1]]), tf.reshape(query, [-1, shape[-1]])], 0)
            feats = clip_augment.augmented_features(both, augmentation, noise, tf.stack([tf.cast(seed, tf.int64), index]),
                                             bins)
            cut = shape[0] * shape[1]
            return (tf.reshape(feats[:cut], tf.concat([shape[:2], tf.shape(feats)[1:]], 0)),
                    tf.reshape(feats[cut:], tf.concat([[shape[0], -1], tf.shape(feats)[1:]], 0)))

        return ds.map(featurize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def word_batches(self, seed: int, start: int, ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Augmented training clips as features with their class, ``batch_size`` a step: the word
        (0..W-1), or with ``splice_words`` the pseudo-word (0..W*W-1, ``clip_augment.WordSplicer``)."""
        shards, shard = (ctx.num_input_pipelines, ctx.input_pipeline_id) if ctx else (1, 0)
        ds = episodes.labelled_batches(self.train_clips.waveforms, self.word_labels,
                                       self.cfg.batch_size // self.runtime.replicas, seed, start, shards, shard,
                                       compose=self.splicer)
        noise = tf.constant(self.noise) if self.noise is not None else None

        def featurize(index, waveforms, labels):
            seeds = tf.stack([tf.cast(seed, tf.int64), index])
            return clip_augment.augmented_features(waveforms, self.augmentation, noise, seeds, self.num_mel_bins), labels

        return ds.map(featurize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def train_iterator(self, start_step: int) -> Iterator:
        # Step s trains on episodes (or batches) s*R ... s*R + R-1 (R replicas): resuming generates
        # nothing before them.
        start = start_step * self.runtime.replicas
        if self.words:
            return iter(self.runtime.distribute(lambda ctx: self.word_batches(self.cfg.seed + 2, start, ctx)))
        return iter(self.runtime.distribute(
            lambda ctx: self.episodes(self.train_clips, self.cfg.seed + 2, True, start, ctx=ctx)))

    def eval_batches(self) -> Iterable:
        return self.runtime.distribute(
            lambda ctx: self.episodes(self.eval_clips, self.cfg.seed + 1, False, count=self.cfg.eval_episodes,
                                      ctx=ctx))

    def build_model(self, pretrained: bool = True) -> keras.Model:
        cfg = self.cfg
        encoder = models.create_model(self.model_name, input_shape=self.input_shape, **cfg.model_options)
        net = PrototypicalNetwork(encoder, metric=cfg.metric, classes=self.word_classes, logit_scale=cfg.logit_scale,
                                  margin=cfg.margin, name=f"{self.model_name}_prototypical")
        net.build_word_head(self.input_shape)
        return net

    def build_metrics(self, training: bool) -> dict[str, keras.metrics.Metric]:
        prefix = "train" if training else "test"
        return {"loss": keras.metrics.Mean(name=f"{prefix}_loss"),
                "accuracy": keras.metrics.Mean(name=f"{prefix}_accuracy")}

    def run_record(self) -> dict[str, Any]:
        # A word classifier's variables are in the checkpoints: its classes are part of the model.
        return {**super().run_record(), **({"word_classes": self.word_classes} if self.words else {})}

    @property
    def global_batch_size(self) -> int:
        return self.cfg.batch_size if self.words else self.runtime.replicas  # clips, or episodes, per step

    def forward(self, model: keras.Model) -> steps.Forward:
        def forward(batch, training):
            if training and self.words:  # per-clip losses and hits over the training words
                features, labels = batch
                return model.word_loss(features, labels, training=True)
            support, query = batch
            loss, accuracy = model(support, query, training=training)
            return loss[None], accuracy  # one episode: a batch of one loss

        return forward

    def metrics_update(self, metrics: Metrics) -> steps.UpdateMetrics:
        def update(batch, per_example, accuracy):  # per episode, or per clip (cosine_softmax)
            metrics["loss"].update_state(per_example)
            metrics["accuracy"].update_state(accuracy)

        return update

    def _shape(self) -> str:
        return f"{self.cfg.n_way}-way {self.cfg.k_shot}-shot"

    @property
    def eval_note(self) -> str:
        return f" ({self._shape()}, {self.eval_split(True)} keywords)"

    def eval_line(self, step: int, results: Mapping[str, float]) -> str:
        return (f"Eval {self.eval_split(False)} keywords at step {step}: loss: {results['loss']:.4f}, accuracy: "
                f"{results['accuracy'] * 100:.2f}% ({self._shape()}, {self.cfg.eval_episodes} episodes, held-out "
                "speakers)")

    def export_model(self, model: keras.Model) -> keras.Model:
        return model.encoder


TASKS.register("fewshot", FewShotTask)
