"""Command line: ``tfresnet-train --flagfile=flags/mnist.cfg`` (or ``python -m tfresnet.train``).

The only module that knows absl flags. There is one flag per ``TrainConfig`` field, with the
field's default; ``main`` builds the config and calls ``tfresnet.training.train`` or, with
``--mode=eval`` (``tfresnet-eval``), ``tfresnet.training.evaluate``, for every task. Bad values are
a one-line error and exit status 2 (``--verbose`` shows the traceback); a preempted run exits 75.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import textwrap
from typing import Any, Sequence

from absl import flags

from tfresnet import config as config_lib
from tfresnet.config import TrainConfig

FLAGS = flags.FlagValues()  # our own registry: importing tfresnet never touches absl's global one

def _define_flags() -> None:
    for field in dataclasses.fields(TrainConfig):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind = str(field.type).replace(" | None", "")
        help_ = field.metadata["help"]
        if kind == "bool":
            flags.DEFINE_bool(field.name, default, help_, flag_values=FLAGS)
        elif kind == "int":
            flags.DEFINE_integer(field.name, default, help_, flag_values=FLAGS)
        elif kind == "float":
            flags.DEFINE_float(field.name, default, help_, flag_values=FLAGS)
        elif kind == "str":
            flags.DEFINE_string(field.name, default, help_, flag_values=FLAGS)
        else:  # tuples and the options dict: comma-separated lists
            flags.DEFINE_list(field.name, [f"{k}={v}" for k, v in default.items()] if isinstance(default, dict)
                              else [str(v) for v in default], help_, flag_values=FLAGS)


_define_flags()

# absl's own parser options, which every command takes (listed by --helpfull).
ABSL_HELP = {
    "flagfile": "Read flags from this file, one --name=value per line (# starts a comment); later flags win.",
    "undefok": "Comma-separated flag names that may be given although this command does not define them.",
    "help": "Show the flags grouped by section, with their defaults (also -h).",
    "helpfull": "Show the flags and absl's own parser options.",
}


def _wants_help(argv: Sequence[str]) -> str | None:
    """``"full"`` for --helpfull, ``"short"`` for --help, -h or --helpshort, else None."""
    args = set(argv[1:])
    if "--helpfull" in args:
        return "full"
    if args & {"--help", "-h", "-?", "--helpshort", "--help=true"}:
        return "short"
    return None


def _describe_flag(flag_values: flags.FlagValues, name: str) -> list[str]:
    flag = flag_values[name]
    default = flag.default
    if isinstance(default, (list, tuple)):
        default = ",".join(map(str, default))
    shown = f"--[no]{name}" if isinstance(flag, flags.BooleanFlag) else f"--{name}"
    lines = textwrap.wrap(f"{shown}: {flag.help}", 96, initial_indent="  ", subsequent_indent="    ")
    return lines + [f"    (default: {default!r})" if isinstance(default, str) else f"    (default: {default})"]


def help_text(prog: str, about: str, flag_values: flags.FlagValues, sections: dict[str, Sequence[str]],
              full: bool = False) -> str:
    """What --help prints: ``about``, then every flag of ``sections`` under its heading, with its
    help and default; ``full`` adds absl's parser options."""
    lines = [*textwrap.wrap(f"{prog}: {about.splitlines()[0]}", 100), *about.splitlines()[1:], ""]
    for title, names in sections.items():
        lines.append(f"{title}:")
        for name in names:
            lines += _describe_flag(flag_values, name)
        lines.append("")
    if full:
        lines.append("absl flags:")
        for name, text in ABSL_HELP.items():
            lines += textwrap.wrap(f"--{name}: {text}", 96, initial_indent="  ", subsequent_indent="    ")
        lines.append("")
    return "\n".join(lines)


TRAIN_ABOUT = ("train a model of the ResNet family (or the keyword encoder) and export it; rerun the same command "
               "to resume. Flags as --name=value, or in a file with --flagfile (see flags/).")
