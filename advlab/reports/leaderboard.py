"""The robustness leaderboard (``reports=[leaderboard]``, used by ``experiment=mnist_leaderboard``):
one table of every model under every attack, sorted by AutoAttack accuracy, with published numbers beside it, and one
accuracy-vs-eps figure per defence.

Published rows are labelled as such and carry only the numbers their source reports; they are
never mixed into a measured column without that label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advlab.errors import AdvlabError
from advlab.io import write_csv, write_text
from advlab.reports.jobs import result_rows
from advlab.reports.plots import plot_accuracy_vs_eps
from advlab.reports.tables import format_table, is_percent


def _picked(rows: Sequence[Mapping[str, Any]], label: str, column: Mapping[str, Any]) -> Mapping[str, Any] | None:
    found = [
        r
        for r in rows
        if r["model"] == label
        and r["attack"] == column.get("attack", "none")
        and ("eps" not in column or (r.get("eps") is not None and abs(float(r["eps"]) - float(column["eps"])) < 1e-9))
    ]
    return found[0] if found else None


def leaderboard_report(
    results: Mapping[str, Any],
    out_dir: Path,
    per_image: Any = None,
    columns: Sequence[Mapping[str, Any]] = (),
    sort_by: str | None = None,
    anchors: Sequence[Mapping[str, Any]] = (),
    name: str = "robustness",
) -> dict[str, Path]:
    """``<name>.md``/``.csv`` and ``accuracy_vs_eps_<model>.png``. ``columns``: ``{header, attack,
    eps, metric}`` (``attack: none`` is clean); ``sort_by``: the header to sort on, descending;
    ``anchors``: published rows ``{model, source, <header>: percent, …}``."""
    if not columns:
        raise AdvlabError("leaderboard needs columns: a list of {header, attack, eps, metric}")
    headers = [c["header"] for c in columns]
    if sort_by is not None and sort_by not in headers:
        raise AdvlabError(f"leaderboard sort_by {sort_by!r} is not a column header: use one of {', '.join(headers)}")
    out_dir = Path(out_dir)
    rows = result_rows(results)
    table: list[dict[str, Any]] = []
    counts: dict[str, Any] = {}
    for label, entry in results.get("models", {}).items():
        line: dict[str, Any] = {
            "model": label,
            "defense": entry.get("defense"),
            "source": "measured here",
        }
        for column in columns:
            picked = _picked(rows, label, column)
            value = picked.get(column.get("metric", "top1_acc")) if picked else None
            # shares print as percentages, like the published rows
            line[column["header"]] = (
                100 * value if value is not None and is_percent(column.get("metric", "top1_acc")) else value
            )
            if picked is not None:
                counts.setdefault(column["header"], picked.get("n"))
        table.append(line)
    for anchor in anchors:
        table.append(
            {
                "model": anchor["model"],
                "defense": anchor.get("defense"),
                "source": anchor["source"],
            }
            | {h: anchor.get(h) for h in headers}
        )
    if sort_by is not None:
        table.sort(
            key=lambda r: -1.0 if r.get(sort_by) is None else float(r[sort_by]),
            reverse=True,
        )
    body = format_table(table, ["model", "defense", "source", *headers])
    legend = "\n".join(
        f"- {h}: n = {counts[h]} test images" if h in counts else f"- {h}: not measured" for h in headers
    )
    warnings = results.get("warnings") or []
    flags = "\n".join(f"- **{w['model']}** ({w['check']}): {w['message']}" for w in warnings) or "none"
    markdown = (
        f"{body}\n\nNumbers are accuracy in %, sorted by {sort_by or 'run order'}. Rows whose source is not "
        "'measured here' are published numbers (quoted, not reproduced).\n\n"
        f"Measured columns:\n\n{legend}\n\nWarnings (gradient masking, AutoAttack sanity flags): {flags}\n"
    )
    if results.get("machine"):
        markdown += f"\nMachine: {results['machine']}.\n"
    files = {
        f"{name}_md": write_text(out_dir / f"{name}.md", markdown),
        f"{name}_csv": write_csv(out_dir / f"{name}.csv", table),
    }
    for label in results.get("models", {}):
        curve = [r for r in rows if r["model"] == label and r["attack"] != "none" and r.get("eps") is not None]
        plotted = plot_accuracy_vs_eps(curve, out_dir / f"accuracy_vs_eps_{label}.png") if curve else None
        if plotted:
            files[f"accuracy_vs_eps_{label}"] = plotted
    return files
