"""Patch-attack tables and figures: class × patch-size pivots (the paper's Tables VII–XII) and a
grid of the trained patches per model (its Fig. 3).

The generic result table has one row per patch; the paper's tables put classes down and patch
sizes across, per model and per metric. :func:`patch_tables` builds them from result rows of one
run or of every job of a sweep (``advlab-report patch FOLDER``: ``patch_tables.md`` and one
``patches_<model>.png`` per model in the folder).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from advlab.io import write_text
from advlab.reports.jobs import collect
from advlab.reports.plots import plot_patches
from advlab.reports.tables import format_table, pivot, size_key

METRICS = {
    "target_rate": "top-1: share of held-out images whose top-1 class is the patch's class (%)",
    "target_top5_rate": "top-5: share of held-out images with the patch's class among the top 5 (%)",
}


def _group_title(row: Mapping[str, Any]) -> str:
    name = str(row.get("architecture") or row.get("model") or "model")
    label = row.get("model")
    if label and label not in ("undefended", name):
        name = f"{name} ({label})"
    source = row.get("trained_on")
    if row.get("source") not in (None, "trained") and source and source != row.get("architecture"):
        name = f"{name}, patches trained on {source}"
    return name


def _span(values: Iterable[Any]) -> list[int]:
    return sorted({int(v) for v in values if v is not None})


def patch_tables(rows: Iterable[Mapping[str, Any]], metrics: Mapping[str, str] = METRICS) -> str:
    """Markdown: per model, one table per metric with classes as rows and patch sizes as
    columns. Rows without ``patch_size`` (clean rows, other attacks) are ignored; a later row
    for the same model, class and size replaces an earlier one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("patch_size") is not None and row.get("target") is not None:
            cell = {**row, "class": str(row["target"]), "size": str(row["patch_size"])}
            groups.setdefault(_group_title(row), []).append(cell)
    if not groups:
        return "(no patch results)"
    parts = []
    for title, cells in groups.items():
        for metric, caption in metrics.items():
            table, sizes = pivot(cells, "class", "size", metric, order=size_key)
            body = format_table(table, ["class", *sizes], {s: f"{s} px" for s in sizes}, percent=sizes)
            parts.append(f"**{title}** — {caption}\n\n{body}")
        images, placements = _span(r.get("n_images") for r in cells), _span(r.get("placements") for r in cells)
        span = "–".join(str(n) for n in dict.fromkeys([images[0], images[-1]])) if images else "?"
        parts.append(
            f"Held-out images per cell (target class excluded): {span}, "
            f"× {'/'.join(map(str, placements)) or '?'} random placements each."
        )
    return "\n\n".join(parts)


def write_patch_report(folder: str | Path) -> dict[str, Path]:
    """``patch_tables.md`` and ``patches_<model>.png`` for every patch result below ``folder``."""
    from advlab.attacks.patch_files import load_patch, slug

    folder = Path(folder)
    rows = [r for job in collect([folder]) for r in job.rows if r.get("patch_size") is not None]
    files = {"patch_tables": write_text(folder / "patch_tables.md", patch_tables(rows) + "\n")}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        path = row.get("patch_file")
        if row.get("source") == "trained" and path and Path(path).is_file():
            entry = {"pixels": load_patch(path)["pixels"], "target": row["target"], "patch_size": row["patch_size"]}
            by_model.setdefault(_group_title(row), []).append(entry)
    for title, entries in by_model.items():
        path = folder / f"patches_{slug(title)}.png"
        files[f"patches_{slug(title)}"] = plot_patches(entries, path, title=f"{title}: trained patches")
    return files