EVAL_ABOUT = ("evaluate the newest checkpoint in --model_dir (with --keep_best, the best one) on --eval_split; "
              "writes nothing. The flags of tfresnet-train, as the run was trained.")


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes devices with stderr muted: its C++ start-up lines (oneDNN,
    CUDA probing) go straight to file descriptor 2 and would bury one-line errors."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf  # noqa: PLC0415

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _join_options(items: Sequence[str]) -> list[str]:
    """Re-joins JSON values that the list flag split at their commas (``widths=[8``, ``12``, ``16]``)."""
    joined: list[str] = []
    for item in items:
        if joined and "=" not in item:
            joined[-1] += f",{item}"
        else:
            joined.append(item)
    return joined


def _parse_option(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--model_options: expected key=value, got {item!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def config_from_flags(argv: Sequence[str]) -> TrainConfig:
    """Parses ``argv`` (``argv[0]`` is the program) into a validated ``TrainConfig``.

    Raises:
        flags.Error: a flag is unknown, malformed, or a flag file is missing.
        ValueError: a value is out of range or not one of the choices.
    """
    FLAGS.unparse_flags()
    rest = FLAGS(list(argv))
    if len(rest) > 1:
        raise flags.Error(f"unexpected arguments {rest[1:]} (flags look like --name=value)")
    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = FLAGS[field.name].value
        if field.name == "noise_snr_db":
            try:
                value = tuple(float(v) for v in value)
            except ValueError:
                raise ValueError(f"{field.name}: expected numbers (dB), got {value}") from None
        elif field.name in ("lr_boundaries", "classes"):
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise ValueError(f"{field.name}: expected integers, got {value}") from None
        elif field.name == "model_options":
            value = dict(_parse_option(v) for v in _join_options(value))
        values[field.name] = value
    return TrainConfig(**values)


def main(argv: Sequence[str], mode: str | None = None) -> int:
    """Runs the command line; returns the exit status."""
    prog = "tfresnet-eval" if mode == "eval" else "tfresnet-train"
    wanted = _wants_help(argv)
    if wanted:  # instant: nothing below is imported
        print(help_text(prog, EVAL_ABOUT if mode == "eval" else TRAIN_ABOUT, FLAGS, config_lib.SECTIONS,
                        full=wanted == "full"))
        return 0
    verbose = any(a in ("--verbose", "--verbose=true", "--verbose=True") for a in argv)
    # TensorFlow's C++ log lines (start-up chatter, a JPEG decoder's complaint about the file that the
    # error below names) would bury the one-line errors: only --verbose shows them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    try:
        cfg = config_from_flags(argv)
        if mode:
            cfg = cfg.replace(mode=mode)
        # Late imports: --help and flag errors answer without loading TensorFlow.
        if not verbose:
            _import_tensorflow_quietly()
        from tfresnet import training  # noqa: PLC0415

        # Both check every name (training.check_names) before any data is read.
        if cfg.mode == "eval":
            training.evaluate(cfg)
        else:
            training.train(cfg)
    except flags.Error as err:
        print(f"{prog}: error: {str(err).removeprefix('ERROR:: ')}", file=sys.stderr)
        return 2
    except BAD_INPUT as err:
        if verbose:
            raise
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # TrainingError, TensorFlow errors: still one line unless --verbose
        if hasattr(err, "exit_code"):  # training.Preempted: checkpoint saved, rerun to resume
            print(f"{prog}: {err}", file=sys.stderr)
            return err.exit_code
        if verbose:
            raise
        print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
        # The input pipeline's own checks (an image that does not decode, a label out of range) name
        # bad input found while reading it: exit status 2 like every other bad input.
        return 2 if pipeline_message(err) else 1
    return 0


# Bad input (exit status 2): a bad value, name, file or folder; BadInput is a ValueError.
BAD_INPUT = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError, TypeError)


def one_line(err: BaseException) -> str:
    """The message of a bad-input error on one line (a ``KeyError``'s without its quotes)."""
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(message.split())


def pipeline_message(err: Exception) -> str | None:
    """The input pipeline's own message in ``err`` (``assertion failed: [what] [file]``, which
    TensorFlow buries under "Graph execution error:"), or None."""
    found = re.search(r"assertion failed: ((?:\[[^\]\n]*\] ?)+)", str(err))
    return " ".join(re.findall(r"\[([^\]\n]*)\]", found.group(1))) if found else None


def error_line(err: Exception) -> str:
    """One line for an error: ``pipeline_message``, else the error's first line."""
    if (message := pipeline_message(err)) is not None:
        return message
    text = str(err).strip()
    found = re.search(r"(?:corrupted|truncated) record at \d+", text)
    lines = text.splitlines()
    return f"{type(err).__name__}: {found.group(0) if found else lines[0] if lines else ''}"


def run() -> None:
    """Console script ``tfresnet-train`` (and ``python -m tfresnet.train``)."""
    sys.exit(main(sys.argv))


def run_eval() -> None:
    """Console script ``tfresnet-eval``: top-1/top-5 of the newest checkpoint in --model_dir."""
    sys.exit(main(sys.argv, mode="eval"))


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
flags.DEFINE_float("hop", 0.05, "detect: seconds between windows.", flag_values=KWS_FLAGS)
flags.DEFINE_string("tflite", None, "export: the .tflite file to write.", flag_values=KWS_FLAGS)
flags.DEFINE_string("int8_data", None, "export: full int8 quantisation, calibrated on the training clips of "
                    "this Speech Commands folder (else float32).", flag_values=KWS_FLAGS)
flags.DEFINE_bool("verbose", False, "Show tracebacks for errors.", flag_values=KWS_FLAGS)

KWS_USAGE = """usage:
  tfresnet-kws enroll   --model=RUN --keywords=K.json --keyword=NAME a.wav [b.wav ...]   (1-5 recordings)
  tfresnet-kws classify --model=RUN --keywords=K.json clip.wav [...]    prints: clip keyword|unknown score
  tfresnet-kws detect   --model=RUN --keywords=K.json long.wav [...]    prints: file start_seconds keyword score
  tfresnet-kws export   --model=RUN --tflite=OUT.tflite [--int8_data=SPEECH_COMMANDS_DIR]"""


def _check_kws(command: str, wavs: list[str]) -> None:
    """What ``tfresnet-kws`` can check without TensorFlow: flags, paths and the WAV files' headers."""
    from tfresnet.core import files  # noqa: PLC0415

    f = KWS_FLAGS
    if not f.model:
        raise flags.Error("--model is required (a few-shot run folder, .keras or .tflite)")
    if not os.path.exists(f.model):
        raise FileNotFoundError(f"no encoder at {f.model} (expected a run folder with model.keras, a .keras or a "
                                ".tflite file)")
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
    if not wavs:
        raise flags.Error(f"{command} needs WAV files")
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


def _kws(command: str, wavs: list[str]) -> None:
    from tfresnet.kws import spotting  # noqa: PLC0415

    f = KWS_FLAGS
    if command == "export":
        encoder = spotting.load_encoder(f.model)
        representative = None
        if f.int8_data:
            bins = spotting.encoder_input_shape(encoder)[1]
            representative = spotting.representative_features(f.int8_data, bins)
        size = spotting.export_tflite(encoder, f.tflite, representative)
        print(f"wrote {f.tflite} ({'int8' if representative is not None else 'float32'}, {size / 1024:.0f} KiB)")
        return
    spotter = spotting.KeywordSpotter.load(f.model, threshold=f.threshold)
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
    if command == "classify":
        for path, match in zip(wavs, spotter.classify(wavs)):
            print(f"{path} {match.keyword} {match.score:.3f}")
    else:
        for path in wavs:
            for d in spotter.detect(path, hop=f.hop):
                print(f"{path} {d.start:.2f} {d.keyword} {d.score:.3f}")


def _run_tool(prog: str, flag_values: flags.FlagValues, argv: Sequence[str], body, errors=(), about: str = "") -> int:
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
        if not rest or rest[0] not in ("enroll", "classify", "detect", "export"):
            got = f" (got {rest[0]!r})" if rest else ""
            raise flags.Error(f"expected a command: enroll, classify, detect or export{got}, e.g. tfresnet-kws "
                              "enroll --model=RUN --keywords=K.json --keyword=NAME a.wav")
        _check_kws(rest[0], rest[1:])  # before TensorFlow loads: a bad flag or file answers at once
        load_tensorflow()
        _kws(rest[0], rest[1:])

    return _run_tool("tfresnet-kws", KWS_FLAGS, argv, body, about="keyword spotting with a trained few-shot "
                     "encoder: enroll words from 1-5 recordings, classify clips, detect words in recordings, export "
                     "the encoder to LiteRT.\n" + KWS_USAGE)


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

    return _run_tool("tfresnet-shards", SHARD_FLAGS, argv, body, errors=(RuntimeError,),
                     about="convert a class folder (<dir>/<class>/<image>) or a tensorflow-datasets image dataset "
                     "into sharded TFRecord files, read with tfresnet-train --dataset=shards --data_dir=OUT_DIR.")


def run_shards() -> None:
    """Console script ``tfresnet-shards``: write a folder or a TFDS split as sharded TFRecord files."""
    sys.exit(shards_main(sys.argv))


# -- tfresnet-predict: the top classes of image files (tfresnet.predict) ------------------------------

PREDICT_FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "A run folder, its saved_model/, or a model name with --pretrained.",
                    flag_values=PREDICT_FLAGS)
