"""Patch-attack tables and figures: class × patch-size pivots (the paper's Tables VII–XII) and a
grid of the trained patches (its Fig. 3).

The generic result table has one row per patch; the paper's tables put classes down and patch
sizes across, per model and per metric. :func:`patch_tables` builds them from result rows
(``advlab.tables.result_rows``), of one run or of every job of a sweep. From the command line::

    python -m advlab.patch_report outputs/multirun/paper_imagenet_patch/<time>

reads every ``results.json`` below the folder and writes ``patch_tables.md`` and one
``patches_<model>.png`` per model there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from advlab.io import atomic_path, save_figure, write_text
from advlab.tables import format_table, result_rows

METRICS = {
    "target_rate": "top-1: share of held-out images whose top-1 class is the patch's class (%)",
    "target_top5_rate": "top-5: share of held-out images with the patch's class among the top 5 (%)",
}


def save_patch_png(path: str | Path, pixels: torch.Tensor) -> Path:
    """The patch at its own resolution as a PNG (grey for one channel), written atomically."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(pixels.detach().float().cpu().clamp(0, 1), tmp, format="png")
    return Path(path)


def _size_key(size: Any) -> tuple[float, str]:
    text = str(size)
    head = text.split("x")[0]
    return (float(head) if head.replace(".", "", 1).isdigit() else float("inf"), text)


def _group_title(row: Mapping[str, Any]) -> str:
    name = str(row.get("architecture") or row.get("model") or "model")
    label = row.get("model")
    if label and label not in ("undefended", name):
        name = f"{name} ({label})"
    source = row.get("trained_on")
    if row.get("source") not in (None, "trained") and source and source != row.get("architecture"):
        name = f"{name}, patches trained on {source}"
    return name


def patch_tables(rows: Iterable[Mapping[str, Any]], metrics: Mapping[str, str] = METRICS) -> str:
    """Markdown: per model, one table per metric with classes as rows and patch sizes as
    columns. Rows without ``patch_size`` (clean rows, other attacks) are ignored; a later row
    for the same model, class and size replaces an earlier one."""
    groups: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("patch_size") is None or row.get("target") is None:
            continue
        groups.setdefault(_group_title(row), {})[(str(row["target"]), str(row["patch_size"]))] = row
    if not groups:
        return "(no patch results)"
    parts = []
    for title, cells in groups.items():
        classes = list(dict.fromkeys(target for target, _ in cells))
        sizes = sorted({size for _, size in cells}, key=_size_key)
        columns = ["class", *[f"{s} px" for s in sizes]]
        images = sorted({int(r["n_images"]) for r in cells.values() if r.get("n_images") is not None})
        placements = sorted({int(r["placements"]) for r in cells.values() if r.get("placements") is not None})
        for metric, caption in metrics.items():
            table = [
                {"class": target, **{f"{s} px": cells[(target, s)].get(metric) if (target, s) in cells else None for s in sizes}}
                for target in classes
            ]
            parts.append(f"**{title}** — {caption}\n\n{format_table(table, columns, percent=columns[1:])}")
        span = "–".join(str(n) for n in dict.fromkeys([images[0], images[-1]])) if images else "?"
        parts.append(
            f"Held-out images per cell (target class excluded): {span}, × {'/'.join(map(str, placements)) or '?'} random placements each."
        )
    return "\n\n".join(parts)


def plot_patches(entries: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """A grid of patches (the paper's Fig. 3): one row per class, one column per size.
    Each entry is ``{"pixels": C×h×w in [0, 1], "target": str, "patch_size": int | str}``."""
    classes = list(dict.fromkeys(str(e["target"]) for e in entries))
    sizes = sorted({str(e["patch_size"]) for e in entries}, key=_size_key)
    cells = {(str(e["target"]), str(e["patch_size"])): e["pixels"] for e in entries}
    figure = Figure(figsize=(1.9 * max(1, len(sizes)), 2.0 * max(1, len(classes))), layout="constrained")
    grid = figure.subplots(max(1, len(classes)), max(1, len(sizes)), squeeze=False)
    for r, target in enumerate(classes):
        for c, size in enumerate(sizes):
            axes = grid[r][c]
            axes.set_xticks([])
            axes.set_yticks([])
            pixels = cells.get((target, size))
            if pixels is None:
                axes.set_axis_off()
                continue
            picture = pixels.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
            axes.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.set_title(f"{target[:24]}, {size} px", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(path, figure, dpi=120)


def sweep_rows(folder: str | Path) -> list[dict[str, Any]]:
    """Result rows of every completed job below ``folder`` (a run or a ``-m`` sweep)."""
    rows = []
    for results_file in sorted(Path(folder).glob("**/results.json")):
        results = json.loads(results_file.read_text(encoding="utf-8"))
        if results.get("status") == "completed":
            rows.extend(result_rows(results))
    return rows


def write_sweep_report(folder: str | Path) -> dict[str, Path]:
    """``patch_tables.md`` and ``patches_<model>.png`` for every patch result below ``folder``."""
    from advlab.attacks.patch_files import load_patch, slug

    folder = Path(folder)
    rows = [r for r in sweep_rows(folder) if r.get("patch_size") is not None]
    files = {"patch_tables": write_text(folder / "patch_tables.md", patch_tables(rows) + "\n")}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        path = row.get("patch_file")
        if row.get("source") == "trained" and path and Path(path).is_file():
            entry = {"pixels": load_patch(path)["pixels"], "target": row["target"], "patch_size": row["patch_size"]}
            by_model.setdefault(_group_title(row), []).append(entry)
    for title, entries in by_model.items():
        files[f"patches_{slug(title)}"] = plot_patches(entries, folder / f"patches_{slug(title)}.png", title=f"{title}: trained patches")
    return files


def main(argv: Sequence[str] | None = None) -> None:
    folders = list(sys.argv[1:] if argv is None else argv)
    if not folders:
        print("usage: python -m advlab.patch_report RUN_OR_SWEEP_FOLDER [...]", file=sys.stderr)
        sys.exit(2)
    for folder in folders:
        if not Path(folder).is_dir():
            print(f"advlab: error: {folder} is not a folder: give a run or sweep output folder", file=sys.stderr)
            sys.exit(2)
        files = write_sweep_report(folder)
        print(Path(files["patch_tables"]).read_text(encoding="utf-8"))
        for what, path in files.items():
            print(f"{what}: {path}")


if __name__ == "__main__":
    main()
