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
from typing import Any, Sequence

from absl import flags

from tfresnet import config as config_lib
from tfresnet.config import TrainConfig

FLAGS = flags.FlagValues()  # our own registry: importing tfresnet never touches absl's global one

_HELP = {
    "task": "What to train, a name in tfresnet.tasks.TASKS: classify (images), fewshot (keyword spotting).",
    "model": "Model name (tfresnet.list_models()); default: the task's own (mnist_resnet, protores).",
    "dataset": "mnist, fashion_mnist, cifar10, cifar100, imagenette, imagenet2012, folder, npz, shards or "
               "synthetic.",
    "data_dir": "TFDS data dir (local or gs://), the .npz file, the image folder, or the shard folder (local or "
                "gs://, written by tfresnet-shards).",
    "train_split": "Training split; TFDS slicing allowed, e.g. train[:2000].",
    "eval_split": "Evaluation split (default test). Few-shot: validation or test keywords (default: validation "
                  "while training, test in tfresnet-eval).",
    "image_size": "Image side for ImageNet-style and folder datasets.",
    "augment": "Training augmentation, a name in tfresnet.augment.AUGMENTATIONS (default: the dataset's).",
    "bad_images": "An image file or record that does not decode: fail (a one-line error naming it) or skip "
                  "(a warning; another image of the batch takes its place, so resume stays exact).",
    "data_service": "host:port of a tf.data service dispatcher: run reading, decoding and augmentation on its "
                    "workers. Exact resume is given up (a resumed run starts at its epoch, not its exact batch).",
    "classes": "Train and evaluate on these labels only, relabelled 0..n-1 in this order, e.g. 5,6,7,8,9 "
               "(a folder's classes are its sorted sub-folders).",
    "examples_per_class": "Keep this many training examples of each class, drawn with --seed.",
    "model_options": "Model constructor options as key=value (JSON values), comma-separated, e.g. "
                     "zero_init_residual=true or widths=[8,12,16].",
    "model_dir": "Where checkpoints, TensorBoard logs, metrics.jsonl and the exported model go.",
    "pretrained": "Start from pretrained weights: a source of the model (imagenet, torchvision, timm) or a "
                  ".pth/.pt/.bin/.safetensors state dict. Other class counts get a fresh head; the weights' "
                  "preprocessing is applied to the data.",
    "freeze_backbone_epochs": "Train only the classifier head for the first N epochs (BatchNorm statistics frozen "
                              "too); N >= epochs trains a linear probe.",
    "backbone_lr_scale": "The backbone's learning rate as a fraction of the head's, e.g. 0.1 when fine-tuning.",
    "epochs": "Training epochs (ignored when train_steps is set).",
    "train_steps": "Total training steps; overrides epochs.",
    "batch_size": "GLOBAL batch size, split evenly over replicas.",
    "eval_batch_size": "GLOBAL evaluation batch size.",
    "steps_per_loop": "Training steps per tf.function call.",
    "target_accuracy": "Stop at the first epoch whose test accuracy reaches this fraction, e.g. 0.994.",
    "optimizer": "A name in tfresnet.optim.OPTIMIZERS (an unknown name lists them).",
    "learning_rate": "Base learning rate.",
    "lr_scale_batch": "If set, learning_rate *= batch_size / lr_scale_batch.",
    "lr_schedule": "A name in tfresnet.optim.SCHEDULES (an unknown name lists them).",
    "lr_boundaries": "Piecewise schedule: steps at which the rate is multiplied by lr_decay.",
    "lr_decay": "Piecewise schedule factor.",
    "warmup_steps": "Linear warm-up steps (cosine, onecycle).",
    "momentum": "SGD momentum.",
    "nesterov": "Nesterov momentum.",
    "weight_decay": "Weight decay; 0 is none (adamw included). sgd: L2 added to the gradient before momentum, "
                    "as in the papers and torch.optim.SGD (1e-4 is He et al.'s). adam, adamw: decoupled, "
                    "w -= lr * wd * w. Never on BatchNorm parameters or biases.",
    "label_smoothing": "Label smoothing.",
    "mixup": "Mixup's Beta parameter (0 is off): each training batch blended with its reverse, soft labels.",
    "cutmix": "CutMix's Beta parameter (0 is off): a box of the reversed batch pasted in, labels by area. "
              "With --mixup too, each batch picks one at even odds.",
    "randaugment_ops": "RandAugment: ops applied to each training image after its augmentation (0 is off; "
                       "timm's rand-m9-n2 is 2).",
    "randaugment_magnitude": "RandAugment: strength of every op, 0-10 (timm's default 9).",
    "ema": "Keep an exponential moving average of the weights with this decay (e.g. 0.9999; 0 is off): "
           "each epoch evaluates both, and the average is what is exported and what tfresnet-eval measures.",
    "ema_warmup": "Ramp the EMA decay up as min(ema, (1 + step) / (10 + step)).",
    "drop_path_rate": "Stochastic depth of ResNet blocks: the last block drops its residual branch with this "
                      "probability, earlier ones linearly less (0 is none; 0.05 in 'ResNet strikes back').",
    "clip_norm": "Clip gradients to this global norm.",
    "precision": f"One of {', '.join(config_lib.PRECISIONS)}.",
    "jit_compile": "XLA-compile the steps (default: on for GPU/TPU; on CPU only for task fewshot, where it is faster).",
    "strategy": f"One of {', '.join(config_lib.STRATEGIES)}.",
    "tpu": "TPU name or grpc:// address (--strategy=tpu); empty or 'local' on Colab / TPU VMs.",
    "seed": "Seed of initialisation, data order and augmentation.",
    "deterministic": "Bitwise-repeatable ops (tf.config.experimental.enable_op_determinism).",
    "device_prefetch": "Batches each replica's device holds ahead of the running step, so that the host-to-device "
                       "copy overlaps compute.",
    "compilation_cache": "Folder of the persistent XLA cache (compiled steps, GPU autotuning): a repeated run "
                         "skips compilation. Empty: off. Default: ~/.cache/tfresnet/xla-<TF version>, or "
                         "$TFRESNET_XLA_CACHE.",
    "n_way": "Few-shot: classes per episode (one episode per replica per step).",
    "k_shot": "Few-shot: support examples per class.",
    "n_query": "Few-shot: query examples per class.",
    "episodes_per_epoch": "Few-shot: training steps per epoch.",
    "eval_episodes": "Few-shot: episodes over held-out keywords per evaluation.",
    "train_n_way": "Few-shot: classes per training episode (default: n_way); more than at test time helps.",
    "fewshot_loss": "Few-shot: how the encoder learns: prototypical (N-way episodes) or cosine_softmax (batches of "
                    "batch_size clips over all training words, optionally with a margin).",
    "logit_scale": "Few-shot: the temperature s of s * cosine (cosine_softmax and cosine episodes).",
    "margin": "Few-shot: cosine_softmax's additive margin on the true word's cosine (CosFace).",
    "splice_words": "Few-shot: share of cosine_softmax training clips replaced by a pseudo-word, the start of "
                    "their word joined to the end of another by the same speaker (0: off).",
    "splice_cut": "Few-shot: splice_words cuts each word at 0.5 +- this of its speech (uniform).",
    "extra_words_dir": "Few-shot: a Speech Commands folder of more training words (no validation or test word, no "
                       "held-out speaker), e.g. rendered by benchmarks/kws_words.py.",
    "metric": "Few-shot: compare queries with prototypes by euclidean distance or cosine similarity (what "
              "tfresnet-kws scores with).",
    "time_shift": "Few-shot: shift training clips by up to this many seconds either way (0: off).",
    "noise_probability": "Few-shot: share of training clips mixed with _background_noise_ (0: off).",
    "noise_snr_db": "Few-shot: low,high signal-to-noise ratio of the noise mix, in dB.",
    "spec_augment": "Few-shot: SpecAugment-style masking of a mel band and a span of frames.",
    "speed": "Few-shot: stretch time by a random factor in 1 +- this per training clip (0: off).",
    "formant": "Few-shot: stretch the mel axis by a random factor in 1 +- this per training clip (VTLP; 0: off).",
    "keep_best": "Keep the weights of the best evaluation in model_dir/best; export and tfresnet-eval use them.",
    "keep_best_by": "keep_best: the best evaluation is the highest accuracy or the lowest loss.",
    "mode": f"One of {', '.join(config_lib.MODES)}.",
    "export": "Write model.keras and a serving SavedModel to model_dir at the end.",
    "keep_checkpoints": "Checkpoints to keep.",
    "checkpoint_every": "Save every N steps (default: every epoch).",
    "verbose": "Show tracebacks for errors.",
}


