"""Files before they are read: what a file is from its first bytes, WAV headers, writable paths.

A file that is not what its name says is named as what it is ("x.npz is a JPEG image, not a .npz
array file"), not reported by the reader that choked on it; a path that cannot be written is
refused before anything is. This module imports nothing heavy, so the command line runs these
checks before TensorFlow loads, and every reader (arrays, images, audio, models) can use them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import wave

# (first bytes, what a file that starts with them is).
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF file"),  # WAV or WebP: told apart below
    (b"PK\x03\x04", "a ZIP archive"),  # .npz and .keras files are ZIP archives
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (b"\x80", "a Python pickle"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"),
)


def describe(path: str | os.PathLike) -> str:
    """What ``path`` holds, in a few words: ``"a JPEG image"``, ``"a folder"``, ``"an empty file"``, ...

    Only the first bytes are read. Text is ``"text"``; anything else unrecognised is ``"binary data"``.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        return "a folder"
    if not path.exists():
        return "missing"
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "an empty file"
    if head[4:8] == b"TFL3":  # a flatbuffer's identifier follows its root offset
        return "a LiteRT (.tflite) model"
    if head[4:8] == b"ftyp" or head.startswith(b"OggS") or head.startswith(b"ID3") or head.startswith(b"fLaC"):
        return "an audio or video file (not WAV)"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            if what == "a RIFF file":
                return "a WAV file" if head[8:12] == b"WAVE" else "a WebP image" if head[8:12] == b"WEBP" else what
            return what
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary data"


def check_kind(path: str | os.PathLike, expected: tuple[str, ...], what: str) -> None:
    """Raises a one-line ``ValueError`` unless ``describe(path)`` is one of ``expected``.

    Args:
        path: The file.
        expected: Acceptable ``describe`` answers, e.g. ``("a ZIP archive",)`` for a ``.npz``.
        what: What the file should be, for the message, e.g. ``"a Keras-layout .npz array file"``.
    """
    found = describe(path)
    if found not in expected:
        raise ValueError(f"{path} is {found}, not {what}")


def check_writable(path: str | os.PathLike, what: str, folder: bool = True) -> None:
    """Refuses, before anything is written, a path that cannot be written: one line naming why.

    ``path`` (a folder if ``folder``, else a file) may not exist yet: the nearest folder above it
    that exists must take new files, and nothing on the way may be a file. Remote paths
    (``gs://``, ``ram://``) are not checked.

    Args:
        path: What will be written.
        what: Its name in the message, e.g. ``"model_dir"`` or ``"--tflite"``.
        folder: Whether ``path`` is a folder (else a file, which may be replaced).

    Raises:
        ValueError: a file is in the way, or the folder above takes no new files.
    """
    import tempfile  # noqa: PLC0415

    text = os.fspath(path)
    if "://" in text:
        return
    target = os.path.abspath(text)
    if os.path.isdir(target) and not folder:
        raise ValueError(f"{what} {text} is a folder; name a file in it")
    if os.path.isfile(target) and folder:
        raise ValueError(f"{what} {text} is a file, not a folder; name a folder")
    existing = target if folder and os.path.isdir(target) else os.path.dirname(target)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {text} is not writable: {existing} is a file, not a folder")
    try:  # a real probe: os.access says yes to root even on read-only file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"{what} {text} is not writable: {existing} does not take new files "
                         f"({err.strerror or type(err).__name__})") from None


@dataclasses.dataclass(frozen=True)
class WavFormat:
    """What a PCM WAV file's header says: sample rate, channels, bits per sample, and frames."""

    rate: int
    channels: int
    bits: int
    frames: int

    def describe(self) -> str:
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.bits}-bit PCM, {self.rate} Hz, {layout}"


def wav_format(path: str | os.PathLike) -> WavFormat:
    """Reads the header of a PCM WAV file (the standard library's ``wave``).

    Raises:
        ValueError: one line naming the file and what it is instead (``describe``), when it is not
            a WAV file, not PCM (float or compressed samples), or its header is cut short.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists() else f"{path} is a folder, not a WAV file")
    try:
        with wave.open(str(path), "rb") as f:
            return WavFormat(f.getframerate(), f.getnchannels(), 8 * f.getsampwidth(), f.getnframes())
    except wave.Error as err:
        what = describe(path)
        reason = (f"it is {what}" if what != "a WAV file"
                  else f"{err}: float or compressed samples" if str(err).startswith("unknown format") else str(err))
        raise ValueError(f"{path}: not a readable 16-bit PCM WAV file ({reason})") from None
    except EOFError:
        raise ValueError(f"{path}: not a readable 16-bit PCM WAV file (its header is cut short)") from None


def check_wav(path: str | os.PathLike, rate: int) -> WavFormat:
    """The header of a WAV file that keyword spotting can read: 16-bit PCM mono at ``rate`` Hz, not empty.

    Raises:
        ValueError: one line naming the file and what it holds instead (nothing is resampled or
            mixed down without a word).
    """
    found = wav_format(path)
    if found.bits != 16 or found.rate != rate or found.channels != 1:
        raise ValueError(f"{path}: {found.describe()}; expected 16-bit PCM, {rate} Hz, mono (convert it: "
                         f"sox {path} -r {rate} -b 16 -c 1 out.wav)")
    if found.frames == 0:
        raise ValueError(f"{path} holds no samples (an empty recording)")
    return found
