"""The one exception type users see.

Every check on user input raises :class:`AdvlabError` with a single line that names the bad
value and says how to fix it. The command-line entry point prints that line and exits with
status 2 instead of dumping a traceback; anything else that escapes is a bug and keeps its
traceback.
"""

import os
import sys
import warnings
from types import FrameType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class AdvlabError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class FolderInUse(AdvlabError):
    """The job's output folder already holds results (or another job claimed it first). Nothing
    is written into such a folder, not even a failure record."""


class JobTerminated(BaseException):
    """The job received SIGTERM (SLURM preemption, ``timeout``, CI cancel).

    A ``BaseException``, like ``KeyboardInterrupt``: the ``except Exception`` blocks that keep a
    sweep going after one job's error must not swallow it, so the whole sweep stops.
    """

    exit_status = 143  # 128 + SIGTERM, what a shell reports for a process killed by it


def one_line(error: BaseException) -> str:
    """How the command line shows an :class:`AdvlabError`."""
    return f"advlab: error: {error}"


def warn_caller(message: str) -> None:
    """``warnings.warn`` attributed to the first frame outside advlab, so the warning names the
    user's line (``pgd(...)`` in a notebook) rather than advlab's own wrapper that passed it on.
    (Python 3.12's ``skip_file_prefixes`` does this; 3.11 does not have it.)"""
    level = 2  # stacklevel 2 is the frame that called warn_caller
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level)
