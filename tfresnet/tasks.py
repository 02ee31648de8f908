"""Tasks: what differs between kinds of training, behind one interface the engine drives.

A task (after Model Garden's ``base_task.Task``) supplies the model, the inputs, the forward pass
of a batch and the metrics; the step factories (``tfresnet.steps``), the controller
(``tfresnet.loop``), its actions and the checkpoints are the same for every task. Two are built in:

* ``classify``: images to labels (``ClassificationTask``): MNIST, CIFAR, ImageNet, folders,
  ``.npz``, synthetic.
* ``fewshot``: few-shot keyword spotting (``FewShotTask``): a prototypical network around the
  ``protores`` encoder, trained on N-way K-shot episodes of some keywords and evaluated on
  episodes of keywords it never saw.

A new task subclasses ``Task`` and is one entry in ``TASKS``.
"""

from __future__ import annotations

import abc
import itertools
import os
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

from tfresnet import audio, checkpoints, data, episodes, models, serving, steps, weights
from tfresnet.config import TrainConfig
from tfresnet.preprocessing import Preprocessing
from tfresnet.protores import PrototypicalNetwork
from tfresnet.registry import Registry
from tfresnet.runtime import Runtime

Metrics = Mapping[str, keras.metrics.Metric]
# Datasets held as arrays of one image size, which image_size cannot change.
RECIPES_FIXED = {name: recipe.in_memory for name, recipe in data.RECIPES.items()}


class Task(abc.ABC):
    """One kind of training. Built from the run's config and runtime; ``load_data`` comes first.

    After ``load_data``: ``input_shape``, ``num_classes`` (None for encoders), and when training
    ``steps_per_epoch`` and ``total_steps``.

    Args:
        cfg: The run's configuration.
        rt: The run's strategy, XLA and precision.
    """

    name: ClassVar[str]
    default_model: ClassVar[str]
    # XLA by default on CPU too (it always is on GPU/TPU): only where it measured faster there.
    xla_on_cpu: ClassVar[bool] = False

    def __init__(self, cfg: TrainConfig, rt: Runtime):
        self.cfg, self.runtime = cfg, rt
        self.model_name = cfg.model or self.default_model
        self.input_shape: tuple[int, ...] = ()
        self.num_classes: int | None = None
        self.steps_per_epoch = 0

    @property
    def total_steps(self) -> int:
        return self.cfg.train_steps or self.cfg.epochs * self.steps_per_epoch

    # -- data ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def load_data(self, training: bool) -> None:
        """Finds the examples: the training split (and the evaluation split unless
        ``mode=train``) when ``training``, only the evaluation split otherwise."""

    @abc.abstractmethod
    def train_iterator(self, start_step: int) -> Iterator:
        """Distributed training batches from ``start_step`` on: the ones an uninterrupted run sees."""

    @abc.abstractmethod
    def eval_batches(self) -> Iterable:
        """One pass of distributed evaluation batches."""

    # -- model and steps -----------------------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self, pretrained: bool = True) -> keras.Model:
        """The trained model (call inside ``Runtime.scope()``); ``pretrained=False`` skips loading
        pretrained weights (evaluation restores a checkpoint over them anyway)."""

    @abc.abstractmethod
    def build_metrics(self, training: bool) -> dict[str, keras.metrics.Metric]:
        """Metric objects of the training or the evaluation phase (inside ``Runtime.scope()``)."""

    @property
    @abc.abstractmethod
    def global_batch_size(self) -> int:
        """Examples (or episodes) per step over all replicas: the loss divisor."""

    @abc.abstractmethod
    def forward(self, model: keras.Model) -> steps.Forward:
        """``forward(batch, training) -> (per-example losses, outputs)``."""

    @abc.abstractmethod
    def metrics_update(self, metrics: Metrics) -> steps.UpdateMetrics:
        """``update(batch, per-example losses, outputs)`` of ``metrics``."""

    def make_train_loop(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, metrics: Metrics):
        """``train_loop(iterator, n)``: ``steps.make_train_loop`` on this task's forward pass."""
        return steps.make_train_loop(model, optimizer, self.forward(model), self.metrics_update(metrics),
                                     self.global_batch_size, self.runtime.strategy, self.runtime.jit_compile)

    def make_evaluator(self, model: keras.Model, metrics: Metrics) -> Callable[[], dict[str, float]]:
        """``evaluate() -> {metric: value}``: one pass over ``eval_batches`` from reset metrics."""
        step = steps.make_eval_step(self.forward(model), self.metrics_update(metrics), self.runtime.strategy,
                                    self.runtime.jit_compile)

        def evaluate() -> dict[str, float]:
            for metric in metrics.values():
                metric.reset_state()
            for batch in self.eval_batches():
                step(batch)
            return {name: float(m.result()) for name, m in metrics.items()}

        return evaluate

    # -- records, lines and export -------------------------------------------------------------------

    def run_record(self) -> dict[str, Any]:
        """What ``run.json`` holds: a model directory never mixes checkpoints of two models."""
        return {"task": self.name, "model": self.model_name, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "model_options": dict(self.cfg.model_options)}

    # What the test figures of the epoch line are about, e.g. " (5-way 1-shot, held-out keywords)".
    eval_note = ""

    def epoch_line(self, epoch: int, results: Mapping[str, float]) -> str:
        """The line printed after each epoch (``results``: train metrics and ``test_*``)."""
        line = f"Epoch {epoch}, Loss: {results['loss']:.4f}, Accuracy: {results['accuracy'] * 100:.2f}"
        if "test_loss" in results:
            line += (f", Test Loss: {results['test_loss']:.4f}, Test Accuracy: {results['test_accuracy'] * 100:.2f}"
                     + self.eval_note)
        if "test_raw_accuracy" in results:  # --ema: the figures above are of the averaged weights
            line += f" (EMA weights; raw weights: {results['test_raw_accuracy'] * 100:.2f})"
        return line

    @abc.abstractmethod
    def eval_line(self, step: int, results: Mapping[str, float]) -> str:
        """The line ``tfresnet-eval`` prints."""

    def export_model(self, model: keras.Model) -> keras.Model:
        """The model that is exported (the trained one by default)."""
        return model

    def export(self, model: keras.Model, model_dir: str) -> None:
        """Writes ``model.keras`` and a serving SavedModel (``saved_model/``) to ``model_dir``."""
        exported = self.export_model(model)
        exported.save(os.path.join(model_dir, "model.keras"))
        exported.export(os.path.join(model_dir, "saved_model"), verbose=False)


