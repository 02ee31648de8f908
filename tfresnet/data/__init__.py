"""Image data: sources, the input pipeline, augmentations, shard files.

``recipes`` (``Recipe``, ``RECIPES``, ``Source``), ``sources`` (``load_source``: ``.npz``, folders,
shard folders, class subsets), ``tfds`` (tensorflow-datasets, and refusing a download that cannot
happen), ``pipeline`` (``make_dataset`` in stages: example stream, decode and augment, batch and
pad, mix, hand-off), ``decode`` (decoding files and records, naming bad ones), ``augment`` (the
augmentation table), ``shards`` (TFRecord shard files), ``convert`` (a folder or TFDS dataset to
shards), ``random_batch`` (``synthetic``: one random batch). Their names are also names of this package
(``tfresnet.data.make_dataset``). Data imports nothing from the models, engine or tasks.
"""

from tfresnet.core.lazy import namespace

__getattr__, __dir__ = namespace(__name__, ("recipes", "sources", "pipeline", "random_batch", "convert", "tfds", "decode"))
