"""Pretrained weights: where each model's come from, how they are read, and their preprocessing.

``create_model(name, pretrained=SOURCE)`` takes one of

* a registered source of that model: ``imagenet`` (keras.applications, for its six twins),
  ``torchvision`` or ``timm`` (the published PyTorch checkpoints, downloaded once into
  ``$KERAS_HOME/models/tfresnet``, ``~/.keras`` by default);
* a local file: a PyTorch state dict in torchvision's naming (``.pth``/``.pt``/``.bin`` read with
  torch, ``.safetensors`` read with the ``safetensors`` package, no torch needed), or a tfresnet
  model saved as ``.keras`` (the ``model.keras`` a run exports: fine-tune your own pretraining).

Every source records the preprocessing its weights expect (``tfresnet.weights.preprocessing``); the model
built from it keeps that record. A source is one ``register_weights`` line, as timm's
``pretrained_cfg``; yours join the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import zipfile
from typing import Mapping

import numpy as np

from tfresnet.core.errors import DownloadError
from tfresnet.core.registry import Registry, unknown_name
from tfresnet.weights.port import KERAS_APPLICATIONS
from tfresnet.weights.preprocessing import CAFFE, INCEPTION, TORCHVISION, Preprocessing

LAYOUTS = ("keras", "torch", "tfresnet")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
STATE_DICT_SUFFIXES = TORCH_SUFFIXES + (".safetensors",)
FILE_SUFFIXES = STATE_DICT_SUFFIXES + (".keras",)


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """Where one model's pretrained weights come from.

    Attributes:
        model: The registered model they fit.
        source: The source's name (``imagenet``, ``torchvision``, ``timm``, or a file path).
        preprocessing: What the weights expect of their inputs; None only for a ``.keras`` model
            saved without a record (its dataset's own normalisation then applies).
        layout: ``keras`` (copied by layer name from the keras.applications twin), ``torch``
            (a PyTorch state dict in torchvision's naming: ``layer1.0.conv1.weight``) or
            ``tfresnet`` (a saved tfresnet model, copied by layer name).
        url: Where a ``torch`` file is downloaded from (None for ``keras`` and local files).
        path: A local file to read instead of downloading.
        file_name: Name of the downloaded file in the cache (default: the URL's last part).
    """

    model: str
    source: str
    preprocessing: Preprocessing | None
    layout: str = "torch"
    url: str | None = None
    path: str | None = None
    file_name: str | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise unknown_name("weight layout", self.layout, list(LAYOUTS))


WEIGHTS: Registry[WeightSource] = Registry("pretrained weights")


def register_weights(model: str, source: str, *, preprocessing: Preprocessing, layout: str = "torch",
                     url: str | None = None, file_name: str | None = None, overwrite: bool = False) -> WeightSource:
    """Registers ``source`` as pretrained weights of ``model`` (``create_model(model, pretrained=source)``).

    Args:
        model: A registered model name.
        source: The name users pass as ``pretrained``.
        preprocessing: What the weights expect.
        layout: ``torch`` (state dict in torchvision's naming) or ``keras`` (keras.applications twin).
        url: Download address of a ``torch`` file (``https://``, or ``file://`` for a shared disk).
        file_name: Cache file name, when the URL's last part is not unique (Hugging Face's
            ``model.safetensors``).
        overwrite: Replace an existing entry.

    Returns:
        The registered ``WeightSource``.
    """
    entry = WeightSource(model, source, preprocessing, layout, url, None, file_name)
    WEIGHTS.register(f"{model}.{source}", entry, overwrite=overwrite)
    return entry


def sources(model: str) -> list[str]:
    """The registered weight sources of ``model``, sorted."""
    return sorted(key.split(".", 1)[1] for key in WEIGHTS.names() if key.split(".", 1)[0] == model)


def is_file_path(pretrained: str) -> bool:
    """Whether ``pretrained`` names a local file rather than a registered source."""
    return os.sep in pretrained or pretrained.endswith(FILE_SUFFIXES)


def find(model: str, pretrained: str, preprocessing: Preprocessing | None = None) -> WeightSource:
    """The weight source ``pretrained`` names for ``model``.

    Args:
        model: A registered model name.
        pretrained: A registered source, or a local file: a state dict, or a saved ``.keras`` model.
        preprocessing: Overrides the record (for a state dict, torchvision's is assumed; a
            ``.keras`` model carries its own).

    Raises:
        ValueError: unknown source for this model (the valid ones listed), or a local file of
            another format.
        FileNotFoundError: a local file that does not exist.
    """
    if not isinstance(pretrained, str) or not pretrained:
        raise ValueError(f"pretrained must be a source name or a file path, got {pretrained!r}")
    if is_file_path(pretrained):
        path = pathlib.Path(pretrained).expanduser()
        if path.suffix not in FILE_SUFFIXES:
            raise ValueError(f"pretrained file {path}: unknown format {path.suffix!r}; expected a PyTorch state dict "
                             f"({', '.join(STATE_DICT_SUFFIXES)}) or a saved tfresnet model (.keras)")
        if not path.is_file():
            raise FileNotFoundError(f"pretrained file not found: {path}")
        if path.suffix == ".keras":
            return WeightSource(model, str(path), preprocessing or saved_preprocessing(path), "tfresnet", path=str(path))
        return WeightSource(model, str(path), preprocessing or TORCHVISION, "torch", path=str(path))
    valid = sources(model)
    if pretrained not in valid:
        known = sorted({key.split(".", 1)[1] for key in WEIGHTS.names()})
        if pretrained in known:
            fits = sorted(key.split(".", 1)[0] for key in WEIGHTS.names() if key.endswith(f".{pretrained}"))
            raise ValueError(f"model {model!r} has no {pretrained!r} weights ({_why_not(model, pretrained)}"
                             f"models with them: {', '.join(fits)}); its sources: {', '.join(valid) or 'none'}")
        raise unknown_name(f"pretrained weights of {model!r}", pretrained,
                           valid + ["a .pth/.pt/.bin/.safetensors/.keras file path"])
    entry = WEIGHTS.get(f"{model}.{pretrained}")
    return dataclasses.replace(entry, preprocessing=preprocessing) if preprocessing else entry


def saved_preprocessing(path: str | os.PathLike) -> Preprocessing | None:
    """The preprocessing record in a saved ``.keras`` model's config, read without building it.

    Raises:
        ValueError: the file is not a readable ``.keras`` archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"cannot read {path} as a saved Keras model ({type(err).__name__}: {err})") from None
    record = config.get("config", {}).get("preprocessing")
    return None if record is None else Preprocessing.from_dict(record)


def _why_not(model: str, source: str) -> str:
    if source in ("torchvision", "timm") and model in V1_5_NAMES:
        return (f"{model} is the keras.applications layout (stride in the first 1x1, biased convolutions); "
                f"PyTorch's ResNets are v1.5: use {V1_5_NAMES[model]}; ")
    return ""


def cache_dir() -> pathlib.Path:
    """Where downloaded weights are kept: ``$KERAS_HOME/models/tfresnet`` (``~/.keras`` by default)."""
    return pathlib.Path(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))) / "models" / "tfresnet"


def fetch(source: WeightSource) -> pathlib.Path:
    """The local file of ``source``: its path, the cached download, or a fresh download.

    Raises:
        RuntimeError: the download failed (offline); the message names the URL and how to pass
            a local copy instead.
    """
    if source.path:
        return pathlib.Path(source.path)
    import keras  # noqa: PLC0415 - keras.utils.get_file: cached, atomic downloads

    name = source.file_name or source.url.rsplit("/", 1)[-1]
    folder = cache_dir()
    if (folder / name).is_file():
        return folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)  # get_file falls back to /tmp for a folder not there yet
        return pathlib.Path(keras.utils.get_file(name, source.url, cache_dir=str(folder), cache_subdir="."))
    except Exception as err:  # URL, HTTP and OS errors all mean the same thing to a user
        reason = str(err).splitlines()[0][:200] if str(err) else ""
        raise DownloadError(
            f"could not download the {source.source} weights of {source.model} from {source.url} "
            f"({type(err).__name__}: {reason}); download that file where you are online and pass its path: "
            f"create_model({source.model!r}, pretrained='/path/to/{name}') or --pretrained=/path/to/{name}"
        ) from None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file, as float32 NumPy arrays by name.

    ``.safetensors`` is read with the ``safetensors`` package (no torch); ``.pth``/``.pt``/``.bin``
    with ``torch.load(weights_only=True)``. A checkpoint that wraps the state dict (``{"state_dict":
    ...}`` or ``{"model": ...}``) and DistributedDataParallel's ``module.`` prefix are unwrapped.

    Raises:
        ImportError: a torch file without torch installed (the message says how to convert it).
        ValueError: the file cannot be read as a state dict (corrupt, truncated, not tensors).
    """
    path = pathlib.Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file  # noqa: PLC0415 - only users of the format need it

            tensors: Mapping[str, object] = load_file(str(path))
        else:
            try:
                import torch  # noqa: PLC0415 - optional: only .pth files need it
            except ImportError:
                raise ImportError(
                    f"reading {path} needs PyTorch (pip install torch); or convert it once where torch is "
                    "installed: safetensors.torch.save_file(torch.load(path), 'weights.safetensors')"
                ) from None
            tensors = torch.load(str(path), map_location="cpu", weights_only=True)
            for key in ("state_dict", "model"):
                if isinstance(tensors, Mapping) and isinstance(tensors.get(key), Mapping):
                    tensors = tensors[key]
            tensors = {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
                       for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    except ImportError:
        raise
    except Exception as err:  # safetensors, pickle and zip errors: a corrupt or foreign file
        raise ValueError(f"cannot read {path} as a PyTorch state dict ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else 'no detail'})") from None
    if not isinstance(tensors, Mapping) or not tensors:
        raise ValueError(f"{path} holds no tensors; expected a PyTorch state dict (name -> tensor)")
    return {k.removeprefix("module."): np.asarray(v, np.float32) for k, v in tensors.items()}


# --------------------------------------------------------------------------------------------------
# The published weights, one line each.
# --------------------------------------------------------------------------------------------------

# keras.applications' v1 ResNets (stride in the first 1x1, biased convolutions) and the torchvision
# layout of the same depth ("v1.5": stride in the 3x3, no biases), which PyTorch's weights fit.
V1_5_NAMES = {"resnet50": "resnet50_v1_5", "resnet101": "resnet101_v1_5", "resnet152": "resnet152_v1_5"}

for _name in KERAS_APPLICATIONS:  # v1: Caffe's weights and preprocessing; v2: [-1, 1]
    register_weights(_name, "imagenet", preprocessing=INCEPTION if _name.endswith("v2") else CAFFE, layout="keras")

_TORCHVISION = "https://download.pytorch.org/models/"
for _name, _file in (("resnet18", "resnet18-5c106cde.pth"), ("resnet34", "resnet34-333f7ec4.pth"),
                     ("resnet50_v1_5", "resnet50-19c8e357.pth"), ("resnet101_v1_5", "resnet101-5d3b4d8f.pth"),
                     ("resnet152_v1_5", "resnet152-b121ed2d.pth"), ("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth"),
                     ("resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth")):
    register_weights(_name, "torchvision", preprocessing=TORCHVISION, url=_TORCHVISION + _file)

# timm's own ImageNet training ("ResNet strikes back": 0.95 crop, bicubic), from the Hugging Face Hub.
_TIMM_RSB = dataclasses.replace(TORCHVISION, crop_fraction=0.95, interpolation="bicubic")
for _name, _tag, _prep in (("resnet18", "resnet18.a1_in1k", _TIMM_RSB), ("resnet34", "resnet34.a1_in1k", _TIMM_RSB),
                           ("resnet50_v1_5", "resnet50.a1_in1k", _TIMM_RSB),
                           ("resnet101_v1_5", "resnet101.a1h_in1k", _TIMM_RSB),
                           ("resnet152_v1_5", "resnet152.a1h_in1k", _TIMM_RSB),
                           ("resnext50_32x4d", "resnext50_32x4d.a1h_in1k", _TIMM_RSB),
                           ("resnext101_32x8d", "resnext101_32x8d.tv_in1k", TORCHVISION)):
    register_weights(_name, "timm", preprocessing=_prep, file_name=f"timm-{_tag}.safetensors",
                     url=f"https://huggingface.co/timm/{_tag}/resolve/main/model.safetensors")
