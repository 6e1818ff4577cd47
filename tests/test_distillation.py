"""Defensive distillation: the student learns the teacher's soft labels at T (not the hard labels,
the defect PROTOCOLS.md §VI describes), the teacher stays frozen, the composed run works, and bad
input fails in one line."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from advlab.defenses import DefensiveDistillation, label_dataset, soft_labels
from advlab.errors import AdvlabError
from advlab.lit.distillation import DistillationModule
from advlab.models import MnistCNN
from advlab.run import run

T = 100.0


def rolled(model: MnistCNN) -> MnistCNN:
    """A teacher that answers class (c + 1) mod 10 wherever ``model`` answers c: its soft labels
    disagree with the true labels almost everywhere, so a student trained on them is told apart
    from one trained on hard labels by its predictions alone."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for key in ("classifier.4.weight", "classifier.4.bias"):
        state[key] = state[key].roll(1, dims=0)
    teacher = MnistCNN()
    teacher.load_state_dict(state)
    return teacher.eval()


class Scaled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


def test_soft_labels_are_the_teacher_softmax_at_temperature(trained_cnn, test_batch):
    x, _ = test_batch
    with torch.no_grad():
        logits = trained_cnn.eval()(x)
    soft = soft_labels(trained_cnn, x, T)
    assert torch.allclose(soft, F.softmax(logits / T, dim=1), atol=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(len(x)), atol=1e-5)
    assert torch.equal(soft.argmax(1), logits.argmax(1))
    # soft: far from one-hot at T = 100, and softer than at T = 1
    assert soft.amax(1).max() < 0.5
    assert (soft.amax(1) < F.softmax(logits, dim=1).amax(1)).all()
    # the whole-set helper gives the same labels batch by batch
    assert torch.allclose(label_dataset(trained_cnn, x, T, batch_size=100), soft)


def test_soft_labels_use_the_teacher_in_eval_mode_and_restore_it(trained_cnn, test_batch):
    x, _ = test_batch
    reference = soft_labels(trained_cnn, x, T)
    trained_cnn.train()  # dropout on: the labels must not be noisy, and the mode must come back
    try:
        assert torch.equal(soft_labels(trained_cnn, x, T), reference)
        assert trained_cnn.training
    finally:
        trained_cnn.eval()
    assert all(p.grad is None for p in trained_cnn.parameters())


