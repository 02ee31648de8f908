"""The outer training loop: strategy, model, optimizer, data, checkpoints, logs, evaluation.

``train(config)`` is all a script or notebook needs. It resumes from the newest checkpoint in
``config.model_dir`` by itself; the step, the optimizer (and so the learning-rate schedule) and the
model are in the checkpoint, and the data position is re-derived from the step.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from tfresnet import data, models, steps
from tfresnet.config import TrainConfig

Log = Callable[[str], None]


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible model directory, ...)."""


class Preempted(Exception):
    """SIGTERM arrived: the run saved a checkpoint at ``step`` and stopped; rerun to resume."""

    exit_code = 75  # EX_TEMPFAIL: "temporary failure, try again", what schedulers retry on

    def __init__(self, step: int, checkpoint: str | None):
        super().__init__(f"preempted (SIGTERM) at step {step}; saved {checkpoint}; run the same command to resume")
        self.step = step


# --------------------------------------------------------------------------------------------------
# Hardware
# --------------------------------------------------------------------------------------------------


def _tpu_address(tpu: str | None) -> str:
    # TPUClusterResolver finds a Colab / TPU VM TPU from an empty name.
    return "" if tpu in (None, "local") else tpu


def detect_strategy(tpu: str | None = None) -> str:
    """The strategy name for this machine: ``tpu``, ``mirrored``, ``one_device`` or ``default``.

    A TPU if one is found, else ``mirrored`` over several GPUs, ``one_device`` on one GPU, else
    ``default``.

    One GPU gets ``OneDeviceStrategy`` rather than a one-replica ``MirroredStrategy``: it prefetches
    batches to the GPU all the same, and lets XLA compile the optimizer update with the step
    (``steps.updates_locally``).

    A TPU is looked for only where one announces itself (Colab's ``COLAB_TPU_ADDR``, ``TPU_NAME``
    or ``TPU_ACCELERATOR_TYPE``, a TPU VM's ``/dev/accel*`` or ``/dev/vfio/N``, or an explicit
    ``tpu`` address), because elsewhere the resolver probes the network; it must then be found by
    ``TPUClusterResolver``.

    Args:
        tpu: TPU name or ``grpc://`` address, as for ``make_strategy``.

    Returns:
        A name ``make_strategy`` takes.
    """
    announced = bool(_tpu_address(tpu) or glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")
                     or {"COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE"} & set(os.environ))
    if announced:
        try:
            tf.distribute.cluster_resolver.TPUClusterResolver(tpu=_tpu_address(tpu))
            return "tpu"
        except (ValueError, tf.errors.NotFoundError):
            pass
    gpus = len(tf.config.list_physical_devices("GPU"))
    return "mirrored" if gpus > 1 else "one_device" if gpus else "default"


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name``.

    Args:
        name: ``default`` (whatever is current), ``auto`` (``detect_strategy()``: TPU, else the
            GPUs, else default), ``one_device`` (first GPU, else CPU), ``mirrored`` (all local
            GPUs, else all logical CPUs), ``multi_worker`` (``TF_CONFIG``) or ``tpu``.
        tpu: TPU name or ``grpc://`` address for ``tpu``; ``""``/``"local"`` finds it on Colab or a
            TPU VM.

    Returns:
        The strategy (the TPU system is connected and initialised).
    """
    if name == "auto":
        name = detect_strategy(tpu)
    if name == "default":
        return tf.distribute.get_strategy()
    # Multi-worker and TPU set-up must come before anything starts TensorFlow's context
    # (listing logical devices does).
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy multi_worker needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=_tpu_address(tpu))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"unknown strategy {name!r}")


def use_xla(jit_compile: bool | None, strategy: tf.distribute.Strategy) -> bool:
    """XLA when asked; by default on GPU and TPU (where it pays), off on CPU (where it may not)."""
    if jit_compile is not None:
        return jit_compile
    return isinstance(strategy, tf.distribute.TPUStrategy) or bool(tf.config.list_logical_devices("GPU"))


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Sets Keras' dtype policy for models built inside, and restores the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# --------------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfresnet")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle policy (Smith 2018): linear warm-up to ``max_lr``, cosine annealing to ~0.

    Args:
        max_lr: Peak learning rate.
        total_steps: Length of the cycle.
        warmup_steps: Steps of the rising part (default 30% of the cycle).
        start_factor, end_factor: The rate starts at ``max_lr * start_factor`` and ends at
            ``max_lr * end_factor``.
    """

    def __init__(self, max_lr: float, total_steps: int, warmup_steps: int | None = None,
                 start_factor: float = 0.04, end_factor: float = 1e-4):
        self.max_lr = max_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps if warmup_steps else max(1, int(0.3 * total_steps))
        self.start_factor = start_factor
        self.end_factor = end_factor

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        up = tf.minimum(step / self.warmup_steps, 1.0)
        down = tf.clip_by_value((step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps), 0.0, 1.0)
        rising = self.start_factor + (1 - self.start_factor) * up
        falling = self.end_factor + (1 - self.end_factor) * 0.5 * (1 + tf.cos(math.pi * down))
        return self.max_lr * tf.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "start_factor": self.start_factor, "end_factor": self.end_factor}


