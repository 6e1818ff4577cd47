"""Tables as text: the one header rule, the one cell rule and the one Markdown writer (tabulate's
``pipe`` format, readable as plain text), the run's accuracy table and a pivot.

Every table advlab prints or writes (``results.md``, the sweep summary, the seed table, the
per-run extras, the patch pivots, the paper comparison) goes through :func:`format_table`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tabulate import tabulate

# Result columns whose generic header would be long.
SHORT = {"zero_grad_share": "zero-grad"}
# Columns the run's table shows, in this order, when some row has them (target and patch_size
# identify a patch row: a patch attack has no eps; CW reports success and distances instead).
RUN_COLUMNS = (
    "model", "attack", "target", "patch_size", "eps", "eps_unit", "correct", "n",
    "top1_acc", "top5_acc", "top1_err", "top5_err",
    "target_rate", "target_top5_rate", "zero_grad_share", "success_rate", "median_l2", "max_l2",
)  # fmt: skip


def is_percent(column: str) -> bool:
    """Columns holding a share in [0, 1], shown as percentages (accuracies, errors, rates, shares)."""
    return column.endswith(("_acc", "_err", "_rate", "_share"))


def header(column: str) -> str:
    """The header of a result column: ``top1_acc`` -> ``top-1 acc %``, ``median_l2`` -> ``median L2``.
    Names with a dot or a space (overrides, ``defense (override)``) stay as they are."""
    if "." in column or " " in column:
        return column
    words = SHORT.get(column) or column.replace("top1", "top-1").replace("top5", "top-5").replace("_l2", " L2")
    words = words.replace("_", " ")
    return f"{words} %" if is_percent(column) else words


def cell(value: Any, percent: bool = False) -> str:
    """One value as text: a share as a percentage with two decimals, other floats short."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if percent:
            return f"{100 * value:.2f}"
        return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def format_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Mapping[str, str] | None = None,
    percent: Iterable[str] | None = None,
) -> str:
    """A Markdown table of ``columns``. Headers default to :func:`header`, percentages to the
    columns :func:`is_percent` names; a cell that is already text is printed as it is."""
    names = {c: header(c) for c in columns} | dict(headers or {})
    shares = set(percent) if percent is not None else {c for c in columns if is_percent(c)}
    body = [[cell(row.get(c), c in shares) for c in columns] for row in rows]
    return tabulate(body, headers=[names[c] for c in columns], tablefmt="pipe", stralign="right", disable_numparse=True)


def accuracy_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """The run summary: per model and attack, accuracy and error per eps, in percent."""
    rows = list(rows)
    return format_table(rows, [c for c in RUN_COLUMNS if any(r.get(c) is not None for r in rows)])


def pivot(
    rows: Iterable[Mapping[str, Any]],
    index: str,
    columns: str,
    value: str,
    order: Callable[[Any], Any] | None = None,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``rows`` with ``index`` down and one column per value of ``columns`` holding ``value``
    (a later row for the same cell replaces an earlier one); returns the rows and the column
    values, in first-seen order or sorted by ``order``."""
    cells: dict[Any, dict[Any, Any]] = {}
    across: list[Any] = []
    for row in rows:
        cells.setdefault(row[index], {})[row[columns]] = row.get(value)
        if row[columns] not in across:
            across.append(row[columns])
    if order is not None:
        across.sort(key=order)
    return [{index: key, **{c: line.get(c) for c in across}} for key, line in cells.items()], across


def size_key(size: Any) -> tuple[float, str]:
    """Patch sizes in numeric order (``"32x32"`` before ``"128x128"``)."""
    text = str(size)
    head = text.split("x")[0]
    return (float(head) if head.replace(".", "", 1).isdigit() else float("inf"), text)