class ClassificationTask(Task):
    """Image classification: ``(images, labels)`` batches, cross-entropy, top-1/top-5 accuracy."""

    name = "classify"
    default_model = "mnist_resnet"

    def __init__(self, cfg: TrainConfig, rt: Runtime):
        super().__init__(cfg, rt)
        for field in ("batch_size", "eval_batch_size"):
            if getattr(cfg, field) % rt.replicas:
                raise ValueError(f"{field} {getattr(cfg, field)} is not divisible by the {rt.replicas} replicas")
        self.train_source = self.eval_source = None
        # What the pipelines hand the steps: uint8 pixels when the model normalises them itself
        # (build_model decides), float32 inputs normalised on the host otherwise.
        self.image_dtype = "float32"
        self.loss_fn = steps.make_loss(cfg.label_smoothing)
        # What the pretrained weights expect of their inputs; None: the dataset's own normalisation.
        self.preprocessing: Preprocessing | None = (
            weights.find(self.model_name, cfg.pretrained).preprocessing if cfg.pretrained else None)

    def load_data(self, training: bool) -> None:
        cfg = self.cfg
        if not training and self.preprocessing is None:
            # Evaluating a fine-tuned run: its preprocessing is in its run record.
            record = (checkpoints.read_run_record(cfg.model_dir) or {}).get("preprocessing")
            self.preprocessing = record and Preprocessing.from_dict(record)
        # A fine-tuning run sees images at the size its weights were trained at, unless told otherwise.
        image_size = cfg.image_size or (self.preprocessing.input_size if self.preprocessing else None)
        if cfg.dataset == "synthetic":
            if not training:
                raise ValueError("dataset 'synthetic' has nothing to evaluate on; name a real dataset")
            spec = models.model_spec(self.model_name)
            self.input_shape = ((image_size, image_size, spec.input_shape[2]) if image_size else spec.input_shape)
            self.num_classes = spec.num_classes
            self.steps_per_epoch = cfg.train_steps or 100
            return
        if cfg.image_size and (RECIPES_FIXED.get(cfg.dataset) or cfg.dataset == "npz"):
            raise ValueError(f"image_size does not apply to dataset {cfg.dataset}: its images are arrays of one "
                             "size (image_size sizes folders, shards, imagenette, imagenet2012 and synthetic data)")
        if training:
            self.train_source = data.load_source(cfg.dataset, cfg.train_split, cfg.data_dir, image_size, cfg.classes,
                                                 cfg.examples_per_class, cfg.seed)
        if not training or cfg.mode != "train":
            self.eval_source = data.load_source(cfg.dataset, cfg.eval_split or "test", cfg.data_dir, image_size,
                                               cfg.classes)
        source = self.train_source or self.eval_source
        self.input_shape, self.num_classes = source.recipe.image_shape, source.num_classes
        if training:
            data.check_classes(self.train_source)
            self.steps_per_epoch = self.train_source.steps_per_epoch(cfg.batch_size)
            if self.steps_per_epoch == 0:
                raise ValueError(f"batch_size {cfg.batch_size} is larger than the {self.train_source.num_examples} "
                                 f"examples of {cfg.dataset} {cfg.train_split}")

    def train_iterator(self, start_step: int) -> Iterator:
        cfg = self.cfg
        if cfg.dataset == "synthetic":
            dist = self.runtime.distribute(
                lambda ctx: data.synthetic(self.input_shape, self.num_classes, cfg.batch_size, cfg.seed, ctx,
                                           cfg.mixup, cfg.cutmix, self.image_dtype))
            # Keep one batch on the device(s) and reuse it: no host-to-device copy per step.
            return itertools.repeat(next(iter(dist)))
        # Arrays, files and shards keep a fixed element order (cheap), which exact resume relies on.
        ordered = self.train_source.stream is None
        return iter(self.runtime.distribute(
            lambda ctx: data.make_dataset(self.train_source, cfg.batch_size, training=True, seed=cfg.seed,
                                          start_step=start_step, input_context=ctx, augment=cfg.augment,
                                          deterministic=cfg.deterministic or ordered,
                                          preprocessing=self.preprocessing, bad_images=cfg.bad_images,
                                          data_service=cfg.data_service, mixup=cfg.mixup, cutmix=cfg.cutmix,
                                          randaugment=(cfg.randaugment_ops, cfg.randaugment_magnitude),
                                          image_dtype=self.image_dtype)))

    def eval_batches(self) -> Iterable:
        if self.cfg.dataset == "synthetic":  # one batch of other random images: times the test step
            return self.runtime.distribute(
                lambda ctx: data.synthetic(self.input_shape, self.num_classes, self.cfg.batch_size,
                                           self.cfg.seed + 1, ctx, image_dtype=self.image_dtype).take(1))
        # Padded to whole batches (weight 0 for the padding): one shape, one compiled test step.
        return self.runtime.distribute(
            lambda ctx: data.make_dataset(self.eval_source, self.cfg.eval_batch_size, training=False,
                                          input_context=ctx, preprocessing=self.preprocessing,
                                          bad_images=self.cfg.bad_images, image_dtype=self.image_dtype,
                                          pad_eval=True))

    def build_model(self, pretrained: bool = True) -> keras.Model:
        options = dict(self.cfg.model_options)
        if self.cfg.drop_path_rate:  # create_model names the models that do not take it
            options["drop_path_rate"] = self.cfg.drop_path_rate
        source = self.train_source or self.eval_source
        # Every trained model records its preprocessing, so its model.keras can be fine-tuned or served,
        # and normalises its uint8 inputs with it on the device.
        if models.accepts_option(self.model_name, "preprocessing"):
            options["preprocessing"] = self.preprocessing or (
                source.recipe.preprocessing if source is not None
                else data.synthetic_preprocessing(self.input_shape[-1], self.input_shape[0]))
        model = models.create_model(self.model_name, num_classes=self.num_classes, input_shape=self.input_shape,
                                    pretrained=self.cfg.pretrained if pretrained else None, **options)
        self.image_dtype = "uint8" if getattr(model, "takes_uint8", False) else "float32"
        return model

    def run_record(self) -> dict[str, Any]:
        # The preprocessing is part of the model: evaluating or resuming with another would be wrong.
        return {**super().run_record(), "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None}

    def export(self, model: keras.Model, model_dir: str) -> None:
        """``model.keras`` (its config holds the preprocessing record) and a SavedModel whose
        ``serving_default`` takes raw uint8 images of any size and returns probabilities."""
        model.save(os.path.join(model_dir, "model.keras"))
        source = self.eval_source or self.train_source
        # Synthetic data has no pixels to describe: only the float endpoint is exported then.
        preprocess = source and (lambda images: data.serving_images(images, source.recipe, self.preprocessing))
        serving.export_classifier(model, os.path.join(model_dir, "saved_model"), preprocess, self.input_shape)

    def build_metrics(self, training: bool) -> dict[str, keras.metrics.Metric]:
        return steps.make_metrics("train" if training else "test", top5=not training and self.num_classes > 5)

    @property
    def global_batch_size(self) -> int:
        return self.cfg.batch_size

    def forward(self, model: keras.Model) -> steps.Forward:
        return steps.classifier_forward(model, self.loss_fn)

    def metrics_update(self, metrics: Metrics) -> steps.UpdateMetrics:
        return steps.classifier_metrics_update(metrics)

    def eval_line(self, step: int, results: Mapping[str, float]) -> str:
        # Percent, as the epoch lines print accuracies; the loss as it is.
        metrics = ", ".join(f"{k}: {v:.4f}" if k == "loss" else f"{k}: {v * 100:.2f}%" for k, v in results.items())
        return f"Eval {self.cfg.eval_split or 'test'} at step {step}: {metrics}"


class FewShotTask(Task):
    """Few-shot keyword spotting: N-way K-shot episodes, one per replica per step.

    Trains a ``PrototypicalNetwork`` around the registered encoder (``protores``) on episodes of
    the training keywords spoken by the training speakers (``tfresnet.audio.keyword_split``),
    with time shifts and background noise (``audio.Augmentation``); episode ``i`` and its
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
        self.augmentation = audio.Augmentation(cfg.time_shift, cfg.noise_probability, tuple(cfg.noise_snr_db),
                                               cfg.spec_augment, cfg.speed, cfg.formant)
        self.num_mel_bins = 20 if cfg.dataset == "synthetic" else 40  # the synthetic chirps need fewer
        self.words = cfg.fewshot_loss == "cosine_softmax"  # trains on batches of words, not episodes
        # The cosine classifier's classes: the training words, or with splice_words the pseudo-words
        # of every pair of them (audio.WordSplicer).
        self.word_classes: int | None = None
        self.splicer: audio.WordSplicer | None = None
        if self.words and cfg.batch_size % rt.replicas:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {rt.replicas} replicas")
        if cfg.extra_words_dir and cfg.dataset == "synthetic":
            raise ValueError("extra_words_dir adds spoken words to a spoken keyword dataset (folder or "
                             "speech_commands), not to the synthetic chirps")
        if cfg.splice_words and not self.words:
            raise ValueError("splice_words makes pseudo-words for the word classifier: it needs "
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
                self.splicer = audio.WordSplicer(train_clips.waveforms, self.word_labels, train_clips.speakers,
                                                 cfg.splice_words, cfg.splice_cut)
        if not training or cfg.mode != "train":
            self.eval_clips = audio.split_of(clips, cfg.dataset, self.eval_split(training))
        self.noise = np.concatenate(clips.noise) if clips.noise else None
        self.input_shape = (audio.num_frames(clips.waveforms.shape[1]), self.num_mel_bins, 1)
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
            feats = audio.augmented_features(both, augmentation, noise, tf.stack([tf.cast(seed, tf.int64), index]),
                                             bins)
            cut = shape[0] * shape[1]
            return (tf.reshape(feats[:cut], tf.concat([shape[:2], tf.shape(feats)[1:]], 0)),
                    tf.reshape(feats[cut:], tf.concat([[shape[0], -1], tf.shape(feats)[1:]], 0)))

        return ds.map(featurize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def word_batches(self, seed: int, start: int, ctx: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """Augmented training clips as features with their class, ``batch_size`` a step: the word
        (0..W-1), or with ``splice_words`` the pseudo-word (0..W*W-1, ``audio.WordSplicer``)."""
        shards, shard = (ctx.num_input_pipelines, ctx.input_pipeline_id) if ctx else (1, 0)
        ds = episodes.labelled_batches(self.train_clips.waveforms, self.word_labels,
                                       self.cfg.batch_size // self.runtime.replicas, seed, start, shards, shard,
                                       compose=self.splicer)
        noise = tf.constant(self.noise) if self.noise is not None else None

        def featurize(index, waveforms, labels):
            seeds = tf.stack([tf.cast(seed, tf.int64), index])
            return audio.augmented_features(waveforms, self.augmentation, noise, seeds, self.num_mel_bins), labels

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


TASKS: Registry[type[Task]] = Registry("task")
TASKS.register("classify", ClassificationTask)
TASKS.register("fewshot", FewShotTask)
