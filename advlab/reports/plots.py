"""Every figure advlab draws, with matplotlib's object API (no pyplot state, no display needed),
saved atomically through :mod:`advlab.io`: loss curves, metric-vs-x curves (with a band of ± one
standard deviation where the rows carry ``<metric>_std``, as the seed table's do), example grids,
top-5 bar panels and the grid of trained patches."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from advlab.io import atomic_path, save_figure
from advlab.reports.tables import is_percent, size_key

if TYPE_CHECKING:
    import torch


def class_label(class_names: Sequence[str], index: int) -> str:
    """The name of class ``index``, or the index itself when there is no name for it."""
    return str(class_names[index]) if 0 <= index < len(class_names) else str(index)


def plot_loss_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "Training") -> Path:
    """Training and validation loss per epoch (the paper's Figs 7 and 10)."""
    figure = Figure(figsize=(5.5, 3.8), layout="constrained")
    axes = figure.add_subplot()
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_loss", "training loss"), ("val_loss", "validation loss")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            axes.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", label=label)
    axes.set(xlabel="epoch", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    return save_figure(path, figure, dpi=120)


def _series_label(row: Mapping[str, Any], parts: Sequence[str]) -> str:
    named = ("sweep", "model", "attack", "defense", "target")
    return " · ".join(f"{row[p]}" if p in named else f"{p}={row[p]}" for p in parts if row.get(p) is not None)


def plot_vs(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    metrics: Sequence[str],
    parts: Sequence[str],
    path: str | Path,
    title: str | None = None,
) -> Path | None:
    """One panel per metric, ``metric`` against ``x``, one line per distinct value of ``parts``;
    a shaded band of ± ``<metric>_std`` around a line whose rows carry it (means over seeds)."""
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    points = [r for r in rows if r.get(x) is not None and r.get("attack") not in (None, "none")]
    if not metrics or not points:
        return None
    figure = Figure(figsize=(5.2 * len(metrics), 3.9), layout="constrained")
    axes_list = figure.subplots(1, len(metrics), squeeze=False)[0]
    units = sorted({str(r.get("eps_unit")) for r in points if r.get("eps_unit")}) if x == "eps" else []
    for axes, metric in zip(axes_list, metrics):
        series: dict[str, list[tuple[float, float, float]]] = {}
        for row in points:
            if row.get(metric) is not None:
                spread = row.get(f"{metric}_std")
                point = (float(row[x]), float(row[metric]), float("nan") if spread is None else float(spread))
                series.setdefault(_series_label(row, parts), []).append(point)
        for label, values in series.items():
            values.sort()
            xs, ys, spreads = zip(*values)
            (line,) = axes.plot(xs, ys, marker="o", label=label or None)
            if not all(math.isnan(s) for s in spreads):  # NaN (no std: one seed) leaves a gap in the band
                low = [y - s for y, s in zip(ys, spreads)]
                high = [y + s for y, s in zip(ys, spreads)]
                axes.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        xlabel = f"{x} ({'/'.join(units)} units)" if units else x.replace("_", " ")
        axes.set(xlabel=xlabel, ylabel=metric.replace("_", " "), title=metric.replace("_", " "))
        if is_percent(metric):
            axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
        if series:
            axes.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(path, figure, dpi=110)


def plot_accuracy_vs_eps(rows: Sequence[Mapping[str, Any]], path: str | Path, metric: str = "top1_acc") -> Path | None:
    """Accuracy against eps, one line per (model, attack) (the paper's Figs 8 and 11)."""
    parts = ("attack",) if len({r.get("model") for r in rows}) == 1 else ("model", "attack")
    return plot_vs(rows, "eps", [metric], parts, path)


def plot_examples(
    examples: Mapping[str, Any], class_names: Sequence[str], path: str | Path, attack: str | None = None
) -> Path:
    """A grid of example images: rows = eps, columns = images, titled true → predicted
    (the paper's Fig. 9)."""
    names = list(examples.get("attacks", {}))
    attack = attack or (names[0] if names else None)
    steps = examples["attacks"].get(attack, []) if attack else []
    images = examples["images"]
    n_cols = len(images)
    rows = [("clean", images, examples["clean_pred"], examples["clean_conf"])] + [
        (f"eps {step['eps']:g}", step["images"], step["pred"], step["conf"]) for step in steps
    ]
    figure = Figure(figsize=(1.6 * n_cols, 1.8 * len(rows)), layout="constrained")
    grid = figure.subplots(len(rows), n_cols, squeeze=False)

    for r, (label, batch, pred, conf) in enumerate(rows):
        for c in range(n_cols):
            axes = grid[r][c]
            picture = batch[c].detach().float().clamp(0, 1).permute(1, 2, 0).numpy()
            axes.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
            true = int(examples["labels"][c])
            guess = int(pred[c])
            axes.set_title(
                f"{class_label(class_names, true)} → {class_label(class_names, guess)}\n{float(conf[c]):.2f}",
                fontsize=8,
                color="black" if guess == true else "red",
            )
            axes.set_xticks([])
            axes.set_yticks([])
            if c == 0:
                axes.set_ylabel(label, fontsize=9)
    figure.suptitle(f"{attack or 'clean'}: true → predicted (confidence)", fontsize=10)
    return save_figure(path, figure, dpi=110)


def plot_top5(
    panels: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Images with their top-5 classes as horizontal confidence bars (the paper's Figs 1–2, 4–6).

    Each panel is ``{"image": C×H×W tensor in [0, 1], "title": str, "names": [5 class names],
    "confidences": [5 floats], "highlight": class name to colour (true or target class)}``;
    one row per panel, image on the left, bars on the right.
    """
    figure = Figure(figsize=(7.5, 2.3 * max(1, len(panels))), layout="constrained")
    grid = figure.subplots(max(1, len(panels)), 2, squeeze=False, width_ratios=[1, 1.6])
    for row, panel in enumerate(panels):
        image_axes, bar_axes = grid[row]
        picture = panel["image"].detach().float().clamp(0, 1).permute(1, 2, 0).numpy()
        image_axes.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
        image_axes.set_axis_off()
        image_axes.set_title(panel.get("title", ""), fontsize=9)
        names = list(panel["names"])[::-1]
        confidences = [float(c) for c in panel["confidences"]][::-1]
        colours = ["tab:red" if n == panel.get("highlight") else "tab:blue" for n in names]
        bar_axes.barh(range(len(names)), confidences, color=colours)
        bar_axes.set_yticks(range(len(names)), [n[:28] for n in names], fontsize=8)
        bar_axes.set_xlim(0, 1)
        bar_axes.set_xlabel("confidence", fontsize=8)
        for y, value in enumerate(confidences):
            bar_axes.text(min(value + 0.02, 0.85), y, f"{value:.4f}", va="center", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(path, figure, dpi=110)


def plot_patches(entries: Sequence[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """A grid of patches (the paper's Fig. 3): one row per class, one column per size.
    Each entry is ``{"pixels": C×h×w in [0, 1], "target": str, "patch_size": int | str}``."""
    classes = list(dict.fromkeys(str(e["target"]) for e in entries))
    sizes = sorted({str(e["patch_size"]) for e in entries}, key=size_key)
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
            picture = picture.squeeze(-1) if picture.shape[-1] == 1 else picture
            axes.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.set_title(f"{target[:24]}, {size} px", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(path, figure, dpi=120)


def save_patch_png(path: str | Path, pixels: torch.Tensor) -> Path:
    """The patch at its own resolution as a PNG (grey for one channel), written atomically."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(pixels.detach().float().cpu().clamp(0, 1), tmp, format="png")
    return Path(path)