flags.DEFINE_string("pretrained", None, "With a model name: its weights (tfresnet.weights.sources, e.g. imagenet).",
                    flag_values=PREDICT_FLAGS)
flags.DEFINE_integer("top_k", 5, "Classes given per image, best first.", flag_values=PREDICT_FLAGS)
flags.DEFINE_integer("batch_size", 32, "Images per call of the model.", flag_values=PREDICT_FLAGS)
flags.DEFINE_string("output", None, "Write to this .csv or .jsonl file instead of printing.", flag_values=PREDICT_FLAGS)
flags.DEFINE_enum("bad_images", "error", ["error", "skip"], "A file that does not decode: a one-line error, or "
                  "left out and counted.", flag_values=PREDICT_FLAGS)
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
        load_tensorflow()
        from tfresnet.predict import Classifier, write_predictions  # noqa: PLC0415

        classifier = Classifier.load(f.model, f.pretrained)
        # A progress line on a terminal while the predictions go to a file.
        progress = (lambda n: print(f"\r{n}/{classifier.total} images", end="", file=sys.stderr, flush=True)) if (
            f.output and sys.stderr.isatty()) else None
        rows = write_predictions(classifier.predict(rest, f.top_k, f.batch_size, f.bad_images), f.output, progress)
        if f.output:
            print(("\r" if progress else "") + f"wrote {rows} predictions to {f.output}", file=sys.stderr)
        if classifier.skipped:
            print(f"skipped {classifier.skipped} file(s) that do not decode", file=sys.stderr)

    return _run_tool("tfresnet-predict", PREDICT_FLAGS, argv, body, about="the top classes, by name, of image "
                     "files of any size (JPEG, PNG, BMP, GIF), as tfresnet-eval prepares images.\n"
                     "usage: tfresnet-predict --model=RUN [--top_k=5] [--output=OUT.csv|.jsonl] IMAGE|FOLDER|GLOB...")


def run_predict() -> None:
    """Console script ``tfresnet-predict``: a trained classifier's top classes for image files."""
    sys.exit(predict_main(sys.argv))


if __name__ == "__main__":
    run()
