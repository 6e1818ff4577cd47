"""Result rows and plain-text tables: one flat row per (model, attack, eps).

The same rows feed ``results.csv``, the table printed at the end of a run, and the sweep
summaries of :mod:`advlab.report`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Columns every table shows first, in this order, when present.
ROW_KEYS = (
    "model",
    "architecture",
    "defense",
    "attack",
    "eps",
    "eps_unit",
    "n",
    "correct",
    "top1_acc",
    "top5_acc",
    "top1_err",
    "top5_err",
)


def result_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten a run's ``results.json`` into rows: a ``clean`` row (eps 0, attack ``none``) per
    model, then one row per attack and eps."""
    rows = []
    for label, entry in results.get("models", {}).items():
        base = {"model": label, "architecture": entry.get("architecture"), "defense": entry.get("defense")}
        evaluation = entry.get("evaluation", {})
        if "clean" in evaluation:
            rows.append({**base, "attack": "none", "eps": 0.0, **evaluation["clean"]})
        for attack, block in evaluation.get("attacks", {}).items():
            settings = {k: v for k, v in block.get("settings", {}).items() if k != "attack"}
            for row in block.get("rows", []):
                rows.append({**base, "attack": attack, "eps": row.get("eps"), **settings, **row})
    return rows


def is_percent(column: str) -> bool:
    """Columns holding a share in [0, 1], shown as percentages (accuracies, errors, rates, shares)."""
    return column.endswith(("_acc", "_err", "_rate", "_share"))


def _cell(value: Any, percent: bool) -> str:
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
    percent: Iterable[str] = (),
) -> str:
    """A Markdown table (readable as plain text). Columns in ``percent`` print as percentages."""
    rows = list(rows)
    headers = dict(headers or {})
    percent = set(percent)
    head = [headers.get(c, c) for c in columns]
    body = [[_cell(row.get(c), c in percent) for c in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in body)])


def accuracy_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """The run summary: per model and attack, accuracy and error per eps, in percent."""
    rows = list(rows)
    # target and patch_size identify a patch row (a patch attack has no eps)
    columns = ["model", "attack", "target", "patch_size", "eps", "eps_unit", "correct", "n", "top1_acc", "top5_acc", "top1_err", "top5_err"]
    optional = [
        c
        for c in ("target_rate", "target_top5_rate", "zero_grad_share", "success_rate", "median_l2", "max_l2")
        if any(r.get(c) is not None for r in rows)
    ]
    columns = [c for c in columns if any(r.get(c) is not None for r in rows)] + optional
    headers = {
        "top1_acc": "top-1 acc %",
        "top5_acc": "top-5 acc %",
        "top1_err": "top-1 err %",
        "top5_err": "top-5 err %",
        "target_rate": "target %",
        "target_top5_rate": "target top-5 %",
        "zero_grad_share": "zero-grad %",
        "success_rate": "success %",
    }
    # Unbounded attacks (CW) report a success rate and distances instead of a budget.
    distances = {"median_l2": "median L2", "max_l2": "max L2"}
    return format_table(rows, columns, {**headers, **distances}, percent={*headers})
