"""The smaller console scripts: ``tfresnet-kws`` (keyword spotting), ``tfresnet-shards`` (TFRecord
shards) and ``tfresnet-predict`` (a trained classifier on image files, Grad-CAM).

Each is a flag set, a ``*_main(argv) -> exit status`` and a ``run_*`` console entry, run by
``run_tool``: ``--help`` and flag errors answer before TensorFlow loads, bad input is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Sequence

from absl import flags

from tfresnet.cli import BAD_INPUT, _import_tensorflow_quietly, _wants_help, help_text, one_line, quiet_stderr

# -- tfresnet-kws: keyword spotting with a trained few-shot encoder (tfresnet.kws.spotting) --------------

KWS_FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "A few-shot run folder (its model.keras), a .keras or a .tflite encoder.",
                    flag_values=KWS_FLAGS)
flags.DEFINE_string("keywords", None, "JSON file of enrolled keywords: enroll adds to it, classify and detect "
                    "read it.", flag_values=KWS_FLAGS)
flags.DEFINE_string("keyword", None, "enroll: the name of the keyword the WAV files say.", flag_values=KWS_FLAGS)
flags.DEFINE_float("threshold", 0.7, "Scores (cosine similarity) below it are 'unknown' / no detection "
                   "(KeywordSpotter's default).",
                   flag_values=KWS_FLAGS)
flags.DEFINE_float("false_alarms_per_hour", None, "Instead of --threshold: the detections of other speech an hour "
                   "you accept (all keywords together); each keyword's threshold comes from the encoder's cohort "
                   "(tfresnet-kws calibrate).", flag_values=KWS_FLAGS)
flags.DEFINE_string("cohort", None, "The cohort file (default: cohort.npz in the run folder or beside the model file; "
                    "calibrate writes it there).", flag_values=KWS_FLAGS)
flags.DEFINE_string("data_dir", None, "calibrate: the Speech Commands folder the encoder trained on (its training "
                    "words by its training speakers, and its background noise, make the cohort).",
                    flag_values=KWS_FLAGS)
flags.DEFINE_string("extra_words_dir", None, "calibrate: the run's extra training words (--extra_words_dir of "
                    "training), spoken in the cohort too.", flag_values=KWS_FLAGS)
flags.DEFINE_float("cohort_hours", 8.0, "calibrate: hours of running speech in the cohort (the rarer the false "
                   "alarms asked for, the more hours hold some to count; 8 take about 6 minutes).",
                   flag_values=KWS_FLAGS)
flags.DEFINE_float("hop", 0.05, "detect, listen, calibrate: seconds between windows.", flag_values=KWS_FLAGS)
flags.DEFINE_integer("smooth_windows", 2, "detect, listen: a window's score is the mean over it and up to this "
                     "many windows either side (0: its own; 2 finds more keywords at a low false-alarm rate: "
                     "BENCHMARKS.md).", lower_bound=0, flag_values=KWS_FLAGS)
flags.DEFINE_string("tflite", None, "export: the .tflite file to write.", flag_values=KWS_FLAGS)
flags.DEFINE_string("int8_data", None, "export: full int8 quantisation, calibrated on the training clips of "
                    "this Speech Commands folder (else float32).", flag_values=KWS_FLAGS)
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.", flag_values=KWS_FLAGS)

KWS_USAGE = """usage:
  tfresnet-kws enroll   --model=RUN --keywords=K.json --keyword=NAME a.wav [b.wav ...]   (1-5 recordings)
  tfresnet-kws classify --model=RUN --keywords=K.json clip.wav [...]    prints: clip keyword|unknown score
  tfresnet-kws detect   --model=RUN --keywords=K.json long.wav [...]    prints: file start_seconds keyword score
  tfresnet-kws listen   --model=RUN --keywords=K.json [stream.wav]      16 kHz mono 16-bit audio from standard input
                        (WAV or raw PCM) or a WAV file, as it arrives; prints: start_seconds keyword score
  tfresnet-kws export   --model=RUN --tflite=OUT.tflite [--int8_data=SPEECH_COMMANDS_DIR]
  tfresnet-kws calibrate --model=RUN --data_dir=SPEECH_COMMANDS_DIR [--extra_words_dir=DIR]   writes RUN/cohort.npz:
                        then --false_alarms_per_hour=R sets each keyword's threshold"""


