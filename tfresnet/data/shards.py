"""Sharded TFRecord files of encoded images: writing them, and reading them in a seeded order that
resumes in constant time.

A shard folder holds ``<split>-00000-of-00008.tfrecord`` ... and ``shards.json``, which lists each
split's files, their record counts and the class names. Every record is a ``tf.train.Example`` with
``image`` (the encoded bytes exactly as the source held them: nothing is re-encoded), ``label``
(int64) and ``name`` (where the image came from). ``image`` and ``label`` are also the keys of
tensorflow-datasets' image-classification datasets, whose prepared TFRecord files this module reads
the same way (``ShardSet`` with each file's ``skip`` and ``count``).

Reading order. Epoch ``e`` of one input pipeline is a pure function of ``(seed, e)``: its shards
are permuted, taken ``cycle_length`` at a time, read round-robin (a parallel, deterministic
interleave), and each window of ``window`` consecutive records is permuted again. Every position
of the stream therefore maps to a shard and a record index without reading anything, so a run
resumed at position ``p`` opens each shard at its record (TFRecord skips by record headers, without
reading the data) and reads at most one window of records it does not use; nothing skipped is
decoded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

MANIFEST = "shards.json"
FORMAT = "tfresnet-shards"
# Records read at once per shard; ~2 JPEGs of ImageNet size, as TFRecordDataset's own default.
READ_BUFFER = 256 * 1024
# The epoch count of a training stream that repeats forever: a range (which a tf.data service can
# split among its workers, an epoch each), not a counter (which it cannot).
EPOCHS_FOREVER = 2**62


@dataclasses.dataclass(frozen=True)
class ShardSet:
    """TFRecord files of ``tf.train.Example`` s (``image``, ``label``) making up one split.

    Attributes:
        files: The files (local paths or ``gs://`` URLs).
        counts: Records used from each file.
        skips: Records to pass over at the start of each file first (a slice of a split).
        where: Names the data in errors.
    """

    files: tuple[str, ...]
    counts: tuple[int, ...]
    skips: tuple[int, ...] = ()
    where: str = "shards"

    def __post_init__(self):
        if not self.skips:
            object.__setattr__(self, "skips", (0,) * len(self.files))
        if not len(self.files) == len(self.counts) == len(self.skips):
            raise ValueError(f"{self.where}: files, counts and skips differ in length")

    @property
    def num_examples(self) -> int:
        return sum(self.counts)

    def for_pipeline(self, pipeline_id: int, num_pipelines: int) -> "ShardSet":
        """The files one of ``num_pipelines`` input pipelines reads (every ``num_pipelines``-th)."""
        if len(self.files) < num_pipelines:
            raise ValueError(f"{self.where} has {len(self.files)} shard files, fewer than the {num_pipelines} input "
                             f"pipelines that each read their own; write at least {num_pipelines} shards")
        pick = slice(pipeline_id, None, num_pipelines)
        return dataclasses.replace(self, files=self.files[pick], counts=self.counts[pick], skips=self.skips[pick])


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _example(image: bytes, label: int, name: str) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def read_manifest(folder: str) -> dict:
    """``shards.json`` of a shard folder, checked; a one-line error naming the file otherwise."""
    path = os.path.join(folder, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: not a shard folder (write one with tfresnet-shards)")
    try:
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("splits"), dict):
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        for split, entry in manifest["splits"].items():
            if len(entry["files"]) != len(entry["counts"]):
                raise ValueError(f"split {split!r} lists {len(entry['files'])} files and {len(entry['counts'])} counts")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a valid shard manifest ({err})") from None
    return manifest


def write_shards(examples: Iterable[tuple[bytes | str, int, str]], folder: str, split: str, num_shards: int,
                 classes: Sequence[str], seed: int | None = 0, overwrite: bool = False) -> ShardSet:
    """Writes one split as ``num_shards`` TFRecord files in ``folder`` and records it in ``shards.json``.

    Examples go to the shards in turn, so each holds a mix of classes; a list is shuffled with
    ``seed`` first, an iterator (a tensorflow-datasets split, already shuffled when prepared) is
    written as it streams, never held in memory. The files are written under temporary names and
    renamed into place, and the manifest updated, only once all of them are complete: a conversion
    that fails or is interrupted leaves the folder as it was.

    Args:
        examples: ``(encoded image bytes, or a file to read them from, label, name)``.
        folder: The shard folder (created if missing; local or ``gs://``).
        split: The split's name (``train``, ``test``, ...).
        num_shards: Files to write; at least the number of input pipelines that will read them.
        classes: Class names, by label.
        seed: Seeds the shuffle of a list; None keeps its order.
        overwrite: Replace the split if the folder already holds it (otherwise an error).

    Returns:
        The written split as a ``ShardSet``.
    """
    if num_shards <= 0:
        raise ValueError(f"num_shards must be positive, got {num_shards}")
    if isinstance(examples, Sequence):
        if not examples:
            raise ValueError(f"no examples to write for split {split!r}")
        num_shards = min(num_shards, len(examples))
        if seed is not None:
            examples = [examples[i] for i in np.random.default_rng(seed).permutation(len(examples))]
    tf.io.gfile.makedirs(folder)
    manifest_path = os.path.join(folder, MANIFEST)
    manifest = read_manifest(folder) if tf.io.gfile.exists(manifest_path) else {"format": FORMAT, "splits": {}}
    if split in manifest["splits"] and not overwrite:
        raise ValueError(f"{folder} already holds split {split!r}; pass --overwrite (overwrite=True) to replace it")
    if manifest.get("classes", list(classes)) != list(classes):
        raise ValueError(f"{folder} holds classes {manifest['classes'][:5]}..., not {list(classes)[:5]}...")
    names = [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    temporary = [os.path.join(folder, f".{name}.incomplete") for name in names]
    counts = [0] * num_shards
    writers = [tf.io.TFRecordWriter(path) for path in temporary]
    try:
        try:
            for i, (image, label, where) in enumerate(examples):
                if isinstance(image, str):
                    with tf.io.gfile.GFile(image, "rb") as f:
                        image = f.read()
                writers[i % num_shards].write(_example(image, int(label), where))
                counts[i % num_shards] += 1
        finally:
            for writer in writers:
                writer.close()
        if not all(counts):
            raise ValueError(f"split {split!r} has {sum(counts)} examples, fewer than num_shards {num_shards}")
    except BaseException:
        for path in temporary:
            tf.io.gfile.remove(path)
        raise
    old = manifest["splits"].get(split, {}).get("files", [])
    for path, name in zip(temporary, names):
        tf.io.gfile.rename(path, os.path.join(folder, name), overwrite=True)
    manifest["classes"] = list(classes)
    manifest["splits"][split] = {"files": names, "counts": counts}
    with tf.io.gfile.GFile(manifest_path + ".incomplete", "w") as f:
        json.dump(manifest, f, indent=1)
    tf.io.gfile.rename(manifest_path + ".incomplete", manifest_path, overwrite=True)
    for name in set(old) - set(names):  # an overwritten split with fewer shards than before
        tf.io.gfile.remove(os.path.join(folder, name))
    return ShardSet(tuple(os.path.join(folder, n) for n in names), tuple(counts), where=f"{folder} {split}")


def load_shards(folder: str, split: str) -> tuple[ShardSet, list[str]]:
    """One split of a shard folder, and the class names."""
    manifest = read_manifest(folder)
    if split not in manifest["splits"]:
        raise ValueError(f"{folder} has no split {split!r} (it has {', '.join(sorted(manifest['splits']))})")
    entry = manifest["splits"][split]
    files = tuple(os.path.join(folder, n) for n in entry["files"])
    missing = [f for f in files if not tf.io.gfile.exists(f)]
    if missing:
        raise FileNotFoundError(f"{missing[0]} is missing ({len(missing)} of the {len(files)} shards of {split!r} "
                                f"that {MANIFEST} lists)")
    return ShardSet(files, tuple(int(c) for c in entry["counts"]), where=f"{folder} {split}"), manifest["classes"]


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A serialized ``tf.train.Example`` -> ``(encoded image, int32 label)``."""
    features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string),
                                                   "label": tf.io.FixedLenFeature([], tf.int64)})
    return features["image"], tf.cast(features["label"], tf.int32)


