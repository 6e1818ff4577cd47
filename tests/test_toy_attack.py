"""A new attack is one .py and one .yaml, nowhere else: the docs' toy attack (docs/architecture.md),
written into a temporary folder, runs through the whole job via a config search path, and the
evaluator and the masking checks treat it like any other attack (by contract, not by name)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from advlab.run import run

TOY_PY = '''
"""Random-sign noise: x + eps · s, s in {-1, +1} per pixel, drawn with a fixed seed. No gradient."""

import torch

from advlab.attacks import AttackStep, BoundedAttack


class RandomSign(BoundedAttack):
    name = "random_sign"

    def perturb(self, model, x, y, eps):
        generator = torch.Generator().manual_seed(0)
        sign = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
        x_adv = x + eps * sign
        return AttackStep(eps, x_adv.clamp(0, 1) if self.clamp else x_adv)

    def strength(self, eps):
        return 0  # no gradient step: any gradient attack should do at least as much damage
'''

TOY_YAML = """
# @package attack.random_sign
# Random-sign noise (toy_attack.py): the docs' example of a new attack.
_target_: toy_attack.RandomSign
eps: [0.1, 0.3]
"""


def test_a_toy_attack_needs_one_py_and_one_yaml(tmp_path, make_cfg, monkeypatch):
    (tmp_path / "toy_attack.py").write_text(textwrap.dedent(TOY_PY))
    (tmp_path / "conf" / "attack").mkdir(parents=True)
    (tmp_path / "conf" / "attack" / "random_sign.yaml").write_text(TOY_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = make_cfg(
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "attack=[fgsm,random_sign]",
        "attack.fgsm.eps=[0.1,0.3]",
        "logger=none",
    )
    results = run(cfg)
    attacks = results["models"]["undefended"]["evaluation"]["attacks"]
    rows = attacks["random_sign"]["rows"]
    assert [r["eps"] for r in rows] == [0.1, 0.3] and all(r["n"] == 300 for r in rows)
    assert all(r["strength"] == 0 and abs(r["max_linf"] - r["eps"]) < 1e-6 for r in rows)
    assert attacks["random_sign"]["settings"]["attack"] == "random_sign"
    # the masking check compares it with FGSM by declared strength: noise must not beat FGSM here
    assert not [w for w in results["warnings"] if w["check"] == "weaker_beats_stronger"]
    assert rows[-1]["top1_acc"] > attacks["fgsm"]["rows"][-1]["top1_acc"]
    assert "random_sign" in Path(cfg.paths.output_dir, "results.md").read_text()
