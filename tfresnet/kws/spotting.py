"""Keyword spotting with a trained few-shot encoder: enroll, classify, detect, and export to LiteRT.

A user trains the encoder once (``tfresnet-train --flagfile=flags/kws_protores.cfg``), then::

    spotter = KeywordSpotter.load("runs/kws_protores")          # or a .keras / .tflite file
    spotter.enroll("marvin", ["marvin1.wav", "marvin2.wav"])    # 1-5 recordings of a new word
    spotter.classify(["clip.wav"])                              # [Match("marvin", 0.93)] or "unknown"
    spotter.detect("long_recording.wav")                        # [Detection("marvin", 3.42, 0.91)]
    detector = spotter.stream()                                 # audio as it arrives: detector.feed(chunk)

A keyword is the mean embedding of its recordings (its prototype, as in training). The score of a
clip against a keyword is the cosine similarity of their embeddings, in [0, 1] for the
``protores`` encoders (their embeddings are averages of ReLU outputs); below ``threshold`` the
answer is ``unknown``. ``tfresnet-kws`` is the same from the command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile
import warnings
import zipfile
from typing import Any, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfresnet import models  # the zoo registers the encoders load_model reads
from tfresnet.core import files
from tfresnet.kws import audio, calibrate, logmel
from tfresnet.kws.stream import SMOOTH_WINDOWS, Detection, StreamingDetector

UNKNOWN = "unknown"
# Samples read (or sliced) at a time when a whole recording is detected in: 10 s.
CHUNK = 10 * audio.SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class Match:
    """The best enrolled keyword of a clip (``unknown`` below the threshold) and its score."""

    keyword: str
    score: float


class LiteEncoder:
    """A LiteRT (TensorFlow Lite) encoder with the call signature of the Keras one.

    Reads float32 or fully int8-quantised flatbuffers (``export_tflite``): int8 inputs are
    quantised and outputs dequantised with the scales stored in the model.

    Args:
        path: The ``.tflite`` file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:  # LiteRT's own package where installed; TensorFlow 2.21 still ships the same interpreter
            from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        except ImportError:
            Interpreter = tf.lite.Interpreter  # noqa: N806
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            self.interpreter = Interpreter(model_path=self.path)
        self.interpreter.allocate_tensors()
        self.input, self.output = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])

    def __call__(self, features, training: bool = False) -> np.ndarray:
        features = np.asarray(features, np.float32)
        if features.shape[0] != self.interpreter.get_input_details()[0]["shape"][0]:
            self.interpreter.resize_tensor_input(self.input["index"], features.shape)
            self.interpreter.allocate_tensors()
        x = features
        if self.input["dtype"] == np.int8:
            scale, zero = self.input["quantization"]
            x = np.clip(np.round(features / scale + zero), -128, 127).astype(np.int8)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] == np.int8:
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y


def encoder_classes() -> tuple[str, ...]:
    """The class names of the registered few-shot encoders (what a ``.keras`` file's ``config.json``
    calls its model): ``ProtoResEncoder``, and any a user registered for task ``fewshot``."""
    return tuple(sorted({getattr(models.model_spec(name).builder, "__name__", "") for name in
                         models.list_models("fewshot")}))


def _keras_class(path: pathlib.Path) -> str:
    """The class a ``.keras`` file's ``config.json`` names; a one-line error if it is no Keras archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json")).get("class_name", "?")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError):
        raise ValueError(f"{path} is {files.describe(path)}, not a saved Keras model (.keras)") from None


def load_encoder(path: str | os.PathLike) -> keras.Model | LiteEncoder:
    """An encoder from a run folder (its ``model.keras``), a ``.keras`` file or a ``.tflite`` file.

    Raises:
        FileNotFoundError: nothing there.
        ValueError: one line when it is not a few-shot keyword encoder (an image classifier's run,
            a file of another kind).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        record = path / "run.json"
        run = json.loads(record.read_text()) if record.is_file() else {"task": "fewshot"}
        if run.get("task") != "fewshot":
            raise ValueError(f"{path} is a run of task {run.get('task')} ({run.get('model')}), not a few-shot "
                             "keyword encoder: pass the folder of a --task=fewshot run")
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"no encoder at {path} (expected a run folder with model.keras, a .keras "
                                "or a .tflite file)")
    if path.suffix == ".tflite":
        files.check_kind(path, ("a LiteRT (.tflite) model",), "a LiteRT encoder (.tflite)")
        return LiteEncoder(path)
    found = _keras_class(path)
    if found not in encoder_classes():
        raise ValueError(f"{path} holds a {found}, not a few-shot keyword encoder ({', '.join(encoder_classes())}): "
                         "pass the model.keras of a --task=fewshot run")
    return keras.models.load_model(path)


