"""Finding a class by name: one matcher for ImageNet class folders and patch targets.

Names compare case-blind with ``_`` as space ("great_white_shark" = "great white shark"), and an
ImageNet name that lists synonyms ("saltshaker, salt shaker") answers to each of them. A name two
classes share (torchvision's "cardigan" / "Cardigan", "crane" twice in other lists) matches none,
so the caller can ask for an index instead of silently picking one. Plain Python: the attacks
use it, and they import no Lightning.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

__all__ = ["by_name", "close_names", "find_class", "name_key", "synonyms"]


def name_key(name: str) -> str:
    """The form names compare in: lower case, ``_`` as space, single spaces."""
    return " ".join(str(name).replace("_", " ").lower().split())


def synonyms(name: str) -> list[str]:
    """The comma-separated parts of an ImageNet name, each in :func:`name_key` form."""
    return [name_key(part) for part in str(name).split(",") if part.strip()]


def by_name(names: Sequence[str], key: Callable[[str], str] = str) -> dict[str, int | None]:
    """``key(name)`` → index; ``None`` for a key two classes share."""
    table: dict[str, int | None] = {}
    for index, name in enumerate(names):
        k = key(name)
        table[k] = None if k in table and table[k] != index else index
    return table


def _synonym_table(names: Sequence[str]) -> dict[str, int | None]:
    table: dict[str, int | None] = {}
    for index, name in enumerate(names):
        for k in synonyms(name):
            table[k] = None if k in table and table[k] != index else index
    return table


def find_class(text: str, names: Sequence[str]) -> tuple[bool, int | None]:
    """``(found, index)`` of ``text`` among ``names``: the exact name first, then case-blind, then
    a synonym. ``(True, None)`` when the best-matching form names two classes (ambiguous)."""
    for table, key in ((by_name(names), str), (by_name(names, name_key), name_key), (_synonym_table(names), name_key)):
        k = key(str(text).strip())
        if k in table:
            return True, table[k]
    return False, None


def close_names(text: str, names: Sequence[str], count: int = 3) -> list[str]:
    """Up to ``count`` class names that look like ``text`` (for a "did you mean" hint)."""
    choices = {k: str(name) for name in names for k in [name_key(name), *synonyms(name)]}
    close = difflib.get_close_matches(name_key(text), list(choices), n=count, cutoff=0.6)
    return list(dict.fromkeys(choices[c] for c in close))
