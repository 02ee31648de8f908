"""On-device export of a trained image classifier: LiteRT (TensorFlow Lite) flatbuffers.

    paths = export_lite(model, "runs/flowers/lite", calibration=images)   # float32, float16, int8
    lite = LiteClassifier("runs/flowers/lite/model_int8.tflite")
    lite.top(image)                                                       # (("tulip", 0.93), ...)

Each flatbuffer takes one uint8 image ``(1, height, width, channels)`` of any size, RGB (or
greyscale for a one-channel model), and returns the float32 logits (the int8 one int8 logits with
their scale). The model's evaluation view and normalisation are inside: its centre crop or its
resize (``Preprocessing.eval_view``), then its mean and standard deviation. LiteRT's builtin
resize is bilinear without antialiasing, so an image that has to be made smaller on the device
gives slightly other pixels than ``tfresnet-eval``'s antialiased resize; at the size the model
evaluates (for a centre crop: the shorter side at ``input_size / crop_fraction``) nothing is
resized and the float32 logits are Keras' own. ``labels.txt`` (one class name per line, in logit
order) and ``export.json`` (the preprocessing record, the files and their sizes) go beside them.

int8 is full-integer post-training quantisation (weights and activations, int8 logits),
calibrated on a few hundred training images.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import warnings
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfresnet import data, predict
from tfresnet.core.errors import BadInput

PRECISIONS = ("float32", "float16", "int8")
# Calibration images for int8: a few hundred, as TensorFlow's post-training quantisation guide says.
CALIBRATION_IMAGES = 300


def lite_view(images: tf.Tensor, preprocessing, input_size: Sequence[int]) -> tf.Tensor:
    """uint8 images ``(1, h, w, c)`` of any size -> float32 model inputs, with LiteRT's builtin ops
    only: the evaluation view of ``preprocessing`` (bilinear, no antialiasing), rounded to pixels,
    then normalised."""
    h, w = input_size
    x = tf.cast(images, tf.float32)
    if preprocessing.eval_view == "center_crop":
        shape = tf.cast(tf.shape(x)[1:3], tf.float32)
        scale = (h / preprocessing.crop_fraction) / tf.reduce_min(shape)
        x = tf.image.resize(x, tf.cast(tf.round(shape * scale), tf.int32), "bilinear")
        x = tf.image.resize_with_crop_or_pad(x, h, w)
    else:  # fit, resize: the whole image
        x = tf.image.resize(x, (h, w), "bilinear")
    return preprocessing.normalize(tf.clip_by_value(tf.round(x), 0, 255))


def export_lite(model: keras.Model, directory: str | os.PathLike, calibration: Iterable[np.ndarray] | None = None,
                precisions: Sequence[str] = PRECISIONS) -> dict[str, str]:
    """Writes ``model_<precision>.tflite`` for each of ``precisions``, ``labels.txt`` and ``export.json``.

    Args:
        model: An image classifier of the zoo with its preprocessing record (every trained run's
            ``model.keras``; pretrained weights' models).
        directory: Where the files go (made if missing).
        calibration: uint8 images ``(h, w, c)`` (a few hundred training images): needed for int8.
        precisions: Of ``float32``, ``float16``, ``int8``.

    Returns:
        ``{precision: path}`` of the flatbuffers written.

    Raises:
        BadInput: an unknown precision, int8 without calibration images, a model without a
            preprocessing record or view.
    """
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise BadInput(f"precision: unknown value {unknown[0]!r}; expected one of {', '.join(PRECISIONS)}")
    prep = getattr(model, "preprocessing", None)
    if prep is None or prep.eval_view is None:
        raise BadInput("the model does not record its preprocessing and evaluation view (eval_view): export it "
                       "from a run of this version, or from a model name with pretrained weights")
    if "int8" in precisions and calibration is None:
        raise BadInput("int8 needs calibration images (a few hundred training images)")
    calibration = None if calibration is None else [np.asarray(im, np.uint8) for im in calibration]
    if calibration is not None and not calibration:
        raise BadInput("int8 needs calibration images: none were given")
    size, channels = (prep.input_size, prep.input_size), prep.channels
    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory() as saved:
        # Through a SavedModel, the documented path for Keras 3 models: the variables are frozen
        # into constants (which float16 halves and the int8 calibrator reads).
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda images: tf.cast(model(lite_view(images, prep, size), training=False),
                                                             tf.float32),
                             input_signature=[tf.TensorSpec((1, None, None, channels), tf.uint8, name="image")])
        archive.write_out(saved, verbose=False)
        for precision in precisions:
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            if precision == "float16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            elif precision == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ([image[None]] for image in calibration)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_output_type = tf.int8  # the input is uint8 pixels already
            path = out / f"model_{precision}.tflite"
            path.write_bytes(converter.convert())
            written[precision] = str(path)
    (out / "labels.txt").write_text("".join(f"{name}\n" for name in model.label_names))
    record = {"preprocessing": prep.to_dict(), "input": f"uint8 (1, height, width, {channels}) of any size",
              "output": "logits", "class_names_file": "labels.txt",
              "files": {p: {"file": os.path.basename(f), "bytes": os.path.getsize(f)} for p, f in written.items()},
              "calibration_images": 0 if calibration is None else len(calibration)}
    (out / "export.json").write_text(json.dumps(record, indent=2))
    return written


def load_model(path: str | os.PathLike, pretrained: str | None = None) -> keras.Model:
    """The Keras classifier of a run folder (its ``model.keras``) or a ``.keras`` file, or of a model
    name with ``pretrained`` weights (evaluated as their centre crop).

    Raises:
        BadInput: nothing to load there.
    """
    if pretrained is not None:
        return predict.pretrained_model(str(path), pretrained)
    file = pathlib.Path(path)
    file = file / "model.keras" if file.is_dir() else file
    if not file.is_file() or file.suffix != ".keras":
        raise BadInput(f"{path} holds no model: expected a run folder (with model.keras) or a .keras file, or a model "
                       "name with --pretrained")
    return keras.models.load_model(file)


def calibration_images(images: Sequence[str | os.PathLike] = (), dataset: str | None = None,
                       data_dir: str | None = None, split: str = "train", count: int = CALIBRATION_IMAGES,
                       channels: int = 3, seed: int = 0) -> list[np.ndarray]:
    """``count`` uint8 images (drawn with ``seed``) for int8 calibration: of image files, folders and
    globs, or of a split of a dataset ``tfresnet-train`` reads (arrays or image files)."""
    rng = np.random.default_rng(seed)
    if images:
        files = predict.image_files(images)
        return [predict.decode(tf.io.read_file(files[i]), channels).numpy()
                for i in sorted(rng.permutation(len(files))[:count])]
    if dataset is None:
        raise BadInput("int8 needs calibration images: give image files or a dataset (--calibration_images or "
                       "--dataset)")
    source = data.load_source(dataset, split, data_dir)
    pick = sorted(rng.permutation(source.num_examples)[:count])
    if source.images is not None:
        return list(source.images[pick])
    if source.files is not None:
        return [predict.decode(tf.io.read_file(source.files[i]), channels).numpy() for i in pick]
    raise BadInput(f"dataset {dataset} streams its images; give image files for the calibration instead")


class LiteClassifier:
    """A flatbuffer of ``export_lite``, with the class names beside it.

    Args:
        path: The ``.tflite`` file (``labels.txt`` in its folder names the classes).
        num_threads: CPU threads of the interpreter (default: all; LiteRT's own default is one).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise BadInput(f"{path}: no such LiteRT model")
        labels = self.path.parent / "labels.txt"
        self.class_names = tuple(labels.read_text().splitlines()) if labels.is_file() else None
        try:  # LiteRT's own package where installed; TensorFlow 2.21 still ships the same interpreter
            from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        except ImportError:
            Interpreter = tf.lite.Interpreter  # noqa: N806
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads or os.cpu_count())
        self.interpreter.allocate_tensors()
        self.input, self.output = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.channels = int(self.input["shape_signature"][-1])

    def logits(self, image: np.ndarray) -> np.ndarray:
        """float32 logits of one uint8 image ``(h, w, channels)`` of any size."""
        image = np.asarray(image, np.uint8)[None]
        if tuple(self.interpreter.get_input_details()[0]["shape"]) != image.shape:
            self.interpreter.resize_tensor_input(self.input["index"], image.shape)
            self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self.input["index"], image)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])[0]
        if self.output["dtype"] == np.int8:
            scale, zero = self.output["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def top(self, image: np.ndarray, k: int = 5) -> tuple[tuple[str, float], ...]:
        """The ``k`` most probable classes of ``image``: ``(name, probability)``, best first."""
        logits = self.logits(image)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        names = self.class_names or tuple(f"class_{i}" for i in range(len(p)))
        return tuple((names[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:k])
