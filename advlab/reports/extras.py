"""The per-run extras of ``cfg.reports`` (config group ``advlab/conf/reports/``): tables picked
out of one run's results, written beside ``results.json``.

``comparison``  one attack's eps sweep, one accuracy column per model, side by side (the
                paper's Tables XIII and XIV in one), with its plot.
``robustness``  one row per model, one column per configured (attack, eps, metric), for tables
                such as ``mnist_robustness``'s.
``top5``        the per-image top-k tables and bar figures (the paper's Tables II–III, Figs
                1–2) of what :mod:`advlab.pipeline.per_image` predicted during the evaluation.

Each is a ``_partial_: true`` target called as ``report(results=, out_dir=, per_image=)`` that
returns ``{what: path}``. They only format: the numbers come from ``results`` (and the images
from the evaluation step), so the extras never disagree with ``results.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.reports.jobs import result_rows
from advlab.reports.plots import plot_accuracy_vs_eps, plot_top5
from advlab.reports.tables import format_table, header, is_percent, pivot


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
    results: Mapping[str, Any],
    out_dir: Path,
    per_image: Any = None,
    attack: str = "fgsm",
    metric: str = "top1_acc",
    name: str = "comparison",
) -> dict[str, Path]:
    """``<name>.md``/``.csv``: eps against ``metric`` of every model under ``attack``, and the
    zero-gradient share of each; ``<name>.png``: the curves."""
    rows = [r for r in result_rows(results) if r["attack"] == attack and r["eps"] is not None]
    if not rows:
        raise AdvlabError(f"comparison report: no results for attack {attack!r}; select it with attack=[{attack},…]")
    labels = list(dict.fromkeys(r["model"] for r in rows))
    by_metric, _ = pivot(rows, "eps", "model", metric)
    by_share, _ = pivot(rows, "eps", "model", "zero_grad_share")
    table = []
    for a, b in sorted(zip(by_metric, by_share), key=lambda pair: pair[0]["eps"]):
        line: dict[str, Any] = {"eps": a["eps"]}
        for label in labels:
            line[f"{label}_{metric}"], line[f"{label}_zero_grad_share"] = a.get(label), b.get(label)
        table.append(line)
    columns = ["eps"] + [f"{label}_{key}" for label in labels for key in (metric, "zero_grad_share")]
    headers = {f"{label}_{key}": f"{label} {header(key)}" for label in labels for key in (metric, "zero_grad_share")}
    settings = rows[0]
    title = (
        f"{attack} ({settings.get('eps_unit', 'pixel')} eps, loss {settings.get('loss')}, temperature "
        f"{settings.get('temperature')}) on {rows[0].get('n')} test images"
    )
    percent = {f"{label}_{key}" for label in labels for key in (metric, "zero_grad_share") if is_percent(key)}
    markdown = f"{title}\n\n{format_table(table, columns, headers, percent)}\n{_warnings_text(results)}"
    files = {
        f"{name}_md": write_text(out_dir / f"{name}.md", markdown),
        f"{name}_csv": write_csv(out_dir / f"{name}.csv", table),
    }
    plot = plot_accuracy_vs_eps(rows, out_dir / f"{name}.png", metric=metric)
    if plot is not None:
        files[f"{name}_plot"] = plot
    return files


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
    keys = (
        "norm",
        "steps",
        "step_size",
        "restarts",
        "random_start",
        "loss",
        "temperature",
        "confidence",
        "binary_search_steps",
        "initial_const",
        "lr",
        "eps_unit",
    )
    settings = ", ".join(f"{k} {row[k]}" for k in keys if row.get(k) is not None)
    return f"{settings}; n = {row.get('n')} test images" if settings else f"n = {row.get('n')} test images"


def robustness_report(
    results: Mapping[str, Any],
    out_dir: Path,
    per_image: Any = None,
    columns: Sequence[Mapping[str, Any]] = (),
    name: str = "robustness",
) -> dict[str, Path]:
    """``<name>.md``/``.csv``: one row per model; each column ``{header, attack, eps, metric}``
    (``attack: none`` is the clean evaluation). Under the table: what each column measured and
    on how many images, and the gradient-masking warnings."""
    if not columns:
        raise AdvlabError("robustness report needs columns: a list of {header, attack, eps, metric}")
    rows = result_rows(results)
    table: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
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
    body = format_table(table, ["model", "defense", *headers], {h: h for h in headers}, percent)
    legend = "\n".join(f"- {header}: {notes.get(header, 'not measured')}" for header in headers)
    markdown = f"{body}\n\nColumns (percentages unless an L2 distance):\n\n{legend}\n{_warnings_text(results)}"
    machine = results.get("machine")
    if machine:
        markdown += f"\nMachine: {machine}.\n"
    return {
        f"{name}_md": write_text(out_dir / f"{name}.md", markdown),
        f"{name}_csv": write_csv(out_dir / f"{name}.csv", table),
    }


def _condition(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(file key, words) of one condition: ``clean`` or ``fgsm_eps0.02`` / ``fgsm, eps 0.02 (…)``."""
    first = rows[0]
    if first["eps"] is None:
        return "clean", "clean"
    return (
        f"{first['condition']}_eps{first['eps']:g}",
        f"{first['condition']}, eps {first['eps']:g} ({first['eps_unit']} units)",
    )


def top5_report(
    results: Mapping[str, Any],
    out_dir: Path,
    per_image: Mapping[str, Mapping[tuple[str, float | None], Any]] | None = None,
) -> dict[str, Path]:
    """Per model with per-image predictions in ``results``: ``top5_<model>.md`` (one table per
    condition, the paper's layout), ``top5_<model>.csv`` (one row per image, condition and
    rank) and, when the evaluation step's images are given, one figure per condition (image on
    the left, the top-k confidences as horizontal bars on the right)."""
    written: dict[str, Path] = {}
    for label, entry in (results.get("models") or {}).items():
        rows = entry.get("per_image") or []
        if not rows:
            continue
        conditions: dict[tuple[str, float | None], list[Mapping[str, Any]]] = {}
        for row in rows:
            conditions.setdefault((row["condition"], row["eps"]), []).append(row)
        tables = []
        for condition, found in conditions.items():
            key, words = _condition(found)
            k = max(int(r["rank"]) for r in found)
            # the paper's layout: image and true class once, then the k predictions
            block = [
                {**r, "confidence": f"{r['confidence']:.4f}"}
                | ({} if r["rank"] == 1 else {"image": "", "true_class": ""})
                for r in found
            ]
            names = {"true_class": "true class", "class": "predicted class"}
            table = format_table(block, ["image", "true_class", "rank", "class", "confidence"], names)
            tables.append(f"### {label}: top-{k} classes, {words}\n\n{table}")
            images = (per_image or {}).get(label, {}).get(condition)
            if images is not None:
                panels = [
                    {
                        "image": images[n],
                        "title": f"image {top[0]['image']}: {top[0]['true_class']}",
                        "names": [r["class"] for r in top],
                        "confidences": [r["confidence"] for r in top],
                        "highlight": top[0]["true_class"],
                    }
                    for n, top in enumerate(found[i : i + k] for i in range(0, len(found), k))
                ]
                title = f"{entry.get('architecture') or label}: {words}"
                written[f"top5_{key}_{label}"] = plot_top5(panels, out_dir / f"top5_{key}_{label}.png", title=title)
        written[f"top5_table_{label}"] = write_text(out_dir / f"top5_{label}.md", "\n\n".join(tables) + "\n")
        written[f"top5_csv_{label}"] = write_csv(out_dir / f"top5_{label}.csv", rows)
    return written
