"""Sharded TFRecord files: conversion, a seeded order that resumes in constant time, bad shards."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from tfresnet import cli, data
from tfresnet.data import shards


def _folder(root, classes=3, per_class=7):
    """Flat images of distinct values in class folders; the last of each class is its test split."""
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((18 + i, 22, 3), 20 + 9 * (per_class * c + i), np.uint8)
            encoded = tf.io.encode_jpeg(pixels, quality=100) if i % 2 else tf.io.encode_png(pixels)
            tf.io.write_file(str(root / f"c{c}" / f"{i}.{'jpg' if i % 2 else 'png'}"), encoded)
    return root


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    root = _folder(tmp_path_factory.mktemp("imgs"))
    out = tmp_path_factory.mktemp("shards")
    status = cli.shards_main(["tfresnet-shards", f"--data_dir={root}", f"--out_dir={out}", "--num_shards=5",
                              "--splits=train"])
    assert status == 0
    return root, out


def _names(ds, count):
    """The ``name`` feature (where the image came from) of the first ``count`` records."""
    return [tf.train.Example.FromString(r).features.feature["name"].bytes_list.value[0].decode()
            for r, _, _ in ds.take(count).as_numpy_iterator()]


def test_conversion_keeps_every_image_byte_for_byte(shard_dir):
    root, out = shard_dir
    manifest = json.loads((out / "shards.json").read_text())
    assert manifest["classes"] == ["c0", "c1", "c2"]
    assert len(manifest["splits"]["train"]["files"]) == 5 and sum(manifest["splits"]["train"]["counts"]) == 18
    source = data.load_source("shards", "train", str(out), image_size=16)
    assert source.num_examples == 18 and source.num_classes == 3 and source.recipe.augment == "inception"
    seen = {}
    for record, _, _ in shards.read_records(source.shards, training=False).as_numpy_iterator():
        example = tf.train.Example.FromString(record).features.feature
        name = example["name"].bytes_list.value[0].decode()
        seen[name] = example["label"].int64_list.value[0]
        assert example["image"].bytes_list.value[0] == (root / name).read_bytes()
    assert sorted(seen) == sorted(f"c{c}/{i}.{'jpg' if i % 2 else 'png'}" for c in range(3) for i in range(6))
    assert all(label == int(name[1]) for name, label in seen.items())


def test_every_epoch_reads_each_record_once_in_a_new_order(shard_dir):
    _, out = shard_dir
    shard_set = data.load_source("shards", "train", str(out)).shards
    stream = _names(shards.read_records(shard_set, training=True, seed=1, cycle_length=2, window=4), 18 * 3)
    epochs = [stream[i * 18:(i + 1) * 18] for i in range(3)]
    assert all(sorted(e) == sorted(epochs[0]) and len(set(e)) == 18 for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    # Two input pipelines read disjoint files that cover the split.
    halves = [shard_set.for_pipeline(i, 2) for i in range(2)]
    assert sorted(halves[0].files + halves[1].files) == sorted(shard_set.files)
    with pytest.raises(ValueError, match="has 5 shard files, fewer than the 6 input pipelines"):
        shard_set.for_pipeline(0, 6)


@pytest.mark.parametrize("cycle_length,window", [(2, 4), (3, 5)])
@pytest.mark.slow
def test_resuming_anywhere_gives_the_uninterrupted_stream(shard_dir, cycle_length, window):
    _, out = shard_dir
    shard_set = data.load_source("shards", "train", str(out)).shards
    kw = dict(training=True, seed=4, cycle_length=cycle_length, window=window)
    full = list(shards.read_records(shard_set, **kw).take(18 * 9 + 6).map(lambda r, n, k: (n, k)).as_numpy_iterator())
    for start in (1, 5, 7, 11, 18, 19, 18 * 8 + 13):
        resumed = shards.read_records(shard_set, start=start, **kw).take(6).map(lambda r, n, k: (n, k))
        assert list(resumed.as_numpy_iterator()) == full[start:start + 6], start


def test_a_resumed_pipeline_never_decodes_the_records_it_skips(shard_dir, tmp_path):
    """Shards in which every record before the resume point's window is not an image."""
    root, out = shard_dir
    source = data.load_source("shards", "train", str(out), image_size=16)
    start_step, batch = 8 * source.steps_per_epoch(3) + 4, 3  # 8 epochs in
    kw = dict(batch_size=batch, training=True, seed=2, augment="none")
    expected = next(iter(data.make_dataset(source, start_step=start_step, **kw)))
    # The records of this epoch before the window of the resume point (window 1024 > 18: the epoch start).
    position = start_step * batch
    epoch_names = _names(shards.read_records(source.shards, training=True, seed=2), position + 18)
    epoch_start = position - position % 18
    skipped = set(epoch_names[epoch_start:position]) - set(epoch_names[position:position + batch])
    assert len(skipped) == position - epoch_start
    examples = [(b"not an image" if name in skipped else str(root / name), int(name[1]), name)
                for name in sorted(set(epoch_names))]
    poisoned = data.Source("poisoned", "train", source.recipe, 18,
                           shards=shards.write_shards(examples, str(tmp_path / "p"), "train", 5, ["c0", "c1", "c2"]))
    x, y = next(iter(data.make_dataset(poisoned, start_step=start_step, **kw)))
    assert sorted(y.numpy()) == sorted(expected[1].numpy())
    # From the start, the same shards fail on the first poisoned record, naming its shard and record.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"cannot read or decode\] \[.*train-0000\d-of-00005"
                                                             r"\.tfrecord record \d+\]"):
        for _ in data.make_dataset(poisoned, **kw).take(7):
            pass


