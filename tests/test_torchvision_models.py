"""torchvision classifiers: the paper's three models from their configs, FGSM on an ImageNet-format
folder, weights from files and from torchvision's cache (never the network), and the precision
knobs of the evaluation."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from advlab.attacks import FGSM
from advlab.config import CONF_DIR, instantiate
from advlab.errors import AdvlabError
from advlab.lit.precision import without_autocast
from advlab.models import create_model, input_std
from advlab.models.torchvision_models import resolve_weights, weights_cache_file
from helpers import make_folder, module

PAPER_MODELS = ["resnet101", "alexnet", "regnet_y_400mf"]


def model_from_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return instantiate(cfg.model)


@pytest.fixture(scope="module")
def image_batch(tmp_path_factory):
    """Four 64×64 images of four classes from a synthetic ImageNet-format folder (AlexNet's
    smallest input is about 63 pixels)."""
    root = make_folder(tmp_path_factory.mktemp("imagenet") / "data", [0, 1, 2, 3], per_class=1, size=64)
    return next(iter(module(root).test_dataloader()))


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_model_forward_and_fgsm_step(name, image_batch):
    torch.manual_seed(0)
    model = model_from_config(f"model={name}", "model.weights=null").eval()
    assert model.weights == "random" and len(model.class_names) == 1000
    x, y = image_batch
    x_before = x.clone()
    params_before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x)
    assert logits.shape == (4, 1000)
    # the paper's FGSM: eps in normalized units, no clamp
    x_adv = FGSM(eps=0.02, eps_unit="normalized", clamp=False)(model, x, y)
    step = (x_adv - x).abs()
    budget = 0.02 * input_std(model).view(1, 3, 1, 1)
    assert torch.all(step <= budget + 1e-7) and torch.allclose(step.amax(dim=(0, 2, 3)), budget.flatten())
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y, reduction="sum") > F.cross_entropy(logits, y, reduction="sum")
    assert torch.equal(x, x_before)
    assert all(torch.equal(v, params_before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_loads_through_model_weights(tmp_path):
    torch.manual_seed(1)
    original = create_model("regnet_y_400mf", weights=None).eval()
    x = torch.rand(2, 3, 64, 64)
    bare, whole = tmp_path / "regnet_net.pt", tmp_path / "regnet_classifier.pt"
    torch.save(original.net.state_dict(), bare)  # torchvision's own format
    torch.save(original.state_dict(), whole)  # advlab's classifier (net.* and normalize.*)
    for path in (bare, whole):
        loaded = model_from_config("model=regnet_y_400mf", f"model.weights={path}").eval()
        assert loaded.weights == str(path)
        with torch.no_grad():
            assert torch.equal(loaded(x), original(x))
    wrong = tmp_path / "alexnet.pt"
    torch.save(create_model("alexnet", weights=None).net.state_dict(), wrong)
    with pytest.raises(AdvlabError, match="does not match model 'regnet_y_400mf'") as info:
        create_model("regnet_y_400mf", weights=str(wrong))
    assert "\n" not in str(info.value)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torchvision's cache in a temporary folder, and a download that fails as it does offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def offline(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub", calls


def test_offline_weights_error_names_folder_and_file(hub_dir):
    folder, calls = hub_dir
    with pytest.raises(AdvlabError) as info:
        model_from_config("model=alexnet")
    text = str(info.value)
    assert "\n" not in text and "no network" in text
    assert "alexnet-owt-7be5be79.pth" in text and str(folder / "checkpoints") in text and "model.weights" in text
    assert calls == [("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "7be5be79")]  # hash-checked


def test_cached_weights_load_safely_through_torch_hub(hub_dir, monkeypatch):
    from torchvision.models._api import WeightsEnum

    def unsafe(*args, **kwargs):
        raise AssertionError("torchvision's own loader (weights_only=False) must not be used")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", unsafe)
    member = resolve_weights("regnet_y_400mf", "IMAGENET1K_V1")
    cached = weights_cache_file(member)
    cached.parent.mkdir(parents=True)
    torch.manual_seed(2)
    reference = create_model("regnet_y_400mf", weights=None).eval()
    torch.save(reference.net.state_dict(), cached)
    model = create_model("regnet_y_400mf", weights="IMAGENET1K_V1").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert model.weights == "RegNet_Y_400MF_Weights.IMAGENET1K_V1" and hub_dir[1] == []  # no download
    # the same file placed by hand under torchvision's name stands for those weights
    assert create_model("regnet_y_400mf", weights=str(cached)).weights == str(cached)
    # a cached file that needs full unpickling is refused (weights_only=True)
    torch.save({"hook": print}, cached)
    with pytest.raises(AdvlabError, match="cannot read cached weights"):
        create_model("regnet_y_400mf", weights="IMAGENET1K_V1")


def test_any_torchvision_model_and_bad_names():
    model = model_from_config("model=torchvision", "model.name=squeezenet1_1", "model.weights=null").eval()
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(AdvlabError, match="unknown weights 'IMAGENET1K_V9' for alexnet: use one of IMAGENET1K_V1, DEFAULT"):
        create_model("alexnet", weights="IMAGENET1K_V9")
    with pytest.raises(AdvlabError, match="did you mean resnet101"):
        create_model("resnet1o1")
    with pytest.raises(AdvlabError, match="weights file '/no/such.pt' does not exist"):
        create_model("alexnet", weights="/no/such.pt")


def test_attack_stays_fp32_under_bf16_autocast(image_batch):
    torch.manual_seed(3)
    model = create_model("alexnet", weights=None).eval()
    x, y = image_batch
    attack = FGSM(eps=[0.01, 0.02], eps_unit="normalized", clamp=False)
    reference = attack(model, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16  # the evaluation forwards run in bf16
        steps = list(without_autocast(attack.sweep(model, x, y), "cpu"))
        in_bf16 = attack(model, x, y)  # evaluation.attack_autocast=true
    assert [step.eps for step in steps] == [0.01, 0.02]
    assert all(torch.equal(step.x_adv, ref) for step, ref in zip(steps, reference))
    # under autocast the budget holds too; only the gradient's precision differs
    assert torch.allclose((in_bf16[1] - x).abs().amax(dim=(0, 2, 3)), (reference[1] - x).abs().amax(dim=(0, 2, 3)))


def test_evaluation_knobs_bf16_forwards_fp32_attack_channels_last():
    """trainer.precision=bf16-mixed + evaluation.channels_last: the evaluation's forwards run in
    bf16 autocast, the attack's own forward in fp32 (attack_autocast=false), all channels_last."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from advlab.lit.attack_eval import AttackEvaluation

    torch.manual_seed(4)
    model = create_model("alexnet", weights=None)
    seen = []
    forward = model.forward

    def traced(x):
        out = forward(x)
        seen.append((out.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return out

    model.forward = traced
    module = AttackEvaluation(model, {"fgsm": FGSM(eps=[0.01], eps_unit="normalized")}, num_classes=1000, channels_last=True)
    loader = DataLoader(TensorDataset(torch.rand(2, 3, 64, 64), torch.tensor([0, 1])), batch_size=2)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", inference_mode=False, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, loader, verbose=False)
    # clean forward, the attack's forward, the forward on the adversarial images
    assert seen == [(torch.bfloat16, True), (torch.float32, True), (torch.bfloat16, True)]
    assert module.results["attacks"]["fgsm"]["rows"][0]["max_linf"] == pytest.approx(0.01 * 0.229, rel=1e-5)
