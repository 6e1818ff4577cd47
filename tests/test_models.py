"""Model registry and checkpoint loading: names, round trips, and the one-line errors."""

from __future__ import annotations

import pytest
import torch

from advlab.errors import AdvlabError
from advlab.models import MnistCNN, create_model, load_weights


def test_registry_builds_the_paper_cnn():
    model = create_model("mnist_cnn")
    assert isinstance(model, MnistCNN)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == 1_199_882  # the reference net's size


def test_unknown_model_suggests_close_names():
    with pytest.raises(AdvlabError, match=r"unknown model 'mnist_ccn': did you mean mnist_cnn") as info:
        create_model("mnist_ccn")
    assert "\n" not in str(info.value)


def test_state_dict_and_lightning_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    original = MnistCNN().eval()
    x = torch.rand(4, 1, 28, 28)
    plain = tmp_path / "weights.pt"
    torch.save(original.state_dict(), plain)
    lightning_style = tmp_path / "model.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in original.state_dict().items()}}, lightning_style)
    for path in (plain, lightning_style):
        loaded = create_model("mnist_cnn", checkpoint=str(path)).eval()
        assert torch.equal(loaded(x), original(x))


def test_missing_unreadable_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(AdvlabError, match="does not exist"):
        create_model("mnist_cnn", checkpoint=str(tmp_path / "nope.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(AdvlabError, match="cannot read checkpoint"):
        create_model("mnist_cnn", checkpoint=str(garbage))
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": print}, unsafe)  # needs full unpickling
    with pytest.raises(AdvlabError, match="weights_only=True"):
        create_model("mnist_cnn", checkpoint=str(unsafe))
    other = tmp_path / "other.pt"
    torch.save(MnistCNN(num_classes=7).state_dict(), other)
    with pytest.raises(
        AdvlabError,
        match=r"does not match model 'mnist_cnn' .*shape of classifier.4.bias is \(7,\), model wants \(10,\)",
    ) as info:
        load_weights(MnistCNN(), other, model_name="mnist_cnn")
    assert "\n" not in str(info.value)


def test_madry_cnn_has_the_published_shape_and_a_half_width_option():
    model = create_model("madry_cnn")
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    # conv 5×5 32 and 64 with two pools, fc 3136→1024→10: 3 274 634 parameters
    assert sum(p.numel() for p in model.parameters()) == 3_274_634
    half = create_model("madry_cnn", width=0.5)
    assert half.classifier[1].in_features == 32 * 7 * 7 and half.classifier[1].out_features == 512
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # nothing random in eval or train


def test_madry_cnn_composes_as_the_adversarially_trained_network(make_cfg):
    cfg = make_cfg("experiment=mnist_leaderboard", "+model@defense.model=madry_cnn")
    assert cfg.model.name == "mnist_cnn"  # the undefended and distilled networks keep the paper CNN
    assert cfg.defense.model.name == "madry_cnn"
    model = create_model(**{k: v for k, v in cfg.defense.model.items() if k != "_target_"})
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 10)