def test_corrupt_and_truncated_shards_are_named_or_skipped_with_a_count(shard_dir, tmp_path, capfd):
    _, out = shard_dir
    source = data.load_source("shards", "train", str(out), image_size=16)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in out.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    victim = broken / "train-00002-of-00005.tfrecord"
    count = source.shards.counts[2]
    victim.write_bytes(victim.read_bytes()[:-30])  # the last record loses its end
    cut = data.load_source("shards", "train", str(broken), image_size=16)
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        for _ in data.make_dataset(cut, 3, training=False):
            pass
    line = cli.error_line(caught.value)
    assert line == f"{victim}: corrupt or truncated at record {count - 1} (1 of its records lost)"
    assert sum(int(y.shape[0]) for _, y in data.make_dataset(cut, 3, training=False, bad_images="skip")) == 17
    assert f"skipped \"{victim}: corrupt or truncated at record {count - 1} (1 of its records lost)\"" in capfd.readouterr().err
    # A shard that is gone, or a manifest that is not one, is named before anything is read.
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(victim))} is missing \(1 of the 5 shards"):
        data.load_source("shards", "train", str(broken))
    (broken / "shards.json").write_text("{}")
    with pytest.raises(ValueError, match=r"shards.json is not a valid shard manifest"):
        data.load_source("shards", "train", str(broken))
    with pytest.raises(FileNotFoundError, match="not a shard folder"):
        data.load_source("shards", "train", str(tmp_path))
    with pytest.raises(ValueError, match="has no split 'test' \\(it has train\\)"):
        data.load_source("shards", "test", str(out))


def test_a_split_already_written_is_never_lost(shard_dir, tmp_path, capsys):
    root, out = shard_dir
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert cli.shards_main(["tfresnet-shards", f"--data_dir={root}", f"--out_dir={out}", "--splits=train"]) == 2
    assert "already holds split 'train'; pass --overwrite" in capsys.readouterr().err
    # A conversion that fails half-way (a missing image) leaves the folder as it was.
    examples = [(str(root / "c0" / "0.png"), 0, "a"), (str(root / "missing.png"), 0, "b")]
    with pytest.raises(tf.errors.NotFoundError):
        shards.write_shards(examples, str(out), "train", 2, ["c0", "c1", "c2"], overwrite=True)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert cli.shards_main(["tfresnet-shards", f"--out_dir={out}", "--dataset=mnist"]) == 2
    assert "cannot convert 'mnist'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cli_trains_on_shards_and_names_a_bad_image_in_one_line(shard_dir, tmp_path, capsys):
    root, out = shard_dir
    common = ["--model=resnet20_cifar", "--image_size=32", "--batch_size=6", "--eval_batch_size=6", "--train_steps=2",
              "--steps_per_loop=1", "--mode=train", "--export=false"]
    assert cli.main(["tfresnet-train", "--dataset=shards", f"--data_dir={out}", *common,
                     f"--model_dir={tmp_path / 'run'}"]) == 0
    assert "Epoch 1, Loss: " in capsys.readouterr().out
    bad = root / "c1" / "3.jpg"
    good = bad.read_bytes()
    try:
        bad.write_bytes(good[:100])
        # Three steps of six: the whole training split, the bad image included.
        assert cli.main(["tfresnet-train", "--dataset=folder", f"--data_dir={root}", *common, "--train_steps=3",
                         f"--model_dir={tmp_path / 'bad'}"]) == 2
    finally:
        bad.write_bytes(good)
    err = capsys.readouterr().err
    assert err == f"tfresnet-train: error: folder:{root} train: cannot read or decode {bad}\n"


def test_tensorflow_datasets_files_are_read_as_shards_and_convert(tmp_path, monkeypatch):
    """A real (tiny) prepared tensorflow-datasets dataset: its TFRecord files resume in constant time too."""
    import tensorflow_datasets as tfds

    class TfresnetToyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image(encoding_format="jpeg"),
                                                     "label": tfds.features.ClassLabel(names=["a", "b", "c"])}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(30), "validation": self._generate_examples(6)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"image": np.full((20 + i % 3, 24, 3), 8 * i, np.uint8), "label": i % 3}

    TfresnetToyImages(data_dir=str(tmp_path / "tfds"), file_format="tfrecord").download_and_prepare()
    recipe = data.Recipe(3, (16, 16, 3), data.IMAGENET_MEAN, data.IMAGENET_STD, "inception", "center_crop",
                         "tfresnet_toy_images", ("train", "validation"), in_memory=False, fixed_size=False)
    monkeypatch.setitem(data.RECIPES, "toy", recipe)
    source = data.load_source("toy", "train", str(tmp_path / "tfds"))
    assert source.shards is not None and source.num_examples == 30
    assert data.load_source("toy", "train[:10]", str(tmp_path / "tfds")).num_examples == 10
    kw = dict(batch_size=4, training=True, seed=1)
    full = [y.numpy().tolist() for _, y in data.make_dataset(source, **kw).take(17)]
    assert [y.numpy().tolist() for _, y in data.make_dataset(source, start_step=15, **kw).take(2)] == full[15:]
    written = data.to_shards("toy", str(tmp_path / "tfds"), str(tmp_path / "out"), 3, log=lambda line: None)
    assert {s: w.num_examples for s, w in written.items()} == {"train": 30, "validation": 6}
    converted = data.load_source("shards", "validation", str(tmp_path / "out"), image_size=16)
    x, y = next(iter(data.make_dataset(converted, 6, training=False)))
    assert x.shape == (6, 16, 16, 3) and sorted(y.numpy().tolist()) == [0, 0, 1, 1, 2, 2]


