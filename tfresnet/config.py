"""Training configuration: ``TrainConfig``, one frozen dataclass made of sections, validated when made.

Each section (``DataOptions``, ``OptimOptions``, ``RuntimeOptions``, ``FewShotOptions``, ...) holds
the options of one part of a run and checks them (``check_section``); ``TrainConfig`` inherits
them all, so the options stay flat (``TrainConfig(dataset=..., batch_size=...)``, one flag each).
Each field carries its one help text (``option(default, help)``), from which ``tfresnet.cli``
builds its flag and ``--help``, grouped by section (``SECTIONS``). Comments say why a default is
what it is.

Only what needs no TensorFlow is checked here (numbers, the engine's own choices: precision,
strategy, mode, and ``OPTION_SCOPES``: options the chosen task, optimizer or schedule does not
read). Names looked up in tables (model, task, optimizer, lr_schedule, augment) are checked
against those tables by ``tfresnet.training.check_names`` before a run touches anything, so a new
table entry never has to be added here as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from tfresnet.core.errors import BadInput
from tfresnet.core.registry import unknown_name

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "auto", "one_device", "mirrored", "multi_worker", "tpu")
MODES = ("train", "eval", "train_and_eval")
FEWSHOT_LOSSES = ("prototypical", "cosine_softmax")
# How few-shot queries are compared with prototypes (protores.PrototypicalNetwork, episodes).
METRICS = ("euclidean", "cosine")
KEEP_BEST_BY = ("accuracy", "loss")
# What the input pipeline does with an image that does not decode (tfresnet.data.decode).
BAD_IMAGES = ("fail", "skip")


def _choice(field: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise unknown_name(field, value, list(options))


# Options only some choices read: (options, the field that chooses, the choices that read them;
# None: any true value of that field). Set to anything but their default under another choice they
# would be ignored without a word, so TrainConfig refuses them, naming both (one rule for all).
_FEWSHOT_ONLY = ("n_way", "k_shot", "n_query", "episodes_per_epoch", "eval_episodes", "train_n_way", "fewshot_loss",
                 "logit_scale", "margin", "splice_words", "splice_cut", "context_words",
                 "extra_words_dir", "metric", "time_shift",
                 "noise_probability", "noise_snr_db", "spec_augment", "speed", "formant")
_CLASSIFY_ONLY = ("pretrained", "freeze_backbone_epochs", "backbone_lr_scale", "classes", "examples_per_class",
                  "image_size", "augment", "bad_images", "data_service", "mixup", "cutmix", "randaugment_ops",
                  "randaugment_magnitude", "ema", "ema_warmup", "drop_path_rate", "label_smoothing", "report")
OPTION_SCOPES: tuple[tuple[tuple[str, ...], str, tuple[str, ...] | None], ...] = (
    (_FEWSHOT_ONLY, "task", ("fewshot",)),
    (_CLASSIFY_ONLY, "task", ("classify",)),
    (("momentum", "nesterov"), "optimizer", ("sgd",)),
    (("lr_boundaries", "lr_decay"), "lr_schedule", ("piecewise",)),
    (("warmup_steps",), "lr_schedule", ("piecewise", "cosine", "onecycle")),
    (("ema_warmup",), "ema", None),
    (("randaugment_magnitude",), "randaugment_ops", None),
)  # not keep_best_by: recipes set it, and --nokeep_best for a short --mode=train run must still work


# The built-in names of the fields OPTION_SCOPES chooses by (tests/test_config.py checks them against
# their tables). A name registered by a user (an optimizer reading cfg.momentum, say) may read any
# option, and an unknown name is reported as unknown by the table: the rule leaves both alone.
BUILT_IN = {"task": ("classify", "fewshot"), "optimizer": ("adam", "adamw", "sgd"),
            "lr_schedule": ("constant", "cosine", "onecycle", "piecewise")}


def _check_scopes(cfg: "TrainConfig") -> None:
    """Refuses an option set for a choice that does not read it (``OPTION_SCOPES``)."""
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cfg)}
    for options, field, choices in OPTION_SCOPES:
        chosen = getattr(cfg, field)
        if choices is not None and chosen not in BUILT_IN[field]:
            continue
        if chosen in choices if choices is not None else bool(chosen):
            continue
        given = [o for o in options if getattr(cfg, o) != defaults[o]]
        if not given:
            continue
        if choices is None:
            raise BadInput(f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect without {field} "
                           f"(got {field}={chosen!r}); set {field} or drop {', '.join(given)}")
        raise BadInput(f"{field} {chosen} does not take {', '.join(given)} (options of {field} {' or '.join(choices)})")


def option(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - absl's word
    """A ``TrainConfig`` field with its one help text, which ``tfresnet.cli`` turns into its flag."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _positive(section, *fields: str, optional: bool = False) -> None:
    for field in fields:
        value = getattr(section, field)
        if not (optional and value is None) and value <= 0:
            raise ValueError(f"{field} must be positive, got {value}")


