"""Where and how a run computes: the ``tf.distribute`` strategy, XLA, precision, seeds, workers.

``make_runtime(cfg)`` comes first in every run: multi-worker and TPU strategies must exist before
anything starts TensorFlow's context.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
from typing import Callable, Iterator

import keras
import tensorflow as tf

from tfresnet.config import TrainConfig
from tfresnet.core.errors import TrainingError  # noqa: F401 - long imported from here


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


def updates_locally(strategy: tf.distribute.Strategy) -> bool:
    """Whether the optimizer update needs no cross-replica merge (an all-reduce ``merge_call``).

    True for the default strategy and ``OneDeviceStrategy``: there XLA can compile the update
    together with the step. A merge inside an XLA cluster is what breaks ``MirroredStrategy``.
    """
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return True
    with strategy.scope():
        return not tf.distribute.has_strategy()  # False only for the default (no-op) strategy


def why_not_xla(sync_batchnorm: bool, strategy: tf.distribute.Strategy) -> str | None:
    """Why the train step cannot be XLA-compiled under ``strategy``, or None.

    The one case: synchronised BatchNorm under ``MirroredStrategy``/``MultiWorkerMirroredStrategy``.
    Its all-reduce is a ``merge_call``, which TensorFlow cannot place inside the per-replica XLA
    cluster. A TPU compiles the whole replica step, all-reduces included, so it can.
    """
    if not sync_batchnorm or updates_locally(strategy) or isinstance(strategy, tf.distribute.TPUStrategy):
        return None
    return f"synchronised BatchNorm cannot run inside XLA under {type(strategy).__name__}"


def use_xla(jit_compile: bool | None, strategy: tf.distribute.Strategy, on_cpu: bool = False) -> bool:
    """XLA when asked; by default on GPU and TPU (where it pays), and on CPU only if ``on_cpu``.

    ``on_cpu`` is the task's measured default (BENCHMARKS.md): image models train slower under
    XLA on CPU, the few-shot encoder 1.8-2.2x faster.
    """
    if jit_compile is not None:
        return jit_compile
    return (on_cpu or isinstance(strategy, tf.distribute.TPUStrategy)
            or bool(tf.config.list_logical_devices("GPU")))


def compilation_cache_dir(configured: str | None = None) -> str | None:
    """The persistent XLA cache folder of ``TrainConfig.compilation_cache``: None is the default
    (``$TFRESNET_XLA_CACHE``, else ``~/.cache/tfresnet/xla-<TensorFlow version>``), ``""`` is off."""
    if configured is None:
        configured = os.environ.get("TFRESNET_XLA_CACHE") or os.path.join(
            os.path.expanduser("~"), ".cache", "tfresnet", f"xla-{tf.__version__}")
    return configured or None


def use_compilation_cache(directory: str) -> None:
    """Keeps XLA's compiled executables and GPU autotuning results in ``directory`` across processes.

    TensorFlow's persistent XLA cache (``TF_XLA_FLAGS=--tf_xla_persistent_cache_directory``) and
    XLA's per-fusion autotuning cache (``XLA_FLAGS=--xla_gpu_per_fusion_autotune_cache_dir``): a
    repeated run of the same step loads its executables instead of compiling and autotuning them
    (30-70 s for a ResNet on a GPU; on this project's CPU a ResNet-18 step's first call went from
    7.7 s to 2.1 s). Entries are keyed by the step's HLO, so a changed model simply compiles anew;
    the folder name carries the TensorFlow version. TensorFlow reads these flags once, at the
    process's first XLA compilation: later calls change nothing, and flags set by the user win.
    TensorFlow logs one harmless "Error parsing text-format tensorflow.XlaSerializedCacheEntry"
    line per cached executable it loads (it tries text before binary).
    """
    os.makedirs(directory, exist_ok=True)
    for variable, flag, value in (("TF_XLA_FLAGS", "tf_xla_persistent_cache_directory", directory),
                                  ("XLA_FLAGS", "xla_gpu_per_fusion_autotune_cache_dir",
                                   os.path.join(directory, "autotune"))):
        current = os.environ.get(variable, "")
        if flag not in current:
            os.environ[variable] = f"{current} --{flag}={value}".strip()


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Sets Keras' dtype policy for models built inside, and restores the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def worker_id(strategy: tf.distribute.Strategy) -> int | None:
    """This worker's index under ``MultiWorkerMirroredStrategy``, None under any other strategy."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return strategy.cluster_resolver.task_id
    return None


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Worker processes of ``strategy`` (1 unless multi-worker)."""
    if worker_id(strategy) is None:
        return 1
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))


def gather_from_workers(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """``value`` of every worker, in worker order (a collective: every worker must call it)."""
    if worker_id(strategy) is None:
        return [value]
    mine = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant([value], tf.int64))
    per_replica = [int(v) for v in strategy.gather(mine, axis=0).numpy()]  # worker-major order
    return per_replica[::max(1, len(per_replica) // num_workers(strategy))]


@contextlib.contextmanager
def lost_worker_is_an_error(strategy: tf.distribute.Strategy, checkpoint_dir: str) -> Iterator[None]:
    """Turns a collective that failed because a worker died into one line saying what to do.

    Any collective can be the one that notices: a train step, a metric read, a save, a restore.
    """
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError) as err:
        if worker_id(strategy) is None:
            raise
        raise TrainingError(
            f"lost contact with another worker ({type(err).__name__}); restart every worker with the same "
            f"command to resume from the newest checkpoint in {checkpoint_dir}") from None


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The strategy of a run and how it computes.

    Attributes:
        strategy: The ``tf.distribute`` strategy; build variables under ``strategy.scope()``.
        jit_compile: Whether the steps are XLA-compiled.
        precision: Keras dtype policy name for the model.
        device_prefetch: Batches each replica's device holds ahead of the running step.
    """

    strategy: tf.distribute.Strategy
    jit_compile: bool
    precision: str
    device_prefetch: int = 2

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def worker_id(self) -> int | None:
        return worker_id(self.strategy)

    @property
    def is_chief(self) -> bool:
        return not self.worker_id

    def distribute(self, dataset_fn: Callable[[tf.distribute.InputContext], tf.data.Dataset]):
        """The batches of ``dataset_fn(input_context)``, copied to the replicas' devices ahead of the steps.

        ``distribute_datasets_from_function`` with fetch-to-device and a buffer of
        ``device_prefetch`` batches per replica (one device, Mirrored, multi-worker and TPU
        strategies): while a step runs, the next batches are already being copied, so the step
        never waits for its input's host-to-device transfer. Under the default strategy with a
        GPU, ``tf.data.experimental.prefetch_to_device`` does the same for the first GPU.
        Iterating changes no data position: exact resume still re-derives it from the step.

        Returns:
            A distributed dataset (a plain ``tf.data.Dataset`` under the default strategy).
        """
        options = tf.distribute.InputOptions(experimental_fetch_to_device=True,
                                             experimental_per_replica_buffer_size=self.device_prefetch)
        distributed = self.strategy.distribute_datasets_from_function(dataset_fn, options)
        gpus = tf.config.list_logical_devices("GPU")
        if isinstance(distributed, tf.data.Dataset) and gpus:
            distributed = distributed.apply(tf.data.experimental.prefetch_to_device(gpus[0].name,
                                                                                     self.device_prefetch))
        return distributed

    def scope(self):
        """Builds models inside: the precision policy and the strategy's scope."""
        stack = contextlib.ExitStack()
        stack.enter_context(precision_policy(self.precision))
        stack.enter_context(self.strategy.scope())
        return stack


