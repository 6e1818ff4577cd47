"""Experiment tracking: CSV, TensorBoard and wandb loggers in a real sweep (one offline wandb run
per job, nothing sent anywhere), what each logger holds, and the progress display."""

from __future__ import annotations

import csv
import http.server
import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar

from advlab.errors import AdvlabError
from advlab.lit.progress import LineProgress, StageRichProgressBar
from advlab.pipeline.trainers import build_trainer
from advlab.tracking import JobTracker, result_series, summary_metrics, wandb_mode
from conftest import QUICK

# --- a sweep with every logger, watched for network access --------------------------------------

# Runs `python -m advlab …` with an audit hook that records every name lookup and connection to
# anything but this machine; wandb-core (a Go process) is watched through the proxy variables and
# WANDB_BASE_URL, which point at a local server that counts the requests it gets.
PROBE = r"""
import json, os, runpy, sys
seen = []
LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None, b"localhost"}
def hook(event, args):
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        seen.append(f"lookup {args[0]!r}")
    elif event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        seen.append(f"connect {args[1]!r}")
sys.addaudithook(hook)
import atexit
atexit.register(lambda: open(os.environ["ADVLAB_PROBE_LOG"], "w").write(json.dumps(seen)))
sys.argv = ["advlab", *sys.argv[1:]]
runpy.run_module("advlab", run_name="__main__", alter_sys=True)
"""


