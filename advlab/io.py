"""Atomic file writes: an interrupted job leaves either the complete file or the old one.

Each writer fills a temporary file in the destination folder and renames it over the
target (``os.replace`` is atomic on POSIX and Windows when both are on one file system). The
file gets the permissions a plain ``open()`` would give it (0666 less the umask), not the 0600 of
``mkstemp``: results in a shared group folder stay readable by the group.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` can only
    be read by setting it, which races with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """A fresh temporary file in ``target``'s folder with the umask's permissions, removed at the
    end if still there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    with _temporary_beside(target) as tmp:
        yield tmp
        os.replace(tmp, target)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _jsonable(value: Any) -> Any:
    """Plain JSON values; NaN and infinities become null so every JSON reader accepts the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # 0-d tensors and numpy scalars
        return _jsonable(value.item())
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(_jsonable(data), indent=2) + "\n")


def create_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``path`` only if it does not exist yet: of several processes creating the same file
    at once exactly one succeeds, the others get ``FileExistsError``. The complete file is
    hard-linked into place (``os.link`` never replaces a target), so nobody sees it half written."""
    target = Path(path)
    text = json.dumps(_jsonable(data), indent=2) + "\n"
    with _temporary_beside(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, target)
            return target
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive create, then fill
            pass
    with open(target, "x", encoding="utf-8") as out:
        out.write(text)
    return target


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write dict rows; the header is the union of keys in first-seen order."""
    rows = list(rows)
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_jsonable(row) for row in rows)
    return write_text(path, buffer.getvalue())


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_figure(path: str | os.PathLike, figure: Any, **kwargs: Any) -> Path:
    """Save a matplotlib ``Figure`` atomically (format from the suffix, PNG by default)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format=target.suffix.lstrip(".") or "png", **kwargs)
    return target
