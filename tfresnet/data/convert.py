"""Conversion to shard files: a class folder, or a tensorflow-datasets image dataset, as TFRecord shards
(``tfresnet-shards``); ``tfresnet.data.shards`` writes and reads the files themselves."""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from tfresnet.data import shards as shards_lib
from tfresnet.data.recipes import RECIPES
from tfresnet.data.sources import check_images, folder_files


def to_shards(name: str, data_dir: str | None, out_dir: str, num_shards: int, splits: Sequence[str] = (),
                 seed: int = 0, overwrite: bool = False,
                 log=print) -> dict[str, shards_lib.ShardSet]:
    """Converts a class-folder dataset, or a tensorflow-datasets image dataset, into shard files.

    Images are stored as encoded (a folder's files byte for byte), not decoded and re-encoded. A
    folder's images are checked first: one that does not decode is a one-line error naming it.

    Args:
        name: ``folder`` (``data_dir`` is the folder) or a tensorflow-datasets name in ``RECIPES``.
        data_dir: The folder, or tensorflow-datasets' data directory.
        out_dir: The shard folder (local or ``gs://``).
        num_shards: Files per split (each input pipeline reads its own, so at least that many).
        splits: Splits to convert; default ``train`` and ``test`` (a folder) or the recipe's.
        seed: Seeds the order in which examples are spread over the shards.
        overwrite: Replace splits the folder already holds.
        log: Prints one line per split.

    Returns:
        The written splits.
    """
    written = {}

    def write(examples, split, class_names, order_seed):
        written[split] = shards_lib.write_shards(examples, out_dir, split, num_shards, class_names, order_seed,
                                                 overwrite)
        log(f"{split}: {written[split].num_examples} images of {len(class_names)} classes -> "
            f"{len(written[split].files)} shards in {out_dir}")

    if name == "folder":
        if not data_dir:
            raise ValueError("converting a folder needs data_dir: a folder with one sub-folder per class")
        for split in splits or ("train", "test"):
            _, class_names, files, labels = folder_files(pathlib.Path(data_dir), split, 0.1)
            check_images(files)
            write([(f, label, os.path.relpath(f, data_dir)) for f, label in zip(files, labels)], split, class_names,
                  seed)
        return written
    if name not in RECIPES or RECIPES[name].in_memory:
        raise ValueError(f"cannot convert {name!r}: convert a folder or an image dataset of tensorflow-datasets "
                         f"({', '.join(k for k, r in RECIPES.items() if not r.in_memory)})")
    import tensorflow_datasets as tfds  # noqa: PLC0415

    recipe = RECIPES[name]
    builder = tfds.builder(recipe.tfds_name, data_dir=data_dir)
    class_names = builder.info.features["label"].names
    for split in splits or recipe.splits:
        # Streamed, never held in memory: the encoded bytes as tensorflow-datasets stored them.
        stream = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        examples = ((image, label, f"{recipe.tfds_name}/{split}/{i}")
                    for i, (image, label) in enumerate(stream.map(lambda ex: (ex["image"], ex["label"]))
                                                       .as_numpy_iterator()))
        write(examples, split, class_names, None)
    return written
