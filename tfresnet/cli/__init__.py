"""Command line: ``tfresnet-train --flagfile=flags/mnist.cfg`` (or ``python -m tfresnet.train``).

The only package that knows absl flags (the other console scripts are in ``tfresnet.cli.tools``). There is one flag per ``TrainConfig`` field, with the
field's default; ``main`` builds the config and calls ``tfresnet.training.train`` or, with
``--mode=eval`` (``tfresnet-eval``), ``tfresnet.training.evaluate``, for every task. Bad values are
a one-line error and exit status 2 (``--verbose`` shows the traceback); a preempted run exits 75.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 muted inside: TensorFlow's C++ lines (start-up, the LiteRT converter's
    chatter) go straight to it and would bury one-line errors."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes devices with stderr muted (``quiet_stderr``): its C++ start-up
    lines (oneDNN, CUDA probing) would bury one-line errors."""
    with quiet_stderr():
        import tensorflow as tf  # noqa: PLC0415

        tf.config.list_physical_devices()


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


# The other console scripts (tfresnet-kws, -shards, -predict) live in tfresnet.cli.tools; their
# names stay reachable here, as before the split.
def __getattr__(name: str):
    if name.startswith("__") or name == "tools":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    tools = importlib.import_module("tfresnet.cli.tools")  # imports this module: not at the top
    try:
        return getattr(tools, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


if __name__ == "__main__":
    run()
