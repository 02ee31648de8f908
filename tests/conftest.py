"""Shared test set-up: quiet TensorFlow, two logical CPUs, and MNIST wherever it can be found.

MNIST (Keras ``mnist.npz`` layout) is looked for in ``$TFRESNET_DATA_DIR``, then in
``../shared/data`` beside the checkout, then in Keras' download cache, downloading it there with
``keras.datasets.mnist`` if needed. Where none of these works (offline, no file), the tests marked
``needs_mnist`` are skipped with a one-line reason; ``TFRESNET_REQUIRE_DATA=1`` (set by ``.ci/run``)
turns that into a failed run, so CI never passes without the data.
"""

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist each worker (and the processes it starts) gets its share of the cores: two
# TensorFlow processes each with a thread per core oversubscribe the machine. Measured on 2 cores
# with -n 2: 1,604 s of test time against 1,739 s, in-process training tests 10-20% faster.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
if _WORKERS > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for _var in THREAD_VARS:
        os.environ.setdefault(_var, str(max(1, _cores // _WORKERS)))
# XLA runs keep their compiled steps in a cache of this test session, not in the user's ~/.cache.
os.environ.setdefault("TFRESNET_XLA_CACHE", tempfile.mkdtemp(prefix="tfresnet-xla-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy tests have two replicas; must precede any op.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"
# The README and the documentation pages in the order of mkdocs.yml's nav: their commands are tested
# as one text, in the order a reader meets them.
DOC_PAGES = [REPO / "README.md", *(REPO / "docs" / page for page in
                                   re.findall(r"^  - [^:]+: (\S+\.md)$", (REPO / "mkdocs.yml").read_text(), re.M))]
README = "\n".join(page.read_text() for page in DOC_PAGES)


def write_wav(path, wave, rate: int = 16_000) -> None:
    """A float waveform in [-1, 1] as a 16-bit mono WAV file (folders made as needed)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.audio.encode_wav(np.asarray(wave, np.float32)[:, None], rate))


def find_mnist(download=None) -> tuple[pathlib.Path | None, str]:
    """``(path of mnist.npz, "")``, or ``(None, why not)``, in the order the module docstring gives.

    Args:
        download: ``() -> path`` fetching MNIST into Keras' cache; ``keras.datasets.mnist`` by default.
    """
    from tfresnet import data  # noqa: PLC0415

    env = os.environ.get(data.DATA_DIR_ENV)
    candidates = ([pathlib.Path(env) / "mnist.npz"] if env else []) + [SHARED_MNIST]
    for path in candidates:
        if path.is_file():
            return path, ""
    cached = data.keras_cache_dir() / "mnist.npz"
    if not cached.is_file():
        try:
            (download or _download_mnist)()
        except Exception as err:  # offline: URLError, OSError, ...
            where = " or ".join(str(p.parent) for p in candidates)
            return None, (f"MNIST not found (mnist.npz in {where}) and the download into {cached.parent} failed "
                          f"({type(err).__name__}); set ${data.DATA_DIR_ENV} to a folder with mnist.npz")
    return cached, ""


def _download_mnist() -> None:
    import keras  # noqa: PLC0415

    keras.datasets.mnist.load_data()  # into Keras' cache, the Keras-layout mnist.npz


_found, MNIST_MISSING = find_mnist()
# Always a path, so module-level commands can name it; tests that read it are marked needs_mnist.
MNIST_NPZ = _found or SHARED_MNIST
# The spoken keywords (Speech Commands layout) beside MNIST; tests that read them are marked needs_keywords.
SPOKEN_KEYWORDS = MNIST_NPZ.parent / "spoken_keywords"
KEYWORDS_MISSING = "" if SPOKEN_KEYWORDS.is_dir() else f"spoken keywords not found at {SPOKEN_KEYWORDS}"


def local(words):
    """The README's offline data folder is ``../shared/data``; the tests use wherever MNIST was found."""
    return [w.replace("../shared/data", str(MNIST_NPZ.parent)) for w in words]


def table_commands(prefix):
    """The commands in the README's tables that start with ``prefix``."""
    return re.findall(rf"^\|.*\| `({re.escape(prefix)}[^`]*)` \|$", README, flags=re.M)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_mnist: reads MNIST (skipped, with the reason, where none is found)")
    config.addinivalue_line("markers", "needs_keywords: reads ../shared/data/spoken_keywords (skipped where absent)")
    missing = MNIST_MISSING or KEYWORDS_MISSING
    if missing and os.environ.get("TFRESNET_REQUIRE_DATA") == "1":
        pytest.exit(f"{missing} (TFRESNET_REQUIRE_DATA=1: these tests must not be skipped)", returncode=1)


def pytest_collection_modifyitems(config, items):
    # The slow tier first: with two xdist workers, a long test that starts last would run alone at
    # the end while the other worker idles. The sort is stable, so each tier keeps the file order.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        if MNIST_MISSING and item.get_closest_marker("needs_mnist"):
            item.add_marker(pytest.mark.skip(reason=MNIST_MISSING))
        if KEYWORDS_MISSING and item.get_closest_marker("needs_keywords"):
            item.add_marker(pytest.mark.skip(reason=KEYWORDS_MISSING))


@pytest.fixture
def mnist_npz() -> pathlib.Path:
    if MNIST_MISSING:
        pytest.skip(MNIST_MISSING)
    return MNIST_NPZ


def shared_run(tmp_path_factory, name: str, make) -> pathlib.Path:
    """The folder ``make(folder)`` filled, once per test session: the first xdist worker to ask
    makes it while any other waits on a lock, then all read it. A failed ``make`` leaves nothing, so
    the next test to ask tries again (and fails the same way, with its own traceback).

    Args:
        tmp_path_factory: pytest's fixture; its base folder's parent is common to the workers.
        name: The run's folder name, one per scenario.
        make: ``(folder) -> None``, writing the run into the empty ``folder``.
    """
    from filelock import FileLock  # noqa: PLC0415

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder, done = root / "shared" / name, root / "shared" / f"{name}.done"
    folder.parent.mkdir(exist_ok=True)
    with FileLock(str(root / "shared" / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


def train_in_process(*args: str, command: str = "tfresnet-train") -> None:
    """``tfresnet-train ARGS`` in this process (no cold TensorFlow start), failing on a non-zero exit.

    ``--deterministic`` turns on TensorFlow's op determinism for the whole process; it is turned
    off again so that the tests that follow run as they would alone.
    """
    from tensorflow.python.framework import config as tf_config  # noqa: PLC0415 (public API: enable only)

    from tfresnet import cli  # noqa: PLC0415

    try:
        code = cli.main([command, *args])
    finally:
        tf_config.disable_op_determinism()
    assert code == 0, f"{command} {' '.join(args)} exited {code}"


def mnist_config(model_dir, **changes):
    """``mnist_resnet`` on 2,000 MNIST images for 3 epochs of 62 steps, evaluated on 1,000 after each."""
    from tfresnet.config import TrainConfig  # noqa: PLC0415

    base = dict(model="mnist_resnet", dataset="mnist", data_dir=str(MNIST_NPZ.parent), train_split="train[:2000]",
                eval_split="test[:1000]", batch_size=32, epochs=3, steps_per_loop=16, model_dir=str(model_dir))
    return TrainConfig(**{**base, **changes})


class TrainedRun(NamedTuple):
    """A finished run that tests read (never write): its config, what ``training.train`` returned and
    the lines it printed."""

    cfg: Any
    results: dict
    lines: list

    @property
    def model_dir(self) -> pathlib.Path:
        return pathlib.Path(self.cfg.model_dir)


def trained_run(tmp_path_factory, name: str, cfg_of) -> TrainedRun:
    """``cfg_of(folder)`` trained once per test session into a shared folder (``shared_run``)."""
    from tfresnet import training  # noqa: PLC0415

    def make(folder):
        lines = []
        results = training.train(cfg_of(folder), log=lines.append)
        (folder.parent / f"{name}.json").write_text(json.dumps({"results": results, "lines": lines}, default=float))

    folder = shared_run(tmp_path_factory, name, make)
    record = json.loads((folder.parent / f"{name}.json").read_text())
    return TrainedRun(cfg_of(folder), record["results"], record["lines"])


# The keyword encoder of the tests: smaller than flags/kws_protores.cfg (150 steps of 60 clips,
# 32 channels), trained on the shared spoken keywords.
SMALL_KWS = dict(task="fewshot", model="protores", dataset="folder", data_dir=str(SPOKEN_KEYWORDS),
                 model_options={"widths": [32, 32, 32], "bins_as_channels": True, "pooling": "average",
                                "center_bins": True},
                 fewshot_loss="cosine_softmax", batch_size=60, metric="cosine", epochs=3, episodes_per_epoch=50,
                 eval_episodes=50, steps_per_loop=50, learning_rate=2e-3, lr_schedule="cosine", speed=0.15,
                 formant=0.1, spec_augment=True, keep_best=True)


@pytest.fixture(scope="session")
def trained_kws(tmp_path_factory) -> TrainedRun:
    """A trained keyword encoder's run (``SMALL_KWS``: model.keras, best/, checkpoints/), made once per
    session; read by tests/test_spotting.py and the streaming benchmark's test."""
    from tfresnet import training  # noqa: PLC0415
    from tfresnet.config import TrainConfig  # noqa: PLC0415

    if KEYWORDS_MISSING:
        pytest.skip(KEYWORDS_MISSING)
    # $TFRESNET_KWS_RUN: a folder to keep the run in between sessions (a finished run resumes as is).
    if os.environ.get("TFRESNET_KWS_RUN"):
        cfg = TrainConfig(**SMALL_KWS, model_dir=os.environ["TFRESNET_KWS_RUN"])
        return TrainedRun(cfg, training.train(cfg, log=lambda line: None), [])
    return trained_run(tmp_path_factory, "trained_kws", lambda folder: TrainConfig(**SMALL_KWS, model_dir=str(folder)))


@pytest.fixture(scope="session")
def trained_mnist(tmp_path_factory) -> TrainedRun:
    """The trained image run (``mnist_config``: checkpoints, logs, ``model.keras``, ``saved_model/``),
    made once per session for every test that needs one; tests/test_training.py checks what it reached."""
    if MNIST_MISSING:
        pytest.skip(MNIST_MISSING)
    return trained_run(tmp_path_factory, "trained_mnist", mnist_config)


@pytest.fixture(scope="session")
def mirrored() -> tf.distribute.MirroredStrategy:
    """The two-CPU MirroredStrategy, one per test process: each instance numbers its collectives
    from the same start, so two that run steps in one process collide ("Shape mismatch in the
    collective instance 100")."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def launch_workers(model_dirs, *extra, sync_batchnorm=False):
    """Starts one CLI process per model_dir as the workers of one MultiWorkerMirroredStrategy cluster.

    ``sync_batchnorm`` adds one all-reduce per BatchNorm layer and step: slower, so only where tested.
    """
    ports = []
    for _ in model_dirs:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    args = ["--strategy=multi_worker", "--dataset=mnist", f"--data_dir={MNIST_NPZ.parent}", "--batch_size=32",
            "--mode=train", *(["--model_options=sync_batchnorm=true"] if sync_batchnorm else []), *extra]
    procs = []
    for i, model_dir in enumerate(model_dirs):
        worker_env = {**os.environ, "PYTHONPATH": str(REPO),
                      "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen([sys.executable, "-m", "tfresnet.train", *args, f"--model_dir={model_dir}"],
                                      cwd=REPO, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def image_folder(root):
    """Two classes of eight random 40x48 PNGs each, in the folder layout the README describes."""
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            (root / cls / f"{i}.png").write_bytes(
                tf.io.encode_png(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).numpy())
    return root


def pytorch_weights_file(folder, name="resnet18"):
    """A random torchvision-layout state dict of ``name`` (``tests/torch_reference.py``), as ``.safetensors``."""
    import safetensors.torch  # noqa: PLC0415
    from torch_reference import random_resnet  # noqa: PLC0415

    path = folder / f"{name}.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in random_resnet(name).state_dict().items()}, str(path))
    return path
