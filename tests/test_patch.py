"""The patch attack's plain-PyTorch pieces: the pixel map, placements, pasting, target names,
saved patches and argument checks (no training here; see test_patch_training.py)."""

from __future__ import annotations

import math

import pytest
import torch

from advlab.attacks import PatchAttack, paste, paste_random
from advlab.attacks.paste import (
    check_fits,
    paste_transformed,
    patch_parameter,
    patch_pixels,
    random_positions,
    random_transforms,
)
from advlab.attacks.patch import resolve_target
from advlab.attacks.patch_files import load_patch, save_patch
from advlab.errors import AdvlabError
from advlab.reports.patch import patch_tables

IMAGENET_LIKE = ["tench", "saltshaker, salt shaker", "soap dispenser", "digital clock", "piggy bank, penny bank", "toaster"]


def test_pixel_map_is_tanh_into_unit_range_and_inverts():
    parameter = torch.linspace(-20, 20, 101)
    pixels = patch_pixels(parameter)
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert patch_pixels(torch.zeros(1)).item() == 0.5  # the reference starts from zeros: mid-grey
    some = torch.rand(3, 5, 5) * 0.98 + 0.01
    assert torch.allclose(patch_pixels(patch_parameter(some)), some, atol=1e-6)


def test_paste_writes_exactly_the_patch_inside_its_mask_and_nothing_else():
    torch.manual_seed(0)
    images = torch.rand(5, 3, 20, 24)
    before = images.clone()
    patch = torch.rand(3, 6, 4)
    positions = torch.tensor([[0, 0], [14, 20], [3, 7], [14, 0], [0, 20]])
    out = paste(images, patch, positions)
    assert torch.equal(images, before), "paste must not write into its input"
    assert out.data_ptr() != images.data_ptr()
    for i, (top, left) in enumerate(positions.tolist()):
        mask = torch.zeros(20, 24, dtype=torch.bool)
        mask[top : top + 6, left : left + 4] = True
        assert torch.equal(out[i][:, mask], patch.reshape(3, -1)), "inside: exactly the patch's pixels"
        assert torch.equal(out[i][:, ~mask], images[i][:, ~mask]), "outside: the image untouched"


def test_paste_is_differentiable_in_the_patch_only():
    images = torch.rand(4, 1, 10, 10)
    parameter = torch.zeros(1, 3, 3, requires_grad=True)
    out = paste(images, patch_pixels(parameter), torch.tensor([[0, 0], [7, 7], [2, 5], [4, 4]]))
    out.sum().backward()
    # each of the 4 pastes covers every patch pixel once; d pixels / d parameter at 0 is 1/2
    assert torch.allclose(parameter.grad, torch.full_like(parameter, 4 * 0.5))
    assert not images.requires_grad


def test_random_positions_stay_inside_and_reach_every_edge():
    generator = torch.Generator().manual_seed(0)
    positions = random_positions(4000, (5, 3), (12, 9), generator)
    assert positions[:, 0].min() == 0 and positions[:, 0].max() == 12 - 5
    assert positions[:, 1].min() == 0 and positions[:, 1].max() == 9 - 3
    images = torch.zeros(4000, 1, 12, 9)
    out = paste(images, torch.ones(1, 5, 3), positions)
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.full((4000,), 15.0)), "every patch lies whole inside"


def test_random_paste_is_seeded_and_fresh_each_call():
    images = torch.zeros(8, 1, 16, 16)
    patch = torch.ones(1, 4, 4)
    a = paste_random(images, patch, generator=torch.Generator().manual_seed(3))
    b = paste_random(images, patch, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # seeded: the same placements
    assert torch.equal(a.sum(dim=(1, 2, 3)), torch.full((8,), 16.0))  # one whole patch per image
    generator = torch.Generator().manual_seed(5)
    first = paste_random(images, patch, generator=generator)
    second = paste_random(images, patch, generator=generator)
    assert not torch.equal(first, second), "each call draws new placements"
    # a caller may stack patches (one call never does): then an image holds two, at new places
    twice = paste_random(first, patch, generator=generator).sum(dim=(1, 2, 3))
    assert ((twice >= 16) & (twice <= 32)).all() and (twice > 16).any()
    assert torch.equal(images, torch.zeros_like(images))  # the input is never written to


def test_transformed_paste_at_scale_one_equals_the_exact_paste():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 15, 17)
    patch = torch.rand(3, 5, 7)
    corners = torch.tensor([[0, 0], [10, 10], [4, 2]])
    centre = corners.double() + torch.tensor([(5 - 1) / 2, (7 - 1) / 2], dtype=torch.float64)
    turned = paste_transformed(images, patch, centre, torch.ones(3), torch.zeros(3))
    assert torch.allclose(turned, paste(images, patch, corners), atol=1e-5)