def _check_kws(command: str, wavs: list[str]) -> None:
    """What ``tfresnet-kws`` can check without TensorFlow: flags, paths and the WAV files' headers."""
    from tfresnet.core import files  # noqa: PLC0415

    f = KWS_FLAGS
    if not f.model:
        raise flags.Error("--model is required (a few-shot run folder, .keras or .tflite)")
    if not os.path.exists(f.model):
        raise FileNotFoundError(f"no encoder at {f.model} (expected a run folder with model.keras, a .keras or a "
                                ".tflite file)")
    if f.false_alarms_per_hour is not None and f.false_alarms_per_hour <= 0:
        raise flags.Error(f"--false_alarms_per_hour must be positive, got {f.false_alarms_per_hour}")
    if command == "calibrate":
        if not f.data_dir:
            raise flags.Error("calibrate needs --data_dir (the Speech Commands folder the encoder trained on)")
        for flag, folder in (("--data_dir", f.data_dir), ("--extra_words_dir", f.extra_words_dir)):
            if folder and not os.path.isdir(folder):
                raise FileNotFoundError(f"{flag} {folder} is not a folder")
        if f.cohort_hours <= 0:
            raise flags.Error(f"--cohort_hours must be positive, got {f.cohort_hours}")
        files.check_writable(_cohort_path(), "--cohort", folder=False)
        return
    if f.cohort and not os.path.isfile(f.cohort):
        raise FileNotFoundError(f"--cohort {f.cohort} not found (tfresnet-kws calibrate writes it)")
    if command == "export":
        if not f.tflite:
            raise flags.Error("export needs --tflite=OUT.tflite")
        files.check_writable(f.tflite, "--tflite", folder=False)
        if f.int8_data and not os.path.isdir(f.int8_data):
            raise FileNotFoundError(f"--int8_data {f.int8_data} is not a folder (a Speech Commands folder of "
                                    "training clips)")
        return
    if not f.keywords:
        raise flags.Error(f"{command} needs --keywords=K.json")
    if not wavs and command != "listen":  # listen: standard input without one
        raise flags.Error(f"{command} needs WAV files")
    if command == "listen" and len(wavs) > 1:
        raise flags.Error(f"listen reads one stream: standard input or one WAV file, got {len(wavs)} files")
    if command == "enroll":
        if not f.keyword:
            raise flags.Error("enroll needs --keyword=NAME")
        if not 1 <= len(wavs) <= 5:
            raise ValueError(f"enroll {f.keyword!r} with 1 to 5 recordings, got {len(wavs)}")
        files.check_writable(f.keywords, "--keywords", folder=False)
    elif not os.path.exists(f.keywords):
        raise FileNotFoundError(f"keywords file not found: {f.keywords} (tfresnet-kws enroll writes it)")
    for wav in wavs:
        files.check_wav(wav, 16_000)


def _cohort_path() -> str:
    f = KWS_FLAGS
    if f.cohort:
        return f.cohort
    # calibrate.COHORT_FILE, named here so that flag checks answer before TensorFlow loads
    return os.path.join(f.model if os.path.isdir(f.model) else os.path.dirname(f.model) or ".", "cohort.npz")


def _calibrate() -> None:
    """``tfresnet-kws calibrate``: the encoder's cohort, from the training words of its data."""
    from tfresnet.kws import audio, spotting  # noqa: PLC0415

    f = KWS_FLAGS
    clips = audio.load_keyword_folder(f.data_dir)
    train = audio.keyword_split(clips, "train")
    if f.extra_words_dir:
        train = audio.with_training_words(train, audio.load_keyword_folder(f.extra_words_dir), clips)
    spotter = spotting.KeywordSpotter(spotting.load_encoder(f.model))
    cohort = spotter.calibrate(list(train.waveforms), clips.noise, f.cohort_hours, hop=f.hop)
    cohort.save(_cohort_path())
    words = len(set(train.labels.tolist()))
    print(f"wrote {_cohort_path()}: {cohort.hours:.2f} h of running speech ({words} training words, "
          f"{len(set(train.speakers.tolist()))} speakers), {len(cohort.windows.starts)} windows")


