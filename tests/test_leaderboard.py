"""The leaderboard report: sorted by AutoAttack, published rows labelled, one figure per model."""

from __future__ import annotations

from advlab.reports.leaderboard import leaderboard_report


def _results():
    def model(clean, aa):
        return {
            "defense": "x",
            "evaluation": {
                "clean": {"top1_acc": clean, "n": 100},
                "attacks": {
                    "autoattack": {
                        "settings": {"attack": "autoattack"},
                        "rows": [
                            {"eps": 0.1, "top1_acc": aa + 0.1, "n": 50},
                            {"eps": 0.3, "top1_acc": aa, "n": 50},
                        ],
                    }
                },
            },
        }

    return {
        "models": {"weak": model(0.99, 0.0), "strong": model(0.98, 0.7)},
        "warnings": [],
        "machine": "test",
    }


def test_sorted_with_published_rows(tmp_path):
    columns = [
        {"header": "clean", "attack": "none"},
        {"header": "AA 0.3", "attack": "autoattack", "eps": 0.3},
    ]
    anchors = [
        {
            "model": "Madry",
            "source": "published (AutoAttack leaderboard)",
            "clean": 98.53,
            "AA 0.3": 88.5,
        }
    ]
    files = leaderboard_report(_results(), tmp_path, columns=columns, sort_by="AA 0.3", anchors=anchors)
    text = (tmp_path / "robustness.md").read_text()
    order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("|")][2:5]
    assert order == ["Madry", "strong", "weak"]
    assert "published (AutoAttack leaderboard)" in text and "88.5" in text and "70" in text
    assert "n = 50 test images" in text
    assert {"accuracy_vs_eps_weak", "accuracy_vs_eps_strong"} <= set(files)


def test_experiment_composes(make_cfg):
    cfg = make_cfg("experiment=mnist_leaderboard", quick=False)
    assert list(cfg.attack) == [
        "fgsm",
        "pgd",
        "pgd_margin",
        "cw",
        "apgd",
        "apgd_t",
        "square",
        "autoattack",
    ]
    assert cfg.defense.name == "adversarial_training" and cfg.defense.distillation.temperature == 100
    assert cfg.attack.pgd.restarts == 5 and cfg.attack.pgd.steps == 100
    assert cfg.reports.leaderboard.sort_by == "AutoAttack 0.3" and len(cfg.reports.leaderboard.anchors) == 4
