"""A Hydra-composed run end to end on a few batches, and reuse of its trained weights."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import torch

from advlab.errors import AdvlabError
from advlab.run import run


def test_composed_run_end_to_end(make_cfg):
    cfg = make_cfg("attack.fgsm.eps=[0.0,0.1,0.3]")
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["status"] == "completed"
    entry = on_disk["models"]["undefended"]
    assert entry["architecture"] == "mnist_cnn" and entry["training"]["trained"] is True
    clean = entry["evaluation"]["clean"]
    rows = entry["evaluation"]["attacks"]["fgsm"]["rows"]
    assert clean["n"] == 300 and [r["eps"] for r in rows] == [0.0, 0.1, 0.3]
    assert rows[0]["top1_acc"] == pytest.approx(clean["top1_acc"])  # eps 0 = clean
    assert rows[-1]["top1_acc"] < rows[0]["top1_acc"]
    assert all(r["max_linf"] <= r["eps"] + 1e-6 for r in rows)
    assert rows[1]["top1_err"] == pytest.approx(1 - rows[1]["top1_acc"])
    assert rows[1]["correct"] == round(rows[1]["top1_acc"] * 300)
    for name in ("results.csv", "results.md", "accuracy_vs_eps.png", "examples_undefended.png", "undefended.pt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "undefended_loss.csv").read_text().startswith("epoch,train_loss,val_loss")
    assert results["models"]["undefended"]["evaluation"]["clean"] == clean
    # the group can read the results (atomic writes used to leave them 0600), checkpoints too
    from advlab.io import current_umask

    written = [out / n for n in ("results.json", "results.csv", "accuracy_vs_eps.png", "undefended.pt")]
    written += list((out / "checkpoints").rglob("*.ckpt"))
    assert len(written) >= 5 and {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o666 & ~current_umask()}


def test_reusing_a_checkpoint_skips_training_and_gives_the_same_numbers(make_cfg, tmp_path):
    first = run(make_cfg("attack.fgsm.eps=[0.1]"))
    weights = first["models"]["undefended"]["training"]["checkpoint"]
    second_cfg = make_cfg("attack.fgsm.eps=[0.1]", f"model.checkpoint={weights}", f"paths.output_dir={tmp_path / 'again'}")
    second = run(second_cfg)
    a, b = (r["models"]["undefended"] for r in (first, second))
    assert b["training"] == {"trained": False, "checkpoint": weights}
    assert a["evaluation"]["clean"] == b["evaluation"]["clean"]
    assert a["evaluation"]["attacks"]["fgsm"]["rows"][0]["top1_acc"] == b["evaluation"]["attacks"]["fgsm"]["rows"][0]["top1_acc"]
    assert not (tmp_path / "again" / "undefended.pt").exists()


def test_bad_eps_fails_before_training(make_cfg):
    cfg = make_cfg("attack.fgsm.eps=[0.1,-0.5]")
    with pytest.raises(AdvlabError, match="eps must be >= 0, got -0.5"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_gradients_are_real_inside_the_lightning_test_loop(make_cfg):
    """The evaluation runs under Lightning's no_grad: a masked gradient would show as a zero
    share of 1 and no accuracy change. Both must be clearly absent."""
    results = run(make_cfg("attack.fgsm.eps=[0.2]"))
    row = results["models"]["undefended"]["evaluation"]["attacks"]["fgsm"]["rows"][0]
    assert row["zero_grad_share"] == 0.0
    assert row["top1_acc"] < results["models"]["undefended"]["evaluation"]["clean"]["top1_acc"] - 0.2
    assert torch.is_grad_enabled()


def test_max_samples_limits_an_attack_to_the_first_images(make_cfg):
    results = run(make_cfg("attack.fgsm.eps=[0.1]", "attack.fgsm.max_samples=120", "logger=none"))
    evaluation = results["models"]["undefended"]["evaluation"]
    assert evaluation["clean"]["n"] == 300  # the clean pass still sees the whole test subset
    [row] = evaluation["attacks"]["fgsm"]["rows"]
    assert row["n"] == 120 and evaluation["attacks"]["fgsm"]["settings"]["max_samples"] == 120


# --- one folder per job, never mixed ------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``folder`` with its bytes, mode and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mode, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    } | {".": (b"", folder.stat().st_mode, folder.stat().st_mtime_ns)}


def _old_job(folder: Path) -> None:
    """A folder as a finished earlier job leaves it (tiny stand-ins for its files)."""
    (folder / "checkpoints" / "undefended").mkdir(parents=True)
    (folder / "checkpoints" / "undefended" / "last.ckpt").write_bytes(b"old")
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("- old=1\n")
    listed = {"comparison_md": str(folder / "comparison.md"), "elsewhere": str(folder.parent / "keep.md")}
    (folder / "results.json").write_text(json.dumps({"status": "completed", "old": True, "files": listed}))
    (folder / "comparison.md").write_text("old")  # a report's file, known from the list
    for name in ("results.md", "results.csv", "accuracy_vs_eps.png", "undefended.pt", "cli.log"):
        (folder / name).write_text("old")
    (folder / "notes.txt").write_text("the user's own file")


def test_job_folders_differ_below_the_second():
    """Every composition gets its own run and sweep folder (Hydra's default was one per second);
    within one composed config the name is stable."""
    from hydra import compose, initialize_config_dir

    from advlab.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfgs = [compose("config", return_hydra_config=True) for _ in range(3)]
    runs = [str(cfg.hydra.run.dir) for cfg in cfgs]
    assert len(set(runs)) == 3 and len({str(cfg.hydra.sweep.dir) for cfg in cfgs}) == 3
    assert str(cfgs[0].hydra.run.dir) == runs[0]  # cached: Hydra and the job read the same name
    stamp = Path(runs[0]).name
    assert len(stamp.split("-")[-1]) == 6 and "." in stamp  # microseconds, then 6 hex digits


def test_a_folder_with_results_is_refused_and_left_untouched(make_cfg, tmp_path):
    from advlab.errors import FolderInUse

    folder = tmp_path / "run"
    _old_job(folder)
    before = _snapshot(folder)
    with pytest.raises(FolderInUse, match=r"already holds a job's results \(results.json says completed\).*overwrite=true"):
        run(make_cfg())
    assert _snapshot(folder) == before


def test_overwrite_removes_the_old_results_first(make_cfg, tmp_path):
    """With overwrite=true nothing of the old job survives beside the new one, even when the new
    job fails: its results.json says failed and no old table sits next to it."""
    folder = tmp_path / "run"
    _old_job(folder)
    with pytest.raises(AdvlabError, match="seed must be an integer"):
        run(make_cfg("overwrite=true", "seed=abc"))
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "results.json"]
    record = json.loads((folder / "results.json").read_text())
    assert record["status"] == "failed" and "seed must be an integer" in record["error"]


def test_a_job_claims_its_folder_first_and_one_of_two_claims_wins(tmp_path):
    from advlab import job_folder
    from advlab.errors import FolderInUse

    folder = job_folder.claim(tmp_path / "job")
    assert json.loads((folder / "results.json").read_text())["status"] == "running"
    job_folder._claimed.clear()  # as seen from a second process
    with pytest.raises(FolderInUse, match="already holds a job's results \\(results.json says running\\)"):
        job_folder.claim(folder)
    # the exclusive creation itself: a second create of the same file fails, the first stays
    from advlab.io import create_json

    with pytest.raises(FileExistsError):
        create_json(folder / "results.json", {"status": "other"})
    assert json.loads((folder / "results.json").read_text())["status"] == "running"
    assert [p.name for p in folder.iterdir()] == ["results.json"]  # no temporary file left


def test_unwritable_output_folder_is_one_line(make_cfg):
    with pytest.raises(AdvlabError, match=r"^cannot write to the output folder /proc/advlab-test/run .*set paths.log_dir"):
        run(make_cfg("paths.output_dir=/proc/advlab-test/run"))


# --- checks before training ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["trainer.max_epochs=0"], r"trainer.max_epochs must be >= 1 \(or -1 for no limit\), got 0"),
        (["defense=distillation", "defense.student.max_epochs=0"], "defense.student.max_epochs must be >= 1"),
        (["evaluation.target=10", "attack.fgsm.targeted=true"], "evaluation.target=10 is out of range: the data has 10 classes"),
        (
            ["reports=top5", "evaluation.per_image.indices=[7,300]"],
            r"report image index 300 is out of range: the test set has 300 images",
        ),
        (["+model.num_classes=5"], "undefended model \\(mnist_cnn\\) gives 5 outputs per image but the data has 10 classes: set model.num_classes=10"),
        (["model=torchvision", "model.name=resnet18", "model.weights=null"], "undefended model \\(resnet18\\) gives 1000 outputs per image but the data has 10"),
    ],
)
def test_nonsense_settings_fail_before_any_training(make_cfg, overrides, message):
    cfg = make_cfg(*overrides, "logger=none")
    with pytest.raises(AdvlabError, match=message):
        run(cfg)
    out = Path(cfg.paths.output_dir)
    assert not (out / "checkpoints").exists() and not (out / "undefended.pt").exists()
    assert json.loads((out / "results.json").read_text())["status"] == "failed"


def test_a_model_that_cannot_take_the_images_fails_before_training(make_cfg, tmp_path):
    from helpers import make_folder

    folder = make_folder(tmp_path / "images", [0, 1], per_class=1, size=32)
    data = ["data=imagenet_folder", f"data.data_dir={folder}", "data.preprocess=to_tensor", "data.image_size=32", "data.num_workers=0"]
    with pytest.raises(AdvlabError, match=r"undefended model \(mnist_cnn\) does not accept the data's images \(3×32×32\): .*channels"):
        run(make_cfg(*data, "+model.num_classes=1000", "trainer.accelerator=cpu", "logger=none", quick=False))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_trainer_without_a_gpu_says_so(make_cfg):
    with pytest.raises(AdvlabError, match="trainer.accelerator=gpu but this machine has no usable GPU.*use trainer=cpu"):
        run(make_cfg("trainer=gpu", "trainer.accelerator=gpu"))  # QUICK sets cpu


def test_online_wandb_without_a_key_fails_at_once(make_cfg, monkeypatch, tmp_path):
    import time

    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "netrc").write_text("")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    started = time.monotonic()
    with pytest.raises(AdvlabError, match=r"wandb is set to log online but no API key .*logger.wandb.offline=true"):
        run(make_cfg("logger=wandb", "logger.wandb.offline=false"))
    assert time.monotonic() - started < 20
    assert not (tmp_path / "run" / "wandb").exists()


def test_the_table_is_printed_before_the_figures_are_drawn(make_cfg, monkeypatch, capsys):
    import advlab.run

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(advlab.run, "plot_accuracy_vs_eps", broken)
    cfg = make_cfg("attack.fgsm.eps=[0.1]", "logger=none")
    with pytest.raises(RuntimeError, match="no display"):
        run(cfg)
    assert re.search(r"\| undefended \|\s+fgsm \|\s+0.1 \|", capsys.readouterr().out)
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "results.json").read_text())["status"] == "failed"
    assert (out / "results.csv").is_file()  # the numbers are on disk too


# --- what the files look like -------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    from advlab.io import save_torch, write_json

    old = os.umask(umask)
    try:
        paths = [write_json(tmp_path / "a.json", {"x": 1}), save_torch(tmp_path / "w.pt", {"w": torch.zeros(1)})]
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o666 & ~umask] * 2
