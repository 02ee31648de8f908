"""``classify``: images to labels (``ClassificationTask``): MNIST, CIFAR, ImageNet, folders, ``.npz``,
shards, synthetic data; from scratch or from pretrained weights."""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, Iterable, Iterator, Mapping

import keras
import numpy as np
import tensorflow as tf

from tfresnet import data, models, weights
from tfresnet.config import TrainConfig
from tfresnet.engine import checkpoints, report, serving, steps
from tfresnet.engine.runtime import Runtime
from tfresnet.tasks.base import TASKS, Metrics, Task
from tfresnet.weights.preprocessing import Preprocessing


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
        # What the pipelines hand the steps, decided from the model's spec before anything is built:
        # uint8 pixels to a model that normalises them itself (it takes a preprocessing record, which
        # build_model gives it), float32 inputs normalised on the host otherwise.
        self.image_dtype = "uint8" if models.accepts_option(self.model_name, "preprocessing") else "float32"
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
        # Arrays of one image size (npz, MNIST, CIFAR): image_size cannot change them.
        arrays = cfg.dataset == "npz" or (cfg.dataset in data.RECIPES and data.RECIPES[cfg.dataset].in_memory)
        if cfg.image_size and arrays:
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
        return self.runtime.distribute(self.eval_dataset)

    def eval_dataset(self, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """One input pipeline's evaluation batches ``(images, labels, weights)``, padded to whole
        batches (weight 0 for the padding): one shape, one compiled test step."""
        return data.make_dataset(self.eval_source, self.cfg.eval_batch_size, training=False,
                                 input_context=input_context, preprocessing=self.preprocessing,
                                 bad_images=self.cfg.bad_images, image_dtype=self.image_dtype, pad_eval=True)

    def build_model(self, pretrained: bool = True) -> keras.Model:
        options = dict(self.cfg.model_options)
        if self.cfg.drop_path_rate:  # create_model names the models that do not take it
            options["drop_path_rate"] = self.cfg.drop_path_rate
        source = self.train_source or self.eval_source
        # Every trained model records its preprocessing, so its model.keras can be fine-tuned or served,
        # and normalises its uint8 inputs with it on the device.
        if models.accepts_option(self.model_name, "preprocessing"):
            if source is None:
                options["preprocessing"] = data.synthetic_preprocessing(self.input_shape[-1], self.input_shape[0])
            else:  # with the view of the evaluation, so that a model.keras alone can be served
                options["preprocessing"] = dataclasses.replace(self.preprocessing or source.recipe.preprocessing,
                                                               eval_view=source.recipe.eval_view)
        # The class names travel in model.keras (and run.json, and the SavedModel's answers).
        if models.accepts_option(self.model_name, "class_names"):
            options["class_names"] = self.class_names
        return models.create_model(self.model_name, num_classes=self.num_classes, input_shape=self.input_shape,
                                   pretrained=self.cfg.pretrained if pretrained else None, **options)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each label of the data (``class_0 ...`` for synthetic data and bare arrays)."""
        source = self.train_source or self.eval_source
        return source.label_names if source is not None else weights.classes.numbered(self.num_classes)

    def run_record(self) -> dict[str, Any]:
        # The preprocessing is part of the model: evaluating or resuming with another would be wrong;
        # so are other classes (a folder with a class renamed, another --classes).
        return {**super().run_record(), "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
                "class_names": list(self.class_names)}

    def export(self, model: keras.Model, model_dir: str) -> None:
        """``model.keras`` (its config holds the preprocessing record) and a SavedModel whose
        ``serving_default`` takes raw uint8 images of any size and returns probabilities."""
        model.save(os.path.join(model_dir, "model.keras"))
        source = self.eval_source or self.train_source
        # Synthetic data has no pixels to describe: only the float endpoint is exported then.
        preprocess = source and (lambda images: data.serving_images(images, source.recipe, self.preprocessing))
        serving.export_classifier(model, os.path.join(model_dir, "saved_model"), preprocess, self.input_shape,
                                  self.class_names)

    def make_report(self, model: keras.Model) -> report.Report:
        """The evaluation split through ``model`` once more, gathered into a ``report.Report``: the same
        batches (padding left out) and logits as the evaluation, so its top-1 is the one printed."""
        if self.eval_source is None:
            raise ValueError(f"dataset {self.cfg.dataset!r} has nothing to report on; name a real dataset")
        builder = report.ReportBuilder(self.class_names)
        logits_of = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32),
                                jit_compile=self.runtime.jit_compile)
        preprocessing = self.preprocessing or self.eval_source.recipe.preprocessing
        for images, labels, batch_weights in self.eval_dataset():
            pixels = images if images.dtype == tf.uint8 else preprocessing.pixels(images)
            builder.update(pixels.numpy(), labels.numpy(), np.asarray(logits_of(images)), batch_weights.numpy())
        return builder.result()

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


TASKS.register("classify", ClassificationTask)
