"""Lightning module that measures a classifier clean and under attacks, per eps.

Attacks need input gradients: the Trainer must be built with ``inference_mode=False`` (Lightning
then evaluates under ``torch.no_grad()``, and every attack re-enables gradients for itself).
Metrics are torchmetrics (micro-averaged top-k accuracy), so they are summed across processes
under DDP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import nn
from torch.utils.data import DataLoader

from advlab.attacks.base import Attack, AttackStep, check_model_mode, model_mode
from advlab.errors import AdvlabError
from advlab.lit.precision import FirstCallTimer, compile_model, to_channels_last, without_autocast
from advlab.lit.tally import Tally


def check_model_modes(attacks: Mapping[str, Attack], mode: str) -> str:
    """``mode`` (``evaluation.model_mode``) when every attack runs its gradients in that mode too."""
    mode = check_model_mode(mode)
    for name, attack in attacks.items():
        if getattr(attack, "model_mode", "eval") != mode:
            raise AdvlabError(
                f"attack.{name}.model_mode is {getattr(attack, 'model_mode', 'eval')!r} but evaluation.model_mode is "
                f"{mode!r}: set both alike (only FGSM has a train mode, for the reference protocol)"
            )
    return mode


def _counted_wrong(logits: torch.Tensor, labels: torch.Tensor, wrong: torch.Tensor) -> torch.Tensor:
    """Labels under which the rows in ``wrong`` count as misclassified (top-1 and top-5): their
    label becomes the class with the lowest logit, which no top-k with k < classes contains."""
    return torch.where(wrong, logits.argmin(dim=1), labels)


class AttackEvaluation(L.LightningModule):
    """Clean and adversarial top-1/top-5 accuracy of ``model`` for every attack and eps.

    After ``trainer.test`` the numbers are in :attr:`results`, and :attr:`examples` holds the
    first ``example_count`` test images with their predictions at each eps (the paper's Fig. 9).

    Targeted attacks get target labels from ``target``: a class index, or ``"random"`` (a
    seeded random class other than the true one). Their ``target_rate`` is the share of
    images classified as the target.

    Attacks follow the contract of :mod:`advlab.attacks.base`: each sweep yields typed
    :class:`~advlab.attacks.base.AttackStep` results, and this module reads only those and the
    attack's declared ``eps_values``, ``norm``, ``targeted``, ``max_samples`` and ``strength``.
    An attack with ``max_samples`` runs on the first that many test images only (its rows' ``n``
    says how many; under DDP, on the first that many of each process's share). Steps that carry
    ``success`` and ``l2`` (CW) also give ``success_rate`` (among the images classified correctly
    when clean) and the median and mean L2 of the successes; L2 attacks get ``max_l2``; every
    row states the attack's ``strength`` (gradient steps per image, for the masking checks).
    """

    def __init__(
        self,
        model: nn.Module,
        attacks: Mapping[str, Attack],
        num_classes: int,
        example_count: int = 6,
        target: int | str = "random",
        seed: int = 0,
        datamodule: L.LightningDataModule | None = None,
        channels_last: bool = False,
        attack_autocast: bool = False,
        compile: bool = False,
        model_mode: str = "eval",
        clean_wrong_counts_wrong: bool = False,
    ):
        super().__init__()
        # The reference protocol's two evaluation defects (docs/reference_protocol.md), off by
        # default: predictions in train mode (dropout on), and images misclassified before the
        # attack counted wrong whatever the attacked prediction (the public code attacks only
        # the others).
        self.model_mode = check_model_modes(attacks, model_mode)
        self.clean_wrong_counts_wrong = bool(clean_wrong_counts_wrong)
        # speed knobs (advlab.lit.precision): channels_last layout; attacks in fp32 unless
        # attack_autocast lets them share the trainer's autocast (trainer.precision=bf16-mixed)
        self.channels_last = bool(channels_last)
        self.attack_autocast = bool(attack_autocast)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        # torch.compile for long attacks; the first batches' times go to the log (compile cost)
        self.compile_timer = FirstCallTimer("torch.compile") if compile else None
        self.model = compile_model(self.model) if compile else self.model
        self.source = datamodule
        self.attacks = dict(attacks)
        self.num_classes = int(num_classes)
        self.example_count = int(example_count)
        self.target = target
        self.seed = int(seed)
        self.clean = Tally(self.num_classes)
        self.cells = nn.ModuleDict(
            {
                self._key(name, i): Tally(self.num_classes)
                for name, attack in self.attacks.items()
                for i, _ in enumerate(attack.eps_values)
            }
        )
        self.results: dict[str, Any] = {}
        self.examples: dict[str, Any] = {}
        self._attacked = {name: 0 for name in self.attacks}  # images seen so far, for max_samples

    @staticmethod
    def _key(name: str, index: int) -> str:
        return f"{name}__{index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def test_dataloader(self) -> DataLoader:
        """The datamodule's test loader, split across processes *without* the padding
        Lightning's DistributedSampler adds: under DDP every test image counts exactly once, so
        the micro-averaged accuracies equal the single-device ones. (Build the Trainer with
        ``use_distributed_sampler=False``.)"""
        if self.source is None:
            raise AdvlabError("AttackEvaluation needs a datamodule for its test loader: pass datamodule=…")
        loader = self.source.test_dataloader()
        if self.trainer.world_size == 1:
            return loader
        sampler = UnrepeatedDistributedSampler(
            loader.dataset, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank, shuffle=False
        )
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )

    def _targets(self, labels: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if isinstance(self.target, int) or (isinstance(self.target, str) and self.target.isdigit()):
            index = int(self.target)
            if not 0 <= index < self.num_classes:
                raise AdvlabError(f"target class {index} is out of range: use 0 … {self.num_classes - 1}")
            return torch.full_like(labels, index)
        if self.target != "random":
            raise AdvlabError(f"unknown target {self.target!r}: use a class index or 'random'")
        generator = torch.Generator().manual_seed(self.seed * 100_003 + batch_idx)
        shift = torch.randint(1, self.num_classes, labels.shape, generator=generator).to(labels.device)
        return (labels + shift) % self.num_classes

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.compile_timer is not None:
            self.compile_timer.start()

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.compile_timer is not None:
            self.compile_timer.stop()

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, labels = batch
        x = to_channels_last(x) if self.channels_last else x
        with model_mode(self.model, self.model_mode):
            logits = self.model(x)
        self.clean.update(logits, labels)
        keep = batch_idx == 0 and self.global_rank == 0 and self.example_count > 0
        if keep:
            k = min(self.example_count, len(x))
            self.examples = {
                "images": x[:k].detach().cpu(),
                "labels": labels[:k].cpu(),
                "clean_pred": logits[:k].argmax(1).cpu(),
                "clean_conf": logits[:k].float().softmax(1).amax(1).cpu(),
                "attacks": {},
            }
        clean_correct = logits.argmax(1) == labels
        for name, attack in self.attacks.items():
            count = self._budget(name, attack, len(x))
            if count == 0:
                continue
            xs, ys, correct = x[:count], labels[:count], clean_correct[:count]
            goal = self._targets(labels, batch_idx)[:count] if attack.targeted else ys
            sweep = attack.sweep(self.model, xs, goal)
            steps: Iterator[AttackStep] = sweep if self.attack_autocast else without_autocast(sweep, x.device.type)
            for index, step in enumerate(steps):
                eps, x_adv = step.eps, step.x_adv
                cell = cast(Tally, self.cells[self._key(name, index)])
                if step.adv_logits is not None and self.model_mode == "eval":
                    adv_logits = step.adv_logits  # the attack already ran this forward (FGSM, eps 0)
                else:
                    with model_mode(self.model, self.model_mode):
                        adv_logits = self.model(x_adv)
                if self.clean_wrong_counts_wrong:
                    # the prediction before this eps's attack: the attack's own forward when it
                    # made one (train mode draws fresh masks per eps), else the clean forward
                    before = step.logits if step.logits is not None else logits[:count]
                    cell.update(adv_logits, _counted_wrong(adv_logits, ys, before.argmax(1) != ys))
                else:
                    cell.update(adv_logits, ys)
                cell.record(step, xs, adv_logits, correct, attack.norm, goal if attack.targeted else None)
                if keep and eps is not None and count >= len(self.examples["labels"]):
                    k = len(self.examples["labels"])
                    self.examples["attacks"].setdefault(name, []).append(
                        {
                            "eps": eps,
                            "images": x_adv[:k].detach().cpu(),
                            "pred": adv_logits[:k].argmax(1).cpu(),
                            "conf": adv_logits[:k].float().softmax(1).amax(1).cpu(),
                        }
                    )

    def _budget(self, name: str, attack: Attack, batch: int) -> int:
        """How many images of this batch the attack gets: all, or what is left of ``max_samples``."""
        limit = attack.max_samples
        count = batch if limit is None else max(0, min(batch, int(limit) - self._attacked[name]))
        self._attacked[name] += count
        return count

    def on_test_epoch_end(self) -> None:
        results: dict[str, Any] = {"clean": self.clean.compute(), "num_classes": self.num_classes, "attacks": {}}
        for name, attack in self.attacks.items():
            rows = [
                cast(Tally, self.cells[self._key(name, index)]).attack_row(eps, attack.strength(eps))
                for index, eps in enumerate(attack.eps_values)
            ]
            results["attacks"][name] = {"settings": attack.settings(), "rows": rows}
        self.results = results
