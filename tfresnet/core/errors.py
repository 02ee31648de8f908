"""The package's two kinds of error: input a user can fix, and a run that cannot go on.

This module imports nothing, so every other module (the configuration included) can raise them.
"""

from __future__ import annotations


class BadInput(ValueError):
    """Input the user can fix: a bad name, value, flag, file or folder.

    Raised before anything is trained or written. The command line prints its message as one line
    (``prog: error: ...``) and exits with status 2, as it does for every ``ValueError``.
    """


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, unreadable checkpoints, a lost worker, ...)."""


class DownloadError(BadInput, RuntimeError):
    """Something that must be downloaded cannot be (offline): the message names the URL and the way
    around it (a local file). A ``BadInput`` to the command line (one line, exit status 2)."""
