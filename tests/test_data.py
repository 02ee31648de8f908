"""Input pipelines: real MNIST, TFDS (mocked), image folders, synthetic data, sharding, bad input."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tfresnet import data, models
from tfresnet.data import augment
from tfresnet.engine import steps


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_real_mnist_npz(mnist_npz):
    train = data.load_source("mnist", "train", str(mnist_npz.parent))
    test = data.load_source("mnist", "test", str(mnist_npz.parent))
    assert (train.num_examples, test.num_examples) == (60_000, 10_000)
    assert train.images.shape == (60_000, 28, 28, 1) and train.images.dtype == np.uint8
    assert set(np.unique(train.labels)) == set(range(10)) and set(np.unique(test.labels)) == set(range(10))

    batches = list(data.make_dataset(test, 1000, training=False))
    assert len(batches) == 10
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.float32 and labels.dtype == np.int32
    # (x / 255 - 0.1307) / 0.3081 spans [-0.4242, 2.8215]; the test set is in its original order.
    assert images.min() == pytest.approx(-0.1307 / 0.3081, abs=1e-4)
    assert images.max() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-4)
    assert abs(images.mean()) < 0.05 and abs(images.std() - 1) < 0.05
    np.testing.assert_array_equal(labels, test.labels)


def test_env_var_points_at_local_mnist(mnist_npz, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_npz.parent))
    src = data.load_source("mnist", "test[:500]")
    assert src.num_examples == 500 and src.images is not None


def test_training_order_is_seeded_reshuffled_and_resumable(mnist_npz):
    src = data.load_source("mnist", "train[:1000]", str(mnist_npz.parent))
    labels = lambda ds, n: np.concatenate([y for _, y in ds.take(n)])  # noqa: E731
    run = labels(data.make_dataset(src, 100, training=True, seed=3), 25)
    np.testing.assert_array_equal(run, labels(data.make_dataset(src, 100, training=True, seed=3), 25))
    assert not np.array_equal(run[:1000], labels(data.make_dataset(src, 100, training=True, seed=4), 10))
    # Each epoch is a permutation of the examples, and a different one each epoch.
    epoch1, epoch2 = run[:1000], run[1000:2000]
    assert sorted(epoch1) == sorted(src.labels) and not np.array_equal(epoch1, epoch2)
    # Starting at step 13 gives exactly the batches an uninterrupted run sees from step 13.
    np.testing.assert_array_equal(labels(data.make_dataset(src, 100, training=True, seed=3, start_step=13), 12),
                                  run[1300:2500])


def test_cifar_style_augmentation_is_deterministic_and_changes_pixels():
    recipe = data.RECIPES["cifar10"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    src = data.Source("toy", "train", recipe, 64, images=images, labels=np.arange(64, dtype=np.int32) % 10)
    a = next(iter(data.make_dataset(src, 64, training=True, seed=1)))
    b = next(iter(data.make_dataset(src, 64, training=True, seed=1)))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (64, 32, 32, 3)
    plain = recipe.preprocessing.normalize(images[a[1].numpy() * 0 + np.arange(64)]).numpy()  # unaugmented
    # Crops shift pixels and pad with zeros, so batches differ from the plain images.
    assert not np.allclose(np.sort(a[0].numpy().ravel()), np.sort(plain.ravel()))


def test_shift_augmentation_moves_digits_by_at_most_two_pixels_and_never_mirrors():
    image = np.zeros((28, 28, 1), np.uint8)
    image[10, 5] = 255  # off-centre: a mirror image would put it near column 22
    src = data.Source("toy", "train", data.RECIPES["mnist"], 256, images=np.repeat(image[None], 256, 0),
                      labels=np.zeros(256, np.int32))
    x, _ = next(iter(data.make_dataset(src, 256, training=True, seed=1, augment="shift")))
    again, _ = next(iter(data.make_dataset(src, 256, training=True, seed=1, augment="shift")))
    np.testing.assert_array_equal(x, again)
    rows, cols = np.unravel_index(x.numpy().reshape(256, -1).argmax(1), (28, 28))
    assert set(rows) == set(range(8, 13)) and set(cols) == set(range(3, 8))  # every shift in [-2, 2] occurs
    # The MNIST recipe itself does not augment; an unknown name is refused.
    plain, _ = next(iter(data.make_dataset(src, 256, training=True, seed=1)))
    assert (plain.numpy().reshape(256, -1).argmax(1) == 10 * 28 + 5).all()
    with pytest.raises(ValueError, match="^augment: unknown value 'shfit' \\(did you mean 'shift'\\?\\); expected one of "):
        data.make_dataset(src, 256, training=True, augment="shfit")


def test_tfds_path_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        src = data.load_source("mnist", "train", data_dir=None)
        assert src.num_examples == 24 and src.images.shape == (24, 28, 28, 1)
        x, y = next(iter(data.make_dataset(src, 8, training=True)))
        assert x.shape == (8, 28, 28, 1) and y.dtype == tf.int32
        stream = data.load_source("imagenette", "train", image_size=64)
        assert stream.stream is not None and stream.num_classes == 10
        x, y = next(iter(data.make_dataset(stream, 4, training=True)))
        assert x.shape == (4, 64, 64, 3) and np.all((y.numpy() >= 0) & (y.numpy() < 10))
        x, _ = next(iter(data.make_dataset(data.load_source("imagenette", "validation", image_size=64), 4,
                                           training=False)))
        assert x.shape == (4, 64, 64, 3)


def _write_image_folder(root, classes=("cat", "dog", "owl", "yak"), per_class=5, size=40):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size, size + 8, 3), 40 * c, np.uint8) + rng.integers(0, 20, (size, size + 8, 3), np.uint8)
            encode = tf.io.encode_png if i % 2 else (lambda p: tf.io.encode_jpeg(p, quality=95))
            tf.io.write_file(str(root / name / f"{i}.{'png' if i % 2 else 'jpg'}"), encode(pixels))
    return root


def test_image_folder(tmp_path):
    root = _write_image_folder(tmp_path / "imgs")
    train = data.load_source("folder", "train", str(root), image_size=32)
    test = data.load_source("folder", "test", str(root), image_size=32)
    assert (train.num_examples, test.num_examples, train.num_classes) == (16, 4, 4)
    x, y = next(iter(data.make_dataset(test, 4, training=False)))
    assert x.shape == (4, 32, 32, 3) and sorted(y.numpy()) == [0, 1, 2, 3]
    # Class c was painted 40 * c (+ noise): the decoded pixels must say so.
    for img, label in zip(x.numpy(), y.numpy()):
        pixel = (img * np.array(data.IMAGENET_STD) + np.array(data.IMAGENET_MEAN)) * 255
        assert abs(pixel.mean() - (40 * label + 9.5)) < 4
    x, _ = next(iter(data.make_dataset(train, 8, training=True)))
    assert x.shape == (8, 32, 32, 3)


def test_class_subsets_relabel_in_order_and_draw_examples_per_class_by_seed(mnist_npz, tmp_path):
    folder = str(mnist_npz.parent)
    full = data.load_source("mnist", "train", folder)
    five = data.load_source("mnist", "train", folder, classes=(5, 6, 7, 8, 9), examples_per_class=10, seed=3)
    assert (five.num_examples, five.num_classes, five.images.shape) == (50, 5, (50, 28, 28, 1))
    assert np.bincount(five.labels).tolist() == [10] * 5
    # Each kept image is a training image of digit label + 5, in the file's order.
    matches = [np.flatnonzero((full.images == img).all(axis=(1, 2, 3))) for img in five.images]
    assert all(full.labels[m[0]] == label + 5 for m, label in zip(matches, five.labels))
    again = data.load_source("mnist", "train", folder, classes=(5, 6, 7, 8, 9), examples_per_class=10, seed=3)
    other = data.load_source("mnist", "train", folder, classes=(5, 6, 7, 8, 9), examples_per_class=10, seed=4)
    np.testing.assert_array_equal(five.images, again.images)
    assert not np.array_equal(five.images, other.images)
    test = data.load_source("mnist", "test", folder, classes=(9, 0))  # relabelled in the order given
    assert test.num_examples == 1009 + 980 and test.num_classes == 2 and np.bincount(test.labels).tolist() == [1009, 980]
    with pytest.raises(ValueError, match=r"mnist train: classes \[10\] do not exist; labels are 0..9"):
        data.load_source("mnist", "train", folder, classes=(3, 10))
    with pytest.raises(ValueError, match="class 1 has 1 examples, fewer than examples_per_class 2"):
        data.load_source("mnist", "train[:4]", folder, classes=(1,), examples_per_class=2)
    # A folder's classes are its sorted sub-folders.
    root = _write_image_folder(tmp_path / "imgs")
    two = data.load_source("folder", "train", str(root), image_size=8, classes=(3, 1), examples_per_class=2)
    assert (two.num_examples, two.num_classes) == (4, 2)
    x, y = next(iter(data.make_dataset(two, 4, training=False)))
    kept = [(int(label), float(np.mean(img * np.array(data.IMAGENET_STD) + np.array(data.IMAGENET_MEAN)) * 255))
            for img, label in zip(x.numpy(), y.numpy())]
    assert sorted(y for y, _ in kept) == [0, 0, 1, 1]
    for label, brightness in kept:  # class c was painted 40 * c: label 0 is "yak" (3), label 1 "dog" (1)
        assert abs(brightness - (40 * (3, 1)[label] + 9.5)) < 4


def test_synthetic_shapes():
    ds = data.synthetic((20, 24, 5), num_classes=7, batch_size=6)
    x1, y1 = next(iter(ds))
    x2, _ = next(iter(ds.skip(3)))
    assert x1.shape == (6, 20, 24, 5) and y1.shape == (6,) and y1.dtype == tf.int32
    assert np.all((y1.numpy() >= 0) & (y1.numpy() < 7))
    np.testing.assert_array_equal(x1, x2)


def test_per_replica_sharding_under_two_device_mirrored_strategy(mnist_npz, mirrored):
    strategy = mirrored
    assert strategy.num_replicas_in_sync == 2
    src = data.load_source("mnist", "train[:512]", str(mnist_npz.parent))
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: data.make_dataset(src, 64, training=True, seed=5, input_context=ctx))
    x, y = next(iter(dist))
    per_replica = strategy.experimental_local_results(y)
    assert [t.shape[0] for t in per_replica] == [32, 32]
    # Together the replicas hold exactly the single-device global batch.
    single = next(iter(data.make_dataset(src, 64, training=True, seed=5)))[1].numpy()
    np.testing.assert_array_equal(np.concatenate([t.numpy() for t in per_replica]), single)
    # Two input pipelines (multi-worker) split the examples without overlap.
    shards = [data.make_dataset(src, 64, training=True, seed=5,
                                input_context=tf.distribute.InputContext(2, i, 2)) for i in (0, 1)]
    firsts = [next(iter(s))[0].numpy().reshape(32, -1) for s in shards]
    assert not any((firsts[0] == row).all(1).any() for row in firsts[1])


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda d: data.load_source("mnits", "train", str(d)), ValueError, r"unknown dataset 'mnits'.*did you mean mnist"),
        (lambda d: data.load_source("npz", "train", str(d / "nope.npz")), FileNotFoundError, r"nope\.npz"),
        (lambda d: data.load_source("npz", "train", str(_write_npz(d / "k.npz", images=np.zeros((2, 4, 4), np.uint8)))),
         KeyError, r"k\.npz lacks \['x_train', 'y_train'\]"),
        (lambda d: data.load_npz(_write_npz(d / "l.npz", x_train=np.zeros((3, 4, 4), np.uint8),
                                            y_train=np.array([0, 1, 12])), "train", num_classes=10),
         ValueError, r"l\.npz y_train: labels must be in \[0, 10\).*12"),
        (lambda d: data.load_source("folder", "train", str(d / "missing")), FileNotFoundError, "missing"),
        (lambda d: data.load_source("folder", "train", str(d)), ValueError, "no class sub-folders"),
        (lambda d: (d / "a").mkdir() or data.load_source("folder", "train", str(d)), ValueError, r"a is empty"),
        (lambda d: (d / "b").mkdir() or (d / "b" / "x.txt").write_text("hi") and data.load_source(
            "folder", "train", str(d)), ValueError, r"x\.txt is not an image"),
        (lambda d: data.load_source("npz", "train"), ValueError, "needs data_dir"),
        (lambda d: data.load_source("mnist", "train", str(d / "typo")), FileNotFoundError,
         r"data_dir .*typo does not exist and no mnist\.npz"),
    ],
    ids=["unknown", "missing-npz", "npz-keys", "labels", "missing-folder", "empty-folder", "empty-class",
         "non-image", "npz-no-path", "missing-data-dir"],
)
def test_bad_input_is_a_clear_error(call, error, message, tmp_path):
    with pytest.raises(error, match=message):
        call(tmp_path)


def test_streamed_labels_out_of_range_fail_the_pipeline():
    recipe = data.Recipe(3, (8, 8, 3), (0.5,) * 3, (0.5,) * 3, in_memory=False)
    stream = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 5, 2])))
    src = data.Source("toy", "train", recipe, 4, stream=stream)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"toy: label outside \[0, 3\)"):
        list(data.make_dataset(src, 4, training=True).take(1))


def test_local_npz_is_found_in_data_dir_then_env_then_keras_cache(tmp_path, monkeypatch):
    folders = {name: tmp_path / name for name in ("flag", "env", "keras")}
    for name, folder in folders.items():
        (folder / "datasets" if name == "keras" else folder).mkdir(parents=True)
        n = {"flag": 3, "env": 5, "keras": 7}[name]  # tell the copies apart by their size
        _write_npz((folder / "datasets" if name == "keras" else folder) / "mnist.npz",
                   x_train=np.zeros((n, 28, 28), np.uint8), y_train=np.zeros(n, np.uint8),
                   x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.uint8))
    monkeypatch.setenv("KERAS_HOME", str(folders["keras"]))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folders["env"]))
    assert data.load_source("mnist", "train", str(folders["flag"])).num_examples == 3
    assert data.load_source("mnist", "train").num_examples == 5
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.load_source("mnist", "train").num_examples == 7  # where keras.datasets.mnist downloads to


def test_the_suite_finds_mnist_in_the_documented_order_and_says_why_not(tmp_path, monkeypatch):
    import conftest

    env, shared = tmp_path / "env", tmp_path / "shared" / "mnist.npz"
    env.mkdir()
    shared.parent.mkdir()
    for path in (env / "mnist.npz", shared):
        path.write_bytes(b"npz")
    monkeypatch.setattr(conftest, "SHARED_MNIST", shared)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(data.DATA_DIR_ENV, str(env))
    assert conftest.find_mnist() == (env / "mnist.npz", "")
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert conftest.find_mnist() == (shared, "")
    shared.unlink()

    def download():  # what keras.datasets.mnist.load_data() does: write the file into Keras' cache
        (tmp_path / "keras" / "datasets").mkdir(parents=True)
        (tmp_path / "keras" / "datasets" / "mnist.npz").write_bytes(b"npz")

    assert conftest.find_mnist(download) == (tmp_path / "keras" / "datasets" / "mnist.npz", "")

    def offline():
        raise OSError("no network")

    (tmp_path / "keras" / "datasets" / "mnist.npz").unlink()
    path, why = conftest.find_mnist(offline)
    assert path is None and "\n" not in why
    assert why.startswith(f"MNIST not found (mnist.npz in {shared.parent}) and the download into ")
    assert why.endswith("failed (OSError); set $TFRESNET_DATA_DIR to a folder with mnist.npz")


# --------------------------------------------------------------------------------------------------
# Files: index order, constant-time resume, decoding only the crop, bad files
# --------------------------------------------------------------------------------------------------


def test_a_folder_resumes_on_indices_without_opening_what_it_skips(tmp_path):
    root = tmp_path / "imgs"
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(4):  # 12 flat images of distinct values 20 * k: each image names its file
            tf.io.write_file(str(root / f"c{c}" / f"{i}.png"),
                             tf.io.encode_png(np.full((20, 24, 3), 20 * (4 * c + i), np.uint8)))
    source = data.load_folder(root, "train", image_size=16, validation_fraction=0)
    kw = dict(batch_size=4, training=True, seed=3, augment="none")
    steps = source.steps_per_epoch(4)
    start = 8 * steps + 1  # 8 epochs in
    uninterrupted = [(x.numpy(), y.numpy()) for x, y in data.make_dataset(source, **kw).take(start + 1)]
    resumed = data.make_dataset(source, start_step=start, **kw)
    pixel = uninterrupted[start][0][:, 0, 0, 0] * data.IMAGENET_STD[0] * 255 + data.IMAGENET_MEAN[0] * 255
    used = {str(root / f"c{k // 4}" / f"{k % 4}.png") for k in np.round(pixel / 20).astype(int)}
    assert len(used) == 4
    # Delete every file the first resumed batch does not use: opening a skipped file would fail.
    for f in source.files:
        if f not in used:
            os.remove(f)
    x, y = next(iter(resumed))
    np.testing.assert_array_equal(x.numpy(), uninterrupted[start][0])
    np.testing.assert_array_equal(y.numpy(), uninterrupted[start][1])


def test_training_crops_decode_only_the_jpeg_window_and_match_a_full_decode():
    rng = np.random.default_rng(0)
    smooth = tf.image.resize(rng.integers(0, 256, (12, 16, 3)).astype("float32"), (120, 160)).numpy()
    jpeg = tf.io.encode_jpeg(smooth.astype(np.uint8), quality=95)
    png = tf.io.encode_png(smooth.astype(np.uint8))
    for key in range(5):
        seed = tf.constant([7, key], tf.int64)
        full = augment.inception(tf.io.decode_image(jpeg, 3), (32, 32, 3), seed).numpy()
        window = augment.inception_from_encoded(jpeg, (32, 32, 3), seed).numpy()
        # The same window on the original aspect ratio; decoding it alone may differ by rounding only.
        assert np.abs(full - window).mean() < 1.0 and np.abs(full - window).max() < 12
        np.testing.assert_array_equal(augment.inception_from_encoded(png, (32, 32, 3), seed).numpy(),
                                      augment.inception(tf.io.decode_png(png), (32, 32, 3), seed).numpy())
    # A window really is cut (not the whole image squashed): crops of different keys differ.
    assert not np.array_equal(augment.inception_from_encoded(jpeg, (32, 32, 3), tf.constant([7, 0], tf.int64)),
                              augment.inception_from_encoded(jpeg, (32, 32, 3), tf.constant([7, 1], tf.int64)))


def _folder_with_a_corrupt_image(root):
    _write_image_folder(root, per_class=6)
    bad = root / "dog" / "2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    return bad


def test_an_undecodable_image_is_named_or_skipped_with_a_count(tmp_path, capfd):
    bad = _folder_with_a_corrupt_image(tmp_path / "imgs")
    source = data.load_source("folder", "train", str(tmp_path / "imgs"), image_size=16)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"cannot read or decode\] \[{re.escape(str(bad))}\]"):
        for _ in data.make_dataset(source, source.num_examples // 2, training=True).take(4):
            pass
    # skip: batches keep their size and every label stays a real one.
    batches = list(data.make_dataset(source, source.num_examples // 2, training=True, bad_images="skip").take(4))
    assert all(x.shape[0] == source.num_examples // 2 and np.isfinite(x.numpy()).all() for x, _ in batches)
    assert f"skipped 1 unreadable image(s): \"{bad}\"" in capfd.readouterr().err
    with pytest.raises(ValueError, match="bad_images: unknown value 'ignore'"):
        data.make_dataset(source, 4, training=True, bad_images="ignore")
    # Converting to shards checks every image first.
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))} does not decode as an image \(jpeg::Uncompress failed.*\); 1 of 20 files"):
        data.to_shards("folder", str(tmp_path / "imgs"), str(tmp_path / "shards"), 2, splits=("train",))
    assert not (tmp_path / "shards" / "shards.json").exists()


def test_small_classes_and_empty_splits_are_clear(tmp_path):
    root = tmp_path / "imgs"
    _write_image_folder(root, classes=("a", "b"), per_class=3)
    for f in list((root / "b").iterdir())[1:]:
        f.unlink()
    # A class of one image trains; it is not moved to the test split, leaving training without it.
    train = data.load_source("folder", "train", str(root))
    assert sorted(np.bincount(train.labels).tolist()) == [1, 2]
    for f in list((root / "a").iterdir())[1:]:
        f.unlink()
    with pytest.raises(ValueError, match=rf"image folder {re.escape(str(root))}: the test split is empty"):
        data.load_source("folder", "test", str(root))
    (tmp_path / "pickle.npz").write_bytes(b"\x80\x04K\x01.")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")
    for name, what in (("pickle.npz", "a Python pickle"), ("array.npz", "a NumPy .npy array")):
        with pytest.raises(ValueError, match=rf"{tmp_path / name} is {what}, not a Keras-layout .npz array file"):
            data.load_source("npz", "train", str(tmp_path / name))


def test_a_tf_data_service_with_two_workers_decodes_whole_epochs(tmp_path):
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=dispatcher.target.split("://")[1]))
               for _ in range(2)]
    source = data.load_folder(_write_image_folder(tmp_path / "imgs", per_class=3), "train", image_size=16,
                              validation_fraction=0)
    steps = source.steps_per_epoch(4)  # 3
    kw = dict(batch_size=4, training=True, seed=5)
    local = [x.numpy() for x, _ in data.make_dataset(source, **kw).take(4 * steps)]
    served = [x.numpy() for x, _ in data.make_dataset(source, data_service=dispatcher.target, **kw).take(2 * steps)]
    # Each worker makes whole epochs exactly as a local pipeline does; the service interleaves their batches.
    found = [next(i for i, batch in enumerate(local) if np.array_equal(batch, x)) for x in served]
    assert len(set(found)) == len(found) and {i // steps for i in found} <= {0, 1, 2, 3}
    # Resumed mid-epoch, it restarts that epoch (exact resume is what the option gives up).
    resumed = next(iter(data.make_dataset(source, start_step=steps + 1, data_service=dispatcher.target, **kw)))[0]
    assert any(np.array_equal(resumed.numpy(), local[i]) for i in range(steps, 4 * steps) if i % steps == 0)
    del workers


def test_mixup_and_cutmix_make_soft_labels_seeded_per_batch(mnist_npz):
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(8, 16, 12, 3)), tf.float32)  # every pixel differs between images
    labels = tf.range(8)
    seed = tf.constant([1, 2], tf.int64)
    for mix, cut in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        x, y = augment.mix_batch(images, labels, 10, mix, cut, seed)
        np.testing.assert_allclose(y.numpy().sum(1), 1, atol=1e-6)
        again = augment.mix_batch(images, labels, 10, mix, cut, seed)
        np.testing.assert_array_equal(x, again[0])
        assert not np.array_equal(x, augment.mix_batch(images, labels, 10, mix, cut, seed + 1)[0])
    one_hot = tf.one_hot(labels, 8)
    for key in range(6):
        x, y = augment.cutmix(images, one_hot, 1.0, tf.constant([5, key], tf.int64))
        pasted = (x.numpy() != images.numpy()).any(-1).mean((1, 2))  # the share of each image replaced
        np.testing.assert_allclose(y.numpy()[np.arange(8), 7 - np.arange(8)], pasted, atol=1e-6)
        x, y = augment.mixup(images, one_hot, 0.4, tf.constant([5, key], tf.int64))
        lam = y.numpy()[0, 0]
        np.testing.assert_allclose(x.numpy()[0], lam * images.numpy()[0] + (1 - lam) * images.numpy()[7], atol=1e-5)
    # In the pipeline: soft labels in training, keyed by the step (exact resume), plain ones in evaluation.
    source = data.load_source("mnist", "train[:512]", str(mnist_npz.parent))
    kw = dict(batch_size=16, training=True, seed=2, mixup=0.2, cutmix=1.0)
    full = [(x.numpy(), y.numpy()) for x, y in data.make_dataset(source, **kw).take(6)]
    assert full[0][1].shape == (16, 10) and np.allclose(full[0][1].sum(1), 1)
    resumed = next(iter(data.make_dataset(source, start_step=5, **kw)))
    np.testing.assert_array_equal(resumed[0], full[5][0])
    np.testing.assert_array_equal(resumed[1], full[5][1])
    assert next(iter(data.make_dataset(source, 16, training=False, mixup=0.2)))[1].dtype == tf.int32


def test_randaugment_is_keyed_by_the_seed_stays_in_range_and_is_off_at_evaluation(mnist_npz):
    rng = np.random.default_rng(0)
    rgb = tf.constant(rng.integers(0, 256, (20, 24, 3)), tf.uint8)
    grey = tf.constant(rng.integers(0, 256, (12, 12, 1)), tf.uint8)
    for image in (rgb, grey):
        for op in range(len(augment.RANDAUGMENT_OPS)):  # every op, both signs, full strength
            for key in range(2):
                out = augment.rand_augment(image, 1, 10, tf.constant([3, key], tf.int64), ops=[op]).numpy()
                assert out.dtype == np.float32 and out.shape == image.shape, augment.RANDAUGMENT_OPS[op]
                assert 0 <= out.min() and out.max() <= 255, augment.RANDAUGMENT_OPS[op]
    np.testing.assert_array_equal(augment.rand_augment(rgb, 1, 9, tf.constant([0, 0], tf.int64), ops=[0]), rgb)
    # At magnitude 0 the enhance ops are the identity too.
    np.testing.assert_allclose(augment.rand_augment(rgb, 1, 0, tf.constant([0, 0], tf.int64), ops=[8]), rgb)
    outs = [augment.rand_augment(rgb, 2, 9, tf.constant([1, k], tf.int64)).numpy() for k in range(6)]
    np.testing.assert_array_equal(outs[0], augment.rand_augment(rgb, 2, 9, tf.constant([1, 0], tf.int64)))
    assert len({o.tobytes() for o in outs}) > 3
    # In the pipeline: resumable (keyed by the example), and never at evaluation.
    source = data.load_source("mnist", "train[:256]", str(mnist_npz.parent))
    kw = dict(batch_size=16, training=True, seed=4, randaugment=(2, 9))
    full = [x.numpy() for x, _ in data.make_dataset(source, **kw).take(4)]
    np.testing.assert_array_equal(next(iter(data.make_dataset(source, start_step=3, **kw)))[0], full[3])
    plain = next(iter(data.make_dataset(source, batch_size=16, training=True, seed=4)))[0].numpy()
    assert not np.array_equal(plain, full[0])
    evaluated = [next(iter(data.make_dataset(source, 16, training=False, randaugment=r)))[0].numpy()
                 for r in ((0, 9), (2, 9))]
    np.testing.assert_array_equal(*evaluated)


# --------------------------------------------------------------------------------------------------
# uint8 to the device (issue 18): the pipelines hand on pixels; the model normalises them.
# --------------------------------------------------------------------------------------------------


def _logits(model, images):
    return tf.function(lambda x: model(x, training=False), jit_compile=True)(images).numpy()


def _assert_same_logits(actual, expected):
    # 1e-5 of the logits' scale: XLA fuses the normalisation into the first convolution on one
    # path only, which reorders float32 roundings (measured 2e-6 to 2e-5 of logits of 10-19).
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.needs_mnist
@pytest.mark.parametrize("training, augment", [(True, "shift"), (False, None)])
@pytest.mark.slow
def test_uint8_feed_is_a_quarter_of_the_bytes_and_gives_the_float_feeds_logits(mnist_npz, training, augment):
    src = data.load_source("mnist", "train[:64]", str(mnist_npz.parent))
    kw = dict(batch_size=16, training=training, seed=3, augment=augment, mixup=0.2 if training else 0.0)
    pixels_ds = data.make_dataset(src, image_dtype="uint8", **kw)
    spec = pixels_ds.element_spec[0]
    assert spec.dtype == tf.uint8 and tuple(spec.shape[1:]) == (28, 28, 1)
    assert spec.shape[1:].num_elements() * spec.dtype.size == 28 * 28 * 1  # H x W x C bytes an image
    (pixels, labels), (floats, float_labels) = next(iter(pixels_ds)), next(iter(data.make_dataset(src, **kw)))
    assert floats.dtype == tf.float32 and floats.shape == pixels.shape
    np.testing.assert_array_equal(labels, float_labels)
    model = models.create_model("mnist_resnet", preprocessing=src.recipe.preprocessing)
    assert model.takes_uint8
    _assert_same_logits(_logits(model, pixels), _logits(model, floats))


@pytest.mark.slow
def test_uint8_feed_of_decoded_and_resized_images_gives_the_float_feeds_logits(tmp_path):
    # JPEG-style sources: the crop is resized (training) or centre-cropped (evaluation), then rounded
    # to pixels in both feeds; only where the normalisation runs differs.
    source = data.load_folder(_write_image_folder(tmp_path / "imgs"), "train", image_size=32)
    assert (source.recipe.augment, source.recipe.eval_resize) == ("inception", "center_crop")
    model = models.create_model("resnet18", num_classes=4, input_shape=(32, 32, 3),
                                preprocessing=source.recipe.preprocessing)
    for training in (True, False):
        kw = dict(batch_size=8, training=training, seed=1)
        pixels = next(iter(data.make_dataset(source, image_dtype="uint8", **kw)))[0]
        floats = next(iter(data.make_dataset(source, **kw)))[0]
        assert pixels.dtype == tf.uint8 and pixels.shape == (8, 32, 32, 3)
        _assert_same_logits(_logits(model, pixels), _logits(model, floats))


@pytest.mark.needs_mnist
def test_padded_evaluation_has_one_shape_and_the_unpadded_metrics(mnist_npz):
    src = data.load_source("mnist", "test[:50]", str(mnist_npz.parent))
    batches = list(data.make_dataset(src, 16, training=False, pad_eval=True, image_dtype="uint8"))
    assert [tuple(x.shape) for x, _, _ in batches] == [(16, 28, 28, 1)] * 4
    assert [float(tf.reduce_sum(w)) for _, _, w in batches] == [16, 16, 16, 2]
    np.testing.assert_array_equal(batches[-1][1][:2], src.labels[48:])  # then the padding, of weight 0
    # Every pipeline of every replica gets as many full batches: 2 replicas per pipeline here.
    for pipelines in (1, 2):
        counts = []
        for pipeline in range(pipelines):
            ctx = tf.distribute.InputContext(pipelines, pipeline, num_replicas_in_sync=2)
            shards = list(data.make_dataset(src, 16, training=False, pad_eval=True, input_context=ctx))
            assert {tuple(x.shape) for x, _, _ in shards} == {(8, 28, 28, 1)}
            counts.append(len(shards))
            assert sum(float(tf.reduce_sum(w)) for _, _, w in shards) == len(range(pipeline, 50, pipelines))
        assert len(set(counts)) == 1 and counts[0] % (2 // pipelines) == 0
    # The weights make the padded evaluation's metrics the unpadded one's.
    model = models.create_model("mnist_resnet", preprocessing=src.recipe.preprocessing)
    results = []
    for pad in (False, True):
        metrics = steps.make_metrics("test", top5=True)
        step = steps.make_test_step(model, steps.make_loss(), metrics)
        for batch in data.make_dataset(src, 16, training=False, pad_eval=pad, image_dtype="uint8"):
            step(batch)
        results.append({name: float(m.result()) for name, m in metrics.items()})
    assert results[0].keys() == results[1].keys()
    for name in results[0]:
        assert results[1][name] == pytest.approx(results[0][name], rel=1e-6), name
