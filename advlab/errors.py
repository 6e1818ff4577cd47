"""The one exception type users see.

Every check on user input raises :class:`AdvlabError` with a single line that names the bad
value and says how to fix it. The command-line entry point prints that line and exits with
status 2 instead of dumping a traceback; anything else that escapes is a bug and keeps its
traceback.
"""


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