class _Sink(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def _refuse(self) -> None:
        _Sink.requests.append(self.requestline)
        self.send_response(503)
        self.end_headers()

    do_GET = do_POST = do_PUT = do_CONNECT = do_HEAD = _refuse

    def log_message(self, *args) -> None:
        pass


def read_wandb_records(path: Path) -> list:
    """The records of an offline ``run-*.wandb`` file (wandb's LevelDB-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, chunks, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the rest of a block too short for a record header is padding
            position += left
            continue
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            position += left - 7
        elif kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
    return [wandb_internal_pb2.Record.FromString(c) for c in chunks]


def history(records: list) -> dict[str, list]:
    values: dict[str, list] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                values.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
    return values


def only(records: list, kind: str):
    [record] = [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]
    return record


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mnist_dir):
    """Three jobs with logger=[csv,tensorboard,wandb], WANDB_MODE unset (offline must be the
    default): two complete, one fails on bad input."""
    root = tmp_path_factory.mktemp("tracked")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = f"http://127.0.0.1:{server.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")}
    env.update(
        ADVLAB_ROOT=str(root), ADVLAB_DATA_DIR=str(mnist_dir), HYDRA_FULL_ERROR="0", ADVLAB_PROBE_LOG=str(root / "probe.json"),
        WANDB_BASE_URL=sink, WANDB_CONFIG_DIR=str(root / "wandb-config"), WANDB_CACHE_DIR=str(root / "wandb-cache"), WANDB_DATA_DIR=str(root / "wandb-data"),
        HTTP_PROXY=sink, HTTPS_PROXY=sink, ALL_PROXY=sink, http_proxy=sink, https_proxy=sink, all_proxy=sink,
    )
    quick = [o for o in QUICK if "enable_progress_bar" not in o]  # the default, `auto`, must fall back to lines
    small = ["data.train_subset=256", "data.val_subset=64", "data.test_subset=100", "data.eval_batch_size=50", "evaluation.example_count=2"]
    try:
        result = subprocess.run(
            [sys.executable, "-c", PROBE, "-m", *quick, *small, "attack.fgsm.eps=[0.1,0.3],[0.2],[-1]", "logger=[csv,tensorboard,wandb]"],
            cwd=root, env=env, capture_output=True, text=True, timeout=600,
        )
    finally:
        server.shutdown()
    assert result.returncode == 2, result.stderr[-3000:]
    [folder] = (root / "outputs" / "multirun" / "advlab").iterdir()
    return {"folder": folder, "result": result, "requests": list(_Sink.requests), "seen": json.loads((root / "probe.json").read_text())}


def test_nothing_is_sent_anywhere(sweep):
    assert sweep["requests"] == []
    assert sweep["seen"] == []
    assert os.environ.get("WANDB_ERROR_REPORTING") is None  # the test process itself is untouched


def test_each_job_is_one_offline_wandb_run_in_its_folder(sweep):
    folder = sweep["folder"]
    runs = {}
    for job in ("0", "1", "2"):
        [run_dir] = (folder / job / "wandb").glob("offline-run-*")
        [log_file] = run_dir.glob("run-*.wandb")
        runs[job] = read_wandb_records(log_file)
        assert f"wandb sync {run_dir}" in sweep["result"].stderr  # how to upload it later
    ids = {job: only(records, "run").run_id for job, records in runs.items()}
    assert len(set(ids.values())) == 3  # a fresh run per job
    for job, records in runs.items():
        run = only(records, "run")
        assert run.run_group == f"advlab_{folder.name}"  # one group per sweep: its folder's name
        assert run.display_name == f"advlab/{job}"
        assert list(run.tags) == ["advlab", "mnist_cnn", "defense:none"]
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        assert config["data"]["train_subset"] == 256 and config["paths"]["output_dir"] == str(folder / job)
        assert f"attack.fgsm.eps={['[0.1,0.3]', '[0.2]', '[-1]'][int(job)]}" in config["overrides"]
        assert only(records, "exit").exit_code == (1 if job == "2" else 0)

    results = json.loads((folder / "0" / "results.json").read_text())
    entry = results["models"]["undefended"]
    logged = history(runs["0"])
    # the training stage, prefixed with its name, once per epoch
    assert logged["undefended/train/loss"] == pytest.approx([entry["training"]["history"][0]["train_loss"]], rel=1e-5)
    assert len(logged["undefended/val/acc"]) == 1
    # the results: one point per eps, against eps
    rows = entry["evaluation"]["attacks"]["fgsm"]["rows"]
    assert logged["undefended/fgsm/eps"] == [0.1, 0.3]
    assert logged["undefended/fgsm/top1_acc"] == pytest.approx([r["top1_acc"] for r in rows])
    assert any(key.startswith("figures/accuracy_plot") for key in logged) and any(key.startswith("results/table") for key in logged)
    summaries = {item.key: json.loads(item.value_json) for r in runs["0"] if r.WhichOneof("record_type") == "summary" for item in r.summary.update}
    assert summaries["undefended/clean/top1_acc"] == pytest.approx(entry["evaluation"]["clean"]["top1_acc"])
    assert summaries["undefended/fgsm/top1_acc@eps=0.3"] == pytest.approx(rows[1]["top1_acc"])
    failed = {item.key: json.loads(item.value_json) for r in runs["2"] if r.WhichOneof("record_type") == "summary" for item in r.summary.update}
    assert failed["error"].startswith("AdvlabError: eps must be >= 0, got -1")


def test_tensorboard_event_files_hold_the_logged_scalars(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = sweep["folder"] / "0"
    results = json.loads((job / "results.json").read_text())
    entry = results["models"]["undefended"]

    training = EventAccumulator(str(job / "tensorboard" / "undefended"))
    training.Reload()
    [loss] = training.Scalars("train/loss")
    assert loss.value == pytest.approx(entry["training"]["history"][0]["train_loss"], rel=1e-5)
    assert {"val/loss", "val/acc", "train/acc"} <= set(training.Tags()["scalars"])

    evaluation = EventAccumulator(str(job / "tensorboard" / "results"), size_guidance={"images": 0, "tensors": 0})
    evaluation.Reload()
    rows = entry["evaluation"]["attacks"]["fgsm"]["rows"]
    assert [(e.step, e.value) for e in evaluation.Scalars("undefended/fgsm/eps")] == [(0, pytest.approx(0.1)), (1, pytest.approx(0.3))]
    assert [e.value for e in evaluation.Scalars("undefended/fgsm/top1_acc")] == pytest.approx([r["top1_acc"] for r in rows], abs=1e-6)
    assert [e.value for e in evaluation.Scalars("undefended/clean/top1_acc")] == pytest.approx([entry["evaluation"]["clean"]["top1_acc"]], abs=1e-6)
    assert {"figures/accuracy_plot", "figures/examples_undefended", "figures/loss_plot_undefended"} <= set(evaluation.Tags()["images"])
    [text] = evaluation.Tensors("results/text_summary")
    assert re.search(r"\| +undefended \| +fgsm \|", text.tensor_proto.string_val[0].decode())  # the results table


def test_csv_logs_per_stage_with_the_config(sweep):
    job = sweep["folder"] / "1"
    with open(job / "logs" / "undefended" / "metrics.csv", newline="") as handle:
        epochs = [row for row in csv.DictReader(handle) if row["train/loss"]]
    assert len(epochs) == 1
    assert "train_subset: 256" in (job / "logs" / "undefended" / "hparams.yaml").read_text()
    with open(job / "logs" / "results" / "metrics.csv", newline="") as handle:
        points = [row for row in csv.DictReader(handle) if row.get("undefended/fgsm/eps")]
    assert [float(p["undefended/fgsm/eps"]) for p in points] == [0.2]


def test_progress_falls_back_to_log_lines_without_a_terminal(sweep):
    log_text = (sweep["folder"] / "0" / "cli.log").read_text()
    assert "undefended: epoch 1/1" in log_text and "train/loss" in log_text
    assert "eval_undefended: 2/2 batches" in log_text


def test_the_sweep_summary_includes_the_tracked_jobs(sweep):
    assert "2 of 3 jobs completed" in (sweep["folder"] / "summary.md").read_text()


# --- fast checks without training ---------------------------------------------------------------


@pytest.mark.parametrize(
    "env, offline, expected",
    [(None, True, "offline"), (None, False, "online"), ("online", True, "online"), ("offline", False, "offline"), ("disabled", True, "disabled")],
)
def test_wandb_mode(monkeypatch, env, offline, expected):
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    assert wandb_mode(offline) == expected


def test_uploading_checkpoints_offline_is_a_one_line_error(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("logger=wandb", "logger.wandb.log_model=true")
    with pytest.raises(AdvlabError, match=r"^logger.wandb.log_model uploads checkpoints, which an offline wandb run cannot do: set logger.wandb.log_model=false"):
        JobTracker(cfg).start()


def test_series_and_summary_are_generic_over_row_columns():
    results = {
        "models": {
            "m": {
                "evaluation": {
                    "clean": {"n": 10, "top1_acc": 0.9},
                    "attacks": {
                        "fgsm": {"rows": [{"eps": 0.1, "top1_acc": 0.5, "eps_unit": "pixel"}, {"eps": 0.3, "top1_acc": 0.2}]},
                        "patch": {"rows": [{"patch_size": 0.1, "target": "toaster", "top1_rate": 0.4}, {"patch_size": 0.2, "target": "toaster", "top1_rate": 0.7}, {"patch_size": 0.1, "target": "banana", "top1_rate": 0.3}]},
                        "cw": {"rows": [{"success_rate": 1.0, "median_l2": 1.5, "converged": True}]},
                    },
                }
            }
        }
    }
    series = result_series(results)
    assert series["m/clean"] == (None, [(None, {"n": 10, "top1_acc": 0.9})])
    assert series["m/fgsm"] == ("eps", [(0.1, {"top1_acc": 0.5}), (0.3, {"top1_acc": 0.2})])
    assert series["m/patch/toaster"] == ("patch_size", [(0.1, {"top1_rate": 0.4}), (0.2, {"top1_rate": 0.7})])
    assert series["m/patch/banana"][1] == [(0.1, {"top1_rate": 0.3})]
    assert series["m/cw"] == (None, [(None, {"success_rate": 1.0, "median_l2": 1.5})])
    summary = summary_metrics(series)
    assert summary["m/fgsm/top1_acc@eps=0.3"] == 0.2
    assert summary["m/patch/toaster/top1_rate@patch_size=0.2"] == 0.7
    assert summary["m/cw/median_l2"] == 1.5 and summary["m/clean/top1_acc"] == 0.9


@pytest.mark.parametrize(
    "choice, expected",
    [("lines", LineProgress), ("rich", StageRichProgressBar), ("auto", LineProgress), ("tqdm", None), ("none", None)],
)
def test_progress_bar_choice(make_cfg, choice, expected):
    cfg = make_cfg("trainer.accelerator=cpu", f"callbacks.progress_bar={choice}", "logger=none", quick=False)
    trainer = build_trainer(cfg, "undefended")
    bars = [c for c in trainer.callbacks if type(c).__name__.endswith(("ProgressBar", "Progress"))]
    if choice == "none":
        assert bars == [] and trainer.progress_bar_callback is None
    elif choice == "tqdm":
        assert [type(b).__name__ for b in bars] == ["TQDMProgressBar"]
    else:
        assert [type(b) for b in bars] == [expected]  # pytest's stdout is not a terminal: auto -> lines
    if expected is StageRichProgressBar:
        assert isinstance(bars[0], RichProgressBar) and bars[0].test_description == "undefended: clean + attacks"


def test_progress_off_when_the_trainer_says_so(make_cfg):
    trainer = build_trainer(make_cfg("logger=none"), "undefended")  # QUICK: +trainer.enable_progress_bar=false
    assert trainer.progress_bar_callback is None


def test_unknown_progress_bar_is_a_one_line_error(make_cfg):
    with pytest.raises(AdvlabError, match="unknown callbacks.progress_bar 'fancy': use one of auto, rich, tqdm, lines, none"):
        build_trainer(make_cfg("callbacks.progress_bar=fancy", quick=False), "undefended")


def test_line_progress_logs_each_epoch(make_cfg, caplog):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
            self.log("train/loss", loss, prog_bar=True, on_epoch=True, on_step=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,))), batch_size=8)
    cfg = make_cfg("trainer.accelerator=cpu", "callbacks.progress_bar=lines", "logger=none", quick=False)
    trainer = build_trainer(cfg, "tiny", max_epochs=2, enable_checkpointing=False)
    with caplog.at_level(logging.INFO, logger="advlab.progress"):
        trainer.fit(Tiny(), data)
    lines = [r.getMessage() for r in caplog.records if r.name == "advlab.progress"]
    assert [line.split("  ")[0] for line in lines] == ["tiny: epoch 1/2", "tiny: epoch 2/2"]
    assert all("train/loss" in line for line in lines)