def _kws(command: str, wavs: list[str]) -> None:
    from tfresnet.kws import spotting  # noqa: PLC0415

    f = KWS_FLAGS
    if command == "calibrate":
        _calibrate()
        return
    if command == "export":
        encoder = spotting.load_encoder(f.model)
        representative = None
        if f.int8_data:
            bins = spotting.encoder_input_shape(encoder)[1]
            representative = spotting.representative_features(f.int8_data, bins)
        size = spotting.export_tflite(encoder, f.tflite, representative)
        print(f"wrote {f.tflite} ({'int8' if representative is not None else 'float32'}, {size / 1024:.0f} KiB)")
        return
    spotter = spotting.KeywordSpotter.load(f.model, cohort=f.cohort, threshold=f.threshold,
                                           false_alarms_per_hour=f.false_alarms_per_hour,
                                           smooth_windows=f.smooth_windows)
    if command == "enroll":
        if os.path.exists(f.keywords):
            spotter.load_keywords(f.keywords)
        replaced = f.keyword in spotter.keywords
        spotter.enroll(f.keyword, wavs)
        spotter.save_keywords(f.keywords)
        print(f"{'re-enrolled' if replaced else 'enrolled'} {f.keyword!r} from {len(wavs)} recording(s) into "
              f"{f.keywords} ({len(spotter.keywords)} keyword(s))"
              + ("; its earlier recordings are replaced" if replaced else ""))
        return
    spotter.load_keywords(f.keywords)
    if f.false_alarms_per_hour is not None:  # what the asked rate became, keyword by keyword
        chosen = ", ".join(f"{k} {t:.3f}" for k, t in zip(spotter.keywords, spotter.thresholds()))
        print(f"thresholds for {f.false_alarms_per_hour:g} false alarms an hour: {chosen}", file=sys.stderr)
    if command == "classify":
        for path, match in zip(wavs, spotter.classify(wavs)):
            print(f"{path} {match.keyword} {match.score:.3f}")
    elif command == "detect":
        for path in wavs:
            for d in spotter.detect(path, hop=f.hop):
                print(f"{path} {d.start:.2f} {d.keyword} {d.score:.3f}")
    else:  # listen: detections as soon as they are confirmed, then what the end of the stream confirms
        from tfresnet.kws import audio  # noqa: PLC0415

        detector = spotter.stream(hop=f.hop)
        chunks = audio.wav_chunks(wavs[0], 0.1) if wavs else audio.pcm_chunks(sys.stdin.buffer)
        for chunk in chunks:
            for d in detector.feed(chunk):
                print(f"{d.start:.2f} {d.keyword} {d.score:.3f}", flush=True)
        for d in detector.finish():
            print(f"{d.start:.2f} {d.keyword} {d.score:.3f}", flush=True)


def run_tool(prog: str, flag_values: flags.FlagValues, argv: Sequence[str], body, errors=(), about: str = "") -> int:
    """Runs ``body(arguments, load_tensorflow)`` of a small console script with one-line errors.

    ``load_tensorflow`` imports TensorFlow with its start-up chatter silenced (unless --verbose):
    ``body`` calls it once its own checks passed. Flag errors and ``ValueError``,
    ``FileNotFoundError`` or ``errors`` exit 2 with ``prog: error: ...``.
    """
    wanted = _wants_help(argv)
    if wanted:
        names = [name for name in flag_values if flag_values[name].name == name]  # not the short aliases
        print(help_text(prog, about, flag_values, {"flags": sorted(names)}, full=wanted == "full"))
        return 0
    verbose = "--verbose" in argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")  # as in main()
    try:
        flag_values.unparse_flags()
        body(flag_values(list(argv))[1:], (lambda: None) if verbose else _import_tensorflow_quietly)
    except flags.Error as err:
        print(f"{prog}: error: {str(err).removeprefix('ERROR:: ')}", file=sys.stderr)
        return 2
    except (*BAD_INPUT, *errors) as err:
        if verbose:
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0