def _waveform(clip, samples: int | None = None) -> np.ndarray:
    if isinstance(clip, (str, os.PathLike)):
        return audio.read_wav(clip, samples)
    wave = np.asarray(clip, np.float32)
    if wave.ndim != 1:
        raise ValueError(f"a clip is one mono waveform (samples,), got shape {wave.shape}")
    return audio.fix_length(wave, samples).numpy() if samples and len(wave) != samples else wave


class KeywordSpotter:
    """Enrolls keywords from a few recordings and finds them in clips and longer recordings.

    Args:
        encoder: Features ``(batch, frames, mel bins, 1)`` to embeddings: a trained ``protores``
            (``model.keras`` of a few-shot run) or a ``LiteEncoder``.
        threshold: Scores below it are ``unknown`` (and no detection). 0.7: with half of the test
            words enrolled from one held-out speaker, the ``kws_protores_words.cfg`` encoders name
            86-88% of the enrolled words' clips and answer ``unknown`` to 97-100% of the others
            (BENCHMARKS.md); raise it where a false keyword costs more than a missed one.
        batch_size: Clips embedded per call.
        false_alarms_per_hour: Instead of ``threshold``: the detections of other speech an hour
            that the user accepts, shared equally among the keywords, each keyword's threshold
            taken from the ``cohort`` (``tfresnet.kws.calibrate``).
        cohort: The encoder's ``calibrate.Cohort`` (``load`` reads ``cohort.npz`` of a run folder).
        smooth_windows: In a stream, a window's score is the mean over it and up to this many
            windows either side (``tfresnet.kws.stream``; the cohort's thresholds are those of it).
    """

    def __init__(self, encoder: keras.Model | LiteEncoder, threshold: float = 0.7, batch_size: int = 64,
                 false_alarms_per_hour: float | None = None, cohort: calibrate.Cohort | None = None,
                 smooth_windows: int = SMOOTH_WINDOWS):
        self.encoder, self.threshold, self.batch_size = encoder, threshold, batch_size
        self.false_alarms_per_hour, self.cohort, self.smooth_windows = false_alarms_per_hour, cohort, smooth_windows
        if false_alarms_per_hour is not None and false_alarms_per_hour <= 0:
            raise ValueError(f"false_alarms_per_hour must be positive, got {false_alarms_per_hour}")
        if false_alarms_per_hour is not None and cohort is None:
            raise ValueError("a false-alarm rate needs the encoder's cohort of running speech: write it once with "
                             "tfresnet-kws calibrate --model=RUN --data_dir=DATA")
        shape = encoder_input_shape(encoder)
        self.frames, self.num_mel_bins = int(shape[0]), int(shape[1])
        self.samples = logmel.clip_samples(self.frames)
        self.keywords: dict[str, np.ndarray] = {}  # name -> unit-length prototype
        self._compiled = None  # the Keras encoder's features -> embeddings, traced on first use

    @classmethod
    def load(cls, path: str | os.PathLike, cohort: str | os.PathLike | None = None, **kwargs) -> "KeywordSpotter":
        """A spotter around ``load_encoder(path)``, with the cohort file ``cohort`` (default: the
        ``cohort.npz`` of the run folder, or beside the model file, if there is one); ``kwargs`` go
        to the constructor."""
        if cohort is None:
            here = pathlib.Path(path) if pathlib.Path(path).is_dir() else pathlib.Path(path).parent
            cohort = here / calibrate.COHORT_FILE if (here / calibrate.COHORT_FILE).is_file() else None
        return cls(load_encoder(path), cohort=calibrate.Cohort.load(cohort) if cohort else None, **kwargs)

    def thresholds(self) -> np.ndarray:
        """Each enrolled keyword's threshold, in enrollment order: ``threshold`` for all, or the ones
        the cohort gives for ``false_alarms_per_hour``."""
        if self.false_alarms_per_hour is None:
            return np.full(len(self.keywords), float(self.threshold))
        return self.cohort.thresholds(list(self.keywords.values()), self.false_alarms_per_hour, self.smooth_windows)

    def calibrate(self, words: Sequence, noise: Sequence[np.ndarray] = (), hours: float = 8.0, seed: int = 0,
                  hop: float = 0.05) -> calibrate.Cohort:
        """Records this encoder's cohort (``calibrate.build_cohort``) and keeps it."""
        self.cohort = calibrate.build_cohort(self, [_waveform(w) for w in words], noise, hours, seed=seed, hop=hop)
        return self.cohort

    @property
    def clip_seconds(self) -> float:
        """The length of the clips the encoder reads (1 s for the Speech Commands encoders)."""
        return self.samples / audio.SAMPLE_RATE

    def embed(self, clips: Iterable) -> np.ndarray:
        """Unit-length embeddings ``(clips, dim)`` of WAV paths or waveforms (padded or cropped to one clip)."""
        waves = np.stack([_waveform(c, self.samples) for c in clips])
        out = np.concatenate([self._embed_batch(waves[i:i + self.batch_size])
                              for i in range(0, len(waves), self.batch_size)])
        out = out.reshape(len(out), -1).astype(np.float64)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _embed_batch(self, waves: np.ndarray) -> np.ndarray:
        if isinstance(self.encoder, LiteEncoder):
            if self._compiled is None:  # the features in a graph; LiteRT runs the encoder
                self._compiled = tf.function(lambda w: logmel.features(w, self.num_mel_bins), reduce_retracing=True,
                                             autograph=False)
            return np.asarray(self.encoder(self._compiled(tf.constant(waves)).numpy()))
        if self._compiled is None:
            # Features and encoder in one graph: a stream scores a few windows at a time, where
            # eager calls would cost more than the arithmetic.
            self._compiled = tf.function(lambda w: self.encoder(logmel.features(w, self.num_mel_bins),
                                                                training=False),
                                         reduce_retracing=True, autograph=False)
        return self._compiled(tf.constant(waves)).numpy()

    def enroll(self, keyword: str, examples: Sequence) -> None:
        """Adds (or replaces) ``keyword``, from 1 to 5 recordings of it (WAV paths or waveforms)."""
        if keyword == UNKNOWN or not keyword:
            raise ValueError(f"{keyword!r} cannot be a keyword name")
        if not 1 <= len(examples) <= 5:
            raise ValueError(f"enroll {keyword!r} with 1 to 5 recordings, got {len(examples)}")
        self.keywords[keyword] = prototype(self.embed(examples))

    def scores(self, clips: Iterable) -> np.ndarray:
        """Cosine similarity ``(clips, keywords)`` of each clip to each enrolled keyword, in enrollment order."""
        if not self.keywords:
            raise ValueError("no keyword enrolled: call enroll(keyword, recordings) first")
        return self.embed(clips) @ np.stack(list(self.keywords.values())).T

    def classify(self, clips: Iterable) -> list[Match]:
        """The best keyword of each clip, or ``unknown`` when its score is below the threshold."""
        names, scores = list(self.keywords), self.scores(clips)
        margins = scores - self.thresholds()  # the keyword furthest above its own threshold
        best = margins.argmax(axis=1)
        return [Match(names[b] if m[b] >= 0 else UNKNOWN, float(s[b])) for b, s, m in zip(best, scores, margins)]

    def stream(self, hop: float = 0.05, min_level_db: float = 10.0, **kwargs: Any) -> StreamingDetector:
        """A ``StreamingDetector`` of the keywords enrolled now: feed it audio as it arrives.

        Args:
            hop: Seconds between windows.
            min_level_db: Windows whose loudest 10 ms frame is not this far above the noise floor
                hold no word (an energy gate: noise alone never triggers a detection).
            **kwargs: ``StreamingDetector``'s ``history_seconds`` and ``block``.
        """
        if not self.keywords:
            raise ValueError("no keyword enrolled: call enroll(keyword, recordings) first")
        if self.false_alarms_per_hour is not None and abs(self.cohort.hop - hop) > 1e-9:
            raise ValueError(f"the cohort was recorded with hop {self.cohort.hop} s, not {hop} s: its rates are "
                             "those of its hop")
        # A snapshot: keywords enrolled later are not this detector's (its score columns stay its names).
        names, prototypes = list(self.keywords), np.stack(list(self.keywords.values()))
        return StreamingDetector(lambda waves: self.embed(waves) @ prototypes.T, names, self.samples,
                                 self.thresholds(), hop, min_level_db, smooth_windows=self.smooth_windows, **kwargs)

    def detect(self, recording: str | os.PathLike | np.ndarray, hop: float = 0.05,
               min_level_db: float = 10.0) -> list[Detection]:
        """Keywords in a recording of any length, in time order: the recording streamed through
        ``stream()`` (read in pieces, so its length never sits in memory as spectrograms).

        Args:
            recording: A WAV path or a waveform (16 kHz).
            hop: Seconds between windows.
            min_level_db: The energy gate (``stream``).
        """
        detector = self.stream(hop, min_level_db)
        if isinstance(recording, (str, os.PathLike)):
            chunks = audio.wav_chunks(recording)
        else:
            wave = _waveform(recording)
            chunks = (wave[i:i + CHUNK] for i in range(0, len(wave), CHUNK))
        found = [d for chunk in chunks for d in detector.feed(chunk)]
        return sorted(found + detector.finish(), key=lambda d: d.start)

    def save_keywords(self, path: str | os.PathLike) -> None:
        """Writes the enrolled keywords (names and prototypes) to a JSON file."""
        pathlib.Path(path).write_text(json.dumps({k: v.tolist() for k, v in self.keywords.items()}))

    def load_keywords(self, path: str | os.PathLike) -> None:
        """Adds the keywords of a ``save_keywords`` file (of an encoder with the same embedding)."""
        try:
            saved = json.loads(pathlib.Path(path).read_text())
        except (OSError, ValueError) as err:  # JSON and UTF-8 errors are ValueErrors
            what = files.describe(path)
            raise ValueError(f"{path}: not a keywords file ({what if what != 'text' else err}; "
                             "tfresnet-kws enroll writes one)") from None
        for name, vector in saved.items():
            self.keywords[name] = np.asarray(vector, np.float64)