@pytest.mark.parametrize("scale, rotation", [((0.5, 1.2), 0.0), (None, 45.0), ((0.8, 1.0), 180.0)])
def test_scaled_and_turned_patches_stay_whole_inside(scale, rotation):
    generator = torch.Generator().manual_seed(1)
    size, image, margin = (8, 8), (32, 32), 16
    drawn = random_transforms(500, size, image, scale, rotation, generator)
    patch = torch.ones(1, *size)
    inside = paste_transformed(torch.zeros(500, 1, *image), patch, drawn["centre"], drawn["scale"], drawn["angle"])
    # the same placements on a canvas with a wide margin: nothing can be cut off there
    padded = paste_transformed(torch.zeros(500, 1, image[0] + 2 * margin, image[1] + 2 * margin), patch, drawn["centre"] + margin, drawn["scale"], drawn["angle"])
    assert torch.allclose(inside.sum(dim=(1, 2, 3)), padded.sum(dim=(1, 2, 3)), atol=1e-3), "a patch was cut off at the border"
    assert torch.allclose(padded[..., margin : margin + image[0], margin : margin + image[1]], inside, atol=1e-5)
    assert inside.min() >= 0 and inside.max() <= 1 + 1e-6
    centres = drawn["centre"]
    assert centres.min() < 6 and centres.max() > 25, "placements should spread over the image"
    if rotation:
        assert drawn["angle"].abs().max() > math.radians(min(rotation, 90)) * 0.8
        assert drawn["angle"].abs().max() <= math.radians(rotation)


def test_attack_applies_a_loaded_patch(tmp_path):
    pixels = torch.rand(1, 4, 4)
    path = save_patch(tmp_path / "p.pt", pixels, 3, "3", patch_size=[4, 4])
    attack = PatchAttack(target=3, patch_size=4)
    assert load_patch(path)["target_index"] == 3
    attack.load(path)
    x = torch.zeros(6, 1, 12, 12)
    out = attack(None, x)
    assert out.shape == x.shape and torch.allclose(out.sum(dim=(1, 2, 3)), torch.full((6,), float(pixels.sum())))
    with pytest.raises(AdvlabError, match="holds no patch"):
        PatchAttack()(None, x)


def test_targets_resolve_by_index_name_and_synonym():
    assert resolve_target("toaster", IMAGENET_LIKE, 6) == (5, "toaster")
    assert resolve_target("salt shaker", IMAGENET_LIKE, 6) == (1, "saltshaker, salt shaker")
    assert resolve_target("Piggy Bank", IMAGENET_LIKE, 6) == (4, "piggy bank, penny bank")
    assert resolve_target(2, IMAGENET_LIKE, 6) == (2, "soap dispenser")
    assert resolve_target("7", [str(d) for d in range(10)], 10) == (7, "7")
    assert resolve_target(7, None, 10) == (7, None)


def test_unknown_target_name_suggests_the_closest_in_one_line():
    with pytest.raises(AdvlabError, match=r"unknown target class 'toastr': did you mean 'toaster'\?") as info:
        resolve_target("toastr", IMAGENET_LIKE, 6)
    assert "\n" not in str(info.value)
    with pytest.raises(AdvlabError, match=r"unknown target class 'zebra': the 6 class names include 'tench', .*'toaster'"):
        resolve_target("zebra", IMAGENET_LIKE, 6)


@pytest.mark.parametrize("target", [10, -1, "12"])
def test_target_index_out_of_range(target):
    with pytest.raises(AdvlabError, match=r"target class index -?\d+ is out of range: use 0 … 9") as info:
        resolve_target(target, [str(d) for d in range(10)], 10)
    assert "\n" not in str(info.value)


