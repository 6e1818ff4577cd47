"""The reference protocol (PROTOCOLS.md §VI, experiment=paper_mnist_*_reference) reproduces the
public code's defects only where asked: train-mode predictions and gradients, initially-wrong
images counted wrong, Dropout2d, a half-width student on hard labels. The correct protocol (the
default) is untouched: eval mode, one shared FGSM gradient, numbers equal to a plain-PyTorch
evaluation of the same weights."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from advlab.attacks import FGSM
from advlab.attacks.base import input_gradient
from advlab.errors import AdvlabError
from advlab.lit.attack_eval import AttackEvaluation, _counted_wrong
from advlab.lit.distillation import DistillationModule
from advlab.models import MnistCNN

EPS = [0.0, 0.0, 0.2, 0.2]


def reference_copy(model: MnistCNN) -> MnistCNN:
    """The same weights in the reference's Dropout2d network (dropout has no parameters)."""
    copy = MnistCNN(dropout_kind="dropout2d")
    copy.load_state_dict(model.state_dict())
    return copy.eval()


class _Source(L.LightningDataModule):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__()
        self.x, self.y = x, y

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=64)


def evaluate(model: torch.nn.Module, attack: FGSM, x: torch.Tensor, y: torch.Tensor, **options) -> dict:
    module = AttackEvaluation(
        model, {"fgsm": attack}, num_classes=10, example_count=0, datamodule=_Source(x, y), **options
    )
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, inference_mode=False
    )
    trainer.test(module, verbose=False)
    return module.results


def test_train_mode_draws_fresh_masks_per_forward_and_per_eps(trained_cnn, test_batch):
    x, y = test_batch[0][:64], test_batch[1][:64]
    model = reference_copy(trained_cnn)
    first, _ = input_gradient(model, x, y, mode="train")
    second, _ = input_gradient(model, x, y, mode="train")
    assert not torch.equal(first, second), "train mode: a fresh dropout mask on every forward"
    assert not model.training, "the caller's mode is restored"
    attack = FGSM(eps=[0.2, 0.2], model_mode="train")
    a, b = attack(model, x, y)
    assert not torch.equal(a, b), "the gradient is recomputed for every eps"
    steps = list(attack.sweep(model, x, y))
    assert all(step.logits is not None for step in steps) and attack.settings()["model_mode"] == "train"


def test_default_is_eval_mode_with_one_shared_gradient(trained_cnn, test_batch):
    x, y = test_batch[0][:64], test_batch[1][:64]
    model = reference_copy(trained_cnn).train()  # even a model left in train mode by its caller
    attack = FGSM(eps=[0.2, 0.2])
    a, b = attack(model, x, y)
    again = FGSM(eps=0.2)(model, x, y)
    assert torch.equal(a, b) and torch.equal(a, again)
    assert model.training, "the caller's mode is restored"
    assert all(step.logits is None for step in attack.sweep(model, x, y)) and "model_mode" not in attack.settings()


def test_reference_evaluation_changes_predictions_and_counts_initially_wrong_as_wrong(trained_cnn, test_batch):
    x, y = test_batch[0][:200], test_batch[1][:200]
    model = reference_copy(trained_cnn)
    correct = evaluate(model, FGSM(eps=EPS), x, y)
    rows = correct["attacks"]["fgsm"]["rows"]
    # eval mode: eps 0 is the clean prediction, and repeated eps give identical rows
    assert rows[0]["correct"] == rows[1]["correct"] == correct["clean"]["correct"]
    assert rows[2]["correct"] == rows[3]["correct"]

    torch.manual_seed(0)
    reference = evaluate(
        model, FGSM(eps=EPS, model_mode="train"), x, y, model_mode="train", clean_wrong_counts_wrong=True
    )
    ref_rows = reference["attacks"]["fgsm"]["rows"]
    counts = [row["correct"] for row in ref_rows]
    # fresh masks: the same eps twice gives different counts (200 images, a weakly trained net)
    assert counts[0] != counts[1] or counts[2] != counts[3]
    # eps 0 counts an image only if two dropout-on forwards both get it right
    assert counts[0] < correct["clean"]["correct"] and counts[1] < correct["clean"]["correct"]


def test_counted_wrong_makes_top1_and_top5_wrong_only_where_asked():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0, -1, -2, -3, -4]] * 2)
    labels = torch.tensor([0, 0])
    counted = _counted_wrong(logits, labels, torch.tensor([True, False]))
    assert counted.tolist() == [9, 0]
    assert logits.topk(5).indices[0].tolist().count(counted[0].item()) == 0