def _define_flags() -> None:
    for field in dataclasses.fields(TrainConfig):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind = str(field.type).replace(" | None", "")
        help_ = _HELP[field.name]
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
        line = error_line(err)
        print(f"{prog}: error: {line}", file=sys.stderr)
        # The input pipeline's own checks (an image that does not decode, a label out of range) name
        # bad input found while reading it: exit status 2 like every other bad input.
        return 2 if not line.startswith(f"{type(err).__name__}: ") else 1
    return 0


# Bad input (exit status 2): a bad value, name, file or folder; BadInput is a ValueError.
BAD_INPUT = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError, TypeError)


def one_line(err: BaseException) -> str:
    """The message of a bad-input error on one line (a ``KeyError``'s without its quotes)."""
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(message.split())


def error_line(err: Exception) -> str:
    """One line for an error: the input pipeline's own message (``assertion failed: [what] [file]``,
    which TensorFlow buries under "Graph execution error:"), else the error's first line."""
    text = str(err).strip()
    found = re.search(r"assertion failed: ((?:\[[^\]\n]*\] ?)+)", text)
    if found:
        return " ".join(re.findall(r"\[([^\]\n]*)\]", found.group(1)))
    found = re.search(r"(?:corrupted|truncated) record at \d+", text)
    lines = text.splitlines()
    return f"{type(err).__name__}: {found.group(0) if found else lines[0] if lines else ''}"


