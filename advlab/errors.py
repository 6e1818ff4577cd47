"""The one exception type users see.

Every check on user input raises :class:`AdvlabError` with a single line that names the bad
value and says how to fix it. The command-line entry point prints that line and exits with
status 2 instead of dumping a traceback; anything else that escapes is a bug and keeps its
traceback.
"""


class AdvlabError(Exception):
    """A problem with the user's input or environment, explained in one line."""
