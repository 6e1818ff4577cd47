"""Summary tables picked out of a run's results, for ``cfg.reports``.

``comparison_report``  one attack's eps sweep, one accuracy column per model, side by side
                       (the paper's Tables XIII and XIV in one), with its plot.
``robustness_report``  one row per model, one column per configured (attack, eps, metric), for
                       tables such as ``mnist_robustness``'s.

Both are ``_partial_: true`` targets called as ``report(cfg=, models=, results=, datamodule=)``
and return ``{what: path}``. The numbers come from ``results`` only (:func:`result_rows`), so the
summaries never disagree with ``results.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.plots import plot_accuracy_vs_eps
from advlab.tables import format_table, is_percent, result_rows



def _same_eps(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) < 1e-9


def _warnings_text(results: Mapping[str, Any]) -> str:
    warnings = results.get("warnings") or []
    if not warnings:
        return "\nNo gradient-masking warnings.\n"
    lines = "\n".join(f"- **{w['model']}**: {w['message']}" for w in warnings)
    return f"\nGradient-masking warnings (advlab/diagnostics.py):\n\n{lines}\n"


def comparison_report(
    cfg: Any,
    models: Any,
    results: Mapping[str, Any],
    datamodule: Any = None,
    attack: str = "fgsm",
    metric: str = "top1_acc",
    name: str = "comparison",
) -> dict[str, Path]:
    """``<name>.md``/``.csv``: eps against ``metric`` of every model under ``attack``, and the
    zero-gradient share of each; ``<name>.png``: the curves."""
    out_dir = Path(cfg.paths.output_dir)
    rows = [r for r in result_rows(results) if r["attack"] == attack]
    if not rows:
        raise AdvlabError(f"comparison report: no results for attack {attack!r}; select it with attack=[{attack},…]")
    labels = list(dict.fromkeys(r["model"] for r in rows))
    table = []
    for eps in sorted({r["eps"] for r in rows if r["eps"] is not None}):
        line: dict[str, Any] = {"eps": eps}
        for label in labels:
            match = next((r for r in rows if r["model"] == label and _same_eps(r["eps"], eps)), {})
            line[f"{label}_{metric}"] = match.get(metric)
            line[f"{label}_zero_grad_share"] = match.get("zero_grad_share")
        table.append(line)
    columns = ["eps"] + [f"{label}_{key}" for label in labels for key in (metric, "zero_grad_share")]
    headers = {f"{label}_{metric}": f"{label} {metric.replace('_', ' ')} %" for label in labels}
    headers.update({f"{label}_zero_grad_share": f"{label} zero-grad %" for label in labels})
    settings = rows[0]
    title = (
        f"{attack} ({settings.get('eps_unit', 'pixel')} eps, loss {settings.get('loss')}, temperature "
        f"{settings.get('temperature')}) on {rows[0].get('n')} test images"
    )
    markdown = f"{title}\n\n{format_table(table, columns, headers, percent=set(headers))}\n{_warnings_text(results)}"
    return {
        f"{name}_md": write_text(out_dir / f"{name}.md", markdown),
        f"{name}_csv": write_csv(out_dir / f"{name}.csv", table),
        f"{name}_plot": plot_accuracy_vs_eps(rows, out_dir / f"{name}.png", metric=metric),
    }


def _pick(rows: Sequence[Mapping[str, Any]], label: str, column: Mapping[str, Any]) -> Mapping[str, Any] | None:
    attack = column.get("attack", "none")
    candidates = [r for r in rows if r["model"] == label and r["attack"] == attack]
    if "eps" in column:
        candidates = [r for r in candidates if _same_eps(r["eps"], column["eps"])]
    if len(candidates) > 1:
        raise AdvlabError(
            f"robustness report: column {column.get('header')!r} matches {len(candidates)} rows of {attack!r}; "
            "give its eps"
        )
    return candidates[0] if candidates else None


def _describe(row: Mapping[str, Any]) -> str:
    """What a column measured: the attack's distinguishing settings and the images it used."""
    keys = ("norm", "steps", "step_size", "restarts", "random_start", "loss", "temperature", "confidence",
            "binary_search_steps", "initial_const", "lr", "eps_unit")
    settings = ", ".join(f"{k} {row[k]}" for k in keys if row.get(k) is not None)
    return f"{settings}; n = {row.get('n')} test images" if settings else f"n = {row.get('n')} test images"


def robustness_report(
    cfg: Any,
    models: Any,
    results: Mapping[str, Any],
    datamodule: Any = None,
    columns: Sequence[Mapping[str, Any]] = (),
    name: str = "robustness",
) -> dict[str, Path]:
    """``<name>.md``/``.csv``: one row per model; each column ``{header, attack, eps, metric}``
    (``attack: none`` is the clean evaluation). Under the table: what each column measured and
    on how many images, and the gradient-masking warnings."""
    if not columns:
        raise AdvlabError("robustness report needs columns: a list of {header, attack, eps, metric}")
    out_dir = Path(cfg.paths.output_dir)
    rows = result_rows(results)
    table, notes = [], {}
    for label, entry in results.get("models", {}).items():
        line: dict[str, Any] = {"model": label, "defense": entry.get("defense")}
        temperature = (entry.get("training") or {}).get("temperature")
        if temperature is not None:
            line["defense"] = f"{entry.get('defense')} (T = {temperature:g})"
        for column in columns:
            header = column["header"]
            picked = _pick(rows, label, column)
            line[header] = picked.get(column.get("metric", "top1_acc")) if picked else None
            if picked is not None:
                notes.setdefault(header, _describe(picked))
        table.append(line)
    headers = [c["header"] for c in columns]
    percent = {c["header"] for c in columns if is_percent(c.get("metric", "top1_acc"))}
    body = format_table(table, ["model", "defense", *headers], percent=percent)
    legend = "\n".join(f"- {header}: {notes.get(header, 'not measured')}" for header in headers)
    markdown = f"{body}\n\nColumns (percentages unless an L2 distance):\n\n{legend}\n{_warnings_text(results)}"
    machine = results.get("machine")
    if machine:
        markdown += f"\nMachine: {machine}.\n"
    return {
        f"{name}_md": write_text(out_dir / f"{name}.md", markdown),
        f"{name}_csv": write_csv(out_dir / f"{name}.csv", table),
    }