def prototype(embeddings: np.ndarray) -> np.ndarray:
    """A keyword's unit-length prototype: the direction of the mean of its recordings' unit
    embeddings ``(recordings, dim)`` (what ``KeywordSpotter.enroll`` stores)."""
    mean = np.asarray(embeddings).mean(axis=0)
    return mean / np.linalg.norm(mean)


def encoder_input_shape(encoder) -> tuple[int, ...]:
    """The example shape ``(frames, mel bins, 1)`` an encoder was built for."""
    if isinstance(encoder, LiteEncoder):
        return encoder.input_shape
    config = encoder.get_build_config() or {}
    if "input_shape" not in config:
        raise ValueError(f"{encoder.name}: unknown input shape; build the encoder before using it")
    return tuple(config["input_shape"][1:])


def representative_features(data_dir: str | os.PathLike, num_mel_bins: int, count: int = 200) -> np.ndarray:
    """Features of ``count`` training clips (drawn with seed 0) of a Speech Commands folder: the
    calibration set of a full int8 export."""
    clips = audio.keyword_split(audio.load_keyword_folder(data_dir), "train")
    pick = np.random.default_rng(0).permutation(len(clips.labels))[:count]
    return logmel.features(tf.constant(clips.waveforms[pick]), num_mel_bins).numpy()


def export_tflite(encoder: keras.Model, path: str | os.PathLike, representative: np.ndarray | None = None) -> int:
    """Writes the encoder as a LiteRT flatbuffer: float32, or full int8 with ``representative`` features.

    Full int8 quantises weights and activations, inputs and outputs included, calibrated on the
    ``representative`` features (a few hundred clips of the training data are enough).

    Returns:
        The file's size in bytes.
    """
    shape = encoder_input_shape(encoder)
    with tempfile.TemporaryDirectory() as saved:
        # Through a SavedModel (the documented path for Keras 3 models): its variables are frozen
        # into constants, which the int8 calibrator needs.
        archive = keras.export.ExportArchive()
        archive.track(encoder)
        archive.add_endpoint("serve", lambda x: encoder(x, training=False),
                             input_signature=[tf.TensorSpec((1, *shape), tf.float32)])
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([r[None].astype(np.float32)] for r in representative)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        flatbuffer = converter.convert()
    pathlib.Path(path).write_bytes(flatbuffer)
    return len(flatbuffer)