def make_runtime(cfg: TrainConfig, xla_on_cpu: bool = False, log: Callable[[str], None] = print) -> Runtime:
    """The strategy (first: it must precede TensorFlow's context), determinism, seeds and XLA of ``cfg``.

    XLA is decided here, once: asked for (``jit_compile=True``) where the step cannot be compiled
    (``why_not_xla``), a one-line error; on only by default (a GPU), turned off with a line saying so.

    Args:
        cfg: The run's configuration.
        xla_on_cpu: XLA by default on CPU too (the task's ``xla_on_cpu``).
        log: Where the line about XLA turned off goes.
    """
    strategy = make_strategy(cfg.strategy, cfg.tpu)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.seed)
    jit_compile = use_xla(cfg.jit_compile, strategy, xla_on_cpu)
    if jit_compile and (reason := why_not_xla(bool(cfg.model_options.get("sync_batchnorm")), strategy)):
        if cfg.jit_compile:
            raise ValueError(f"jit_compile: {reason}; use --jit_compile=false or drop sync_batchnorm")
        log(f"XLA is off: {reason} (--jit_compile=false silences this)")
        jit_compile = False
    if jit_compile and (cache := compilation_cache_dir(cfg.compilation_cache)):
        use_compilation_cache(cache)
    return Runtime(strategy, jit_compile, cfg.precision, cfg.device_prefetch)