def kws_main(argv: Sequence[str]) -> int:
    """``tfresnet-kws COMMAND [flags] FILES``; returns the exit status (2: bad input, one line)."""

    def body(rest, load_tensorflow):
        if not rest or rest[0] not in ("enroll", "classify", "detect", "listen", "export", "calibrate"):
            got = f" (got {rest[0]!r})" if rest else ""
            raise flags.Error(f"expected a command: enroll, classify, detect, listen, export or calibrate{got}, e.g. "
                              "tfresnet-kws "
                              "enroll --model=RUN --keywords=K.json --keyword=NAME a.wav")
        _check_kws(rest[0], rest[1:])  # before TensorFlow loads: a bad flag or file answers at once
        load_tensorflow()
        _kws(rest[0], rest[1:])

    return run_tool("tfresnet-kws", KWS_FLAGS, argv, body, about="keyword spotting with a trained few-shot "
                     "encoder: enroll words from 1-5 recordings, classify clips, detect words in recordings or in "
                     "audio as it arrives (listen), export the encoder to LiteRT, calibrate its thresholds to a "
                     "false-alarm rate.\n" + KWS_USAGE)


def run_kws() -> None:
    """Console script ``tfresnet-kws``: enroll, classify, detect keywords; export the encoder to LiteRT."""
    sys.exit(kws_main(sys.argv))


# -- tfresnet-shards: a class folder or a tensorflow-datasets split -> sharded TFRecord files ------

SHARD_FLAGS = flags.FlagValues()
flags.DEFINE_string("dataset", "folder", "folder, or an image dataset of tensorflow-datasets (imagenette, "
                    "imagenet2012).", flag_values=SHARD_FLAGS)
flags.DEFINE_string("data_dir", None, "The class folder (<dir>/<class>/<img>, or <dir>/train/... and "
                    "<dir>/test/...), or tensorflow-datasets' data dir.", flag_values=SHARD_FLAGS)
flags.DEFINE_string("out_dir", None, "The shard folder to write (local or gs://); read it with --dataset=shards "
                    "--data_dir=OUT_DIR.", flag_values=SHARD_FLAGS)
flags.DEFINE_integer("num_shards", 16, "Files per split; at least the number of input pipelines (hosts) that "
                     "will read them, ideally many more (ImageNet: 1024).", flag_values=SHARD_FLAGS)
flags.DEFINE_list("splits", [], "Splits to convert (default: train and test; a TFDS dataset's own).",
                  flag_values=SHARD_FLAGS)
flags.DEFINE_integer("seed", 0, "Seeds how examples are spread over the shards.", flag_values=SHARD_FLAGS)
flags.DEFINE_bool("overwrite", False, "Replace splits that the shard folder already holds.", flag_values=SHARD_FLAGS)
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.", flag_values=SHARD_FLAGS)


def shards_main(argv: Sequence[str]) -> int:
    """``tfresnet-shards --data_dir=FOLDER --out_dir=SHARDS``; returns the exit status."""

    def body(rest, load_tensorflow):
        f = SHARD_FLAGS
        if rest:
            raise flags.Error(f"unexpected arguments {rest} (flags look like --name=value)")
        if not f.out_dir:
            raise flags.Error("--out_dir is required: the shard folder to write")
        from tfresnet.core import files  # noqa: PLC0415 - no TensorFlow: answers before it loads

        files.check_writable(f.out_dir, "--out_dir")
        load_tensorflow()
        from tfresnet import data  # noqa: PLC0415

        data.to_shards(f.dataset, f.data_dir, f.out_dir, f.num_shards, f.splits, f.seed, f.overwrite,
                          log=lambda line: print(line, flush=True))

    return run_tool("tfresnet-shards", SHARD_FLAGS, argv, body, errors=(RuntimeError,),
                     about="convert a class folder (<dir>/<class>/<image>) or a tensorflow-datasets image dataset "
                     "into sharded TFRecord files, read with tfresnet-train --dataset=shards --data_dir=OUT_DIR.")


def run_shards() -> None:
    """Console script ``tfresnet-shards``: write a folder or a TFDS split as sharded TFRecord files."""
    sys.exit(shards_main(sys.argv))