def test_each_input_pipeline_reads_its_own_shards_and_resumes_exactly(shard_dir):
    _, out = shard_dir
    source = data.load_source("shards", "train", str(out), image_size=16)
    contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2)
                for i in range(2)]
    kw = dict(batch_size=4, training=True, seed=3, augment="none")
    streams = [[y.numpy().tolist() for _, y in data.make_dataset(source, input_context=c, **kw).take(6)]
               for c in contexts]
    assert all(len(batch) == 2 for stream in streams for batch in stream)  # per-replica batches of 2
    for c, stream in zip(contexts, streams):
        resumed = [y.numpy().tolist() for _, y in data.make_dataset(source, input_context=c, start_step=4, **kw).take(2)]
        assert resumed == stream[4:]


def test_shards_on_a_tensorflow_filesystem_url_as_on_gs():
    """``ram://`` goes through TensorFlow's filesystem layer as ``gs://`` does (no bucket here)."""
    examples = [(tf.io.encode_png(np.full((8, 8, 3), 10 * i, np.uint8)).numpy(), i % 2, f"x{i}") for i in range(10)]
    written = shards.write_shards(examples, "ram://bucket/shards", "train", 3, ["a", "b"])
    assert written.files[0] == "ram://bucket/shards/train-00000-of-00003.tfrecord"
    source = data.load_source("shards", "train", "ram://bucket/shards", image_size=8)
    kw = dict(batch_size=4, training=True, seed=0)
    full = [y.numpy().tolist() for _, y in data.make_dataset(source, **kw).take(5)]
    assert [y.numpy().tolist() for _, y in data.make_dataset(source, start_step=3, **kw).take(2)] == full[3:]