def test_student_loss_is_cross_entropy_against_the_teacher_soft_labels(trained_cnn, test_batch):
    """Fails on the defect: a soft-label step that changes nothing trains on the hard labels."""
    x, y = test_batch
    # a student whose logits / T are the fixture CNN's logits: it fits the hard labels well, so the
    # loss against them and against the rolled teacher's soft labels differ clearly
    student = Scaled(trained_cnn, T).eval()
    module = DistillationModule(student, rolled(trained_cnn), optimizer=partial(torch.optim.Adam, lr=1e-3), temperature=T)
    loss = module.training_step((x, y), 0)
    with torch.no_grad():
        logits = student(x)
        expected = F.cross_entropy(logits / T, F.softmax(rolled(trained_cnn)(x) / T, dim=1))
        hard = F.cross_entropy(logits / T, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() > hard.item() + 0.5
    assert torch.allclose(module.targets(x, y), soft_labels(rolled(trained_cnn), x, T))


def test_student_learns_the_teacher_not_the_hard_labels(trained_cnn, mnist_dir):
    """A student trained (1 pass over 2 000 images) on a class-rolled teacher's soft labels agrees
    with that teacher, not with the true labels. On hard labels it would do the opposite."""
    from advlab.data.mnist import load_mnist

    x, y = load_mnist(mnist_dir, train=True, download=False)
    x_test, y_test = load_mnist(mnist_dir, train=False, download=False)
    x_test, y_test = x_test[:500], y_test[:500]
    teacher = rolled(trained_cnn)
    torch.manual_seed(0)
    student = MnistCNN()
    module = DistillationModule(student, teacher, optimizer=partial(torch.optim.Adam, lr=1e-3), temperature=T)
    optimizer = module.configure_optimizers()
    module.train()
    for start in range(0, 2000, 64):
        xb = x[start : start + 64]
        optimizer.zero_grad()
        module.loss(module(xb), module.targets(xb, y[start : start + 64])).backward()
        optimizer.step()
    with torch.no_grad():
        student_pred = student.eval()(x_test).argmax(1)
        teacher_pred = teacher(x_test).argmax(1)
    assert (student_pred == teacher_pred).float().mean() > 0.7
    assert (student_pred == y_test).float().mean() < 0.1
    assert all(p.grad is None for p in teacher.parameters()), "the teacher is frozen"


def test_teacher_stays_frozen_in_eval_mode_and_out_of_checkpoints(trained_cnn):
    teacher = rolled(trained_cnn)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = DistillationModule(MnistCNN(), teacher, optimizer=partial(torch.optim.Adam, lr=1e-3), temperature=T)
    module.train()
    assert module.model.training and not module.teacher.training
    assert not any(p.requires_grad for p in module.teacher.parameters())
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all(k.startswith("model.") for k in checkpoint["state_dict"])
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


QUICK_DISTILLATION = [
    "defense=distillation",
    "defense.teacher.training.optimizer.lr=0.001",
    "defense.student.training.optimizer.lr=0.001",
    "data.train_subset=1000",
    "data.val_subset=200",
    "data.test_subset=200",
]


def test_composed_distillation_run_on_a_few_batches(make_cfg):
    cfg = make_cfg(
        *QUICK_DISTILLATION,
        "attack.fgsm.eps=[0.0,0.3]",
        "reports=[comparison]",
    )
    results = run(cfg)
    out = Path(cfg.paths.output_dir)
    on_disk = json.loads((out / "results.json").read_text())
    models = on_disk["models"]
    assert list(models) == ["undefended", "distilled"]
    assert models["undefended"]["defense"] == "none" and models["distilled"]["defense"] == "distillation"
    student = models["distilled"]["training"]
    assert student["trained"] and student["temperature"] == T and student["deployed_temperature"] == 1.0
    assert student["teacher"]["trained"] and student["teacher"]["checkpoint"].endswith("teacher.pt")
    for name in ("teacher.pt", "student.pt", "undefended.pt", "student_loss.csv", "student_loss.png",
                 "teacher_loss.csv", "comparison.md", "comparison.csv", "comparison.png"):
        assert (out / name).stat().st_size > 0, name
    assert "warnings" in on_disk and isinstance(on_disk["warnings"], list)
    comparison = (out / "comparison.md").read_text()
    assert "undefended top-1 acc %" in comparison and "distilled top-1 acc %" in comparison
    rows = models["distilled"]["evaluation"]["attacks"]["fgsm"]["rows"]
    assert [r["eps"] for r in rows] == [0.0, 0.3] and rows[0]["n"] == 200
    assert results["models"]["distilled"]["evaluation"] == models["distilled"]["evaluation"]
    # the saved student loads as a plain mnist_cnn state dict (no teacher weights inside)
    state = torch.load(out / "student.pt", weights_only=True)
    assert not any(k.startswith("teacher") for k in state)
    MnistCNN().load_state_dict(state)


def test_reused_teacher_checkpoint_is_what_the_student_learns(make_cfg, trained_cnn, tmp_path):
    path = tmp_path / "rolled_teacher.pt"
    torch.save(rolled(trained_cnn).state_dict(), path)
    cfg = make_cfg(
        *QUICK_DISTILLATION,
        "data.train_subset=2000",
        f"defense.teacher.model.checkpoint={path}",
        "defense.compare_undefended=false",
        "attack=none",
    )
    results = run(cfg)
    entry = results["models"]["distilled"]
    assert list(results["models"]) == ["distilled"]
    assert entry["training"]["teacher"] == {"trained": False, "checkpoint": str(path)}
    assert not (Path(cfg.paths.output_dir) / "teacher.pt").exists()
    # the student was taught the rolled classes: nearly every test image is "wrong"
    assert entry["evaluation"]["clean"]["top1_acc"] < 0.2
    # and a reused student skips the teacher altogether
    again = make_cfg(
        *QUICK_DISTILLATION,
        f"defense.student.model.checkpoint={entry['training']['checkpoint']}",
        "defense.teacher.model.checkpoint=/nonexistent/teacher.pt",
        "defense.compare_undefended=false",
        "attack=none",
        f"paths.output_dir={tmp_path / 'again'}",
    )
    second = run(again)["models"]["distilled"]
    assert second["training"]["trained"] is False and second["training"]["teacher"] is None
    assert second["evaluation"]["clean"] == entry["evaluation"]["clean"]


@pytest.mark.parametrize("value", ["0", "-5"])
def test_bad_temperature_fails_in_one_line_before_training(make_cfg, value):
    cfg = make_cfg("defense=distillation", f"defense.temperature={value}")
    with pytest.raises(AdvlabError, match=f"defense.temperature must be > 0, got {value}") as info:
        run(cfg)
    assert "\n" not in str(info.value)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
    with pytest.raises(AdvlabError, match="defense.temperature must be > 0"):
        DefensiveDistillation(0)


def test_teacher_checkpoint_of_another_architecture_fails_in_one_line(make_cfg, tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).state_dict(), path)
    cfg = make_cfg(*QUICK_DISTILLATION, f"defense.teacher.model.checkpoint={path}", "defense.compare_undefended=false")
    with pytest.raises(AdvlabError, match=r"teacher \(defense.teacher\): checkpoint .*linear.pt.* does not match model 'mnist_cnn'") as info:
        run(cfg)
    assert "\n" not in str(info.value)