def _read_shard(skip_bad: bool):
    """``(file, skip, start, end) -> (record, name)`` for records ``start .. end - 1`` of the file.

    A corrupt or truncated file ends in a one-line error naming it and the first record lost, or,
    with ``skip_bad``, in a warning with the count of records lost.
    """

    def read(file, skip, start, end):
        records = tf.data.TFRecordDataset(file, buffer_size=READ_BUFFER).skip(skip + start).take(end - start)
        # An unreadable record ends the file's stream (ignore_errors); the count then tells.
        records = records.enumerate(start).ignore_errors()
        records = records.concatenate(tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), tf.constant(b""))))

        def check(expected, element):
            index, record = element
            done = index < 0
            lost = tf.logical_and(done, expected < end)
            message = tf.strings.join([file, ": corrupt or truncated at record ", tf.strings.as_string(skip + expected),
                                       " (", tf.strings.as_string(end - expected), " of its records lost)"])
            if skip_bad:
                report = tf.cond(lost, lambda: tf.print("tfresnet: skipped", message, output_stream=sys.stderr),
                                 tf.no_op)
            else:
                report = tf.debugging.Assert(tf.logical_not(lost), [message])
            with tf.control_dependencies([report]):
                name = tf.strings.join([file, " record ", tf.strings.as_string(skip + index)])
                return tf.where(done, expected, index + 1), (record, name, done)

        records = records.scan(start, check).filter(lambda record, name, done: tf.logical_not(done))
        return records.map(lambda record, name, done: (record, name))

    return read