def run() -> None:
    """Console script ``tfresnet-train`` (and ``python -m tfresnet.train``)."""
    sys.exit(main(sys.argv))


def run_eval() -> None:
    """Console script ``tfresnet-eval``: top-1/top-5 of the newest checkpoint in --model_dir."""
    sys.exit(main(sys.argv, mode="eval"))


# -- tfresnet-kws: keyword spotting with a trained few-shot encoder (tfresnet.spotting) --------------

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
    from tfresnet import files  # noqa: PLC0415

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
    from tfresnet import spotting  # noqa: PLC0415

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


def _run_tool(prog: str, flag_values: flags.FlagValues, argv: Sequence[str], body, errors=()) -> int:
    """Runs ``body(arguments, load_tensorflow)`` of a small console script with one-line errors.

    ``load_tensorflow`` imports TensorFlow with its start-up chatter silenced (unless --verbose):
    ``body`` calls it once its own checks passed. Flag errors and ``ValueError``,
    ``FileNotFoundError`` or ``errors`` exit 2 with ``prog: error: ...``.
    """
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

    return _run_tool("tfresnet-kws", KWS_FLAGS, argv, body)


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
        from tfresnet import files  # noqa: PLC0415 - no TensorFlow: answers before it loads

        files.check_writable(f.out_dir, "--out_dir")
        load_tensorflow()
        from tfresnet import data  # noqa: PLC0415

        data.write_shards(f.dataset, f.data_dir, f.out_dir, f.num_shards, f.splits, f.seed, f.overwrite,
                          log=lambda line: print(line, flush=True))

    return _run_tool("tfresnet-shards", SHARD_FLAGS, argv, body, errors=(RuntimeError,))


def run_shards() -> None:
    """Console script ``tfresnet-shards``: write a folder or a TFDS split as sharded TFRecord files."""
    sys.exit(shards_main(sys.argv))


if __name__ == "__main__":
    run()
