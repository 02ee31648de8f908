"""Training configuration: one frozen dataclass, validated when it is made.

Only what needs no TensorFlow is checked here (numbers, and the engine's own choices: precision,
strategy, mode). Names looked up in tables (model, task, optimizer, lr_schedule, augment) are
checked against those tables by ``tfresnet.training.check_names`` before a run touches anything,
so a new table entry never has to be added here as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfresnet.errors import BadInput
from tfresnet.registry import unknown_name

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "auto", "one_device", "mirrored", "multi_worker", "tpu")
MODES = ("train", "eval", "train_and_eval")
FEWSHOT_LOSSES = ("prototypical", "cosine_softmax")
# How few-shot queries are compared with prototypes (protores.PrototypicalNetwork, episodes).
METRICS = ("euclidean", "cosine")
KEEP_BEST_BY = ("accuracy", "loss")


def _choice(field: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise unknown_name(field, value, list(options))


# Options only some choices read: (options, the field that chooses, the choices that read them;
# None: any true value of that field). Set to anything but their default under another choice they
# would be ignored without a word, so TrainConfig refuses them, naming both (one rule for all).
_FEWSHOT_ONLY = ("n_way", "k_shot", "n_query", "episodes_per_epoch", "eval_episodes", "train_n_way", "fewshot_loss",
                 "logit_scale", "margin", "splice_words", "splice_cut", "extra_words_dir", "metric", "time_shift",
                 "noise_probability", "noise_snr_db", "spec_augment", "speed", "formant")
_CLASSIFY_ONLY = ("pretrained", "freeze_backbone_epochs", "backbone_lr_scale", "classes", "examples_per_class",
                  "image_size", "augment", "bad_images", "data_service", "mixup", "cutmix", "randaugment_ops",
                  "randaugment_magnitude", "ema", "ema_warmup", "drop_path_rate", "label_smoothing")
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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Defaults are the MNIST tutorial recipe.

    Models and datasets take plain values from it; absl flags exist only in ``tfresnet.cli``,
    which builds one of these.
    """

    # What to train on what.
    task: str = "classify"  # a name in tfresnet.tasks.TASKS: classify (images) or fewshot (keywords)
    model: str | None = None  # None: the task's own (mnist_resnet for classify, protores for fewshot)
    dataset: str = "mnist"
    data_dir: str | None = None  # TFDS dir (local or gs://), .npz file, or image folder
    train_split: str = "train"
    # None: "test"; for fewshot, the validation keywords while training (they pick the checkpoint)
    # and the test keywords in tfresnet-eval.
    eval_split: str | None = None
    image_size: int | None = None  # ImageNet-style and folder datasets only
    augment: str | None = None  # tfresnet.augment.AUGMENTATIONS; None: the dataset's own (data.RECIPES)
    # An image file or record that does not decode: "fail" names it and stops; "skip" warns and
    # fills its place with another image of the batch (big datasets hold a few broken files).
    bad_images: str = "fail"
    # host:port of a tf.data service dispatcher to run the input pipeline on its workers (more CPUs
    # than this host has); gives up exact resume.
    data_service: str | None = None
    # A class subset, relabelled 0..n-1 in this order (both splits); () is all classes.
    classes: tuple[int, ...] = ()
    # Training examples kept per class, drawn with the seed (few-shot / transfer studies); None: all.
    examples_per_class: int | None = None
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. zero_init_residual
    model_dir: str = "runs/mnist"  # checkpoints, logs, exported model

    # Transfer learning: start from published weights and fine-tune (classify only).
    # A weight source of the model (imagenet, torchvision, timm: tfresnet.weights) or a state-dict
    # file. Its preprocessing record then replaces the dataset's normalisation everywhere.
    pretrained: str | None = None
    # Train only the classifier for this many epochs first (BatchNorm statistics frozen too), so a
    # random head does not wreck the pretrained features; >= epochs trains a linear probe.
    freeze_backbone_epochs: int = 0
    # The backbone's learning rate relative to the head's (e.g. 0.1): pretrained features need
    # smaller steps than a fresh classifier.
    backbone_lr_scale: float = 1.0

    # How long.
    epochs: int = 10
    train_steps: int | None = None  # overrides epochs when set
    batch_size: int = 32  # GLOBAL batch: split evenly over replicas
    eval_batch_size: int = 1000
    steps_per_loop: int = 100  # steps per tf.function call: fewer host round trips (TPUs need it)
    # Stop at the first epoch whose test accuracy reaches this (MLPerf-style time to accuracy).
    target_accuracy: float | None = None

    # Optimisation.
    optimizer: str = "adam"  # tfresnet.optim.OPTIMIZERS
    learning_rate: float = 1e-3
    lr_scale_batch: int | None = None  # if set, lr *= batch_size / lr_scale_batch (Goyal et al.)
    lr_schedule: str = "constant"  # tfresnet.optim.SCHEDULES
    lr_boundaries: tuple[int, ...] = ()  # piecewise: steps where the rate is multiplied by lr_decay
    lr_decay: float = 0.1
    warmup_steps: int = 0  # linear warm-up for cosine / one-cycle
    momentum: float = 0.9
    nesterov: bool = False
    # sgd: coupled L2 (added to the gradient before momentum), as the papers' 1e-4 means it; adam and
    # adamw: decoupled. 0 is none, never a hidden default. Never on BatchNorm parameters or biases.
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    # Mixup / CutMix Beta parameters, 0 is off ("ResNet strikes back": 0.1 and 1.0); with both on
    # each batch picks one at even odds. Labels become soft; the accuracy is of their top class.
    mixup: float = 0.0
    cutmix: float = 0.0
    # RandAugment after the training augmentation (timm's rand-m9-n2: 2 ops at magnitude 9 of 10);
    # 0 ops is off. Keyed by each example's seed, so a resumed run augments the same way.
    randaugment_ops: int = 0
    randaugment_magnitude: float = 9.0
    # Exponential moving average of the weights (decay, e.g. 0.9999; 0 is off): evaluated beside the
    # raw weights every epoch, and what is exported. ema_warmup ramps the decay as
    # min(ema, (1 + n) / (10 + n)) at step n, so that early averages are not stuck at the start.
    ema: float = 0.0
    ema_warmup: bool = False
    # Stochastic depth of ResNet blocks: rises linearly from 0 at the first block to this at the
    # last ("ResNet strikes back" uses 0.05 for ResNet-50); 0 is none. Inference is unaffected.
    drop_path_rate: float = 0.0
    clip_norm: float | None = None  # global gradient-norm clipping

    # Numerics and hardware.
    precision: str = "float32"
    jit_compile: bool | None = None  # None: XLA on GPU/TPU; on CPU only for fewshot (faster there)
    strategy: str = "default"
    tpu: str | None = None  # TPU name or grpc:// address; "" or "local" on Colab/TPU VMs
    seed: int = 0
    deterministic: bool = False  # tf.config.experimental.enable_op_determinism (bitwise repeatable)
    # Batches each replica's device holds ahead of the step (tf.distribute's fetch-to-device buffer):
    # the host-to-device copy of the next batch overlaps the current step instead of preceding it.
    device_prefetch: int = 2
    # Folder of the persistent XLA cache (compiled executables and GPU autotuning results), so a
    # second run of the same model starts training at once instead of compiling for 30-70 s; ""
    # turns it off. None: ~/.cache/tfresnet/xla-<TensorFlow version> (TFRESNET_XLA_CACHE overrides).
    compilation_cache: str | None = None

    # Few-shot keyword spotting (task=fewshot): N-way K-shot episodes, Q queries per class.
    # One episode per replica per step; episodes_per_epoch steps make an epoch.
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 5
    episodes_per_epoch: int = 100
    eval_episodes: int = 100
    # Classes of a training episode; None: n_way. More classes than at test time give a harder
    # task and better embeddings (Snell et al. 2017 train 20-way for 5-way tests).
    train_n_way: int | None = None
    # How the encoder learns. "prototypical": the loss of N-way episodes (Snell et al. 2017).
    # "cosine_softmax": batches of batch_size clips, each classified over ALL the training words by
    # a cosine classifier, optionally with an additive margin (CosFace, Wang et al. 2018). Every
    # step then contrasts each clip with every word, not with N-1 of them: on the spoken keywords
    # it transfers better to new words (BENCHMARKS.md).
    # Evaluation, keep_best and enrollment stay prototypes either way.
    fewshot_loss: str = "prototypical"
    logit_scale: float = 10.0  # cosine_softmax and cosine episodes: the temperature s of s * cosine
    # cosine_softmax: CosFace's margin m, taken off the true word's cosine in training. 0.2 at s=16
    # measured no better on the spoken keywords' test words than 0 at s=10 (BENCHMARKS.md).
    margin: float = 0.0
    # cosine_softmax: the share of training clips replaced by a pseudo-word, the start of their word
    # joined to the end of another word by the same speaker (tfresnet.audio.WordSplicer). With 20
    # training words the encoder otherwise learns only what separates those 20; splicing makes
    # 400 classes that must be told apart from beginning to end (BENCHMARKS.md). 0: off.
    splice_words: float = 0.0
    # Where words are cut: uniform in 0.5 +- this of each word's speech. 0 (the middle) keeps each
    # pseudo-word one sequence of sounds; 0.25 measured 2 points lower (BENCHMARKS.md).
    splice_cut: float = 0.0
    # More training words for the few-shot encoder: a folder in the Speech Commands layout whose
    # every word trains it (none a validation or test word, no held-out speaker: both refused).
    # The 20 training words teach it what tells those 20 apart; hundreds of words rendered in the
    # training speakers' voices (benchmarks/kws_words.py) teach it what tells words apart
    # (BENCHMARKS.md). None: the keyword folder's training words only.
    extra_words_dir: str | None = None
    # Episodes compare queries with prototypes by squared Euclidean distance (Snell et al.) or by
    # cosine similarity, the score tfresnet.spotting enrolls and classifies with.
    metric: str = "euclidean"
    # Training augmentation of the clips (tfresnet.audio.Augmentation): recorded keywords start at
    # any time and come with background noise, mixed from the dataset's _background_noise_.
    time_shift: float = 0.1  # seconds, either way; 0: none
    noise_probability: float = 0.8  # share of clips mixed with noise; 0: none
    noise_snr_db: tuple[float, float] = (0.0, 20.0)  # signal-to-noise ratio of the mix, uniform in dB
    spec_augment: bool = False  # mask a band of mel bins and a span of frames (SpecAugment)
    # Speakers differ in tempo and vocal-tract length: stretch time and the mel axis per clip by
    # random factors in 1 +- these (speed perturbation, VTLP); 0: none.
    speed: float = 0.0
    formant: float = 0.0
    # Keep the weights of the best evaluation (keep_best_by) in model_dir/best; export and
    # tfresnet-eval use them. The few-shot recipes select on the validation keywords this way.
    keep_best: bool = False
    # What "best" is: the highest test_accuracy, or the lowest test_loss. The loss keeps ranking
    # checkpoints once the accuracy saturates near 100% and moves only by the episodes drawn.
    keep_best_by: str = "accuracy"

    # Bookkeeping.
    mode: str = "train_and_eval"
    export: bool = True  # write model.keras and a serving SavedModel at the end
    keep_checkpoints: int = 3
    checkpoint_every: int | None = None  # steps; default once per epoch
    verbose: bool = False

    def __post_init__(self):
        _check_scopes(self)
        _choice("precision", self.precision, PRECISIONS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("mode", self.mode, MODES)
        _choice("bad_images", self.bad_images, ("fail", "skip"))
        _choice("fewshot_loss", self.fewshot_loss, FEWSHOT_LOSSES)
        _choice("metric", self.metric, METRICS)
        _choice("keep_best_by", self.keep_best_by, KEEP_BEST_BY)
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be positive, got {self.logit_scale}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1) (a cosine), got {self.margin}")
        if not 0 <= self.splice_words < 1:
            raise ValueError(f"splice_words must be in [0, 1) (a share of the clips), got {self.splice_words}")
        if not 0 <= self.splice_cut < 0.5:
            raise ValueError(f"splice_cut must be in [0, 0.5), got {self.splice_cut}")
        if self.splice_cut and not self.splice_words:
            raise ValueError(f"splice_cut {self.splice_cut} has nothing to cut: set splice_words too")
        for field in ("epochs", "batch_size", "eval_batch_size", "steps_per_loop", "keep_checkpoints", "n_way",
                      "k_shot", "n_query", "episodes_per_epoch", "eval_episodes", "device_prefetch"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        for field in ("train_steps", "checkpoint_every", "image_size", "lr_scale_batch", "examples_per_class",
                      "train_n_way"):
            value = getattr(self, field)
            if value is not None and value <= 0:
                raise ValueError(f"{field} must be positive, got {value}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (SGD's decay of past gradients, e.g. 0.9), got "
                             f"{self.momentum}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.backbone_lr_scale > 0:
            raise ValueError(f"backbone_lr_scale must be positive, got {self.backbone_lr_scale}")
        for field in ("weight_decay", "warmup_steps", "label_smoothing", "freeze_backbone_epochs"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if not 0 <= self.noise_probability <= 1:
            raise ValueError(f"noise_probability must be in [0, 1], got {self.noise_probability}")
        for field in ("time_shift", "speed", "formant"):
            if not 0 <= getattr(self, field) < 1:
                raise ValueError(f"{field} must be in [0, 1), got {getattr(self, field)}")
        if len(self.noise_snr_db) != 2 or self.noise_snr_db[0] > self.noise_snr_db[1]:
            raise ValueError(f"noise_snr_db must be two numbers, low,high (dB), got {self.noise_snr_db}")
        if self.keep_best and self.mode == "train":
            raise ValueError("keep_best needs the evaluation of mode=train_and_eval to choose the best weights "
                             "(got mode=train)")
        for field in ("mixup", "cutmix"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0 (a Beta parameter; 0 is off), got {getattr(self, field)}")
        if self.randaugment_ops < 0 or not 0 <= self.randaugment_magnitude <= 10:
            raise ValueError(f"randaugment: ops must be >= 0 and magnitude in [0, 10], got {self.randaugment_ops} "
                             f"and {self.randaugment_magnitude}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1) (a decay such as 0.9999; 0 is off), got {self.ema}")
        if self.ema and self.keep_best:
            raise ValueError("ema and keep_best together are not supported yet: keep_best would keep the raw weights")
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {self.label_smoothing}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {self.clip_norm}")
        if self.target_accuracy is not None:
            if not 0 < self.target_accuracy <= 1:
                hint = f" (a fraction: {self.target_accuracy / 100:g} for {self.target_accuracy:g}%)" \
                    if 1 < self.target_accuracy <= 100 else ""
                raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy:g}{hint}")
            if self.mode != "train_and_eval":
                raise ValueError("target_accuracy needs mode=train_and_eval: it is checked on the evaluation "
                                 f"after each epoch (got mode={self.mode})")
        if self.lr_schedule == "piecewise" and list(self.lr_boundaries) != sorted(set(self.lr_boundaries)):
            raise ValueError(f"lr_boundaries must be increasing, got {self.lr_boundaries}")
        if self.lr_schedule == "piecewise" and not self.lr_boundaries:
            raise ValueError("lr_schedule=piecewise needs lr_boundaries (steps)")

    @property
    def base_learning_rate(self) -> float:
        """The learning rate after batch scaling."""
        if self.lr_scale_batch:
            return self.learning_rate * self.batch_size / self.lr_scale_batch
        return self.learning_rate

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