# -- tfresnet-predict: the top classes of image files (tfresnet.predict) ------------------------------

PREDICT_FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "A run folder, its model.keras or saved_model/, or a model name with --pretrained.",
                    flag_values=PREDICT_FLAGS)
flags.DEFINE_string("pretrained", None, "With a model name: its weights (tfresnet.weights.sources, e.g. imagenet).",
                    flag_values=PREDICT_FLAGS)
flags.DEFINE_integer("top_k", 5, "Classes given per image, best first.", flag_values=PREDICT_FLAGS)
flags.DEFINE_integer("batch_size", None, "Images per call of the model (default: 32 to 256 by the model's input "
                     "size, tfresnet.predict.images_per_call).", lower_bound=1, flag_values=PREDICT_FLAGS)
flags.DEFINE_string("output", None, "Write to this .csv or .jsonl file instead of printing.", flag_values=PREDICT_FLAGS)
flags.DEFINE_enum("bad_images", "error", ["error", "skip"], "A file that does not decode: a one-line error, or "
                  "left out and counted.", flag_values=PREDICT_FLAGS)
flags.DEFINE_string("explain", None, "Also write each image's Grad-CAM here: <name>_gradcam.png (laid over the "
                    "image) and <name>_gradcam.npy (the heat map at the image's resolution).", flag_values=PREDICT_FLAGS)
flags.DEFINE_string("explain_class", None, "--explain: the class to explain (default: each image's predicted one).",
                    flag_values=PREDICT_FLAGS)
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.", flag_values=PREDICT_FLAGS)


def predict_main(argv: Sequence[str]) -> int:
    """``tfresnet-predict --model=RUN IMAGES...``; returns the exit status (2: bad input, one line)."""

    def body(rest, load_tensorflow):
        f = PREDICT_FLAGS
        if not f.model or not rest:
            raise flags.Error("give --model (a run folder, a SavedModel, or a model name with --pretrained) and "
                              "image files, folders or globs")
        if f.output:
            from tfresnet.core import files  # noqa: PLC0415 - no TensorFlow: answers before it loads

            if not f.output.endswith((".csv", ".jsonl")):
                raise flags.Error(f"--output must name a .csv or .jsonl file, got {f.output}")
            files.check_writable(f.output, "--output", folder=False)
        if f.explain_class and not f.explain:
            raise flags.Error("--explain_class needs --explain=DIR (where the Grad-CAM files go)")
        if f.explain:
            from tfresnet.core import files  # noqa: PLC0415

            files.check_writable(f.explain, "--explain")
        load_tensorflow()
        from tfresnet.predict import Classifier, write_predictions  # noqa: PLC0415

        classifier = Classifier.load(f.model, f.pretrained)
        # A progress line on a terminal while the predictions go to a file.
        progress = (lambda n: print(f"\r{n}/{classifier.total} images", end="", file=sys.stderr, flush=True)) if (
            f.output and sys.stderr.isatty()) else None
        if f.explain:
            predictions = (e.prediction for e in classifier.explain(rest, f.explain, f.explain_class, f.top_k,
                                                                     f.batch_size, f.bad_images))
        else:
            predictions = classifier.predict(rest, f.top_k, f.batch_size, f.bad_images)
        rows = write_predictions(predictions, f.output, progress)
        if f.output:
            print(("\r" if progress else "") + f"wrote {rows} predictions to {f.output}", file=sys.stderr)
        if f.explain:
            print(f"wrote the Grad-CAM of {rows} images to {f.explain}", file=sys.stderr)
        if classifier.skipped:
            print(f"skipped {classifier.skipped} file(s) that do not decode", file=sys.stderr)

    return run_tool("tfresnet-predict", PREDICT_FLAGS, argv, body, about="the top classes, by name, of image "
                     "files of any size (JPEG, PNG, BMP, GIF), as tfresnet-eval prepares images.\n"
                     "usage: tfresnet-predict --model=RUN [--top_k=5] [--output=OUT.csv|.jsonl] [--explain=DIR] "
                     "IMAGE|FOLDER|GLOB...")


