"""The per-image top-5 step and its report (Tables II–III, Figs 1–2) and the paper's ImageNet
experiment run end to end on a synthetic folder with randomly initialised weights."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from helpers import make_folder, module
from hydra import compose, initialize_config_dir
from matplotlib.image import imread
from torch import nn

from advlab.config import CONF_DIR
from advlab.errors import AdvlabError
from advlab.models import NormalizedClassifier
from advlab.pipeline.per_image import predict_per_image
from advlab.reports.extras import top5_report
from advlab.run import run


def experiment_cfg(tmp_path: Path, data_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "experiment=paper_imagenet_fgsm",
                f"data.data_dir={data_dir}",
                "data.image_size=64",
                "data.num_workers=0",
                "trainer.accelerator=cpu",
                "+trainer.enable_progress_bar=false",
                "logger=none",
                f"paths.output_dir={tmp_path / 'run'}",
                *overrides,
            ],
        )


class TinyNet(nn.Module):
    """A cheap 1000-way classifier, so the report test needs no large network."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(128, 1000)

    def forward(self, x):
        return self.head(self.features(x))


def top5(cfg, model, dm):
    """The evaluation step, then the report on its rows and images, as advlab.run does."""
    found = predict_per_image(cfg, {"undefended": model}, dm, {"undefended": "tiny"})
    results = {"models": {"undefended": {"architecture": "tiny", "per_image": found["undefended"].rows}}}
    images = {label: output.images for label, output in found.items()}
    return top5_report(results=results, out_dir=Path(cfg.paths.output_dir), per_image=images)


def test_top5_report_writes_tables_and_figures(tmp_path):
    data_dir = make_folder(tmp_path / "data", [5, 1, 3, 0, 4, 2], per_class=5, size=64, label_list=True)
    cfg = experiment_cfg(tmp_path, data_dir)
    dm = module(data_dir)
    torch.manual_seed(0)
    model = NormalizedClassifier(TinyNet(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).eval()
    files = top5(cfg, model, dm)

    assert set(files) == {
        "top5_clean_undefended",
        "top5_fgsm_eps0.02_undefended",
        "top5_table_undefended",
        "top5_csv_undefended",
    }
    with open(files["top5_csv_undefended"]) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 2 * 5  # images × (clean, attacked) × top-5
    clean = [r for r in rows if r["condition"] == "clean"]
    attacked = [r for r in rows if r["condition"] == "fgsm"]
    assert {r["true_class"] for r in clean} == {"label 1", "label 3", "label 4", "label 5"}  # from label_list.json
    assert [r["image"] for r in clean[::5]] == ["7", "16", "20", "27"]
    assert {r["eps"] for r in attacked} == {"0.02"} and {r["eps_unit"] for r in attacked} == {"normalized"}
    for block in (clean[i : i + 5] for i in range(0, len(clean), 5)):
        confidences = [float(r["confidence"]) for r in block]
        assert confidences == sorted(confidences, reverse=True) and 0 < confidences[0] <= 1
    # FGSM pushes each image's true class down
    assert all(float(a["true_confidence"]) < float(c["true_confidence"]) for a, c in zip(attacked[::5], clean[::5]))
    table = Path(files["top5_table_undefended"]).read_text()
    assert "top-5 classes, clean" in table and "fgsm, eps 0.02 (normalized units)" in table
    assert re.search(r"\|\s+7 \|\s+label 1 \|\s+1 \|", table)  # image 7: true class, then rank 1 …
    for key in ("top5_clean_undefended", "top5_fgsm_eps0.02_undefended"):
        picture = imread(files[key])
        assert picture.shape[0] > 300 and picture.std() > 0

    with pytest.raises(AdvlabError, match="index 30 is out of range: the test set has 30 images"):
        top5(experiment_cfg(tmp_path, data_dir, "evaluation.per_image.indices=[30]"), model, dm)
    with pytest.raises(AdvlabError, match="evaluation.per_image.attack='pgd' is not a selected attack"):
        top5(experiment_cfg(tmp_path, data_dir, "evaluation.per_image.attack=pgd"), model, dm)


def check_paper_sweep(results: dict) -> dict:
    """What every run of the paper experiment must report: no training, the FGSM sweep in
    normalized units without clamp (budget eps·std, largest std 0.229), Tables I and IV–VI rows."""
    entry = results["models"]["undefended"]
    assert (
        entry["architecture"] == "alexnet"
        and entry["training"]["trained"] is False
        and entry["training"]["weights"] == "random"
    )
    assert entry["evaluation"]["clean"]["n"] == 8
    block = entry["evaluation"]["attacks"]["fgsm"]
    assert block["settings"]["eps_unit"] == "normalized" and block["settings"]["clamp"] is False
    assert [r["eps"] for r in block["rows"]] == pytest.approx([0.01 * k for k in range(1, 11)])
    for row in block["rows"]:
        assert row["n"] == 8 and row["max_linf"] == pytest.approx(row["eps"] * 0.229, rel=1e-5)
        assert 0 <= row["top5_err"] <= row["top1_err"] <= 1
    return entry


PAPER_RUN = ("model=alexnet", "model.weights=null", "evaluation.per_image.indices=[0,5]")


def test_paper_imagenet_experiment_end_to_end(tmp_path):
    """The whole pipeline on 4 classes × 2 images with a random AlexNet."""
    data_dir = make_folder(tmp_path / "data", [0, 1, 2, 3], per_class=2, size=64)
    results = run(experiment_cfg(tmp_path, data_dir, *PAPER_RUN))
    entry = check_paper_sweep(results)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["models"]["undefended"]["evaluation"] == json.loads(json.dumps(entry["evaluation"]))
    assert {"top5_table_undefended", "top5_clean_undefended", "top5_fgsm_eps0.02_undefended"} <= set(results["files"])
    # the step's predictions are part of the record: 2 images × (clean, fgsm) × top-5
    assert len(saved["models"]["undefended"]["per_image"]) == 20


def test_paper_experiment_in_bf16_autocast_and_channels_last(tmp_path):
    """The GPU knobs run on the CPU too; the attack stays fp32, so its budget is exact."""
    data_dir = make_folder(tmp_path / "data", [0, 1, 2, 3], per_class=2, size=64)
    results = run(
        experiment_cfg(tmp_path, data_dir, *PAPER_RUN, "trainer.precision=bf16-mixed", "evaluation.channels_last=true")
    )
    check_paper_sweep(results)