def test_model_modes_of_attack_and_evaluation_must_agree(trained_cnn):
    with pytest.raises(AdvlabError, match="model_mode"):
        AttackEvaluation(trained_cnn, {"fgsm": FGSM(eps=0.1)}, num_classes=10, model_mode="train")
    with pytest.raises(AdvlabError, match="model_mode"):
        FGSM(eps=0.1, model_mode="dropout")


def test_eval_mode_numbers_equal_a_plain_pytorch_evaluation(trained_cnn, test_batch):
    """The correct protocol, unchanged by the reference options: advlab's numbers on fixed
    weights equal FGSM and accuracy written out in plain PyTorch, in eval mode."""
    x, y = test_batch[0][:200], test_batch[1][:200]
    results = evaluate(trained_cnn.train(), FGSM(eps=[0.0, 0.1, 0.3]), x, y)
    model = trained_cnn.eval()
    x_var = x.clone().requires_grad_(True)
    # the input's gradient only: the shared fixture's parameters keep no .grad
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_var), y, reduction="sum"), x_var)
    with torch.no_grad():
        assert results["clean"]["correct"] == int((model(x).argmax(1) == y).sum())
        for row, eps in zip(results["attacks"]["fgsm"]["rows"], [0.0, 0.1, 0.3], strict=True):
            x_adv = (x + eps * grad.sign()).clamp(0, 1)
            assert row["correct"] == int((model(x_adv).argmax(1) == y).sum()), eps


def test_dropout_kinds_and_widths():
    reference = MnistCNN(dropout_kind="dropout2d")
    assert isinstance(reference.features[5], torch.nn.Dropout2d)
    assert isinstance(reference.classifier[3], torch.nn.Dropout)  # element-wise, as Dropout2d on 2-D
    assert isinstance(MnistCNN().features[5], torch.nn.Dropout)
    with pytest.raises(AdvlabError, match="dropout_kind"):
        MnistCNN(dropout_kind="alpha")
    with pytest.raises(AdvlabError, match="channels"):
        MnistCNN(channels=[16])


def test_reference_student_is_half_width_and_no_teacher_is_needed(make_cfg):
    cfg = make_cfg("experiment=paper_mnist_distillation_reference")
    student = instantiate(cfg.defense.student.model)
    assert [student.features[0].out_channels, student.features[2].out_channels] == [16, 32]
    assert (student.classifier[1].in_features, student.classifier[1].out_features) == (4608, 64)
    assert student.dropout_kind == "dropout2d"
    assert cfg.defense.student_labels == "hard" and cfg.evaluation.model_mode == "train"
    assert cfg.attack.fgsm.model_mode == "train" and cfg.evaluation.clean_wrong_counts_wrong
    full = instantiate(cfg.model)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in full.parameters()) / 3
    correct = make_cfg("experiment=paper_mnist_distillation")
    assert correct.defense.student_labels == "soft" and correct.evaluation.model_mode == "eval"


def test_reference_student_can_be_judged_by_the_correct_protocol(make_cfg):
    """The public code's student, its robustness read the correct way: eval mode, every image
    attacked, the attacks that do not read the saturated softmax."""
    cfg = make_cfg("experiment=paper_mnist_distillation_reference_robustness")
    reference = make_cfg("experiment=paper_mnist_distillation_reference")
    assert cfg.defense.student == reference.defense.student  # the same half-width network
    assert cfg.evaluation.model_mode == "eval" and cfg.attack.fgsm.model_mode == "eval"
    assert not cfg.evaluation.clean_wrong_counts_wrong
    assert {"pgd_margin", "pgd_temperature", "fgsm_temperature", "cw"} <= set(cfg.attack)
    assert "robustness" in cfg.reports


def test_hard_label_student_learns_the_true_labels_at_t(trained_cnn, test_batch):
    x, y = test_batch
    student = MnistCNN(channels=(16, 32), hidden=64).eval()
    adam = partial(torch.optim.Adam, lr=1e-3)
    module = DistillationModule(student, None, optimizer=adam, temperature=100.0, labels="hard")
    assert module.teacher is None
    loss = module.training_step((x, y), 0)
    with torch.no_grad():
        expected = F.cross_entropy(student(x) / 100.0, y)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(AdvlabError, match="teacher"):
        DistillationModule(student, None, optimizer=partial(torch.optim.Adam, lr=1e-3), labels="soft")
    with pytest.raises(AdvlabError, match="student_labels"):
        DistillationModule(student, trained_cnn, optimizer=partial(torch.optim.Adam, lr=1e-3), labels="noisy")