def run_predict() -> None:
    """Console script ``tfresnet-predict``: a trained classifier's top classes for image files."""
    sys.exit(predict_main(sys.argv))


# -- tfresnet-export: a trained image classifier -> LiteRT flatbuffers (tfresnet.export) ----------

EXPORT_FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "A run folder (its model.keras), a .keras file, or a model name with --pretrained.",
                    flag_values=EXPORT_FLAGS)
flags.DEFINE_string("pretrained", None, "With a model name: its weights (tfresnet.weights.sources, e.g. imagenet).",
                    flag_values=EXPORT_FLAGS)
flags.DEFINE_string("out_dir", None, "Where model_<precision>.tflite, labels.txt and export.json go.",
                    flag_values=EXPORT_FLAGS)
flags.DEFINE_list("precisions", ["float32", "float16", "int8"], "Flatbuffers to write.", flag_values=EXPORT_FLAGS)
flags.DEFINE_list("calibration_images", [], "int8: training images to calibrate on (files, folders, globs).",
                  flag_values=EXPORT_FLAGS)
flags.DEFINE_string("dataset", None, "int8: or calibrate on a dataset tfresnet-train reads (mnist, cifar10, folder, "
                    "npz, ...).", flag_values=EXPORT_FLAGS)
flags.DEFINE_string("data_dir", None, "With --dataset: its folder or file, as tfresnet-train's.", flag_values=EXPORT_FLAGS)
flags.DEFINE_string("split", "train", "With --dataset: the split to draw calibration images from.",
                    flag_values=EXPORT_FLAGS)
flags.DEFINE_integer("calibration_count", 300, "int8: calibration images drawn.", flag_values=EXPORT_FLAGS)
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.", flag_values=EXPORT_FLAGS)


def export_main(argv: Sequence[str]) -> int:
    """``tfresnet-export --model=RUN --out_dir=DIR``; returns the exit status (2: bad input, one line)."""

    def body(rest, load_tensorflow):
        f = EXPORT_FLAGS
        if rest:
            raise flags.Error(f"unexpected arguments {rest} (flags look like --name=value)")
        if not f.model or not f.out_dir:
            raise flags.Error("give --model (a run folder, a .keras file, or a model name with --pretrained) and "
                              "--out_dir")
        unknown = [p for p in f.precisions if p not in ("float32", "float16", "int8")]
        if unknown:
            raise flags.Error(f"--precisions: unknown value {unknown[0]!r}; expected float32, float16 or int8")
        if "int8" in f.precisions and not (f.calibration_images or f.dataset):
            raise flags.Error("int8 needs calibration images: --calibration_images=DIR or --dataset (and --data_dir); "
                              "or --precisions=float32,float16")
        if f.calibration_count <= 0:
            raise flags.Error(f"--calibration_count must be positive, got {f.calibration_count}")
        from tfresnet.core import files  # noqa: PLC0415

        files.check_writable(f.out_dir, "--out_dir")
        load_tensorflow()
        from tfresnet import export  # noqa: PLC0415

        model = export.load_model(f.model, f.pretrained)
        calibration = None
        if "int8" in f.precisions:
            calibration = export.calibration_images(f.calibration_images, f.dataset, f.data_dir, f.split,
                                                    f.calibration_count, model.preprocessing.channels)
        with contextlib.nullcontext() if f.verbose else quiet_stderr():  # the converter's C++ lines
            written = export.export_lite(model, f.out_dir, calibration, f.precisions)
        for precision, path in written.items():
            print(f"{precision}: {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
        print(f"class names: {os.path.join(f.out_dir, 'labels.txt')}")

    return run_tool("tfresnet-export", EXPORT_FLAGS, argv, body, about="a trained image classifier as LiteRT "
                    "flatbuffers (float32, float16, full int8): uint8 pixels of any size in, its crop or resize and "
                    "normalisation inside, labels.txt beside.\nusage: tfresnet-export --model=RUN --out_dir=DIR "
                    "[--calibration_images=TRAIN_IMAGES | --dataset=NAME --data_dir=D] [--precisions=...]")


def run_export() -> None:
    """Console script ``tfresnet-export``: a trained image classifier to LiteRT."""
    sys.exit(export_main(sys.argv))