def _not_negative(section, *fields: str) -> None:
    for field in fields:
        if getattr(section, field) < 0:
            raise ValueError(f"{field} must be >= 0, got {getattr(section, field)}")



@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """Task and model: what is trained."""

    TITLE: ClassVar[str] = "Task and model"

    task: str = option("classify", "What to train, a name in tfresnet.tasks.TASKS: classify (images), fewshot "
                                   "(keyword spotting).")
    model: str | None = option(None, "Model name (tfresnet.list_models()); default: the task's own (mnist_resnet, "
                                     "protores).")
    model_options: dict[str, Any] = option(help="Model constructor options as key=value (JSON values), "
                                                "comma-separated, e.g. zero_init_residual=true or widths=[8,12,16].",
                                           factory=dict)

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        return


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Data: what it is trained and evaluated on, and how images are read."""

    TITLE: ClassVar[str] = "Data"

    dataset: str = option("mnist", "mnist, fashion_mnist, cifar10, cifar100, imagenette, imagenet2012, folder, npz, "
                                   "shards or synthetic.")
    data_dir: str | None = option(None, "TFDS data dir (local or gs://), the .npz file, the image folder, or the "
                                        "shard folder (local or gs://, written by tfresnet-shards).")
    train_split: str = option("train", "Training split; TFDS slicing allowed, e.g. train[:2000].")
    # Few-shot: the validation keywords pick the checkpoint; the test keywords are only reported.
    eval_split: str | None = option(None, "Evaluation split (default test). Few-shot: validation or test keywords "
                                          "(default: validation while training, test in tfresnet-eval).")
    image_size: int | None = option(None, "Image side for ImageNet-style and folder datasets.")
    classes: tuple[int, ...] = option((), "Train and evaluate on these labels only, relabelled 0..n-1 in this order, "
                                          "e.g. 5,6,7,8,9 (a folder's classes are its sorted sub-folders).")
    # Few-shot and transfer studies.
    examples_per_class: int | None = option(None, "Keep this many training examples of each class, drawn with --seed.")
    augment: str | None = option(None, "Training augmentation, a name in tfresnet.data.augment.AUGMENTATIONS "
                                       "(default: the dataset's).")
    # Big datasets hold a few broken files: "skip" fills their places within the batch.
    bad_images: str = option("fail", "An image file or record that does not decode: fail (a one-line error naming it) "
                                     "or skip (a warning; another image of the batch takes its place, so resume stays "
                                     "exact).")
    # For more decoding CPUs than this host has.
    data_service: str | None = option(None, "host:port of a tf.data service dispatcher: run reading, decoding and "
                                            "augmentation on its workers. Exact resume is given up (a resumed run "
                                            "starts at its epoch, not its exact batch).")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        _choice("bad_images", self.bad_images, BAD_IMAGES)
        _positive(self, "image_size", "examples_per_class", optional=True)


@dataclasses.dataclass(frozen=True)
class FineTuneOptions:
    """Fine-tuning (task classify): starting from pretrained weights."""

    TITLE: ClassVar[str] = "Fine-tuning (task classify)"

    # Transfer learning (classify only). The weights' preprocessing record replaces the dataset's
    # normalisation everywhere: the features were learnt on inputs normalised that way.
    pretrained: str | None = option(None, "Start from pretrained weights: a source of the model (imagenet, "
                                          "torchvision, timm) or a .pth/.pt/.bin/.safetensors state dict. Other class "
                                          "counts get a fresh head; the weights' preprocessing is applied to the "
                                          "data.")
    # A random head's first gradients would wreck the pretrained features.
    freeze_backbone_epochs: int = option(0, "Train only the classifier head for the first N epochs (BatchNorm "
                                            "statistics frozen too); N >= epochs trains a linear probe.")
    # Pretrained features need smaller steps than a fresh classifier.
    backbone_lr_scale: float = option(1.0, "The backbone's learning rate as a fraction of the head's, e.g. 0.1 when "
                                           "fine-tuning.")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        if not self.backbone_lr_scale > 0:
            raise ValueError(f"backbone_lr_scale must be positive, got {self.backbone_lr_scale}")
        _not_negative(self, "freeze_backbone_epochs")


@dataclasses.dataclass(frozen=True)
class LengthOptions:
    """Length: how long, in how big steps."""

    TITLE: ClassVar[str] = "Length"

    epochs: int = option(10, "Training epochs (ignored when train_steps is set).")
    train_steps: int | None = option(None, "Total training steps; overrides epochs.")
    batch_size: int = option(32, "GLOBAL batch size, split evenly over replicas.")
    eval_batch_size: int = option(1000, "GLOBAL evaluation batch size.")
    steps_per_loop: int = option(100, "Training steps per tf.function call.")
    # MLPerf-style time to accuracy.
    target_accuracy: float | None = option(None, "Stop at the first epoch whose test accuracy reaches this fraction, "
                                                 "e.g. 0.994.")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        _positive(self, "epochs", "batch_size", "eval_batch_size", "steps_per_loop")
        _positive(self, "train_steps", optional=True)
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            hint = f" (a fraction: {self.target_accuracy / 100:g} for {self.target_accuracy:g}%)" \
                if 1 < self.target_accuracy <= 100 else ""
            raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy:g}{hint}")


@dataclasses.dataclass(frozen=True)
class OptimOptions:
    """Optimisation: the optimizer and its learning-rate schedule."""

    TITLE: ClassVar[str] = "Optimisation"

    optimizer: str = option("adam", "A name in tfresnet.engine.optim.OPTIMIZERS (an unknown name lists them).")
    learning_rate: float = option(1e-3, "Base learning rate.")
    lr_scale_batch: int | None = option(None, "If set, learning_rate *= batch_size / lr_scale_batch.")
    lr_schedule: str = option("constant", "A name in tfresnet.engine.optim.SCHEDULES (an unknown name lists them).")
    lr_boundaries: tuple[int, ...] = option((), "Piecewise schedule: steps at which the rate is multiplied by "
                                                "lr_decay.")
    lr_decay: float = option(0.1, "Piecewise schedule factor.")
    warmup_steps: int = option(0, "Linear warm-up steps (cosine, onecycle).")
    momentum: float = option(0.9, "SGD momentum.")
    nesterov: bool = option(False, "Nesterov momentum.")
    # sgd couples it as the papers' 1e-4 means it; 0 is none, never a hidden default.
    weight_decay: float = option(0.0, "Weight decay; 0 is none (adamw included). sgd: L2 added to the gradient before "
                                      "momentum, as in the papers and torch.optim.SGD (1e-4 is He et al.'s). adam, "
                                      "adamw: decoupled, w -= lr * wd * w. Never on BatchNorm parameters or biases.")
    clip_norm: float | None = option(None, "Clip gradients to this global norm.")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        _positive(self, "lr_scale_batch", optional=True)
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (SGD's decay of past gradients, e.g. 0.9), got "
                             f"{self.momentum}")
        _not_negative(self, "weight_decay", "warmup_steps")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {self.clip_norm}")
        if self.lr_schedule == "piecewise" and list(self.lr_boundaries) != sorted(set(self.lr_boundaries)):
            raise ValueError(f"lr_boundaries must be increasing, got {self.lr_boundaries}")
        if self.lr_schedule == "piecewise" and not self.lr_boundaries:
            raise ValueError("lr_schedule=piecewise needs lr_boundaries (steps)")


@dataclasses.dataclass(frozen=True)
class RegularisationOptions:
    """Regularisation (task classify): what keeps an image classifier from overfitting."""

    TITLE: ClassVar[str] = "Regularisation (task classify)"

    label_smoothing: float = option(0.0, "Label smoothing.")
    # "ResNet strikes back": mixup 0.1 and CutMix 1.0. Labels become soft; the accuracy is of their
    # top class.
    mixup: float = option(0.0, "Mixup's Beta parameter (0 is off): each training batch blended with its reverse, soft "
                               "labels.")
    cutmix: float = option(0.0, "CutMix's Beta parameter (0 is off): a box of the reversed batch pasted in, labels by "
                                "area. With --mixup too, each batch picks one at even odds.")
    # Keyed by each example's seed, so a resumed run augments the same way.
    randaugment_ops: int = option(0, "RandAugment: ops applied to each training image after its augmentation (0 is "
                                     "off; timm's rand-m9-n2 is 2).")
    randaugment_magnitude: float = option(9.0, "RandAugment: strength of every op, 0-10 (timm's default 9).")
    # ema_warmup: early averages are then not stuck at the initial weights.
    ema: float = option(0.0, "Keep an exponential moving average of the weights with this decay (e.g. 0.9999; 0 is "
                             "off): each epoch evaluates both, and the average is what is exported and what "
                             "tfresnet-eval measures.")
    ema_warmup: bool = option(False, "Ramp the EMA decay up as min(ema, (1 + step) / (10 + step)).")
    # Inference is unaffected.
    drop_path_rate: float = option(0.0, "Stochastic depth of ResNet blocks: the last block drops its residual branch "
                                        "with this probability, earlier ones linearly less (0 is none; 0.05 in "
                                        "'ResNet strikes back').")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for field in ("mixup", "cutmix"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0 (a Beta parameter; 0 is off), got {getattr(self, field)}")
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude <= 10:
            raise ValueError(f"randaugment: ops must be >= 0 and magnitude in [0, 10], got {self.randaugment_ops} "
                             f"and {self.randaugment_magnitude}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (a decay such as 0.9999; 0 is off), got {self.ema}")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """Numerics and hardware: where and how the steps compute."""

    TITLE: ClassVar[str] = "Numerics and hardware"

    precision: str = option("float32", f"One of {', '.join(PRECISIONS)}.")
    jit_compile: bool | None = option(None, "XLA-compile the steps (default: on for GPU/TPU; on CPU only for task "
                                            "fewshot, where it is faster).")
    strategy: str = option("default", f"One of {', '.join(STRATEGIES)}.")
    tpu: str | None = option(None, "TPU name or grpc:// address (--strategy=tpu); empty or 'local' on Colab / TPU VMs.")
    seed: int = option(0, "Seed of initialisation, data order and augmentation.")
    deterministic: bool = option(False, "Bitwise-repeatable ops (tf.config.experimental.enable_op_determinism).")
    # tf.distribute's fetch-to-device buffer.
    device_prefetch: int = option(2, "Batches each replica's device holds ahead of the running step, so that the "
                                     "host-to-device copy overlaps compute.")
    # A second run of the same model starts training at once instead of compiling for 30-70 s.
    compilation_cache: str | None = option(None, "Folder of the persistent XLA cache (compiled steps, GPU "
                                                 "autotuning): a repeated run skips compilation. Empty: off. Default: "
                                                 "~/.cache/tfresnet/xla-<TF version>, or $TFRESNET_XLA_CACHE.")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        _choice("precision", self.precision, PRECISIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        _positive(self, "device_prefetch")


@dataclasses.dataclass(frozen=True)
class FewShotOptions:
    """Few-shot keyword spotting (task fewshot): episodes, the encoder's loss, and the clips' augmentation."""

    TITLE: ClassVar[str] = "Few-shot keyword spotting (task fewshot)"

    # One episode per replica per step; episodes_per_epoch steps make an epoch.
    n_way: int = option(5, "Few-shot: classes per episode (one episode per replica per step).")
    k_shot: int = option(1, "Few-shot: support examples per class.")
    n_query: int = option(5, "Few-shot: query examples per class.")
    episodes_per_epoch: int = option(100, "Few-shot: training steps per epoch.")
    eval_episodes: int = option(100, "Few-shot: episodes over held-out keywords per evaluation.")
    # A harder task gives better embeddings (Snell et al. 2017 train 20-way for 5-way tests).
    train_n_way: int | None = option(None, "Few-shot: classes per training episode (default: n_way); more than at "
                                           "test time helps.")
    # cosine_softmax (CosFace, Wang et al. 2018) contrasts each clip with every word, not with N-1 of
    # them: on the spoken keywords it transfers better to new words (BENCHMARKS.md). Evaluation,
    # keep_best and enrollment stay prototypes either way.
    fewshot_loss: str = option("prototypical", "Few-shot: how the encoder learns: prototypical (N-way episodes) or "
                                               "cosine_softmax (batches of batch_size clips over all training words, "
                                               "optionally with a margin).")
    logit_scale: float = option(10.0, "Few-shot: the temperature s of s * cosine (cosine_softmax and cosine episodes).")
    # 0.2 at s=16 measured no better on the spoken keywords' test words than 0 at s=10 (BENCHMARKS.md).
    margin: float = option(0.0, "Few-shot: cosine_softmax's additive margin on the true word's cosine (CosFace).")
    # With 20 training words the encoder otherwise learns only what separates those 20; splicing
    # makes 400 classes that must be told apart from beginning to end (tfresnet.kws.augment.WordSplicer).
    splice_words: float = option(0.0, "Few-shot: share of cosine_softmax training clips replaced by a pseudo-word, "
                                      "the start of their word joined to the end of another by the same speaker (0: "
                                      "off).")
    # 0 (the middle) keeps each pseudo-word one sequence of sounds; 0.25 measured 2 points lower.
    splice_cut: float = option(0.0, "Few-shot: splice_words cuts each word at 0.5 +- this of its speech (uniform).")
    # A window of running speech holds the cut-off ends of the words before and after its own; an
    # encoder that only ever heard one word in silence takes them for part of the word
    # (tfresnet.kws.augment.ContextWords, BENCHMARKS.md).
    context_words: float = option(0.0, "Few-shot: share of cosine_softmax training clips given the cut-off ends "
                                       "of other words by the same speaker before and after their word, as in "
                                       "running speech (0: off).")
    # The 20 training words teach the encoder what tells those 20 apart; hundreds of words in the
    # training speakers' voices teach it what tells words apart (BENCHMARKS.md).
    extra_words_dir: str | None = option(None, "Few-shot: a Speech Commands folder of more training words (no "
                                               "validation or test word, no held-out speaker), e.g. rendered by "
                                               "benchmarks/kws_words.py.")
    metric: str = option("euclidean", "Few-shot: compare queries with prototypes by euclidean distance or cosine "
                                      "similarity (what tfresnet-kws scores with).")
    # Training augmentation (tfresnet.kws.augment.Augmentation): recorded keywords start at any time and
    # come with background noise.
    time_shift: float = option(0.1, "Few-shot: shift training clips by up to this many seconds either way (0: off).")
    noise_probability: float = option(0.8, "Few-shot: share of training clips mixed with _background_noise_ (0: off).")
    noise_snr_db: tuple[float, float] = option((0.0, 20.0), "Few-shot: low,high signal-to-noise ratio of the noise "
                                                            "mix, in dB.")
    spec_augment: bool = option(False, "Few-shot: SpecAugment-style masking of a mel band and a span of frames.")
    # Speakers differ in tempo and vocal-tract length.
    speed: float = option(0.0, "Few-shot: stretch time by a random factor in 1 +- this per training clip (0: off).")
    formant: float = option(0.0, "Few-shot: stretch the mel axis by a random factor in 1 +- this per training clip "
                                 "(VTLP; 0: off).")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        _choice("fewshot_loss", self.fewshot_loss, FEWSHOT_LOSSES)
        _choice("metric", self.metric, METRICS)
        _positive(self, "n_way", "k_shot", "n_query", "episodes_per_epoch", "eval_episodes")
        _positive(self, "train_n_way", optional=True)
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be positive, got {self.logit_scale}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1) (a cosine), got {self.margin}")
        if not 0 <= self.splice_words < 1:
            raise ValueError(f"splice_words must be in [0, 1) (a share of the clips), got {self.splice_words}")
        if not 0 <= self.splice_cut < 0.5:
            raise ValueError(f"splice_cut must be in [0, 0.5), got {self.splice_cut}")
        if not 0 <= self.context_words < 1:
            raise ValueError(f"context_words must be in [0, 1) (a share of the clips), got {self.context_words}")
        if self.splice_cut and not self.splice_words:
            raise ValueError(f"splice_cut {self.splice_cut} has nothing to cut: set splice_words too")
        if not 0 <= self.noise_probability <= 1:
            raise ValueError(f"noise_probability must be in [0, 1], got {self.noise_probability}")
        for field in ("time_shift", "speed", "formant"):
            if not 0 <= getattr(self, field) < 1:
                raise ValueError(f"{field} must be in [0, 1), got {getattr(self, field)}")
        if len(self.noise_snr_db) != 2 or self.noise_snr_db[0] > self.noise_snr_db[1]:
            raise ValueError(f"noise_snr_db must be two numbers, low,high (dB), got {self.noise_snr_db}")


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """Checkpoints and output: what the run writes, and where."""

    TITLE: ClassVar[str] = "Checkpoints and output"

    model_dir: str = option("runs/mnist", "Where checkpoints, TensorBoard logs, metrics.jsonl and the exported model "
                                          "go.")
    mode: str = option("train_and_eval", f"One of {', '.join(MODES)}.")
    keep_checkpoints: int = option(3, "Checkpoints to keep.")
    checkpoint_every: int | None = option(None, "Save every N steps (default: every epoch).")
    # The few-shot recipes select on the validation keywords this way.
    keep_best: bool = option(False, "Keep the weights of the best evaluation in model_dir/best; export and "
                                    "tfresnet-eval use them.")
    # The loss keeps ranking checkpoints once the accuracy saturates near 100%.
    keep_best_by: str = option("accuracy", "keep_best: the best evaluation is the highest accuracy or the lowest loss.")
    export: bool = option(True, "Write model.keras and a serving SavedModel to model_dir at the end.")
    report: str | None = option(None, "tfresnet-eval: also write a report to this folder: confusion matrix, "
                                      "per-class precision/recall/F1, calibration, the most confident mistakes.")
    verbose: bool = option(False, "Show tracebacks for errors.")

    def check_section(self) -> None:
        """Refuses a value out of range or not one of the choices (``ValueError``, one line)."""
        _choice("mode", self.mode, MODES)
        _choice("keep_best_by", self.keep_best_by, KEEP_BEST_BY)
        _positive(self, "keep_checkpoints")
        _positive(self, "checkpoint_every", optional=True)


# The sections, in the order --help lists them.
SECTION_CLASSES = (TaskOptions, DataOptions, FineTuneOptions, LengthOptions, OptimOptions, RegularisationOptions,
                   RuntimeOptions, FewShotOptions, OutputOptions)


@dataclasses.dataclass(frozen=True)
class TrainConfig(OutputOptions, FewShotOptions, RuntimeOptions, RegularisationOptions, OptimOptions,
                  LengthOptions, FineTuneOptions, DataOptions, TaskOptions):
    """Everything a training run needs, one section per part of it. Defaults are the MNIST tutorial recipe.

    Models and datasets take plain values from it; absl flags exist only in ``tfresnet.cli``,
    which builds one of these. Each section checks its own values (``check_section``); here only
    what joins sections, and ``OPTION_SCOPES``.
    """

    def __post_init__(self):
        _check_scopes(self)
        for section in SECTION_CLASSES:
            section.check_section(self)
        if self.target_accuracy is not None and self.mode != "train_and_eval":
            raise ValueError("target_accuracy needs mode=train_and_eval: it is checked on the evaluation "
                             f"after each epoch (got mode={self.mode})")
        if self.keep_best and self.mode == "train":
            raise ValueError("keep_best needs the evaluation of mode=train_and_eval to choose the best weights "
                             "(got mode=train)")
        if self.ema and self.keep_best:
            raise ValueError("ema and keep_best together are not supported yet: keep_best would keep the raw weights")

    @property
    def base_learning_rate(self) -> float:
        """The learning rate after batch scaling."""
        if self.lr_scale_batch:
            return self.learning_rate * self.batch_size / self.lr_scale_batch
        return self.learning_rate

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


# The options by section, as --help groups the flags.
SECTIONS: dict[str, tuple[str, ...]] = {
    section.TITLE: tuple(name for name in section.__annotations__ if name != "TITLE") for section in SECTION_CLASSES}