def _interleave(files, skips, starts, ends, cycle_length: int, skip_bad: bool) -> tf.data.Dataset:
    """Round-robin over the given shards, one record at a time (deterministic, read in parallel)."""
    slices = tf.data.Dataset.from_tensor_slices((files, tf.cast(skips, tf.int64), tf.cast(starts, tf.int64),
                                                 tf.cast(ends, tf.int64)))
    return slices.interleave(_read_shard(skip_bad), cycle_length=cycle_length, block_length=1,
                             num_parallel_calls=cycle_length, deterministic=True)


def _locate(counts: np.ndarray, position: int) -> tuple[int, int]:
    """Where a round-robin over shards of ``counts`` is at ``position``: ``(round, slot)``."""
    round_ = 0
    while True:
        active = np.flatnonzero(counts > round_)
        if position < len(active):
            return round_, int(active[position])
        position -= len(active)
        round_ += 1


def read_records(shards: ShardSet, training: bool, seed: int = 0, start: int = 0, cycle_length: int = 16,
                 window: int = 1024, skip_bad: bool = False) -> tf.data.Dataset:
    """The records of ``shards``: ``(record, name, key)``.

    Args:
        shards: The files of this input pipeline (``ShardSet.for_pipeline``).
        training: Repeat forever in a fresh seeded order each epoch; otherwise one ordered pass.
        seed: Seeds the order.
        start: Position in the training stream to start at (a resumed run): counted in records,
            all epochs together. Constant time: nothing before the window of ``start`` is read.
        cycle_length: Shards read at once.
        window: Records shuffled together after the interleave (memory: ``window`` records).
        skip_bad: Warn and go on past corrupt or truncated files instead of failing.

    Returns:
        A dataset of the serialized record, a name for errors (``file record i``) and a key unique
        to this (epoch, position) that seeds the record's augmentation.
    """
    files, skips = np.array(shards.files), np.array(shards.skips, np.int64)
    counts = np.array(shards.counts, np.int64)
    n, num_files = int(counts.sum()), len(files)
    if n == 0:
        raise ValueError(f"{shards.where} holds no records")
    if not training:
        ds = _interleave(files, skips, np.zeros_like(counts), counts, cycle_length, skip_bad)
        return ds.map(lambda record, name: (record, name, tf.constant(0, tf.int64)))

    def permutation(epoch):
        return tf.random.experimental.stateless_shuffle(tf.range(num_files, dtype=tf.int64), seed=[seed, epoch])

    def shuffle_windows(records: tf.data.Dataset, epoch, first_window: int) -> tf.data.Dataset:
        def shuffle(w, batch):
            order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(batch[0])[0]),
                                                             seed=[seed, epoch * 1_000_003 + w + 1])
            return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(part, order) for part in batch))

        return records.batch(window).enumerate(first_window).flat_map(shuffle)

    def with_keys(records: tf.data.Dataset, epoch, first: int) -> tf.data.Dataset:
        return records.enumerate(first).map(lambda i, rec: (rec[0], rec[1], tf.cast(epoch, tf.int64) * n + i))

    def epoch_records(epoch):
        groups = tf.data.Dataset.from_tensor_slices(permutation(epoch)).batch(cycle_length)
        records = groups.flat_map(lambda g: _interleave(tf.gather(files, g), tf.gather(skips, g),
                                                        tf.zeros_like(g), tf.gather(counts, g), cycle_length,
                                                        skip_bad))
        return with_keys(shuffle_windows(records, epoch, 0), epoch, 0)

    start_epoch, position = divmod(start, n)
    later = tf.data.Dataset.range(start_epoch + 1, EPOCHS_FOREVER).flat_map(epoch_records)
    if position == 0:
        return tf.data.Dataset.range(start_epoch, EPOCHS_FOREVER).flat_map(epoch_records)
    # The resumed epoch: from the start of the window holding ``position``, located on indices.
    first_window = position // window
    at = first_window * window
    perm = permutation(start_epoch).numpy()
    parts = []
    for g in range(0, num_files, cycle_length):
        group = perm[g:g + cycle_length]
        size = int(counts[group].sum())
        if at >= size:
            at -= size
            continue
        if at:
            round_, slot = _locate(counts[group], at)
            now = group[slot:][counts[group[slot:]] > round_]  # the rest of the current round
            parts.append(_interleave(files[now], skips[now], np.full(len(now), round_), np.full(len(now), round_ + 1),
                                     cycle_length, skip_bad))
            group = group[counts[group] > round_ + 1]
            parts.append(_interleave(files[group], skips[group], np.full(len(group), round_ + 1), counts[group],
                                     cycle_length, skip_bad))
            at = 0
        else:
            parts.append(_interleave(files[group], skips[group], np.zeros(len(group), np.int64), counts[group],
                                     cycle_length, skip_bad))
    records = parts[0]
    for part in parts[1:]:
        records = records.concatenate(part)
    records = shuffle_windows(records, start_epoch, first_window).skip(position - first_window * window)
    return with_keys(records, start_epoch, position).concatenate(later)
