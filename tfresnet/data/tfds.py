"""tensorflow-datasets as a source: its prepared files read as shards, small datasets as arrays, and a
download that cannot happen (offline, a manual download) refused in seconds, not minutes."""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap

import numpy as np
import tensorflow as tf

from tfresnet.core.errors import BadInput
from tfresnet.data import shards as shards_lib
from tfresnet.data.recipes import DATA_DIR_ENV, Recipe, Source, check_labels


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why ``url``'s server cannot be reached within ``timeout`` seconds, or None when it answers.

    Any HTTP answer (even 403 or 404) means the network is there; proxies in the environment
    (``HTTPS_PROXY``) are used as a download would use them.
    """
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    host = url.split("/")[2]
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as err:
        return f"no connection to {host}: {getattr(err.reason, 'strerror', None) or err.reason}"
    except (OSError, ValueError) as err:  # timeouts, resets
        return f"no answer from {host} within {timeout:g} s ({type(err).__name__})"
    return None


@contextlib.contextmanager
def _quiet_absl():
    """tensorflow-datasets warns through absl's logger about folders it has not made yet: not our user's concern."""
    import logging  # noqa: PLC0415

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_available(name: str, recipe: Recipe, builder, data_dir: str | None) -> None:
    """Refuses, in seconds, a dataset that is not prepared and cannot be downloaded now (offline, a
    manual download), instead of tensorflow-datasets retrying for minutes."""
    # Prepared already, or a stand-in that downloads nothing (tfds.testing.mock_data): nothing to probe.
    mocked = not type(builder).download_and_prepare.__module__.startswith("tensorflow_datasets.core")
    if builder.is_prepared() or mocked:
        return
    where = data_dir or "tensorflow-datasets' data_dir (~/tensorflow_datasets)"
    if not recipe.download_url:
        manual = os.path.join(data_dir or "~/tensorflow_datasets", "downloads", "manual")
        raise BadInput(f"{name} is not prepared in {where} and needs a manual download: put its archives in "
                       f"{manual} (see tensorflow-datasets' {recipe.tfds_name} page), or name its shards with "
                       "--dataset=shards")
    reason = unreachable(recipe.download_url)
    if reason:
        local = (f"put {name}.npz (Keras layout) in a folder and pass --data_dir=FOLDER (or set ${DATA_DIR_ENV})"
                 if recipe.in_memory else "prepare it on a machine online and pass its folder as --data_dir")
        raise BadInput(f"{name} is not in {where} and cannot be downloaded ({reason}); {local}")


def load_tfds(name: str, recipe: Recipe, split: str, data_dir: str | None) -> Source:
    import tensorflow_datasets as tfds  # noqa: PLC0415 - only users of TFDS pay for importing it

    train = split.startswith(recipe.splits[0])
    root = data_dir or os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    # Folders a failed download would leave behind, empty or half-filled: removed again on failure.
    watched = (root, os.path.join(root, "downloads"), os.path.join(root, recipe.tfds_name.split("/")[0]))
    new_folders = [d for d in watched if "://" not in d and not os.path.exists(d)]
    try:
        with _quiet_absl():
            _check_available(name, recipe, tfds.builder(recipe.tfds_name, data_dir=data_dir), data_dir)
            stream = tfds.load(recipe.tfds_name, split=split, data_dir=data_dir, as_supervised=True,
                               shuffle_files=train and not recipe.in_memory,
                               read_config=tfds.ReadConfig(shuffle_seed=0, try_autocache=False))
            splits = tfds.builder(recipe.tfds_name, data_dir=data_dir).info.splits
    except BadInput:
        raise
    except Exception as err:  # download, manual-download and parsing errors all land here
        for folder in reversed(new_folders):
            shutil.rmtree(folder, ignore_errors=True)
        local = f" or put {name}.npz in data_dir / ${DATA_DIR_ENV}" if recipe.in_memory else ""
        reason = textwrap.shorten(str(err).splitlines()[0] if str(err) else "", 200, placeholder=" ...")
        raise BadInput(
            f"tensorflow-datasets could not load {recipe.tfds_name!r} split {split!r} from "
            f"{data_dir or 'its default data_dir'} ({type(err).__name__}: {reason}); "
            f"prepare it with tfds.builder({recipe.tfds_name!r}).download_and_prepare(){local}"
        ) from None
    if recipe.in_memory:
        chunks = list(tfds.as_numpy(stream.batch(8192)))
        images = np.concatenate([c[0] for c in chunks])
        labels = np.concatenate([c[1] for c in chunks]).astype(np.int32)
        check_labels(labels, recipe.num_classes, f"{name} {split}")
        return Source(name, split, recipe, len(labels), images=images, labels=labels)
    shard_set = _tfds_shards(splits, split, f"{recipe.tfds_name} {split}")
    if shard_set is not None:
        return Source(name, split, recipe, shard_set.num_examples, shards=shard_set)
    # No prepared files (tfds.testing.mock_data): the stream itself, counted once.
    num_examples = int(stream.reduce(0, lambda count, _: count + 1))
    return Source(name, split, recipe, num_examples, stream=stream)


def _tfds_shards(splits, split: str, where: str) -> shards_lib.ShardSet | None:
    """The prepared TFRecord files behind a tensorflow-datasets split (slices included), if they exist."""
    try:
        instructions = splits[split].file_instructions
    except (KeyError, ValueError, AttributeError):
        return None
    files = [str(i.filename) for i in instructions]
    # Only TFRecord files (not ArrayRecord) that are really there (not mocked) are read directly.
    if not files or not all(".tfrecord" in os.path.basename(f) and tf.io.gfile.exists(f) for f in files):
        return None
    counts = [i.examples_in_shard - i.skip if i.take == -1 else i.take for i in instructions]
    return shards_lib.ShardSet(tuple(files), tuple(counts), tuple(i.skip for i in instructions), where)