def make_schedule(cfg: TrainConfig, total_steps: int):
    """The learning rate, a float or a Keras schedule of the optimizer step."""
    lr = cfg.base_learning_rate
    if cfg.lr_schedule == "constant":
        return lr
    if cfg.lr_schedule == "piecewise":
        values = [lr * cfg.lr_decay**i for i in range(len(cfg.lr_boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(list(cfg.lr_boundaries), values)
    if cfg.lr_schedule == "cosine":
        if cfg.warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                0.0, max(1, total_steps - cfg.warmup_steps), warmup_target=lr, warmup_steps=cfg.warmup_steps)
        return keras.optimizers.schedules.CosineDecay(lr, total_steps)
    return OneCycle(lr, total_steps, cfg.warmup_steps or None)


def make_optimizer(cfg: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """SGD/Adam/AdamW with schedule, decoupled weight decay (not on BN or biases) and clipping."""
    common = {"learning_rate": make_schedule(cfg, total_steps), "global_clipnorm": cfg.clip_norm}
    if cfg.weight_decay:
        common["weight_decay"] = cfg.weight_decay
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(**common)
    else:
        opt = keras.optimizers.AdamW(**{"weight_decay": 0.004, **common})
    # Decaying BatchNorm's scale/shift or biases only hurts (Goyal et al. 2017, "no bias decay").
    opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if cfg.precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def current_lr(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate at the optimizer's current step (Keras evaluates schedules for us)."""
    return float(tf.convert_to_tensor(getattr(optimizer, "inner_optimizer", optimizer).learning_rate))


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def make_checkpoint(model: keras.Model, optimizer: keras.optimizers.Optimizer, step: tf.Variable,
                    metrics: dict[str, keras.metrics.Metric] | None = None) -> tf.train.Checkpoint:
    """A checkpoint of every model, optimizer and metric variable, keyed by its path, and the step.

    The metrics' running sums are in it so that an epoch interrupted and resumed reports what an
    uninterrupted one would.

    Keyed by path (``mnist_resnet/stage1/stage1_unit1/stage1_unit1_bn1/moving_mean``) rather than
    through the model object: Keras 3 hides layers kept in Python lists (blocks, units) from
    TensorFlow's object graph, which would silently leave BatchNorm statistics out. Paths come
    from the explicit layer names, so checkpoints do not depend on creation order.
    """
    model_vars = {v.path: v for v in model.weights}
    # Drop the optimizer's own name: Keras makes it unique per process (adam, adam_1, ...).
    opt_vars = {v.path.split("/", 1)[-1]: v for v in optimizer.variables}
    if len(model_vars) != len(model.weights) or len(opt_vars) != len(optimizer.variables):
        raise ValueError(f"{model.name}: variable paths are not unique, checkpoints would be ambiguous")
    metric_vars = {f"{name}/{v.name}": v for name, m in (metrics or {}).items() for v in m.variables}
    return tf.train.Checkpoint(model=model_vars, optimizer=opt_vars, metrics=metric_vars, step=step)


def restore_newest(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager,
                   log: Log = print) -> str | None:
    """Restores the newest readable checkpoint of ``manager``, falling back past unreadable ones.

    Args:
        checkpoint: Made by ``make_checkpoint`` (its ``step`` is logged).
        manager: Lists the checkpoints to try, newest last.
        log: Where the warnings and the "Restored" line go.

    Returns:
        The restored checkpoint's path, or None when ``manager`` has none.

    Raises:
        TrainingError: There are checkpoints but none is readable (never start over on top of them).
    """
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as err:  # OpError, IndexError, AssertionError...: all mean "unreadable"
            log(f"WARNING: checkpoint {path} is unreadable ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:160]}); falling back to the previous one")
            continue
        log(f"Restored {path} (step {int(checkpoint.step.numpy())})")
        return path
    if manager.checkpoints:
        raise TrainingError(f"no readable checkpoint in {manager.directory} (all "
                            f"{len(manager.checkpoints)} failed to load); not starting over on top of them")
    return None


class Run:
    """The pieces of one run, built from a ``TrainConfig``: use ``train`` or ``evaluate``."""

    def __init__(self, cfg: TrainConfig, log: Log = print):
        self.cfg, self.log = cfg, log
        # First: multi-worker and TPU strategies must exist before TensorFlow's context starts.
        self.strategy = make_strategy(cfg.strategy, cfg.tpu)
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(cfg.seed)
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {replicas} replicas")
        if cfg.eval_batch_size % replicas:
            raise ValueError(f"eval_batch_size {cfg.eval_batch_size} is not divisible by the {replicas} replicas")
        self.jit = use_xla(cfg.jit_compile, self.strategy)
        self._load_data()
        self._check_model_dir()
        with precision_policy(cfg.precision), self.strategy.scope():
            self.model = models.create_model(
                cfg.model, num_classes=self.num_classes, input_shape=self.input_shape, **cfg.model_options)
            self.optimizer = make_optimizer(cfg, self.total_steps)
            self.optimizer.build(self.model.trainable_variables)
            self.train_metrics = steps.make_metrics("train")
            self.eval_metrics = steps.make_metrics("test", top5=self.num_classes > 5)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        if self.jit and (reason := steps.why_not_xla(self.model, self.strategy)):
            if cfg.jit_compile:  # asked for: refuse; on only by default: turn it off and say so
                raise ValueError(f"jit_compile: {reason}; use --jit_compile=false or drop sync_batchnorm")
            log(f"XLA is off: {reason} (--jit_compile=false silences this)")
            self.jit = False
        # The evaluation metrics too: a resumed run knows its last test accuracy (target_accuracy).
        metrics = {**self.train_metrics, **{f"test_{name}": m for name, m in self.eval_metrics.items()}}
        self.checkpoint = make_checkpoint(self.model, self.optimizer, self.step, metrics)
        # Other workers' copies are write-only (resuming reads the chief's): keep one.
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=cfg.keep_checkpoints if self.is_chief else 1,
            checkpoint_name="ckpt")
        self.loss_fn = steps.make_loss(cfg.label_smoothing)

    # -- set-up ------------------------------------------------------------------------------------

    def _load_data(self) -> None:
        cfg = self.cfg
        spec = models.model_spec(cfg.model)
        wants_eval = cfg.mode != "train"
        if cfg.dataset == "synthetic":
            size = cfg.image_size or spec.input_shape[0]
            self.input_shape = (size, size, spec.input_shape[2]) if cfg.image_size else spec.input_shape
            self.num_classes = spec.num_classes
            self.train_source = self.eval_source = None
            self.steps_per_epoch = cfg.train_steps or 100
        else:
            self.train_source = data.load_source(cfg.dataset, cfg.train_split, cfg.data_dir, cfg.image_size)
            self.eval_source = (data.load_source(cfg.dataset, cfg.eval_split, cfg.data_dir, cfg.image_size)
                                if wants_eval else None)
            self.input_shape = self.train_source.recipe.image_shape
            self.num_classes = self.train_source.num_classes
            self.steps_per_epoch = self.train_source.steps_per_epoch(cfg.batch_size)
            if self.steps_per_epoch == 0:
                raise ValueError(f"batch_size {cfg.batch_size} is larger than the {self.train_source.num_examples} "
                                 f"examples of {cfg.dataset} {cfg.train_split}")
        self.total_steps = cfg.train_steps or cfg.epochs * self.steps_per_epoch

    @property
    def _worker_id(self) -> int | None:
        """This worker's index under MultiWorkerMirroredStrategy, None under any other strategy."""
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return self.strategy.cluster_resolver.task_id
        return None

    def _checkpoint_dir(self, chief: bool = False) -> str:
        # Every worker writes (collective ops need all of them), but only the chief into model_dir.
        if self._worker_id and not chief:
            return os.path.join(self.cfg.model_dir, f".worker{self._worker_id}")
        return os.path.join(self.cfg.model_dir, "checkpoints")

    @property
    def is_chief(self) -> bool:
        return not self._worker_id

    def _run_record(self) -> dict[str, Any]:
        return {"model": self.cfg.model, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
                "model_options": self.cfg.model_options}

    def _check_model_dir(self) -> None:
        """Refuses a model_dir that holds another model, or that cannot be written, before any write."""
        record_path = os.path.join(self.cfg.model_dir, "run.json")
        if tf.io.gfile.exists(record_path):
            with tf.io.gfile.GFile(record_path) as f:
                previous = json.load(f)
            mine = self._run_record()
            if any(previous.get(k) != v for k, v in mine.items()):
                diff = ", ".join(f"{k}: {previous.get(k)!r} there, {v!r} here" for k, v in mine.items()
                                 if previous.get(k) != v)
                raise TrainingError(f"model_dir {self.cfg.model_dir} holds a checkpoint of a different model ({diff}); "
                                    "use another --model_dir")
        if self.cfg.mode == "eval" or "://" in self.cfg.model_dir:
            return
        existing = os.path.abspath(self.cfg.model_dir)
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise TrainingError(f"model_dir {self.cfg.model_dir} is not writable ({existing} is a file)")
        try:  # a real probe: os.access says yes to root even on read-only file systems
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as err:
            raise TrainingError(f"model_dir {self.cfg.model_dir} is not writable ({err.strerror}: {existing})") from None

    def restore(self) -> int:
        """Restores the newest readable checkpoint; falls back past corrupt ones. Returns the step."""
        manager = self.manager
        if self._worker_id is not None:
            # Every worker resumes from the chief's checkpoints, never from its own copy: a worker
            # killed while saving keeps one save fewer than the chief, and workers at different
            # steps run mismatched collectives (a crash or a hang instead of a resume).
            if not self.is_chief:
                manager = tf.train.CheckpointManager(self.checkpoint, self._checkpoint_dir(chief=True),
                                                     max_to_keep=None)
            # Restoring runs collectives too, so the workers must agree before any of them starts.
            latest = manager.latest_checkpoint
            self._check_workers_agree(int(latest.rsplit("-", 1)[1]) if latest else 0)
        if restore_newest(self.checkpoint, manager, self.log) is None:
            return 0
        if self.cfg.lr_schedule == "constant":
            # A constant rate is a checkpointed variable: the configured one wins on resume.
            getattr(self.optimizer, "inner_optimizer", self.optimizer).learning_rate = self.cfg.base_learning_rate
        return int(self.step.numpy())

    def _check_workers_agree(self, step: int) -> None:
        """Fails every worker with one clear line unless all of them would resume at the same step."""
        mine = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant([step], tf.int64))
        per_replica = [int(s) for s in self.strategy.gather(mine, axis=0).numpy()]  # worker-major order
        spec = self.strategy.cluster_resolver.cluster_spec()
        workers = sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))
        steps_seen = per_replica[::max(1, len(per_replica) // workers)]
        if len(set(steps_seen)) > 1:
            per_worker = ", ".join(f"worker {i}: {s}" for i, s in enumerate(steps_seen))
            raise TrainingError(f"the workers found different checkpoints to resume from (steps: {per_worker}); "
                                f"every worker must read the chief's checkpoints in "
                                f"{self._checkpoint_dir(chief=True)}, so --model_dir must be the same shared "
                                "directory (e.g. gs://...) on all of them")

    # -- training ----------------------------------------------------------------------------------

    def _train_iterator(self, start_step: int):
        cfg = self.cfg
        if self.train_source is None:
            dist = self.strategy.distribute_datasets_from_function(
                lambda ctx: data.synthetic(self.input_shape, self.num_classes, cfg.batch_size, cfg.seed, ctx))
            # Keep one batch on the device(s) and reuse it: no host-to-device copy per step.
            return itertools.repeat(next(iter(dist)))
        # In-memory sources keep a fixed element order (cheap), which exact resume relies on.
        dist = self.strategy.distribute_datasets_from_function(
            lambda ctx: data.make_dataset(self.train_source, cfg.batch_size, training=True, seed=cfg.seed,
                                          start_step=start_step, input_context=ctx, augment=cfg.augment,
                                          deterministic=cfg.deterministic or self.train_source.images is not None))
        return iter(dist)

    def train(self) -> dict[str, float]:
        """Trains to ``total_steps`` (resuming if a checkpoint exists) and exports the model.

        Returns:
            The last epoch's metrics (``loss``, ``accuracy`` and, with evaluation, ``test_*``).
        """
        cfg = self.cfg
        started = time.perf_counter()
        with self._lost_worker_is_an_error():
            start = self.restore()
            if start and self._reached_target():
                self.log(f"Test accuracy {self.eval_metrics['accuracy'].result():.2%} of step {start} already "
                         f"reaches target_accuracy {cfg.target_accuracy:.2%}; nothing to train")
                return {f"test_{k}": float(m.result()) for k, m in self.eval_metrics.items()}
            if self.is_chief:
                tf.io.gfile.makedirs(cfg.model_dir)
                with tf.io.gfile.GFile(os.path.join(cfg.model_dir, "run.json"), "w") as f:
                    json.dump(self._run_record(), f)
                self._trim_metrics_log(start)
            with self._sigterm_flag() as preempted:
                return self._train_from(start, preempted, started)

    def _reached_target(self) -> bool:
        """Whether the last evaluation (checkpointed with the run) reached ``target_accuracy``."""
        accuracy = self.eval_metrics["accuracy"]
        return (self.cfg.target_accuracy is not None and float(accuracy.count) > 0
                and float(accuracy.result()) >= self.cfg.target_accuracy)

    def _trim_metrics_log(self, step: int) -> None:
        """Drops metrics.jsonl lines past the restored step: they are recomputed, not duplicated."""
        path = os.path.join(self.cfg.model_dir, "metrics.jsonl")
        if not tf.io.gfile.exists(path):
            return
        with tf.io.gfile.GFile(path) as f:
            lines = [line for line in f if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            with tf.io.gfile.GFile(path, "w") as f:
                f.write("".join(kept))

    @contextlib.contextmanager
    def _sigterm_flag(self):
        """While training, SIGTERM only sets a flag; the loop checkpoints and stops at a step boundary."""
        flag = threading.Event()
        if threading.current_thread() is not threading.main_thread():
            yield flag
            return
        previous = signal.signal(signal.SIGTERM, lambda *_: flag.set())
        try:
            yield flag
        finally:
            signal.signal(signal.SIGTERM, previous)

    @contextlib.contextmanager
    def _lost_worker_is_an_error(self):
        """Turns a collective that failed because a worker died into one line saying what to do."""
        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.AbortedError) as err:
            # Any collective can be the one that notices: a train step, a metric read, a save.
            if self._worker_id is None:
                raise
            raise TrainingError(
                f"lost contact with another worker ({type(err).__name__}); restart every worker with the same "
                f"command to resume from the newest checkpoint in {self._checkpoint_dir(chief=True)}") from None

    def _train_from(self, start: int, preempted: threading.Event, started: float) -> dict[str, float]:
        cfg = self.cfg
        train_loop = steps.make_train_step(self.model, self.optimizer, self.loss_fn, self.train_metrics,
                                           cfg.batch_size, self.strategy, self.jit)
        iterator = self._train_iterator(start)
        writer = tf.summary.create_file_writer(os.path.join(cfg.model_dir, "logs", "train")) if self.is_chief \
            else tf.summary.create_noop_writer()
        every = cfg.checkpoint_every or self.steps_per_epoch
        progress = None
        results: dict[str, float] = {}
        step = start
        while step < self.total_steps:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            if progress is None and sys.stdout.isatty() and self.is_chief:
                progress = keras.utils.Progbar(self.steps_per_epoch, unit_name="step")
            # Never run past an epoch end, a checkpoint or the end of training inside one call.
            n = min(cfg.steps_per_loop, self.steps_per_epoch - in_epoch, every - step % every, self.total_steps - step)
            tic = time.perf_counter()
            losses = train_loop(iterator, tf.constant(n, tf.int32)).numpy()
            seconds = time.perf_counter() - tic
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                raise TrainingError(f"loss became {losses[bad[0]]} at step {step + bad[0] + 1}; the last good "
                                    f"checkpoint ({self.manager.latest_checkpoint}) is kept")
            step += n
            self.step.assign(step)
            with writer.as_default(step=step):
                tf.summary.scalar("loss", float(losses.mean()))
                tf.summary.scalar("accuracy", float(self.train_metrics["accuracy"].result()))
                tf.summary.scalar("learning_rate", current_lr(self.optimizer))
                tf.summary.scalar("images_per_sec", n * cfg.batch_size / seconds)
            if progress is not None:
                progress.update(in_epoch + n, [("loss", float(self.train_metrics["loss"].result()))])
            # The epoch's log line goes first, then the checkpoint: a crash in between repeats
            # the line's steps on restart, and _trim_metrics_log drops the stale line.
            reached = False
            if step % self.steps_per_epoch == 0 or step == self.total_steps:
                results = self._end_epoch(epoch + 1)
                progress = None
                reached = self._reached_target()
            if step % every == 0 or step == self.total_steps or preempted.is_set() or reached:
                self.manager.save(checkpoint_number=step)
            if reached:
                self.log(f"Reached target_accuracy {cfg.target_accuracy:.2%} at epoch {epoch + 1} (step {step}), "
                         f"{time.perf_counter() - started:.1f} s after the start of training")
                break
            if preempted.is_set() and step < self.total_steps:
                writer.flush()
                raise Preempted(step, self.manager.latest_checkpoint)
        writer.flush()
        if start < self.total_steps and self.is_chief and cfg.export:
            self.export()
        return results

    def _end_epoch(self, epoch: int) -> dict[str, float]:
        results = {name: float(m.result()) for name, m in self.train_metrics.items()}
        line = f"Epoch {epoch}, Loss: {results['loss']:.4f}, Accuracy: {results['accuracy'] * 100:.2f}"
        if self.eval_source is not None:
            test = self.evaluate_source(self.eval_source)
            results.update({f"test_{k}": v for k, v in test.items()})
            line += f", Test Loss: {test['loss']:.4f}, Test Accuracy: {test['accuracy'] * 100:.2f}"
        for metric in self.train_metrics.values():
            metric.reset_state()
        if self.is_chief:
            self.log(line)
            step = int(self.step.numpy())
            with tf.io.gfile.GFile(os.path.join(self.cfg.model_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps({"epoch": epoch, "step": step, **results}) + "\n")
            if self.eval_source is not None:
                writer = tf.summary.create_file_writer(os.path.join(self.cfg.model_dir, "logs", "eval"))
                with writer.as_default(step=step):
                    for name, value in results.items():
                        if name.startswith("test_"):
                            tf.summary.scalar(name[5:], value)
                writer.flush()
        return results

    def evaluate_source(self, source: data.Source) -> dict[str, float]:
        """Loss, top-1 (and top-5) accuracy of the current weights on ``source``."""
        for metric in self.eval_metrics.values():
            metric.reset_state()
        if not hasattr(self, "_test_step"):
            self._test_step = steps.make_test_step(self.model, self.loss_fn, self.eval_metrics, self.strategy,
                                                   self.jit)
        dist = self.strategy.distribute_datasets_from_function(
            lambda ctx: data.make_dataset(source, self.cfg.eval_batch_size, training=False, input_context=ctx))
        for batch in dist:
            self._test_step(batch)
        return {name: float(m.result()) for name, m in self.eval_metrics.items()}

    def export(self) -> None:
        """Writes ``model.keras`` and a serving SavedModel (``saved_model/``) to model_dir."""
        self.model.save(os.path.join(self.cfg.model_dir, "model.keras"))
        self.model.export(os.path.join(self.cfg.model_dir, "saved_model"), verbose=False)


def train(cfg: TrainConfig, log: Log = print) -> dict[str, float]:
    """Builds a ``Run`` from ``cfg`` and trains it. See ``Run.train``."""
    return Run(cfg, log).train()


def evaluate(cfg: TrainConfig, log: Log = print) -> dict[str, float]:
    """Loss and top-1/top-5 accuracy of the newest checkpoint in ``cfg.model_dir`` on ``cfg.eval_split``."""
    run = Run(cfg.replace(mode="eval"), log)
    if not run.manager.checkpoints:
        raise TrainingError(f"no checkpoint in {cfg.model_dir}")
    run.restore()  # raises if none is readable
    results = run.evaluate_source(run.eval_source)
    log(f"Eval {cfg.eval_split} at step {int(run.step.numpy())}: " +
        ", ".join(f"{k}: {v:.4f}" for k, v in results.items()))
    return results