def test_patch_larger_than_the_image_is_refused():
    with pytest.raises(AdvlabError, match=r"patch 30×30 px is larger than the 28×28 px images: use attack.patch.patch_size <= 28"):
        check_fits((30, 30), (1, 28, 28))
    with pytest.raises(AdvlabError, match=r"larger than the 28×28 px images \(at scale 1.5"):
        check_fits((20, 20), (28, 28), scale=(1.0, 1.5))
    with pytest.raises(AdvlabError, match="rotated up to 45°"):
        check_fits((24, 24), (28, 28), rotation=45)  # its diagonal (34 px) does not fit
    check_fits((28, 28), (28, 28))
    with pytest.raises(AdvlabError, match="larger than"):
        random_positions(1, (5, 5), (4, 9))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 0}, "patch_size must be >= 1 pixel"),
        ({"patch_size": 2.5}, "patch_size must be a whole number"),
        ({"epochs": 0}, "attack.patch.epochs must be an integer >= 1, got 0"),
        ({"placements": "many"}, "attack.patch.placements must be an integer >= 1, got 'many'"),
        ({"train_split": 1.0}, "train_split must be between 0 and 1"),
        ({"scale": [1.2, 0.5]}, "scale must be \\[low, high\\]"),
        ({"rotation": -5}, "rotation must be between 0 and 180"),
        ({"loss": "hinge"}, "unknown attack loss 'hinge'"),
        ({"target": []}, "attack.patch.target is empty"),
    ],
)
def test_bad_attack_arguments_raise_one_line(kwargs, message):
    with pytest.raises(AdvlabError, match=message) as info:
        PatchAttack(**kwargs)
    assert "\n" not in str(info.value)


def test_lists_give_one_patch_per_target_and_size_and_settings_state_the_protocol():
    attack = PatchAttack(target=["toaster", 3], patch_size=[32, [16, 24]])
    assert attack.targets == ["toaster", 3] and attack.sizes == [(32, 32), (16, 24)]
    settings = attack.settings()
    assert settings == {**settings, "optimizer": "SGD", "lr": 0.1, "momentum": 0.8, "epochs": 5, "batch_size": 32, "train_split": 0.9, "placements": 4}


def test_pivot_table_puts_classes_down_and_sizes_across():
    rows = [
        {"model": "undefended", "architecture": "resnet101", "attack": "patch", "target": t, "patch_size": s, "target_rate": r, "target_top5_rate": r5, "n_images": 450, "placements": 4}
        for t, s, r, r5 in [("toaster", 48, 0.9, 0.99), ("toaster", 32, 0.5, 0.7), ("piggy bank", 32, 0.25, 0.5)]
    ] + [{"model": "undefended", "attack": "none", "top1_acc": 0.8}]
    text = patch_tables(rows)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert "**resnet101** — top-1" in text and "**resnet101** — top-5" in text
    header = next(line for line in lines if "class" in line)
    assert header.split("|")[2].strip() == "32 px" and header.split("|")[3].strip() == "48 px"
    assert any(line.split("|")[1].strip() == "toaster" and "50.00" in line and "90.00" in line for line in lines)
    assert any(line.split("|")[1].strip() == "piggy bank" and "25.00" in line and "–" in line for line in lines)
    assert "450, × 4 random placements" in text


def test_patch_file_globs_expand_in_order_and_an_empty_match_fails(tmp_path):
    for name in ("b_3_8.pt", "a_3_8.pt"):
        save_patch(tmp_path / name, torch.rand(1, 8, 8), 3, "3")
    attack = PatchAttack(patch_file=[str(tmp_path / "*.pt"), str(tmp_path / "a_3_8.pt")])
    assert [p.rsplit("/", 1)[-1] for p in attack.patch_files] == ["a_3_8.pt", "b_3_8.pt"]
    with pytest.raises(AdvlabError, match="matches no file"):
        PatchAttack(patch_file=str(tmp_path / "nothing_*.pt"))
    (tmp_path / "other.pt").write_bytes(b"not a patch")
    with pytest.raises(AdvlabError, match="cannot read patch file"):
        load_patch(tmp_path / "other.pt")
